/* The master's replicated state machine: datasets, file trees, workers, labels, kept in LMDB
 * (store-db.h). Pure: no raft, no clock, no network; every replica that applies the same
 * commands holds the same state. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "store-db.h"

/*
 * Commands are JSON objects {"op": NAME, "id": "CLIENT:SEQ", ...} serialised compactly; they are
 * built with the fsm_cmd_*() constructors below and encoded with fsm_command_encode(), which
 * stamps the request id. Applying a command whose id was seen before returns the stored result
 * of the first application and changes nothing (a retry after a lost leader is safe). The last
 * FSM_DEDUP_MAX ids are remembered (in the database).
 *
 * TREE_BATCH is encoded in binary (FSM_TREE_BATCH_V1: request id, dataset, sync id, then per
 * entry a kind byte, the path front-coded against the previous one, and for files size, mtime
 * and ETag as varints); the others as JSON.
 *
 * Applying one command is one LMDB write transaction that also records the number of entries
 * applied (fsm_applied): a master restarted on its database replays only what it lacks.
 *
 * Results are JSON objects: {"index": N, ...} on success, where N is the position of the write
 * in the replicated command sequence; {"error": MESSAGE, "status": HTTP_STATUS} when the command
 * was refused (no such dataset, unknown sync id, ...). Refusals are deterministic results,
 * never apply failures. fsm_apply() itself fails only when the database does (disk full,
 * corruption, out of memory): the transaction is then aborted and the state unchanged, and the
 * replica must stop rather than diverge.
 *
 * File tree, incremental: a sync sends only differences. TREE_BEGIN(dataset, sync_id) opens it,
 * TREE_BATCH(dataset, sync_id, entries) upserts files and directories ({"path","type":"file",
 * "size","mtime","etag"} / {"path","type":"dir","mtime"}) and removes paths ({"path",
 * "type":"delete"}), TREE_COMMIT(dataset, sync_id, time, urls) records the sync as done (an
 * unchanged re-sync sends only this one). Each batch is visible when applied: a file's version
 * changes atomically, and a sync that fails leaves what it had already recorded (true
 * observations of the store) and everything else as it was. A file keeps its file_id as long as
 * its path exists; its version starts at 1 and grows when size, ETag or mtime change.
 */

#define FSM_DEDUP_MAX        4096
#define FSM_MAX_BATCH        10000 /* entries per TREE_BATCH */
#define FSM_SNAPSHOT_V1      1
#define FSM_TREE_BATCH_V1    0xb1 /* first byte of a binary TREE_BATCH (JSON starts with "{") */
#define FSM_MAX_DEPTH        256
#define FSM_MAX_MEMBERS      1024 /* as CONFIG_MAX_NODES */
#define FSM_MAX_MEMBERS_TEXT "1024"

typedef struct fsm fsm;

/* Opens (creating) the database file PATH. */
int fsm_open(const char *path, fsm **ret);
fsm *fsm_free(fsm *f); /* accepts NULL, returns NULL */
DEFINE_TRIVIAL_CLEANUP_FUNC(fsm *, fsm_free);

/* Applies one encoded command. Sets *RET_RESULT (a new reference; RET_RESULT may be NULL) and
 * returns 0; an undecodable command gives an error result. < 0: the database failed, nothing
 * changed. */
int fsm_apply(fsm *f, const void *buf, size_t len, json_t **ret_result);

/* Raft entries applied so far (fsm_apply calls that returned 0, duplicates included). */
uint64_t fsm_applied(fsm *f);

/* Snapshots: raft's snapshot is a small descriptor naming how many entries the database had
 * applied ({"format":"weir-state","v":1,"applied":N}); the database itself travels as a file
 * (fsm_copy on a peer, fsm_replace on the lagging master). */
int fsm_snapshot_descriptor(fsm *f, char **ret_buf, size_t *ret_len);
int fsm_snapshot_parse(const void *buf, size_t len, uint64_t *ret_applied); /* -EBADMSG */
int fsm_flush(fsm *f);
int fsm_copy(fsm *f, int fd);
int fsm_replace(fsm *f, const char *path);
store_db *fsm_db(fsm *f);

/* Stamps CMD with "id" = CLIENT:SEQ unless it already has one (a retry keeps its id) and
 * serialises it into a malloc'ed buffer. */
