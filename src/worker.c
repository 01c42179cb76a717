/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The reconciliation background worker and its shared memory.
 *
 * With shared_preload_libraries = 'paygw', one worker runs in database
 * paygw.database and keeps tracked invoices current:
 *
 *	- it claims due invoices in short transactions (FOR UPDATE SKIP LOCKED
 *	  plus a lease, so a crash or a second worker can never lose or
 *	  double-apply a row),
 *	- performs their status calls with no transaction open, keeping up to
 *	  paygw.max_concurrency requests in flight (paygw.max_per_account per
 *	  account),
 *	- applies finished results in short transactions while the other
 *	  requests continue,
 *	- sleeps on its latch when nothing is due, until the next invoice falls
 *	  due or paygw.naptime at most; a commit that makes an invoice due
 *	  sooner than it planned to look (inserts one, or moves next_check_at
 *	  earlier) sets the latch (paygw.wake_worker trigger).
 *
 * SIGHUP reloads settings; SIGTERM stops it within one poll interval even
 * with requests in flight (their leases expire and the invoices are checked
 * again); after a crash the postmaster restarts it.  While the extension is
 * not created (or not yet updated to 0.2) in paygw.database it waits quietly.
 *
 * Memory: each invoice's check lives in its own context, deleted when its
 * outcome is applied; the pool reuses its transfer structures.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
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

#include "reconcile.h"

PGDLLEXPORT void paygw_worker_main(Datum main_arg);

/* how long results may wait before they are applied */
#define APPLY_DELAY_MS 50
/* restart delay after a crash, seconds */
#define RESTART_SECONDS 2

typedef struct PaygwShared
{
	slock_t		mutex;
	bool		running;
	pid_t		pid;
	Latch	   *latch;
	TimestampTz started_at;
	TimestampTz last_pass_at;
	uint64		passes;
	uint64		checked;
	uint64		changed;
	uint64		anomalies;
	uint64		errors;
	uint64		errors_by_kind[PAYGW_ERR_INTERNAL + 1];
	int			in_flight;
	TimestampTz wake_at;		/* when a sleeping worker will look; 0: awake */
	int			max_concurrency;	/* limits of the worker's current pool */
	int			max_per_account;
	int64		memory_bytes;	/* the worker's memory contexts, after a batch */
} PaygwShared;

static PaygwShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_registered = false;
static bool wake_pending = false;
static TimestampTz wake_soonest;	/* earliest next_check_at written */

static void
paygw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PaygwShared)));
}

static void
paygw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("paygw", sizeof(PaygwShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(PaygwShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared memory hooks (from _PG_init, preload only). */
void
paygw_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = paygw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = paygw_shmem_startup;
}

/* Register the worker (from _PG_init, preload only). */
void
paygw_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "paygw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "paygw_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "paygw reconciliation worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "paygw worker");
	RegisterBackgroundWorker(&worker);
}

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
	if (!wake_pending)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		Latch	   *latch = NULL;

		SpinLockAcquire(&shared->mutex);
		if (shared->running && shared->pid != MyProcPid &&
			(shared->wake_at == 0 || wake_soonest < shared->wake_at))
			latch = shared->latch;
		SpinLockRelease(&shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = false;
}

/*
 * Note that the current transaction wrote an invoice due at next_check_at;
 * the worker is woken at commit if that is sooner than it plans to look.
 * A no-op when the worker is not loaded.
 */
void
paygw_wake_worker_at_commit(TimestampTz next_check_at)
{
	if (shared == NULL)
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

static void
worker_exit(int code, Datum arg)
{
	(void) code;
	(void) arg;
	SpinLockAcquire(&shared->mutex);
	shared->running = false;
	shared->pid = 0;
	shared->latch = NULL;
	shared->in_flight = 0;
	SpinLockRelease(&shared->mutex);
}

/* Is paygw (0.2 or later) installed in this database?  Runs a transaction. */
static bool
extension_ready(void)
{
	bool		ready = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("paygw", true)))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension"
						" WHERE extname = 'paygw' AND extversion <> '0.1'",
						true, 1) == SPI_OK_SELECT)
			ready = SPI_processed == 1;
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return ready;
}

