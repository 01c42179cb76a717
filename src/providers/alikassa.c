/*-------------------------------------------------------------------------
 *
 * alikassa.c
 *		AliKassa: POST /v1/payment/status with a JSON body, signed with the
 *		merchant's RSA private key the way PHP's openssl_sign() does (PKCS#1
 *		v1.5, SHA-1 by default; options {"digest":"sha256"} for accounts set
 *		up with the newer samples), sent base64-encoded in the Sign header.
 *
 * Notifications arrive as GET query parameters with a "sign" parameter: a
 * base64 RSA PKCS#1 v1.5 signature, made with AliKassa's notification key,
 * over an 11-key JSON object built from the other parameters and encoded as
 * PHP's json_encode() does.  The account's webhook_key holds AliKassa's
 * public key (PEM; not a secret, stored as given).  PHP signs with SHA-1 by
 * default and newer samples use SHA-256: either verifies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

static const PaygwStatusMap alikassa_statuses[] = {
	{"wait", PAYGW_STATUS_PENDING},
	{"paid", PAYGW_STATUS_PAID},
	{"cancel", PAYGW_STATUS_CANCELLED},
	{"fail", PAYGW_STATUS_FAILED},
	{NULL, PAYGW_STATUS_PENDING}
};

static const char *const alikassa_options[] = {"digest", NULL};

/* merchant_id is the account uuid; the secret must load as an RSA key */
static bool
alikassa_check_account(PaygwAccount *account, PaygwError *err)
{
	if (!paygw_is_uuid(account->merchant_id))
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"alikassa merchant_id must be the account UUID");
		paygw_error_hint(err, "It looks like 93d5df06-996c-48c3-9847-348d6b580b80.");
		return false;
	}
	if (strcmp(account->digest, "sha1") != 0 && strcmp(account->digest, "sha256") != 0)
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "alikassa option \"digest\" must be \"sha1\" or \"sha256\"");
	return paygw_rsa_check_key(account->secret, account->secret_password, err);
}

static bool
alikassa_check_id(PaygwLookup lookup, const char *id, PaygwError *err)
{
	return paygw_check_id_text(&paygw_alikassa, lookup, id, 128, err);
}

/* Sign: base64 RSA PKCS#1 v1.5 signature over the body */
static char *
alikassa_sign(PaygwAccount *account, const char *message, size_t len,
			  PaygwError *err)
{
	char	   *signature;

	if (!paygw_rsa_sign_base64(account->secret, account->secret_password,
							   strcmp(account->digest, "sha256") == 0 ? PAYGW_SHA256 : PAYGW_SHA1,
							   message, len, &signature, err))
		return NULL;
	return signature;
}

static bool
alikassa_build_request(PaygwAccount *account, PaygwLookup lookup,
					   const char *id, PaygwHttpRequest *req, PaygwError *err)
{
	char	   *body;
	char	   *signature;

	body = paygw_json_body(lookup == PAYGW_LOOKUP_ID ? "id" : "order_id", id);
	signature = alikassa_sign(account, body, strlen(body), err);
	if (signature == NULL)
		return false;

	req->method = "POST";
	req->url = psprintf("%s/v1/payment/status", account->base_url);
	req->body = body;
	req->body_len = strlen(body);
	return paygw_http_add_header(req, "Content-Type", "application/json", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "Account", account->merchant_id, false, err) &&
		paygw_http_add_header(req, "Sign", signature, false, err);
}

/*
 * AliKassa validates ids with Laravel's "exists" rule, so an id or order_id
 * it does not know comes back as a validation error on that field:
 * {"message":"The given data was invalid.",
 *  "errors":{"id":["The selected id is invalid."]}}.
 * Returns the text of such an error about field (the one that was sent),
 * or NULL when the reply says nothing of the kind.  Other validation errors,
 * even about the same field ("The id must be a string."), are not this one.
 */
