/* Unit tests of what keeps the master's loop thread on time: the writer's reused read transaction
 * (store-db.c), wake-ups through an eventfd (loopwake.c) and the lateness accounting
 * (loopwatch.c). */
#include <errno.h>
#include <fcntl.h>
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

#include "store-db.h" /* before uv.h: cleanup.h and sys/param.h both define MIN */
#include "loopwake.h"
#include "loopwatch.h"
#include "timeutil.h"

static char tmpdir[] = "/tmp/test-loop-XXXXXX";

static store_db *db_open_new(const char *name)
{
        char path[256];
        store_db *db = NULL;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        assert_int_equal(store_db_open(path, &db), 0);
        return db;
}

static void put_meta(store_db *db, uint64_t applied)
{
        MDB_txn *txn;
        const store_dbis *d;

        assert_int_equal(store_db_begin(db, true, &txn, &d), 0);
        assert_int_equal(store_meta_put(txn, d, &(store_meta){.applied = applied, .next_id = 1}),
                         0);
        assert_int_equal(store_db_commit(db, txn), 0);
}

static uint64_t read_applied(store_db *db, MDB_txn **ret_txn)
{
        MDB_txn *txn;
        const store_dbis *d;
        store_meta m;

        assert_int_equal(store_db_begin(db, false, &txn, &d), 0);
        assert_int_equal(store_meta_get(txn, d, &m), 0);
        store_db_end(db, txn);
        if (ret_txn)
                *ret_txn = txn;
        return m.applied;
}

typedef struct other_read {
        store_db *db;
        MDB_txn *txn;
        uint64_t applied;
} other_read;

static void *read_elsewhere(void *arg)
{
        other_read *o = arg;
        o->applied = read_applied(o->db, &o->txn);
        return NULL;
}

/* The writer's reads reuse one transaction (no reader-table mutex) and still see every commit;
 * a nested read and reads of other threads get their own. */
static void test_writer_reads_reuse_one_transaction(void **state)
{
        store_db *db = db_open_new("reuse.mdb");
        MDB_txn *first, *second, *outer, *inner;
        const store_dbis *d;
        store_meta m;

        put_meta(db, 5);
        assert_int_equal(read_applied(db, &first), 5);
        put_meta(db, 6);
        assert_int_equal(read_applied(db, &second), 6); /* renewed: sees the new commit */
        assert_ptr_equal(first, second);

        /* Nested: the reused transaction is busy, the inner read gets a fresh one. */
        assert_int_equal(store_db_begin(db, false, &outer, &d), 0);
        assert_ptr_equal(outer, first);
        assert_int_equal(store_db_begin(db, false, &inner, &d), 0);
        assert_ptr_not_equal(inner, outer);
        assert_int_equal(store_meta_get(inner, d, &m), 0);
        assert_int_equal(m.applied, 6);
        store_db_end(db, inner);
        /* A view keeps its start: a commit meanwhile is not seen by the open outer read. */
        put_meta(db, 7);
        assert_int_equal(store_meta_get(outer, d, &m), 0);
        assert_int_equal(m.applied, 6);
        store_db_end(db, outer);
        assert_int_equal(read_applied(db, NULL), 7);

        other_read o = {.db = db};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, read_elsewhere, &o), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(o.applied, 7);
        assert_ptr_not_equal(o.txn, first);
        store_db_free(db);
}

/* Replacing the database (a snapshot install) drops the reused transaction of the old file. */
static void test_writer_reads_after_replace(void **state)
{
        store_db *db = db_open_new("live.mdb"), *other = db_open_new("other.mdb");
        char path[256];

        put_meta(db, 3);
        assert_int_equal(read_applied(db, NULL), 3);
        put_meta(other, 42);
        snprintf(path, sizeof(path), "%s/other.mdb", tmpdir);
        store_db_free(other);
        assert_int_equal(store_db_replace(db, path), 0);
        assert_int_equal(read_applied(db, NULL), 42);
        put_meta(db, 43);
        assert_int_equal(read_applied(db, NULL), 43);
        store_db_free(db);
}

typedef struct wake_state {
        loopwake w;
        unsigned calls;
} wake_state;

static void on_wake(loopwake *w)
{
        wake_state *s = w->poll.data;
        s->calls++;
        uv_stop(w->poll.loop);
}

static void *send_later(void *arg)
{
        loopwake *w = arg;
        sleep_ms(20);
        loopwake_send(w);
        return NULL;
}

static void on_closed(uv_handle_t *h)
{
        (*(unsigned *)h->data)++;
}

/* A send from another thread wakes the loop; sends before it runs coalesce; close closes. */
static void test_loopwake(void **state)
{
        uv_loop_t loop;
        wake_state s = {};
        pthread_t t;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(loopwake_init(&loop, &s.w, on_wake), 0);
        s.w.poll.data = &s;
        assert_int_equal(pthread_create(&t, NULL, send_later, &s.w), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(s.calls, 1);

        for (int i = 0; i < 5; i++)
                loopwake_send(&s.w);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(s.calls, 2);
        uv_run(&loop, UV_RUN_NOWAIT); /* nothing left to deliver */
        assert_int_equal(s.calls, 2);

        unsigned closed = 0;
        int fd = s.w.fd;
        s.w.poll.data = &closed;
        loopwake_close(&s.w, on_closed);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(closed, 1);
        assert_int_equal(s.w.fd, -1);
        errno = 0;
        assert_true(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* A tick that comes late counts, with its histogram bucket; applies and snapshots are noted. */
static void test_loopwatch_lateness(void **state)
{
        loopwatch w;
        loopwatch_stats s;

        loopwatch_init(&w, 5);
        loopwatch_tick(&w, 0);
        sleep_ms(5);
        loopwatch_tick(&w, 0);
        sleep_ms(80);
        loopwatch_tick(&w, 0);
        loopwatch_note_apply(&w, 1500, 36000, true);
        loopwatch_note_apply(&w, 200, 100, false);
        loopwatch_note_snapshot(&w, 7000);
        loopwatch_read(&w, &s);
        assert_int_equal(s.ticks, 3);
        assert_true(s.late_max_us >= 70000 && s.late_max_us < 10000000);
        assert_true(s.late_recent_us[0] >= 70000);
        uint64_t n = 0, over_50ms = 0;
        for (unsigned i = 0; i < LOOPWATCH_BUCKETS; i++) {
                n += s.late_hist[i];
                if (loopwatch_bounds_us[i] > 50000)
                        over_50ms += s.late_hist[i];
        }
        assert_int_equal(n, 2);
        assert_int_equal(over_50ms, 1);
        assert_int_equal(s.applies, 2);
        assert_int_equal(s.batches, 1);
        assert_int_equal(s.apply_max_us, 1500);
        assert_int_equal(s.apply_max_bytes, 36000);
        assert_int_equal(s.batch_max_us, 1500);
        assert_int_equal(s.snapshots, 1);
        assert_int_equal(s.snapshot_max_us, 7000);

        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        loopwatch_metrics_write(&w, f);
        fclose(f);
        assert_non_null(strstr(text, "weir_master_loop_lateness_seconds_count 2\n"));
        assert_non_null(strstr(text, "weir_master_apply_seconds_count 2\n"));
        assert_non_null(strstr(text, "weir_master_loop_lateness_seconds_bucket{le=\"+Inf\"} 2\n"));
        free(text);
        loopwatch_done(&w);
}

static int setup(void **state)
{
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_writer_reads_reuse_one_transaction),
                cmocka_unit_test(test_writer_reads_after_replace),
                cmocka_unit_test(test_loopwake),
                cmocka_unit_test(test_loopwatch_lateness),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
