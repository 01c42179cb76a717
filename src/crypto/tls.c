/*-------------------------------------------------------------------------
 *
 * tls.c
 *		Adding an operator-supplied CA file to a TLS context, on top of the
 *		system's trust store (paygw.ca_file).
 *
 * Called from libcurl's SSL context callback: no palloc, no ereport.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "crypto/crypto.h"

/*
 * Add the certificates in ca_file to ssl_ctx's trust store.  Returns false
 * when the file cannot be loaded (the handshake must then fail).
 */
bool
paygw_tls_add_ca_file(void *ssl_ctx, const char *ca_file)
{
	X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *) ssl_ctx);
	bool		ok;

	ok = store != NULL && X509_STORE_load_locations(store, ca_file, NULL) == 1;
	ERR_clear_error();
	return ok;
}
