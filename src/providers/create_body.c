/*-------------------------------------------------------------------------
 *
 * create_body.c
 *		Helpers the providers share to build create requests from the
 *		options the SQL layer checked: option lookup, compact JSON and PHP's
 *		http_build_query encoding of the values, and reading a create
 *		call's error reply.
 *
 * By the time a provider sees them, option values are normalized (see
 * create.c): integers and decimals are JSON numbers, JSON_TEXT options are
 * strings holding compact JSON, nulls are gone.  Everything is palloc'd in
 * the call's context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

/* Index of an option in a provider's table, -1 when it has none of that name. */
int
paygw_option_index(const PaygwOption *options, const char *name)
{
	for (int i = 0; options[i].name != NULL; i++)
		if (strcmp(options[i].name, name) == 0)
			return i;
	return -1;
}

/* The checked value of an option, or NULL when the call did not give it. */
JsonbValue *
paygw_create_value(const PaygwCreateRequest *in, const char *name)
{
	int			i = paygw_option_index(in->options, name);

	return i < 0 ? NULL : in->values[i];
}

/* A scalar's text as the gateways read it (numbers as written, bools as words). */
static char *
scalar_text(JsonbValue *v, bool php)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			if (php)
				return pstrdup(v->val.boolean ? "1" : "0");
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/* The text of a scalar option, or NULL when it was not given. */
char *
paygw_create_text(const PaygwCreateRequest *in, const char *name)
{
	JsonbValue *v = paygw_create_value(in, name);

	return v == NULL ? NULL : scalar_text(v, false);
}

static void append_container(StringInfo buf, JsonbContainer *c);

/* Compact JSON (no spaces) of a value; nested containers recursively. */
void
paygw_json_append_value(StringInfo buf, JsonbValue *v)
{
	char	   *text;

	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		case jbvString:
			text = pnstrdup(v->val.string.val, v->val.string.len);
			escape_json(buf, text);
			pfree(text);
			break;
		case jbvBinary:
			append_container(buf, v->val.binary.data);
			break;
		default:
			text = scalar_text(v, false);
			appendStringInfoString(buf, text);
			pfree(text);
			break;
	}
}

static void
append_container(StringInfo buf, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken r;
	JsonbValue	v;
	bool		first = true;

	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (r)
		{
			case WJB_BEGIN_ARRAY:
				if (!v.val.array.rawScalar)
					appendStringInfoChar(buf, '[');
				break;
			case WJB_END_ARRAY:
				if (!v.val.array.rawScalar)
					appendStringInfoChar(buf, ']');
				break;
			case WJB_BEGIN_OBJECT:
				appendStringInfoChar(buf, '{');
				break;
			case WJB_END_OBJECT:
				appendStringInfoChar(buf, '}');
				break;
			case WJB_KEY:
				if (!first)
					appendStringInfoChar(buf, ',');
				first = false;
				paygw_json_append_value(buf, &v);
				appendStringInfoChar(buf, ':');
				break;
			case WJB_VALUE:
				paygw_json_append_value(buf, &v);
				break;
			case WJB_ELEM:
				if (!first)
					appendStringInfoChar(buf, ',');
				first = false;
				paygw_json_append_value(buf, &v);
				break;
			default:
				break;
		}
	}
}

/*
 * ,"name":value for every option given, in the provider's table order,
 * except those named in skip (NULL-terminated, or NULL).
 */
void
paygw_create_append_json(StringInfo buf, const PaygwCreateRequest *in,
						 const char *const *skip)
{
	for (int i = 0; in->options[i].name != NULL; i++)
	{
		bool		skipped = false;

		if (in->values[i] == NULL)
			continue;
		for (const char *const *s = skip; s && *s; s++)
			skipped |= strcmp(*s, in->options[i].name) == 0;
		if (skipped)
			continue;
		appendStringInfoChar(buf, ',');
		escape_json(buf, in->options[i].name);
		appendStringInfoChar(buf, ':');
		paygw_json_append_value(buf, in->values[i]);
	}
}

/*
 * PHP's http_build_query of one value under name: scalars as name=value,
 * arrays and objects as name[key]=value recursively (arrays by index),
 * nulls left out, booleans 1 and 0, everything urlencoded.
 */
