/* A small chained hash map with string, 64-bit or fixed-size binary keys: the FUSE daemon's inode
 * and metadata tables, the master's block locations, the worker's block index and fill jobs.
 * Not thread-safe: its owner's lock guards it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hmap_node {
        struct hmap_node *next;
        uint64_t hash;
        union {
                const char *str; /* borrowed from the value; must live as long as the node */
                uint64_t u64;
                const void *mem; /* key_size bytes, borrowed like str */
        } key;
        void *value;
} hmap_node;

typedef struct hmap {
        hmap_node **buckets;
        size_t n_buckets; /* a power of two, or 0 before the first insert */
        size_t n;
        bool string_keys;
        size_t key_size; /* > 0: binary keys of this size (hmap_init_mem) */
} hmap;

void hmap_init(hmap *m, bool string_keys);
/* Keys of KEY_SIZE bytes compared with memcmp (a struct key must have no padding, e.g. block_key:
 * four uint64_t), borrowed from the value like string keys. */
void hmap_init_mem(hmap *m, size_t key_size);
/* Frees the nodes, not the values. */
void hmap_done(hmap *m);

void *hmap_get_str(const hmap *m, const char *key);
void *hmap_get_u64(const hmap *m, uint64_t key);
void *hmap_get_mem(const hmap *m, const void *key);
/* Inserts or replaces; the string key is borrowed. Returns 0 or -ENOMEM. If RET_OLD is non-NULL it
 * receives the replaced value (or NULL). */
int hmap_put_str(hmap *m, const char *key, void *value, void **ret_old);
int hmap_put_u64(hmap *m, uint64_t key, void *value, void **ret_old);
int hmap_put_mem(hmap *m, const void *key, void *value, void **ret_old);
/* Removes and returns the value, NULL when absent. */
void *hmap_remove_str(hmap *m, const char *key);
void *hmap_remove_u64(hmap *m, uint64_t key);
void *hmap_remove_mem(hmap *m, const void *key);

/* Iteration: for (hmap_node *n = hmap_first(m, &i); n; n = hmap_next(m, n, &i)); no changes to
 * the map meanwhile. */
hmap_node *hmap_first(const hmap *m, size_t *iter);
hmap_node *hmap_next(const hmap *m, hmap_node *node, size_t *iter);
