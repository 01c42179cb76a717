/*-------------------------------------------------------------------------
 *
 * morune.c
 *		Morune (a white-label Enot.io): GET /invoice/info?shop_id=..&
 *		invoice_id=.. (or order_id=..), authenticated by the x-api-key header.
 *
 * Webhooks are JSON bodies signed in the x-api-sha256-signature header:
 * lower-case hex HMAC-SHA256, keyed with the shop's additional key (the
 * account's webhook_key, a secret sealed at rest), over the body
 * re-serialized with its top-level keys sorted (see webhook_json.c).  Enot's
 * own documentation and its PHP SDK disagree on escaping '/' and non-ASCII
 * characters, so both forms are accepted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

#define SIGNATURE_HEADER "x-api-sha256-signature"

static const PaygwStatusMap morune_statuses[] = {
	{"created", PAYGW_STATUS_PENDING},
	{"success", PAYGW_STATUS_PAID},
	{"fail", PAYGW_STATUS_FAILED},
	{"expired", PAYGW_STATUS_EXPIRED},
	{"refund", PAYGW_STATUS_REFUNDED},
	{NULL, PAYGW_STATUS_PENDING}
};

static const char *const morune_options[] = {NULL};

/* shop_id is a uuid; the API key goes into a header line */
static bool
morune_check_account(PaygwAccount *account, PaygwError *err)
{
	if (!paygw_is_uuid(account->merchant_id))
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"morune merchant_id must be the shop_id UUID");
		paygw_error_hint(err, "It looks like 3fa85f64-5717-4562-b3fc-2c963f66afa6.");
		return false;
	}
	if (paygw_has_control_chars(account->secret) || strchr(account->secret, ' ') != NULL)
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "morune API key must not contain spaces or control characters");
	return true;
}

static bool
morune_check_id(PaygwLookup lookup, const char *id, PaygwError *err)
{
	if (lookup == PAYGW_LOOKUP_ORDER)
		return paygw_check_id_text(&paygw_morune, lookup, id, 255, err);
	if (id[0] == '\0')
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "morune invoice_id must not be empty");
	if (!paygw_is_uuid(id))
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "morune invoice_id must be a UUID");
	return true;
}

/*
 * Status calls are not signed; this is the webhook signature
 * (x-api-sha256-signature): lower-case hex HMAC-SHA256 keyed with the shop's
 * additional key over the body as sent.
 */
static char *
morune_sign(PaygwAccount *account, const char *message, size_t len,
			PaygwError *err)
{
	return paygw_hmac_sha256_text(account->secret, message, len, true, err);
}

/* invoice ids are UUIDs: lower case */
static char *
morune_canonical_id(PaygwLookup lookup, const char *id)
{
	char	   *s = pstrdup(id);

	if (lookup == PAYGW_LOOKUP_ID)
		for (char *p = s; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
	return s;
}

static bool
morune_build_request(PaygwAccount *account, PaygwLookup lookup, const char *id,
					 PaygwHttpRequest *req, PaygwError *err)
{
	StringInfoData url;

	initStringInfo(&url);
	appendStringInfo(&url, "%s/invoice/info?shop_id=", account->base_url);
	paygw_append_form_encoded(&url, account->merchant_id);
	appendStringInfoString(&url, lookup == PAYGW_LOOKUP_ID ? "&invoice_id=" : "&order_id=");
	paygw_append_form_encoded(&url, id);

	req->method = "GET";
	req->url = url.data;
	return paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "x-api-key", account->secret, true, err);
}

/*
 * A reply's "data" object.  An error reply (no data object, status_check
 * false, or an HTTP failure) gives NULL with *message and *code the
 * gateway's; a malformed one NULL with *jb NULL and err set.
 */
static JsonbContainer *
morune_reply_data(PaygwHttpResponse *resp, Jsonb **jb, char **message,
				  long *code, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_morune;
	JsonbContainer *data;
	char	   *check;
	char	   *code_text;

	*message = NULL;
	*code = 0;
	*jb = paygw_reply_json(prov, resp, err);
	if (*jb == NULL)
		return NULL;
	data = paygw_json_container(paygw_json_get(&(*jb)->root, "data"), true);
	if (!paygw_reply_field(prov, &(*jb)->root, "status_check", &check, err))
	{
		*jb = NULL;
		return NULL;
	}
	if (data != NULL && resp->status < 300 && !(check && strcmp(check, "false") == 0))
		return data;
	if (!paygw_reply_field(prov, &(*jb)->root, "error", message, err) ||
		!paygw_reply_field(prov, &(*jb)->root, "status", &code_text, err))
	{
		*jb = NULL;
		return NULL;
	}
	*code = code_text ? strtol(code_text, NULL, 10) : 0;
	return NULL;
}

