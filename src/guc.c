/*-------------------------------------------------------------------------
 *
 * guc.c
 *		paygw's configuration settings.
 *
 * All settings but paygw.database are superuser-only (PGC_SUSET): an
 * application role must not be able to loosen the bounds an operator set.
 * Operators can still set them per role or per database with ALTER
 * ROLE/DATABASE ... SET.  paygw.database is read by the launcher, from the
 * server configuration only (PGC_SIGHUP: a reload applies it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "paygw.h"

int			paygw_timeout_ms = 10000;
int			paygw_connect_timeout_ms = 3000;
int			paygw_max_response_size = 1024 * 1024;
char	   *paygw_database = NULL;
int			paygw_launcher_naptime_s = 10;
char	   *paygw_ca_file = NULL;
char	   *paygw_key_file = NULL;
bool		paygw_debug = false;
int			paygw_key_cache_ttl_s = 60;
int			paygw_naptime_ms = 1000;
int			paygw_batch_size = 100;
int			paygw_max_concurrency = 16;
int			paygw_max_per_account = 8;
int			paygw_backoff_initial_s = 30;
int			paygw_backoff_max_s = 3600;
int			paygw_give_up_after_s = 7 * 24 * 3600;
int			paygw_lease_time_s = 300;
int			paygw_webhook_max_size = 64 * 1024;
int			paygw_webhook_min_interval_s = 10;
int			paygw_webhook_replay_window_s = 24 * 3600;
int			paygw_webhook_probe_rate = 60;
int			paygw_webhook_retention_s = 30 * 24 * 3600;
int			paygw_event_retention_s = 0;

/* paygw.database must be a list of names (quoted with "" where needed) */
static bool
check_database_list(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval ? *newval : "");
	List	   *names = NIL;
	bool		ok = SplitGUCList(raw, ',', &names);

	(void) extra;
	(void) source;
	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/* Define the settings; called from _PG_init. */
void
paygw_guc_init(void)
{
	DefineCustomIntVariable("paygw.timeout",
							"Total time a gateway call may take.",
							"Covers connecting, sending and reading the whole reply.",
							&paygw_timeout_ms,
							10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.connect_timeout",
							"Time a connection to a gateway may take to establish.",
							"Includes name resolution and the TLS handshake.",
							&paygw_connect_timeout_ms,
							3000, 10, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.max_response_size",
							"Largest gateway reply paygw reads.",
							"A reply is abandoned as soon as it grows past this size.",
							&paygw_max_response_size,
							1024 * 1024, 1024, 16 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomStringVariable("paygw.ca_file",
							   "Extra CA certificates (PEM file) trusted for https gateways.",
							   "Added to the system's trust store, never instead of it.",
							   &paygw_ca_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("paygw.key_file",
							   "Keyring file whose first key encrypts credential secrets.",
							   "One key per line, 64 hexadecimal digits; readable only by the server's user.  Empty: secrets are stored as given.",
							   &paygw_key_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("paygw.debug",
							 "Log every gateway call and every worker batch.",
							 "Method, host, path (never the query string), HTTP status, size and time; no header, body or secret.",
							 &paygw_debug,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.key_cache_ttl",
							"How long a parsed AliKassa private key stays cached unused.",
							"Parsing an encrypted key costs its passphrase KDF; 0 frees the parsed key after every call.",
							&paygw_key_cache_ttl_s,
							60, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("paygw.database",
							   "Databases the reconciliation workers work in: a comma-separated list, or * for every database.",
							   "Needs shared_preload_libraries = 'paygw'.  One worker runs in each listed database where the extension is created; * means every database that allows connections and is not a template.",
							   &paygw_database,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_database_list, NULL, NULL);
	DefineCustomIntVariable("paygw.launcher_naptime",
							"How often the launcher looks for databases that need a worker.",
							"CREATE EXTENSION, DROP EXTENSION and CREATE DATABASE wake it at once; the naptime bounds the rest.",
							&paygw_launcher_naptime_s,
							10, 1, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.naptime",
							"Longest time the worker sleeps when no invoice is due.",
							"It wakes earlier when the next invoice falls due, or when a commit makes one due.",
							&paygw_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.batch_size",
							"Most invoices the worker claims at once.",
							NULL,
							&paygw_batch_size,
							100, 1, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.max_concurrency",
							"Most gateway requests in flight at once per process (the worker, or one paygw_refresh call).",
							NULL,
							&paygw_max_concurrency,
							16, 1, 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.max_per_account",
							"Most gateway requests in flight at once for one account.",
							"Gateways publish no rate limits; keep this modest.",
							&paygw_max_per_account,
							8, 1, 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.backoff_initial",
							"Delay before an invoice is checked again the first time.",
							"Each further check doubles it (with +-20% jitter) up to paygw.backoff_max.",
							&paygw_backoff_initial_s,
							30, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.backoff_max",
							"Longest delay between two checks of an invoice.",
							NULL,
							&paygw_backoff_max_s,
							3600, 1, 30 * 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.give_up_after",
							"Age after which a still-open invoice is no longer polled.",
							"It keeps its status and gets gave_up_at set.",
							&paygw_give_up_after_s,
							7 * 86400, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.lease_time",
							"How long the worker's claim on an invoice lasts.",
							"Lengthened to cover the worker's queue.  The next worker run takes a dead run's claims over at once; the lease bounds how long paygw_refresh and paygw_check_invoice wait for a claim whose owner cannot be told.",
							&paygw_lease_time_s,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.webhook_max_size",
							"Largest webhook paygw_webhook accepts (body, query and headers together).",
							"A larger one is refused with PW041 and changes nothing.",
							&paygw_webhook_max_size,
							64 * 1024, 1024, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.webhook_min_interval",
							"Shortest time between two status calls a burst of webhooks for one invoice causes.",
							"A webhook makes its invoice due at the earliest now, at the latest this long after its last check.",
							&paygw_webhook_min_interval_s,
							10, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.webhook_replay_window",
							"How long the same webhook request is recognised as a replay.",
							NULL,
							&paygw_webhook_replay_window_s,
							24 * 3600, 0, 30 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.webhook_probe_rate",
							"Most status calls per minute and account for webhooks about payments paygw does not track.",
							"Each such payment is checked once (by the worker, or by paygw_webhook with confirm) and tracked only if the gateway has it; hints beyond the rate are ignored.  0 checks none.",
							&paygw_webhook_probe_rate,
							60, 0, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.webhook_retention",
							"Age after which the worker deletes rows of paygw.webhooks.",
							"0 keeps them forever.  Deleted in small batches while the worker is idle.",
							&paygw_webhook_retention_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("paygw.event_retention",
							"Age after which the worker deletes rows of paygw.invoice_events.",
							"0 (the default) keeps them forever: they are the payments' audit trail.  Deleted in small batches while the worker is idle.",
							&paygw_event_retention_s,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("paygw");
}
