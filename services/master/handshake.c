/* The Raft transport's handshake messages (format in handshake.h and docs/master.md). */
#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "handshake.h"

#define KEY_LABEL       "weir raft transport key v1"
#define CHALLENGE_LABEL "weir raft v1 challenge"
#define PROOF_LABEL     "weir raft v1 proof"

static void put_u64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static void put_header(uint8_t *p, int type, uint16_t extra)
{
        memcpy(p, HS_MAGIC, HS_MAGIC_BYTES);
        p[8] = HS_VERSION;
        p[9] = (uint8_t)type;
        p[10] = (uint8_t)extra;
        p[11] = (uint8_t)(extra >> 8);
}

void hs_derive_key(const void *secret, size_t len, uint8_t key[HS_KEY_BYTES])
{
        crypto_generichash_state st;

        /* The label keeps this key apart from any other use of the same secret (the API token). */
        crypto_generichash_init(&st, NULL, 0, HS_KEY_BYTES);
        crypto_generichash_update(&st, (const unsigned char *)KEY_LABEL, sizeof(KEY_LABEL));
        crypto_generichash_update(&st, secret, len);
        crypto_generichash_final(&st, key, HS_KEY_BYTES);
        sodium_memzero(&st, sizeof(st));
}

int hs_header_check(const uint8_t *buf, size_t n, int type)
{
        if (n < HS_HEADER_BYTES)
                return -EBADMSG;
        if (memcmp(buf, HS_MAGIC, HS_MAGIC_BYTES) != 0)
                return -EPROTO;
        if (buf[8] != HS_VERSION)
                return -EPROTONOSUPPORT;
        if (buf[9] != type)
                return -EBADMSG;
        /* Only HELLO uses the last two bytes (the address length). */
        if (type != HS_TYPE_HELLO && (buf[10] || buf[11]))
                return -EBADMSG;
        return 0;
}

int hs_hello_length(const uint8_t *buf, size_t n)
{
        if (n < HS_HELLO_FIXED)
                return -EBADMSG;
        int r = hs_header_check(buf, n, HS_TYPE_HELLO);
        if (r < 0)
                return r;
        unsigned len = buf[10] | (unsigned)buf[11] << 8;
        if (len == 0 || len > HS_ADDRESS_MAX)
                return -EBADMSG;
        return (int)(HS_HELLO_FIXED + len);
}

static bool address_valid(const char *s, size_t len)
{
        if (len == 0 || len > HS_ADDRESS_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] <= ' ' || s[i] > '~')
                        return false;
        return true;
}

int hs_hello_encode(const hs_hello *h, uint8_t *buf)
{
        size_t len = strnlen(h->address, sizeof(h->address));
        if (!address_valid(h->address, len))
                return -EINVAL;
        put_header(buf, HS_TYPE_HELLO, (uint16_t)len);
        put_u64(buf + 12, h->from_id);
        put_u64(buf + 20, h->to_id);
        memcpy(buf + 28, h->nonce, HS_NONCE_BYTES);
        memcpy(buf + HS_HELLO_FIXED, h->address, len);
        return (int)(HS_HELLO_FIXED + len);
}

int hs_hello_parse(const uint8_t *buf, size_t n, hs_hello *ret)
{
        int len = hs_hello_length(buf, n);
        if (len < 0)
                return len;
        if ((size_t)len != n)
                return -EBADMSG;
        size_t alen = n - HS_HELLO_FIXED;
        if (!address_valid((const char *)buf + HS_HELLO_FIXED, alen))
                return -EBADMSG;
        ret->from_id = get_u64(buf + 12);
        ret->to_id = get_u64(buf + 20);
        if (ret->from_id == 0 || ret->to_id == 0)
                return -EBADMSG;
        memcpy(ret->nonce, buf + 28, HS_NONCE_BYTES);
        memcpy(ret->address, buf + HS_HELLO_FIXED, alen);
        ret->address[alen] = 0;
        return 0;
}

static void mac(const uint8_t key[HS_KEY_BYTES], const char *label, const uint8_t *a, size_t a_len,
                const uint8_t *b, size_t b_len, uint8_t out[HS_MAC_BYTES])
{
        crypto_auth_hmacsha256_state st;

        crypto_auth_hmacsha256_init(&st, key, HS_KEY_BYTES);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, strlen(label) + 1);
        crypto_auth_hmacsha256_update(&st, a, a_len);
        crypto_auth_hmacsha256_update(&st, b, b_len);
        crypto_auth_hmacsha256_final(&st, out);
        sodium_memzero(&st, sizeof(st));
}

#define CHALLENGE_SIGNED (HS_CHALLENGE_BYTES - HS_MAC_BYTES)

void hs_challenge_encode(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                         const hs_challenge *c, uint8_t out[HS_CHALLENGE_BYTES])
{
        put_header(out, HS_TYPE_CHALLENGE, 0);
        put_u64(out + 12, c->from_id);
        memcpy(out + 20, c->nonce, HS_NONCE_BYTES);
        mac(key, CHALLENGE_LABEL, hello, hello_len, out, CHALLENGE_SIGNED, out + CHALLENGE_SIGNED);
}

int hs_challenge_verify(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                        const uint8_t *buf, size_t n, hs_challenge *ret)
{
        uint8_t expect[HS_MAC_BYTES];

        if (n != HS_CHALLENGE_BYTES)
                return -EBADMSG;
        int r = hs_header_check(buf, n, HS_TYPE_CHALLENGE);
        if (r < 0)
                return r;
        mac(key, CHALLENGE_LABEL, hello, hello_len, buf, CHALLENGE_SIGNED, expect);
        if (sodium_memcmp(expect, buf + CHALLENGE_SIGNED, HS_MAC_BYTES) != 0)
                return -EACCES;
        ret->from_id = get_u64(buf + 12);
        memcpy(ret->nonce, buf + 20, HS_NONCE_BYTES);
        return 0;
}

void hs_proof_encode(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                     const uint8_t challenge[HS_CHALLENGE_BYTES], uint8_t out[HS_PROOF_BYTES])
{
        put_header(out, HS_TYPE_PROOF, 0);
        mac(key, PROOF_LABEL, hello, hello_len, challenge, HS_CHALLENGE_BYTES,
            out + HS_HEADER_BYTES);
}

int hs_proof_verify(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                    const uint8_t challenge[HS_CHALLENGE_BYTES], const uint8_t *buf, size_t n)
{
        uint8_t expect[HS_MAC_BYTES];

        if (n != HS_PROOF_BYTES)
                return -EBADMSG;
        int r = hs_header_check(buf, n, HS_TYPE_PROOF);
        if (r < 0)
                return r;
        mac(key, PROOF_LABEL, hello, hello_len, challenge, HS_CHALLENGE_BYTES, expect);
        if (sodium_memcmp(expect, buf + HS_HEADER_BYTES, HS_MAC_BYTES) != 0)
                return -EACCES;
        return 0;
}

void hs_accept_encode(uint8_t out[HS_ACCEPT_BYTES])
{
        put_header(out, HS_TYPE_ACCEPT, 0);
}

int hs_accept_parse(const uint8_t *buf, size_t n)
{
        if (n != HS_ACCEPT_BYTES)
                return -EBADMSG;
        return hs_header_check(buf, n, HS_TYPE_ACCEPT);
}
