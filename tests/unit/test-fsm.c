/* Unit tests of the master's state machine on LMDB: apply, idempotent retries, incremental tree
 * syncs, snapshot copies, crash safety and the applied index across restarts. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm.h"

static char tmpdir[] = "/tmp/test-fsm-XXXXXX";
static unsigned db_counter;

/* A fresh database path in the test's directory. */
static char *db_path(void)
{
        char *p;
        assert_true(asprintf(&p, "%s/state-%u.mdb", tmpdir, ++db_counter) > 0);
        return p;
}

static fsm *fsm_at(const char *path)
{
        fsm *f = NULL;
        assert_int_equal(fsm_open(path, &f), 0);
        return f;
}

static fsm *fsm_new(void)
{
        char *p = db_path();
        fsm *f = fsm_at(p);
        free(p);
        return f;
}

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
        return json_pack("{s:s,s:s,s:I,s:I,s:s}", "path", path, "type", "file", "size",
                         (json_int_t)size, "mtime", (json_int_t)100, "etag", etag);
}

static json_t *deletion(const char *path)
{
        return json_pack("{s:s,s:s}", "path", path, "type", "delete");
}

/* A TREE_BATCH command; takes ENTRIES. */
static json_t *batch_take(const char *sync_id, json_t *entries)
{
        json_t *cmd = fsm_cmd_tree_batch("hbase", sync_id, entries);
        json_decref(entries);
        return cmd;
}

static json_t *commit(const char *sync_id, double time)
{
        json_t *urls = json_pack("{s:{s:s,s:b}}", "hbase", "prefix", "https://example.org/hbase/",
                                 "escape", 1);
        json_t *cmd = fsm_cmd_tree_commit("hbase", sync_id, time, urls);
        json_decref(urls);
        return cmd;
}

/* One sync whose differences are ENTRIES (taken). */
static void sync_tree(fsm *f, const char *sync_id, json_t *entries, uint64_t *seq)
{
        apply_ok(f, fsm_cmd_tree_begin("hbase", sync_id), (*seq)++);
        apply_ok(f, batch_take(sync_id, entries), (*seq)++);
        apply_ok(f, commit(sync_id, 2000.0), (*seq)++);
}

