/* Unit tests of the master's state machine: apply, idempotent retries, tree syncs, snapshots. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm.h"

/* Encodes CMD (taken) with CLIENT:SEQ, applies it, returns the result. */
static json_t *apply(fsm *f, json_t *cmd, const char *client, uint64_t seq)
{
        char *buf;
        size_t len;
        json_t *result = NULL;

        assert_non_null(cmd);
        assert_int_equal(fsm_command_encode(cmd, client, seq, &buf, &len), 0);
        assert_int_equal(fsm_apply(f, buf, len, &result), 0);
        assert_non_null(result);
        free(buf);
        json_decref(cmd);
        return result;
}

static void apply_ok(fsm *f, json_t *cmd, uint64_t seq)
{
        json_t *r = apply(f, cmd, "test", seq);
        if (json_object_get(r, "error"))
                fail_msg("command refused: %s", json_string_value(json_object_get(r, "error")));
        json_decref(r);
}

static fsm *fsm_with_dataset(void)
{
        fsm *f = fsm_new();
        assert_non_null(f);
        json_t *mounts = json_pack("[{s:s,s:s}]", "name", "hbase", "mount_point",
                                   "https://example.org/hbase/");
        apply_ok(f, fsm_cmd_dataset_ensure("hbase", mounts, 16 << 20, 1000.0), 1);
        json_decref(mounts);
        return f;
}

static json_t *entry(const char *path, uint64_t size, const char *etag)
{
        return json_pack("{s:s,s:s,s:I,s:f,s:s,s:s}", "path", path, "type", "file", "size",
                         (json_int_t)size, "mtime", 100.0, "etag", etag, "ufs_url",
                         "https://example.org/x");
}

/* A TREE_BATCH command; takes ENTRIES. */
static json_t *batch_take(const char *sync_id, json_t *entries)
{
        json_t *cmd = fsm_cmd_tree_batch(sync_id, entries);
        json_decref(entries);
        return cmd;
}

static void sync_tree(fsm *f, const char *sync_id, json_t *entries, uint64_t *seq)
{
        apply_ok(f, fsm_cmd_tree_begin("hbase", sync_id), (*seq)++);
        apply_ok(f, batch_take(sync_id, entries), (*seq)++);
        apply_ok(f, fsm_cmd_tree_commit(sync_id, 2000.0), (*seq)++);
}

static void test_dataset_and_labels(void **state)
{
        fsm *f = fsm_with_dataset();
        json_t *r, *labels;

        assert_true(fsm_has_dataset(f, "hbase"));
        json_t *all = fsm_datasets(f);
        assert_int_equal(json_array_size(all), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(all, 0), "phase")),
                            "NotBound");
        json_decref(all);

        r = apply(f, fsm_cmd_label_set("hbase", "owner", "ops"), "c", 1);
        assert_int_equal(json_integer_value(json_object_get(r, "index")), 2);
        json_decref(r);
        assert_int_equal(fsm_labels(f, "hbase", &labels), 0);
        assert_string_equal(json_string_value(json_object_get(labels, "owner")), "ops");
        json_decref(labels);

        /* Refusals are results, deterministic, and still take an index. */
        r = apply(f, fsm_cmd_label_set("nope", "k", "v"), "c", 2);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 404);
        json_decref(r);
        assert_int_equal(fsm_index(f), 3);

        apply_ok(f, fsm_cmd_label_delete("hbase", "owner"), 4);
        assert_int_equal(fsm_labels(f, "hbase", &labels), 0);
        assert_int_equal(json_object_size(labels), 0);
        json_decref(labels);
        fsm_free(f);
}

