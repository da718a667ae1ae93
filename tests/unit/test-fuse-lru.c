/* Unit tests for weir-fuse's bounded LRU cache (listing pages, stats, readdir cursors). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lru.h"

static int freed;

static void count_free(void *v)
{
        freed++;
        free(v);
}

static int *num(int n)
{
        int *p = malloc(sizeof(*p));

        assert_non_null(p);
        *p = n;
        return p;
}

static void test_entry_bound_evicts_least_recently_used(void **state)
{
        lru *c = lru_new(0, 3, count_free);

        freed = 0;
        assert_int_equal(lru_put(c, "a", num(1), 0), 0);
        assert_int_equal(lru_put(c, "b", num(2), 0), 0);
        assert_int_equal(lru_put(c, "c", num(3), 0), 0);
        /* touching a makes b the oldest */
        assert_int_equal(*(int *)lru_get(c, "a"), 1);
        assert_int_equal(lru_put(c, "d", num(4), 0), 0);
        assert_int_equal(lru_entries(c), 3);
        assert_null(lru_get(c, "b"));
        assert_int_equal(freed, 1);
        assert_int_equal(lru_evictions(c), 1);
        assert_non_null(lru_get(c, "a"));
        assert_non_null(lru_get(c, "c"));
        assert_non_null(lru_get(c, "d"));
        lru_free(c);
        assert_int_equal(freed, 4);
}

static void test_byte_bound(void **state)
{
        /* each entry costs its bytes plus the bookkeeping: 1000 + ~40 */
        lru *c = lru_new(3500, 0, count_free);
        char key[16];

        freed = 0;
        for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                assert_int_equal(lru_put(c, key, num(i), 1000), 0);
                assert_true(lru_bytes(c) <= 3500);
        }
        assert_int_equal(lru_entries(c), 3);
        assert_int_equal(freed, 7);
        assert_non_null(lru_get(c, "k9"));
        assert_non_null(lru_get(c, "k7"));
        assert_null(lru_get(c, "k6"));
        /* an entry larger than the whole bound is kept alone, not refused */
        assert_int_equal(lru_put(c, "huge", num(-1), 100000), 0);
        assert_int_equal(lru_entries(c), 1);
        assert_non_null(lru_get(c, "huge"));
        lru_free(c);
        assert_int_equal(freed, 11);
}

static void test_replace_and_remove(void **state)
{
        lru *c = lru_new(0, 0, count_free);
        size_t b;

        freed = 0;
        assert_int_equal(lru_put(c, "x", num(1), 10), 0);
        b = lru_bytes(c);
        assert_int_equal(lru_put(c, "x", num(2), 10), 0);
        assert_int_equal(freed, 1); /* the old value */
        assert_int_equal(lru_entries(c), 1);
        assert_int_equal(lru_bytes(c), b);
        assert_int_equal(*(int *)lru_get(c, "x"), 2);
        assert_true(lru_remove(c, "x"));
        assert_false(lru_remove(c, "x"));
        assert_int_equal(freed, 2);
        assert_int_equal(lru_bytes(c), 0);
        assert_int_equal(lru_entries(c), 0);
        assert_null(lru_get(c, "x"));
        lru_free(c);
        lru_free(NULL);
}

static void test_many(void **state)
{
        lru *c = lru_new(0, 1000, count_free);
        char key[32];

        freed = 0;
        for (int i = 0; i < 100000; i++) {
                snprintf(key, sizeof(key), "/train/n%08d//x%d", i % 5000, i);
                assert_int_equal(lru_put(c, key, num(i), 100), 0);
        }
        assert_int_equal(lru_entries(c), 1000);
        assert_int_equal(freed, 99000);
        /* the last 1000 are the ones kept */
        snprintf(key, sizeof(key), "/train/n%08d//x%d", 99999 % 5000, 99999);
        assert_int_equal(*(int *)lru_get(c, key), 99999);
        snprintf(key, sizeof(key), "/train/n%08d//x%d", 98999 % 5000, 98999);
        assert_null(lru_get(c, key));
        lru_free(c);
        assert_int_equal(freed, 100000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_entry_bound_evicts_least_recently_used),
                cmocka_unit_test(test_byte_bound),
                cmocka_unit_test(test_replace_and_remove),
                cmocka_unit_test(test_many),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
