/*-------------------------------------------------------------------------
 *
 * credentials.h
 *		Reading and validating rows of paygw.credentials.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_CREDENTIALS_H
#define PAYGW_CREDENTIALS_H

#include "providers/provider.h"

#include "executor/spi.h"

extern void paygw_require_sql_version(void);
extern SPIPlanPtr paygw_spi_prepare_once_opts(SPIPlanPtr *plan, const char *sql,
											  int nargs, Oid *argtypes,
											  int cursor_options);
extern SPIPlanPtr paygw_spi_prepare_once(SPIPlanPtr *plan, const char *sql,
										 int nargs, Oid *argtypes);
extern PaygwAccount *paygw_account_fetch(const PaygwProvider *prov,
										 const char *name, PaygwError *err);

/* accounts fetched once for many calls (the worker's claim of a batch) */
typedef struct PaygwAccountBatch PaygwAccountBatch;

extern PaygwAccountBatch *paygw_account_batch_create(void);
extern PaygwAccount *paygw_account_batch_fetch(PaygwAccountBatch *batch,
											   const PaygwProvider *prov,
											   const char *name, PaygwError *err);
extern void paygw_account_batch_free(PaygwAccountBatch *batch);
extern char *paygw_account_resolve(const PaygwProvider *prov,
								   const char *name, PaygwError *err);
extern bool paygw_account_complete(PaygwAccount *account, Jsonb *options,
								   PaygwError *err);
extern bool paygw_parse_base_url(const char *url, char **normalized,
								 PaygwError *err);
extern bool paygw_account_open_secrets(PaygwAccount *account, PaygwError *err);
extern bool paygw_credentials_have_webhook_key(void);

#endif							/* PAYGW_CREDENTIALS_H */
