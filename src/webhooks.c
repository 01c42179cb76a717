/*-------------------------------------------------------------------------
 *
 * webhooks.c
 *		paygw_webhook(): take a gateway's webhook as the application's HTTP
 *		handler received it.
 *
 * The status call is the truth, always: a webhook never sets a status.  It
 * is checked where the gateway signs (the provider's parse_webhook, with the
 * account's webhook_key), recorded in paygw.webhooks, and makes the invoice
 * it is about due (paygw.webhook_record): the worker, woken at commit,
 * confirms it with a signed status call and the usual event and NOTIFY.
 * With confirm => true the check is made within the call instead.  By
 * default no gateway request is made, so a handler answers in milliseconds.
 *
 * Abuse: the request size is capped (paygw.webhook_max_size); a replayed
 * request is recognised (paygw.webhook_replay_window); a burst of webhooks
 * for one invoice causes one status call per paygw.webhook_min_interval.  A
 * webhook about a payment paygw does not track is a probe (probe.c): one
 * status call per distinct payment, at most paygw.webhook_probe_rate per
 * account and minute, made by the worker (woken at commit) or, with
 * confirm, here; the payment is tracked only if the gateway has it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "credentials.h"
#include "crypto/crypto.h"
#include "probe.h"
#include "providers/provider.h"
#include "reconcile.h"
#include "sqlutil.h"

PG_FUNCTION_INFO_V1(paygw_webhook);

/* Raise PW041 with this message: the request is not a webhook paygw takes. */
static void
webhook_refuse(const char *message)
{
	PaygwError	err;

	paygw_set_error(&err, PAYGW_ERR_WEBHOOK_INVALID, "%s", message);
	paygw_raise(&err);
}

/*
 * The hex SHA-256 of what identifies a request: its body and its query
 * string (signature headers are derived from those).
 */
static char *
request_hash(const char *body, size_t body_len, const char *query)
{
	StringInfoData buf;
	uint8		digest[PAYGW_MAX_DIGEST_LEN];
	PaygwError	err;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, body, (int) body_len);
	appendStringInfoChar(&buf, '\0');
	if (query != NULL)
		appendStringInfoString(&buf, query);
	if (!paygw_digest(PAYGW_SHA256, buf.data, buf.len, digest, &err))
		paygw_raise(&err);
	return paygw_hex(digest, paygw_digest_length(PAYGW_SHA256));
}

/*
 * paygw_webhook(provider, body, headers, query, account, confirm) returns
 * paygw.webhook_result (invoice_id, verified, action).
 */
