/* A string-keyed cache bounded by bytes and entries, evicting the least recently used. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct lru lru;

/* FREE_VALUE releases a value when it is evicted, replaced, removed or the cache freed. The
 * bounds are inclusive; 0 means no bound of that kind. NULL on out of memory. Not thread-safe:
 * the owner holds its own lock around every call. */
lru *lru_new(size_t max_bytes, size_t max_entries, void (*free_value)(void *value));
lru *lru_free(lru *c);

/* The value of KEY, made the most recently used; NULL when absent. */
void *lru_get(lru *c, const char *key);
/* Inserts or replaces KEY (copied) with VALUE (taken, also on failure) costing BYTES, then evicts
 * from the least recently used end until both bounds hold (an entry larger than the whole bound
 * is kept alone). 0 or -ENOMEM. */
int lru_put(lru *c, const char *key, void *value, size_t bytes);
/* Drops KEY (its value freed); whether it was there. */
bool lru_remove(lru *c, const char *key);

size_t lru_bytes(const lru *c); /* BYTES of the entries held, plus their keys */
size_t lru_entries(const lru *c);
size_t lru_evictions(const lru *c);
