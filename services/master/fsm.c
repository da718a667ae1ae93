/* The master's replicated state machine on LMDB: commands applied in write transactions, reads in
 * read transactions (see fsm.h for the command semantics and store-db.h for threads and records). */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "fsm.h"
#include "log.h"
#include "ufs/ufs.h"

#define DATASET_V1 1
#define MEMBERS_V1 1
#define EPOCH_V1   1

struct fsm {
        store_db *db;
        /* The meta table's epoch record, cached: block ids are checked against it once per
         * block of a worker's report, under state_lock. Written by the one writer thread after
         * a commit or a database swap (epoch_reload), read with atomic loads. */
        uint64_t epoch;
};

static int epoch_get(MDB_txn *txn, const store_dbis *d, uint64_t *ret);

/* Re-reads the cached epoch from the database (writer thread). */
static int epoch_reload(fsm *f)
{
        MDB_txn *txn;
        const store_dbis *d;
        uint64_t e = 0;
        int r = store_db_begin(f->db, false, &txn, &d);
        if (r < 0)
                return r;
        r = epoch_get(txn, d, &e);
        store_db_end(f->db, txn);
        if (r < 0)
                return r;
        __atomic_store_n(&f->epoch, e, __ATOMIC_RELEASE);
        return 0;
}

/* The state of one apply: its write transaction and what it changes in the meta record. */
typedef struct wctx {
        MDB_txn *txn;
        const store_dbis *d;
        store_meta meta;
        int err;            /* first database error: the whole apply is aborted */
        uint64_t epoch_set; /* the epoch this apply recorded, for the cache once committed */
        /* The directory of the previous entry of a batch, resolved once for its neighbours. */
        char *cache_dir;
        uint64_t cache_dir_id;
        int64_t files_delta, bytes_delta; /* of the dataset, added once per batch */
} wctx;

static int wfail(wctx *w, int r)
{
        if (w->err == 0)
                w->err = r;
        return r;
}

