/* The Raft transport's handshake messages: encoding, parsing and MACs; no I/O (fuzzed alone). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Wire format version 1 (docs/master.md): every message starts with the 8-byte magic, a version
 * byte, a type byte and two reserved zero bytes; integers are little-endian.
 *
 *   HELLO      connector -> acceptor  header, u16 address length (in the reserved bytes),
 *                                     u64 from id, u64 to id, nonce[32], address
 *   CHALLENGE  acceptor -> connector  header, u64 from id, nonce[32], mac[32]
 *   PROOF      connector -> acceptor  header, mac[32]
 *   ACCEPT     acceptor -> connector  header
 *
 * CHALLENGE's MAC covers the HELLO and the CHALLENGE up to the MAC, PROOF's covers the HELLO and
 * the whole CHALLENGE, each with its own label: both sides prove they hold the key over the
 * other's fresh nonce, and the ids and the claimed address are bound into both proofs. */
#define HS_MAGIC           "WEIRRAFT"
#define HS_MAGIC_BYTES     8
#define HS_VERSION         1
#define HS_KEY_BYTES       32
#define HS_NONCE_BYTES     32
#define HS_MAC_BYTES       32
#define HS_ADDRESS_MAX     255
#define HS_HEADER_BYTES    12
#define HS_HELLO_FIXED     (HS_HEADER_BYTES + 8 + 8 + HS_NONCE_BYTES)
#define HS_HELLO_MAX       (HS_HELLO_FIXED + HS_ADDRESS_MAX)
#define HS_CHALLENGE_BYTES (HS_HEADER_BYTES + 8 + HS_NONCE_BYTES + HS_MAC_BYTES)
#define HS_PROOF_BYTES     (HS_HEADER_BYTES + HS_MAC_BYTES)
#define HS_ACCEPT_BYTES    HS_HEADER_BYTES

enum {
        HS_TYPE_HELLO = 1,
        HS_TYPE_CHALLENGE = 2,
        HS_TYPE_PROOF = 3,
        HS_TYPE_ACCEPT = 4,
};

typedef struct hs_hello {
        uint64_t from_id;
        uint64_t to_id;
        uint8_t nonce[HS_NONCE_BYTES];
        char address[HS_ADDRESS_MAX + 1]; /* NUL-terminated */
} hs_hello;

typedef struct hs_challenge {
        uint64_t from_id;
        uint8_t nonce[HS_NONCE_BYTES];
} hs_challenge;

/* The transport key from the cluster secret (any length, may be empty). */
void hs_derive_key(const void *secret, size_t len, uint8_t key[HS_KEY_BYTES]);

/* Checks a message header of TYPE in the first HS_HEADER_BYTES of BUF: -EPROTO when the magic is
 * not ours (not a weir master), -EPROTONOSUPPORT for another version, -EBADMSG otherwise. */
int hs_header_check(const uint8_t *buf, size_t n, int type);

/* The whole HELLO's length from its first HS_HELLO_FIXED bytes, or a negative errno. */
int hs_hello_length(const uint8_t *buf, size_t n);
/* Encodes H into BUF (HS_HELLO_MAX bytes); returns its length or -EINVAL (bad address). */
int hs_hello_encode(const hs_hello *h, uint8_t *buf);
/* Parses a complete HELLO of exactly N bytes. The address must be 1-255 printable ASCII bytes. */
int hs_hello_parse(const uint8_t *buf, size_t n, hs_hello *ret);

/* CHALLENGE answering HELLO (its raw bytes), with its MAC. */
void hs_challenge_encode(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                         const hs_challenge *c, uint8_t out[HS_CHALLENGE_BYTES]);
/* Parses BUF (exactly HS_CHALLENGE_BYTES) and checks its MAC in constant time: 0, -EBADMSG
 * (format) or -EACCES (MAC). */
int hs_challenge_verify(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                        const uint8_t *buf, size_t n, hs_challenge *ret);

void hs_proof_encode(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                     const uint8_t challenge[HS_CHALLENGE_BYTES], uint8_t out[HS_PROOF_BYTES]);
/* 0, -EBADMSG (format) or -EACCES (MAC). */
int hs_proof_verify(const uint8_t key[HS_KEY_BYTES], const uint8_t *hello, size_t hello_len,
                    const uint8_t challenge[HS_CHALLENGE_BYTES], const uint8_t *buf, size_t n);

void hs_accept_encode(uint8_t out[HS_ACCEPT_BYTES]);
int hs_accept_parse(const uint8_t *buf, size_t n);
