/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *		Claim due invoices, check them concurrently, apply the outcomes.
 *
 * Claiming and applying are SQL (paygw.claim_due, paygw.claim_one,
 * paygw.apply_checks in the install scripts) run through prepared SPI
 * statements; this file moves rows between them and the HTTP pool.
 *
 * Each claimed invoice lives in its own memory context (PaygwItem.check.cxt,
 * see check.c), deleted once its outcome is applied, so a worker that checks
 * a million invoices uses no more memory than one that checked a hundred.
 *
 * Applying a batch:
 *	1. lock its rows FOR NO KEY UPDATE SKIP LOCKED.  A foreign key pointing
 *	   at an invoice (FOR KEY SHARE) does not conflict; a row another session
 *	   holds more strongly (FOR SHARE, an UPDATE) is BUSY: nothing is written
 *	   and the caller keeps the result to try again -- a result is never
 *	   thrown away because of someone else's lock;
 *	2. apply every locked row's outcome in one statement over arrays
 *	   (paygw.apply_checks), inside a subtransaction;
 *	3. only if that statement fails, apply the rows one by one, each in its
 *	   own subtransaction, so one outcome that cannot be written (reported as
 *	   a WARNING and recorded as an error instead) never loses the others.
 * The row locks of step 1 are taken outside the subtransactions, so they
 * survive a fallback.  Query cancel and termination are never swallowed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "credentials.h"
#include "reconcile.h"
#include "sqlutil.h"

/* the outcome columns of paygw.apply_checks, in its argument order */
#define APPLY_NARGS 15

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_one_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr exists_plan = NULL;
static SPIPlanPtr apply_plan = NULL;
static SPIPlanPtr lock_learn_plan = NULL;
static SPIPlanPtr release_plan = NULL;

const char *
paygw_outcome_name(PaygwOutcome outcome)
{
	switch (outcome)
	{
		case PAYGW_OUTCOME_CHANGED:
			return "changed";
		case PAYGW_OUTCOME_UNCHANGED:
			return "unchanged";
		case PAYGW_OUTCOME_ANOMALY:
			return "anomaly";
		case PAYGW_OUTCOME_ERROR:
			return "error";
		case PAYGW_OUTCOME_GAVE_UP:
			return "gave_up";
		case PAYGW_OUTCOME_LOST:
			return "lost";
		case PAYGW_OUTCOME_BUSY:
			return "busy";
		case PAYGW_OUTCOME_FAILED:
		case PAYGW_OUTCOME_NONE:
			break;
	}
	return "failed";
}

static PaygwOutcome
outcome_from_name(const char *name)
{
	for (int o = PAYGW_OUTCOME_CHANGED; o <= PAYGW_OUTCOME_BUSY; o++)
		if (strcmp(name, paygw_outcome_name((PaygwOutcome) o)) == 0)
			return (PaygwOutcome) o;
	elog(ERROR, "paygw.apply_checks returned an unknown outcome \"%s\"", name);
	return PAYGW_OUTCOME_FAILED;	/* keep the compiler quiet */
}

/*
 * Lease length for invoices claimed when `queued` requests (these included)
 * stand in the worker's queue: the setting, but never shorter than it can
 * take before the last of them is answered.  In the worst case every queued
 * request belongs to one account, so they go out paygw.max_per_account (or
 * paygw.max_concurrency, if smaller) at a time, each round taking up to
 * paygw.timeout; one more round covers applying the result.
 */
static double
lease_seconds(int queued)
{
	int			width = Max(1, Min(paygw_max_per_account, paygw_max_concurrency));
	double		rounds = ceil((double) Max(1, queued) / width);

	return Max((double) paygw_lease_time_s, (rounds + 1) * paygw_timeout_ms / 1000.0);
}