int fsm_open(const char *path, fsm **ret)
{
        fsm *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        r = store_db_open(path, &f->db);
        if (r >= 0)
                r = epoch_reload(f);
        if (r < 0) {
                fsm_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

fsm *fsm_free(fsm *f)
{
        if (!f)
                return NULL;
        store_db_free(f->db);
        free(f);
        return NULL;
}

store_db *fsm_db(fsm *f)
{
        return f->db;
}

static const char *jstr(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

static json_t *error_result(unsigned status, const char *msg)
{
        return json_pack("{s:s,s:i}", "error", msg, "status", (json_int_t)status);
}

/* ---- path components ---- */

typedef struct path_iter {
        const char *p;
        const char *name;
        size_t len;
} path_iter;

/* Next component of a "/a/b" path: 1 = one found, 0 = end, -EINVAL for ".", "..", too long. */
static int path_next(path_iter *it)
{
        while (*it->p == '/')
                it->p++;
        if (!*it->p)
                return 0;
        it->name = it->p;
        while (*it->p && *it->p != '/')
                it->p++;
        it->len = (size_t)(it->p - it->name);
        if ((it->len == 1 && it->name[0] == '.') ||
            (it->len == 2 && it->name[0] == '.' && it->name[1] == '.') || it->len > STORE_MAX_NAME)
                return -EINVAL;
        return 1;
}

static bool path_valid(const char *path)
{
        path_iter it = {.p = path};
        unsigned depth = 0;
        int r;

        if (!path || path[0] != '/' || strlen(path) > 4096)
                return false;
        while ((r = path_next(&it)) > 0)
                if (++depth > FSM_MAX_DEPTH)
                        return false;
        return r == 0;
}

/* ---- dataset records ---- */

static int ds_get(MDB_txn *txn, const store_dbis *d, const char *name, json_t **ret)
{
        MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name}, v;

        if (k.mv_size == 0 || k.mv_size > 255)
                return -ENOENT;
        int rc = mdb_get(txn, d->datasets, &k, &v);
        if (rc != 0)
                return store_errno(rc);
        json_t *ds = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        if (!json_is_object(ds) || json_integer_value(json_object_get(ds, "v")) != DATASET_V1) {
                json_decref(ds);
                return -EBADMSG;
        }
        *ret = ds;
        return 0;
}

static int ds_put(wctx *w, const char *name, const json_t *ds)
{
        _cleanup_free_ char *s = json_dumps(ds, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                return wfail(w, -ENOMEM);
        MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name},
                v = {.mv_size = strlen(s), .mv_data = s};
        int r = store_errno(mdb_put(w->txn, w->d->datasets, &k, &v, 0));
        return r < 0 ? wfail(w, r) : 0;
}

static uint64_t ds_root(const json_t *ds)
{
        return (uint64_t)json_integer_value(json_object_get(ds, "root"));
}

/* The tree changes batch by batch, but the totals readers see ("total_files",
 * "ufs_total_size") are those of the last completed sync: batches count into "live_files" and
 * "live_size", which TREE_COMMIT publishes. A dataset record without them (written before they
 * existed) starts them from the published totals. */
static void ds_add_totals(json_t *ds, int64_t files, int64_t bytes)
{
        json_t *lf = json_object_get(ds, "live_files"), *lb = json_object_get(ds, "live_size");
        json_int_t tf = json_integer_value(lf ? lf : json_object_get(ds, "total_files")) + files;
        json_int_t tb = json_integer_value(lb ? lb : json_object_get(ds, "ufs_total_size")) + bytes;
        json_object_set_new(ds, "live_files", json_integer(tf < 0 ? 0 : tf));
        json_object_set_new(ds, "live_size", json_integer(tb < 0 ? 0 : tb));
}

static void ds_publish_totals(json_t *ds)
{
        json_t *lf = json_object_get(ds, "live_files"), *lb = json_object_get(ds, "live_size");

        if (lf)
                json_object_set(ds, "total_files", lf);
        if (lb)
                json_object_set(ds, "ufs_total_size", lb);
}

/* ---- tree writes ---- */

static int mkdir_entry(wctx *w, uint64_t parent, const char *name, size_t len, int64_t mtime,
                       uint64_t *ret_id)
{
        store_entry e = {.dir = true, .id = w->meta.next_id++, .mtime = mtime};
        int r = store_tree_put(w->txn, w->d, parent, name, len, &e, true);
        if (r < 0)
                return r == -ENAMETOOLONG ? r : wfail(w, r);
        *ret_id = e.id;
        return 0;
}

/* The id of the directory holding the last component of PATH, creating missing directories when
 * CREATE. -ENOTDIR when a component is a file, -ENOENT when missing and not CREATE. */
static int resolve_parent(wctx *w, uint64_t root, const char *path, bool create,
                          uint64_t *ret_parent, const char **ret_name, size_t *ret_len)
{
        const char *last = strrchr(path, '/');
        size_t dir_len = (size_t)(last - path);
        path_iter it = {.p = path};
        uint64_t id = root;
        int r;

        if (!last || !last[1])
                return -EINVAL;
        *ret_name = last + 1;
        *ret_len = strlen(last + 1);
        if (w->cache_dir && strlen(w->cache_dir) == dir_len &&
            memcmp(w->cache_dir, path, dir_len) == 0) {
                *ret_parent = w->cache_dir_id;
                return 0;
        }
        while ((r = path_next(&it)) > 0 && it.name < last) {
                store_entry e;
                r = store_tree_get(w->txn, w->d, id, it.name, it.len, &e);
                if (r == -ENOENT) {
                        if (!create)
                                return -ENOENT;
                        r = mkdir_entry(w, id, it.name, it.len, 0, &id);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (r < 0)
                        return wfail(w, r);
                if (!e.dir)
                        return -ENOTDIR;
                id = e.id;
        }
        if (r < 0)
                return r;
        free(w->cache_dir);
        w->cache_dir = strndup(path, dir_len);
        if (!w->cache_dir)
                return wfail(w, -ENOMEM);
        w->cache_dir_id = id;
        *ret_parent = id;
        return 0;
}

static void cache_drop(wctx *w)
{
        free(w->cache_dir);
        w->cache_dir = NULL;
}

/* Removes the entry (PARENT, NAME) = E; a directory only when empty. */
static int remove_entry(wctx *w, uint64_t parent, const char *name, size_t len,
                        const store_entry *e)
{
        int r;

        if (e->dir) {
                r = store_tree_has_children(w->txn, w->d, e->id);
                if (r < 0)
                        return wfail(w, r);
                if (r > 0)
                        return -ENOTEMPTY;
                cache_drop(w); /* the cached directory may be this one */
        }
        r = store_tree_del(w->txn, w->d, parent, name, len, e->id);
        if (r < 0)
                return wfail(w, r);
        if (!e->dir) {
                w->files_delta--;
                w->bytes_delta -= (int64_t)e->size;
        }
        return 0;
}

static bool etag_equal(const store_entry *e, const char *etag)
{
        size_t n = strlen(etag);
        return MIN(n, (size_t)STORE_MAX_ETAG) == e->etag_len &&
               memcmp(e->etag, etag, e->etag_len) == 0;
}

typedef enum batch_kind {
        BATCH_FILE = 1,
        BATCH_DIR = 2,
        BATCH_DELETE = 3,
} batch_kind;

/* One entry of a TREE_BATCH, decoded from JSON or from the binary encoding. */
typedef struct batch_entry {
        batch_kind kind;
        const char *path;
        uint64_t size;
        int64_t mtime;
        bool has_mtime;
        const char *etag; /* "" = none */
} batch_entry;

static int entry_from_json(const json_t *o, batch_entry *ret)
{
        const char *type = jstr(o, "type");
        json_t *jm = json_object_get(o, "mtime"), *js = json_object_get(o, "size");

        if (!type)
                return -EINVAL;
        *ret = (batch_entry){
                .path = jstr(o, "path"),
                .has_mtime = json_is_number(jm),
                .mtime = json_is_number(jm) ? (int64_t)json_number_value(jm) : 0,
                .etag = jstr(o, "etag") ?: "",
        };
        if (strcmp(type, "delete") == 0)
                ret->kind = BATCH_DELETE;
        else if (strcmp(type, "dir") == 0)
                ret->kind = BATCH_DIR;
        else if (strcmp(type, "file") == 0) {
                if (!json_is_integer(js) || json_integer_value(js) < 0)
                        return -EINVAL;
                ret->kind = BATCH_FILE;
                ret->size = (uint64_t)json_integer_value(js);
        } else
                return -EINVAL;
        return 0;
}

/* One entry of a TREE_BATCH: 0 applied, -errno refused (the batch goes on), w->err set when the
 * database failed. */
static int apply_entry(wctx *w, const json_t *ds, const batch_entry *b)
{
        const char *path = b->path, *name;
        uint64_t root = ds_root(ds), parent;
        size_t len;
        store_entry old;
        bool have_old, del = b->kind == BATCH_DELETE;
        int r;

        if (!path_valid(path) || strcmp(path, "/") == 0)
                return -EINVAL;
        r = resolve_parent(w, root, path, !del, &parent, &name, &len);
        if (r == -ENOENT && del)
                return 0; /* already gone */
        if (r < 0)
                return r;
        if (len == 0 || len > STORE_MAX_NAME)
                return -ENAMETOOLONG;
        r = store_tree_get(w->txn, w->d, parent, name, len, &old);
        if (r < 0 && r != -ENOENT)
                return wfail(w, r);
        have_old = r == 0;

        if (del)
                return have_old ? remove_entry(w, parent, name, len, &old) : 0;

        if (b->kind == BATCH_DIR) {
                if (have_old && old.dir) {
                        if (old.mtime == b->mtime || !b->has_mtime)
                                return 0;
                        old.mtime = b->mtime;
                        r = store_tree_put(w->txn, w->d, parent, name, len, &old, false);
                        return r < 0 ? wfail(w, r) : 0;
                }
                if (have_old) {
                        r = remove_entry(w, parent, name, len, &old);
                        if (r < 0)
                                return r;
                }
                uint64_t id;
                return mkdir_entry(w, parent, name, len, b->mtime, &id);
        }

        if (strlen(b->etag) > STORE_MAX_ETAG)
                return -EINVAL;
        store_entry e = {
                .size = b->size,
                .mtime = b->mtime,
                .etag = b->etag,
                .etag_len = strlen(b->etag),
        };
        bool new_id = true;
        if (have_old && !old.dir) {
                if (old.size == e.size && old.mtime == e.mtime && etag_equal(&old, b->etag))
                        return 0;
                e.id = old.id;
                e.version = old.version + 1;
                new_id = false;
                w->bytes_delta += (int64_t)e.size - (int64_t)old.size;
        } else {
                if (have_old) {
                        r = remove_entry(w, parent, name, len, &old);
                        if (r < 0)
                                return r;
                }
                e.id = w->meta.next_id++;
                e.version = 1;
                w->files_delta++;
                w->bytes_delta += (int64_t)e.size;
        }
        r = store_tree_put(w->txn, w->d, parent, name, len, &e, new_id);
        return r < 0 ? wfail(w, r) : 0;
}

/* ---- commands ---- */

static json_t *index_result(wctx *w)
{
        return json_pack("{s:I}", "index", (json_int_t)w->meta.index);
}

static json_t *apply_dataset_ensure(wctx *w, json_t *cmd)
{
        const char *name = jstr(cmd, "name");
        json_t *mounts = json_object_get(cmd, "mounts");
        json_auto_t *ds = NULL;
        size_t i;
        json_t *m;
        int r;

        if (!name || !name[0] || strlen(name) > 255 || !json_is_array(mounts))
                return error_result(400, "dataset_ensure needs name and mounts");
        r = ds_get(w->txn, w->d, name, &ds);
        if (r < 0 && r != -ENOENT) {
                wfail(w, r);
                return NULL;
        }
        bool created = r == -ENOENT;
        if (created) {
                uint64_t root;
                if (mkdir_entry(w, STORE_ROOT_PARENT, name, strlen(name), 0, &root) < 0)
                        return NULL;
                ds = json_pack("{s:i,s:s,s:s,s:s,s:n,s:O?,s:n,s:o,s:I,s:I,s:I,s:n,s:o}", "v",
                               DATASET_V1, "name", name, "phase", "NotBound", "reason", "",
                               "sync_error", "created", json_object_get(cmd, "created"), "synced",
                               "labels", json_object(), "root", (json_int_t)root, "total_files",
                               (json_int_t)0, "ufs_total_size", (json_int_t)0, "sync_id", "urls",
                               json_object());
                if (!ds) {
                        wfail(w, -ENOMEM);
                        return NULL;
                }
        }
        /* New mounts appear as empty directories until the next sync; the sync removes the
         * directories of mounts that left the YAML. */
        json_array_foreach(mounts, i, m) {
                const char *mname = jstr(m, "name");
                store_entry e;
                uint64_t id;
                if (!mname || !mname[0] || strlen(mname) > STORE_MAX_NAME || strchr(mname, '/'))
                        continue;
                r = store_tree_get(w->txn, w->d, ds_root(ds), mname, strlen(mname), &e);
                if (r == -ENOENT)
                        r = mkdir_entry(w, ds_root(ds), mname, strlen(mname), 0, &id);
                if (r < 0 && w->err == 0 && r != -ENOENT)
                        wfail(w, r);
                if (w->err)
                        return NULL;
        }
        json_object_set(ds, "mounts", mounts);
        json_object_set(ds, "block_size", json_object_get(cmd, "block_size"));
        if (ds_put(w, name, ds) < 0)
                return NULL;
        return json_pack("{s:I,s:b}", "index", (json_int_t)w->meta.index, "created", created);
}

/* The dataset named by CMD's KEY into *RET_DS, or an error result. NULL + *RET_DS = NULL on a
 * database failure. */
static json_t *get_dataset(wctx *w, const json_t *cmd, const char *key, json_t **ret_ds)
{
        int r = ds_get(w->txn, w->d, jstr(cmd, key) ?: "", ret_ds);
        if (r == -ENOENT)
                return error_result(404, "no such dataset");
        if (r < 0)
                wfail(w, r);
        return NULL;
}

static json_t *apply_dataset_phase(wctx *w, json_t *cmd)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "name", &ds);
        const char *phase = jstr(cmd, "phase");

        if (!ds)
                return err;
        if (!phase || (strcmp(phase, "NotBound") != 0 && strcmp(phase, "Bound") != 0 &&
                       strcmp(phase, "Failed") != 0))
                return error_result(400, "phase must be NotBound, Bound or Failed");
        json_object_set_new(ds, "phase", json_string(phase));
        json_object_set_new(ds, "reason", json_string(jstr(cmd, "reason") ?: ""));
        const char *se = jstr(cmd, "sync_error");
        json_object_set_new(ds, "sync_error", se ? json_string(se) : json_null());
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return index_result(w);
}

static json_t *apply_tree_begin(wctx *w, json_t *cmd)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "dataset", &ds);
        const char *sync_id = jstr(cmd, "sync_id");

        if (!ds)
                return err;
        if (!sync_id || !sync_id[0])
                return error_result(400, "tree_begin needs a sync_id");
        /* One sync per dataset: a newer one takes over from an unfinished older one. */
        json_object_set_new(ds, "sync_id", json_string(sync_id));
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return index_result(w);
}

