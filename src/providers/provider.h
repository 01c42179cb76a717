/*-------------------------------------------------------------------------
 *
 * provider.h
 *		The interface every gateway implements, and helpers they share.
 *
 * A provider checks ids and credentials against its gateway's rules, builds
 * and signs its request, and turns the reply into a PaygwStatusResult.  It
 * sees only the http/ and crypto/ interfaces, never libcurl or OpenSSL, and
 * never ereports for an expected failure: it fills a PaygwError.
 *
 * Ids reach build_request() already converted to UTF-8, the encoding every
 * gateway expects on the wire.  Everything is palloc'd in the call's context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_PROVIDER_H
#define PAYGW_PROVIDER_H

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "http/http.h"
#include "json.h"
#include "paygw.h"

/*
 * A webhook as the application's HTTP handler received it.  body and query
 * are UTF-8 (the bytes on the wire; the SQL layer converts from the
 * database encoding); headers' names compare case-insensitively.
 */
typedef struct PaygwWebhookRequest
{
	const char *body;			/* the raw body as text, "" when there was none */
	size_t		body_len;
	Jsonb	   *headers;		/* a JSON object of the request's headers, or NULL */
	const char *query;			/* the query string without '?', or NULL */
} PaygwWebhookRequest;

/* What a provider reads from a webhook; strings palloc'd in the call's context. */
typedef struct PaygwWebhookInfo
{
	bool		verified;		/* the gateway's own signature was checked and is good */
	char	   *payment_id;		/* the payment it is about (canonical), NULL if not named */
	char	   *order_id;		/* the merchant's order id, NULL if not named */
	char	   *event;			/* the gateway's status or event text, NULL if none */
} PaygwWebhookInfo;

/*
 * Creating invoices.  A provider describes the options its create call takes
 * as data (PaygwOption); the SQL layer checks a call's options against that
 * table before any request is made, and hands the provider the checked
 * values in table order.  The provider then builds and signs one request per
 * step (Obmenka needs two: create, then process for the pay link) and reads
 * each reply.
 */
typedef enum PaygwOptionKind
{
	PAYGW_OPT_TEXT,				/* a string of at most max characters */
	PAYGW_OPT_URL,				/* an http:// or https:// URL */
	PAYGW_OPT_INT,				/* an integer in [min, max] (digits in a string too) */
	PAYGW_OPT_BOOL,				/* true or false */
	PAYGW_OPT_DECIMAL,			/* a number >= 0 with at most 2 decimals, below max */
	PAYGW_OPT_IP,				/* an IPv4 or IPv6 address */
	PAYGW_OPT_TEXT_ARRAY,		/* an array of strings */
	PAYGW_OPT_INT_ARRAY,		/* an array of non-negative integers */
	PAYGW_OPT_OBJECT,			/* a JSON object, passed on as given */
	PAYGW_OPT_ARRAY,			/* a JSON array, passed on as given */
	PAYGW_OPT_JSON_TEXT			/* an object (or a string holding JSON): sent as a
								 * JSON text of at most max characters */
} PaygwOptionKind;

typedef struct PaygwOption
{
	const char *name;			/* the key in options, and the gateway's field */
	PaygwOptionKind kind;
	bool		required;
	int64		min;			/* PAYGW_OPT_INT: the range */
	int64		max;			/* ... TEXT, JSON_TEXT: the longest; DECIMAL: the bound */
} PaygwOption;

/* One create call as the provider sees it; strings UTF-8, palloc'd. */
typedef struct PaygwCreateRequest
{
	const char *order_id;
	const char *amount;			/* major units, exactly 2 decimals: "10.50" */
	const char *amount_minor;	/* minor units: "1050" */
	const char *currency;		/* as given, or NULL */
	const PaygwOption *options; /* the provider's table */
	JsonbValue **values;		/* checked values, by table index; NULL: not given */
	int			step;			/* 0: the create call; 1..: follow-ups */
	const char *payment_id;		/* the gateway's id, known after step 0 */
} PaygwCreateRequest;

/* What a create step's reply said; strings palloc'd. */
typedef struct PaygwCreateResult
{
	bool		duplicate;		/* the gateway already has this order id */
	char	   *payment_id;
	char	   *provider_status;
	PaygwStatus status;
	bool		status_known;
	char	   *pay_url;
	int64		expires_in_s;	/* from now; < 0 when unknown */
	Jsonb	   *response;
} PaygwCreateResult;

