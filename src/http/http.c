/*-------------------------------------------------------------------------
 *
 * http.c
 *		libcurl multi driver for backends and the worker.
 *
 * A backend keeps one CURLM and a pool of CURL easy handles for its whole
 * life: the multi handle owns the connection cache, so consecutive calls to
 * the same gateway reuse the connection (keep-alive).
 *
 * Transfers belong to a pool (PaygwHttpPool).  Per-transfer state (header
 * lists, reply buffers, membership of the multi handle) is owned by the
 * pool's memory context, whose reset callback undoes all of it.  Whatever
 * ends a pool -- normal completion, an error, a query cancel,
 * statement_timeout or SIGTERM raised by CHECK_FOR_INTERRUPTS() in the
 * loop below -- that callback runs, so nothing leaks and the shared handles
 * are left clean.  One pool at a time per process uses the shared handles.
 *
 * libcurl callbacks never palloc, ereport or check interrupts: they only
 * copy bytes into malloc'd buffers and return an abort code on overflow.
 *
 * Transfers are driven through libcurl's socket interface: libcurl says
 * which sockets it wants watched (CURLMOPT_SOCKETFUNCTION) and when it
 * next needs a call for its timeouts (CURLMOPT_TIMERFUNCTION); the sockets
 * are waited on in a WaitEventSet together with the process latch and
 * postmaster death, and curl_multi_socket_action() is told which socket is
 * ready, so a wake-up costs work for that socket's transfer only, not for
 * every transfer in flight (curl_multi_perform() walks them all, and polls
 * each one's socket).  The callbacks only record what libcurl asked for;
 * the set is brought up to date outside them (see "Waiting" below).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "crypto/crypto.h"
#include "http/http.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "paygw requires libcurl 7.85 or later"
#endif

/*
 * Longest single wait for socket activity.  Interrupts set the latch, which
 * ends a wait at once; this only bounds how long a missed wake-up could last.
 */
#define POLL_INTERVAL_MS 1000

/* largest reply header value we keep */
#define MAX_CAPTURED_HEADER 512

/* largest CA file (system bundle or paygw.ca_file) we read */
#define MAX_CA_FILE (16 * 1024 * 1024)

typedef struct Transfer
{
	dlist_node	node;			/* in the pool's queued or running list */
	PaygwHttpRequest *req;
	PaygwHttpResponse *resp;
	MemoryContext resp_cxt;		/* where the response body goes */
	void	   *arg;			/* handed back when finished */
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
	bool		setup_failed;	/* not started: setup_err says why */
	PaygwError	setup_err;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

/* Identity of a file's content as far as stat() tells: unchanged if equal. */
typedef struct FileStamp
{
	bool		exists;
	dev_t		dev;
	ino_t		ino;
	struct timespec mtime;
	off_t		size;
} FileStamp;

/*
 * The CA blob used while paygw.ca_file is set: libcurl's default CA file
 * (the system bundle) followed by paygw.ca_file, both as read when their
 * stamps were taken.  malloc'd; kept for the life of the process and
 * rebuilt when the setting or either file changes.
 */
typedef struct CaBlob
{
	char	   *ca_file;		/* the setting it was built for */
	FileStamp	bundle;
	FileStamp	extra;
	char	   *data;
	size_t		len;
} CaBlob;

struct PaygwHttpPool
{
	MemoryContext cxt;
	int			max_concurrency;
	int			max_per_group;
	int		   *group_active;	/* running transfers per group */
	int			ngroups;
	dlist_head	queued;
	dlist_head	running;
	int			nqueued;
	int			nrunning;
	MemoryContextCallback cleanup;
};

/*
 * A socket libcurl asked us to watch, and where it sits in the wait set.
 * want is what libcurl wants now (CURL_POLL_IN/OUT/INOUT, or 0 once it
 * said CURL_POLL_REMOVE).  A socket libcurl stops watching -- a connection
 * kept alive for the next request -- stays in the set (a WaitEventSet has no
 * way to take one out), registered for readability only; if it does become
 * readable while nobody wants it (the server closed it), the set is rebuilt
 * without it.  libcurl may close a socket once it stopped watching it, and
 * the descriptor may be reused: dev/ino tell whether the descriptor still
 * holds the socket that was registered (closing a socket drops it from the
 * kernel's wait set by itself).
 */
typedef struct SockWatch
{
	curl_socket_t fd;
	int			want;			/* CURL_POLL_* bits; 0: not wanted */
	bool		changed;		/* want changed since the set was updated */
	int			pos;			/* position in the wait set, or -1 */
	uint32		registered;		/* WL_SOCKET_* events registered at pos */
	dev_t		dev;			/* identity of the registered socket */
	ino_t		ino;
} SockWatch;

static CURLM *multi = NULL;
/* the sockets libcurl asked about (malloc'd; the callback may grow it) */
static SockWatch *watches = NULL;
static int	nwatches = 0;
static int	watches_size = 0;
static bool watches_changed = false;
/* the wait set: latch, postmaster death, then sockets; process lifetime */
static WaitEventSet *wait_set = NULL;
static int	wait_set_size = 0;	/* positions it has room for */
static int	wait_set_used = 0;	/* positions used, dead ones included */
static int	wait_set_fixed = 0;	/* of which the latch and postmaster death */
static bool wait_set_rebuild = false;
/* libcurl's timer: call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) then */
static bool timer_armed = false;
static uint64 timer_due_us;
static CURL **easy_pool = NULL;
static int	easy_pool_free = 0;
static int	easy_pool_size = 0;
static PaygwHttpPool *active_pool = NULL;
static curl_version_info_data *curl_info = NULL;
static CaBlob ca_blob = {0};

/* Called once from _PG_init. */
void
paygw_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "libcurl could not be initialized");
	curl_info = curl_version_info(CURLVERSION_NOW);
}