/* Whether CMD's sync is the dataset's running one. */
static bool sync_matches(const json_t *ds, const json_t *cmd)
{
        const char *cur = jstr(ds, "sync_id"), *id = jstr(cmd, "sync_id");
        return cur && id && strcmp(cur, id) == 0;
}

/* The entries of a TREE_BATCH: a JSON array, or the binary encoding (batch_decode). */
typedef struct batch_source {
        const json_t *json;
        size_t json_next;
        const unsigned char *p, *end;
        uint64_t remaining;
        char path[4097];
        size_t path_len;
        char etag[STORE_MAX_ETAG + 1];
} batch_source;

/* The next entry: 1, 0 at the end, -EINVAL for a bad JSON entry (skipped, counted as refused),
 * -EBADMSG for a bad binary encoding (the whole command is refused). */
static int batch_next(batch_source *src, batch_entry *ret)
{
        if (src->json) {
                if (src->json_next >= json_array_size(src->json))
                        return 0;
                int r = entry_from_json(json_array_get(src->json, src->json_next++), ret);
                return r < 0 ? r : 1;
        }
        if (src->remaining == 0)
                return 0;
        src->remaining--;
        uint64_t kind, shared, add, v;
        if (src->p >= src->end)
                return -EBADMSG;
        kind = *src->p++;
        if ((kind != BATCH_FILE && kind != BATCH_DIR && kind != BATCH_DELETE) ||
            store_varint_get(&src->p, src->end, &shared) < 0 ||
            store_varint_get(&src->p, src->end, &add) < 0 || shared > src->path_len ||
            add > sizeof(src->path) - 1 - shared || add > (uint64_t)(src->end - src->p))
                return -EBADMSG;
        memcpy(src->path + shared, src->p, add);
        src->p += add;
        src->path_len = shared + add;
        src->path[src->path_len] = 0;
        if (memchr(src->path, 0, src->path_len))
                return -EBADMSG;
        *ret = (batch_entry){.kind = (batch_kind)kind, .path = src->path, .etag = ""};
        if (kind != BATCH_FILE)
                return 1;
        uint64_t zz, el;
        if (store_varint_get(&src->p, src->end, &ret->size) < 0 ||
            store_varint_get(&src->p, src->end, &zz) < 0 ||
            store_varint_get(&src->p, src->end, &el) < 0 || el > STORE_MAX_ETAG ||
            el > (uint64_t)(src->end - src->p) || ret->size > INT64_MAX)
                return -EBADMSG;
        (void)v;
        ret->mtime = store_unzigzag(zz);
        ret->has_mtime = true;
        memcpy(src->etag, src->p, el);
        src->etag[el] = 0;
        src->p += el;
        if (memchr(src->etag, 0, el))
                return -EBADMSG;
        ret->etag = src->etag;
        return 1;
}

static json_t *apply_tree_batch(wctx *w, json_t *cmd, batch_source *src)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "dataset", &ds);
        json_int_t accepted = 0, rejected = 0;
        _cleanup_free_ char *first_rejected = NULL;
        batch_entry e;
        int r;

        if (!ds)
                return err;
        if (!sync_matches(ds, cmd))
                return error_result(404, "unknown or finished sync_id");
        if (src->json && (!json_is_array(src->json) || json_array_size(src->json) > FSM_MAX_BATCH))
                return error_result(400, "entries must be an array of at most 10000");
        if (!src->json && src->remaining > FSM_MAX_BATCH)
                return error_result(400, "a batch holds at most 10000 entries");
        for (;;) {
                e = (batch_entry){};
                r = batch_next(src, &e);
                if (r == 0)
                        break;
                if (r == -EBADMSG)
                        return error_result(400, "undecodable tree batch");
                if (r > 0)
                        r = apply_entry(w, ds, &e);
                if (w->err)
                        return NULL;
                if (r < 0) {
                        rejected++;
                        if (!first_rejected)
                                first_rejected = strdup(e.path ?: "(no path)");
                } else
                        accepted++;
        }
        ds_add_totals(ds, w->files_delta, w->bytes_delta);
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return json_pack("{s:I,s:I,s:I,s:s*}", "index", (json_int_t)w->meta.index, "accepted",
                         accepted, "rejected", rejected, "first_rejected", first_rejected);
}