static void test_idempotent_retry(void **state)
{
        fsm *f = fsm_with_dataset();
        json_t *r1 = apply(f, fsm_cmd_label_set("hbase", "k", "first"), "client-a", 7);
        uint64_t index = fsm_index(f);
        /* A different write in between, then the retry of the first (same request id). */
        apply_ok(f, fsm_cmd_label_set("hbase", "k", "second"), 100);
        json_t *r2 = apply(f, fsm_cmd_label_set("hbase", "k", "first"), "client-a", 7);
        assert_true(json_equal(r1, r2));
        assert_int_equal(json_integer_value(json_object_get(r2, "index")), index);

        json_t *labels;
        assert_int_equal(fsm_labels(f, "hbase", &labels), 0);
        assert_string_equal(json_string_value(json_object_get(labels, "k")), "second");
        json_decref(labels);
        /* The retry was a no-op: it did not take a new position. */
        assert_int_equal(fsm_index(f), index + 1);
        json_decref(r1);
        json_decref(r2);
        fsm_free(f);
}

static void test_tree_commit_atomic_and_versions(void **state)
{
        fsm *f = fsm_with_dataset();
        uint64_t seq = 10;
        json_t *st, *ls;

        sync_tree(f, "s1",
                  json_pack("[o,o,{s:s,s:s}]", entry("/hbase/a.tar.gz", 100, "e1"),
                            entry("/hbase/dir/b.txt", 5, "e2"), "path", "/hbase/empty", "type",
                            "dir"),
                  &seq);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/a.tar.gz", &st), 0);
        json_int_t id_a = json_integer_value(json_object_get(st, "file_id"));
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 1);
        assert_int_equal(json_integer_value(json_object_get(st, "size")), 100);
        json_decref(st);
        assert_int_equal(fsm_ls(f, "hbase", "/", &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 1);
        json_decref(ls);
        assert_int_equal(fsm_ls(f, "hbase", "/hbase", &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 3);
        json_decref(ls);
        assert_int_equal(fsm_ls(f, "hbase", "/hbase/a.tar.gz", &ls), -ENOTDIR);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/missing", &st), -ENOENT);

        /* Second sync: a changes (new ETag), b is gone, c is new. Until the commit, readers see
         * the old tree. */
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s2"), seq++);
        apply_ok(f,
                 batch_take("s2", json_pack("[o,o]", entry("/hbase/a.tar.gz", 100, "e9"),
                                            entry("/hbase/c", 1, "e3"))),
                 seq++);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/c", &st), -ENOENT);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/dir/b.txt", &st), 0);
        json_decref(st);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/a.tar.gz", &st), 0);
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 1);
        json_decref(st);
        apply_ok(f, fsm_cmd_tree_commit("s2", 3000.0), seq++);

        assert_int_equal(fsm_stat(f, "hbase", "/hbase/dir/b.txt", &st), -ENOENT);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/a.tar.gz", &st), 0);
        assert_int_equal(json_integer_value(json_object_get(st, "file_id")), id_a);
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 2);
        json_decref(st);

        /* Same content again: same id, same version. */
        sync_tree(f, "s3", json_pack("[o]", entry("/hbase/a.tar.gz", 100, "e9")), &seq);
        assert_int_equal(fsm_file(f, (uint64_t)id_a, &st), 0);
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 2);
        assert_string_equal(json_string_value(json_object_get(st, "path")), "/hbase/a.tar.gz");
        assert_string_equal(json_string_value(json_object_get(st, "dataset")), "hbase");
        json_decref(st);

        json_t *ds;
        assert_int_equal(fsm_dataset(f, "hbase", &ds), 0);
        assert_string_equal(json_string_value(json_object_get(ds, "phase")), "Bound");
        assert_int_equal(json_integer_value(json_object_get(ds, "total_files")), 1);
        json_decref(ds);

        /* A batch after the commit is refused: the sync id is finished. */
        json_t *r = apply(f, batch_take("s3", json_pack("[]")), "test", seq++);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 404);
        json_decref(r);
        fsm_free(f);
}

