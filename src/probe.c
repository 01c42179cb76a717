/*-------------------------------------------------------------------------
 *
 * probe.c
 *		Hints about payments paygw does not track: one signed status call
 *		each, and a tracked invoice only when the gateway has the payment.
 *
 * paygw_webhook() records a webhook whose ids no tracked invoice of its
 * account has as a probe (paygw.webhook_probe_admit: one per distinct id,
 * at most paygw.webhook_probe_rate new ones per account per minute) and
 * returns at once.  The worker claims due probes (paygw.claim_probes, which
 * keeps to the same rate for the calls it starts), makes their calls in its
 * HTTP pool alongside the invoices' with no transaction open, and records
 * each outcome (paygw.probe_finish): found -> a tracked invoice with the
 * reported status (one event and one notification when that is not
 * pending), not found -> not tracked, anything else -> tried again later.
 * With confirm => true paygw_webhook() makes the call itself
 * (paygw_probe_now).
 *
 * Each probe lives in its own memory context (PaygwProbe.check.cxt, see
 * check.c), deleted once its outcome is recorded; its secrets are wiped
 * with it.  A probe's lease is the run that claimed it: the worker never
 * loses one without ending its run, and the next run takes the rows of any
 * other run over at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "credentials.h"
#include "probe.h"
#include "sqlutil.h"

/* the arguments of paygw.probe_finish */
#define FINISH_NARGS 15

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr next_plan = NULL;
static SPIPlanPtr row_plan = NULL;
static SPIPlanPtr finish_plan = NULL;

/*
 * A probe of one id (payment_id, else order_id) of an account, its status
 * call prepared, in a new context under parent.  Must run in a transaction
 * (the account is read).
 */
static PaygwProbe *
probe_make(MemoryContext parent, int64 probe_id, int64 lease_token,
		   const char *provider, const char *account,
		   const char *payment_id, const char *order_id)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "paygw probe", ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	PaygwProbe *probe = palloc0(sizeof(PaygwProbe));

	probe->check.cxt = cxt;
	probe->probe_id = probe_id;
	probe->lease_token = lease_token;
	paygw_check_prepare(&probe->check, provider, account, payment_id, order_id, NULL);
	MemoryContextSwitchTo(oldcxt);
	return probe;
}

/*
 * Claim up to max_probes due probes for the worker run `run` (at most
 * paygw.webhook_probe_rate calls per account per minute) and prepare their
 * calls, each in a new context under parent.  Fills probes[] (room for
 * max_probes) and returns how many.  *next_due: when the earliest pending
 * probe this run does not hold is due (DT_NOEND: none).  Must run in a
 * transaction, which the caller commits before the calls are made.
 */
int
paygw_probe_claim(MemoryContext parent, int max_probes, int64 run,
				  PaygwProbe **probes, TimestampTz *next_due)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Datum		values[3];
	int			ret;
	uint64		n;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = Int32GetDatum(max_probes);
	values[1] = Int64GetDatum(run);
	values[2] = Int32GetDatum(paygw_webhook_probe_rate);
	ret = SPI_execute_plan(paygw_spi_prepare_once(&claim_plan,
												  "SELECT * FROM paygw.claim_probes($1, $2, $3)",
												  3, (Oid[]) {INT4OID, INT8OID, INT4OID}),
						   values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "claiming probes failed: %s", SPI_result_code_string(ret));
	n = SPI_processed;
	if (n > (uint64) max_probes)
		elog(ERROR, "claimed more probes than asked for");
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));

		probes[r] = probe_make(parent, id, run, SPI_getvalue(tuple, desc, 2),
							   SPI_getvalue(tuple, desc, 3), SPI_getvalue(tuple, desc, 4),
							   SPI_getvalue(tuple, desc, 5));
	}

	*next_due = DT_NOEND;
	values[0] = Int64GetDatum(run);
	ret = SPI_execute_plan(paygw_spi_prepare_once(&next_plan,
												  "SELECT p.next_attempt_at FROM paygw.webhook_probes p"
												  " WHERE p.next_attempt_at IS NOT NULL"
												  " AND p.lease_token IS DISTINCT FROM $1"
												  " ORDER BY p.next_attempt_at LIMIT 1",
												  1, (Oid[]) {INT8OID}),
						   values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading paygw.webhook_probes failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
		*next_due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	return (int) n;
}