static bool
morune_parse_reply(PaygwAccount *account, PaygwLookup lookup, const char *id,
				   PaygwHttpResponse *resp, PaygwStatusResult *result,
				   PaygwError *err)
{
	const PaygwProvider *prov = &paygw_morune;
	Jsonb	   *jb;
	JsonbContainer *data;
	char	   *message;
	long		code;

	(void) account;
	data = morune_reply_data(resp, &jb, &message, &code, err);
	if (jb == NULL)
		return false;
	if (data == NULL)
		return paygw_reply_error(prov, resp->status, code, message, err);

	if (!paygw_reply_field(prov, data, "invoice_id", &result->payment_id, err) ||
		!paygw_reply_field(prov, data, "order_id", &result->order_id, err) ||
		!paygw_reply_matches(prov, lookup == PAYGW_LOOKUP_ID ? "invoice_id" : "order_id",
							 lookup == PAYGW_LOOKUP_ID ? result->payment_id : result->order_id,
							 id, lookup == PAYGW_LOOKUP_ID, err) ||
		!paygw_reply_status(prov, morune_statuses, data, "status", result, err) ||
		!paygw_reply_amount(prov, data, "invoice_amount", 0, result, err) ||
		!paygw_reply_field(prov, data, "currency", &result->currency, err))
		return false;
	result->response = jb;
	return true;
}

/* the additional key is used as an HMAC key: any text, but one line */
static bool
morune_check_webhook_key(PaygwAccount *account, PaygwError *err)
{
	if (account->webhook_key[0] == '\0')
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "morune webhook_key must not be empty");
	if (paygw_has_control_chars(account->webhook_key))
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "morune webhook_key must not contain control characters");
	return true;
}

/*
 * Does given (the header's hex) match the HMAC of the body sorted and
 * escaped one way or the other?  false with err filled when the body is not
 * a JSON object or the HMAC cannot be computed.
 */
static bool
morune_signature_matches(PaygwAccount *account, const PaygwWebhookRequest *req,
						 const char *given, bool *matches, PaygwError *err)
{
	*matches = false;
	/* unescaped first, as the documentation's prose says; then as PHP's SDK */
	for (int php = 0; php <= 1 && !*matches; php++)
	{
		char	   *message = paygw_webhook_json_sorted(&paygw_morune, req->body,
														req->body_len, php, err);
		char	   *mac;

		if (message == NULL)
			return false;
		mac = paygw_hmac_sha256_text(account->webhook_key, message, strlen(message),
									 true, err);
		if (mac == NULL)
			return false;
		*matches = paygw_hex_equal_timingsafe(mac, given);
		paygw_wipe_string(mac);
	}
	return true;
}

/*
 * A Morune webhook: the signature must verify; it names the invoice by
 * invoice_id (a UUID, lower-cased as the status call spells it) and the
 * merchant's order_id; its status is kept as the event.
 */
static bool
morune_parse_webhook(PaygwAccount *account, const PaygwWebhookRequest *req,
					 PaygwWebhookInfo *info, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_morune;
	char	   *given;
	bool		matches;
	Jsonb	   *jb;
	char	   *invoice_id;
	char	   *order_id;

	memset(info, 0, sizeof(PaygwWebhookInfo));
	if (account->webhook_key == NULL)
		return paygw_webhook_no_key(prov, account, err);
	if (!paygw_webhook_header(prov, req, SIGNATURE_HEADER, &given, err))
		return false;
	/* the body's form first: a garbled body is not a signature problem */
	if (paygw_webhook_json_sorted(prov, req->body, req->body_len, false, err) == NULL)
		return false;
	if (given == NULL || given[0] == '\0')
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
						"morune webhook is not signed");
		paygw_error_detail(err, "It has no %s header.", SIGNATURE_HEADER);
		return false;
	}
	if (!morune_signature_matches(account, req, given, &matches, err))
		return false;
	if (!matches)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
						"morune webhook signature does not match");
		paygw_error_detail(err, "The %s header is not the HMAC-SHA256 of the body under the account's webhook_key.",
						   SIGNATURE_HEADER);
		paygw_error_hint(err, "webhook_key must be the shop's additional key, not its API key.");
		return false;
	}
	jb = paygw_webhook_json(prov, req, err);
	if (jb == NULL ||
		!paygw_webhook_field(prov, &jb->root, "invoice_id", &invoice_id, err) ||
		!paygw_webhook_field(prov, &jb->root, "order_id", &order_id, err) ||
		!paygw_webhook_field(prov, &jb->root, "status", &info->event, err) ||
		!paygw_webhook_id(prov, PAYGW_LOOKUP_ID, invoice_id, &info->payment_id, err) ||
		!paygw_webhook_id(prov, PAYGW_LOOKUP_ORDER, order_id, &info->order_id, err))
		return false;
	if (info->payment_id == NULL && info->order_id == NULL)
		return paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
							   "morune webhook names no invoice_id or order_id");
	info->verified = true;
	return true;
}

