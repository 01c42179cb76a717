/*-------------------------------------------------------------------------
 *
 * common.c
 *		The provider registry and the helpers the four providers share:
 *		id checks, JSON request bodies, and the common shape of reply
 *		interpretation (JSON or not, error classification, typed fields).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "providers/provider.h"

const PaygwProvider *const paygw_providers[] = {
	&paygw_okepay,
	&paygw_obmenka,
	&paygw_alikassa,
	&paygw_morune,
};
const int	paygw_provider_count = lengthof(paygw_providers);

/* The provider named name (exact, lower-case), or NULL. */
const PaygwProvider *
paygw_provider_find(const char *name)
{
	for (int i = 0; i < paygw_provider_count; i++)
		if (strcmp(paygw_providers[i]->name, name) == 0)
			return paygw_providers[i];
	return NULL;
}

/*
 * The provider named name, or NULL with err filled: a NULL name, or one no
 * provider has (the hint lists those there are).
 */
const PaygwProvider *
paygw_provider_lookup(const char *name, PaygwError *err)
{
	const PaygwProvider *prov = name ? paygw_provider_find(name) : NULL;

	if (prov != NULL)
		return prov;
	if (name == NULL)
		paygw_set_error(err, PAYGW_ERR_UNKNOWN_PROVIDER, "provider must not be null");
	else
		paygw_set_error(err, PAYGW_ERR_UNKNOWN_PROVIDER, "unknown payment provider \"%s\"", name);
	paygw_error_hint(err, "Supported providers: %s.", paygw_provider_names());
	return NULL;
}

/* "okepay, obmenka, alikassa, morune", palloc'd, for hints. */
char *
paygw_provider_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < paygw_provider_count; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", paygw_providers[i]->name);
	return buf.data;
}

/* Names of the providers whose accounts take a secret_password, for a message. */
char *
paygw_provider_names_with_password(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < paygw_provider_count; i++)
		if (paygw_providers[i]->secret_password)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", paygw_providers[i]->name);
	return buf.data;
}

/* Is s a UUID in its canonical 8-4-4-4-12 hexadecimal form? */
bool
paygw_is_uuid(const char *s)
{
	static const int groups[] = {8, 4, 4, 4, 12};

	for (size_t g = 0; g < lengthof(groups); g++)
	{
		for (int i = 0; i < groups[g]; i++, s++)
			if (!isxdigit((unsigned char) *s))
				return false;
		if (g < lengthof(groups) - 1 && *s++ != '-')
			return false;
	}
	return *s == '\0';
}

/* Does s contain a control character (which would break a header line)? */
bool
paygw_has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/*
 * Common checks for an id of free-form text: not empty and at most max_chars
 * characters.
 */
bool
paygw_check_id_text(const PaygwProvider *prov, PaygwLookup lookup,
					const char *id, int max_chars, PaygwError *err)
{
	const char *what = lookup == PAYGW_LOOKUP_ID ? prov->id_name : prov->order_name;

	if (id[0] == '\0')
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "%s %s must not be empty",
							   prov->name, what);
	if (pg_mbstrlen(id) > max_chars)
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "%s %s must be at most %d characters long",
							   prov->name, what, max_chars);
	return true;
}

/* The error for a gateway without a lookup by the merchant's order id. */
bool
paygw_unsupported_lookup(const PaygwProvider *prov, PaygwError *err)
{
	paygw_set_error(err, PAYGW_ERR_UNSUPPORTED,
					"%s has no lookup by order id", prov->name);
	paygw_error_hint(err, "Use paygw_status('%s', id) with the gateway's own %s.",
					 prov->name, prov->id_name);
	return false;
}

/*
 * A compact JSON object with one string member: {"key":"value"}.  value is
 * escaped by PostgreSQL's JSON escaper, so no character of it can change the
 * document's structure.
 */