typedef struct PaygwCreateSpec
{
	const PaygwOption *options; /* terminated by a NULL name */
	int			steps;			/* requests per create (1 or 2) */
	const char *const *step_names;	/* for the combined response */
	int			order_max_chars;

	/*
	 * Check the currency (NULL when not given) against what the gateway
	 * takes and the options, and spell it as the gateway does; *iso: the ISO code status calls will report
	 * (for comparing a duplicate), NULL when unknown.
	 */
	bool		(*check_currency) (PaygwCreateRequest *in, char **iso,
								   PaygwError *err);
	bool		(*build) (PaygwAccount *account, const PaygwCreateRequest *in,
						  PaygwHttpRequest *req, PaygwError *err);
	/* read a step's reply into out (fields it does not know left as they are) */
	bool		(*parse) (PaygwAccount *account, const PaygwCreateRequest *in,
						  PaygwHttpResponse *resp, PaygwCreateResult *out,
						  PaygwError *err);
} PaygwCreateSpec;

typedef struct PaygwProvider
{
	const char *name;
	const char *default_base_url;
	const char *auth_scheme;	/* one line, for paygw.providers */
	const char *id_name;		/* the gateway's name for its own id */
	const char *order_name;		/* ... for the merchant's id, NULL if none */
	const char *const *option_keys; /* allowed keys of credentials.options */
	bool		secret_password;	/* its secret can be encrypted: secret_password opens it */

	/*
	 * The gateway's signature of message (for paygw.sign and the vectors).
	 * account supplies secret, secret_password and digest.  NULL with err
	 * filled when the provider cannot sign.
	 */
	char	   *(*sign) (PaygwAccount *account, const char *message, size_t len,
						 PaygwError *err);
	/* check merchant_id, secret and options of a credential row */
	bool		(*check_account) (PaygwAccount *account, PaygwError *err);
	/* the canonical spelling of a valid id (NULL: as given) */
	char	   *(*canonical_id) (PaygwLookup lookup, const char *id);
	/* check an id against the gateway's format rules */
	bool		(*check_id) (PaygwLookup lookup, const char *id, PaygwError *err);
	/* build and sign the status request */
	bool		(*build_request) (PaygwAccount *account, PaygwLookup lookup,
								  const char *id, PaygwHttpRequest *req,
								  PaygwError *err);
	/* interpret a completed transfer */
	bool		(*parse_reply) (PaygwAccount *account, PaygwLookup lookup,
								const char *id, PaygwHttpResponse *resp,
								PaygwStatusResult *result, PaygwError *err);

	/*
	 * Webhooks.  webhook_signed: the gateway signs them, and an account
	 * needs webhook_key to accept them.  parse_webhook reads one: where the
	 * gateway signs, it checks the signature with account->webhook_key (a
	 * missing key, a missing or bad signature: PAYGW_ERR_WEBHOOK_SIGNATURE);
	 * a request that is not the gateway's webhook shape is
	 * PAYGW_ERR_WEBHOOK_INVALID.  It never trusts what the webhook says
	 * about the status: info->event is kept for the record only.
	 */
	bool		webhook_signed;
	bool		(*parse_webhook) (PaygwAccount *account,
								  const PaygwWebhookRequest *req,
								  PaygwWebhookInfo *info, PaygwError *err);

	/*
	 * Checks account->webhook_key (already opened) when a credential row
	 * sets one; NULL exactly when !webhook_signed, and then a webhook_key is
	 * refused.  webhook_key_secret: the key is a secret, sealed at rest like
	 * secret; false for a public key, which is stored as given.
	 */
	bool		(*check_webhook_key) (PaygwAccount *account, PaygwError *err);
	bool		webhook_key_secret;

	/* creating invoices: NULL when paygw cannot create them here */
	const PaygwCreateSpec *create;
} PaygwProvider;

extern const PaygwProvider paygw_okepay;
extern const PaygwProvider paygw_obmenka;
extern const PaygwProvider paygw_alikassa;
extern const PaygwProvider paygw_morune;

/* common.c: the registry */
extern const PaygwProvider *const paygw_providers[];
extern const int paygw_provider_count;
extern const PaygwProvider *paygw_provider_find(const char *name);
extern const PaygwProvider *paygw_provider_lookup(const char *name, PaygwError *err);
extern char *paygw_provider_names(void);
extern char *paygw_provider_names_with_password(void);

