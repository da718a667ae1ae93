/* Block reads: a local fd from the worker socket, HTTP from a worker, or the store itself. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "apiauth.h"
#include "cleanup.h"
#include "hmap.h"
#include "http.h"
#include "log.h"
#include "reader.h"
#include "ufs/ufs.h"
#include "timeutil.h"

#define READER_SOCKET_TIMEOUT_MS 2000
#define READER_LOCAL_DOWN_MS     1000 /* after a failed connect, skip the socket this long */
#define READER_MAX_SPANS         64
#define READER_MAX_LINE          256

typedef struct fd_item {
        char id[BLOCK_ID_MAX]; /* the map's key */
        int fd;
        uint64_t len;
        struct fd_item *prev, *next; /* LRU, most recent first */
} fd_item;

typedef struct ufs_slot {
        reader *owner;
        ufs **handles; /* one per mount of the dataset, opened on first use */
} ufs_slot;

struct reader {
        const config *config;
        const config_node *node;
        const config_dataset *dataset;
        meta *meta;
        reader_options opts;
        char *socket_path;
        char *local_api; /* "HOST:PORT" of this node's worker, NULL when it has none */
        pthread_key_t ufs_key;

        /* lock guards the descriptor cache, local_down_until and stats */
        pthread_mutex_t lock;
        hmap fds; /* block id -> fd_item */
        fd_item *lru_head, *lru_tail;
        uint64_t local_down_until;
        reader_stats stats;
};

void reader_file_done(reader_file *f)
{
        free(f->path);
        free(f->etag);
        *f = (reader_file){};
}

static void ufs_slot_destroy(void *p)
{
        ufs_slot *s = p;

        for (size_t i = 0; i < s->owner->dataset->n_mounts; i++)
                ufs_free(s->handles[i]);
        free(s->handles);
        free(s);
}

static char *worker_api(const config_node *n)
{
        char *s = NULL;

        if (asprintf(&s, strchr(n->address, ':') ? "[%s]:%u" : "%s:%u", n->address,
                     n->worker_port) < 0)
                return NULL;
        return s;
}

