/*-------------------------------------------------------------------------
 *
 * webhook_json.c
 *		What the providers share to read a webhook: its headers, its query
 *		string, and the canonical JSON texts gateways sign.
 *
 * Gateways sign webhooks over a re-serialization of what they send, not
 * over the bytes, so verifying one means producing the same text the
 * gateway's (usually PHP) code produced:
 *
 * - paygw_webhook_json_sorted(): a JSON object with its top-level keys
 *   sorted by byte order, compact, nested values in the order received,
 *   numbers and literals exactly as received, strings re-escaped either
 *   minimally or the way PHP's json_encode() escapes them;
 * - paygw_json_append_string(): one string, escaped either way.
 *
 * Nothing here knows a gateway; providers/<gateway>.c picks the fields.
 * Everything is palloc'd in CurrentMemoryContext; nothing ereports for bad
 * input (a PaygwError with PAYGW_ERR_WEBHOOK_INVALID instead), and no
 * message quotes a value received.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "crypto/crypto.h"
#include "providers/provider.h"

/* deepest nesting accepted in a webhook body */
#define WEBHOOK_JSON_MAX_DEPTH 32

static bool
invalid(const PaygwProvider *prov, PaygwError *err, const char *what)
{
	paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID, "%s webhook %s", prov->name, what);
	return false;
}

/* ---- strings ---- */

static void
append_u_escape(StringInfo buf, unsigned int unit)
{
	static const char hex[] = "0123456789abcdef";

	appendStringInfoString(buf, "\\u");
	appendStringInfoChar(buf, hex[(unit >> 12) & 0xF]);
	appendStringInfoChar(buf, hex[(unit >> 8) & 0xF]);
	appendStringInfoChar(buf, hex[(unit >> 4) & 0xF]);
	appendStringInfoChar(buf, hex[unit & 0xF]);
}

/*
 * Append s (len bytes of UTF-8, NULs allowed) to buf as a JSON string.
 * Always escaped: '"', '\\', \b \f \n \r \t, and other control characters
 * as \u00XX (lower-case hex).  With php, also as PHP's default json_encode()
 * does: '/' as '\/', and every non-ASCII character as \uXXXX (lower-case
 * hex, a surrogate pair above U+FFFF).  Without php, '/' and non-ASCII stay
 * as they are.  Returns false, with buf partly written, when s is not valid
 * UTF-8 (json_encode() fails on such input too).
 */
bool
paygw_json_append_string(StringInfo buf, const char *s, size_t len, bool php)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;

	appendStringInfoChar(buf, '"');
	while (p < end)
	{
		unsigned char c = *p;

		if (c >= 0x80)
		{
			int			n = pg_utf_mblen(p);
			pg_wchar	cp;

			if (n < 2 || end - p < n || !pg_utf8_islegal(p, n))
				return false;
			if (!php)
				appendBinaryStringInfo(buf, (const char *) p, n);
			else
			{
				cp = utf8_to_unicode(p);
				if (cp >= 0x10000)
				{
					cp -= 0x10000;
					append_u_escape(buf, 0xD800 | (cp >> 10));
					append_u_escape(buf, 0xDC00 | (cp & 0x3FF));
				}
				else
					append_u_escape(buf, cp);
			}
			p += n;
			continue;
		}
		switch (c)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '/':
				appendStringInfoString(buf, php ? "\\/" : "/");
				break;
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				if (c < 0x20)
					append_u_escape(buf, c);
				else
					appendStringInfoChar(buf, (char) c);
		}
		p++;
	}
	appendStringInfoChar(buf, '"');
	return true;
}

/* ---- a strict JSON reader that re-emits what it reads ---- */

typedef struct JsonReader
{
	const char *p;
	const char *end;
	int			depth;
} JsonReader;

