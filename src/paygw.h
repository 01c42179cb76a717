/*-------------------------------------------------------------------------
 *
 * paygw.h
 *		Types shared by every part of paygw: the error model, accounts, the
 *		normalized status result and the GUC variables.
 *
 * Lower layers (http/, crypto/, providers/) never ereport for an expected
 * failure: they fill a PaygwError and return false.  Only the SQL layer
 * (sql_*.c, create.c, webhooks.c) and the worker decide what becomes an
 * ereport.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_H
#define PAYGW_H

#include "postgres.h"

#include "compat.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#define PAYGW_VERSION "0.4"
/* the version of the SQL objects (paygw.control) this library needs */
#define PAYGW_SQL_VERSION "0.4"

/*
 * Error classes.  Each has its own SQLSTATE (see errors.c and the error
 * table in docs/reference.md, which test/checks/05-docs.sh compares).
 */
typedef enum PaygwErrorCode
{
	PAYGW_OK = 0,
	PAYGW_ERR_UNKNOWN_PROVIDER,
	PAYGW_ERR_UNKNOWN_ACCOUNT,
	PAYGW_ERR_AMBIGUOUS_ACCOUNT,
	PAYGW_ERR_INVALID_ID,
	PAYGW_ERR_UNSUPPORTED,
	PAYGW_ERR_INVALID_CREDENTIAL,
	PAYGW_ERR_UNKNOWN_INVOICE,
	PAYGW_ERR_INVOICE_BUSY,
	PAYGW_ERR_TRACK_CONFLICT,
	PAYGW_ERR_NOT_FOUND,
	PAYGW_ERR_AUTH_REJECTED,
	PAYGW_ERR_CONNECT,
	PAYGW_ERR_TIMEOUT,
	PAYGW_ERR_TLS,
	PAYGW_ERR_CONNECTION_LOST,
	PAYGW_ERR_MALFORMED_REPLY,
	PAYGW_ERR_REPLY_TOO_LARGE,
	PAYGW_ERR_REPLY_SIGNATURE,
	PAYGW_ERR_GATEWAY,
	PAYGW_ERR_WEBHOOK_SIGNATURE,
	PAYGW_ERR_WEBHOOK_INVALID,
	PAYGW_ERR_INVALID_PARAMETER,
	PAYGW_ERR_CANCELED,
	PAYGW_ERR_INTERNAL
} PaygwErrorCode;

#define PAYGW_ERROR_TEXT_LEN 256

/*
 * An error as reported by a lower layer: a class, the primary message and
 * optional detail and hint sentences.  Fixed buffers, so it can be filled
 * where palloc is not allowed (libcurl callbacks).  None of them ever holds a
 * secret, a signature, a header value or a request body.
 */
typedef struct PaygwError
{
	PaygwErrorCode code;
	char		message[PAYGW_ERROR_TEXT_LEN];
	char		detail[PAYGW_ERROR_TEXT_LEN];
	char		hint[PAYGW_ERROR_TEXT_LEN * 2];
} PaygwError;

extern bool paygw_set_error(PaygwError *err, PaygwErrorCode code,
							const char *fmt,...) pg_attribute_printf(3, 4);
extern void paygw_error_detail(PaygwError *err, const char *fmt,...) pg_attribute_printf(2, 3);
extern void paygw_error_hint(PaygwError *err, const char *fmt,...) pg_attribute_printf(2, 3);
extern int	paygw_error_sqlstate(PaygwErrorCode code);
extern const char *paygw_error_name(PaygwErrorCode code);
extern PAYGW_NORETURN_PREFIX void paygw_raise(const PaygwError *err) PAYGW_NORETURN_SUFFIX;

/* Normalized payment status; the order matches paygw.payment_status. */
typedef enum PaygwStatus
{
	PAYGW_STATUS_PENDING = 0,
	PAYGW_STATUS_AUTHORIZED,
	PAYGW_STATUS_PAID,
	PAYGW_STATUS_PARTIALLY_REFUNDED,
	PAYGW_STATUS_REFUNDED,
	PAYGW_STATUS_CHARGEBACK,
	PAYGW_STATUS_FAILED,
	PAYGW_STATUS_CANCELLED,
	PAYGW_STATUS_EXPIRED
} PaygwStatus;

extern const char *paygw_status_label(PaygwStatus status);

/* One provider's mapping of its own status text to PaygwStatus. */
typedef struct PaygwStatusMap
{
	const char *provider_status;
	PaygwStatus status;
} PaygwStatusMap;

extern bool paygw_status_lookup(const PaygwStatusMap *map,
								const char *provider_status,
								PaygwStatus *status);

/* How the caller identifies a payment. */
typedef enum PaygwLookup
{
	PAYGW_LOOKUP_ID,			/* the gateway's own id */
	PAYGW_LOOKUP_ORDER			/* the merchant's order id */
} PaygwLookup;

struct PaygwProvider;

/*
 * One row of paygw.credentials, as the C code sees it.  Strings are palloc'd
 * in the call's context; secret, secret_password and webhook_key are wiped
 * when that context goes away (see credentials.c).
 */
typedef struct PaygwAccount
{
	char	   *name;
	const struct PaygwProvider *provider;
	char	   *merchant_id;
	char	   *secret;
	char	   *secret_password;
	char	   *base_url;		/* without trailing slash; never NULL */
	char	   *digest;			/* alikassa: "sha1" or "sha256" */
	char	   *webhook_key;	/* what verifies the gateway's webhooks, or NULL */
	JsonbContainer *create_defaults;	/* options "create": defaults, or NULL */
	Jsonb	   *options;		/* the row's options (create_defaults points
								 * into them), or NULL */
} PaygwAccount;

/* The normalized answer of a status call, in the call's context. */
typedef struct PaygwStatusResult
{
	char	   *payment_id;
	char	   *order_id;
	PaygwStatus status;
	bool		status_known;	/* false: provider_status was not in the map */
	char	   *provider_status;
	Datum		amount;			/* numeric */
	bool		amount_isnull;
	char	   *currency;
	char	   *pay_url;		/* where the customer pays, when the reply says */
	Jsonb	   *response;
} PaygwStatusResult;

/* GUC variables (guc.c) */
extern int	paygw_timeout_ms;
extern int	paygw_connect_timeout_ms;
extern int	paygw_max_response_size;
extern char *paygw_ca_file;
extern char *paygw_key_file;
extern bool paygw_debug;
extern int	paygw_key_cache_ttl_s;
extern char *paygw_database;
extern int	paygw_launcher_naptime_s;
extern int	paygw_naptime_ms;
extern int	paygw_batch_size;
extern int	paygw_max_concurrency;
extern int	paygw_max_per_account;
extern int	paygw_backoff_initial_s;
extern int	paygw_backoff_max_s;
extern int	paygw_give_up_after_s;
extern int	paygw_lease_time_s;
extern int	paygw_webhook_max_size;
extern int	paygw_webhook_min_interval_s;
extern int	paygw_webhook_replay_window_s;
extern int	paygw_webhook_probe_rate;
extern int	paygw_webhook_retention_s;
extern int	paygw_event_retention_s;

extern void paygw_guc_init(void);

/* launcher.c */
extern void paygw_launcher_init(void);

/* worker.c */
extern void paygw_wake_worker_at_commit(TimestampTz next_check_at);
extern void paygw_wake_worker_for_probes_at_commit(void);

#endif							/* PAYGW_H */
