/*-------------------------------------------------------------------------
 *
 * sql_tracking.c
 *		Tracked invoices from SQL: paygw_track, the triggers of
 *		paygw.invoices, paygw_refresh, paygw_check_invoice and the text of
 *		status notifications.
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

PG_FUNCTION_INFO_V1(paygw_invoices_validate);
PG_FUNCTION_INFO_V1(paygw_invoices_validate_ids);
PG_FUNCTION_INFO_V1(paygw_status_payload);
PG_FUNCTION_INFO_V1(paygw_wake_worker);
PG_FUNCTION_INFO_V1(paygw_track);
PG_FUNCTION_INFO_V1(paygw_refresh);
PG_FUNCTION_INFO_V1(paygw_check_invoice);

/*
 * Check a gateway id and an order id for an invoice of prov and return
 * their canonical spellings (NULL stays NULL).  Raises on invalid input.
 */
static void
invoice_ids(const PaygwProvider *prov, char **payment_id, char **order_id)
{
	PaygwError	err;

	if (*payment_id == NULL && *order_id == NULL)
	{
		paygw_set_error(&err, PAYGW_ERR_INVALID_ID,
						"an invoice needs the gateway's id or the order id");
		paygw_raise(&err);
	}
	if (*payment_id != NULL)
	{
		if (!prov->check_id(PAYGW_LOOKUP_ID, *payment_id, &err))
			paygw_raise(&err);
		*payment_id = paygw_canonical_id(prov, PAYGW_LOOKUP_ID, *payment_id);
	}
	/* an order id alone must be something the gateway can look up */
	if (*order_id != NULL && (*payment_id == NULL || prov->order_name != NULL))
	{
		if (!prov->check_id(PAYGW_LOOKUP_ORDER, *order_id, &err))
			paygw_raise(&err);
	}
}

static const PaygwProvider *
provider_or_raise(const char *name)
{
	PaygwError	err;
	const PaygwProvider *prov = paygw_provider_lookup(name, &err);

	if (prov == NULL)
		paygw_raise(&err);
	return prov;
}

/*
 * The name of the account to use (see paygw_account_resolve; cached within
 * the transaction), or raise.
 */
static char *
account_or_raise(const PaygwProvider *prov, const char *account)
{
	PaygwError	err;
	char	   *name = paygw_account_resolve_cached(prov, account, &err);

	if (name == NULL)
		paygw_raise(&err);
	return name;
}

/*
 * The row a validation trigger returns: a known provider, ids the gateway
 * accepts (stored in canonical form), and with resolve_account an account of
 * that provider -- the provider's only account when none is given.
 */
static Datum
validate_row(FunctionCallInfo fcinfo, const char *fn, bool resolve_account)
{
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	const PaygwProvider *prov;
	char	   *payment_id;
	char	   *order_id;
	int			cols[3];
	Datum		values[3];
	bool		nulls[3];
	int			ncols = 0;

	tuple = paygw_trigger_row(fcinfo, fn, true, &desc);

	callcxt = paygw_call_context();
	oldcxt = MemoryContextSwitchTo(callcxt);
	prov = provider_or_raise(paygw_tuple_text(tuple, desc, "provider"));
	payment_id = paygw_tuple_text(tuple, desc, "payment_id");
	order_id = paygw_tuple_text(tuple, desc, "order_id");
	invoice_ids(prov, &payment_id, &order_id);

	cols[ncols] = SPI_fnumber(desc, "payment_id");
	values[ncols] = paygw_text_or_null(payment_id, &nulls[ncols]);
	ncols++;
	cols[ncols] = SPI_fnumber(desc, "order_id");
	values[ncols] = paygw_text_or_null(order_id, &nulls[ncols]);
	ncols++;
	if (resolve_account)
	{
		char	   *account = account_or_raise(prov, paygw_tuple_text(tuple, desc, "account"));

		cols[ncols] = SPI_fnumber(desc, "account");
		values[ncols] = CStringGetTextDatum(account);
		nulls[ncols] = false;
		ncols++;
	}

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_modify_tuple_by_cols(tuple, desc, ncols, cols, values, nulls);
	MemoryContextDelete(callcxt);
	return PointerGetDatum(tuple);
}

/*
 * Trigger on paygw.invoices (BEFORE INSERT, and BEFORE UPDATE when the
 * provider or the account changes): the whole check, the account resolved
 * (SECURITY DEFINER: it reads paygw.credentials).
 */
Datum
paygw_invoices_validate(PG_FUNCTION_ARGS)
{
	return validate_row(fcinfo, "paygw_invoices_validate", true);
}