static void
skip_ws(JsonReader *r)
{
	while (r->p < r->end &&
		   (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int
read_hex4(JsonReader *r)
{
	int			v = 0;

	if (r->end - r->p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		int			d = paygw_hex_value(r->p[i]);

		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	r->p += 4;
	return v;
}

/*
 * Read a JSON string at r->p (at its opening quote) and append its decoded
 * UTF-8 bytes to out.  false when it is malformed: a raw control character,
 * a bad escape, an unpaired surrogate, or invalid UTF-8.
 */
static bool
read_string(JsonReader *r, StringInfo out)
{
	if (r->p >= r->end || *r->p != '"')
		return false;
	r->p++;
	while (r->p < r->end)
	{
		unsigned char c = (unsigned char) *r->p;

		if (c == '"')
		{
			r->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c >= 0x80)
		{
			int			n = pg_utf_mblen((const unsigned char *) r->p);

			if (n < 2 || r->end - r->p < n || !pg_utf8_islegal((const unsigned char *) r->p, n))
				return false;
			appendBinaryStringInfo(out, r->p, n);
			r->p += n;
			continue;
		}
		if (c != '\\')
		{
			appendStringInfoChar(out, (char) c);
			r->p++;
			continue;
		}
		if (++r->p >= r->end)
			return false;
		c = (unsigned char) *r->p++;
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				appendStringInfoChar(out, (char) c);
				break;
			case 'b':
				appendStringInfoChar(out, '\b');
				break;
			case 'f':
				appendStringInfoChar(out, '\f');
				break;
			case 'n':
				appendStringInfoChar(out, '\n');
				break;
			case 'r':
				appendStringInfoChar(out, '\r');
				break;
			case 't':
				appendStringInfoChar(out, '\t');
				break;
			case 'u':
				{
					int			u = read_hex4(r);
					pg_wchar	cp;
					unsigned char utf8[8];

					if (u < 0)
						return false;
					cp = (pg_wchar) u;
					if (u >= 0xDC00 && u <= 0xDFFF)
						return false;	/* a low surrogate alone */
					if (u >= 0xD800 && u <= 0xDBFF)
					{
						int			lo;

						if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
							return false;
						r->p += 2;
						lo = read_hex4(r);
						if (lo < 0xDC00 || lo > 0xDFFF)
							return false;
						cp = 0x10000 + (((pg_wchar) u - 0xD800) << 10) + ((pg_wchar) lo - 0xDC00);
					}
					unicode_to_utf8(cp, utf8);
					appendBinaryStringInfo(out, (const char *) utf8, pg_utf_mblen(utf8));
					break;
				}
			default:
				return false;
		}
	}
	return false;
}

/* Read a JSON number token and append it as it is. */
static bool
read_number(JsonReader *r, StringInfo out)
{
	const char *start = r->p;
	const char *p = r->p;
	const char *end = r->end;

	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	appendBinaryStringInfo(out, start, p - start);
	r->p = p;
	return true;
}

static bool
read_literal(JsonReader *r, const char *word, StringInfo out)
{
	size_t		n = strlen(word);

	if ((size_t) (r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return false;
	appendBinaryStringInfo(out, word, n);
	r->p += n;
	return true;
}

/*
 * Read one JSON value and append it to out compactly: whitespace dropped,
 * object members and array elements in the order received, strings
 * re-escaped (see paygw_json_append_string), numbers and literals as
 * received.  false when the input is not well-formed JSON.
 */
static bool
emit_value(JsonReader *r, StringInfo out, bool php)
{
	StringInfoData s;

	skip_ws(r);
	if (r->p >= r->end)
		return false;
	switch (*r->p)
	{
		case '"':
			initStringInfo(&s);
			if (!read_string(r, &s))
				return false;
			return paygw_json_append_string(out, s.data, s.len, php);
		case '{':
		case '[':
			{
				char		close = *r->p == '{' ? '}' : ']';
				bool		object = close == '}';
				bool		first = true;

				if (++r->depth > WEBHOOK_JSON_MAX_DEPTH)
					return false;
				appendStringInfoChar(out, *r->p++);
				skip_ws(r);
				if (r->p < r->end && *r->p == close)
				{
					appendStringInfoChar(out, *r->p++);
					r->depth--;
					return true;
				}
				for (;;)
				{
					if (!first)
						appendStringInfoChar(out, ',');
					first = false;
					if (object)
					{
						skip_ws(r);
						initStringInfo(&s);
						if (!read_string(r, &s) ||
							!paygw_json_append_string(out, s.data, s.len, php))
							return false;
						skip_ws(r);
						if (r->p >= r->end || *r->p++ != ':')
							return false;
						appendStringInfoChar(out, ':');
					}
					if (!emit_value(r, out, php))
						return false;
					skip_ws(r);
					if (r->p >= r->end)
						return false;
					if (*r->p == ',')
					{
						r->p++;
						continue;
					}
					if (*r->p != close)
						return false;
					appendStringInfoChar(out, *r->p++);
					r->depth--;
					return true;
				}
			}
		case 't':
			return read_literal(r, "true", out);
		case 'f':
			return read_literal(r, "false", out);
		case 'n':
			return read_literal(r, "null", out);
		default:
			return read_number(r, out);
	}
}

typedef struct TopMember
{
	StringInfoData key;			/* decoded UTF-8 */
	StringInfoData value;		/* re-emitted */
} TopMember;

static int
member_cmp(const void *a, const void *b)
{
	const TopMember *x = (const TopMember *) a;
	const TopMember *y = (const TopMember *) b;
	int			c = memcmp(x->key.data, y->key.data, Min(x->key.len, y->key.len));

	if (c != 0)
		return c;
	return (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/*
 * The text a gateway signs for a JSON webhook body (len bytes of UTF-8):
 * the top-level object with its keys sorted by byte order, compact, each
 * value re-emitted as emit_value() does (nested objects keep their order;
 * an empty object stays "{}").  php selects PHP's json_encode() escaping of
 * strings.  NULL with err filled (PAYGW_ERR_WEBHOOK_INVALID) when the body is
 * not one well-formed JSON object, or names a top-level key twice (which
 * value was signed would be anybody's guess).
 */
char *
paygw_webhook_json_sorted(const PaygwProvider *prov, const char *body,
						  size_t len, bool php, PaygwError *err)
{
	JsonReader	r = {body, body + len, 0};
	TopMember  *members;
	int			n = 0;
	int			cap = 16;
	bool		ok = false;
	StringInfoData out;

	skip_ws(&r);
	if (r.p >= r.end)
	{
		invalid(prov, err, "body is empty");
		return NULL;
	}
	if (*r.p != '{')
	{
		invalid(prov, err, "body is not a JSON object");
		return NULL;
	}
	r.p++;
	r.depth = 1;
	members = palloc(sizeof(TopMember) * cap);
	skip_ws(&r);
	if (r.p < r.end && *r.p == '}')
	{
		r.p++;
		ok = true;
	}
	else
		for (;;)
		{
			if (n == cap)
			{
				cap *= 2;
				members = repalloc(members, sizeof(TopMember) * cap);
			}
			initStringInfo(&members[n].key);
			initStringInfo(&members[n].value);
			skip_ws(&r);
			if (!read_string(&r, &members[n].key))
				break;
			skip_ws(&r);
			if (r.p >= r.end || *r.p++ != ':')
				break;
			if (!emit_value(&r, &members[n].value, php))
				break;
			n++;
			skip_ws(&r);
			if (r.p < r.end && *r.p == ',')
			{
				r.p++;
				continue;
			}
			if (r.p < r.end && *r.p == '}')
			{
				r.p++;
				ok = true;
			}
			break;
		}
	if (!ok)
	{
		invalid(prov, err, "body is not well-formed JSON");
		return NULL;
	}
	skip_ws(&r);
	if (r.p != r.end)
	{
		invalid(prov, err, "body has text after its JSON object");
		return NULL;
	}

	qsort(members, n, sizeof(TopMember), member_cmp);
	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0 && member_cmp(&members[i - 1], &members[i]) == 0)
		{
			invalid(prov, err, "body names a top-level key more than once");
			return NULL;
		}
		if (i > 0)
			appendStringInfoChar(&out, ',');
		if (!paygw_json_append_string(&out, members[i].key.data, members[i].key.len, php))
		{
			invalid(prov, err, "body is not valid UTF-8");
			return NULL;
		}
		appendStringInfoChar(&out, ':');
		appendBinaryStringInfo(&out, members[i].value.data, members[i].value.len);
	}
	appendStringInfoChar(&out, '}');
	return out.data;
}

/* ---- headers and query strings ---- */

/*
 * The value of header name (compared case-insensitively, as HTTP does) in
 * the request's headers object: a string, or an array holding one string.
 * *value is NULL when the header is absent.  false with err filled
 * (PAYGW_ERR_WEBHOOK_INVALID) when headers is not an object, or the header
 * is given more than once or not as a string.
 */
bool
paygw_webhook_header(const PaygwProvider *prov, const PaygwWebhookRequest *req,
					 const char *name, char **value, PaygwError *err)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	size_t		namelen = strlen(name);
	int			found = 0;

	*value = NULL;
	if (req->headers == NULL)
		return true;
	if (!JB_ROOT_IS_OBJECT(req->headers) || JB_ROOT_IS_SCALAR(req->headers))
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
						"webhook headers must be a JSON object");
		paygw_error_hint(err, "Pass them as {\"Header-Name\": \"value\", ...}.");
		return false;
	}
	it = JsonbIteratorInit(&req->headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		match;

		if (tok != WJB_KEY)
			continue;
		match = v.val.string.len == (int) namelen &&
			pg_strncasecmp(v.val.string.val, name, namelen) == 0;
		tok = JsonbIteratorNext(&it, &v, true);
		if (!match)
			continue;
		if (++found > 1)
			break;
		if (v.type == jbvString)
			*value = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data) &&
				 JsonContainerSize(v.val.binary.data) == 1)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, 0);

			if (e != NULL && e->type == jbvString)
				*value = pnstrdup(e->val.string.val, e->val.string.len);
		}
		if (*value == NULL)
		{
			paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
							"%s webhook header \"%s\" is not a string", prov->name, name);
			return false;
		}
	}
	if (found > 1)
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
						"%s webhook header \"%s\" is given more than once", prov->name, name);
		return false;
	}
	return true;
}

