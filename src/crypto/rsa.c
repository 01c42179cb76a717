/*-------------------------------------------------------------------------
 *
 * rsa.c
 *		Loading (possibly encrypted) PEM private keys and RSA PKCS#1 v1.5
 *		signatures, as PHP's openssl_sign() makes them; PEM public keys and
 *		verification of such signatures, as PHP's openssl_verify() does.
 *
 * Parsing an encrypted key runs the passphrase KDF, which is slow on purpose,
 * so parsed keys are cached, keyed by a SHA-256 fingerprint of (PEM,
 * passphrase): editing a credential row changes the fingerprint, so a stale
 * key is never used.  A parsed key unused for paygw.key_cache_ttl seconds is
 * freed at the next signing (0: freed right after each signature); OpenSSL
 * clears private key material when it frees it.  The cache is small and
 * lives in TopMemoryContext; the EVP_PKEY objects are owned by it.
 *
 * OpenSSL objects created here are freed before any function that could
 * ereport runs, and the OpenSSL error queue is always left empty (the server's
 * own TLS code reads the same queue).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "utils/memutils.h"

#include "crypto/crypto.h"

#define KEY_CACHE_SIZE 16

typedef struct KeyCacheEntry
{
	uint8		fingerprint[32];
	EVP_PKEY   *pkey;
	uint64		last_used;
	time_t		used_at;
} KeyCacheEntry;

static KeyCacheEntry *key_cache = NULL;
static uint64 key_cache_clock = 0;

/*
 * PEM passphrase callback: hands OpenSSL the passphrase, never prompts.
 * Returns 0 (no passphrase) when none was given.
 */
static int
passphrase_cb(char *buf, int size, int rwflag, void *userdata)
{
	const char *password = (const char *) userdata;
	size_t		len;

	(void) rwflag;
	if (password == NULL)
		return 0;
	len = strlen(password);
	if (len > (size_t) size)
		return 0;
	memcpy(buf, password, len);
	return (int) len;
}

/*
 * Parse a PEM private key with its passphrase.  Returns NULL and fills err
 * when it does not load or is not an RSA key.  The caller owns the result.
 * Does not palloc or ereport.
 */
static EVP_PKEY *
load_private_key(const char *pem, const char *password, PaygwError *err)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;

	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INTERNAL, "out of memory while reading a private key");
		return NULL;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, passphrase_cb, (void *) password);
	BIO_free(bio);
	ERR_clear_error();

	if (pkey == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"private key could not be loaded");
		paygw_error_detail(err, "The secret is not a PEM private key, or the passphrase in secret_password does not decrypt it.");
		return NULL;
	}
	if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA)
	{
		EVP_PKEY_free(pkey);
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"private key is not an RSA key");
		return NULL;
	}
	return pkey;
}

/*
 * Check that a PEM private key loads with its passphrase (used when a
 * credential row is written).
 */
bool
paygw_rsa_check_key(const char *pem, const char *password, PaygwError *err)
{
	EVP_PKEY   *pkey = load_private_key(pem, password, err);

	if (pkey == NULL)
		return false;
	EVP_PKEY_free(pkey);
	return true;
}

/*
 * Find the parsed key for (pem, password) in the cache, loading it on a miss.
 * The result belongs to the cache.
 */
/* Free a cached key (OpenSSL clears its private material). */
static void
forget_key(KeyCacheEntry *e)
{
	EVP_PKEY_free(e->pkey);
	memset(e, 0, sizeof(KeyCacheEntry));
}

static EVP_PKEY *
cached_private_key(const char *pem, const char *password, KeyCacheEntry **entry,
				   PaygwError *err)
{
	uint8		fp[32];
	size_t		pemlen = strlen(pem);
	char	   *material;
	size_t		matlen;
	KeyCacheEntry *victim;
	EVP_PKEY   *pkey;
	bool		ok;

	/* fingerprint = sha256(pem || '\0' || password) */
	matlen = pemlen + 1 + (password ? strlen(password) : 0);
	material = palloc(matlen + 1);
	memcpy(material, pem, pemlen);
	material[pemlen] = '\0';
	if (password)
		memcpy(material + pemlen + 1, password, strlen(password));
	ok = paygw_digest(PAYGW_SHA256, material, matlen, fp, err);
	paygw_wipe(material, matlen);
	pfree(material);
	if (!ok)
		return NULL;

	if (key_cache == NULL)
		key_cache = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(KeyCacheEntry) * KEY_CACHE_SIZE);

	/* drop keys unused for longer than paygw.key_cache_ttl */
	for (int i = 0; i < KEY_CACHE_SIZE; i++)
		if (key_cache[i].pkey != NULL &&
			time(NULL) - key_cache[i].used_at > paygw_key_cache_ttl_s)
			forget_key(&key_cache[i]);

	victim = &key_cache[0];
	for (int i = 0; i < KEY_CACHE_SIZE; i++)
	{
		KeyCacheEntry *e = &key_cache[i];

		if (e->pkey != NULL && memcmp(e->fingerprint, fp, sizeof(fp)) == 0)
		{
			e->last_used = ++key_cache_clock;
			e->used_at = time(NULL);
			*entry = e;
			return e->pkey;
		}
		if (e->pkey == NULL || (victim->pkey != NULL && e->last_used < victim->last_used))
			victim = e;
	}

	pkey = load_private_key(pem, password, err);
	if (pkey == NULL)
		return NULL;
	if (victim->pkey != NULL)
		EVP_PKEY_free(victim->pkey);
	memcpy(victim->fingerprint, fp, sizeof(fp));
	victim->pkey = pkey;
	victim->last_used = ++key_cache_clock;
	victim->used_at = time(NULL);
	*entry = victim;
	return pkey;
}

