/* Unit tests for the worker's tiered block store and its checksum: eviction across tiers,
 * demotion, pins, quotas under concurrent fills, index rebuild, temporaries, corrupt blocks. */
#include <dirent.h>
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
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "checksum.h"
#include "cleanup.h"
#include "store.h"

#define TEST_EPOCH 0xe1ull /* "00000000000000e1" */

typedef struct fixture {
        char root[64];
        char dirs[3][128];
        store_level_spec specs[3];
} fixture;

static int rm_rf(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *de;

        if (!d)
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        while ((de = readdir(d))) {
                char p[512];

                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
                rm_rf(p);
        }
        closedir(d);
        return rmdir(path) < 0 ? -errno : 0;
}

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        static const config_medium media[3] = {CONFIG_MEDIUM_MEM, CONFIG_MEDIUM_SSD,
                                               CONFIG_MEDIUM_HDD};

        assert_non_null(f);
        strcpy(f->root, "/tmp/weir-test-store-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        for (int i = 0; i < 3; i++) {
                snprintf(f->dirs[i], sizeof(f->dirs[i]), "%s/l%d/weir/node1", f->root, i);
                f->specs[i] = (store_level_spec){.medium = media[i],
                                                 .dir = f->dirs[i],
                                                 .quota = 10000,
                                                 .high = 0.9,
                                                 .low = 0.5};
        }
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;

        rm_rf(f->root);
        free(f);
        return 0;
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t seed)
{
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 8)) & 0xff);
}

static void put(store *s, uint64_t i, size_t len)
{
        uint8_t *buf = malloc(len);
        store_write *w;

        fill_pattern(buf, len, i);
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, i}, len, &w), 0);
        assert_int_equal(pwrite(store_write_fd(w), buf, len, 0), (ssize_t)len);
        assert_int_equal(store_commit(s, w), 0);
        free(buf);
}

/* Reads block I back and checks its bytes; returns its level's directory index or -1. */
static bool get_ok(store *s, uint64_t i, size_t len)
{
        store_block *b;
        uint64_t size;
        uint8_t *want, *got;
        bool ok;
        int fd;

        if (store_open(s, &(store_key){TEST_EPOCH, 7, 1, i}, &b, &fd, &size) < 0)
                return false;
        want = malloc(len);
        got = malloc(len);
        fill_pattern(want, len, i);
        ok = size == len && pread(fd, got, len, 0) == (ssize_t)len && memcmp(want, got, len) == 0;
        close(fd);
        store_release(s, b);
        free(want);
        free(got);
        return ok;
}

static unsigned count_files(const char *dir, const char *prefix)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' ||
                    (prefix && strncmp(de->d_name, prefix, strlen(prefix)) == 0))
                        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                                if (!prefix || strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                                        n++;
        closedir(d);
        return n;
}

static int level_of(store *s, fixture *f, uint64_t i)
{
        char prefix[64];

        snprintf(prefix, sizeof(prefix), "00000000000000e1-7-1-%lu.", (unsigned long)i);
        for (int l = 0; l < 3; l++)
                if (count_files(f->dirs[l], prefix) == 1)
                        return l;
        return -1;
}

