/*-------------------------------------------------------------------------
 *
 * okepay.c
 *		OkePay (a white-label Payrexx): GET /v1.0/Gateway/{id}/ signed with
 *		an HMAC-SHA256 "ApiSignature" over the query string.
 *
 * ApiSignature = base64(HMAC-SHA256(secret, q)) where q is the
 * http_build_query() encoding of every parameter sent except instance and
 * ApiSignature.  The status call sends no other parameter, so q is empty and
 * the signature is constant per secret.  The signature itself must be
 * percent-encoded in the URL (base64 uses '+', '/' and '=').
 *
 * Webhooks are not signed (Payrexx tells merchants to fetch the object
 * again): they are read, never verified, and an account takes no
 * webhook_key.  They are POSTed as JSON or form-encoded with a top-level
 * "transaction" object whose invoice.paymentLinkId is the Gateway id paygw
 * tracks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

static const PaygwStatusMap okepay_statuses[] = {
	{"waiting", PAYGW_STATUS_PENDING},
	{"initiated", PAYGW_STATUS_PENDING},
	{"authorized", PAYGW_STATUS_AUTHORIZED},
	{"reserved", PAYGW_STATUS_AUTHORIZED},
	{"uncaptured", PAYGW_STATUS_AUTHORIZED},
	{"confirmed", PAYGW_STATUS_PAID},
	{"refund_pending", PAYGW_STATUS_PAID},
	{"refundpending", PAYGW_STATUS_PAID},
	{"partially-refunded", PAYGW_STATUS_PARTIALLY_REFUNDED},
	{"refunded", PAYGW_STATUS_REFUNDED},
	{"chargeback", PAYGW_STATUS_CHARGEBACK},
	{"declined", PAYGW_STATUS_FAILED},
	{"error", PAYGW_STATUS_FAILED},
	{"cancelled", PAYGW_STATUS_CANCELLED},
	{"expired", PAYGW_STATUS_EXPIRED},
	{NULL, PAYGW_STATUS_PENDING}
};

static const char *const okepay_options[] = {NULL};

/* instance: the merchant's sub-domain, so letters, digits, '-', '_' and '.' */
static bool
okepay_check_account(PaygwAccount *account, PaygwError *err)
{
	for (const char *p = account->merchant_id; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_' && *p != '.')
			return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
								   "okepay merchant_id must be the instance name");
	return true;
}

/* gateway ids are positive integers; there is no lookup by order id */
static bool
okepay_check_id(PaygwLookup lookup, const char *id, PaygwError *err)
{
	int			n = 0;

	if (lookup == PAYGW_LOOKUP_ORDER)
		return paygw_unsupported_lookup(&paygw_okepay, err);
	if (id[0] == '\0')
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "okepay gateway id must not be empty");
	for (const char *p = id; *p; p++, n++)
		if (*p < '0' || *p > '9')
			return paygw_set_error(err, PAYGW_ERR_INVALID_ID,
								   "okepay gateway id must be a positive integer");
	if (n > 18 || strspn(id, "0") == (size_t) n)
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID,
							   "okepay gateway id must be a positive integer");
	return true;
}

/* ApiSignature of a query string: base64(HMAC-SHA256(secret, query)) */
static char *
okepay_sign(PaygwAccount *account, const char *message, size_t len,
			PaygwError *err)
{
	return paygw_hmac_sha256_text(account->secret, message, len, false, err);
}

/* gateway ids are integers: no leading zeros */
static char *
okepay_canonical_id(PaygwLookup lookup, const char *id)
{
	return pstrdup(lookup == PAYGW_LOOKUP_ID ? id + strspn(id, "0") : id);
}

static bool
okepay_build_request(PaygwAccount *account, PaygwLookup lookup, const char *id,
					 PaygwHttpRequest *req, PaygwError *err)
{
	char	   *signature;
	StringInfoData url;

	(void) lookup;
	/* the message is the (empty) query of all other parameters */
	signature = okepay_sign(account, "", 0, err);
	if (signature == NULL)
		return false;

	initStringInfo(&url);
	/* leading zeros are dropped: the id is an integer */
	appendStringInfo(&url, "%s/v1.0/Gateway/%s/?instance=", account->base_url,
					 id + strspn(id, "0"));
	paygw_append_form_encoded(&url, account->merchant_id);
	appendStringInfoString(&url, "&ApiSignature=");
	paygw_append_form_encoded(&url, signature);
	paygw_wipe_string(signature);

	req->method = "GET";
	req->url = url.data;
	return paygw_http_add_header(req, "Accept", "application/json", false, err);
}

