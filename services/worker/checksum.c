/* The block checksum (see checksum.h for the why): XXH3-64 from libxxhash. */
#include <endian.h>
#include <stdlib.h>

#include "checksum.h"

/* Distinguishes the combining hash from a chunk's (a block of one chunk whose bytes happen to
 * be its own chunk-sum list must not collide). An arbitrary odd constant. */
#define CK_COMBINE_SEED 0x9e3779b97f4a7c15ull

void checksum_init(checksum *c, uint64_t expected_len)
{
        /* The reset skips deriving the secret from the seed when the state's old seed equals
         * the new one: on a fresh (stack) state that compares garbage, and a stale secret gives
         * a wrong sum. XXH3_INITSTATE clears the old seed (xxhash.h says to use it). */
        XXH3_INITSTATE(&c->state);
        /* XXH3_64bits_reset_withSeed only fails on a NULL state */
        (void)XXH3_64bits_reset_withSeed(&c->state, expected_len);
}

void checksum_update(checksum *c, const void *data, size_t len)
{
        if (len > 0)
                (void)XXH3_64bits_update(&c->state, data, len);
}

uint64_t checksum_final(checksum *c)
{
        return XXH3_64bits_digest(&c->state);
}

uint64_t checksum_buffer(const void *data, size_t len)
{
        return XXH3_64bits_withSeed(data, len, len);
}

uint64_t checksum_combine(const uint64_t *chunk_sums, size_t n_chunks, uint64_t block_len)
{
        checksum c;

        checksum_init(&c, block_len ^ CK_COMBINE_SEED);
        for (size_t i = 0; i < n_chunks; i++) {
                uint64_t v = htole64(chunk_sums[i]);

                checksum_update(&c, &v, sizeof(v));
        }
        return checksum_final(&c);
}
