/* Unit tests for prefetch across files: the per-directory window and the warming threads. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* The module under test, with the metadata client and the reader replaced (chrony-style). */
#include "dirahead.c"

#define MIB (1ull << 20)
#define BS  (16 * MIB)

/* ---- a listing of N entries named f000000.. (sorted), sizes from a function ---- */

static meta_listing *listing_new(size_t n, uint64_t (*size_of)(size_t), bool (*is_dir)(size_t))
{
        meta_listing *l = calloc(1, sizeof(*l));

        assert_non_null(l);
        l->refcount = 1;
        l->n = n;
        l->entries = calloc(n, sizeof(meta_entry));
        assert_non_null(l->entries);
        for (size_t i = 0; i < n; i++) {
                char name[32];

                snprintf(name, sizeof(name), "f%06zu", i);
                l->entries[i].name = strdup(name);
                l->entries[i].dir = is_dir && is_dir(i);
                l->entries[i].size = l->entries[i].dir ? 0 : size_of(i);
                l->entries[i].epoch = 0xe1;
                l->entries[i].file_id = i + 1;
                l->entries[i].version = 1;
        }
        return l;
}

meta_listing *meta_listing_ref(meta_listing *l)
{
        __atomic_add_fetch(&l->refcount, 1, __ATOMIC_RELAXED);
        return l;
}

meta_listing *meta_listing_unref(meta_listing *l)
{
        if (l && __atomic_sub_fetch(&l->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
                for (size_t i = 0; i < l->n; i++)
                        free(l->entries[i].name);
                free(l->entries);
                free(l);
        }
        return NULL;
}

const meta_entry *meta_listing_find(const meta_listing *l, const char *name)
{
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->entries[i].name, name) == 0)
                        return &l->entries[i];
        return NULL;
}

/* meta_list_page(): "/m/a" and "/m/b" of one page each; "/m/p", two pages (fake_pages) */
static meta_listing *fake_dirs[2];
static meta_listing *fake_pages[2];
static unsigned page_calls;

int meta_list_page(meta *m, const char *path, const char *after, bool fresh, meta_listing **ret)
{
        meta_listing *l = NULL;

        (void)m;
        (void)fresh;
        page_calls++;
        if (strcmp(path, "/m/a") == 0 && !after)
                l = fake_dirs[0];
        else if (strcmp(path, "/m/b") == 0 && !after)
                l = fake_dirs[1];
        else if (strcmp(path, "/m/p") == 0 && !after)
                l = fake_pages[0];
        else if (strcmp(path, "/m/p") == 0 && after &&
                 strcmp(after, fake_pages[0]->entries[fake_pages[0]->n - 1].name) == 0)
                l = fake_pages[1];
        if (!l)
                return -ENOENT;
        *ret = meta_listing_ref(l);
        return 0;
}

/* reader_warm(): records each (file id, block) and may hold the thread until released */
static pthread_mutex_t warm_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t warm_cond = PTHREAD_COND_INITIALIZER;
static unsigned warmed[4096][4];
static unsigned warm_total;
static unsigned warm_wrong_epoch; /* warm-ups whose block id lacks the listing's epoch */
static bool warm_hold;

int reader_warm(reader *r, const reader_file *f, uint64_t index)
{
        (void)r;
        pthread_mutex_lock(&warm_lock);
        while (warm_hold)
                pthread_cond_wait(&warm_cond, &warm_lock);
        if (f->epoch != 0xe1)
                warm_wrong_epoch++;
        if (f->file_id < 4096 && index < 4)
                warmed[f->file_id][index]++;
        warm_total++;
        pthread_mutex_unlock(&warm_lock);
        return 0;
}

void reader_file_done(reader_file *f)
{
        free(f->path);
        free(f->etag);
}

static void warm_reset(void)
{
        pthread_mutex_lock(&warm_lock);
        memset(warmed, 0, sizeof(warmed));
        warm_total = 0;
        warm_hold = false;
        pthread_mutex_unlock(&warm_lock);
}

static uint64_t size_64k(size_t i)
{
        (void)i;
        return 64 << 10;
}

static uint64_t size_10m(size_t i)
{
        (void)i;
        return 10 * MIB;
}

static uint64_t size_first_huge(size_t i)
{
        return i == 1 ? 1024 * MIB : 64 << 10;
}

static bool every_third_dir(size_t i)
{
        return i % 3 == 2;
}

/* ---- the window ---- */

