/* Block arithmetic of docs/api.md, shared by worker, master and FUSE: which blocks a byte range
 * touches, and block ids. */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* "FILEID-VERSION-INDEX" in decimal; 3 * 20 digits + 2 dashes + NUL fits. */
#define BLOCK_ID_MAX 64

typedef struct block_key {
        uint64_t file_id;
        uint64_t version;
        uint64_t index;
} block_key;

static inline bool block_key_equal(const block_key *a, const block_key *b)
{
        return a->file_id == b->file_id && a->version == b->version && a->index == b->index;
}

/* Parses a BLOCK_ID: exactly three decimal numbers separated by '-', nothing else (no signs, no
 * spaces, no overflow). -EINVAL otherwise; the input comes from peers. */
int block_id_parse(const char *s, block_key *ret);

static inline const char *block_id_format(char buf[static BLOCK_ID_MAX], const block_key *k)
{
        snprintf(buf, BLOCK_ID_MAX, "%" PRIu64 "-%" PRIu64 "-%" PRIu64, k->file_id, k->version,
                 k->index);
        return buf;
}

/* Number of blocks of a file of SIZE bytes; 0 for an empty file. BLOCK_SIZE > 0. */
static inline uint64_t block_count(uint64_t size, uint64_t block_size)
{
        return size / block_size + (size % block_size != 0);
}

/* Length of block INDEX of a file of SIZE bytes: block_size except for the last; 0 past EOF. */
static inline uint64_t block_length(uint64_t size, uint64_t block_size, uint64_t index)
{
        uint64_t start;

        if (index >= block_count(size, block_size))
                return 0;
        start = index * block_size;
        return size - start < block_size ? size - start : block_size;
}

/* One piece of a read: LEN bytes at OFFSET inside block INDEX. */
typedef struct block_span {
        uint64_t index;
        uint64_t offset; /* within the block */
        uint64_t len;
} block_span;

/* Clamps a read of LEN bytes at OFFSET to a file of SIZE bytes: the bytes that exist. */
static inline uint64_t block_clamp_read(uint64_t size, uint64_t offset, uint64_t len)
{
        if (offset >= size)
                return 0;
        return size - offset < len ? size - offset : len;
}

/* Splits [offset, offset + len) (already clamped to the file) into at most MAX spans, one per
 * block touched. Returns the number of spans written; if the range needs more than MAX, only
 * the first MAX are written and the caller reads the rest in another round. */
static inline unsigned block_split(uint64_t block_size, uint64_t offset, uint64_t len,
                                   block_span *spans, unsigned max)
{
        unsigned n = 0;

        while (len > 0 && n < max) {
                uint64_t in = offset % block_size;
                uint64_t take = block_size - in < len ? block_size - in : len;

                spans[n++] = (block_span){
                        .index = offset / block_size,
                        .offset = in,
                        .len = take,
                };
                offset += take;
                len -= take;
        }
        return n;
}
