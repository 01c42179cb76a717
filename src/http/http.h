/*-------------------------------------------------------------------------
 *
 * http.h
 *		paygw's HTTP client interface.  Only src/http/ includes curl/curl.h.
 *
 * One entry point performs a batch of requests concurrently (a single
 * status call is a batch of one).  Transfers check for query cancel and
 * backend termination every few tens of milliseconds, honour the timeout and
 * size settings, never follow redirects, and reuse connections between calls
 * in the same backend (keep-alive).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_HTTP_H
#define PAYGW_HTTP_H

#include "paygw.h"

#define PAYGW_HTTP_MAX_HEADERS 8

typedef struct PaygwHttpHeader
{
	const char *name;
	char	   *value;
	bool		sensitive;		/* shown as [redacted] by paygw_request() */
} PaygwHttpHeader;

typedef struct PaygwHttpRequest
{
	const char *label;			/* provider name, for messages */
	const char *method;			/* "GET" or "POST" */
	char	   *url;
	int			nheaders;
	PaygwHttpHeader headers[PAYGW_HTTP_MAX_HEADERS];
	char	   *body;			/* POST body: the exact bytes that were signed */
	size_t		body_len;
	const char *capture_header; /* reply header to keep, or NULL */
	int			group;			/* >= 0: requests of one group share a cap */
	bool		not_idempotent; /* never sent twice: a fresh connection */
} PaygwHttpRequest;

typedef struct PaygwHttpResponse
{
	bool		ok;				/* transfer completed (any HTTP code) */
	PaygwError	err;			/* when !ok */
	long		status;			/* HTTP status code */
	char	   *body;			/* NUL-terminated copy of the reply body */
	size_t		body_len;		/* may contain NUL bytes before body_len */
	char	   *captured_header;	/* value of capture_header, or NULL */
	double		elapsed_ms;
} PaygwHttpResponse;

/* What the libcurl in use offers (paygw.http_info()); strings are static. */
typedef struct PaygwHttpInfo
{
	const char *libcurl_version;
	const char *ssl_backend;
	bool		async_resolver; /* cancel and timeouts work during DNS lookups */
	const char *ca_bundle;		/* libcurl's default CA file, or NULL */
	const char *ca_path;		/* libcurl's default CA directory, or NULL */
} PaygwHttpInfo;

/*
 * A pool of transfers driven incrementally: add requests at any time, drive
 * them for a bounded time, collect the finished ones.  It lives in the
 * memory context current at creation; resetting or deleting that context
 * detaches and frees every transfer, finished or not.
 */
typedef struct PaygwHttpPool PaygwHttpPool;

extern void paygw_http_init(void);
extern void paygw_http_describe(PaygwHttpInfo *info);
extern bool paygw_http_add_header(PaygwHttpRequest *req, const char *name,
								  const char *value, bool sensitive,
								  PaygwError *err);
extern PaygwHttpPool *paygw_http_pool_create(int max_concurrency,
											 int max_per_group);
extern void paygw_http_pool_add(PaygwHttpPool *pool, PaygwHttpRequest *req,
								PaygwHttpResponse *resp, MemoryContext cxt,
								void *arg);
extern int	paygw_http_pool_run(PaygwHttpPool *pool, int timeout_ms,
								void **done, int max_done);
extern void paygw_http_pool_kick(PaygwHttpPool *pool);
extern int	paygw_http_pool_cancel_all(PaygwHttpPool *pool, void **args,
									   int max);
extern int	paygw_http_pool_pending(PaygwHttpPool *pool);
extern int	paygw_http_pool_running(PaygwHttpPool *pool);
extern void paygw_http_perform(PaygwHttpRequest *reqs,
							   PaygwHttpResponse *resps, int n,
							   int max_concurrency, int max_per_group);

#endif							/* PAYGW_HTTP_H */
