/* Unit tests of the leader's choice of a content checker (services/master/verify.c): a file with
 * an MD5 ETag is named exactly when a heartbeat's added blocks make it whole across the live
 * workers and that worker does not hold it all; never for other ETags, incomplete files, dead
 * holders, blocks others held already, or other epochs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block.h"
#include "verify.h"

#define EPOCH 0xe1ull
#define MD5   "\"0123456789abcdef0123456789abcdef\""
#define NOW   1000.0
#define DEAD  15.0

static char tmpdir[] = "/tmp/test-verify-XXXXXX";

typedef struct fixture {
        fsm *f;
        locations *l;
        block_key md5, plain, solo; /* block 0 of three files */
} fixture;

static void apply_ok(fsm *f, json_t *cmd, uint64_t seq)
{
        char *buf;
        size_t len;
        json_t *result = NULL;

        assert_non_null(cmd);
        assert_int_equal(fsm_command_encode(cmd, "test", seq, &buf, &len), 0);
        assert_int_equal(fsm_apply(f, buf, len, &result), 0);
        assert_non_null(result);
        assert_null(json_object_get(result, "error"));
        json_decref(result);
        json_decref(cmd);
        free(buf);
}

static json_t *entry(const char *path, uint64_t size, const char *etag)
{
        return json_pack("{s:s,s:s,s:I,s:I,s:s}", "path", path, "type", "file", "size",
                         (json_int_t)size, "mtime", (json_int_t)100, "etag", etag);
}

static block_key key_of(fsm *f, const char *path)
{
        json_t *st = NULL;
        block_key k = {.epoch = EPOCH};

        assert_int_equal(fsm_stat(f, "ds", path, &st), 0);
        k.file_id = (uint64_t)json_integer_value(json_object_get(st, "file_id"));
        k.version = (uint64_t)json_integer_value(json_object_get(st, "version"));
        json_decref(st);
        return k;
}

static int setup(void **state)
{
        fixture *x = calloc(1, sizeof(*x));
        char path[64];
        json_t *mounts = json_pack("[{s:s,s:s}]", "name", "m", "mount_point", "s3://b/p/");
        json_t *urls = json_pack("{s:{s:s,s:b}}", "m", "prefix", "s3://b/p/", "escape", 1);
        uint64_t seq = 1;

        snprintf(path, sizeof(path), "%s/state.mdb", tmpdir);
        unlink(path);
        assert_int_equal(fsm_open(path, &x->f), 0);
        apply_ok(x->f, fsm_cmd_dataset_ensure("ds", mounts, 1 << 20, 1.0), seq++);
        apply_ok(x->f, fsm_cmd_epoch_set(EPOCH), seq++);
        apply_ok(x->f, fsm_cmd_tree_begin("ds", "s1"), seq++);
        /* 4 blocks, MD5 ETag; 4 blocks, nginx's ETag; 2 blocks, MD5 ETag */
        json_t *entries = json_pack("[o,o,o]", entry("/m/md5.bin", 3 * (1 << 20) + 1, MD5),
                                    entry("/m/plain.bin", 4 << 20, "\"65a1b2c3-400000\""),
                                    entry("/m/solo.bin", 2 << 20, MD5));
        apply_ok(x->f, fsm_cmd_tree_batch("ds", "s1", entries), seq++);
        json_decref(entries);
        apply_ok(x->f, fsm_cmd_tree_commit("ds", "s1", 2.0, urls), seq++);
        json_decref(mounts);
        json_decref(urls);
        x->md5 = key_of(x->f, "/m/md5.bin");
        x->plain = key_of(x->f, "/m/plain.bin");
        x->solo = key_of(x->f, "/m/solo.bin");
        x->l = locations_new();
        assert_non_null(x->l);
        for (int i = 1; i <= 3; i++) {
                char node[8];

                snprintf(node, sizeof(node), "w%d", i);
                assert_int_equal(locations_worker_register(x->l, node, NOW, NULL, NULL, NULL), 0);
        }
        *state = x;
        return 0;
}

static int teardown(void **state)
{
        fixture *x = *state;

        locations_free(x->l);
        fsm_free(x->f);
        free(x);
        return 0;
}

