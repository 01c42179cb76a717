/*-------------------------------------------------------------------------
 *
 * morune.c
 *		Morune (a white-label Enot.io): GET /invoice/info?shop_id=..&
 *		invoice_id=.. (or order_id=..), authenticated by the x-api-key header.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

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

static bool
morune_parse_reply(PaygwAccount *account, PaygwLookup lookup, const char *id,
				   PaygwHttpResponse *resp, PaygwStatusResult *result,
				   PaygwError *err)
{
	const PaygwProvider *prov = &paygw_morune;
	Jsonb	   *jb;
	JsonbContainer *data;
	char	   *check;

	(void) account;
	jb = paygw_reply_json(prov, resp, err);
	if (jb == NULL)
		return false;

	data = paygw_json_container(paygw_json_get(&jb->root, "data"), true);
	if (!paygw_reply_field(prov, &jb->root, "status_check", &check, err))
		return false;
	if (data == NULL || resp->status >= 300 || (check && strcmp(check, "false") == 0))
	{
		char	   *message;
		char	   *code;

		if (!paygw_reply_field(prov, &jb->root, "error", &message, err) ||
			!paygw_reply_field(prov, &jb->root, "status", &code, err))
			return false;
		return paygw_reply_error(prov, resp->status, code ? strtol(code, NULL, 10) : 0,
								 message, err);
	}

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
};
