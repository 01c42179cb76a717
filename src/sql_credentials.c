/*-------------------------------------------------------------------------
 *
 * sql_credentials.c
 *		The triggers of paygw.credentials (validation and sealing at write
 *		time, the change notice) and paygw.current_key_id().
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

PG_FUNCTION_INFO_V1(paygw_credentials_validate);
PG_FUNCTION_INFO_V1(paygw_credentials_changed);
PG_FUNCTION_INFO_V1(paygw_current_key_id_sql);

/*
 * A secret column of a trigger tuple, or NULL: like paygw_tuple_text(), but a
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

	tuple = paygw_trigger_row(fcinfo, "paygw_credentials_validate", true, &desc);

	callcxt = paygw_call_context();
	oldcxt = MemoryContextSwitchTo(callcxt);
	/*
	 * In the call context, not on the stack: its wipe callback runs when the
	 * context goes, which after an error is long after this frame is gone.
	 */
	acct = palloc0(sizeof(PaygwAccount));
	memset(&err, 0, sizeof(err));

	name = paygw_tuple_text(tuple, desc, "name");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		old_name = paygw_tuple_text(trigdata->tg_trigtuple, desc, "name");
	provider = paygw_tuple_text(tuple, desc, "provider");
	acct->merchant_id = paygw_tuple_text(tuple, desc, "merchant_id");
	stored_secret = tuple_secret(tuple, desc, "secret");
	stored_password = tuple_secret(tuple, desc, "secret_password");
	acct->base_url = paygw_tuple_text(tuple, desc, "base_url");
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
	else if (stored_password != NULL && !acct->provider->secret_password)
		paygw_set_error(&err, PAYGW_ERR_INVALID_CREDENTIAL,
						"secret_password is used only by %s accounts",
						paygw_provider_names_with_password());
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
