/* The master's replicated state machine; state held as jansson values, serialised as JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "cleanup.h"
#include "fsm.h"

/* jansson ships json_decrefp(). */
#define _cleanup_json_ _cleanup_(json_decrefp)

struct fsm {
        uint64_t index;        /* commands applied */
        uint64_t next_file_id; /* file ids are never reused */
        json_t *datasets;      /* name -> dataset (with "root" tree and "labels") */
        json_t *staging;       /* sync_id -> {"dataset","root"} */
        json_t *workers;       /* node -> {"api","tiers","registered"} */
        json_t *dedup;         /* request id -> result */
        json_t *dedup_order;   /* request ids, oldest first */
        json_t *ids;           /* derived: "FILE_ID" -> ["dataset", "/path"] */
        json_t *members;       /* the Raft membership as last recorded, NULL = never */

        /* The cluster's epoch (block.h), 0 until the first leader's EPOCH_SET is applied; part of
         * every block id so that ids from another cluster or a lost state never match. */
        uint64_t epoch;
};

static json_t *dir_new(const char *name)
{
        return json_pack("{s:s,s:s,s:o}", "name", name, "type", "dir", "children", json_object());
}

fsm *fsm_new(void)
{
        fsm *f = calloc(1, sizeof(*f));
        if (!f)
                return NULL;
        f->next_file_id = 1;
        f->datasets = json_object();
        f->staging = json_object();
        f->workers = json_object();
        f->dedup = json_object();
        f->dedup_order = json_array();
        f->ids = json_object();
        if (!f->datasets || !f->staging || !f->workers || !f->dedup || !f->dedup_order || !f->ids)
                return fsm_free(f);
        return f;
}

fsm *fsm_free(fsm *f)
{
        if (!f)
                return NULL;
        json_decref(f->datasets);
        json_decref(f->staging);
        json_decref(f->workers);
        json_decref(f->dedup);
        json_decref(f->dedup_order);
        json_decref(f->ids);
        json_decref(f->members);
        free(f);
        return NULL;
}

uint64_t fsm_index(const fsm *f)
{
        return f->index;
}

bool fsm_has_dataset(const fsm *f, const char *name)
{
        return json_object_get(f->datasets, name) != NULL;
}

