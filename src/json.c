/*-------------------------------------------------------------------------
 *
 * json.c
 *		Parsing gateway replies into jsonb without ever throwing on hostile
 *		input, and typed access to their fields.
 *
 * jsonb_in() raises errors for malformed JSON, for numbers numeric cannot
 * hold, for \u0000 escapes and for nesting deep enough to exhaust the stack.
 * A gateway reply is untrusted input whose faults must become a PaygwError,
 * so paygw_json_parse() rules out the numbers and the nesting first with
 * checks that cannot throw, and then builds the jsonb value in one run of
 * the JSON parser, which reports malformed input as an error code.  In a database that is not
 * UTF-8, characters the encoding lacks (raw or escaped) become '?' instead
 * of raising a conversion error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
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

			const char *e;
			long		exponent = 0;

			while (i + 1 < len && strchr("0123456789+-.eE", s[i + 1]) != NULL)
				i++;
			if (i - start + 1 > PAYGW_JSON_MAX_NUMBER)
			{
				paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply contains an out-of-range number");
				paygw_error_detail(err, "A number token is longer than %d characters.", PAYGW_JSON_MAX_NUMBER);
				return false;
			}
			/* numeric_in() rejects large exponents by raising an error */
			for (e = s + start; e <= s + i && *e != 'e' && *e != 'E'; e++)
				;
			if (e <= s + i)
			{
				for (e++; e <= s + i && (*e == '+' || *e == '-'); e++)
					;
				for (; e <= s + i && *e >= '0' && *e <= '9' && exponent <= PAYGW_JSON_MAX_EXPONENT; e++)
					exponent = exponent * 10 + (*e - '0');
				if (exponent > PAYGW_JSON_MAX_EXPONENT)
				{
					paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply contains an out-of-range number");
					paygw_error_detail(err, "A number's exponent exceeds %d.", PAYGW_JSON_MAX_EXPONENT);
					return false;
				}
			}
		}
	}
	return true;
}

static int
hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * For a database that is not UTF-8: rewrite \uXXXX escapes of non-ASCII
 * characters inside JSON strings as the characters' UTF-8 bytes (PostgreSQL's
 * JSON lexer would otherwise convert each escape itself, raising an error
 * for a character the database encoding lacks).  ASCII escapes and anything
 * malformed are left for the validator.  Returns a palloc'd string.
 */
static char *
unescape_non_ascii(const char *s, size_t len)
{
	StringInfoData out;
	bool		in_string = false;

	initStringInfo(&out);
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!in_string)
		{
			if (c == '"')
				in_string = true;
			appendStringInfoChar(&out, c);
			continue;
		}
		if (c == '"')
			in_string = false;
		else if (c == '\\' && i + 1 < len)
		{
			int			cp = (s[i + 1] == 'u' && i + 5 < len) ? hex4(s + i + 2) : -1;

			if (cp >= 0x80 && cp >= 0xD800 && cp <= 0xDBFF && i + 11 < len &&
				s[i + 6] == '\\' && s[i + 7] == 'u')
			{
				int			lo = hex4(s + i + 8);

				if (lo >= 0xDC00 && lo <= 0xDFFF)
				{
					unsigned char buf[4];

					unicode_to_utf8(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), buf);
					appendBinaryStringInfo(&out, (char *) buf, pg_utf_mblen(buf));
					i += 11;
					continue;
				}
			}
			else if (cp >= 0x80 && (cp < 0xD800 || cp > 0xDFFF))
			{
				unsigned char buf[4];

				unicode_to_utf8(cp, buf);
				appendBinaryStringInfo(&out, (char *) buf, pg_utf_mblen(buf));
				i += 5;
				continue;
			}
			/* any other escape: copy it whole */
			appendStringInfoChar(&out, c);
			appendStringInfoChar(&out, s[++i]);
			continue;
		}
		appendStringInfoChar(&out, c);
	}
	return out.data;
}

/*
 * UTF-8 text to the database encoding without raising an error: a character
 * the encoding lacks becomes '?'.  Returns a palloc'd string.
 */
