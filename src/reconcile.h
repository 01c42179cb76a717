/*-------------------------------------------------------------------------
 *
 * reconcile.h
 *		Checking tracked invoices: claim due rows, perform their status calls
 *		concurrently, apply the outcomes.  Shared by paygw_refresh(),
 *		paygw_check_invoice() and the background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_RECONCILE_H
#define PAYGW_RECONCILE_H

#include "call.h"

/* One claimed invoice and its check, in its own memory context. */
typedef struct PaygwItem
{
	MemoryContext cxt;
	int64		invoice_id;
	int64		lease_token;
	bool		has_lease;
	bool		prepared;		/* false: err says why no request was built */
	PaygwError	err;
	PaygwCall	call;
	PaygwHttpResponse resp;
} PaygwItem;

/* What applying a set of outcomes did. */
typedef struct PaygwApplyStats
{
	int			checked;
	int			changed;
	int			unchanged;
	int			anomalies;
	int			errors;
	int			gave_up;
	int			lost;
	int			failed;			/* applying itself raised an error */
	int			errors_by_kind[PAYGW_ERR_INTERNAL + 1];
	const char *last_outcome;
} PaygwApplyStats;

extern int	paygw_reconcile_claim(MemoryContext parent, int max_invoices,
								  bool lease, int64 invoice_id,
								  PaygwItem **items);
extern void paygw_reconcile_start(PaygwHttpPool *pool, PaygwItem *item);
extern void paygw_reconcile_apply(PaygwItem **items, int n,
								  PaygwApplyStats *stats);
extern void paygw_reconcile_free(PaygwItem *item);
extern int	paygw_reconcile_pass(int max_invoices, int64 invoice_id,
								 PaygwApplyStats *stats);

#endif							/* PAYGW_RECONCILE_H */
