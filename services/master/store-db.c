/* The master's LMDB store: environment, transactions, record encodings, tree primitives. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store-db.h"

#define STORE_MAP_SIZE     (64ull << 30) /* address space only: the file grows as it fills */
#define STORE_MAX_READERS  512
#define STORE_FLUSH_PERIOD 1 /* seconds between background flushes */

struct store_db {
        char *path;
        pthread_rwlock_t env_lock; /* see store-db.h: guards env against a swap */
        MDB_env *env;
        store_dbis dbis;

        /* The thread that opened the database is its one writer (the raft loop). Its reads reuse
         * one read transaction (reset and renewed: it keeps its reader slot), because beginning a
         * fresh one takes LMDB's reader-table mutex, which any API or sync thread may hold while
         * it waits for a CPU: the loop, real-time, must not wait for them (loopwatch.h). */
        pthread_t owner;
        MDB_txn *owner_read; /* reset when not in use; NULL until the first read */
        bool owner_read_busy;

        pthread_t flusher;
        bool flusher_started;
        pthread_mutex_t flush_lock; /* guards stopping; with flush_cond */
        pthread_cond_t flush_cond;
        bool stopping;
};

int store_errno(int rc)
{
        switch (rc) {
        case 0:
                return 0;
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
        case MDB_PAGE_FULL:
                return -ENOSPC;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
                return -EBADMSG;
        case MDB_READERS_FULL:
                return -EAGAIN;
        case MDB_KEYEXIST:
                return -EEXIST;
        case MDB_BAD_VALSIZE:
                return -E2BIG;
        default:
                return rc > 0 ? -rc : -EIO;
        }
}

static int env_open(store_db *db)
{
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        int rc;

        rc = mdb_env_create(&env);
        if (rc == 0)
                rc = mdb_env_set_mapsize(env, STORE_MAP_SIZE);
        if (rc == 0)
                rc = mdb_env_set_maxdbs(env, 8);
        if (rc == 0)
                rc = mdb_env_set_maxreaders(env, STORE_MAX_READERS);
        if (rc == 0)
                rc = mdb_env_open(env, db->path,
                                  MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC | MDB_NORDAHEAD, 0640);
        if (rc == 0)
                rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &db->dbis.meta);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "tree", MDB_CREATE, &db->dbis.tree);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &db->dbis.ids);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "datasets", MDB_CREATE, &db->dbis.datasets);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "workers", MDB_CREATE, &db->dbis.workers);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "dedup", MDB_CREATE, &db->dbis.dedup);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "dedup_order", MDB_CREATE, &db->dbis.dedup_order);
        if (rc == 0) {
                store_meta m;
                int r = store_meta_get(txn, &db->dbis, &m);
                if (r == -ENOENT)
                        r = store_meta_put(txn, &db->dbis, &(store_meta){.next_id = 1});
                if (r < 0) {
                        mdb_txn_abort(txn);
                        mdb_env_close(env);
                        log_error("%s: %s", db->path,
                                  r == -EPROTO ? "written by a newer weir (unknown format)"
                                               : strerror(-r));
                        return r;
                }
                rc = mdb_txn_commit(txn);
                txn = NULL;
        }
        if (rc != 0) {
                if (txn)
                        mdb_txn_abort(txn);
                log_error("Cannot open the state database %s: %s", db->path, mdb_strerror(rc));
                mdb_env_close(env);
                return store_errno(rc);
        }
        db->env = env;
        return 0;
}

static void *flusher_main(void *arg)
{
        store_db *db = arg;

        pthread_mutex_lock(&db->flush_lock);
        while (!db->stopping) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += STORE_FLUSH_PERIOD;
                pthread_cond_timedwait(&db->flush_cond, &db->flush_lock, &until);
                if (db->stopping)
                        break;
                pthread_mutex_unlock(&db->flush_lock);
                int r = store_db_flush(db);
                if (r < 0)
                        log_warning_errno(r, "Flushing %s failed: %m, retrying", db->path);
                pthread_mutex_lock(&db->flush_lock);
        }
        pthread_mutex_unlock(&db->flush_lock);
        return NULL;
}

