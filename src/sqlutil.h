/*-------------------------------------------------------------------------
 *
 * sqlutil.h
 *		Helpers the SQL-callable functions share (sqlutil.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_SQLUTIL_H
#define PAYGW_SQLUTIL_H

#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"

extern char *paygw_arg_text(FunctionCallInfo fcinfo, int n);
extern Datum paygw_text_or_null(const char *s, bool *isnull);
extern TupleDesc paygw_result_tupdesc(FunctionCallInfo fcinfo);
extern MemoryContext paygw_call_context(void);
extern char *paygw_tuple_text(HeapTuple tuple, TupleDesc desc, const char *column);
extern HeapTuple paygw_trigger_row(FunctionCallInfo fcinfo, const char *fn,
								   bool before, TupleDesc *desc);

#endif							/* PAYGW_SQLUTIL_H */
