/*-------------------------------------------------------------------------
 *
 * http.c
 *		libcurl multi driver for backends and the worker.
 *
 * A backend keeps one CURLM and a pool of CURL easy handles for its whole
 * life: the multi handle owns the connection cache, so consecutive calls to
 * the same gateway reuse the connection (keep-alive).
 *
 * Per-batch state (header lists, reply buffers, membership of the multi
 * handle) is owned by a memory context whose reset callback undoes all of it.
 * Whatever ends a batch -- normal completion, an error, a query cancel or
 * statement_timeout raised by CHECK_FOR_INTERRUPTS() in the loop below --
 * that callback runs, so nothing leaks and the shared handles are left clean.
 *
 * libcurl callbacks never palloc, ereport or check interrupts: they only
 * copy bytes into malloc'd buffers and return an abort code on overflow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "http/http.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "paygw requires libcurl 7.85 or later"
#endif

/* how long one wait for socket activity may last before interrupts are checked */
#define POLL_INTERVAL_MS 20

/* largest reply header value we keep */
#define MAX_CAPTURED_HEADER 512

typedef struct Transfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *buf;			/* malloc'd reply body */
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		too_large;
	bool		out_of_memory;
	const char *capture_name;
	size_t		capture_name_len;
	char	   *captured;		/* malloc'd */
	bool		active;			/* added to the multi handle */
	bool		started;
	bool		done;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

typedef struct Batch
{
	Transfer   *transfers;
	int		   *group_active;	/* running transfers per group */
	int			n;
	MemoryContextCallback cleanup;
} Batch;

static CURLM *multi = NULL;
static CURL **easy_pool = NULL;
static int	easy_pool_free = 0;
static int	easy_pool_size = 0;
static bool batch_running = false;

/* Called once from _PG_init. */
void
paygw_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "libcurl could not be initialized");
}

/*
 * Append a header to a request.  Values are copied into CurrentMemoryContext.
 */
void
paygw_http_add_header(PaygwHttpRequest *req, const char *name,
					  const char *value, bool sensitive)
{
	if (req->nheaders >= PAYGW_HTTP_MAX_HEADERS)
		elog(ERROR, "too many HTTP headers");
	req->headers[req->nheaders].name = name;
	req->headers[req->nheaders].value = pstrdup(value);
	req->headers[req->nheaders].sensitive = sensitive;
	req->nheaders++;
}

static CURLM *
get_multi(void)
{
	if (multi == NULL)
	{
		multi = curl_multi_init();
		if (multi == NULL)
			ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY),
					errmsg("out of memory while creating an HTTP client"));
	}
	return multi;
}

/* Take an easy handle from the pool (or make one); NULL when out of memory. */
static CURL *
easy_acquire(void)
{
	CURL	   *easy;

	if (easy_pool_free > 0)
	{
		easy = easy_pool[--easy_pool_free];
		curl_easy_reset(easy);
		return easy;
	}
	return curl_easy_init();
}

/* Return an easy handle to the pool; never fails. */
static void
easy_release(CURL *easy)
{
	if (easy_pool_free >= easy_pool_size)
	{
		int			newsize = Max(8, easy_pool_size * 2);
		CURL	  **grown = realloc(easy_pool, sizeof(CURL *) * newsize);

		if (grown == NULL)
		{
			curl_easy_cleanup(easy);
			return;
		}
		easy_pool = grown;
		easy_pool_size = newsize;
	}
	easy_pool[easy_pool_free++] = easy;
}

/* Detach one transfer from libcurl and free its malloc'd state. */
static void
transfer_cleanup(Transfer *t)
{
	if (t->easy != NULL)
	{
		if (t->active)
			curl_multi_remove_handle(multi, t->easy);
		t->active = false;
		easy_release(t->easy);
		t->easy = NULL;
	}
	if (t->headers != NULL)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->buf);
	t->buf = NULL;
	free(t->captured);
	t->captured = NULL;
}

/* Memory context reset callback: undo everything a batch did. */
static void
batch_cleanup(void *arg)
{
	Batch	   *batch = (Batch *) arg;

	for (int i = 0; i < batch->n; i++)
		transfer_cleanup(&batch->transfers[i]);
	batch->n = 0;
	batch_running = false;
}

/* libcurl write callback: append to the reply buffer, enforcing the limit. */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		n = size * nmemb;

	if (t->len + n > t->limit)
	{
		t->too_large = true;
		return 0;
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = Max(t->cap * 2, t->len + n + 1);
		char	   *grown;

		newcap = Max(newcap, 4096);
		grown = realloc(t->buf, newcap);
		if (grown == NULL)
		{
			t->out_of_memory = true;
			return 0;
		}
		t->buf = grown;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, ptr, n);
	t->len += n;
	return n;
}