/*
 * Queue a probe's request in the pool (a no-op for one that failed to
 * prepare); the pool hands the probe back when it is done.
 */
void
paygw_probe_start(PaygwHttpPool *pool, PaygwProbe *probe)
{
	paygw_check_start(pool, &probe->check, probe);
}

/* Delete a probe and everything it holds (its secrets are wiped). */
void
paygw_probe_free(PaygwProbe *probe)
{
	paygw_check_free(&probe->check);
}

/*
 * The arguments of paygw.probe_finish for a probe.  failed: record the
 * error "could not be recorded" instead of its real outcome.
 */
static void
finish_args(PaygwProbe *probe, bool failed, Datum *values, char *nulls)
{
	PaygwStatusResult *res = &probe->check.res;
	PaygwError *err = &probe->check.err;
	bool		found = probe->check.ok && !failed;
	bool		isnull[FINISH_NARGS];
	const char *kind;

	memset(isnull, true, sizeof(isnull));
	memset(values, 0, sizeof(Datum) * FINISH_NARGS);
	if (found)
		kind = "found";
	else if (!failed && err->code == PAYGW_ERR_NOT_FOUND)
		kind = "not_found";
	else
		kind = "error";

	values[0] = Int64GetDatum(probe->probe_id);
	isnull[0] = false;
	values[1] = Int64GetDatum(probe->lease_token);
	isnull[1] = probe->lease_token == 0;
	values[2] = paygw_text_or_null(kind, &isnull[2]);
	if (found)
	{
		values[3] = paygw_text_or_null(paygw_status_label(res->status), &isnull[3]);
		values[4] = paygw_text_or_null(res->provider_status, &isnull[4]);
		values[5] = paygw_text_or_null(res->payment_id, &isnull[5]);
		values[6] = paygw_text_or_null(res->order_id, &isnull[6]);
		values[7] = res->amount;
		isnull[7] = res->amount_isnull;
		values[8] = paygw_text_or_null(res->currency, &isnull[8]);
		values[9] = JsonbPGetDatum(res->response);
		isnull[9] = false;
	}
	else if (failed)
	{
		values[10] = paygw_text_or_null("XX000", &isnull[10]);
		values[11] = paygw_text_or_null("the outcome of the check could not be recorded; see the server log",
										&isnull[11]);
	}
	else
	{
		values[10] = paygw_text_or_null(unpack_sql_state(paygw_error_sqlstate(err->code)), &isnull[10]);
		values[11] = paygw_text_or_null(err->detail[0]
										? psprintf("%s: %s", err->message, err->detail)
										: err->message, &isnull[11]);
	}
	values[12] = Float8GetDatum((double) paygw_backoff_initial_s);
	values[13] = Float8GetDatum((double) paygw_backoff_max_s);
	values[14] = Float8GetDatum((double) paygw_give_up_after_s);
	isnull[12] = isnull[13] = isnull[14] = false;
	for (int i = 0; i < FINISH_NARGS; i++)
		nulls[i] = isnull[i] ? 'n' : ' ';
}

/* The static name of an outcome paygw.probe_finish returned. */
static const char *
outcome_name(const char *outcome)
{
	static const char *const names[] = {"tracked", "unknown", "error", "gave_up", "lost"};

	for (int i = 0; i < (int) lengthof(names); i++)
		if (strcmp(outcome, names[i]) == 0)
			return names[i];
	elog(ERROR, "paygw.probe_finish returned an unknown outcome \"%s\"", outcome);
	return NULL;				/* keep the compiler quiet */
}

/* One paygw.probe_finish statement run by finish_in_subxact. */
typedef struct FinishRun
{
	PaygwProbe *probe;
	SPIPlanPtr	plan;
	Datum	   *values;
	char	   *nulls;
} FinishRun;