Datum
paygw_webhook(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr record_plan = NULL;
	static SPIPlanPtr action_plan = NULL;
	TupleDesc	tupdesc;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	const PaygwProvider *prov;
	PaygwAccount *account;
	PaygwWebhookRequest req;
	PaygwWebhookInfo info;
	PaygwError	err;
	text	   *body_text;
	Jsonb	   *headers;
	char	   *query;
	bool		confirm;
	size_t		size;
	Datum		args[12];
	char		argnulls[12];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		invoice_id = 0;
	int64		webhook_id = 0;
	int64		probe_id = 0;
	char	   *action = NULL;
	bool		isnull;

	tupdesc = paygw_result_tupdesc(fcinfo);
	paygw_require_sql_version();
	if (PG_ARGISNULL(0))
		webhook_refuse("a webhook needs its provider");

	callcxt = AllocSetContextCreate(CurrentMemoryContext, "paygw webhook",
									ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(callcxt);

	prov = paygw_provider_lookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), &err);
	if (prov == NULL)
		paygw_raise(&err);
	if (prov->parse_webhook == NULL)
		webhook_refuse(psprintf("paygw does not take %s webhooks", prov->name));

	/* the size cap first, before anything is parsed */
	body_text = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	headers = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	query = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	confirm = PG_ARGISNULL(5) ? false : PG_GETARG_BOOL(5);
	size = (body_text ? VARSIZE_ANY_EXHDR(body_text) : 0) +
		(headers ? VARSIZE(headers) : 0) + (query ? strlen(query) : 0);
	if (size > (size_t) paygw_webhook_max_size)
	{
		paygw_set_error(&err, PAYGW_ERR_WEBHOOK_INVALID,
						"%s webhook is larger than paygw.webhook_max_size", prov->name);
		paygw_error_detail(&err, "It has %zu bytes; the limit is %d.", size, paygw_webhook_max_size);
		paygw_raise(&err);
	}
	if (headers != NULL && !JB_ROOT_IS_OBJECT(headers))
		webhook_refuse("webhook headers must be a JSON object");

	account = paygw_account_fetch(prov, PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)),
								  &err);
	if (account == NULL)
		paygw_raise(&err);

	memset(&req, 0, sizeof(req));
	memset(&info, 0, sizeof(info));
	req.body = body_text ? text_to_cstring(body_text) : "";
	req.body_len = body_text ? VARSIZE_ANY_EXHDR(body_text) : 0;
	req.headers = headers ? headers : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	req.query = query;
	if (!prov->parse_webhook(account, &req, &info, &err))
		paygw_raise(&err);
	if (info.payment_id == NULL && info.order_id == NULL)
		webhook_refuse(psprintf("%s webhook names no payment", prov->name));

	/* record it and make its invoice due */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = CStringGetTextDatum(prov->name);
	args[1] = CStringGetTextDatum(account->name);
	args[2] = BoolGetDatum(info.verified);
	args[3] = info.payment_id ? CStringGetTextDatum(info.payment_id) : (Datum) 0;
	args[4] = info.order_id ? CStringGetTextDatum(info.order_id) : (Datum) 0;
	args[5] = info.event ? CStringGetTextDatum(info.event) : (Datum) 0;
	args[6] = CStringGetTextDatum(request_hash(req.body, req.body_len, query));
	args[7] = Float8GetDatum((double) paygw_webhook_min_interval_s);
	args[8] = Float8GetDatum((double) paygw_webhook_replay_window_s);
	/* a payment paygw does not track is looked up by order id where it can be */
	args[9] = BoolGetDatum(prov->order_name != NULL);
	args[10] = Int32GetDatum(paygw_webhook_probe_rate);
	args[11] = BoolGetDatum(confirm);
	memset(argnulls, ' ', sizeof(argnulls));
	argnulls[3] = info.payment_id ? ' ' : 'n';
	argnulls[4] = info.order_id ? ' ' : 'n';
	argnulls[5] = info.event ? ' ' : 'n';
	if (SPI_execute_plan(paygw_spi_prepare_once(&record_plan,
												"SELECT invoice_id, action, webhook_id, probe_id FROM paygw.webhook_record("
												"$1, $2, $3, $4, $5, $6, $7,"
												" pg_catalog.make_interval(secs => $8),"
												" pg_catalog.make_interval(secs => $9), $10, $11, $12)",
												12, (Oid[]) {TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID,
													TEXTOID, TEXTOID, FLOAT8OID, FLOAT8OID, BOOLOID,
												INT4OID, BOOLOID}),
						 args, argnulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "paygw.webhook_record failed");
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		d = SPI_getbinval(tuple, desc, 1, &isnull);

		invoice_id = isnull ? 0 : DatumGetInt64(d);
		action = MemoryContextStrdup(callcxt, SPI_getvalue(tuple, desc, 2));
		webhook_id = DatumGetInt64(SPI_getbinval(tuple, desc, 3, &isnull));
		d = SPI_getbinval(tuple, desc, 4, &isnull);
		probe_id = isnull ? 0 : DatumGetInt64(d);
	}

	/*
	 * confirm: the signed status call now, in this transaction, unless the
	 * worker has the invoice in flight (then its follow-up check does it).
	 */
	if (confirm && invoice_id > 0 && strcmp(action, "ignored") != 0)
	{
		PaygwApplyStats stats;

		memset(&stats, 0, sizeof(stats));
		if (paygw_reconcile_pass(1, invoice_id, &stats) == 1)
		{
			Datum		upd[2] = {Int64GetDatum(webhook_id), (Datum) 0};

			action = "confirmed";
			upd[1] = CStringGetTextDatum(action);
			if (SPI_execute_plan(paygw_spi_prepare_once(&action_plan,
														"UPDATE paygw.webhooks SET action = $2, detail = NULL"
														" WHERE id OPERATOR(pg_catalog.=) $1",
														2, (Oid[]) {INT8OID, TEXTOID}),
								 upd, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "updating paygw.webhooks failed");
		}
	}

	/*
	 * A payment paygw does not track: with confirm, ask the gateway now;
	 * otherwise (or when that call failed) the worker does, woken at commit.
	 */
	if (strcmp(action, "probe") == 0)
	{
		if (confirm)
		{
			int64		tracked = 0;
			const char *outcome = paygw_probe_now(probe_id, &tracked);

			if (strcmp(outcome, "tracked") == 0)
			{
				action = "tracked";
				invoice_id = tracked;
			}
			else if (strcmp(outcome, "unknown") == 0 || strcmp(outcome, "gave_up") == 0)
				action = "unknown";
		}
		if (strcmp(action, "probe") == 0)
			paygw_wake_worker_for_probes_at_commit();
	}
	SPI_finish();

	MemoryContextSwitchTo(oldcxt);
	values[0] = Int64GetDatum(invoice_id);
	nulls[0] = invoice_id == 0;
	values[1] = BoolGetDatum(info.verified);
	values[2] = CStringGetTextDatum(action);
	MemoryContextDelete(callcxt);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(paygw_webhook_parse);

/* s (UTF-8, from a provider) as server-encoded text, or NULL */
static Datum
utf8_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(pg_any_to_server(s, strlen(s), PG_UTF8)) : (Datum) 0;
}