static void
append_form_value(StringInfo buf, const char *name, JsonbValue *v)
{
	if (v->type == jbvNull)
		return;
	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbIteratorToken r;
		JsonbValue	item;
		char	   *key = NULL;
		int			index = 0;

		while ((r = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
		{
			if (r == WJB_KEY)
				key = pnstrdup(item.val.string.val, item.val.string.len);
			else if (r == WJB_VALUE)
				append_form_value(buf, psprintf("%s[%s]", name, key), &item);
			else if (r == WJB_ELEM)
				append_form_value(buf, psprintf("%s[%d]", name, index++), &item);
		}
		return;
	}
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	paygw_append_form_encoded(buf, name);
	appendStringInfoChar(buf, '=');
	paygw_append_form_encoded(buf, scalar_text(v, true));
}

/* &name=value pairs (PHP http_build_query) for every option given, in table order. */
void
paygw_create_append_form(StringInfo buf, const PaygwCreateRequest *in)
{
	for (int i = 0; in->options[i].name != NULL; i++)
		if (in->values[i] != NULL)
			append_form_value(buf, in->options[i].name, in->values[i]);
}

/*
 * Classify a create call's error reply as status calls do, except that a
 * "not found" (which a create cannot mean) stays a gateway error: the
 * gateway refused what was asked, and its message goes into the detail.
 */
bool
paygw_create_reply_error(const PaygwProvider *prov, PaygwHttpResponse *resp,
						 long body_code, const char *message, PaygwError *err)
{
	char		detail[PAYGW_ERROR_TEXT_LEN];

	paygw_reply_error(prov, resp->status, body_code, message, err);
	if (err->code == PAYGW_ERR_NOT_FOUND ||
		(err->code == PAYGW_ERR_GATEWAY && resp->status < 500 && body_code < 500))
	{
		strlcpy(detail, err->detail, sizeof(detail));
		paygw_set_error(err, PAYGW_ERR_GATEWAY, "%s gateway refused to create the invoice (HTTP %ld)",
						prov->name, resp->status);
		paygw_error_detail(err, "%s", detail);
	}
	return false;
}

/* Is a JsonbValue a container of the wanted shape? */
static bool
is_container(JsonbValue *v, bool want_object)
{
	return paygw_json_container(v, want_object) != NULL;
}

/* An integer (a JSON number, or a string of digits) as a numeric JsonbValue. */
static bool
integer_value(JsonbValue *v, int64 *out)
{
	char	   *text;
	char	   *end;

	if (v->type != jbvNumeric && v->type != jbvString)
		return false;
	text = scalar_text(v, false);
	if (text[0] == '\0' || strspn(text, "-0123456789") != strlen(text) || strlen(text) > 18)
		return false;
	errno = 0;
	*out = strtoll(text, &end, 10);
	return errno == 0 && *end == '\0';
}

static JsonbValue *
numeric_value(const char *text)
{
	JsonbValue *n = palloc0(sizeof(JsonbValue));

	n->type = jbvNumeric;
	n->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
	return n;
}

static JsonbValue *
string_value(const char *text)
{
	JsonbValue *s = palloc0(sizeof(JsonbValue));

	s->type = jbvString;
	s->val.string.val = (char *) text;
	s->val.string.len = strlen(text);
	return s;
}

/* A decimal >= 0 with at most 2 decimals below bound, as digits and a dot. */
static bool
decimal_text_ok(const char *text, int64 bound)
{
	const char *dot = strchr(text, '.');
	size_t		intlen = dot ? (size_t) (dot - text) : strlen(text);

	if (intlen == 0 || intlen > 15 || strspn(text, "0123456789") != intlen)
		return false;
	if (dot && (strlen(dot + 1) == 0 || strlen(dot + 1) > 2 ||
				strspn(dot + 1, "0123456789") != strlen(dot + 1)))
		return false;
	/* below bound: compare the integer part's digits, no floating point */
	{
		char		limit[32];
		const char *digits = text + strspn(text, "0");
		size_t		ndigits = intlen - (size_t) (digits - text);

		snprintf(limit, sizeof(limit), INT64_FORMAT, bound);
		if (ndigits != strlen(limit))
			return ndigits < strlen(limit);
		return strncmp(digits, limit, ndigits) < 0;
	}
}

static bool
option_error(const PaygwProvider *prov, const PaygwOption *opt, PaygwError *err,
			 const char *must)
{
	return paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER,
						   "%s create option \"%s\" must be %s", prov->name, opt->name, must);
}

