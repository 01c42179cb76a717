/*-------------------------------------------------------------------------
 *
 * accountcache.c
 *		A per-transaction cache of account resolution: which account of
 *		paygw.credentials a (provider, account name or NULL) pair means.
 *
 * paygw_track and the invoices_validate trigger resolve the account of every
 * invoice; without a cache that is an SPI query per row, twice for each
 * paygw_track.  An entry answers the same question as paygw_account_resolve()
 * would at that moment, because any change to paygw.credentials empties the
 * cache before it can be seen:
 *
 * - in this backend, the credentials_changed trigger (BEFORE each row written
 *   or deleted, and BEFORE TRUNCATE) empties it at once;
 * - the same trigger queues a relcache invalidation of paygw.credentials,
 *   which other backends receive when the change commits; every lookup
 *   accepts pending invalidation messages first, so a READ COMMITTED
 *   transaction sees another session's committed change at its next lookup,
 *   as a fresh query would;
 * - a rolled-back subtransaction, and the end of the transaction, empty it
 *   (a REPEATABLE READ snapshot must not outlive its transaction).
 *
 * The cache is used only while both triggers exist and are ENABLE ALWAYS
 * (0.4 and later; a library newer than the installed extension scripts, or a
 * disabled trigger, falls back to querying every time).  Only successful
 * resolutions are cached; errors are raised again from a fresh query.
 *
 * Entries live in a backend-lifetime context that is reset when the cache is
 * emptied; callers get palloc'd copies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "accountcache.h"
#include "credentials.h"

/* more distinct lookups than this in one transaction: start over */
#define PAYGW_ACCOUNT_CACHE_SIZE 64

typedef struct PaygwCachedAccount
{
	const PaygwProvider *provider;
	char	   *asked;			/* the name asked for; NULL: the only account */
	char	   *account;		/* the account to use */
} PaygwCachedAccount;

static MemoryContext cache_cxt = NULL;
static PaygwCachedAccount entries[PAYGW_ACCOUNT_CACHE_SIZE];
static int	n_entries = 0;

/* false: the entries (if any) must not be used */
static bool cache_valid = false;

/* counts the times the cache was emptied */
static uint64 generation = 0;

/* paygw.credentials, for the relcache callback; InvalidOid until known */
static Oid	credentials_relid = InvalidOid;

/* Called from invalidation and transaction callbacks: no allocation here. */
static void
cache_empty(void)
{
	cache_valid = false;
	generation++;
}

static void
relcache_callback(Datum arg, Oid relid)
{
	(void) arg;
	if (relid == InvalidOid || relid == credentials_relid)
		cache_empty();
}

static void
xact_callback(XactEvent event, void *arg)
{
	(void) event;
	(void) arg;
	/* every end of a transaction, and PREPARE */
	cache_empty();
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	(void) mySubid;
	(void) parentSubid;
	(void) arg;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		cache_empty();
}

/* Register the invalidation callbacks; from _PG_init. */
void
paygw_account_cache_init(void)
{
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}

/*
 * Are paygw.credentials' invalidation triggers in place and always fired?
 * Notes the table's OID for the relcache callback.  Inside a transaction
 * that has already read the table (so it is locked).
 */
static bool
check_triggers(void)
{
	Oid			nsp = get_namespace_oid("paygw", true);
	Relation	rel;
	bool		row = false;
	bool		truncate = false;

	credentials_relid = OidIsValid(nsp) ? get_relname_relid("credentials", nsp) : InvalidOid;
	if (!OidIsValid(credentials_relid))
		return false;
	rel = table_open(credentials_relid, AccessShareLock);
	for (int i = 0; rel->trigdesc != NULL && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *t = &rel->trigdesc->triggers[i];

		if (t->tgenabled != TRIGGER_FIRES_ALWAYS)
			continue;
		if (strcmp(t->tgname, "credentials_changed") == 0)
			row = true;
		else if (strcmp(t->tgname, "credentials_truncated") == 0)
			truncate = true;
	}
	table_close(rel, AccessShareLock);
	return row && truncate;
}

/*
 * paygw_account_resolve(prov, name, err), answered from the cache when the
 * same question was asked before in this transaction and paygw.credentials
 * has not changed since.  palloc'd in CurrentMemoryContext; NULL with err
 * filled.
 */
char *
paygw_account_resolve_cached(const PaygwProvider *prov, const char *name, PaygwError *err)
{
	char	   *account;
	PaygwCachedAccount *e;
	MemoryContext oldcxt;
	uint64		gen;

	/* see another session's committed change as a fresh query would */
	AcceptInvalidationMessages();
	if (cache_valid)
	{
		for (int i = 0; i < n_entries; i++)
		{
			e = &entries[i];
			if (e->provider == prov &&
				(name == NULL ? e->asked == NULL
				 : e->asked != NULL && strcmp(e->asked, name) == 0))
				return pstrdup(e->account);
		}
	}

	gen = generation;
	account = paygw_account_resolve(prov, name, err);
	/* not kept when the cache was emptied while the query ran */
	if (account == NULL || generation != gen)
		return account;

	if (!cache_valid)
	{
		if (!check_triggers() || generation != gen)
			return account;
		if (cache_cxt == NULL)
			cache_cxt = AllocSetContextCreate(TopMemoryContext, "paygw account cache",
											  ALLOCSET_SMALL_SIZES);
		MemoryContextReset(cache_cxt);
		n_entries = 0;
		cache_valid = true;
	}
	else if (n_entries == PAYGW_ACCOUNT_CACHE_SIZE)
	{
		MemoryContextReset(cache_cxt);
		n_entries = 0;
	}
	oldcxt = MemoryContextSwitchTo(cache_cxt);
	e = &entries[n_entries];
	e->provider = prov;
	e->asked = name ? pstrdup(name) : NULL;
	e->account = pstrdup(account);
	MemoryContextSwitchTo(oldcxt);
	n_entries++;
	return account;
}

/*
 * paygw.credentials (rel) is being changed by this backend: empty the cache
 * now, and have every other backend empty theirs when the change commits.
 */
void
paygw_account_cache_invalidate(Relation rel)
{
	cache_empty();
	CacheInvalidateRelcache(rel);
}

/*
 * How many times the cache was emptied in this backend: a change means
 * paygw.credentials may have changed (in this backend, or committed by
 * another) since the number was read.
 */
uint64
paygw_account_cache_generation(void)
{
	return generation;
}
