/*-------------------------------------------------------------------------
 *
 * worker.c
 *		A reconciliation worker: keeps one database's tracked invoices
 *		current.
 *
 * With shared_preload_libraries = 'paygw', the launcher (launcher.c) starts
 * one worker in each database paygw.database names where the extension is
 * created.  Each keeps its database's tracked invoices current on its own
 * (its own process, connection, gateway requests and leases):
 *
 *	- it claims due invoices in short transactions (FOR NO KEY UPDATE SKIP
 *	  LOCKED plus a lease, so a crash or a second worker can never lose or
 *	  double-apply a row),
 *	- performs their status calls with no transaction open, keeping up to
 *	  paygw.max_concurrency requests in flight (paygw.max_per_account per
 *	  account),
 *	- applies finished results in short transactions while the other
 *	  requests continue, a batch per statement (see reconcile.c),
 *	- sleeps on its latch when nothing is due, until the next invoice falls
 *	  due or paygw.naptime at most; a commit that makes an invoice due
 *	  sooner than it planned to look (inserts one, or moves next_check_at
 *	  earlier) sets the latch (paygw.wake_worker trigger),
 *	- checks webhook probes (hints about payments paygw does not track, see
 *	  probe.c) in the same pool, a batch at a time: when a commit queued one
 *	  (paygw_webhook sets a flag and the latch), and when a retry falls due.
 *
 * Leases belong to a worker run: each start takes a number from the
 * sequence paygw.worker_runs and leases rows under it.  A row leased under
 * any other run belongs to a worker that is gone -- terminated, crashed, or
 * the old primary of a promoted standby, whose leases came over in WAL -- and
 * is claimed again at once.  lease_until still ends a lease on its own
 * (paygw_refresh() and paygw_check_invoice() wait for it).
 *
 * A result is never thrown away because another session holds the row: the
 * worker keeps it (BUSY) and applies it on a later pass, until it is applied
 * or the row's lease has passed to another run or session.
 *
 * SIGHUP reloads settings.  SIGTERM (pg_terminate_backend, a server
 * shutdown) is orderly: the worker stops claiming, applies the results it
 * has, gives back the leases of requests not answered yet, and exits; the
 * launcher starts it again after a short delay unless the server is
 * stopping.
 * If the signal arrives inside one of its short transactions, that
 * transaction is rolled back instead and the next run takes its rows over.
 * The launcher stops a worker the same orderly way (the slot's stop flag)
 * when its database leaves paygw.database or a DROP DATABASE needs it gone.
 * Postmaster death is noticed within one poll interval even while requests
 * are in flight.  A worker that finds no extension paygw in its database
 * (never created, or dropped) says so in its slot and exits; the launcher
 * starts it again when paygw is created there.  While the extension is older
 * than this library's version it waits quietly for ALTER EXTENSION UPDATE.
 *
 * Memory: each invoice's check lives in its own context, deleted when its
 * outcome is applied; everything else a pass allocates goes into a context
 * reset at the start of the next pass; the pool reuses its transfer
 * structures.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "credentials.h"
#include "launcher.h"
#include "probe.h"
#include "reconcile.h"

PGDLLEXPORT void paygw_worker_main(Datum main_arg);

/* how long results may wait before they are applied */
#define APPLY_DELAY_MS 50
/* how often results kept because their row was busy are tried again */
#define RETRY_MS 200

/* the worker's slot in shared memory (launcher.h); NULL in other backends */
static PaygwWorkerSlot *shared = NULL;
/* the worker's database, for messages */
static char worker_dbname[NAMEDATALEN];
/* most webhook probes checked at once */
#define PROBE_BATCH 64

static void set_in_flight(int n);
static bool wake_registered = false;
/* set while the worker runs SQL: SIGTERM then ends the transaction at once */
static volatile sig_atomic_t in_transaction = false;
/* set once the orderly stop has begun */
static volatile sig_atomic_t stopping = false;
static bool wake_pending = false;
static TimestampTz wake_soonest;	/* earliest next_check_at written */
static bool probe_pending = false;	/* this transaction queued a probe */

/*
 * XactCallback, registered once per backend: when a transaction commits that
 * wrote an invoice due sooner than the worker plans to look -- compared at
 * commit, when the worker can see the row -- set the worker's latch.  (Not
 * unregistered from inside the callback: the list is being walked.)
 */
