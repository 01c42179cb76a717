/*-------------------------------------------------------------------------
 *
 * paygw.c
 *		Module magic and initialization.  Each part of paygw has its own
 *		init function; this file only calls them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "accountcache.h"
#include "http/http.h"
#include "paygw.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	paygw_guc_init();
	paygw_http_init();
	paygw_account_cache_init();
	if (process_shared_preload_libraries_in_progress)
		paygw_launcher_init();
}