static char *
unknown_id_error(JsonbContainer *root, const char *field)
{
	JsonbContainer *errors;
	JsonbContainer *texts;

	errors = paygw_json_container(paygw_json_get(root, "errors"), true);
	if (errors == NULL)
		return NULL;
	texts = paygw_json_container(paygw_json_get(errors, field), false);
	if (texts == NULL)
		return NULL;
	for (uint32 i = 0; i < JsonContainerSize(texts); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(texts, i);
		const char *prefix = "The selected ";
		const char *suffix = " is invalid.";
		size_t		plen = strlen(prefix);
		size_t		slen = strlen(suffix);
		size_t		len;

		if (v == NULL || v->type != jbvString)
			continue;
		len = v->val.string.len;
		if (len > plen + slen &&
			strncmp(v->val.string.val, prefix, plen) == 0 &&
			strncmp(v->val.string.val + len - slen, suffix, slen) == 0)
			return pnstrdup(v->val.string.val, len);
	}
	return NULL;
}

static bool
alikassa_parse_reply(PaygwAccount *account, PaygwLookup lookup, const char *id,
					 PaygwHttpResponse *resp, PaygwStatusResult *result,
					 PaygwError *err)
{
	const PaygwProvider *prov = &paygw_alikassa;
	Jsonb	   *jb;
	char	   *service;

	(void) account;
	jb = paygw_reply_json(prov, resp, err);
	if (jb == NULL)
		return false;

	if (resp->status >= 300 || paygw_json_get(&jb->root, "payment_status") == NULL)
	{
		char	   *message;
		char	   *unknown;

		/*
		 * An unknown id is this gateway's way of saying "not found": passed
		 * on as a not-found code of the body (HTTP 401/403 still win)
		 */
		unknown = unknown_id_error(&jb->root, lookup == PAYGW_LOOKUP_ID ? "id" : "order_id");
		if (unknown != NULL)
			return paygw_reply_error(prov, resp->status, 404, unknown, err);

		if (!paygw_reply_field(prov, &jb->root, "message", &message, err))
			return false;
		if (resp->status < 300 && message == NULL)
			return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
								   "malformed reply from the alikassa gateway: no \"payment_status\" string");
		return paygw_reply_error(prov, resp->status, 0, message, err);
	}

	if (!paygw_reply_field(prov, &jb->root, "id", &result->payment_id, err) ||
		!paygw_reply_field(prov, &jb->root, "order_id", &result->order_id, err) ||
		!paygw_reply_matches(prov, lookup == PAYGW_LOOKUP_ID ? "id" : "order_id",
							 lookup == PAYGW_LOOKUP_ID ? result->payment_id : result->order_id,
							 id, false, err) ||
		!paygw_reply_status(prov, alikassa_statuses, &jb->root, "payment_status", result, err) ||
		!paygw_reply_amount(prov, &jb->root, "amount", 0, result, err) ||
		!paygw_reply_field(prov, &jb->root, "service_code", &service, err))
		return false;

	/* the status reply has no currency; the service code ends with it */
	result->currency = paygw_currency_suffix(service, '_');
	if (!paygw_reply_field(prov, &jb->root, "url", &result->pay_url, err))
		return false;
	result->response = jb;
	return true;
}

/* the notification keys, in the order they are signed */
static const char *const notification_keys[] = {
	"type", "id", "order_id", "payment_status", "amount", "payment_amount",
	"commission_amount", "is_partial_payment", "account", "service", "desc",
	NULL
};

/* webhook_key: AliKassa's notification public key, PEM */
static bool
alikassa_check_webhook_key(PaygwAccount *account, PaygwError *err)
{
	if (paygw_rsa_check_public_key(account->webhook_key, err))
		return true;
	paygw_error_hint(err, "alikassa webhook_key is AliKassa's notification public key, in PEM.");
	return false;
}