/* libcurl header callback: keep the value of the one header we want. */
static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		n = size * nitems;
	size_t		start;
	size_t		end;

	if (t->capture_name == NULL || n <= t->capture_name_len ||
		buffer[t->capture_name_len] != ':' ||
		pg_strncasecmp(buffer, t->capture_name, t->capture_name_len) != 0)
		return n;

	start = t->capture_name_len + 1;
	end = n;
	while (start < end && (buffer[start] == ' ' || buffer[start] == '\t'))
		start++;
	while (end > start && (buffer[end - 1] == '\r' || buffer[end - 1] == '\n' ||
						   buffer[end - 1] == ' ' || buffer[end - 1] == '\t'))
		end--;
	if (end - start > MAX_CAPTURED_HEADER)
		return n;				/* absurd value: treat as absent */

	free(t->captured);
	t->captured = malloc(end - start + 1);
	if (t->captured == NULL)
	{
		t->out_of_memory = true;
		return 0;
	}
	memcpy(t->captured, buffer + start, end - start);
	t->captured[end - start] = '\0';
	return n;
}

/*
 * Configure an easy handle for one request.  Returns false when libcurl is
 * out of memory.
 */
static bool
transfer_setup(Transfer *t, PaygwHttpRequest *req)
{
	CURL	   *e = t->easy;
	bool		ok = true;

	for (int i = 0; i < req->nheaders; i++)
	{
		char	   *line = psprintf("%s: %s", req->headers[i].name, req->headers[i].value);
		struct curl_slist *grown = curl_slist_append(t->headers, line);

		/* the line may hold an API key: wipe our copy */
		explicit_bzero(line, strlen(line));
		pfree(line);
		if (grown == NULL)
			return false;
		t->headers = grown;
	}
	if (strcmp(req->method, "POST") == 0)
	{
		struct curl_slist *grown = curl_slist_append(t->headers, "Expect:");

		if (grown == NULL)
			return false;
		t->headers = grown;
	}

	t->limit = (size_t) paygw_max_response_size;
	t->capture_name = req->capture_header;
	t->capture_name_len = req->capture_header ? strlen(req->capture_header) : 0;

	ok &= curl_easy_setopt(e, CURLOPT_URL, req->url) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) paygw_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) paygw_connect_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->limit) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, "paygw/" PAYGW_VERSION) == CURLE_OK;
	if (strcmp(req->method, "POST") == 0)
	{
		ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body) == CURLE_OK;
	}
	else
		ok &= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
	return ok;
}

/*
 * Turn a finished transfer into a response: on success copy the body into
 * CurrentMemoryContext; on failure classify the libcurl code.
 */
static void
transfer_finish(Transfer *t, CURLcode code, PaygwHttpRequest *req,
				PaygwHttpResponse *resp)
{
	const char *label = req->label;
	double		total = 0;
	curl_off_t	pretransfer_us = 0;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
	curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
	resp->elapsed_ms = total * 1000.0;

	if (code == CURLE_OK && !t->too_large && !t->out_of_memory)
	{
		resp->ok = true;
		resp->body = palloc(t->len + 1);
		if (t->len > 0)
			memcpy(resp->body, t->buf, t->len);
		resp->body[t->len] = '\0';
		resp->body_len = t->len;
		if (t->captured)
			resp->captured_header = pstrdup(t->captured);
		return;
	}

	resp->ok = false;
	if (t->too_large || code == CURLE_FILESIZE_EXCEEDED)
	{
		paygw_set_error(&resp->err, PAYGW_ERR_REPLY_TOO_LARGE,
						"reply from the %s gateway is larger than paygw.max_response_size", label);
		paygw_error_detail(&resp->err, "The limit is %d bytes; the transfer was stopped when it was passed.",
						   paygw_max_response_size);
		return;
	}
	if (t->out_of_memory || code == CURLE_OUT_OF_MEMORY)
	{
		paygw_set_error(&resp->err, PAYGW_ERR_INTERNAL, "out of memory while reading the %s gateway's reply", label);
		return;
	}

	switch (code)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
			paygw_set_error(&resp->err, PAYGW_ERR_CONNECT, "could not connect to the %s gateway", label);
			break;
		case CURLE_OPERATION_TIMEDOUT:
			paygw_set_error(&resp->err, PAYGW_ERR_TIMEOUT, "%s gateway did not answer in time", label);
			/* a reused connection has no connect time: ask whether it was sent */
			if (pretransfer_us == 0)
				paygw_error_detail(&resp->err, "No connection was established within %d ms (paygw.connect_timeout).",
								   Min(paygw_connect_timeout_ms, paygw_timeout_ms));
			else
				paygw_error_detail(&resp->err, "No complete reply arrived within paygw.timeout (%d ms).",
								   paygw_timeout_ms);
			return;
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_USE_SSL_FAILED:
			paygw_set_error(&resp->err, PAYGW_ERR_TLS, "TLS connection to the %s gateway failed", label);
			break;
		case CURLE_WEIRD_SERVER_REPLY:
		case CURLE_BAD_CONTENT_ENCODING:
		case CURLE_UNSUPPORTED_PROTOCOL:
			paygw_set_error(&resp->err, PAYGW_ERR_MALFORMED_REPLY, "%s gateway sent a reply that is not valid HTTP", label);
			break;
		default:
			paygw_set_error(&resp->err, PAYGW_ERR_CONNECTION_LOST, "connection to the %s gateway was lost", label);
			break;
	}
	/* libcurl's text names hosts and ports, never query strings or headers */
	paygw_error_detail(&resp->err, "%s.", t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
}

