/* The inode table: kernel inode numbers <-> dataset paths, lifetime tied to the lookup count. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INODE_ROOT 1 /* FUSE_ROOT_ID */

typedef struct inode_table inode_table;

/* A table holding the root ("/") with an infinite lookup count. NULL on out of memory. */
inode_table *inode_table_new(void);
inode_table *inode_table_free(inode_table *t);

/* The inode of PATH (dataset path, "/MOUNT/DIR/FILE"), created if new, with one more kernel
 * lookup reference. VERSION is the file version the master reported (0 for directories).
 * *ret_changed (may be NULL) is set when the inode existed with another version: the kernel's
 * cached pages of it are stale. */
int inode_table_ref(inode_table *t, const char *path, uint64_t version, uint64_t *ret_ino,
                    bool *ret_changed);

/* Drops NLOOKUP kernel references (FUSE forget). Returns 1 when the inode was freed, 0 while it
 * is still referenced, -ENOENT for an unknown inode. The root is never freed. */
int inode_table_forget(inode_table *t, uint64_t ino, uint64_t nlookup);

/* A copy of the path of INO (free() it); -ENOENT for an unknown inode, -ENOMEM. */
int inode_table_path(inode_table *t, uint64_t ino, char **ret_path);

/* Records that the master now reports VERSION for INO. *ret_changed as for inode_table_ref. */
int inode_table_set_version(inode_table *t, uint64_t ino, uint64_t version, bool *ret_changed);

/* At open: whether the kernel may keep the pages it cached of INO (they are of VERSION), and
 * from now on the kernel caches VERSION. -ENOENT for an unknown inode. */
int inode_table_open(inode_table *t, uint64_t ino, uint64_t version, bool *ret_keep_cache);

/* The inode and version of PATH; -ENOENT when the kernel holds no inode for it. */
int inode_table_lookup(inode_table *t, const char *path, uint64_t *ret_ino, uint64_t *ret_version);

/* The distinct directories holding a file inode (for the periodic version check), copied: free
 * each and the array. */
int inode_table_file_dirs(inode_table *t, char ***ret, size_t *ret_n);

/* What getattr and open need of an entry, kept with the inode for the attr timeout: a walk's
 * readdirplus fills it, so opening the files it listed asks the master nothing. */
typedef struct inode_attr {
        uint64_t size;
        uint64_t file_id; /* 0 for directories */
        uint64_t epoch;   /* the cluster's epoch: block ids need it (block.h) */
        double mtime;
        uint64_t fetched_ms; /* when the master said so (CLOCK_MONOTONIC ms) */
} inode_attr;

/* inode_table_ref() and inode_table_set_attr() under one lock: what readdirplus does per entry.
 * A may be NULL. */
int inode_table_ref_attr(inode_table *t, const char *path, uint64_t version, const inode_attr *a,
                         uint64_t *ret_ino, bool *ret_changed);
/* Records A for INO; -ENOENT for an unknown inode. */
int inode_table_set_attr(inode_table *t, uint64_t ino, const inode_attr *a);
/* The attributes and version recorded for INO: -ENOENT for an unknown inode, -ENODATA when none
 * were recorded. */
int inode_table_get_attr(inode_table *t, uint64_t ino, inode_attr *ret, uint64_t *ret_version);

/* Number of inodes, root included. */
size_t inode_table_size(inode_table *t);

/* Joins a directory path and a child name: "/" + "a" = "/a", "/a" + "b" = "/a/b". NULL on OOM. */
char *inode_path_join(const char *dir, const char *name);