/*
 * Sign data with RSA PKCS#1 v1.5 over the given digest, the way PHP's
 * openssl_sign() does, and return the signature base64-encoded (palloc'd).
 */
bool
paygw_rsa_sign_base64(const char *pem, const char *password, PaygwDigest alg,
					  const void *data, size_t len, char **signature,
					  PaygwError *err)
{
	EVP_PKEY   *pkey;
	KeyCacheEntry *entry;
	EVP_MD_CTX *ctx;
	const EVP_MD *md;
	unsigned char *sig;
	size_t		siglen;
	int			rc;

	pkey = cached_private_key(pem, password, &entry, err);
	if (pkey == NULL)
		return false;

	md = (alg == PAYGW_SHA256) ? EVP_sha256() : EVP_sha1();
	siglen = (size_t) EVP_PKEY_size(pkey);
	sig = palloc(siglen);		/* before any OpenSSL object exists */

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
	{
		pfree(sig);
		if (paygw_key_cache_ttl_s == 0)
			forget_key(entry);
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "out of memory while signing");
	}
	rc = EVP_DigestSignInit(ctx, NULL, md, NULL, pkey);
	if (rc == 1)
		rc = EVP_DigestSign(ctx, sig, &siglen, data, len);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (paygw_key_cache_ttl_s == 0)
		forget_key(entry);
	if (rc != 1)
	{
		pfree(sig);
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "RSA signing failed");
	}

	*signature = paygw_base64(sig, siglen);
	pfree(sig);
	return true;
}

/*
 * Parse the first PEM block of pem as an RSA public key: a
 * SubjectPublicKeyInfo ("PUBLIC KEY"), a PKCS#1 "RSA PUBLIC KEY", or an X.509
 * "CERTIFICATE", whose key is taken (gateways publish either).  Returns NULL
 * and fills err when it is none of these, not RSA, or shorter than 1024
 * bits.  The caller owns the result.  Does not palloc or ereport.
 */
static EVP_PKEY *
load_public_key(const char *pem, PaygwError *err)
{
	BIO		   *bio;
	char	   *name = NULL;
	char	   *header = NULL;
	unsigned char *der = NULL;
	long		derlen = 0;
	const unsigned char *p;
	EVP_PKEY   *pkey = NULL;

	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INTERNAL, "out of memory while reading a public key");
		return NULL;
	}
	if (PEM_read_bio(bio, &name, &header, &der, &derlen) == 1)
	{
		p = der;
		if (strcmp(name, PEM_STRING_PUBLIC) == 0)
			pkey = d2i_PUBKEY(NULL, &p, derlen);
		else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0)
			pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, derlen);
		else if (strcmp(name, PEM_STRING_X509) == 0)
		{
			X509	   *cert = d2i_X509(NULL, &p, derlen);

			if (cert != NULL)
			{
				pkey = X509_get_pubkey(cert);
				X509_free(cert);
			}
		}
	}
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	ERR_clear_error();

	if (pkey == NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"public key could not be loaded");
		paygw_error_detail(err, "Expected a PEM block \"PUBLIC KEY\", \"RSA PUBLIC KEY\" or \"CERTIFICATE\".");
		return NULL;
	}
	if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA)
	{
		EVP_PKEY_free(pkey);
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"public key is not an RSA key");
		return NULL;
	}
	if (EVP_PKEY_bits(pkey) < 1024)
	{
		EVP_PKEY_free(pkey);
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"RSA public key is shorter than 1024 bits");
		return NULL;
	}
	return pkey;
}

/*
 * Check that pem holds an RSA public key paygw can verify with (used when a
 * credential row is written).
 */
bool
paygw_rsa_check_public_key(const char *pem, PaygwError *err)
{
	EVP_PKEY   *pkey = load_public_key(pem, err);

	if (pkey == NULL)
		return false;
	EVP_PKEY_free(pkey);
	return true;
}

/*
 * Verify an RSA PKCS#1 v1.5 signature (sig, siglen raw bytes) over data
 * with the given digest and the PEM public key, as PHP's openssl_verify()
 * does.  *valid says whether it verifies; false is returned (err filled) only
 * when the key cannot be used.  Everything here is public (key, message,
 * signature), and OpenSSL checks the padding itself, so nothing needs to be
 * constant-time.  No OpenSSL object outlives the call.
 */
bool
paygw_rsa_verify(const char *pem, PaygwDigest alg, const void *data,
				 size_t len, const uint8 *sig, size_t siglen, bool *valid,
				 PaygwError *err)
{
	EVP_PKEY   *pkey;
	EVP_MD_CTX *ctx;
	int			rc;

	*valid = false;
	if (alg != PAYGW_SHA1 && alg != PAYGW_SHA256)
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "unsupported digest for RSA verification");
	pkey = load_public_key(pem, err);
	if (pkey == NULL)
		return false;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
	{
		EVP_PKEY_free(pkey);
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "out of memory while verifying");
	}
	rc = EVP_DigestVerifyInit(ctx, NULL, alg == PAYGW_SHA256 ? EVP_sha256() : EVP_sha1(),
							  NULL, pkey);
	if (rc == 1)
		rc = EVP_DigestVerify(ctx, sig, siglen, data, len);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	ERR_clear_error();

	/* 0: a wrong signature; < 0: one that is not even well-formed */
	*valid = (rc == 1);
	return true;
}