/*
 * What the libcurl in use offers (static strings, owned by libcurl).
 */
void
paygw_http_describe(PaygwHttpInfo *info)
{
	info->libcurl_version = curl_info->version;
	info->ssl_backend = curl_info->ssl_version;
	info->async_resolver = (curl_info->features & CURL_VERSION_ASYNCHDNS) != 0;
	info->ca_bundle = curl_info->cainfo;
	info->ca_path = curl_info->capath;
}

/*
 * Once per process, at the first transfer: a WARNING when libcurl resolves
 * host names with a blocking getaddrinfo().  With CURLOPT_NOSIGNAL (which a
 * backend needs) nothing can interrupt that call, so cancel and the
 * timeouts wait until it returns.
 */
static void
warn_blocking_resolver(void)
{
	static bool checked = false;

	if (checked)
		return;
	checked = true;
	if ((curl_info->features & CURL_VERSION_ASYNCHDNS) == 0)
		ereport(WARNING,
				errcode(ERRCODE_WARNING),
				errmsg("libcurl %s has no asynchronous DNS resolver", curl_info->version),
				errdetail("Query cancel, statement_timeout and paygw.timeout cannot interrupt a call while it resolves a host name."),
				errhint("Use a libcurl built with its threaded resolver or with c-ares, as distributions ship it; paygw.http_info() shows what was detected."));
}

/*
 * Append a header to a request.  Values are copied into CurrentMemoryContext.
 *
 * A CR or LF would end the header line and start another one of the
 * value's choosing.  The credential trigger refuses them already; this
 * refuses them again wherever a value comes from, with err filled (PW006:
 * every variable header value is, or derives from, a credential).  The
 * message names the header, never its value.
 */
bool
paygw_http_add_header(PaygwHttpRequest *req, const char *name,
					  const char *value, bool sensitive, PaygwError *err)
{
	if (req->nheaders >= PAYGW_HTTP_MAX_HEADERS)
		elog(ERROR, "too many HTTP headers");
	if (strpbrk(name, "\r\n:") != NULL)
		elog(ERROR, "invalid HTTP header name");
	if (strpbrk(value, "\r\n") != NULL)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
						"value of HTTP header \"%s\" contains a line break", name);
		paygw_error_detail(err, "The %s request was not sent; the value is not shown.",
						   req->label ? req->label : "gateway");
		paygw_error_hint(err, "Correct the account's merchant_id or secret in paygw.credentials.");
		return false;
	}
	req->headers[req->nheaders].name = name;
	req->headers[req->nheaders].value = pstrdup(value);
	req->headers[req->nheaders].sensitive = sensitive;
	if (sensitive)
		paygw_wipe_on_reset(req->headers[req->nheaders].value);
	req->nheaders++;
	return true;
}