static void test_key(void **state)
{
        store_key k;
        char buf[BLOCK_ID_MAX];
        uint64_t e;

        assert_int_equal(block_id_parse("00000000000000e1-17-2-5", &k), 0);
        assert_true(k.epoch == 0xe1 && k.file_id == 17 && k.version == 2 && k.index == 5);
        assert_string_equal(block_id_format(buf, &k), "00000000000000e1-17-2-5");
        assert_int_equal(block_id_parse("ffffffffffffffff-18446744073709551615-1-0", &k), 0);
        assert_true(k.epoch == UINT64_MAX && k.file_id == UINT64_MAX);
        assert_int_equal(block_id_parse("ffffffffffffffff-18446744073709551616-1-0", &k), -EINVAL);
        /* Format 1 ids (no epoch) are not block ids any more, but recognised as such. */
        assert_int_equal(block_id_parse("17-2-5", &k), -EINVAL);
        assert_true(block_id_is_v1("17-2-5"));
        assert_false(block_id_is_v1("00000000000000e1-17-2-5"));
        assert_false(block_id_is_v1("17-2"));
        /* No sentinel ids: epoch 0 and file id 0 are refused. */
        assert_int_equal(block_id_parse("0000000000000000-1-1-0", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-0-1-0", &k), -EINVAL);
        assert_int_equal(block_id_parse("0-1-0", &k), -EINVAL);
        /* The epoch: exactly 16 lowercase hex digits. */
        assert_int_equal(block_id_parse("e1-17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000E1-17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("000000000000000e1-17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-2", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-2-5-1", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17--5", &k), -EINVAL);
        assert_int_equal(block_id_parse("-00000000000000e1-17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("../2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("", &k), -EINVAL);
        assert_int_equal(block_id_parse(NULL, &k), -EINVAL);
        /* What sscanf("%lu-%lu-%lu") would have taken: signs, spaces, trailing text. */
        assert_int_equal(block_id_parse("00000000000000e1-+17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1- 17-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-2-5x", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-2-5 ", &k), -EINVAL);
        /* one spelling per block: no leading zeros (0 itself is fine) */
        assert_int_equal(block_id_parse("00000000000000e1-017-2-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-2-05", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-00-5", &k), -EINVAL);
        assert_int_equal(block_id_parse("00000000000000e1-17-0-0", &k), 0);
        assert_int_equal(block_epoch_parse("0123456789abcdef", &e), 0);
        assert_true(e == 0x0123456789abcdefull);
        assert_int_equal(block_epoch_parse("0000000000000000", &e), -EINVAL);
        assert_int_equal(block_epoch_parse("0123456789abcdeg", &e), -EINVAL);
        assert_int_equal(block_epoch_parse(NULL, &e), -EINVAL);
}

static void test_checksum(void **state)
{
        size_t len = 100003;
        uint8_t *buf = malloc(len);
        uint64_t whole;

        fill_pattern(buf, len, 3);
        whole = checksum_buffer(buf, len);
        /* Streaming in odd pieces gives the same sum. */
        for (size_t step = 1; step < 100; step += 13) {
                checksum c;

                checksum_init(&c, len);
                for (size_t off = 0; off < len; off += step)
                        checksum_update(&c, buf + off, MIN(step, len - off));
                assert_true(checksum_final(&c) == whole);
        }
        /* Any single bit flip, truncation or zero extension changes it. */
        for (size_t pos = 0; pos < len; pos += 997) {
                buf[pos] ^= 0x10;
                assert_true(checksum_buffer(buf, len) != whole);
                buf[pos] ^= 0x10;
        }
        assert_true(checksum_buffer(buf, len - 1) != whole);
        assert_true(checksum_buffer(buf, 0) != checksum_buffer("\0", 1));
        free(buf);
}

static void test_write_read(void **state)
{
        fixture *f = *state;
        store *s;
        store_write *w;
        store_stats st;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        put(s, 1, 1000);
        assert_true(get_ok(s, 1, 1000));
        assert_true(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 1}));
        assert_false(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 2}));
        /* Already cached, or already being written: no second writer. */
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, 1}, 1000, &w), -EEXIST);
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, 2}, 1000, &w), 0);
        store_write *w2;
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, 2}, 1000, &w2), -EBUSY);
        /* A short file is not committed. */
        assert_int_equal(pwrite(store_write_fd(w), "abc", 3, 0), 3);
        assert_int_equal(store_commit(s, w), -EIO);
        assert_false(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 2}));
        store_get_stats(s, &st);
        assert_int_equal(st.used, 1000);
        assert_int_equal(st.blocks, 1);
        /* Larger than every level: refused, not half-written. */
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, 3}, 10001, &w), -ENOSPC);
        assert_int_equal(count_files(f->dirs[0], NULL), 1);
        store_free(s);
}

