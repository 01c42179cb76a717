/*-------------------------------------------------------------------------
 *
 * credentials.c
 *		Reading accounts from paygw.credentials, and the checks a row must
 *		pass when it is written.
 *
 * Secrets are copied out of SPI's tuples into the caller's memory context,
 * the SPI copies are overwritten, and a reset callback on the caller's
 * context overwrites ours when the call is over (normally or by error).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/proc.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "credentials.h"
#include "crypto/crypto.h"
#include "secrets.h"

#define CREDENTIAL_COLUMNS \
	"name, provider, merchant_id, secret, secret_password, base_url, options"
/* from 0.4 on */
#define CREDENTIAL_COLUMNS_WEBHOOK CREDENTIAL_COLUMNS ", webhook_key"

static SPIPlanPtr plan_by_name = NULL;
static SPIPlanPtr plan_by_provider = NULL;
static SPIPlanPtr plan_webhook_by_name = NULL;
static SPIPlanPtr plan_webhook_by_provider = NULL;

/*
 * Does paygw.credentials have the webhook_key column (added in 0.4)?  Not
 * yet while a database still runs an older version of the extension's SQL
 * with this library; status calls must work there too.  Two syscache
 * lookups, so asked on every fetch.
 */
bool
paygw_credentials_have_webhook_key(void)
{
	Oid			nsp = get_namespace_oid("paygw", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("credentials", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, "webhook_key") != InvalidAttrNumber;
}

/*
 * Copy a text column into cxt.  With wipe, the SPI-side bytes (and any
 * detoasted copy) are overwritten afterwards.  NULL for SQL NULL.
 */
static char *
copy_text(HeapTuple tuple, TupleDesc desc, int col, MemoryContext cxt, bool wipe)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	text	   *t;
	size_t		len;
	char	   *s;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	len = VARSIZE_ANY_EXHDR(t);
	s = MemoryContextAlloc(cxt, len + 1);
	memcpy(s, VARDATA_ANY(t), len);
	s[len] = '\0';
	if (wipe)
	{
		paygw_wipe(VARDATA_ANY(t), len);

		/*
		 * An inline (possibly compressed) original holds the secret too;
		 * its header stays intact so the tuple's later columns can still be
		 * read.  An out-of-line TOAST pointer holds no secret and must not
		 * be touched.
		 */
		if ((Pointer) t != DatumGetPointer(d) && !VARATT_IS_EXTERNAL(DatumGetPointer(d)))
			paygw_wipe(VARDATA_ANY(DatumGetPointer(d)), VARSIZE_ANY_EXHDR(DatumGetPointer(d)));
	}
	return s;
}

/*
 * Raise a clear error when the SQL objects installed in this database are
 * not the version this library needs (after `make install` and before
 * ALTER EXTENSION paygw UPDATE), instead of failing on a missing object.
 * The version is read once per transaction.
 */
void
paygw_require_sql_version(void)
{
	static LocalTransactionId checked_in = InvalidLocalTransactionId;
	char	   *version = NULL;

	if (checked_in == PAYGW_MY_LXID)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'paygw'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (version == NULL || strcmp(version, PAYGW_SQL_VERSION) != 0)
	{
		char	   *have = version ? pstrdup(version) : NULL;

		SPI_finish();
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("paygw's SQL objects in this database are version %s, this library needs %s",
					   have ? have : "(none)", PAYGW_SQL_VERSION),
				errhint("Run ALTER EXTENSION paygw UPDATE in this database."));
	}
	SPI_finish();
	checked_in = PAYGW_MY_LXID;
}

/*
 * *plan, prepared from sql (with nargs arguments of argtypes) and kept for
 * the life of the backend on first use.  Inside an SPI connection.
 * cursor_options: 0, or CURSOR_OPT_CUSTOM_PLAN for a statement that must be
 * planned afresh for each execution.
 */
SPIPlanPtr
paygw_spi_prepare_once_opts(SPIPlanPtr *plan, const char *sql, int nargs,
							Oid *argtypes, int cursor_options)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

SPIPlanPtr
paygw_spi_prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return paygw_spi_prepare_once_opts(plan, sql, nargs, argtypes, 0);
}