static void
wake_at_commit(XactEvent event, void *arg)
{
	(void) arg;
	if (!wake_pending && !probe_pending)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		PaygwWorkerSlot *slot = paygw_worker_slot_for_database(MyDatabaseId);
		Latch	   *latch = NULL;

		if (slot != NULL)
		{
			SpinLockAcquire(&slot->mutex);
			if (slot->dboid == MyDatabaseId)
			{
				if (probe_pending)
					slot->probes_queued = true;
				if (slot->pid != 0 && slot->pid != MyProcPid &&
					(probe_pending ||
					 (wake_pending && (slot->wake_at == 0 || wake_soonest < slot->wake_at))))
					latch = slot->latch;
			}
			SpinLockRelease(&slot->mutex);
		}
		if (latch != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = probe_pending = false;
}

/*
 * Note that the current transaction wrote an invoice due at next_check_at;
 * the worker is woken at commit if that is sooner than it plans to look.
 * A no-op when the worker is not loaded.
 */
void
paygw_wake_worker_at_commit(TimestampTz next_check_at)
{
	if (paygw_worker_slot_count() == 0)
		return;
	if (!wake_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		wake_registered = true;
	}
	if (!wake_pending || next_check_at < wake_soonest)
		wake_soonest = next_check_at;
	wake_pending = true;
}

/*
 * Note that the current transaction queued a webhook probe: at commit the
 * worker is told to look for due probes, and woken.  A no-op when the
 * worker is not loaded.
 */
void
paygw_wake_worker_for_probes_at_commit(void)
{
	if (paygw_worker_slot_count() == 0)
		return;
	if (!wake_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		wake_registered = true;
	}
	probe_pending = true;
}

static void
worker_exit(int code, Datum arg)
{
	(void) code;
	(void) arg;
	paygw_worker_slot_detach(shared);
}

/*
 * SIGTERM: ask for an orderly stop (the main loop finishes it).  Inside one
 * of the worker's transactions -- which could be waiting for a lock -- or on
 * a second SIGTERM, end at once, as die() does.
 */
static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;
	bool		again = ShutdownRequestPending;

	ShutdownRequestPending = true;
	if (again || (in_transaction && !stopping))
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Start and end one of the worker's short transactions.  xact_end switches
 * back to the memory context xact_begin was called in (CommitTransaction
 * leaves TopMemoryContext current).
 */
static MemoryContext
xact_begin(const char *activity)
{
	MemoryContext cxt = CurrentMemoryContext;

	/*
	 * Callers do not start a transaction once a stop was asked for (outside
	 * the orderly stop itself); one that came in just before this line ends
	 * this transaction at once, as one inside it would.
	 */
	in_transaction = true;
	if (ShutdownRequestPending && !stopping)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity != NULL)
		pgstat_report_activity(STATE_RUNNING, activity);
	return cxt;
}

static void
xact_end(MemoryContext cxt)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	in_transaction = false;
	pgstat_report_stat(false);	/* so autovacuum sees the worker's updates */
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
}

/*
 * Is paygw installed in this database, at the version this library's worker
 * needs?  READY, OLD (says once in the log which update to run) or ABSENT.
 * *ext is set to the extension's OID (InvalidOid when it is not installed):
 * a different one means it was dropped and created again.  Runs a
 * transaction.
 */