int reader_new(const config *c, const config_node *node, const config_dataset *d, meta *m,
               const reader_options *o, reader **ret)
{
        reader *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->config = c;
        r->node = node;
        r->dataset = d;
        r->meta = m;
        r->opts = *o;
        pthread_mutex_init(&r->lock, NULL);
        hmap_init(&r->fds, true);
        if (pthread_key_create(&r->ufs_key, ufs_slot_destroy) != 0) {
                free(r);
                return -ENOMEM;
        }
        if (asprintf(&r->socket_path, "%s/worker.sock", node->runtime_dir) < 0) {
                reader_free(r);
                return -ENOMEM;
        }
        if (node->worker && !(r->local_api = worker_api(node))) {
                reader_free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

reader *reader_free(reader *r)
{
        ufs_slot *s;

        if (!r)
                return NULL;
        s = pthread_getspecific(r->ufs_key);
        if (s) {
                ufs_slot_destroy(s);
                pthread_setspecific(r->ufs_key, NULL);
        }
        pthread_key_delete(r->ufs_key);
        for (fd_item *i = r->lru_head, *n; i; i = n) {
                n = i->next;
                safe_close(i->fd);
                free(i);
        }
        hmap_done(&r->fds);
        pthread_mutex_destroy(&r->lock);
        free(r->socket_path);
        free(r->local_api);
        free(r);
        return NULL;
}

static void count(reader *r, uint64_t *field, uint64_t n)
{
        pthread_mutex_lock(&r->lock);
        *field += n;
        pthread_mutex_unlock(&r->lock);
}

void reader_get_stats(reader *r, reader_stats *ret)
{
        pthread_mutex_lock(&r->lock);
        *ret = r->stats;
        pthread_mutex_unlock(&r->lock);
}

/* --- local descriptors ----------------------------------------------------------------------- */

static void lru_unlink(reader *r, fd_item *i)
{
        if (i->prev)
                i->prev->next = i->next;
        else
                r->lru_head = i->next;
        if (i->next)
                i->next->prev = i->prev;
        else
                r->lru_tail = i->prev;
        i->prev = i->next = NULL;
}

static void lru_push(reader *r, fd_item *i)
{
        i->next = r->lru_head;
        if (r->lru_head)
                r->lru_head->prev = i;
        r->lru_head = i;
        if (!r->lru_tail)
                r->lru_tail = i;
}

/* A dup of the cached descriptor of block ID (the caller closes it), or -ENOENT. */
static int fd_cache_get(reader *r, const char *id, uint64_t *ret_len)
{
        fd_item *i;
        int fd = -ENOENT;

        pthread_mutex_lock(&r->lock);
        i = hmap_get_str(&r->fds, id);
        if (i) {
                fd = fcntl(i->fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        fd = -errno;
                *ret_len = i->len;
                lru_unlink(r, i);
                lru_push(r, i);
        }
        pthread_mutex_unlock(&r->lock);
        return fd;
}

/* Keeps FD (taken) for block ID. The blocks are immutable, so a descriptor never goes stale; the
 * worker unlinks evicted blocks, and the bounded cache bounds the space we pin. */
static void fd_cache_put(reader *r, const char *id, int fd, uint64_t len)
{
        fd_item *i;

        if (r->opts.fd_cache == 0) {
                safe_close(fd);
                return;
        }
        pthread_mutex_lock(&r->lock);
        if (hmap_get_str(&r->fds, id)) {
                pthread_mutex_unlock(&r->lock);
                safe_close(fd);
                return;
        }
        i = calloc(1, sizeof(*i));
        if (!i) {
                pthread_mutex_unlock(&r->lock);
                safe_close(fd);
                return;
        }
        snprintf(i->id, sizeof(i->id), "%s", id);
        i->fd = fd;
        i->len = len;
        if (hmap_put_str(&r->fds, i->id, i, NULL) < 0) {
                pthread_mutex_unlock(&r->lock);
                safe_close(fd);
                free(i);
                return;
        }
        lru_push(r, i);
        while (r->fds.n > r->opts.fd_cache) {
                fd_item *old = r->lru_tail;

                lru_unlink(r, old);
                hmap_remove_str(&r->fds, old->id);
                safe_close(old->fd);
                free(old);
        }
        pthread_mutex_unlock(&r->lock);
}

static void local_mark_down(reader *r)
{
        pthread_mutex_lock(&r->lock);
        r->local_down_until = now_ms() + READER_LOCAL_DOWN_MS;
        pthread_mutex_unlock(&r->lock);
}

static bool local_is_down(reader *r)
{
        bool down;

        pthread_mutex_lock(&r->lock);
        down = now_ms() < r->local_down_until;
        pthread_mutex_unlock(&r->lock);
        return down;
}

/* Sends REQ ("OPEN ID" or "WAIT ID OFF LEN") to the local worker: a read-only descriptor
 * (>= 0, *ret_len the block's length, *ret_part whether it is a block still being filled),
 * -ENOENT when not cached here, -ENODATA when the worker answered ERR, -EAGAIN on a timeout,
 * another negative errno when the socket fails. */
static int local_request(reader *r, const char *req, unsigned timeout_ms, uint64_t *ret_len,
                         bool *ret_part)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        char line[READER_MAX_LINE];
        _cleanup_close_ int s = -1, fd = -1;
        size_t got = 0;
        int n;

        if (strlen(r->socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, r->socket_path);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        (void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                /* no socket file is no worker, not a cache miss */
                return errno == ENOENT ? -ECONNREFUSED : -errno;
        n = (int)strlen(req);
        if (send(s, req, n, MSG_NOSIGNAL) != n)
                return -EIO;

        /* The answer line; the descriptor rides on its first bytes. */
        while (got < sizeof(line) - 1) {
                struct iovec iov = {.iov_base = line + got, .iov_len = sizeof(line) - 1 - got};
                struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
                ssize_t k;

                if (fd < 0) {
                        mh.msg_control = control.buf;
                        mh.msg_controllen = sizeof(control.buf);
                }
                k = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ECONNRESET;
                if (fd < 0)
                        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                                    c->cmsg_len == CMSG_LEN(sizeof(int)))
                                        memcpy(&fd, CMSG_DATA(c), sizeof(int));
                got += k;
                if (memchr(line, '\n', got))
                        break;
        }
        line[got] = 0;
        if (!strchr(line, '\n'))
                return -EBADMSG;
        *strchr(line, '\n') = 0;
        if (strcmp(line, "MISS") == 0)
                return -ENOENT;
        if ((strncmp(line, "OK ", 3) == 0 || strncmp(line, "PART ", 5) == 0) && fd >= 0) {
                const char *num = line + (line[0] == 'O' ? 3 : 5);
                char *end;
                unsigned long long len;

                errno = 0;
                len = strtoull(num, &end, 10);
                if (errno || *end || end == num)
                        return -EBADMSG;
                *ret_len = len;
                *ret_part = line[0] == 'P';
                return TAKE_FD(fd);
        }
        if (strncmp(line, "ERR ", 4) == 0) {
                /* the worker is alive and said no (a failed fill, a bad request) */
                log_debug("Local worker: %.*s: %s", (int)strcspn(req, "\n"), req, line + 4);
                return -ENODATA;
        }
        return -EIO;
}

/* Whether a local_request() error means the worker socket is unusable (worth skipping it for
 * a while), not an answer: a miss, a refusal, a slow fill. */
static bool local_broken(int r)
{
        return r != -ENOENT && r != -ENODATA && r != -EAGAIN && r != -EWOULDBLOCK;
}

static int local_open(reader *r, const char *id, uint64_t *ret_len)
{
        char req[BLOCK_ID_MAX + 8];
        bool part;

        snprintf(req, sizeof(req), "OPEN %s\n", id);
        return local_request(r, req, READER_SOCKET_TIMEOUT_MS, ret_len, &part);
}

/* Checks descriptor FD that the local worker handed for block ID, LEN bytes long where EXPECTED
 * are wanted, and keeps a duplicate in the cache when KEEP: FD, or -ENOENT (FD closed). */
static int accept_local_fd(reader *r, const char *id, int fd, uint64_t len, uint64_t expected,
                           bool keep)
{
        int dupfd;

        if (len != expected) {
                log_warning("Local worker handed block %s with %" PRIu64
                            " bytes instead of %" PRIu64 ", ignoring it",
                            id, len, expected);
                safe_close(fd);
                return -ENOENT;
        }
        if (keep) {
                dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (dupfd >= 0)
                        fd_cache_put(r, id, dupfd, len);
        }
        return fd;
}

/* A descriptor of block ID on this node (cached or fresh from the worker), or -ENOENT. */
static int local_block(reader *r, const char *id, uint64_t expected_len, uint64_t *ret_len)
{
        uint64_t len = 0;
        int fd;

        fd = fd_cache_get(r, id, &len);
        if (fd >= 0) {
                *ret_len = len;
                return fd;
        }
        if (!r->node->worker || local_is_down(r))
                return -ENOENT;
        fd = local_open(r, id, &len);
        if (fd == -ENOENT)
                return fd;
        if (fd < 0) {
                log_debug_errno(fd, "Local worker socket %s: %m", r->socket_path);
                if (local_broken(fd))
                        local_mark_down(r);
                return -ENOENT;
        }
        *ret_len = len;
        return accept_local_fd(r, id, fd, len, expected_len, true);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t offset)
{
        size_t done = 0;

        while (done < len) {
                ssize_t k = pread(fd, (char *)buf + done, len - done, offset + done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -EIO; /* the block is shorter than it said */
                done += k;
        }
        return 0;
}

/* --- the store ------------------------------------------------------------------------------- */

typedef struct sink_state {
        char *buf;
        uint64_t len, got;
} sink_state;

static int sink_copy(const void *data, size_t len, void *userdata)
{
        sink_state *s = userdata;

        if (len > s->len - s->got)
                return -EIO;
        memcpy(s->buf + s->got, data, len);
        s->got += len;
        return 0;
}

/* "/MOUNT/rest" -> the mount's index and "rest". */
static int mount_of(reader *r, const char *path, size_t *ret_index, const char **ret_rel)
{
        const char *p = path[0] == '/' ? path + 1 : path, *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);

        for (size_t i = 0; i < r->dataset->n_mounts; i++)
                if (strlen(r->dataset->mounts[i].name) == n &&
                    memcmp(r->dataset->mounts[i].name, p, n) == 0) {
                        *ret_index = i;
                        *ret_rel = slash ? slash + 1 : "";
                        return 0;
                }
        return -ENOENT;
}

static int store_read(reader *r, const reader_file *f, uint64_t offset, uint64_t len, void *buf)
{
        ufs_slot *slot = pthread_getspecific(r->ufs_key);
        ufs_version v = {.size = f->size, .mtime = f->mtime, .etag = f->etag};
        sink_state s = {.buf = buf, .len = len};
        const char *rel;
        size_t mi;
        int k;

        k = mount_of(r, f->path, &mi, &rel);
        if (k < 0)
                return k;
        if (!slot) {
                slot = calloc(1, sizeof(*slot));
                if (!slot)
                        return -ENOMEM;
                slot->owner = r;
                slot->handles = calloc(r->dataset->n_mounts, sizeof(ufs *));
                if (!slot->handles || pthread_setspecific(r->ufs_key, slot) != 0) {
                        free(slot->handles);
                        free(slot);
                        return -ENOMEM;
                }
        }
        if (!slot->handles[mi]) {
                k = ufs_open(&r->dataset->mounts[mi], &slot->handles[mi]);
                if (k < 0)
                        return log_debug_errno(k, "Cannot open store %s: %m",
                                               r->dataset->mounts[mi].mount_point);
        }
        k = ufs_read(slot->handles[mi], rel, &v, offset, len, sink_copy, &s);
        if (k < 0)
                return log_debug_errno(k, "Store read of %s: %m (%s)", f->path,
                                       ufs_last_error(slot->handles[mi]));
        if (s.got != len)
                return -EIO;
        return 0;
}

/* --- workers over HTTP ----------------------------------------------------------------------- */

static int worker_get(reader *r, const char *api, const char *id, uint64_t offset, uint64_t len,
                      bool whole, void *buf)
{
        http_auth auth = {.token = r->opts.token, .ca_file = r->config->api.tls_ca_file};
        char url[512];

        snprintf(url, sizeof(url), "%s://%s/v1/blocks/%s", apiauth_scheme(r->config), api, id);
        return http_get_range(url, &auth, offset, len, whole, buf, r->opts.stall_ms, NULL);
}

typedef enum source_kind {
        SOURCE_HOLDER, /* a worker the master says has the block */
        SOURCE_LOCAL,  /* this node's worker, which fills from the store */
        SOURCE_ANY,    /* any worker, which fills */
        SOURCE_STORE,
} source_kind;

/* One attempt at the bytes [offset, offset + len) of block span S through every source in
 * order. Returns 0, or the last error. */
static int fetch_span(reader *r, const reader_file *f, const block_span *s, void *buf,
                      bool warm_only)
{
        char id[BLOCK_ID_MAX];
        block_key key = {.file_id = f->file_id, .version = f->version, .index = s->index};
        meta_locations *loc = NULL;
        char *const *holders = NULL;
        size_t n_holders = 0;
        char tried_local = 0;
        uint64_t blen = block_length(f->size, f->block_size, s->index);
        int last = -EHOSTUNREACH, k;
        char one;

        block_id_format(id, &key);
        /* A warm-up asks for one byte: the worker fills the whole block to serve it. */
        uint64_t off = warm_only ? 0 : s->offset, len = warm_only ? 1 : s->len;
        void *dst = warm_only ? (void *)&one : buf;

        k = meta_blocks(r->meta, f->file_id, f->version, &loc);
        if (k < 0)
                log_debug_errno(k, "No block locations for %s: %m", f->path);
        else
                holders = meta_locations_find(loc, s->index, &n_holders);

        for (size_t i = 0; i < n_holders; i++) {
                const config_node *n = config_find_node(r->config, holders[i]);
                _cleanup_free_ char *api = NULL;

                if (!n || !n->worker)
                        continue;
                if (n == r->node && warm_only) {
                        meta_locations_unref(loc);
                        return 0; /* already here */
                }
                api = worker_api(n);
                if (!api) {
                        meta_locations_unref(loc);
                        return -ENOMEM;
                }
                k = worker_get(r, api, id, off, len, off == 0 && len == blen, dst);
                if (k == 0) {
                        meta_locations_unref(loc);
                        if (!warm_only)
                                count(r, &r->stats.bytes_remote, len);
                        return 0;
                }
                log_debug_errno(k, "Block %s from worker %s: %m", id, n->name);
                last = k;
                if (n == r->node)
                        tried_local = 1;
        }
        meta_locations_unref(loc);
        if (n_holders > 0 && last < 0)
                meta_blocks_forget(r->meta, f->file_id, f->version);

        if (r->local_api && !tried_local) {
                k = worker_get(r, r->local_api, id, off, len, off == 0 && len == blen, dst);
                if (k == 0) {
                        if (!warm_only)
                                count(r, &r->stats.bytes_remote, len);
                        return 0;
                }
                log_debug_errno(k, "Block %s from the local worker: %m", id);
                last = k;
        }
        for (size_t i = 0; i < r->config->n_nodes; i++) {
                const config_node *n = &r->config->nodes[i];
                _cleanup_free_ char *api = NULL;

                if (!n->worker || n == r->node)
                        continue;
                api = worker_api(n);
                if (!api)
                        return -ENOMEM;
                k = worker_get(r, api, id, off, len, off == 0 && len == blen, dst);
                if (k == 0) {
                        if (!warm_only)
                                count(r, &r->stats.bytes_remote, len);
                        return 0;
                }
                log_debug_errno(k, "Block %s from worker %s: %m", id, n->name);
                last = k;
        }
        if (warm_only || !r->opts.store_fallback)
                return last;
        k = store_read(r, f, s->index * f->block_size + s->offset, s->len, buf);
        if (k == 0) {
                count(r, &r->stats.bytes_store, s->len);
                return 0;
        }
        return k == -ESTALE || k == -ENOENT ? k : last;
}

static int read_span(reader *r, const reader_file *f, const block_span *s, void *buf)
{
        char id[BLOCK_ID_MAX];
        block_key key = {.file_id = f->file_id, .version = f->version, .index = s->index};
        uint64_t blen = block_length(f->size, f->block_size, s->index), len = 0;
        uint64_t deadline = now_ms() + r->opts.retry_ms, backoff = 50;
        int k, fd;

        block_id_format(id, &key);
        for (unsigned attempt = 0;; attempt++) {
                fd = local_block(r, id, blen, &len);
                if (fd >= 0) {
                        k = pread_all(fd, buf, s->len, s->offset);
                        safe_close(fd);
                        if (k == 0) {
                                count(r, &r->stats.bytes_local, s->len);
                                return 0;
                        }
                        log_debug_errno(k, "pread of local block %s: %m", id);
                }
                k = fetch_span(r, f, s, buf, false);
                if (k == 0)
                        return 0;
                if (k == -ESTALE || k == -ENOMEM)
                        break; /* the file changed upstream: retrying cannot help */
                if (now_ms() + backoff >= deadline)
                        break;
                count(r, &r->stats.retries, 1);
                log_debug_errno(k, "Block %s: attempt %u failed (%m), retrying", id, attempt + 1);
                sleep_ms(backoff);
                backoff = MIN(backoff * 2, 1000);
        }
        count(r, &r->stats.errors, 1);
        return log_error_errno(k,
                               "Cannot read block %s of %s (offset %" PRIu64 ", %" PRIu64
                               " bytes) from any worker or the store: %m",
                               id, f->path, s->offset, s->len);
}

ssize_t reader_read(reader *r, const reader_file *f, uint64_t offset, size_t len, void *buf)
{
        uint64_t total = block_clamp_read(f->size, offset, len), done = 0;

        while (done < total) {
                block_span spans[READER_MAX_SPANS];
                unsigned n = block_split(f->block_size, offset + done, total - done, spans,
                                         READER_MAX_SPANS);

                for (unsigned i = 0; i < n; i++) {
                        int k = read_span(r, f, &spans[i], (char *)buf + done);

                        if (k < 0)
                                return k;
                        done += spans[i].len;
                }
        }
        return (ssize_t)total;
}

/* Block ID of span S from the local worker, filling it there when no other worker holds it:
 * a descriptor in which the span's bytes are valid, as soon as they are fetched. */
static int local_wait(reader *r, const reader_file *f, const block_span *s, const char *id,
                      meta_locations **loc)
{
        char req[BLOCK_ID_MAX + 48];
        uint64_t blen = block_length(f->size, f->block_size, s->index), len = 0;
        char *const *holders;
        size_t n_holders;
        bool part = false;
        int fd;

        fd = fd_cache_get(r, id, &len);
        if (fd >= 0)
                return fd;
        /* a block another worker holds is read from it, not cached twice */
        if (!*loc && meta_blocks(r->meta, f->file_id, f->version, loc) < 0)
                *loc = NULL;
        holders = meta_locations_find(*loc, s->index, &n_holders);
        for (size_t j = 0; j < n_holders; j++)
                if (strcmp(holders[j], r->node->name) != 0)
                        return -EREMOTE;
        snprintf(req, sizeof(req), "WAIT %s %" PRIu64 " %" PRIu64 "\n", id, s->offset, s->len);
        fd = local_request(r, req, (unsigned)MIN(r->opts.stall_ms, 60000u), &len, &part);
        if (fd < 0) {
                if (local_broken(fd)) {
                        log_debug_errno(fd, "Local worker socket %s: %m", r->socket_path);
                        local_mark_down(r);
                }
                return fd;
        }
        /* a block still being filled holds only the bytes asked for: never kept */
        return accept_local_fd(r, id, fd, len, blen, !part);
}

/* The extents of [OFFSET, OFFSET + LEN) on this node: cached blocks only, or with FILL the
 * local worker filling the others (see the two callers). */
static int local_extents(reader *r, const reader_file *f, uint64_t offset, size_t len,
                         reader_extent *ext, unsigned max, unsigned *ret_n, bool fill)
{
        uint64_t total = block_clamp_read(f->size, offset, len);
        block_span spans[READER_MAX_SPANS];
        meta_locations *loc = NULL;
        unsigned n;
        int k = 0;

        if (fill && (!r->local_api || local_is_down(r)))
                return -ENOENT;
        if (max > READER_MAX_SPANS)
                max = READER_MAX_SPANS;
        n = block_split(f->block_size, offset, total, spans, max);
        if (total > 0 && (n == 0 || spans[n - 1].index * f->block_size + spans[n - 1].offset +
                                                    spans[n - 1].len !=
                                            offset + total))
                return -E2BIG;
        for (unsigned i = 0; i < n; i++) {
                char id[BLOCK_ID_MAX];
                block_key key = {
                        .file_id = f->file_id, .version = f->version, .index = spans[i].index};
                uint64_t blen = block_length(f->size, f->block_size, spans[i].index), got = 0;
                int fd;

                block_id_format(id, &key);
                fd = fill ? local_wait(r, f, &spans[i], id, &loc) : local_block(r, id, blen, &got);
                if (fd < 0) {
                        for (unsigned j = 0; j < i; j++)
                                safe_close(ext[j].fd);
                        k = fill ? fd : -ENOENT;
                        break;
                }
                ext[i] = (reader_extent){.fd = fd, .offset = spans[i].offset, .len = spans[i].len};
        }
        meta_locations_unref(loc);
        if (k < 0)
                return k;
        count(r, &r->stats.bytes_local, total);
        *ret_n = n;
        return 0;
}

int reader_local_extents(reader *r, const reader_file *f, uint64_t offset, size_t len,
                         reader_extent *ext, unsigned max, unsigned *ret_n)
{
        return local_extents(r, f, offset, len, ext, max, ret_n, false);
}

int reader_wait_local_extents(reader *r, const reader_file *f, uint64_t offset, size_t len,
                              reader_extent *ext, unsigned max, unsigned *ret_n)
{
        return local_extents(r, f, offset, len, ext, max, ret_n, true);
}

int reader_local_fd(reader *r, const reader_file *f, uint64_t index)
{
        char id[BLOCK_ID_MAX];
        block_key key = {.file_id = f->file_id, .version = f->version, .index = index};
        uint64_t len;

        block_id_format(id, &key);
        return local_block(r, id, block_length(f->size, f->block_size, index), &len);
}

bool reader_is_local(reader *r, const reader_file *f, uint64_t index)
{
        int fd = reader_local_fd(r, f, index);

        if (fd < 0)
                return false;
        safe_close(fd);
        return true;
}

int reader_warm(reader *r, const reader_file *f, uint64_t index)
{
        block_span s = {
                .index = index, .offset = 0, .len = block_length(f->size, f->block_size, index)};

        if (s.len == 0)
                return 0;
        if (reader_is_local(r, f, index))
                return 0;
        return fetch_span(r, f, &s, NULL, true);
}