/* The same for a statement with one text argument. */
static SPIPlanPtr
prepare_once(SPIPlanPtr *plan, const char *sql)
{
	Oid			argtypes[1] = {TEXTOID};

	return paygw_spi_prepare_once(plan, sql, 1, argtypes);
}

/*
 * Replace sealed secret, secret_password and webhook_key with their
 * plaintexts, in CurrentMemoryContext and wiped when it is reset.  Plaintext
 * values stay as they are.
 */
bool
paygw_account_open_secrets(PaygwAccount *account, PaygwError *err)
{
	if (paygw_secret_is_sealed(account->secret))
	{
		char	   *plain = paygw_secret_open(account->secret, account->name, "secret", err);

		if (plain == NULL)
			return false;
		paygw_wipe_on_reset(plain);
		account->secret = plain;
	}
	if (paygw_secret_is_sealed(account->secret_password))
	{
		char	   *plain = paygw_secret_open(account->secret_password, account->name,
											  "secret_password", err);

		if (plain == NULL)
			return false;
		paygw_wipe_on_reset(plain);
		account->secret_password = plain;
	}
	if (paygw_secret_is_sealed(account->webhook_key))
	{
		char	   *plain = paygw_secret_open(account->webhook_key, account->name,
											  "webhook_key", err);

		if (plain == NULL)
			return false;
		paygw_wipe_on_reset(plain);
		account->webhook_key = plain;
	}
	return true;
}

/*
 * Fill in what is derived from the row: the effective base URL (the
 * provider's production address when NULL) and the options.  Checks the
 * options against the provider's list.
 */
bool
paygw_account_complete(PaygwAccount *account, Jsonb *options, PaygwError *err)
{
	const PaygwProvider *prov = account->provider;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!paygw_parse_base_url(account->base_url ? account->base_url : prov->default_base_url,
							  &account->base_url, err))
		return false;

	account->digest = "sha1";
	account->options = options;
	if (options == NULL)
		return true;
	if (!JB_ROOT_IS_OBJECT(options))
		return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							   "credential options must be a JSON object");

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		bool		known = false;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (const char *const *k = prov->option_keys; *k; k++)
			known |= strcmp(*k, key) == 0;
		if (prov->create != NULL && strcmp(key, "create") == 0)
		{
			tok = JsonbIteratorNext(&it, &v, true);
			if (!paygw_create_check_defaults(prov, &v, err))
				return false;
			account->create_defaults = v.val.binary.data;
			continue;
		}
		if (!known)
		{
			paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							"unknown %s credential option \"%s\"", prov->name, key);
			{
				StringInfoData keys;

				initStringInfo(&keys);
				for (const char *const *k = prov->option_keys; *k; k++)
					appendStringInfo(&keys, "\"%s\"%s", *k, k[1] ? ", " : " ");
				if (keys.len == 0)
					paygw_error_hint(err, "The only option is \"create\" (defaults for paygw_create_invoice).");
				else
					paygw_error_hint(err, "The options are %sand \"create\" (defaults for paygw_create_invoice).",
									 keys.data);
			}
			return false;
		}
		tok = JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "digest") == 0)
		{
			if (v.type != jbvString)
				return paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
									   "credential option \"digest\" must be a string");
			account->digest = pnstrdup(v.val.string.val, v.val.string.len);
		}
	}
	return true;
}

/*
 * Run the account lookup for (prov, name): by name when name is given,
 * otherwise all accounts of prov.  The query's first two columns must be
 * name and provider.  Inside an SPI connection.  Returns the row to use, or
 * NULL with err filled: no such account, several and none named, or an
 * account of another provider.  *prov_out is the row's provider.
 */
