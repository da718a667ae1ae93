/* Ranged block GETs to workers (libcurl, one kept-alive handle per thread); JSON goes via httpc. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Once per process, before threads. */
int http_global_init(void);
void http_global_done(void);

/* GET LEN bytes at OFFSET of URL (a Range request; the whole resource when OFFSET is 0 and WHOLE
 * is set) into BUF. Succeeds only on 200/206 with exactly LEN bytes; a 404 is -ENOENT, other
 * statuses -EIO, a short body -EIO. STALL_MS: abort when no byte arrives for that long. */
int http_get_range(const char *url, uint64_t offset, uint64_t len, int whole, void *buf,
                   uint64_t stall_ms, long *ret_status);

/* Percent-encodes S for a query value (unreserved characters and '/' kept). NULL on OOM. */
char *http_escape(const char *s);
