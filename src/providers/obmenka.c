/*-------------------------------------------------------------------------
 *
 * obmenka.c
 *		Obmenka (the dpay.ua engine): POST /api/einvoice/status with a JSON
 *		body, signed by DPAY_SECURE = base64(md5(salt . base64(sha1(body))
 *		. salt)), raw digests.  Replies carry DPAY_SECURE too; paygw checks it
 *		with the same formula over the exact reply bytes.
 *
 * A reply that would yield a status must carry a valid signature: a missing
 * or wrong one is an error, never a status.  Error replies are classified
 * whatever their signature (they cannot make anything look paid).
 *
 * Webhooks: Obmenka calls the invoice's status_url with an empty GET, no
 * data and no signature, so the merchant must put the invoice's identity
 * into that URL's query.  paygw reads payment_id=<the merchant's order id>
 * (Obmenka's own name for it; order_id= is taken as the same) and/or
 * tracking=<Obmenka's id>; other parameters and any body are ignored.  An
 * account takes no webhook_key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

#define SIGNATURE_HEADER "DPAY_SECURE"

static const PaygwStatusMap obmenka_statuses[] = {
	{"CREATED", PAYGW_STATUS_PENDING},
	{"PAYIN", PAYGW_STATUS_PENDING},
	{"PAYED", PAYGW_STATUS_PAID},
	{"PAYED_RECALC", PAYGW_STATUS_PAID},
	{"FINISHED", PAYGW_STATUS_PAID},
	{"FAILED", PAYGW_STATUS_FAILED},
	{"PAYIN_ERROR", PAYGW_STATUS_FAILED},
	{"CANCELED", PAYGW_STATUS_CANCELLED},
	{NULL, PAYGW_STATUS_PENDING}
};

static const char *const obmenka_options[] = {NULL};

/*
 * base64(md5(salt || base64(sha1(data)) || salt)), palloc'd.
 */
static char *
obmenka_sign(PaygwAccount *account, const char *data, size_t len,
			 PaygwError *err)
{
	const char *salt = account->secret;
	uint8		sha1[20];
	uint8		md5[16];
	char	   *inner;
	StringInfoData msg;
	bool		ok;

	if (!paygw_digest(PAYGW_SHA1, data, len, sha1, err))
		return NULL;
	inner = paygw_base64(sha1, sizeof(sha1));

	initStringInfo(&msg);
	appendStringInfoString(&msg, salt);
	appendStringInfoString(&msg, inner);
	appendStringInfoString(&msg, salt);
	ok = paygw_digest(PAYGW_MD5, msg.data, msg.len, md5, err);
	paygw_wipe(msg.data, msg.len);
	pfree(msg.data);
	if (!ok)
		return NULL;
	return paygw_base64(md5, sizeof(md5));
}

/* DPAY_CLIENT goes into a header line */
static bool
obmenka_check_account(PaygwAccount *account, PaygwError *err)
{
	if (paygw_has_control_chars(account->merchant_id))
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "obmenka merchant_id must not contain control characters");
	return true;
}

static bool
obmenka_check_id(PaygwLookup lookup, const char *id, PaygwError *err)
{
	return paygw_check_id_text(&paygw_obmenka, lookup, id, 255, err);
}

static bool
obmenka_build_request(PaygwAccount *account, PaygwLookup lookup,
					  const char *id, PaygwHttpRequest *req, PaygwError *err)
{
	char	   *body;
	char	   *signature;

	body = paygw_json_body(lookup == PAYGW_LOOKUP_ID ? "tracking" : "payment_id", id);
	signature = obmenka_sign(account, body, strlen(body), err);
	if (signature == NULL)
		return false;

	req->method = "POST";
	req->url = psprintf("%s/api/einvoice/status", account->base_url);
	req->body = body;
	req->body_len = strlen(body);
	req->capture_header = SIGNATURE_HEADER;
	return paygw_http_add_header(req, "Content-Type", "application/json", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "DPAY_CLIENT", account->merchant_id, false, err) &&
		paygw_http_add_header(req, SIGNATURE_HEADER, signature, false, err);
}

