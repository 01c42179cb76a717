/*-------------------------------------------------------------------------
 *
 * fuzz_driver.c
 *		libFuzzer harness for paygw's reply parsers and Obmenka's reply
 *		signature check, run inside a PostgreSQL backend.
 *
 * parse_reply() needs palloc, jsonb and numeric, i.e. a backend.  So this
 * file is linked with all of src/ (except paygw.c) and libFuzzer's
 * fuzzer_no_main runtime into paygw_fuzz.so, and the SQL function
 * paygw_fuzz(target, args) hands the backend over to LLVMFuzzerRunDriver().
 * test/fuzz/run.sh runs it in a single-user backend with ASan preloaded.
 * libFuzzer exits the process when it is done.
 *
 * Input format (every target; see README.md):
 *
 *	byte 0		bits 0-3: HTTP status (status_codes[]), bit 4: lookup by order
 *				id, bits 5-7: signature mode (obmenka, sigverify)
 *	sigverify:	1 length byte + the account's salt (empty: the fixture salt)
 *	id			1 length byte + the id asked for (must pass check_id)
 *	header		obmenka and sigverify, only for the modes that read one
 *	body		the rest: the reply body, bytes as received
 *
 * Per input: a fresh memory context where every palloc is its own malloc
 * (so ASan sees the exact bounds of each chunk; see GuardContext), and a
 * fresh resource owner released as at commit (so a leaked digest context
 * warns).  Anything the code under test ereports or warns is a bug: the
 * harness prints it and aborts, and libFuzzer saves the input.  The oracles
 * in check_outcome() turn wrong answers into aborts too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/memnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"

#include "compat.h"
#include "crypto/crypto.h"
#include "providers/provider.h"

PG_MODULE_MAGIC;

/* libFuzzer's entry point for a host program (LLVM >= 12) */
extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8_t *data, size_t size));

PG_FUNCTION_INFO_V1(paygw_fuzz);

/* fixture credentials (test/emulator/fixtures.json) */
#define OBMENKA_SALT "obmenka-test-salt-9Kp"

/* 200 four times: most inputs should reach the status path */
static const long status_codes[16] = {
	200, 200, 200, 200, 201, 204, 302, 400,
	401, 403, 404, 422, 429, 500, 503, 599
};

/*-------------------------------------------------------------------------
 * GuardContext: a memory context whose every chunk is a separate malloc().
 *
 * aset.c carves chunks out of 8 kB blocks, so ASan cannot see a read or
 * write just past a palloc'd chunk.  Here each palloc (paygw's, jsonb_in's,
 * numeric's) gets its own malloc, with ASan's redzones right after the bytes
 * asked for; reset frees every chunk, so use after reset is caught as well.
 * PostgreSQL 15 finds a chunk's context through the pointer stored just
 * before it, which is all a custom context type has to provide.  From 16 on
 * chunk headers encode the context type in 3 bits and custom types are not
 * possible: there the harness falls back to an AllocSet.
 *-------------------------------------------------------------------------
 */
#if PAYGW_HAVE_CUSTOM_MEMORY_CONTEXTS
#define HAVE_GUARD_CONTEXT 1

typedef struct GuardChunk
{
	struct GuardChunk *prev;
	struct GuardChunk *next;
	Size		size;
	MemoryContext context;		/* must come just before the user data */
} GuardChunk;

StaticAssertDecl(sizeof(GuardChunk) == offsetof(GuardChunk, context) + sizeof(MemoryContext),
				 "context pointer must precede the chunk");
StaticAssertDecl(sizeof(GuardChunk) % MAXIMUM_ALIGNOF == 0, "chunk header not aligned");

typedef struct GuardContext
{
	MemoryContextData header;
	GuardChunk *head;
} GuardContext;

#define CHUNK_OF(p) ((GuardChunk *) ((char *) (p) - sizeof(GuardChunk)))
#define DATA_OF(c) ((void *) ((char *) (c) + sizeof(GuardChunk)))

static void *
guard_alloc(MemoryContext context, Size size)
{
	GuardContext *g = (GuardContext *) context;
	GuardChunk *c = malloc(sizeof(GuardChunk) + size);

	if (c == NULL)
		return NULL;
	c->prev = NULL;
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	c->size = size;
	c->context = context;
	context->mem_allocated += size;
	return DATA_OF(c);
}

