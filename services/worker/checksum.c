/* The block checksum (see checksum.h for the why): four multiply-xorshift lanes. */
#include <endian.h>
#include <string.h>

#include "checksum.h"

#define CK_M1 0x9e3779b97f4a7c15ull /* 2^64 / golden ratio, odd */
#define CK_M2 0xbf58476d1ce4e5b9ull /* odd multipliers with well-mixed bits */
#define CK_M3 0x94d049bb133111ebull

static inline uint64_t load64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
        return (x << r) | (x >> (64 - r));
}

/* Bijective in LANE for a fixed W: xor, multiply by an odd constant, xorshift. */
static inline uint64_t lane_step(uint64_t lane, uint64_t w)
{
        lane ^= w;
        lane *= CK_M1;
        lane ^= lane >> 29;
        return lane;
}

static inline uint64_t finalize64(uint64_t x)
{
        x ^= x >> 31;
        x *= CK_M2;
        x ^= x >> 27;
        x *= CK_M3;
        x ^= x >> 33;
        return x;
}

void checksum_init(checksum *c, uint64_t expected_len)
{
        /* Seed each lane differently so that identical stripes in different lanes differ. */
        for (unsigned i = 0; i < 4; i++)
                c->lane[i] = finalize64(expected_len + (i + 1) * CK_M2);
        c->total = 0;
        c->n_buf = 0;
}

static void stripes(checksum *c, const uint8_t *p, size_t n_stripes)
{
        uint64_t a = c->lane[0], b = c->lane[1], d = c->lane[2], e = c->lane[3];

        for (size_t i = 0; i < n_stripes; i++, p += 32) {
                a = lane_step(a, load64(p));
                b = lane_step(b, load64(p + 8));
                d = lane_step(d, load64(p + 16));
                e = lane_step(e, load64(p + 24));
        }
        c->lane[0] = a;
        c->lane[1] = b;
        c->lane[2] = d;
        c->lane[3] = e;
}

void checksum_update(checksum *c, const void *data, size_t len)
{
        const uint8_t *p = data;

        c->total += len;
        if (c->n_buf > 0) {
                size_t take = 32 - c->n_buf;

                if (take > len)
                        take = len;
                memcpy(c->buf + c->n_buf, p, take);
                c->n_buf += take;
                p += take;
                len -= take;
                if (c->n_buf < 32)
                        return;
                stripes(c, c->buf, 1);
                c->n_buf = 0;
        }
        stripes(c, p, len / 32);
        p += len / 32 * 32;
        len %= 32;
        memcpy(c->buf, p, len);
        c->n_buf = len;
}

uint64_t checksum_final(checksum *c)
{
        uint8_t tail[32] = {};
        uint64_t h;

        /* The tail is padded with zeros and marked with its length, so "ab" and "ab\0" differ. */
        if (c->n_buf > 0) {
                memcpy(tail, c->buf, c->n_buf);
                tail[31] ^= (uint8_t)(0x80 | c->n_buf);
                stripes(c, tail, 1);
        }
        h = c->total * CK_M3;
        for (unsigned i = 0; i < 4; i++) {
                h ^= finalize64(c->lane[i]);
                h = rotl64(h, 23) * CK_M1;
        }
        return finalize64(h);
}

uint64_t checksum_buffer(const void *data, size_t len)
{
        checksum c;

        checksum_init(&c, len);
        checksum_update(&c, data, len);
        return checksum_final(&c);
}

uint64_t checksum_combine(const uint64_t *chunk_sums, size_t n_chunks, uint64_t block_len)
{
        checksum c;

        checksum_init(&c, block_len ^ CK_M3);
        for (size_t i = 0; i < n_chunks; i++) {
                uint64_t v = htole64(chunk_sums[i]);

                checksum_update(&c, &v, sizeof(v));
        }
        return checksum_final(&c);
}