static PaygwWorkerState
extension_state(Oid *ext)
{
	static bool said_old = false;
	MemoryContext cxt = xact_begin(NULL);
	PaygwWorkerState state = PAYGW_WORKER_ABSENT;

	/*
	 * Both from one snapshot of pg_extension, not the OID from the catalog
	 * cache: the DROP EXTENSION that woke this worker has committed, but its
	 * cache invalidations may not have come yet.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT oid, extversion FROM pg_catalog.pg_extension"
					" WHERE extname = 'paygw'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading pg_extension failed");
	*ext = InvalidOid;
	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *version = SPI_getvalue(row, desc, 2);

		*ext = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
		state = PAYGW_WORKER_OLD;
		if (version != NULL && strcmp(version, PAYGW_SQL_VERSION) == 0)
			state = PAYGW_WORKER_READY;
		else if (!said_old)
		{
			ereport(LOG,
					errmsg("paygw worker waits: extension paygw %s in database \"%s\" is not the version %s this library needs",
						   version ? version : "?", worker_dbname, PAYGW_SQL_VERSION),
					errhint("Run ALTER EXTENSION paygw UPDATE in database \"%s\".", worker_dbname));
			said_old = true;
		}
	}
	SPI_finish();
	xact_end(cxt);
	return state;
}

/* A new run number from paygw.worker_runs.  Runs a transaction. */
static int64
new_run(void)
{
	MemoryContext cxt = xact_begin(NULL);
	int64		run = 0;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * Above every lease the table carries: a restored dump or a recreated
	 * extension must not hand out the number of a run that left leases.
	 */
	if (SPI_execute("SELECT pg_catalog.setval('paygw.worker_runs',"
					" GREATEST(pg_catalog.nextval('paygw.worker_runs'),"
					" (SELECT pg_catalog.max(lease_token) OPERATOR(pg_catalog.+) 1 FROM paygw.invoices)))",
					false, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		run = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	xact_end(cxt);
	if (run <= 0)
		elog(ERROR, "could not take a run number from paygw.worker_runs");
	SpinLockAcquire(&shared->mutex);
	shared->run = run;
	SpinLockRelease(&shared->mutex);
	return run;
}

/* Claim up to max invoices in a short transaction and queue their calls. */
static int
claim_batch(MemoryContext itemcxt, PaygwHttpPool *pool, PaygwItem **items,
			int max, int64 run)
{
	MemoryContext cxt = xact_begin("paygw: claiming due invoices");
	int			n;

	n = paygw_reconcile_claim(itemcxt, max, run, paygw_http_pool_pending(pool), 0, items);
	xact_end(cxt);

	/* requests go out only once the leases are committed */
	for (int i = 0; i < n; i++)
		paygw_reconcile_start(pool, items[i]);
	paygw_http_pool_kick(pool);
	return n;
}

/*
 * Milliseconds until the next open invoice this worker may claim falls due,
 * at most naptime.  Runs a short transaction.
 */
static long
sleep_time(int64 run)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext cxt = xact_begin(NULL);
	long		ms = paygw_naptime_ms;
	Datum		values[1] = {Int64GetDatum(run)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* an index scan of invoices_due, however many invoices are not due yet */
	if (SPI_execute_plan(paygw_spi_prepare_once(&plan,
												"SELECT i.next_check_at FROM paygw.invoices i"
												" WHERE i.next_check_at OPERATOR(pg_catalog.<) 'infinity'"
												" AND (i.lease_until IS NULL OR i.lease_until OPERATOR(pg_catalog.<) pg_catalog.now()"
												" OR i.lease_token IS DISTINCT FROM $1)"
												" ORDER BY i.next_check_at LIMIT 1",
												1, (Oid[]) {INT8OID}),
						 values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		TimestampTz next = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull));
		TimestampTz now = GetCurrentTimestamp();

		/*
		 * Due already but not claimed: another session holds the row (the
		 * application, or a paygw_refresh transaction).  Look again in a
		 * second, not at once.
		 */
		if (isnull)
			;
		else if (next <= now)
			ms = Min(ms, 1000L);
		else
			ms = Max(10L, Min(ms, (long) ((next - now + 999) / 1000)));
	}
	SPI_finish();
	xact_end(cxt);
	return ms;
}

/*
 * Delete events older than paygw.event_retention (0: never) and webhooks
 * (and webhook probes) older than paygw.webhook_retention, at most 1000 of
 * each at a time (it
 * runs when the worker is about to sleep, so it never delays checks).
 * Returns the most rows deleted from one table.  Runs a short transaction.
 */
static int
purge_history(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext cxt;
	int			most = 0;

	if (paygw_event_retention_s <= 0 && paygw_webhook_retention_s <= 0)
		return 0;
	cxt = xact_begin("paygw: deleting old history");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int table = 0; table < 2; table++)
	{
		int			age = table == 0 ? paygw_event_retention_s : paygw_webhook_retention_s;
		Datum		values[3];
		bool		isnull;

		if (age <= 0)
			continue;
		values[0] = Float8GetDatum((double) age);
		values[1] = BoolGetDatum(table == 0);
		values[2] = BoolGetDatum(table == 1);
		if (SPI_execute_plan(paygw_spi_prepare_once(&plan,
													"SELECT GREATEST(events, webhooks, probes)"
													" FROM paygw.purge_history(pg_catalog.make_interval(secs => $1),"
													" 1000, $2, $3)",
													3, (Oid[]) {FLOAT8OID, BOOLOID, BOOLOID}),
							 values, NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
			most = Max(most, (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_finish();
	xact_end(cxt);
	return most;
}

/*
 * Add what applying a batch did to the shared counters; nretry results are
 * now kept for busy rows.
 */
static void
add_stats(PaygwApplyStats *stats, int nretry)
{
	/* walks every memory context: not under the spinlock */
	int64		memory = (int64) MemoryContextMemAllocated(TopMemoryContext, true);

	SpinLockAcquire(&shared->mutex);
	shared->memory_bytes = memory;
	shared->checked += stats->checked;
	shared->changed += stats->changed;
	shared->anomalies += stats->anomalies;
	shared->lost += stats->lost;
	shared->busy += stats->busy;
	for (int k = 0; k <= PAYGW_ERR_INTERNAL; k++)
	{
		shared->errors_by_kind[k] += stats->errors_by_kind[k];
		shared->errors += stats->errors_by_kind[k];
	}
	shared->waiting_retry = nretry;
	SpinLockRelease(&shared->mutex);
}

/*
 * Apply finished checks in a short transaction.  Items whose row another
 * session holds are moved to retry[] (their result kept); the others are
 * freed.  Returns the new number of items in retry[].
 */
static int
apply_batch(PaygwItem **items, int n, PaygwItem **retry, int nretry)
{
	MemoryContext cxt;
	PaygwApplyStats stats;

	memset(&stats, 0, sizeof(stats));
	cxt = xact_begin("paygw: applying results");
	paygw_reconcile_apply(items, n, &stats);
	xact_end(cxt);

	for (int i = 0; i < n; i++)
	{
		if (items[i]->outcome == PAYGW_OUTCOME_BUSY)
			retry[nretry++] = items[i];
		else
			paygw_reconcile_free(items[i]);
	}
	if (paygw_debug)
		ereport(LOG,
				errmsg("paygw worker: applied %d checks: %d changed, %d unchanged, %d errors, %d anomalies, %d gave up, %d lost, %d busy, %d failed",
					   stats.checked, stats.changed, stats.unchanged, stats.errors,
					   stats.anomalies, stats.gave_up, stats.lost, stats.busy, stats.failed));
	add_stats(&stats, nretry);
	return nretry;
}

/*
 * Results kept for busy rows: apply them again.  A result is kept until it is
 * applied or its row's lease passes to another run or session (then it is
 * lost: that claimer checks the row).  Returns the new number kept.
 */
static int
retry_busy(PaygwItem **retry, int nretry)
{
	PaygwItem **again = palloc(sizeof(PaygwItem *) * Max(1, nretry));

	memcpy(again, retry, sizeof(PaygwItem *) * nretry);
	return apply_batch(again, nretry, retry, 0);
}

/*
 * Claim due webhook probes (at most max) in a short transaction and queue
 * their calls; probing[] gets those queued, finished[] those whose call
 * could not even be prepared.  Returns how many were queued.  *look: when
 * to look for due probes again (0: once this batch is done, as more may be
 * due; DT_NOEND: only when a commit queues one).
 */
static int
claim_probes(MemoryContext probecxt, PaygwHttpPool *pool, int max, int64 run,
			 PaygwProbe **probing, PaygwProbe **finished, int *nfinished,
			 TimestampTz *look)
{
	MemoryContext cxt = xact_begin("paygw: claiming webhook probes");
	PaygwProbe **claimed = palloc(sizeof(PaygwProbe *) * max);
	TimestampTz next_due;
	TimestampTz now;
	int			nprobing = 0;
	int			n;

	n = paygw_probe_claim(probecxt, max, run, claimed, &next_due);
	xact_end(cxt);

	/* requests go out only once the leases are committed */
	for (int i = 0; i < n; i++)
	{
		if (claimed[i]->check.prepared)
		{
			paygw_probe_start(pool, claimed[i]);
			probing[nprobing++] = claimed[i];
		}
		else
			finished[(*nfinished)++] = claimed[i];
	}
	if (nprobing > 0)
		paygw_http_pool_kick(pool);

	now = GetCurrentTimestamp();
	if (n == max)
		*look = 0;
	else if (next_due == DT_NOEND || next_due > now)
		*look = next_due;
	else
	{
		/* due, but over the account's rate or held by another session */
		*look = TimestampTzPlusMilliseconds(now, 1000);
	}
	return nprobing;
}

/*
 * Take the probes out of done[0..k-1] (what the pool finished) and off
 * probing[], appending them to finished[]; returns how many invoice items
 * are left in done[], in their order.
 */
static int
split_probes(void **done, int k, PaygwProbe **probing, int *nprobing,
			 PaygwProbe **finished, int *nfinished)
{
	int			kept = 0;

	for (int i = 0; i < k; i++)
	{
		int			j = 0;

		while (j < *nprobing && done[i] != (void *) probing[j])
			j++;
		if (j < *nprobing)
		{
			finished[(*nfinished)++] = probing[j];
			probing[j] = probing[--(*nprobing)];
		}
		else
			done[kept++] = done[i];
	}
	return kept;
}

/* Record the outcomes of finished probes in a short transaction; free them. */
static void
apply_probes(PaygwProbe **probes, int n)
{
	MemoryContext cxt;
	PaygwProbeStats stats;

	if (n <= 0)
		return;
	memset(&stats, 0, sizeof(stats));
	cxt = xact_begin("paygw: recording webhook probes");
	paygw_probe_apply(probes, n, &stats);
	xact_end(cxt);
	for (int i = 0; i < n; i++)
		paygw_probe_free(probes[i]);
	if (paygw_debug)
		ereport(LOG,
				errmsg("paygw worker: checked %d webhook probes: %d tracked, %d unknown, %d errors, %d gave up, %d lost, %d failed",
					   n, stats.tracked, stats.unknown, stats.errors, stats.gave_up,
					   stats.lost, stats.failed));
}

/*
 * The orderly end of a run (SIGTERM): apply the results already received and
 * those kept for busy rows, give back the leases of every request not
 * answered yet, exit.  Probes answered are recorded; those not answered
 * stay leased by this run, and the next run takes them over at once.
 */
static void
shutdown_run(PaygwHttpPool *pool, PaygwItem **ready, int nready,
			 PaygwItem **retry, int nretry, int64 run,
			 PaygwProbe **probing, int nprobing,
			 PaygwProbe **probes_done, int nprobes_done)
{
	int			cap = nready + nretry + paygw_http_pool_pending(pool);
	PaygwItem **rest = palloc(sizeof(PaygwItem *) * Max(1, cap));
	PaygwProbe **dropped = palloc(sizeof(PaygwProbe *) * Max(1, nprobing));
	int			ndropped = 0;
	int			nrest;
	int			released = 0;
	int			applied = nready + nretry;

	stopping = true;
	/* requests still queued or on the wire: stop them, keep their items */
	nrest = paygw_http_pool_cancel_all(pool, (void **) rest, cap);
	nrest = split_probes((void **) rest, nrest, probing, &nprobing, dropped, &ndropped);
	set_in_flight(0);
	apply_probes(probes_done, nprobes_done);
	if (nready + nretry > 0)
	{
		memcpy(ready + nready, retry, sizeof(PaygwItem *) * nretry);
		nretry = apply_batch(ready, nready + nretry, retry, 0);
		applied -= nretry;
	}
	/* results for rows still busy are dropped: their leases go back too */
	memcpy(rest + nrest, retry, sizeof(PaygwItem *) * nretry);
	nrest += nretry;
	if (nrest > 0 && run > 0)
	{
		MemoryContext cxt = xact_begin("paygw: releasing leases");

		released = paygw_reconcile_release(rest, nrest, run);
		xact_end(cxt);
	}
	ereport(LOG,
			errmsg("paygw worker stopping: %d results applied, %d of %d unanswered leases released",
				   applied, released, nrest));
}

static void
publish_limits(int concurrency, int per_account)
{
	SpinLockAcquire(&shared->mutex);
	shared->max_concurrency = concurrency;
	shared->max_per_account = per_account;
	SpinLockRelease(&shared->mutex);
}

static void
set_in_flight(int n)
{
	SpinLockAcquire(&shared->mutex);
	shared->in_flight = n;
	SpinLockRelease(&shared->mutex);
}

void
paygw_worker_main(Datum main_arg)
{
	MemoryContext workercxt;
	MemoryContext poolcxt;
	MemoryContext itemcxt;
	MemoryContext passcxt;
	MemoryContext probecxt;
	PaygwHttpPool *pool;
	PaygwItem **claimed;
	PaygwItem **ready;
	PaygwItem **retry;
	PaygwProbe **probing;		/* probes whose calls are queued or running */
	PaygwProbe **probes_done;	/* probes answered, to be recorded */
	int			nready = 0;
	int			nretry = 0;
	int			nprobing = 0;
	int			nprobes_done = 0;
	TimestampTz probe_look = 0; /* when to look for due probes; 0: now */
	int			capacity;
	TimestampTz first_ready = 0;
	TimestampTz last_retry = 0;
	TimestampTz claim_again_at = 0;	/* no claim before, unless idle */
	TimestampTz last_purge = 0;
	bool		idle = true;
	int			concurrency = paygw_max_concurrency;
	int			per_account = paygw_max_per_account;
	int64		run = 0;
	Oid			run_ext = InvalidOid;	/* the extension run was taken from */
	Oid			dboid;
	Oid			ext;
	uint32		generation;
	PaygwWorkerState state;
	bool		said_started = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	/*
	 * Take the slot the launcher started this worker for, before anything
	 * can fail, so that the slot is given back however the worker ends.
	 */
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	shared = paygw_worker_slot_attach(DatumGetInt32(main_arg), generation);
	if (shared == NULL)
		proc_exit(0);			/* the launcher gave up on this start */
	before_shmem_exit(worker_exit, (Datum) 0);
	SpinLockAcquire(&shared->mutex);
	dboid = shared->dboid;
	strlcpy(worker_dbname, NameStr(shared->dbname), sizeof(worker_dbname));
	SpinLockRelease(&shared->mutex);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("paygw worker");

	/*
	 * The worker runs as the bootstrap superuser in a database whose owner
	 * may set its search_path: never resolve a name through it.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/* no paygw here: say so to the launcher and go, quietly */
	paygw_worker_slot_looking(shared);
	state = extension_state(&ext);
	paygw_worker_slot_set_state(shared, state);
	if (state == PAYGW_WORKER_ABSENT)
		proc_exit(0);

	workercxt = AllocSetContextCreate(TopMemoryContext, "paygw worker",
									  ALLOCSET_DEFAULT_SIZES);
	itemcxt = AllocSetContextCreate(workercxt, "paygw worker items",
									ALLOCSET_DEFAULT_SIZES);
	poolcxt = AllocSetContextCreate(workercxt, "paygw worker pool",
									ALLOCSET_DEFAULT_SIZES);
	passcxt = AllocSetContextCreate(workercxt, "paygw worker pass",
									ALLOCSET_DEFAULT_SIZES);
	probecxt = AllocSetContextCreate(workercxt, "paygw worker probes",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(poolcxt);
	pool = paygw_http_pool_create(concurrency, per_account);
	MemoryContextSwitchTo(workercxt);
	publish_limits(concurrency, per_account);
	capacity = 10000 + 2 * 1024;
	claimed = palloc(sizeof(PaygwItem *) * capacity);
	ready = palloc(sizeof(PaygwItem *) * 2 * capacity);
	retry = palloc(sizeof(PaygwItem *) * capacity);
	probing = palloc(sizeof(PaygwProbe *) * PROBE_BATCH);
	probes_done = palloc(sizeof(PaygwProbe *) * PROBE_BATCH);

	for (;;)
	{
		int			pending;
		bool		stop;
		bool		recheck;

		/* whatever the previous pass allocated outside an item goes now */
		MemoryContextSwitchTo(passcxt);
		MemoryContextReset(passcxt);

		CHECK_FOR_INTERRUPTS();

		/* the launcher (or a DROP DATABASE) asks for the orderly stop */
		SpinLockAcquire(&shared->mutex);
		stop = shared->stop;
		recheck = shared->recheck;
		shared->recheck = false;
		SpinLockRelease(&shared->mutex);
		if (stop)
			ShutdownRequestPending = true;

		/*
		 * paygw was dropped, created or altered in this database: look now,
		 * not only after the next sleep (a worker retrying busy results or
		 * waiting for replies may not sleep for a while).  Dropped, it has
		 * nothing left to write its results to.
		 */
		if (recheck && !ShutdownRequestPending)
			idle = true;

		if (ShutdownRequestPending)
		{
			shutdown_run(pool, ready, nready, retry, nretry, run,
						 probing, nprobing, probes_done, nprobes_done);
			proc_exit(0);		/* the launcher decides about a restart */
		}

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			probe_look = 0;		/* paygw.webhook_probe_rate may have changed */
		}

		/*
		 * A new pool when the limits changed and the old one is empty (no
		 * new claims are made meanwhile, so it drains).
		 */
		pending = paygw_http_pool_pending(pool);
		if (pending == 0 && nready == 0 &&
			(concurrency != paygw_max_concurrency || per_account != paygw_max_per_account))
		{
			concurrency = paygw_max_concurrency;
			per_account = paygw_max_per_account;
			MemoryContextReset(poolcxt);
			MemoryContextSwitchTo(poolcxt);
			pool = paygw_http_pool_create(concurrency, per_account);
			MemoryContextSwitchTo(passcxt);
			publish_limits(concurrency, per_account);
		}

		/* after sleeping, make sure there is something to work with */
		if (idle && !ShutdownRequestPending)
		{
			paygw_worker_slot_looking(shared);
			state = extension_state(&ext);
			paygw_worker_slot_set_state(shared, state);
			if (state == PAYGW_WORKER_ABSENT)
				proc_exit(0);	/* dropped: the rows of anything in flight are gone too */
			if (state == PAYGW_WORKER_OLD)
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 Max(paygw_naptime_ms, 5000L), PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
			if (!said_started)
			{
				elog(LOG, "paygw worker started in database \"%s\"", worker_dbname);
				said_started = true;
			}
			/* a recreated extension has a new sequence: a new run too */
			if (ext != run_ext)
				run = 0;
			if (run == 0)
			{
				run = new_run();
				run_ext = ext;
			}
			idle = false;
		}

		/*
		 * Webhook probes, a batch at a time: when a commit queued one, and
		 * when one falls due (a retry, or the account's rate allows more).
		 */
		if (nprobing == 0 && !ShutdownRequestPending && paygw_webhook_probe_rate > 0 &&
			concurrency == paygw_max_concurrency && per_account == paygw_max_per_account)
		{
			bool		queued;

			SpinLockAcquire(&shared->mutex);
			queued = shared->probes_queued;
			shared->probes_queued = false;
			SpinLockRelease(&shared->mutex);
			if (queued || GetCurrentTimestamp() >= probe_look)
			{
				nprobing = claim_probes(probecxt, pool, Min(PROBE_BATCH, Max(1, concurrency)),
										run, probing, probes_done, &nprobes_done, &probe_look);
				apply_probes(probes_done, nprobes_done);
				nprobes_done = 0;
			}
		}

		/* results kept for rows another session held: try them again */
		if (nretry > 0 && !ShutdownRequestPending &&
			TimestampDifferenceExceeds(last_retry, GetCurrentTimestamp(), RETRY_MS))
		{
			nretry = retry_busy(retry, nretry);
			last_retry = GetCurrentTimestamp();
		}

		/*
		 * Keep the pipeline full, in few claims: when little more than one
		 * round of work is queued or running, claim up to three rounds, so
		 * a finished request's slot is refilled from the queue at once and
		 * each claim's fixed cost is shared by many invoices.  After a claim
		 * that found fewer due than it asked for, wait a little before the
		 * next (unless there is nothing left to wait for): a claim is a
		 * transaction.  (Leases are sized for the whole queue.)
		 */
		if (pending < concurrency + Max(1, concurrency / 4) && !ShutdownRequestPending &&
			concurrency == paygw_max_concurrency && per_account == paygw_max_per_account &&
			((pending == 0 && nready == 0) || GetCurrentTimestamp() >= claim_again_at))
		{
			int			want = Min(paygw_batch_size, 3 * concurrency - pending);
			int			n;

			/*
			 * Every claimed item may end up in ready[] and then, busy, in
			 * retry[]: never hold more than capacity items in all.
			 */
			want = Min(want, capacity - nready - pending - nretry);
			n = want > 0 ? claim_batch(itemcxt, pool, claimed, want, run) : 0;
			claim_again_at = n < want
				? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), APPLY_DELAY_MS) : 0;

			/* items that could not even be prepared are finished already */
			for (int i = 0; i < n; i++)
				if (!claimed[i]->check.prepared)
				{
					if (nready == 0)
						first_ready = GetCurrentTimestamp();
					ready[nready++] = claimed[i];
				}
			SpinLockAcquire(&shared->mutex);
			shared->passes++;
			shared->last_pass_at = GetCurrentTimestamp();
			SpinLockRelease(&shared->mutex);

			if (n == 0 && paygw_http_pool_pending(pool) == 0 && nready == 0)
			{
				/*
				 * Nothing due and nothing in flight: sleep until something is
				 * (or until kept results are due for another try).  wake_at
				 * is 0 until here, so a commit racing with this decision sets
				 * the latch and the wait returns at once.
				 */
				long		ms;

				set_in_flight(0);
				if (ShutdownRequestPending)
					continue;
				if (nretry == 0)
				{
					/* old history goes in small batches, before a sleep */
					if (TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(), 60000) &&
						purge_history() < 1000)
						last_purge = GetCurrentTimestamp();
					idle = true;
					ms = sleep_time(run);
					/* a probe's retry */
					if (paygw_webhook_probe_rate > 0 && probe_look != DT_NOEND)
						ms = Max(10L, Min(ms, (long) ((probe_look - GetCurrentTimestamp() + 999) / 1000)));
				}
				else
					ms = RETRY_MS;
				SpinLockAcquire(&shared->mutex);
				shared->wake_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
				SpinLockRelease(&shared->mutex);
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 ms, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				SpinLockAcquire(&shared->mutex);
				shared->wake_at = 0;
				SpinLockRelease(&shared->mutex);
				continue;
			}
		}

		if (paygw_http_pool_pending(pool) > 0)
		{
			int			k;

			set_in_flight(paygw_http_pool_running(pool));
			k = paygw_http_pool_run(pool, APPLY_DELAY_MS, (void **) (ready + nready),
									capacity - nready);
			if (nprobing > 0)
				k = split_probes((void **) (ready + nready), k, probing, &nprobing,
								 probes_done, &nprobes_done);
			if (nprobes_done > 0 && !ShutdownRequestPending)
			{
				apply_probes(probes_done, nprobes_done);
				nprobes_done = 0;
			}
			if (k > 0 && nready == 0)
				first_ready = GetCurrentTimestamp();
			nready += k;
		}

		/* apply in batches, but never let a result wait long */
		if (nready > 0 && !ShutdownRequestPending &&
			(nready >= Max(1, concurrency) ||
			 paygw_http_pool_pending(pool) == 0 ||
			 TimestampDifferenceExceeds(first_ready, GetCurrentTimestamp(), APPLY_DELAY_MS)))
		{
			nretry = apply_batch(ready, nready, retry, nretry);
			nready = 0;
		}
	}
}

/* the columns of paygw.worker_info() */
#define WORKER_INFO_COLS 20

/* What a slot's worker is doing, in words (worker_info's state column). */
static const char *
state_name(const PaygwWorkerSlot *snap)
{
	if (snap->pid == 0)
		return OidIsValid(snap->dboid) && snap->served && !snap->stop ? "restarting" : "not running";
	if (snap->stop)
		return "stopping";
	switch (snap->state)
	{
		case PAYGW_WORKER_READY:
			return "running";
		case PAYGW_WORKER_OLD:
			return "waiting for update";
		case PAYGW_WORKER_STARTING:
		case PAYGW_WORKER_ABSENT:
			break;
	}
	return "starting";
}

/*
 * One row of paygw.worker_info() from a copy of a slot (all zero: no worker
 * for the database).  Allocates in CurrentMemoryContext.
 */
static void
slot_row(const PaygwWorkerSlot *snap, const char *dbname, Datum *values, bool *nulls)
{
	bool		running = snap->pid != 0;
	StringInfoData kinds;
	bool		first = true;

	initStringInfo(&kinds);
	appendStringInfoChar(&kinds, '{');
	for (int k = 1; k <= PAYGW_ERR_INTERNAL; k++)
	{
		if (snap->errors_by_kind[k] == 0)
			continue;
		appendStringInfo(&kinds, "%s\"%s\": " UINT64_FORMAT, first ? "" : ", ",
						 paygw_error_name((PaygwErrorCode) k), snap->errors_by_kind[k]);
		first = false;
	}
	appendStringInfoChar(&kinds, '}');

	memset(nulls, 0, sizeof(bool) * WORKER_INFO_COLS);
	values[0] = BoolGetDatum(running);
	values[1] = Int32GetDatum((int32) snap->pid);
	nulls[1] = !running;
	values[2] = CStringGetTextDatum(dbname);
	values[3] = TimestampTzGetDatum(snap->started_at);
	nulls[3] = snap->started_at == 0;
	values[4] = TimestampTzGetDatum(snap->last_pass_at);
	nulls[4] = snap->last_pass_at == 0;
	values[5] = Int64GetDatum((int64) snap->passes);
	values[6] = Int64GetDatum((int64) snap->checked);
	values[7] = Int64GetDatum((int64) snap->changed);
	values[8] = Int64GetDatum((int64) snap->anomalies);
	values[9] = Int64GetDatum((int64) snap->errors);
	values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(kinds.data));
	values[11] = Int32GetDatum(snap->in_flight);
	values[12] = Int32GetDatum(snap->max_concurrency);
	nulls[12] = !running;
	values[13] = Int32GetDatum(snap->max_per_account);
	nulls[13] = !running;
	values[14] = Int64GetDatum(snap->memory_bytes);
	nulls[14] = !running;
	values[15] = Int64GetDatum(snap->run);
	nulls[15] = !running || snap->run == 0;
	values[16] = Int64GetDatum((int64) snap->lost);
	values[17] = Int64GetDatum((int64) snap->busy);
	values[18] = Int32GetDatum(snap->waiting_retry);
	values[19] = CStringGetTextDatum(state_name(snap));
}

/*
 * A copy of the slot of every database that has (or had, and will have
 * again) a worker, ordered by database name, in a palloc'd array.  Slots of
 * workers that are still looking whether their database has paygw are left
 * out.
 */
static int
cmp_slot_name(const void *a, const void *b)
{
	return strcmp(NameStr(((const PaygwWorkerSlot *) a)->dbname),
				  NameStr(((const PaygwWorkerSlot *) b)->dbname));
}

static int
served_slots(PaygwWorkerSlot **out)
{
	int			nslots = paygw_worker_slot_count();
	PaygwWorkerSlot *snaps = palloc0(sizeof(PaygwWorkerSlot) * Max(1, nslots));
	int			n = 0;

	for (int i = 0; i < nslots; i++)
	{
		PaygwWorkerSlot *slot = paygw_worker_slot(i);

		SpinLockAcquire(&slot->mutex);
		memcpy(&snaps[n], slot, sizeof(PaygwWorkerSlot));
		SpinLockRelease(&slot->mutex);
		if (OidIsValid(snaps[n].dboid) && snaps[n].served)
			n++;
	}
	qsort(snaps, n, sizeof(PaygwWorkerSlot), cmp_slot_name);
	*out = snaps;
	return n;
}

/*
 * paygw.worker_info(): one row per database with a worker, and one for the
 * current database when it has none (running false; without
 * shared_preload_libraries that is the only row).
 */
PG_FUNCTION_INFO_V1(paygw_worker_info);

Datum
paygw_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PaygwWorkerSlot *snaps;
	int			n;
	bool		mine = false;
	Datum		values[WORKER_INFO_COLS];
	bool		nulls[WORKER_INFO_COLS];

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != WORKER_INFO_COLS)
		elog(ERROR, "return type has %d columns, expected %d",
			 rsinfo->setDesc->natts, WORKER_INFO_COLS);
	n = served_slots(&snaps);
	for (int i = 0; i < n; i++)
	{
		slot_row(&snaps[i], NameStr(snaps[i].dbname), values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		mine |= snaps[i].dboid == MyDatabaseId;
	}
	if (!mine)
	{
		PaygwWorkerSlot none;

		memset(&none, 0, sizeof(none));
		slot_row(&none, get_database_name(MyDatabaseId), values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * paygw.worker_status_info() of 0.2 (15 columns): the worker of the current
 * database, one row.
 */
PG_FUNCTION_INFO_V1(paygw_worker_status_info);

Datum
paygw_worker_status_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[WORKER_INFO_COLS];
	bool		nulls[WORKER_INFO_COLS];
	PaygwWorkerSlot *snaps;
	PaygwWorkerSlot none;
	const PaygwWorkerSlot *row = &none;
	int			n;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > WORKER_INFO_COLS)
		elog(ERROR, "return type has %d columns, expected at most %d",
			 tupdesc->natts, WORKER_INFO_COLS);
	tupdesc = BlessTupleDesc(tupdesc);
	memset(&none, 0, sizeof(none));
	n = served_slots(&snaps);
	for (int i = 0; i < n; i++)
		if (snaps[i].dboid == MyDatabaseId)
			row = &snaps[i];
	slot_row(row, get_database_name(MyDatabaseId), values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