static json_int_t stat_int(fsm *f, const char *path, const char *key)
{
        json_t *st = NULL;
        assert_int_equal(fsm_stat(f, "hbase", path, &st), 0);
        json_int_t v = json_integer_value(json_object_get(st, key));
        json_decref(st);
        return v;
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

static void test_incremental_tree_and_versions(void **state)
{
        fsm *f = fsm_with_dataset();
        uint64_t seq = 10;
        json_t *st, *ls;

        sync_tree(f, "s1",
                  json_pack("[o,o,{s:s,s:s}]", entry("/hbase/a b.tar.gz", 100, "e1"),
                            entry("/hbase/dir/b.txt", 5, "e2"), "path", "/hbase/empty", "type",
                            "dir"),
                  &seq);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/a b.tar.gz", &st), 0);
        json_int_t id_a = json_integer_value(json_object_get(st, "file_id"));
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 1);
        assert_int_equal(json_integer_value(json_object_get(st, "size")), 100);
        assert_string_equal(json_string_value(json_object_get(st, "etag")), "e1");
        assert_string_equal(json_string_value(json_object_get(st, "ufs_url")),
                            "https://example.org/hbase/a%20b.tar.gz");
        json_decref(st);
        assert_int_equal(fsm_ls(f, "hbase", "/", &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 1);
        json_decref(ls);
        assert_int_equal(fsm_ls(f, "hbase", "/hbase", &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 3);
        json_decref(ls);
        assert_int_equal(fsm_ls(f, "hbase", "/hbase/a b.tar.gz", &ls), -ENOTDIR);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/missing", &st), -ENOENT);
        assert_int_equal(fsm_ls(f, "nope", "/", &ls), -ENOENT);

        /* Second sync sends its differences: a changes (new ETag), b is gone, c is new. Each
         * batch is visible once applied. */
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s2"), seq++);
        apply_ok(f,
                 batch_take("s2",
                            json_pack("[o,o,o]", entry("/hbase/a b.tar.gz", 100, "e9"),
                                      entry("/hbase/c", 1, "e3"), deletion("/hbase/dir/b.txt"))),
                 seq++);
        assert_int_equal(stat_int(f, "/hbase/c", "version"), 1);
        assert_int_equal(fsm_stat(f, "hbase", "/hbase/dir/b.txt", &st), -ENOENT);
        assert_int_equal(stat_int(f, "/hbase/a b.tar.gz", "file_id"), id_a);
        assert_int_equal(stat_int(f, "/hbase/a b.tar.gz", "version"), 2);
        apply_ok(f, commit("s2", 3000.0), seq++);

        /* Same content again: same id, same version; an unchanged sync is one commit. */
        uint64_t before = fsm_index(f);
        apply_ok(f, commit("s3", 4000.0), seq++);
        assert_int_equal(fsm_index(f), before + 1);
        assert_int_equal(fsm_file(f, (uint64_t)id_a, &st), 0);
        assert_int_equal(json_integer_value(json_object_get(st, "version")), 2);
        assert_string_equal(json_string_value(json_object_get(st, "path")), "/hbase/a b.tar.gz");
        assert_string_equal(json_string_value(json_object_get(st, "dataset")), "hbase");
        assert_int_equal(json_integer_value(json_object_get(st, "block_size")), 16 << 20);
        json_decref(st);

        json_t *ds;
        assert_int_equal(fsm_dataset(f, "hbase", &ds), 0);
        assert_string_equal(json_string_value(json_object_get(ds, "phase")), "Bound");
        assert_int_equal(json_integer_value(json_object_get(ds, "total_files")), 2);
        assert_int_equal(json_integer_value(json_object_get(ds, "ufs_total_size")), 101);
        assert_true(json_real_value(json_object_get(ds, "synced")) == 4000.0);
        json_decref(ds);

        /* A file that becomes a directory, a directory that becomes a file, a non-empty
         * directory that cannot be deleted before its contents. */
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s4"), seq++);
        json_t *r = apply(
                f,
                batch_take("s4", json_pack("[o,{s:s,s:s},o,o,o,o]", deletion("/hbase/c"), "path",
                                           "/hbase/c", "type", "dir",
                                           entry("/hbase/c/inner", 7, "i"), deletion("/hbase/c"),
                                           deletion("/hbase/dir"), entry("/hbase/dir", 3, "d"))),
                "test", seq++);
        assert_int_equal(json_integer_value(json_object_get(r, "rejected")), 1);
        assert_string_equal(json_string_value(json_object_get(r, "first_rejected")), "/hbase/c");
        json_decref(r);
        assert_int_equal(stat_int(f, "/hbase/c/inner", "size"), 7);
        assert_int_equal(stat_int(f, "/hbase/dir", "size"), 3);
        assert_true(stat_int(f, "/hbase/dir", "file_id") > id_a);

        /* A batch of a finished or superseded sync is refused. */
        apply_ok(f, commit("s4", 5000.0), seq++);
        r = apply(f, batch_take("s4", json_pack("[]")), "test", seq++);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 404);
        json_decref(r);
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s5"), seq++);
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s6"), seq++);
        r = apply(f, batch_take("s5", json_pack("[]")), "test", seq++);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 404);
        json_decref(r);
        fsm_free(f);
}