/*
 * Trigger on paygw.invoices (BEFORE UPDATE when only the ids change, as when
 * the worker fills in an id a gateway's reply named): the ids only.  The
 * provider and the account are the row's, checked when they were written;
 * nothing is read, so it runs as the caller, with no settings of its own.
 */
Datum
paygw_invoices_validate_ids(PG_FUNCTION_ARGS)
{
	return validate_row(fcinfo, "paygw_invoices_validate_ids", false);
}

/*
 * paygw.status_payload(invoice_id, provider, account, payment_id, order_id,
 * old_status, new_status, provider_status): the text of a paygw_status
 * notification, as json_build_object() with these keys writes it (the
 * caller cuts the values to length).
 */
Datum
paygw_status_payload(PG_FUNCTION_ARGS)
{
	static const char *const keys[] = {"provider", "account", "payment_id", "order_id",
	"old_status", "new_status", "provider_status"};
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"invoice_id\" : ");
	if (PG_ARGISNULL(0))
		appendStringInfoString(&buf, "null");
	else
		appendStringInfo(&buf, INT64_FORMAT, PG_GETARG_INT64(0));
	for (int k = 0; k < (int) lengthof(keys); k++)
	{
		appendStringInfo(&buf, ", \"%s\" : ", keys[k]);
		if (PG_ARGISNULL(k + 1))
			appendStringInfoString(&buf, "null");
		else
			escape_json(&buf, text_to_cstring(PG_GETARG_TEXT_PP(k + 1)));
	}
	appendStringInfoChar(&buf, '}');
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * Row trigger (AFTER INSERT OR UPDATE OF next_check_at): wake the worker at
 * commit when the invoice is due sooner than it planned to look.
 */
Datum
paygw_wake_worker(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	HeapTuple	tuple = paygw_trigger_row(fcinfo, "paygw_wake_worker", false, &desc);
	bool		isnull;
	Datum		next;

	next = heap_getattr(tuple, SPI_fnumber(desc, "next_check_at"), desc, &isnull);
	if (!isnull)
		paygw_wake_worker_at_commit(DatumGetTimestampTz(next));
	return PointerGetDatum(NULL);
}

/*
 * paygw_track(provider, id, order_id, account): the id of the invoice for
 * this payment, inserted when it is not tracked yet.  Calling it again for
 * the same payment returns the same id (and fills in an order id or gateway
 * id the row did not have yet).
 */
