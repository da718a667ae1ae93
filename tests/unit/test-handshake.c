/* Unit tests of the Raft transport's handshake messages: formats, limits, MACs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "handshake.h"

static int setup(void **state)
{
        return sodium_init() < 0 ? -1 : 0;
}

static int hello_bytes(const char *address, uint8_t *buf)
{
        hs_hello h = {.from_id = 2, .to_id = 1};
        memset(h.nonce, 0x5a, sizeof(h.nonce));
        snprintf(h.address, sizeof(h.address), "%s", address);
        return hs_hello_encode(&h, buf);
}

static void test_hello_round_trip_and_limits(void **state)
{
        uint8_t buf[HS_HELLO_MAX + 8];
        hs_hello h;

        int len = hello_bytes("127.0.1.2:19200", buf);
        assert_int_equal(len, HS_HELLO_FIXED + 15);
        assert_memory_equal(buf, "WEIRRAFT\x01\x01", 10);
        assert_int_equal(hs_hello_length(buf, HS_HELLO_FIXED), len);
        assert_int_equal(hs_hello_parse(buf, (size_t)len, &h), 0);
        assert_int_equal(h.from_id, 2);
        assert_int_equal(h.to_id, 1);
        assert_string_equal(h.address, "127.0.1.2:19200");

        /* Truncated, too long, or with bytes after it: refused. */
        assert_int_equal(hs_hello_parse(buf, (size_t)len - 1, &h), -EBADMSG);
        assert_int_equal(hs_hello_parse(buf, (size_t)len + 1, &h), -EBADMSG);
        assert_int_equal(hs_hello_length(buf, HS_HELLO_FIXED - 1), -EBADMSG);

        /* Another magic (libraft's own preamble), another version. */
        uint8_t other[HS_HELLO_MAX];
        memcpy(other, buf, (size_t)len);
        other[0] = 1;
        assert_int_equal(hs_hello_length(other, HS_HELLO_FIXED), -EPROTO);
        memcpy(other, buf, (size_t)len);
        other[8] = 2;
        assert_int_equal(hs_hello_length(other, HS_HELLO_FIXED), -EPROTONOSUPPORT);

        /* Address length 0 or > 255, control bytes, id 0. */
        memcpy(other, buf, (size_t)len);
        other[10] = other[11] = 0;
        assert_int_equal(hs_hello_length(other, HS_HELLO_FIXED), -EBADMSG);
        other[10] = 0;
        other[11] = 1; /* 256 */
        assert_int_equal(hs_hello_length(other, HS_HELLO_FIXED), -EBADMSG);
        memcpy(other, buf, (size_t)len);
        other[HS_HELLO_FIXED + 3] = '\n';
        assert_int_equal(hs_hello_parse(other, (size_t)len, &h), -EBADMSG);
        memcpy(other, buf, (size_t)len);
        memset(other + 12, 0, 8);
        assert_int_equal(hs_hello_parse(other, (size_t)len, &h), -EBADMSG);

        char longest[HS_ADDRESS_MAX + 2];
        memset(longest, 'a', sizeof(longest));
        longest[HS_ADDRESS_MAX] = 0;
        assert_int_equal(hello_bytes(longest, buf), HS_HELLO_MAX);
        hs_hello big = {.from_id = 1, .to_id = 2};
        memset(big.address, 'a', sizeof(big.address)); /* 256 bytes, no NUL in reach */
        assert_int_equal(hs_hello_encode(&big, buf), -EINVAL);
}

static void test_macs(void **state)
{
        uint8_t k1[HS_KEY_BYTES], k2[HS_KEY_BYTES], hello[HS_HELLO_MAX];
        uint8_t chal[HS_CHALLENGE_BYTES], proof[HS_PROOF_BYTES];
        hs_challenge c = {.from_id = 1}, got;

        hs_derive_key("secret", 6, k1);
        hs_derive_key("secreT", 6, k2);
        assert_memory_not_equal(k1, k2, HS_KEY_BYTES);
        int len = hello_bytes("127.0.1.2:19200", hello);
        memset(c.nonce, 7, sizeof(c.nonce));

        hs_challenge_encode(k1, hello, (size_t)len, &c, chal);
        assert_int_equal(hs_challenge_verify(k1, hello, (size_t)len, chal, sizeof(chal), &got), 0);
        assert_int_equal(got.from_id, 1);
        assert_int_equal(hs_challenge_verify(k2, hello, (size_t)len, chal, sizeof(chal), &got),
                         -EACCES);
        /* Bound to the HELLO: another address or id does not verify. */
        uint8_t other[HS_HELLO_MAX];
        int olen = hello_bytes("127.0.1.3:19200", other);
        assert_int_equal(hs_challenge_verify(k1, other, (size_t)olen, chal, sizeof(chal), &got),
                         -EACCES);
        chal[12] ^= 1; /* the id it claims */
        assert_int_equal(hs_challenge_verify(k1, hello, (size_t)len, chal, sizeof(chal), &got),
                         -EACCES);
        chal[12] ^= 1;

        hs_proof_encode(k1, hello, (size_t)len, chal, proof);
        assert_int_equal(hs_proof_verify(k1, hello, (size_t)len, chal, proof, sizeof(proof)), 0);
        assert_int_equal(hs_proof_verify(k2, hello, (size_t)len, chal, proof, sizeof(proof)),
                         -EACCES);
        assert_int_equal(hs_proof_verify(k1, hello, (size_t)len, chal, proof, sizeof(proof) - 1),
                         -EBADMSG);
        /* A challenge's MAC is not a proof (labels differ), nor the other way round. */
        uint8_t reflected[HS_PROOF_BYTES];
        memcpy(reflected, proof, HS_HEADER_BYTES);
        memcpy(reflected + HS_HEADER_BYTES, chal + HS_CHALLENGE_BYTES - HS_MAC_BYTES, HS_MAC_BYTES);
        assert_int_equal(
                hs_proof_verify(k1, hello, (size_t)len, chal, reflected, sizeof(reflected)),
                -EACCES);

        uint8_t acc[HS_ACCEPT_BYTES];
        hs_accept_encode(acc);
        assert_int_equal(hs_accept_parse(acc, sizeof(acc)), 0);
        acc[10] = 1;
        assert_int_equal(hs_accept_parse(acc, sizeof(acc)), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hello_round_trip_and_limits),
                cmocka_unit_test(test_macs),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
