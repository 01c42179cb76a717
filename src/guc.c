/*-------------------------------------------------------------------------
 *
 * guc.c
 *		paygw's configuration settings.
 *
 * All settings are superuser-only (PGC_SUSET): an application role must not
 * be able to loosen the bounds an operator set.  Operators can still set
 * them per role or per database with ALTER ROLE/DATABASE ... SET.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "paygw.h"

int			paygw_timeout_ms = 10000;
int			paygw_connect_timeout_ms = 3000;
int			paygw_max_response_size = 1024 * 1024;

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
							1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("paygw");
}
