/* Metadata sync: each dataset's mounts walked off the loop and committed atomically through raft. */
#pragma once

#include "cleanup.h"
#include "manager.h"

/*
 * On the leader only. A dataset is synced when this node starts serving as leader and the
 * dataset never synced (first bind, or a sync that a previous leader did not finish), when
 * POST /v1/datasets/NAME/sync asks, and every spec.syncInterval. The walk (listings, HEADs with
 * bounded parallelism) runs in a thread per sync; its result is handed to the loop, which
 * commits it as TREE_BEGIN, TREE_BATCH..., TREE_COMMIT, so readers see the old tree until the
 * new one is complete. A failing store aborts the sync (TREE_ABORT with the error: the dataset
 * shows sync_error, and Failed if it never synced) and it is retried with backoff.
 */

#define SYNC_HEAD_THREADS 8      /* concurrent HEADs per sync */
#define SYNC_BATCH        2000   /* entries per TREE_BATCH */
#define SYNC_RETRY_MIN_MS 2000   /* first retry after a failure, doubling ... */
#define SYNC_RETRY_MAX_MS 300000 /* ... up to */

typedef struct sync_manager sync_manager;

/* Installs the manager's sync hooks. M is borrowed; free the sync manager after manager_run()
 * returned and before manager_free(): it closes its loop handles and joins its threads. */
int sync_manager_new(manager *m, sync_manager **ret);
sync_manager *sync_manager_free(sync_manager *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(sync_manager *, sync_manager_free);