/*
 * libcurl socket callback: remember what libcurl wants for socket s.  Only
 * records it (the wait set is updated outside libcurl); returns -1, which
 * makes the libcurl call fail, when out of memory.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	SockWatch  *w = NULL;

	(void) easy;
	(void) userp;
	(void) socketp;
	for (int i = 0; i < nwatches; i++)
		if (watches[i].fd == s)
		{
			w = &watches[i];
			break;
		}
	if (w == NULL)
	{
		if (what == CURL_POLL_REMOVE)
			return 0;
		if (nwatches >= watches_size)
		{
			int			newsize = Max(16, watches_size * 2);
			SockWatch  *grown = realloc(watches, sizeof(SockWatch) * newsize);

			if (grown == NULL)
				return -1;
			watches = grown;
			watches_size = newsize;
		}
		w = &watches[nwatches++];
		memset(w, 0, sizeof(SockWatch));
		w->fd = s;
		w->pos = -1;
	}
	w->want = what == CURL_POLL_REMOVE ? 0 : what;
	w->changed = true;
	watches_changed = true;
	return 0;
}

/* Microseconds on a monotonic clock. */
static uint64
now_us(void)
{
	instr_time	t;

	INSTR_TIME_SET_CURRENT(t);
	return (uint64) INSTR_TIME_GET_MICROSEC(t);
}

/* libcurl timer callback: when to call it for its timeouts (-1: never). */
static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void) m;
	(void) userp;
	timer_armed = timeout_ms >= 0;
	if (timer_armed)
		timer_due_us = now_us() + (uint64) timeout_ms * 1000;
	return 0;
}

static CURLM *
get_multi(void)
{
	if (multi == NULL)
	{
		CURLM	   *m = curl_multi_init();

		if (m == NULL)
			ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY),
					errmsg("out of memory while creating an HTTP client"));
		if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
			curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK)
		{
			curl_multi_cleanup(m);
			elog(ERROR, "libcurl multi interface failed");
		}
		multi = m;
	}
	return multi;
}

/* libcurl write callback and header callback (below) */
static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
static size_t header_cb(char *buffer, size_t size, size_t nitems, void *userdata);

/*
 * Take an easy handle from the pool (or make one); NULL when out of memory.
 * A handle keeps the options every request shares (set once, when it is
 * made); transfer_setup() sets the rest for each request, and
 * transfer_cleanup() clears the ones that point into a finished transfer.
 */
static CURL *
easy_acquire(void)
{
	CURL	   *easy;
	bool		ok = true;

	if (easy_pool_free > 0)
		return easy_pool[--easy_pool_free];
	easy = curl_easy_init();
	if (easy == NULL)
		return NULL;
	ok &= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb) == CURLE_OK;
	ok &= curl_easy_setopt(easy, CURLOPT_USERAGENT, "paygw/" PAYGW_VERSION) == CURLE_OK;
	if (!ok)
	{
		curl_easy_cleanup(easy);
		return NULL;
	}
	return easy;
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
		/* nothing of this transfer may stay reachable from the handle */
		(void) curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, NULL);
		(void) curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, NULL);
		(void) curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, NULL);
		(void) curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
		(void) curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, NULL);
		(void) curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, NULL);
		easy_release(t->easy);
		t->easy = NULL;
	}
	if (t->headers != NULL)
	{
		/* header lines may carry an API key or a signature */
		for (struct curl_slist *h = t->headers; h != NULL; h = h->next)
			explicit_bzero(h->data, strlen(h->data));
		curl_slist_free_all(t->headers);
	}
	t->headers = NULL;
	free(t->buf);
	t->buf = NULL;
	free(t->captured);
	t->captured = NULL;
}

/* Memory context reset callback: undo everything a pool did. */
static void
pool_cleanup(void *arg)
{
	PaygwHttpPool *pool = (PaygwHttpPool *) arg;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &pool->running)
		transfer_cleanup(dlist_container(Transfer, node, iter.cur));
	dlist_foreach_modify(iter, &pool->queued)
		transfer_cleanup(dlist_container(Transfer, node, iter.cur));
	dlist_init(&pool->running);
	dlist_init(&pool->queued);
	pool->nrunning = pool->nqueued = 0;
	if (active_pool == pool)
		active_pool = NULL;
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

/* Stamp of the file at path (exists = false when stat() fails). */
static void
stamp_path(const char *path, FileStamp *stamp)
{
	struct stat st;

	memset(stamp, 0, sizeof(FileStamp));
	if (path == NULL || stat(path, &st) != 0)
		return;
	stamp->exists = true;
	stamp->dev = st.st_dev;
	stamp->ino = st.st_ino;
	stamp->mtime = st.st_mtim;
	stamp->size = st.st_size;
}

static bool
stamp_equal(const FileStamp *a, const FileStamp *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
		a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
		a->size == b->size;
}

/*
 * Append the regular file at path to buf (malloc'd, *len bytes used), and
 * stamp it from the open descriptor.  Returns 0, or an errno value (EFBIG
 * for a file over MAX_CA_FILE, EINVAL for one that is not a regular file).
 */