/*
 * The first object of a success reply's "data" array.  An error reply
 * (status not "success", or an HTTP failure) gives NULL with *refused set
 * and *message the gateway's; an empty array NULL with *empty set; a
 * malformed reply NULL with err set.
 */
static JsonbContainer *
okepay_reply_gateway(PaygwHttpResponse *resp, Jsonb **jb, bool *refused,
					 char **message, bool *empty, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_okepay;
	char	   *status;
	JsonbContainer *data;
	JsonbValue *first;
	JsonbContainer *gw;

	*refused = *empty = false;
	*jb = paygw_reply_json(prov, resp, err);
	if (*jb == NULL ||
		!paygw_reply_field(prov, &(*jb)->root, "status", &status, err) ||
		!paygw_reply_field(prov, &(*jb)->root, "message", message, err))
		return NULL;
	if (status == NULL || strcmp(status, "success") != 0 || resp->status >= 300)
	{
		*refused = true;
		return NULL;
	}
	data = paygw_json_container(paygw_json_get(&(*jb)->root, "data"), false);
	if (data == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
						"malformed reply from the okepay gateway: no \"data\" array");
		return NULL;
	}
	first = getIthJsonbValueFromContainer(data, 0);
	if (first == NULL)
	{
		*empty = true;
		return NULL;
	}
	gw = paygw_json_container(first, true);
	if (gw == NULL)
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
						"malformed reply from the okepay gateway: \"data\" does not hold a gateway object");
	return gw;
}

static bool
okepay_parse_reply(PaygwAccount *account, PaygwLookup lookup, const char *id,
				   PaygwHttpResponse *resp, PaygwStatusResult *result,
				   PaygwError *err)
{
	const PaygwProvider *prov = &paygw_okepay;
	Jsonb	   *jb;
	char	   *message;
	bool		refused;
	bool		empty;
	JsonbContainer *gw;

	(void) account;
	(void) lookup;
	gw = okepay_reply_gateway(resp, &jb, &refused, &message, &empty, err);
	if (refused)
		return paygw_reply_error(prov, resp->status, 0, message, err);
	if (empty)
		return paygw_reply_error(prov, 404, 0, "empty data array", err);
	if (gw == NULL)
		return false;

	if (!paygw_reply_field(prov, gw, "id", &result->payment_id, err) ||
		!paygw_reply_matches(prov, "id", result->payment_id, id + strspn(id, "0"), false, err) ||
		!paygw_reply_field(prov, gw, "referenceId", &result->order_id, err) ||
		!paygw_reply_status(prov, okepay_statuses, gw, "status", result, err) ||
		!paygw_reply_amount(prov, gw, "amount", 2, result, err) ||
		!paygw_reply_field(prov, gw, "currency", &result->currency, err))
		return false;
	if (result->payment_id == NULL)
		result->payment_id = pstrdup(id + strspn(id, "0"));
	if (!paygw_reply_field(prov, gw, "link", &result->pay_url, err))
		return false;
	result->response = jb;
	return true;
}

/*
 * Read transaction fields from a form-encoded webhook: PHP's nested
 * names, transaction[status], transaction[invoice][paymentLinkId], ...
 */
static bool
okepay_form_fields(const PaygwWebhookRequest *req, char **link_id,
				   char **invoice_ref, char **reference, char **status,
				   bool *found, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_okepay;
	const char *names[4] = {
		"transaction[invoice][paymentLinkId]", "transaction[invoice][referenceId]",
		"transaction[referenceId]", "transaction[status]"
	};
	char	  **outs[4] = {link_id, invoice_ref, reference, status};

	*found = false;
	for (int i = 0; i < 4; i++)
	{
		if (!paygw_form_param(prov, req->body, req->body_len, names[i], outs[i], err))
			return false;
		*found |= *outs[i] != NULL;
	}
	/* transaction[...] alone would be the object itself */
	if (!*found)
	{
		char	   *whole;

		if (!paygw_form_param(prov, req->body, req->body_len, "transaction[id]", &whole, err))
			return false;
		*found = whole != NULL;
	}
	return true;
}