/*
 * Perform n requests, at most max_concurrency at once and at most
 * max_per_group (0: no cap) of one group at once; each request's group is
 * in 0..n-1.  Every response is filled;
 * failures are recorded in the response, never raised.  Query cancel,
 * statement_timeout and termination are raised from here through
 * CHECK_FOR_INTERRUPTS(), after which the batch's cleanup callback detaches
 * everything.  Response bodies are palloc'd in CurrentMemoryContext.
 */
void
paygw_http_perform(PaygwHttpRequest *reqs, PaygwHttpResponse *resps, int n,
				   int max_concurrency, int max_per_group)
{
	MemoryContext result_cxt = CurrentMemoryContext;
	MemoryContext batch_cxt;
	Batch	   *batch;
	CURLM	   *m;
	int			running = 0;
	int			finished = 0;
	int			next = 0;

	if (n <= 0)
		return;
	if (batch_running)
		elog(ERROR, "paygw HTTP client re-entered");
	m = get_multi();
	max_concurrency = Max(1, max_concurrency);

	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "paygw http batch",
									  ALLOCSET_SMALL_SIZES);
	batch = MemoryContextAllocZero(batch_cxt, sizeof(Batch));
	batch->transfers = MemoryContextAllocZero(batch_cxt, sizeof(Transfer) * n);
	batch->group_active = MemoryContextAllocZero(batch_cxt, sizeof(int) * n);
	for (int i = 0; i < n; i++)
		if (reqs[i].group < 0 || reqs[i].group >= n)
			elog(ERROR, "HTTP request group %d out of range", reqs[i].group);
	batch->cleanup.func = batch_cleanup;
	batch->cleanup.arg = batch;
	MemoryContextRegisterResetCallback(batch_cxt, &batch->cleanup);
	batch->n = n;
	batch_running = true;

	memset(resps, 0, sizeof(PaygwHttpResponse) * n);

	while (finished < n)
	{
		CURLMsg    *msg;
		int			queued;
		int			still_running;

		CHECK_FOR_INTERRUPTS();

		/* start what the caps allow, in order */
		for (int i = next; i < n && running < max_concurrency; i++)
		{
			Transfer   *t = &batch->transfers[i];

			if (t->started ||
				(max_per_group > 0 && batch->group_active[reqs[i].group] >= max_per_group))
				continue;
			t->started = true;
			t->easy = easy_acquire();
			if (t->easy == NULL || !transfer_setup(t, &reqs[i]) ||
				curl_multi_add_handle(m, t->easy) != CURLM_OK)
			{
				paygw_set_error(&resps[i].err, PAYGW_ERR_INTERNAL,
								"out of memory while preparing an HTTP request");
				t->done = true;
				transfer_cleanup(t);
				finished++;
				continue;
			}
			t->active = true;
			batch->group_active[reqs[i].group]++;
			running++;
		}
		while (next < n && batch->transfers[next].started)
			next++;

		if (curl_multi_perform(m, &still_running) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");

		while ((msg = curl_multi_info_read(m, &queued)) != NULL)
		{
			Transfer   *t = NULL;
			int			i;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
			if (t == NULL)
				continue;
			i = (int) (t - batch->transfers);
			MemoryContextSwitchTo(result_cxt);
			transfer_finish(t, msg->data.result, &reqs[i], &resps[i]);
			MemoryContextSwitchTo(result_cxt);
			t->done = true;
			transfer_cleanup(t);
			batch->group_active[reqs[i].group]--;
			running--;
			finished++;
		}

		if (finished >= n)
			break;
		if (running > 0)
			curl_multi_poll(m, NULL, 0, POLL_INTERVAL_MS, NULL);
	}

	MemoryContextDelete(batch_cxt);
}
