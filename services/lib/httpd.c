/* libmicrohttpd glue: routing, limits, bearer token, JSON replies, deferred replies, metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "apibody.h"
#include "cleanup.h"
#include "httpd.h"
#include "log.h"

#define HTTPD_DEFAULT_MAX_HEADER (16u << 10)
#define HTTPD_DEFAULT_MAX_BODY   (1u << 20)
#define HTTPD_DEFAULT_TIMEOUT_S  10
#define HTTPD_DEFAULT_THREADS    4
#define HTTPD_DEFAULT_MAX_CONN   512
#define HTTPD_DEFAULT_PER_CLIENT 256
#define HTTPD_DEFAULT_DEADLINE   10000 /* ms for a request's header and body */
#define HTTPD_REAP_INTERVAL_MS   250
#define HTTPD_MAX_PEM            (1u << 20)
#define HTTPD_LISTEN_BACKLOG     4096

static const double latency_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,   1,    2.5,   5,    10};

/* A connection as the guard sees it: how long it may still take to send its request. */
typedef struct guard_conn {
        int fd;
        bool waiting;         /* for a request's header or body: the deadline applies */
        uint64_t deadline_ms; /* CLOCK_MONOTONIC */
        uint64_t since_ms;    /* when it started waiting: the oldest is evicted first */
        uint64_t answer_ms;   /* when its current answer started (while !waiting) */
        struct guard_conn *prev, *next;
} guard_conn;

struct httpd {
        struct MHD_Daemon *daemon;
        int listen_fd;
        char *read_token;
        size_t read_token_len;
        char *tls_cert, *tls_key; /* PEM contents */
        size_t max_header;

        /* guard_lock guards the connection table below and reaper_stop; MHD's threads add and
         * remove connections, the reaper closes those past their deadline. */
        pthread_mutex_t guard_lock;
        pthread_cond_t reaper_cond;
        pthread_t reaper;
        bool reaper_started, reaper_stop;
        guard_conn *conns;
        unsigned n_conns;
        unsigned max_conns;
        uint64_t deadline_ms;
        uint64_t evicted, expired; /* counters for /metrics */
        const httpd_route *routes;
        size_t n_routes;
        void *userdata;
        char *name;
        char *token;
        size_t token_len;
        size_t max_body;
        char *metrics_prefix;

        /* metrics_lock guards the counters below; MHD threads update them on completion. */
        pthread_mutex_t metrics_lock;
        uint64_t codes[600];
        uint64_t buckets[ELEMENTSOF(latency_buckets)];
        uint64_t count;
        double sum;
};

typedef struct reply_header {
        char *name;
        char *value;
        struct reply_header *next;
} reply_header;

struct httpd_request {
        httpd *server;
        struct MHD_Connection *connection;
        const httpd_route *route;
        char *method;
        char *path;
        const char *suffix;
        char *body;
        size_t body_len, body_cap, max_body;
        json_t *json;
        bool authorized;      /* the (write) token */
        bool read_authorized; /* the read token or the token */
        bool handled;
        bool refuse_now; /* answer before reading the body */
        bool nul_path;   /* the raw path holds %00 (on_uri) */
        reply_header *headers;
        struct timespec start;
        unsigned final_status;

        /* lock guards response, status and suspended: the reply may come from any thread
         * while the MHD thread is still inside the handler or about to suspend. */
        pthread_mutex_t lock;
        struct MHD_Response *response;
        unsigned status;
        bool suspended;
        bool queued;
};

const char *httpd_request_method(const httpd_request *req)
{
        return req->method;
}

const char *httpd_request_path(const httpd_request *req)
{
        return req->path;
}

const char *httpd_request_suffix(const httpd_request *req)
{
        return req->suffix ? req->suffix : "";
}

const char *httpd_request_query(const httpd_request *req, const char *key)
{
        return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, key);
}

const char *httpd_request_header(const httpd_request *req, const char *name)
{
        return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const void *httpd_request_body(const httpd_request *req, size_t *ret_len)
{
        if (ret_len)
                *ret_len = req->body_len;
        return req->body ? req->body : "";
}

json_t *httpd_request_json(const httpd_request *req)
{
        return req->json;
}

bool httpd_request_authorized(const httpd_request *req)
{
        return req->authorized;
}

static void percent_encode(FILE *f, const char *s, bool keep_slash)
{
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~", ch) || (keep_slash && ch == '/'))
                        fputc(ch, f);
                else
                        fprintf(f, "%%%02X", ch);
        }
}