static void
guard_free(MemoryContext context, void *pointer)
{
	GuardContext *g = (GuardContext *) context;
	GuardChunk *c = CHUNK_OF(pointer);

	if (c->context != context)
	{
		fprintf(stderr, "paygw_fuzz: pfree of a chunk not in the guard context\n");
		abort();
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	context->mem_allocated -= c->size;
	c->context = NULL;
	free(c);
}

static void *
guard_realloc(MemoryContext context, void *pointer, Size size)
{
	GuardChunk *old = CHUNK_OF(pointer);
	void	   *p = guard_alloc(context, size);

	if (p == NULL)
		return NULL;
	memcpy(p, pointer, Min(old->size, size));
	guard_free(context, pointer);
	return p;
}

static void
guard_reset(MemoryContext context)
{
	GuardContext *g = (GuardContext *) context;

	while (g->head)
	{
		GuardChunk *c = g->head;

		g->head = c->next;
		c->context = NULL;
		free(c);
	}
	context->mem_allocated = 0;
}

static void
guard_delete(MemoryContext context)
{
	guard_reset(context);
	free(context);
}

static Size
guard_get_chunk_space(MemoryContext context, void *pointer)
{
	(void) context;
	return CHUNK_OF(pointer)->size + sizeof(GuardChunk);
}

static bool
guard_is_empty(MemoryContext context)
{
	return ((GuardContext *) context)->head == NULL;
}

static void
guard_stats(MemoryContext context, MemoryStatsPrintFunc printfunc,
			void *passthru, MemoryContextCounters *totals,
			bool print_to_stderr)
{
	Size		chunks = 0;

	for (GuardChunk *c = ((GuardContext *) context)->head; c; c = c->next)
		chunks++;
	if (printfunc)
	{
		char		line[100];

		snprintf(line, sizeof(line), "%zu bytes in %zu malloc'd chunks",
				 context->mem_allocated, chunks);
		printfunc(context, passthru, line, print_to_stderr);
	}
	if (totals)
	{
		totals->nblocks += chunks;
		totals->totalspace += context->mem_allocated + chunks * sizeof(GuardChunk);
	}
}

static const MemoryContextMethods guard_methods = {
	.alloc = guard_alloc,
	.free_p = guard_free,
	.realloc = guard_realloc,
	.reset = guard_reset,
	.delete_context = guard_delete,
	.get_chunk_space = guard_get_chunk_space,
	.is_empty = guard_is_empty,
	.stats = guard_stats,
#ifdef MEMORY_CONTEXT_CHECKING
	.check = NULL,
#endif
};

static MemoryContext
guard_context_create(MemoryContext parent, const char *name)
{
	GuardContext *g = malloc(sizeof(GuardContext));

	if (g == NULL)
		elog(ERROR, "out of memory");
	g->head = NULL;
	/* the tag is only looked at by assertions; there is none for custom types */
	MemoryContextCreate((MemoryContext) g, T_AllocSetContext, &guard_methods,
						parent, name);
	return (MemoryContext) g;
}
#else
#define HAVE_GUARD_CONTEXT 0

/* a macro: AllocSetContextCreate() insists on a constant name */
#define guard_context_create(parent, name) \
	AllocSetContextCreate((parent), (name), ALLOCSET_DEFAULT_SIZES)
#endif

/*-------------------------------------------------------------------------
 * Failing: print why and abort(), so libFuzzer saves the input as crash-*.
 *-------------------------------------------------------------------------
 */
static const char *current_target = "?";
static bool in_input = false;
static emit_log_hook_type prev_emit_log_hook = NULL;

static PAYGW_NORETURN_PREFIX void fuzz_fail(const char *fmt,...)
			pg_attribute_printf(1, 2) PAYGW_NORETURN_SUFFIX;

static void
fuzz_fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "\n==paygw_fuzz== FAILURE in target %s: ", current_target);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fflush(stderr);
	abort();
}

/*
 * Anything emitted while an input runs (a WARNING such as a resource-owner
 * leak report, a FATAL) is a bug of the code under test.  ERRORs never get
 * here: the PG_CATCH in run_one() sees them first.
 */
