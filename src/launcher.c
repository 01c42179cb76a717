/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		One reconciliation worker for every database that uses paygw.
 *
 * With shared_preload_libraries = 'paygw' the postmaster starts one
 * launcher ("paygw launcher").  It connects to no database -- it reads only
 * the shared catalog pg_database -- and starts a dynamic background worker
 * (worker.c) for each database paygw.database names ('*': every database
 * that allows connections) and that is not a template.  A background worker
 * can connect to one database only, so the launcher cannot see which
 * databases have the extension: the worker it starts looks, and when paygw
 * is not there it records that in its slot and exits.  The launcher then
 * remembers the database as one without paygw and starts nothing there until
 * something changes:
 *
 *	- every backend of the server has this library (it is preloaded), and a
 *	  hook on object access tells the launcher at commit when paygw was
 *	  created, dropped or updated in a database (whatever the statement: a
 *	  CASCADE, DROP SCHEMA, DROP OWNED) and wakes that database's worker;
 *	- the launcher reads pg_database every paygw.launcher_naptime (and when a
 *	  CREATE/ALTER/DROP DATABASE commits), so a new, renamed or newly listed
 *	  database gets a worker within a naptime, and one that is no longer
 *	  listed has its worker stopped;
 *	- as a safety net, a database without paygw is looked at again every
 *	  PAYGW_REPROBE_NAPTIMES naptimes (a prepared transaction that creates
 *	  the extension commits in another backend, unseen).
 *
 * A worker that exits for any other reason (pg_terminate_backend, an ERROR)
 * is started again after RESTART_MS, in the same slot, so its counters go
 * on.  Workers run independently: each has its own process, connection,
 * HTTP pool and leases, and the launcher never waits for one.
 *
 * A worker keeps a connection to its database, and DROP DATABASE, ALTER
 * DATABASE RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE refuse
 * to run while another session is connected to the database they act on.
 * A utility hook therefore stops that database's worker before such a
 * command runs (the command waits up to 5 s for other sessions to go) and
 * keeps the launcher from starting it again until the command's
 * transaction ends.
 *
 * Shared memory holds one slot per possible worker (max_worker_processes of
 * them: no more workers can run); see launcher.h.  Workers of databases
 * found without the extension hold no slot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "launcher.h"

PGDLLEXPORT void paygw_launcher_main(Datum main_arg);

/* a worker that went away is started again after this long */
#define RESTART_MS 2000
/* the launcher itself, after it was terminated */
#define LAUNCHER_RESTART_SECONDS 5
/* a worker started by an earlier launcher gets this long to attach */
#define ATTACH_GRACE_MS 60000
/* at most this many workers that have not looked at their database yet */
#define MAX_STARTING 4
/* a database without paygw is looked at again after this many naptimes */
#define PAYGW_REPROBE_NAPTIMES 30
/* databases whose extension changed, queued for the launcher */
#define MAX_CHANGED 32
/* database commands under way that keep a database's worker away */
#define MAX_PAUSED 16

typedef struct PaygwPause
{
	Oid			dboid;			/* InvalidOid: free entry */
	pid_t		by;				/* the backend running the command */
} PaygwPause;

typedef struct PaygwWorkerCtl
{
	slock_t		mutex;			/* protects everything but the slots */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	uint64		events;			/* changes notified so far */
	int			nchanged;
	uint64		overflow_event; /* more than MAX_CHANGED: look at all; 0: no */
	Oid			changed[MAX_CHANGED];
	uint64		changed_event[MAX_CHANGED];	/* each change's number */
	PaygwPause	paused[MAX_PAUSED];
	int			nslots;
	PaygwWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PaygwWorkerCtl;

static PaygwWorkerCtl *ctl = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* ---------------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------------
 */

static int
slot_count(void)
{
	return Max(1, max_worker_processes);
}

static Size
ctl_size(void)
{
	return add_size(offsetof(PaygwWorkerCtl, slots),
					mul_size(slot_count(), sizeof(PaygwWorkerSlot)));
}

static void
launcher_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(ctl_size()));
}