/*
 * Form-url-decode len bytes of s ('+' is a space, %XX a byte; a stray '%'
 * stays, as PHP's urldecode() keeps it) into a palloc'd string; *outlen is
 * its length, which is less than strlen() says when it decodes a NUL.
 */
static char *
form_decode(const char *s, size_t len, size_t *outlen)
{
	char	   *out = palloc(len + 1);
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '+')
			out[n++] = ' ';
		else if (s[i] == '%' && i + 2 < len &&
				 paygw_hex_value(s[i + 1]) >= 0 && paygw_hex_value(s[i + 2]) >= 0)
		{
			out[n++] = (char) (paygw_hex_value(s[i + 1]) << 4 | paygw_hex_value(s[i + 2]));
			i += 2;
		}
		else
			out[n++] = s[i];
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

/*
 * The form-url-decoded value of parameter name in a query string (or a
 * form-encoded body) of len bytes; a leading '?' is ignored.  *value is NULL
 * when the parameter is absent, "" when it has no '='.  false with err
 * filled (PAYGW_ERR_WEBHOOK_INVALID) when it is given more than once, or
 * decodes to a NUL byte or invalid UTF-8.
 */
bool
paygw_form_param(const PaygwProvider *prov, const char *query, size_t len,
				 const char *name, char **value, PaygwError *err)
{
	const char *p = query;
	const char *end = query + len;

	*value = NULL;
	if (query == NULL)
		return true;
	if (p < end && *p == '?')
		p++;
	while (p < end)
	{
		const char *amp = memchr(p, '&', end - p);
		const char *seg = p;
		const char *seg_end = amp ? amp : end;
		const char *eq = memchr(seg, '=', seg_end - seg);
		const char *key_end = eq ? eq : seg_end;
		size_t		klen;
		size_t		vlen;
		char	   *key;
		char	   *v;

		p = amp ? amp + 1 : end;
		key = form_decode(seg, key_end - seg, &klen);
		if (klen != strlen(name) || memcmp(key, name, klen) != 0)
			continue;
		if (*value != NULL)
		{
			paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
							"%s webhook parameter \"%s\" is given more than once",
							prov->name, name);
			return false;
		}
		v = eq ? form_decode(eq + 1, seg_end - eq - 1, &vlen) : pstrdup("");
		if (eq && (vlen != strlen(v) || !pg_verify_mbstr(PG_UTF8, v, (int) vlen, true)))
		{
			paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
							"%s webhook parameter \"%s\" is not valid UTF-8 text",
							prov->name, name);
			return false;
		}
		*value = v;
	}
	return true;
}