static void
fuzz_emit_log_hook(ErrorData *edata)
{
	if (in_input && edata->elevel >= WARNING)
		fuzz_fail("%s emitted while parsing: %s%s%s",
				  edata->elevel == WARNING ? "WARNING" : "an error",
				  edata->message ? edata->message : "(no message)",
				  edata->detail ? " / " : "", edata->detail ? edata->detail : "");
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*-------------------------------------------------------------------------
 * Reading the input
 *-------------------------------------------------------------------------
 */
typedef struct Reader
{
	const uint8_t *p;
	size_t		n;
} Reader;

static bool
take_byte(Reader *r, uint8_t *b)
{
	if (r->n == 0)
		return false;
	*b = *r->p++;
	r->n--;
	return true;
}

/* a length-prefixed string; false when short or holding a NUL byte */
static bool
take_string(Reader *r, char **out)
{
	uint8_t		len;

	if (!take_byte(r, &len) || r->n < len || memchr(r->p, '\0', len) != NULL)
		return false;
	*out = pnstrdup((const char *) r->p, len);
	r->p += len;
	r->n -= len;
	return true;
}

/* the rest of the input as a reply body, the way http.c delivers it */
static void
take_body(Reader *r, PaygwHttpResponse *resp)
{
	resp->body = palloc(r->n + 1);
	if (r->n > 0)
		memcpy(resp->body, r->p, r->n);
	resp->body[r->n] = '\0';
	resp->body_len = r->n;
	r->p += r->n;
	r->n = 0;
}

/* text that reaches paygw from SQL: valid in the server encoding */
static bool
valid_text(const char *s)
{
	return pg_verify_mbstr(GetDatabaseEncoding(), s, (int) strlen(s), true);
}

/*-------------------------------------------------------------------------
 * Obmenka's reply signature, computed independently of src/ (OpenSSL's
 * EVP directly): base64(md5(salt || base64(sha1(body)) || salt)).
 *-------------------------------------------------------------------------
 */
static char *
reference_obmenka_signature(const char *salt, const char *body, size_t len)
{
	unsigned char sha1[20];
	unsigned char md5[16];
	unsigned char inner[32];
	char	   *out = palloc(32);
	size_t		saltlen = strlen(salt);
	char	   *msg = palloc(2 * saltlen + 28);
	unsigned int n;

	if (!EVP_Digest(body, len, sha1, &n, EVP_sha1(), NULL) || n != 20)
		fuzz_fail("harness: SHA-1 failed");
	if (EVP_EncodeBlock(inner, sha1, 20) != 28)
		fuzz_fail("harness: base64 failed");
	memcpy(msg, salt, saltlen);
	memcpy(msg + saltlen, inner, 28);
	memcpy(msg + saltlen + 28, salt, saltlen);
	if (!EVP_Digest(msg, 2 * saltlen + 28, md5, &n, EVP_md5(), NULL) || n != 16)
		fuzz_fail("harness: MD5 failed");
	if (EVP_EncodeBlock((unsigned char *) out, md5, 16) != 24)
		fuzz_fail("harness: base64 failed");
	return out;
}

/*-------------------------------------------------------------------------
 * Oracles
 *-------------------------------------------------------------------------
 */
typedef struct Case
{
	const PaygwProvider *prov;
	PaygwAccount account;
	PaygwLookup lookup;
	char	   *id;
	PaygwHttpResponse resp;
	char	   *good_signature; /* obmenka: the correct DPAY_SECURE */
	bool		fixture_secret; /* account.secret is not from the input */
} Case;

/*
 * Does an error text repeat needle (a secret or a signature)?  Only needles
 * of 16+ characters count (shorter ones turn up in the fixed texts by
 * chance), and the gateway's own words quoted in the detail are skipped.
 */
static bool
leaks(const PaygwError *err, const char *needle)
{
	if (needle == NULL || strlen(needle) < 16)
		return false;
	if (strstr(err->message, needle) || strstr(err->hint, needle))
		return true;
	return strncmp(err->detail, "The gateway said: ", 18) != 0 &&
		strstr(err->detail, needle) != NULL;
}

/* a header value that looks like a signature (base64, no spaces) */
static bool
signature_like(const char *s)
{
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == strlen(s);
}

static void
check_text(const char *what, const char *s, size_t bufsize)
{
	size_t		len = bufsize ? strnlen(s, bufsize) : strlen(s);

	if (bufsize && len == bufsize)
		fuzz_fail("%s is not NUL-terminated", what);
	if (!pg_verify_mbstr(GetDatabaseEncoding(), s, (int) len, true))
		fuzz_fail("%s is not valid in the server encoding", what);
}

static bool
same_id(const Case *c, const char *got)
{
	const char *want = c->id;

	if (c->prov == &paygw_okepay)
		want += strspn(want, "0");
	if (c->prov == &paygw_morune && c->lookup == PAYGW_LOOKUP_ID)
		return pg_strcasecmp(got, want) == 0;
	return strcmp(got, want) == 0;
}

static void
check_outcome(const Case *c, bool ok, const PaygwStatusResult *r,
			  const PaygwError *err)
{
	if (!ok)
	{
		if (err->code == PAYGW_OK)
			fuzz_fail("parse_reply failed without an error class");
		if (err->code == PAYGW_ERR_INTERNAL)
			fuzz_fail("a reply was classified as an internal error: %s", err->message);
		if (err->message[0] == '\0')
			fuzz_fail("error without a message");
		check_text("error message", err->message, sizeof(err->message));
		check_text("error detail", err->detail, sizeof(err->detail));
		check_text("error hint", err->hint, sizeof(err->hint));
		if (c->fixture_secret && leaks(err, c->account.secret))
			fuzz_fail("error text contains the account's secret");
		if (leaks(err, c->good_signature))
			fuzz_fail("error text contains the reply signature");
		if (c->resp.captured_header && signature_like(c->resp.captured_header) &&
			leaks(err, c->resp.captured_header))
			fuzz_fail("error text contains the DPAY_SECURE header value");
		return;
	}

	/* a status: only from a 2xx reply, about the payment asked for */
	if (c->resp.status >= 300)
		fuzz_fail("HTTP %ld reply yielded a status", c->resp.status);
	if (c->good_signature != NULL &&
		(c->resp.captured_header == NULL ||
		 strcmp(c->resp.captured_header, c->good_signature) != 0))
		fuzz_fail("obmenka reply with a missing or wrong signature yielded a status");
	if (r->provider_status == NULL || r->provider_status[0] == '\0')
		fuzz_fail("status result without provider_status");
	check_text("provider_status", r->provider_status, 0);
	if ((int) r->status < PAYGW_STATUS_PENDING || (int) r->status > PAYGW_STATUS_EXPIRED)
		fuzz_fail("status %d out of range", (int) r->status);
	if (!r->status_known && r->status != PAYGW_STATUS_PENDING)
		fuzz_fail("unknown provider status mapped to %d", (int) r->status);
	if (r->response == NULL)
		fuzz_fail("status result without the reply document");
	if (r->payment_id)
		check_text("payment_id", r->payment_id, 0);
	if (r->order_id)
		check_text("order_id", r->order_id, 0);
	if (r->currency)
		check_text("currency", r->currency, 0);
	if (c->lookup == PAYGW_LOOKUP_ID && r->payment_id && !same_id(c, r->payment_id))
		fuzz_fail("status for payment \"%s\" returned for id \"%s\"", r->payment_id, c->id);
	if (c->lookup == PAYGW_LOOKUP_ORDER && r->order_id && !same_id(c, r->order_id))
		fuzz_fail("status for order \"%s\" returned for order \"%s\"", r->order_id, c->id);
	/* the values must be usable as SQL results */
	if (!r->amount_isnull)
		(void) DatumGetCString(DirectFunctionCall1(numeric_out, r->amount));
	(void) JsonbToCString(NULL, &r->response->root, VARSIZE(r->response));
}

/*-------------------------------------------------------------------------
 * Targets
 *-------------------------------------------------------------------------
 */
static void
fill_account(Case *c, const PaygwProvider *prov)
{
	memset(&c->account, 0, sizeof(c->account));
	c->account.name = "fuzz";
	c->account.provider = prov;
	c->account.base_url = "http://127.0.0.1:1";
	c->fixture_secret = true;
	if (prov == &paygw_okepay)
	{
		c->account.merchant_id = "demo-shop";
		c->account.secret = "okepay-test-secret-7Qx";
	}
	else if (prov == &paygw_obmenka)
	{
		c->account.merchant_id = "1234";
		c->account.secret = OBMENKA_SALT;
	}
	else if (prov == &paygw_alikassa)
	{
		c->account.merchant_id = "93d5df06-996c-48c3-9847-348d6b580b80";
		c->account.secret = "not-a-key: parse_reply never signs";
		c->account.secret_password = "test-alikassa-pass";
		c->account.digest = "sha1";
	}
	else
	{
		c->account.merchant_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
		c->account.secret = "morune-test-key-d6be9962";
	}
}

/* byte 0 and the id; false (input rejected) when the id is not one paygw sends */
static bool
read_head(Reader *r, Case *c, uint8_t *mode)
{
	uint8_t		b;
	PaygwError	err;

	if (!take_byte(r, &b))
		return false;
	c->resp.ok = true;
	c->resp.status = status_codes[b & 0x0f];
	c->lookup = (b & 0x10) ? PAYGW_LOOKUP_ORDER : PAYGW_LOOKUP_ID;
	*mode = b >> 5;
	if (!take_string(r, &c->id) || !valid_text(c->id))
		return false;
	memset(&err, 0, sizeof(err));
	/* what call.c checks before a request is ever sent */
	return c->prov->check_id(c->lookup, c->id, &err);
}

static int
run_parse(Case *c)
{
	PaygwStatusResult result;
	PaygwError	err;
	bool		ok;

	memset(&result, 0, sizeof(result));
	result.amount_isnull = true;
	memset(&err, 0, sizeof(err));
	ok = c->prov->parse_reply(&c->account, c->lookup, c->id, &c->resp, &result, &err);
	check_outcome(c, ok, &result, &err);
	return 0;
}

/* okepay, alikassa, morune: status, lookup, id, body */
static int
target_plain(const PaygwProvider *prov, const uint8_t *data, size_t size)
{
	Reader		r = {data, size};
	Case		c;
	uint8_t		mode;

	memset(&c, 0, sizeof(c));
	c.prov = prov;
	fill_account(&c, prov);
	if (!read_head(&r, &c, &mode))
		return -1;
	take_body(&r, &c.resp);
	return run_parse(&c);
}

/*
 * obmenka: the parser behind the signature check.  Modes 0-3 sign the
 * fuzzed body correctly (so mutations reach the status path); 4: no
 * header; 5: header from the input (the recorded one in the seeds); 6:
 * signed with a wrong salt; 7: correct signature, last character changed.
 */
static int
target_obmenka(const uint8_t *data, size_t size)
{
	Reader		r = {data, size};
	Case		c;
	uint8_t		mode;
	char	   *header = NULL;

	memset(&c, 0, sizeof(c));
	c.prov = &paygw_obmenka;
	fill_account(&c, &paygw_obmenka);
	if (!read_head(&r, &c, &mode))
		return -1;
	if (mode == 5 && !take_string(&r, &header))
		return -1;
	take_body(&r, &c.resp);
	c.good_signature = reference_obmenka_signature(c.account.secret, c.resp.body,
												   c.resp.body_len);
	switch (mode)
	{
		case 4:
			break;
		case 5:
			c.resp.captured_header = header;
			break;
		case 6:
			c.resp.captured_header =
				reference_obmenka_signature("obmenka-wrong-salt", c.resp.body, c.resp.body_len);
			break;
		case 7:
			header = pstrdup(c.good_signature);
			header[strlen(header) - 1] ^= 0x01;
			c.resp.captured_header = header;
			break;
		default:
			c.resp.captured_header = pstrdup(c.good_signature);
			break;
	}
	return run_parse(&c);
}

/*
 * sigverify: Obmenka's reply signature check against a reference, with a
 * fuzzed salt and header.  Header modes: 0 the correct signature; 1 none;
 * 2 from the input; 3 the correct one cut to k characters; 4 the correct
 * one plus a suffix from the input; 5 one character replaced; 6 signed with
 * the salt plus one byte; 7 signed over the body less its last byte.
 * Oracle (check_outcome): a status only with exactly the right signature,
 * and the signature check never fails a correctly signed reply.
 */
static int
target_sigverify(const uint8_t *data, size_t size)
{
	Reader		r = {data, size};
	Case		c;
	uint8_t		mode;
	uint8_t		b1 = 0,
				b2 = 0;
	char	   *salt;
	char	   *extra = NULL;
	char	   *good;
	PaygwStatusResult result;
	PaygwError	err;
	bool		ok;

	memset(&c, 0, sizeof(c));
	c.prov = &paygw_obmenka;
	fill_account(&c, &paygw_obmenka);
	/* byte 0 and the salt come before the id */
	if (r.n < 1)
		return -1;
	{
		Reader		salt_reader = {r.p + 1, r.n - 1};

		if (!take_string(&salt_reader, &salt) || !valid_text(salt))
			return -1;
		if (salt[0] != '\0')
		{
			c.account.secret = salt;
			c.fixture_secret = false;
		}
		/* splice the salt out so that read_head sees byte 0 then the id */
		{
			uint8_t    *rest = palloc(salt_reader.n + 1);

			rest[0] = r.p[0];
			memcpy(rest + 1, salt_reader.p, salt_reader.n);
			r.p = rest;
			r.n = salt_reader.n + 1;
		}
	}
	if (!read_head(&r, &c, &mode))
		return -1;
	switch (mode)
	{
		case 2:
		case 4:
			if (!take_string(&r, &extra))
				return -1;
			break;
		case 3:
			if (!take_byte(&r, &b1))
				return -1;
			break;
		case 5:
		case 6:
			if (!take_byte(&r, &b1) || !take_byte(&r, &b2))
				return -1;
			break;
		default:
			break;
	}
	take_body(&r, &c.resp);
	good = reference_obmenka_signature(c.account.secret, c.resp.body, c.resp.body_len);
	c.good_signature = good;
	switch (mode)
	{
		case 0:
			c.resp.captured_header = pstrdup(good);
			break;
		case 1:
			break;
		case 2:
			c.resp.captured_header = extra;
			break;
		case 3:
			c.resp.captured_header = pnstrdup(good, b1 % strlen(good));
			break;
		case 4:
			c.resp.captured_header = psprintf("%s%s", good, extra);
			break;
		case 5:
			{
				char	   *h = pstrdup(good);

				h[b1 % strlen(h)] = b2 ? (char) b2 : 'A';
				c.resp.captured_header = h;
				break;
			}
		case 6:
			{
				char	   *s = psprintf("%s%c", c.account.secret, b2 ? (char) b2 : 'x');

				if (!valid_text(s))
					return -1;
				c.resp.captured_header =
					reference_obmenka_signature(s, c.resp.body, c.resp.body_len);
				break;
			}
		case 7:
			c.resp.captured_header =
				reference_obmenka_signature(c.account.secret, c.resp.body,
											c.resp.body_len ? c.resp.body_len - 1 : 0);
			break;
	}

	memset(&result, 0, sizeof(result));
	result.amount_isnull = true;
	memset(&err, 0, sizeof(err));
	ok = paygw_obmenka.parse_reply(&c.account, c.lookup, c.id, &c.resp, &result, &err);
	check_outcome(&c, ok, &result, &err);

	/*
	 * The other direction: a correctly signed reply never fails the
	 * signature check, a wrongly signed or unsigned one that would yield a
	 * status always does.
	 */
	if (!ok && err.code == PAYGW_ERR_REPLY_SIGNATURE && c.resp.captured_header &&
		strcmp(c.resp.captured_header, good) == 0)
		fuzz_fail("correctly signed reply failed signature verification: %s", err.message);
	if (mode == 0)
	{
		/* paygw's own signer must agree with the reference */
		PaygwError	serr;
		char	   *mine;

		memset(&serr, 0, sizeof(serr));
		mine = paygw_obmenka.sign(&c.account, c.resp.body, c.resp.body_len, &serr);
		if (mine == NULL || strcmp(mine, good) != 0)
			fuzz_fail("paygw's obmenka signature differs from the reference");
	}
	return 0;
}

static int
target_okepay(const uint8_t *data, size_t size)
{
	return target_plain(&paygw_okepay, data, size);
}

static int
target_alikassa(const uint8_t *data, size_t size)
{
	return target_plain(&paygw_alikassa, data, size);
}

static int
target_morune(const uint8_t *data, size_t size)
{
	return target_plain(&paygw_morune, data, size);
}

/*
 * create: a provider's create-reply parser (PaygwCreateSpec.parse).  Byte 0:
 * bits 0-3 the HTTP status, bits 4-5 the provider (okepay, obmenka,
 * alikassa, morune), bit 6 the step (Obmenka's process call; others step
 * 0), bit 7 for Obmenka: no DPAY_SECURE header (else a correct one).  The
 * rest is the body.  Oracles: a success names the created invoice (unless
 * it says duplicate, or Obmenka's process found the invoice final), every
 * text is valid, and a failure has an error class.
 */
static int
target_create(const uint8_t *data, size_t size)
{
	static const PaygwProvider *const provs[] = {&paygw_okepay, &paygw_obmenka,
	&paygw_alikassa, &paygw_morune};
	Reader		r = {data, size};
	Case		c;
	uint8_t		b;
	PaygwCreateRequest in;
	PaygwCreateResult out;
	PaygwError	err;
	JsonbValue *values[32] = {0};
	bool		ok;

	if (!take_byte(&r, &b))
		return -1;
	memset(&c, 0, sizeof(c));
	c.prov = provs[(b >> 4) & 0x03];
	if (c.prov->create == NULL)
		return -1;
	fill_account(&c, c.prov);
	c.resp.ok = true;
	c.resp.status = status_codes[b & 0x0f];
	take_body(&r, &c.resp);
	if (c.prov == &paygw_obmenka && !(b & 0x80))
		c.resp.captured_header = reference_obmenka_signature(c.account.secret, c.resp.body,
															 c.resp.body_len);
	memset(&in, 0, sizeof(in));
	in.order_id = "fuzz-order-1";
	in.amount = "10.50";
	in.amount_minor = "1050";
	in.options = c.prov->create->options;
	in.values = values;
	in.step = (b & 0x40) && c.prov->create->steps > 1 ? 1 : 0;
	in.payment_id = in.step ? "E000-0000-0001" : NULL;
	memset(&out, 0, sizeof(out));
	out.expires_in_s = -1;
	memset(&err, 0, sizeof(err));
	ok = c.prov->create->parse(&c.account, &in, &c.resp, &out, &err);
	if (!ok)
	{
		if (err.code == PAYGW_OK)
			fuzz_fail("create parse failed without an error class");
		check_text("message", err.message, sizeof(err.message));
		check_text("detail", err.detail, sizeof(err.detail));
		return 0;
	}
	if (out.duplicate)
		return 0;
	if (in.step == 0 && out.payment_id == NULL)
		fuzz_fail("create succeeded without the invoice's id");
	if (out.payment_id)
		check_text("payment_id", out.payment_id, 0);
	if (out.pay_url)
		check_text("pay_url", out.pay_url, 0);
	if (out.provider_status)
		check_text("provider_status", out.provider_status, 0);
	if ((int) out.status < PAYGW_STATUS_PENDING || (int) out.status > PAYGW_STATUS_EXPIRED)
		fuzz_fail("status %d out of range", (int) out.status);
	if (out.response != NULL)
		(void) JsonbToCString(NULL, &out.response->root, VARSIZE(out.response));
	else if (in.step == 0)
		fuzz_fail("create succeeded without the reply document");
	return 0;
}

/*
 * selftest: planted bugs, one per first byte, so that the checks can prove
 * the harness still sees each kind (test/checks/60-fuzz-smoke.sh).  Never
 * fuzzed.  O: read one byte past a palloc'd chunk; U: read a pfree'd chunk;
 * E: ereport(ERROR); W: a WARNING; L: a malloc leak; H: a hang.
 */
static void *volatile selftest_sink;

static int
target_selftest(const uint8_t *data, size_t size)
{
	char	   *p;

	if (size < 1)
		return 0;
	switch (data[0])
	{
		case 'O':
			p = palloc(size);
			memcpy(p, data, size);
			selftest_sink = (void *) (uintptr_t) p[size];
			break;
		case 'U':
			p = palloc(size);
			pfree(p);
			selftest_sink = (void *) (uintptr_t) p[0];
			break;
		case 'E':
			elog(ERROR, "selftest: planted ereport");
			break;
		case 'W':
			elog(WARNING, "selftest: planted warning");
			break;
		case 'L':
			selftest_sink = malloc(size + 100);
			selftest_sink = NULL;
			break;
		case 'H':
			for (;;)
				selftest_sink = NULL;
		default:
			break;
	}
	return 0;
}

typedef struct FuzzTarget
{
	const char *name;
	int			(*run) (const uint8_t *data, size_t size);
} FuzzTarget;

static const FuzzTarget targets[] = {
	{"okepay", target_okepay},
	{"obmenka", target_obmenka},
	{"alikassa", target_alikassa},
	{"morune", target_morune},
	{"sigverify", target_sigverify},
	{"create", target_create},
	{"selftest", target_selftest},
};

static const FuzzTarget *current = NULL;
static MemoryContext input_cxt = NULL;
static MemoryContext harness_cxt = NULL;

/*-------------------------------------------------------------------------
 * One input: own memory context and resource owner, ereport = failure.
 *-------------------------------------------------------------------------
 */
/*
 * PAYGW_FUZZ_TOLERATE: '|'-separated fragments of ereport messages to count
 * instead of failing on, so that a long run can go on past a bug already
 * reported (run.sh --tolerate).  Empty by default: every ereport fails.
 */
static char *tolerate = NULL;
static long tolerated = 0;

static bool
tolerated_error(const char *message)
{
	char	   *copy;
	char	   *tok;
	char	   *save = NULL;
	bool		hit = false;

	if (tolerate == NULL || tolerate[0] == '\0' || message == NULL)
		return false;
	copy = pstrdup(tolerate);
	for (tok = strtok_r(copy, "|", &save); tok; tok = strtok_r(NULL, "|", &save))
		if (tok[0] != '\0' && strstr(message, tok) != NULL)
			hit = true;
	pfree(copy);
	return hit;
}

static int
run_one(const uint8_t *data, size_t size)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(input_cxt);
	ResourceOwner oldowner = CurrentResourceOwner;
	ResourceOwner owner = ResourceOwnerCreate(oldowner, "paygw_fuzz input");
	volatile int rc = 0;
	volatile bool threw = false;

	CurrentResourceOwner = owner;
	in_input = true;
	PG_TRY();
	{
		rc = current->run(data, size);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(harness_cxt);
		edata = CopyErrorData();
		if (!tolerated_error(edata->message))
			fuzz_fail("ereport(%s) escaped: %s%s%s (%s:%d)",
					  edata->elevel >= ERROR ? "ERROR" : "?",
					  edata->message ? edata->message : "(no message)",
					  edata->detail ? " / " : "", edata->detail ? edata->detail : "",
					  edata->filename ? edata->filename : "?", edata->lineno);
		if (tolerated++ == 0)
			fprintf(stderr, "paygw_fuzz: tolerating known failure (counted, not fatal): %s\n",
					edata->message);
		FreeErrorData(edata);
		FlushErrorState();
		threw = true;
		rc = -1;				/* keep it out of the corpus */
	}
	PG_END_TRY();

	/* as at commit: a leaked digest or HMAC context is reported (WARNING) */
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, !threw, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, !threw, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, !threw, false);
	CurrentResourceOwner = oldowner;
	ResourceOwnerDelete(owner);
	in_input = false;

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(input_cxt);
	return rc;
}