static const char *jstr(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

static json_t *error_result(unsigned status, const char *msg)
{
        return json_pack("{s:s,s:i}", "error", msg, "status", (json_int_t)status);
}

/* Splits PATH ("/a/b/c") into components; refuses empty, ".", ".." and over-long paths. */
typedef struct path_parts {
        char *buf;
        char *parts[256];
        size_t n;
} path_parts;

static void path_parts_done(path_parts *p)
{
        free(p->buf);
}

static int path_split(const char *path, path_parts *ret)
{
        if (!path || path[0] != '/' || strlen(path) > 4096)
                return -EINVAL;
        *ret = (path_parts){.buf = strdup(path)};
        if (!ret->buf)
                return -ENOMEM;
        char *save = NULL;
        for (char *t = strtok_r(ret->buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (strcmp(t, ".") == 0 || strcmp(t, "..") == 0 ||
                    ret->n >= ELEMENTSOF(ret->parts)) {
                        path_parts_done(ret);
                        return -EINVAL;
                }
                ret->parts[ret->n++] = t;
        }
        return 0;
}

/* Finds the node at PATH under ROOT; borrowed. */
static json_t *tree_lookup(json_t *root, const char *path)
{
        path_parts p;
        if (path_split(path, &p) < 0)
                return NULL;
        json_t *node = root;
        for (size_t i = 0; i < p.n && node; i++)
                node = json_object_get(json_object_get(node, "children"), p.parts[i]);
        path_parts_done(&p);
        return node;
}

static bool is_dir(const json_t *node)
{
        const char *t = jstr(node, "type");
        return t && strcmp(t, "dir") == 0;
}

/* The public ENTRY of a tree node: everything but the children. */
static json_t *entry_public(const json_t *node)
{
        json_t *e = json_object();
        const char *key;
        json_t *v;
        if (!e)
                return NULL;
        json_object_foreach((json_t *)node, key, v) if (strcmp(key, "children") != 0)
                json_object_set(e, key, v);
        return e;
}

static void ids_walk(fsm *f, const char *dataset, json_t *node, const char *path, bool add)
{
        if (!is_dir(node)) {
                json_int_t id = json_integer_value(json_object_get(node, "file_id"));
                char key[32];
                snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, id);
                if (add)
                        json_object_set_new(f->ids, key, json_pack("[s,s]", dataset, path));
                else
                        json_object_del(f->ids, key);
                return;
        }
        const char *name;
        json_t *child;
        json_object_foreach(json_object_get(node, "children"), name, child)
        {
                _cleanup_free_ char *sub = NULL;
                if (asprintf(&sub, "%s/%s", strcmp(path, "/") == 0 ? "" : path, name) < 0)
                        continue;
                ids_walk(f, dataset, child, sub, add);
        }
}

static void tree_totals(const json_t *node, uint64_t *files, uint64_t *bytes)
{
        if (!is_dir(node)) {
                (*files)++;
                *bytes += (uint64_t)json_integer_value(json_object_get(node, "size"));
                return;
        }
        const char *name;
        json_t *child;
        json_object_foreach(json_object_get(node, "children"), name, child)
                tree_totals(child, files, bytes);
}

static json_t *root_with_mounts(const json_t *mounts)
{
        json_t *root = dir_new("");
        size_t i;
        json_t *m;
        if (!root)
                return NULL;
        json_array_foreach(mounts, i, m)
        {
                const char *name = jstr(m, "name");
                if (name)
                        json_object_set_new(json_object_get(root, "children"), name, dir_new(name));
        }
        return root;
}

static json_t *apply_dataset_ensure(fsm *f, json_t *cmd)
{
        const char *name = jstr(cmd, "name");
        json_t *mounts = json_object_get(cmd, "mounts");
        if (!name || !name[0] || !json_is_array(mounts))
                return error_result(400, "dataset_ensure needs name and mounts");

        json_t *ds = json_object_get(f->datasets, name);
        bool created = !ds;
        if (created) {
                ds = json_pack("{s:s,s:s,s:s,s:n,s:O?,s:n,s:o,s:o,s:I,s:I}", "name", name, "phase",
                               "NotBound", "reason", "", "sync_error", "created",
                               json_object_get(cmd, "created"), "synced", "labels", json_object(),
                               "root", root_with_mounts(mounts), "total_files", (json_int_t)0,
                               "ufs_total_size", (json_int_t)0);
                if (!ds || json_object_set_new(f->datasets, name, ds) < 0)
                        return NULL;
        } else {
                /* The YAML changed: new mounts appear as empty directories until the next
                 * sync; removed ones disappear from the listing at the next commit. */
                json_t *children = json_object_get(json_object_get(ds, "root"), "children");
                size_t i;
                json_t *m;
                json_array_foreach(mounts, i, m)
                {
                        const char *mname = jstr(m, "name");
                        if (mname && !json_object_get(children, mname))
                                json_object_set_new(children, mname, dir_new(mname));
                }
        }
        json_object_set(ds, "mounts", mounts);
        json_object_set(ds, "block_size", json_object_get(cmd, "block_size"));
        return json_pack("{s:I,s:b}", "index", (json_int_t)f->index, "created", created);
}

static json_t *apply_dataset_phase(fsm *f, json_t *cmd)
{
        json_t *ds = json_object_get(f->datasets, jstr(cmd, "name") ?: "");
        const char *phase = jstr(cmd, "phase");
        if (!ds)
                return error_result(404, "no such dataset");
        if (!phase || (strcmp(phase, "NotBound") != 0 && strcmp(phase, "Bound") != 0 &&
                       strcmp(phase, "Failed") != 0))
                return error_result(400, "phase must be NotBound, Bound or Failed");
        json_object_set_new(ds, "phase", json_string(phase));
        json_object_set_new(ds, "reason", json_string(jstr(cmd, "reason") ?: ""));
        const char *err = jstr(cmd, "sync_error");
        json_object_set_new(ds, "sync_error", err ? json_string(err) : json_null());
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

static json_t *apply_tree_begin(fsm *f, json_t *cmd)
{
        const char *dataset = jstr(cmd, "dataset"), *sync_id = jstr(cmd, "sync_id");
        json_t *ds = json_object_get(f->datasets, dataset ?: "");
        if (!ds)
                return error_result(404, "no such dataset");
        if (!sync_id || !sync_id[0])
                return error_result(400, "tree_begin needs a sync_id");

        /* One staging tree per dataset: an unfinished older sync is dropped. */
        const char *key;
        json_t *st;
        void *tmp;
        json_object_foreach_safe(f->staging, tmp, key,
                                 st) if (strcmp(jstr(st, "dataset") ?: "", dataset) == 0)
                json_object_del(f->staging, key);

        json_t *root = root_with_mounts(json_object_get(ds, "mounts"));
        if (!root ||
            json_object_set_new(f->staging, sync_id,
                                json_pack("{s:s,s:o}", "dataset", dataset, "root", root)) < 0)
                return NULL;
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

static bool entry_changed(const json_t *old, const json_t *e)
{
        return !json_equal(json_object_get(old, "size"), json_object_get(e, "size")) ||
               !json_equal(json_object_get(old, "etag"), json_object_get(e, "etag")) ||
               !json_equal(json_object_get(old, "mtime"), json_object_get(e, "mtime"));
}

/* Inserts one batch entry into the staging ROOT; false when it is refused. */
static bool staging_insert(fsm *f, json_t *old_root, json_t *root, const json_t *e)
{
        const char *path = jstr(e, "path"), *type = jstr(e, "type");
        path_parts p;
        bool dir;

        if (!type || (strcmp(type, "file") != 0 && strcmp(type, "dir") != 0))
                return false;
        dir = strcmp(type, "dir") == 0;
        if (path_split(path, &p) < 0)
                return false;
        if (p.n == 0) {
                path_parts_done(&p);
                return false;
        }

        json_t *node = root;
        for (size_t i = 0; i + 1 < p.n; i++) {
                json_t *children = json_object_get(node, "children");
                json_t *next = json_object_get(children, p.parts[i]);
                if (!next) {
                        next = dir_new(p.parts[i]);
                        json_object_set_new(children, p.parts[i], next);
                }
                if (!is_dir(next)) {
                        path_parts_done(&p);
                        return false;
                }
                node = next;
        }
        const char *name = p.parts[p.n - 1];
        json_t *children = json_object_get(node, "children");
        json_t *existing = json_object_get(children, name);

        if (dir) {
                if (existing && !is_dir(existing)) {
                        path_parts_done(&p);
                        return false;
                }
                if (!existing) {
                        existing = dir_new(name);
                        json_object_set_new(children, name, existing);
                }
                if (json_object_get(e, "mtime"))
                        json_object_set(existing, "mtime", json_object_get(e, "mtime"));
                path_parts_done(&p);
                return true;
        }
        if (existing && is_dir(existing)) {
                path_parts_done(&p);
                return false;
        }

        json_t *old = tree_lookup(old_root, path);
        json_int_t file_id, version;
        if (existing) { /* the same path twice in one sync: keep the id given first */
                file_id = json_integer_value(json_object_get(existing, "file_id"));
                version = json_integer_value(json_object_get(existing, "version"));
        } else if (old && !is_dir(old)) {
                file_id = json_integer_value(json_object_get(old, "file_id"));
                version = json_integer_value(json_object_get(old, "version")) +
                          (entry_changed(old, e) ? 1 : 0);
        } else {
                file_id = (json_int_t)f->next_file_id++;
                version = 1;
        }
        json_t *size = json_object_get(e, "size");
        json_t *n = json_pack("{s:s,s:s,s:I,s:O?,s:s,s:I,s:I,s:s}", "name", name, "type", "file",
                              "size", json_is_integer(size) ? json_integer_value(size) : 0, "mtime",
                              json_object_get(e, "mtime"), "etag", jstr(e, "etag") ?: "", "file_id",
                              file_id, "version", version, "ufs_url", jstr(e, "ufs_url") ?: "");
        bool ok = n && json_object_set_new(children, name, n) == 0;
        path_parts_done(&p);
        return ok;
}

static json_t *apply_tree_batch(fsm *f, json_t *cmd)
{
        json_t *st = json_object_get(f->staging, jstr(cmd, "sync_id") ?: "");
        json_t *entries = json_object_get(cmd, "entries");
        if (!st)
                return error_result(404, "unknown or finished sync_id");
        if (!json_is_array(entries) || json_array_size(entries) > FSM_MAX_BATCH)
                return error_result(400, "entries must be an array of at most 10000");
        json_t *ds = json_object_get(f->datasets, jstr(st, "dataset"));
        json_t *old_root = json_object_get(ds, "root");
        json_t *root = json_object_get(st, "root");
        json_int_t accepted = 0, rejected = 0;
        size_t i;
        json_t *e;
        json_array_foreach(entries, i, e)
        {
                if (staging_insert(f, old_root, root, e))
                        accepted++;
                else
                        rejected++;
        }
        return json_pack("{s:I,s:I,s:I}", "index", (json_int_t)f->index, "accepted", accepted,
                         "rejected", rejected);
}

static json_t *apply_tree_commit(fsm *f, json_t *cmd)
{
        const char *sync_id = jstr(cmd, "sync_id") ?: "";
        json_t *st = json_object_get(f->staging, sync_id);
        if (!st)
                return error_result(404, "unknown or finished sync_id");
        const char *dataset = jstr(st, "dataset");
        json_t *ds = json_object_get(f->datasets, dataset);
        if (!ds) {
                json_object_del(f->staging, sync_id);
                return error_result(404, "no such dataset");
        }

        dataset = jstr(ds, "name"); /* st, which held the name, goes away below */
        ids_walk(f, dataset, json_object_get(ds, "root"), "/", false);
        json_t *root = json_incref(json_object_get(st, "root"));
        json_object_set_new(ds, "root", root);
        json_object_del(f->staging, sync_id);
        ids_walk(f, dataset, root, "/", true);

        uint64_t files = 0, bytes = 0;
        tree_totals(root, &files, &bytes);
        json_object_set_new(ds, "total_files", json_integer((json_int_t)files));
        json_object_set_new(ds, "ufs_total_size", json_integer((json_int_t)bytes));
        json_object_set(ds, "synced", json_object_get(cmd, "time") ?: json_null());
        json_object_set_new(ds, "phase", json_string("Bound"));
        json_object_set_new(ds, "reason", json_string(""));
        json_object_set_new(ds, "sync_error", json_null());
        return json_pack("{s:I,s:I,s:I}", "index", (json_int_t)f->index, "total_files",
                         (json_int_t)files, "ufs_total_size", (json_int_t)bytes);
}

static json_t *apply_tree_abort(fsm *f, json_t *cmd)
{
        const char *sync_id = jstr(cmd, "sync_id") ?: "";
        json_t *st = json_object_get(f->staging, sync_id);
        if (!st)
                return error_result(404, "unknown or finished sync_id");
        json_t *ds = json_object_get(f->datasets, jstr(st, "dataset"));
        const char *err = jstr(cmd, "error");
        if (ds && err) {
                json_object_set_new(ds, "sync_error", json_string(err));
                /* A dataset that never synced cannot serve: Failed. One that did keeps its
                 * previous tree and stays Bound. */
                if (json_is_null(json_object_get(ds, "synced"))) {
                        json_object_set_new(ds, "phase", json_string("Failed"));
                        json_object_set_new(ds, "reason", json_string(err));
                }
        }
        json_object_del(f->staging, sync_id);
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

static json_t *apply_worker_register(fsm *f, json_t *cmd)
{
        const char *node = jstr(cmd, "node"), *api = jstr(cmd, "api");
        if (!node || !node[0] || !api)
                return error_result(400, "worker_register needs node and api");
        json_t *tiers = json_object_get(cmd, "tiers");
        json_t *w = json_pack("{s:s,s:O?,s:O?}", "api", api, "tiers", tiers, "registered",
                              json_object_get(cmd, "time"));
        if (!w || json_object_set_new(f->workers, node, w) < 0)
                return NULL;
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

static json_t *apply_label(fsm *f, json_t *cmd, bool set)
{
        json_t *ds = json_object_get(f->datasets, jstr(cmd, "dataset") ?: "");
        const char *key = jstr(cmd, "key"), *value = jstr(cmd, "value");
        if (!ds)
                return error_result(404, "no such dataset");
        if (!key || !key[0] || strlen(key) > 256)
                return error_result(400, "label key must be 1-256 characters");
        json_t *labels = json_object_get(ds, "labels");
        if (set) {
                if (!value || strlen(value) > 4096)
                        return error_result(400, "label value must be a string of at most 4096");
                json_object_set_new(labels, key, json_string(value));
        } else
                json_object_del(labels, key);
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

/* The leader records the Raft membership after each change it made (see members.c): raft 0.15
 * has no call that reads the configuration, and followers and weirctl need it. */
static json_t *apply_members_set(fsm *f, json_t *cmd)
{
        json_t *members = json_object_get(cmd, "members");
        size_t i;
        json_t *m;
        if (!json_is_array(members) || json_array_size(members) == 0 ||
            json_array_size(members) > FSM_MAX_MEMBERS)
                return error_result(400, "members_set needs 1-" FSM_MAX_MEMBERS_TEXT " members");
        json_array_foreach(
                members, i,
                m) if (!json_is_integer(json_object_get(m, "id")) || !jstr(m, "node") ||
                       !jstr(m,
                             "address")) return error_result(400,
                                                             "a member needs id, node and address");
        json_decref(f->members);
        f->members = json_deep_copy(members);
        if (!f->members)
                return NULL;
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

/* EPOCH_SET: the first one wins, later ones change nothing (every leader proposes one while it
 * sees none, so two may be in flight). The value is random, chosen by the proposing leader, never
 * here: apply must be the same on every replica. */
static json_t *apply_epoch_set(fsm *f, json_t *cmd)
{
        uint64_t epoch;

        if (block_epoch_parse(jstr(cmd, "epoch"), &epoch) < 0)
                return error_result(400, "epoch must be 16 lowercase hex digits, not all zero");
        if (f->epoch == 0)
                f->epoch = epoch;
        return json_pack("{s:I}", "index", (json_int_t)f->index);
}

uint64_t fsm_epoch(const fsm *f)
{
        return f->epoch;
}

json_t *fsm_cmd_epoch_set(uint64_t epoch)
{
        char e[BLOCK_EPOCH_MAX];

        return json_pack("{s:s,s:s}", "op", "epoch_set", "epoch", block_epoch_format(e, epoch));
}

static void dedup_remember(fsm *f, const char *id, json_t *result)
{
        json_object_set(f->dedup, id, result);
        json_array_append_new(f->dedup_order, json_string(id));
        while (json_array_size(f->dedup_order) > FSM_DEDUP_MAX) {
                json_object_del(f->dedup, json_string_value(json_array_get(f->dedup_order, 0)));
                json_array_remove(f->dedup_order, 0);
        }
}

int fsm_apply(fsm *f, const void *buf, size_t len, json_t **ret_result)
{
        _cleanup_json_ json_t *cmd = json_loadb(buf, len, 0, NULL);
        json_t *result = NULL;

        const char *id = jstr(cmd, "id");
        if (id) {
                json_t *seen = json_object_get(f->dedup, id);
                if (seen) {
                        *ret_result = json_incref(seen);
                        return 0;
                }
        }

        /* Every command takes a position, refused ones too, so that the index is the same on
         * every replica. */
        f->index++;
        const char *op = jstr(cmd, "op");
        if (!json_is_object(cmd) || !op)
                result = error_result(400, "undecodable command");
        else if (strcmp(op, "dataset_ensure") == 0)
                result = apply_dataset_ensure(f, cmd);
        else if (strcmp(op, "dataset_phase") == 0)
                result = apply_dataset_phase(f, cmd);
        else if (strcmp(op, "tree_begin") == 0)
                result = apply_tree_begin(f, cmd);
        else if (strcmp(op, "tree_batch") == 0)
                result = apply_tree_batch(f, cmd);
        else if (strcmp(op, "tree_commit") == 0)
                result = apply_tree_commit(f, cmd);
        else if (strcmp(op, "tree_abort") == 0)
                result = apply_tree_abort(f, cmd);
        else if (strcmp(op, "worker_register") == 0)
                result = apply_worker_register(f, cmd);
        else if (strcmp(op, "label_set") == 0)
                result = apply_label(f, cmd, true);
        else if (strcmp(op, "label_delete") == 0)
                result = apply_label(f, cmd, false);
        else if (strcmp(op, "members_set") == 0)
                result = apply_members_set(f, cmd);
        else if (strcmp(op, "epoch_set") == 0)
                result = apply_epoch_set(f, cmd);
        else
                result = error_result(400, "unknown command");
        if (!result)
                return -ENOMEM;
        if (id)
                dedup_remember(f, id, result);
        *ret_result = result;
        return 0;
}

int fsm_command_encode(json_t *cmd, const char *client, uint64_t seq, char **ret_buf,
                       size_t *ret_len)
{
        if (!json_object_get(cmd, "id")) {
                char id[256];
                snprintf(id, sizeof(id), "%s:%" PRIu64, client, seq);
                if (json_object_set_new(cmd, "id", json_string(id)) < 0)
                        return -ENOMEM;
        }
        char *s = json_dumps(cmd, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        *ret_buf = s;
        *ret_len = strlen(s);
        return 0;
}

int fsm_snapshot(fsm *f, char **ret_buf, size_t *ret_len)
{
        _cleanup_json_ json_t *dedup = json_array();
        size_t i;
        json_t *k;
        if (!dedup)
                return -ENOMEM;
        json_array_foreach(f->dedup_order, i, k) json_array_append_new(
                dedup, json_pack("[O,O]", k, json_object_get(f->dedup, json_string_value(k))));
        _cleanup_json_ json_t *s =
                json_pack("{s:i,s:I,s:I,s:O,s:O,s:O,s:O,s:O*}", "version", FSM_STATE_VERSION,
                          "index", (json_int_t)f->index, "next_file_id",
                          (json_int_t)f->next_file_id, "datasets", f->datasets, "staging",
                          f->staging, "workers", f->workers, "dedup", dedup, "members", f->members);
        if (!s)
                return -ENOMEM;
        char epoch[BLOCK_EPOCH_MAX];
        if (f->epoch != 0 &&
            json_object_set_new(s, "epoch", json_string(block_epoch_format(epoch, f->epoch))) < 0)
                return -ENOMEM;
        char *buf = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
        if (!buf)
                return -ENOMEM;
        *ret_buf = buf;
        *ret_len = strlen(buf);
        return 0;
}

int fsm_restore(fsm *f, const void *buf, size_t len)
{
        _cleanup_json_ json_t *s = json_loadb(buf, len, 0, NULL);
        if (!json_is_object(s) ||
            json_integer_value(json_object_get(s, "version")) != FSM_STATE_VERSION)
                return -EBADMSG;
        json_t *datasets = json_object_get(s, "datasets"), *staging = json_object_get(s, "staging"),
               *workers = json_object_get(s, "workers"), *dedup = json_object_get(s, "dedup");
        if (!json_is_object(datasets) || !json_is_object(staging) || !json_is_object(workers) ||
            !json_is_array(dedup))
                return -EBADMSG;

        fsm *n = fsm_new();
        if (!n)
                return -ENOMEM;
        n->index = (uint64_t)json_integer_value(json_object_get(s, "index"));
        n->next_file_id = (uint64_t)json_integer_value(json_object_get(s, "next_file_id"));
        /* Absent in snapshots taken before the epoch existed: the next leader sets one. */
        if (json_object_get(s, "epoch") &&
            block_epoch_parse(json_string_value(json_object_get(s, "epoch")), &n->epoch) < 0) {
                fsm_free(n);
                return -EBADMSG;
        }
        json_object_update(n->datasets, datasets);
        json_object_update(n->staging, staging);
        json_object_update(n->workers, workers);
        /* Absent in snapshots taken before membership changes existed. */
        if (json_is_array(json_object_get(s, "members")))
                n->members = json_deep_copy(json_object_get(s, "members"));
        size_t i;
        json_t *pair;
        json_array_foreach(dedup, i, pair)
        {
                const char *id = json_string_value(json_array_get(pair, 0));
                if (id)
                        dedup_remember(n, id, json_array_get(pair, 1));
        }
        const char *name;
        json_t *ds;
        json_object_foreach(n->datasets, name, ds)
                ids_walk(n, name, json_object_get(ds, "root"), "/", true);

        /* Swap contents so that F stays the caller's pointer. */
        fsm old = *f;
        *f = *n;
        *n = old;
        fsm_free(n);
        return 0;
}

json_t *fsm_cmd_dataset_ensure(const char *name, const json_t *mounts, uint64_t block_size,
                               double created)
{
        return json_pack("{s:s,s:s,s:O,s:I,s:f}", "op", "dataset_ensure", "name", name, "mounts",
                         mounts, "block_size", (json_int_t)block_size, "created", created);
}

json_t *fsm_cmd_dataset_phase(const char *name, const char *phase, const char *reason,
                              const char *sync_error)
{
        return json_pack("{s:s,s:s,s:s,s:s,s:s*}", "op", "dataset_phase", "name", name, "phase",
                         phase, "reason", reason ?: "", "sync_error", sync_error);
}

json_t *fsm_cmd_tree_begin(const char *dataset, const char *sync_id)
{
        return json_pack("{s:s,s:s,s:s}", "op", "tree_begin", "dataset", dataset, "sync_id",
                         sync_id);
}

json_t *fsm_cmd_tree_batch(const char *sync_id, const json_t *entries)
{
        return json_pack("{s:s,s:s,s:O}", "op", "tree_batch", "sync_id", sync_id, "entries",
                         entries);
}

json_t *fsm_cmd_tree_commit(const char *sync_id, double time)
{
        return json_pack("{s:s,s:s,s:f}", "op", "tree_commit", "sync_id", sync_id, "time", time);
}

json_t *fsm_cmd_tree_abort(const char *sync_id, const char *error)
{
        return json_pack("{s:s,s:s,s:s*}", "op", "tree_abort", "sync_id", sync_id, "error", error);
}

json_t *fsm_cmd_worker_register(const char *node, const char *api, const json_t *tiers, double time)
{
        return json_pack("{s:s,s:s,s:s,s:O,s:f}", "op", "worker_register", "node", node, "api", api,
                         "tiers", tiers, "time", time);
}

json_t *fsm_cmd_label_set(const char *dataset, const char *key, const char *value)
{
        return json_pack("{s:s,s:s,s:s,s:s}", "op", "label_set", "dataset", dataset, "key", key,
                         "value", value);
}

json_t *fsm_cmd_label_delete(const char *dataset, const char *key)
{
        return json_pack("{s:s,s:s,s:s}", "op", "label_delete", "dataset", dataset, "key", key);
}

static json_t *dataset_public(const json_t *ds)
{
        json_t *d = json_pack(
                "{s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?}", "name",
                json_object_get(ds, "name"), "phase", json_object_get(ds, "phase"), "reason",
                json_object_get(ds, "reason"), "mounts", json_object_get(ds, "mounts"),
                "ufs_total_size", json_object_get(ds, "ufs_total_size"), "total_files",
                json_object_get(ds, "total_files"), "created", json_object_get(ds, "created"),
                "synced", json_object_get(ds, "synced"), "sync_error",
                json_object_get(ds, "sync_error"), "block_size", json_object_get(ds, "block_size"));
        return d;
}

json_t *fsm_datasets(const fsm *f)
{
        json_t *a = json_array();
        const char *name;
        json_t *ds;
        if (!a)
                return NULL;
        json_object_foreach(f->datasets, name, ds) json_array_append_new(a, dataset_public(ds));
        return a;
}

int fsm_dataset(const fsm *f, const char *name, json_t **ret)
{
        json_t *ds = json_object_get(f->datasets, name);
        if (!ds)
                return -ENOENT;
        *ret = dataset_public(ds);
        return *ret ? 0 : -ENOMEM;
}

int fsm_ls(const fsm *f, const char *dataset, const char *path, json_t **ret)
{
        json_t *ds = json_object_get(f->datasets, dataset);
        if (!ds)
                return -ENOENT;
        json_t *node = tree_lookup(json_object_get(ds, "root"), path);
        if (!node)
                return -ENOENT;
        if (!is_dir(node))
                return -ENOTDIR;
        json_t *entries = json_array();
        const char *name;
        json_t *child;
        json_object_foreach(json_object_get(node, "children"), name, child)
                json_array_append_new(entries, entry_public(child));
        *ret = json_pack("{s:s,s:o}", "path", path, "entries", entries);
        return *ret ? 0 : -ENOMEM;
}

int fsm_dir_scan(const fsm *f, const char *dataset, const char *path, fsm_dir_scan_fn fn,
                 void *userdata)
{
        json_t *ds = json_object_get(f->datasets, dataset);
        if (!ds)
                return -ENOENT;
        json_t *node = tree_lookup(json_object_get(ds, "root"), path);
        if (!node)
                return -ENOENT;
        if (!is_dir(node))
                return -ENOTDIR;
        const char *name;
        json_t *child;
        json_object_foreach(json_object_get(node, "children"), name, child)
        {
                int r = fn(name, (const fsm_node *)child, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

json_t *fsm_node_entry(const fsm_node *node)
{
        return entry_public((const json_t *)node);
}

int fsm_stat(const fsm *f, const char *dataset, const char *path, json_t **ret)
{
        json_t *ds = json_object_get(f->datasets, dataset);
        if (!ds)
                return -ENOENT;
        json_t *node = tree_lookup(json_object_get(ds, "root"), path);
        if (!node)
                return -ENOENT;
        *ret = entry_public(node);
        return *ret ? 0 : -ENOMEM;
}

int fsm_file(const fsm *f, uint64_t file_id, json_t **ret)
{
        char key[32];
        snprintf(key, sizeof(key), "%" PRIu64, file_id);
        json_t *loc = json_object_get(f->ids, key);
        if (!loc)
                return -ENOENT;
        const char *dataset = json_string_value(json_array_get(loc, 0));
        const char *path = json_string_value(json_array_get(loc, 1));
        json_t *ds = json_object_get(f->datasets, dataset);
        json_t *node = tree_lookup(json_object_get(ds, "root"), path);
        if (!node)
                return -ENOENT;
        json_t *e = entry_public(node);
        if (!e)
                return -ENOMEM;
        json_object_set_new(e, "dataset", json_string(dataset));
        json_object_set_new(e, "path", json_string(path));
        json_object_set(e, "block_size", json_object_get(ds, "block_size"));
        *ret = e;
        return 0;
}

int fsm_labels(const fsm *f, const char *dataset, json_t **ret)
{
        json_t *ds = json_object_get(f->datasets, dataset);
        if (!ds)
                return -ENOENT;
        *ret = json_deep_copy(json_object_get(ds, "labels"));
        return *ret ? 0 : -ENOMEM;
}

json_t *fsm_result(const fsm *f, const char *request_id)
{
        return json_incref(json_object_get(f->dedup, request_id));
}

json_t *fsm_members(const fsm *f)
{
        return f->members ? json_deep_copy(f->members) : NULL;
}

json_t *fsm_cmd_members_set(const json_t *members)
{
        return json_pack("{s:s,s:O}", "op", "members_set", "members", members);
}

json_t *fsm_workers(const fsm *f)
{
        return json_deep_copy(f->workers);
}
