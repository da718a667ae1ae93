/* Block reads: a local fd from the worker socket, HTTP from a worker, or the store itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "config.h"
#include "meta.h"

/* What a read needs to know about one open file version. */
typedef struct reader_file {
        char *path; /* dataset path "/MOUNT/..." */
        uint64_t epoch;
        uint64_t file_id;
        uint64_t version;
        uint64_t size;
        int64_t mtime;
        char *etag;
        uint64_t block_size;
} reader_file;

void reader_file_done(reader_file *f);

typedef struct reader_options {
        uint64_t retry_ms;   /* how long a read may retry before it is EIO */
        uint64_t stall_ms;   /* a worker sending nothing for this long has failed */
        size_t fd_cache;     /* local block descriptors kept open */
        bool store_fallback; /* read the store when no worker answers */
        const char *token;   /* the cluster's token for workers' block GETs (borrowed), or NULL */
} reader_options;

typedef struct reader_stats {
        uint64_t bytes_local;  /* pread from descriptors the local worker passed */
        uint64_t bytes_remote; /* over HTTP from workers */
        uint64_t bytes_store;  /* straight from the store */
        uint64_t retries;
        uint64_t errors;
} reader_stats;

typedef struct reader reader;

/* All borrowed: they must outlive the reader. M may be NULL: no block locations (tests). */
int reader_new(const config *c, const config_node *node, const config_dataset *d, meta *m,
               const reader_options *o, reader **ret);
reader *reader_free(reader *r);

/* Reads up to LEN bytes at OFFSET of F into BUF; returns the count (short only at EOF) or a
 * negative errno after retries are exhausted (logged with the cause). */
ssize_t reader_read(reader *r, const reader_file *f, uint64_t offset, size_t len, void *buf);

/* One piece of a read served straight from a local block file. */
typedef struct reader_extent {
        int fd;          /* owned by the caller once returned: close it */
        uint64_t offset; /* within the file behind fd */
        uint64_t len;
} reader_extent;

/* Where each span of a read comes from, tried first (the others follow in this order). */
typedef enum reader_source {
        READER_LOCAL_HIT, /* a descriptor kept here: no round trip */
        READER_LOCAL,     /* the local worker holds or fills it: one WAIT on its socket */
        READER_REMOTE,    /* another worker holds it (or, without a local worker, fills it) */
        READER_STORE,     /* no worker can: the store itself */
} reader_source;

#define READER_PLAN_MAX 64 /* spans in one plan; a longer read is planned piece by piece */

typedef struct reader_span {
        block_span span;
        reader_source source;
        char id[BLOCK_ID_MAX];
        int fd;                    /* READER_LOCAL_HIT: owned by the plan, else -1 */
        const config_node *holder; /* another worker the master says holds it, or NULL */
} reader_span;

/* A read planned once: the block locations asked for once, each span labelled. */
typedef struct reader_plan {
        uint64_t offset;
        uint64_t want; /* the bytes asked for, clamped to the file */
        uint64_t len;  /* the bytes the spans cover (< want past READER_PLAN_MAX blocks) */
        unsigned n;
        reader_span spans[READER_PLAN_MAX];
} reader_plan;

/* Plans a read of LEN bytes at OFFSET of F: never fails (without locations, the local worker
 * comes first, then the other workers, then the store). Free with reader_plan_done(). */
void reader_plan_init(reader *r, const reader_file *f, uint64_t offset, size_t len,
                      reader_plan *ret);
void reader_plan_done(reader_plan *p);

/* When every span of P is this node's (READER_LOCAL_HIT or READER_LOCAL): the descriptors and
 * ranges to splice from, in order, and their count (0 at EOF). The local worker hands a block it
 * fills as soon as the bytes asked for are there (WAIT), so a cold read waits for its range, not
 * for whole blocks. -EREMOTE when some span is read elsewhere, -E2BIG when P does not cover the
 * read or needs more than MAX extents; another error when the local worker fails (that span is
 * relabelled, and reader_read_plan() goes on from there). Nothing is left open on failure. */
int reader_plan_extents(reader *r, const reader_file *f, reader_plan *p, reader_extent *ext,
                        unsigned max, unsigned *ret_n);

/* Reads the bytes P plans (all of them: want) into BUF, each span through its sources in order,
 * with retries as reader_read(). Returns want or a negative errno. */
ssize_t reader_read_plan(reader *r, const reader_file *f, reader_plan *p, void *buf);

/* Makes block INDEX of F cached on a worker (the local one when there is one), without
 * copying its bytes here: used by prefetch. */
int reader_warm(reader *r, const reader_file *f, uint64_t index);

/* A read-only descriptor of block INDEX's tier file on this node (close it), -ENOENT when the
 * block is not cached here. */
int reader_local_fd(reader *r, const reader_file *f, uint64_t index);

void reader_get_stats(reader *r, reader_stats *ret);