/* A heartbeat of NODE at NOW that adds blocks INDEXES of K, recorded as the handler does
 * before it asks verify_due_locked(): the verify list of its answer. */
static json_t *heartbeat(fixture *x, const char *node, block_key k, const int *indexes, size_t n,
                         double now)
{
        json_t *added = json_array();

        assert_int_equal(locations_worker_heartbeat(x->l, node, now, NULL, NULL, NULL), 0);
        for (size_t i = 0; i < n; i++) {
                char id[BLOCK_ID_MAX];

                k.index = (uint64_t)indexes[i];
                block_id_format(id, &k);
                assert_int_equal(locations_block_set(x->l, node, id, true), 0);
                json_array_append_new(added, json_string(id));
        }
        json_t *out = verify_due_locked(x->f, x->l, node, added, now, DEAD);
        json_decref(added);
        assert_non_null(out);
        return out;
}

static void assert_names(json_t *out, const block_key *k)
{
        char id[BLOCK_ID_MAX];

        if (!k) {
                assert_int_equal(json_array_size(out), 0);
        } else {
                block_key first = *k;

                first.index = 0;
                assert_int_equal(json_array_size(out), 1);
                assert_string_equal(json_string_value(json_array_get(out, 0)),
                                    block_id_format(id, &first));
        }
        json_decref(out);
}

static void test_completion_across_workers(void **state)
{
        fixture *x = *state;

        assert_names(heartbeat(x, "w1", x->md5, (int[]){0, 1}, 2, NOW), NULL); /* 2, 3 missing */
        assert_names(heartbeat(x, "w2", x->md5, (int[]){2}, 1, NOW), NULL);    /* 3 missing */
        /* w3's block 3 completes it: w3 checks */
        json_t *out = heartbeat(x, "w3", x->md5, (int[]){3}, 1, NOW);
        assert_int_equal(json_array_size(out), 1);
        assert_names(out, &x->md5);
        /* another copy of a block others hold completes nothing */
        assert_names(heartbeat(x, "w1", x->md5, (int[]){2}, 1, NOW), NULL);
}

static void test_no_check_asked(void **state)
{
        fixture *x = *state;

        /* a worker that holds the whole file checked it itself */
        assert_names(heartbeat(x, "w1", x->solo, (int[]){0, 1}, 2, NOW), NULL);
        /* an ETag that is no content hash */
        assert_names(heartbeat(x, "w1", x->plain, (int[]){0, 1}, 2, NOW), NULL);
        assert_names(heartbeat(x, "w2", x->plain, (int[]){2, 3}, 2, NOW), NULL);
        /* a holder not heard of for longer than DEAD does not count */
        assert_names(heartbeat(x, "w1", x->md5, (int[]){0, 1, 2}, 3, NOW), NULL);
        assert_names(heartbeat(x, "w2", x->md5, (int[]){3}, 1, NOW + DEAD + 1), NULL);
        /* w1 is heard again: a copy of block 3, which w2 holds already, completes nothing */
        assert_names(heartbeat(x, "w1", x->md5, (int[]){}, 0, NOW + DEAD + 1), NULL);
        assert_names(heartbeat(x, "w3", x->md5, (int[]){3}, 1, NOW + DEAD + 1), NULL);
}

static void test_other_epoch_and_version_ignored(void **state)
{
        fixture *x = *state;
        block_key other = x->md5, old = x->md5;

        other.epoch = EPOCH + 1;
        old.version = x->md5.version + 1;
        assert_names(heartbeat(x, "w1", x->md5, (int[]){0, 1, 2}, 3, NOW), NULL);
        assert_names(heartbeat(x, "w2", other, (int[]){3}, 1, NOW), NULL);
        assert_names(heartbeat(x, "w2", old, (int[]){3}, 1, NOW), NULL);
        assert_names(heartbeat(x, "w2", x->md5, (int[]){3}, 1, NOW), &x->md5);
}

static int group_setup(void **state)
{
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
        char cmd[64];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_completion_across_workers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_check_asked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_epoch_and_version_ignored, setup,
                                                teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