typedef struct query_iter {
        FILE *f;
        bool first;
} query_iter;

static enum MHD_Result append_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
        query_iter *it = cls;

        fputc(it->first ? '?' : '&', it->f);
        it->first = false;
        percent_encode(it->f, key, false);
        if (value) {
                fputc('=', it->f);
                percent_encode(it->f, value, false);
        }
        return MHD_YES;
}

char *httpd_request_target(const httpd_request *req)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        percent_encode(f, req->path, true);
        query_iter it = {.f = f, .first = true};
        MHD_get_connection_values(req->connection, MHD_GET_ARGUMENT_KIND, append_query_arg, &it);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

int httpd_reply_header(httpd_request *req, const char *name, const char *value)
{
        reply_header *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->name = strdup(name);
        h->value = strdup(value);
        if (!h->name || !h->value) {
                free(h->name);
                free(h->value);
                free(h);
                return -ENOMEM;
        }
        h->next = req->headers;
        req->headers = h;
        return 0;
}

static void reply_headers_free(httpd_request *req)
{
        while (req->headers) {
                reply_header *h = req->headers;
                req->headers = h->next;
                free(h->name);
                free(h->value);
                free(h);
        }
}

/* Hands RESP (may be NULL: allocation failed, the connection is closed) to the request and
 * wakes the connection if the handler already returned. Called from any thread. */
static int request_set_response(httpd_request *req, unsigned status, struct MHD_Response *resp,
                                const char *content_type)
{
        if (resp) {
                if (content_type)
                        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
                for (reply_header *h = req->headers; h; h = h->next)
                        MHD_add_response_header(resp, h->name, h->value);
        }
        reply_headers_free(req);

        pthread_mutex_lock(&req->lock);
        if (req->response || req->queued) {
                /* A second reply is a programming error; keep the first. */
                pthread_mutex_unlock(&req->lock);
                if (resp)
                        MHD_destroy_response(resp);
                log_error("httpd: second reply to %s %s ignored", req->method, req->path);
                return -EALREADY;
        }
        bool oom = !resp;
        if (oom) {
                /* Out of memory: answer with a static 500 so the connection still ends. */
                static const char oom_body[] = "{\"error\":\"out of memory\"}\n";
                resp = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
                                                       MHD_RESPMEM_PERSISTENT);
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        req->response = resp;
        req->status = status;
        if (req->suspended) {
                req->suspended = false;
                MHD_resume_connection(req->connection);
        }
        pthread_mutex_unlock(&req->lock);
        return oom ? -ENOMEM : 0;
}

int httpd_reply_text(httpd_request *req, unsigned status, const char *content_type,
                     const char *text, size_t len)
{
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
        return request_set_response(req, status, resp, content_type);
}

int httpd_reply_json(httpd_request *req, unsigned status, json_t *take)
{
        char *s = take ? json_dumps(take, JSON_COMPACT) : NULL;
        json_decref(take);
        if (!s)
                return request_set_response(req, status, NULL, NULL);
        size_t len = strlen(s);
        /* A trailing newline for terminals; json_dumps allocated len + 1, reuse the NUL byte. */
        char *t = realloc(s, len + 2);
        if (t) {
                s = t;
                s[len++] = '\n';
                s[len] = 0;
        }
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
        if (!resp)
                free(s);
        return request_set_response(req, status, resp, "application/json");
}

int httpd_reply_error(httpd_request *req, unsigned status, const char *format, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, format);
        vsnprintf(msg, sizeof(msg), format, ap);
        va_end(ap);
        json_t *j = json_pack("{s:s}", "error", msg);
        if (!j) {
                /* A quoted client value that is not UTF-8 (or cut inside a character): the
                 * client still gets its status and message, with '?' for the bytes. */
                for (char *p = msg; *p; p++)
                        if ((unsigned char)*p >= 0x80)
                                *p = '?';
                j = json_pack("{s:s}", "error", msg);
        }
        return httpd_reply_json(req, status, j);
}