static int
append_file(const char *path, char **buf, size_t *len, FileStamp *stamp)
{
	struct stat st;
	int			fd;
	int			rc = 0;
	char	   *grown;
	size_t		want;
	size_t		got = 0;

	fd = OpenTransientFile(path, O_RDONLY | O_NONBLOCK | PG_BINARY);
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) != 0)
		rc = errno;
	else if (!S_ISREG(st.st_mode))
		rc = EINVAL;
	else if (st.st_size > MAX_CA_FILE)
		rc = EFBIG;
	if (rc != 0)
	{
		CloseTransientFile(fd);
		return rc;
	}
	want = (size_t) st.st_size;
	/* room for a separating newline and a terminating NUL */
	grown = realloc(*buf, *len + want + 2);
	if (grown == NULL)
	{
		CloseTransientFile(fd);
		return ENOMEM;
	}
	*buf = grown;
	while (got < want)
	{
		ssize_t		n = read(fd, *buf + *len + got, want - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			rc = errno;
			break;
		}
		if (n == 0)
			break;
		got += n;
	}
	CloseTransientFile(fd);
	if (rc != 0)
		return rc;
	*len += got;
	if (*len > 0 && (*buf)[*len - 1] != '\n')
		(*buf)[(*len)++] = '\n';
	(*buf)[*len] = '\0';
	stamp->exists = true;
	stamp->dev = st.st_dev;
	stamp->ino = st.st_ino;
	stamp->mtime = st.st_mtim;
	stamp->size = st.st_size;
	return 0;
}

/*
 * Make ca_blob current for paygw.ca_file: reused while the setting and
 * both files are unchanged, rebuilt otherwise.  A system bundle that cannot
 * be read is left out (the CA directory still applies); a paygw.ca_file
 * that cannot be read, or holds no PEM certificate, fails the call with
 * PW022, like a TLS failure, without naming the file (the setting is hidden
 * from other roles).
 */
static bool
ca_blob_get(const char *label, PaygwError *err)
{
	FileStamp	bundle;
	FileStamp	extra;
	char	   *data = NULL;
	size_t		len = 0;
	size_t		start;
	int			rc;

	stamp_path(curl_info->cainfo, &bundle);
	stamp_path(paygw_ca_file, &extra);
	if (ca_blob.data != NULL && extra.exists &&
		strcmp(ca_blob.ca_file, paygw_ca_file) == 0 &&
		stamp_equal(&ca_blob.bundle, &bundle) && stamp_equal(&ca_blob.extra, &extra))
		return true;

	memset(&bundle, 0, sizeof(FileStamp));
	memset(&extra, 0, sizeof(FileStamp));
	/* unreadable: remember its stamp anyway, so it is retried only once changed */
	if (curl_info->cainfo != NULL &&
		append_file(curl_info->cainfo, &data, &len, &bundle) != 0)
		stamp_path(curl_info->cainfo, &bundle);
	start = len;
	rc = append_file(paygw_ca_file, &data, &len, &extra);
	/* a file without certificates would leave the system's trust alone */
	if (rc == 0 && strstr(data + start, "-----BEGIN") == NULL)
		rc = -1;
	if (rc != 0)
	{
		free(data);
		paygw_set_error(err, PAYGW_ERR_TLS, "TLS connection to the %s gateway failed", label);
		if (rc == -1)
			paygw_error_detail(err, "paygw.ca_file holds no PEM certificate.");
		else if (rc == EINVAL)
			paygw_error_detail(err, "paygw.ca_file is not a regular file.");
		else if (rc == EFBIG)
			paygw_error_detail(err, "paygw.ca_file is larger than %d bytes.", MAX_CA_FILE);
		else
			paygw_error_detail(err, "paygw.ca_file cannot be read: %s.", strerror(rc));
		return false;
	}

	free(ca_blob.ca_file);
	free(ca_blob.data);
	ca_blob.ca_file = strdup(paygw_ca_file);
	if (ca_blob.ca_file == NULL)
	{
		free(data);
		ca_blob.data = NULL;
		return paygw_set_error(err, PAYGW_ERR_INTERNAL, "out of memory while reading paygw.ca_file");
	}
	ca_blob.bundle = bundle;
	ca_blob.extra = extra;
	ca_blob.data = data;
	ca_blob.len = len;
	return true;
}

