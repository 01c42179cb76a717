/*-------------------------------------------------------------------------
 *
 * provider.h
 *		The interface every gateway implements, and helpers they share.
 *
 * A provider checks ids and credentials against its gateway's rules, builds
 * and signs its request, and turns the reply into a PaygwStatusResult.  It
 * sees only the http/ and crypto/ interfaces, never libcurl or OpenSSL, and
 * never ereports for an expected failure: it fills a PaygwError.
 *
 * Ids reach build_request() already converted to UTF-8, the encoding every
 * gateway expects on the wire.  Everything is palloc'd in the call's context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_PROVIDER_H
#define PAYGW_PROVIDER_H

#include "lib/stringinfo.h"

#include "http/http.h"
#include "json.h"
#include "paygw.h"

typedef struct PaygwProvider
{
	const char *name;
	const char *default_base_url;
	const char *auth_scheme;	/* one line, for paygw.providers */
	const char *id_name;		/* the gateway's name for its own id */
	const char *order_name;		/* ... for the merchant's id, NULL if none */
	const char *const *option_keys; /* allowed keys of credentials.options */

	/*
	 * The gateway's signature of message (for paygw.sign and the vectors).
	 * account supplies secret, secret_password and digest.  NULL with err
	 * filled when the provider cannot sign.
	 */
	char	   *(*sign) (PaygwAccount *account, const char *message, size_t len,
						 PaygwError *err);
	/* check merchant_id, secret and options of a credential row */
	bool		(*check_account) (PaygwAccount *account, PaygwError *err);
	/* the canonical spelling of a valid id (NULL: as given) */
	char	   *(*canonical_id) (PaygwLookup lookup, const char *id);
	/* check an id against the gateway's format rules */
	bool		(*check_id) (PaygwLookup lookup, const char *id, PaygwError *err);
	/* build and sign the status request */
	bool		(*build_request) (PaygwAccount *account, PaygwLookup lookup,
								  const char *id, PaygwHttpRequest *req,
								  PaygwError *err);
	/* interpret a completed transfer */
	bool		(*parse_reply) (PaygwAccount *account, PaygwLookup lookup,
								const char *id, PaygwHttpResponse *resp,
								PaygwStatusResult *result, PaygwError *err);
} PaygwProvider;

extern const PaygwProvider paygw_okepay;
extern const PaygwProvider paygw_obmenka;
extern const PaygwProvider paygw_alikassa;
extern const PaygwProvider paygw_morune;

/* common.c: the registry */
extern const PaygwProvider *const paygw_providers[];
extern const int paygw_provider_count;
extern const PaygwProvider *paygw_provider_find(const char *name);
extern const PaygwProvider *paygw_provider_lookup(const char *name, PaygwError *err);
extern char *paygw_provider_names(void);

/* common.c: helpers shared by the providers */
extern bool paygw_is_uuid(const char *s);
extern bool paygw_has_control_chars(const char *s);
extern bool paygw_check_id_text(const PaygwProvider *prov, PaygwLookup lookup,
								const char *id, int max_chars, PaygwError *err);
extern bool paygw_unsupported_lookup(const PaygwProvider *prov, PaygwError *err);
extern char *paygw_json_body(const char *key, const char *value);
extern Jsonb *paygw_reply_json(const PaygwProvider *prov,
							   PaygwHttpResponse *resp, PaygwError *err);
extern bool paygw_reply_error(const PaygwProvider *prov, long http_status,
							  long body_code, const char *message,
							  PaygwError *err);
extern bool paygw_reply_field(const PaygwProvider *prov, JsonbContainer *obj,
							  const char *key, char **out, PaygwError *err);
extern bool paygw_reply_status(const PaygwProvider *prov,
							   const PaygwStatusMap *map, JsonbContainer *obj,
							   const char *key, PaygwStatusResult *result,
							   PaygwError *err);
extern bool paygw_reply_amount(const PaygwProvider *prov, JsonbContainer *obj,
							   const char *key, int minor_digits,
							   PaygwStatusResult *result, PaygwError *err);
extern bool paygw_reply_matches(const PaygwProvider *prov, const char *field,
								const char *got, const char *wanted,
								bool case_insensitive, PaygwError *err);
extern char *paygw_currency_suffix(const char *code, char separator);

#endif							/* PAYGW_PROVIDER_H */
