/*-------------------------------------------------------------------------
 *
 * sqlfuncs.c
 *		Every SQL-callable function of paygw.  Thin wrappers: argument
 *		handling, result tuples, and turning PaygwErrors into ereports.
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

PG_FUNCTION_INFO_V1(paygw_status);
PG_FUNCTION_INFO_V1(paygw_status_by_order);
PG_FUNCTION_INFO_V1(paygw_request);
PG_FUNCTION_INFO_V1(paygw_credentials_validate);
PG_FUNCTION_INFO_V1(paygw_credentials_changed);
PG_FUNCTION_INFO_V1(paygw_provider_list);
PG_FUNCTION_INFO_V1(paygw_sign);
PG_FUNCTION_INFO_V1(paygw_current_key_id_sql);
PG_FUNCTION_INFO_V1(paygw_http_info);

static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

static TupleDesc
result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(tupdesc);
}

/* A memory context for one call, child of the current one. */
static MemoryContext
call_context(void)
{
	return AllocSetContextCreate(CurrentMemoryContext, "paygw call",
								 ALLOCSET_DEFAULT_SIZES);
}

/*
 * paygw_status and paygw_status_by_order: perform the call and return the
 * normalized row (provider, account, payment_id, order_id, status,
 * provider_status, amount, currency, response).
 */
static Datum
status_common(FunctionCallInfo fcinfo, PaygwLookup lookup)
{
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	MemoryContext callcxt = call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	PaygwCall	call;
	PaygwError	err;
	PaygwHttpResponse resp;
	PaygwStatusResult res;
	Datum		values[9];
	bool		nulls[9];
	HeapTuple	tuple;
	char	   *warning = NULL;

	if (!paygw_call_prepare(&call, text_arg(fcinfo, 0), text_arg(fcinfo, 1),
							text_arg(fcinfo, 2), lookup, &err))
		paygw_raise(&err);

	paygw_http_perform(&call.request, &resp, 1, 1, 0);

	if (!paygw_call_interpret(&call, &resp, &res, &err))
		paygw_raise(&err);

	values[0] = text_or_null(call.provider->name, &nulls[0]);
	values[1] = text_or_null(call.account->name, &nulls[1]);
	values[2] = text_or_null(res.payment_id, &nulls[2]);
	values[3] = text_or_null(res.order_id, &nulls[3]);
	values[4] = DirectFunctionCall2(enum_in,
									CStringGetDatum(paygw_status_label(res.status)),
									ObjectIdGetDatum(TupleDescAttr(tupdesc, 4)->atttypid));
	nulls[4] = false;
	values[5] = text_or_null(res.provider_status, &nulls[5]);
	values[6] = res.amount;
	nulls[6] = res.amount_isnull;
	values[7] = text_or_null(res.currency, &nulls[7]);
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
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	MemoryContext callcxt = call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	PaygwCall	call;
	PaygwError	err;
	StringInfoData headers;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	HeapTuple	tuple;

	if (!paygw_call_prepare(&call, text_arg(fcinfo, 0), text_arg(fcinfo, 1),
							text_arg(fcinfo, 2),
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

/* A text column of a trigger tuple, or NULL. */
static char *
tuple_text(HeapTuple tuple, TupleDesc desc, const char *column)
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
 * A secret column of a trigger tuple, or NULL: like tuple_text(), but a
 * decompressed or fetched intermediate copy is wiped.  (The tuple itself
 * belongs to the executor and is left alone.)
 */
static char *
tuple_secret(HeapTuple tuple, TupleDesc desc, const char *column)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, SPI_fnumber(desc, column), desc, &isnull);
	text	   *t;
	char	   *s;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	s = text_to_cstring(t);
	if ((Pointer) t != DatumGetPointer(d))
		paygw_wipe(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	return s;
}

/*
 * The row a row-level trigger works on (the new row for UPDATE), after
 * checking how it was called; *desc is the table's descriptor.
 */
static HeapTuple
trigger_row(FunctionCallInfo fcinfo, const char *fn, bool before, TupleDesc *desc)
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
 * Open a stored secret for validation in the trigger: a sealed value may have
 * been sealed under the row's old name when an UPDATE renames it.
 */
static char *
trigger_open(const char *value, const char *name, const char *old_name,
			 const char *column, PaygwError *err)
{
	char	   *plain = paygw_secret_open(value, name, column, err);

	if (plain == NULL && value != NULL && old_name != NULL && strcmp(old_name, name) != 0)
	{
		PaygwError	again;

		plain = paygw_secret_open(value, old_name, column, &again);
	}
	if (plain != NULL)
		paygw_wipe_on_reset(plain);
	return plain;
}

/*
 * The value to store for a row's webhook_key (stored, as written; NULL for
 * none), checked by the provider: sealed when the provider's key is a
 * secret, the opened plaintext otherwise.  acct->webhook_key is set to the
 * opened value.  NULL with err filled when it is refused.
 */
static char *
trigger_webhook_key(PaygwAccount *acct, const char *stored, const char *old_name,
					PaygwError *err)
{
	const PaygwProvider *prov = acct->provider;

	if (stored == NULL)
		return NULL;
	if (!prov->webhook_signed)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"%s webhooks are not signed: webhook_key must be null", prov->name);
		paygw_error_detail(err, "The gateway sends nothing to verify; paygw reads its webhooks and the status call confirms them.");
		return NULL;
	}
	acct->webhook_key = trigger_open(stored, acct->name, old_name, "webhook_key", err);
	if (acct->webhook_key == NULL || !prov->check_webhook_key(acct, err))
		return NULL;
	if (prov->webhook_key_secret)
		return paygw_secret_seal(acct->webhook_key, acct->name, "webhook_key", err);
	return pstrdup(acct->webhook_key);
}

