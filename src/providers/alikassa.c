/*-------------------------------------------------------------------------
 *
 * alikassa.c
 *		AliKassa: POST /v1/payment/status with a JSON body, signed with the
 *		merchant's RSA private key the way PHP's openssl_sign() does (PKCS#1
 *		v1.5, SHA-1 by default; options {"digest":"sha256"} for accounts set
 *		up with the newer samples), sent base64-encoded in the Sign header.
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
	result->response = jb;
	return true;
}

const PaygwProvider paygw_alikassa = {
	.name = "alikassa",
	.default_base_url = "https://api-merchant.alikassa.com",
	.auth_scheme = "RSA PKCS#1 v1.5 body signature (Sign), SHA-1 by default",
	.id_name = "id",
	.order_name = "order_id",
	.option_keys = alikassa_options,
	.sign = alikassa_sign,
	.check_account = alikassa_check_account,
	.check_id = alikassa_check_id,
	.build_request = alikassa_build_request,
	.parse_reply = alikassa_parse_reply,
};
