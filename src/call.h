/*-------------------------------------------------------------------------
 *
 * call.h
 *		One status call, from arguments to normalized result, independent of
 *		who performs the HTTP transfer (a backend's SQL function or a batch).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_CALL_H
#define PAYGW_CALL_H

#include "credentials.h"
#include "http/http.h"
#include "providers/provider.h"

typedef struct PaygwCall
{
	const PaygwProvider *provider;
	PaygwAccount *account;
	PaygwLookup lookup;
	char	   *id;				/* as given, in the server encoding */
	PaygwHttpRequest request;
} PaygwCall;

extern bool paygw_call_prepare(PaygwCall *call, const char *provider,
							   const char *id, const char *account,
							   PaygwLookup lookup, PaygwError *err);
extern bool paygw_call_prepare_batch(PaygwCall *call, const char *provider,
									 const char *id, const char *account,
									 PaygwLookup lookup,
									 PaygwAccountBatch *accounts,
									 PaygwError *err);
extern char *paygw_canonical_id(const PaygwProvider *prov, PaygwLookup lookup,
								const char *id);
extern bool paygw_call_interpret(PaygwCall *call, PaygwHttpResponse *resp,
								 PaygwStatusResult *result, PaygwError *err);

#endif							/* PAYGW_CALL_H */