/*
 * An OkePay (Payrexx) webhook: unsigned.  The payment is the Gateway
 * (transaction.invoice.paymentLinkId), the order its referenceId (the
 * invoice's, else the transaction's), the event transaction.status.  A JSON
 * body is recognized by its first character; anything else is read as a
 * form.
 */
static bool
okepay_parse_webhook(PaygwAccount *account, const PaygwWebhookRequest *req,
					 PaygwWebhookInfo *info, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_okepay;
	const char *p = req->body;
	char	   *link_id = NULL;
	char	   *invoice_ref = NULL;
	char	   *reference = NULL;

	(void) account;
	memset(info, 0, sizeof(PaygwWebhookInfo));
	while (p < req->body + req->body_len && isspace((unsigned char) *p))
		p++;
	if (p == req->body + req->body_len)
		return paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID, "okepay webhook body is empty");
	if (*p == '{')
	{
		Jsonb	   *jb = paygw_webhook_json(prov, req, err);
		JsonbContainer *tx;
		JsonbContainer *invoice;

		if (jb == NULL)
			return false;
		tx = paygw_json_container(paygw_json_get(&jb->root, "transaction"), true);
		if (tx == NULL)
			return paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
								   "okepay webhook has no \"transaction\" object");
		invoice = paygw_json_container(paygw_json_get(tx, "invoice"), true);
		if (!paygw_webhook_field(prov, invoice, "paymentLinkId", &link_id, err) ||
			!paygw_webhook_field(prov, invoice, "referenceId", &invoice_ref, err) ||
			!paygw_webhook_field(prov, tx, "referenceId", &reference, err) ||
			!paygw_webhook_field(prov, tx, "status", &info->event, err))
			return false;
	}
	else
	{
		bool		found;

		if (!okepay_form_fields(req, &link_id, &invoice_ref, &reference, &info->event,
								&found, err))
			return false;
		if (!found)
			return paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
								   "okepay webhook has no \"transaction\" object");
	}

	if (!paygw_webhook_id(prov, PAYGW_LOOKUP_ID, link_id, &info->payment_id, err))
		return false;
	/* no lookup by referenceId at OkePay: kept as given, not checked */
	info->order_id = invoice_ref && invoice_ref[0] ? invoice_ref
		: (reference && reference[0] ? reference : NULL);
	if (info->payment_id == NULL && info->order_id == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID, "okepay webhook names no payment");
		paygw_error_detail(err, "Neither transaction.invoice.paymentLinkId nor a referenceId is set.");
		return false;
	}
	return true;
}

/*
 * Creating: POST /v1.0/Gateway/?instance=NAME with a form body.  The
 * ApiSignature is computed over the http_build_query() of every body
 * parameter, nested ones included, exactly as sent, and appended to the
 * body.  amount is in cents; referenceId (the order id) is not unique at
 * Payrexx and cannot be looked up, so a create is never resolved as a
 * duplicate here (see the docs for what that means after a timeout).
 */
static const PaygwOption okepay_create_options[] = {
	{"purpose", PAYGW_OPT_TEXT, false, 0, 1000},
	{"successRedirectUrl", PAYGW_OPT_URL, false, 0, 0},
	{"failedRedirectUrl", PAYGW_OPT_URL, false, 0, 0},
	{"cancelRedirectUrl", PAYGW_OPT_URL, false, 0, 0},
	{"validity", PAYGW_OPT_INT, false, 1, 525600},
	{"skipResultPage", PAYGW_OPT_BOOL, false, 0, 0},
	{"preAuthorization", PAYGW_OPT_BOOL, false, 0, 0},
	{"reservation", PAYGW_OPT_BOOL, false, 0, 0},
	{"psp", PAYGW_OPT_INT_ARRAY, false, 0, 0},
	{"pm", PAYGW_OPT_TEXT_ARRAY, false, 0, 0},
	{"vatRate", PAYGW_OPT_DECIMAL, false, 0, 100},
	{"sku", PAYGW_OPT_TEXT, false, 0, 255},
	{"fields", PAYGW_OPT_OBJECT, false, 0, 0},
	{"basket", PAYGW_OPT_ARRAY, false, 0, 0},
	{"language", PAYGW_OPT_TEXT, false, 0, 8},
	{"buttonText", PAYGW_OPT_TEXT, false, 0, 255},
	{"lookAndFeelProfile", PAYGW_OPT_TEXT, false, 0, 255},
	{NULL}
};