/*
 * Check one option value against its kind and return it normalized (see
 * the file header): *out NULL for a JSON null (the option is left out).
 * Strings stay in the server encoding here; the caller converts.
 */
bool
paygw_create_check_option(const PaygwProvider *prov, const PaygwOption *opt,
						  JsonbValue *v, JsonbValue **out, PaygwError *err)
{
	int64		n;
	char	   *text;

	*out = NULL;
	if (v->type == jbvNull)
		return true;
	switch (opt->kind)
	{
		case PAYGW_OPT_TEXT:
			if (v->type != jbvString)
				return option_error(prov, opt, err, "a string");
			if (opt->max > 0 && pg_mbstrlen_with_len(v->val.string.val, v->val.string.len) > opt->max)
				return option_error(prov, opt, err,
									psprintf("at most " INT64_FORMAT " characters long", opt->max));
			break;
		case PAYGW_OPT_URL:
			if (v->type != jbvString)
				return option_error(prov, opt, err, "an http or https URL");
			text = pnstrdup(v->val.string.val, v->val.string.len);
			if ((pg_strncasecmp(text, "http://", 7) != 0 && pg_strncasecmp(text, "https://", 8) != 0) ||
				strlen(text) > 2048 || strpbrk(text, " \"<>\\^`{|}") != NULL ||
				paygw_has_control_chars(text) || strlen(text) < 9)
				return option_error(prov, opt, err, "an http or https URL");
			break;
		case PAYGW_OPT_INT:
			if (!integer_value(v, &n))
				return option_error(prov, opt, err, "an integer");
			if (n < opt->min || n > opt->max)
				return option_error(prov, opt, err,
									psprintf("between " INT64_FORMAT " and " INT64_FORMAT,
											 opt->min, opt->max));
			*out = numeric_value(psprintf(INT64_FORMAT, n));
			return true;
		case PAYGW_OPT_BOOL:
			if (v->type != jbvBool)
				return option_error(prov, opt, err, "true or false");
			break;
		case PAYGW_OPT_DECIMAL:
			if (v->type != jbvNumeric && v->type != jbvString)
				return option_error(prov, opt, err, "a decimal number");
			text = scalar_text(v, false);
			if (!decimal_text_ok(text, opt->max))
				return option_error(prov, opt, err,
									psprintf("a number from 0 below " INT64_FORMAT " with at most 2 decimals",
											 opt->max));
			*out = numeric_value(text);
			return true;
		case PAYGW_OPT_IP:
			{
				unsigned char addr[16];

				if (v->type != jbvString)
					return option_error(prov, opt, err, "an IPv4 or IPv6 address");
				text = pnstrdup(v->val.string.val, v->val.string.len);
				if (inet_pton(AF_INET, text, addr) != 1 && inet_pton(AF_INET6, text, addr) != 1)
					return option_error(prov, opt, err, "an IPv4 or IPv6 address");
				break;
			}
		case PAYGW_OPT_TEXT_ARRAY:
		case PAYGW_OPT_INT_ARRAY:
			{
				JsonbContainer *a = paygw_json_container(v, false);
				bool		ints = opt->kind == PAYGW_OPT_INT_ARRAY;

				if (a == NULL)
					return option_error(prov, opt, err, ints ? "an array of integers" : "an array of strings");
				for (uint32 i = 0; i < JsonContainerSize(a); i++)
				{
					JsonbValue *e = getIthJsonbValueFromContainer(a, i);

					if (ints ? (!integer_value(e, &n) || n < 0) : e->type != jbvString)
						return option_error(prov, opt, err,
											ints ? "an array of integers" : "an array of strings");
				}
				break;
			}
		case PAYGW_OPT_OBJECT:
			if (!is_container(v, true))
				return option_error(prov, opt, err, "a JSON object");
			break;
		case PAYGW_OPT_ARRAY:
			if (!is_container(v, false))
				return option_error(prov, opt, err, "a JSON array");
			break;
		case PAYGW_OPT_JSON_TEXT:
			{
				StringInfoData buf;

				if (v->type == jbvString)
				{
					PaygwError	perr;

					text = pnstrdup(v->val.string.val, v->val.string.len);
					if (paygw_json_parse(text, strlen(text), &perr) == NULL)
						return option_error(prov, opt, err, "a JSON object or a string holding JSON");
				}
				else if (v->type == jbvBinary)
				{
					initStringInfo(&buf);
					paygw_json_append_value(&buf, v);
					text = buf.data;
				}
				else
					return option_error(prov, opt, err, "a JSON object or a string holding JSON");
				if (opt->max > 0 && pg_mbstrlen(text) > opt->max)
					return option_error(prov, opt, err,
										psprintf("at most " INT64_FORMAT " characters long as JSON text",
												 opt->max));
				*out = string_value(text);
				return true;
			}
	}
	*out = v;
	return true;
}