static void
launcher_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("paygw workers", ctl_size(), &found);
	if (!found)
	{
		memset(ctl, 0, ctl_size());
		SpinLockInit(&ctl->mutex);
		ctl->nslots = slot_count();
		for (int i = 0; i < ctl->nslots; i++)
			SpinLockInit(&ctl->slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

int
paygw_worker_slot_count(void)
{
	return ctl == NULL ? 0 : ctl->nslots;
}

PaygwWorkerSlot *
paygw_worker_slot(int slotno)
{
	Assert(ctl != NULL && slotno >= 0 && slotno < ctl->nslots);
	return &ctl->slots[slotno];
}

/*
 * The slot given to database dboid, or NULL.  The caller locks the slot and
 * checks dboid again before trusting what it reads.
 */
PaygwWorkerSlot *
paygw_worker_slot_for_database(Oid dboid)
{
	for (int i = 0; i < paygw_worker_slot_count(); i++)
	{
		PaygwWorkerSlot *slot = &ctl->slots[i];
		bool		match;

		SpinLockAcquire(&slot->mutex);
		match = slot->dboid == dboid;
		SpinLockRelease(&slot->mutex);
		if (match)
			return slot;
	}
	return NULL;
}

/* Set the launcher's latch (a no-op when there is none). */
void
paygw_launcher_wakeup(void)
{
	Latch	   *latch;

	if (ctl == NULL)
		return;
	SpinLockAcquire(&ctl->mutex);
	latch = ctl->launcher_latch;
	SpinLockRelease(&ctl->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * A worker takes the slot it was started for.  NULL when the slot has been
 * given to another start meanwhile (a launcher that restarted gave up on
 * this one): the worker then exits without doing anything.
 */
PaygwWorkerSlot *
paygw_worker_slot_attach(int slotno, uint32 generation)
{
	PaygwWorkerSlot *slot;
	bool		ok;

	if (ctl == NULL || slotno < 0 || slotno >= ctl->nslots)
		return NULL;
	slot = &ctl->slots[slotno];
	SpinLockAcquire(&slot->mutex);
	ok = OidIsValid(slot->dboid) && slot->generation == generation &&
		slot->pid == 0 && !slot->stop;
	if (ok)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->state = PAYGW_WORKER_STARTING;
		slot->started_at = GetCurrentTimestamp();
		slot->run = 0;
		slot->in_flight = 0;
		slot->wake_at = 0;
		slot->waiting_retry = 0;
	}
	SpinLockRelease(&slot->mutex);
	return ok ? slot : NULL;
}

/* The worker is going (from its before_shmem_exit callback). */
void
paygw_worker_slot_detach(PaygwWorkerSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		slot->in_flight = 0;
		slot->waiting_retry = 0;
		slot->wake_at = 0;
		slot->exited_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&slot->mutex);
	paygw_launcher_wakeup();
}

/*
 * The worker is about to look at its database's extension.  Changes
 * notified up to now are committed and visible to the look; a later one
 * makes the launcher have it looked at again.
 */
void
paygw_worker_slot_looking(PaygwWorkerSlot *slot)
{
	uint64		events;

	SpinLockAcquire(&ctl->mutex);
	events = ctl->events;
	SpinLockRelease(&ctl->mutex);
	SpinLockAcquire(&slot->mutex);
	slot->seen_events = events;
	SpinLockRelease(&slot->mutex);
}

/* The worker says what it found in its database. */
void
paygw_worker_slot_set_state(PaygwWorkerSlot *slot, PaygwWorkerState state)
{
	bool		changed;

	SpinLockAcquire(&slot->mutex);
	changed = slot->state != state;
	slot->state = state;
	if (state == PAYGW_WORKER_READY || state == PAYGW_WORKER_OLD)
		slot->served = true;
	SpinLockRelease(&slot->mutex);
	if (changed)
		paygw_launcher_wakeup();
}

/* ---------------------------------------------------------------------------
 * What every backend tells the launcher
 * ---------------------------------------------------------------------------
 */

static bool xact_callback_registered = false;
static bool ext_created = false;	/* an extension was created: look at commit */
static bool paygw_changed = false;	/* paygw was dropped or altered */
static bool wake_at_commit = false; /* a database command: the launcher rescans */
static bool holding_pauses = false;

/* Queue dboid for the launcher, wake it and the database's worker. */
static void
notify_extension_change(Oid dboid)
{
	PaygwWorkerSlot *slot;

	SpinLockAcquire(&ctl->mutex);
	ctl->events++;
	if (ctl->nchanged < MAX_CHANGED)
	{
		ctl->changed[ctl->nchanged] = dboid;
		ctl->changed_event[ctl->nchanged++] = ctl->events;
	}
	else
		ctl->overflow_event = ctl->events;
	SpinLockRelease(&ctl->mutex);
	paygw_launcher_wakeup();

	slot = paygw_worker_slot_for_database(dboid);
	if (slot != NULL)
	{
		Latch	   *latch = NULL;

		SpinLockAcquire(&slot->mutex);
		if (slot->dboid == dboid && slot->pid != 0)
		{
			/* looked at on its next turn, whatever it is doing */
			slot->recheck = true;
			latch = slot->latch;
		}
		SpinLockRelease(&slot->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
}

/* Give back the pauses this backend took (see pause_database). */
static void
release_pauses(void)
{
	SpinLockAcquire(&ctl->mutex);
	for (int i = 0; i < MAX_PAUSED; i++)
		if (ctl->paused[i].by == MyProcPid)
		{
			ctl->paused[i].dboid = InvalidOid;
			ctl->paused[i].by = 0;
		}
	SpinLockRelease(&ctl->mutex);
	holding_pauses = false;
	paygw_launcher_wakeup();
}

/*
 * At commit: tell the launcher what changed.  At the end of the
 * transaction, either way: let the databases this backend paused have their
 * workers again.  (Not unregistered: the list is being walked.)
 */
static void
ddl_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* still in the transaction: catalog lookups work */
			if (ext_created && OidIsValid(get_extension_oid("paygw", true)))
				paygw_changed = true;
			break;
		case XACT_EVENT_COMMIT:
			if (paygw_changed)
				notify_extension_change(MyDatabaseId);
			if (wake_at_commit)
				paygw_launcher_wakeup();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			ext_created = paygw_changed = wake_at_commit = false;
			if (holding_pauses)
				release_pauses();
			break;
		default:
			break;
	}
}

static void
need_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(ddl_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * Notice paygw being created, dropped or altered, whatever statement does
 * it.  A created extension has no readable name yet: whether it is paygw is
 * looked at just before commit.
 */
static void
paygw_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (ctl == NULL || classId != ExtensionRelationId)
		return;
	if (access == OAT_POST_CREATE)
	{
		need_xact_callback();
		ext_created = true;
	}
	else if (access == OAT_DROP || access == OAT_POST_ALTER)
	{
		char	   *name = get_extension_name(objectId);

		if (name != NULL && strcmp(name, "paygw") == 0)
		{
			need_xact_callback();
			paygw_changed = true;
		}
	}
}

/*
 * Keep the worker of database `name` away until this transaction ends, and
 * stop it now.  Only for the database's owner (or a superuser): the command
 * fails for anyone else anyway, and must not bounce the worker.
 */
static void
pause_database(const char *name)
{
	Oid			dboid = get_database_oid(name, true);
	PaygwWorkerSlot *slot;
	Latch	   *latch = NULL;
	bool		taken = false;

	if (!OidIsValid(dboid) || !paygw_database_ownercheck(dboid, GetUserId()))
		return;
	SpinLockAcquire(&ctl->mutex);
	for (int i = 0; i < MAX_PAUSED && !taken; i++)
		if (!OidIsValid(ctl->paused[i].dboid))
		{
			ctl->paused[i].dboid = dboid;
			ctl->paused[i].by = MyProcPid;
			taken = true;
		}
	SpinLockRelease(&ctl->mutex);
	if (!taken)
		return;					/* the command may find the worker connected */
	need_xact_callback();
	holding_pauses = true;

	slot = paygw_worker_slot_for_database(dboid);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		if (slot->dboid == dboid)
		{
			slot->stop = true;
			latch = slot->latch;
		}
		SpinLockRelease(&slot->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	paygw_launcher_wakeup();
}

/*
 * Before a database command that needs the database to itself, stop its
 * worker; after CREATE/ALTER/DROP DATABASE, wake the launcher at commit.
 */
static void
paygw_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *exclusive = NULL;	/* the database the command needs alone */
	bool		database_command = false;
	ListCell   *lc;

	if (ctl != NULL)
	{
		switch (nodeTag(stmt))
		{
			case T_DropdbStmt:
				exclusive = ((DropdbStmt *) stmt)->dbname;
				database_command = true;
				break;
			case T_RenameStmt:
				if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				{
					exclusive = ((RenameStmt *) stmt)->subname;
					database_command = true;
				}
				break;
			case T_CreatedbStmt:
				database_command = true;
				foreach(lc, ((CreatedbStmt *) stmt)->options)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
						exclusive = defGetString(opt);
				}
				break;
			case T_AlterDatabaseStmt:
				database_command = true;
				foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "tablespace") == 0)
						exclusive = ((AlterDatabaseStmt *) stmt)->dbname;
				}
				break;
			default:
				break;
		}
		if (exclusive != NULL)
			pause_database(exclusive);
		if (database_command)
		{
			need_xact_callback();
			wake_at_commit = true;
		}
	}

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* ---------------------------------------------------------------------------
 * Registration (from _PG_init, when preloading)
 * ---------------------------------------------------------------------------
 */