/*
 * Trigger on paygw.credentials (BEFORE INSERT OR UPDATE): reject a row that
 * could not work, with a clear error, at write time, and seal its secrets
 * under the current key of paygw.key_file (re-sealing values sealed under an
 * older key: this is how paygw.rotate_key() works).  webhook_key (0.4 on)
 * is checked by the provider, and sealed too where it is a secret.  It also checks what NOT
 * NULL would, and fills NULL timestamps, so that the server's "failing row
 * contains" detail, which would print the secret, is never reached.
 */
Datum
paygw_credentials_validate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	PaygwAccount *acct;
	PaygwError	err;
	char	   *name;
	char	   *old_name = NULL;
	char	   *provider;
	char	   *stored_secret;
	char	   *stored_password;
	char	   *sealed_secret = NULL;
	char	   *sealed_password = NULL;
	char	   *stored_webhook = NULL;
	char	   *sealed_webhook = NULL;
	int			webhook_att;
	int			options_att;
	bool		isnull;
	Datum		options;
	int			cols[5];
	Datum		values[5];
	bool		nulls[5];
	int			ncols = 0;

	tuple = trigger_row(fcinfo, "paygw_credentials_validate", true, &desc);

	callcxt = call_context();
	oldcxt = MemoryContextSwitchTo(callcxt);
	/*
	 * In the call context, not on the stack: its wipe callback runs when the
	 * context goes, which after an error is long after this frame is gone.
	 */
	acct = palloc0(sizeof(PaygwAccount));
	memset(&err, 0, sizeof(err));

	name = tuple_text(tuple, desc, "name");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		old_name = tuple_text(trigdata->tg_trigtuple, desc, "name");
	provider = tuple_text(tuple, desc, "provider");
	acct->merchant_id = tuple_text(tuple, desc, "merchant_id");
	stored_secret = tuple_secret(tuple, desc, "secret");
	stored_password = tuple_secret(tuple, desc, "secret_password");
	acct->base_url = tuple_text(tuple, desc, "base_url");
	acct->name = name;
	/* no such column before 0.4 */
	webhook_att = SPI_fnumber(desc, "webhook_key");
	if (webhook_att > 0)
		stored_webhook = tuple_secret(tuple, desc, "webhook_key");
	options_att = SPI_fnumber(desc, "options");
	options = heap_getattr(tuple, options_att, desc, &isnull);

	/*
	 * A row written with its secrets already sealed while no keyring is set:
	 * what pg_restore does (the trigger is the extension's, so it exists
	 * while the data is loaded).  It is kept as written; its seals are
	 * checked when the secrets are first used, under the keyring then.
	 */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) &&
		(paygw_key_file == NULL || paygw_key_file[0] == '\0') &&
		stored_secret != NULL && paygw_secret_is_sealed(stored_secret) &&
		(stored_password == NULL || paygw_secret_is_sealed(stored_password)) &&
		name != NULL && name[0] != '\0' &&
		paygw_provider_lookup(provider, &err) != NULL)
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(callcxt);
		return PointerGetDatum(tuple);
	}
	memset(&err, 0, sizeof(err));

	if (name == NULL || name[0] == '\0')
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL, "credential name must not be empty");
	else if ((acct->provider = paygw_provider_lookup(provider, &err)) == NULL)
		;						/* err is set */
	else if (acct->merchant_id == NULL || acct->merchant_id[0] == '\0')
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL, "merchant_id must not be empty");
	else if (stored_secret == NULL || stored_secret[0] == '\0')
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL, "secret must not be empty");
	else if (stored_password != NULL && acct->provider != &paygw_alikassa)
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL,
						"secret_password is used only by alikassa accounts");
	else if (isnull)
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL, "options must not be null");
	else if ((acct->secret = trigger_open(stored_secret, name, old_name, "secret", &err)) == NULL)
		;						/* err is set */
	else if (stored_password != NULL &&
			 (acct->secret_password = trigger_open(stored_password, name, old_name,
													 "secret_password", &err)) == NULL)
		;						/* err is set */
	else if (paygw_account_complete(acct, DatumGetJsonbP(options), &err) &&
			 acct->provider->check_account(acct, &err))
	{
		sealed_secret = paygw_secret_seal(acct->secret, name, "secret", &err);
		if (sealed_secret != NULL && acct->secret_password != NULL)
			sealed_password = paygw_secret_seal(acct->secret_password, name,
												"secret_password", &err);
		if (err.code == PAYGW_OK)
			sealed_webhook = trigger_webhook_key(acct, stored_webhook, old_name, &err);
	}
	/* the copies of what was written may be plaintext secrets */
	paygw_wipe_string(stored_secret);
	paygw_wipe_string(stored_password);
	paygw_wipe_string(stored_webhook);

	if (err.code != PAYGW_OK)
	{
		if (err.detail[0] == '\0' && name != NULL && name[0] != '\0')
			paygw_error_detail(&err, "Credential \"%s\" was not written.", name);
		paygw_raise(&err);
	}

	cols[ncols] = SPI_fnumber(desc, "secret");
	values[ncols] = CStringGetTextDatum(sealed_secret);
	nulls[ncols++] = false;
	cols[ncols] = SPI_fnumber(desc, "secret_password");
	values[ncols] = sealed_password ? CStringGetTextDatum(sealed_password) : (Datum) 0;
	nulls[ncols++] = sealed_password == NULL;
	if (webhook_att > 0)
	{
		cols[ncols] = webhook_att;
		values[ncols] = sealed_webhook ? CStringGetTextDatum(sealed_webhook) : (Datum) 0;
		nulls[ncols++] = sealed_webhook == NULL;
	}
	for (int i = 0; i < 2; i++)
	{
		const char *column = i == 0 ? "created_at" : "updated_at";
		int			att = SPI_fnumber(desc, column);

		(void) heap_getattr(tuple, att, desc, &isnull);
		if (isnull)
		{
			cols[ncols] = att;
			values[ncols] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
			nulls[ncols++] = false;
		}
	}

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_modify_tuple_by_cols(tuple, desc, ncols, cols, values, nulls);
	/* without a keyring the stored values are the plaintexts: wipe our copies */
	paygw_wipe_string(sealed_secret);
	paygw_wipe_string(sealed_password);
	paygw_wipe_string(sealed_webhook);
	paygw_wipe(VARDATA(DatumGetPointer(values[0])), VARSIZE(DatumGetPointer(values[0])) - VARHDRSZ);
	if (!nulls[1])
		paygw_wipe(VARDATA(DatumGetPointer(values[1])), VARSIZE(DatumGetPointer(values[1])) - VARHDRSZ);
	if (webhook_att > 0 && !nulls[2])
		paygw_wipe(VARDATA(DatumGetPointer(values[2])), VARSIZE(DatumGetPointer(values[2])) - VARHDRSZ);
	MemoryContextDelete(callcxt);
	return PointerGetDatum(tuple);
}