int httpd_reply_fd(httpd_request *req, unsigned status, const char *content_type, int fd,
                   uint64_t offset, uint64_t len)
{
        struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
        if (!resp)
                safe_close(fd);
        return request_set_response(req, status, resp,
                                    content_type ? content_type : "application/octet-stream");
}

int httpd_reply_redirect(httpd_request *req, const char *base_url)
{
        _cleanup_free_ char *target = httpd_request_target(req);
        _cleanup_free_ char *location = NULL;

        if (!target || asprintf(&location, "%s%s", base_url, target) < 0)
                return request_set_response(req, 500, NULL, NULL);
        int r = httpd_reply_header(req, MHD_HTTP_HEADER_LOCATION, location);
        if (r < 0)
                return request_set_response(req, 500, NULL, NULL);
        return httpd_reply_json(
                req, MHD_HTTP_TEMPORARY_REDIRECT,
                json_pack("{s:s,s:s}", "error", "not the leader", "location", location));
}

/* Constant time in the length of the presented token. */
static bool token_equal(const char *expected, size_t expected_len, const char *given)
{
        size_t given_len = strlen(given);
        unsigned char diff = given_len != expected_len;
        for (size_t i = 0; i < given_len; i++)
                diff |= (unsigned char)given[i] ^
                        (unsigned char)(i < expected_len ? expected[i] : 0);
        return diff == 0;
}

/* Sets req->authorized (the token) and req->read_authorized (the read token or the token). */
static void request_check_token(httpd_request *req)
{
        httpd *h = req->server;
        const char *auth = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_AUTHORIZATION);

        if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
                auth += 7;
                while (*auth == ' ')
                        auth++;
        } else
                auth = NULL;
        /* Both comparisons always run: the time taken says nothing about which token matched. */
        bool w = h->token ? auth && token_equal(h->token, h->token_len, auth) : !h->read_token;
        bool r = h->read_token && auth && token_equal(h->read_token, h->read_token_len, auth);
        req->authorized = w;
        req->read_authorized = w || r;
}

/* The request line and header fields as sent, counting ": " and CRLF: the documented limit. */
typedef struct header_count {
        size_t bytes;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
        header_count *hc = cls;

        hc->bytes += strlen(key) + 4 + (value ? strlen(value) : 0);
        return MHD_YES;
}

static size_t request_header_size(struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version)
{
        header_count hc = {.bytes = strlen(method) + strlen(url) + strlen(version) + 4};

        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, count_header, &hc);
        MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &hc);
        return hc.bytes + 2; /* the empty line */
}

static bool route_path_match(const httpd_route *r, const char *path, const char **ret_suffix)
{
        size_t n = strlen(r->path);
        if (r->flags & HTTPD_ROUTE_PREFIX) {
                if (strncmp(path, r->path, n) != 0)
                        return false;
                *ret_suffix = path + n;
                return true;
        }
        if (strcmp(path, r->path) != 0)
                return false;
        *ret_suffix = path + n;
        return true;
}

/* Sets an error response during the MHD callbacks (never suspended at that point). */
static void request_fail(httpd_request *req, unsigned status, const char *msg)
{
        httpd_reply_error(req, status, "%s", msg);
}

static enum MHD_Result request_queue(httpd_request *req)
{
        enum MHD_Result r = MHD_queue_response(req->connection, req->status, req->response);
        MHD_destroy_response(req->response);
        req->response = NULL;
        req->queued = true;
        req->final_status = req->status;
        return r;
}

static httpd_request *request_new(httpd *h, struct MHD_Connection *c, const char *url,
                                  const char *method)
{
        httpd_request *req = calloc(1, sizeof(*req));
        if (!req)
                return NULL;
        req->server = h;
        req->connection = c;
        req->max_body = h->max_body;
        pthread_mutex_init(&req->lock, NULL);
        clock_gettime(CLOCK_MONOTONIC, &req->start);
        req->method = strdup(method);
        req->path = strdup(url);
        if (!req->method || !req->path) {
                free(req->method);
                free(req->path);
                pthread_mutex_destroy(&req->lock);
                free(req);
                return NULL;
        }
        return req;
}