static void test_watermarks_and_demotion(void **state)
{
        fixture *f = *state;
        store *s;
        store_stats st;

        /* MEM 10000 (evict above 9000 down to 5000) over SSD 4000 (above 3600 down to 2000). */
        f->specs[1].quota = 4000;
        assert_int_equal(store_new(f->specs, 2, 0, &s), 0);
        for (uint64_t i = 0; i < 9; i++)
                put(s, i, 1000);
        assert_int_equal(store_evict(s), 0); /* 9000 is not above high */
        /* Touch block 0 so that it is the most recently used. */
        assert_true(get_ok(s, 0, 1000));
        put(s, 9, 1000);
        store_get_stats(s, &st);
        assert_int_equal(st.levels[0].used, 10000);
        /* Above high: MEM goes down to low (5 blocks demoted, least recently used first: 1-5),
         * which puts SSD at 5000 > quota... so demotion made room there first (dropping 1),
         * and then SSD above its high mark goes down to its low mark. */
        assert_true(store_evict(s) > 0);
        store_get_stats(s, &st);
        assert_int_equal(st.levels[0].used, 5000);
        assert_true(st.levels[1].used <= 2000);
        assert_true(st.demotions >= 5);
        assert_int_equal(level_of(s, f, 0), 0); /* recently used: stayed in MEM */
        for (uint64_t i = 6; i < 10; i++)
                assert_int_equal(level_of(s, f, i), 0);
        assert_int_equal(level_of(s, f, 1), -1); /* oldest: left the cache from the last level */
        assert_int_equal(level_of(s, f, 5), 1);  /* newest of the demoted: still on SSD */
        assert_true(get_ok(s, 5, 1000));         /* and readable there */
        assert_false(get_ok(s, 1, 1000));
        assert_int_equal(count_files(f->dirs[0], NULL), 5);
        assert_int_equal(count_files(f->dirs[1], NULL), st.levels[1].blocks);
        store_free(s);
}

static void test_pinned_not_evicted(void **state)
{
        fixture *f = *state;
        store *s;
        store_block *b;
        store_stats st;
        uint64_t size;
        uint8_t got[1000], want[1000];
        int fd;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        for (uint64_t i = 0; i < 10; i++)
                put(s, i, 1000);
        /* Pin the least recently used block, then push it out of recency order. */
        assert_int_equal(store_open(s, &(store_key){TEST_EPOCH, 7, 1, 0}, &b, &fd, &size), 0);
        for (uint64_t i = 1; i < 10; i++)
                assert_true(get_ok(s, i, 1000));
        assert_int_equal(store_open(s, &(store_key){TEST_EPOCH, 7, 1, 0}, &b, &(int){0}, &size), 0);
        store_release(s, b);
        store_evict(s);
        assert_int_equal(level_of(s, f, 0), 0);
        store_release(s, b);
        /* Unpinned now: dropping everything takes it too, and the descriptor still reads it. */
        assert_int_equal(store_drop(s, 0), 10 * 1000 - 5000);
        store_get_stats(s, &st);
        assert_int_equal(st.blocks, 0);
        assert_int_equal(level_of(s, f, 0), -1);
        fill_pattern(want, sizeof(want), 0);
        assert_int_equal(pread(fd, got, sizeof(got), 0), (ssize_t)sizeof(got));
        assert_memory_equal(got, want, sizeof(got));
        close(fd);
        store_free(s);
}

typedef struct race {
        store *s;
        unsigned id;
        uint64_t quota;
        int violations;
        int written;
} race;