/*
 * Trigger on paygw.credentials (BEFORE INSERT OR UPDATE OR DELETE for each
 * row, and BEFORE TRUNCATE): empties the account caches of this backend now
 * and of the others at commit.  Returns the row unchanged.
 */
Datum
paygw_credentials_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "paygw_credentials_changed must be a BEFORE trigger");
	paygw_account_cache_invalidate(trigdata->tg_relation);
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(NULL);
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)
						   ? trigdata->tg_newtuple : trigdata->tg_trigtuple);
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
		values[4] = text_or_null(p->order_name, &nulls[4]);
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
	MemoryContext callcxt = call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	char	   *message = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *wire;
	PaygwAccount *account;
	PaygwError	err;
	char	   *signature;
	text	   *result;

	account = paygw_account_fetch(NULL, text_arg(fcinfo, 0), &err);
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
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	MemoryContext callcxt = call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	char	   *name = text_arg(fcinfo, 0);
	char	   *body = text_arg(fcinfo, 1);
	char	   *query = text_arg(fcinfo, 3);
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

/* ---- tracked invoices ---- */

PG_FUNCTION_INFO_V1(paygw_invoices_validate);
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
 * Trigger on paygw.invoices (BEFORE INSERT OR UPDATE OF provider, account,
 * payment_id, order_id): a known provider, ids the gateway accepts (stored
 * in canonical form), and an account of that provider -- the provider's
 * only account when none is given.
 */
