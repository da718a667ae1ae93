/* Ranged block GETs to workers (libcurl, one kept-alive handle per thread); JSON goes via httpc. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Once per process, before threads. */
int http_global_init(void);
void http_global_done(void);

/* What a block GET to a worker carries: the cluster's bearer token (NULL = none) and the CA file
 * that verifies https:// workers (NULL = the system's). Both borrowed. */
typedef struct http_auth {
        const char *token;
        const char *ca_file;
} http_auth;

/* GET LEN bytes at OFFSET of URL (a Range request; the whole resource when OFFSET is 0 and WHOLE
 * is set) into BUF. Succeeds only on 200/206 with exactly LEN bytes; a 404 is -ENOENT, a 401
 * -EACCES, other statuses -EIO, a short body -EIO. STALL_MS: abort when no byte arrives for that
 * long. AUTH may be NULL. */
int http_get_range(const char *url, const http_auth *auth, uint64_t offset, uint64_t len, int whole,
                   void *buf, uint64_t stall_ms, long *ret_status);

/* Percent-encodes S for a query value (unreserved characters and '/' kept). NULL on OOM. */
char *http_escape(const char *s);
