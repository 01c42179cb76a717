/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *		Claim due invoices, check them concurrently, apply the outcomes.
 *
 * Claiming and applying are SQL (paygw.claim_due, paygw.claim_one,
 * paygw.apply_check in the install script) run through prepared SPI
 * statements; this file moves rows between them and the HTTP pool.
 *
 * Each claimed invoice lives in its own memory context (PaygwItem.cxt),
 * deleted once its outcome is applied, so a worker that checks a million
 * invoices uses no more memory than one that checked a hundred.
 *
 * Each outcome is applied in its own subtransaction: a row that cannot be
 * written (a unique conflict while filling in an id, say) is reported as a
 * WARNING and is checked again later -- the worker's lease expires,
 * paygw_refresh() leaves the row due -- while the rest of the batch is
 * applied.  Query cancel and termination are never swallowed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "credentials.h"
#include "reconcile.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_one_plan = NULL;
static SPIPlanPtr apply_plan = NULL;

/* account name -> small integer, for the per-account concurrency cap */
static char **group_names = NULL;
static int	group_count = 0;

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
 * Lease length for a claim of up to max_invoices: the setting, but never
 * shorter than it can take to get through them -- in the worst case all
 * belong to one account and run paygw.max_per_account at a time, each
 * taking paygw.timeout -- plus one more call.
 */
static double
lease_seconds(int max_invoices)
{
	double		rounds = ceil((double) max_invoices / Max(1, paygw_max_per_account));

	return Max((double) paygw_lease_time_s, (rounds + 1) * paygw_timeout_ms / 1000.0);
}

/*
 * Claim invoices and prepare their calls.  invoice_id > 0 claims that one
 * invoice whatever its schedule (no lease); otherwise up to max_invoices due
 * ones, leased when lease is true (the caller will commit before the calls)
 * and locked until the caller's transaction ends otherwise.  Fills items[]
 * (room for max_invoices) and returns how many.  Must run in a transaction.
 * Each item's context is a child of parent.
 */
int
paygw_reconcile_claim(MemoryContext parent, int max_invoices, bool lease,
					  int64 invoice_id, PaygwItem **items)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	int			ret;
	uint64		n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (invoice_id > 0)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(invoice_id)};

		ret = SPI_execute_plan(paygw_spi_prepare_once(&claim_one_plan,
											"SELECT * FROM paygw.claim_one($1)", 1, types),
							   values, NULL, false, 0);
	}
	else
	{
		Oid			types[2] = {INT4OID, FLOAT8OID};
		Datum		values[2] = {Int32GetDatum(max_invoices), Float8GetDatum(lease_seconds(max_invoices))};
		char		nulls[2] = {' ', lease ? ' ' : 'n'};

		ret = SPI_execute_plan(paygw_spi_prepare_once(&claim_plan,
											"SELECT * FROM paygw.claim_due($1, pg_catalog.make_interval(secs => $2))",
											2, types),
							   values, nulls, false, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "claiming invoices failed: %s", SPI_result_code_string(ret));

	n = SPI_processed;
	if (invoice_id <= 0 && n > (uint64) max_invoices)
		elog(ERROR, "claimed more invoices than asked for");
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "paygw invoice check",
												  ALLOCSET_SMALL_SIZES);
		PaygwItem  *item = MemoryContextAllocZero(cxt, sizeof(PaygwItem));
		bool		isnull;
		char	   *provider;
		char	   *account;
		char	   *payment_id;
		char	   *order_id;
		Datum		token;

		item->cxt = cxt;
		item->invoice_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		token = SPI_getbinval(tuple, desc, 6, &isnull);
		item->has_lease = !isnull;
		item->lease_token = isnull ? 0 : DatumGetInt64(token);

		MemoryContextSwitchTo(cxt);
		provider = SPI_getvalue(tuple, desc, 2);
		account = SPI_getvalue(tuple, desc, 3);
		payment_id = SPI_getvalue(tuple, desc, 4);
		order_id = SPI_getvalue(tuple, desc, 5);
		item->prepared = paygw_call_prepare(&item->call, provider,
											payment_id ? payment_id : order_id,
											account,
											payment_id ? PAYGW_LOOKUP_ID : PAYGW_LOOKUP_ORDER,
											&item->err);
		if (item->prepared)
			item->call.request.group = account_group(account);
		MemoryContextSwitchTo(oldcxt);
		items[r] = item;
	}

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	return (int) n;
}

