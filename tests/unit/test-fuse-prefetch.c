/* Unit tests for the FUSE daemon's read-ahead: the adaptive window and the warming threads. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* The module under test, with its reader replaced by a recorder (chrony-style). */
#include "prefetch.c"

#define MIB (1ull << 20)
#define BS  (16 * MIB)

static pthread_mutex_t warm_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned warm_calls[64];
static unsigned warm_total;

int reader_warm(reader *r, const reader_file *f, uint64_t index)
{
        usleep(2000);
        pthread_mutex_lock(&warm_lock);
        if (index < 64)
                warm_calls[index]++;
        warm_total++;
        pthread_mutex_unlock(&warm_lock);
        return 0;
}

void reader_file_done(reader_file *f)
{
        free(f->path);
        free(f->etag);
}

static void test_sequential_grows(void **state)
{
        prefetch_window w;
        uint64_t first, end;

        prefetch_window_init(&w, 4);
        /* first read at 0: sequential from the start, one block ahead */
        prefetch_window_advance(&w, 0, MIB, BS, 20, &first, &end);
        assert_true(first == 1 && end == 2);
        /* the window doubles: blocks 2..2 (1 already issued, window 2 -> up to block 3 excl.) */
        prefetch_window_advance(&w, MIB, MIB, BS, 20, &first, &end);
        assert_true(first == 2 && end == 3);
        prefetch_window_advance(&w, 2 * MIB, MIB, BS, 20, &first, &end);
        assert_true(first == 3 && end == 5);
        /* capped at 4 blocks ahead; nothing new until the reader moves into the next block */
        prefetch_window_advance(&w, 3 * MIB, MIB, BS, 20, &first, &end);
        assert_true(first == end);
        assert_int_equal(w.window, 4);
        for (uint64_t o = 4 * MIB; o < BS; o += MIB) {
                prefetch_window_advance(&w, o, MIB, BS, 20, &first, &end);
                assert_true(first == end);
        }
        /* into block 1: block 5 comes into the window */
        prefetch_window_advance(&w, BS, MIB, BS, 20, &first, &end);
        assert_true(first == 5 && end == 6);
}

static void test_random_closes(void **state)
{
        prefetch_window w;
        uint64_t first, end;

        prefetch_window_init(&w, 4);
        prefetch_window_advance(&w, 0, MIB, BS, 20, &first, &end);
        prefetch_window_advance(&w, MIB, MIB, BS, 20, &first, &end);
        /* a jump far away: random access, no read-ahead */
        prefetch_window_advance(&w, 10 * BS, 4096, BS, 20, &first, &end);
        assert_true(first == end);
        assert_int_equal(w.window, 0);
        /* and sequential again from there: the window opens from 1 */
        prefetch_window_advance(&w, 10 * BS + 4096, MIB, BS, 20, &first, &end);
        assert_true(first == 11 && end == 12);
}

static void test_reordered_reads_stay_sequential(void **state)
{
        prefetch_window w;
        uint64_t first, end;

        prefetch_window_init(&w, 4);
        /* the kernel's async read-ahead: requests overtake each other by a few MiB */
        prefetch_window_advance(&w, 0, MIB, BS, 20, &first, &end);
        prefetch_window_advance(&w, 2 * MIB, MIB, BS, 20, &first, &end);
        prefetch_window_advance(&w, MIB, MIB, BS, 20, &first, &end);
        assert_true(w.window >= 2);
        assert_true(w.next_offset == 3 * MIB);
}

static void test_end_of_file(void **state)
{
        prefetch_window w;
        uint64_t first, end;

        prefetch_window_init(&w, 8);
        /* a 2-block file: never beyond block 1 */
        prefetch_window_advance(&w, 0, MIB, BS, 2, &first, &end);
        assert_true(first == 1 && end == 2);
        prefetch_window_advance(&w, MIB, MIB, BS, 2, &first, &end);
        assert_true(first == end);
        /* a one-block file: nothing at all */
        prefetch_window_init(&w, 8);
        prefetch_window_advance(&w, 0, MIB, BS, 1, &first, &end);
        assert_true(first == end);
}

static void test_pool_dedups(void **state)
{
        reader_file f = {.path = (char *)"/m/f",
                         .epoch = 0xe1,
                         .file_id = 7,
                         .version = 1,
                         .size = 20 * BS,
                         .block_size = BS};
        prefetch *p = NULL;

        memset(warm_calls, 0, sizeof(warm_calls));
        warm_total = 0;
        assert_int_equal(prefetch_new(NULL, 3, &p), 0);
        for (unsigned round = 0; round < 5; round++)
                for (uint64_t i = 0; i < 10; i++)
                        prefetch_queue(p, &f, i);
        /* wait for the queue to drain */
        for (unsigned i = 0; i < 2000; i++) {
                bool idle;

                pthread_mutex_lock(&p->lock);
                idle = p->pending.n == 0;
                pthread_mutex_unlock(&p->lock);
                if (idle)
                        break;
                usleep(1000);
        }
        prefetch_free(p);
        /* every block warmed, none more than the rounds that found it already done */
        for (unsigned i = 0; i < 10; i++)
                assert_true(warm_calls[i] >= 1 && warm_calls[i] <= 5);
        assert_true(warm_total < 50);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sequential_grows),
                cmocka_unit_test(test_random_closes),
                cmocka_unit_test(test_reordered_reads_stay_sequential),
                cmocka_unit_test(test_end_of_file),
                cmocka_unit_test(test_pool_dedups),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