/* common.c: helpers shared by the providers */
extern bool paygw_is_uuid(const char *s);
extern bool paygw_has_control_chars(const char *s);
extern bool paygw_check_id_text(const PaygwProvider *prov, PaygwLookup lookup,
								const char *id, int max_chars, PaygwError *err);
extern bool paygw_unsupported_lookup(const PaygwProvider *prov, PaygwError *err);
extern char *paygw_json_body(const char *key, const char *value);
extern Jsonb *paygw_reply_json(const PaygwProvider *prov,
							   PaygwHttpResponse *resp, PaygwError *err);
extern bool paygw_reply_error(const PaygwProvider *prov, long http_status,
							  long body_code, const char *message,
							  PaygwError *err);
extern bool paygw_reply_field(const PaygwProvider *prov, JsonbContainer *obj,
							  const char *key, char **out, PaygwError *err);
extern bool paygw_reply_status(const PaygwProvider *prov,
							   const PaygwStatusMap *map, JsonbContainer *obj,
							   const char *key, PaygwStatusResult *result,
							   PaygwError *err);
extern bool paygw_reply_amount(const PaygwProvider *prov, JsonbContainer *obj,
							   const char *key, int minor_digits,
							   PaygwStatusResult *result, PaygwError *err);
extern bool paygw_reply_matches(const PaygwProvider *prov, const char *field,
								const char *got, const char *wanted,
								bool case_insensitive, PaygwError *err);
extern char *paygw_currency_suffix(const char *code, char separator);

/* create_body.c: options, and helpers for building create requests */
extern int	paygw_option_index(const PaygwOption *options, const char *name);
extern JsonbValue *paygw_create_value(const PaygwCreateRequest *in,
									  const char *name);
extern char *paygw_create_text(const PaygwCreateRequest *in, const char *name);
extern void paygw_json_append_value(StringInfo buf, JsonbValue *v);
extern void paygw_create_append_json(StringInfo buf, const PaygwCreateRequest *in,
									 const char *const *skip);
extern void paygw_create_append_form(StringInfo buf, const PaygwCreateRequest *in);
extern bool paygw_create_check_option(const PaygwProvider *prov,
									  const PaygwOption *opt, JsonbValue *v,
									  JsonbValue **out, PaygwError *err);
extern bool paygw_create_collect(const PaygwProvider *prov,
								 JsonbContainer *obj, JsonbValue **values,
								 PaygwError *err);
extern bool paygw_create_check_defaults(const PaygwProvider *prov,
										JsonbValue *v, PaygwError *err);
extern bool paygw_create_status(const PaygwProvider *prov,
								const PaygwStatusMap *map, JsonbContainer *obj,
								const char *key, PaygwCreateResult *out,
								PaygwError *err);
extern void paygw_create_set_status(const PaygwStatusMap *map,
									const char *provider_status,
									PaygwCreateResult *out);
extern bool paygw_create_require_id(const PaygwProvider *prov,
									const PaygwCreateResult *out,
									const char *field, PaygwError *err);
extern bool paygw_create_reply_error(const PaygwProvider *prov,
									 PaygwHttpResponse *resp, long body_code,
									 const char *message, PaygwError *err);

/* webhook_json.c: reading webhooks, and the canonical texts gateways sign */
extern bool paygw_json_append_string(StringInfo buf, const char *s, size_t len,
									 bool php);
extern char *paygw_webhook_json_sorted(const PaygwProvider *prov,
									   const char *body, size_t len, bool php,
									   PaygwError *err);
extern bool paygw_webhook_header(const PaygwProvider *prov,
								 const PaygwWebhookRequest *req,
								 const char *name, char **value,
								 PaygwError *err);
extern bool paygw_form_param(const PaygwProvider *prov, const char *query,
							 size_t len, const char *name, char **value,
							 PaygwError *err);
extern Jsonb *paygw_webhook_json(const PaygwProvider *prov,
								 const PaygwWebhookRequest *req,
								 PaygwError *err);
extern bool paygw_webhook_field(const PaygwProvider *prov, JsonbContainer *obj,
								const char *key, char **out, PaygwError *err);
extern bool paygw_webhook_id(const PaygwProvider *prov, PaygwLookup lookup,
							 const char *id, char **out, PaygwError *err);
extern bool paygw_webhook_no_key(const PaygwProvider *prov,
								 PaygwAccount *account, PaygwError *err);

#endif							/* PAYGW_PROVIDER_H */
