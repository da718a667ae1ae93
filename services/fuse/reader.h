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

/* All borrowed: they must outlive the reader. */
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

/* When every block of [OFFSET, OFFSET + LEN) (clamped to the file) is cached on this node: the
 * descriptors and ranges to splice from, in order, and their count (0 at EOF). -ENOENT when some
 * block is not local (nothing is returned open), -E2BIG when more than MAX extents are needed. */
int reader_local_extents(reader *r, const reader_file *f, uint64_t offset, size_t len,
                         reader_extent *ext, unsigned max, unsigned *ret_n);

/* Like reader_local_extents(), but blocks not cached here are filled by this node's worker,
 * which hands each descriptor as soon as the bytes asked for are fetched (WAIT on its socket), so
 * a cold read waits for its range, not for whole blocks. -EREMOTE when another worker holds a
 * block (read it from there), -ENOENT without a local worker. One attempt, no retries: the
 * caller falls back to reader_read(). */
int reader_wait_local_extents(reader *r, const reader_file *f, uint64_t offset, size_t len,
                              reader_extent *ext, unsigned max, unsigned *ret_n);

/* Makes block INDEX of F cached on a worker (the local one when there is one), without
 * copying its bytes here: used by prefetch. */
int reader_warm(reader *r, const reader_file *f, uint64_t index);

/* Whether block INDEX is cached on this node (asks the local worker socket). */
bool reader_is_local(reader *r, const reader_file *f, uint64_t index);

/* A read-only descriptor of block INDEX's tier file on this node (close it), -ENOENT when the
 * block is not cached here. */
int reader_local_fd(reader *r, const reader_file *f, uint64_t index);

void reader_get_stats(reader *r, reader_stats *ret);