/* an ISO code, upper-cased; Payrexx lists no fixed set */
static bool
okepay_check_currency(PaygwCreateRequest *in, char **iso, PaygwError *err)
{
	char	   *code;

	if (in->currency == NULL || strlen(in->currency) != 3 ||
		strspn(in->currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != 3)
		return paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER,
							   "okepay currency must be a three-letter ISO code");
	code = pstrdup(in->currency);
	for (char *p = code; *p; p++)
		*p = pg_ascii_toupper((unsigned char) *p);
	in->currency = code;
	*iso = code;
	return true;
}

static bool
okepay_build_create(PaygwAccount *account, const PaygwCreateRequest *in,
					PaygwHttpRequest *req, PaygwError *err)
{
	StringInfoData body;
	StringInfoData url;
	char	   *signature;

	initStringInfo(&body);
	appendStringInfo(&body, "amount=%s&currency=", in->amount_minor);
	paygw_append_form_encoded(&body, in->currency);
	appendStringInfoString(&body, "&referenceId=");
	paygw_append_form_encoded(&body, in->order_id);
	paygw_create_append_form(&body, in);
	signature = okepay_sign(account, body.data, body.len, err);
	if (signature == NULL)
		return false;
	appendStringInfoString(&body, "&ApiSignature=");
	paygw_append_form_encoded(&body, signature);
	paygw_wipe_string(signature);

	req->method = "POST";
	initStringInfo(&url);
	appendStringInfo(&url, "%s/v1.0/Gateway/?instance=", account->base_url);
	paygw_append_form_encoded(&url, account->merchant_id);
	req->url = url.data;
	req->body = body.data;
	req->body_len = body.len;
	return paygw_http_add_header(req, "Content-Type", "application/x-www-form-urlencoded", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err);
}

static bool
okepay_parse_create(PaygwAccount *account, const PaygwCreateRequest *in,
					PaygwHttpResponse *resp, PaygwCreateResult *out,
					PaygwError *err)
{
	const PaygwProvider *prov = &paygw_okepay;
	Jsonb	   *jb;
	char	   *message;
	bool		refused;
	bool		empty;
	JsonbContainer *gw;
	char	   *validity;

	(void) account;
	gw = okepay_reply_gateway(resp, &jb, &refused, &message, &empty, err);
	if (refused)
		return paygw_create_reply_error(prov, resp, 0, message, err);
	if (empty)
		return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
							   "malformed reply from the okepay gateway: no gateway object in \"data\"");
	if (gw == NULL)
		return false;
	if (!paygw_reply_field(prov, gw, "id", &out->payment_id, err) ||
		!paygw_create_require_id(prov, out, "id", err) ||
		!paygw_reply_field(prov, gw, "link", &out->pay_url, err) ||
		!paygw_create_status(prov, okepay_statuses, gw, "status", out, err))
		return false;
	validity = paygw_create_text(in, "validity");
	if (validity != NULL)
		out->expires_in_s = strtol(validity, NULL, 10) * 60;
	out->response = jb;
	return true;
}

static const PaygwCreateSpec okepay_create = {
	.options = okepay_create_options,
	.steps = 1,
	.step_names = (const char *const[]) {"create"},
	.order_max_chars = 255,
	.check_currency = okepay_check_currency,
	.build = okepay_build_create,
	.parse = okepay_parse_create,
};

const PaygwProvider paygw_okepay = {
	.name = "okepay",
	.default_base_url = "https://api.okepay.info",
	.auth_scheme = "HMAC-SHA256 query signature (ApiSignature)",
	.id_name = "gateway id",
	.order_name = NULL,
	.option_keys = okepay_options,
	.sign = okepay_sign,
	.check_account = okepay_check_account,
	.canonical_id = okepay_canonical_id,
	.check_id = okepay_check_id,
	.build_request = okepay_build_request,
	.parse_reply = okepay_parse_reply,
	.webhook_signed = false,
	.parse_webhook = okepay_parse_webhook,
	.create = &okepay_create,
};