static char *
utf8_to_server_lossy(const char *s, int len)
{
	int			dbenc = GetDatabaseEncoding();
	Oid			proc;
	StringInfoData out;
	unsigned char *buf;
	int			bufsize;

	if (dbenc == PG_UTF8 || dbenc == PG_SQL_ASCII)
		return pnstrdup(s, len);
	proc = FindDefaultConversionProc(PG_UTF8, dbenc);
	if (!OidIsValid(proc))
		return pnstrdup(s, len);	/* validation will reject non-ASCII */

	bufsize = len * MAX_CONVERSION_GROWTH + 1;
	buf = palloc(bufsize);
	initStringInfo(&out);
	while (len > 0)
	{
		int			done;

		done = pg_do_encoding_conversion_buf(proc, PG_UTF8, dbenc,
											 (unsigned char *) s, len,
											 buf, bufsize, true);
		appendStringInfoString(&out, (char *) buf);
		s += done;
		len -= done;
		if (len > 0)
		{
			/* an unconvertible character: replace it and go on */
			int			clen = Min(pg_utf_mblen((const unsigned char *) s), len);

			appendStringInfoChar(&out, '?');
			s += clen;
			len -= clen;
		}
	}
	pfree(buf);
	return out.data;
}

/*
 * Building a jsonb value from the parser's callbacks, as jsonb_in() does.
 */
typedef struct JsonbBuild
{
	JsonbParseState *state;
	JsonbValue *res;
} JsonbBuild;

static PAYGW_JSON_ACTION
build_object_start(void *arg)
{
	JsonbBuild *b = (JsonbBuild *) arg;

	b->res = pushJsonbValue(&b->state, WJB_BEGIN_OBJECT, NULL);
	PAYGW_JSON_ACTION_DONE;
}

static PAYGW_JSON_ACTION
build_object_end(void *arg)
{
	JsonbBuild *b = (JsonbBuild *) arg;

	b->res = pushJsonbValue(&b->state, WJB_END_OBJECT, NULL);
	PAYGW_JSON_ACTION_DONE;
}

static PAYGW_JSON_ACTION
build_array_start(void *arg)
{
	JsonbBuild *b = (JsonbBuild *) arg;

	b->res = pushJsonbValue(&b->state, WJB_BEGIN_ARRAY, NULL);
	PAYGW_JSON_ACTION_DONE;
}

static PAYGW_JSON_ACTION
build_array_end(void *arg)
{
	JsonbBuild *b = (JsonbBuild *) arg;

	b->res = pushJsonbValue(&b->state, WJB_END_ARRAY, NULL);
	PAYGW_JSON_ACTION_DONE;
}

static PAYGW_JSON_ACTION
build_object_field_start(void *arg, char *fname, bool isnull)
{
	JsonbBuild *b = (JsonbBuild *) arg;
	JsonbValue	v;

	(void) isnull;
	v.type = jbvString;
	v.val.string.len = strlen(fname);
	v.val.string.val = fname;
	b->res = pushJsonbValue(&b->state, WJB_KEY, &v);
	PAYGW_JSON_ACTION_DONE;
}

static PAYGW_JSON_ACTION
build_scalar(void *arg, char *token, JsonTokenType tokentype)
{
	JsonbBuild *b = (JsonbBuild *) arg;
	JsonbValue	v;

	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.len = strlen(token);
			v.val.string.val = token;
			break;
		case JSON_TOKEN_NUMBER:
			/* prescan() bounded its length and exponent */
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = tokentype == JSON_TOKEN_TRUE;
			break;
		default:
			v.type = jbvNull;
			break;
	}
	if (b->state == NULL)
	{
		/* a document that is a lone scalar: a raw-scalar array, as jsonb_in */
		JsonbValue	va;

		va.type = jbvArray;
		va.val.array.rawScalar = true;
		va.val.array.nElems = 1;
		b->res = pushJsonbValue(&b->state, WJB_BEGIN_ARRAY, &va);
		b->res = pushJsonbValue(&b->state, WJB_ELEM, &v);
		b->res = pushJsonbValue(&b->state, WJB_END_ARRAY, NULL);
	}
	else
		b->res = pushJsonbValue(&b->state,
								b->state->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE,
								&v);
	PAYGW_JSON_ACTION_DONE;
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
	JsonSemAction sem;
	JsonbBuild	build;

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

	if (GetDatabaseEncoding() == PG_UTF8)
		converted = (char *) body;
	else
	{
		char	   *unescaped = unescape_non_ascii(body, len);

		converted = utf8_to_server_lossy(unescaped, (int) strlen(unescaped));
	}
	memset(&sem, 0, sizeof(sem));
	memset(&build, 0, sizeof(build));
	sem.semstate = &build;
	sem.object_start = build_object_start;
	sem.object_end = build_object_end;
	sem.array_start = build_array_start;
	sem.array_end = build_array_end;
	sem.object_field_start = build_object_field_start;
	sem.scalar = build_scalar;
	jerr = paygw_json_run(converted, (int) strlen(converted), GetDatabaseEncoding(), &sem);
	if (jerr != JSON_SUCCESS || build.res == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_MALFORMED_REPLY, "reply is not valid JSON");
		return NULL;
	}
	return JsonbValueToJsonb(build.res);
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
