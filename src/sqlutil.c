/*-------------------------------------------------------------------------
 *
 * sqlutil.c
 *		Small helpers the SQL-callable functions share: arguments, result
 *		rows, per-call memory contexts and trigger rows.
 *
 * Each call runs in its own memory context, deleted before returning; when
 * an error is raised instead, the context goes with the transaction's
 * memory, and its reset callbacks wipe secrets and detach HTTP handles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
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
