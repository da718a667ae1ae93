/* Sequential read-ahead: an adaptive window per open file, and threads that warm blocks. */
#pragma once

#include <stdint.h>

#include "reader.h"

/* Reads this close to where the last one ended still count as sequential: the kernel's async
 * read-ahead requests reach our threads slightly out of order. */
#define PREFETCH_SEQ_SLACK (8ull << 20)

typedef struct prefetch_window {
        uint64_t next_offset;  /* where a sequential reader continues */
        uint64_t issued_until; /* blocks below this index have been queued */
        unsigned window;       /* blocks ahead of the current one; 0 = random access */
        unsigned max_window;
} prefetch_window;

void prefetch_window_init(prefetch_window *w, unsigned max_window);

/* Accounts a read of LEN bytes at OFFSET of a file of N_BLOCKS blocks of BLOCK_SIZE; sets
 * [*ret_first, *ret_end) to the blocks to fetch ahead now (empty when first == end). The window
 * doubles while reads stay sequential, up to max_window, and closes on a random read. */
void prefetch_window_advance(prefetch_window *w, uint64_t offset, uint64_t len, uint64_t block_size,
                             uint64_t n_blocks, uint64_t *ret_first, uint64_t *ret_end);

typedef struct prefetch prefetch;

/* N_THREADS background threads warming blocks through R (borrowed). */
int prefetch_new(reader *r, unsigned n_threads, prefetch **ret);
/* Stops the threads (queued jobs are dropped) and frees. */
prefetch *prefetch_free(prefetch *p);

/* Queues block INDEX of F (copied) unless it is queued or running already, or the queue is
 * full (then it is dropped: prefetch is best effort). */
void prefetch_queue(prefetch *p, const reader_file *f, uint64_t index);