/* Install the shared memory and catalog hooks and register the launcher. */
void
paygw_launcher_init(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = launcher_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = launcher_shmem_startup;
	prev_object_access_hook = object_access_hook;
	object_access_hook = paygw_object_access;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = paygw_process_utility;

	/* pg_upgrade's servers must not change the databases they move */
	if (IsBinaryUpgrade)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = LAUNCHER_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "paygw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "paygw_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "paygw launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "paygw launcher");
	RegisterBackgroundWorker(&worker);
}

/* ---------------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------------
 */

/* A database of pg_database as one pass of the launcher sees it. */
typedef struct LauncherDb
{
	Oid			oid;
	char	   *name;
	bool		listed;			/* named in paygw.database, or '*' */
	bool		wanted;			/* listed, and a worker may run there */
	const char *unusable;		/* listed by name, but: why no worker runs */
} LauncherDb;

/* A database found without paygw (launcher-local, in launcher_cxt). */
typedef struct AbsentDb
{
	Oid			oid;
	TimestampTz since;			/* when a worker last found it so */
	bool		due;			/* something changed there: look again */
} AbsentDb;

static MemoryContext launcher_cxt = NULL;
static BackgroundWorkerHandle **handles = NULL; /* per slot: our start */
static bool *recheck = NULL;	/* per slot: paygw changed while it looked */
static List *absent = NIL;		/* of AbsentDb * */
static List *reported = NIL;	/* "reason\tname" lines already logged */
static bool budget_warned = false;

