/* The FUSE file system of one dataset: the low-level operations and the session (the mount's
 * plumbing is in mount.c). */
#include "fuse-version.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "cleanup.h"
#include "dirahead.h"
#include "fs.h"
#include "fsutil.h"
#include "http.h"
#include "inode.h"
#include "log.h"
#include "lru.h"
#include "lsahead.h"
#include "meta.h"
#include "mount.h"
#include "passthrough.h"
#include "prefetch.h"
#include "reader.h"
#include "timeutil.h"

#define FS_MAX_READ      (1u << 20) /* what libfuse 3.14 and the kernel default allow */
#define FS_STATUS_TTL_MS 5000
#define FS_BLKSIZE       (1u << 20) /* st_blksize: cp and friends read 1 MiB at a time */
#define FS_MAX_EXTENTS   16

#define XATTR_UFS     "user.weir.ufs"
#define XATTR_CACHED  "user.weir.cached"
#define XATTR_VERSION "user.weir.version"

typedef struct fs_file {
        reader_file file;
        passthrough_mode mode; /* how the kernel reads it (see passthrough.h) */
        pthread_mutex_t lock;  /* guards window */
        prefetch_window window;
} fs_file;

/* Where the last readdir of a directory stopped: the page holding entries
 * [start, start + page->n). Kept per inode (not per open: the kernel may skip OPENDIR), so the
 * next readdir continues from there instead of paging from the first name again. */
typedef struct dir_cursor {
        meta_listing *page;
        uint64_t start;
} dir_cursor;

#define FS_DIR_CURSORS 64 /* directories being read at the same time, more or less */

typedef struct inval_item {
        struct inval_item *next;
        uint64_t ino;
} inval_item;

struct fs {
        const config *config;
        const config_node *node;
        const config_dataset *dataset;
        fs_options opts;
        uint64_t block_size;
        unsigned prefetch_window; /* blocks */
        unsigned max_read;        /* bytes, see mount_choose_max_read() */

        meta *meta;
        reader *reader;
        prefetch *prefetch;
        dirahead *dirahead;
        lsahead *lsahead; /* listings fetched ahead of walks (NULL when off) */
        passthrough *passthrough;
        inode_table *inodes;

        struct fuse_session *se;
        char *mountpoint;
        bool signals_set;

        /* lock guards live, ended, the invalidation queue and the cached totals */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool initialized; /* FUSE_INIT answered */
        bool ended;       /* the loop returned */
        inval_item *inval_head;
        bool inval_stop;
        pthread_t inval_thread;
        bool inval_started;
        meta_dataset_info totals;
        uint64_t totals_ms;
        bool totals_valid;

        uint64_t xattr_requests; /* atomic: getxattr and listxattr the kernel sent */
        bool no_opendir;         /* the kernel caches directories without OPENDIR (set at init) */
        bool no_open;            /* opts.no_open and the kernel offers it (set at init) */

        pthread_mutex_t cursor_lock; /* guards cursors */
        lru *cursors;                /* "INO" -> dir_cursor */
};

static void dir_cursor_free(void *p)
{
        dir_cursor *c = p;

        meta_listing_unref(c->page);
        free(c);
}

static fs *req_fs(fuse_req_t req)
{
        return fuse_req_userdata(req);
}

/* --- kernel cache invalidation ---------------------------------------------------------------- */

/* notify_inval_inode must not run inside a request on the same inode (it may wait for it), so a
 * thread of its own sends them. */