static void *race_main(void *userdata)
{
        race *r = userdata;
        uint8_t buf[4096];

        memset(buf, (int)r->id, sizeof(buf));
        for (unsigned i = 0; i < 200; i++) {
                store_key k = {.epoch = TEST_EPOCH, .file_id = r->id, .version = 1, .index = i};
                size_t len = 500 + (i * 37 + r->id * 101) % 3500;
                store_write *w;
                store_stats st;

                if (store_begin(r->s, &k, len, &w) < 0)
                        continue;
                store_get_stats(r->s, &st);
                for (size_t l = 0; l < st.n_levels; l++)
                        if (st.levels[l].used > st.levels[l].quota)
                                r->violations++;
                assert_int_equal(pwrite(store_write_fd(w), buf, len, 0), (ssize_t)len);
                if (i % 7 == 3)
                        store_abort(r->s, w);
                else if (store_commit(r->s, w) == 0)
                        r->written++;
        }
        return NULL;
}

static uint64_t dir_bytes(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        uint64_t n = 0;

        while ((de = readdir(d))) {
                struct stat st;

                if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
                        n += (uint64_t)st.st_size;
        }
        closedir(d);
        return n;
}

static void test_quota_concurrent(void **state)
{
        fixture *f = *state;
        pthread_t t[8];
        race r[8];
        store *s;
        store_stats st;
        int written = 0;

        f->specs[0].quota = 20000;
        f->specs[1].quota = 30000;
        assert_int_equal(store_new(f->specs, 2, STORE_BACKGROUND_EVICTION, &s), 0);
        for (unsigned i = 0; i < 8; i++) {
                r[i] = (race){.s = s, .id = i + 1};
                assert_int_equal(pthread_create(&t[i], NULL, race_main, &r[i]), 0);
        }
        for (unsigned i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(r[i].violations, 0);
                written += r[i].written;
        }
        assert_true(written > 100);
        /* Accounting matches the files: nothing leaked, no temporaries left. The evictor may
         * still be finishing a demotion (between its rename and its unlink the two views
         * differ): wait until they agree on two looks 20 ms apart. */
        uint64_t d0 = 0, d1 = 0;
        for (int i = 0, agreed = 0; i < 200 && agreed < 2; i++) {
                store_get_stats(s, &st);
                d0 = dir_bytes(f->dirs[0]);
                d1 = dir_bytes(f->dirs[1]);
                agreed = d0 == st.levels[0].used && d1 == st.levels[1].used ? agreed + 1 : 0;
                usleep(20000);
        }
        assert_true(st.levels[0].used <= 20000);
        assert_true(st.levels[1].used <= 30000);
        assert_int_equal(d0, st.levels[0].used);
        assert_int_equal(d1, st.levels[1].used);
        assert_int_equal(count_files(f->dirs[0], ".tmp-"), 0);
        assert_int_equal(count_files(f->dirs[1], ".tmp-"), 0);
        store_free(s);
}