static void
launcher_exit(int code, Datum arg)
{
	(void) code;
	(void) arg;
	SpinLockAcquire(&ctl->mutex);
	if (ctl->launcher_pid == MyProcPid)
	{
		ctl->launcher_pid = 0;
		ctl->launcher_latch = NULL;
	}
	SpinLockRelease(&ctl->mutex);
}

/*
 * The databases paygw.database names, in CurrentMemoryContext; *all is set
 * when it says '*'.  The check hook has made sure the list parses.
 */
static List *
listed_names(bool *all)
{
	char	   *raw = pstrdup(paygw_database ? paygw_database : "");
	List	   *names = NIL;
	ListCell   *lc;

	*all = false;
	if (!SplitGUCList(raw, ',', &names))
		names = NIL;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), "*") == 0)
			*all = true;
	return names;
}

static bool
name_listed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * Read pg_database: every database, with whether it is listed and whether a
 * worker should run there.
 * Runs a transaction; the result is in CurrentMemoryContext.
 */
static List *
scan_databases(List *names, bool all)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool		named = name_listed(names, NameStr(form->datname));
		LauncherDb *db;
		MemoryContext old;

		old = MemoryContextSwitchTo(cxt);
		db = palloc0(sizeof(LauncherDb));
		db->oid = form->oid;
		db->name = pstrdup(NameStr(form->datname));
		db->listed = named || all;
		if (paygw_database_is_invalid(form))
			db->unusable = "is being dropped or was not completely dropped";
		else if (form->datistemplate)
			db->unusable = "is a template database";
		else if (!form->datallowconn)
			db->unusable = "does not allow connections";
		db->wanted = db->listed && db->unusable == NULL;
		if (!named)
			db->unusable = NULL;	/* '*' skips such databases silently */
		dbs = lappend(dbs, db);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return dbs;
}