static void test_ls_pages(void **state)
{
        fsm *f = fsm_with_dataset();
        uint64_t seq = 10;
        json_t *entries = json_array(), *ls;
        char p[64];

        for (int i = 0; i < 25; i++) {
                snprintf(p, sizeof p, "/hbase/f%02d", i);
                json_array_append_new(entries, entry(p, (uint64_t)i, "x"));
        }
        sync_tree(f, "s1", entries, &seq);
        assert_int_equal(fsm_ls_page(f, "hbase", "/hbase", NULL, 10, &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 10);
        assert_string_equal(json_string_value(json_object_get(ls, "next")), "f09");
        json_decref(ls);
        assert_int_equal(fsm_ls_page(f, "hbase", "/hbase", "f19", 10, &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 5);
        assert_string_equal(json_string_value(json_object_get(
                                    json_array_get(json_object_get(ls, "entries"), 0), "name")),
                            "f20");
        assert_null(json_object_get(ls, "next"));
        json_decref(ls);
        fsm_free(f);
}

static void test_tree_rejects_bad_paths(void **state)
{
        fsm *f = fsm_with_dataset();
        char long_name[300];
        memset(long_name, 'n', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = 0;
        char *long_path;
        assert_true(asprintf(&long_path, "/hbase/%s", long_name) > 0);
        apply_ok(f, fsm_cmd_tree_begin("hbase", "s"), 2);
        json_t *r = apply(
                f,
                batch_take("s", json_pack("[o,o,o,o,o]", entry("relative", 1, "x"),
                                          entry("/hbase/../etc", 1, "x"), entry(long_path, 1, "x"),
                                          entry("/hbase/ok", 1, "x"),
                                          entry("/hbase/ok/under-a-file", 1, "x"))),
                "t", 3);
        assert_int_equal(json_integer_value(json_object_get(r, "accepted")), 1);
        assert_int_equal(json_integer_value(json_object_get(r, "rejected")), 4);
        json_decref(r);
        free(long_path);
        fsm_free(f);
}

/* Fills F with a little of everything. */
static uint64_t populate(fsm *f)
{
        uint64_t seq = 20;
        sync_tree(f, "s1",
                  json_pack("[o,o]", entry("/hbase/x", 10, "1"), entry("/hbase/y/z", 20, "2")),
                  &seq);
        apply_ok(f, fsm_cmd_label_set("hbase", "k", "v"), seq++);
        json_t *tiers = json_pack("[{s:s,s:s,s:I,s:I}]", "medium", "MEM", "path", "/dev/shm",
                                  "quota", (json_int_t)1 << 30, "used", (json_int_t)0);
        apply_ok(f, fsm_cmd_worker_register("node1", "127.0.0.1:29999", tiers, 5.0), seq++);
        json_decref(tiers);
        apply_ok(f, fsm_cmd_tree_begin("hbase", "unfinished"), seq++);
        return seq;
}

static void test_snapshot_copy_round_trip(void **state)
{
        fsm *f = fsm_with_dataset();
        uint64_t seq = populate(f);
        char *desc;
        size_t dlen;
        uint64_t applied;

        assert_int_equal(fsm_snapshot_descriptor(f, &desc, &dlen), 0);
        assert_int_equal(fsm_snapshot_parse(desc, dlen, &applied), 0);
        assert_int_equal(applied, fsm_applied(f));
        assert_int_equal(fsm_snapshot_parse("garbage", 7, &applied), -EBADMSG);
        free(desc);

        /* A copy taken while a write transaction is open elsewhere is the committed state. */
        char *copy = db_path();
        int fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(fsm_copy(f, fd), 0);
        close(fd);

        /* Installed over a database with other contents, it replaces them. */
        fsm *g = fsm_new();
        assert_int_equal(fsm_replace(g, copy), 0);
        assert_int_equal(fsm_index(g), fsm_index(f));
        assert_int_equal(fsm_applied(g), fsm_applied(f));

        json_t *st, *a, *b;
        assert_int_equal(fsm_stat(g, "hbase", "/hbase/y/z", &st), 0);
        json_int_t id = json_integer_value(json_object_get(st, "file_id"));
        json_decref(st);
        assert_int_equal(fsm_file(g, (uint64_t)id, &st), 0);
        assert_string_equal(json_string_value(json_object_get(st, "path")), "/hbase/y/z");
        json_decref(st);
        a = fsm_workers(f);
        b = fsm_workers(g);
        assert_true(json_equal(a, b));
        json_decref(a);
        json_decref(b);
        assert_int_equal(fsm_labels(g, "hbase", &a), 0);
        assert_string_equal(json_string_value(json_object_get(a, "k")), "v");
        json_decref(a);

        /* The dedup table travels too: a retry after the install is still a no-op. */
        uint64_t index = fsm_index(g);
        json_t *r = apply(g, fsm_cmd_label_set("hbase", "k", "v"), "test", seq - 3);
        assert_non_null(json_object_get(r, "index"));
        json_decref(r);
        assert_int_equal(fsm_index(g), index);

        /* The unfinished sync continues on the copy; ids stay unique. */
        apply_ok(g, batch_take("unfinished", json_pack("[o]", entry("/hbase/new", 1, "n"))), seq++);
        apply_ok(g, commit("unfinished", 9.0), seq++);
        assert_true(stat_int(g, "/hbase/new", "file_id") > id);

        /* A file that is no database is refused and the state is kept. */
        fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_int_equal(write(fd, "garbage", 7), 7);
        close(fd);
        assert_true(fsm_replace(g, copy) < 0);
        assert_int_equal(stat_int(g, "/hbase/new", "size"), 1);

        free(copy);
        fsm_free(g);
        fsm_free(f);
}

/* A master killed in the middle of an apply transaction: the database shows the state before
 * it, applied index included. */
static void test_crash_inside_apply(void **state)
{
        char *path = db_path();
        fsm *f = fsm_at(path);
        uint64_t seq = 2;
        json_t *mounts = json_pack("[{s:s,s:s}]", "name", "hbase", "mount_point", "https://x/");
        apply_ok(f, fsm_cmd_dataset_ensure("hbase", mounts, 16 << 20, 1000.0), seq++);
        json_decref(mounts);
        uint64_t applied = fsm_applied(f), index = fsm_index(f);
        fsm_free(f);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* The child writes half an apply and dies without committing. */
                store_db *db = NULL;
                MDB_txn *txn;
                const store_dbis *d;
                store_meta m;
                if (store_db_open(path, &db) < 0 || store_db_begin(db, true, &txn, &d) < 0 ||
                    store_meta_get(txn, d, &m) < 0)
                        _exit(2);
                m.applied += 100;
                store_entry e = {.id = 999999, .version = 1, .size = 1};
                for (int i = 0; i < 5000; i++) {
                        char name[32];
                        snprintf(name, sizeof name, "half-%d", i);
                        if (store_tree_put(txn, d, 1, name, strlen(name), &e, false) < 0)
                                _exit(3);
                }
                if (store_meta_put(txn, d, &m) < 0)
                        _exit(4);
                raise(SIGKILL);
                _exit(5);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        f = fsm_at(path);
        assert_int_equal(fsm_applied(f), applied);
        assert_int_equal(fsm_index(f), index);
        json_t *ls;
        assert_int_equal(fsm_ls(f, "hbase", "/", &ls), 0);
        assert_int_equal(json_array_size(json_object_get(ls, "entries")), 1);
        json_decref(ls);
        /* And it goes on applying. */
        apply_ok(f, fsm_cmd_label_set("hbase", "k", "v"), seq++);
        assert_int_equal(fsm_applied(f), applied + 1);
        fsm_free(f);
        free(path);
}

static void test_applied_index_survives_restart(void **state)
{
        char *path = db_path();
        fsm *f = fsm_at(path);
        json_t *mounts = json_pack("[{s:s,s:s}]", "name", "hbase", "mount_point", "https://x/");
        apply_ok(f, fsm_cmd_dataset_ensure("hbase", mounts, 16 << 20, 1000.0), 1);
        json_decref(mounts);
        uint64_t seq = populate(f);
        /* A duplicate counts as an applied entry but takes no index. */
        json_t *r = apply(f, fsm_cmd_label_set("hbase", "k", "v"), "test", seq - 3);
        json_decref(r);
        uint64_t applied = fsm_applied(f), index = fsm_index(f);
        assert_true(applied == index + 1);
        fsm_free(f);

        f = fsm_at(path);
        assert_int_equal(fsm_applied(f), applied);
        assert_int_equal(fsm_index(f), index);
        assert_int_equal(stat_int(f, "/hbase/y/z", "size"), 20);
        fsm_free(f);
        free(path);
}

static void test_members_recorded(void **state)
{
        char *path = db_path();
        fsm *f = fsm_at(path);
        assert_null(fsm_members(f));
        json_t *m = json_pack("[{s:i,s:s,s:s}]", "id", 1, "node", "n1", "address", "127.0.0.1");
        apply_ok(f, fsm_cmd_members_set(m), 1);
        json_t *bad = json_pack("[{s:s}]", "node", "n2");
        json_t *r = apply(f, fsm_cmd_members_set(bad), "test", 2);
        assert_int_equal(json_integer_value(json_object_get(r, "status")), 400);
        json_decref(r);
        json_decref(bad);
        fsm_free(f);
        f = fsm_at(path);
        json_t *got = fsm_members(f);
        assert_true(json_equal(got, m));
        json_decref(got);
        json_decref(m);
        fsm_free(f);
        free(path);
}

static void test_undecodable(void **state)
{
        fsm *f = fsm_new();
        json_t *r = NULL;
        assert_int_equal(fsm_apply(f, "{", 1, &r), 0);
        assert_non_null(json_object_get(r, "error"));
        json_decref(r);
        assert_int_equal(fsm_applied(f), 1);
        fsm_free(f);
}

/* The cluster epoch: none at first, the first EPOCH_SET wins (two leaders may each propose one),
 * invalid values are refused; it survives a restart and travels with a database copy. */
static void test_epoch(void **state)
{
        char *path = db_path();
        fsm *f = fsm_at(path);
        json_t *r;

        assert_true(fsm_epoch(f) == 0);
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
        fsm_free(f);

        f = fsm_at(path);
        assert_true(fsm_epoch(f) == 0x0123456789abcdefull);
        char *copy = db_path();
        int fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(fsm_copy(f, fd), 0);
        close(fd);
        fsm *g = fsm_new();
        assert_true(fsm_epoch(g) == 0);
        assert_int_equal(fsm_replace(g, copy), 0);
        assert_true(fsm_epoch(g) == 0x0123456789abcdefull);
        fsm_free(g);
        fsm_free(f);
        free(copy);
        free(path);
}

static int setup(void **state)
{
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        char *cmd;
        if (asprintf(&cmd, "rm -rf '%s'", tmpdir) < 0)
                return -1;
        int r = system(cmd);
        free(cmd);
        return r == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dataset_and_labels),
                cmocka_unit_test(test_idempotent_retry),
                cmocka_unit_test(test_incremental_tree_and_versions),
                cmocka_unit_test(test_ls_pages),
                cmocka_unit_test(test_tree_rejects_bad_paths),
                cmocka_unit_test(test_snapshot_copy_round_trip),
                cmocka_unit_test(test_crash_inside_apply),
                cmocka_unit_test(test_applied_index_survives_restart),
                cmocka_unit_test(test_members_recorded),
                cmocka_unit_test(test_epoch),
                cmocka_unit_test(test_undecodable),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