static void test_rebuild(void **state)
{
        fixture *f = *state;
        store *s;
        store_write *w;
        store_stats st;
        char tmp[256];
        int fd;

        assert_int_equal(store_new(f->specs, 2, 0, &s), 0);
        for (uint64_t i = 0; i < 10; i++)
                put(s, i, 1000);
        store_evict(s); /* some on SSD */
        /* A fill in progress when the process dies leaves a temporary. */
        assert_int_equal(store_begin(s, &(store_key){TEST_EPOCH, 7, 1, 99}, 1000, &w), 0);
        assert_int_equal(pwrite(store_write_fd(w), "partial", 7, 0), 7);
        store_get_stats(s, &st);
        /* (the store is not freed cleanly: simulate the crash by reopening over the files) */
        snprintf(tmp, sizeof(tmp), "%s/.tmp-7-1-98-1-1", f->dirs[1]);
        fd = open(tmp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        store *s2;
        store_stats st2;
        assert_int_equal(store_new(f->specs, 2, 0, &s2), 0);
        store_get_stats(s2, &st2);
        assert_int_equal(st2.blocks, st.blocks);
        assert_int_equal(st2.levels[0].used, st.levels[0].used - 1000); /* minus the reservation */
        assert_int_equal(st2.levels[1].used, st.levels[1].used);
        assert_int_equal(count_files(f->dirs[0], ".tmp-"), 0);
        assert_int_equal(count_files(f->dirs[1], ".tmp-"), 0);
        assert_false(store_contains(s2, &(store_key){TEST_EPOCH, 7, 1, 99}));
        for (uint64_t i = 0; i < 10; i++)
                if (store_contains(s2, &(store_key){TEST_EPOCH, 7, 1, i}))
                        assert_true(get_ok(s2, i, 1000));
        assert_true(get_ok(s2, 9, 1000));
        store_free(s2);
        store_abort(s, w); /* the old one's files are gone; just release its memory */
        store_free(s);
}

/* After block 3 of five (1000 bytes each) was dropped at start: the other four are served, and
 * block 3, refetched, is whole again. Frees S. */
static void others_served_then_3_refetched(store *s)
{
        for (uint64_t i = 0; i < 5; i++)
                if (i != 3)
                        assert_true(get_ok(s, i, 1000));
        put(s, 3, 1000);
        assert_true(get_ok(s, 3, 1000));
        store_free(s);
}

static void test_checksum_failure(void **state)
{
        fixture *f = *state;
        store *s;
        store_stats st;
        char prefix[] = "00000000000000e1-7-1-3.", path[512] = "";
        DIR *d;
        struct dirent *de;
        int fd;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        for (uint64_t i = 0; i < 5; i++)
                put(s, i, 1000);
        store_free(s);

        /* Flip one byte of block 3 on disk, keeping its size. */
        d = opendir(f->dirs[0]);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                        snprintf(path, sizeof(path), "%s/%s", f->dirs[0], de->d_name);
        closedir(d);
        assert_true(path[0]);
        fd = open(path, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "X", 1, 500), 1);
        close(fd);

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        assert_true(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 3}));  /* lazily verified */
        assert_false(get_ok(s, 3, 1000));                                   /* never served */
        assert_false(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 3})); /* dropped */
        assert_int_equal(access(path, F_OK), -1);
        store_get_stats(s, &st);
        assert_int_equal(st.checksum_failures, 1);
        assert_int_equal(st.blocks, 4);
        assert_int_equal(st.used, 4000);
        others_served_then_3_refetched(s);
}

/* A block named as weir's own checksum named it ("E-F-V-I.SUM", no checksum tag) is removed at
 * start, not verified or served: even when SUM happens to be the right checksum under XXH3. */
static void test_old_format_block_dropped(void **state)
{
        fixture *f = *state;
        store *s;
        store_stats st;
        char prefix[] = "00000000000000e1-7-1-3." CHECKSUM_NAME_TAG, path[512] = "", old[512] = "";
        DIR *d;
        struct dirent *de;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        for (uint64_t i = 0; i < 5; i++)
                put(s, i, 1000);
        store_free(s);

        d = opendir(f->dirs[0]);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
                        snprintf(path, sizeof(path), "%s/%s", f->dirs[0], de->d_name);
                        /* the same sum, without the tag: how format 1 named its blocks */
                        snprintf(old, sizeof(old), "%s/00000000000000e1-7-1-3.%s", f->dirs[0],
                                 de->d_name + strlen(prefix));
                }
        closedir(d);
        assert_true(path[0]);
        assert_int_equal(rename(path, old), 0);

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        assert_false(store_contains(s, &(store_key){TEST_EPOCH, 7, 1, 3}));
        assert_false(get_ok(s, 3, 1000));
        assert_int_equal(access(old, F_OK), -1); /* removed, its space back */
        store_get_stats(s, &st);
        assert_int_equal(st.blocks, 4);
        assert_int_equal(st.used, 4000);
        assert_int_equal(st.checksum_failures, 0); /* not mistaken for a corrupt block */
        others_served_then_3_refetched(s);
}

