/* Unit tests of the sync's rule for listings with times to the minute (sync-minute.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sync-minute.h"

#define MIN0  1700000040 /* a minute: Tue, 14 Nov 2023 22:14:00 GMT */
#define LATER (MIN0 + 3600)

static const ufs_version listed = {.size = 100, .mtime = MIN0};

static void test_new_file(void **state)
{
        /* Its minute ended before the listing: the listing's values are a version. */
        assert_int_equal(sync_minute_judge(&listed, MIN0 + 60, 0, NULL), SYNC_MINUTE_LISTING);
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, NULL), SYNC_MINUTE_LISTING);
        /* Written in the minute of the listing, or one second before it ended: HEAD. */
        assert_int_equal(sync_minute_judge(&listed, MIN0 + 59, 0, NULL), SYNC_MINUTE_ASK);
        assert_int_equal(sync_minute_judge(&listed, MIN0 + 1, 0, NULL), SYNC_MINUTE_ASK);
        /* Dated after the store's clock (in the future). */
        assert_int_equal(sync_minute_judge(&listed, MIN0 - 3600, 0, NULL), SYNC_MINUTE_ASK);
        /* No Date on the listing: nothing to compare with. */
        assert_int_equal(sync_minute_judge(&listed, 0, LATER, NULL), SYNC_MINUTE_ASK);
}

static void test_bad_listed_time(void **state)
{
        ufs_version none = {.size = 100}, seconds = {.size = 100, .mtime = MIN0 + 7},
                    huge = {.size = 100, .mtime = INT64_MAX - 7};

        assert_int_equal(sync_minute_judge(&none, LATER, LATER, NULL), SYNC_MINUTE_ASK);
        assert_int_equal(sync_minute_judge(&seconds, LATER, LATER, NULL), SYNC_MINUTE_ASK);
        assert_int_equal(sync_minute_judge(&huge, LATER, LATER, NULL), SYNC_MINUTE_ASK);
}

static void test_stored_from_listing(void **state)
{
        sync_minute_stored s = {.size = 100, .mtime = MIN0, .etag = UFS_ETAG_MINUTE};
        sync_minute_stored other_size = {.size = 101, .mtime = MIN0, .etag = UFS_ETAG_MINUTE};
        sync_minute_stored other_minute = {
                .size = 100, .mtime = MIN0 - 60, .etag = UFS_ETAG_MINUTE};

        /* Its minute had ended when it was listed: same size and minute is the same file, with
         * or without a previous sync's date. */
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, &s), SYNC_MINUTE_SAME);
        assert_int_equal(sync_minute_judge(&listed, LATER, LATER, &s), SYNC_MINUTE_SAME);
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, &other_size), SYNC_MINUTE_LISTING);
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, &other_minute), SYNC_MINUTE_LISTING);
        /* The store's clock went back before the minute's end: HEAD. */
        assert_int_equal(sync_minute_judge(&listed, MIN0 + 30, 0, &s), SYNC_MINUTE_ASK);
}

static void test_stored_from_head(void **state)
{
        /* HEADed at 22:14:37: a same-size rewrite later in that minute keeps (size, minute). */
        sync_minute_stored s = {.size = 100, .mtime = MIN0 + 37, .etag = "\"6553f1dd-64\""};

        /* The previous sync listed after the minute ended: any rewrite since moved the minute. */
        assert_int_equal(sync_minute_judge(&listed, LATER, MIN0 + 60, &s), SYNC_MINUTE_SAME);
        assert_int_equal(sync_minute_judge(&listed, LATER, LATER, &s), SYNC_MINUTE_SAME);
        /* The previous sync listed within the minute, or is unknown (a new leader): HEAD. */
        assert_int_equal(sync_minute_judge(&listed, LATER, MIN0 + 59, &s), SYNC_MINUTE_ASK);
        assert_int_equal(sync_minute_judge(&listed, LATER, MIN0 + 40, &s), SYNC_MINUTE_ASK);
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, &s), SYNC_MINUTE_ASK);
        /* A different size or minute is a change the listing shows by itself. */
        s.size = 99;
        assert_int_equal(sync_minute_judge(&listed, LATER, 0, &s), SYNC_MINUTE_LISTING);
}

static void test_head_same(void **state)
{
        sync_minute_stored minute = {.size = 100, .mtime = MIN0, .etag = UFS_ETAG_MINUTE};
        sync_minute_stored exact = {.size = 100, .mtime = MIN0 + 37, .etag = "\"a\""};
        sync_minute_stored none = {.size = 100, .mtime = MIN0 + 37, .etag = ""};
        ufs_version in_minute = {.size = 100, .mtime = MIN0 + 37, .etag = (char *)"\"a\""};
        ufs_version next = {.size = 100, .mtime = MIN0 + 60, .etag = (char *)"\"b\""};
        ufs_version bigger = {.size = 101, .mtime = MIN0 + 37, .etag = (char *)"\"a\""};
        ufs_version no_etag = {.size = 100, .mtime = MIN0 + 37};
        ufs_version no_time = {.size = 100};

        /* A later HEAD of an unchanged file keeps its minute version (no new version). */
        assert_true(sync_minute_head_same(&minute, &in_minute));
        assert_false(sync_minute_head_same(&minute, &next));
        assert_false(sync_minute_head_same(&minute, &bigger));
        assert_false(sync_minute_head_same(&minute, &no_time));
        assert_true(sync_minute_head_same(&exact, &in_minute));
        assert_false(sync_minute_head_same(&exact, &no_etag));
        assert_true(sync_minute_head_same(&none, &no_etag));
        /* stored from a JSON index (no ETag), HEADed once the index is HTML: the same file */
        assert_true(sync_minute_head_same(&none, &in_minute));
        assert_false(sync_minute_head_same(&none, &next));
        assert_false(sync_minute_head_same(NULL, &in_minute));
}

static void test_floor(void **state)
{
        assert_int_equal(sync_minute_floor(MIN0 + 59), MIN0);
        assert_int_equal(sync_minute_floor(MIN0), MIN0);
        assert_int_equal(sync_minute_floor(-1), -60);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_file),
                cmocka_unit_test(test_bad_listed_time),
                cmocka_unit_test(test_stored_from_listing),
                cmocka_unit_test(test_stored_from_head),
                cmocka_unit_test(test_head_same),
                cmocka_unit_test(test_floor),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
