/*-------------------------------------------------------------------------
 *
 * launcher.h
 *		The launcher and the reconciliation workers it starts: one worker
 *		per database, each with its slot in shared memory.
 *
 * The launcher (launcher.c) owns the slot array: it gives a slot to a
 * database, starts a worker for it and frees the slot when the worker is
 * gone for good.  The worker (worker.c) attaches to the slot it was started
 * for, says what it found in its database (state) and keeps its counters
 * there.  Every field is read and written under the slot's spinlock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_LAUNCHER_H
#define PAYGW_LAUNCHER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "paygw.h"

/* what a worker found in its database */
typedef enum PaygwWorkerState
{
	PAYGW_WORKER_STARTING = 0,	/* started; has not looked yet */
	PAYGW_WORKER_READY,			/* paygw is there, at this library's version */
	PAYGW_WORKER_OLD,			/* paygw is older: waits for ALTER EXTENSION */
	PAYGW_WORKER_ABSENT			/* paygw is not there: the worker exited */
} PaygwWorkerState;

typedef struct PaygwWorkerSlot
{
	slock_t		mutex;

	/* written by the launcher */
	Oid			dboid;			/* InvalidOid: the slot is free */
	NameData	dbname;
	uint32		generation;		/* one more at every start */
	bool		stop;			/* stop, and do not start again */
	TimestampTz launched_at;

	/* written by the worker (exited_at also by the launcher) */
	PaygwWorkerState state;
	bool		served;			/* READY or OLD at least once in this slot */
	pid_t		pid;			/* 0: no process */
	Latch	   *latch;
	TimestampTz exited_at;		/* when the last process went; 0: none yet */
	uint64		seen_events;	/* extension changes before its last look */

	/* the worker's counters (kept over restarts while the slot is held) */
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
	int64		run;			/* lease token of this run; 0 until known */
	uint64		lost;
	uint64		busy;
	int			waiting_retry;	/* results kept for a busy row */
	bool		probes_queued;	/* a commit queued a webhook probe */
	bool		recheck;		/* paygw was created, dropped or altered here */
} PaygwWorkerSlot;

/* launcher.c */
extern int	paygw_worker_slot_count(void);
extern PaygwWorkerSlot *paygw_worker_slot(int slotno);
extern PaygwWorkerSlot *paygw_worker_slot_for_database(Oid dboid);
extern PaygwWorkerSlot *paygw_worker_slot_attach(int slotno, uint32 generation);
extern void paygw_worker_slot_detach(PaygwWorkerSlot *slot);
extern void paygw_worker_slot_looking(PaygwWorkerSlot *slot);
extern void paygw_worker_slot_set_state(PaygwWorkerSlot *slot, PaygwWorkerState state);
extern void paygw_launcher_wakeup(void);

#endif							/* PAYGW_LAUNCHER_H */
