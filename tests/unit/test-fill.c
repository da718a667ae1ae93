/* Unit tests for the worker's fills over the local store backend: block math, single flight,
 * parallel ranges, version preconditions, unknown blocks. */
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cleanup.h"
#include "fill.h"
#include "content.h"
#include "store.h"

#define TEST_EPOCH 0xe1ull
#include "ufs/ufs.h"

#define MiB (1u << 20)

typedef struct fixture {
        char root[64];
        char src[128];
        char cache[128];
        config *cfg;
        store *store;
        fill *fill;
        uint64_t version; /* what the resolver reports */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int done, last_r;
} fixture;

static void write_file(const char *path, size_t len, unsigned seed)
{
        uint8_t *buf = malloc(len);
        int fd;

        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 12));
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        close(fd);
        free(buf);
}

/* The resolver: file 1 is "/data/f.bin", 12 MiB blocks of 4 MiB... as the master would say. */
static int resolve(void *userdata, unsigned thread, uint64_t file_id, fill_file *ret)
{
        fixture *f = userdata;
        char path[256];
        ufs *u;
        ufs_version v;
        int r;

        if (file_id != 1)
                return -ENOENT;
        r = ufs_open(&f->cfg->datasets[0].mounts[0], &u);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "f.bin");
        r = ufs_stat(u, path, &v);
        ufs_free(u);
        if (r < 0)
                return r;
        *ret = (fill_file){.epoch = TEST_EPOCH,
                           .file_id = 1,
                           .version = f->version,
                           .size = v.size,
                           .block_size = 4 * MiB,
                           .mtime = v.mtime,
                           .etag = v.etag,
                           .dataset = strdup("ds"),
                           .path = strdup("/data/f.bin")};
        return 0;
}

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        char yaml[2048];
        store_level_spec spec = {
                .medium = CONFIG_MEDIUM_MEM, .quota = 64 * MiB, .high = 0.95, .low = 0.7};
        fill_options o = {.threads = 6, .part_size = 1 * MiB, .max_parts = 4};

        strcpy(f->root, "/tmp/weir-test-fill-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        snprintf(f->src, sizeof(f->src), "%s/src", f->root);
        snprintf(f->cache, sizeof(f->cache), "%s/cache", f->root);
        assert_int_equal(mkdir(f->src, 0755), 0);
        {
                char p[256];

                snprintf(p, sizeof(p), "%s/f.bin", f->src);
                write_file(p, 10 * MiB + 777, 1);
        }
        snprintf(yaml, sizeof(yaml),
                 "apiVersion: weir.io/v1\nkind: Cluster\nmetadata: {name: t}\nspec:\n"
                 "  nodes:\n    - {name: n1, address: 127.0.0.1}\n---\n"
                 "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: ds}\n"
                 "spec:\n  blockSize: 4Mi\n  mounts:\n    - {mountPoint: \"local://%s\", name: "
                 "data}\n",
                 f->src);
        assert_int_equal(config_load_buffer("test.yaml", yaml, strlen(yaml), &f->cfg, NULL), 0);
        spec.dir = f->cache;
        assert_int_equal(store_new(&spec, 1, 0, &f->store), 0);
        f->version = 1;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        assert_int_equal(fill_new(f->cfg, f->store, &o, resolve, f, &f->fill), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        char cmd[128];

        fill_free(f->fill);
        store_free(f->store);
        config_free(f->cfg);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void on_done(int r, void *userdata)
{
        fixture *f = userdata;

        pthread_mutex_lock(&f->lock);
        f->done++;
        f->last_r = r;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void wait_done(fixture *f, int n)
{
        pthread_mutex_lock(&f->lock);
        while (f->done < n)
                pthread_cond_wait(&f->cond, &f->lock);
        pthread_mutex_unlock(&f->lock);
}

static bool block_matches(fixture *f, uint64_t index, size_t len)
{
        char p[256];
        store_block *b;
        uint64_t size;
        uint8_t *want = malloc(len), *got = malloc(len);
        bool ok;
        int fd, sfd;

        snprintf(p, sizeof(p), "%s/f.bin", f->src);
        sfd = open(p, O_RDONLY | O_CLOEXEC);
        assert_int_equal(pread(sfd, want, len, index * 4 * MiB), (ssize_t)len);
        close(sfd);
        assert_int_equal(store_open(f->store, &(store_key){TEST_EPOCH, 1, f->version, index}, &b,
                                    &fd, &size),
                         0);
        ok = size == len && pread(fd, got, len, 0) == (ssize_t)len && memcmp(got, want, len) == 0;
        close(fd);
        store_release(f->store, b);
        free(want);
        free(got);
        return ok;
}

static void test_block_range(void **state)
{
        uint64_t off, len;

        assert_int_equal(fill_block_range(10, 4, 0, &off, &len), 0);
        assert_true(off == 0 && len == 4);
        assert_int_equal(fill_block_range(10, 4, 2, &off, &len), 0);
        assert_true(off == 8 && len == 2);
        assert_int_equal(fill_block_range(10, 4, 3, &off, &len), -ERANGE);
        assert_int_equal(fill_block_range(8, 4, 2, &off, &len), -ERANGE);
        assert_int_equal(fill_block_range(0, 4, 0, &off, &len), 0);
        assert_true(len == 0);
        assert_int_equal(fill_block_range(0, 4, 1, &off, &len), -ERANGE);
        assert_int_equal(fill_block_range(UINT64_MAX, 4, UINT64_MAX, &off, &len), -ERANGE);
        assert_int_equal(fill_block_range(10, 0, 0, &off, &len), -EINVAL);
}

typedef struct racer {
        fixture *f;
        pthread_barrier_t *barrier;
        int r;
} racer;

static void *race(void *userdata)
{
        racer *x = userdata;

        pthread_barrier_wait(x->barrier);
        x->r = fill_block(x->f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, on_done, x->f);
        return NULL;
}

static void test_single_flight(void **state)
{
        fixture *f = *state;
        pthread_barrier_t barrier;
        pthread_t t[32];
        racer x[32];
        fill_stats st;
        int waiting = 0;

        pthread_barrier_init(&barrier, NULL, 32);
        for (int i = 0; i < 32; i++) {
                x[i] = (racer){.f = f, .barrier = &barrier};
                pthread_create(&t[i], NULL, race, &x[i]);
        }
        for (int i = 0; i < 32; i++) {
                pthread_join(t[i], NULL);
                assert_true(x[i].r == 0 || x[i].r == 1);
                waiting += x[i].r == 0;
        }
        wait_done(f, waiting);
        assert_int_equal(f->last_r, 0);
        fill_get_stats(f->fill, &st);
        assert_int_equal(st.fills, 1);
        assert_int_equal(st.store_bytes, 4 * MiB);
        assert_true(block_matches(f, 1, 4 * MiB));
        pthread_barrier_destroy(&barrier);
}

static void test_parallel_ranges_and_tail(void **state)
{
        fixture *f = *state;
        fill_stats st;

        /* 4 MiB blocks in 1 MiB ranges; the last block is 2 MiB + 777 bytes. */
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 0);
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 2}, 0, on_done, f), 0);
        wait_done(f, 2);
        assert_int_equal(f->last_r, 0);
        assert_true(block_matches(f, 0, 4 * MiB));
        assert_true(block_matches(f, 2, 2 * MiB + 777));
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 1);
        fill_get_stats(f->fill, &st);
        assert_int_equal(st.store_bytes, 6 * MiB + 777);
}