/* Claim up to max invoices in a short transaction and queue their calls. */
static int
claim_batch(MemoryContext itemcxt, PaygwHttpPool *pool, PaygwItem **items, int max)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	int			n;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "paygw: claiming due invoices");
	n = paygw_reconcile_claim(itemcxt, max, true, 0, items);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	MemoryContextSwitchTo(oldcxt);

	/* requests go out only once the leases are committed */
	for (int i = 0; i < n; i++)
		paygw_reconcile_start(pool, items[i]);
	paygw_http_pool_kick(pool);
	return n;
}

/*
 * Milliseconds until the next open invoice falls due (or its lease ends), at
 * most naptime.
 * Runs a short transaction.
 */
static long
sleep_time(void)
{
	long		ms = paygw_naptime_ms;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT pg_catalog.ceil(pg_catalog.date_part('epoch',"
					" pg_catalog.min(GREATEST(next_check_at, COALESCE(lease_until, next_check_at)))"
					" OPERATOR(pg_catalog.-) pg_catalog.now()) * 1000)::pg_catalog.int8"
					" FROM paygw.invoices WHERE status OPERATOR(pg_catalog.=) ANY"
					" ('{pending,authorized}'::paygw.payment_status[])"
					" AND next_check_at IS NOT NULL AND pg_catalog.isfinite(next_check_at)",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		/*
		 * Due already but not claimed: leased elsewhere or locked by a
		 * paygw_refresh transaction.  Look again in a second, not at once.
		 */
		if (!isnull)
			ms = DatumGetInt64(d) <= 0 ? Min(ms, 1000L) : Max(10L, Min(ms, (long) DatumGetInt64(d)));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return ms;
}

/* Apply finished checks in a short transaction, then free them. */
static void
apply_batch(PaygwItem **items, int n)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	PaygwApplyStats stats;

	memset(&stats, 0, sizeof(stats));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "paygw: applying results");
	paygw_reconcile_apply(items, n, &stats);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);	/* so autovacuum sees the worker's updates */
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	for (int i = 0; i < n; i++)
		paygw_reconcile_free(items[i]);
	if (paygw_debug)
		ereport(LOG,
				errmsg("paygw worker: applied %d checks: %d changed, %d unchanged, %d errors, %d anomalies, %d gave up, %d lost, %d failed",
					   stats.checked, stats.changed, stats.unchanged, stats.errors,
					   stats.anomalies, stats.gave_up, stats.lost, stats.failed));

	SpinLockAcquire(&shared->mutex);
	shared->memory_bytes = (int64) MemoryContextMemAllocated(TopMemoryContext, true);
	shared->checked += stats.checked;
	shared->changed += stats.changed;
	shared->anomalies += stats.anomalies;
	for (int k = 0; k <= PAYGW_ERR_INTERNAL; k++)
	{
		shared->errors_by_kind[k] += stats.errors_by_kind[k];
		shared->errors += stats.errors_by_kind[k];
	}
	SpinLockRelease(&shared->mutex);
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
	PaygwHttpPool *pool;
	PaygwItem **claimed;
	void	  **ready;
	int			nready = 0;
	int			capacity;
	TimestampTz first_ready = 0;
	bool		idle = true;
	int			concurrency = paygw_max_concurrency;
	int			per_account = paygw_max_per_account;

	(void) main_arg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(paygw_database, NULL, 0);
	pgstat_report_appname("paygw worker");

	/*
	 * The worker runs as the bootstrap superuser in a database whose owner
	 * may set its search_path: never resolve a name through it.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&shared->mutex);
	shared->running = true;
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	workercxt = AllocSetContextCreate(TopMemoryContext, "paygw worker",
									  ALLOCSET_DEFAULT_SIZES);
	itemcxt = AllocSetContextCreate(workercxt, "paygw worker items",
									ALLOCSET_DEFAULT_SIZES);
	poolcxt = AllocSetContextCreate(workercxt, "paygw worker pool",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(poolcxt);
	pool = paygw_http_pool_create(concurrency, per_account);
	MemoryContextSwitchTo(workercxt);
	publish_limits(concurrency, per_account);
	capacity = 10000 + 2 * 1024;
	claimed = palloc(sizeof(PaygwItem *) * capacity);
	ready = palloc(sizeof(void *) * capacity);

	elog(LOG, "paygw worker started in database \"%s\"", paygw_database);

	for (;;)
	{
		int			pending;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
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
			MemoryContextSwitchTo(workercxt);
			publish_limits(concurrency, per_account);
		}

		/* after sleeping, make sure there is something to work with */
		if (idle)
		{
			if (!extension_ready())
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 Max(paygw_naptime_ms, 5000L), PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
			idle = false;
		}

		/*
		 * Keep the pipeline full: claim while fewer than two rounds of work
		 * are queued or running, so a finished request's slot is refilled
		 * from the queue at once.  (Leases cover queued work too.)
		 */
		if (pending < 2 * concurrency && nready < capacity - 3 * concurrency &&
			concurrency == paygw_max_concurrency && per_account == paygw_max_per_account)
		{
			int			want = Min(paygw_batch_size, 3 * concurrency - pending);
			int			n;

			want = Min(want, capacity - nready - pending);
			n = want > 0 ? claim_batch(itemcxt, pool, claimed, want) : 0;

			/* items that could not even be prepared are finished already */
			for (int i = 0; i < n; i++)
				if (!claimed[i]->prepared)
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
				 * Nothing due and nothing in flight: sleep until something is.
				 * wake_at is 0 until here, so a commit racing with this
				 * decision sets the latch and the wait returns at once.
				 */
				long		ms;

				set_in_flight(0);
				idle = true;
				ms = sleep_time();
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
			k = paygw_http_pool_run(pool, APPLY_DELAY_MS, ready + nready, capacity - nready);
			if (k > 0 && nready == 0)
				first_ready = GetCurrentTimestamp();
			nready += k;
		}

		/* apply in batches, but never let a result wait long */
		if (nready > 0 &&
			(nready >= Max(1, concurrency / 2) ||
			 paygw_http_pool_pending(pool) == 0 ||
			 TimestampDifferenceExceeds(first_ready, GetCurrentTimestamp(), APPLY_DELAY_MS)))
		{
			apply_batch((PaygwItem **) ready, nready);
			nready = 0;
		}
	}
}