static HeapTuple
lookup_account(const PaygwProvider *prov, const char *name,
			   SPIPlanPtr *by_name, SPIPlanPtr *by_provider, const char *columns,
			   const PaygwProvider **prov_out, PaygwError *err)
{
	Datum		arg;
	int			ret;
	uint64		nrows;
	char	   *provider;

	if (name != NULL)
	{
		arg = CStringGetTextDatum(name);
		ret = SPI_execute_plan(prepare_once(by_name,
											psprintf("SELECT %s FROM paygw.credentials WHERE name = $1",
													 columns)),
							   &arg, NULL, false, 2);
	}
	else
	{
		arg = CStringGetTextDatum(prov->name);
		ret = SPI_execute_plan(prepare_once(by_provider,
											psprintf("SELECT %s FROM paygw.credentials"
													 " WHERE provider = $1 ORDER BY name",
													 columns)),
							   &arg, NULL, false, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading paygw.credentials failed: %s", SPI_result_code_string(ret));
	nrows = SPI_processed;

	if (nrows == 0)
	{
		if (name != NULL)
			paygw_set_error(err, PAYGW_ERR_UNKNOWN_ACCOUNT,
							"no account named \"%s\" in paygw.credentials", name);
		else
		{
			paygw_set_error(err, PAYGW_ERR_UNKNOWN_ACCOUNT,
							"no %s account is configured", prov->name);
			paygw_error_hint(err, "Add one to paygw.credentials.");
		}
		return NULL;
	}
	if (nrows > 1)
	{
		StringInfoData names;

		initStringInfo(&names);
		for (uint64 i = 0; i < nrows && i < 20; i++)
			appendStringInfo(&names, "%s%s", i ? ", " : "",
							 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		paygw_set_error(err, PAYGW_ERR_AMBIGUOUS_ACCOUNT,
						"more than one %s account is configured", prov->name);
		paygw_error_hint(err, "Pass the account name as the third argument; one of: %s.", names.data);
		return NULL;
	}

	provider = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	*prov_out = prov ? prov : paygw_provider_lookup(provider, err);
	if (*prov_out == NULL)
		return NULL;
	if (strcmp(provider, (*prov_out)->name) != 0)
	{
		paygw_set_error(err, PAYGW_ERR_UNKNOWN_ACCOUNT,
						"account \"%s\" belongs to provider %s, not %s",
						name, provider, (*prov_out)->name);
		return NULL;
	}
	return SPI_tuptable->vals[0];
}

/* Wipe account's secrets when their memory context is reset. */
static void
secrets_wiped_on_reset(PaygwAccount *account)
{
	if (account->secret)
		paygw_wipe_on_reset(account->secret);
	if (account->secret_password)
		paygw_wipe_on_reset(account->secret_password);
	if (account->webhook_key)
		paygw_wipe_on_reset(account->webhook_key);
}

/*
 * The account to use for prov: the one named name, or when name is NULL the
 * provider's only account.  With prov NULL, the account named name whatever
 * its provider.  Result and strings in CurrentMemoryContext; the secrets are
 * wiped when it is reset.  NULL with err filled when there is no such
 * account, or several and none was named.
 */
PaygwAccount *
paygw_account_fetch(const PaygwProvider *prov, const char *name, PaygwError *err)
{
	MemoryContext cxt = CurrentMemoryContext;
	PaygwAccount *account = NULL;
	HeapTuple	tuple;
	bool		with_webhook_key;

	Assert(prov != NULL || name != NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	with_webhook_key = paygw_credentials_have_webhook_key();
	if (with_webhook_key)
		tuple = lookup_account(prov, name, &plan_webhook_by_name, &plan_webhook_by_provider,
							   CREDENTIAL_COLUMNS_WEBHOOK, &prov, err);
	else
		tuple = lookup_account(prov, name, &plan_by_name, &plan_by_provider,
							   CREDENTIAL_COLUMNS, &prov, err);
	if (tuple != NULL)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		options = SPI_getbinval(tuple, desc, 7, &isnull);
		Jsonb	   *opts = NULL;

		account = MemoryContextAllocZero(cxt, sizeof(PaygwAccount));
		account->provider = prov;
		account->name = copy_text(tuple, desc, 1, cxt, false);
		account->merchant_id = copy_text(tuple, desc, 3, cxt, false);
		account->secret = copy_text(tuple, desc, 4, cxt, true);
		account->secret_password = copy_text(tuple, desc, 5, cxt, true);
		account->base_url = copy_text(tuple, desc, 6, cxt, false);
		if (with_webhook_key)
			account->webhook_key = copy_text(tuple, desc, 8, cxt, true);
		if (!isnull)
		{
			Jsonb	   *j = DatumGetJsonbP(options);

			opts = MemoryContextAlloc(cxt, VARSIZE(j));
			memcpy(opts, j, VARSIZE(j));
		}
		MemoryContextSwitchTo(cxt);
		secrets_wiped_on_reset(account);
		if (!paygw_account_open_secrets(account, err) ||
			!paygw_account_complete(account, opts, err))
			account = NULL;
	}

	SPI_finish();
	return account;
}

/*
 * A copy of src in CurrentMemoryContext, its secrets wiped when that is
 * reset.
 */
static PaygwAccount *
account_copy(const PaygwAccount *src)
{
	PaygwAccount *account = palloc(sizeof(PaygwAccount));

	*account = *src;
	account->name = pstrdup(src->name);
	account->merchant_id = src->merchant_id ? pstrdup(src->merchant_id) : NULL;
	account->base_url = pstrdup(src->base_url);
	account->digest = pstrdup(src->digest);
	account->secret = src->secret ? pstrdup(src->secret) : NULL;
	account->secret_password = src->secret_password ? pstrdup(src->secret_password) : NULL;
	account->webhook_key = src->webhook_key ? pstrdup(src->webhook_key) : NULL;
	secrets_wiped_on_reset(account);
	if (src->options != NULL)
	{
		account->options = palloc(VARSIZE(src->options));
		memcpy(account->options, src->options, VARSIZE(src->options));
		if (src->create_defaults != NULL)
			account->create_defaults = (JsonbContainer *)
				((char *) account->options + ((char *) src->create_defaults - (char *) src->options));
	}
	return account;
}

/* One account (or the error its fetch gave) in a PaygwAccountBatch. */
typedef struct BatchEntry
{
	const PaygwProvider *prov;
	char	   *name;			/* as asked for; NULL: the provider's only one */
	PaygwAccount *account;		/* NULL: err says why */
	PaygwError	err;
} BatchEntry;

struct PaygwAccountBatch
{
	MemoryContext cxt;			/* holds the batch, its entries and accounts */
	BatchEntry *entries;
	int			n;
	int			size;
};

/*
 * A set of accounts fetched once for many calls in one transaction (the
 * worker's claim of a batch), in a new child of CurrentMemoryContext.
 * paygw_account_batch_free() deletes it and wipes the secrets it holds.
 */
PaygwAccountBatch *
paygw_account_batch_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "paygw accounts",
											  ALLOCSET_SMALL_SIZES);
	PaygwAccountBatch *batch = MemoryContextAllocZero(cxt, sizeof(PaygwAccountBatch));

	batch->cxt = cxt;
	return batch;
}

void
paygw_account_batch_free(PaygwAccountBatch *batch)
{
	MemoryContextDelete(batch->cxt);
}

/*
 * paygw_account_fetch(prov, name, err), fetched only the first time batch
 * is asked for it: a copy in CurrentMemoryContext (secrets wiped when it is
 * reset), or NULL with err filled as that first fetch filled it.
 */
PaygwAccount *
paygw_account_batch_fetch(PaygwAccountBatch *batch, const PaygwProvider *prov,
						  const char *name, PaygwError *err)
{
	BatchEntry *e = NULL;

	for (int i = 0; i < batch->n; i++)
	{
		BatchEntry *b = &batch->entries[i];

		if (b->prov == prov &&
			(name == NULL ? b->name == NULL : b->name != NULL && strcmp(b->name, name) == 0))
		{
			e = b;
			break;
		}
	}
	if (e == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(batch->cxt);

		if (batch->n == batch->size)
		{
			batch->size = Max(4, batch->size * 2);
			batch->entries = batch->entries
				? repalloc(batch->entries, sizeof(BatchEntry) * batch->size)
				: palloc(sizeof(BatchEntry) * batch->size);
		}
		e = &batch->entries[batch->n];
		memset(e, 0, sizeof(BatchEntry));
		e->prov = prov;
		e->name = name ? pstrdup(name) : NULL;
		e->account = paygw_account_fetch(prov, name, &e->err);
		batch->n++;
		MemoryContextSwitchTo(oldcxt);
	}
	if (e->account == NULL)
	{
		*err = e->err;
		return NULL;
	}
	return account_copy(e->account);
}

/*
 * The name of the account to use for prov (the one named name, or the
 * provider's only account), with the same rules and errors as
 * paygw_account_fetch() but without reading any secret.  palloc'd in
 * CurrentMemoryContext; NULL with err filled.
 */
char *
paygw_account_resolve(const PaygwProvider *prov, const char *name, PaygwError *err)
{
	static SPIPlanPtr by_name = NULL;
	static SPIPlanPtr by_provider = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *result = NULL;
	HeapTuple	tuple;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	tuple = lookup_account(prov, name, &by_name, &by_provider, "name, provider", &prov, err);
	if (tuple != NULL)
		result = copy_text(tuple, SPI_tuptable->tupdesc, 1, cxt, false);
	SPI_finish();
	return result;
}

static bool
is_loopback_host(const char *host, size_t len)
{
	if (len == 9 && pg_strncasecmp(host, "localhost", 9) == 0)
		return true;
	if (len == 5 && strncmp(host, "[::1]", 5) == 0)
		return true;
	if (len >= 4 && strncmp(host, "127.", 4) == 0)
	{
		int			dots = 0;

		for (size_t i = 0; i < len; i++)
		{
			if (host[i] == '.')
				dots++;
			else if (host[i] < '0' || host[i] > '9')
				return false;
		}
		return dots == 3;
	}
	return false;
}

static bool
base_url_error(PaygwError *err, const char *why)
{
	paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL, "invalid base_url");
	paygw_error_detail(err, "%s", why);
	paygw_error_hint(err, "Use scheme://host[:port][/prefix], e.g. https://api.example.com or http://127.0.0.1:8080/okepay; NULL means the gateway's production address.");
	return false;
}

