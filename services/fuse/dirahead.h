/* Prefetch across files: a reader opening the files of a directory in listing order (cp -r, tar,
 * rsync, a loader walking a shard) gets the next files warmed on the workers ahead of it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "reader.h"

/* An open this many files past the last one still counts as in order (one reader skipping a
 * few, or the kernel reordering two opens of parallel threads). */
#define DIRAHEAD_SLACK 4

typedef struct dirahead_window {
        size_t last;         /* listing index of the last open; SIZE_MAX = none yet */
        size_t issued_until; /* entries below this were started */
        unsigned window;     /* files ahead of the reader; 0 = not in order */
        bool carried;        /* a walk went on into the next listing page */
        unsigned max_files;
        uint64_t max_bytes;
} dirahead_window;

void dirahead_window_init(dirahead_window *w, unsigned max_files, uint64_t max_bytes);

/* The reader crossed into the next listing page: indices start over there, the window stays. */
void dirahead_window_next_page(dirahead_window *w);

/* Accounts an open of entry I of listing page L (sorted as readdir returns it). Sets
 * [*ret_first, *ret_end) to the entries to start now (directories among them are skipped by the
 * caller). In order, the window doubles from 1 up to max_files, and never covers more than
 * max_bytes of files ahead of the reader (a first file larger than that still gets max_bytes
 * of itself started: block-wise, see dirahead.c); an open out of order closes it and returns
 * true: what was queued and not started must be dropped. */
bool dirahead_window_advance(dirahead_window *w, const meta_listing *l, size_t i, size_t *ret_first,
                             size_t *ret_end);

typedef struct dirahead_options {
        unsigned max_files; /* 0 = off */
        uint64_t max_bytes;
        unsigned threads; /* warm-ups in flight at once */
} dirahead_options;

typedef struct dirahead_stats {
        uint64_t files;     /* started */
        uint64_t bytes;     /* their bytes (what was asked for) */
        uint64_t cancelled; /* queued files dropped because the reader went elsewhere */
} dirahead_stats;

typedef struct dirahead dirahead;

/* R and M borrowed: they must outlive it. */
int dirahead_new(reader *r, meta *m, const dirahead_options *o, dirahead **ret);
/* Drops what is queued, waits for the warm-ups in flight, frees. */
dirahead *dirahead_free(dirahead *d);

/* An open of dataset path PATH ("/MOUNT/DIR/FILE") with this block size. */
void dirahead_opened(dirahead *d, const char *path, uint64_t block_size);

void dirahead_get_stats(dirahead *d, dirahead_stats *ret);
