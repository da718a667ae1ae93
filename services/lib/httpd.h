/* The cluster API's HTTP server glue over libmicrohttpd, shared by the master and the worker. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Threads: libmicrohttpd runs its own pool of threads (epoll, internal polling). Handlers run on
 * those threads. A handler either replies before it returns, or returns without replying: the
 * connection is then suspended until one of the httpd_reply_*() functions is called for that
 * request, from ANY thread (for example the daemon's libuv loop after a raft apply). Every
 * request must get exactly one reply; after the reply call the request pointer is gone.
 * Everything the handler reads from the request (path, body, query, headers) stays valid until
 * the reply.
 *
 * Limits (docs/api.md): the request line and header fields together are bounded by
 * max_header_size (431 beyond it), bodies by max_body_size or a route's own max_body (413). A
 * request's header and body must arrive within request_timeout_ms of the connection's start (or
 * of the previous response on a kept-alive connection), whatever trickles in meanwhile; an idle
 * connection is closed after timeout_s. One client address holds at most max_per_client
 * connections; beyond max_connections a new connection closes the one that has waited longest
 * for its request (a slow or idle one), so that /healthz still answers under a flood.
 *
 * Threads: besides the pool, one reaper thread enforces the request deadline. guard_lock guards
 * the table of connections that the pool's callbacks and the reaper share.
 *
 * Authentication: when the server has a token (or a read token), every route needs
 * "Authorization: Bearer TOKEN" (compared in constant time) unless it sets HTTPD_ROUTE_PUBLIC;
 * otherwise httpd answers 401 and the handler is not called. GET and HEAD accept the read token
 * or the token, other methods (and routes with HTTPD_ROUTE_AUTH) only the token.
 *
 * TLS: with tls_cert_file and tls_key_file (PEM) the server speaks HTTPS only (GnuTLS).
 *
 * JSON: a route with HTTPD_ROUTE_JSON gets its body parsed (must be a JSON object; an empty body
 * gives an empty object); malformed JSON is answered 400 {"error":"invalid JSON: ..."} by httpd.
 */

typedef struct httpd httpd;
typedef struct httpd_request httpd_request;

/* USERDATA is the pointer given to httpd_new(). */
typedef void (*httpd_handler)(httpd_request *req, void *userdata);

enum {
        HTTPD_ROUTE_PREFIX = 1 << 0, /* match every path starting with .path, else exact match */
        HTTPD_ROUTE_JSON = 1 << 1,   /* parse the body as a JSON object before the handler */
        HTTPD_ROUTE_AUTH = 1 << 2,   /* need the (write) token even for GET */
        HTTPD_ROUTE_PUBLIC = 1 << 3, /* no token at all, whatever the method */
};

typedef struct httpd_route {
        const char *method; /* "GET", "POST", "PUT", "DELETE"; NULL = any */
        const char *path;   /* "/v1/datasets/" with HTTPD_ROUTE_PREFIX, or an exact path */
        httpd_handler handler;
        unsigned flags;
        size_t max_body; /* 0 = the server's max_body_size */
} httpd_route;

typedef struct httpd_config {
        const char *name;    /* for log messages, e.g. "master API" */
        const char *address; /* numeric IPv4/IPv6 address or host name to bind; NULL = any */
        uint16_t port;
        const char *token;           /* bearer token, copied; NULL or "" = no authentication */
        const char *read_token;      /* a token good for GET/HEAD only, copied; NULL = none */
        const char *tls_cert_file;   /* PEM certificate chain; with tls_key_file: HTTPS */
        const char *tls_key_file;    /* PEM private key */
        size_t max_header_size;      /* 0 = 16 KiB */
        size_t max_body_size;        /* 0 = 1 MiB */
        unsigned timeout_s;          /* idle connection timeout, 0 = 10 s */
        unsigned max_connections;    /* 0 = 512 */
        unsigned max_per_client;     /* connections per client address, 0 = 256 */
        uint64_t request_timeout_ms; /* header + body deadline, 0 = 10 s */
        unsigned threads;            /* worker threads, 0 = 4 */
        const char *metrics_prefix;  /* "weir_http" (the default when NULL) */
} httpd_config;

/* Routes are matched in table order: the first whose path matches and whose method matches
 * wins; a path that matches only with other methods gets 405, no path 404. ROUTES must outlive
 * the server. Returns 0 and *ret, or -errno (-EADDRINUSE when the port is taken, -ENOTSUP when
 * TLS is asked for and libmicrohttpd lacks it, -EINVAL for unusable TLS files). */
int httpd_new(const httpd_config *cfg, const httpd_route *routes, size_t n_routes, void *userdata,
              httpd **ret);

/* Stops listening and joins the threads. Every suspended request must have been replied to
 * before (answer pending ones with 503 first). Accepts NULL, returns NULL. */
httpd *httpd_free(httpd *h);

/* Request accessors; valid until the reply. */
const char *httpd_request_method(const httpd_request *req);
const char *httpd_request_path(const httpd_request *req);   /* decoded path, no query */
const char *httpd_request_suffix(const httpd_request *req); /* path after the route's prefix */
const char *httpd_request_query(const httpd_request *req, const char *key); /* NULL if absent */
const char *httpd_request_header(const httpd_request *req, const char *name);
const void *httpd_request_body(const httpd_request *req, size_t *ret_len); /* NUL-terminated */
json_t *httpd_request_json(const httpd_request *req); /* borrowed; NULL without HTTPD_ROUTE_JSON */
bool httpd_request_authorized(const httpd_request *req); /* the (write) token was presented */
/* The original target, "/path?query" re-encoded, for redirects. Caller frees. */
char *httpd_request_target(const httpd_request *req);

/* Adds a header to the coming reply (call before the reply, from the replying thread). */
int httpd_reply_header(httpd_request *req, const char *name, const char *value);

/* Replies. Each takes ownership of what it is given (JSON reference, fd) even on failure, and
 * returns 0 or -errno (the request is finished either way: on failure the connection closes). */
int httpd_reply_json(httpd_request *req, unsigned status, json_t *take);
int httpd_reply_error(httpd_request *req, unsigned status, const char *format, ...)
        __attribute__((format(printf, 3, 4)));
int httpd_reply_text(httpd_request *req, unsigned status, const char *content_type,
                     const char *text, size_t len); /* copied */
/* Sends LEN bytes of FD from OFFSET (sendfile when possible); takes FD. */
int httpd_reply_fd(httpd_request *req, unsigned status, const char *content_type, int fd,
                   uint64_t offset, uint64_t len);
/* 307 to BASE_URL ("http://host:port") + the request's own target. */
int httpd_reply_redirect(httpd_request *req, const char *base_url);

/* Appends this server's request metrics in Prometheus text format:
 * PREFIX_requests_total{code="200"} N and the histogram PREFIX_request_seconds. */
int httpd_metrics_write(httpd *h, FILE *f);
