/*-------------------------------------------------------------------------
 *
 * check.c
 *		One gateway check made in the HTTP pool, shared by the invoices'
 *		checks (reconcile.c) and the webhook probes (probe.c): preparing
 *		its status call, queueing the request, working out the outcome
 *		once, freeing it.
 *
 * A check lives in its own memory context (PaygwCheck.cxt), which also
 * holds the item or probe that embeds it; deleting the context frees both
 * and wipes the account's secrets.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "check.h"

/* account name -> small integer, for the per-account concurrency cap */
static char **group_names = NULL;
static int	group_count = 0;

/*
 * The pool group of an account's requests (the per-account concurrency
 * cap): one per account name, for the life of the backend.
 */
static int
account_group(const char *account)
{
	for (int i = 0; i < group_count; i++)
		if (strcmp(group_names[i], account) == 0)
			return i;
	if (group_names == NULL)
		group_names = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * 64);
	else if (group_count % 64 == 0)
		group_names = repalloc(group_names, sizeof(char *) * (group_count + 64));
	group_names[group_count] = MemoryContextStrdup(TopMemoryContext, account);
	return group_count++;
}

/*
 * Prepare check's status call in check->cxt: by payment_id, else by
 * order_id, with the account taken from accounts when that is not NULL
 * (else read).  On failure check->prepared is false and check->err says
 * why.  Must run in a transaction.
 */
void
paygw_check_prepare(PaygwCheck *check, const char *provider,
					const char *account, const char *payment_id,
					const char *order_id, PaygwAccountBatch *accounts)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(check->cxt);

	check->prepared = paygw_call_prepare_batch(&check->call, provider,
											   payment_id ? payment_id : order_id,
											   account,
											   payment_id ? PAYGW_LOOKUP_ID : PAYGW_LOOKUP_ORDER,
											   accounts, &check->err);
	if (check->prepared)
		check->call.request.group = account_group(account);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Queue a check's request in the pool, arg being what the pool hands back
 * when it is done (a no-op for one that failed to prepare).
 */
void
paygw_check_start(PaygwHttpPool *pool, PaygwCheck *check, void *arg)
{
	if (check->prepared)
		paygw_http_pool_add(pool, &check->call.request, &check->resp, check->cxt, arg);
}

/*
 * Work out a check's outcome from its response (complete, or never
 * prepared), once, in check->cxt: sets ok, and res or err.  A status the
 * gateway's map does not know is reported as a WARNING whose detail begins
 * "<what> <id>" (what: "Invoice", say).  Returns true when the outcome was
 * worked out by this call, false when it had been before.
 */
bool
paygw_check_interpret(PaygwCheck *check, const char *what, int64 id)
{
	MemoryContext oldcxt;

	if (check->interpreted)
		return false;
	oldcxt = MemoryContextSwitchTo(check->cxt);
	check->ok = check->prepared &&
		paygw_call_interpret(&check->call, &check->resp, &check->res, &check->err);
	MemoryContextSwitchTo(oldcxt);
	check->interpreted = true;
	if (check->ok && !check->res.status_known)
		ereport(WARNING,
				errmsg("unrecognized %s status \"%s\" reported as pending",
					   check->call.provider->name, check->res.provider_status),
				errdetail("%s %lld keeps the gateway's own value in provider_status.",
						  what, (long long) id));
	return true;
}

/*
 * Delete a check's context: the check, what embeds it and everything they
 * hold (the secrets are wiped).
 */
void
paygw_check_free(PaygwCheck *check)
{
	MemoryContextDelete(check->cxt);
}
