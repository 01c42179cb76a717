/*-------------------------------------------------------------------------
 *
 * json.c
 *		Parsing gateway replies into jsonb without ever throwing on hostile
 *		input, and typed access to their fields.
 *
 * jsonb_in() raises errors for malformed JSON, for numbers numeric cannot
 * hold, for \u0000 escapes and for nesting deep enough to exhaust the stack.
 * A gateway reply is untrusted input whose faults must become a PaygwError,
 * so paygw_json_parse() rules each of those out first with checks that
 * cannot throw, and only then calls jsonb_in().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "compat.h"
#include "json.h"

/*
 * One pass over the raw bytes, outside of strings: nesting depth and the
 * shape of number tokens.  Returns false with err filled on violation.
 */
static bool
prescan(const char *s, size_t len, PaygwError *err)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > PAYGW_JSON_MAX_DEPTH)
			{
				paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply is nested too deeply");
				paygw_error_detail(err, "More than %d levels of arrays or objects.", PAYGW_JSON_MAX_DEPTH);
				return false;
			}
		}
		else if (c == ']' || c == '}')
			depth--;
		else if (c == '-' || (c >= '0' && c <= '9'))
		{
			size_t		start = i;

			while (i + 1 < len && strchr("0123456789+-.eE", s[i + 1]) != NULL)
				i++;
			if (i - start + 1 > PAYGW_JSON_MAX_NUMBER)
			{
				paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply contains an out-of-range number");
				paygw_error_detail(err, "A number token is longer than %d characters.", PAYGW_JSON_MAX_NUMBER);
				return false;
			}
		}
	}
	return true;
}

/*
 * Parse a reply body (UTF-8 bytes, len of them) into a jsonb value in
 * CurrentMemoryContext.  Returns NULL with err filled when the body is not a
 * well-formed JSON document within paygw's limits.
 */
Jsonb *
paygw_json_parse(const char *body, size_t len, PaygwError *err)
{
	char	   *converted;
	JsonParseErrorType jerr;

	if (len == 0)
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply body is empty");
		return NULL;
	}
	if (strlen(body) != len)
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply contains a NUL byte");
		return NULL;
	}
	if (!pg_verify_mbstr(PG_UTF8, body, (int) len, true))
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply is not valid UTF-8");
		return NULL;
	}
	if (!prescan(body, len, err))
		return NULL;

	converted = pg_any_to_server(body, (int) len, PG_UTF8);
	jerr = paygw_json_validate(converted, (int) strlen(converted), GetDatabaseEncoding());
	if (jerr != JSON_SUCCESS)
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply is not valid JSON");
		return NULL;
	}
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(converted)));
}

/*
 * The value of key in an object container, or NULL when obj is NULL or the
 * key is absent.  The result is palloc'd.
 */
JsonbValue *
paygw_json_get(JsonbContainer *obj, const char *key)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/*
 * The container inside v when v is an object (want_object) or an array
 * (!want_object); NULL otherwise.
 */
JsonbContainer *
paygw_json_container(JsonbValue *v, bool want_object)
{
	if (v == NULL || v->type != jbvBinary)
		return NULL;
	if (want_object ? !JsonContainerIsObject(v->val.binary.data)
		: !JsonContainerIsArray(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}

/*
 * Text of a scalar: a string as is, a number in plain notation, a boolean as
 * true/false.  *out is NULL for a JSON null or a missing value.  Returns
 * false for an array or object (a type the caller did not expect).
 */
bool
paygw_json_text(JsonbValue *v, char **out)
{
	*out = NULL;
	if (v == NULL)
		return true;
	switch (v->type)
	{
		case jbvNull:
			return true;
		case jbvString:
			*out = pnstrdup(v->val.string.val, v->val.string.len);
			return true;
		case jbvNumeric:
			*out = DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
			return true;
		case jbvBool:
			*out = pstrdup(v->val.boolean ? "true" : "false");
			return true;
		default:
			return false;
	}
}

/*
 * An amount: a JSON number or a string holding a plain decimal number, with
 * at most 18 integer and 12 fractional digits.  minor_digits > 0 means the
 * gateway sends minor units (cents): the value is divided by 10^minor_digits
 * exactly.  Returns false when the value is present but not such a number.
 */
bool
paygw_json_amount(JsonbValue *v, int minor_digits, Datum *out, bool *isnull)
{
	char	   *text;
	const char *p;
	int			intdigits = 0;
	int			fracdigits = 0;
	Datum		value;

	*isnull = true;
	if (!paygw_json_text(v, &text))
		return false;
	if (text == NULL || (v->type == jbvString && text[0] == '\0'))
		return true;
	if (v->type == jbvBool)
		return false;

	p = text;
	if (*p == '-')
		p++;
	while (*p >= '0' && *p <= '9')
		p++, intdigits++;
	if (*p == '.')
	{
		p++;
		while (*p >= '0' && *p <= '9')
			p++, fracdigits++;
		if (fracdigits == 0)
			return false;
	}
	if (*p != '\0' || intdigits == 0 || intdigits > 18 || fracdigits > 12)
		return false;

	value = DirectFunctionCall3(numeric_in, CStringGetDatum(text),
								ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (minor_digits > 0)
	{
		char		scale[32];
		int			n = 0;

		/* 10^-minor_digits written out, e.g. "0.01": exact, no floating point */
		Assert(minor_digits < 20);
		scale[n++] = '0';
		scale[n++] = '.';
		for (int i = 1; i < minor_digits; i++)
			scale[n++] = '0';
		scale[n++] = '1';
		scale[n] = '\0';
		value = DirectFunctionCall2(numeric_mul, value,
									DirectFunctionCall3(numeric_in, CStringGetDatum(scale),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	}
	*out = value;
	*isnull = false;
	return true;
}