static void test_in_order_walk_starts_each_file_once(void **state)
{
        meta_listing *l = listing_new(1000, size_64k, NULL);
        unsigned started[1000] = {0};
        dirahead_window w;
        unsigned windows[8];

        (void)state;
        dirahead_window_init(&w, 16, 64 * MIB);
        for (size_t i = 0; i < l->n; i++) {
                size_t first, end;

                assert_false(dirahead_window_advance(&w, l, i, &first, &end));
                if (i < 8)
                        windows[i] = w.window;
                for (size_t k = first; k < end; k++)
                        started[k]++;
                /* never more than the window ahead of the reader */
                assert_true(w.issued_until <= i + 1 + 16);
        }
        /* 1, 2, 4, 8, 16 and no further */
        assert_int_equal(windows[0], 1);
        assert_int_equal(windows[1], 2);
        assert_int_equal(windows[2], 4);
        assert_int_equal(windows[4], 16);
        assert_int_equal(windows[7], 16);
        assert_int_equal(started[0], 0); /* opened by the reader itself */
        for (size_t i = 1; i < l->n; i++)
                assert_int_equal(started[i], 1);
        meta_listing_unref(l);
}

static void test_huge_directory_starts_at_most_the_window(void **state)
{
        meta_listing *l = listing_new(100000, size_64k, NULL);
        dirahead_window w;
        size_t first, end, total = 0;

        (void)state;
        dirahead_window_init(&w, 16, 64 * MIB);
        for (size_t i = 0; i < 3; i++) {
                dirahead_window_advance(&w, l, i, &first, &end);
                total += end - first;
        }
        /* three opens: entries 1..3+window at most, whatever the directory's size */
        assert_true(total <= 3 + 16);
        assert_true(w.issued_until <= 3 + 16);
        meta_listing_unref(l);
}

static void test_bytes_bound(void **state)
{
        meta_listing *l = listing_new(100, size_10m, NULL), *h;
        dirahead_window w;
        size_t first, end;

        (void)state;
        dirahead_window_init(&w, 64, 32 * MIB);
        for (size_t i = 0; i < 10; i++) {
                dirahead_window_advance(&w, l, i, &first, &end);
                /* 10 MiB files, 32 MiB: three ahead at most */
                assert_true(w.issued_until <= i + 1 + 3);
        }
        meta_listing_unref(l);

        /* a file larger than the bound is still started (its first 32 MiB, see the pool) but
         * alone: nothing after it until the reader gets there */
        h = listing_new(10, size_first_huge, NULL);
        dirahead_window_init(&w, 64, 32 * MIB);
        dirahead_window_advance(&w, h, 0, &first, &end);
        assert_int_equal(first, 1);
        assert_int_equal(end, 2);
        dirahead_window_advance(&w, h, 1, &first, &end);
        assert_true(end - first >= 1);
        meta_listing_unref(h);
}

static void test_out_of_order_closes_and_cancels(void **state)
{
        meta_listing *l = listing_new(200, size_64k, NULL);
        dirahead_window w;
        size_t first, end;

        (void)state;
        dirahead_window_init(&w, 16, 64 * MIB);
        for (size_t i = 0; i < 6; i++)
                assert_false(dirahead_window_advance(&w, l, i, &first, &end));
        /* back to the start: what was started ahead is no longer wanted */
        assert_true(dirahead_window_advance(&w, l, 0, &first, &end));
        assert_int_equal(w.window, 0);
        assert_int_equal(end - first, 0);
        /* a jump far ahead: closed as well */
        dirahead_window_advance(&w, l, 1, &first, &end);
        assert_int_equal(w.window, 1);
        dirahead_window_advance(&w, l, 150, &first, &end);
        assert_int_equal(w.window, 0);
        assert_int_equal(end - first, 0);
        /* the same file again changes nothing */
        dirahead_window_advance(&w, l, 151, &first, &end);
        assert_int_equal(w.window, 1);
        assert_false(dirahead_window_advance(&w, l, 151, &first, &end));
        assert_int_equal(w.window, 1);
        /* a small skip stays in order */
        dirahead_window_advance(&w, l, 151 + DIRAHEAD_SLACK, &first, &end);
        assert_int_equal(w.window, 2);
        meta_listing_unref(l);
}

static void test_directories_are_skipped(void **state)
{
        meta_listing *l = listing_new(300, size_64k, every_third_dir);
        dirahead_window w;
        size_t first, end;

        (void)state;
        dirahead_window_init(&w, 4, 64 * MIB);
        for (size_t i = 0; i < 30; i++) {
                unsigned files = 0;

                if (l->entries[i].dir)
                        continue;
                dirahead_window_advance(&w, l, i, &first, &end);
                for (size_t k = i + 1; k < w.issued_until; k++)
                        files += !l->entries[k].dir;
                assert_true(files <= 4);
        }
        meta_listing_unref(l);
}

/* ---- the pool ---- */