int fsm_command_encode(json_t *cmd, const char *client, uint64_t seq, char **ret_buf,
                       size_t *ret_len);

/* Command constructors: new references, NULL on OOM. MOUNTS is an array of
 * {"name","mount_point"}; ENTRIES an array as described above; URLS {"MOUNT": {"prefix",
 * "escape"}} (how a file's store URL is made from its path). All borrowed. */
json_t *fsm_cmd_dataset_ensure(const char *name, const json_t *mounts, uint64_t block_size,
                               double created);
json_t *fsm_cmd_dataset_phase(const char *name, const char *phase, const char *reason,
                              const char *sync_error);
json_t *fsm_cmd_tree_begin(const char *dataset, const char *sync_id);
json_t *fsm_cmd_tree_batch(const char *dataset, const char *sync_id, const json_t *entries);
json_t *fsm_cmd_tree_commit(const char *dataset, const char *sync_id, double time,
                            const json_t *urls);
json_t *fsm_cmd_tree_abort(const char *dataset, const char *sync_id, const char *error);
json_t *fsm_cmd_worker_register(const char *node, const char *api, const json_t *tiers,
                                double time);
json_t *fsm_cmd_label_set(const char *dataset, const char *key, const char *value);
json_t *fsm_cmd_label_delete(const char *dataset, const char *key);
/* MEMBERS: [{"id","node","address","raft_port","master_port"}] (config-apply.h), the Raft
 * membership after a change that committed. */
json_t *fsm_cmd_members_set(const json_t *members);

/* The cluster's epoch (block.h): EPOCH_SET(epoch) records a random non-zero value chosen by the
 * leader; only the first one applied counts. fsm_epoch() is 0 until then. */
json_t *fsm_cmd_epoch_set(uint64_t epoch);
uint64_t fsm_epoch(fsm *f);

/* The stored result of the command with REQUEST_ID (new reference), NULL if not remembered. The
 * raft glue uses it to hand a leader's result to the waiting caller. */
json_t *fsm_result(fsm *f, const char *request_id);

/* Reads: any thread, each in its own read transaction; they never wait for an apply. New
 * references or -errno. */
uint64_t fsm_index(fsm *f); /* commands applied, including refused ones */
bool fsm_has_dataset(fsm *f, const char *name);
json_t *fsm_datasets(fsm *f); /* array of DATASET (docs/api.md), cache fields absent */
int fsm_dataset(fsm *f, const char *name, json_t **ret);                 /* -ENOENT */
int fsm_ls(fsm *f, const char *dataset, const char *path, json_t **ret); /* -ENOENT/-ENOTDIR */
/* One page of a listing: at most LIMIT entries (0 = all) whose names sort after AFTER (NULL =
 * from the start); "next" holds the last name when more may follow. */
int fsm_ls_page(fsm *f, const char *dataset, const char *path, const char *after, size_t limit,
                json_t **ret);
int fsm_stat(fsm *f, const char *dataset, const char *path, json_t **ret);
int fsm_file(fsm *f, uint64_t file_id, json_t **ret);      /* ENTRY + dataset, path, block_size */
int fsm_labels(fsm *f, const char *dataset, json_t **ret); /* {"KEY":"VALUE"} */
json_t *fsm_workers(fsm *f); /* {"NODE": {"api","tiers","registered"}} */
json_t *fsm_members(fsm *f); /* the recorded membership (copy), NULL if none */

/* For the sync's comparison: calls FN for each stored child of PATH ("/" or "/MOUNT/...") of
 * DATASET, in name order, from one read view. -ENOENT when PATH is not stored, -ENOTDIR. */
typedef struct fsm_child {
        const char *name; /* NUL-terminated copy */
        bool dir;
        uint64_t size;
        int64_t mtime;
        const char *etag; /* NUL-terminated copy, "" = none */
} fsm_child;
int fsm_children(fsm *f, const char *dataset, const char *path,
                 int (*fn)(const fsm_child *c, void *userdata), void *userdata);
/* The children of PATH after AFTER (NULL: from the first) as the store holds them, for encoding a
 * page without JSON: FN returns > 0 to stop (store_tree_children). -ENOENT, -ENOTDIR. */
int fsm_ls_raw(fsm *f, const char *dataset, const char *path, const char *after, store_child_fn fn,
               void *userdata);