/*
 * Claim invoices and prepare their calls.  invoice_id > 0 claims that one
 * invoice whatever its schedule (no lease); otherwise up to max_invoices due
 * ones.  run > 0 (the worker): leased under that run, sized for `queued`
 * requests already waiting in front of them, so the caller can commit before
 * the calls; run 0: locked until the caller's transaction ends.  Fills
 * items[] (room for max_invoices) and returns how many.  Must run in a
 * transaction.  Each item's context is a child of parent.
 */
int
paygw_reconcile_claim(MemoryContext parent, int max_invoices, int64 run,
					  int queued, int64 invoice_id, PaygwItem **items)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	PaygwAccountBatch *accounts;
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
		Oid			types[3] = {INT4OID, FLOAT8OID, INT8OID};
		double		secs = lease_seconds(queued + max_invoices);
		Datum		values[3] = {Int32GetDatum(max_invoices), Float8GetDatum(secs),
		Int64GetDatum(run)};
		char		nulls[3] = {' ', run > 0 ? ' ' : 'n', run > 0 ? ' ' : 'n'};

		ret = SPI_execute_plan(paygw_spi_prepare_once(&claim_plan,
											"SELECT * FROM paygw.claim_due($1, pg_catalog.make_interval(secs => $2), $3)",
											3, types),
							   values, nulls, false, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "claiming invoices failed: %s", SPI_result_code_string(ret));

	n = SPI_processed;
	if (invoice_id <= 0 && n > (uint64) max_invoices)
		elog(ERROR, "claimed more invoices than asked for");
	/* each account is read (and its secrets opened) once per batch */
	accounts = paygw_account_batch_create();
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

		item->check.cxt = cxt;
		item->invoice_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		token = SPI_getbinval(tuple, desc, 6, &isnull);
		item->has_lease = !isnull;
		item->lease_token = isnull ? 0 : DatumGetInt64(token);

		MemoryContextSwitchTo(cxt);
		provider = SPI_getvalue(tuple, desc, 2);
		account = SPI_getvalue(tuple, desc, 3);
		payment_id = SPI_getvalue(tuple, desc, 4);
		order_id = SPI_getvalue(tuple, desc, 5);
		item->row_has_payment_id = payment_id != NULL;
		item->row_has_order_id = order_id != NULL;
		paygw_check_prepare(&item->check, provider, account, payment_id, order_id,
							accounts);
		MemoryContextSwitchTo(oldcxt);
		items[r] = item;
	}
	paygw_account_batch_free(accounts);

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	return (int) n;
}

/*
 * Queue an item's request in the pool (a no-op for one that failed to
 * prepare); the pool hands the item back when it is done.
 */
void
paygw_reconcile_start(PaygwHttpPool *pool, PaygwItem *item)
{
	paygw_check_start(pool, &item->check, item);
}

/* Delete an item and everything it holds (its secrets are wiped). */
void
paygw_reconcile_free(PaygwItem *item)
{
	paygw_check_free(&item->check);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* The ids of items[0..n-1] as a bigint[]. */
static Datum
id_array(PaygwItem **items, int n)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(1, n));

	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(items[i]->invoice_id);
	return paygw_array_datum(ids, NULL, n, INT8OID);
}

/*
 * Run a prepared statement that takes a bigint[] of the items' ids; return
 * the set of ids it returned in column 1, sorted, in *out (palloc'd in
 * CurrentMemoryContext).
 */
static int
ids_returned(SPIPlanPtr plan, PaygwItem **items, int n, int64 **out)
{
	Datum		values[1] = {id_array(items, n)};
	int			ret = paygw_spi_execute_by_key(plan, values, NULL);
	int64	   *ids;

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading paygw.invoices failed: %s", SPI_result_code_string(ret));
	ids = palloc(sizeof(int64) * Max(1, SPI_processed));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		ids[r] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
	}
	qsort(ids, SPI_processed, sizeof(int64), cmp_int64);
	*out = ids;
	return (int) SPI_processed;
}

static bool
id_in(int64 id, int64 *ids, int n)
{
	return bsearch(&id, ids, n, sizeof(int64), cmp_int64) != NULL;
}

