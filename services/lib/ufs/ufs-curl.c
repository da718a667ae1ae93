/* HTTP requests of the store layer over one libcurl easy handle: GET, HEAD, ranged versioned GET. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "array.h"
#include "log.h"
#include "parse.h"
#include "ufs-internal.h"
#include "weir-build.h"

#define CONNECT_TIMEOUT_MS 5000L
/* A store that sends less than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME s is taken as dead. */
#define LOW_SPEED_LIMIT 1L
#define LOW_SPEED_TIME  30L
#define MAX_REDIRECTS   5L
#define MAX_ERROR_BODY  4096

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global_setup(void)
{
        /* Not thread-safe in libcurl before 7.84: run it once, before any handle exists. */
        (void)curl_global_init(CURL_GLOBAL_DEFAULT);
}

CURL *ufs_curl(ufs *u)
{
        pthread_once(&curl_once, curl_global_setup);
        if (!u->curl)
                u->curl = curl_easy_init();
        else
                curl_easy_reset(u->curl); /* keeps the connection cache: keep-alive */
        return u->curl;
}

int ufs_errno_from_curl(CURLcode c)
{
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EPROTONOSUPPORT;
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
                return -ECONNRESET;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_LOGIN_DENIED:
        case CURLE_REMOTE_ACCESS_DENIED:
                return -EACCES;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        case CURLE_BAD_CONTENT_ENCODING:
        case CURLE_WEIRD_SERVER_REPLY:
                return -EBADMSG;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -EPROTO;
        default:
                return -EIO;
        }
}

int ufs_errno_from_status(long status)
{
        switch (status) {
        case 400:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
        case 410:
                return -ENOENT;
        case 405:
        case 501:
                return -EOPNOTSUPP;
        case 408:
        case 504:
                return -ETIMEDOUT;
        case 412:
        case 416:
                return -ESTALE;
        case 429:
        case 503:
                return -EAGAIN;
        default:
                return -EIO;
        }
}

typedef enum xfer_mode {
        XFER_COLLECT, /* the body into memory */
        XFER_RANGE,   /* the body to a sink, checked against a version */
} xfer_mode;

typedef struct xfer {
        xfer_mode mode;

        /* From the headers of the last response (reset at each status line: redirects). */
        long status;
        char *etag;
        char *content_type;
        int64_t mtime;
        int64_t date;           /* the store's clock (Date), 0 = not sent */
        int64_t age;            /* seconds a cache held the answer (Age), 0 = not sent */
        int64_t content_length; /* -1 = not sent */
        bool have_range;
        uint64_t range_first, range_last, range_total; /* total UINT64_MAX = "*" */

        /* XFER_COLLECT */
        char *body;
        size_t body_len, body_allocated;

        /* XFER_RANGE */
        const ufs_version *version;
        uint64_t offset, len;
        ufs_sink sink;
        void *userdata;
        uint64_t skip, delivered;
        uint64_t received;      /* body bytes of a 2xx response so far */
        curl_socket_t lowat_fd; /* where SO_RCVLOWAT was raised (CURL_SOCKET_BAD: nowhere) */
        int lowat;
        char *cbuf; /* body bytes not handed to the sink yet (RCVLOWAT at most) */
        size_t cbuf_len;
        bool checked, done;
        char error_body[MAX_ERROR_BODY + 1];
        size_t error_body_len;

        int error; /* set by a callback that aborted the transfer */
        struct curl_slist *headers;
        ufs *u; /* the store running it (borrowed) */
} xfer;

static void xfer_done(xfer *x)
{
        free(x->cbuf);
        curl_slist_free_all(x->headers);
        free(x->etag);
        free(x->content_type);
        free(x->body);
}

static void xfer_reset_headers(xfer *x)
{
        x->status = 0;
        free(x->etag);
        x->etag = NULL;
        free(x->content_type);
        x->content_type = NULL;
        x->mtime = 0;
        x->date = 0;
        x->age = 0;
        x->content_length = -1;
        x->have_range = false;
}

