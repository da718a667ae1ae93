/* Fills cache misses from the remote store: one fetch per block however many wait for it, large
 * blocks as parallel ranges over kept-alive connections, version preconditions, retries. */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "config.h"
#include "etag.h"
#include "store.h"

/* One version of one file, as the master describes it (GET /v1/files/ID). */
typedef struct fill_file {
        uint64_t epoch; /* the cluster's epoch (block.h) */
        uint64_t file_id;
        uint64_t version;
        uint64_t size;
        uint64_t block_size;
        int64_t mtime;
        char *etag;    /* NULL = none */
        char *dataset; /* dataset name */
        char *path;    /* "/MOUNT/dir/file" within the dataset */
} fill_file;

void fill_file_done(fill_file *f);
int fill_file_copy(const fill_file *from, fill_file *to);

/* Looks up FILE_ID (the master, in the daemon; a table, in tests). THREAD is the calling fill
 * thread's index, 0 <= THREAD < threads, so that the resolver can keep one client per thread. */
typedef int (*fill_resolve_fn)(void *userdata, unsigned thread, uint64_t file_id, fill_file *ret);

typedef struct fill_options {
        unsigned threads;    /* store connections open at once; default 16 */
        uint64_t part_size;  /* blocks above this are fetched as parallel ranges; default 2 MiB */
        unsigned max_parts;  /* ranges per block at most; default 8 */
        unsigned retries;    /* attempts per range after the first; 0 = the default, 4 */
        unsigned backoff_ms; /* first retry delay, doubled each time; default 100 */
} fill_options;

typedef struct fill_stats {
        uint64_t store_bytes;      /* bytes received from the store */
        uint64_t fills;            /* blocks filled */
        uint64_t failures;         /* fills that failed */
        uint64_t retries;          /* ranges retried */
        uint64_t queued;           /* blocks waiting or in progress */
        uint64_t content_checks;   /* whole files hashed against an MD5 ETag (content.h) */
        uint64_t content_failures; /* ... that did not match: their blocks were dropped */
        uint64_t stale_refusals;   /* requests for a version the store refused moments ago */
} fill_stats;

typedef struct fill fill;

int fill_new(const config *cfg, store *s, const fill_options *opts, fill_resolve_fn resolve,
             void *userdata, fill **ret);
/* Stops the threads; fills in progress are aborted and their waiters told -ECANCELED. */
fill *fill_free(fill *f);

/* Called once per fill_block() that returned 0, from a fill thread: 0 when the block is cached
 * now, else -errno: -ESTALE (the file changed, or the version is not current), -ENOENT (file
 * unknown or gone from the store), -ERANGE (no such block in the file), -EIO etc. */
typedef void (*fill_done_fn)(int r, void *userdata);

/* Makes sure block K gets cached. Returns 1 if it is cached already (DONE is not called), 0 when
 * DONE will be called (or when DONE is NULL: a prefetch), -errno on failure. After a fill of K,
 * the next READAHEAD blocks of the same file are filled too (sequential readers). */
int fill_block(fill *f, const store_key *k, unsigned readahead, fill_done_fn done, void *userdata);

/* Called once per fill_block_part() that returned 0, from a fill thread or the caller's:
 * R = 0: bytes [OFF, OFF + LEN) of the block are in its file while the rest is still being
 *        fetched; FD is a read-only descriptor of that file (the caller closes it) in which only
 *        those bytes are valid yet, BLOCK_LEN the block's length;
 * R = 1: the block is cached whole (FD = -1): open it from the store as usual (also when the
 *        range lies past the block's end: the store lookup answers that);
 * R < 0: the fill failed, as for fill_done_fn. */
typedef void (*fill_part_fn)(int r, int fd, uint64_t block_len, void *userdata);

/* Like fill_block(), but DONE is called as soon as bytes [OFF, OFF + LEN) are fetched, not when
 * the whole block is: a reader of a cold block gets its first bytes after a range, not after the
 * block. Returns 1 if the block is cached already (DONE is not called), 0 when DONE will be
 * called, -errno. */
int fill_block_part(fill *f, const store_key *k, uint64_t off, uint64_t len, unsigned readahead,
                    fill_part_fn done, void *userdata);

/* Forgets cached metadata of FILE_ID (the store said it changed). */
void fill_forget_file(fill *f, uint64_t file_id);

/* The version K names (its index ignored) failed a content check here or on another worker:
 * it is never filled again by this fill (requests fail with -EILSEQ, a fill in flight drops its
 * block at commit). Marks are in memory, one per file id modulo 1024 (a newer one replaces an
 * older one of another file in its slot). The caller drops what is cached. */
void fill_mark_mismatch(fill *f, const store_key *k);
bool fill_is_mismatch(fill *f, const store_key *k);
/* Called from the fill thread whose own content check (content.h) failed, after the blocks were
 * dropped and the version marked: FIRST names block 0, N_BLOCKS the file's, PATH its path (may
 * be NULL). Set once, before the fill is used. */
typedef void (*fill_mismatch_fn)(void *userdata, const store_key *first, uint64_t n_blocks,
                                 const char *path);
void fill_set_mismatch_hook(fill *f, fill_mismatch_fn fn, void *userdata);
/* Counts a whole-file content check (weir_worker_content_checks_total and, when it did not
 * MATCH, weir_worker_content_check_failures_total). */
void fill_count_content_check(fill *f, bool match);
/* A fill error's text: strerror(), and for -EILSEQ what it means here. FUSE recognises the text
 * (after "ERR " on the socket): short enough for the socket's 64-byte answers. */
#define FILL_MISMATCH_TEXT ETAG_MISMATCH_PREFIX ": bytes differ from the store's ETag"
const char *fill_strerror(int r);

void fill_get_stats(fill *f, fill_stats *ret);

/* Block math shared with the API: the byte range of block INDEX in a file. -ERANGE when the
 * file has no such block (an empty file has one empty block, index 0). */
int fill_block_range(uint64_t size, uint64_t block_size, uint64_t index, uint64_t *ret_offset,
                     uint64_t *ret_len);

/* A fill that other threads use while the daemon's teardown may take it away: readers call
 * through the guard, fill_guard_take() waits for them and hands the fill over to be freed. */
typedef struct fill_guard {
        pthread_rwlock_t lock; /* readers use `fill`; fill_guard_take() takes it for writing */
        fill *fill;            /* NULL once taken */
} fill_guard;

void fill_guard_init(fill_guard *g, fill *f_take);
/* The fill (the caller frees it), after every call through the guard has returned. */
fill *fill_guard_take(fill_guard *g);
void fill_guard_done(fill_guard *g);
/* fill_block() and fill_block_part() through the guard: -ECANCELED once the fill is taken. */
int fill_guard_block(fill_guard *g, const store_key *k, unsigned readahead, fill_done_fn done,
                     void *userdata);
int fill_guard_block_part(fill_guard *g, const store_key *k, uint64_t off, uint64_t len,
                          unsigned readahead, fill_part_fn done, void *userdata);
/* fill_get_stats(), zeros once the fill is taken. */
void fill_guard_stats(fill_guard *g, fill_stats *ret);
/* fill_mark_mismatch() and fill_count_content_check() through the guard (nothing once taken). */
void fill_guard_mark_mismatch(fill_guard *g, const store_key *k);
void fill_guard_count_content_check(fill_guard *g, bool match);
bool fill_guard_is_mismatch(fill_guard *g, const store_key *k);
