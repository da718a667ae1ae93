/* A small libcurl JSON client for the cluster API: bearer token, timeouts, 307 redirects. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cleanup.h"

/*
 * One httpc per thread (it wraps one curl easy handle, whose connections are kept alive between
 * requests). Call httpc_global_init() once from main() before starting threads.
 *
 * Redirects: 307/308 are followed up to max_redirects (default 5) with method, body and token
 * kept, but only to the same origin or to one added with httpc_add_trusted() (the cluster's own
 * API addresses: a follower redirects to its leader); a redirect elsewhere is not followed and
 * the request fails with -EPERM, so that neither the token nor the body leaves the cluster.
 *
 * Errors: httpc_request() returns 0 whenever an HTTP response arrived, whatever its status
 * (look at ret->status), and a negative errno when none did: -ECONNREFUSED, -ETIMEDOUT,
 * -EHOSTUNREACH, -E2BIG (response body over the limit), -ELOOP (too many redirects),
 * -EINVAL (bad URL), -EPERM (a redirect out of the cluster), -EIO (anything else).
 */

typedef struct httpc httpc;

typedef struct httpc_response {
        long status;  /* HTTP status of the final response */
        json_t *json; /* the body parsed as JSON, or NULL when it is not JSON */
        char *body;   /* the raw body, NUL-terminated (never NULL after success) */
        size_t body_len;
        char *url; /* the effective URL after redirects */
} httpc_response;

int httpc_global_init(void);

httpc *httpc_new(void);
httpc *httpc_free(httpc *c); /* accepts NULL, returns NULL */
DEFINE_TRIVIAL_CLEANUP_FUNC(httpc *, httpc_free);

/* Settings kept for the following requests. TOKEN is copied; NULL clears it. */
int httpc_set_token(httpc *c, const char *token);
/* The CA bundle that verifies https:// servers (copied; NULL = the system's). */
int httpc_set_ca_file(httpc *c, const char *path);
/* An origin (HOST without brackets or with, PORT) that redirects may lead to with the token. */
int httpc_add_trusted(httpc *c, const char *host, unsigned port);
/* Total time and connect time per request, in milliseconds (defaults 5000 / 1000). */
void httpc_set_timeout(httpc *c, long total_ms, long connect_ms);
void httpc_set_max_redirects(httpc *c, long n);          /* 0 = do not follow */
void httpc_set_max_body(httpc *c, size_t max_body_size); /* default 64 MiB */

/* METHOD is "GET", "POST", "PUT", "DELETE". BODY (borrowed, may be NULL) is sent as JSON. On
 * success *ret is filled; free it with httpc_response_done(). */
int httpc_request(httpc *c, const char *method, const char *url, const json_t *body,
                  httpc_response *ret);

/* Convenience wrappers. */
int httpc_get(httpc *c, const char *url, httpc_response *ret);
int httpc_post(httpc *c, const char *url, const json_t *body, httpc_response *ret);
int httpc_put(httpc *c, const char *url, const json_t *body, httpc_response *ret);

void httpc_response_done(httpc_response *r);

/* The message of the last failure on this handle (curl's error buffer), "" if none. */
const char *httpc_last_error(const httpc *c);