/* MHD decodes %00 in a query value and hands it over NUL-terminated, so "path=/a%00/b" would
 * read as "/a": such a parameter is refused instead of silently cut. */
static enum MHD_Result find_nul_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size)
{
        if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
                *(bool *)cls = true;
                return MHD_NO;
        }
        return MHD_YES;
}

/* MHD decodes %00 in the path as well and hands over the part before it, so
 * "/v1/blocks/ID%00junk" would be read as block ID. The URI logger sees the request line's URI
 * before it is decoded; what it returns is the request's first *con_cls, so a marker tells
 * on_access(). */
static char nul_path_marker;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
        size_t n = strcspn(uri, "?"); /* NULs in query values: find_nul_arg() */

        for (size_t i = 0; i + 3 <= n; i++)
                if (uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0')
                        return &nul_path_marker;
        return NULL;
}

static void request_route(httpd_request *req)
{
        httpd *h = req->server;
        bool path_seen = false;

        for (size_t i = 0; i < h->n_routes; i++) {
                const httpd_route *r = &h->routes[i];
                const char *suffix;
                if (!route_path_match(r, req->path, &suffix))
                        continue;
                path_seen = true;
                if (r->method && strcmp(r->method, req->method) != 0 &&
                    !(strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
                        continue;
                req->route = r;
                req->suffix = suffix;
                break;
        }
        if (!req->route) {
                request_fail(req, path_seen ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND,
                             path_seen ? "method not allowed" : "no such path");
                return;
        }
        if (req->route->max_body)
                req->max_body = req->route->max_body;

        request_check_token(req);
        bool mutating = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
        bool ok = (req->route->flags & HTTPD_ROUTE_PUBLIC) ||
                  ((mutating || (req->route->flags & HTTPD_ROUTE_AUTH)) ? req->authorized
                                                                        : req->read_authorized);
        if (!ok) {
                httpd_reply_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
                request_fail(req, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token");
                return;
        }
        bool nul = false;
        MHD_get_connection_values_n(req->connection, MHD_GET_ARGUMENT_KIND, find_nul_arg, &nul);
        if (nul) {
                request_fail(req, MHD_HTTP_BAD_REQUEST, "a query parameter contains a NUL byte");
                return;
        }
        if (req->nul_path) {
                request_fail(req, MHD_HTTP_BAD_REQUEST, "the path contains a NUL byte (%00)");
                return;
        }

        const char *cl = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(cl, &end, 10);
                if (errno != 0 || end == cl || *end != 0 || v > req->max_body) {
                        request_fail(req, 413 /* content too large */, "request body too large");
                        req->refuse_now = errno != 0 || v / 16 > req->max_body;
                }
        }
}

static void request_append_body(httpd_request *req, const char *data, size_t n)
{
        if (n > req->max_body - req->body_len) {
                request_fail(req, 413 /* content too large */, "request body too large");
                return;
        }
        if (req->body_len + n + 1 > req->body_cap) {
                size_t cap = MAX(req->body_cap * 2, req->body_len + n + 1);
                cap = MIN(cap, req->max_body + 1);
                char *b = realloc(req->body, cap);
                if (!b) {
                        request_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
                        return;
                }
                req->body = b;
                req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        req->body[req->body_len] = 0;
}

static void request_parse_json(httpd_request *req)
{
        char err[512];
        int r = apibody_parse(req->body, req->body_len, &req->json, err, sizeof(err));

        if (r == -ENOMEM)
                request_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        else if (r < 0)
                request_fail(req, MHD_HTTP_BAD_REQUEST, err);
}

static bool request_has_response(httpd_request *req)
{
        pthread_mutex_lock(&req->lock);
        bool r = req->response || req->queued;
        pthread_mutex_unlock(&req->lock);
        return r;
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static guard_conn *guard_of(struct MHD_Connection *c)
{
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

/* Starts (WAITING) or stops the request deadline of connection C. */
static void guard_set_waiting(httpd *h, struct MHD_Connection *c, bool waiting)
{
        guard_conn *g = guard_of(c);

        if (!g)
                return;
        pthread_mutex_lock(&h->guard_lock);
        if (waiting && !g->waiting) {
                g->since_ms = now_ms();
                g->deadline_ms = g->since_ms + h->deadline_ms;
        }
        if (!waiting && g->waiting)
                g->answer_ms = now_ms();
        g->waiting = waiting;
        pthread_mutex_unlock(&h->guard_lock);
}

/* Ends a connection from outside its MHD thread: MHD sees the shutdown, closes and forgets it
 * (the descriptor stays valid until MHD's CLOSED notification, which takes guard_lock first). */
static void guard_kill(guard_conn *g)
{
        (void)shutdown(g->fd, SHUT_RDWR);
        g->waiting = false;
        g->deadline_ms = UINT64_MAX;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        httpd *h = cls;

        if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                guard_conn *g = *socket_context;
                if (!g)
                        return;
                pthread_mutex_lock(&h->guard_lock);
                if (g->prev)
                        g->prev->next = g->next;
                else
                        h->conns = g->next;
                if (g->next)
                        g->next->prev = g->prev;
                h->n_conns--;
                pthread_mutex_unlock(&h->guard_lock);
                free(g);
                *socket_context = NULL;
                return;
        }

        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        guard_conn *g = calloc(1, sizeof(*g));
        if (!g || !ci) {
                /* Untracked it would escape the deadline: refuse it instead. */
                if (ci)
                        (void)shutdown(ci->connect_fd, SHUT_RDWR);
                free(g);
                return;
        }
        g->fd = ci->connect_fd;
        g->waiting = true;
        g->since_ms = now_ms();
        g->deadline_ms = g->since_ms + h->deadline_ms;

        pthread_mutex_lock(&h->guard_lock);
        if (h->n_conns >= h->max_conns) {
                /* Full: the connection that has waited longest for its request makes room. A
                 * client that sends its request at once (a health probe) is never that one. */
                guard_conn *oldest = NULL;
                for (guard_conn *o = h->conns; o; o = o->next)
                        if (o->waiting && (!oldest || o->since_ms < oldest->since_ms))
                                oldest = o;
                if (oldest) {
                        guard_kill(oldest);
                        h->evicted++;
                } else {
                        /* Every connection is being answered. One answered for longer than
                         * the request deadline makes room (a slow reader, or pipelined answers
                         * read at a trickle, would otherwise hold its slot for as long as it
                         * likes); else the new one is refused. Killed ones have no deadline. */
                        guard_conn *slow = NULL;
                        for (guard_conn *o = h->conns; o; o = o->next)
                                if (o->deadline_ms != UINT64_MAX &&
                                    (!slow || o->answer_ms < slow->answer_ms))
                                        slow = o;
                        if (slow && g->since_ms - slow->answer_ms >= h->deadline_ms) {
                                guard_kill(slow);
                                h->evicted++;
                        } else
                                guard_kill(g);
                }
        }
        g->next = h->conns;
        if (h->conns)
                h->conns->prev = g;
        h->conns = g;
        h->n_conns++;
        pthread_mutex_unlock(&h->guard_lock);
        *socket_context = g;
}

static void *reaper_thread(void *userdata)
{
        httpd *h = userdata;

        pthread_mutex_lock(&h->guard_lock);
        while (!h->reaper_stop) {
                struct timespec ts;
                uint64_t now = now_ms();

                for (guard_conn *g = h->conns; g; g = g->next)
                        if (g->waiting && g->deadline_ms <= now) {
                                guard_kill(g);
                                h->expired++;
                        }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += HTTPD_REAP_INTERVAL_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&h->reaper_cond, &h->guard_lock, &ts);
        }
        pthread_mutex_unlock(&h->guard_lock);
        return NULL;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
        httpd *h = cls;
        httpd_request *req = *con_cls;
        bool nul_path = req == (void *)&nul_path_marker;

        if (nul_path)
                req = NULL;
        if (!req) {
                req = request_new(h, c, url, method);
                if (!req)
                        return MHD_NO;
                req->nul_path = nul_path;
                *con_cls = req;
                if (request_header_size(c, url, method, version) > h->max_header)
                        request_fail(req, 431 /* request header fields too large */,
                                     "request header too large");
                else
                        request_route(req);
                /* A body announced far beyond the limit is refused before it is read (the
                 * client may then see the connection close rather than the 413). Other early
                 * refusals wait for the body, read and dropped, so that the client reads the
                 * answer instead of a reset. */
                if (req->refuse_now) {
                        pthread_mutex_lock(&req->lock);
                        enum MHD_Result r = request_queue(req);
                        pthread_mutex_unlock(&req->lock);
                        return r;
                }
                return MHD_YES;
        }

        if (*upload_data_size > 0) {
                if (!request_has_response(req))
                        request_append_body(req, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return MHD_YES;
        }

        if (!req->handled) {
                req->handled = true;
                guard_set_waiting(h, c, false); /* the request is in: no deadline for replies */
                if (!request_has_response(req) && (req->route->flags & HTTPD_ROUTE_JSON))
                        request_parse_json(req);
                if (!request_has_response(req))
                        req->route->handler(req, h->userdata);
        }

        pthread_mutex_lock(&req->lock);
        if (req->queued) {
                pthread_mutex_unlock(&req->lock);
                return MHD_YES;
        }
        if (req->response) {
                enum MHD_Result r = request_queue(req);
                pthread_mutex_unlock(&req->lock);
                return r;
        }
        /* No reply yet: park the connection until httpd_reply_*() resumes it. */
        req->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&req->lock);
        return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        httpd *h = cls;
        httpd_request *req = *con_cls;
        struct timespec now;

        if (req == (void *)&nul_path_marker)
                *con_cls = req = NULL; /* ended before on_access() */
        if (!req)
                return;
        *con_cls = NULL;
        guard_set_waiting(h, c, true); /* a kept-alive connection waits for its next request */

        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - req->start.tv_sec) +
                      (double)(now.tv_nsec - req->start.tv_nsec) / 1e9;
        pthread_mutex_lock(&h->metrics_lock);
        if (req->final_status > 0 && req->final_status < ELEMENTSOF(h->codes))
                h->codes[req->final_status]++;
        for (size_t i = 0; i < ELEMENTSOF(latency_buckets); i++)
                if (secs <= latency_buckets[i])
                        h->buckets[i]++;
        h->count++;
        h->sum += secs;
        pthread_mutex_unlock(&h->metrics_lock);

        if (req->response)
                MHD_destroy_response(req->response);
        reply_headers_free(req);
        json_decref(req->json);
        free(req->body);
        free(req->method);
        free(req->path);
        pthread_mutex_destroy(&req->lock);
        free(req);
}

_printf_(2, 0) static void on_mhd_log(void *cls, const char *fm, va_list ap)
{
        httpd *h = cls;
        char msg[512];

        vsnprintf(msg, sizeof(msg), fm, ap);
        size_t n = strlen(msg);
        while (n > 0 && msg[n - 1] == '\n')
                msg[--n] = 0;
        log_debug("%s: libmicrohttpd: %s", h->name, msg);
}

int httpd_metrics_write(httpd *h, FILE *f)
{
        const char *p = h->metrics_prefix;

        pthread_mutex_lock(&h->metrics_lock);
        fprintf(f, "# HELP %s_requests_total HTTP requests answered, by status code.\n", p);
        fprintf(f, "# TYPE %s_requests_total counter\n", p);
        for (size_t i = 0; i < ELEMENTSOF(h->codes); i++)
                if (h->codes[i] > 0)
                        fprintf(f, "%s_requests_total{code=\"%zu\"} %llu\n", p, i,
                                (unsigned long long)h->codes[i]);
        fprintf(f, "# HELP %s_request_seconds Time from request headers to completion.\n", p);
        fprintf(f, "# TYPE %s_request_seconds histogram\n", p);
        for (size_t i = 0; i < ELEMENTSOF(latency_buckets); i++)
                fprintf(f, "%s_request_seconds_bucket{le=\"%g\"} %llu\n", p, latency_buckets[i],
                        (unsigned long long)h->buckets[i]);
        fprintf(f, "%s_request_seconds_bucket{le=\"+Inf\"} %llu\n", p,
                (unsigned long long)h->count);
        fprintf(f, "%s_request_seconds_sum %.6f\n", p, h->sum);
        fprintf(f, "%s_request_seconds_count %llu\n", p, (unsigned long long)h->count);
        pthread_mutex_unlock(&h->metrics_lock);
        pthread_mutex_lock(&h->guard_lock);
        fprintf(f, "# HELP %s_connections Open connections.\n# TYPE %s_connections gauge\n", p, p);
        fprintf(f, "%s_connections %u\n", p, h->n_conns);
        fprintf(f,
                "# HELP %s_connections_closed_total Connections closed by the server's limits: "
                "evicted when full, or past the request deadline.\n"
                "# TYPE %s_connections_closed_total counter\n",
                p, p);
        fprintf(f, "%s_connections_closed_total{reason=\"evicted\"} %llu\n", p,
                (unsigned long long)h->evicted);
        fprintf(f, "%s_connections_closed_total{reason=\"deadline\"} %llu\n", p,
                (unsigned long long)h->expired);
        pthread_mutex_unlock(&h->guard_lock);
        return ferror(f) ? -EIO : 0;
}

static int httpd_listen(const httpd_config *cfg, bool *ret_ipv6)
{
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *ai = NULL;
        char port[8];
        int r;

        snprintf(port, sizeof(port), "%u", cfg->port);
        r = getaddrinfo(cfg->address, port, &hints, &ai);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;

        _cleanup_close_ int fd =
                socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(ai);
                return r;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* A deep accept queue: a flood of connections (which the guard then evicts) must not
         * overflow it and drop the handshakes of the clients arriving meanwhile, such as a
         * health probe. The kernel caps it at net.core.somaxconn. */
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, HTTPD_LISTEN_BACKLOG) < 0) {
                r = -errno;
                freeaddrinfo(ai);
                return r;
        }
        *ret_ipv6 = ai->ai_family == AF_INET6;
        freeaddrinfo(ai);
        return TAKE_FD(fd);
}