static void *inval_thread(void *userdata)
{
        fs *f = userdata;

        pthread_mutex_lock(&f->lock);
        for (;;) {
                inval_item *i;
                int r;

                while (!f->inval_stop && !f->inval_head)
                        pthread_cond_wait(&f->cond, &f->lock);
                if (f->inval_stop)
                        break;
                i = f->inval_head;
                f->inval_head = i->next;
                pthread_mutex_unlock(&f->lock);
                r = fuse_lowlevel_notify_inval_inode(f->se, i->ino, 0, 0);
                if (r < 0 && r != -ENOENT)
                        log_debug_errno(r, "Invalidating inode %" PRIu64 ": %m", i->ino);
                free(i);
                pthread_mutex_lock(&f->lock);
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

static void queue_inval(fs *f, uint64_t ino)
{
        inval_item *i = calloc(1, sizeof(*i));

        if (!i)
                return;
        log_info("A new version of inode %" PRIu64 " appeared: dropping its cached pages.", ino);
        i->ino = ino;
        pthread_mutex_lock(&f->lock);
        i->next = f->inval_head;
        f->inval_head = i;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

/* --- attributes ------------------------------------------------------------------------------- */

static void fill_stat(const meta_entry *e, uint64_t ino, struct stat *st)
{
        *st = (struct stat){};
        st->st_ino = ino;
        if (e->dir) {
                st->st_mode = S_IFDIR | 0555;
                st->st_nlink = 2;
        } else {
                st->st_mode = S_IFREG | 0444;
                st->st_nlink = 1;
                st->st_size = (off_t)e->size;
                st->st_blocks = (blkcnt_t)((e->size + 511) / 512);
        }
        st->st_blksize = FS_BLKSIZE;
        st->st_mtim.tv_sec = (time_t)e->mtime;
        st->st_mtim.tv_nsec = (long)((e->mtime - (double)(time_t)e->mtime) * 1e9);
        st->st_atim = st->st_ctim = st->st_mtim;
}

static double ms_to_s(uint64_t ms)
{
        return (double)ms / 1000.0;
}

static inode_attr attr_of(const meta_entry *e, uint64_t fetched_ms)
{
        return (inode_attr){
                .size = e->size,
                .file_id = e->file_id,
                .epoch = e->epoch,
                .mtime = e->mtime,
                .fetched_ms = fetched_ms ? fetched_ms : 1,
        };
}

static void remember_attr(fs *f, uint64_t ino, const meta_entry *e, uint64_t fetched_ms)
{
        inode_attr a = attr_of(e, fetched_ms);

        (void)inode_table_set_attr(f->inodes, ino, &a);
}

/* Registers one kernel lookup of PATH with entry E (as the master said at FETCHED_MS) and fills
 * *ret. */
static int make_entry(fs *f, const char *path, const meta_entry *e, uint64_t fetched_ms,
                      struct fuse_entry_param *ret)
{
        bool changed = false;
        uint64_t ino;
        inode_attr a = attr_of(e, fetched_ms);
        int r = inode_table_ref_attr(f->inodes, path, e->dir ? 0 : e->version, &a, &ino, &changed);

        if (r < 0)
                return r;
        if (changed)
                queue_inval(f, ino);
        *ret = (struct fuse_entry_param){
                .ino = ino,
                .generation = 1,
                .attr_timeout = ms_to_s(f->opts.attr_timeout_ms),
                .entry_timeout = ms_to_s(f->opts.entry_timeout_ms),
        };
        fill_stat(e, ino, &ret->attr);
        return 0;
}

/* --- operations ------------------------------------------------------------------------------- */

/* Asks for FLAG when the kernel offers it. libfuse 3.17 refuses an init that changed both its
 * old 32-bit `want` and the new `want_ext`, and passthrough needs the new API there. */
static void want_flag(struct fuse_conn_info *conn, uint64_t flag)
{
#if HAVE_FUSE_PASSTHROUGH
        (void)fuse_set_feature_flag(conn, flag);
#else
        if (conn->capable & flag)
                conn->want |= (unsigned)flag;
#endif
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
        fs *f = userdata;

        /* read-ahead as large as the kernel offers; reads may arrive in parallel */
        conn->max_readahead = conn->max_readahead ? conn->max_readahead : f->max_read;
        conn->max_read = f->max_read; /* as in the mount options */
        want_flag(conn, FUSE_CAP_ASYNC_READ);
        /* always readdirplus, not _AUTO: every entry comes with its attributes and a lookup
         * reference, so `ls -l`, `du` and `find -type` send no lookup or getattr per file */
        want_flag(conn, FUSE_CAP_READDIRPLUS);
#if HAVE_FUSE_PASSTHROUGH
        fuse_unset_feature_flag(conn, FUSE_CAP_READDIRPLUS_AUTO);
#else
        conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
#endif
        want_flag(conn, FUSE_CAP_SPLICE_WRITE);
        want_flag(conn, FUSE_CAP_SPLICE_MOVE);
        want_flag(conn, FUSE_CAP_PARALLEL_DIROPS);
#if HAVE_FUSE_PASSTHROUGH
        fuse_unset_feature_flag(conn, FUSE_CAP_WRITEBACK_CACHE);
#else
        conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
#endif
        f->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
        f->no_open = f->opts.no_open && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
        if (f->opts.no_open && !f->no_open)
                log_warning("WEIR_FUSE_NO_OPEN=1: the kernel does not offer FUSE_NO_OPEN_SUPPORT "
                            "(Linux >= 3.19), ignoring");
        passthrough_init(f->passthrough, conn);
        conn->max_background = 64;
        conn->congestion_threshold = 48;
        conn->time_gran = 1;
        log_debug("FUSE protocol %u.%u, max_readahead %u, max_read %u", conn->proto_major,
                  conn->proto_minor, conn->max_readahead, conn->max_read);

        pthread_mutex_lock(&f->lock);
        f->initialized = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        fs *f = req_fs(req);
        _cleanup_free_ char *dir = NULL, *path = NULL;
        struct fuse_entry_param ep;
        meta_entry e = {};
        int r;

        r = inode_table_path(f->inodes, parent, &dir);
        if (r < 0)
                goto fail;
        path = inode_path_join(dir, name);
        if (!path) {
                r = -ENOMEM;
                goto fail;
        }
        /* a name of a directory listed lately (its page is cached: a walk, or the kernel dropped
         * the dentry its readdirplus gave) is answered from that page, as readdirplus did */
        meta_listing *l = NULL;
        size_t i;
        if (meta_cached_page_of(f->meta, dir, name, &l, &i) >= 0 &&
            now_ms() - l->fetched_ms >= f->opts.attr_timeout_ms)
                l = meta_listing_unref(l); /* its attributes are too old to hand out */
        if (l) {
                r = make_entry(f, path, &l->entries[i], l->fetched_ms, &ep);
                meta_listing_unref(l);
                if (r < 0)
                        goto fail;
                fuse_reply_entry(req, &ep);
                return;
        }
        r = meta_stat(f->meta, path, false, &e);
        if (r < 0)
                goto fail;
        r = make_entry(f, path, &e, now_ms(), &ep);
        meta_entry_done(&e);
        if (r < 0)
                goto fail;
        fuse_reply_entry(req, &ep);
        return;
fail:
        log_debug_errno(r, "lookup of '%s' in inode %" PRIu64 ": %m", name, (uint64_t)parent);
        fuse_reply_err(req, -r);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
        if (inode_table_forget(req_fs(req)->inodes, ino, nlookup) > 0)
                log_debug("forgot inode %" PRIu64 " (%" PRIu64 ")", (uint64_t)ino, nlookup);
        fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
        for (size_t i = 0; i < count; i++)
                if (inode_table_forget(req_fs(req)->inodes, forgets[i].ino, forgets[i].nlookup) > 0)
                        log_debug("forgot inode %" PRIu64 " (%" PRIu64 ", batch)",
                                  (uint64_t)forgets[i].ino, (uint64_t)forgets[i].nlookup);
        fuse_reply_none(req);
}

/* The current entry of INO: cached up to the attr timeout; a new version invalidates pages.
 * Unless FULL (the ETag and store URL too), what the inode recorded from a listing younger than
 * the attr timeout serves without asking the master. */
static int inode_entry(fs *f, fuse_ino_t ino, bool full, char **ret_path, meta_entry *ret)
{
        _cleanup_free_ char *path = NULL;
        bool changed = false;
        inode_attr a;
        uint64_t version;
        int r;

        r = inode_table_path(f->inodes, ino, &path);
        if (r < 0)
                return r;
        if (!full && inode_table_get_attr(f->inodes, ino, &a, &version) == 0 &&
            now_ms() - a.fetched_ms < f->opts.attr_timeout_ms) {
                *ret = (meta_entry){
                        .dir = a.file_id == 0,
                        .size = a.size,
                        .mtime = a.mtime,
                        .file_id = a.file_id,
                        .epoch = a.epoch,
                        .version = version,
                };
                if (ret_path)
                        *ret_path = TAKE_PTR(path);
                return 0;
        }
        r = meta_stat(f->meta, path, false, ret);
        if (r < 0)
                return r;
        remember_attr(f, ino, ret, now_ms());
        if (!ret->dir && inode_table_set_version(f->inodes, ino, ret->version, &changed) == 0 &&
            changed)
                queue_inval(f, ino);
        if (ret_path)
                *ret_path = TAKE_PTR(path);
        return 0;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fs *f = req_fs(req);
        struct stat st;
        meta_entry e = {};
        int r = inode_entry(f, ino, false, NULL, &e);

        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        fill_stat(&e, ino, &st);
        meta_entry_done(&e);
        fuse_reply_attr(req, &st, ms_to_s(f->opts.attr_timeout_ms));
}

static ino_t fs_dirent_ino(uint64_t dir, uint64_t index)
{
        return (ino_t)((1ull << 62) | (dir << 32) | (index & 0xffffffffu));
}

/* No state per open directory: with the kernel's FUSE_CAP_NO_OPENDIR_SUPPORT, ENOSYS here makes it
 * skip OPENDIR and RELEASEDIR from now on and cache readdir results as if keep_cache and
 * cache_readdir were set, so a warm walk sends nothing at all. Otherwise the same flags, asked. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fs *f = req_fs(req);

        if (f->no_opendir) {
                fuse_reply_err(req, ENOSYS);
                return;
        }
        fi->fh = 0;
        /* a version of the dataset is immutable: the kernel may keep what it read of the
         * directory for the entry timeout */
        fi->keep_cache = 1;
        fi->cache_readdir = 1;
        fuse_reply_open(req, fi);
}

/* Makes C's page the one holding entry INDEX of directory PATH, or the last page when INDEX is
 * past the end. Pages are read forward from the last name of the one before; a seek backwards
 * (rewinddir) starts again from the first page. */
static int dir_seek(fs *f, const char *path, dir_cursor *c, uint64_t index)
{
        meta_listing *l;
        int r;

        if (!c->page || index < c->start) {
                r = meta_list_page(f->meta, path, NULL, false, &l);
                if (r < 0)
                        return r;
                meta_listing_unref(c->page);
                c->page = l;
                c->start = 0;
        }
        while (index >= c->start + c->page->n && c->page->more) {
                r = meta_list_page(f->meta, path, c->page->entries[c->page->n - 1].name, false, &l);
                if (r < 0)
                        return r;
                c->start += c->page->n;
                meta_listing_unref(c->page);
                c->page = l;
        }
        return 0;
}

static void cursor_take(fs *f, fuse_ino_t ino, dir_cursor *ret)
{
        char key[24];
        dir_cursor *c;

        snprintf(key, sizeof(key), "%" PRIu64, (uint64_t)ino);
        pthread_mutex_lock(&f->cursor_lock);
        c = lru_get(f->cursors, key);
        *ret = (dir_cursor){};
        if (c) {
                ret->page = meta_listing_ref(c->page);
                ret->start = c->start;
        }
        pthread_mutex_unlock(&f->cursor_lock);
}

static void cursor_drop(fs *f, fuse_ino_t ino, dir_cursor *c)
{
        char key[24];

        meta_listing_unref(c->page);
        snprintf(key, sizeof(key), "%" PRIu64, (uint64_t)ino);
        pthread_mutex_lock(&f->cursor_lock);
        (void)lru_remove(f->cursors, key);
        pthread_mutex_unlock(&f->cursor_lock);
}

static void cursor_put(fs *f, fuse_ino_t ino, dir_cursor *c)
{
        char key[24];
        dir_cursor *copy = malloc(sizeof(*copy));

        if (!copy || !c->page) {
                free(copy);
                meta_listing_unref(c->page);
                return;
        }
        *copy = *c;
        snprintf(key, sizeof(key), "%" PRIu64, (uint64_t)ino);
        pthread_mutex_lock(&f->cursor_lock);
        (void)lru_put(f->cursors, key, copy, 0);
        pthread_mutex_unlock(&f->cursor_lock);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
        fs *f = req_fs(req);
        _cleanup_free_ char *buf = NULL, *dir = NULL;
        dir_cursor cur;
        size_t used = 0;
        bool end = false;
        int r;

        r = inode_table_path(f->inodes, ino, &dir);
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        buf = malloc(size);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        cursor_take(f, ino, &cur);
        if (off == 0) { /* from the start: the page cache decides whether the first page is fresh */
                cur.page = meta_listing_unref(cur.page);
                /* a walk's next directories, listed while the kernel takes this one */
                if (f->lsahead && dir_seek(f, dir, &cur, 0) >= 0)
                        lsahead_started(f->lsahead, dir, cur.page);
        }
        /* offsets: 1 = ".", 2 = "..", 3 + i = entry i */
        for (uint64_t o = (uint64_t)off;; o++) {
                size_t need;

                if (o < 2) {
                        struct stat st = {.st_ino = ino, .st_mode = S_IFDIR};
                        struct fuse_entry_param ep = {.attr = st};

                        need = plus ? fuse_add_direntry_plus(req, buf + used, size - used,
                                                             o == 0 ? "." : "..", &ep, (off_t)o + 1)
                                    : fuse_add_direntry(req, buf + used, size - used,
                                                        o == 0 ? "." : "..", &st, (off_t)o + 1);
                } else {
                        const meta_entry *e;
                        struct fuse_entry_param ep = {};
                        _cleanup_free_ char *path = NULL;

                        r = dir_seek(f, dir, &cur, o - 2);
                        if (r < 0)
                                break;
                        if (o - 2 >= cur.start + cur.page->n) {
                                end = true;
                                break;
                        }
                        e = &cur.page->entries[o - 2 - cur.start];
                        if (!plus) {
                                /* d_ino 0 reads as a deleted entry to glibc: give a stable
                                 * non-zero number; stat() reports the real one */
                                struct stat st = {.st_mode = e->dir ? S_IFDIR : S_IFREG,
                                                  .st_ino = fs_dirent_ino(ino, o)};

                                need = fuse_add_direntry(req, buf + used, size - used, e->name, &st,
                                                         (off_t)o + 1);
                        } else {
                                path = inode_path_join(dir, e->name);
                                r = path ? make_entry(f, path, e, cur.page->fetched_ms, &ep)
                                         : -ENOMEM;
                                if (r < 0)
                                        break;
                                need = fuse_add_direntry_plus(req, buf + used, size - used, e->name,
                                                              &ep, (off_t)o + 1);
                                if (need > size - used)
                                        /* not sent: the kernel never saw this lookup */
                                        (void)inode_table_forget(f->inodes, ep.ino, 1);
                        }
                }
                if (need > size - used)
                        break;
                used += need;
        }
        if (!end && cur.page) /* a large directory: its next page while the kernel takes this */
                lsahead_next_page(f->lsahead, dir, cur.page);
        if (end) /* read to the end: nothing to continue from, and its page may be freed */
                cursor_drop(f, ino, &cur);
        else
                cursor_put(f, ino, &cur);
        if (r < 0 && used == 0) {
                log_debug_errno(r, "readdir of %" PRIu64 " at %" PRIi64 ": %m", (uint64_t)ino,
                                (int64_t)off);
                fuse_reply_err(req, -r);
                return;
        }
        /* an error after some entries: send those; the next readdir asks again */
        fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fuse_reply_err(req, 0);
}

static fs_file *fs_file_free(fs_file *h)
{
        if (h) {
                reader_file_done(&h->file);
                pthread_mutex_destroy(&h->lock);
                free(h);
        }
        return NULL;
}

typedef struct open_ctx {
        fs *fs;
        fs_file *file;
} open_ctx;

static int open_local_fd(void *userdata)
{
        open_ctx *c = userdata;
        struct stat st;
        int fd = reader_local_fd(c->fs->reader, &c->file->file, 0);

        /* the kernel will read this file as the whole content: it must be exactly that long */
        if (fd >= 0 && (fstat(fd, &st) < 0 || (uint64_t)st.st_size != c->file->file.size)) {
                safe_close(fd);
                return -EIO;
        }
        return fd;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fs *f = req_fs(req);
        _cleanup_free_ char *path = NULL;
        meta_entry e = {};
        bool keep = false;
        int backing_id = 0;
        fs_file *h;
        int r;

        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (f->no_open) {
                /* The kernel takes ENOSYS as success, for this open and every later one, and
                 * sends no OPEN or RELEASE from now on (keeping pages as with keep_cache): reads
                 * come with no handle and are planned from the inode (fs_read_file()). The
                 * mount is read-only, so the kernel refuses writers itself. */
                fuse_reply_err(req, ENOSYS);
                return;
        }
        r = inode_entry(f, ino, false, &path, &e);
        if (r < 0) {
                log_debug_errno(r, "open of inode %" PRIu64 ": %m", (uint64_t)ino);
                fuse_reply_err(req, -r);
                return;
        }
        if (e.dir) {
                meta_entry_done(&e);
                fuse_reply_err(req, EISDIR);
                return;
        }
        h = calloc(1, sizeof(*h));
        if (!h) {
                meta_entry_done(&e);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        pthread_mutex_init(&h->lock, NULL);
        prefetch_window_init(&h->window, f->prefetch_window);
        h->file = (reader_file){
                .path = TAKE_PTR(path),
                .epoch = e.epoch,
                .file_id = e.file_id,
                .version = e.version,
                .size = e.size,
                .mtime = (int64_t)e.mtime,
                .etag = TAKE_PTR(e.etag),
                .block_size = f->block_size,
        };
        meta_entry_done(&e);
        /* Content is immutable per version: the kernel keeps what it cached of this version. */
        (void)inode_table_open(f->inodes, ino, h->file.version, &keep);
        fi->keep_cache = keep;
        fi->noflush = 1;
        /* A one-block file cached here: the kernel reads the tier file itself. */
        h->mode = passthrough_open(f->passthrough, req, ino, h->file.version,
                                   f->node->worker && h->file.size > 0 &&
                                           h->file.size <= h->file.block_size,
                                   open_local_fd, &(open_ctx){.fs = f, .file = h}, &backing_id);
#if HAVE_FUSE_PASSTHROUGH
        if (h->mode == PASSTHROUGH_BACKING) {
                fi->backing_id = backing_id;
                fi->keep_cache = 0; /* the FUSE inode's own pages are not used */
        }
#endif
        fi->fh = (uintptr_t)h;
        /* before the reply: once it is sent, a release may free h (queuing takes microseconds:
         * the listing is cached) */
        dirahead_opened(f->dirahead, h->file.path, h->file.block_size);
        if (fuse_reply_open(req, fi) < 0) {
                passthrough_abort_open(f->passthrough, ino, h->mode); /* req is gone */
                fs_file_free(h);
        }
}

/* Each FUSE thread keeps one read buffer: a fresh 1 MiB malloc per request costs page faults. */
typedef struct read_buf {
        char *data;
        size_t size;
} read_buf;

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void read_buf_destroy(void *p)
{
        read_buf *b = p;

        free(b->data);
        free(b);
}

static void read_buf_key_init(void)
{
        (void)pthread_key_create(&read_buf_key, read_buf_destroy);
}

static char *thread_read_buf(size_t size)
{
        read_buf *b;

        pthread_once(&read_buf_once, read_buf_key_init);
        b = pthread_getspecific(read_buf_key);
        if (!b) {
                b = calloc(1, sizeof(*b));
                if (!b || pthread_setspecific(read_buf_key, b) != 0) {
                        free(b);
                        return NULL;
                }
        }
        if (b->size < size) {
                size_t want = MAX(size, (size_t)FS_MAX_READ);
                char *d = realloc(b->data, want);

                if (!d)
                        return NULL;
                b->data = d;
                b->size = want;
        }
        return b->data;
}

/* A read whose spans are all this node's goes to the kernel by splice from the tier files: no
 * copy here. Blocks the local worker fills are spliced from the file being filled as soon as the
 * bytes asked for are there. */
static bool reply_local(fs *f, fuse_req_t req, fs_file *h, reader_plan *plan)
{
        reader_extent ext[FS_MAX_EXTENTS];
        struct fuse_bufvec *bv;
        unsigned n = 0;

        if (reader_plan_extents(f->reader, &h->file, plan, ext, FS_MAX_EXTENTS, &n) < 0)
                return false;
        bv = calloc(1, sizeof(*bv) + (n ? n - 1 : 0) * sizeof(struct fuse_buf));
        if (!bv) {
                for (unsigned i = 0; i < n; i++)
                        safe_close(ext[i].fd);
                return false;
        }
        bv->count = n;
        for (unsigned i = 0; i < n; i++)
                bv->buf[i] = (struct fuse_buf){
                        .size = ext[i].len,
                        .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY,
                        .fd = ext[i].fd,
                        .pos = (off_t)ext[i].offset,
                };
        if (n == 0)
                fuse_reply_buf(req, NULL, 0);
        else
                fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
        for (unsigned i = 0; i < n; i++)
                safe_close(ext[i].fd);
        free(bv);
        return true;
}

/* One plan per read (reader.h): the block locations are asked for once, each span labelled; a
 * read of this node's blocks is spliced, any other is copied through one buffer. */
static void op_read_file(fs *f, fuse_req_t req, fs_file *h, size_t size, off_t off);

/* Without OPEN (f->no_open), *RET is the inode's current version, built for one read: its path,
 * ids, size and mtime as the inode keeps them (the master is asked only when they are older than
 * the attr timeout). The file's first bytes move prefetch across files as an open would. */
static int fs_read_file(fs *f, fuse_ino_t ino, off_t off, fs_file *ret)
{
        meta_entry e = {};
        char *path = NULL;
        int r = inode_entry(f, ino, false, &path, &e);

        if (r < 0)
                return r;
        if (e.dir) {
                free(path);
                meta_entry_done(&e);
                return -EISDIR;
        }
        *ret = (fs_file){.file = {
                                 .path = path,
                                 .epoch = e.epoch,
                                 .file_id = e.file_id,
                                 .version = e.version,
                                 .size = e.size,
                                 .mtime = (int64_t)e.mtime,
                                 .etag = TAKE_PTR(e.etag),
                                 .block_size = f->block_size,
                         }};
        meta_entry_done(&e);
        if (off == 0)
                dirahead_opened(f->dirahead, path, f->block_size);
        return 0;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
        fs *f = req_fs(req);
        fs_file *h = (fs_file *)(uintptr_t)fi->fh, bare;
        uint64_t first, end;
        int r;

        if (off < 0) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        if (!h) {
                /* opened without OPEN: no handle, no read-ahead window of its own (the kernel's
                 * read-ahead and the worker's still run) */
                r = fs_read_file(f, ino, off, &bare);
                if (r < 0) {
                        fuse_reply_err(req, -r);
                        return;
                }
                op_read_file(f, req, &bare, size, off);
                reader_file_done(&bare.file);
                return;
        }
        if (f->prefetch) {
                pthread_mutex_lock(&h->lock);
                prefetch_window_advance(&h->window, (uint64_t)off, size, h->file.block_size,
                                        block_count(h->file.size, h->file.block_size), &first,
                                        &end);
                pthread_mutex_unlock(&h->lock);
                for (uint64_t i = first; i < end; i++)
                        prefetch_queue(f->prefetch, &h->file, i);
        }
        op_read_file(f, req, h, size, off);
}

static void op_read_file(fs *f, fuse_req_t req, fs_file *h, size_t size, off_t off)
{
        reader_plan plan;
        char *buf;
        ssize_t n;

        reader_plan_init(f->reader, &h->file, (uint64_t)off, size, &plan);
        if (reply_local(f, req, h, &plan)) {
                reader_plan_done(&plan);
                return;
        }
        buf = thread_read_buf(size ? size : 1);
        if (!buf) {
                reader_plan_done(&plan);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        n = reader_read_plan(f->reader, &h->file, &plan, buf);
        reader_plan_done(&plan);
        if (n < 0) {
                fuse_reply_err(req, n == -ESTALE ? EIO : (int)-n);
                return;
        }
        fuse_reply_buf(req, buf, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        fs_file *h = (fs_file *)(uintptr_t)fi->fh;

        if (!h) { /* an open answered ENOSYS (no_open): nothing to free */
                fuse_reply_err(req, 0);
                return;
        }
        passthrough_release(req_fs(req)->passthrough, req, ino, h->mode);
        fs_file_free(h);
        fuse_reply_err(req, 0);
}

/* FETCH false: only what is cached, never waiting on a master (the status/watchdog path). */
static int refresh_totals(fs *f, meta_dataset_info *ret, bool fetch)
{
        uint64_t now = now_ms();
        meta_dataset_info d;
        int r;

        pthread_mutex_lock(&f->lock);
        if (!fetch || (f->totals_valid && now - f->totals_ms < FS_STATUS_TTL_MS)) {
                *ret = f->totals_valid ? f->totals : (meta_dataset_info){};
                pthread_mutex_unlock(&f->lock);
                return 0;
        }
        pthread_mutex_unlock(&f->lock);
        r = meta_dataset(f->meta, &d);
        pthread_mutex_lock(&f->lock);
        if (r >= 0) {
                f->totals = d;
                f->totals_ms = now;
                f->totals_valid = true;
        }
        if (f->totals_valid)
                *ret = f->totals;
        else
                *ret = (meta_dataset_info){};
        pthread_mutex_unlock(&f->lock);
        return r;
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
        fs *f = req_fs(req);
        meta_dataset_info d;
        struct statvfs sv = {
                .f_bsize = 4096,
                .f_frsize = 4096,
                .f_namemax = 255,
                .f_flag = ST_RDONLY,
        };

        (void)refresh_totals(f, &d, true);
        sv.f_blocks = (d.total_size + 4095) / 4096;
        sv.f_files = d.total_files;
        fuse_reply_statfs(req, &sv);
}

static int xattr_value(fs *f, fuse_ino_t ino, const char *name, char **ret)
{
        _cleanup_free_ char *path = NULL;
        meta_entry e = {};
        int r;

        /* the ACL and SELinux probes of ls and cp: answered here, the master is not asked */
        if (strcmp(name, XATTR_UFS) != 0 && strcmp(name, XATTR_VERSION) != 0 &&
            strcmp(name, XATTR_CACHED) != 0)
                return -ENODATA;
        r = inode_entry(f, ino, true, &path, &e);
        if (r < 0)
                return r;
        if (strcmp(name, XATTR_UFS) == 0) {
                r = e.ufs_url ? ((*ret = strdup(e.ufs_url)) ? 0 : -ENOMEM) : -ENODATA;
        } else if (strcmp(name, XATTR_VERSION) == 0 && !e.dir) {
                r = asprintf(ret, "%" PRIu64, e.version) < 0 ? -ENOMEM : 0;
        } else if (strcmp(name, XATTR_CACHED) == 0 && !e.dir) {
                uint64_t n = block_count(e.size, f->block_size), have = 0;
                meta_locations *l = NULL;

                meta_blocks_forget(f->meta, e.file_id, e.version); /* a fresh answer */
                r = meta_blocks(f->meta, e.file_id, e.version, &l);
                if (r >= 0) {
                        for (uint64_t i = 0; i < n; i++) {
                                size_t k;

                                (void)meta_locations_find(l, i, &k);
                                have += k > 0;
                        }
                        meta_locations_unref(l);
                        r = asprintf(ret, "%.4f", n ? (double)have / (double)n : 1.0) < 0 ? -ENOMEM
                                                                                          : 0;
                }
        } else {
                r = -ENODATA;
        }
        meta_entry_done(&e);
        return r;
}

/* Without --xattrs the daemon answers ENOSYS: the kernel then answers every later getxattr
 * (listxattr) of the mount itself with EOPNOTSUPP, so the ACL and SELinux probes of `ls -l` cost
 * one round trip per mount instead of one or two per file. */
static bool xattrs_refused(fuse_req_t req, fuse_ino_t ino, const char *op, const char *name)
{
        fs *f = req_fs(req);

        __atomic_add_fetch(&f->xattr_requests, 1, __ATOMIC_RELAXED);
        log_debug("%s %s of inode %" PRIu64 "%s", op, name, (uint64_t)ino,
                  f->opts.xattrs ? "" : ": ENOSYS, the kernel stops asking");
        if (f->opts.xattrs)
                return false;
        fuse_reply_err(req, ENOSYS);
        return true;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        _cleanup_free_ char *value = NULL;
        size_t len;
        int r;

        if (xattrs_refused(req, ino, "getxattr", name))
                return;
        r = xattr_value(req_fs(req), ino, name, &value);

        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        len = strlen(value);
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, value, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        static const char files[] = XATTR_UFS "\0" XATTR_CACHED "\0" XATTR_VERSION "\0";
        static const char dirs[] = XATTR_UFS "\0";
        fs *f = req_fs(req);
        meta_entry e = {};
        const char *names;
        size_t len;
        int r;

        if (xattrs_refused(req, ino, "listxattr", ""))
                return;
        r = inode_entry(f, ino, false, NULL, &e); /* whether it is a directory */
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        names = e.dir ? dirs : files;
        len = e.dir ? sizeof(dirs) - 1 : sizeof(files) - 1;
        meta_entry_done(&e);
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, names, len);
}

static void op_erofs(fuse_req_t req)
{
        fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
        op_erofs(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
        op_erofs(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        op_erofs(req);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        op_erofs(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
        op_erofs(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
        op_erofs(req);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
        op_erofs(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
        op_erofs(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        op_erofs(req);
}

static const struct fuse_lowlevel_ops fs_ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .releasedir = op_releasedir,
        .open = op_open,
        .read = op_read,
        .release = op_release,
        .statfs = op_statfs,
        .getxattr = op_getxattr,
        .listxattr = op_listxattr,
        .setattr = op_setattr,
        .mknod = op_mknod,
        .mkdir = op_mkdir,
        .unlink = op_unlink,
        .rmdir = op_unlink,
        .rename = op_rename,
        .create = op_create,
        .write = op_write,
        .setxattr = op_setxattr,
        .removexattr = op_removexattr,
};

/* --- lifecycle -------------------------------------------------------------------------------- */

static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
        char buf[1024];
        size_t n;

        vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = 0;
        log_full((int)level, "libfuse: %s", buf);
}

int fs_new(const config *c, const config_node *node, const config_dataset *d, const fs_options *o,
           fs **ret)
{
        meta_options mo = {
                .attr_timeout_ms = o->attr_timeout_ms,
                .entry_timeout_ms = o->entry_timeout_ms,
                .retry_ms = o->retry_ms,
                .token = o->token,
                .node = node->name,
                .listing_cache_bytes = o->listing_cache_bytes,
        };
        reader_options ro = {
                .retry_ms = o->retry_ms,
                .stall_ms = 10000,
                .fd_cache = 64,
                .store_fallback = true,
                .token = o->token,
        };
        fs *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        f->config = c;
        f->node = node;
        f->dataset = d;
        f->opts = *o;
        f->block_size = d->block_size ? d->block_size : CONFIG_DEFAULT_BLOCK_SIZE;
        f->prefetch_window = (unsigned)MAX(o->prefetch_bytes / f->block_size, 1);
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        pthread_mutex_init(&f->cursor_lock, NULL);
        f->cursors = lru_new(0, FS_DIR_CURSORS, dir_cursor_free);
        if (!f->cursors) {
                fs_free(f);
                return -ENOMEM;
        }
        fuse_set_log_func(fuse_log_to_ours);

        r = meta_new(c, d, &mo, &f->meta);
        if (r >= 0)
                r = reader_new(c, node, d, f->meta, &ro, &f->reader);
        if (r >= 0 && o->prefetch_threads > 0)
                r = prefetch_new(f->reader, o->prefetch_threads, &f->prefetch);
        if (r >= 0 && o->prefetch_files > 0)
                r = dirahead_new(f->reader, f->meta,
                                 &(dirahead_options){.max_files = o->prefetch_files,
                                                     .max_bytes = o->prefetch_files_bytes,
                                                     .threads = o->prefetch_files},
                                 &f->dirahead);
        if (r >= 0 && o->list_ahead > 0)
                r = lsahead_new(f->meta, o->list_ahead, 2, &f->lsahead);
        if (r >= 0 && !(f->inodes = inode_table_new()))
                r = -ENOMEM;
        if (r >= 0)
                r = passthrough_new(&f->passthrough);
        if (r < 0) {
                fs_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

fs *fs_free(fs *f)
{
        if (!f)
                return NULL;
        fs_unmount(f);
        dirahead_free(f->dirahead);
        lsahead_free(f->lsahead);
        prefetch_free(f->prefetch);
        reader_free(f->reader);
        meta_free(f->meta);
        inode_table_free(f->inodes);
        lru_free(f->cursors);
        passthrough_free(f->passthrough);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        pthread_mutex_destroy(&f->cursor_lock);
        free(f->mountpoint);
        free(f);
        return NULL;
}

int fs_mount(fs *f, const char *mountpoint)
{
        _cleanup_free_ char *fsname = NULL, *opts = NULL;
        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        int r;

        f->mountpoint = strdup(mountpoint);
        if (!f->mountpoint)
                return log_oom();
        r = mount_clear_stale(mountpoint);
        if (r < 0)
                return r;
        r = mkdir_p(mountpoint, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create the mountpoint %s: %m", mountpoint);
        f->max_read = mount_choose_max_read(f->block_size, FS_MAX_READ, FS_MAX_EXTENTS);
        if (f->max_read < FS_MAX_READ)
                log_info("Reads of at most %u KiB: pipes cannot grow past fs.pipe-max-size "
                         "without CAP_SYS_RESOURCE, and larger replies would be copied instead "
                         "of spliced",
                         f->max_read / 1024);

        if (asprintf(&opts,
                     "ro,fsname=weir:%s,subtype=weir,default_permissions,allow_other,"
                     "max_read=%u",
                     f->dataset->name, f->max_read) < 0)
                return log_oom();
        if (fuse_opt_add_arg(&args, "weir-fuse") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
            fuse_opt_add_arg(&args, opts) < 0 ||
            (f->opts.debug && fuse_opt_add_arg(&args, "-d") < 0)) {
                fuse_opt_free_args(&args);
                return log_oom();
        }
        f->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), f);
        fuse_opt_free_args(&args);
        if (!f->se)
                return log_error_errno(EINVAL, "Cannot create the FUSE session.");
        if (fuse_set_signal_handlers(f->se) < 0)
                return log_error_errno(EIO, "Cannot install the signal handlers.");
        f->signals_set = true;
        if (fuse_session_mount(f->se, mountpoint) < 0)
                return log_error_errno(EIO, "Cannot mount %s (is /dev/fuse there?).", mountpoint);

        r = pthread_create(&f->inval_thread, NULL, inval_thread, f);
        if (r != 0)
                return log_error_errno(r, "Cannot start a thread: %m");
        f->inval_started = true;
#if !HAVE_FUSE_PASSTHROUGH
        log_info("FUSE passthrough is not available (libfuse %s < 3.17): cached blocks are "
                 "spliced to the kernel by the daemon.",
                 fuse_pkgversion());
#endif
        return 0;
}

int fs_run(fs *f)
{
        struct fuse_loop_config *cfg = fuse_loop_cfg_create();
        int r;

        if (!cfg)
                return log_oom();
        fuse_loop_cfg_set_max_threads(cfg, f->opts.max_threads);
        fuse_loop_cfg_set_idle_threads(cfg, MIN(f->opts.max_threads, 10u));
        fuse_loop_cfg_set_clone_fd(cfg, 1);
        r = fuse_session_loop_mt(f->se, cfg);
        fuse_loop_cfg_destroy(cfg);

        pthread_mutex_lock(&f->lock);
        f->ended = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                return log_error_errno(r, "The FUSE loop failed: %m");
        return 0;
}

void fs_unmount(fs *f)
{
        if (f->inval_started) {
                pthread_mutex_lock(&f->lock);
                f->inval_stop = true;
                pthread_cond_broadcast(&f->cond);
                pthread_mutex_unlock(&f->lock);
                pthread_join(f->inval_thread, NULL);
                f->inval_started = false;
                while (f->inval_head) {
                        inval_item *i = f->inval_head;

                        f->inval_head = i->next;
                        free(i);
                }
        }
        if (!f->se)
                return;
        if (f->signals_set)
                fuse_remove_signal_handlers(f->se);
        fuse_session_unmount(f->se);
        fuse_session_destroy(f->se);
        f->se = NULL;
}

int fs_wait_live(fs *f, uint64_t timeout_ms)
{
        struct timespec deadline = deadline_after_ms(CLOCK_REALTIME, timeout_ms);
        int r;

        pthread_mutex_lock(&f->lock);
        while (!f->initialized && !f->ended)
                if (pthread_cond_timedwait(&f->cond, &f->lock, &deadline) == ETIMEDOUT)
                        break;
        if (!f->initialized) {
                bool ended = f->ended;

                pthread_mutex_unlock(&f->lock);
                return ended ? -ESHUTDOWN : -ETIMEDOUT;
        }
        pthread_mutex_unlock(&f->lock);
        /* INIT answered; the mount answers once the kernel processed the reply. */
        r = mount_is_live(f->mountpoint);
        if (r < 0)
                return r;
        mount_set_read_ahead(f->mountpoint, f->opts.read_ahead_kb);
        return 0;
}

/* Compares one page of a fresh listing of DIR with the inodes the kernel holds there. */
static void refresh_page(fs *f, const char *dir, const meta_listing *l)
{
        for (size_t i = 0; i < l->n; i++) {
                const meta_entry *e = &l->entries[i];
                _cleanup_free_ char *path = NULL;
                uint64_t ino = 0, version = 0;
                bool changed = false;

                if (e->dir)
                        continue;
                path = inode_path_join(dir, e->name);
                if (!path || inode_table_lookup(f->inodes, path, &ino, &version) < 0)
                        continue;
                if (e->version == version)
                        continue;
                remember_attr(f, ino, e, l->fetched_ms); /* the new version's size and mtime */
                if (inode_table_set_version(f->inodes, ino, e->version, &changed) == 0 && changed)
                        queue_inval(f, ino);
        }
}

void fs_refresh(fs *f)
{
        char **dirs = NULL;
        size_t n = 0;

        /* the directories holding a file the kernel knows, each listed page by page */
        if (inode_table_file_dirs(f->inodes, &dirs, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                meta_listing *l = NULL;

                if (meta_list_page(f->meta, dirs[i], NULL, true, &l) < 0)
                        continue;
                for (;;) {
                        meta_listing *next = NULL;

                        refresh_page(f, dirs[i], l);
                        if (!l->more || meta_list_page(f->meta, dirs[i], l->entries[l->n - 1].name,
                                                       true, &next) < 0)
                                break;
                        meta_listing_unref(l);
                        l = next;
                }
                meta_listing_unref(l);
        }
        for (size_t i = 0; i < n; i++)
                free(dirs[i]);
        free(dirs);
}

void fs_get_status(fs *f, fs_status *ret)
{
        meta_dataset_info d;

        (void)refresh_totals(f, &d, false);
        *ret = (fs_status){
                .mounted = f->se != NULL,
                .mountpoint = f->mountpoint,
                .dataset = f->dataset->name,
                .files = d.total_files,
                .total_size = d.total_size,
                .cached = d.cached,
                .cached_here = d.cached_here,
                .passthrough = passthrough_enabled(f->passthrough),
                .passthrough_opens = passthrough_opens(f->passthrough),
                .inodes = inode_table_size(f->inodes),
                .masters_down = meta_masters_down(f->meta),
                .stale_answers = meta_stale_answers(f->meta),
                .xattr_requests = __atomic_load_n(&f->xattr_requests, __ATOMIC_RELAXED),
        };
        meta_get_counters(f->meta, &ret->meta);
        reader_get_stats(f->reader, &ret->reads);
}

int fs_heartbeat(fs *f)
{
        _cleanup_free_ char *node = http_escape(f->node->name), *dataset = NULL, *path = NULL;
        _cleanup_(json_decrefp) json_t *body = NULL;
        meta_dataset_info d;

        /* the totals are fetched here, on the peers thread, for fs_get_status to read */
        (void)refresh_totals(f, &d, true);
        dataset = http_escape(f->dataset->name);
        if (!node || !dataset || asprintf(&path, "/v1/fuses/%s/%s/heartbeat", node, dataset) < 0)
                return -ENOMEM;
        body = json_pack("{s:s,s:I}", "mountpoint", f->mountpoint ? f->mountpoint : "", "files",
                         (json_int_t)d.total_files);
        if (!body)
                return -ENOMEM;
        return meta_post(f->meta, path, body);
}
