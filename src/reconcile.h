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

#include "check.h"

/*
 * What applying one item's outcome did.  BUSY: another session holds the row
 * right now, nothing was written, the caller may try again (the result is
 * kept); every other value is final.
 */
typedef enum PaygwOutcome
{
	PAYGW_OUTCOME_NONE = 0,		/* not applied yet */
	PAYGW_OUTCOME_CHANGED,
	PAYGW_OUTCOME_UNCHANGED,
	PAYGW_OUTCOME_ANOMALY,
	PAYGW_OUTCOME_ERROR,
	PAYGW_OUTCOME_GAVE_UP,
	PAYGW_OUTCOME_LOST,			/* the lease passed on, or the row is gone */
	PAYGW_OUTCOME_FAILED,		/* could not be recorded (see the WARNING) */
	PAYGW_OUTCOME_BUSY
} PaygwOutcome;

/*
 * One claimed invoice and its check, in the check's memory context.  The
 * check's outcome is worked out when it is first applied (and kept for a
 * retry).
 */
typedef struct PaygwItem
{
	PaygwCheck	check;
	int64		invoice_id;
	int64		lease_token;
	bool		has_lease;
	PaygwOutcome outcome;
	bool		row_has_payment_id; /* the row had these ids when claimed */
	bool		row_has_order_id;
	bool		learn;			/* fill in an id the reply named */
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
	int			busy;			/* held by another session: not applied yet */
	int			failed;			/* applying itself raised an error */
	int			errors_by_kind[PAYGW_ERR_INTERNAL + 1];
	const char *last_outcome;
} PaygwApplyStats;

extern int	paygw_reconcile_claim(MemoryContext parent, int max_invoices,
								  int64 run, int queued, int64 invoice_id,
								  PaygwItem **items);
extern const char *paygw_outcome_name(PaygwOutcome outcome);
extern void paygw_reconcile_start(PaygwHttpPool *pool, PaygwItem *item);
extern void paygw_reconcile_apply(PaygwItem **items, int n,
								  PaygwApplyStats *stats);
extern void paygw_reconcile_free(PaygwItem *item);
extern int	paygw_reconcile_release(PaygwItem **items, int n, int64 run);
extern int	paygw_reconcile_pass(int max_invoices, int64 invoice_id,
								 PaygwApplyStats *stats);

#endif							/* PAYGW_RECONCILE_H */