static int read_pem(const char *path, char **ret)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *buf = NULL;
        size_t n;

        if (!f)
                return log_error_errno(errno, "Cannot open %s: %m", path);
        buf = malloc(HTTPD_MAX_PEM + 1);
        if (!buf)
                return -ENOMEM;
        n = fread(buf, 1, HTTPD_MAX_PEM + 1, f);
        if (ferror(f))
                return log_error_errno(EIO, "Cannot read %s: %m", path);
        if (n > HTTPD_MAX_PEM)
                return log_error_errno(EFBIG, "%s: larger than %u bytes, not a PEM file", path,
                                       HTTPD_MAX_PEM);
        buf[n] = 0;
        if (!strstr(buf, "-----BEGIN "))
                return log_error_errno(EINVAL, "%s: not a PEM file (no -----BEGIN line)", path);
        *ret = TAKE_PTR(buf);
        return 0;
}

static int httpd_load_tls(httpd *h, const httpd_config *cfg)
{
        int r;

        if (!cfg->tls_cert_file || !cfg->tls_key_file)
                return log_error_errno(EINVAL, "%s: TLS needs both a certificate and a key",
                                       h->name);
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                return log_error_errno(ENOTSUP, "%s: this libmicrohttpd has no TLS support",
                                       h->name);
        r = read_pem(cfg->tls_cert_file, &h->tls_cert);
        if (r < 0)
                return r;
        return read_pem(cfg->tls_key_file, &h->tls_key);
}

