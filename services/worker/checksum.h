/* A fast 64-bit content checksum for cached blocks: detects torn, truncated and rotted files. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Not cryptographic: it guards against accidents (a crash, a bad disk, a stray write), not
 * against an adversary who can write to the cache directory. Four independent multiply-xorshift
 * lanes over 32-byte stripes keep several multipliers in flight, so it runs at several GB/s and
 * hashing a 16 MiB block costs a few milliseconds, well below fetching it. Each lane step is a
 * bijection of the lane state for a given input word, so a change confined to one stripe always
 * changes that lane's final state; the length seeds the state, so truncation changes it too. */
typedef struct checksum {
        uint64_t lane[4];
        uint64_t total;  /* bytes fed so far */
        uint8_t buf[32]; /* a partial stripe */
        size_t n_buf;
} checksum;

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
