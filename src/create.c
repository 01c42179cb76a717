/*-------------------------------------------------------------------------
 *
 * create.c
 *		paygw_create_invoice(): create an invoice at a gateway and track it.
 *
 * Everything is checked before any request is made: the provider, the
 * account, the amount (exact, in major units), the currency, the order id
 * and every option against the provider's table (the account's
 * options->'create' defaults first, the call's options over them).
 *
 * Idempotent by order id.  Creates of one account and order id are
 * serialized by a transaction-level advisory lock; an invoice already
 * tracked under that order id is returned without a request (a different
 * amount or currency is PW009, compared with what was asked for at
 * creation).  Where an earlier attempt's outcome is unknown (a timeout after
 * sending, a rolled-back transaction), the gateway answers a second create
 * with "duplicate order id", and paygw resolves it by a status call by order
 * id instead of failing or creating a second payable invoice.
 *
 * The new invoice is inserted into paygw.invoices like paygw_track() does,
 * so the worker reconciles it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/string.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "call.h"
#include "credentials.h"
#include "crypto/crypto.h"
#include "providers/provider.h"
#include "sqlutil.h"

PG_FUNCTION_INFO_V1(paygw_create_invoice);

#define MAX_STEPS 4

static void
invalid(const char *fmt, const char *arg)
{
	PaygwError	err;

	paygw_set_error(&err, PAYGW_ERR_INVALID_PARAMETER, fmt, arg);
	paygw_raise(&err);
}

/*
 * The amount in major units with exactly two decimals, and in minor units.
 * It must be positive, have at most two decimals and at most ten digits
 * before the point.  No floating point anywhere: numeric's own text.
 */
static void
amount_texts(const PaygwProvider *prov, Datum amount, char **major, char **minor)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, amount));
	char	   *dot = strchr(text, '.');
	size_t		intlen = dot ? (size_t) (dot - text) : strlen(text);
	char		frac[3] = {'0', '0', '\0'};
	char	   *digits;

	if (text[0] == '-' || strspn(text, "0123456789.") != strlen(text))
		invalid("amount must be a positive number, not %s", text);
	if (dot)
	{
		size_t		flen = strlen(dot + 1);

		/* trailing zeros carry no value: 10.500 is 10.50 */
		while (flen > 2 && dot[flen] == '0')
			flen--;
		if (flen > 2)
		{
			PaygwError	err;

			paygw_set_error(&err, PAYGW_ERR_INVALID_PARAMETER,
							"%s amounts have at most 2 decimal places", prov->name);
			paygw_error_detail(&err, "The amount given was %s.", text);
			paygw_raise(&err);
		}
		memcpy(frac, dot + 1, flen);
	}
	text[intlen] = '\0';
	digits = text + strspn(text, "0");
	if (strlen(digits) > 10)
		invalid("amount must be below 10000000000, not %s", text);
	if (digits[0] == '\0' && strcmp(frac, "00") == 0)
		invalid("amount must be positive, not %s", "0");
	*major = psprintf("%s.%s", digits[0] ? digits : "0", frac);
	*minor = digits[0] ? psprintf("%s%s", digits, frac) : pstrdup(frac + strspn(frac, "0"));
}

/* A string in the server encoding, as UTF-8 for the wire. */
static char *
to_utf8(const char *s)
{
	return s ? pg_server_to_any(s, strlen(s), PG_UTF8) : NULL;
}

/*
 * Convert the strings among the checked option values to UTF-8.  Objects
 * and arrays are passed on as given, so outside a UTF8 database they must
 * be ASCII.
 */
static void
options_to_utf8(const PaygwProvider *prov, const PaygwOption *options, JsonbValue **values)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;

	for (int i = 0; options[i].name != NULL; i++)
	{
		JsonbValue *v = values[i];

		if (v == NULL || utf8)
			continue;
		if (v->type == jbvString)
		{
			char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

			s = to_utf8(s);
			v->val.string.val = s;
			v->val.string.len = strlen(s);
		}
		else if (v->type == jbvBinary)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			paygw_json_append_value(&buf, v);
			if (!pg_is_ascii(buf.data))
			{
				PaygwError	err;

				paygw_set_error(&err, PAYGW_ERR_INVALID_PARAMETER,
								"%s create option \"%s\" must be ASCII in a database that is not UTF8",
								prov->name, options[i].name);
				paygw_raise(&err);
			}
		}
	}
}