int httpd_new(const httpd_config *cfg, const httpd_route *routes, size_t n_routes, void *userdata,
              httpd **ret)
{
        bool ipv6 = false;
        int r;
        httpd *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        pthread_mutex_init(&h->metrics_lock, NULL);
        pthread_mutex_init(&h->guard_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->reaper_cond, &ca);
        pthread_condattr_destroy(&ca);
        h->listen_fd = -1;
        h->max_conns = cfg->max_connections ? cfg->max_connections : HTTPD_DEFAULT_MAX_CONN;
        h->deadline_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : HTTPD_DEFAULT_DEADLINE;
        h->max_header = cfg->max_header_size ? cfg->max_header_size : HTTPD_DEFAULT_MAX_HEADER;
        h->routes = routes;
        h->n_routes = n_routes;
        h->userdata = userdata;
        h->max_body = cfg->max_body_size ? cfg->max_body_size : HTTPD_DEFAULT_MAX_BODY;
        h->name = strdup(cfg->name ? cfg->name : "http");
        h->metrics_prefix = strdup(cfg->metrics_prefix ? cfg->metrics_prefix : "weir_http");
        if (cfg->token && cfg->token[0]) {
                h->token = strdup(cfg->token);
                h->token_len = strlen(cfg->token);
        }
        if (cfg->read_token && cfg->read_token[0]) {
                h->read_token = strdup(cfg->read_token);
                h->read_token_len = strlen(cfg->read_token);
        }
        if (!h->name || !h->metrics_prefix || (cfg->token && cfg->token[0] && !h->token) ||
            (cfg->read_token && cfg->read_token[0] && !h->read_token)) {
                httpd_free(h);
                return -ENOMEM;
        }
        if (cfg->tls_cert_file || cfg->tls_key_file) {
                r = httpd_load_tls(h, cfg);
                if (r < 0) {
                        httpd_free(h);
                        return r;
                }
        }

        int fd = httpd_listen(cfg, &ipv6);
        if (fd < 0) {
                httpd_free(h);
                return fd;
        }
        h->listen_fd = fd;

        unsigned threads = cfg->threads ? cfg->threads : HTTPD_DEFAULT_THREADS;
        unsigned timeout = cfg->timeout_s ? cfg->timeout_s : HTTPD_DEFAULT_TIMEOUT_S;
        unsigned per_client = cfg->max_per_client ? cfg->max_per_client : HTTPD_DEFAULT_PER_CLIENT;
        unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0) |
                         (h->tls_cert ? MHD_USE_TLS : 0);
        /* MHD's own cap splits over the pool's threads and stops accepting when a thread is
         * full: leave room above ours, which evicts, so that accepting never stops. */
        unsigned hard_limit = h->max_conns + h->max_conns / 2 + 16 * threads;
        struct MHD_OptionItem tls_options[] = {
                {h->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, h->tls_cert},
                {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key},
                {MHD_OPTION_END, 0, NULL},
        };

        r = pthread_create(&h->reaper, NULL, reaper_thread, h);
        if (r != 0) {
                httpd_free(h);
                return -r;
        }
        h->reaper_started = true;
        h->daemon = MHD_start_daemon(
                flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE, threads,
                MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                /* The per-connection pool holds the request line and headers with their parsed
                 * form, and the response headers: twice the header limit and some, so that the
                 * limit that applies is ours (request_header_size), exactly as documented. */
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(2 * h->max_header + 16384),
                MHD_OPTION_CONNECTION_LIMIT, hard_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                per_client, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
                h, MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
        if (!h->daemon) {
                log_debug("%s: MHD_start_daemon failed", h->name);
                r = h->tls_cert ? -EINVAL : -EIO; /* GnuTLS refused the certificate or key */
                if (h->tls_cert)
                        log_error("%s: cannot start with the TLS certificate and key given "
                                  "(unreadable PEM, or a key that does not match)",
                                  h->name);
                httpd_free(h);
                return r;
        }
        h->listen_fd = -1; /* MHD_stop_daemon() closes it */
        *ret = h;
        return 0;
}

httpd *httpd_free(httpd *h)
{
        if (!h)
                return NULL;
        if (h->daemon)
                MHD_stop_daemon(h->daemon);
        if (h->reaper_started) {
                pthread_mutex_lock(&h->guard_lock);
                h->reaper_stop = true;
                pthread_cond_signal(&h->reaper_cond);
                pthread_mutex_unlock(&h->guard_lock);
                pthread_join(h->reaper, NULL);
        }
        safe_close(h->listen_fd);
        pthread_mutex_destroy(&h->metrics_lock);
        pthread_mutex_destroy(&h->guard_lock);
        pthread_cond_destroy(&h->reaper_cond);
        if (h->read_token) {
                explicit_bzero(h->read_token, h->read_token_len);
                free(h->read_token);
        }
        if (h->tls_key) {
                explicit_bzero(h->tls_key, strlen(h->tls_key));
                free(h->tls_key);
        }
        free(h->tls_cert);
        free(h->name);
        free(h->metrics_prefix);
        if (h->token) {
                explicit_bzero(h->token, h->token_len);
                free(h->token);
        }
        free(h);
        return NULL;
}
