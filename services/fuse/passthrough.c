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
} pt_inode;

struct passthrough {
        bool enabled;
        pthread_mutex_t lock; /* guards inodes and opens */
        hmap inodes;          /* ino -> pt_inode, while anything is open */
        uint64_t opens;
};

int passthrough_new(passthrough **ret)
{
        passthrough *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
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

#if HAVE_FUSE_PASSTHROUGH
/* A new backing file for INO, or 0 when the content is not here or the kernel refuses. */
static int backing_open(passthrough *p, fuse_req_t req, uint64_t ino, passthrough_fd_fn get_fd,
                        void *userdata)
{
        _cleanup_close_ int fd = get_fd(userdata);
        int id;

        if (fd < 0)
                return 0;
        id = fuse_passthrough_open(req, fd);
        if (id <= 0) {
                /* EPERM without CAP_SYS_ADMIN; the kernel may also refuse the file system. Stop
                 * asking: each refusal costs an ioctl and a log line. */
                log_warning("FUSE passthrough of inode %" PRIu64
                            " refused by the kernel (%d); reads go through the daemon from now "
                            "on. weir-fuse needs CAP_SYS_ADMIN for passthrough.",
                            ino, id);
                p->enabled = false;
                return 0;
        }
        return id;
}
#endif

passthrough_mode passthrough_open(passthrough *p, fuse_req_t req, uint64_t ino, uint64_t version,
                                  bool qualifies, passthrough_fd_fn get_fd, void *userdata,
                                  int *ret_backing_id)
{
        passthrough_mode mode = PASSTHROUGH_CACHED;
        pt_inode *s;

        *ret_backing_id = 0;
        pthread_mutex_lock(&p->lock);
        s = hmap_get_u64(&p->inodes, ino);
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s || hmap_put_u64(&p->inodes, ino, s, NULL) < 0) {
                        /* Untracked, this cached open could meet a passthrough open of the same
                         * inode later, which the kernel refuses: stop passing through. */
                        free(s);
                        p->enabled = false;
                        pthread_mutex_unlock(&p->lock);
                        log_warning("FUSE passthrough turned off: out of memory.");
                        return PASSTHROUGH_CACHED;
                }
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
                /* Under the lock: a concurrent open of the same inode must not make a second
                 * backing file. The descriptor comes from the reader's descriptor cache or the
                 * local worker's socket (a round trip of well under a millisecond). */
                int id = backing_open(p, req, ino, get_fd, userdata);

                if (id > 0) {
                        s->backing_id = id;
                        s->version = version;
                        mode = PASSTHROUGH_BACKING;
                        *ret_backing_id = id;
                }
#else
                (void)req;
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

void passthrough_release(passthrough *p, fuse_req_t req, uint64_t ino, passthrough_mode mode)
{
        pt_inode *s;

        pthread_mutex_lock(&p->lock);
        s = hmap_get_u64(&p->inodes, ino);
        if (!s) {
                pthread_mutex_unlock(&p->lock); /* opened while out of memory */
                return;
        }
        if (mode == PASSTHROUGH_BACKING && s->passthrough_opens > 0) {
                if (--s->passthrough_opens == 0) {
#if HAVE_FUSE_PASSTHROUGH
                        if (fuse_passthrough_close(req, s->backing_id) < 0)
                                log_debug(
                                        "FUSE passthrough: closing backing id %d of inode %" PRIu64
                                        " failed",
                                        s->backing_id, ino);
#else
                        (void)req;
#endif
                        s->backing_id = 0;
                }
        } else if (mode == PASSTHROUGH_CACHED && s->cached_opens > 0)
                s->cached_opens--;
        if (s->passthrough_opens == 0 && s->cached_opens == 0)
                free(hmap_remove_u64(&p->inodes, ino));
        pthread_mutex_unlock(&p->lock);
}