static void wait_idle(dirahead *d)
{
        for (int k = 0; k < 2000; k++) {
                bool idle;

                pthread_mutex_lock(&d->lock);
                idle = !d->head;
                pthread_mutex_unlock(&d->lock);
                if (idle)
                        break;
                usleep(1000);
        }
        usleep(20000); /* the last jobs taken finish */
}

static void test_pool_warms_ahead_once_and_stops_with_the_reader(void **state)
{
        dirahead_options o = {.max_files = 8, .max_bytes = 64 * MIB, .threads = 4};
        dirahead *d = NULL;
        dirahead_stats st;
        unsigned total;

        (void)state;
        warm_reset();
        fake_dirs[0] = listing_new(1000, size_64k, NULL);
        fake_dirs[1] = listing_new(10, size_64k, NULL);
        assert_int_equal(dirahead_new(NULL, NULL, &o, &d), 0);
        for (size_t i = 0; i < 50; i++) {
                char path[64];

                snprintf(path, sizeof(path), "/m/a/f%06zu", i);
                dirahead_opened(d, path, BS);
        }
        wait_idle(d);
        pthread_mutex_lock(&warm_lock);
        total = warm_total;
        for (size_t id = 1; id <= 1000; id++) {
                /* file ids are index + 1: the reader opened 1..50 itself */
                assert_true(warmed[id][0] <= 1);
                assert_int_equal(warmed[id][1], 0); /* 64 KiB: one block */
                if (id > 50 + 8)
                        assert_int_equal(warmed[id][0], 0);
                if (id > 1 && id <= 50 + 4)
                        assert_int_equal(warmed[id][0], 1);
        }
        pthread_mutex_unlock(&warm_lock);
        /* the reader stopped: nothing more is started */
        usleep(100000);
        pthread_mutex_lock(&warm_lock);
        assert_int_equal(warm_total, total);
        pthread_mutex_unlock(&warm_lock);
        dirahead_get_stats(d, &st);
        assert_int_equal(st.files, total);
        assert_int_equal(warm_wrong_epoch, 0); /* block ids carry the cluster's epoch */
        assert_int_equal(st.bytes, (uint64_t)total * (64 << 10));
        dirahead_free(d);
        meta_listing_unref(fake_dirs[0]);
        meta_listing_unref(fake_dirs[1]);
}

static void test_pool_drops_queued_files_when_the_reader_goes_elsewhere(void **state)
{
        dirahead_options o = {.max_files = 16, .max_bytes = 64 * MIB, .threads = 1};
        dirahead *d = NULL;
        dirahead_stats st;

        (void)state;
        warm_reset();
        fake_dirs[0] = listing_new(1000, size_64k, NULL);
        fake_dirs[1] = listing_new(10, size_64k, NULL);
        assert_int_equal(dirahead_new(NULL, NULL, &o, &d), 0);
        pthread_mutex_lock(&warm_lock);
        warm_hold = true; /* the one thread blocks in its first warm-up: the rest queues */
        pthread_mutex_unlock(&warm_lock);
        for (size_t i = 0; i < 6; i++) {
                char path[64];

                snprintf(path, sizeof(path), "/m/a/f%06zu", i);
                dirahead_opened(d, path, BS);
        }
        /* the reader moves to another directory */
        dirahead_opened(d, "/m/b/f000000", BS);
        pthread_mutex_lock(&warm_lock);
        warm_hold = false;
        pthread_cond_broadcast(&warm_cond);
        pthread_mutex_unlock(&warm_lock);
        wait_idle(d);
        dirahead_get_stats(d, &st);
        assert_true(st.cancelled > 0);
        pthread_mutex_lock(&warm_lock);
        /* of /m/a, at most the job that was running when the reader left was warmed */
        {
                unsigned a = 0;

                for (size_t id = 1; id <= 1000; id++)
                        a += warmed[id][0];
                /* /m/b's first file (id 1 there too) and the next one ahead */
                assert_true(a <= 3);
        }
        pthread_mutex_unlock(&warm_lock);
        dirahead_free(d);
        meta_listing_unref(fake_dirs[0]);
        meta_listing_unref(fake_dirs[1]);
}

