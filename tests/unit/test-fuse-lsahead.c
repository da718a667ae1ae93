/* Unit tests of the listing read-ahead's window (services/fuse/lsahead.c): which directories a
 * walk's next step queues, each once, never more than the window ahead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lsahead.h"

/* A page of N entries; IS_DIR(i) says which are directories. */
static meta_listing *page(size_t n, bool (*is_dir)(size_t))
{
        meta_listing *l = calloc(1, sizeof(*l));

        assert_non_null(l);
        l->entries = calloc(n, sizeof(meta_entry));
        assert_non_null(l->entries);
        l->n = n;
        for (size_t i = 0; i < n; i++)
                l->entries[i].dir = is_dir(i);
        return l;
}

static void page_free(meta_listing *l)
{
        free(l->entries);
        free(l);
}

static bool all_dirs(size_t i)
{
        return true;
}

static bool every_third(size_t i)
{
        return i % 3 == 0;
}

static bool no_dirs(size_t i)
{
        return false;
}

static size_t dirs_in(const meta_listing *l, size_t first, size_t end)
{
        size_t n = 0;

        for (size_t i = first; i < end; i++)
                n += l->entries[i].dir;
        return n;
}

/* A walk descending into each directory of a 1,000-directory parent in order: the first step
 * queues the window, each later one the one directory entering it; each exactly once. */
static void test_walk_queues_each_once(void **state)
{
        meta_listing *l = page(1000, all_dirs);
        unsigned queued[1000] = {};
        size_t issued = 0, first, end;

        /* the parent's own read: its first 8 subdirectories */
        lsahead_window(l, 0, 8, &issued, &first, &end);
        assert_int_equal(first, 0);
        assert_int_equal(end, 8);
        for (size_t j = first; j < end; j++)
                queued[j]++;
        for (size_t i = 0; i < 1000; i++) {
                /* the walk enters directory i: its next siblings */
                lsahead_window(l, i + 1, 8, &issued, &first, &end);
                assert_true(end <= MIN(i + 1 + 8, 1000));
                assert_true(end - first <= 1);
                for (size_t j = first; j < end; j++)
                        queued[j]++;
        }
        for (size_t i = 0; i < 1000; i++)
                assert_int_equal(queued[i], 1);
        page_free(l);
}

static void test_mixed_and_files_only(void **state)
{
        meta_listing *l = page(100, every_third), *f = page(1024, no_dirs);
        size_t issued = 0, first, end;

        /* 8 directories among every third entry: entries 0..21 */
        lsahead_window(l, 0, 8, &issued, &first, &end);
        assert_int_equal(first, 0);
        assert_int_equal(end, 22);
        assert_int_equal(dirs_in(l, first, end), 8);
        /* a jump back (another walker, a rewind): nothing queued twice */
        lsahead_window(l, 3, 8, &issued, &first, &end);
        assert_int_equal(dirs_in(l, first, end), 1);
        assert_int_equal(first, 22);
        /* the end of the page bounds the window */
        lsahead_window(l, 97, 8, &issued, &first, &end);
        assert_int_equal(end, 100);
        lsahead_window(l, 100, 8, &issued, &first, &end);
        assert_int_equal(first, end);
        /* a page of files only: no directory to queue */
        issued = 0;
        lsahead_window(f, 0, 8, &issued, &first, &end);
        assert_int_equal(dirs_in(f, first, end), 0);
        /* window 0 queues nothing */
        issued = 0;
        lsahead_window(l, 0, 0, &issued, &first, &end);
        assert_int_equal(first, end);
        page_free(l);
        page_free(f);
}

static void test_off(void **state)
{
        lsahead *a = NULL;
        meta_listing *l = page(10, all_dirs);
        lsahead_stats s;

        /* off: no thread, nothing queued, no metadata asked (the meta is never touched) */
        assert_int_equal(lsahead_new(NULL, 0, 2, &a), 0);
        lsahead_started(a, "/m/x", l);
        lsahead_get_stats(a, &s);
        assert_int_equal(s.queued, 0);
        lsahead_free(a);
        lsahead_started(NULL, "/m", l);
        page_free(l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_walk_queues_each_once),
                cmocka_unit_test(test_mixed_and_files_only),
                cmocka_unit_test(test_off),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