static void test_tree_rejects_bad_paths(void **state)
{
        fsm *f = fsm_with_dataset();
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s"), 2);
        json_t *r = apply(f,
                          batch_take("s", json_pack("[o,o,o]", entry("relative", 1, "x"),
                                                    entry("/hbase/../etc", 1, "x"),
                                                    entry("/hbase/ok", 1, "x"))),
                          "t", 3);
        assert_int_equal(json_integer_value(json_object_get(r, "accepted")), 1);
        assert_int_equal(json_integer_value(json_object_get(r, "rejected")), 2);
        json_decref(r);
        fsm_free(f);
}

static void test_snapshot_restore(void **state)
{
        fsm *f = fsm_with_dataset();
        uint64_t seq = 20;
        char *a, *b;
        size_t alen, blen;

        sync_tree(f, "s1",
                  json_pack("[o,o]", entry("/hbase/x", 10, "1"), entry("/hbase/y/z", 20, "2")),
                  &seq);
        apply_ok(f, fsm_cmd_label_set("hbase", "k", "v"), seq++);
        json_t *tiers = json_pack("[{s:s,s:s,s:I,s:I}]", "medium", "MEM", "path", "/dev/shm",
                                  "quota", (json_int_t)1 << 30, "used", (json_int_t)0);
        apply_ok(f, fsm_cmd_worker_register("node1", "127.0.0.1:29999", tiers, 5.0), seq++);
        json_decref(tiers);
        apply_ok(f, fsm_cmd_tree_begin("hbase", "unfinished"), seq++);

        assert_int_equal(fsm_snapshot(f, &a, &alen), 0);
        fsm *g = fsm_new();
        assert_int_equal(fsm_restore(g, a, alen), 0);
        assert_int_equal(fsm_snapshot(g, &b, &blen), 0);
        assert_int_equal(alen, blen);
        assert_memory_equal(a, b, alen);
        assert_int_equal(fsm_index(g), fsm_index(f));

        /* Derived indexes are rebuilt: lookups by file id work after a restore. */
        json_t *st;
        assert_int_equal(fsm_stat(g, "hbase", "/hbase/y/z", &st), 0);
        json_int_t id = json_integer_value(json_object_get(st, "file_id"));
        json_decref(st);
        assert_int_equal(fsm_file(g, (uint64_t)id, &st), 0);
        json_decref(st);

        /* The dedup table survives: a retry after restore is still a no-op. */
        json_t *r = apply(g, fsm_cmd_label_set("hbase", "k", "v"), "test", seq - 3);
        assert_non_null(json_object_get(r, "index"));
        json_decref(r);
        assert_int_equal(fsm_index(g), fsm_index(f));

        /* The staged sync continues on the restored replica; ids stay unique. */
        apply_ok(g, batch_take("unfinished", json_pack("[o]", entry("/hbase/new", 1, "n"))), seq++);
        apply_ok(g, fsm_cmd_tree_commit("unfinished", 9.0), seq++);
        assert_int_equal(fsm_stat(g, "hbase", "/hbase/new", &st), 0);
        assert_true(json_integer_value(json_object_get(st, "file_id")) > id);
        json_decref(st);

        /* Restoring over a non-empty state replaces it. */
        assert_int_equal(fsm_restore(g, a, alen), 0);
        assert_int_equal(fsm_stat(g, "hbase", "/hbase/new", &st), -ENOENT);
        assert_int_equal(fsm_restore(g, "garbage", 7), -EBADMSG);

        free(a);
        free(b);
        fsm_free(g);
        fsm_free(f);
}