/*
 * The arguments of paygw.apply_checks for items[0..n-1].  failed: record
 * each as the error "could not be recorded" instead of its real outcome.
 */
static void
apply_args(PaygwItem **items, int n, bool failed, Datum *values)
{
	Datum	   *cols[12];
	bool	   *nulls[12];

	for (int c = 0; c < 12; c++)
	{
		cols[c] = palloc(sizeof(Datum) * Max(1, n));
		nulls[c] = palloc(sizeof(bool) * Max(1, n));
	}
	for (int i = 0; i < n; i++)
	{
		PaygwItem  *item = items[i];
		PaygwStatusResult *res = &item->check.res;
		bool		ok = item->check.ok && !failed;

		cols[0][i] = Int64GetDatum(item->invoice_id);
		nulls[0][i] = false;
		cols[1][i] = Int64GetDatum(item->lease_token);
		nulls[1][i] = !item->has_lease;
		cols[2][i] = paygw_text_or_null(ok ? paygw_status_label(res->status) : NULL, &nulls[2][i]);
		cols[3][i] = paygw_text_or_null(ok ? res->provider_status : NULL, &nulls[3][i]);
		cols[4][i] = paygw_text_or_null(ok ? res->payment_id : NULL, &nulls[4][i]);
		cols[5][i] = paygw_text_or_null(ok ? res->order_id : NULL, &nulls[5][i]);
		cols[6][i] = ok ? res->amount : (Datum) 0;
		nulls[6][i] = !ok || res->amount_isnull;
		cols[7][i] = paygw_text_or_null(ok ? res->currency : NULL, &nulls[7][i]);
		cols[8][i] = ok ? JsonbPGetDatum(res->response) : (Datum) 0;
		nulls[8][i] = !ok;
		if (ok)
		{
			nulls[9][i] = nulls[10][i] = true;
			cols[9][i] = cols[10][i] = (Datum) 0;
		}
		else if (failed)
		{
			cols[9][i] = paygw_text_or_null("XX000", &nulls[9][i]);
			cols[10][i] = paygw_text_or_null("the outcome of the check could not be recorded; see the server log",
											 &nulls[10][i]);
		}
		else
		{
			PaygwError *err = &item->check.err;

			cols[9][i] = paygw_text_or_null(unpack_sql_state(paygw_error_sqlstate(err->code)), &nulls[9][i]);
			cols[10][i] = paygw_text_or_null(err->detail[0]
											 ? psprintf("%s: %s", err->message, err->detail)
											 : err->message, &nulls[10][i]);
		}
		cols[11][i] = BoolGetDatum(ok && item->learn);
		nulls[11][i] = false;
	}
	values[0] = paygw_array_datum(cols[0], nulls[0], n, INT8OID);
	values[1] = paygw_array_datum(cols[1], nulls[1], n, INT8OID);
	for (int c = 2; c <= 5; c++)
		values[c] = paygw_array_datum(cols[c], nulls[c], n, TEXTOID);
	values[6] = paygw_array_datum(cols[6], nulls[6], n, NUMERICOID);
	values[7] = paygw_array_datum(cols[7], nulls[7], n, TEXTOID);
	values[8] = paygw_array_datum(cols[8], nulls[8], n, JSONBOID);
	values[9] = paygw_array_datum(cols[9], nulls[9], n, TEXTOID);
	values[10] = paygw_array_datum(cols[10], nulls[10], n, TEXTOID);
	values[11] = paygw_array_datum(cols[11], nulls[11], n, BOOLOID);
	values[12] = Float8GetDatum((double) paygw_backoff_initial_s);
	values[13] = Float8GetDatum((double) paygw_backoff_max_s);
	values[14] = Float8GetDatum((double) paygw_give_up_after_s);
}

/* Find the item with this invoice id among items[0..n-1] (ids are unique). */
static PaygwItem *
find_item(PaygwItem **items, int n, int64 id)
{
	for (int i = 0; i < n; i++)
		if (items[i]->invoice_id == id)
			return items[i];
	return NULL;
}