Datum
paygw_invoices_validate(PG_FUNCTION_ARGS)
{
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	const PaygwProvider *prov;
	char	   *payment_id;
	char	   *order_id;
	char	   *account;
	int			cols[3];
	Datum		values[3];
	bool		nulls[3];

	tuple = trigger_row(fcinfo, "paygw_invoices_validate", true, &desc);

	callcxt = call_context();
	oldcxt = MemoryContextSwitchTo(callcxt);
	prov = provider_or_raise(tuple_text(tuple, desc, "provider"));
	payment_id = tuple_text(tuple, desc, "payment_id");
	order_id = tuple_text(tuple, desc, "order_id");
	invoice_ids(prov, &payment_id, &order_id);
	account = account_or_raise(prov, tuple_text(tuple, desc, "account"));

	cols[0] = SPI_fnumber(desc, "account");
	cols[1] = SPI_fnumber(desc, "payment_id");
	cols[2] = SPI_fnumber(desc, "order_id");
	values[0] = CStringGetTextDatum(account);
	nulls[0] = false;
	values[1] = text_or_null(payment_id, &nulls[1]);
	values[2] = text_or_null(order_id, &nulls[2]);

	MemoryContextSwitchTo(oldcxt);
	tuple = heap_modify_tuple_by_cols(tuple, desc, 3, cols, values, nulls);
	MemoryContextDelete(callcxt);
	return PointerGetDatum(tuple);
}

/*
 * Row trigger (AFTER INSERT OR UPDATE OF next_check_at): wake the worker at
 * commit when the invoice is due sooner than it planned to look.
 */
Datum
paygw_wake_worker(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	HeapTuple	tuple = trigger_row(fcinfo, "paygw_wake_worker", false, &desc);
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
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr fill_plan = NULL;
	MemoryContext callcxt = call_context();
	MemoryContext oldcxt = MemoryContextSwitchTo(callcxt);
	const PaygwProvider *prov = provider_or_raise(text_arg(fcinfo, 0));
	char	   *payment_id = text_arg(fcinfo, 1);
	char	   *order_id = text_arg(fcinfo, 2);
	char	   *account;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		id;
	int			ret;

	invoice_ids(prov, &payment_id, &order_id);
	account = account_or_raise(prov, text_arg(fcinfo, 3));

	values[0] = CStringGetTextDatum(prov->name);
	values[1] = CStringGetTextDatum(account);
	values[2] = payment_id ? CStringGetTextDatum(payment_id) : (Datum) 0;
	nulls[2] = payment_id ? ' ' : 'n';
	values[3] = order_id ? CStringGetTextDatum(order_id) : (Datum) 0;
	nulls[3] = order_id ? ' ' : 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(paygw_spi_prepare_once(&insert_plan,
												  "INSERT INTO paygw.invoices (provider, account, payment_id, order_id)"
												  " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
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

		ret = SPI_execute_plan(paygw_spi_prepare_once(&find_plan,
													  "SELECT id, payment_id, order_id FROM paygw.invoices"
													  " WHERE account = $2 AND (payment_id = $3 OR order_id = $4)"
													  " AND $1 IS NOT NULL",
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

/*
 * paygw.current_key_id(): the id of the key that seals new secrets, NULL
 * when paygw.key_file is not set.
 */
Datum
paygw_current_key_id_sql(PG_FUNCTION_ARGS)
{
	PaygwError	err;
	char	   *id = paygw_current_key_id(&err);

	if (id == NULL)
	{
		if (err.code != PAYGW_OK)
			paygw_raise(&err);
		PG_RETURN_NULL();
	}
	PG_RETURN_TEXT_P(cstring_to_text(id));
}

/*
 * paygw.http_info() -> (libcurl_version, ssl_backend, async_resolver,
 * ca_bundle, ca_path): what the libcurl in use offers.
 */
Datum
paygw_http_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	PaygwHttpInfo info;
	Datum		values[5];
	bool		nulls[5];

	paygw_http_describe(&info);
	values[0] = text_or_null(info.libcurl_version, &nulls[0]);
	values[1] = text_or_null(info.ssl_backend, &nulls[1]);
	values[2] = BoolGetDatum(info.async_resolver);
	nulls[2] = false;
	values[3] = text_or_null(info.ca_bundle, &nulls[3]);
	values[4] = text_or_null(info.ca_path, &nulls[4]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