/*
 * Configure an easy handle for one request.  Returns false when libcurl is
 * out of memory, or when setup_err explains why the request cannot go.
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

	/* the options every request shares are set in easy_acquire() */
	ok &= curl_easy_setopt(e, CURLOPT_URL, req->url) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) paygw_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) paygw_connect_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->limit) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, t) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) == CURLE_OK;
	/*
	 * paygw.ca_file: trusted in addition to the system's CA file and CA
	 * directory.  CAINFO and CAPATH keep libcurl's defaults; the extra
	 * certificates go in as a CA blob.  With OpenSSL, libcurl loads a blob
	 * instead of CAINFO (but together with CAPATH), so the blob carries the
	 * system bundle too.  libcurl compares CAINFO, CAPATH and the blob's
	 * bytes when it reuses a connection or resumes a TLS session: a call
	 * made under other trust settings never rides on a connection or session
	 * verified under these.  (libcurl copies the blob and string options.)
	 */
	if (paygw_ca_file != NULL && paygw_ca_file[0] != '\0' &&
		pg_strncasecmp(req->url, "https:", 6) == 0)
	{
		struct curl_blob blob;

		if (!ca_blob_get(req->label, &t->setup_err))
		{
			t->setup_failed = true;
			return false;
		}
		blob.data = ca_blob.data;
		blob.len = ca_blob.len;
		blob.flags = CURL_BLOB_COPY;
		ok &= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob) == CURLE_OK;
	}
	else
		/* a handle reused from a request made under paygw.ca_file */
		ok &= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, NULL) == CURLE_OK;
	if (strcmp(req->method, "POST") == 0)
	{
		ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len) == CURLE_OK;
		ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body) == CURLE_OK;
	}
	else
		ok &= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;

	/*
	 * libcurl sends a request again, unasked, when a reused connection dies
	 * before the reply starts; the gateway may have acted on the first copy.
	 * A request that must not be repeated gets a connection of its own.
	 */
	ok &= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, req->not_idempotent ? 1L : 0L) == CURLE_OK;
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

	if (paygw_debug)
	{
		/* the URL without its query string: OkePay's carries the signature */
		int			pathlen = (int) strcspn(req->url, "?");

		ereport(LOG,
				errmsg("paygw: %s %s %.*s: HTTP %ld, %zu bytes, %.1f ms, curl code %d",
					   req->label, req->method, pathlen, req->url, resp->status,
					   t->len, resp->elapsed_ms, (int) code),
				errhidestmt(true));
	}

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
 * A new pool in CurrentMemoryContext: at most max_concurrency transfers at
 * once, and at most max_per_group (0: no cap) of one group at once.
 */
PaygwHttpPool *
paygw_http_pool_create(int max_concurrency, int max_per_group)
{
	PaygwHttpPool *pool;

	if (active_pool != NULL)
		elog(ERROR, "paygw HTTP client re-entered");
	warn_blocking_resolver();
	(void) get_multi();
	pool = palloc0(sizeof(PaygwHttpPool));
	pool->cxt = CurrentMemoryContext;
	pool->max_concurrency = Max(1, max_concurrency);
	pool->max_per_group = Max(0, max_per_group);
	pool->ngroups = 16;
	pool->group_active = palloc0(sizeof(int) * pool->ngroups);
	dlist_init(&pool->queued);
	dlist_init(&pool->running);
	pool->cleanup.func = pool_cleanup;
	pool->cleanup.arg = pool;
	MemoryContextRegisterResetCallback(pool->cxt, &pool->cleanup);
	active_pool = pool;
	return pool;
}

/*
 * Queue a request.  req must stay valid until it is handed back by
 * paygw_http_pool_run(); resp is filled then, its body palloc'd in cxt.
 */
void
paygw_http_pool_add(PaygwHttpPool *pool, PaygwHttpRequest *req,
					PaygwHttpResponse *resp, MemoryContext cxt, void *arg)
{
	Transfer   *t = MemoryContextAllocZero(pool->cxt, sizeof(Transfer));

	if (req->group < 0)
		elog(ERROR, "HTTP request group %d out of range", req->group);
	if (req->group >= pool->ngroups)
	{
		int			n = Max(req->group + 1, pool->ngroups * 2);

		pool->group_active = repalloc(pool->group_active, sizeof(int) * n);
		memset(pool->group_active + pool->ngroups, 0, sizeof(int) * (n - pool->ngroups));
		pool->ngroups = n;
	}
	memset(resp, 0, sizeof(PaygwHttpResponse));
	t->req = req;
	t->resp = resp;
	t->resp_cxt = cxt;
	t->arg = arg;
	dlist_push_tail(&pool->queued, &t->node);
	pool->nqueued++;
}

/* Requests queued or running. */
int
paygw_http_pool_pending(PaygwHttpPool *pool)
{
	return pool->nqueued + pool->nrunning;
}