/* ---- fields ---- */

/*
 * A webhook's JSON body as jsonb, for reading its fields.  NULL with err
 * filled (PAYGW_ERR_WEBHOOK_INVALID) when it is not JSON.
 */
Jsonb *
paygw_webhook_json(const PaygwProvider *prov, const PaygwWebhookRequest *req,
				   PaygwError *err)
{
	Jsonb	   *jb = paygw_json_parse(req->body, req->body_len, err);

	if (jb == NULL)
	{
		/* json.c words its errors for replies */
		invalid(prov, err, req->body_len == 0 ? "body is empty" : "body is not valid JSON");
		return NULL;
	}
	return jb;
}

/*
 * The text of scalar field key of obj (see paygw_json_text; NULL when absent
 * or null).  false with err filled when it is an array or object.
 */
bool
paygw_webhook_field(const PaygwProvider *prov, JsonbContainer *obj,
					const char *key, char **out, PaygwError *err)
{
	if (!paygw_json_text(paygw_json_get(obj, key), out))
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID,
						"%s webhook field \"%s\" is not a string or number", prov->name, key);
		return false;
	}
	return true;
}

/*
 * An id a webhook names (NULL or "" meaning none), checked against the
 * gateway's rules and in the canonical spelling the status call uses
 * (palloc'd; *out NULL for none).  false with err filled
 * (PAYGW_ERR_WEBHOOK_INVALID, the rule broken as detail) when it is not
 * an id the gateway could have issued.
 */
bool
paygw_webhook_id(const PaygwProvider *prov, PaygwLookup lookup, const char *id,
				 char **out, PaygwError *err)
{
	PaygwError	why;

	*out = NULL;
	if (id == NULL || id[0] == '\0')
		return true;
	if (!prov->check_id(lookup, id, &why))
	{
		paygw_set_error(err, PAYGW_ERR_WEBHOOK_INVALID, "%s webhook names an invalid %s",
						prov->name, lookup == PAYGW_LOOKUP_ID ? prov->id_name : prov->order_name);
		paygw_error_detail(err, "%s.", why.message);
		return false;
	}
	*out = prov->canonical_id ? prov->canonical_id(lookup, id) : pstrdup(id);
	return true;
}

/* The error for a signed webhook reaching an account without webhook_key. */
bool
paygw_webhook_no_key(const PaygwProvider *prov, PaygwAccount *account,
					 PaygwError *err)
{
	paygw_set_error(err, PAYGW_ERR_WEBHOOK_SIGNATURE,
					"%s account \"%s\" has no webhook_key to verify webhooks with",
					prov->name, account->name);
	paygw_error_hint(err, "Set webhook_key of the account in paygw.credentials.");
	return false;
}