static void test_changes(void **state)
{
        fixture *f = *state;
        store *s;
        store_key *added, *removed, *all;
        size_t n_added, n_removed, n_all;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        put(s, 1, 100);
        put(s, 2, 100);
        assert_int_equal(store_take_changes(s, &added, &n_added, &removed, &n_removed), 0);
        assert_int_equal(n_added, 2);
        assert_int_equal(n_removed, 0);
        free(added);
        free(removed);
        put(s, 3, 100);
        store_drop(s, 0);
        put(s, 1, 100);
        assert_int_equal(store_take_changes(s, &added, &n_added, &removed, &n_removed), 0);
        /* Net: 1 re-added (last change wins), 2 and 3 removed. */
        assert_int_equal(n_added, 1);
        assert_true(added[0].index == 1);
        assert_int_equal(n_removed, 2);
        free(added);
        free(removed);
        assert_int_equal(store_list(s, &all, &n_all), 0);
        assert_int_equal(n_all, 1);
        free(all);
        store_free(s);
}

/* Block files of format 1 ("FILE-VERSION-INDEX.SUM", no epoch) are removed at start, never
 * indexed: whose bytes they hold cannot be told. Other unexpected files are left alone. */
static void test_v1_block_files_removed(void **state)
{
        fixture *f = *state;
        char p[512], q[512];
        store_stats st;
        store *s = NULL;
        int fd;

        assert_int_equal(store_new(f->specs, 1, 0, &s), 0); /* creates the directory */
        store_free(s);
        snprintf(p, sizeof(p), "%s/7-1-0.00000000000000aa", f->dirs[0]);
        snprintf(q, sizeof(q), "%s/notes.txt", f->dirs[0]);
        for (int i = 0; i < 2; i++) {
                fd = open(i ? q : p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "x", 1), 1);
                close(fd);
        }
        assert_int_equal(store_new(f->specs, 1, 0, &s), 0);
        store_get_stats(s, &st);
        assert_true(st.blocks == 0 && st.used == 0);
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(access(q, F_OK), 0);
        store_free(s);
}

/* A level whose filesystem holds less than its quota (a 3 MiB tmpfs under 64 MiB): every
 * reservation also needs the filesystem's free space, so twelve 1 MiB blocks all get written,
 * older ones evicted, none fails with ENOSPC. Needs a private mount namespace (root); skipped
 * without. Runs last: unshare() needs a single-threaded process and the namespace stays. */
static void test_filesystem_smaller_than_quota(void **state)
{
        fixture *f = *state;
        char mnt[64];
        store_level_spec spec;
        store_stats st;
        store *s = NULL;

        assert_true(strlen(f->root) + sizeof("/small") <= sizeof(mnt));
        snprintf(mnt, sizeof(mnt), "%s/small", f->root);
        assert_int_equal(mkdir(mnt, 0755), 0);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("weir-test", mnt, "tmpfs", 0, "size=3m") < 0) {
                print_message("no private mount namespace with a tmpfs here (%s), skipping\n",
                              strerror(errno));
                skip();
        }
        snprintf(f->dirs[0], sizeof(f->dirs[0]), "%s/weir/node1", mnt);
        spec = (store_level_spec){.medium = CONFIG_MEDIUM_MEM,
                                  .dir = f->dirs[0],
                                  .quota = 64u << 20,
                                  .high = 0.95,
                                  .low = 0.7};
        assert_int_equal(store_new(&spec, 1, 0, &s), 0);
        for (uint64_t i = 0; i < 12; i++)
                put(s, i, 1u << 20);
        store_get_stats(s, &st);
        assert_true(st.used <= 3u << 20);
        assert_true(st.evictions >= 9);
        assert_true(get_ok(s, 11, 1u << 20));
        store_free(s);
        assert_int_equal(umount2(mnt, MNT_DETACH), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key),
                cmocka_unit_test(test_checksum),
                cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_watermarks_and_demotion, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pinned_not_evicted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quota_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
                cmocka_unit_test_setup_teardown(test_checksum_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_format_block_dropped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_block_files_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_filesystem_smaller_than_quota, setup,
                                                teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
