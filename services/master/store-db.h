/* The master's on-disk store: one LMDB environment holding the replicated state (not the raft log). */
#pragma once

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

/*
 * Threads: exactly one thread writes, the one that opened the database (the raft loop applying
 * entries, restoring snapshots); any number of threads read, each in its own read transaction
 * (MDB_NOTLS), never waiting for a writer: LMDB's copy-on-write pages give every read
 * transaction the state as of its start. The writer's own reads reuse one read transaction, so
 * that it never waits for LMDB's reader-table mutex (store-db.c).
 * The one lock, env_lock (a rwlock), only protects the environment pointer against a swap
 * (store_db_replace, when a lagging master installs a peer's copy): readers hold it shared for
 * the length of their transaction; the swap takes it exclusively. Appliers never take it.
 *
 * Durability: commits are not fsync'ed (MDB_NOSYNC) so that an apply never waits for the disk on
 * the loop thread; a background thread flushes once a second, and store_db_flush() before a
 * raft snapshot makes sure the database is at least as new as the snapshot that names it. A
 * crash loses at most the last second of applied entries, which raft replays from its log.
 *
 * Records (all versioned, first byte = format):
 *   meta  "state"        -> STORE_META_V1: applied, index, next_id, dedup_first, dedup_next (u64 LE)
 *   meta  "members"      -> JSON {"v":1,"members":[...]} (fsm.c)
 *   meta  "epoch"        -> format 1, the cluster epoch (8 bytes BE) (fsm.c)
 *   tree  PARENT(8 BE)+NAME -> entry: format 1, kind, varint id, zigzag mtime [, version, size,
 *                              etag length, etag]
 *   ids   ID(8 BE)       -> format 1, PARENT(8 BE), NAME   (to find a file's path from its id)
 *   datasets NAME        -> JSON {"v":1,...}; workers NODE -> JSON; dedup ID -> JSON result;
 *   dedup_order SEQ(8 BE) -> ID
 */

#define STORE_FORMAT      1
#define STORE_MAX_NAME    255 /* NAME_MAX: what a FUSE mount can show */
#define STORE_MAX_ETAG    512
#define STORE_ENTRY_V1    1
#define STORE_IDS_V1      1
#define STORE_META_V1     1
#define STORE_ROOT_PARENT 0 /* a dataset's root directory has parent 0 and the dataset as name */

typedef struct store_db store_db;

typedef struct store_dbis {
        MDB_dbi meta, tree, ids, datasets, workers, dedup, dedup_order;
} store_dbis;

typedef struct store_meta {
        uint64_t applied; /* raft entries given to the state machine, duplicates included */
        uint64_t index;   /* commands that took a position (fsm_index) */
        uint64_t next_id; /* file and directory ids are never reused */
        uint64_t dedup_first, dedup_next;
} store_meta;

/* One tree entry, decoded. ETAG points into the transaction's memory (or the caller's). */
typedef struct store_entry {
        bool dir;
        uint64_t id;
        int64_t mtime;
        uint64_t version; /* files */
        uint64_t size;
        const char *etag; /* not NUL-terminated; ETAG_LEN bytes, 0 = none */
        size_t etag_len;
} store_entry;

/* Opens (creating) the database file PATH. */
int store_db_open(const char *path, store_db **ret);
store_db *store_db_free(store_db *db);
DEFINE_TRIVIAL_CLEANUP_FUNC(store_db *, store_db_free);

const char *store_db_path(const store_db *db);

/* Transactions. A read transaction also holds env_lock shared until store_db_end(). */
int store_db_begin(store_db *db, bool write, MDB_txn **ret_txn, const store_dbis **ret_dbis);
int store_db_commit(store_db *db, MDB_txn *txn); /* write */
void store_db_abort(store_db *db, MDB_txn *txn); /* write */
void store_db_end(store_db *db, MDB_txn *txn);   /* read */

/* Forces the written pages to disk (fsync). */
int store_db_flush(store_db *db);

/* A consistent, compacted copy of the whole database into FD, from a read view: writers go on. */
int store_db_copy(store_db *db, int fd);
/* Replaces the database with the (checked) file at PATH, which is renamed over ours. */
int store_db_replace(store_db *db, const char *path);
/* Reads the meta record of the database file PATH (not opened by anyone else). */
int store_db_file_meta(const char *path, store_meta *ret);

/* Translates an MDB_* code to -errno; the only place that does. */
int store_errno(int rc);

int store_meta_get(MDB_txn *txn, const store_dbis *d, store_meta *ret);
int store_meta_put(MDB_txn *txn, const store_dbis *d, const store_meta *m);

/* The integer encodings of the tree records and the binary tree batch (fsm.c): LEB128 varints
 * (at most 10 bytes each; get: -EBADMSG when truncated or longer) and zigzag for signed values,
 * so that small negative mtimes stay short. */
size_t store_varint_put(unsigned char *p, uint64_t v);
int store_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *ret);
static inline uint64_t store_zigzag(int64_t v)
{
        return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline int64_t store_unzigzag(uint64_t v)
{
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Calls FN for every record of DBI in key order; FN returns > 0 to stop, < 0 to fail (returned). */
typedef int (*store_record_fn)(const MDB_val *key, const MDB_val *value, void *userdata);
int store_db_each(MDB_txn *txn, MDB_dbi dbi, store_record_fn fn, void *userdata);

/* Tree records. KEY_BUF must hold 8 + STORE_MAX_NAME bytes. */
size_t store_tree_key(uint64_t parent, const char *name, size_t name_len, unsigned char *key_buf);
int store_entry_decode(const MDB_val *v, store_entry *ret); /* -EBADMSG */
/* Encodes E into BUF (at least 64 + STORE_MAX_ETAG bytes); returns the length. */
size_t store_entry_encode(const store_entry *e, unsigned char *buf);

int store_tree_get(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, store_entry *ret); /* -ENOENT */
int store_tree_put(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, const store_entry *e, bool new_id);
int store_tree_del(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *name,
                   size_t name_len, uint64_t id);
/* True when directory ID has at least one entry. */
int store_tree_has_children(MDB_txn *txn, const store_dbis *d, uint64_t id);

/* Calls FN for each child of directory PARENT in name (byte) order, starting after AFTER (NULL =
 * from the first); FN returns > 0 to stop, < 0 to fail. */
typedef int (*store_child_fn)(const char *name, size_t name_len, const store_entry *e,
                              void *userdata);
int store_tree_children(MDB_txn *txn, const store_dbis *d, uint64_t parent, const char *after,
                        store_child_fn fn, void *userdata);

/* The parent and name of ID; NAME points into the transaction. */
int store_ids_get(MDB_txn *txn, const store_dbis *d, uint64_t id, uint64_t *ret_parent,
                  const char **ret_name, size_t *ret_name_len);