/*
 * Verify the reply's DPAY_SECURE header.  Returns SIG_VALID, SIG_MISSING or
 * SIG_INVALID; SIG_ERROR with err filled when the digest itself failed.
 */
typedef enum
{
	SIG_VALID,
	SIG_MISSING,
	SIG_INVALID,
	SIG_ERROR
} ReplySignature;

static ReplySignature
obmenka_verify(PaygwAccount *account, PaygwHttpResponse *resp, PaygwError *err)
{
	char	   *expected;

	if (resp->captured_header == NULL)
		return SIG_MISSING;
	expected = obmenka_sign(account, resp->body, resp->body_len, err);
	if (expected == NULL)
		return SIG_ERROR;
	return paygw_equal_timingsafe(expected, resp->captured_header) ? SIG_VALID : SIG_INVALID;
}

/*
 * A reply as JSON, its signature checked.  Error replies ({"error":{...}}
 * or an HTTP failure) are returned whatever their signature, with *code
 * and *message set (0 and NULL otherwise): they cannot produce a status,
 * and with a wrong salt no reply verifies, so "credentials rejected" is the
 * useful answer.  Any other reply must verify.
 */
static Jsonb *
obmenka_reply(PaygwAccount *account, PaygwHttpResponse *resp, long *code,
			  char **message, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_obmenka;
	ReplySignature sig;
	Jsonb	   *jb;
	JsonbContainer *error;

	*code = 0;
	*message = NULL;
	sig = obmenka_verify(account, resp, err);
	if (sig == SIG_ERROR)
		return NULL;

	jb = paygw_reply_json(prov, resp, err);
	if (jb == NULL)
		return NULL;

	error = paygw_json_container(paygw_json_get(&jb->root, "error"), true);
	if (error != NULL)
	{
		char	   *text;

		if (!paygw_reply_field(prov, error, "code", &text, err) ||
			!paygw_reply_field(prov, error, "message", message, err))
			return NULL;
		*code = text ? strtol(text, NULL, 10) : 0;
		if (*message == NULL)
			*message = "";
		return jb;
	}
	if (resp->status >= 300)
	{
		*code = resp->status;
		*message = "";
		return jb;
	}

	if (sig == SIG_INVALID)
	{
		paygw_set_error(err, PAYGW_ERR_REPLY_SIGNATURE,
						"reply from the obmenka gateway failed signature verification");
		paygw_error_detail(err, "Its DPAY_SECURE header does not match the reply body signed with this account's salt.");
		return NULL;
	}
	if (sig == SIG_MISSING)
	{
		paygw_set_error(err, PAYGW_ERR_REPLY_SIGNATURE,
						"reply from the obmenka gateway is not signed");
		paygw_error_detail(err, "A reply without a DPAY_SECURE header cannot be trusted.");
		return NULL;
	}
	return jb;
}

static bool
obmenka_parse_reply(PaygwAccount *account, PaygwLookup lookup, const char *id,
					PaygwHttpResponse *resp, PaygwStatusResult *result,
					PaygwError *err)
{
	const PaygwProvider *prov = &paygw_obmenka;
	Jsonb	   *jb;
	long		code;
	char	   *message;
	char	   *method;
	char	   *accrual;

	jb = obmenka_reply(account, resp, &code, &message, err);
	if (jb == NULL)
		return false;
	if (message != NULL)
		return paygw_reply_error(prov, resp->status, code == resp->status ? 0 : code,
								 message[0] ? message : NULL, err);

	if (!paygw_reply_field(prov, &jb->root, "tracking", &result->payment_id, err) ||
		!paygw_reply_field(prov, &jb->root, "payment_id", &result->order_id, err) ||
		!paygw_reply_matches(prov, lookup == PAYGW_LOOKUP_ID ? "tracking" : "payment_id",
							 lookup == PAYGW_LOOKUP_ID ? result->payment_id : result->order_id,
							 id, false, err) ||
		!paygw_reply_status(prov, obmenka_statuses, &jb->root, "status", result, err) ||
		!paygw_reply_amount(prov, &jb->root, "amount", 0, result, err) ||
		!paygw_reply_field(prov, &jb->root, "currency", &method, err) ||
		!paygw_reply_field(prov, &jb->root, "accrual_currency", &accrual, err))
		return false;

	/* "currency" is a method code such as visamaster.uah */
	result->currency = paygw_currency_suffix(method, '.');
	if (result->currency == NULL)
		result->currency = accrual;
	result->response = jb;
	return true;
}