/* The checked options: the account's defaults, then the call's. */
static JsonbValue **
collect_options(const PaygwProvider *prov, PaygwAccount *account, Jsonb *options)
{
	const PaygwOption *table = prov->create->options;
	JsonbValue **values;
	PaygwError	err;
	int			n = 0;

	while (table[n].name != NULL)
		n++;
	values = palloc0(sizeof(JsonbValue *) * (n + 1));
	if (account->create_defaults != NULL &&
		!paygw_create_collect(prov, account->create_defaults, values, &err))
		paygw_raise(&err);
	if (options != NULL && !paygw_create_collect(prov, &options->root, values, &err))
		paygw_raise(&err);
	for (int i = 0; i < n; i++)
		if (table[i].required && values[i] == NULL)
		{
			paygw_set_error(&err, PAYGW_ERR_INVALID_PARAMETER,
							"%s invoices need the create option \"%s\"", prov->name, table[i].name);
			paygw_error_hint(&err, "Give it in options, or as a default in the credential's options->'create'.");
			paygw_raise(&err);
		}
	options_to_utf8(prov, table, values);
	return values;
}

/* Perform one request; raise when the transfer failed. */
static void
perform(PaygwHttpRequest *req, PaygwHttpResponse *resp)
{
	paygw_http_perform(req, resp, 1, 1, 0);
	if (!resp->ok)
	{
		PaygwError	err = resp->err;

		if (err.code == PAYGW_ERR_TIMEOUT || err.code == PAYGW_ERR_CONNECTION_LOST)
			paygw_error_hint(&err, "The gateway may have created the invoice: call paygw_create_invoice again with the same order id; "
							 "where the gateway can look it up, paygw then finds it instead of creating a second one.");
		paygw_raise(&err);
	}
}

/* Do two numerics differ? */
static bool
numeric_differs(Datum a, Datum b)
{
	return !DatumGetBool(DirectFunctionCall2(numeric_eq, a, b));
}

/*
 * The gateway already has this order id: find it by a status call by
 * order id, and check it is the invoice that was asked for.
 */
static void
resolve_duplicate(const PaygwProvider *prov, PaygwAccount *account,
				  const char *order_id, Datum amount, const char *iso,
				  PaygwCreateResult *out)
{
	PaygwCall	call;
	PaygwHttpResponse resp;
	PaygwStatusResult res;
	PaygwError	err;

	if (!paygw_call_prepare(&call, prov->name, order_id, account->name,
							PAYGW_LOOKUP_ORDER, &err))
		paygw_raise(&err);
	paygw_http_perform(&call.request, &resp, 1, 1, 0);
	if (!paygw_call_interpret(&call, &resp, &res, &err))
	{
		char		msg[PAYGW_ERROR_TEXT_LEN];

		snprintf(msg, sizeof(msg), "%s gateway reports order id \"%s\" as taken, and looking it up failed: %s",
				 prov->name, order_id, err.message);
		strlcpy(err.message, msg, sizeof(err.message));
		paygw_raise(&err);
	}
	if ((!res.amount_isnull && numeric_differs(res.amount, amount)) ||
		(iso != NULL && res.currency != NULL && pg_strcasecmp(iso, res.currency) != 0))
	{
		paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
						"%s already has an invoice with order id \"%s\" for a different amount or currency",
						prov->name, order_id);
		paygw_error_detail(&err, "The gateway reports %s %s.",
						   res.amount_isnull ? "no amount"
						   : DatumGetCString(DirectFunctionCall1(numeric_out, res.amount)),
						   res.currency ? res.currency : "in no currency");
		paygw_raise(&err);
	}
	/*
	 * Tracked as pending, whatever the lookup said: the worker's first check
	 * (due at once) then records the change with its event and NOTIFY, as
	 * for any other invoice, instead of a row that starts out final.
	 */
	out->duplicate = false;
	out->payment_id = res.payment_id;
	out->provider_status = NULL;
	out->status = PAYGW_STATUS_PENDING;
	out->status_known = true;
	out->pay_url = res.pay_url;
	out->response = res.response;
}

/*
 * Make the gateway calls: the create, and its follow-ups (a pay link).
 * responses[] gets each reply; *resolved is set when the order id turned
 * out to be taken and was resolved by a lookup.
 */