/* at exit (libFuzzer ends with exit()): the count of tolerated failures */
static void
report_tolerated(void)
{
	if (tolerate != NULL && tolerate[0] != '\0')
		fprintf(stderr, "paygw_fuzz: tolerated failures: %ld\n", tolerated);
}

/*
 * paygw_fuzz(target text, args text[]) RETURNS int
 *
 * args are libFuzzer's command line (flags, corpus directories, or files to
 * replay).  libFuzzer normally exits the process itself when done.
 */
Datum
paygw_fuzz(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			argc;
	char	  **argv;
	int			rc;

	current = NULL;
	for (size_t i = 0; i < lengthof(targets); i++)
		if (strcmp(targets[i].name, name) == 0)
			current = &targets[i];
	if (current == NULL)
		ereport(ERROR,
				(errmsg("unknown fuzz target \"%s\"", name),
				 errhint("Targets: okepay, obmenka, alikassa, morune, sigverify.")));
	current_target = current->name;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	harness_cxt = AllocSetContextCreate(TopMemoryContext, "paygw_fuzz harness",
										ALLOCSET_DEFAULT_SIZES);
	argv = MemoryContextAllocZero(harness_cxt, sizeof(char *) * (nelems + 2));
	argv[0] = MemoryContextStrdup(harness_cxt, "paygw_fuzz");
	argc = 1;
	for (int i = 0; i < nelems; i++)
		if (!nulls[i])
			argv[argc++] = MemoryContextStrdup(harness_cxt, TextDatumGetCString(elems[i]));
	argv[argc] = NULL;

	input_cxt = guard_context_create(TopMemoryContext, "paygw_fuzz input");
	if (getenv("PAYGW_FUZZ_TOLERATE") != NULL)
	{
		tolerate = MemoryContextStrdup(harness_cxt, getenv("PAYGW_FUZZ_TOLERATE"));
		atexit(report_tolerated);
	}
	fprintf(stderr, "paygw_fuzz: target %s, database encoding %s, %s\n",
			current->name, GetDatabaseEncodingName(),
			HAVE_GUARD_CONTEXT ? "one malloc per palloc (guard context)"
			: "AllocSet input context (no per-chunk ASan bounds)");

	/*
	 * libFuzzer leaves a signal alone when the program already handles it,
	 * and the backend handles SIGALRM (timeouts), SIGINT, SIGTERM, SIGUSR1
	 * and SIGUSR2: back to the defaults, so that -timeout catches a hang and
	 * SIGTERM/SIGINT end the run with final stats.  The process does not
	 * outlive the run.
	 */
	pqsignal(SIGALRM, SIG_DFL);
	pqsignal(SIGINT, SIG_DFL);
	pqsignal(SIGTERM, SIG_DFL);
	pqsignal(SIGUSR1, SIG_DFL);
	pqsignal(SIGUSR2, SIG_DFL);

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = fuzz_emit_log_hook;
	rc = LLVMFuzzerRunDriver(&argc, &argv, run_one);
	emit_log_hook = prev_emit_log_hook;
	PG_RETURN_INT32(rc);
}