/* One paygw.apply_checks statement run by apply_in_subxact. */
typedef struct ApplyRun
{
	PaygwItem **items;
	int			n;
	bool		failed;
	bool		warn;
	SPIPlanPtr	plan;
	Datum	   *values;
} ApplyRun;

/* Run the statement, setting each item's outcome. */
static void
apply_run(void *arg)
{
	ApplyRun   *run = (ApplyRun *) arg;
	PaygwItem **items = run->items;
	int			n = run->n;
	int			ret = SPI_execute_plan(run->plan, run->values, NULL, false, 0);
	TupleDesc	desc;

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "paygw.apply_checks failed: %s", SPI_result_code_string(ret));
	desc = SPI_tuptable->tupdesc;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		PaygwItem  *item = find_item(items, n, id);
		char	   *outcome = SPI_getvalue(tuple, desc, 2);

		if (item == NULL || outcome == NULL)
			elog(ERROR, "paygw.apply_checks returned an invoice it was not given");
		item->outcome = run->failed ? PAYGW_OUTCOME_FAILED : outcome_from_name(outcome);
		if (item->outcome == PAYGW_OUTCOME_ANOMALY)
			ereport(WARNING,
					errmsg("invoice %lld reported %s by the gateway while %s: transition not applied",
						   (long long) id, SPI_getvalue(tuple, desc, 4), SPI_getvalue(tuple, desc, 3)),
					errdetail("The gateway's status is \"%s\"; %s invoices cannot become %s.",
							  SPI_getvalue(tuple, desc, 5), SPI_getvalue(tuple, desc, 3),
							  SPI_getvalue(tuple, desc, 4)));
	}
	for (int i = 0; i < n; i++)
		if (items[i]->outcome == PAYGW_OUTCOME_NONE)
			elog(ERROR, "paygw.apply_checks left invoice %lld out",
				 (long long) items[i]->invoice_id);
}

/*
 * The statement raised edata (and was rolled back): no item has an outcome;
 * a WARNING when warn, else a line at DEBUG1.
 */
static void
apply_failed(void *arg, ErrorData *edata)
{
	ApplyRun   *run = (ApplyRun *) arg;

	for (int i = 0; i < run->n; i++)
		run->items[i]->outcome = PAYGW_OUTCOME_NONE;
	if (run->warn)
		ereport(WARNING,
				errmsg("could not record the check of invoice %lld: %s",
					   (long long) run->items[0]->invoice_id, edata->message),
				errdetail("The invoice will be checked again later."));
	else
		ereport(DEBUG1,
				errmsg_internal("applying a batch of %d checks failed (%s); applying them one by one",
								run->n, edata->message));
}

/*
 * Apply items[0..n-1] (rows already locked) in one paygw.apply_checks
 * statement inside a subtransaction, setting each item's outcome.  Returns
 * false, with nothing written and no outcome set, when the statement raised
 * an error; the error is reported as a WARNING when `warn` (else only at
 * DEBUG1).  Query cancel and shutdown are re-thrown.
 */
static bool
apply_in_subxact(PaygwItem **items, int n, bool failed, bool warn)
{
	static Oid	types[APPLY_NARGS] = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, NUMERICARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID, FLOAT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[APPLY_NARGS];
	ApplyRun	run;

	run.items = items;
	run.n = n;
	run.failed = failed;
	run.warn = warn;
	run.plan = paygw_spi_prepare_once(&apply_plan,
									  "SELECT * FROM paygw.apply_checks($1, $2, $3::paygw.payment_status[],"
									  " $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
									  APPLY_NARGS, types);
	run.values = values;
	apply_args(items, n, failed, values);
	return paygw_run_in_subxact(apply_run, apply_failed, &run);
}

