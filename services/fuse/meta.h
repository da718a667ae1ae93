/* Metadata from the master leader (docs/api.md), cached with the entry/attr timeouts. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* ENTRY of docs/api.md. */
typedef struct meta_entry {
        char *name;
        bool dir;
        uint64_t size;
        double mtime;
        uint64_t epoch;   /* the cluster's epoch (block.h); 0 for directories */
        uint64_t file_id; /* 0 for directories */
        uint64_t version;
        char *etag;    /* NULL when the store gave none */
        char *ufs_url; /* NULL when the master gave none */
} meta_entry;

void meta_entry_done(meta_entry *e);
int meta_entry_copy(const meta_entry *src, meta_entry *ret);
/* Parses an ENTRY object; -EBADMSG when required fields are missing or of the wrong type. */
int meta_entry_from_json(json_t *o, meta_entry *ret);

/* One page of a directory listing: up to META_PAGE entries sorted by name, shared by refcount
 * (the page cache and a readdir stream hold them). */
typedef struct meta_listing {
        unsigned refcount; /* atomic */
        uint64_t fetched_ms;
        bool more; /* entries follow the last one: ask for the page after its name */
        size_t n;
        meta_entry *entries;
        char *names; /* compact pages: every entry's name in one block (entries own nothing) */
        size_t names_len;
} meta_listing;

#define META_PAGE 1024u /* entries per listing request (the master allows up to 10000) */

meta_listing *meta_listing_ref(meta_listing *l);
meta_listing *meta_listing_unref(meta_listing *l);

/* Where each block of one file version is cached: INDEX -> node names. */
typedef struct meta_locations {
        unsigned refcount; /* atomic */
        uint64_t fetched_ms;
        uint64_t block_size;
        size_t n;
        struct meta_block_loc {
                uint64_t index;
                size_t n_nodes;
                char **nodes;
        } * blocks; /* sorted by index */
} meta_locations;

meta_locations *meta_locations_unref(meta_locations *l);
/* The nodes holding block INDEX; NULL with *ret_n = 0 when none. */
char *const *meta_locations_find(const meta_locations *l, uint64_t index, size_t *ret_n);

typedef struct meta_dataset_info {
        uint64_t total_size;
        uint64_t total_files;
        uint64_t cached;      /* bytes cached on any worker */
        uint64_t cached_here; /* bytes cached on the worker of this node */
} meta_dataset_info;

typedef struct meta_options {
        uint64_t attr_timeout_ms;
        uint64_t entry_timeout_ms;
        uint64_t retry_ms; /* how long a failover may take before a call fails */
        const char *token; /* the cluster's bearer token for POSTs, NULL when none (borrowed) */
        const char *node;  /* this node's name, for what its worker caches (borrowed) */
        size_t stat_cache_entries;  /* 0: META_STAT_CACHE */
        size_t listing_cache_bytes; /* 0: META_LISTING_CACHE */
} meta_options;

/* What the caches did, for STATUS, D-Bus and tests. */
typedef struct meta_counters {
        uint64_t stat_calls, stat_hits; /* GET stat sent / answered from the cache */
        uint64_t page_calls, page_hits; /* GET ls pages sent / answered from the cache */
        uint64_t stat_cached, pages_cached, page_bytes, page_evictions;
} meta_counters;

typedef struct meta meta;

/* A client of the masters of CONFIG for DATASET (both borrowed: must outlive it). */
int meta_new(const config *c, const config_dataset *d, const meta_options *o, meta **ret);
meta *meta_free(meta *m);

/* GET PATH_QUERY ("/v1/...") from the leader: follows 307s, tries other masters on connection
 * errors and 503 until retry_ms have passed. 404 -> -ENOENT; other 4xx -> -EIO (logged);
 * persistent unavailability -> -EHOSTUNREACH / the last transport error; no master answering at
 * all for 2 s (at once when the previous call found none) -> -EHOSTDOWN: then meta_stat(),
 * meta_list() and meta_blocks() answer from what they had, however old, and -EIO without. */
int meta_call(meta *m, const char *path_query, json_t **ret);
/* Whether the last call found no master at all (metadata answers are stale meanwhile). */
bool meta_masters_down(meta *m);
/* Lookups answered from expired metadata because no master answered, since the start. */
uint64_t meta_stale_answers(meta *m);

/* POST BODY (borrowed) to PATH on the leader, for periodic reports that the next period repeats:
 * follows 307s, asks each master at most once (connection errors, 503, 5xx move on), never sleeps
 * and logs at debug only. 0 on 2xx; 404 -> -ENOENT; 401 -> -EACCES; other 4xx -> -EIO; no master
 * answered -> the last transport error (-EAGAIN when they were all electing). */
int meta_post(meta *m, const char *path, const json_t *body);

/* ENTRY of dataset path PATH ("/" is the root directory; "/MOUNT/DIR/FILE"); served from cache
 * when younger than the attr timeout unless FRESH. */
int meta_stat(meta *m, const char *path, bool fresh, meta_entry *ret);
/* The page of directory PATH's children whose names follow AFTER (NULL: the first page), from
 * the page cache (an LRU bounded by bytes) while younger than the entry timeout unless FRESH. A
 * whole directory is never held at once: the next page is asked for with the last name. */
int meta_list_page(meta *m, const char *path, const char *after, bool fresh, meta_listing **ret);
void meta_get_counters(meta *m, meta_counters *ret);
/* From the page cache only (no request; pages younger than the entry timeout): the page of
 * directory DIR holding NAME and its index there. -ENOENT when no cached page has it (the
 * pages up to it are not all cached, or NAME is not in the directory). */
int meta_cached_page_of(meta *m, const char *dir, const char *name, meta_listing **ret,
                        size_t *ret_index);
/* Whether the page of DIR after AFTER (NULL: the first) is cached and fresh. */
bool meta_page_cached(meta *m, const char *dir, const char *after);
/* The entry NAME of a listing, NULL when absent. */
const meta_entry *meta_listing_find(const meta_listing *l, const char *name);
/* Block locations of a file version; cached for a second (blocks arrive as reads fill them). */
int meta_blocks(meta *m, uint64_t file_id, uint64_t version, meta_locations **ret);
/* Drops the cached locations of that file version (after a worker failed us). */
void meta_blocks_forget(meta *m, uint64_t file_id, uint64_t version);
/* GET /v1/datasets/NAME: totals. */
int meta_dataset(meta *m, meta_dataset_info *ret);