static json_t *apply_tree_commit(wctx *w, json_t *cmd)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "dataset", &ds);
        json_t *urls = json_object_get(cmd, "urls");

        if (!ds)
                return err;
        /* Without a TREE_BEGIN (nothing changed) the sync must not overtake a running one. */
        if (!sync_matches(ds, cmd) && !json_is_null(json_object_get(ds, "sync_id")))
                return error_result(404, "unknown or finished sync_id");
        json_object_set_new(ds, "sync_id", json_null());
        if (json_is_object(urls))
                json_object_set(ds, "urls", urls);
        json_object_set(ds, "synced", json_object_get(cmd, "time") ?: json_null());
        ds_publish_totals(ds);
        json_object_set_new(ds, "phase", json_string("Bound"));
        json_object_set_new(ds, "reason", json_string(""));
        json_object_set_new(ds, "sync_error", json_null());
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return json_pack("{s:I,s:O,s:O}", "index", (json_int_t)w->meta.index, "total_files",
                         json_object_get(ds, "total_files"), "ufs_total_size",
                         json_object_get(ds, "ufs_total_size"));
}

static json_t *apply_tree_abort(wctx *w, json_t *cmd)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "dataset", &ds);
        const char *error = jstr(cmd, "error");

        if (!ds)
                return err;
        if (!sync_matches(ds, cmd) && !json_is_null(json_object_get(ds, "sync_id")))
                return error_result(404, "unknown or finished sync_id");
        json_object_set_new(ds, "sync_id", json_null());
        if (error) {
                json_object_set_new(ds, "sync_error", json_string(error));
                /* A dataset that never synced cannot serve: Failed. One that did keeps its tree
                 * and stays Bound. */
                if (json_is_null(json_object_get(ds, "synced"))) {
                        json_object_set_new(ds, "phase", json_string("Failed"));
                        json_object_set_new(ds, "reason", json_string(error));
                }
        }
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return index_result(w);
}