/* Is s a non-empty string of decimal digits? */
static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/*
 * The signed message of a notification: the object of notification_keys
 * with the query's values -- id as a bare integer, the others as strings,
 * a missing one as null -- as PHP's json_encode() writes it.  NULL with err
 * filled when id is missing or not an integer, or a value is not UTF-8.
 * *id gets the id in canonical form (no leading zeros).
 */
static char *
notification_message(const PaygwWebhookRequest *req, char **id, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_alikassa;
	size_t		qlen = strlen(req->query);
	StringInfoData msg;

	initStringInfo(&msg);
	appendStringInfoChar(&msg, '{');
	for (int i = 0; notification_keys[i] != NULL; i++)
	{
		const char *key = notification_keys[i];
		char	   *value;

		if (!paygw_form_param(prov, req->query, qlen, key, &value, err))
			return NULL;
		if (i > 0)
			appendStringInfoChar(&msg, ',');
		(void) paygw_json_append_string(&msg, key, strlen(key), true);
		appendStringInfoChar(&msg, ':');
		if (strcmp(key, "id") == 0)
		{
			if (value == NULL || !all_digits(value) || strlen(value + strspn(value, "0")) > 18)
			{
				paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
								value == NULL ? "alikassa notification has no id"
								: "alikassa notification id is not an integer");
				return NULL;
			}
			/* an integer in PHP: no leading zeros */
			*id = value[strspn(value, "0")] ? pstrdup(value + strspn(value, "0")) : pstrdup("0");
			appendStringInfoString(&msg, *id);
		}
		else if (value == NULL)
			appendStringInfoString(&msg, "null");
		else
			(void) paygw_json_append_string(&msg, value, strlen(value), true);
	}
	appendStringInfoChar(&msg, '}');
	return msg.data;
}

/*
 * An AliKassa notification (GET query parameters): the signature must
 * verify under the account's webhook_key with SHA-1 or SHA-256; it names
 * the payment by id and order_id, and its payment_status is the event.
 */
static bool
alikassa_parse_webhook(PaygwAccount *account, const PaygwWebhookRequest *req,
					   PaygwWebhookInfo *info, PaygwError *err)
{
	const PaygwProvider *prov = &paygw_alikassa;
	char	   *message;
	char	   *id = NULL;
	char	   *sign;
	char	   *order_id;
	uint8	   *sig;
	size_t		siglen;
	bool		valid = false;

	memset(info, 0, sizeof(PaygwWebhookInfo));
	if (account->webhook_key == NULL)
		return paygw_webhook_no_key(prov, account, err);
	if (req->query == NULL || req->query[0] == '\0')
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
						"alikassa notification has no query string");
		paygw_error_detail(err, "AliKassa sends notifications as GET query parameters.");
		return false;
	}
	message = notification_message(req, &id, err);
	if (message == NULL ||
		!paygw_form_param(prov, req->query, strlen(req->query), "sign", &sign, err) ||
		!paygw_form_param(prov, req->query, strlen(req->query), "order_id", &order_id, err) ||
		!paygw_form_param(prov, req->query, strlen(req->query), "payment_status", &info->event, err))
		return false;
	if (sign == NULL || sign[0] == '\0')
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
						"alikassa notification is not signed");
		paygw_error_detail(err, "It has no sign parameter.");
		return false;
	}

	/*
	 * A '+' of the base64 text arrives as a space when the sender did not
	 * percent-encode it; no space is ever part of base64.
	 */
	for (char *p = sign; *p; p++)
		if (*p == ' ')
			*p = '+';
	if (!paygw_base64_decode(sign, &sig, &siglen) || siglen == 0)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
						"alikassa notification signature is not base64");
		return false;
	}
	if (!paygw_rsa_verify(account->webhook_key, PAYGW_SHA1, message, strlen(message),
						  sig, siglen, &valid, err))
		return false;
	if (!valid &&
		!paygw_rsa_verify(account->webhook_key, PAYGW_SHA256, message, strlen(message),
						  sig, siglen, &valid, err))
		return false;
	if (!valid)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
						"alikassa notification signature does not verify");
		paygw_error_detail(err, "The sign parameter is not an RSA signature (SHA-1 or SHA-256) of the notification's fields under the account's webhook_key.");
		paygw_error_hint(err, "webhook_key must be AliKassa's notification public key, not the merchant's own key.");
		return false;
	}

	if (!paygw_webhook_id(prov, PAYGW_LOOKUP_ID, id, &info->payment_id, err) ||
		!paygw_webhook_id(prov, PAYGW_LOOKUP_ORDER, order_id, &info->order_id, err))
		return false;
	info->verified = true;
	return true;
}

