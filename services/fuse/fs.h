/* The FUSE file system of one dataset: the low-level operations, the session and its mount. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"
#include "config.h"
#include "meta.h"
#include "reader.h"

#define FS_MAX_PREFETCH_FILES 256u /* one thread each */

typedef struct fs_options {
        uint64_t attr_timeout_ms;
        uint64_t entry_timeout_ms;
        uint64_t retry_ms;    /* failover and worker loss: how long before EIO */
        unsigned max_threads; /* FUSE request threads */
        unsigned prefetch_threads;
        uint64_t prefetch_bytes;    /* read-ahead window at its widest */
        unsigned read_ahead_kb;     /* kernel read-ahead of the mount (bdi), 0 = leave */
        uint64_t refresh_ms;        /* how often the files' versions are checked, 0 = never */
        const char *token;          /* the cluster's bearer token, NULL = none (borrowed) */
        size_t listing_cache_bytes; /* listing pages kept, 0 = the default (meta.h) */
        bool xattrs;                /* answer user.weir.* xattrs; false: ENOSYS once */
        unsigned prefetch_files;    /* files ahead of an in-order reader of a directory, 0 = off */
        uint64_t prefetch_files_bytes; /* ... and their bytes at most */
        unsigned list_ahead;           /* directories listed ahead of a walk (lsahead.h), 0 = off */
        bool no_open; /* files are opened without asking the daemon (FUSE_CAP_NO_OPEN_SUPPORT) */
        bool debug;
} fs_options;

typedef struct fs_status {
        bool mounted;
        const char *mountpoint;
        const char *dataset;
        uint64_t files; /* in the dataset, from the master; 0 when unknown */
        uint64_t total_size;
        uint64_t cached;      /* bytes cached on workers, from the master */
        uint64_t cached_here; /* bytes cached on this node's worker, from the master */
        bool passthrough;     /* the kernel granted FUSE passthrough */
        uint64_t passthrough_opens;
        uint64_t inodes;         /* known to the kernel */
        uint64_t xattr_requests; /* getxattr and listxattr the kernel sent */
        bool masters_down;       /* no master answered the last call: metadata is stale */
        uint64_t stale_answers;  /* lookups answered from expired metadata, since the start */
        meta_counters meta;
        reader_stats reads;
} fs_status;

typedef struct fs fs;

/* All borrowed: they must outlive it. */
int fs_new(const config *c, const config_node *node, const config_dataset *d, const fs_options *o,
           fs **ret);
fs *fs_free(fs *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(fs *, fs_free);

/* Lazily unmounts a stale mount at MOUNTPOINT (a killed daemon's), creates the directory, and
 * mounts. Signal handlers for SIGTERM/SIGINT/SIGHUP end the loop. */
int fs_mount(fs *f, const char *mountpoint);
/* Serves requests with a thread pool until a signal or an unmount. */
int fs_run(fs *f);
void fs_unmount(fs *f);

/* Blocks until the kernel finished FUSE_INIT and the mountpoint answers stat() as a FUSE mount
 * (or TIMEOUT_MS passed: -ETIMEDOUT; the loop ended: -ESHUTDOWN). From another thread. */
int fs_wait_live(fs *f, uint64_t timeout_ms);

/* Asks the master for the listing of every directory holding a file the kernel knows, and drops
 * the kernel's pages of each file whose version changed. Called periodically (refresh_ms). */
void fs_refresh(fs *f);

/* Tells the master leader this mount is alive (POST /v1/fuses/NODE/DATASET/heartbeat): one try
 * per master, logged at debug only; first refreshes the totals fs_get_status reads. May block on
 * the masters for seconds: called periodically from a thread that sends no watchdog pings. */
int fs_heartbeat(fs *f);

/* Fills RET (strings borrowed from F) with the totals fs_heartbeat fetched last; never waits on
 * a master, so the status thread's watchdog pings go on while no master answers. */
void fs_get_status(fs *f, fs_status *ret);