char *
paygw_json_body(const char *key, const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	escape_json(&buf, key);
	appendStringInfoChar(&buf, ':');
	escape_json(&buf, value);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The reply body as a JSON object.  A body that is not a JSON object becomes
 * a gateway error when the HTTP status says the gateway failed (a proxy's
 * HTML error page, say), and a malformed-reply error otherwise.
 */
Jsonb *
paygw_reply_json(const PaygwProvider *prov, PaygwHttpResponse *resp,
				 PaygwError *err)
{
	Jsonb	   *jb = paygw_json_parse(resp->body, resp->body_len, err);

	if (jb != NULL && JB_ROOT_IS_OBJECT(jb))
		return jb;
	if (resp->status >= 400)
	{
		paygw_set_error(err, PAYGW_ERR_GATEWAY, "%s gateway answered HTTP %ld",
						prov->name, resp->status);
		paygw_error_detail(err, "The reply body is not the documented JSON.");
		return NULL;
	}
	if (jb != NULL)
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply is not a JSON object");
	/* prefix the parser's message with the provider for context */
	{
		char		msg[PAYGW_ERROR_TEXT_LEN];

		strlcpy(msg, err->message, sizeof(msg));
		snprintf(err->message, sizeof(err->message), "malformed reply from the %s gateway: %s",
				 prov->name, msg);
	}
	return NULL;
}

/* Copy a gateway's message for a detail line: bounded, control chars blanked. */
static void
quote_gateway_message(PaygwError *err, const char *message)
{
	char		clean[160];
	int			len;

	if (message == NULL || message[0] == '\0')
		return;
	/* cut at a character boundary */
	len = pg_mbcliplen(message, strlen(message), sizeof(clean) - 1);
	for (int i = 0; i < len; i++)
		clean[i] = ((unsigned char) message[i] < 0x20) ? ' ' : message[i];
	clean[len] = '\0';
	paygw_error_detail(err, "The gateway said: %s", clean);
}

/* Case-insensitive (ASCII) substring test. */
static bool
contains_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);

	if (haystack == NULL)
		return false;
	for (const char *p = haystack; *p; p++)
		if (pg_strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

/*
 * Classify an error reply.  http_status is the HTTP code, body_code a code the
 * gateway put in the body (0 if none), message its text (may be NULL).
 * Credentials rejected at the HTTP level win; then "not found" in any form;
 * then credential codes in the body; everything else is a gateway error.
 * Always returns false.
 */
bool
paygw_reply_error(const PaygwProvider *prov, long http_status, long body_code,
				  const char *message, PaygwError *err)
{
	if (http_status == 401 || http_status == 403)
		paygw_set_error(err, PAYGW_ERR_AUTH_REJECTED,
						"%s gateway rejected the credentials or the signature", prov->name);
	else if (http_status == 404 || body_code == 404 ||
			 contains_ci(message, "not found") || contains_ci(message, "не найден") ||
			 (message && pg_strncasecmp(message, "no ", 3) == 0 && contains_ci(message, " found")))
		paygw_set_error(err, PAYGW_ERR_NOT_FOUND, "payment not found at the %s gateway", prov->name);
	else if (body_code == 401 || body_code == 403)
		paygw_set_error(err, PAYGW_ERR_AUTH_REJECTED,
						"%s gateway rejected the credentials or the signature", prov->name);
	else if (http_status >= 500 || body_code >= 500)
		paygw_set_error(err, PAYGW_ERR_GATEWAY, "%s gateway reported a server error (HTTP %ld)",
						prov->name, http_status);
	else
		paygw_set_error(err, PAYGW_ERR_GATEWAY, "%s gateway refused the request (HTTP %ld)",
						prov->name, http_status);
	quote_gateway_message(err, message);
	return false;
}

/* A scalar field as text (NULL when absent or null); an object is an error. */
bool
paygw_reply_field(const PaygwProvider *prov, JsonbContainer *obj,
				  const char *key, char **out, PaygwError *err)
{
	if (paygw_json_text(paygw_json_get(obj, key), out))
		return true;
	paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
					"malformed reply from the %s gateway: field \"%s\" has the wrong type",
					prov->name, key);
	return false;
}

/*
 * The status field: must be a non-empty string; mapped through map.
 */
bool
paygw_reply_status(const PaygwProvider *prov, const PaygwStatusMap *map,
				   JsonbContainer *obj, const char *key,
				   PaygwStatusResult *result, PaygwError *err)
{
	JsonbValue *v = paygw_json_get(obj, key);

	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
		return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
							   "malformed reply from the %s gateway: no \"%s\" string",
							   prov->name, key);
	result->provider_status = pnstrdup(v->val.string.val, v->val.string.len);
	result->status_known = paygw_status_lookup(map, result->provider_status, &result->status);
	return true;
}

/* The amount field (see paygw_json_amount). */
bool
paygw_reply_amount(const PaygwProvider *prov, JsonbContainer *obj,
				   const char *key, int minor_digits,
				   PaygwStatusResult *result, PaygwError *err)
{
	if (paygw_json_amount(paygw_json_get(obj, key), minor_digits,
						  &result->amount, &result->amount_isnull))
		return true;
	return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
						   "malformed reply from the %s gateway: \"%s\" is not a decimal amount",
						   prov->name, key);
}

/*
 * A reply must describe the payment that was asked for: when it names one
 * (got != NULL), it must be the requested one.  Guards against a gateway or
 * a proxy answering for another payment.
 */
bool
paygw_reply_matches(const PaygwProvider *prov, const char *field,
					const char *got, const char *wanted, bool case_insensitive,
					PaygwError *err)
{
	if (got == NULL)
		return true;
	if (case_insensitive ? pg_strcasecmp(got, wanted) == 0 : strcmp(got, wanted) == 0)
		return true;
	paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
					"reply from the %s gateway describes a different payment", prov->name);
	paygw_error_detail(err, "Its \"%s\" does not match the one requested.", field);
	return false;
}

/*
 * An ISO currency code taken from the end of a method code such as
 * "visamaster.uah" or "payment_card_rub": the part after the last separator,
 * upper-cased, when it is three letters.  NULL otherwise.
 */
char *
paygw_currency_suffix(const char *code, char separator)
{
	const char *p;
	char	   *iso;

	if (code == NULL)
		return NULL;
	p = strrchr(code, separator);
	p = p ? p + 1 : code;
	if (strlen(p) != 3 || !isalpha((unsigned char) p[0]) ||
		!isalpha((unsigned char) p[1]) || !isalpha((unsigned char) p[2]))
		return NULL;
	iso = pstrdup(p);
	for (char *q = iso; *q; q++)
		*q = pg_ascii_toupper((unsigned char) *q);
	return iso;
}