/* Requests running now. */
int
paygw_http_pool_running(PaygwHttpPool *pool)
{
	return pool->nrunning;
}

/* Move queued transfers to running, in order, as far as the caps allow. */
static void
pool_start(PaygwHttpPool *pool)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &pool->queued)
	{
		Transfer   *t = dlist_container(Transfer, node, iter.cur);
		PaygwHttpRequest *req = t->req;

		if (pool->nrunning >= pool->max_concurrency)
			break;
		if (pool->max_per_group > 0 &&
			pool->group_active[req->group] >= pool->max_per_group)
			continue;

		dlist_delete(&t->node);
		pool->nqueued--;
		dlist_push_tail(&pool->running, &t->node);
		pool->nrunning++;
		pool->group_active[req->group]++;

		t->easy = easy_acquire();
		if (t->easy == NULL || !transfer_setup(t, req) ||
			curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		{
			/* reported as finished with an error by the next collect */
			if (!t->setup_failed)
				t->out_of_memory = true;
			continue;
		}
		t->active = true;
	}
}

/* Hand a finished transfer back: fill its response, free it. */
static void *
pool_finish(PaygwHttpPool *pool, Transfer *t, CURLcode code)
{
	MemoryContext old = MemoryContextSwitchTo(t->resp_cxt);
	void	   *arg = t->arg;

	if (t->setup_failed)
		t->resp->err = t->setup_err;
	else if (t->easy == NULL || !t->active)
		paygw_set_error(&t->resp->err, PAYGW_ERR_INTERNAL,
						"out of memory while preparing an HTTP request");
	else
		transfer_finish(t, code, t->req, t->resp);
	MemoryContextSwitchTo(old);

	transfer_cleanup(t);
	dlist_delete(&t->node);
	pool->nrunning--;
	pool->group_active[t->req->group]--;
	pfree(t);
	return arg;
}

/*
 * The postmaster is gone: stop at once, whatever is in flight (a backend
 * whose postmaster died must not keep calling gateways).
 */
static PAYGW_NORETURN_PREFIX void postmaster_died(void) PAYGW_NORETURN_SUFFIX;

static void
postmaster_died(void)
{
	ereport(FATAL,
			errcode(ERRCODE_ADMIN_SHUTDOWN),
			errmsg("terminating paygw gateway calls because the postmaster exited"));
}

static void
check_postmaster(void)
{
	if (!PostmasterIsAlive())
		postmaster_died();
}

/*
 * Waiting
 *
 * wait_set holds the process latch, postmaster death and every socket
 * libcurl wants watched (SockWatch above).  It is brought up to date from
 * what the callbacks recorded just before each wait (update_wait_set), and
 * rebuilt from scratch when it is full, when dead positions (sockets closed
 * since) outnumber the live ones, or when a socket nobody wants reported
 * activity.
 */

/* The WL_SOCKET_* events for libcurl's CURL_POLL_* bits. */
static uint32
wanted_events(int want)
{
	uint32		events = 0;

	if (want & CURL_POLL_IN)
		events |= WL_SOCKET_READABLE;
	if (want & CURL_POLL_OUT)
		events |= WL_SOCKET_WRITEABLE;
	return events;
}

/*
 * Is w's descriptor still the socket registered at w->pos?  (If it was
 * closed, the kernel dropped it from the set; the number may hold another
 * file now.)
 */