static void
count_outcome(PaygwApplyStats *stats, PaygwOutcome outcome)
{
	stats->last_outcome = paygw_outcome_name(outcome);
	switch (outcome)
	{
		case PAYGW_OUTCOME_CHANGED:
			stats->changed++;
			break;
		case PAYGW_OUTCOME_UNCHANGED:
			stats->unchanged++;
			break;
		case PAYGW_OUTCOME_ANOMALY:
			stats->anomalies++;
			break;
		case PAYGW_OUTCOME_ERROR:
			stats->errors++;
			break;
		case PAYGW_OUTCOME_GAVE_UP:
			stats->gave_up++;
			break;
		case PAYGW_OUTCOME_LOST:
			stats->lost++;
			break;
		case PAYGW_OUTCOME_BUSY:
			stats->busy++;
			return;				/* not checked yet: it is tried again */
		case PAYGW_OUTCOME_FAILED:
		case PAYGW_OUTCOME_NONE:
			stats->failed++;
			break;
	}
	stats->checked++;
}

/*
 * Select the rows of items[0..n-1], with clause after the WHERE (a locking
 * clause such as "FOR NO KEY UPDATE SKIP LOCKED", or ""); *plan keeps the
 * statement.  The items whose row was returned are appended to found[]
 * (*nfound grows), the others stored in rest[]; returns how many went there.
 */
static int
find_rows(SPIPlanPtr *plan, const char *clause, PaygwItem **items, int n,
		  PaygwItem **found, int *nfound, PaygwItem **rest)
{
	int64	   *ids;
	int			nids;
	int			nrest = 0;

	if (*plan == NULL)
		(void) paygw_spi_prepare_by_key_once(plan,
											 psprintf("SELECT i.id FROM paygw.invoices i"
													  " WHERE i.id OPERATOR(pg_catalog.=) ANY ($1) %s",
													  clause),
											 1, (Oid[]) {INT8ARRAYOID});
	nids = ids_returned(*plan, items, n, &ids);
	for (int i = 0; i < n; i++)
	{
		if (id_in(items[i]->invoice_id, ids, nids))
			found[(*nfound)++] = items[i];
		else
			rest[nrest++] = items[i];
	}
	return nrest;
}

/*
 * Apply the outcome of each item's check (its response must be complete, or
 * it was never prepared).  Must run in a transaction.  Sets each item's
 * outcome; an item left BUSY keeps its result and may be applied again in a
 * later transaction.  The items are left for the caller to free.
 */