/* "Name: value" of header line [P, END) when its name is NAME; value trimmed. */
static char *header_value(const char *p, size_t n, const char *name)
{
        size_t nl = strlen(name);
        const char *v, *e = p + n;

        if (n <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
                return NULL;
        v = p + nl + 1;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
        return strndup(v, (size_t)(e - v));
}

static int parse_content_range(const char *v, xfer *x)
{
        unsigned long long first, last;
        uint64_t total;
        int consumed = 0;

        if (sscanf(v, "bytes %llu-%llu/%n", &first, &last, &consumed) != 2 || consumed == 0 ||
            last < first)
                return -EBADMSG;
        if (strcmp(v + consumed, "*") == 0)
                total = UINT64_MAX;
        else if (parse_u64(v + consumed, &total) < 0)
                return -EBADMSG;
        x->range_first = first;
        x->range_last = last;
        x->range_total = total;
        x->have_range = true;
        return 0;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
        xfer *x = userdata;
        size_t n = size * nmemb;
        char *v;

        if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                const char *sp = memchr(data, ' ', n);

                xfer_reset_headers(x);
                if (sp && (size_t)(sp - data) + 4 <= n)
                        x->status = strtol(sp + 1, NULL, 10);
                return n;
        }
        if ((v = header_value(data, n, "ETag"))) {
                free(x->etag);
                x->etag = v;
        } else if ((v = header_value(data, n, "Content-Type"))) {
                free(x->content_type);
                x->content_type = v;
        } else if ((v = header_value(data, n, "Last-Modified"))) {
                time_t t = curl_getdate(v, NULL);

                x->mtime = t > 0 ? (int64_t)t : 0;
                free(v);
        } else if ((v = header_value(data, n, "Date"))) {
                time_t t = curl_getdate(v, NULL);

                x->date = t > 0 ? (int64_t)t : 0;
                free(v);
        } else if ((v = header_value(data, n, "Age"))) {
                uint64_t a;

                /* a cache's copy was made this long before its Date (RFC 9111 5.1); an Age that
                 * cannot be read counts as the whole Date unknown */
                x->age = parse_u64(v, &a) >= 0 && a < INT64_MAX ? (int64_t)a : -1;
                free(v);
        } else if ((v = header_value(data, n, "Content-Length"))) {
                uint64_t l;

                x->content_length = parse_u64(v, &l) >= 0 && l <= INT64_MAX ? (int64_t)l : -1;
                free(v);
        } else if ((v = header_value(data, n, "Content-Range"))) {
                if (parse_content_range(v, x) < 0)
                        x->have_range = false;
                free(v);
        }
        return n;
}

/* Strong comparison unless either side is weak ("W/"): then the opaque parts. */
static bool etag_equal(const char *a, const char *b)
{
        if (strncmp(a, "W/", 2) == 0)
                a += 2;
        if (strncmp(b, "W/", 2) == 0)
                b += 2;
        return strcmp(a, b) == 0;
}

/* Is this response the version and range asked for? Called once, at the first body byte. */
static int xfer_check(xfer *x)
{
        const ufs_version *v = x->version;

        if (x->status != 200 && x->status != 206)
                return 0; /* an error answer: its body is kept for the message */
        if (ufs_version_minute(v)) {
                /* Known to the minute (a listing's time): any second of it is this version. */
                if (x->mtime > 0 && (x->mtime < v->mtime || x->mtime >= v->mtime + 60))
                        return -ESTALE;
        } else if (v->etag && x->etag && !etag_equal(v->etag, x->etag))
                return -ESTALE;
        if (!v->etag && v->mtime > 0 && x->mtime > 0 && v->mtime != x->mtime)
                return -ESTALE;
        if (x->status == 206) {
                if (!x->have_range)
                        return -EBADMSG;
                if (x->range_total != UINT64_MAX && x->range_total != v->size)
                        return -ESTALE;
                if (x->range_first != x->offset || x->range_last != x->offset + x->len - 1)
                        return -EBADMSG;
        } else {
                /* The server ignored the range: the whole file comes, take our part of it. */
                if (x->content_length >= 0 && (uint64_t)x->content_length != v->size)
                        return -ESTALE;
                x->skip = x->offset;
        }
        return 0;
}

/* Large bodies arrive over many round trips; woken for every segment, a reader of several
 * connections spends more CPU switching threads and polling than copying (measured on a 40 ms
 * link: a quarter of the worker's time in the scheduler). A receive low-water mark makes the
 * kernel wake us only once RCVLOWAT bytes are queued, or the rest of the body when that is less
 * (so the tail never waits: the kernel also wakes us when the window fills or the peer closes). */
#define RCVLOWAT (128 * 1024)

static void xfer_set_lowat(xfer *x, curl_socket_t fd, int lowat)
{
        if (fd == CURL_SOCKET_BAD || (fd == x->lowat_fd && lowat == x->lowat))
                return;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) < 0)
                return; /* only an optimisation */
        x->lowat_fd = fd;
        x->lowat = lowat;
}

static void xfer_update_lowat(xfer *x)
{
        uint64_t left;

        /* curl keeps one connection per store handle here (one host): the one it opened last */
        if (x->content_length < 0 || (uint64_t)x->content_length <= x->received || !x->u)
                return;
        left = (uint64_t)x->content_length - x->received;
        xfer_set_lowat(x, x->u->sock, (int)MIN(left, (uint64_t)RCVLOWAT));
}

