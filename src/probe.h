/*-------------------------------------------------------------------------
 *
 * probe.h
 *		Checking hints about payments paygw does not track (rows of
 *		paygw.webhook_probes): one signed status call each, made by the
 *		worker with its HTTP pool, or by paygw_webhook() with confirm.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_PROBE_H
#define PAYGW_PROBE_H

#include "check.h"

/* One probe and its status call, in the check's memory context. */
typedef struct PaygwProbe
{
	PaygwCheck	check;
	int64		probe_id;
	int64		lease_token;	/* the claiming run; 0: made in this transaction */
	/* set by paygw_probe_apply */
	const char *outcome;		/* tracked, unknown, error, gave_up, lost, failed */
	int64		invoice_id;		/* tracked: the invoice, else 0 */
} PaygwProbe;

/* What applying a set of probes did. */
typedef struct PaygwProbeStats
{
	int			tracked;
	int			unknown;
	int			errors;			/* to be tried again */
	int			gave_up;
	int			lost;
	int			failed;			/* could not be recorded (see the WARNING) */
} PaygwProbeStats;

extern int	paygw_probe_claim(MemoryContext parent, int max_probes, int64 run,
							  PaygwProbe **probes, TimestampTz *next_due);
extern void paygw_probe_start(PaygwHttpPool *pool, PaygwProbe *probe);
extern void paygw_probe_apply(PaygwProbe **probes, int n, PaygwProbeStats *stats);
extern void paygw_probe_free(PaygwProbe *probe);
extern const char *paygw_probe_now(int64 probe_id, int64 *invoice_id);

#endif							/* PAYGW_PROBE_H */