/*
 * Say once in the log which listed names have no worker and why; again only
 * when that changes.  (reported holds "reason\tname" lines.)
 */
static void
report_unusable(List *names, List *dbs)
{
	List	   *now = NIL;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		const char *why = "does not exist";
		ListCell   *d;
		char	   *line;

		if (strcmp(name, "*") == 0)
			continue;
		foreach(d, dbs)
		{
			LauncherDb *db = lfirst(d);

			if (strcmp(db->name, name) == 0)
				why = db->unusable;
		}
		if (why == NULL)
			continue;
		line = psprintf("%s\t%s", why, name);
		if (!list_member(reported, makeString(line)))
			ereport(LOG,
					errmsg("paygw.database names database \"%s\", which %s; no paygw worker runs for it",
						   name, why));
		now = lappend(now, makeString(line));
	}
	old = MemoryContextSwitchTo(launcher_cxt);
	list_free_deep(reported);
	reported = NIL;
	foreach(lc, now)
		reported = lappend(reported, makeString(pstrdup(strVal(lfirst(lc)))));
	MemoryContextSwitchTo(old);
}

static AbsentDb *
find_absent(Oid oid)
{
	ListCell   *lc;

	foreach(lc, absent)
	{
		AbsentDb   *a = lfirst(lc);

		if (a->oid == oid)
			return a;
	}
	return NULL;
}

static void
forget_absent(Oid oid)
{
	AbsentDb   *a = find_absent(oid);

	if (a != NULL)
	{
		absent = list_delete_ptr(absent, a);
		pfree(a);
	}
}

static LauncherDb *
find_db(List *dbs, Oid oid)
{
	ListCell   *lc;

	foreach(lc, dbs)
	{
		LauncherDb *db = lfirst(lc);

		if (db->oid == oid)
			return db;
	}
	return NULL;
}

static int
find_slot(Oid oid)
{
	for (int i = 0; i < ctl->nslots; i++)
	{
		bool		match;

		SpinLockAcquire(&ctl->slots[i].mutex);
		match = ctl->slots[i].dboid == oid;
		SpinLockRelease(&ctl->slots[i].mutex);
		if (match)
			return i;
	}
	return -1;
}

/* Clear slot i for another database (its generation keeps counting). */
static void
free_slot(int i)
{
	PaygwWorkerSlot *slot = &ctl->slots[i];
	uint32		generation;

	SpinLockAcquire(&slot->mutex);
	generation = slot->generation;
	memset((char *) slot + offsetof(PaygwWorkerSlot, dboid), 0,
		   sizeof(PaygwWorkerSlot) - offsetof(PaygwWorkerSlot, dboid));
	slot->generation = generation;
	SpinLockRelease(&slot->mutex);
	if (handles[i] != NULL)
	{
		pfree(handles[i]);
		handles[i] = NULL;
	}
	recheck[i] = false;
}