static void test_members_set(void **state)
{
        fsm *f = fsm_new();
        char *a;
        size_t alen;

        /* Nothing recorded yet: a snapshot without "members" restores to none. */
        assert_null(fsm_members(f));
        assert_int_equal(fsm_snapshot(f, &a, &alen), 0);
        fsm *g = fsm_new();
        assert_int_equal(fsm_restore(g, a, alen), 0);
        assert_null(fsm_members(g));
        free(a);

        json_t *members =
                json_pack("[{s:i,s:s,s:s,s:i,s:i,s:s},{s:i,s:s,s:s,s:i,s:i,s:s}]", "id", 1, "node",
                          "n1", "address", "10.0.0.1", "raft_port", 19200, "master_port", 19998,
                          "role", "voter", "id", 2, "node", "n2", "address", "10.0.0.2",
                          "raft_port", 19200, "master_port", 19998, "role", "standby");
        apply_ok(f, fsm_cmd_members_set(members), 1);
        json_t *got = fsm_members(f);
        assert_true(json_equal(got, members));
        json_decref(got);

        /* Snapshots carry it. */
        assert_int_equal(fsm_snapshot(f, &a, &alen), 0);
        assert_int_equal(fsm_restore(g, a, alen), 0);
        got = fsm_members(g);
        assert_true(json_equal(got, members));
        json_decref(got);
        free(a);

        /* Refused: empty, and members without id/node/address; the record stays. */
        json_t *empty = json_array();
        json_t *r = apply(f, fsm_cmd_members_set(empty), "test", 2);
        json_decref(empty);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 400);
        json_decref(r);
        json_t *bad = json_pack("[{s:s}]", "node", "n1");
        r = apply(f, fsm_cmd_members_set(bad), "test", 3);
        assert_non_null(json_object_get(r, "error"));
        json_decref(r);
        json_decref(bad);
        got = fsm_members(f);
        assert_true(json_equal(got, members));
        json_decref(got);

        json_decref(members);
        fsm_free(g);
        fsm_free(f);
}

static void test_undecodable(void **state)
{
        fsm *f = fsm_new();
        json_t *r = NULL;
        assert_int_equal(fsm_apply(f, "{", 1, &r), 0);
        assert_non_null(json_object_get(r, "error"));
        json_decref(r);
        fsm_free(f);
}

/* The cluster epoch: none at first, the first EPOCH_SET wins (two leaders may each propose one),
 * invalid values are refused, snapshots carry it and a snapshot without one restores none. */
static void test_epoch(void **state)
{
        fsm *f = fsm_with_dataset(), *g = fsm_new();
        json_t *r;
        char *a, *b;
        size_t alen, blen;

        assert_true(fsm_epoch(f) == 0);
        assert_int_equal(fsm_snapshot(f, &a, &alen), 0);
        assert_null(strstr(a, "\"epoch\""));
        apply_ok(f, fsm_cmd_epoch_set(0x0123456789abcdefull), 2);
        assert_true(fsm_epoch(f) == 0x0123456789abcdefull);
        apply_ok(f, fsm_cmd_epoch_set(0x42), 3);
        assert_true(fsm_epoch(f) == 0x0123456789abcdefull);
        r = apply(f, json_pack("{s:s,s:s}", "op", "epoch_set", "epoch", "0000000000000000"), "t",
                  4);
        assert_non_null(json_object_get(r, "error"));
        json_decref(r);
        r = apply(f, json_pack("{s:s,s:i}", "op", "epoch_set", "epoch", 5), "t", 5);
        assert_non_null(json_object_get(r, "error"));
        json_decref(r);
        assert_true(fsm_epoch(f) == 0x0123456789abcdefull);

        assert_int_equal(fsm_snapshot(f, &b, &blen), 0);
        assert_int_equal(fsm_restore(g, b, blen), 0);
        assert_true(fsm_epoch(g) == 0x0123456789abcdefull);
        assert_int_equal(fsm_restore(g, a, alen), 0);
        assert_true(fsm_epoch(g) == 0);
        free(a);
        free(b);
        fsm_free(f);
        fsm_free(g);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dataset_and_labels),
                cmocka_unit_test(test_idempotent_retry),
                cmocka_unit_test(test_tree_commit_atomic_and_versions),
                cmocka_unit_test(test_tree_rejects_bad_paths),
                cmocka_unit_test(test_snapshot_restore),
                cmocka_unit_test(test_epoch),
                cmocka_unit_test(test_members_set),
                cmocka_unit_test(test_undecodable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
