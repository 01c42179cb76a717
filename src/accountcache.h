/*-------------------------------------------------------------------------
 *
 * accountcache.h
 *		A per-transaction cache of account resolution, emptied whenever
 *		paygw.credentials changes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_ACCOUNTCACHE_H
#define PAYGW_ACCOUNTCACHE_H

#include "providers/provider.h"

#include "utils/relcache.h"

extern void paygw_account_cache_init(void);
extern char *paygw_account_resolve_cached(const PaygwProvider *prov,
										  const char *name, PaygwError *err);
extern void paygw_account_cache_invalidate(Relation rel);
extern uint64 paygw_account_cache_generation(void);

#endif							/* PAYGW_ACCOUNTCACHE_H */