int store_db_open(const char *path, store_db **ret)
{
        _cleanup_(store_db_freep) store_db *db = calloc(1, sizeof(*db));
        int r;

        if (!db)
                return -ENOMEM;
        pthread_rwlock_init(&db->env_lock, NULL);
        pthread_mutex_init(&db->flush_lock, NULL);
        pthread_cond_init(&db->flush_cond, NULL);
        db->path = strdup(path);
        if (!db->path)
                return -ENOMEM;
        db->owner = pthread_self();
        r = env_open(db);
        if (r < 0)
                return r;
        r = -pthread_create(&db->flusher, NULL, flusher_main, db);
        if (r < 0)
                return r;
        db->flusher_started = true;
        *ret = TAKE_PTR(db);
        return 0;
}

store_db *store_db_free(store_db *db)
{
        if (!db)
                return NULL;
        if (db->flusher_started) {
                pthread_mutex_lock(&db->flush_lock);
                db->stopping = true;
                pthread_cond_broadcast(&db->flush_cond);
                pthread_mutex_unlock(&db->flush_lock);
                pthread_join(db->flusher, NULL);
        }
        if (db->owner_read)
                mdb_txn_abort(db->owner_read);
        if (db->env) {
                mdb_env_sync(db->env, 1);
                mdb_env_close(db->env);
        }
        pthread_rwlock_destroy(&db->env_lock);
        pthread_mutex_destroy(&db->flush_lock);
        pthread_cond_destroy(&db->flush_cond);
        free(db->path);
        free(db);
        return NULL;
}

const char *store_db_path(const store_db *db)
{
        return db->path;
}

int store_db_begin(store_db *db, bool write, MDB_txn **ret_txn, const store_dbis **ret_dbis)
{
        int rc;

        if (!write)
                pthread_rwlock_rdlock(&db->env_lock);
        if (!db->env) {
                if (!write)
                        pthread_rwlock_unlock(&db->env_lock);
                return -EBADFD; /* a failed swap left us without a database */
        }
        if (!write && !db->owner_read_busy && pthread_equal(pthread_self(), db->owner)) {
                rc = db->owner_read ? mdb_txn_renew(db->owner_read)
                                    : mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->owner_read);
                if (rc == 0) {
                        db->owner_read_busy = true;
                        *ret_txn = db->owner_read;
                        *ret_dbis = &db->dbis;
                        return 0;
                }
                if (db->owner_read) { /* renew failed: start afresh next time */
                        mdb_txn_abort(db->owner_read);
                        db->owner_read = NULL;
                }
        }
        rc = mdb_txn_begin(db->env, NULL, write ? 0 : MDB_RDONLY, ret_txn);
        if (rc != 0) {
                if (!write)
                        pthread_rwlock_unlock(&db->env_lock);
                return store_errno(rc);
        }
        *ret_dbis = &db->dbis;
        return 0;
}

int store_db_commit(store_db *db, MDB_txn *txn)
{
        return store_errno(mdb_txn_commit(txn));
}

void store_db_abort(store_db *db, MDB_txn *txn)
{
        if (txn)
                mdb_txn_abort(txn);
}

void store_db_end(store_db *db, MDB_txn *txn)
{
        if (!txn)
                return;
        if (txn == db->owner_read) {
                mdb_txn_reset(txn); /* keeps its reader slot for the next renew */
                db->owner_read_busy = false;
        } else
                mdb_txn_abort(txn);
        pthread_rwlock_unlock(&db->env_lock);
}

int store_db_flush(store_db *db)
{
        pthread_rwlock_rdlock(&db->env_lock);
        int rc = db->env ? mdb_env_sync(db->env, 1) : 0;
        pthread_rwlock_unlock(&db->env_lock);
        return store_errno(rc);
}