/*
 * An Obmenka status_url callback: unsigned, and naming the payment only
 * through what the merchant put into the URL's query.
 */
static bool
obmenka_parse_webhook(PaygwAccount *account, const PaygwWebhookRequest *req,
					  PaygwWebhookInfo *info, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_obmenka;
	size_t		qlen = req->query ? strlen(req->query) : 0;
	char	   *tracking;
	char	   *payment_id;
	char	   *order_id;

	(void) account;
	memset(info, 0, sizeof(PaygwWebhookInfo));
	if (!paygw_form_param(prov, req->query, qlen, "tracking", &tracking, err) ||
		!paygw_form_param(prov, req->query, qlen, "payment_id", &payment_id, err) ||
		!paygw_form_param(prov, req->query, qlen, "order_id", &order_id, err))
		return false;
	if (payment_id && payment_id[0] && order_id && order_id[0] &&
		strcmp(payment_id, order_id) != 0)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
						"obmenka webhook names two different order ids");
		paygw_error_detail(err, "Its payment_id and order_id parameters differ.");
		return false;
	}
	if (payment_id == NULL || payment_id[0] == '\0')
		payment_id = order_id;
	if (!paygw_webhook_id(prov, PAYGW_LOOKUP_ID, tracking, &info->payment_id, err) ||
		!paygw_webhook_id(prov, PAYGW_LOOKUP_ORDER, payment_id, &info->order_id, err))
		return false;
	if (info->payment_id == NULL && info->order_id == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID, "obmenka webhook names no payment");
		paygw_error_detail(err, "Obmenka's callback carries no data; the payment is named only by the status_url's query.");
		paygw_error_hint(err, "Create invoices with a status_url ending in ?payment_id=<your order id> (or tracking=<Obmenka's id>).");
		return false;
	}
	return true;
}

/*
 * Creating: /api/einvoice/create, then /api/einvoice/process for the pay
 * link, both signed like the status call and both replies verified.
 * "currency" is Obmenka's payment-method code (visamaster.uah), passed as
 * given.  status_url gets payment_id=<the order id> added to its query, so
 * that the empty GET Obmenka sends there names the invoice (see
 * obmenka_parse_webhook).  A taken payment_id is a duplicate.
 */
static const PaygwOption obmenka_create_options[] = {
	{"description", PAYGW_OPT_TEXT, false, 0, 1000},
	{"sender", PAYGW_OPT_TEXT, false, 0, 255},
	{"account", PAYGW_OPT_TEXT, false, 0, 255},
	{"success_url", PAYGW_OPT_URL, false, 0, 0},
	{"fail_url", PAYGW_OPT_URL, false, 0, 0},
	{"status_url", PAYGW_OPT_URL, false, 0, 0},
	{"extra_fields", PAYGW_OPT_OBJECT, false, 0, 0},
	{NULL}
};

/* a method code: lower-case letters, digits and '_', a dot, the currency */
static bool
obmenka_check_currency(PaygwCreateRequest *in, char **iso, PaygwError *err)
{
	const char *c = in->currency;
	const char *dot = c ? strrchr(c, '.') : NULL;

	if (c == NULL || dot == NULL || dot == c ||
		strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789_.") != strlen(c) ||
		(*iso = paygw_currency_suffix(c, '.')) == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER,
						"obmenka currency must be a payment-method code such as visamaster.uah");
		paygw_error_detail(err, "Obmenka's \"currency\" names the payment method and its currency.");
		return false;
	}
	return true;
}