/* Queue an item's request in the pool (a no-op for one that failed to prepare). */
void
paygw_reconcile_start(PaygwHttpPool *pool, PaygwItem *item)
{
	if (item->prepared)
		paygw_http_pool_add(pool, &item->call.request, &item->resp, item->cxt, item);
}

/* Delete an item and everything it holds (its secrets are wiped). */
void
paygw_reconcile_free(PaygwItem *item)
{
	MemoryContextDelete(item->cxt);
}

static Datum
text_datum(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * Run the prepared paygw.apply_check call in a subtransaction.  Returns its
 * outcome (in the item's context), or NULL after reporting a WARNING when it
 * raised an error.  Query cancel and shutdown are re-thrown.
 */
static char *
apply_outcome(SPIPlanPtr plan, Datum *values, char *nulls, PaygwItem *item,
			  ResourceOwner oldowner)
{
	char	   *volatile outcome = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(item->cxt);
	PG_TRY();
	{
		int			ret = SPI_execute_plan(plan, values, nulls, false, 1);
		bool		isnull;
		Datum		d;

		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "paygw.apply_check failed: %s", SPI_result_code_string(ret));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		outcome = isnull ? NULL : MemoryContextStrdup(item->cxt, TextDatumGetCString(d));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(item->cxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(item->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(item->cxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		ereport(WARNING,
				errmsg("could not record the check of invoice %lld: %s",
					   (long long) item->invoice_id, edata->message),
				errdetail("The invoice will be checked again later."));
		FreeErrorData(edata);
		outcome = NULL;
	}
	PG_END_TRY();
	return outcome;
}

/*
 * Apply the outcome of each item's check (its response must be complete, or
 * it was never prepared).  Must run in a transaction.  The items are left
 * for the caller to free.
 */
void
paygw_reconcile_apply(PaygwItem **items, int n, PaygwApplyStats *stats)
{
	static Oid	types[14] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		NUMERICOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, FLOAT8OID, FLOAT8OID, FLOAT8OID};
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	SPIPlanPtr	plan;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = paygw_spi_prepare_once(&apply_plan,
						"SELECT paygw.apply_check($1, $2, $3::paygw.payment_status, $4, $5, $6,"
						" $7, $8, $9, $10, $11, $12, $13, $14)",
						14, types);

	for (int i = 0; i < n; i++)
	{
		PaygwItem  *item = items[i];
		PaygwStatusResult res;
		PaygwError	err;
		bool		ok;
		Datum		values[14];
		char		nulls[14];
		char	   *outcome;

		MemoryContextSwitchTo(item->cxt);
		if (item->prepared)
			ok = paygw_call_interpret(&item->call, &item->resp, &res, &err);
		else
		{
			ok = false;
			err = item->err;
		}
		memset(nulls, ' ', sizeof(nulls));

		values[0] = Int64GetDatum(item->invoice_id);
		values[1] = Int64GetDatum(item->lease_token);
		nulls[1] = item->has_lease ? ' ' : 'n';
		if (ok)
		{
			values[2] = text_datum(paygw_status_label(res.status), &nulls[2]);
			values[3] = text_datum(res.provider_status, &nulls[3]);
			values[4] = text_datum(res.payment_id, &nulls[4]);
			values[5] = text_datum(res.order_id, &nulls[5]);
			values[6] = res.amount;
			nulls[6] = res.amount_isnull ? 'n' : ' ';
			values[7] = text_datum(res.currency, &nulls[7]);
			values[8] = JsonbPGetDatum(res.response);
			values[9] = text_datum(NULL, &nulls[9]);
			values[10] = text_datum(NULL, &nulls[10]);
			if (!res.status_known)
				ereport(WARNING,
						errmsg("unrecognized %s status \"%s\" reported as pending",
							   item->call.provider->name, res.provider_status),
						errdetail("Invoice %lld keeps the gateway's own value in provider_status.",
								  (long long) item->invoice_id));
		}
		else
		{
			for (int k = 2; k <= 8; k++)
				nulls[k] = 'n';
			values[9] = text_datum(unpack_sql_state(paygw_error_sqlstate(err.code)), &nulls[9]);
			values[10] = text_datum(err.detail[0]
									? psprintf("%s: %s", err.message, err.detail)
									: err.message, &nulls[10]);
			stats->errors_by_kind[err.code]++;
		}
		values[11] = Float8GetDatum((double) paygw_backoff_initial_s);
		values[12] = Float8GetDatum((double) paygw_backoff_max_s);
		values[13] = Float8GetDatum((double) paygw_give_up_after_s);

		outcome = apply_outcome(plan, values, nulls, item, oldowner);
		if (outcome == NULL)
		{
			/*
			 * The outcome cannot be written (see the WARNING).  Record that
			 * as an error instead, so the invoice is rescheduled and its
			 * lease released rather than claimed again at once, forever.
			 */
			for (int k = 2; k <= 8; k++)
				nulls[k] = 'n';
			values[9] = text_datum("XX000", &nulls[9]);
			values[10] = text_datum("the outcome of the check could not be recorded; see the server log",
									&nulls[10]);
			if (apply_outcome(plan, values, nulls, item, oldowner) == NULL)
				ereport(WARNING,
						errmsg("could not record the failure to check invoice %lld either",
							   (long long) item->invoice_id));
			stats->failed++;
		}

		/* last_outcome points at a constant: the item's memory goes soon */
		stats->checked++;
		stats->last_outcome = "failed";
		if (outcome == NULL)
			continue;
		if (strcmp(outcome, "changed") == 0)
			stats->changed++, stats->last_outcome = "changed";
		else if (strcmp(outcome, "unchanged") == 0)
			stats->unchanged++, stats->last_outcome = "unchanged";
		else if (strcmp(outcome, "anomaly") == 0)
			stats->anomalies++, stats->last_outcome = "anomaly";
		else if (strcmp(outcome, "error") == 0)
			stats->errors++, stats->last_outcome = "error";
		else if (strcmp(outcome, "gave_up") == 0)
			stats->gave_up++, stats->last_outcome = "gave_up";
		else if (strcmp(outcome, "lost") == 0)
			stats->lost++, stats->last_outcome = "lost";
	}

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
}

/*
 * One pass in the calling backend's transaction: claim (and lock) up to
 * max_invoices due invoices, or the one invoice_id when > 0, check them
 * concurrently, apply the outcomes.  Returns how many were checked.
 */
int
paygw_reconcile_pass(int max_invoices, int64 invoice_id, PaygwApplyStats *stats)
{
	MemoryContext passcxt = AllocSetContextCreate(CurrentMemoryContext, "paygw refresh",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext poolcxt = AllocSetContextCreate(passcxt, "paygw refresh pool",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(passcxt);
	PaygwItem **items = palloc(sizeof(PaygwItem *) * Max(1, max_invoices));
	void	  **done = palloc(sizeof(void *) * Max(1, max_invoices));
	PaygwHttpPool *pool;
	int			n;

	n = paygw_reconcile_claim(passcxt, max_invoices, false, invoice_id, items);

	MemoryContextSwitchTo(poolcxt);
	pool = paygw_http_pool_create(paygw_max_concurrency, paygw_max_per_account);
	for (int i = 0; i < n; i++)
		paygw_reconcile_start(pool, items[i]);
	while (paygw_http_pool_pending(pool) > 0)
		(void) paygw_http_pool_run(pool, 1000, done, Max(1, max_invoices));
	MemoryContextSwitchTo(passcxt);
	MemoryContextDelete(poolcxt);

	paygw_reconcile_apply(items, n, stats);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(passcxt);
	return n;
}