static int xfer_flush(xfer *x)
{
        size_t n = x->cbuf_len;

        x->cbuf_len = 0;
        return n > 0 ? x->sink(x->cbuf, n, x->userdata) : 0;
}

/* curl hands the body over in pieces of 16 KiB (CURL_MAX_WRITE_SIZE) whatever it received at
 * once; a sink that writes a file and updates a checksum per call costs a syscall per piece.
 * Pieces are gathered up to RCVLOWAT (about what one wake-up brings, see above) and handed over
 * together. The first piece goes at once: a reader waiting for the start of a range gets it
 * without waiting for more. */
static int xfer_deliver(xfer *x, const char *p, size_t k)
{
        int r;

        if (x->delivered == 0 && x->cbuf_len == 0)
                return x->sink(p, k, x->userdata);
        if (x->cbuf_len + k > RCVLOWAT) {
                r = xfer_flush(x);
                if (r < 0)
                        return r;
        }
        if (k >= RCVLOWAT)
                return x->sink(p, k, x->userdata);
        if (!x->cbuf && !(x->cbuf = malloc(RCVLOWAT)))
                return x->sink(p, k, x->userdata);
        memcpy(x->cbuf + x->cbuf_len, p, k);
        x->cbuf_len += k;
        return x->cbuf_len == RCVLOWAT ? xfer_flush(x) : 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
        xfer *x = userdata;
        size_t n = size * nmemb;
        int r;

        if (x->mode == XFER_COLLECT) {
                if (x->body_len + n > UFS_MAX_PAGE_SIZE) {
                        x->error = -EFBIG;
                        return 0;
                }
                /* From 16 KiB: a listing page is rarely smaller. */
                if (!array_grow((void **)&x->body, &x->body_allocated, 16384, 1) ||
                    !array_append_text(&x->body, &x->body_len, &x->body_allocated, data, n)) {
                        x->error = -ENOMEM;
                        return 0;
                }
                return n;
        }

        if (!x->checked) {
                x->checked = true;
                r = xfer_check(x);
                if (r < 0) {
                        x->error = r;
                        return 0;
                }
        }
        if (x->status != 200 && x->status != 206) {
                size_t k = MIN(n, MAX_ERROR_BODY - x->error_body_len);

                memcpy(x->error_body + x->error_body_len, data, k);
                x->error_body_len += k;
                x->error_body[x->error_body_len] = 0;
                return n;
        }
        if (x->done)
                return 0; /* more than asked for: stop here */
        x->received += n;
        xfer_update_lowat(x);

        const char *p = data;
        size_t left = n;
        if (x->skip > 0) {
                size_t k = (size_t)MIN((uint64_t)left, x->skip);

                x->skip -= k;
                p += k;
                left -= k;
        }
        if (left > 0) {
                size_t k = (size_t)MIN((uint64_t)left, x->len - x->delivered);

                r = xfer_deliver(x, p, k);
                if (r < 0) {
                        x->error = r;
                        return 0;
                }
                x->delivered += k;
                if (x->delivered == x->len) {
                        r = xfer_flush(x);
                        if (r < 0) {
                                x->error = r;
                                return 0;
                        }
                        x->done = true;
                        if (k < left)
                                return 0;
                }
        }
        return n;
}

/* Called by libcurl about once a second even while nothing moves: the way out of a hung store. */
static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        const atomic_bool *cancel = userdata;

        return atomic_load(cancel) ? 1 : 0;
}

static int xfer_add_header(xfer *x, const char *line)
{
        struct curl_slist *h = curl_slist_append(x->headers, line);

        if (!h)
                return -ENOMEM;
        x->headers = h;
        return 0;
}

static int sockopt_cb(void *userdata, curl_socket_t fd, curlsocktype purpose)
{
        ufs *u = userdata;

        u->sock = fd;
        return CURL_SOCKOPT_OK;
}