static void test_large_file_ahead_warms_its_first_blocks(void **state)
{
        dirahead_options o = {.max_files = 4, .max_bytes = 40 * MIB, .threads = 2};
        dirahead *d = NULL;

        (void)state;
        warm_reset();
        fake_dirs[0] = listing_new(3, size_first_huge, NULL);
        fake_dirs[1] = listing_new(1, size_64k, NULL);
        assert_int_equal(dirahead_new(NULL, NULL, &o, &d), 0);
        dirahead_opened(d, "/m/a/f000000", BS);
        wait_idle(d);
        pthread_mutex_lock(&warm_lock);
        /* 40 MiB of a 1 GiB file in 16 MiB blocks: blocks 0, 1, 2, no more */
        assert_int_equal(warmed[2][0], 1);
        assert_int_equal(warmed[2][1], 1);
        assert_int_equal(warmed[2][2], 1);
        assert_int_equal(warmed[2][3], 0);
        pthread_mutex_unlock(&warm_lock);
        dirahead_free(d);
        meta_listing_unref(fake_dirs[0]);
        meta_listing_unref(fake_dirs[1]);
}

static void test_off_starts_nothing(void **state)
{
        dirahead_options o = {.max_files = 0, .max_bytes = 64 * MIB, .threads = 0};
        dirahead *d = NULL;

        (void)state;
        warm_reset();
        fake_dirs[0] = listing_new(10, size_64k, NULL);
        fake_dirs[1] = listing_new(1, size_64k, NULL);
        assert_int_equal(dirahead_new(NULL, NULL, &o, &d), 0);
        for (size_t i = 0; i < 5; i++) {
                char path[64];

                snprintf(path, sizeof(path), "/m/a/f%06zu", i);
                dirahead_opened(d, path, BS);
        }
        assert_int_equal(warm_total, 0);
        dirahead_free(d);
        meta_listing_unref(fake_dirs[0]);
        meta_listing_unref(fake_dirs[1]);
}

/* A directory of two listing pages: a reader walking on into the second page keeps its window
 * (no restart from one file), and finds each page with one lookup, never a walk. */
static void test_walk_across_pages(void **state)
{
        dirahead_options o = {.max_files = 4, .max_bytes = 64 * MIB, .threads = 2};
        dirahead *d = NULL;
        dir_track *t = NULL;

        (void)state;
        warm_reset();
        fake_pages[0] = listing_new(10, size_64k, NULL);
        fake_pages[0]->more = true;
        fake_pages[1] = listing_new(20, size_64k, NULL);
        /* the second page holds f000010..f000029 */
        for (size_t i = 0; i < fake_pages[1]->n; i++) {
                char name[32];

                snprintf(name, sizeof(name), "f%06zu", i + 10);
                free(fake_pages[1]->entries[i].name);
                fake_pages[1]->entries[i].name = strdup(name);
                fake_pages[1]->entries[i].file_id = 100 + i;
        }
        fake_dirs[0] = listing_new(1, size_64k, NULL);
        fake_dirs[1] = listing_new(1, size_64k, NULL);
        assert_int_equal(dirahead_new(NULL, NULL, &o, &d), 0);
        for (size_t i = 0; i < 14; i++) {
                char path[64];

                snprintf(path, sizeof(path), "/m/p/f%06zu", i);
                page_calls = 0;
                dirahead_opened(d, path, BS);
                assert_true(page_calls <= 1);
                if (i == 10) {
                        pthread_mutex_lock(&d->lock);
                        for (size_t k = 0; k < DIRAHEAD_DIRS; k++)
                                if (d->dirs[k].dir && strcmp(d->dirs[k].dir, "/m/p") == 0)
                                        t = &d->dirs[k];
                        assert_non_null(t);
                        assert_ptr_equal(t->listing, fake_pages[1]);
                        /* still walking, at full width: not restarted from one file */
                        assert_int_equal(t->w.window, 4);
                        pthread_mutex_unlock(&d->lock);
                }
        }
        wait_idle(d);
        pthread_mutex_lock(&warm_lock);
        /* files 11-13 of the second page (ids 101-103) and beyond were warmed ahead */
        assert_int_equal(warmed[101][0], 1);
        assert_int_equal(warmed[104][0], 1);
        pthread_mutex_unlock(&warm_lock);
        dirahead_free(d);
        meta_listing_unref(fake_pages[0]);
        meta_listing_unref(fake_pages[1]);
        meta_listing_unref(fake_dirs[0]);
        meta_listing_unref(fake_dirs[1]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_in_order_walk_starts_each_file_once),
                cmocka_unit_test(test_huge_directory_starts_at_most_the_window),
                cmocka_unit_test(test_bytes_bound),
                cmocka_unit_test(test_out_of_order_closes_and_cancels),
                cmocka_unit_test(test_directories_are_skipped),
                cmocka_unit_test(test_pool_warms_ahead_once_and_stops_with_the_reader),
                cmocka_unit_test(test_pool_drops_queued_files_when_the_reader_goes_elsewhere),
                cmocka_unit_test(test_large_file_ahead_warms_its_first_blocks),
                cmocka_unit_test(test_off_starts_nothing),
                cmocka_unit_test(test_walk_across_pages),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