/*
 * Start a worker for database db in slot i: a free slot (fresh), or the
 * slot the database already holds.  Returns false when the postmaster has
 * no background worker slot left.
 */
static bool
launch_worker(int i, LauncherDb *db, bool fresh)
{
	PaygwWorkerSlot *slot = &ctl->slots[i];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	uint32		generation;
	MemoryContext old;
	bool		ok;

	SpinLockAcquire(&slot->mutex);
	if (fresh)
	{
		memset((char *) slot + offsetof(PaygwWorkerSlot, dboid), 0,
			   offsetof(PaygwWorkerSlot, generation) - offsetof(PaygwWorkerSlot, dboid));
		memset((char *) slot + offsetof(PaygwWorkerSlot, state), 0,
			   sizeof(PaygwWorkerSlot) - offsetof(PaygwWorkerSlot, state));
		slot->dboid = db->oid;
		namestrcpy(&slot->dbname, db->name);
	}
	generation = ++slot->generation;
	slot->state = PAYGW_WORKER_STARTING;
	slot->stop = false;
	slot->recheck = false;
	slot->launched_at = GetCurrentTimestamp();
	slot->exited_at = 0;
	SpinLockRelease(&slot->mutex);
	recheck[i] = false;
	if (handles[i] != NULL)
	{
		pfree(handles[i]);
		handles[i] = NULL;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher does */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "paygw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "paygw_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "paygw worker for database %s", db->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "paygw worker");
	worker.bgw_main_arg = Int32GetDatum(i);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(launcher_cxt);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		if (fresh)
			free_slot(i);
		else
		{
			SpinLockAcquire(&slot->mutex);
			slot->exited_at = GetCurrentTimestamp();
			SpinLockRelease(&slot->mutex);
		}
		return false;
	}
	handles[i] = handle;
	ereport(DEBUG1,
			errmsg_internal("paygw launcher: started a worker for database \"%s\"", db->name));
	return true;
}

/*
 * Log that a worker found no paygw in its database, once per change: the
 * extension was dropped (the slot had served), or it is not there (named in
 * paygw.database: LOG; found through '*': DEBUG1).
 */
static void
report_absent(const char *dbname, bool served, bool named)
{
	if (served)
		ereport(LOG,
				errmsg("paygw worker for database \"%s\" stopped: extension paygw is not installed there any more",
					   dbname));
	else
		ereport(named ? LOG : DEBUG1,
				errmsg("database \"%s\" has no extension paygw; its paygw worker starts after CREATE EXTENSION paygw there",
					   dbname));
}

/*
 * One look at everything: start, restart and stop workers.  Returns how
 * long to sleep, in milliseconds.
 */