/*
 * Creating: POST /invoice/create, JSON, x-api-key.  currency defaults to
 * RUB at Morune (sent only when given); expire is in minutes, 300 unless
 * given.  "The order id has already been taken." is a duplicate.
 */
#define MORUNE_DEFAULT_EXPIRE_MIN 300

static const PaygwOption morune_create_options[] = {
	{"hook_url", PAYGW_OPT_URL, false, 0, 0},
	{"custom_fields", PAYGW_OPT_JSON_TEXT, false, 0, 500},
	{"comment", PAYGW_OPT_TEXT, false, 0, 1000},
	{"fail_url", PAYGW_OPT_URL, false, 0, 0},
	{"success_url", PAYGW_OPT_URL, false, 0, 0},
	{"expire", PAYGW_OPT_INT, false, 1, 43200},
	{"include_service", PAYGW_OPT_TEXT_ARRAY, false, 0, 0},
	{"exclude_service", PAYGW_OPT_TEXT_ARRAY, false, 0, 0},
	{NULL}
};

static bool
morune_check_currency(PaygwCreateRequest *in, char **iso, PaygwError *err)
{
	static const char *const currencies[] = {"RUB", "USD", "EUR", "UAH", NULL};
	char	   *code;

	if (in->currency == NULL)
	{
		*iso = "RUB";
		return true;
	}
	code = pstrdup(in->currency);
	for (char *p = code; *p; p++)
		*p = pg_ascii_toupper((unsigned char) *p);
	for (const char *const *c = currencies; *c; c++)
		if (strcmp(*c, code) == 0)
		{
			in->currency = code;
			*iso = code;
			return true;
		}
	paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER, "morune currency must be RUB, USD, EUR or UAH");
	return false;
}

static bool
morune_build_create(PaygwAccount *account, const PaygwCreateRequest *in,
					PaygwHttpRequest *req, PaygwError *err)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"amount\":%s,\"order_id\":", in->amount);
	escape_json(&body, in->order_id);
	if (in->currency != NULL)
	{
		appendStringInfoString(&body, ",\"currency\":");
		escape_json(&body, in->currency);
	}
	appendStringInfoString(&body, ",\"shop_id\":");
	escape_json(&body, account->merchant_id);
	paygw_create_append_json(&body, in, NULL);
	appendStringInfoChar(&body, '}');

	req->method = "POST";
	req->url = psprintf("%s/invoice/create", account->base_url);
	req->body = body.data;
	req->body_len = body.len;
	return paygw_http_add_header(req, "Content-Type", "application/json", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "x-api-key", account->secret, true, err);
}

static bool
morune_parse_create(PaygwAccount *account, const PaygwCreateRequest *in,
					PaygwHttpResponse *resp, PaygwCreateResult *out,
					PaygwError *err)
{
	const PaygwProvider *prov = &paygw_morune;
	Jsonb	   *jb;
	JsonbContainer *data;
	char	   *message;
	long		code;
	char	   *expire;

	(void) account;
	data = morune_reply_data(resp, &jb, &message, &code, err);
	if (jb == NULL)
		return false;
	if (data == NULL)
	{
		if (message != NULL && strstr(message, "order id has already been taken") != NULL)
		{
			out->duplicate = true;
			return true;
		}
		return paygw_create_reply_error(prov, resp, code, message, err);
	}
	if (!paygw_reply_field(prov, data, "id", &out->payment_id, err) ||
		!paygw_create_require_id(prov, out, "id", err) ||
		!paygw_reply_field(prov, data, "url", &out->pay_url, err))
		return false;
	out->payment_id = morune_canonical_id(PAYGW_LOOKUP_ID, out->payment_id);
	paygw_create_set_status(morune_statuses, "created", out);
	expire = paygw_create_text(in, "expire");
	out->expires_in_s = (expire ? strtol(expire, NULL, 10) : MORUNE_DEFAULT_EXPIRE_MIN) * 60;
	out->response = jb;
	return true;
}

static const PaygwCreateSpec morune_create = {
	.options = morune_create_options,
	.steps = 1,
	.step_names = (const char *const[]) {"create"},
	.order_max_chars = 255,
	.check_currency = morune_check_currency,
	.build = morune_build_create,
	.parse = morune_parse_create,
};

const PaygwProvider paygw_morune = {
	.name = "morune",
	.default_base_url = "https://api.morune.com",
	.auth_scheme = "API key header (x-api-key) and shop_id",
	.id_name = "invoice_id",
	.order_name = "order_id",
	.option_keys = morune_options,
	.sign = morune_sign,
	.check_account = morune_check_account,
	.canonical_id = morune_canonical_id,
	.check_id = morune_check_id,
	.build_request = morune_build_request,
	.parse_reply = morune_parse_reply,
	.webhook_signed = true,
	.parse_webhook = morune_parse_webhook,
	.check_webhook_key = morune_check_webhook_key,
	.webhook_key_secret = true,
	.create = &morune_create,
};
