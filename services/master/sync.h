/* Metadata sync: each dataset's mounts walked off the loop and committed atomically through raft. */
#pragma once

#include "cleanup.h"
#include "manager.h"

/*
 * On the leader only. A dataset is synced when this node starts serving as leader and the
 * dataset never synced (first bind, or a sync that a previous leader did not finish), when
 * POST /v1/datasets/NAME/sync asks, and every spec.syncInterval.
 *
 * Incremental: SYNC_LIST_THREADS threads list directories in parallel (each with its own store
 * handles); each listed directory is compared with what the state machine holds for it, and
 * only the differences (new, changed and removed entries) are queued. The loop sends the queue
 * in TREE_BATCH commands of SYNC_BATCH entries (at most SYNC_INFLIGHT in flight), so a sync of
 * any size holds at most SYNC_QUEUE_MAX changes (plus one directory's listing per thread) in
 * memory; an unchanged re-sync sends one TREE_COMMIT and nothing else. Files are HEADed only
 * where the listing is not exact: never for local paths, S3 or nginx's JSON index; for nginx's
 * HTML index (exact bytes, minutes) only those the rule of sync-minute.h cannot vouch for (a
 * minute not ended on the store's clock, a listing without Date) plus one check per lister;
 * for listings without exact sizes (Apache, python) every file.
 *
 * A failing store, a listing that loops (deeper than UFS_MAX_DEPTH), a page over
 * UFS_MAX_PAGE_SIZE, a name over UFS_MAX_NAME or more entries than spec.maxEntries stop the
 * walk: the sync ends with TREE_ABORT carrying the error (the dataset shows sync_error, and is
 * Failed if it never synced) and is retried with backoff; changes not yet sent are dropped.
 */

#define SYNC_LIST_THREADS 8      /* directories listed (and files HEADed) at once per sync */
#define SYNC_BATCH        2000   /* entries per TREE_BATCH */
#define SYNC_INFLIGHT     2      /* TREE_BATCH commands in flight at once */
#define SYNC_QUEUE_MAX    8000   /* changes queued before the listers wait */
#define SYNC_THREAD_NICE  5      /* the walk's threads run this much nicer than the loop */
#define SYNC_RETRY_MIN_MS 2000   /* first retry after a failure, doubling ... */
#define SYNC_RETRY_MAX_MS 300000 /* ... up to */

typedef struct sync_manager sync_manager;

/* Installs the manager's sync hooks. M is borrowed; free the sync manager after manager_run()
 * returned and before manager_free(): it closes its loop handles and joins its threads. */
int sync_manager_new(manager *m, sync_manager **ret);
sync_manager *sync_manager_free(sync_manager *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(sync_manager *, sync_manager_free);
