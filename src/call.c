/*-------------------------------------------------------------------------
 *
 * call.c
 *		Preparing (validating, resolving the account, building and signing)
 *		and interpreting one status call.
 *
 * Everything is palloc'd in CurrentMemoryContext, which the caller deletes
 * when the call is over; the account's secrets are wiped then.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "call.h"
#include "credentials.h"
#include "crypto/crypto.h"

/*
 * Check the arguments, find the account and build the signed request.
 * NULL provider or id are reported as errors, not as NULL results.
 */
bool
paygw_call_prepare(PaygwCall *call, const char *provider, const char *id,
				   const char *account, PaygwLookup lookup, PaygwError *err)
{
	return paygw_call_prepare_batch(call, provider, id, account, lookup, NULL, err);
}

/*
 * The same, taking the account from accounts (fetched there once for many
 * calls) when that is not NULL.
 */
bool
paygw_call_prepare_batch(PaygwCall *call, const char *provider, const char *id,
						 const char *account, PaygwLookup lookup,
						 PaygwAccountBatch *accounts, PaygwError *err)
{
	char	   *wire_id;

	memset(call, 0, sizeof(PaygwCall));
	call->provider = paygw_provider_lookup(provider, err);
	if (call->provider == NULL)
		return false;
	if (id == NULL)
		return paygw_set_error(err, PAYGW_ERR_INVALID_ID, "%s %s must not be null",
							   call->provider->name,
							   lookup == PAYGW_LOOKUP_ID ? call->provider->id_name
							   : call->provider->order_name ? call->provider->order_name
							   : "order id");
	call->lookup = lookup;
	call->id = pstrdup(id);
	if (!call->provider->check_id(lookup, id, err))
		return false;

	call->account = accounts
		? paygw_account_batch_fetch(accounts, call->provider, account, err)
		: paygw_account_fetch(call->provider, account, err);
	if (call->account == NULL)
		return false;

	/* gateways speak UTF-8 whatever the database encoding */
	wire_id = pg_server_to_any(id, strlen(id), PG_UTF8);
	call->request.label = call->provider->name;
	if (!call->provider->build_request(call->account, lookup, wire_id,
									   &call->request, err))
		return false;
	/* the URL can carry a signature (OkePay's works as a bearer token) */
	paygw_wipe_on_reset(call->request.url);
	return true;
}

/*
 * The canonical spelling of a valid id (so "0042" and "42" are one OkePay
 * gateway, upper- and lower-case one Morune invoice), palloc'd.
 */
char *
paygw_canonical_id(const PaygwProvider *prov, PaygwLookup lookup, const char *id)
{
	if (prov->canonical_id != NULL)
		return prov->canonical_id(lookup, id);
	return pstrdup(id);
}

/*
 * Turn the transfer's outcome into a result (true) or an error (false).
 */
bool
paygw_call_interpret(PaygwCall *call, PaygwHttpResponse *resp,
					 PaygwStatusResult *result, PaygwError *err)
{
	memset(result, 0, sizeof(PaygwStatusResult));
	result->amount_isnull = true;
	if (!resp->ok)
	{
		*err = resp->err;
		return false;
	}
	return call->provider->parse_reply(call->account, call->lookup, call->id,
									   resp, result, err);
}
