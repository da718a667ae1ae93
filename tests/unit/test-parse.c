/* Unit tests for parse.c: sizes, durations, ratios and Fluid-style byte formatting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "parse.h"

static void test_u64(void **state)
{
        uint64_t v;

        assert_int_equal(parse_u64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_u64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(parse_u64("", &v), -EINVAL);
        assert_int_equal(parse_u64("-1", &v), -EINVAL);
        assert_int_equal(parse_u64("12a", &v), -EINVAL);
        assert_int_equal(parse_u64(" 1", &v), -EINVAL);
}

static void test_size(void **state)
{
        uint64_t v;

        assert_int_equal(parse_size("2G", &v), 0);
        assert_true(v == 2000000000ull);
        assert_int_equal(parse_size("2Gi", &v), 0);
        assert_true(v == 2ull << 30);
        assert_int_equal(parse_size("512Mi", &v), 0);
        assert_true(v == 512ull << 20);
        assert_int_equal(parse_size("1.5Gi", &v), 0);
        assert_true(v == 3ull << 29);
        assert_int_equal(parse_size("4096", &v), 0);
        assert_true(v == 4096);
        assert_int_equal(parse_size("100GB", &v), 0);
        assert_true(v == 100000000000ull);
        assert_int_equal(parse_size("1.5", &v), -EINVAL);
        assert_int_equal(parse_size("2X", &v), -EINVAL);
        assert_int_equal(parse_size("-2G", &v), -EINVAL);
        assert_int_equal(parse_size("Gi", &v), -EINVAL);
        assert_int_equal(parse_size("1e3", &v), -EINVAL);
        assert_int_equal(parse_size("0x10", &v), -EINVAL);
        assert_int_equal(parse_size("99999999Pi", &v), -ERANGE);
}

static void test_duration(void **state)
{
        uint64_t v;

        assert_int_equal(parse_duration_ms("300ms", &v), 0);
        assert_true(v == 300);
        assert_int_equal(parse_duration_ms("2s", &v), 0);
        assert_true(v == 2000);
        assert_int_equal(parse_duration_ms("1.5s", &v), 0);
        assert_true(v == 1500);
        assert_int_equal(parse_duration_ms("5m", &v), 0);
        assert_true(v == 300000);
        assert_int_equal(parse_duration_ms("10", &v), 0);
        assert_true(v == 10000);
        assert_int_equal(parse_duration_ms("10 parsecs", &v), -EINVAL);
}

static void test_ratio(void **state)
{
        double v;

        assert_int_equal(parse_ratio("0.95", &v), 0);
        assert_true(v > 0.949 && v < 0.951);
        assert_int_equal(parse_ratio("1", &v), 0);
        assert_int_equal(parse_ratio("0", &v), -ERANGE);
        assert_int_equal(parse_ratio("1.01", &v), -ERANGE);
        assert_int_equal(parse_ratio("0.5x", &v), -EINVAL);
        assert_int_equal(parse_ratio("", &v), -EINVAL);
}

static void test_format_bytes(void **state)
{
        char buf[FORMAT_BYTES_MAX];

        assert_string_equal(format_bytes(buf, sizeof(buf), 0), "0.00B");
        assert_string_equal(format_bytes(buf, sizeof(buf), 4ull << 30), "4.00GiB");
        assert_string_equal(format_bytes(buf, sizeof(buf), 577579254ull), "550.82MiB");
        assert_string_equal(format_bytes(buf, sizeof(buf), 1023), "1023.00B");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_u64),          cmocka_unit_test(test_size),
                cmocka_unit_test(test_duration),     cmocka_unit_test(test_ratio),
                cmocka_unit_test(test_format_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