static void test_readahead(void **state)
{
        fixture *f = *state;
        fill_stats st;

        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 5, on_done, f), 0);
        wait_done(f, 1);
        /* The prefetches (blocks 1 and 2; the file has no block 3) end soon after. */
        for (int i = 0; i < 500; i++) {
                fill_get_stats(f->fill, &st);
                if (st.queued == 0)
                        break;
                usleep(10000);
        }
        assert_true(store_contains(f->store, &(store_key){TEST_EPOCH, 1, 1, 1}));
        assert_true(store_contains(f->store, &(store_key){TEST_EPOCH, 1, 1, 2}));
        assert_int_equal(st.fills, 3);
        assert_int_equal(st.failures, 0);
}

/* A block of another epoch than the master's file of that id is never filled from the file. And
 * file id 0 is no sentinel: 20 requests for it end (the resolver knows no such file) and leave
 * every fill thread free for the next block (issue 14: they used to wait forever). */
static void test_other_epoch_and_file_zero(void **state)
{
        fixture *f = *state;

        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH + 1, 1, 1, 0}, 0, on_done, f),
                         0);
        wait_done(f, 1);
        assert_int_equal(f->last_r, -ESTALE);
        assert_false(store_contains(f->store, &(store_key){TEST_EPOCH + 1, 1, 1, 0}));
        for (int i = 0; i < 20; i++)
                assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 0, 1, (uint64_t)i}, 0,
                                            on_done, f),
                                 0);
        wait_done(f, 21);
        assert_int_equal(f->last_r, -ENOENT);
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 0);
        wait_done(f, 22);
        assert_int_equal(f->last_r, 0);
        assert_true(block_matches(f, 0, 4 * MiB));
}