static long
launcher_pass(void)
{
	long		naptime = paygw_launcher_naptime_s * 1000L;
	long		wait_ms = naptime;
	bool		all;
	List	   *names = listed_names(&all);
	List	   *dbs = scan_databases(names, all);
	Oid			changed[MAX_CHANGED];
	uint64		changed_event[MAX_CHANGED];
	int			nchanged;
	uint64		overflow;
	Oid			paused[MAX_PAUSED];
	int			starting = 0;
	int			shortfall = 0;
	bool		deferred = false;
	int			used = 0;
	const char *short_db = NULL;
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	report_unusable(names, dbs);

	/* what backends told us since the last pass */
	SpinLockAcquire(&ctl->mutex);
	nchanged = ctl->nchanged;
	memcpy(changed, ctl->changed, sizeof(Oid) * nchanged);
	memcpy(changed_event, ctl->changed_event, sizeof(uint64) * nchanged);
	overflow = ctl->overflow_event;
	ctl->nchanged = 0;
	ctl->overflow_event = 0;
	for (int i = 0; i < MAX_PAUSED; i++)
		paused[i] = ctl->paused[i].dboid;
	SpinLockRelease(&ctl->mutex);

	foreach(lc, dbs)
	{
		LauncherDb *db = lfirst(lc);

		for (int i = 0; i < MAX_PAUSED; i++)
			if (paused[i] == db->oid)
				db->wanted = false;
	}

	/*
	 * paygw changed in these databases: whoever found it missing looks
	 * again, unless it looked after the change.
	 */
	foreach(lc, absent)
	{
		AbsentDb   *a = lfirst(lc);

		for (int k = 0; k < nchanged; k++)
			if (changed[k] == a->oid)
				a->due = true;
		if (overflow ||
			TimestampDifferenceExceeds(a->since, now, naptime * PAYGW_REPROBE_NAPTIMES))
			a->due = true;
	}
	for (int i = 0; i < ctl->nslots; i++)
	{
		PaygwWorkerSlot *slot = &ctl->slots[i];
		bool		hit;

		SpinLockAcquire(&slot->mutex);
		hit = overflow > slot->seen_events;
		for (int k = 0; k < nchanged; k++)
			if (changed[k] == slot->dboid && changed_event[k] > slot->seen_events)
				hit = true;
		if (hit && OidIsValid(slot->dboid) &&
			slot->state != PAYGW_WORKER_READY && slot->state != PAYGW_WORKER_OLD)
			recheck[i] = true;
		SpinLockRelease(&slot->mutex);
	}

	/* the databases that hold a slot */
	for (int i = 0; i < ctl->nslots; i++)
	{
		PaygwWorkerSlot *slot = &ctl->slots[i];
		PaygwWorkerSlot s;
		LauncherDb *db;
		bool		alive;

		SpinLockAcquire(&slot->mutex);
		memcpy(&s, slot, sizeof(s));
		SpinLockRelease(&slot->mutex);
		if (!OidIsValid(s.dboid))
			continue;
		db = find_db(dbs, s.dboid);

		/* is a process there, or about to be? */
		alive = s.pid != 0;
		if (handles[i] != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
			{
				pfree(handles[i]);
				handles[i] = NULL;
				SpinLockAcquire(&slot->mutex);
				if (slot->exited_at == 0)
					slot->exited_at = now;	/* it never attached */
				s.exited_at = slot->exited_at;
				SpinLockRelease(&slot->mutex);
				alive = false;
			}
			else
				alive = true;
		}
		else if (s.pid == 0 && s.state == PAYGW_WORKER_STARTING && s.exited_at == 0 &&
				 !TimestampDifferenceExceeds(s.launched_at, now, ATTACH_GRACE_MS))
			alive = true;		/* started by an earlier launcher */

		if (s.served)
			forget_absent(s.dboid);
		if (alive)
		{
			used++;
			if (s.state != PAYGW_WORKER_READY && s.state != PAYGW_WORKER_OLD)
				starting++;		/* still looking, or about to exit */
			if ((db == NULL || !db->wanted) && !s.stop)
			{
				Latch	   *latch;

				SpinLockAcquire(&slot->mutex);
				slot->stop = true;
				latch = slot->latch;
				SpinLockRelease(&slot->mutex);
				if (latch != NULL)
					SetLatch(latch);
			}
			continue;
		}

		/* the process is gone */
		if (s.state == PAYGW_WORKER_ABSENT && !(recheck[i] && db != NULL && db->wanted))
		{
			AbsentDb   *a = find_absent(s.dboid);

			if (a == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(launcher_cxt);

				report_absent(NameStr(s.dbname), s.served,
							  name_listed(names, NameStr(s.dbname)));
				a = palloc0(sizeof(AbsentDb));
				a->oid = s.dboid;
				absent = lappend(absent, a);
				MemoryContextSwitchTo(old);
			}
			a->since = now;
			a->due = false;
			free_slot(i);
			continue;
		}
		if (s.stop || db == NULL || !db->wanted)
		{
			if (s.served && db != NULL && !db->listed)
				ereport(LOG,
						errmsg("paygw worker for database \"%s\" stopped: the database is no longer in paygw.database",
							   db->name));
			free_slot(i);
			continue;
		}
		/* it ended (terminated, an error) or must look again: restart it */
		if (s.state == PAYGW_WORKER_ABSENT ||
			TimestampDifferenceExceeds(s.exited_at, now, RESTART_MS))
		{
			used++;
			if (!launch_worker(i, db, false))
			{
				if (starting > 0)
					deferred = true;	/* see below */
				else
				{
					shortfall++;
					short_db = db->name;
				}
			}
		}
		else
		{
			used++;
			wait_ms = Min(wait_ms, RESTART_MS -
						  TimestampDifferenceMilliseconds(s.exited_at, now));
		}
	}

	/* the wanted databases that hold no slot yet */
	foreach(lc, dbs)
	{
		LauncherDb *db = lfirst(lc);
		AbsentDb   *a;
		int			i;

		if (!db->wanted || find_slot(db->oid) >= 0)
			continue;
		a = find_absent(db->oid);
		if (a != NULL && !a->due)
			continue;
		if (starting >= MAX_STARTING)
			break;				/* a worker that has looked wakes us */
		i = find_slot(InvalidOid);
		if (i < 0 || !launch_worker(i, db, true))
		{
			/*
			 * Workers that are still looking hold slots for a moment only
			 * (most of them, with '*', exit at once): wait for them before
			 * calling the budget too small.
			 */
			if (starting > 0)
			{
				deferred = true;
				break;
			}
			shortfall++;
			short_db = db->name;
			continue;
		}
		used++;
		starting++;
	}

	/* forget databases without paygw that are no longer wanted */
	foreach(lc, absent)
	{
		AbsentDb   *a = lfirst(lc);
		LauncherDb *db = find_db(dbs, a->oid);

		if (db == NULL || !db->wanted)
		{
			absent = foreach_delete_current(absent, lc);
			pfree(a);
		}
	}

	if (shortfall > 0 && !budget_warned)
	{
		ereport(WARNING,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("paygw could not start a worker for database \"%s\": no background worker slot is free",
					   short_db),
				errdetail("paygw uses %d background worker processes and needs %d: its launcher and one worker for each of %d databases.  max_worker_processes is %d, and parallel queries, logical replication and other extensions take theirs from the same budget.",
						  1 + used, 1 + used + shortfall, used + shortfall, max_worker_processes),
				errhint("Raise max_worker_processes (a server restart), or name fewer databases in paygw.database.  paygw tries again every paygw.launcher_naptime."));
		budget_warned = true;
	}
	else if (shortfall == 0 && !deferred)
		budget_warned = false;	/* every wanted database has its worker */

	return Max(10L, wait_ms);
}

