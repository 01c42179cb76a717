/*-------------------------------------------------------------------------
 *
 * encode.c
 *		Base64, hex, form URL-encoding, constant-time comparisons and wiping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "compat.h"
#include "crypto/crypto.h"

/*
 * Standard base64 (with padding, no line breaks) of data, palloc'd.
 */
char *
paygw_base64(const void *data, size_t len)
{
	int			dstlen = pg_b64_enc_len((int) len) + 1;
	char	   *dst = palloc(dstlen);
	int			n;

	n = paygw_b64_encode(data, (int) len, dst, dstlen);
	if (n < 0)
		elog(ERROR, "base64 encoding failed");
	dst[n] = '\0';
	return dst;
}

/*
 * Decode standard base64 text into *out (palloc'd, *outlen bytes).  Returns
 * false for text that is not valid base64.
 */
bool
paygw_base64_decode(const char *text, uint8 **out, size_t *outlen)
{
	int			len = (int) strlen(text);
	int			maxlen = pg_b64_dec_len(len);
	uint8	   *buf = palloc(maxlen + 1);
	int			n;

	n = paygw_b64_decode(text, len, buf, maxlen);
	if (n < 0)
	{
		pfree(buf);
		return false;
	}
	*out = buf;
	*outlen = (size_t) n;
	return true;
}

/*
 * Lower-case hexadecimal of data, palloc'd.
 */
char *
paygw_hex(const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;
	char	   *dst = palloc(len * 2 + 1);

	for (size_t i = 0; i < len; i++)
	{
		dst[2 * i] = digits[p[i] >> 4];
		dst[2 * i + 1] = digits[p[i] & 0x0F];
	}
	dst[len * 2] = '\0';
	return dst;
}

/*
 * Append s to buf encoded the way PHP's http_build_query (RFC 1738) does:
 * A-Z a-z 0-9 - _ . stay, a space becomes '+', every other byte becomes %XX
 * with upper-case hex.  s is taken as raw bytes (callers pass UTF-8), so no
 * character of an id can change the structure of a query string.
 */
void
paygw_append_form_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		unsigned char c = *p;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
			appendStringInfoChar(buf, (char) c);
		else if (c == ' ')
			appendStringInfoChar(buf, '+');
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 0x0F]);
		}
	}
}

/*
 * Compare two NUL-terminated strings in time that depends only on their
 * lengths, for signatures.
 */
bool
paygw_equal_timingsafe(const char *a, const char *b)
{
	size_t		la = strlen(a);
	size_t		lb = strlen(b);
	unsigned char diff = 0;

	if (la != lb)
		return false;
	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i];
	return diff == 0;
}

/*
 * Compare the hexadecimal text of a MAC we computed (expected, lower case)
 * with one received (given), in time that depends only on their lengths.
 * Hex digits compare case-insensitively; anything in given that is not a
 * hex digit makes it unequal.
 */
bool
paygw_hex_equal_timingsafe(const char *expected, const char *given)
{
	size_t		le = strlen(expected);
	size_t		lg = strlen(given);
	unsigned char diff = 0;
	unsigned char bad = 0;

	if (le != lg || le == 0)
		return false;
	for (size_t i = 0; i < le; i++)
	{
		unsigned char g = (unsigned char) given[i];

		/* given is the sender's text: checking its form leaks nothing */
		bad |= !((g >= '0' && g <= '9') || (g >= 'a' && g <= 'f') || (g >= 'A' && g <= 'F'));
		/* | 0x20 maps A-F to a-f and leaves the digits alone */
		diff |= (unsigned char) (((unsigned char) expected[i] | 0x20) ^ (g | 0x20));
	}
	return (diff | bad) == 0;
}

/* Overwrite memory holding a secret; the compiler may not elide it. */
void
paygw_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		explicit_bzero(p, len);
}

typedef struct WipeOnReset
{
	MemoryContextCallback cb;
	char	   *s;
} WipeOnReset;

static void
wipe_callback(void *arg)
{
	paygw_wipe_string(((WipeOnReset *) arg)->s);
}

/*
 * Overwrite the string s (palloc'd in CurrentMemoryContext) when that
 * context is reset or deleted, whether the call ends normally or by error.
 */
void
paygw_wipe_on_reset(char *s)
{
	WipeOnReset *w = palloc(sizeof(WipeOnReset));

	w->s = s;
	w->cb.func = wipe_callback;
	w->cb.arg = w;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &w->cb);
}

/* Overwrite a NUL-terminated secret string (NULL is allowed). */
void
paygw_wipe_string(char *s)
{
	if (s != NULL)
		paygw_wipe(s, strlen(s));
}

/* The value of one hexadecimal digit (either case), or -1. */
int
paygw_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