static bool
obmenka_build_create(PaygwAccount *account, const PaygwCreateRequest *in,
					 PaygwHttpRequest *req, PaygwError *err)
{
	static const char *const skip[] = {"status_url", NULL};
	StringInfoData body;
	char	   *signature;

	initStringInfo(&body);
	appendStringInfoChar(&body, '{');
	if (in->step == 0)
	{
		char	   *status_url = paygw_create_text(in, "status_url");

		appendStringInfoString(&body, "\"payment_id\":");
		escape_json(&body, in->order_id);
		appendStringInfoString(&body, ",\"currency\":");
		escape_json(&body, in->currency);
		appendStringInfo(&body, ",\"amount\":%s", in->amount);
		paygw_create_append_json(&body, in, skip);
		if (status_url != NULL)
		{
			StringInfoData url;

			initStringInfo(&url);
			appendStringInfo(&url, "%s%c", status_url, strchr(status_url, '?') ? '&' : '?');
			appendStringInfoString(&url, "payment_id=");
			paygw_append_form_encoded(&url, in->order_id);
			appendStringInfoString(&body, ",\"status_url\":");
			escape_json(&body, url.data);
		}
	}
	else
	{
		appendStringInfoString(&body, "\"payment_id\":");
		escape_json(&body, in->order_id);
		appendStringInfoString(&body, ",\"tracking\":");
		escape_json(&body, in->payment_id);
	}
	appendStringInfoChar(&body, '}');
	signature = obmenka_sign(account, body.data, body.len, err);
	if (signature == NULL)
		return false;

	req->method = "POST";
	req->url = psprintf("%s/api/einvoice/%s", account->base_url,
						in->step == 0 ? "create" : "process");
	req->body = body.data;
	req->body_len = body.len;
	req->capture_header = SIGNATURE_HEADER;
	return paygw_http_add_header(req, "Content-Type", "application/json", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "DPAY_CLIENT", account->merchant_id, false, err) &&
		paygw_http_add_header(req, SIGNATURE_HEADER, signature, false, err);
}

static bool
obmenka_parse_create(PaygwAccount *account, const PaygwCreateRequest *in,
					 PaygwHttpResponse *resp, PaygwCreateResult *out,
					 PaygwError *err)
{
	const PaygwProvider *prov = &paygw_obmenka;
	Jsonb	   *jb;
	long		code;
	char	   *message;
	char	   *link;

	jb = obmenka_reply(account, resp, &code, &message, err);
	if (jb == NULL)
		return false;
	if (message != NULL || code != 0)
	{
		/* create: the payment_id is taken; process: the invoice is final */
		if (code == 409 && in->step == 0)
		{
			out->duplicate = true;
			return true;
		}
		if (code == 409)
		{
			out->response = jb; /* kept: it says why there is no pay link */
			return true;
		}
		return paygw_create_reply_error(prov, resp, code, message, err);
	}
	if (in->step == 0)
	{
		if (!paygw_reply_field(prov, &jb->root, "tracking", &out->payment_id, err) ||
			!paygw_create_require_id(prov, out, "tracking", err))
			return false;
		paygw_create_set_status(obmenka_statuses, "CREATED", out);
	}
	else
	{
		if (!paygw_reply_field(prov, &jb->root, "pay_form", &out->pay_url, err) ||
			!paygw_reply_field(prov, &jb->root, "pay_link", &link, err))
			return false;
		if (out->pay_url == NULL)
			out->pay_url = link;
		if (paygw_json_get(&jb->root, "status") != NULL &&
			!paygw_create_status(prov, obmenka_statuses, &jb->root, "status", out, err))
			return false;
	}
	out->response = jb;
	return true;
}

static const PaygwCreateSpec obmenka_create = {
	.options = obmenka_create_options,
	.steps = 2,
	.step_names = (const char *const[]) {"create", "process"},
	.order_max_chars = 255,
	.check_currency = obmenka_check_currency,
	.build = obmenka_build_create,
	.parse = obmenka_parse_create,
};

const PaygwProvider paygw_obmenka = {
	.name = "obmenka",
	.default_base_url = "https://acquiring_api.obmenka.ua",
	.auth_scheme = "salted md5/sha1 body signature (DPAY_SECURE), signed replies",
	.id_name = "tracking",
	.order_name = "payment_id",
	.option_keys = obmenka_options,
	.sign = obmenka_sign,
	.check_account = obmenka_check_account,
	.check_id = obmenka_check_id,
	.build_request = obmenka_build_request,
	.parse_reply = obmenka_parse_reply,
	.webhook_signed = false,
	.parse_webhook = obmenka_parse_webhook,
	.create = &obmenka_create,
};