Datum
paygw_track(PG_FUNCTION_ARGS)
{
	/* by the ids given: both, the gateway's only, the order's only */
	static SPIPlanPtr insert_plans[3] = {NULL, NULL, NULL};
	static const char *const insert_sql[3] = {
		"INSERT INTO paygw.invoices (provider, account, payment_id, order_id)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
		"INSERT INTO paygw.invoices (provider, account, payment_id, order_id)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT (account, payment_id) DO NOTHING RETURNING id",
		"INSERT INTO paygw.invoices (provider, account, payment_id, order_id)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT (account, order_id) DO NOTHING RETURNING id",
	};
	/* the same three cases: one index probe when one id is given */
	static SPIPlanPtr find_plans[3] = {NULL, NULL, NULL};
	static const char *const find_sql[3] = {
		"SELECT id, payment_id, order_id FROM paygw.invoices"
		" WHERE account = $2 AND (payment_id = $3 OR order_id = $4) AND $1 IS NOT NULL",
		"SELECT id, payment_id, order_id FROM paygw.invoices"
		" WHERE account = $2 AND payment_id = $3 AND $1 IS NOT NULL AND $4 IS NULL",
		"SELECT id, payment_id, order_id FROM paygw.invoices"
		" WHERE account = $2 AND order_id = $4 AND $1 IS NOT NULL AND $3 IS NULL",
	};
	static SPIPlanPtr fill_plan = NULL;
	MemoryContext callcxt = paygw_call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	const PaygwProvider *prov = provider_or_raise(paygw_arg_text(fcinfo, 0));
	char	   *payment_id = paygw_arg_text(fcinfo, 1);
	char	   *order_id = paygw_arg_text(fcinfo, 2);
	char	   *account;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		id;
	int			ret;
	int			which;

	invoice_ids(prov, &payment_id, &order_id);
	account = account_or_raise(prov, paygw_arg_text(fcinfo, 3));

	values[0] = CStringGetTextDatum(prov->name);
	values[1] = CStringGetTextDatum(account);
	values[2] = payment_id ? CStringGetTextDatum(payment_id) : (Datum) 0;
	nulls[2] = payment_id ? ' ' : 'n';
	values[3] = order_id ? CStringGetTextDatum(order_id) : (Datum) 0;
	nulls[3] = order_id ? ' ' : 'n';

	/*
	 * With one id the only conflict possible is on that id's key (the
	 * other id is NULL, the primary key comes from its sequence): check
	 * just that one index for a conflict rather than all three, and find
	 * the row tracked already by that key alone (a plan with an OR of both
	 * keys can cost more than the planner's plans for the given values, and
	 * then it plans the statement again for every call).
	 */
	which = (payment_id && order_id) ? 0 : payment_id ? 1 : 2;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(paygw_spi_prepare_once(&insert_plans[which], insert_sql[which],
												  4, types),
						   values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "inserting into paygw.invoices failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	else
	{
		/* already tracked: find it, by either id */
		HeapTuple	row;
		TupleDesc	desc;
		bool		isnull;
		char	   *have_payment;
		char	   *have_order;
		PaygwError	err;

		ret = SPI_execute_plan(paygw_spi_prepare_once(&find_plans[which], find_sql[which],
													  4, types),
							   values, nulls, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading paygw.invoices failed: %s", SPI_result_code_string(ret));
		if (SPI_processed != 1)
		{
			paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
							"the gateway id and the order id belong to different tracked invoices");
			paygw_raise(&err);
		}
		row = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		have_payment = SPI_getvalue(row, desc, 2);
		have_order = SPI_getvalue(row, desc, 3);
		if ((payment_id && have_payment && strcmp(payment_id, have_payment) != 0) ||
			(order_id && have_order && strcmp(order_id, have_order) != 0))
		{
			paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
							"payment is already tracked as invoice %lld with a different %s",
							(long long) id,
							(payment_id && have_payment && strcmp(payment_id, have_payment) != 0)
							? "gateway id" : "order id");
			paygw_raise(&err);
		}
		if ((payment_id && !have_payment) || (order_id && !have_order))
		{
			Oid			utypes[3] = {INT8OID, TEXTOID, TEXTOID};
			Datum		uvalues[3] = {Int64GetDatum(id), values[2], values[3]};
			char		unulls[3] = {' ', nulls[2], nulls[3]};

			ret = SPI_execute_plan(paygw_spi_prepare_once(&fill_plan,
														  "UPDATE paygw.invoices SET payment_id = COALESCE(payment_id, $2),"
														  " order_id = COALESCE(order_id, $3) WHERE id = $1",
														  3, utypes),
								   uvalues, unulls, false, 0);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "updating paygw.invoices failed: %s", SPI_result_code_string(ret));
		}
	}
	SPI_finish();

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(callcxt);
	PG_RETURN_INT64(id);
}

/*
 * paygw_refresh(max_invoices): one pass over due invoices in this session,
 * their calls issued concurrently; returns how many were checked.
 */
Datum
paygw_refresh(PG_FUNCTION_ARGS)
{
	int32		max_invoices = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	PaygwApplyStats stats;

	if (max_invoices < 1 || max_invoices > 10000)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("max_invoices must be between 1 and 10000"));
	paygw_require_sql_version();
	memset(&stats, 0, sizeof(stats));
	PG_RETURN_INT32(paygw_reconcile_pass(max_invoices, 0, &stats));
}

/*
 * paygw_check_invoice(invoice_id): check one invoice now, whatever its
 * status or schedule; returns the outcome (changed, unchanged, anomaly,
 * error, gave_up).  STRICT in SQL; ids are positive (an id <= 0 would mean
 * "any due invoice" to the claiming code).
 */
Datum
paygw_check_invoice(PG_FUNCTION_ARGS)
{
	int64		invoice_id;
	PaygwApplyStats stats;
	PaygwError	err;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	invoice_id = PG_GETARG_INT64(0);
	if (invoice_id <= 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invoice id must be positive"),
				errdetail("Invoice ids start at 1; %lld is not one.", (long long) invoice_id));
	paygw_require_sql_version();
	memset(&stats, 0, sizeof(stats));
	if (paygw_reconcile_pass(1, invoice_id, &stats) == 0)
	{
		bool		exists;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		exists = SPI_execute_with_args("SELECT 1 FROM paygw.invoices WHERE id = $1", 1,
									   (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(invoice_id)},
									   NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1;
		SPI_finish();
		if (exists)
		{
			paygw_set_error(&err, PAYGW_ERR_INVOICE_BUSY,
							"invoice %lld is being checked right now", (long long) invoice_id);
			paygw_error_detail(&err, "The worker holds its lease, or another session's paygw_refresh() has it locked.");
		}
		else
			paygw_set_error(&err, PAYGW_ERR_UNKNOWN_INVOICE,
							"invoice %lld does not exist", (long long) invoice_id);
		paygw_raise(&err);
	}
	PG_RETURN_TEXT_P(cstring_to_text(stats.last_outcome));
}