/* A version marked as failing its content check (here or on another worker) is never filled
 * again: requests fail with -EILSEQ at once; its other blocks, other versions and other files
 * are not affected, and the mark is counted by neither. */
static void test_mismatch_mark(void **state)
{
        fixture *f = *state;
        fill_stats st;

        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 0);
        wait_done(f, 1);
        assert_int_equal(f->last_r, 0);
        fill_mark_mismatch(f->fill, &(store_key){TEST_EPOCH, 1, 1, 2}); /* any index: the version */
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, on_done, f),
                         -EILSEQ);
        assert_int_equal(
                fill_block_part(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, 10, 0, NULL, NULL),
                -EILSEQ);
        assert_false(store_contains(f->store, &(store_key){TEST_EPOCH, 1, 1, 1}));
        /* what was cached before stays until the caller drops it (content-peers.c does) */
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 1);
        assert_string_equal(fill_strerror(-EILSEQ), FILL_MISMATCH_TEXT);
        assert_int_equal(
                strncmp(fill_strerror(-EILSEQ), ETAG_MISMATCH_PREFIX, strlen(ETAG_MISMATCH_PREFIX)),
                0);
        /* another version of the same file is filled */
        f->version = 2;
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 2, 1}, 0, on_done, f), 0);
        wait_done(f, 2);
        assert_int_equal(f->last_r, 0);
        fill_get_stats(f->fill, &st);
        assert_int_equal(st.content_checks, 0);
        fill_count_content_check(f->fill, false);
        fill_get_stats(f->fill, &st);
        assert_true(st.content_checks == 1 && st.content_failures == 1);
}

/* Which ETags are an MD5 of the content (S3 single-part), and which are not. */
static void test_content_md5_etag(void **state)
{
        uint8_t md5[CONTENT_MD5_LEN];

        assert_true(content_md5_from_etag("\"0123456789abcdef0123456789ABCDEF\"", md5));
        assert_true(md5[0] == 0x01 && md5[7] == 0xef && md5[15] == 0xef);
        assert_false(content_md5_from_etag("\"0123456789abcdef0123456789abcdef-2\"", md5));
        assert_false(content_md5_from_etag("W/\"0123456789abcdef0123456789abcdef\"", md5));
        assert_false(content_md5_from_etag("0123456789abcdef0123456789abcdef", md5));
        assert_false(content_md5_from_etag("\"0123456789abcdef0123456789abcdeg\"", md5));
        assert_false(content_md5_from_etag("\"65a1b2c3-1000\"", md5)); /* nginx's */
        assert_false(content_md5_from_etag(NULL, md5));
}

static void test_errors(void **state)
{
        fixture *f = *state;
        char p[256];
        struct stat s;

        /* No such block, no such file, a version the master does not have. */
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 3}, 0, on_done, f), 0);
        wait_done(f, 1);
        assert_int_equal(f->last_r, -ERANGE);
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 2, 1, 0}, 0, on_done, f), 0);
        wait_done(f, 2);
        assert_int_equal(f->last_r, -ENOENT);
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 7, 0}, 0, on_done, f), 0);
        wait_done(f, 3);
        assert_int_equal(f->last_r, -ESTALE);

        /* Metadata cached for version 1, then the file changes in the store: the fill fails
         * whole, nothing is cached for version 1 from the new bytes. */
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 0}, 0, on_done, f), 0);
        wait_done(f, 4);
        assert_int_equal(f->last_r, 0);
        snprintf(p, sizeof(p), "%s/f.bin", f->src);
        write_file(p, 10 * MiB + 777, 2);
        assert_int_equal(stat(p, &s), 0);
        {
                struct timespec ts[2] = {s.st_atim, {.tv_sec = s.st_mtim.tv_sec + 100}};

                assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
        }
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, on_done, f), 0);
        wait_done(f, 5);
        assert_int_equal(f->last_r, -ESTALE);
        assert_false(store_contains(f->store, &(store_key){TEST_EPOCH, 1, 1, 1}));
        /* That version is refused at once for a while, any block of it: no store request for
         * each retry of a reader waiting for the sync. */
        {
                fill_stats st;

                assert_int_equal(
                        fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 1, 2}, 0, on_done, f),
                        -ESTALE);
                assert_int_equal(fill_block_part(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, 10,
                                                 0, NULL, NULL),
                                 -ESTALE);
                fill_get_stats(f->fill, &st);
                assert_int_equal(st.stale_refusals, 2);
        }
        /* Version 2 is the new bytes. */
        f->version = 2;
        assert_int_equal(fill_block(f->fill, &(store_key){TEST_EPOCH, 1, 2, 1}, 0, on_done, f), 0);
        wait_done(f, 6);
        assert_int_equal(f->last_r, 0);
        assert_true(block_matches(f, 1, 4 * MiB));
}

