/*-------------------------------------------------------------------------
 *
 * errors.c
 *		paygw's error classes, their SQLSTATEs, and the one place where a
 *		PaygwError becomes an ereport.
 *
 * All SQLSTATEs live in class "PW" (an implementation-defined class), one per
 * error class, so application code can tell "payment not found" from "the
 * gateway timed out" without parsing messages; bad arguments get PostgreSQL's
 * own 22023.  The error table in docs/reference.md follows this list, and
 * test/checks/05-docs.sh fails when they differ.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>

#include "paygw.h"

typedef struct PaygwErrorClass
{
	PaygwErrorCode code;
	int			sqlstate;
	const char *name;
} PaygwErrorClass;

#define PW(a, b, c) MAKE_SQLSTATE('P', 'W', a, b, c)

static const PaygwErrorClass error_classes[] = {
	{PAYGW_ERR_UNKNOWN_PROVIDER, PW('0', '0', '1'), "unknown_provider"},
	{PAYGW_ERR_UNKNOWN_ACCOUNT, PW('0', '0', '2'), "unknown_account"},
	{PAYGW_ERR_AMBIGUOUS_ACCOUNT, PW('0', '0', '3'), "ambiguous_account"},
	{PAYGW_ERR_INVALID_ID, PW('0', '0', '4'), "invalid_payment_id"},
	{PAYGW_ERR_UNSUPPORTED, PW('0', '0', '5'), "unsupported_lookup"},
	{PAYGW_ERR_INVALID_CREDENTIAL, PW('0', '0', '6'), "invalid_credential"},
	{PAYGW_ERR_UNKNOWN_INVOICE, PW('0', '0', '7'), "unknown_invoice"},
	{PAYGW_ERR_INVOICE_BUSY, PW('0', '0', '8'), "invoice_busy"},
	{PAYGW_ERR_TRACK_CONFLICT, PW('0', '0', '9'), "tracking_conflict"},
	{PAYGW_ERR_NOT_FOUND, PW('0', '1', '0'), "payment_not_found"},
	{PAYGW_ERR_AUTH_REJECTED, PW('0', '1', '1'), "credentials_rejected"},
	{PAYGW_ERR_CONNECT, PW('0', '2', '0'), "connection_failed"},
	{PAYGW_ERR_TIMEOUT, PW('0', '2', '1'), "timeout"},
	{PAYGW_ERR_TLS, PW('0', '2', '2'), "tls_failed"},
	{PAYGW_ERR_CONNECTION_LOST, PW('0', '2', '3'), "connection_lost"},
	{PAYGW_ERR_MALFORMED_REPLY, PW('0', '3', '0'), "malformed_reply"},
	{PAYGW_ERR_REPLY_TOO_LARGE, PW('0', '3', '1'), "reply_too_large"},
	{PAYGW_ERR_REPLY_SIGNATURE, PW('0', '3', '2'), "reply_signature_invalid"},
	{PAYGW_ERR_GATEWAY, PW('0', '3', '3'), "gateway_error"},
	{PAYGW_ERR_WEBHOOK_SIGNATURE, PW('0', '4', '0'), "webhook_signature_invalid"},
	{PAYGW_ERR_WEBHOOK_INVALID, PW('0', '4', '1'), "webhook_invalid"},
	{PAYGW_ERR_INVALID_PARAMETER, ERRCODE_INVALID_PARAMETER_VALUE, "invalid_parameter"},
	{PAYGW_ERR_CANCELED, ERRCODE_QUERY_CANCELED, "canceled"},
	{PAYGW_ERR_INTERNAL, ERRCODE_INTERNAL_ERROR, "internal"},
};

static const PaygwErrorClass *
find_class(PaygwErrorCode code)
{
	for (size_t i = 0; i < lengthof(error_classes); i++)
		if (error_classes[i].code == code)
			return &error_classes[i];
	return &error_classes[lengthof(error_classes) - 1];
}

/* SQLSTATE of an error class. */
int
paygw_error_sqlstate(PaygwErrorCode code)
{
	return find_class(code)->sqlstate;
}

/* Short stable name of an error class (used as a key in status views). */
const char *
paygw_error_name(PaygwErrorCode code)
{
	if (code == PAYGW_OK)
		return "ok";
	return find_class(code)->name;
}

/*
 * Record an error: class and primary message.  Clears detail and hint.
 * Always returns false so callers can write "return paygw_set_error(...)".
 * Safe to call without palloc (inside callbacks).
 */
bool
paygw_set_error(PaygwError *err, PaygwErrorCode code, const char *fmt,...)
{
	va_list		ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->detail[0] = '\0';
	err->hint[0] = '\0';
	return false;
}

/* Add a detail sentence to an error already set. */
void
paygw_error_detail(PaygwError *err, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

/* Add a hint sentence to an error already set. */
void
paygw_error_hint(PaygwError *err, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
	va_end(ap);
}

/* Raise an error recorded by a lower layer, with its own SQLSTATE. */
void
paygw_raise(const PaygwError *err)
{
	ereport(ERROR,
			errcode(paygw_error_sqlstate(err->code)),
			errmsg_internal("%s", err->message),
			err->detail[0] ? errdetail_internal("%s", err->detail) : 0,
			err->hint[0] ? errhint("%s", err->hint) : 0);
	pg_unreachable();
}