/*
 * Creating: POST /v1/payment, JSON, signed like the status call.  There is
 * no currency field: the service code (payment_card_rub) implies it, so a
 * currency given must agree with the service.  A taken order_id (Laravel's
 * "has already been taken") is a duplicate.
 */
static const PaygwOption alikassa_create_options[] = {
	{"service", PAYGW_OPT_TEXT, true, 0, 64},
	{"customer_ip", PAYGW_OPT_IP, true, 0, 0},
	{"customer_browser_user_agent", PAYGW_OPT_TEXT, true, 0, 1024},
	{"desc", PAYGW_OPT_TEXT, false, 0, 255},
	{"lifetime", PAYGW_OPT_INT, false, 900, 3600},
	{"customer_email", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_phone", PAYGW_OPT_TEXT, false, 0, 64},
	{"customer_first_name", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_last_name", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_middle_name", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_country", PAYGW_OPT_TEXT, false, 0, 64},
	{"customer_city", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_address", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_zip", PAYGW_OPT_TEXT, false, 0, 32},
	{"customer_user_id", PAYGW_OPT_TEXT, false, 0, 255},
	{"customer_birthday", PAYGW_OPT_TEXT, false, 0, 32},
	{"success_redirect_url", PAYGW_OPT_URL, false, 0, 0},
	{"fail_redirect_url", PAYGW_OPT_URL, false, 0, 0},
	{"notification_endpoint_url", PAYGW_OPT_URL, false, 0, 0},
	{"success_redirect_id", PAYGW_OPT_INT, false, 1, PG_INT32_MAX},
	{"fail_redirect_id", PAYGW_OPT_INT, false, 1, PG_INT32_MAX},
	{"notification_endpoint_id", PAYGW_OPT_INT, false, 1, PG_INT32_MAX},
	{NULL}
};

static bool
alikassa_check_currency(PaygwCreateRequest *in, char **iso, PaygwError *err)
{
	char	   *service = paygw_create_text(in, "service");

	*iso = paygw_currency_suffix(service, '_');
	if (in->currency == NULL || (*iso != NULL && pg_strcasecmp(*iso, in->currency) == 0))
	{
		in->currency = NULL;	/* never sent */
		return true;
	}
	paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER,
					"alikassa currency \"%s\" does not agree with service \"%s\"",
					in->currency, service);
	paygw_error_detail(err, "AliKassa has no currency field: the service code implies it.");
	paygw_error_hint(err, "Give NULL, or the currency the service code ends with.");
	return false;
}

static bool
alikassa_build_create(PaygwAccount *account, const PaygwCreateRequest *in,
					  PaygwHttpRequest *req, PaygwError *err)
{
	StringInfoData body;
	char	   *signature;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"amount\":\"%s\",\"order_id\":", in->amount);
	escape_json(&body, in->order_id);
	paygw_create_append_json(&body, in, NULL);
	appendStringInfoChar(&body, '}');
	signature = alikassa_sign(account, body.data, body.len, err);
	if (signature == NULL)
		return false;

	req->method = "POST";
	req->url = psprintf("%s/v1/payment", account->base_url);
	req->body = body.data;
	req->body_len = body.len;
	return paygw_http_add_header(req, "Content-Type", "application/json", false, err) &&
		paygw_http_add_header(req, "Accept", "application/json", false, err) &&
		paygw_http_add_header(req, "Account", account->merchant_id, false, err) &&
		paygw_http_add_header(req, "Sign", signature, false, err);
}

