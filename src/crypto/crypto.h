/*-------------------------------------------------------------------------
 *
 * crypto.h
 *		Digests, HMAC, RSA signing and verification, and the encodings the
 *		gateways use.
 *
 * Only the files under src/crypto/ include OpenSSL.  Providers see this
 * interface and nothing else.  Every function that returns a string returns
 * it palloc'd in CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_CRYPTO_H
#define PAYGW_CRYPTO_H

#include "lib/stringinfo.h"

#include "paygw.h"

typedef enum PaygwDigest
{
	PAYGW_MD5,
	PAYGW_SHA1,
	PAYGW_SHA256
} PaygwDigest;

#define PAYGW_MAX_DIGEST_LEN 32

extern int	paygw_digest_length(PaygwDigest alg);
extern bool paygw_digest(PaygwDigest alg, const void *data, size_t len,
						 uint8 *out, PaygwError *err);
extern bool paygw_hmac_sha256(const void *key, size_t keylen,
							  const void *msg, size_t msglen,
							  uint8 *out, PaygwError *err);
extern char *paygw_hmac_sha256_text(const char *key, const void *msg,
									size_t msglen, bool hex, PaygwError *err);

/* encode.c */
extern char *paygw_base64(const void *data, size_t len);
extern char *paygw_hex(const void *data, size_t len);
extern int	paygw_hex_value(char c);
extern void paygw_append_form_encoded(StringInfo buf, const char *s);
extern bool paygw_equal_timingsafe(const char *a, const char *b);
extern bool paygw_hex_equal_timingsafe(const char *expected, const char *given);
extern void paygw_wipe(void *p, size_t len);
extern void paygw_wipe_string(char *s);
extern void paygw_wipe_on_reset(char *s);

/* aead.c */
extern uint8 *paygw_aead_seal(const uint8 *key, const char *aad,
							  const uint8 *plaintext, size_t len,
							  size_t *outlen, PaygwError *err);
extern char *paygw_aead_open(const uint8 *key, const char *aad,
							 const uint8 *sealed, size_t len, PaygwError *err);
extern bool paygw_base64_decode(const char *text, uint8 **out, size_t *outlen);

/* rsa.c */
extern bool paygw_rsa_check_key(const char *pem, const char *password,
								PaygwError *err);
extern bool paygw_rsa_sign_base64(const char *pem, const char *password,
								  PaygwDigest alg, const void *data,
								  size_t len, char **signature,
								  PaygwError *err);
extern bool paygw_rsa_check_public_key(const char *pem, PaygwError *err);
extern bool paygw_rsa_verify(const char *pem, PaygwDigest alg,
							 const void *data, size_t len,
							 const uint8 *sig, size_t siglen, bool *valid,
							 PaygwError *err);

#endif							/* PAYGW_CRYPTO_H */
