/* The remote store ("under file system") interface: list, stat, and read a range of one version. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "config.h"

/* Limits on what a store may hand us. */
#define UFS_MAX_DEPTH     64          /* directory nesting followed by a sync */
#define UFS_MAX_ENTRIES   1000000     /* entries in one listing */
#define UFS_MAX_PAGE_SIZE (64u << 20) /* bytes of one HTML index page or XML listing page */
#define UFS_MAX_NAME      1024

/* What identifies one version of a file. A read under a version fails with -ESTALE when the store
 * now has another (ETag differs, or Last-Modified moved), never mixing bytes of two versions. */
typedef struct ufs_version {
        uint64_t size;
        int64_t mtime; /* Unix seconds; 0 = unknown */
        char *etag;    /* as the store sent it, quotes included; NULL = none */
} ufs_version;

typedef struct ufs_entry {
        char *name; /* one path component, decoded (no percent-escapes), UTF-8 */
        bool dir;
        ufs_version version; /* for files; listings may round sizes: stat for exact values */
} ufs_entry;

/* The ETag a sync records for a file whose version it took from a listing that shows times to the
 * minute only (nginx's HTML autoindex) without asking the store: the version's mtime is the first
 * second of that minute, and a read accepts any Last-Modified within it (If-Unmodified-Since its
 * last second). Stores send quoted ETags; an unquoted one equal to this is dropped. See "Listings
 * with times to the minute" in docs/stores.md for when a sync may do that. */
#define UFS_ETAG_MINUTE "weir:minute"

/* Whether V carries UFS_ETAG_MINUTE: an mtime known to the minute only. */
bool ufs_version_minute(const ufs_version *v);

/* One handle per mount and per thread: it owns a curl easy handle with kept-alive connections. */
typedef struct ufs ufs;

/* Opens a handle on MOUNT (borrowed: it must outlive the handle). -EPROTONOSUPPORT for a scheme
 * without a backend, -EINVAL for a bad URL or missing credentials. */
int ufs_open(const config_mount *mount, ufs **ret);
ufs *ufs_free(ufs *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(ufs *, ufs_free);

/* PATH is relative to the mount point, "" for its root, components separated by '/', no
 * leading slash, never "..". */

/* Lists one directory. On success *ret_entries (free with ufs_entries_free) and *ret_n. */
int ufs_list(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n);
void ufs_entries_free(ufs_entry *entries, size_t n);

/* Exact size, mtime and ETag of a file (HTTP HEAD, S3 HEAD, stat). -ENOENT when gone. */
int ufs_stat(ufs *u, const char *path, ufs_version *ret);
void ufs_version_done(ufs_version *v);

/* Called with consecutive pieces of the range; returning < 0 aborts the read with that value. */
typedef int (*ufs_sink)(const void *data, size_t len, void *userdata);

/* Reads bytes [offset, offset + len) of PATH as of VERSION (an etag of "" counts as none). Fails with -ESTALE if the store holds
 * another version, -ENOENT if gone, -EIO/-ECONNREFUSED/-ETIMEDOUT etc. for transport errors,
 * -EACCES for refused credentials. A short read (the store sent fewer bytes) is -EIO. */
int ufs_read(ufs *u, const char *path, const ufs_version *version, uint64_t offset, uint64_t len,
             ufs_sink sink, void *userdata);

/* The store URL of PATH (for display: user.weir.ufs, weirctl stat). Free with free(). */
char *ufs_url(ufs *u, const char *path);

/* URL without its "user:password@" part, for anything shown or replicated (the API, the plan).
 * Free with free(); NULL on out of memory. */
char *ufs_url_redact(const char *url);

/* PATH percent-encoded as store URLs carry it (RFC 3986 unreserved bytes and '/' kept). Free with
 * free(); NULL on out of memory. */
char *ufs_escape_path(const char *path);

/* Makes the handle's requests give up within about a second, with -ECANCELED, once *CANCEL is
 * true (another thread sets it: shutdown, lost leadership). CANCEL must outlive the handle; NULL
 * turns it off. */
void ufs_set_cancel(ufs *u, const atomic_bool *cancel);

/* How exact the sizes and mtimes of the last ufs_list() on a handle were. */
typedef enum ufs_exactness {
        UFS_INEXACT,    /* sizes rounded or missing (Apache, python): stat each file */
        UFS_EXACT_SIZE, /* exact sizes, mtimes to the minute (nginx's HTML autoindex) */
        UFS_EXACT,      /* exact sizes and mtimes to the second (nginx JSON, S3, local paths) */
} ufs_exactness;
ufs_exactness ufs_list_exactness(ufs *u);

/* The store's own clock when it answered the last ufs_list() (its Date header, Unix seconds), so
 * that listed times can be compared with the store's now rather than ours; 0 when it sent none
 * (or the backend has no clock: local paths). */
int64_t ufs_list_date(ufs *u);

/* True when ufs_list() gives exact sizes, mtimes and ETags (local paths, S3), so that a sync need
 * not ufs_stat() every file; false for HTTP index pages, which round sizes. */
bool ufs_listing_exact(ufs *u);

/* A message describing the last error of this handle ("HTTP 403 from http://...: ..."), or "". */
const char *ufs_last_error(ufs *u);
