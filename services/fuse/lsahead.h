/* Listing read-ahead for walks: while the kernel reads one directory, the first pages of the
 * next sibling directories (in listing order, the order find, du and ls -R descend in) are
 * fetched into the page cache, so the master's round trip leaves the walk's critical path. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

#define LSAHEAD_WINDOW_DEFAULT 8u  /* directories listed ahead of the walk */
#define LSAHEAD_WINDOW_MAX     64u /* bounds WEIR_FUSE_LIST_AHEAD */
#define LSAHEAD_QUEUE          (2 * LSAHEAD_WINDOW_MAX)

/* The next directories of page L after index I, at most WINDOW of them, skipping those whose
 * index is below *ISSUED_UNTIL (already queued by an earlier call on the same page): their
 * indices into [*ret_first, *ret_end) (files among them are skipped by the caller), and
 * *issued_until moved past the last one. Pure: the tests drive it directly. */
void lsahead_window(const meta_listing *l, size_t i, unsigned window, size_t *issued_until,
                    size_t *ret_first, size_t *ret_end);

typedef struct lsahead_stats {
        uint64_t queued;  /* directories queued */
        uint64_t fetched; /* first pages fetched by the threads (not already cached) */
        uint64_t dropped; /* not queued: the queue was full */
} lsahead_stats;

typedef struct lsahead lsahead;

/* WINDOW directories ahead (0: off, then lsahead_started() does nothing) with THREADS fetching.
 * M is borrowed and must outlive it. */
int lsahead_new(meta *m, unsigned window, unsigned threads, lsahead **ret);
/* Drops what is queued, waits for the fetches in flight, frees. */
lsahead *lsahead_free(lsahead *a);

/* The kernel started reading directory DIR ("/" or "/MOUNT/..."), whose first page is FIRST
 * (borrowed): queue its first subdirectories and DIR's next siblings. */
void lsahead_started(lsahead *a, const char *dir, const meta_listing *first);

/* The kernel is reading PAGE (borrowed) of directory DIR: fetch the page after it, if any (once
 * per page however many readdir requests it takes). */
void lsahead_next_page(lsahead *a, const char *dir, const meta_listing *page);

void lsahead_get_stats(lsahead *a, lsahead_stats *ret);
