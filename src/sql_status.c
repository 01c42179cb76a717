/*-------------------------------------------------------------------------
 *
 * sql_status.c
 *		The SQL status calls (paygw_status, paygw_status_by_order), the dry
 *		run paygw_request, signing (paygw.sign), the provider list and
 *		paygw.http_info.
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

PG_FUNCTION_INFO_V1(paygw_status);
PG_FUNCTION_INFO_V1(paygw_status_by_order);
PG_FUNCTION_INFO_V1(paygw_request);
PG_FUNCTION_INFO_V1(paygw_provider_list);
PG_FUNCTION_INFO_V1(paygw_sign);
PG_FUNCTION_INFO_V1(paygw_http_info);

/*
 * paygw_status and paygw_status_by_order: perform the call and return the
 * normalized row (provider, account, payment_id, order_id, status,
 * provider_status, amount, currency, response).
 */
static Datum
status_common(FunctionCallInfo fcinfo, PaygwLookup lookup)
{
	TupleDesc	tupdesc = paygw_result_tupdesc(fcinfo);
	MemoryContext callcxt = paygw_call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	PaygwCall	call;
	PaygwError	err;
	PaygwHttpResponse resp;
	PaygwStatusResult res;
	Datum		values[9];
	bool		nulls[9];
	HeapTuple	tuple;
	char	   *warning = NULL;

	if (!paygw_call_prepare(&call, paygw_arg_text(fcinfo, 0), paygw_arg_text(fcinfo, 1),
							paygw_arg_text(fcinfo, 2), lookup, &err))
		paygw_raise(&err);

	paygw_http_perform(&call.request, &resp, 1, 1, 0);

	if (!paygw_call_interpret(&call, &resp, &res, &err))
		paygw_raise(&err);

	values[0] = paygw_text_or_null(call.provider->name, &nulls[0]);
	values[1] = paygw_text_or_null(call.account->name, &nulls[1]);
	values[2] = paygw_text_or_null(res.payment_id, &nulls[2]);
	values[3] = paygw_text_or_null(res.order_id, &nulls[3]);
	values[4] = DirectFunctionCall2(enum_in,
									CStringGetDatum(paygw_status_label(res.status)),
									ObjectIdGetDatum(TupleDescAttr(tupdesc, 4)->atttypid));
	nulls[4] = false;
	values[5] = paygw_text_or_null(res.provider_status, &nulls[5]);
	values[6] = res.amount;
	nulls[6] = res.amount_isnull;
	values[7] = paygw_text_or_null(res.currency, &nulls[7]);
	values[8] = JsonbPGetDatum(res.response);
	nulls[8] = false;

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	if (!res.status_known)
		warning = psprintf("%s", res.provider_status);
	MemoryContextDelete(callcxt);

	if (warning != NULL)
		ereport(WARNING,
				errmsg("unrecognized %s status \"%s\" reported as pending",
					   call.provider->name, warning),
				errdetail("The gateway's own value is kept in provider_status."));

	return HeapTupleGetDatum(tuple);
}

Datum
paygw_status(PG_FUNCTION_ARGS)
{
	return status_common(fcinfo, PAYGW_LOOKUP_ID);
}

Datum
paygw_status_by_order(PG_FUNCTION_ARGS)
{
	return status_common(fcinfo, PAYGW_LOOKUP_ORDER);
}

/*
 * paygw_request(provider, id, account, by_order): the request paygw_status
 * (or paygw_status_by_order) would send: method, url, headers, body, without
 * sending it.  Sensitive header values
 * (API keys) are redacted.
 */
Datum
paygw_request(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = paygw_result_tupdesc(fcinfo);
	MemoryContext callcxt = paygw_call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	PaygwCall	call;
	PaygwError	err;
	StringInfoData headers;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	HeapTuple	tuple;

	if (!paygw_call_prepare(&call, paygw_arg_text(fcinfo, 0), paygw_arg_text(fcinfo, 1),
							paygw_arg_text(fcinfo, 2),
							(!PG_ARGISNULL(3) && PG_GETARG_BOOL(3))
							? PAYGW_LOOKUP_ORDER : PAYGW_LOOKUP_ID, &err))
		paygw_raise(&err);

	initStringInfo(&headers);
	appendStringInfoChar(&headers, '{');
	for (int i = 0; i < call.request.nheaders; i++)
	{
		PaygwHttpHeader *h = &call.request.headers[i];

		if (i > 0)
			appendStringInfoString(&headers, ", ");
		escape_json(&headers, h->name);
		appendStringInfoString(&headers, ": ");
		escape_json(&headers, h->sensitive ? "[redacted]" : h->value);
	}
	appendStringInfoChar(&headers, '}');

	values[0] = CStringGetTextDatum(call.request.method);
	values[1] = CStringGetTextDatum(pg_any_to_server(call.request.url,
													 strlen(call.request.url), PG_UTF8));
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(headers.data));
	if (call.request.body != NULL)
		values[3] = CStringGetTextDatum(pg_any_to_server(call.request.body,
														 (int) call.request.body_len,
														 PG_UTF8));
	else
		nulls[3] = true;

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	MemoryContextDelete(callcxt);
	return HeapTupleGetDatum(tuple);
}

/*
 * paygw_provider_list(): the supported providers, for the paygw.providers
 * view.
 */
Datum
paygw_provider_list(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < paygw_provider_count; i++)
	{
		const PaygwProvider *p = paygw_providers[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		values[0] = CStringGetTextDatum(p->name);
		values[1] = CStringGetTextDatum(p->default_base_url);
		values[2] = CStringGetTextDatum(p->auth_scheme);
		values[3] = CStringGetTextDatum(p->id_name);
		values[4] = paygw_text_or_null(p->order_name, &nulls[4]);
		values[5] = BoolGetDatum(p->order_name != NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * paygw.sign(account, message): the signature the account's provider would
 * put on message (OkePay ApiSignature, Obmenka DPAY_SECURE, AliKassa Sign,
 * Morune webhook signature), for comparing with a gateway's documentation.
 */
Datum
paygw_sign(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = paygw_call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	char	   *message = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *wire;
	PaygwAccount *account;
	PaygwError	err;
	char	   *signature;
	text	   *result;

	account = paygw_account_fetch(NULL, paygw_arg_text(fcinfo, 0), &err);
	if (account == NULL)
		paygw_raise(&err);

	/* sign the UTF-8 bytes, as they would be sent */
	wire = pg_server_to_any(message, strlen(message), PG_UTF8);
	signature = account->provider->sign(account, wire, strlen(wire), &err);
	if (signature == NULL)
		paygw_raise(&err);

	MemoryContextSwitchTo(oldcxt);
	result = cstring_to_text(signature);
	MemoryContextDelete(callcxt);
	PG_RETURN_TEXT_P(result);
}

/*
 * paygw.http_info() -> (libcurl_version, ssl_backend, async_resolver,
 * ca_bundle, ca_path): what the libcurl in use offers.
 */
Datum
paygw_http_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = paygw_result_tupdesc(fcinfo);
	PaygwHttpInfo info;
	Datum		values[5];
	bool		nulls[5];

	paygw_http_describe(&info);
	values[0] = paygw_text_or_null(info.libcurl_version, &nulls[0]);
	values[1] = paygw_text_or_null(info.ssl_backend, &nulls[1]);
	values[2] = BoolGetDatum(info.async_resolver);
	nulls[2] = false;
	values[3] = paygw_text_or_null(info.ca_bundle, &nulls[3]);
	values[4] = paygw_text_or_null(info.ca_path, &nulls[4]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
