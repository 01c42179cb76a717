/*-------------------------------------------------------------------------
 *
 * sql_tracking.c
 *		Tracked invoices from SQL: paygw_track (one payment, or a batch), the
 *		triggers of paygw.invoices, paygw_refresh, paygw_check_invoice and the
 *		text of status notifications.
 *
 * Each call runs in its own memory context, deleted before returning; when
 * an error is raised instead, the context goes with the transaction's
 * memory, and its reset callbacks wipe secrets and detach HTTP handles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

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
PG_FUNCTION_INFO_V1(paygw_track_bulk);
PG_FUNCTION_INFO_V1(paygw_invoice_prevalidated);
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
 * Raise PAYGW_ERR_TRACK_CONFLICT for paygw_track: what (the gateway id, the
 * order id) of invoice id differs from what was asked; what NULL: the ids
 * belong to two invoices, or to none.
 */
static PAYGW_NORETURN_PREFIX void raise_track_conflict(const char *what, int64 id) PAYGW_NORETURN_SUFFIX;

static void
raise_track_conflict(const char *what, int64 id)
{
	PaygwError	err;

	if (what == NULL)
		paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
						"the gateway id and the order id belong to different tracked invoices");
	else
		paygw_set_error(&err, PAYGW_ERR_TRACK_CONFLICT,
						"payment is already tracked as invoice %lld with a different %s",
						(long long) id, what);
	paygw_raise(&err);
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
 * The rows paygw_track has just validated for the INSERT it is running, in
 * this backend: the validation trigger's WHEN clause,
 * paygw.invoice_prevalidated(), is false for a row byte-identical to one of
 * them, so the trigger does not check again what paygw_track checked: 13 %
 * of the time of tracking a batch of new payments (the trigger is SECURITY
 * DEFINER with a setting of its own); for one payment per call it makes no
 * measurable difference.  Any other row -- one a user trigger inserts
 * meanwhile, or changes first -- is checked as always, and so is every row
 * once paygw.credentials changed (the account cache's generation moved).
 * Set around that INSERT only, also when it fails; a nested call's rows
 * replace them only for as long as its INSERT runs.
 */
typedef struct TrackKey
{
	const char *payment_id;		/* not NUL-terminated; NULL: none */
	int			payment_len;
	const char *order_id;
	int			order_len;
} TrackKey;

typedef struct TrackKeyEntry
{
	TrackKey	key;
	uint32		hash;
	char		status;
} TrackKeyEntry;

static uint32
track_key_hash(const TrackKey *key)
{
	uint32		h = key->payment_id ? hash_bytes((const unsigned char *) key->payment_id,
												 key->payment_len) : 0x9e3779b9;

	return hash_combine(h, key->order_id ? hash_bytes((const unsigned char *) key->order_id,
													  key->order_len) : 0x7f4a7c15);
}

static bool
track_key_equal(const TrackKey *a, const TrackKey *b)
{
	return (a->payment_id == NULL ? b->payment_id == NULL
			: b->payment_id != NULL && a->payment_len == b->payment_len &&
			memcmp(a->payment_id, b->payment_id, a->payment_len) == 0) &&
		(a->order_id == NULL ? b->order_id == NULL
		 : b->order_id != NULL && a->order_len == b->order_len &&
		 memcmp(a->order_id, b->order_id, a->order_len) == 0);
}

#define SH_PREFIX trackkeys
#define SH_ELEMENT_TYPE TrackKeyEntry
#define SH_KEY_TYPE TrackKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) track_key_hash(&(k))
#define SH_EQUAL(tb, a, b) track_key_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct TrackValidated
{
	const char *provider;
	const char *account;
	uint64		generation;		/* of the account cache: paygw.credentials
								 * changed since, and the rows are checked */
	TrackKey	one;			/* the row, for paygw_track of one payment */
	trackkeys_hash *keys;		/* the rows, for a batch; NULL: one */
} TrackValidated;

static TrackValidated *track_validated = NULL;

static TrackKey
track_key(const char *payment_id, const char *order_id)
{
	TrackKey	key;

	key.payment_id = payment_id;
	key.payment_len = payment_id ? strlen(payment_id) : 0;
	key.order_id = order_id;
	key.order_len = order_id ? strlen(order_id) : 0;
	return key;
}

/*
 * Run the INSERT of paygw_track (plan, values, nulls; by_key: through
 * paygw_spi_execute_by_key()) with v as the rows validated for it.  Returns
 * SPI_execute_plan()'s result.
 */
static int
track_insert_validated(TrackValidated *v, SPIPlanPtr plan, Datum *values, const char *nulls,
					   bool by_key)
{
	TrackValidated *outer = track_validated;
	int			ret;

	v->generation = paygw_account_cache_generation();
	track_validated = v;
	PG_TRY();
	{
		ret = by_key ? paygw_spi_execute_by_key(plan, values, nulls)
			: SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		track_validated = outer;
	}
	PG_END_TRY();
	return ret;
}

/* Does text t hold exactly s? */
static bool
text_is(text *t, const char *s)
{
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/*
 * paygw.invoice_prevalidated(provider, account, payment_id, order_id): is
 * this a row paygw_track has validated for the INSERT it is running?  The
 * WHEN clause of the invoices_validate trigger; reads nothing, and runs as
 * the role inserting.
 */
Datum
paygw_invoice_prevalidated(PG_FUNCTION_ARGS)
{
	TrackValidated *v = track_validated;
	TrackKey	key;
	text	   *payment_id;
	text	   *order_id;

	if (v == NULL || v->generation != paygw_account_cache_generation() ||
		PG_ARGISNULL(0) || PG_ARGISNULL(1) ||
		!text_is(PG_GETARG_TEXT_PP(0), v->provider) ||
		!text_is(PG_GETARG_TEXT_PP(1), v->account))
		PG_RETURN_BOOL(false);
	payment_id = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	order_id = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	key.payment_id = payment_id ? VARDATA_ANY(payment_id) : NULL;
	key.payment_len = payment_id ? VARSIZE_ANY_EXHDR(payment_id) : 0;
	key.order_id = order_id ? VARDATA_ANY(order_id) : NULL;
	key.order_len = order_id ? VARSIZE_ANY_EXHDR(order_id) : 0;
	if (v->keys == NULL)
		PG_RETURN_BOOL(track_key_equal(&key, &v->one));
	PG_RETURN_BOOL(trackkeys_lookup(v->keys, key) != NULL);
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
	TrackValidated validated;

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
	validated.provider = prov->name;
	validated.account = account;
	validated.one = track_key(payment_id, order_id);
	validated.keys = NULL;
	ret = track_insert_validated(&validated,
								 paygw_spi_prepare_once(&insert_plans[which], insert_sql[which],
														4, types),
								 values, nulls, false);
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

		ret = SPI_execute_plan(paygw_spi_prepare_once(&find_plans[which], find_sql[which],
													  4, types),
							   values, nulls, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading paygw.invoices failed: %s", SPI_result_code_string(ret));
		if (SPI_processed != 1)
			raise_track_conflict(NULL, 0);
		row = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		have_payment = SPI_getvalue(row, desc, 2);
		have_order = SPI_getvalue(row, desc, 3);
		if ((payment_id && have_payment && strcmp(payment_id, have_payment) != 0) ||
			(order_id && have_order && strcmp(order_id, have_order) != 0))
			raise_track_conflict((payment_id && have_payment && strcmp(payment_id, have_payment) != 0)
								 ? "gateway id" : "order id", id);
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
 * The element of paygw_track's arrays an error is about, for the error
 * context: counted from 1, whatever the arrays' lower bounds.
 */
typedef struct TrackElement
{
	int			k;				/* 0-based; -1 while no element is at issue */
	const char *arrays;			/* the arrays given, as the context names them */
} TrackElement;

static void
track_element_context(void *arg)
{
	TrackElement *el = (TrackElement *) arg;

	if (el->k >= 0)
		errcontext("element %d of %s", el->k + 1, el->arrays);
}

/*
 * The elements of text[] argument argno (name: the parameter's name), in
 * CurrentMemoryContext; false when the argument is NULL.  Raises unless the
 * array is one-dimensional.
 */
static bool
track_array_arg(FunctionCallInfo fcinfo, int argno, const char *name,
				Datum **elems, bool **nulls, int *n)
{
	ArrayType  *arr;

	*elems = NULL;
	*nulls = NULL;
	*n = 0;
	if (PG_ARGISNULL(argno))
		return false;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("%s must be a one-dimensional array", name),
				errdetail("The array given has %d dimensions.", ARR_NDIM(arr)));
	/* text, or a type stored like it (varchar, a domain over text) */
	deconstruct_array(arr, ARR_ELEMTYPE(arr), -1, false, TYPALIGN_INT, elems, nulls, n);
	return true;
}

/*
 * The statements of paygw_track over a batch.  $1 is the provider, $2 the
 * account once per element, $3 and $4 the elements' gateway ids and order
 * ids (canonical; NULL where an element has none).  The account comes with
 * each element, and so is compared in the join rather than as a constant:
 * with no statistics (a table just loaded or truncated) the planner takes a
 * constant account for 0.5 % of the rows -- when most rows have it -- and
 * would hash the whole account instead of probing the key of each element.
 *
 * The insert, by the ids the elements give: both kinds, gateway ids only,
 * order ids only.  Elements tracked already are left out by a probe of
 * their key (cheaper than the insertion's conflict check, and no
 * validation trigger runs for them); ON CONFLICT skips those tracked
 * meanwhile, or given twice.  With one kind of id only, the only conflicts
 * possible are on that kind's key: just that index is checked.  New
 * invoices get their ids in the elements' order, as one paygw_track call
 * after the other would give them.
 */
#define TRACK_INSERT \
	"INSERT INTO paygw.invoices (provider, account, payment_id, order_id)" \
	" SELECT $1, u.a, u.p, u.o FROM ROWS FROM (pg_catalog.unnest($2)," \
	" pg_catalog.unnest($3), pg_catalog.unnest($4)) WITH ORDINALITY AS u(a, p, o, k) WHERE "
#define TRACK_NEW_PAYMENT \
	"NOT EXISTS (SELECT FROM paygw.invoices i WHERE i.account = u.a AND i.payment_id = u.p)"
#define TRACK_NEW_ORDER \
	"NOT EXISTS (SELECT FROM paygw.invoices i WHERE i.account = u.a AND i.order_id = u.o)"
#define TRACK_IN_ORDER " ORDER BY u.k"
static const char *const track_insert_sql[3] = {
	TRACK_INSERT TRACK_NEW_PAYMENT " AND " TRACK_NEW_ORDER TRACK_IN_ORDER " ON CONFLICT DO NOTHING",
	TRACK_INSERT TRACK_NEW_PAYMENT TRACK_IN_ORDER " ON CONFLICT (account, payment_id) DO NOTHING",
	TRACK_INSERT TRACK_NEW_ORDER TRACK_IN_ORDER " ON CONFLICT (account, order_id) DO NOTHING",
};

/*
 * Every element's invoice by each of its ids: the element (from 1), the
 * invoice with its gateway id, the one with its order id, and that
 * invoice's ids (the first's when there is one).  ($1 is not used.)
 */
static const char *const track_find_sql =
"SELECT u.k, a.id, b.id,"
" CASE WHEN a.id IS NULL THEN b.payment_id ELSE a.payment_id END,"
" CASE WHEN a.id IS NULL THEN b.order_id ELSE a.order_id END"
" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
" WITH ORDINALITY AS u(a, p, o, k)"
" LEFT JOIN paygw.invoices a ON a.account = u.a AND a.payment_id = u.p"
" LEFT JOIN paygw.invoices b ON b.account = u.a AND b.order_id = u.o";

/*
 * Fill in ids invoices lack: $1 the invoices, $2 and $3 the ids to add
 * (NULL: none).  Returns the entry (from 1) and the ids each invoice has
 * now.
 */
static const char *const track_fill_sql =
"UPDATE paygw.invoices i"
" SET payment_id = COALESCE(i.payment_id, f.p), order_id = COALESCE(i.order_id, f.o)"
" FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))"
" WITH ORDINALITY AS f(id, p, o, r)"
" WHERE i.id = f.id"
" RETURNING f.r, i.payment_id, i.order_id";

/*
 * A statement of paygw_track over a batch, prepared once and planned for
 * each execution, run with paygw_spi_execute_by_key() (sequential scans
 * off).  Not a generic plan: one made while paygw.invoices was small -- on
 * an empty table, or after a TRUNCATE -- keeps looking the payments up by
 * a scan of the account's whole index (its estimate of one row per account
 * ties with the probe by key), which is quadratic once the table has grown:
 * 100,000 payments tracked again took more than ten minutes.  A plan made
 * for each call knows the batch's size and the table's, and costs well under
 * a millisecond.
 */
static SPIPlanPtr
prepare_batch_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return paygw_spi_prepare_once_opts(plan, sql, nargs, argtypes, CURSOR_OPT_CUSTOM_PLAN);
}

/* A fill paygw_track's arrays ask for: element k adds ids to invoice id. */
typedef struct TrackFill
{
	int64		id;
	int			k;
	const char *payment_id;		/* NULL: the row has it, or none given */
	const char *order_id;
} TrackFill;

static int
fill_cmp_id(const void *a, const void *b)
{
	const TrackFill *x = a;
	const TrackFill *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->k - y->k;
}

/* two ids, NULL last, then the elements' order */
static int
fill_cmp_ids(const char *x, const char *y, int xk, int yk)
{
	if ((x == NULL) != (y == NULL))
		return x == NULL ? 1 : -1;
	if (x != NULL)
	{
		int			c = strcmp(x, y);

		if (c != 0)
			return c;
	}
	return xk - yk;
}

/* by payment_id (fills without one last), then by element */
static int
fill_cmp_payment(const void *a, const void *b)
{
	const TrackFill *x = a;
	const TrackFill *y = b;

	return fill_cmp_ids(x->payment_id, y->payment_id, x->k, y->k);
}

/* by order_id (fills without one last), then by element */
static int
fill_cmp_order(const void *a, const void *b)
{
	const TrackFill *x = a;
	const TrackFill *y = b;

	return fill_cmp_ids(x->order_id, y->order_id, x->k, y->k);
}

/*
 * The conflict paygw_track's arrays raise: element k's, what and id as
 * raise_track_conflict() takes them; k -1: none (yet).
 */
typedef struct TrackConflict
{
	int			k;
	const char *what;
	int64		id;
} TrackConflict;

/*
 * Note a conflict of element k, keeping the first element (in input order)
 * that has one: with the elements tracked one by one, that is where the
 * first error would be.
 */
static void
note_conflict(TrackConflict *c, int k, const char *what, int64 id)
{
	if (c->k < 0 || k < c->k)
	{
		c->k = k;
		c->what = what;
		c->id = id;
	}
}

/* Raise the conflict noted, if any, in the context of its element. */
static void
raise_noted_conflict(const TrackConflict *c, TrackElement *el)
{
	if (c->k >= 0)
	{
		el->k = c->k;
		raise_track_conflict(c->what, c->id);
	}
}

/*
 * Check the fills elements ask for against each other (fills[0..nfills-1],
 * reordered here): with the elements tracked one by one, the first to fill
 * an id in would make a later different id for the same invoice, or the
 * same id for another invoice, a conflict.  Notes the first such element.
 */
static void
check_fills(TrackFill *fills, int nfills, TrackConflict *c)
{
	qsort(fills, nfills, sizeof(TrackFill), fill_cmp_id);
	for (int i = 0; i < nfills;)
	{
		const char *payment_id = NULL;
		const char *order_id = NULL;
		int			j;

		/* the ids the first element of this invoice fills in, and the rest */
		for (j = i; j < nfills && fills[j].id == fills[i].id; j++)
		{
			if (fills[j].payment_id && payment_id == NULL)
				payment_id = fills[j].payment_id;
			else if (fills[j].payment_id && strcmp(fills[j].payment_id, payment_id) != 0)
				note_conflict(c, fills[j].k, "gateway id", fills[j].id);
			if (fills[j].order_id && order_id == NULL)
				order_id = fills[j].order_id;
			else if (fills[j].order_id && strcmp(fills[j].order_id, order_id) != 0)
				note_conflict(c, fills[j].k, "order id", fills[j].id);
		}
		i = j;
	}
	qsort(fills, nfills, sizeof(TrackFill), fill_cmp_payment);
	for (int i = 1; i < nfills && fills[i].payment_id; i++)
		if (strcmp(fills[i].payment_id, fills[i - 1].payment_id) == 0 &&
			fills[i].id != fills[i - 1].id)
			note_conflict(c, fills[i].k, NULL, 0);
	qsort(fills, nfills, sizeof(TrackFill), fill_cmp_order);
	for (int i = 1; i < nfills && fills[i].order_id; i++)
		if (strcmp(fills[i].order_id, fills[i - 1].order_id) == 0 &&
			fills[i].id != fills[i - 1].id)
			note_conflict(c, fills[i].k, NULL, 0);
}

/*
 * paygw_track(provider, ids, order_ids, account): paygw_track for a batch of
 * payments, element k of ids and of order_ids being one payment's ids, in a
 * few statements whatever the batch's size: one INSERT of all of them (ON
 * CONFLICT DO NOTHING), one lookup of every element by its keys, and, only
 * when an element brings an id its invoice lacks, one UPDATE filling them
 * in.  Returns a row per element, in order: its ids as given and its
 * invoice id.  Any error fails the whole call; an error about one element
 * names it in its context.
 */
Datum
paygw_track_bulk(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr insert_plans[3] = {NULL, NULL, NULL};
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr fill_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callcxt;
	MemoryContext oldcxt;
	const PaygwProvider *prov;
	Datum	   *ids;
	bool	   *ids_nulls;
	int			nids;
	Datum	   *orders;
	bool	   *orders_nulls;
	int			norders;
	bool		have_ids;
	bool		have_orders;
	int			n;
	char	  **payment_ids;
	char	  **order_ids;
	Datum	   *pay_vals;
	bool	   *pay_nulls;
	Datum	   *ord_vals;
	bool	   *ord_nulls;
	bool		any_payment = false;
	bool		any_order = false;
	char	   *account;
	int64	   *found;
	TrackFill  *fills;
	int			nfills = 0;
	TrackConflict conflict = {-1, NULL, 0};
	TrackElement el;
	ErrorContextCallback errcb;
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];
	Datum	   *accounts;
	int			which;
	int			ret;
	TrackValidated validated;

	InitMaterializedSRF(fcinfo, 0);
	callcxt = paygw_call_context();
	oldcxt = MemoryContextSwitchTo(callcxt);

	prov = provider_or_raise(paygw_arg_text(fcinfo, 0));
	have_ids = track_array_arg(fcinfo, 1, "ids", &ids, &ids_nulls, &nids);
	have_orders = track_array_arg(fcinfo, 2, "order_ids", &orders, &orders_nulls, &norders);
	if (!have_ids && !have_orders)
	{
		/* what paygw_track says about a payment without ids */
		char	   *none = NULL;

		invoice_ids(prov, &none, &none);
	}
	if (have_ids && have_orders && nids != norders)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("ids and order_ids must have the same number of elements"),
				errdetail("ids has %d elements, order_ids %d.", nids, norders));
	n = have_ids ? nids : norders;

	/* each element checked, and its ids made canonical, as paygw_track does */
	payment_ids = palloc0(sizeof(char *) * Max(n, 1));
	order_ids = palloc0(sizeof(char *) * Max(n, 1));
	pay_vals = palloc0(sizeof(Datum) * Max(n, 1));
	pay_nulls = palloc(sizeof(bool) * Max(n, 1));
	ord_vals = palloc0(sizeof(Datum) * Max(n, 1));
	ord_nulls = palloc(sizeof(bool) * Max(n, 1));
	el.k = -1;
	el.arrays = (have_ids && have_orders) ? "ids and order_ids" : have_ids ? "ids" : "order_ids";
	errcb.callback = track_element_context;
	errcb.arg = &el;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (int k = 0; k < n; k++)
	{
		el.k = k;
		if (have_ids && !ids_nulls[k])
			payment_ids[k] = TextDatumGetCString(ids[k]);
		if (have_orders && !orders_nulls[k])
			order_ids[k] = TextDatumGetCString(orders[k]);
		invoice_ids(prov, &payment_ids[k], &order_ids[k]);
		pay_vals[k] = paygw_text_or_null(payment_ids[k], &pay_nulls[k]);
		ord_vals[k] = paygw_text_or_null(order_ids[k], &ord_nulls[k]);
		any_payment |= payment_ids[k] != NULL;
		any_order |= order_ids[k] != NULL;
	}
	el.k = -1;
	account = account_or_raise(prov, paygw_arg_text(fcinfo, 3));
	if (n == 0)
	{
		error_context_stack = errcb.previous;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(callcxt);
		return (Datum) 0;
	}

	values[0] = CStringGetTextDatum(prov->name);
	accounts = palloc(sizeof(Datum) * n);
	accounts[0] = CStringGetTextDatum(account);
	for (int k = 1; k < n; k++)
		accounts[k] = accounts[0];
	values[1] = paygw_array_datum(accounts, NULL, n, TEXTOID);
	values[2] = paygw_array_datum(pay_vals, pay_nulls, n, TEXTOID);
	values[3] = paygw_array_datum(ord_vals, ord_nulls, n, TEXTOID);
	found = palloc(sizeof(int64) * n);
	fills = palloc(sizeof(TrackFill) * n);

	which = (any_payment && any_order) ? 0 : any_payment ? 1 : 2;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* 1. insert the elements not tracked yet */
	validated.provider = prov->name;
	validated.account = account;
	validated.keys = trackkeys_create(CurrentMemoryContext, n, NULL);
	for (int k = 0; k < n; k++)
	{
		bool		isnew;

		(void) trackkeys_insert(validated.keys, track_key(payment_ids[k], order_ids[k]), &isnew);
	}
	ret = track_insert_validated(&validated,
								 prepare_batch_once(&insert_plans[which], track_insert_sql[which],
													4, types),
								 values, NULL, true);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "inserting into paygw.invoices failed: %s", SPI_result_code_string(ret));

	/*
	 * 2. every element's invoice, by each of its ids, seen with a new
	 * snapshot: the rows just inserted, and rows other sessions committed
	 * while the insert waited for them
	 */
	ret = paygw_spi_execute_by_key(prepare_batch_once(&find_plan, track_find_sql, 4, types),
								   values, NULL);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading paygw.invoices failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != (uint64) n)
		elog(ERROR, "reading paygw.invoices returned %llu rows for %d payments",
			 (unsigned long long) SPI_processed, n);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		k_null;
		bool		a_null;
		bool		b_null;
		int			k = (int) DatumGetInt64(SPI_getbinval(row, desc, 1, &k_null)) - 1;
		int64		a = DatumGetInt64(SPI_getbinval(row, desc, 2, &a_null));
		int64		b = DatumGetInt64(SPI_getbinval(row, desc, 3, &b_null));
		int64		id = a_null ? b : a;
		char	   *have_payment = NULL;
		char	   *have_order = NULL;
		const char *fill_payment = NULL;
		const char *fill_order = NULL;

		if (k_null || k < 0 || k >= n)
			elog(ERROR, "reading paygw.invoices returned an unknown element");
		found[k] = id;
		if ((a_null && b_null) || (!a_null && !b_null && a != b))
		{
			/* no invoice, or one for each id */
			note_conflict(&conflict, k, NULL, 0);
			continue;
		}
		if (payment_ids[k] && a_null)
		{
			/* found by the order id: it has no gateway id, or another */
			have_payment = SPI_getvalue(row, desc, 4);
			if (have_payment == NULL)
				fill_payment = payment_ids[k];
			else if (strcmp(have_payment, payment_ids[k]) != 0)
				note_conflict(&conflict, k, "gateway id", id);
		}
		if (order_ids[k] && b_null)
		{
			/* found by the gateway id: it has no order id, or another */
			have_order = SPI_getvalue(row, desc, 5);
			if (have_order == NULL)
				fill_order = order_ids[k];
			else if (strcmp(have_order, order_ids[k]) != 0)
				note_conflict(&conflict, k, "order id", id);
		}
		if (fill_payment || fill_order)
		{
			fills[nfills].id = id;
			fills[nfills].k = k;
			fills[nfills].payment_id = fill_payment;
			fills[nfills].order_id = fill_order;
			nfills++;
		}
	}
	if (nfills > 1)
		check_fills(fills, nfills, &conflict);
	raise_noted_conflict(&conflict, &el);

	/*
	 * 3. Fill in the ids invoices lack, one UPDATE for all; an invoice that
	 * ends up with other ids (changed meanwhile) is a conflict.
	 */
	if (nfills > 0)
	{
		Oid			fill_types[3] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		fill_values[3];
		Datum	   *fill_ids = palloc(sizeof(Datum) * nfills);
		Datum	   *fill_pays = palloc0(sizeof(Datum) * nfills);
		bool	   *fill_pay_nulls = palloc(sizeof(bool) * nfills);
		Datum	   *fill_ords = palloc0(sizeof(Datum) * nfills);
		bool	   *fill_ord_nulls = palloc(sizeof(bool) * nfills);
		TrackFill  *rows = palloc(sizeof(TrackFill) * nfills);
		int			nrows = 0;
		bool	   *filled;

		/* one entry per invoice: its first element, and the ids to add */
		qsort(fills, nfills, sizeof(TrackFill), fill_cmp_id);
		for (int i = 0; i < nfills; i++)
		{
			if (nrows == 0 || rows[nrows - 1].id != fills[i].id)
				rows[nrows++] = fills[i];
			else
			{
				TrackFill  *merged = &rows[nrows - 1];

				if (merged->payment_id == NULL)
					merged->payment_id = fills[i].payment_id;
				if (merged->order_id == NULL)
					merged->order_id = fills[i].order_id;
			}
		}
		for (int i = 0; i < nrows; i++)
		{
			fill_ids[i] = Int64GetDatum(rows[i].id);
			fill_pays[i] = paygw_text_or_null(rows[i].payment_id, &fill_pay_nulls[i]);
			fill_ords[i] = paygw_text_or_null(rows[i].order_id, &fill_ord_nulls[i]);
		}
		fill_values[0] = paygw_array_datum(fill_ids, NULL, nrows, INT8OID);
		fill_values[1] = paygw_array_datum(fill_pays, fill_pay_nulls, nrows, TEXTOID);
		fill_values[2] = paygw_array_datum(fill_ords, fill_ord_nulls, nrows, TEXTOID);
		ret = paygw_spi_execute_by_key(prepare_batch_once(&fill_plan, track_fill_sql, 3, fill_types),
									   fill_values, NULL);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "updating paygw.invoices failed: %s", SPI_result_code_string(ret));
		filled = palloc0(sizeof(bool) * nrows);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	row = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int			i = (int) DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)) - 1;
			char	   *have_payment = SPI_getvalue(row, desc, 2);
			char	   *have_order = SPI_getvalue(row, desc, 3);
			TrackFill  *want;

			if (isnull || i < 0 || i >= nrows)
				elog(ERROR, "updating paygw.invoices returned an unknown row");
			want = &rows[i];
			filled[i] = true;
			if (want->payment_id && (!have_payment || strcmp(have_payment, want->payment_id) != 0))
				note_conflict(&conflict, want->k, "gateway id", want->id);
			else if (want->order_id && (!have_order || strcmp(have_order, want->order_id) != 0))
				note_conflict(&conflict, want->k, "order id", want->id);
		}
		/* gone meanwhile */
		for (int i = 0; i < nrows; i++)
			if (!filled[i])
				note_conflict(&conflict, rows[i].k, NULL, 0);
		raise_noted_conflict(&conflict, &el);
	}
	SPI_finish();
	error_context_stack = errcb.previous;

	/* a row per element, in order: its ids as given, its invoice */
	MemoryContextSwitchTo(oldcxt);
	for (int k = 0; k < n; k++)
	{
		Datum		out[3];
		bool		out_nulls[3];

		out[0] = (have_ids && !ids_nulls[k]) ? ids[k] : (Datum) 0;
		out_nulls[0] = !have_ids || ids_nulls[k];
		out[1] = (have_orders && !orders_nulls[k]) ? orders[k] : (Datum) 0;
		out_nulls[1] = !have_orders || orders_nulls[k];
		out[2] = Int64GetDatum(found[k]);
		out_nulls[2] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_nulls);
	}
	MemoryContextDelete(callcxt);
	return (Datum) 0;
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