/*
 * Check a base URL of the form scheme://host[:port][/prefix] and return it
 * without trailing slashes (palloc'd).  https anywhere; http only for a
 * loopback host.  No user info, query, fragment, whitespace or non-ASCII.
 */
bool
paygw_parse_base_url(const char *url, char **normalized, PaygwError *err)
{
	const char *p;
	const char *host;
	size_t		hostlen;
	bool		https;
	size_t		len;

	if (pg_strncasecmp(url, "https://", 8) == 0)
	{
		https = true;
		p = url + 8;
	}
	else if (pg_strncasecmp(url, "http://", 7) == 0)
	{
		https = false;
		p = url + 7;
	}
	else
		return base_url_error(err, "The scheme must be https (or http for a loopback host).");

	host = p;
	if (strchr(p, '@') != NULL && (strchr(p, '/') == NULL || strchr(p, '@') < strchr(p, '/')))
		return base_url_error(err, "User information (user:password@) is not allowed in base_url.");
	if (*p == '[')
	{
		while (*p && *p != ']')
		{
			if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.' && *p != '[')
				return base_url_error(err, "The IPv6 address is malformed.");
			p++;
		}
		if (*p++ != ']')
			return base_url_error(err, "The IPv6 address is not closed by ].");
	}
	else
		while (isalnum((unsigned char) *p) || *p == '-' || *p == '.' || *p == '_')
			p++;
	hostlen = p - host;
	if (hostlen == 0)
		return base_url_error(err, "The host is missing.");

	if (*p == ':')
	{
		long		port = 0;
		int			digits = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			port = port * 10 + (*p - '0');
		if (digits == 0 || digits > 5 || port < 1 || port > 65535)
			return base_url_error(err, "The port must be a number from 1 to 65535.");
	}
	if (*p != '\0' && *p != '/')
		return base_url_error(err, "The host may be followed only by :port and a /path prefix (no user info, query or fragment).");

	for (const char *q = p; *q; q++)
	{
		if (!isalnum((unsigned char) *q) && strchr("/-._~!$&'()*+,;=:@", *q) == NULL)
			return base_url_error(err, "The path prefix may contain only unreserved URL characters (no query, fragment, spaces or percent signs).");
	}
	if (!https && !is_loopback_host(host, hostlen))
		return base_url_error(err, "Plain http is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]).");

	len = strlen(url);
	while (len > 0 && url[len - 1] == '/' && url + len - 1 >= p)
		len--;
	*normalized = pnstrdup(url, len);
	return true;
}