static void
create_at_gateway(const PaygwProvider *prov, PaygwAccount *account,
				  PaygwCreateRequest *in, const char *order_id_server,
				  Datum amount, const char *iso, PaygwCreateResult *out,
				  Jsonb **responses, bool *resolved)
{
	const PaygwCreateSpec *spec = prov->create;
	PaygwError	err;

	*resolved = false;
	memset(out, 0, sizeof(PaygwCreateResult));
	out->expires_in_s = -1;
	for (int step = 0; step < spec->steps; step++)
	{
		PaygwHttpRequest req;
		PaygwHttpResponse resp;

		CHECK_FOR_INTERRUPTS();
		in->step = step;
		in->payment_id = out->payment_id;
		memset(&req, 0, sizeof(req));
		req.label = prov->name;
		if (!spec->build(account, in, &req, &err))
			paygw_raise(&err);
		/* a create must reach the gateway once (see http.c) */
		req.not_idempotent = true;
		paygw_wipe_on_reset(req.url);
		perform(&req, &resp);
		out->response = NULL;
		if (!spec->parse(account, in, &resp, out, &err))
			paygw_raise(&err);
		if (out->duplicate)
		{
			resolve_duplicate(prov, account, order_id_server, amount, iso, out);
			*resolved = true;
		}
		responses[step] = out->response;
		if (out->payment_id == NULL ||
			!prov->check_id(PAYGW_LOOKUP_ID, out->payment_id, &err))
		{
			paygw_set_error(&err, PAYGW_ERR_MALFORMED_REPLY,
							"malformed reply from the %s gateway: the created invoice has no valid id", prov->name);
			paygw_raise(&err);
		}
	}
}

