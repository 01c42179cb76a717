/*-------------------------------------------------------------------------
 *
 * secrets.h
 *		Credential secrets at rest: sealing under the key in paygw.key_file
 *		and opening for use.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_SECRETS_H
#define PAYGW_SECRETS_H

#include "paygw.h"

#define PAYGW_SEALED_PREFIX "$paygw$v1$"

extern bool paygw_secret_is_sealed(const char *value);
extern char *paygw_secret_open(const char *value, const char *name,
							   const char *column, PaygwError *err);
extern char *paygw_secret_seal(const char *plaintext, const char *name,
							   const char *column, PaygwError *err);
extern char *paygw_current_key_id(PaygwError *err);

#endif							/* PAYGW_SECRETS_H */
