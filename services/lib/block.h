/* Block arithmetic of docs/api.md, shared by worker, master and FUSE: which blocks a byte range
 * touches, and block ids. */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Block ids, format 2: "EPOCH-FILEID-VERSION-INDEX", EPOCH in exactly 16 lowercase hex digits,
 * the others in decimal. EPOCH is the cluster's epoch, a random non-zero number the first
 * leader chose and replicated (docs/master.md): a new cluster, a master restored from nothing
 * or a re-created dataset has another one, so its file ids 1, 2, ... never name another
 * cluster's cached bytes. Format 1 was "FILEID-VERSION-INDEX" (no epoch); block_id_is_v1()
 * recognises it only so that caches of that format are removed, never read. */
#define BLOCK_ID_MAX   96
#define BLOCK_EPOCH_ID 16 /* hex digits of the epoch in a block id */

typedef struct block_key {
        uint64_t epoch;   /* never 0 */
        uint64_t file_id; /* never 0 */
        uint64_t version;
        uint64_t index;
} block_key;

static inline bool block_key_equal(const block_key *a, const block_key *b)
{
        return a->epoch == b->epoch && a->file_id == b->file_id && a->version == b->version &&
               a->index == b->index;
}

/* Parses a BLOCK_ID of format 2: nothing else (no signs, no spaces, no overflow, no upper-case
 * hex), and neither the epoch nor the file id 0. -EINVAL otherwise; the input comes from peers. */
int block_id_parse(const char *s, block_key *ret);

/* True for a format 1 id ("FILEID-VERSION-INDEX", three decimal numbers). */
bool block_id_is_v1(const char *s);

static inline const char *block_id_format(char buf[static BLOCK_ID_MAX], const block_key *k)
{
        snprintf(buf, BLOCK_ID_MAX, "%016" PRIx64 "-%" PRIu64 "-%" PRIu64 "-%" PRIu64, k->epoch,
                 k->file_id, k->version, k->index);
        return buf;
}

/* The epoch as it appears in JSON ("epoch": "0123456789abcdef") and block ids. */
#define BLOCK_EPOCH_MAX 17
static inline const char *block_epoch_format(char buf[static BLOCK_EPOCH_MAX], uint64_t epoch)
{
        snprintf(buf, BLOCK_EPOCH_MAX, "%016" PRIx64, epoch);
        return buf;
}

/* Exactly 16 lowercase hex digits, not all zero. -EINVAL otherwise. */
int block_epoch_parse(const char *s, uint64_t *ret);

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
