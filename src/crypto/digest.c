/*-------------------------------------------------------------------------
 *
 * digest.c
 *		Message digests and HMAC through PostgreSQL's common/ helpers (which
 *		use OpenSSL underneath in a server built with it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"

#include "crypto/crypto.h"

static pg_cryptohash_type
to_pg_type(PaygwDigest alg)
{
	switch (alg)
	{
		case PAYGW_MD5:
			return PG_MD5;
		case PAYGW_SHA1:
			return PG_SHA1;
		case PAYGW_SHA256:
			return PG_SHA256;
	}
	elog(ERROR, "unknown digest %d", (int) alg);
	return PG_SHA256;			/* keep compiler quiet */
}

/* Length in bytes of a digest's output. */
int
paygw_digest_length(PaygwDigest alg)
{
	switch (alg)
	{
		case PAYGW_MD5:
			return 16;
		case PAYGW_SHA1:
			return 20;
		case PAYGW_SHA256:
			return 32;
	}
	return 0;
}

/*
 * Raw digest of data into out (paygw_digest_length(alg) bytes).
 */
bool
paygw_digest(PaygwDigest alg, const void *data, size_t len, uint8 *out,
			 PaygwError *err)
{
	pg_cryptohash_ctx *ctx;
	bool		ok;

	ctx = pg_cryptohash_create(to_pg_type(alg));
	if (ctx == NULL)
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "could not create a digest context");
	ok = pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, data, len) == 0 &&
		pg_cryptohash_final(ctx, out, paygw_digest_length(alg)) == 0;
	pg_cryptohash_free(ctx);
	if (!ok)
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "could not compute a message digest");
	return true;
}

/*
 * HMAC-SHA256 of msg under the NUL-terminated key, as text: base64, or
 * lower-case hex when hex is true (palloc'd).  The raw MAC is wiped.
 */
char *
paygw_hmac_sha256_text(const char *key, const void *msg, size_t msglen,
					   bool hex, PaygwError *err)
{
	uint8		mac[32];
	char	   *text;

	if (!paygw_hmac_sha256(key, strlen(key), msg, msglen, mac, err))
		return NULL;
	text = hex ? paygw_hex(mac, sizeof(mac)) : paygw_base64(mac, sizeof(mac));
	paygw_wipe(mac, sizeof(mac));
	return text;
}

/*
 * Raw HMAC-SHA256 of msg under key into out (32 bytes).
 */
bool
paygw_hmac_sha256(const void *key, size_t keylen, const void *msg,
				  size_t msglen, uint8 *out, PaygwError *err)
{
	pg_hmac_ctx *ctx;
	bool		ok;

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "could not create an HMAC context");
	ok = pg_hmac_init(ctx, key, keylen) == 0 &&
		pg_hmac_update(ctx, msg, msglen) == 0 &&
		pg_hmac_final(ctx, out, 32) == 0;
	pg_hmac_free(ctx);
	if (!ok)
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "could not compute an HMAC");
	return true;
}
