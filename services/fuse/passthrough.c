/* FUSE passthrough (see passthrough.h). */
#include "passthrough.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>

#include "cleanup.h"
#include "hmap.h"
#include "log.h"

/* What the kernel holds open of one inode. */
typedef struct pt_inode {
        unsigned passthrough_opens; /* opens answered with backing_id */
        unsigned cached_opens;      /* opens through this daemon and the page cache */
        int backing_id;             /* > 0 while passthrough_opens > 0 */
        uint64_t version;           /* of the backing file */
        bool opening;               /* an open is making the backing file, without the lock */
} pt_inode;

struct passthrough {
        bool enabled;
        bool tracking;        /* the kernel granted it at init: opens are counted per inode */
        pthread_mutex_t lock; /* guards everything below */
        pthread_cond_t cond;  /* an inode's `opening` ended */
        hmap inodes;          /* ino -> pt_inode, while anything is open */
        uint64_t opens;
        /* Backing ids to close with the next request: an open whose reply failed (the request
         * is freed by then, and closing needs one). */
        int *orphans;
        size_t n_orphans, max_orphans;
};

int passthrough_new(passthrough **ret)
{
        passthrough *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        hmap_init(&p->inodes, false);
        *ret = p;
        return 0;
}

passthrough *passthrough_free(passthrough *p)
{
        size_t i;

        if (!p)
                return NULL;
        for (hmap_node *n = hmap_first(&p->inodes, &i); n; n = hmap_next(&p->inodes, n, &i))
                free(n->value);
        hmap_done(&p->inodes);
        free(p->orphans);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

void passthrough_init(passthrough *p, struct fuse_conn_info *conn)
{
#if HAVE_FUSE_PASSTHROUGH
        /* Backing files are tier files on tmpfs, ext4, xfs: not on a stacked file system. */
        conn->max_backing_stack_depth = FUSE_BACKING_STACKED_UNDER;
        p->enabled = fuse_set_feature_flag(conn, FUSE_CAP_PASSTHROUGH);
        p->tracking = p->enabled;
        if (!p->enabled)
                log_info("FUSE passthrough: the kernel does not offer it (Linux >= 6.9 with "
                         "CONFIG_FUSE_PASSTHROUGH); cached blocks are spliced by the daemon.");
#else
        (void)conn;
        p->enabled = false;
#endif
}

bool passthrough_enabled(passthrough *p)
{
        return p->enabled;
}

uint64_t passthrough_opens(passthrough *p)
{
        uint64_t n;

        pthread_mutex_lock(&p->lock);
        n = p->opens;
        pthread_mutex_unlock(&p->lock);
        return n;
}

/* Closes the backing ids orphaned by failed replies, with a live request. Locked. */
static void close_orphans_locked(passthrough *p, fuse_req_t req)
{
#if HAVE_FUSE_PASSTHROUGH
        for (size_t i = 0; i < p->n_orphans; i++)
                (void)fuse_passthrough_close(req, p->orphans[i]);
#else
        (void)req;
#endif
        p->n_orphans = 0;
}

passthrough_mode passthrough_open(passthrough *p, fuse_req_t req, uint64_t ino, uint64_t version,
                                  bool qualifies, passthrough_fd_fn get_fd, void *userdata,
                                  int *ret_backing_id)
{
        passthrough_mode mode = PASSTHROUGH_CACHED;
        pt_inode *s;

        *ret_backing_id = 0;
        /* Never granted (libfuse < 3.17, an older kernel): no open can meet a passthrough one,
         * so nothing is counted (a lock, an allocation and a hash insertion less per open). */
        if (!p->tracking)
                return PASSTHROUGH_CACHED;
        pthread_mutex_lock(&p->lock);
        close_orphans_locked(p, req);
        /* Looked up again after each wait: the open that made the backing file may have been
         * released and its entry freed before this thread got the lock back. */
        for (;;) {
                s = hmap_get_u64(&p->inodes, ino);
                if (!s) {
                        s = calloc(1, sizeof(*s));
                        if (!s || hmap_put_u64(&p->inodes, ino, s, NULL) < 0) {
                                /* Untracked, this cached open could meet a passthrough open of
                                 * the same inode later, which the kernel refuses: stop passing
                                 * through. */
                                free(s);
                                p->enabled = false;
                                pthread_mutex_unlock(&p->lock);
                                log_warning("FUSE passthrough turned off: out of memory.");
                                return PASSTHROUGH_CACHED;
                        }
                }
                if (!s->opening)
                        break;
                /* another open of this inode is making its backing file: use what it makes */
                pthread_cond_wait(&p->cond, &p->lock);
        }
        if (s->passthrough_opens > 0) {
                /* one backing file per inode, which every open must use: share it */
                if (s->version != version)
                        log_debug("Inode %" PRIu64 " changed to version %" PRIu64
                                  " while open by passthrough: version %" PRIu64
                                  " is read until its last open closes",
                                  ino, version, s->version);
                mode = PASSTHROUGH_BACKING;
                *ret_backing_id = s->backing_id;
        } else if (s->cached_opens == 0 && qualifies && p->enabled) {
#if HAVE_FUSE_PASSTHROUGH
                int fd, id = 0;

                /* The descriptor may take a round trip to the local worker: not under the lock
                 * (other inodes' opens go on; this inode's wait for the outcome above). */
                s->opening = true;
                pthread_mutex_unlock(&p->lock);
                fd = get_fd(userdata);
                if (fd >= 0) {
                        id = fuse_passthrough_open(req, fd);
                        safe_close(fd);
                }
                pthread_mutex_lock(&p->lock);
                s->opening = false;
                pthread_cond_broadcast(&p->cond);
                if (id > 0) {
                        s->backing_id = id;
                        s->version = version;
                        mode = PASSTHROUGH_BACKING;
                        *ret_backing_id = id;
                } else if (fd >= 0 && p->enabled) {
                        /* EPERM without CAP_SYS_ADMIN; the kernel may also refuse the file
                         * system. Stop asking: each refusal costs an ioctl and a log line. */
                        p->enabled = false;
                        log_warning("FUSE passthrough of inode %" PRIu64
                                    " refused by the kernel (%d); reads go through the daemon "
                                    "from now on. weir-fuse needs CAP_SYS_ADMIN for passthrough.",
                                    ino, id);
                }
#else
                (void)get_fd;
                (void)userdata;
#endif
        }
        if (mode == PASSTHROUGH_BACKING) {
                s->passthrough_opens++;
                p->opens++;
        } else
                s->cached_opens++;
        pthread_mutex_unlock(&p->lock);
        return mode;
}

/* Room for one more orphan. Locked. */
static bool orphans_reserve(passthrough *p)
{
        size_t max = p->max_orphans ? p->max_orphans * 2 : 8;
        int *o;

        if (p->n_orphans < p->max_orphans)
                return true;
        o = realloc(p->orphans, max * sizeof(*o));
        if (!o)
                return false;
        p->orphans = o;
        p->max_orphans = max;
        return true;
}

/* Drops one open of INO; REQ NULL: its reply failed, any backing id to close waits for a
 * request. Locked. */
static void drop_open_locked(passthrough *p, fuse_req_t req, uint64_t ino, passthrough_mode mode)
{
        pt_inode *s = hmap_get_u64(&p->inodes, ino);

        if (!s)
                return; /* opened while out of memory */
        if (mode == PASSTHROUGH_BACKING && s->passthrough_opens > 0) {
                if (--s->passthrough_opens == 0) {
                        if (req) {
#if HAVE_FUSE_PASSTHROUGH
                                if (fuse_passthrough_close(req, s->backing_id) < 0)
                                        log_debug("FUSE passthrough: closing backing id %d of "
                                                  "inode %" PRIu64 " failed",
                                                  s->backing_id, ino);
#endif
                        } else if (orphans_reserve(p))
                                p->orphans[p->n_orphans++] = s->backing_id;
                        else
                                log_warning("Out of memory: backing id %d stays registered until "
                                            "unmount",
                                            s->backing_id);
                        s->backing_id = 0;
                }
        } else if (mode == PASSTHROUGH_CACHED && s->cached_opens > 0)
                s->cached_opens--;
        if (s->passthrough_opens == 0 && s->cached_opens == 0 && !s->opening)
                free(hmap_remove_u64(&p->inodes, ino));
}

void passthrough_release(passthrough *p, fuse_req_t req, uint64_t ino, passthrough_mode mode)
{
        if (!p->tracking)
                return;
        pthread_mutex_lock(&p->lock);
        close_orphans_locked(p, req);
        drop_open_locked(p, req, ino, mode);
        pthread_mutex_unlock(&p->lock);
}

void passthrough_abort_open(passthrough *p, uint64_t ino, passthrough_mode mode)
{
        if (!p->tracking)
                return;
        pthread_mutex_lock(&p->lock);
        drop_open_locked(p, NULL, ino, mode);
        pthread_mutex_unlock(&p->lock);
}