void
paygw_launcher_main(Datum main_arg)
{
	MemoryContext passcxt;

	(void) main_arg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* no database: the launcher reads only the shared catalog pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&ctl->mutex);
	ctl->launcher_pid = MyProcPid;
	ctl->launcher_latch = MyLatch;
	SpinLockRelease(&ctl->mutex);
	before_shmem_exit(launcher_exit, (Datum) 0);

	launcher_cxt = AllocSetContextCreate(TopMemoryContext, "paygw launcher",
										 ALLOCSET_DEFAULT_SIZES);
	passcxt = AllocSetContextCreate(launcher_cxt, "paygw launcher pass",
									ALLOCSET_DEFAULT_SIZES);
	handles = MemoryContextAllocZero(launcher_cxt,
									 sizeof(BackgroundWorkerHandle *) * ctl->nslots);
	recheck = MemoryContextAllocZero(launcher_cxt, sizeof(bool) * ctl->nslots);

	ereport(LOG,
			errmsg("paygw launcher started for paygw.database = '%s'",
				   paygw_database ? paygw_database : ""));

	for (;;)
	{
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(1);		/* restarted unless the server is stopping */
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(passcxt);
		MemoryContextSwitchTo(passcxt);
		wait_ms = launcher_pass();
		MemoryContextSwitchTo(launcher_cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