/* The first validation message of a Laravel error reply, or NULL. */
static char *
first_error(JsonbContainer *root, bool *order_taken)
{
	JsonbContainer *errors = paygw_json_container(paygw_json_get(root, "errors"), true);
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	char	   *first = NULL;
	char	   *key = NULL;

	*order_taken = false;
	if (errors == NULL)
		return NULL;
	it = JsonbIteratorInit(errors);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbContainer *texts;
		JsonbValue *text;

		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		if (tok != WJB_VALUE || (texts = paygw_json_container(&v, false)) == NULL)
			continue;
		text = getIthJsonbValueFromContainer(texts, 0);
		if (text == NULL || text->type != jbvString)
			continue;
		if (strcmp(key, "order_id") == 0 &&
			strstr(pnstrdup(text->val.string.val, text->val.string.len), "already been taken"))
			*order_taken = true;
		if (first == NULL)
			first = pnstrdup(text->val.string.val, text->val.string.len);
	}
	return first;
}

static bool
alikassa_parse_create(PaygwAccount *account, const PaygwCreateRequest *in,
					  PaygwHttpResponse *resp, PaygwCreateResult *out,
					  PaygwError *err)
{
	const PaygwProvider *prov = &paygw_alikassa;
	Jsonb	   *jb;
	char	   *lifetime;

	(void) account;
	jb = paygw_reply_json(prov, resp, err);
	if (jb == NULL)
		return false;
	if (resp->status >= 300 || paygw_json_get(&jb->root, "payment_status") == NULL)
	{
		bool		taken;
		char	   *message = first_error(&jb->root, &taken);

		if (taken)
		{
			out->duplicate = true;
			return true;
		}
		if (message == NULL && !paygw_reply_field(prov, &jb->root, "message", &message, err))
			return false;
		if (resp->status < 300 && message == NULL)
			return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
								   "malformed reply from the alikassa gateway: no \"payment_status\" string");
		return paygw_create_reply_error(prov, resp, 0, message, err);
	}
	if (!paygw_reply_field(prov, &jb->root, "id", &out->payment_id, err) ||
		!paygw_create_require_id(prov, out, "id", err) ||
		!paygw_reply_field(prov, &jb->root, "url", &out->pay_url, err) ||
		!paygw_create_status(prov, alikassa_statuses, &jb->root, "payment_status", out, err))
		return false;
	lifetime = paygw_create_text(in, "lifetime");
	if (lifetime != NULL)
		out->expires_in_s = strtol(lifetime, NULL, 10);
	out->response = jb;
	return true;
}

static const PaygwCreateSpec alikassa_create = {
	.options = alikassa_create_options,
	.steps = 1,
	.step_names = (const char *const[]) {"create"},
	.order_max_chars = 128,
	.check_currency = alikassa_check_currency,
	.build = alikassa_build_create,
	.parse = alikassa_parse_create,
};

const PaygwProvider paygw_alikassa = {
	.name = "alikassa",
	.default_base_url = "https://api-merchant.alikassa.com",
	.auth_scheme = "RSA PKCS#1 v1.5 body signature (Sign), SHA-1 by default",
	.id_name = "id",
	.order_name = "order_id",
	.option_keys = alikassa_options,
	.secret_password = true,
	.sign = alikassa_sign,
	.check_account = alikassa_check_account,
	.check_id = alikassa_check_id,
	.build_request = alikassa_build_request,
	.parse_reply = alikassa_parse_reply,
	.webhook_signed = true,
	.parse_webhook = alikassa_parse_webhook,
	.check_webhook_key = alikassa_check_webhook_key,
	.webhook_key_secret = false,
	.create = &alikassa_create,
};