/*
 * paygw.webhook_parse(account, body, headers, query) -> (verified,
 * payment_id, order_id, event): what the account's provider reads from a
 * webhook request, signature checked where the gateway signs, raising
 * PW040 (signature) or PW041 (not a webhook of that gateway) otherwise.  For
 * tests and for operators checking an HTTP handler.  A NULL body is an
 * empty one; NULL headers are none.
 */
Datum
paygw_webhook_parse(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = paygw_result_tupdesc(fcinfo);
	MemoryContext callcxt = paygw_call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	char	   *name = paygw_arg_text(fcinfo, 0);
	char	   *body = paygw_arg_text(fcinfo, 1);
	char	   *query = paygw_arg_text(fcinfo, 3);
	PaygwAccount *account;
	PaygwWebhookRequest req;
	PaygwWebhookInfo info;
	PaygwError	err;
	Datum		values[4];
	bool		nulls[4];
	HeapTuple	tuple;

	if (name == NULL)
	{
		paygw_set_error(&err, PAYGW_ERR_UNKNOWN_ACCOUNT, "account must not be null");
		paygw_raise(&err);
	}
	account = paygw_account_fetch(NULL, name, &err);
	if (account == NULL)
		paygw_raise(&err);

	/* the gateway signed the bytes it sent: UTF-8 */
	body = body ? pg_server_to_any(body, strlen(body), PG_UTF8) : "";
	req.body = body;
	req.body_len = strlen(body);
	req.headers = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	req.query = query ? pg_server_to_any(query, strlen(query), PG_UTF8) : NULL;

	if (!account->provider->parse_webhook(account, &req, &info, &err))
		paygw_raise(&err);

	values[0] = BoolGetDatum(info.verified);
	nulls[0] = false;
	values[1] = utf8_text_or_null(info.payment_id, &nulls[1]);
	values[2] = utf8_text_or_null(info.order_id, &nulls[2]);
	values[3] = utf8_text_or_null(info.event, &nulls[3]);

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	MemoryContextDelete(callcxt);
	return HeapTupleGetDatum(tuple);
}