/* The option names of a provider, for a hint. */
static char *
option_names(const PaygwOption *options)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; options[i].name != NULL; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", options[i].name);
	return buf.data;
}

/*
 * Check every member of an options object and store the normalized values
 * by table index into values (a JSON null clears what an earlier object,
 * the account's defaults, set).  An unknown key is an error naming it.
 */
bool
paygw_create_collect(const PaygwProvider *prov, JsonbContainer *obj,
					 JsonbValue **values, PaygwError *err)
{
	const PaygwOption *options = prov->create->options;
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbIteratorToken tok;
	JsonbValue	v;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		int			i;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		i = paygw_option_index(options, key);
		if (i < 0)
		{
			paygw_set_error(err, PAYGW_ERR_INVALID_PARAMETER,
							"unknown %s create option \"%s\"", prov->name, key);
			paygw_error_hint(err, "The %s create options are: %s.", prov->name, option_names(options));
			return false;
		}
		tok = JsonbIteratorNext(&it, &v, true);
		if (!paygw_create_check_option(prov, &options[i], &v, &values[i], err))
			return false;
		if (values[i] == &v)
		{
			values[i] = palloc(sizeof(JsonbValue));
			*values[i] = v;
		}
	}
	return true;
}

/*
 * Check a credential's options "create" member: per-account defaults for
 * paygw_create_invoice, under the same rules as the call's options.
 */
bool
paygw_create_check_defaults(const PaygwProvider *prov, JsonbValue *v,
							PaygwError *err)
{
	int			n = 0;
	JsonbValue **values;

	if (paygw_json_container(v, true) == NULL)
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "credential option \"create\" must be a JSON object of %s create options",
							   prov->name);
	while (prov->create->options[n].name != NULL)
		n++;
	values = palloc0(sizeof(JsonbValue *) * (n + 1));
	if (!paygw_create_collect(prov, v->val.binary.data, values, err))
	{
		char		msg[PAYGW_ERROR_TEXT_LEN];

		snprintf(msg, sizeof(msg), "credential option \"create\": %s", err->message);
		strlcpy(err->message, msg, sizeof(err->message));
		err->code = PAYGW_ERR_INVALID_CREDENTIAL;
		return false;
	}
	return true;
}

/* The status field of a create reply (see paygw_reply_status). */
bool
paygw_create_status(const PaygwProvider *prov, const PaygwStatusMap *map,
					JsonbContainer *obj, const char *key,
					PaygwCreateResult *out, PaygwError *err)
{
	PaygwStatusResult res;

	memset(&res, 0, sizeof(res));
	if (!paygw_reply_status(prov, map, obj, key, &res, err))
		return false;
	out->provider_status = res.provider_status;
	out->status = res.status;
	out->status_known = res.status_known;
	return true;
}

/* A create step's reply that names no status: the given one, mapped. */
void
paygw_create_set_status(const PaygwStatusMap *map, const char *provider_status,
						PaygwCreateResult *out)
{
	out->provider_status = pstrdup(provider_status);
	out->status_known = paygw_status_lookup(map, provider_status, &out->status);
}

/* A created invoice must be named by the reply: field holds its id. */
bool
paygw_create_require_id(const PaygwProvider *prov, const PaygwCreateResult *out,
						const char *field, PaygwError *err)
{
	if (out->payment_id != NULL && out->payment_id[0] != '\0')
		return true;
	return paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY,
						   "malformed reply from the %s gateway: the created invoice has no \"%s\"",
						   prov->name, field);
}
