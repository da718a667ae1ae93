/* The content checksum of cached blocks (XXH3, 64 bits): detects torn, truncated and rotted files. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t by value: on the stack, no allocation per chunk */
#include <xxhash.h>

/* Not cryptographic: it guards against accidents (a crash, a bad disk, a stray write), not
 * against an adversary who can write to the cache directory. XXH3 hashes at memory speed (tens
 * of GB/s with SSE2/AVX2), so checksumming a block costs a small fraction of fetching it. */
typedef struct checksum {
        XXH3_state_t state;
} checksum;

/* The format of a block file's name, "F-V-I." CHECKSUM_NAME_TAG "SUM" (store.c): the tag says
 * which checksum SUM is. Format 1 (weir's own multiply-xorshift lanes) had no tag: "F-V-I.SUM";
 * such files are dropped when the index is rebuilt, never read with the wrong checksum. 'x' is
 * not a hex digit, so a format-1 reader does not take a format-2 name for one of its own. */
#define CHECKSUM_FORMAT   2
#define CHECKSUM_NAME_TAG "x3"

/* EXPECTED_LEN seeds the hash, so a truncated stream differs even where its bytes agree. */
void checksum_init(checksum *c, uint64_t expected_len);
void checksum_update(checksum *c, const void *data, size_t len);
uint64_t checksum_final(checksum *c);

/* One-shot convenience. */
uint64_t checksum_buffer(const void *data, size_t len);

/* A block's checksum is built from CHECKSUM_CHUNK-byte chunks: each chunk is summed on its own
 * (checksum_buffer of the chunk), then the chunk sums and the block length are summed. Parallel
 * range fetches hash their own chunks as the bytes arrive, so a fill never reads its block back
 * to checksum it; verification computes the same from the file. */
#define CHECKSUM_CHUNK (1u << 20)

uint64_t checksum_combine(const uint64_t *chunk_sums, size_t n_chunks, uint64_t block_len);
static inline size_t checksum_n_chunks(uint64_t block_len)
{
        return (size_t)((block_len + CHECKSUM_CHUNK - 1) / CHECKSUM_CHUNK);
}
