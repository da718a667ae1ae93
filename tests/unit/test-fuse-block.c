/* Unit tests for the FUSE daemon's block arithmetic (services/fuse/block.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "block.h"

#define BS (16ull << 20)

static void test_count_and_length(void **state)
{
        assert_true(block_count(0, BS) == 0);
        assert_true(block_count(1, BS) == 1);
        assert_true(block_count(BS - 1, BS) == 1);
        assert_true(block_count(BS, BS) == 1);
        assert_true(block_count(BS + 1, BS) == 2);
        assert_true(block_length(BS + 1, BS, 0) == BS);
        assert_true(block_length(BS + 1, BS, 1) == 1);
        assert_true(block_length(BS + 1, BS, 2) == 0);
        assert_true(block_length(0, BS, 0) == 0);
        assert_true(block_length(BS, BS, 0) == BS);
        /* the seeds' 263 MiB file: 17 blocks, the last one 7 MiB */
        assert_true(block_count(263ull << 20, BS) == 17);
        assert_true(block_length(263ull << 20, BS, 16) == (7ull << 20));
}

static void test_clamp(void **state)
{
        assert_true(block_clamp_read(100, 0, 4096) == 100);
        assert_true(block_clamp_read(100, 99, 4096) == 1);
        assert_true(block_clamp_read(100, 100, 4096) == 0);
        assert_true(block_clamp_read(100, 1000, 4096) == 0);
        assert_true(block_clamp_read(0, 0, 4096) == 0);
        assert_true(block_clamp_read(10000, 0, 4096) == 4096);
}

static void test_split(void **state)
{
        block_span s[8];
        unsigned n;

        /* inside one block */
        n = block_split(BS, 5, 10, s, 8);
        assert_int_equal(n, 1);
        assert_true(s[0].index == 0 && s[0].offset == 5 && s[0].len == 10);

        /* across a boundary: 1 MiB read starting 4 KiB before the end of block 2 */
        n = block_split(BS, 3 * BS - 4096, 1 << 20, s, 8);
        assert_int_equal(n, 2);
        assert_true(s[0].index == 2 && s[0].offset == BS - 4096 && s[0].len == 4096);
        assert_true(s[1].index == 3 && s[1].offset == 0 && s[1].len == (1 << 20) - 4096);

        /* exactly one block, aligned */
        n = block_split(BS, BS, BS, s, 8);
        assert_int_equal(n, 1);
        assert_true(s[0].index == 1 && s[0].offset == 0 && s[0].len == BS);

        /* small blocks, many spans, capped at MAX */
        n = block_split(10, 5, 100, s, 8);
        assert_int_equal(n, 8);
        assert_true(s[0].index == 0 && s[0].offset == 5 && s[0].len == 5);
        assert_true(s[7].index == 7 && s[7].offset == 0 && s[7].len == 10);

        /* nothing */
        assert_int_equal(block_split(BS, 0, 0, s, 8), 0);
}

static void test_id(void **state)
{
        char buf[BLOCK_ID_MAX];
        block_key k = {.epoch = 0xe1, .file_id = 17, .version = 2, .index = 5};
        block_key big = {.epoch = UINT64_MAX,
                         .file_id = UINT64_MAX,
                         .version = UINT64_MAX,
                         .index = UINT64_MAX};

        assert_string_equal(block_id_format(buf, &k), "00000000000000e1-17-2-5");
        assert_string_equal(block_id_format(buf, &big),
                            "ffffffffffffffff-18446744073709551615-18446744073709551615-"
                            "18446744073709551615");
        assert_true(block_key_equal(&k, &k));
        assert_false(block_key_equal(&k, &big));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_count_and_length),
                cmocka_unit_test(test_clamp),
                cmocka_unit_test(test_split),
                cmocka_unit_test(test_id),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
