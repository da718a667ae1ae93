/* The tiered block store: levels (MEM, SSD, HDD) with quotas, watermark LRU eviction that demotes
 * to the next level, crash-safe block files and an index rebuilt from the directories at start. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "cleanup.h"
#include "config.h"

/* A block: one fixed-size range of one version of one file of one cluster epoch. Its text form,
 * "EPOCH-FILE-VERSION-INDEX" (block_id_parse/block_id_format), is the API's BLOCK_ID and the stem
 * of its file name; files named in the older format without an epoch are removed at start. */
typedef block_key store_key;

typedef struct store_level_spec {
        config_medium medium; /* MEM is not fsynced; SSD and HDD are */
        const char *dir;      /* the level's own directory (created if missing) */
        uint64_t quota;       /* bytes of block data; never exceeded */
        double high, low;     /* eviction starts above high * quota and stops at low * quota */
} store_level_spec;

typedef struct store_level_stats {
        config_medium medium;
        const char *dir;
        uint64_t quota;
        uint64_t used; /* committed blocks plus reservations of fills in progress */
        uint64_t blocks;
} store_level_stats;

typedef struct store_stats {
        size_t n_levels;
        store_level_stats levels[CONFIG_MAX_TIERS];
        uint64_t quota, used, blocks;
        uint64_t evictions;         /* blocks that left a level (demoted or dropped) */
        uint64_t demotions;         /* ... of which moved to the next level */
        uint64_t checksum_failures; /* blocks dropped because their bytes did not match */
} store_stats;

typedef struct store store;
typedef struct store_block store_block; /* a pinned, readable block */
typedef struct store_write store_write; /* a reservation being filled */

enum {
        /* Run watermark eviction on a thread of the store's own, woken when a level passes its
         * high mark. Without it, store_evict() must be called (the tests do). */
        STORE_BACKGROUND_EVICTION = 1 << 0,
};

/* Opens the store over LEVELS (fastest first; copied). Creates the directories, removes
 * temporaries left by a crash and rebuilds the index from the block files found; their
 * checksums are verified lazily, on each block's first open. */
int store_new(const store_level_spec *levels, size_t n_levels, unsigned flags, store **ret);
store *store_free(store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(store *, store_free);

/* A cached block: a read-only descriptor, its length and a pin. A pinned block is not evicted or
 * demoted; release it when the read is done. The descriptor stays valid after release and after
 * eviction (files are unlinked, never truncated or rewritten). -ENOENT on a miss, also when the
 * block's bytes failed their checksum (the block is then dropped, so a fill refetches it). */
int store_open(store *s, const store_key *k, store_block **ret_block, int *ret_fd,
               uint64_t *ret_size);
void store_release(store *s, store_block *b);
bool store_contains(store *s, const store_key *k);

/* Reserves SIZE bytes on the fastest level that has or can make room (evicting if needed) and
 * opens a temporary file there. -EEXIST if the block is cached, -EBUSY if another write of it is
 * in progress, -ENOSPC if no level can hold it now. */
int store_begin(store *s, const store_key *k, uint64_t size, store_write **ret);
/* The temporary file to pwrite() the block's SIZE bytes into. */
int store_write_fd(const store_write *w);
/* Checksums, fsyncs (persistent levels) and renames the file into place; consumes W either way.
 * -EIO if the file does not hold exactly SIZE bytes. */
int store_commit(store *s, store_write *w);
/* The same with the checksum (checksum.h: chunked) that the writer computed from the bytes it
 * wrote, which saves reading the block back. */
int store_commit_sum(store *s, store_write *w, uint64_t sum);
/* A write into W's file failed with ENOSPC although its reservation fit: the filesystem holds
 * less than the quota says (other files, a small tmpfs). Evicts from W's level, least recently
 * used first, until the filesystem has room for the fills in progress there. 0 when there is
 * room now (retry the write), -ENOSPC when nothing could be evicted. */
int store_reclaim(store *s, const store_write *w);
/* Drops the temporary file and the reservation; consumes W. NULL is allowed. */
void store_abort(store *s, store_write *w);

/* Evicts every level above its high mark down to its low mark, fastest first. Returns the
 * number of blocks that left a level. */
int store_evict(store *s);
/* Drops unpinned blocks from the cache, least recently used first, until BYTES are freed (0 =
 * all of them). Returns the bytes freed. */
uint64_t store_drop(store *s, uint64_t bytes);

/* Drops block K (the master said it names no current file). -ENOENT if not cached, -EBUSY
 * while a reader has it pinned (the next report names it again). */
int store_remove(store *s, const store_key *k);

void store_get_stats(store *s, store_stats *ret);

/* Every cached block (a full block report). */
int store_list(store *s, store_key **ret_keys, size_t *ret_n);
/* Blocks added and removed since the last call (net: a block added then removed is reported
 * removed only). */
int store_take_changes(store *s, store_key **ret_added, size_t *ret_n_added,
                       store_key **ret_removed, size_t *ret_n_removed);
