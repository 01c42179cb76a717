/*-------------------------------------------------------------------------
 *
 * aead.c
 *		AES-256-GCM authenticated encryption of short secrets.
 *
 * Output: nonce (12 random bytes) || ciphertext || tag (16 bytes).  The
 * additional authenticated data binds a ciphertext to where it is stored,
 * so it cannot be moved to another row or column undetected.
 *
 * OpenSSL objects are freed before returning; buffers that held plaintext
 * are wiped.  No ereport while an OpenSSL object is live.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto/crypto.h"

#define NONCE_LEN 12
#define TAG_LEN 16

/*
 * Encrypt plaintext (len bytes) under key (32 bytes) with aad.  Returns the
 * sealed bytes (palloc'd, *outlen set) or NULL with err filled.
 */
uint8 *
paygw_aead_seal(const uint8 *key, const char *aad, const uint8 *plaintext,
				size_t len, size_t *outlen, PaygwError *err)
{
	uint8	   *out = palloc(NONCE_LEN + len + TAG_LEN);
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			fin = 0;
	bool		ok;

	if (RAND_bytes(out, NONCE_LEN) != 1)
	{
		ERR_clear_error();
		pfree(out);
		paygw_set_error(err, PAYGW_ERR_INTERNAL, "could not generate a nonce");
		return NULL;
	}
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, key, out) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &n, (const uint8 *) aad, (int) strlen(aad)) == 1 &&
		EVP_EncryptUpdate(ctx, out + NONCE_LEN, &n, plaintext, (int) len) == 1 &&
		EVP_EncryptFinal_ex(ctx, out + NONCE_LEN + n, &fin) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + NONCE_LEN + len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	if (!ok || (size_t) (n + fin) != len)
	{
		pfree(out);
		paygw_set_error(err, PAYGW_ERR_INTERNAL, "AES-256-GCM encryption failed");
		return NULL;
	}
	*outlen = NONCE_LEN + len + TAG_LEN;
	return out;
}

/*
 * Decrypt and authenticate sealed bytes.  Returns the plaintext as a
 * NUL-terminated string (palloc'd; the caller wipes it) or NULL with err
 * filled when the key, the aad or the bytes are not the ones it was sealed
 * with.
 */
char *
paygw_aead_open(const uint8 *key, const char *aad, const uint8 *sealed,
				size_t len, PaygwError *err)
{
	EVP_CIPHER_CTX *ctx;
	char	   *out;
	size_t		ctlen;
	int			n = 0;
	int			fin = 0;
	bool		ok;

	if (len < NONCE_LEN + TAG_LEN)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL, "encrypted secret is truncated");
		return NULL;
	}
	ctlen = len - NONCE_LEN - TAG_LEN;
	out = palloc(ctlen + 1);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, sealed) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &n, (const uint8 *) aad, (int) strlen(aad)) == 1 &&
		EVP_DecryptUpdate(ctx, (uint8 *) out, &n, sealed + NONCE_LEN, (int) ctlen) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
							(void *) (sealed + NONCE_LEN + ctlen)) == 1 &&
		EVP_DecryptFinal_ex(ctx, (uint8 *) out + n, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	if (!ok || (size_t) (n + fin) != ctlen || memchr(out, '\0', ctlen) != NULL)
	{
		paygw_wipe(out, ctlen + 1);
		pfree(out);
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"encrypted secret does not decrypt");
		paygw_error_detail(err, "It was encrypted with another key, for another credential, or it was altered.");
		return NULL;
	}
	out[ctlen] = '\0';
	return out;
}
