/* The master's replicated state machine: datasets, file trees, workers, labels. Pure: no raft,
 * no clock, no I/O; every replica that applies the same commands holds the same state. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Commands are JSON objects {"op": NAME, "id": "CLIENT:SEQ", ...} serialised compactly; they are
 * built with the fsm_cmd_*() constructors below and encoded with fsm_command_encode(), which
 * stamps the request id. Applying a command whose id was seen before returns the stored result
 * of the first application and changes nothing (a retry after a lost leader is safe). The last
 * FSM_DEDUP_MAX ids are remembered (in snapshots too).
 *
 * Results are JSON objects: {"index": N, ...} on success, where N is the position of the write
 * in the replicated command sequence; {"error": MESSAGE, "status": HTTP_STATUS} when the command
 * was refused (no such dataset, unknown sync id, ...). Refusals are deterministic results,
 * never apply failures.
 *
 * File tree: a sync begins with TREE_BEGIN(dataset, sync_id), sends entries in TREE_BATCH(sync_id,
 * entries) commands and ends with TREE_COMMIT(sync_id, time): until the commit, readers see the
 * previous tree; the commit swaps the staged tree in. A new TREE_BEGIN for the same dataset drops
 * an unfinished staging tree. A file keeps its file_id as long as its path exists in the
 * committed tree; its version starts at 1 and grows when size, ETag or mtime change.
 */

#define FSM_DEDUP_MAX        4096
#define FSM_MAX_BATCH        10000 /* entries per TREE_BATCH */
#define FSM_STATE_VERSION    1
#define FSM_MAX_MEMBERS      1024 /* as CONFIG_MAX_NODES */
#define FSM_MAX_MEMBERS_TEXT "1024"

typedef struct fsm fsm;

fsm *fsm_new(void);
fsm *fsm_free(fsm *f); /* accepts NULL, returns NULL */

/* Applies one encoded command. Always sets *ret_result (a new reference) and returns 0, except
 * -ENOMEM; an undecodable command gives an error result. */
int fsm_apply(fsm *f, const void *buf, size_t len, json_t **ret_result);

/* The whole state, serialised (malloc'ed); restore replaces the state with a snapshot's. */
int fsm_snapshot(fsm *f, char **ret_buf, size_t *ret_len);
int fsm_restore(fsm *f, const void *buf, size_t len);

/* Stamps CMD with "id" = CLIENT:SEQ unless it already has one (a retry keeps its id) and
 * serialises it into a malloc'ed buffer. */
int fsm_command_encode(json_t *cmd, const char *client, uint64_t seq, char **ret_buf,
                       size_t *ret_len);

/* Command constructors: new references, NULL on OOM. MOUNTS is an array of
 * {"name","mount_point"}; ENTRIES an array of {"path":"/MOUNT/...","type":"file|dir","size",
 * "mtime","etag","ufs_url"}. Both borrowed. */
json_t *fsm_cmd_dataset_ensure(const char *name, const json_t *mounts, uint64_t block_size,
                               double created);
json_t *fsm_cmd_dataset_phase(const char *name, const char *phase, const char *reason,
                              const char *sync_error);
json_t *fsm_cmd_tree_begin(const char *dataset, const char *sync_id);
json_t *fsm_cmd_tree_batch(const char *sync_id, const json_t *entries);
json_t *fsm_cmd_tree_commit(const char *sync_id, double time);
json_t *fsm_cmd_tree_abort(const char *sync_id, const char *error);
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
uint64_t fsm_epoch(const fsm *f);

/* The stored result of the command with REQUEST_ID (new reference), NULL if not remembered. The
 * raft glue uses it to hand a leader's result to the waiting caller. */
json_t *fsm_result(const fsm *f, const char *request_id);

/* Reads (new references or -errno). */
uint64_t fsm_index(const fsm *f); /* commands applied, including refused ones */
bool fsm_has_dataset(const fsm *f, const char *name);
json_t *fsm_datasets(const fsm *f); /* array of DATASET (docs/api.md), cache fields absent */
int fsm_dataset(const fsm *f, const char *name, json_t **ret); /* -ENOENT */
int fsm_ls(const fsm *f, const char *dataset, const char *path,
           json_t **ret); /* -ENOENT/-ENOTDIR */
int fsm_stat(const fsm *f, const char *dataset, const char *path, json_t **ret);
/* The children of directory PATH, one call of FN each, in no particular order (listing.c pages
 * them); stops at FN's first negative return and returns it. -ENOENT/-ENOTDIR. NODE is borrowed
 * for the duration of the call; fsm_node_entry() makes its ENTRY. */
typedef struct fsm_node fsm_node;
typedef int (*fsm_dir_scan_fn)(const char *name, const fsm_node *node, void *userdata);
int fsm_dir_scan(const fsm *f, const char *dataset, const char *path, fsm_dir_scan_fn fn,
                 void *userdata);
json_t *fsm_node_entry(const fsm_node *node);               /* new reference, NULL on OOM */
int fsm_file(const fsm *f, uint64_t file_id, json_t **ret); /* ENTRY + dataset, path, block_size */
int fsm_labels(const fsm *f, const char *dataset, json_t **ret); /* {"KEY":"VALUE"} */
json_t *fsm_workers(const fsm *f); /* {"NODE": {"api","tiers","registered"}} */
json_t *fsm_members(const fsm *f); /* the recorded membership (copy), NULL if none */