/*
 * paygw.worker_status_info(): the worker as shared memory sees it.  Without
 * shared_preload_libraries there is no shared state: running is false.
 */
PG_FUNCTION_INFO_V1(paygw_worker_status_info);

Datum
paygw_worker_status_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[15];
	bool		nulls[15];
	PaygwShared snap;
	StringInfoData kinds;
	bool		first = true;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));
	memset(&snap, 0, sizeof(snap));

	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		memcpy(&snap, shared, sizeof(snap));
		SpinLockRelease(&shared->mutex);
	}

	initStringInfo(&kinds);
	appendStringInfoChar(&kinds, '{');
	for (int k = 1; k <= PAYGW_ERR_INTERNAL; k++)
	{
		if (snap.errors_by_kind[k] == 0)
			continue;
		appendStringInfo(&kinds, "%s\"%s\": " UINT64_FORMAT, first ? "" : ", ",
						 paygw_error_name((PaygwErrorCode) k), snap.errors_by_kind[k]);
		first = false;
	}
	appendStringInfoChar(&kinds, '}');

	values[0] = BoolGetDatum(snap.running);
	values[1] = Int32GetDatum((int32) snap.pid);
	nulls[1] = !snap.running;
	values[2] = CStringGetTextDatum(paygw_database);
	values[3] = TimestampTzGetDatum(snap.started_at);
	nulls[3] = snap.started_at == 0;
	values[4] = TimestampTzGetDatum(snap.last_pass_at);
	nulls[4] = snap.last_pass_at == 0;
	values[5] = Int64GetDatum((int64) snap.passes);
	values[6] = Int64GetDatum((int64) snap.checked);
	values[7] = Int64GetDatum((int64) snap.changed);
	values[8] = Int64GetDatum((int64) snap.anomalies);
	values[9] = Int64GetDatum((int64) snap.errors);
	values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(kinds.data));
	values[11] = Int32GetDatum(snap.in_flight);
	values[12] = Int32GetDatum(snap.max_concurrency);
	nulls[12] = !snap.running;
	values[13] = Int32GetDatum(snap.max_per_account);
	nulls[13] = !snap.running;
	values[14] = Int64GetDatum(snap.memory_bytes);
	nulls[14] = !snap.running;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