static int xfer_setup(ufs *u, const ufs_http_auth *auth, const char *url, xfer *x, char *errbuf)
{
        CURL *c = ufs_curl(u);

        if (!c)
                return -ENOMEM;
        x->content_length = -1;
        if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK)
                return -ENOMEM;
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_LIMIT);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        /* Fewer, larger write callbacks: a block fill is CPU-bound on small machines and curl's
         * 16 KiB default costs a callback (and a checksum step) per 16 KiB. */
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "weir/" WEIR_VERSION);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
        curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, u);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        if (auth && auth->follow_redirects) {
                curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
                curl_easy_setopt(c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
                curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        }
        if (u->cancel) {
                curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
                curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)u->cancel);
                curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        }
        if (auth && auth->signing == UFS_SIGN_NONE && auth->user) {
                /* Never sent to another host after a redirect (CURLOPT_UNRESTRICTED_AUTH off). */
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERNAME, auth->user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, auth->password);
        }
        if (auth && auth->signing == UFS_SIGN_AWS_V4) {
                curl_easy_setopt(c, CURLOPT_AWS_SIGV4, auth->sigv4);
                curl_easy_setopt(c, CURLOPT_USERNAME, auth->user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, auth->password);
                /* S3 wants the payload hash as a header; every request here has an empty body.
                 * libcurl before 8.x does not add it itself. */
                if (xfer_add_header(
                            x,
                            "x-amz-content-sha256: "
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Runs the transfer; transport failures become -errno with a message naming URL. */
static int xfer_perform(ufs *u, const char *url, xfer *x, const char *errbuf)
{
        CURLcode rc;

        if (x->headers)
                curl_easy_setopt(u->curl, CURLOPT_HTTPHEADER, x->headers);
        x->u = u;
        x->lowat_fd = CURL_SOCKET_BAD;
        rc = curl_easy_perform(u->curl);
        /* What arrived before the body ended early (a reset, a timeout) still counts: a retry
         * resumes after it. */
        if (x->cbuf_len > 0 && x->error == 0) {
                int k = xfer_flush(x);

                if (k < 0)
                        x->error = k;
        }
        /* The connection is kept for the next request, whose headers must not wait for it. */
        if (x->lowat_fd != CURL_SOCKET_BAD && x->lowat != 1)
                xfer_set_lowat(x, x->lowat_fd, 1);
        /* Nothing in the handle may point at this request's stack or lists once it returns. */
        curl_easy_setopt(u->curl, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(u->curl, CURLOPT_HTTPHEADER, NULL);

        if (rc == CURLE_WRITE_ERROR && x->done && x->error == 0)
                return 0; /* we stopped it: we had all we wanted */
        if (x->error == -EFBIG)
                return ufs_fail(u, x->error,
                                "Request to %s failed: the answer is larger than %u MiB (a "
                                "listing page this big is refused)",
                                url, UFS_MAX_PAGE_SIZE >> 20);
        if (x->error < 0)
                return ufs_fail(u, x->error, "Request to %s failed: %s", url,
                                x->error == -ESTALE ? "the file changed in the store"
                                                    : strerror(-x->error));
        if (rc != CURLE_OK)
                return ufs_fail(u, ufs_errno_from_curl(rc), "Request to %s failed: %s", url,
                                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return 0;
}

int ufs_http_get(ufs *u, const ufs_http_auth *auth, const char *url, long *ret_status,
                 char **ret_body, size_t *ret_len, char **ret_effective_url,
                 char **ret_content_type)
{
        _cleanup_(xfer_done) xfer x = {.mode = XFER_COLLECT};
        char errbuf[CURL_ERROR_SIZE] = "";
        int r;

        r = xfer_setup(u, auth, url, &x, errbuf);
        if (r < 0)
                return r;
        curl_easy_setopt(u->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)UFS_MAX_PAGE_SIZE);
        r = xfer_perform(u, url, &x, errbuf);
        if (r < 0)
                return r;
        /* When the store made the answer: a cache in front may have held it (Age). */
        u->date = x.age < 0 || x.age >= x.date ? 0 : x.date - x.age;
        if (!x.body) {
                x.body = strdup("");
                if (!x.body)
                        return -ENOMEM;
        }
        if (ret_effective_url) {
                char *eff = NULL;

                curl_easy_getinfo(u->curl, CURLINFO_EFFECTIVE_URL, &eff);
                *ret_effective_url = strdup(eff ? eff : url);
                if (!*ret_effective_url)
                        return -ENOMEM;
        }
        if (ret_content_type)
                *ret_content_type = TAKE_PTR(x.content_type);
        *ret_status = x.status;
        *ret_len = x.body_len;
        *ret_body = TAKE_PTR(x.body);
        return 0;
}

static int head_by_range(ufs *u, const ufs_http_auth *auth, const char *url, ufs_version *ret)
{
        _cleanup_(xfer_done) xfer x = {.mode = XFER_COLLECT};
        char errbuf[CURL_ERROR_SIZE] = "";
        int r;

        r = xfer_setup(u, auth, url, &x, errbuf);
        if (r < 0)
                return r;
        curl_easy_setopt(u->curl, CURLOPT_RANGE, "0-0");
        r = xfer_perform(u, url, &x, errbuf);
        if (r < 0)
                return r;
        if (x.status == 206 && x.have_range && x.range_total != UINT64_MAX)
                ret->size = x.range_total;
        else if (x.status == 200 && x.content_length >= 0)
                ret->size = (uint64_t)x.content_length;
        else if (x.status == 416 && x.have_range && x.range_total != UINT64_MAX)
                ret->size = x.range_total; /* an empty file */
        else if (x.status >= 200 && x.status < 300)
                return ufs_fail(u, -EBADMSG, "%s sends no size", url);
        else
                return ufs_fail(u, ufs_errno_from_status(x.status), "HTTP %ld from %s", x.status,
                                url);
        ret->mtime = x.mtime;
        ret->etag = TAKE_PTR(x.etag);
        if (ufs_version_minute(ret)) {
                free(ret->etag);
                ret->etag = NULL;
        }
        return 0;
}

int ufs_http_head(ufs *u, const ufs_http_auth *auth, const char *url, ufs_version *ret)
{
        _cleanup_(xfer_done) xfer x = {.mode = XFER_COLLECT};
        char errbuf[CURL_ERROR_SIZE] = "";
        ufs_version v = {};
        int r;

        r = xfer_setup(u, auth, url, &x, errbuf);
        if (r < 0)
                return r;
        curl_easy_setopt(u->curl, CURLOPT_NOBODY, 1L);
        r = xfer_perform(u, url, &x, errbuf);
        if (r < 0)
                return r;
        if (x.status == 405 || x.status == 501 || (x.status == 200 && x.content_length < 0)) {
                /* No HEAD, or no length in it: ask for the first byte instead. */
                r = head_by_range(u, auth, url, &v);
                if (r < 0)
                        return r;
                *ret = v;
                return 0;
        }
        if (x.status < 200 || x.status >= 300)
                return ufs_fail(u, ufs_errno_from_status(x.status), "HTTP %ld from %s", x.status,
                                url);
        v.size = (uint64_t)x.content_length;
        v.mtime = x.mtime;
        v.etag = TAKE_PTR(x.etag);
        if (ufs_version_minute(&v)) { /* not a store's: it would pass for a minute's version */
                free(v.etag);
                v.etag = NULL;
        }
        *ret = v;
        return 0;
}

static void format_http_date(int64_t t, char *buf, size_t len)
{
        static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int ufs_http_read(ufs *u, const ufs_http_auth *auth, const char *url, const ufs_version *version,
                  uint64_t offset, uint64_t len, ufs_sink sink, void *userdata)
{
        _cleanup_(xfer_done) xfer x = {
                .mode = XFER_RANGE,
                .version = version,
                .offset = offset,
                .len = len,
                .sink = sink,
                .userdata = userdata,
        };
        char errbuf[CURL_ERROR_SIZE] = "", range[64], line[256];
        int r;

        if (len == 0)
                return 0;
        r = xfer_setup(u, auth, url, &x, errbuf);
        if (r < 0)
                return r;
        snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
        curl_easy_setopt(u->curl, CURLOPT_RANGE, range);
        /* A weak ETag never matches If-Match: fall back to the time precondition for it. A
         * version known to the minute may have been written in any second of it. */
        if (ufs_version_minute(version)) {
                char date[64];

                format_http_date(version->mtime + 59, date, sizeof date);
                snprintf(line, sizeof line, "If-Unmodified-Since: %s", date);
        } else if (version->etag && strncmp(version->etag, "W/", 2) != 0 &&
                   strlen(version->etag) < sizeof line - 16)
                snprintf(line, sizeof line, "If-Match: %s", version->etag);
        else if (version->mtime > 0) {
                char date[64];

                format_http_date(version->mtime, date, sizeof date);
                snprintf(line, sizeof line, "If-Unmodified-Since: %s", date);
        } else
                line[0] = 0;
        if (line[0] && xfer_add_header(&x, line) < 0)
                return -ENOMEM;

        r = xfer_perform(u, url, &x, errbuf);
        if (r < 0)
                return r;
        if (x.status == 412 || x.status == 416)
                return ufs_fail(u, -ESTALE, "%s changed in the store (HTTP %ld)", url, x.status);
        if (x.status != 200 && x.status != 206)
                return ufs_fail(u, ufs_errno_from_status(x.status), "HTTP %ld from %s%s%.200s",
                                x.status, url, x.error_body_len ? ": " : "", x.error_body);
        if (x.delivered < len)
                return ufs_fail(u, -EIO, "%s sent %" PRIu64 " of %" PRIu64 " bytes", url,
                                x.delivered, len);
        return 0;
}
