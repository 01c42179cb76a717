/*-------------------------------------------------------------------------
 *
 * check.h
 *		One gateway check made in the HTTP pool: a status call prepared in
 *		its own memory context, its response, and its outcome worked out
 *		once.  Embedded in a claimed invoice (reconcile.h) and in a webhook
 *		probe (probe.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_CHECK_H
#define PAYGW_CHECK_H

#include "call.h"

typedef struct PaygwCheck
{
	MemoryContext cxt;			/* holds the check and what embeds it */
	bool		prepared;		/* false: err says why no request was built */
	PaygwError	err;
	PaygwCall	call;
	PaygwHttpResponse resp;
	/* the outcome of the call, worked out once */
	bool		interpreted;
	bool		ok;				/* res is valid; else err says why */
	PaygwStatusResult res;
} PaygwCheck;

extern void paygw_check_prepare(PaygwCheck *check, const char *provider,
								const char *account, const char *payment_id,
								const char *order_id,
								PaygwAccountBatch *accounts);
extern void paygw_check_start(PaygwHttpPool *pool, PaygwCheck *check, void *arg);
extern bool paygw_check_interpret(PaygwCheck *check, const char *what, int64 id);
extern void paygw_check_free(PaygwCheck *check);

#endif							/* PAYGW_CHECK_H */