/* Readers of part of a block (fill_block_part): each gets a read-only descriptor with its bytes,
 * or "whole" (1) when the block was complete first or the range lies past its end. */
typedef struct part_result {
        fixture *f;
        uint64_t off, len;
        int r;
        bool ok;
} part_result;

static void on_part(int r, int fd, uint64_t block_len, void *userdata)
{
        part_result *p = userdata;
        fixture *f = p->f;

        p->r = r;
        p->ok = r != 0;
        if (r == 0) {
                uint64_t len = MIN(p->len, block_len - p->off);
                uint8_t *got = malloc(len), *want = malloc(len);
                char path[256];
                int sfd;

                snprintf(path, sizeof(path), "%s/f.bin", f->src);
                sfd = open(path, O_RDONLY | O_CLOEXEC);
                p->ok = block_len == 4 * MiB && sfd >= 0 &&
                        pread(fd, got, len, (off_t)p->off) == (ssize_t)len &&
                        pread(sfd, want, len, (off_t)(4 * MiB + p->off)) == (ssize_t)len &&
                        memcmp(got, want, len) == 0 &&
                        /* read-only: a reader cannot write into the cache */
                        pwrite(fd, got, 1, (off_t)p->off) < 0 && errno == EBADF;
                close(sfd);
                close(fd);
                free(got);
                free(want);
        }
        on_done(r, f);
}

static void test_parts(void **state)
{
        fixture *f = *state;
        part_result p[] = {
                {f, 0, 4096},        {f, 3 * MiB + 5, 100},
                {f, 4 * MiB - 1, 1}, {f, MiB - 10, 2 * MiB}, /* across three ranges */
                {f, 5 * MiB, 10},                            /* past the end of the 4 MiB block */
        };
        int n = 0;

        for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
                int r = fill_block_part(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, p[i].off,
                                        p[i].len, 0, on_part, &p[i]);

                assert_true(r == 0 || r == 1);
                if (r == 0)
                        n++;
                else
                        p[i] = (part_result){f, 0, 0, 1, true};
        }
        wait_done(f, n);
        for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
                assert_true(p[i].ok);
                assert_true(p[i].r == 0 || p[i].r == 1);
        }
        assert_int_equal(p[4].r, 1); /* never served from the partial file */
        assert_true(block_matches(f, 1, 4 * MiB));
        /* cached now: answered at once */
        assert_int_equal(fill_block_part(f->fill, &(store_key){TEST_EPOCH, 1, 1, 1}, 0, 10, 0,
                                         on_part, &p[0]),
                         1);
        assert_int_equal(fill_block_part(f->fill, &(store_key){TEST_EPOCH, 1, 1, 2}, 0, 0, 0,
                                         on_part, &p[0]),
                         -EINVAL);
        /* a file that does not exist fails the waiter */
        assert_int_equal(fill_block_part(f->fill, &(store_key){TEST_EPOCH, 7, 1, 0}, 0, 10, 0,
                                         on_part, &p[0]),
                         0);
        wait_done(f, n + 1);
        assert_int_equal(p[0].r, -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_block_range),
                cmocka_unit_test(test_content_md5_etag),
                cmocka_unit_test_setup_teardown(test_single_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_ranges_and_tail, setup, teardown),
                cmocka_unit_test_setup_teardown(test_readahead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_epoch_and_file_zero, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mismatch_mark, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