int store_db_copy(store_db *db, int fd)
{
        pthread_rwlock_rdlock(&db->env_lock);
        int rc = db->env ? mdb_env_copyfd2(db->env, fd, MDB_CP_COMPACT) : EBADFD;
        pthread_rwlock_unlock(&db->env_lock);
        return store_errno(rc);
}

int store_db_file_meta(const char *path, store_meta *ret)
{
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        store_dbis d = {};
        int rc, r;

        rc = mdb_env_create(&env);
        if (rc == 0)
                rc = mdb_env_set_maxdbs(env, 8);
        if (rc == 0)
                rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0640);
        if (rc == 0)
                rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "meta", 0, &d.meta);
        r = rc == 0 ? store_meta_get(txn, &d, ret) : store_errno(rc);
        if (txn)
                mdb_txn_abort(txn);
        mdb_env_close(env);
        return r;
}

int store_db_replace(store_db *db, const char *path)
{
        store_meta m;
        int r = store_db_file_meta(path, &m);

        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&db->env_lock);
        if (db->owner_read) { /* of the old environment (not in use: we hold env_lock) */
                mdb_txn_abort(db->owner_read);
                db->owner_read = NULL;
        }
        if (db->env) {
                mdb_env_close(db->env);
                db->env = NULL;
        }
        if (rename(path, db->path) < 0)
                r = -errno;
        else {
                /* The lock file describes readers of the old file: start a new one. */
                _cleanup_free_ char *lock = NULL;
                if (asprintf(&lock, "%s-lock", db->path) >= 0)
                        (void)unlink(lock);
        }
        int r2 = env_open(db); /* the old file if the rename failed */
        pthread_rwlock_unlock(&db->env_lock);
        return r < 0 ? r : r2;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64le(const unsigned char *p)
{
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static void put_u64be(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get_u64be(const unsigned char *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

#define META_LEN 41

int store_meta_get(MDB_txn *txn, const store_dbis *d, store_meta *ret)
{
        MDB_val k = {.mv_size = 5, .mv_data = (void *)"state"}, v;
        int rc = mdb_get(txn, d->meta, &k, &v);

        if (rc != 0)
                return store_errno(rc);
        const unsigned char *p = v.mv_data;
        if (v.mv_size < 1)
                return -EBADMSG;
        if (p[0] != STORE_META_V1)
                return -EPROTO;
        if (v.mv_size != META_LEN)
                return -EBADMSG;
        *ret = (store_meta){
                .applied = get_u64le(p + 1),
                .index = get_u64le(p + 9),
                .next_id = get_u64le(p + 17),
                .dedup_first = get_u64le(p + 25),
                .dedup_next = get_u64le(p + 33),
        };
        return 0;
}

int store_meta_put(MDB_txn *txn, const store_dbis *d, const store_meta *m)
{
        unsigned char buf[META_LEN];
        MDB_val k = {.mv_size = 5, .mv_data = (void *)"state"},
                v = {.mv_size = sizeof(buf), .mv_data = buf};

        buf[0] = STORE_META_V1;
        put_u64le(buf + 1, m->applied);
        put_u64le(buf + 9, m->index);
        put_u64le(buf + 17, m->next_id);
        put_u64le(buf + 25, m->dedup_first);
        put_u64le(buf + 33, m->dedup_next);
        return store_errno(mdb_put(txn, d->meta, &k, &v, 0));
}

/* ---- tree records ---- */

size_t store_varint_put(unsigned char *p, uint64_t v)
{
        size_t n = 0;
        while (v >= 0x80) {
                p[n++] = (unsigned char)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (unsigned char)v;
        return n;
}

int store_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *ret)
{
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
                if (*p >= end)
                        return -EBADMSG;
                unsigned char b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

int store_db_each(MDB_txn *txn, MDB_dbi dbi, store_record_fn fn, void *userdata)
{
        MDB_cursor *c;
        MDB_val k, v;
        int r = 0;

        int rc = mdb_cursor_open(txn, dbi, &c);
        if (rc != 0)
                return store_errno(rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                r = fn(&k, &v, userdata);
                if (r != 0)
                        break;
        }
        mdb_cursor_close(c);
        if (r < 0)
                return r;
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

#define KIND_DIR  1
#define KIND_FILE 2

size_t store_entry_encode(const store_entry *e, unsigned char *buf)
{
        size_t n = 0;
        uint64_t zz = store_zigzag(e->mtime);

        buf[n++] = STORE_ENTRY_V1;
        buf[n++] = e->dir ? KIND_DIR : KIND_FILE;
        n += store_varint_put(buf + n, e->id);
        n += store_varint_put(buf + n, zz);
        if (e->dir)
                return n;
        n += store_varint_put(buf + n, e->version);
        n += store_varint_put(buf + n, e->size);
        size_t el = MIN(e->etag_len, (size_t)STORE_MAX_ETAG);
        n += store_varint_put(buf + n, el);
        if (el)
                memcpy(buf + n, e->etag, el);
        return n + el;
}

int store_entry_decode(const MDB_val *v, store_entry *ret)
{
        const unsigned char *p = v->mv_data, *end = p + v->mv_size;
        uint64_t zz, el;
        store_entry e = {};

        if (v->mv_size < 2 || p[0] != STORE_ENTRY_V1 || (p[1] != KIND_DIR && p[1] != KIND_FILE))
                return -EBADMSG;
        e.dir = p[1] == KIND_DIR;
        p += 2;
        if (store_varint_get(&p, end, &e.id) < 0 || store_varint_get(&p, end, &zz) < 0)
                return -EBADMSG;
        e.mtime = store_unzigzag(zz);
        if (!e.dir) {
                if (store_varint_get(&p, end, &e.version) < 0 ||
                    store_varint_get(&p, end, &e.size) < 0 || store_varint_get(&p, end, &el) < 0 ||
                    el > (uint64_t)(end - p))
                        return -EBADMSG;
                e.etag = (const char *)p;
                e.etag_len = (size_t)el;
        }
        *ret = e;
        return 0;
}

size_t store_tree_key(uint64_t parent, const char *name, size_t name_len, unsigned char *key_buf)
{
        put_u64be(key_buf, parent);
        if (name_len)
                memcpy(key_buf + 8, name, name_len);
        return 8 + name_len;
}

int store_tree_get(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, store_entry *ret)
{
        unsigned char kb[8 + STORE_MAX_NAME];
        MDB_val k, v;

        if (name_len == 0 || name_len > STORE_MAX_NAME)
                return -ENOENT;
        k = (MDB_val){.mv_size = store_tree_key(parent, name, name_len, kb), .mv_data = kb};
        int rc = mdb_get(txn, d->tree, &k, &v);
        if (rc != 0)
                return store_errno(rc);
        return store_entry_decode(&v, ret);
}

int store_tree_put(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, const store_entry *e, bool new_id)
{
        unsigned char kb[8 + STORE_MAX_NAME], vb[64 + STORE_MAX_ETAG];
        MDB_val k, v;
        int rc;

        if (name_len == 0 || name_len > STORE_MAX_NAME)
                return -ENAMETOOLONG;
        k = (MDB_val){.mv_size = store_tree_key(parent, name, name_len, kb), .mv_data = kb};
        v = (MDB_val){.mv_size = store_entry_encode(e, vb), .mv_data = vb};
        rc = mdb_put(txn, d->tree, &k, &v, 0);
        if (rc != 0 || !new_id)
                return store_errno(rc);

        /* ids: ID -> format, PARENT, NAME. New ids only grow: append. */
        unsigned char ib[8], rb[9 + STORE_MAX_NAME];
        put_u64be(ib, e->id);
        rb[0] = STORE_IDS_V1;
        put_u64be(rb + 1, parent);
        memcpy(rb + 9, name, name_len);
        k = (MDB_val){.mv_size = 8, .mv_data = ib};
        v = (MDB_val){.mv_size = 9 + name_len, .mv_data = rb};
        rc = mdb_put(txn, d->ids, &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST) /* not the largest id (a restored older layout): plain put */
                rc = mdb_put(txn, d->ids, &k, &v, 0);
        return store_errno(rc);
}

int store_tree_del(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, uint64_t id)
{
        unsigned char kb[8 + STORE_MAX_NAME], ib[8];
        MDB_val k;
        int rc;

        if (name_len == 0 || name_len > STORE_MAX_NAME)
                return -ENOENT;
        k = (MDB_val){.mv_size = store_tree_key(parent, name, name_len, kb), .mv_data = kb};
        rc = mdb_del(txn, d->tree, &k, NULL);
        if (rc != 0)
                return store_errno(rc);
        put_u64be(ib, id);
        k = (MDB_val){.mv_size = 8, .mv_data = ib};
        rc = mdb_del(txn, d->ids, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

/* Byte order, shorter first on a common prefix: LMDB's key order, and strcmp's. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        int c = memcmp(a, b, MIN(alen, blen));
        return c ? c : (alen > blen) - (alen < blen);
}

int store_tree_children(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *after,
                        store_child_fn fn, void *userdata)
{
        unsigned char kb[8 + STORE_MAX_NAME];
        size_t after_len = after ? strlen(after) : 0;
        MDB_cursor *c;
        MDB_val k, v;
        int rc, r = 0;

        if (after_len > STORE_MAX_NAME)
                after_len = STORE_MAX_NAME;
        rc = mdb_cursor_open(txn, d->tree, &c);
        if (rc != 0)
                return store_errno(rc);
        k = (MDB_val){.mv_size = store_tree_key(parent, after, after_len, kb), .mv_data = kb};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (rc == 0) {
                if (k.mv_size < 8 || memcmp(k.mv_data, kb, 8) != 0)
                        break;
                const char *name = (const char *)k.mv_data + 8;
                size_t name_len = k.mv_size - 8;
                if (after && name_cmp(name, name_len, after, strlen(after)) <= 0) {
                        /* AFTER itself, or names under a longer AFTER's stored prefix */
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                        continue;
                }
                store_entry e;
                r = store_entry_decode(&v, &e);
                if (r < 0)
                        break;
                r = fn(name, name_len, &e, userdata);
                if (r != 0)
                        break;
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
        if (r < 0)
                return r;
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

static int stop_at_first(const char *name, size_t name_len, const store_entry *e, void *userdata)
{
        *(bool *)userdata = true;
        return 1;
}

int store_tree_has_children(MDB_txn *txn, const store_dbis *d, uint64_t id)
{
        bool any = false;
        int r = store_tree_children(txn, d, id, NULL, stop_at_first, &any);
        return r < 0 ? r : any;
}

int store_ids_get(MDB_txn *txn, const store_dbis *d, uint64_t id, uint64_t *ret_parent,
                  const char **ret_name, size_t *ret_name_len)
{
        unsigned char ib[8];
        MDB_val k = {.mv_size = 8, .mv_data = ib}, v;

        put_u64be(ib, id);
        int rc = mdb_get(txn, d->ids, &k, &v);
        if (rc != 0)
                return store_errno(rc);
        const unsigned char *p = v.mv_data;
        if (v.mv_size < 10 || p[0] != STORE_IDS_V1)
                return -EBADMSG;
        *ret_parent = get_u64be(p + 1);
        *ret_name = (const char *)p + 9;
        *ret_name_len = v.mv_size - 9;
        return 0;
}
