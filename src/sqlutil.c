/*-------------------------------------------------------------------------
 *
 * sqlutil.c
 *		Small helpers the SQL-callable functions share: arguments, result
 *		rows, per-call memory contexts, trigger rows, statements run by key
 *		and arrays passed to them, statements run in a subtransaction.
 *
 * Each call runs in its own memory context, deleted before returning; when
 * an error is raised instead, the context goes with the transaction's
 * memory, and its reset callbacks wipe secrets and detach HTTP handles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "accountcache.h"
#include "call.h"
#include "credentials.h"
#include "crypto/crypto.h"
#include "reconcile.h"
#include "secrets.h"
#include "sqlutil.h"

char *
paygw_arg_text(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

Datum
paygw_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

TupleDesc
paygw_result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(tupdesc);
}

/* A memory context for one call, child of the current one. */
MemoryContext
paygw_call_context(void)
{
	return AllocSetContextCreate(CurrentMemoryContext, "paygw call",
								 ALLOCSET_DEFAULT_SIZES);
}

/* A text column of a trigger tuple, or NULL. */
char *
paygw_tuple_text(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			attnum = SPI_fnumber(desc, column);
	bool		isnull;
	Datum		d;

	if (attnum <= 0)
		elog(ERROR, "paygw.credentials has no column \"%s\"", column);
	d = heap_getattr(tuple, attnum, desc, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * The row a row-level trigger works on (the new row for UPDATE), after
 * checking how it was called; *desc is the table's descriptor.
 */
HeapTuple
paygw_trigger_row(FunctionCallInfo fcinfo, const char *fn, bool before, TupleDesc *desc)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		(before && !TRIGGER_FIRED_BEFORE(trigdata->tg_event)))
		elog(ERROR, "%s must be a %s row trigger", fn, before ? "BEFORE" : "");
	*desc = trigdata->tg_relation->rd_att;
	return TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)
		? trigdata->tg_newtuple : trigdata->tg_trigtuple;
}

/*
 * A statement over invoices found by key, prepared once with a generic plan
 * and kept for the life of the backend.  Run it with
 * paygw_spi_execute_by_key().
 */
SPIPlanPtr
paygw_spi_prepare_by_key_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return paygw_spi_prepare_once_opts(plan, sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
}

/*
 * SPI_execute_plan() of a statement that finds invoices by key (from
 * paygw_spi_prepare_by_key_once(), or planned for each execution), with
 * enable_seqscan off while it runs (and is planned, the first time and
 * whenever it is planned again), as a function's SET clause would: undone
 * here, or by the abort.  Sequential scans off, as paygw.claim_due and
 * paygw.apply_checks have them: a plan made while the table was small must
 * not scan all of it once it has grown.
 */
int
paygw_spi_execute_by_key(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			nestlevel = NewGUCNestLevel();
	int			ret;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	AtEOXact_GUC(true, nestlevel);
	return ret;
}

/*
 * A one-dimensional array (lower bound 1) of n datums of type elemtype
 * (nulls[k]: NULL; nulls may be NULL), in CurrentMemoryContext.
 */
Datum
paygw_array_datum(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}

/*
 * Run body(arg) in a subtransaction of the current transaction.  Returns
 * true when it completed (the subtransaction is committed into the
 * transaction); false when it raised an error: the subtransaction is rolled
 * back, then report(arg, edata) is called with a copy of the error (in the
 * caller's memory context) to report it (as a WARNING, say) and undo what
 * body left in arg, and the copy is freed.  Query cancel and shutdown are
 * re-thrown instead.  On return the caller's memory context and resource
 * owner are current again.
 */
bool
paygw_run_in_subxact(void (*body) (void *arg),
					 void (*report) (void *arg, ErrorData *edata),
					 void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		body(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		report(arg, edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return done;
}
