/* libFuzzer target: any bytes as each Raft handshake message (services/master/handshake.c), as
 * the acceptor and the connector read them; no crash, no leak, and invariants that trap. */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[HS_KEY_BYTES] = "weir fuzz key, 32 bytes long...";

static void check_hello(const uint8_t *data, size_t size)
{
        hs_hello h;
        uint8_t again[HS_HELLO_MAX];

        int len = hs_hello_length(data, size);
        if (len >= 0 && (len < HS_HELLO_FIXED + 1 || len > HS_HELLO_MAX))
                __builtin_trap();
        if (hs_hello_parse(data, size, &h) < 0)
                return;
        /* What parses is what the acceptor acts on: sane, and it encodes to the same bytes. */
        if ((size_t)len != size || h.from_id == 0 || h.to_id == 0)
                __builtin_trap();
        size_t alen = strlen(h.address);
        if (alen == 0 || alen > HS_ADDRESS_MAX || alen != size - HS_HELLO_FIXED)
                __builtin_trap();
        if (hs_hello_encode(&h, again) != len || memcmp(again, data, size) != 0)
                __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t hello[] = "a fixed HELLO standing in for the transcript";
        uint8_t challenge[HS_CHALLENGE_BYTES] = {0};
        hs_challenge c;

        if (sodium_init() < 0)
                __builtin_trap();
        /* The first byte picks which reader sees the rest; every reader also sees it all. */
        check_hello(data, size);
        int r = hs_header_check(data, size, size ? data[0] & 7 : 0);
        if (r != 0 && r != -EBADMSG && r != -EPROTO && r != -EPROTONOSUPPORT)
                __builtin_trap();

        /* Random bytes never pass a MAC check (a pass would mean a forgery or a broken check). */
        if (hs_challenge_verify(key, hello, sizeof(hello), data, size, &c) == 0)
                __builtin_trap();
        if (size == HS_CHALLENGE_BYTES)
                memcpy(challenge, data, size);
        if (hs_proof_verify(key, hello, sizeof(hello), challenge, data, size) == 0)
                __builtin_trap();
        r = hs_accept_parse(data, size);
        if (r == 0 && (size != HS_ACCEPT_BYTES || memcmp(data, HS_MAGIC, HS_MAGIC_BYTES) != 0))
                __builtin_trap();

        /* A challenge built with the key always verifies, whatever HELLO it answers. */
        hs_challenge mine = {.from_id = size};
        memcpy(mine.nonce, data, size < HS_NONCE_BYTES ? size : HS_NONCE_BYTES);
        hs_challenge_encode(key, data, size, &mine, challenge);
        if (hs_challenge_verify(key, data, size, challenge, sizeof(challenge), &c) != 0 ||
            c.from_id != size)
                __builtin_trap();
        uint8_t proof[HS_PROOF_BYTES];
        hs_proof_encode(key, data, size, challenge, proof);
        if (hs_proof_verify(key, data, size, challenge, proof, sizeof(proof)) != 0)
                __builtin_trap();
        /* ...and one flipped bit anywhere in it does not. */
        if (size > 0) {
                size_t bit = data[0] % (HS_PROOF_BYTES * 8);
                proof[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                if (hs_proof_verify(key, data, size, challenge, proof, sizeof(proof)) == 0)
                        __builtin_trap();
        }
        return 0;
}