void
paygw_reconcile_apply(PaygwItem **items, int n, PaygwApplyStats *stats)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext applycxt;
	PaygwItem **learners;
	PaygwItem **others;
	PaygwItem **locked;
	PaygwItem **missing;
	int			nlearners = 0;
	int			nothers = 0;
	int			nlocked = 0;
	int			nmissing = 0;

	if (n <= 0)
		return;
	applycxt = AllocSetContextCreate(CurrentMemoryContext, "paygw apply",
									 ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(applycxt);

	learners = palloc(sizeof(PaygwItem *) * n);
	others = palloc(sizeof(PaygwItem *) * n);
	locked = palloc(sizeof(PaygwItem *) * n);
	missing = palloc(sizeof(PaygwItem *) * n);
	for (int i = 0; i < n; i++)
	{
		PaygwItem  *item = items[i];
		PaygwStatusResult *res = &item->check.res;

		if (paygw_check_interpret(&item->check, "Invoice", item->invoice_id) &&
			!item->check.ok)
			stats->errors_by_kind[item->check.err.code]++;
		item->outcome = PAYGW_OUTCOME_NONE;
		/* the reply names an id the row lacks: learn it if the row is free */
		item->learn = item->check.ok &&
			((!item->row_has_payment_id && res->payment_id && res->payment_id[0]) ||
			 (!item->row_has_order_id && res->order_id && res->order_id[0]));
		if (item->learn)
			learners[nlearners++] = item;
		else
			others[nothers++] = item;
	}

	/*
	 * 1. lock the rows.  Those that learn an id need FOR UPDATE (a key
	 * column changes), which a foreign key's FOR KEY SHARE blocks: such a row
	 * is applied without learning.  The rest FOR NO KEY UPDATE.  Rows another
	 * session holds are busy (or gone).
	 */
	if (nlearners > 0)
	{
		int			first = nothers;

		nothers += find_rows(&lock_learn_plan, "FOR UPDATE SKIP LOCKED",
							 learners, nlearners, locked, &nlocked, others + nothers);
		for (int i = first; i < nothers; i++)
			others[i]->learn = false;
	}
	if (nothers > 0)
		nmissing = find_rows(&lock_plan, "FOR NO KEY UPDATE SKIP LOCKED",
							 others, nothers, locked, &nlocked, missing);
	if (nmissing > 0)
	{
		/* rows that exist are held by another session; the others are gone */
		PaygwItem **held = palloc(sizeof(PaygwItem *) * nmissing);
		PaygwItem **gone = palloc(sizeof(PaygwItem *) * nmissing);
		int			nheld = 0;
		int			ngone = find_rows(&exists_plan, "", missing, nmissing, held, &nheld, gone);

		for (int i = 0; i < nheld; i++)
			held[i]->outcome = PAYGW_OUTCOME_BUSY;
		for (int i = 0; i < ngone; i++)
			gone[i]->outcome = PAYGW_OUTCOME_LOST;
	}

	/* 2. all locked rows in one statement; 3. one by one if that fails */
	if (nlocked > 0 &&
		!apply_in_subxact(locked, nlocked, false, nlocked == 1 && !locked[0]->learn))
	{
		for (int i = 0; i < nlocked; i++)
		{
			if (nlocked > 1 && apply_in_subxact(&locked[i], 1, false, !locked[i]->learn))
				continue;
			/* an id the validation trigger refuses: apply without learning it */
			if (locked[i]->learn)
			{
				locked[i]->learn = false;
				if (apply_in_subxact(&locked[i], 1, false, true))
					continue;
			}
			/*
			 * The outcome cannot be written (see the WARNING).  Record that
			 * as an error instead, so the invoice is rescheduled and its
			 * lease released rather than claimed again at once, forever.
			 */
			if (!apply_in_subxact(&locked[i], 1, true, false))
			{
				ereport(WARNING,
						errmsg("could not record the failure to check invoice %lld either",
							   (long long) locked[i]->invoice_id));
				locked[i]->outcome = PAYGW_OUTCOME_FAILED;
			}
		}
	}

	for (int i = 0; i < n; i++)
		count_outcome(stats, items[i]->outcome);

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(applycxt);
}

/*
 * Give back the leases of items whose check was never made (the worker is
 * stopping).  Must run in a transaction.  Returns how many were released.
 */
int
paygw_reconcile_release(PaygwItem **items, int n, int64 run)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Datum		values[2];
	int			released = 0;
	bool		isnull;

	if (n <= 0)
		return 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = id_array(items, n);
	values[1] = Int64GetDatum(run);
	if (SPI_execute_plan(paygw_spi_prepare_once(&release_plan,
												"SELECT paygw.release_leases($1, $2)",
												2, (Oid[]) {INT8ARRAYOID, INT8OID}),
						 values, NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
		released = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	return released;
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

	n = paygw_reconcile_claim(passcxt, max_invoices, 0, 0, invoice_id, items);

	MemoryContextSwitchTo(poolcxt);
	pool = paygw_http_pool_create(paygw_max_concurrency, paygw_max_per_account);
	for (int i = 0; i < n; i++)
		paygw_reconcile_start(pool, items[i]);
	while (paygw_http_pool_pending(pool) > 0)
		(void) paygw_http_pool_run(pool, 1000, done, Max(1, max_invoices));
	MemoryContextSwitchTo(passcxt);
	MemoryContextDelete(poolcxt);

	/* the rows are locked by this transaction: none can be busy */
	paygw_reconcile_apply(items, n, stats);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(passcxt);
	return n;
}
