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
	int			group;			/* 0..n-1: requests of one group share a cap */
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

extern void paygw_http_init(void);
extern void paygw_http_add_header(PaygwHttpRequest *req, const char *name,
								  const char *value, bool sensitive);
extern void paygw_http_perform(PaygwHttpRequest *reqs,
							   PaygwHttpResponse *resps, int n,
							   int max_concurrency, int max_per_group);

#endif							/* PAYGW_HTTP_H */
