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
#include "executor/spi.h"

extern char *paygw_arg_text(FunctionCallInfo fcinfo, int n);
extern Datum paygw_text_or_null(const char *s, bool *isnull);
extern TupleDesc paygw_result_tupdesc(FunctionCallInfo fcinfo);
extern MemoryContext paygw_call_context(void);
extern char *paygw_tuple_text(HeapTuple tuple, TupleDesc desc, const char *column);
extern HeapTuple paygw_trigger_row(FunctionCallInfo fcinfo, const char *fn,
								   bool before, TupleDesc *desc);
extern SPIPlanPtr paygw_spi_prepare_by_key_once(SPIPlanPtr *plan, const char *sql,
												int nargs, Oid *argtypes);
extern int	paygw_spi_execute_by_key(SPIPlanPtr plan, Datum *values, const char *nulls);
extern Datum paygw_array_datum(Datum *elems, bool *nulls, int n, Oid elemtype);
extern bool paygw_run_in_subxact(void (*body) (void *arg),
								 void (*report) (void *arg, ErrorData *edata),
								 void *arg);

#endif							/* PAYGW_SQLUTIL_H */