static bool
same_socket(SockWatch *w)
{
	struct stat st;

	return fstat(w->fd, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino;
}

/*
 * Register w's socket at a new position for the events it wants; false when
 * its descriptor is not open any more (libcurl closed it without saying).
 */
static bool
register_socket(SockWatch *w, uint32 events)
{
	struct stat st;

	if (fstat(w->fd, &st) != 0)
		return false;
	w->dev = st.st_dev;
	w->ino = st.st_ino;
	w->pos = AddWaitEventToSet(wait_set, events, w->fd, NULL, NULL);
	w->registered = events;
	wait_set_used++;
	return true;
}

/* Drop the watches libcurl no longer wants and that hold no position. */
static void
compact_watches(void)
{
	int			n = 0;

	for (int i = 0; i < nwatches; i++)
		if (watches[i].want != 0 || watches[i].pos >= 0)
			watches[n++] = watches[i];
	nwatches = n;
}

/*
 * A new wait set: the latch, postmaster death (under a postmaster), and the
 * sockets libcurl wants watched now.
 */
static void
rebuild_wait_set(void)
{
	int			live = 0;

	/* an ERROR half-way leaves it to be rebuilt again */
	wait_set_rebuild = true;
	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = NULL;
	for (int i = 0; i < nwatches; i++)
	{
		watches[i].pos = -1;
		watches[i].changed = false;
		if (watches[i].want != 0)
			live++;
	}
	wait_set_size = 2 + Max(16, 2 * live);
	wait_set = paygw_create_wait_event_set(wait_set_size);
	wait_set_used = 0;
	(void) AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	wait_set_used++;
	if (IsUnderPostmaster)
	{
		(void) AddWaitEventToSet(wait_set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
		wait_set_used++;
	}
	wait_set_fixed = wait_set_used;
	for (int i = 0; i < nwatches; i++)
		if (watches[i].want != 0 && !register_socket(&watches[i], wanted_events(watches[i].want)))
			watches[i].want = 0;
	compact_watches();
	wait_set_rebuild = false;
	watches_changed = false;
}

/* Bring wait_set up to date with what libcurl asked for since the last wait. */
static void
update_wait_set(void)
{
	int			registered = 0;

	if (wait_set == NULL || wait_set_rebuild)
	{
		rebuild_wait_set();
		return;
	}
	if (!watches_changed)
		return;
	/* an ERROR half-way (from epoll_ctl, say) leaves it to be rebuilt */
	wait_set_rebuild = true;
	for (int i = 0; i < nwatches; i++)
	{
		SockWatch  *w = &watches[i];
		uint32		events = wanted_events(w->want);

		if (w->changed)
		{
			w->changed = false;
			if (events == 0)
			{
				/*
				 * Kept alive for later: wake only if it becomes readable (an
				 * idle connection the server closes).  Nothing to do if it
				 * is registered so already, or was closed since.
				 */
				if (w->pos >= 0 && w->registered != WL_SOCKET_READABLE)
				{
					if (same_socket(w))
					{
						ModifyWaitEvent(wait_set, w->pos, WL_SOCKET_READABLE, NULL);
						w->registered = WL_SOCKET_READABLE;
					}
					else
						w->pos = -1;
				}
			}
			else
			{
				/* closed (and perhaps reused) since: its position is dead */
				if (w->pos >= 0 && !same_socket(w))
					w->pos = -1;
				if (w->pos >= 0)
				{
					if (w->registered != events)
					{
						ModifyWaitEvent(wait_set, w->pos, events, NULL);
						w->registered = events;
					}
				}
				else if (wait_set_used >= wait_set_size)
				{
					/* no room: start over (this registers w too) */
					rebuild_wait_set();
					return;
				}
				else if (!register_socket(w, events))
					w->want = 0;
			}
		}
		if (w->pos >= 0)
			registered++;
	}
	compact_watches();
	watches_changed = false;
	wait_set_rebuild = false;
	/* dead positions are never reused: start over once they dominate */
	if (wait_set_used - wait_set_fixed - registered > Max(16, registered))
		rebuild_wait_set();
}

/* Let libcurl handle its timeouts (and start new transfers) if it is time. */
static void
run_timer(void)
{
	int			running;

	if (!timer_armed || now_us() < timer_due_us)
		return;
	timer_armed = false;
	if (curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
		elog(ERROR, "libcurl multi interface failed");
}

/*
 * Wait up to timeout_ms for socket activity, the latch, postmaster death or
 * libcurl's timer, and hand what happened to libcurl.  Interrupts are left
 * for the caller to check (they set the latch, which ends the wait).
 */
static void
wait_and_dispatch(long timeout_ms)
{
	WaitEvent	events[16];
	int			n;

	update_wait_set();
	if (timer_armed)
	{
		uint64		now = now_us();

		if (timer_due_us <= now)
			timeout_ms = 0;
		else
			timeout_ms = Min(timeout_ms, (long) ((timer_due_us - now + 999) / 1000));
	}
	n = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		WaitEvent  *ev = &events[i];
		SockWatch  *w = NULL;
		int			flags = 0;
		int			running;

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			continue;
		}
		if (ev->events & WL_POSTMASTER_DEATH)
			postmaster_died();
		for (int k = 0; k < nwatches; k++)
			if (watches[k].pos == ev->pos)
			{
				w = &watches[k];
				break;
			}
		if (w == NULL || w->want == 0)
		{
			/* a socket nobody waits for (a kept-alive one the server closed) */
			wait_set_rebuild = true;
			continue;
		}
		if (ev->events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (ev->events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (curl_multi_socket_action(multi, w->fd, flags, &running) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");
	}
	run_timer();
}

/*
 * Start queued transfers as far as the caps allow and let libcurl send what
 * it can right away, without waiting or collecting finished transfers.
 * Callers that are about to do other work (apply results, claim more) call
 * this so the gateways are not kept waiting meanwhile.
 */
void
paygw_http_pool_kick(PaygwHttpPool *pool)
{
	pool_start(pool);
	if (pool->nrunning > 0)
		run_timer();
}

/*
 * Stop every transfer still queued or running (their requests may have
 * reached the gateway; the answers are not read) and store their args (at
 * most max) in args; returns their number.  The pool is empty afterwards.
 */
int
paygw_http_pool_cancel_all(PaygwHttpPool *pool, void **args, int max)
{
	int			n = 0;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &pool->running)
	{
		Transfer   *t = dlist_container(Transfer, node, iter.cur);

		if (n < max)
			args[n++] = t->arg;
		transfer_cleanup(t);
		dlist_delete(&t->node);
		pool->group_active[t->req->group]--;
		pool->nrunning--;
		pfree(t);
	}
	dlist_foreach_modify(iter, &pool->queued)
	{
		Transfer   *t = dlist_container(Transfer, node, iter.cur);

		if (n < max)
			args[n++] = t->arg;
		dlist_delete(&t->node);
		pool->nqueued--;
		pfree(t);
	}
	return n;
}

/*
 * Drive the pool for at most timeout_ms, returning as soon as at least one
 * transfer has finished.  The args of finished transfers (at most max_done)
 * are stored in done; returns their number.  Interrupts (cancel, timeout,
 * termination) set the latch, which is waited on with the transfers'
 * sockets, and are raised here; the wait also ends at once when the
 * postmaster dies.  A background worker asked to shut down
 * (ShutdownRequestPending) gets control back at once, and no queued
 * transfer is started for it.
 */
int
paygw_http_pool_run(PaygwHttpPool *pool, int timeout_ms, void **done,
					int max_done)
{
	instr_time	start;
	int			ndone = 0;

	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		CURLMsg    *msg;
		int			queued;
		dlist_mutable_iter iter;
		instr_time	now;
		long		elapsed;

		CHECK_FOR_INTERRUPTS();
		check_postmaster();
		if (ShutdownRequestPending)
			return ndone;
		pool_start(pool);

		/* transfers that could not even start */
		dlist_foreach_modify(iter, &pool->running)
		{
			Transfer   *t = dlist_container(Transfer, node, iter.cur);

			if (!t->active && ndone < max_done)
				done[ndone++] = pool_finish(pool, t, CURLE_OUT_OF_MEMORY);
		}

		if (pool->nrunning == 0)
			return ndone;

		/* new transfers start from libcurl's timer */
		run_timer();

		while (ndone < max_done && (msg = curl_multi_info_read(multi, &queued)) != NULL)
		{
			Transfer   *t = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
			if (t == NULL)
				continue;
			done[ndone++] = pool_finish(pool, t, msg->data.result);
		}
		if (ndone > 0)
		{
			/* put the freed slots' next requests on the wire before returning */
			paygw_http_pool_kick(pool);
			return ndone;
		}

		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		elapsed = (long) INSTR_TIME_GET_MILLISEC(now);
		if (elapsed >= timeout_ms)
			return 0;
		wait_and_dispatch(Min(POLL_INTERVAL_MS, timeout_ms - elapsed));
	}
}

/*
 * Perform n requests to completion (at most max_concurrency at once, at most
 * max_per_group of one group at once).  Every response is filled; failures
 * are recorded in the response, never raised.  Query cancel,
 * statement_timeout and termination are raised from here.  Response bodies
 * are palloc'd in CurrentMemoryContext.
 */
void
paygw_http_perform(PaygwHttpRequest *reqs, PaygwHttpResponse *resps, int n,
				   int max_concurrency, int max_per_group)
{
	MemoryContext result_cxt = CurrentMemoryContext;
	MemoryContext pool_cxt;
	PaygwHttpPool *pool;
	void	  **done;

	if (n <= 0)
		return;
	pool_cxt = AllocSetContextCreate(CurrentMemoryContext, "paygw http pool",
									 ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(pool_cxt);
	pool = paygw_http_pool_create(max_concurrency, max_per_group);
	done = palloc(sizeof(void *) * n);
	for (int i = 0; i < n; i++)
		paygw_http_pool_add(pool, &reqs[i], &resps[i], result_cxt, NULL);
	while (paygw_http_pool_pending(pool) > 0)
		(void) paygw_http_pool_run(pool, 1000, done, n);
	MemoryContextSwitchTo(result_cxt);
	MemoryContextDelete(pool_cxt);
}