static json_t *apply_worker_register(wctx *w, json_t *cmd)
{
        const char *node = jstr(cmd, "node"), *api = jstr(cmd, "api");
        if (!node || !node[0] || strlen(node) > 255 || !api)
                return error_result(400, "worker_register needs node and api");
        json_auto_t *wk =
                json_pack("{s:s,s:O?,s:O?}", "api", api, "tiers", json_object_get(cmd, "tiers"),
                          "registered", json_object_get(cmd, "time"));
        _cleanup_free_ char *s = wk ? json_dumps(wk, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (!s) {
                wfail(w, -ENOMEM);
                return NULL;
        }
        MDB_val k = {.mv_size = strlen(node), .mv_data = (void *)node},
                v = {.mv_size = strlen(s), .mv_data = s};
        int r = store_errno(mdb_put(w->txn, w->d->workers, &k, &v, 0));
        if (r < 0) {
                wfail(w, r);
                return NULL;
        }
        return index_result(w);
}

static json_t *apply_label(wctx *w, json_t *cmd, bool set)
{
        json_auto_t *ds = NULL;
        json_t *err = get_dataset(w, cmd, "dataset", &ds);
        const char *key = jstr(cmd, "key"), *value = jstr(cmd, "value");

        if (!ds)
                return err;
        if (!key || !key[0] || strlen(key) > 256)
                return error_result(400, "label key must be 1-256 characters");
        json_t *labels = json_object_get(ds, "labels");
        if (set) {
                if (!value || strlen(value) > 4096)
                        return error_result(400, "label value must be a string of at most 4096");
                json_object_set_new(labels, key, json_string(value));
        } else
                json_object_del(labels, key);
        if (ds_put(w, jstr(ds, "name"), ds) < 0)
                return NULL;
        return index_result(w);
}

/* The leader records the Raft membership after each change it made (see members.c): raft 0.15
 * has no call that reads the configuration, and followers and weirctl need it. Kept in the meta
 * table as {"v":1,"members":[...]}. */
static json_t *apply_members_set(wctx *w, json_t *cmd)
{
        json_t *members = json_object_get(cmd, "members");
        size_t i;
        json_t *m;
        if (!json_is_array(members) || json_array_size(members) == 0 ||
            json_array_size(members) > FSM_MAX_MEMBERS)
                return error_result(400, "members_set needs 1-" FSM_MAX_MEMBERS_TEXT " members");
        json_array_foreach(members, i, m) {
                if (!json_is_integer(json_object_get(m, "id")) || !jstr(m, "node") ||
                    !jstr(m, "address"))
                        return error_result(400, "a member needs id, node and address");
        }
        json_auto_t *rec = json_pack("{s:i,s:O}", "v", MEMBERS_V1, "members", members);
        _cleanup_free_ char *s = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (!s) {
                wfail(w, -ENOMEM);
                return NULL;
        }
        MDB_val k = {.mv_size = 7, .mv_data = (void *)"members"},
                v = {.mv_size = strlen(s), .mv_data = s};
        int r = store_errno(mdb_put(w->txn, w->d->meta, &k, &v, 0));
        if (r < 0) {
                wfail(w, r);
                return NULL;
        }
        return index_result(w);
}

/* The meta table's "epoch" record: format byte EPOCH_V1, then the epoch (8 bytes BE). */
static int epoch_get(MDB_txn *txn, const store_dbis *d, uint64_t *ret)
{
        MDB_val k = {.mv_size = 5, .mv_data = (void *)"epoch"}, v;
        int rc = mdb_get(txn, d->meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
                *ret = 0;
                return 0;
        }
        if (rc != 0)
                return store_errno(rc);
        const unsigned char *p = v.mv_data;
        if (v.mv_size != 9 || p[0] != EPOCH_V1)
                return -EBADMSG;
        uint64_t e = 0;
        for (int i = 1; i < 9; i++)
                e = e << 8 | p[i];
        *ret = e;
        return 0;
}

/* EPOCH_SET: the first one wins, later ones change nothing (every leader proposes one while it
 * sees none, so two may be in flight). The value is random, chosen by the proposing leader, never
 * here: apply must be the same on every replica. */
static json_t *apply_epoch_set(wctx *w, json_t *cmd)
{
        uint64_t epoch, cur;

        if (block_epoch_parse(jstr(cmd, "epoch"), &epoch) < 0)
                return error_result(400, "epoch must be 16 lowercase hex digits, not all zero");
        int r = epoch_get(w->txn, w->d, &cur);
        if (r < 0) {
                wfail(w, r);
                return NULL;
        }
        if (cur == 0) {
                unsigned char b[9] = {EPOCH_V1};
                for (int i = 0; i < 8; i++)
                        b[1 + i] = (unsigned char)(epoch >> (56 - 8 * i));
                MDB_val k = {.mv_size = 5, .mv_data = (void *)"epoch"},
                        v = {.mv_size = sizeof(b), .mv_data = b};
                r = store_errno(mdb_put(w->txn, w->d->meta, &k, &v, 0));
                if (r < 0) {
                        wfail(w, r);
                        return NULL;
                }
                w->epoch_set = epoch;
        }
        return index_result(w);
}

/* ---- dedup ---- */

static void u64be(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static int dedup_lookup(MDB_txn *txn, const store_dbis *d, const char *id, json_t **ret)
{
        MDB_val k = {.mv_size = strlen(id), .mv_data = (void *)id}, v;

        if (k.mv_size == 0 || k.mv_size > 400)
                return -ENOENT;
        int rc = mdb_get(txn, d->dedup, &k, &v);
        if (rc != 0)
                return store_errno(rc);
        *ret = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        return *ret ? 0 : -EBADMSG;
}

static int dedup_remember(wctx *w, const char *id, const json_t *result)
{
        _cleanup_free_ char *s = json_dumps(result, JSON_COMPACT);
        unsigned char seq[8];
        int rc;

        if (!s)
                return -ENOMEM;
        if (strlen(id) > 400)
                return 0; /* not remembered: retries of it are not recognised */
        MDB_val k = {.mv_size = strlen(id), .mv_data = (void *)id},
                v = {.mv_size = strlen(s), .mv_data = s};
        rc = mdb_put(w->txn, w->d->dedup, &k, &v, 0);
        if (rc != 0)
                return store_errno(rc);
        u64be(seq, w->meta.dedup_next++);
        MDB_val sk = {.mv_size = 8, .mv_data = seq};
        rc = mdb_put(w->txn, w->d->dedup_order, &sk, &k, MDB_APPEND);
        if (rc != 0)
                return store_errno(rc);
        while (w->meta.dedup_next - w->meta.dedup_first > FSM_DEDUP_MAX) {
                MDB_val old;
                u64be(seq, w->meta.dedup_first++);
                rc = mdb_get(w->txn, w->d->dedup_order, &sk, &old);
                if (rc == MDB_NOTFOUND)
                        continue;
                if (rc != 0)
                        return store_errno(rc);
                /* OLD points into the transaction: delete the id before its order record. */
                rc = mdb_del(w->txn, w->d->dedup, &old, NULL);
                if (rc != 0 && rc != MDB_NOTFOUND)
                        return store_errno(rc);
                rc = mdb_del(w->txn, w->d->dedup_order, &sk, NULL);
                if (rc != 0)
                        return store_errno(rc);
        }
        return 0;
}

/* ---- apply ---- */

static json_t *dispatch(wctx *w, json_t *cmd, batch_source *src)
{
        const char *op = jstr(cmd, "op");

        if (!json_is_object(cmd) || !op)
                return error_result(400, "undecodable command");
        if (strcmp(op, "dataset_ensure") == 0)
                return apply_dataset_ensure(w, cmd);
        if (strcmp(op, "dataset_phase") == 0)
                return apply_dataset_phase(w, cmd);
        if (strcmp(op, "tree_begin") == 0)
                return apply_tree_begin(w, cmd);
        if (strcmp(op, "tree_batch") == 0)
                return apply_tree_batch(w, cmd, src);
        if (strcmp(op, "tree_commit") == 0)
                return apply_tree_commit(w, cmd);
        if (strcmp(op, "tree_abort") == 0)
                return apply_tree_abort(w, cmd);
        if (strcmp(op, "worker_register") == 0)
                return apply_worker_register(w, cmd);
        if (strcmp(op, "label_set") == 0)
                return apply_label(w, cmd, true);
        if (strcmp(op, "label_delete") == 0)
                return apply_label(w, cmd, false);
        if (strcmp(op, "members_set") == 0)
                return apply_members_set(w, cmd);
        if (strcmp(op, "epoch_set") == 0)
                return apply_epoch_set(w, cmd);
        return error_result(400, "unknown command");
}

/* The binary TREE_BATCH (fsm_command_encode): its header as a JSON command, its entries in SRC.
 * NULL when undecodable. */
static json_t *batch_decode(const unsigned char *p, size_t len, batch_source *src)
{
        const unsigned char *end = p + len;
        char *fields[3] = {};
        uint64_t n, l;
        json_t *cmd = NULL;

        p++; /* the format byte */
        for (int i = 0; i < 3; i++) {
                if (store_varint_get(&p, end, &l) < 0 || l > 4096 || l > (uint64_t)(end - p))
                        goto out;
                fields[i] = strndup((const char *)p, l);
                if (!fields[i] || strlen(fields[i]) != l)
                        goto out;
                p += l;
        }
        if (store_varint_get(&p, end, &n) < 0)
                goto out;
        cmd = json_pack("{s:s,s:s,s:s,s:s}", "op", "tree_batch", "id", fields[0], "dataset",
                        fields[1], "sync_id", fields[2]);
        *src = (batch_source){.p = p, .end = end, .remaining = n};
out:
        for (int i = 0; i < 3; i++)
                free(fields[i]);
        return cmd;
}

int fsm_apply(fsm *f, const void *buf, size_t len, json_t **ret_result)
{
        json_auto_t *cmd = NULL;
        json_auto_t *result = NULL;
        _cleanup_free_ batch_source *src = calloc(1, sizeof(*src));
        wctx w = {};
        int r;

        if (!src)
                return -ENOMEM;
        if (len > 0 && *(const unsigned char *)buf == FSM_TREE_BATCH_V1)
                cmd = batch_decode(buf, len, src);
        else {
                cmd = json_loadb(buf, len, 0, NULL);
                src->json = json_object_get(cmd, "entries");
        }

        r = store_db_begin(f->db, true, &w.txn, &w.d);
        if (r < 0)
                return r;
        r = store_meta_get(w.txn, w.d, &w.meta);
        if (r < 0)
                goto fail;
        w.meta.applied++;

        const char *id = jstr(cmd, "id");
        if (id) {
                r = dedup_lookup(w.txn, w.d, id, &result);
                if (r < 0 && r != -ENOENT)
                        goto fail;
        }
        if (!result) {
                /* Every command takes a position, refused ones too, so that the index is the
                 * same on every replica. */
                w.meta.index++;
                result = dispatch(&w, cmd, src);
                if (!result || w.err) {
                        r = w.err ?: -ENOMEM;
                        goto fail;
                }
                if (id) {
                        r = dedup_remember(&w, id, result);
                        if (r < 0)
                                goto fail;
                }
        }
        r = store_meta_put(w.txn, w.d, &w.meta);
        if (r < 0)
                goto fail;
        cache_drop(&w);
        r = store_db_commit(f->db, w.txn);
        if (r < 0)
                return r;
        if (w.epoch_set)
                __atomic_store_n(&f->epoch, w.epoch_set, __ATOMIC_RELEASE);
        if (ret_result)
                *ret_result = TAKE_PTR(result);
        return 0;
fail:
        cache_drop(&w);
        store_db_abort(f->db, w.txn);
        return r;
}

/* TREE_BATCH in binary (fsm.h): parsing JSON cost ~10 µs per entry on the loop thread of every
 * master, the binary form well under one, and it is a third of the size in raft's log. */
static int batch_encode(const json_t *cmd, char **ret_buf, size_t *ret_len)
{
        const json_t *entries = json_object_get(cmd, "entries");
        const char *fields[3] = {jstr(cmd, "id"), jstr(cmd, "dataset"), jstr(cmd, "sync_id")};
        size_t cap = 64, n = 0, i;
        const char *prev = "";
        json_t *o;

        for (int k = 0; k < 3; k++) {
                if (!fields[k])
                        return -EINVAL;
                cap += 10 + strlen(fields[k]);
        }
        json_array_foreach(entries, i, o)
                cap += 40 + strlen(jstr(o, "path") ?: "") + strlen(jstr(o, "etag") ?: "");
        _cleanup_free_ unsigned char *b = malloc(cap);
        if (!b)
                return -ENOMEM;
        b[n++] = FSM_TREE_BATCH_V1;
        for (int k = 0; k < 3; k++) {
                size_t l = strlen(fields[k]);
                n += store_varint_put(b + n, l);
                memcpy(b + n, fields[k], l);
                n += l;
        }
        n += store_varint_put(b + n, json_array_size(entries));
        json_array_foreach(entries, i, o) {
                batch_entry e;
                int r = entry_from_json(o, &e);
                if (r < 0 || !e.path || strlen(e.path) > 4096 || strlen(e.etag) > STORE_MAX_ETAG)
                        return -EINVAL;
                size_t shared = 0, pl = strlen(e.path);
                while (prev[shared] && prev[shared] == e.path[shared])
                        shared++;
                b[n++] = (unsigned char)e.kind;
                n += store_varint_put(b + n, shared);
                n += store_varint_put(b + n, pl - shared);
                memcpy(b + n, e.path + shared, pl - shared);
                n += pl - shared;
                prev = e.path;
                if (e.kind != BATCH_FILE)
                        continue;
                size_t el = strlen(e.etag);
                n += store_varint_put(b + n, e.size);
                n += store_varint_put(b + n, store_zigzag(e.mtime));
                n += store_varint_put(b + n, el);
                memcpy(b + n, e.etag, el);
                n += el;
        }
        *ret_buf = (char *)TAKE_PTR(b);
        *ret_len = n;
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
        if (strcmp(jstr(cmd, "op") ?: "", "tree_batch") == 0)
                return batch_encode(cmd, ret_buf, ret_len);
        char *s = json_dumps(cmd, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        *ret_buf = s;
        *ret_len = strlen(s);
        return 0;
}

/* ---- snapshots ---- */

static int read_meta(fsm *f, store_meta *ret)
{
        MDB_txn *txn;
        const store_dbis *d;
        int r = store_db_begin(f->db, false, &txn, &d);
        if (r < 0)
                return r;
        r = store_meta_get(txn, d, ret);
        store_db_end(f->db, txn);
        return r;
}

uint64_t fsm_applied(fsm *f)
{
        store_meta m = {};
        (void)read_meta(f, &m);
        return m.applied;
}

uint64_t fsm_index(fsm *f)
{
        store_meta m = {};
        (void)read_meta(f, &m);
        return m.index;
}

int fsm_snapshot_descriptor(fsm *f, char **ret_buf, size_t *ret_len)
{
        store_meta m;
        int r = read_meta(f, &m);
        if (r < 0)
                return r;
        char *s = NULL;
        if (asprintf(&s, "{\"format\":\"weir-state\",\"v\":%d,\"applied\":%" PRIu64 "}",
                     FSM_SNAPSHOT_V1, m.applied) < 0)
                return -ENOMEM;
        *ret_buf = s;
        *ret_len = strlen(s);
        return 0;
}

int fsm_snapshot_parse(const void *buf, size_t len, uint64_t *ret_applied)
{
        json_auto_t *j = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, NULL);
        json_t *a = json_object_get(j, "applied");

        if (!json_is_object(j) || strcmp(jstr(j, "format") ?: "", "weir-state") != 0 ||
            json_integer_value(json_object_get(j, "v")) != FSM_SNAPSHOT_V1 || !json_is_integer(a) ||
            json_integer_value(a) < 0)
                return -EBADMSG;
        *ret_applied = (uint64_t)json_integer_value(a);
        return 0;
}

int fsm_flush(fsm *f)
{
        return store_db_flush(f->db);
}

int fsm_copy(fsm *f, int fd)
{
        return store_db_copy(f->db, fd);
}

int fsm_replace(fsm *f, const char *path)
{
        int r = store_db_replace(f->db, path);
        if (r < 0)
                return r;
        return epoch_reload(f);
}

/* ---- reads ---- */

typedef struct rctx {
        fsm *f;
        MDB_txn *txn;
        const store_dbis *d;
} rctx;

static int rbegin(fsm *f, rctx *c)
{
        c->f = f;
        return store_db_begin(f->db, false, &c->txn, &c->d);
}

static void rend(rctx *c)
{
        store_db_end(c->f->db, c->txn);
        c->txn = NULL;
}

json_t *fsm_result(fsm *f, const char *request_id)
{
        rctx c;
        json_t *res = NULL;
        if (rbegin(f, &c) < 0)
                return NULL;
        (void)dedup_lookup(c.txn, c.d, request_id, &res);
        rend(&c);
        return res;
}

static json_t *dataset_public(const json_t *ds)
{
        return json_pack(
                "{s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?}", "name",
                json_object_get(ds, "name"), "phase", json_object_get(ds, "phase"), "reason",
                json_object_get(ds, "reason"), "mounts", json_object_get(ds, "mounts"),
                "ufs_total_size", json_object_get(ds, "ufs_total_size"), "total_files",
                json_object_get(ds, "total_files"), "created", json_object_get(ds, "created"),
                "synced", json_object_get(ds, "synced"), "sync_error",
                json_object_get(ds, "sync_error"), "block_size", json_object_get(ds, "block_size"));
}

/* The dataset record NAME, read in a transaction of its own. */
static int ds_read(fsm *f, const char *name, json_t **ret)
{
        rctx c;
        int r = rbegin(f, &c);
        if (r < 0)
                return r;
        r = ds_get(c.txn, c.d, name, ret);
        rend(&c);
        return r;
}

/* INTO (freed on failure) filled by FN from every record of the table at DBI_OFFSET in
 * store_dbis, in one read transaction. */
static json_t *collect(fsm *f, size_t dbi_offset, store_record_fn fn, json_t *into)
{
        rctx c;

        if (!into || rbegin(f, &c) < 0) {
                json_decref(into);
                return NULL;
        }
        (void)store_db_each(c.txn, *(const MDB_dbi *)((const char *)c.d + dbi_offset), fn, into);
        rend(&c);
        return into;
}

bool fsm_has_dataset(fsm *f, const char *name)
{
        json_auto_t *ds = NULL;
        return ds_read(f, name, &ds) == 0;
}

static int datasets_add(const MDB_val *k, const MDB_val *v, void *userdata)
{
        (void)k;
        json_auto_t *ds = json_loadb(v->mv_data, v->mv_size, 0, NULL);
        if (ds)
                json_array_append_new(userdata, dataset_public(ds));
        return 0;
}

json_t *fsm_datasets(fsm *f)
{
        return collect(f, offsetof(store_dbis, datasets), datasets_add, json_array());
}

int fsm_dataset(fsm *f, const char *name, json_t **ret)
{
        json_auto_t *ds = NULL;
        int r = ds_read(f, name, &ds);
        if (r < 0)
                return r;
        *ret = dataset_public(ds);
        return *ret ? 0 : -ENOMEM;
}

int fsm_labels(fsm *f, const char *dataset, json_t **ret)
{
        json_auto_t *ds = NULL;
        int r = ds_read(f, dataset, &ds);
        if (r < 0)
                return r;
        *ret = json_deep_copy(json_object_get(ds, "labels"));
        return *ret ? 0 : -ENOMEM;
}

static int workers_add(const MDB_val *k, const MDB_val *v, void *userdata)
{
        _cleanup_free_ char *node = strndup(k->mv_data, k->mv_size);
        json_t *wk = json_loadb(v->mv_data, v->mv_size, 0, NULL);
        if (node && wk)
                json_object_set_new(userdata, node, wk);
        else
                json_decref(wk);
        return 0;
}

json_t *fsm_workers(fsm *f)
{
        return collect(f, offsetof(store_dbis, workers), workers_add, json_object());
}

json_t *fsm_members(fsm *f)
{
        rctx c;
        MDB_val k = {.mv_size = 7, .mv_data = (void *)"members"}, v;
        json_t *members = NULL;

        if (rbegin(f, &c) < 0)
                return NULL;
        if (mdb_get(c.txn, c.d->meta, &k, &v) == 0) {
                json_auto_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
                if (json_integer_value(json_object_get(rec, "v")) == MEMBERS_V1)
                        members = json_deep_copy(json_object_get(rec, "members"));
        }
        rend(&c);
        return members;
}

uint64_t fsm_epoch(fsm *f)
{
        return __atomic_load_n(&f->epoch, __ATOMIC_ACQUIRE);
}

/* The entry at PATH of the dataset whose root is ROOT (the root itself for "/"). */
static int lookup(rctx *c, uint64_t root, const char *path, uint64_t *ret_parent, store_entry *ret)
{
        path_iter it = {.p = path};
        store_entry e = {.dir = true, .id = root};
        uint64_t parent = STORE_ROOT_PARENT;
        int r;

        if (!path_valid(path))
                return -ENOENT;
        while ((r = path_next(&it)) > 0) {
                if (!e.dir)
                        return -ENOTDIR;
                parent = e.id;
                r = store_tree_get(c->txn, c->d, parent, it.name, it.len, &e);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return -ENOENT;
        if (ret_parent)
                *ret_parent = parent;
        *ret = e;
        return 0;
}

/* The store URL of the file at PATH ("/MOUNT/REST"), from the dataset's "urls". */
static char *file_url(const json_t *ds, const char *path)
{
        const char *m = path + 1, *slash = strchr(m, '/');
        char mount[STORE_MAX_NAME + 1];

        if (!slash || (size_t)(slash - m) > STORE_MAX_NAME)
                return strdup("");
        memcpy(mount, m, (size_t)(slash - m));
        mount[slash - m] = 0;
        json_t *u = json_object_get(json_object_get(ds, "urls"), mount);
        const char *prefix = jstr(u, "prefix");
        if (!prefix)
                return strdup("");
        _cleanup_free_ char *rest = json_is_true(json_object_get(u, "escape"))
                                            ? ufs_escape_path(slash + 1)
                                            : strdup(slash + 1);
        char *s;
        if (!rest || asprintf(&s, "%s%s", prefix, rest) < 0)
                return NULL;
        return s;
}

static json_t *entry_json(const json_t *ds, const char *path, const char *name, size_t name_len,
                          const store_entry *e)
{
        json_t *o =
                json_pack("{s:s%,s:s}", "name", name, name_len, "type", e->dir ? "dir" : "file");
        if (!o)
                return NULL;
        if (e->mtime)
                json_object_set_new(o, "mtime", json_integer(e->mtime));
        if (e->dir)
                return o;
        _cleanup_free_ char *url = file_url(ds, path);
        if (!url || json_object_set_new(o, "size", json_integer((json_int_t)e->size)) < 0 ||
            json_object_set_new(o, "etag", json_stringn(e->etag, e->etag_len)) < 0 ||
            json_object_set_new(o, "file_id", json_integer((json_int_t)e->id)) < 0 ||
            json_object_set_new(o, "version", json_integer((json_int_t)e->version)) < 0 ||
            json_object_set_new(o, "ufs_url", json_string(url)) < 0) {
                json_decref(o);
                return NULL;
        }
        if (!e->mtime)
                json_object_set_new(o, "mtime", json_integer(0));
        return o;
}

typedef struct ls_state {
        const json_t *ds;
        const char *dir_path;
        json_t *entries;
        size_t limit, n;
        char *last;
        bool more;
} ls_state;

static int ls_one(const char *name, size_t name_len, const store_entry *e, void *userdata)
{
        ls_state *s = userdata;
        _cleanup_free_ char *path = NULL;

        if (s->limit && s->n == s->limit) {
                s->more = true;
                return 1;
        }
        if (asprintf(&path, "%s/%.*s", strcmp(s->dir_path, "/") == 0 ? "" : s->dir_path,
                     (int)name_len, name) < 0)
                return -ENOMEM;
        json_t *o = entry_json(s->ds, path, name, name_len, e);
        if (!o || json_array_append_new(s->entries, o) < 0)
                return -ENOMEM;
        s->n++;
        free(s->last);
        s->last = strndup(name, name_len);
        return s->last ? 0 : -ENOMEM;
}

/* Begins a read transaction in C and finds PATH of DATASET: its record in *RET_DS, the entry in
 * *RET (-ENOTDIR for a file when DIR). On success the caller ends the transaction (rend); on
 * failure it is ended already. */
static int rbegin_path(fsm *f, rctx *c, const char *dataset, const char *path, bool dir,
                       json_t **ret_ds, store_entry *ret)
{
        int r = rbegin(f, c);
        if (r < 0)
                return r;
        r = ds_get(c->txn, c->d, dataset, ret_ds);
        if (r >= 0)
                r = lookup(c, ds_root(*ret_ds), path, NULL, ret);
        if (r >= 0 && dir && !ret->dir)
                r = -ENOTDIR;
        if (r < 0)
                rend(c);
        return r;
}

int fsm_ls_page(fsm *f, const char *dataset, const char *path, const char *after, size_t limit,
                json_t **ret)
{
        rctx c;
        json_auto_t *ds = NULL;
        store_entry e;
        ls_state s = {.dir_path = path, .limit = limit};
        int r = rbegin_path(f, &c, dataset, path, true, &ds, &e);

        if (r < 0)
                return r;
        s.ds = ds;
        s.entries = json_array();
        r = s.entries ? store_tree_children(c.txn, c.d, e.id, after, ls_one, &s) : -ENOMEM;
        rend(&c);
        if (r < 0) {
                json_decref(s.entries);
                free(s.last);
                return r;
        }
        *ret = json_pack("{s:s,s:o,s:s*}", "path", path, "entries", s.entries, "next",
                         s.more ? s.last : NULL);
        free(s.last);
        return *ret ? 0 : -ENOMEM;
}

int fsm_ls(fsm *f, const char *dataset, const char *path, json_t **ret)
{
        return fsm_ls_page(f, dataset, path, NULL, 0, ret);
}

int fsm_stat(fsm *f, const char *dataset, const char *path, json_t **ret)
{
        rctx c;
        json_auto_t *ds = NULL;
        store_entry e;
        int r = rbegin_path(f, &c, dataset, path, false, &ds, &e);
        if (r < 0)
                return r;

        const char *last = strrchr(path, '/');
        const char *name = strcmp(path, "/") == 0 ? "" : last + 1;
        /* "/a/b/" names b */
        _cleanup_free_ char *trimmed = NULL;
        if (!*name && strcmp(path, "/") != 0) {
                trimmed = strdup(path);
                if (trimmed) {
                        while (strlen(trimmed) > 1 && trimmed[strlen(trimmed) - 1] == '/')
                                trimmed[strlen(trimmed) - 1] = 0;
                        name = strrchr(trimmed, '/') + 1;
                }
        }
        *ret = entry_json(ds, trimmed ?: path, name, strlen(name), &e);
        rend(&c);
        return *ret ? 0 : -ENOMEM;
}

int fsm_file(fsm *f, uint64_t file_id, json_t **ret)
{
        rctx c;
        const char *names[FSM_MAX_DEPTH + 2];
        size_t lens[FSM_MAX_DEPTH + 2], n = 0;
        uint64_t id = file_id, parent, first_parent = 0;
        json_auto_t *ds = NULL;
        _cleanup_free_ char *dataset = NULL, *path = NULL;
        store_entry e;
        int r = rbegin(f, &c);

        if (r < 0)
                return r;
        /* Up the parents to the dataset's root, whose name is the dataset's. */
        for (;;) {
                r = store_ids_get(c.txn, c.d, id, &parent, &names[n], &lens[n]);
                if (r < 0)
                        goto out;
                if (n == 0)
                        first_parent = parent;
                n++;
                if (parent == STORE_ROOT_PARENT)
                        break;
                if (n >= ELEMENTSOF(names)) {
                        r = -EBADMSG;
                        goto out;
                }
                id = parent;
        }
        if (n < 2) {
                r = -ENOENT; /* a dataset's root */
                goto out;
        }
        r = store_tree_get(c.txn, c.d, first_parent, names[0], lens[0], &e);
        if (r >= 0 && (e.dir || e.id != file_id))
                r = -ENOENT;
        if (r < 0)
                goto out;
        dataset = strndup(names[n - 1], lens[n - 1]);
        size_t plen = 0;
        for (size_t i = 0; i + 1 < n; i++)
                plen += 1 + lens[i];
        path = malloc(plen + 1);
        if (!dataset || !path) {
                r = -ENOMEM;
                goto out;
        }
        char *p = path;
        for (size_t i = n - 1; i-- > 0;) {
                *p++ = '/';
                memcpy(p, names[i], lens[i]);
                p += lens[i];
        }
        *p = 0;
        r = ds_get(c.txn, c.d, dataset, &ds);
        if (r < 0)
                goto out;
        json_t *o = entry_json(ds, path, names[0], lens[0], &e);
        if (!o) {
                r = -ENOMEM;
                goto out;
        }
        json_object_set_new(o, "dataset", json_string(dataset));
        json_object_set_new(o, "path", json_string(path));
        json_object_set(o, "block_size", json_object_get(ds, "block_size"));
        *ret = o;
out:
        rend(&c);
        return r;
}

typedef struct children_state {
        int (*fn)(const fsm_child *c, void *userdata);
        void *userdata;
} children_state;

static int child_one(const char *name, size_t name_len, const store_entry *e, void *userdata)
{
        children_state *s = userdata;
        char nbuf[STORE_MAX_NAME + 1], ebuf[STORE_MAX_ETAG + 1];

        memcpy(nbuf, name, name_len);
        nbuf[name_len] = 0;
        if (e->etag_len)
                memcpy(ebuf, e->etag, e->etag_len);
        ebuf[e->etag_len] = 0;
        fsm_child c = {
                .name = nbuf,
                .dir = e->dir,
                .size = e->size,
                .mtime = e->mtime,
                .etag = ebuf,
        };
        return s->fn(&c, s->userdata);
}

int fsm_children(fsm *f, const char *dataset, const char *path,
                 int (*fn)(const fsm_child *c, void *userdata), void *userdata)
{
        rctx c;
        json_auto_t *ds = NULL;
        store_entry e;
        children_state s = {.fn = fn, .userdata = userdata};
        int r = rbegin_path(f, &c, dataset, path, true, &ds, &e);

        if (r < 0)
                return r;
        r = store_tree_children(c.txn, c.d, e.id, NULL, child_one, &s);
        rend(&c);
        return r;
}

/* The paged listing's raw read (listing.c encodes it without JSON): FN sees each child of PATH
 * whose name sorts after AFTER, in name order, from one read view, until it returns > 0. */
int fsm_ls_raw(fsm *f, const char *dataset, const char *path, const char *after, store_child_fn fn,
               void *userdata)
{
        rctx c;
        json_auto_t *ds = NULL;
        store_entry e;
        int r = rbegin_path(f, &c, dataset, path, true, &ds, &e);

        if (r < 0)
                return r;
        r = store_tree_children(c.txn, c.d, e.id, after, fn, userdata);
        rend(&c);
        return r < 0 ? r : 0;
}

/* ---- command constructors ---- */

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

json_t *fsm_cmd_tree_batch(const char *dataset, const char *sync_id, const json_t *entries)
{
        return json_pack("{s:s,s:s,s:s,s:O}", "op", "tree_batch", "dataset", dataset, "sync_id",
                         sync_id, "entries", entries);
}

json_t *fsm_cmd_tree_commit(const char *dataset, const char *sync_id, double time,
                            const json_t *urls)
{
        return json_pack("{s:s,s:s,s:s,s:f,s:O?}", "op", "tree_commit", "dataset", dataset,
                         "sync_id", sync_id, "time", time, "urls", urls);
}

json_t *fsm_cmd_tree_abort(const char *dataset, const char *sync_id, const char *error)
{
        return json_pack("{s:s,s:s,s:s,s:s*}", "op", "tree_abort", "dataset", dataset, "sync_id",
                         sync_id, "error", error);
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

json_t *fsm_cmd_members_set(const json_t *members)
{
        return json_pack("{s:s,s:O}", "op", "members_set", "members", members);
}

json_t *fsm_cmd_epoch_set(uint64_t epoch)
{
        char e[BLOCK_EPOCH_MAX];

        return json_pack("{s:s,s:s}", "op", "epoch_set", "epoch", block_epoch_format(e, epoch));
}

json_t *fsm_cmd_label_delete(const char *dataset, const char *key)
{
        return json_pack("{s:s,s:s,s:s}", "op", "label_delete", "dataset", dataset, "key", key);
}