/* Run the statement, setting the probe's outcome. */
static void
finish_run(void *arg)
{
	FinishRun  *run = (FinishRun *) arg;
	PaygwProbe *probe = run->probe;
	bool		isnull;
	Datum		d;

	if (SPI_execute_plan(run->plan, run->values, run->nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "paygw.probe_finish failed");
	probe->outcome = outcome_name(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	probe->invoice_id = isnull ? 0 : DatumGetInt64(d);
}

/* The statement raised edata (and was rolled back): no outcome; a WARNING. */
static void
finish_failed(void *arg, ErrorData *edata)
{
	PaygwProbe *probe = ((FinishRun *) arg)->probe;

	probe->outcome = NULL;
	probe->invoice_id = 0;
	ereport(WARNING,
			errmsg("could not record the check of probe %lld: %s",
				   (long long) probe->probe_id, edata->message),
			errdetail("The payment will be checked again later."));
}

/*
 * Record a probe's outcome with paygw.probe_finish inside a subtransaction,
 * setting probe->outcome.  Returns false, with nothing written, when the
 * statement raised an error (reported as a WARNING).  Query cancel and
 * shutdown are re-thrown.
 */
static bool
finish_in_subxact(PaygwProbe *probe, bool failed)
{
	static Oid	types[FINISH_NARGS] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, NUMERICOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[FINISH_NARGS];
	char		nulls[FINISH_NARGS];
	FinishRun	run;

	run.probe = probe;
	run.plan = paygw_spi_prepare_once(&finish_plan,
									  "SELECT outcome, invoice_id FROM paygw.probe_finish($1, $2, $3,"
									  " $4::paygw.payment_status, $5, $6, $7, $8, $9, $10, $11, $12,"
									  " $13, $14, $15)",
									  FINISH_NARGS, types);
	run.values = values;
	run.nulls = nulls;
	finish_args(probe, failed, values, nulls);
	return paygw_run_in_subxact(finish_run, finish_failed, &run);
}

/*
 * Record the outcome of each probe's call (its response must be complete,
 * or it was never prepared), setting probe->outcome and ->invoice_id.  Must
 * run in a transaction.  The probes are left for the caller to free.
 */
void
paygw_probe_apply(PaygwProbe **probes, int n, PaygwProbeStats *stats)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext applycxt;

	if (n <= 0)
		return;
	applycxt = AllocSetContextCreate(CurrentMemoryContext, "paygw probe apply",
									 ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(applycxt);
	for (int i = 0; i < n; i++)
	{
		PaygwProbe *probe = probes[i];

		(void) paygw_check_interpret(&probe->check, "The payment of probe",
									 probe->probe_id);

		/*
		 * One whose outcome cannot be written (see the WARNING) is recorded
		 * as an error instead, so that it is tried again later.
		 */
		if (!finish_in_subxact(probe, false) &&
			!finish_in_subxact(probe, true))
			probe->outcome = "failed";
		if (strcmp(probe->outcome, "tracked") == 0)
			stats->tracked++;
		else if (strcmp(probe->outcome, "unknown") == 0)
			stats->unknown++;
		else if (strcmp(probe->outcome, "error") == 0)
			stats->errors++;
		else if (strcmp(probe->outcome, "gave_up") == 0)
			stats->gave_up++;
		else if (strcmp(probe->outcome, "lost") == 0)
			stats->lost++;
		else
			stats->failed++;
		MemoryContextReset(applycxt);
	}
	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(applycxt);
}

/*
 * Check a probe made in this transaction (paygw_webhook with confirm) now,
 * in this backend, and record the outcome.  Returns the outcome (a static
 * string: tracked, unknown, error, gave_up, lost or failed) and sets
 * *invoice_id (0: none).
 */
const char *
paygw_probe_now(int64 probe_id, int64 *invoice_id)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "paygw probe now",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	PaygwProbeStats stats;
	PaygwProbe *probe;
	Datum		values[1] = {Int64GetDatum(probe_id)};
	const char *outcome;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(paygw_spi_prepare_once(&row_plan,
												"SELECT provider, account, payment_id, order_id"
												" FROM paygw.webhook_probes"
												" WHERE id OPERATOR(pg_catalog.=) $1",
												1, (Oid[]) {INT8OID}),
						 values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "probe %lld does not exist", (long long) probe_id);
	MemoryContextSwitchTo(cxt);
	probe = probe_make(cxt, probe_id, 0,
					   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
					   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
					   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3),
					   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4));
	SPI_finish();
	MemoryContextSwitchTo(cxt);

	if (probe->check.prepared)
		paygw_http_perform(&probe->check.call.request, &probe->check.resp, 1, 1, 0);
	memset(&stats, 0, sizeof(stats));
	paygw_probe_apply(&probe, 1, &stats);
	outcome = probe->outcome;
	*invoice_id = probe->invoice_id;

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	return outcome;
}
