/*-------------------------------------------------------------------------
 *
 * status.c
 *		The normalized payment status model shared by all providers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "paygw.h"

/* Labels of paygw.payment_status, in PaygwStatus order. */
static const char *const status_labels[] = {
	"pending",
	"authorized",
	"paid",
	"partially_refunded",
	"refunded",
	"chargeback",
	"failed",
	"cancelled",
	"expired",
};

/* The enum label of a status. */
const char *
paygw_status_label(PaygwStatus status)
{
	if ((int) status < 0 || (int) status >= (int) lengthof(status_labels))
		elog(ERROR, "invalid payment status %d", (int) status);
	return status_labels[status];
}

/*
 * Look a provider's status text up in its map (case-insensitively; the map
 * ends with a NULL entry).  Returns false for a value not in the map, in which
 * case *status is set to pending: an unknown value never reads as final.
 */
bool
paygw_status_lookup(const PaygwStatusMap *map, const char *provider_status,
					PaygwStatus *status)
{
	for (; map->provider_status != NULL; map++)
	{
		if (pg_strcasecmp(map->provider_status, provider_status) == 0)
		{
			*status = map->status;
			return true;
		}
	}
	*status = PAYGW_STATUS_PENDING;
	return false;
}