/* The response to return: the one reply, or every call's reply by name. */
static Jsonb *
combined_response(const PaygwCreateSpec *spec, Jsonb **responses, bool resolved)
{
	StringInfoData buf;
	bool		first = true;

	if (spec->steps == 1 && !resolved)
		return responses[0];
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < spec->steps; i++)
	{
		const char *name = (i == 0 && resolved) ? "status" : spec->step_names[i];

		if (responses[i] == NULL)
			continue;
		appendStringInfo(&buf, "%s", first ? "" : ",");
		escape_json(&buf, name);
		appendStringInfoChar(&buf, ':');
		appendStringInfoString(&buf, JsonbToCString(NULL, &responses[i]->root, VARSIZE(responses[i])));
		first = false;
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The insert met a row tracked meanwhile without the create lock (by
 * paygw_track, an application's INSERT or a webhook probe): adopt it when it
 * is this payment (same order id, and the same gateway id or none yet),
 * filling in what the create knows.  Anything else is PW009.  vals/nulls:
 * the insert's arguments from $3 (payment_id) on.
 */
static int64
adopt_tracked(const PaygwProvider *prov, PaygwAccount *account, const char *order_id,
			  Datum *vals, char *nulls)
{
	static SPIPlanPtr adopt_plan = NULL;
	Datum		args[11];
	char		argnulls[11];
	PaygwError	err;
	bool		isnull;

	args[0] = CStringGetTextDatum(account->name);
	memcpy(&args[1], vals, sizeof(Datum) * 10);
	argnulls[0] = ' ';
	memcpy(&argnulls[1], nulls, 10);
	if (SPI_execute_plan(paygw_spi_prepare_once(&adopt_plan,
												"UPDATE paygw.invoices SET payment_id = COALESCE(payment_id, $2),"
												" create_amount = $6, create_currency = $8, pay_url = $9,"
												" expires_at = $10, create_response = $11"
												" WHERE account OPERATOR(pg_catalog.=) $1"
												" AND order_id OPERATOR(pg_catalog.=) $3"
												" AND (payment_id IS NULL OR payment_id OPERATOR(pg_catalog.=) $2)"
												" RETURNING id",
												11, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
													NUMERICOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
													JSONBOID}),
						 args, argnulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "updating paygw.invoices failed");
	if (SPI_processed == 1)
		return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
					"the %s invoice created for order id \"%s\" is already tracked differently",
					prov->name, order_id);
	paygw_error_detail(&err, "Its %s, or that order id, belongs to another tracked invoice.",
					   prov->id_name);
	paygw_raise(&err);
	pg_unreachable();
}

/*
 * paygw_create_invoice(provider, amount, currency, order_id, options,
 * account) returns paygw.created_invoice.
 */
Datum
paygw_create_invoice(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr row_plan = NULL;
	TupleDesc	tupdesc;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	const PaygwProvider *prov;
	const PaygwCreateSpec *spec;
	PaygwAccount *account;
	PaygwCreateRequest in;
	PaygwCreateResult out;
	PaygwError	err;
	Datum		amount;
	char	   *currency;
	char	   *order_id;
	char	   *iso = NULL;
	Jsonb	   *options;
	Jsonb	   *responses[MAX_STEPS] = {0};
	bool		resolved;
	Datum		args[13];
	char		nulls[13];
	int64		invoice_id;
	Datum		values[9];
	bool		isnull[9];
	HeapTuple	row;

	tupdesc = paygw_result_tupdesc(fcinfo);
	paygw_require_sql_version();

	callcxt = AllocSetContextCreate(CurrentMemoryContext, "paygw create",
									ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(callcxt);

	/* the arguments, before anything else */
	prov = paygw_provider_lookup(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)), &err);
	if (prov == NULL)
		paygw_raise(&err);
	spec = prov->create;
	if (spec == NULL)
	{
		paygw_set_error(&err, PAYGW_ERR_UNSUPPORTED, "paygw cannot create %s invoices", prov->name);
		paygw_raise(&err);
	}
	if (PG_ARGISNULL(1))
		invalid("an invoice needs an amount%s", "");
	amount = PG_GETARG_DATUM(1);
	currency = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (PG_ARGISNULL(3))
		invalid("an invoice needs an order id%s", "");
	order_id = text_to_cstring(PG_GETARG_TEXT_PP(3));
	options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	if (options != NULL && !JB_ROOT_IS_OBJECT(options))
		invalid("options must be a JSON object%s", "");
	if (order_id[0] == '\0')
		invalid("%s", psprintf("%s order id must not be empty", prov->name));
	if (pg_mbstrlen(order_id) > spec->order_max_chars)
		invalid("%s", psprintf("%s order id must be at most %d characters long",
							   prov->name, spec->order_max_chars));
	if (prov->order_name != NULL && !prov->check_id(PAYGW_LOOKUP_ORDER, order_id, &err))
		paygw_raise(&err);

	account = paygw_account_fetch(prov, PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)),
								  &err);
	if (account == NULL)
		paygw_raise(&err);

	memset(&in, 0, sizeof(in));
	in.options = spec->options;
	in.values = collect_options(prov, account, options);
	in.order_id = to_utf8(order_id);
	in.currency = to_utf8(currency);
	amount_texts(prov, amount, (char **) &in.amount, (char **) &in.amount_minor);
	if (!spec->check_currency(&in, &iso, &err))
		paygw_raise(&err);
	/* what is kept and compared: the gateway's spelling, else the implied ISO code */
	currency = in.currency ? pg_any_to_server(in.currency, strlen(in.currency), PG_UTF8) : iso;

	/* a standby, or a read-only transaction, could not keep what is created */
	PreventCommandIfReadOnly("paygw_create_invoice()");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* one create at a time per account and order id */
	args[0] = CStringGetTextDatum(account->name);
	args[1] = CStringGetTextDatum(order_id);
	if (SPI_execute_plan(paygw_spi_prepare_once(&lock_plan,
												"SELECT pg_catalog.pg_advisory_xact_lock("
												"pg_catalog.hashtext('paygw_create_invoice'),"
												" pg_catalog.hashtext($1 OPERATOR(pg_catalog.||) E'\\n'"
												" OPERATOR(pg_catalog.||) $2))",
												2, (Oid[]) {TEXTOID, TEXTOID}),
						 args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "taking the create lock failed");

	/* already tracked under this order id: that invoice, no request */
	args[2] = amount;
	args[3] = currency ? CStringGetTextDatum(currency) : (Datum) 0;
	memset(nulls, ' ', sizeof(nulls));
	nulls[3] = currency ? ' ' : 'n';
	if (SPI_execute_plan(paygw_spi_prepare_once(&find_plan,
												"SELECT id,"
												" COALESCE(create_amount, amount) OPERATOR(pg_catalog.<>) $3,"
												" create_currency IS NOT NULL AND $4 IS NOT NULL AND"
												" pg_catalog.upper(create_currency) OPERATOR(pg_catalog.<>) pg_catalog.upper($4),"
												" COALESCE(create_amount, amount)::text, COALESCE(create_currency, currency)"
												" FROM paygw.invoices"
												" WHERE account OPERATOR(pg_catalog.=) $1"
												" AND order_id OPERATOR(pg_catalog.=) $2",
												4, (Oid[]) {TEXTOID, TEXTOID, NUMERICOID, TEXTOID}),
						 args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading paygw.invoices failed");
	if (SPI_processed == 0 && IsolationUsesXactSnapshot())
	{
		/*
		 * REPEATABLE READ or SERIALIZABLE: a create committed by another
		 * session since this transaction's snapshot is invisible here, and
		 * calling the gateway again would make a second invoice.  Look with
		 * a fresh snapshot (the lock above waited for that session).
		 */
		if (SPI_execute_snapshot(find_plan, args, nulls, GetLatestSnapshot(), InvalidSnapshot,
								 true, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "reading paygw.invoices failed");
		if (SPI_processed > 0)
			ereport(ERROR,
					errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					errmsg("could not serialize access: order id \"%s\" was created by a concurrent transaction",
						   order_id),
					errhint("Retry the transaction: paygw_create_invoice then returns that invoice."));
	}
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		n1,
					n2,
					n3;
		bool		amount_differs;
		bool		currency_differs;

		invoice_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &n1));
		amount_differs = DatumGetBool(SPI_getbinval(tuple, desc, 2, &n2)) && !n2;
		currency_differs = DatumGetBool(SPI_getbinval(tuple, desc, 3, &n3)) && !n3;
		if (amount_differs || currency_differs)
		{
			paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
							"order id \"%s\" is already invoice %lld, for a different %s",
							order_id, (long long) invoice_id,
							amount_differs ? "amount" : "currency");
			paygw_error_detail(&err, "It was asked for %s %s.",
							   SPI_getvalue(tuple, desc, 4) ? SPI_getvalue(tuple, desc, 4) : "no amount",
							   SPI_getvalue(tuple, desc, 5) ? SPI_getvalue(tuple, desc, 5) : "in no currency");
			paygw_error_hint(&err, "Use a new order id for a different invoice.");
			paygw_raise(&err);
		}
	}
	else
	{
		create_at_gateway(prov, account, &in, order_id, amount, iso, &out,
						  responses, &resolved);

		args[0] = CStringGetTextDatum(prov->name);
		args[1] = CStringGetTextDatum(account->name);
		args[2] = CStringGetTextDatum(pg_any_to_server(out.payment_id, strlen(out.payment_id), PG_UTF8));
		args[3] = CStringGetTextDatum(order_id);
		args[4] = CStringGetTextDatum(paygw_status_label(out.status));
		args[5] = out.provider_status ? CStringGetTextDatum(out.provider_status) : (Datum) 0;
		args[6] = amount;
		args[7] = iso ? CStringGetTextDatum(iso) : (Datum) 0;
		args[8] = currency ? CStringGetTextDatum(currency) : (Datum) 0;
		args[9] = out.pay_url ? CStringGetTextDatum(pg_any_to_server(out.pay_url, strlen(out.pay_url), PG_UTF8)) : (Datum) 0;
		args[10] = TimestampTzGetDatum(GetCurrentTimestamp() + out.expires_in_s * USECS_PER_SEC);
		args[11] = JsonbPGetDatum(combined_response(spec, responses, resolved));
		memset(nulls, ' ', sizeof(nulls));
		nulls[5] = out.provider_status ? ' ' : 'n';
		nulls[7] = iso ? ' ' : 'n';
		nulls[8] = currency ? ' ' : 'n';
		nulls[9] = out.pay_url ? ' ' : 'n';
		nulls[10] = out.expires_in_s >= 0 ? ' ' : 'n';
		if (SPI_execute_plan(paygw_spi_prepare_once(&insert_plan,
													"INSERT INTO paygw.invoices (provider, account, payment_id, order_id,"
													" status, provider_status, amount, currency, create_amount,"
													" create_currency, pay_url, expires_at, create_response)"
													" VALUES ($1, $2, $3, $4, $5::paygw.payment_status, $6, $7, $8,"
													" $7, $9, $10, $11, $12)"
													" ON CONFLICT DO NOTHING RETURNING id",
													12, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
														TEXTOID, NUMERICOID, TEXTOID, TEXTOID, TEXTOID,
														TIMESTAMPTZOID, JSONBOID}),
							 args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "inserting into paygw.invoices failed");
		if (SPI_processed == 1)
			invoice_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
													 &isnull[0]));
		else
			invoice_id = adopt_tracked(prov, account, order_id, &args[2], &nulls[2]);
	}

	/* the row as it is now */
	args[0] = Int64GetDatum(invoice_id);
	if (SPI_execute_plan(paygw_spi_prepare_once(&row_plan,
												"SELECT id, provider, account, payment_id, order_id, status,"
												" pay_url, expires_at, create_response FROM paygw.invoices"
												" WHERE id OPERATOR(pg_catalog.=) $1",
												1, (Oid[]) {INT8OID}),
						 args, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading paygw.invoices failed");
	/* copied out of SPI's memory into callcxt (SPI_finish returns there) */
	for (int i = 0; i < 9; i++)
	{
		Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, i);

		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull[i]);
		if (!isnull[i])
			values[i] = SPI_datumTransfer(values[i], att->attbyval, att->attlen);
	}
	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	row = heap_form_tuple(tupdesc, values, isnull);
	MemoryContextDelete(callcxt);
	PG_RETURN_DATUM(HeapTupleGetDatum(row));
}
