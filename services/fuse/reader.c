/* Block reads: a local fd from the worker socket, HTTP from a worker, or the store itself.
 *
 * A read is planned once (reader_plan()): the block locations are asked for once (meta caches
 * them for a second), and each span is labelled with the source to try first: a descriptor kept
 * here, the local worker (one WAIT on its socket: it hands the block when cached, fills it
 * otherwise), another worker over HTTP, or the store. The copy then runs one loop over each
 * span's sources in that order (fetch_span()). Answers that say "not here" are remembered for
 * READER_MISS_TTL_MS, so a block the local worker cannot give costs its socket nothing on the
 * reads that follow.
 *
 * Threads: any libfuse request thread and the prefetch pool; lock guards the descriptor cache,
 * the miss cache, local_down_until, the pool of idle worker connections and stats. */
#include <assert.h>
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
#include "etag.h"
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
#define READER_MISS_TTL_MS       1000 /* a "not here" answer is believed this long */
#define READER_MISSES            64   /* remembered answers (a ring: the oldest goes first) */
#define READER_POOL_MAX          8    /* idle connections to the local worker kept open */
#define READER_POOL_IDLE_MS      3000 /* the worker closes a connection silent for 5 s */

/* A block the local worker said it does not hold (OPEN answered MISS) or could not give (a WAIT
 * that failed): the first kind only spares the hit-only lookups, the second also keeps the plan
 * from asking the local worker to fill it again. */
typedef struct miss_item {
        char id[BLOCK_ID_MAX];
        uint64_t until_ms;
        bool fill_failed;
} miss_item;

typedef struct fd_item {
        char id[BLOCK_ID_MAX]; /* the map's key */
        int fd;
        uint64_t len;
        struct fd_item *prev, *next; /* LRU, most recent first */
} fd_item;

/* An idle connection to the local worker's socket. */
typedef struct pooled_conn {
        int fd;
        uint64_t used_ms;    /* when its last answer came */
        unsigned timeout_ms; /* its SO_RCVTIMEO / SO_SNDTIMEO */
} pooled_conn;

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

        /* lock guards the descriptor cache, local_down_until, misses, pool and stats */
        pthread_mutex_t lock;
        hmap fds; /* block id -> fd_item */
        fd_item *lru_head, *lru_tail;
        uint64_t local_down_until;
        miss_item misses[READER_MISSES];
        unsigned next_miss;
        reader_stats stats;
        pooled_conn pool[READER_POOL_MAX]; /* idle connections to the local worker */
        unsigned n_pool;
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
        for (unsigned i = 0; i < r->n_pool; i++)
                safe_close(r->pool[i].fd);
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

static void miss_remember(reader *r, const char *id, bool fill_failed)
{
        miss_item *m = NULL;

        pthread_mutex_lock(&r->lock);
        for (unsigned i = 0; i < READER_MISSES && !m; i++)
                if (strcmp(r->misses[i].id, id) == 0)
                        m = &r->misses[i];
        if (!m) {
                m = &r->misses[r->next_miss];
                r->next_miss = (r->next_miss + 1) % READER_MISSES;
                m->fill_failed = false;
        }
        snprintf(m->id, sizeof(m->id), "%s", id);
        m->until_ms = now_ms() + READER_MISS_TTL_MS;
        m->fill_failed = m->fill_failed || fill_failed;
        pthread_mutex_unlock(&r->lock);
}

/* Whether block ID was answered "not here" (with FILL: "cannot fill") in the last
 * READER_MISS_TTL_MS. */
static bool miss_recent(reader *r, const char *id, bool fill)
{
        uint64_t now = now_ms();
        bool found = false;

        pthread_mutex_lock(&r->lock);
        for (unsigned i = 0; i < READER_MISSES && !found; i++)
                found = r->misses[i].until_ms > now && strcmp(r->misses[i].id, id) == 0 &&
                        (!fill || r->misses[i].fill_failed);
        pthread_mutex_unlock(&r->lock);
        return found;
}

/* Block ID is here now: forget what was said about it. */
static void miss_forget(reader *r, const char *id)
{
        pthread_mutex_lock(&r->lock);
        for (unsigned i = 0; i < READER_MISSES; i++)
                if (strcmp(r->misses[i].id, id) == 0)
                        r->misses[i] = (miss_item){};
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

/* --- connections to the local worker ------------------------------------------------------- */

/* A fresh connection to the local worker's socket, or a negative errno (-ECONNREFUSED when there
 * is no socket file: no worker, not a cache miss). */
static int local_connect(reader *r)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int s = -1;

        if (strlen(r->socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, r->socket_path);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return errno == ENOENT ? -ECONNREFUSED : -errno;
        return TAKE_FD(s);
}

/* Whether pooled connection S can carry another request: nothing is waiting to be read on it
 * (an answer we did not ask for, the worker's "ERR request line timed out") and it is not
 * closed. */
static bool local_conn_clean(int s)
{
        char c;

        return recv(s, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
               (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* An idle connection from the pool (*RET_REUSED true), or a fresh one. */
static int local_conn_take(reader *r, bool *ret_reused, unsigned *ret_timeout_ms)
{
        uint64_t now = now_ms();

        pthread_mutex_lock(&r->lock);
        while (r->n_pool > 0) {
                pooled_conn c = r->pool[--r->n_pool];

                pthread_mutex_unlock(&r->lock);
                if (c.used_ms + READER_POOL_IDLE_MS > now && local_conn_clean(c.fd)) {
                        *ret_reused = true;
                        *ret_timeout_ms = c.timeout_ms;
                        return c.fd;
                }
                safe_close(c.fd);
                pthread_mutex_lock(&r->lock);
        }
        pthread_mutex_unlock(&r->lock);
        *ret_reused = false;
        *ret_timeout_ms = 0;
        return local_connect(r);
}

/* Gives connection S (taken) back to the pool when there is room. */
static void local_conn_give(reader *r, int s, unsigned timeout_ms)
{
        /* whether the worker closed it meanwhile is checked when it is taken */
        pthread_mutex_lock(&r->lock);
        if (r->n_pool < READER_POOL_MAX) {
                r->pool[r->n_pool++] =
                        (pooled_conn){.fd = s, .used_ms = now_ms(), .timeout_ms = timeout_ms};
                s = -1;
        }
        pthread_mutex_unlock(&r->lock);
        safe_close(s);
}

/* Sends REQ on connection S and reads the answer line: see local_request(). *RET_CLEAN says
 * whether the exchange ended on a line boundary (the connection may carry another request),
 * *RET_SENT_NOTHING whether the worker closed the connection before answering anything (a
 * pooled connection it had closed meanwhile: the request may go again on a fresh one). */
static int local_exchange(int s, const char *req, uint64_t *ret_len, bool *ret_part,
                          bool *ret_clean, bool *ret_sent_nothing)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        char line[READER_MAX_LINE];
        _cleanup_close_ int fd = -1;
        size_t got = 0;
        int n;

        *ret_clean = false;
        *ret_sent_nothing = false;
        n = (int)strlen(req);
        if (send(s, req, n, MSG_NOSIGNAL) != n) {
                *ret_sent_nothing = errno == EPIPE || errno == ECONNRESET;
                return -EIO;
        }

        /* The answer line; the descriptor rides on its first bytes. One request is in flight at
         * a time, so nothing past the first newline can arrive. */
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
                if (k < 0) {
                        *ret_sent_nothing = got == 0 && errno == ECONNRESET;
                        return -errno;
                }
                if (k == 0) {
                        *ret_sent_nothing = got == 0;
                        return -ECONNRESET;
                }
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
        *ret_clean = strchr(line, '\n') == line + got - 1;
        *strchr(line, '\n') = 0;
        if (strcmp(line, "MISS") == 0)
                return -ENOENT;
        if ((strncmp(line, "OK ", 3) == 0 || strncmp(line, "PART ", 5) == 0) && fd >= 0) {
                const char *num = line + (line[0] == 'O' ? 3 : 5);
                char *end;
                unsigned long long len;

                errno = 0;
                len = strtoull(num, &end, 10);
                if (errno || *end || end == num) {
                        *ret_clean = false;
                        return -EBADMSG;
                }
                *ret_len = len;
                *ret_part = line[0] == 'P';
                return TAKE_FD(fd);
        }
        if (strncmp(line, "ERR ", 4) == 0) {
                /* the worker is alive and said no (a failed fill, a bad request) */
                log_debug("Local worker: %.*s: %s", (int)strcspn(req, "\n"), req, line + 4);
                if (strncmp(line + 4, ETAG_MISMATCH_PREFIX, strlen(ETAG_MISMATCH_PREFIX)) == 0)
                        return -EILSEQ;
                return -ENODATA;
        }
        *ret_clean = false;
        return -EIO;
}

/* Sends REQ ("OPEN ID" or "WAIT ID OFF LEN") to the local worker: a read-only descriptor
 * (>= 0, *ret_len the block's length, *ret_part whether it is a block still being filled),
 * -ENOENT when not cached here, -ENODATA when the worker answered ERR, -EILSEQ when that ERR
 * says the version's content does not match its hash, -EAGAIN on a timeout, another negative
 * errno when the socket fails.
 *
 * Connections are kept open between requests (up to READER_POOL_MAX idle ones, each for less
 * than the worker's 5 s line timeout): a small file costs one request and its answer, not a
 * socket, a connect and an accept on both sides. The worker ends a connection whose WAIT it
 * answered from a fill; a request that meets such a closed connection goes again, once, on a
 * fresh one (OPEN and WAIT are idempotent). */
static int local_request(reader *r, const char *req, unsigned timeout_ms, uint64_t *ret_len,
                         bool *ret_part)
{
        for (unsigned attempt = 0;; attempt++) {
                bool reused = false, clean = false, nothing = false;
                unsigned set_ms = 0;
                int s = local_conn_take(r, &reused, &set_ms), k;

                if (s < 0)
                        return s;
                if (set_ms != timeout_ms) {
                        struct timeval tv = {.tv_sec = timeout_ms / 1000,
                                             .tv_usec = (timeout_ms % 1000) * 1000};

                        (void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                        (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                }
                k = local_exchange(s, req, ret_len, ret_part, &clean, &nothing);
                if (k < 0 && nothing && reused && attempt == 0) {
                        safe_close(s);
                        continue;
                }
                /* a block being filled was answered from a fill: the worker ends that
                 * connection */
                if (clean && !(k >= 0 && *ret_part))
                        local_conn_give(r, s, timeout_ms);
                else
                        safe_close(s);
                return k;
        }
}

/* Whether a local_request() error means the worker socket is unusable (worth skipping it for
 * a while), not an answer: a miss, a refusal, a slow fill. */
static bool local_broken(int r)
{
        return r != -ENOENT && r != -ENODATA && r != -EAGAIN && r != -EWOULDBLOCK && r != -EILSEQ;
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
        if (!r->node->worker || local_is_down(r) || miss_recent(r, id, false))
                return -ENOENT;
        fd = local_open(r, id, &len);
        if (fd == -ENOENT) {
                miss_remember(r, id, false);
                return fd;
        }
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
        long status = 0;
        int k;

        snprintf(url, sizeof(url), "%s://%s/v1/blocks/%s", apiauth_scheme(r->config), api, id);
        k = http_get_range(url, &auth, offset, len, whole, buf, r->opts.stall_ms, &status);
        /* 410: the workers found this version's bytes differ from the store's content hash */
        return k < 0 && status == 410 ? -EILSEQ : k;
}

/* --- the plan -------------------------------------------------------------------------------- */

static bool has_other_worker(reader *r)
{
        for (size_t i = 0; i < r->config->n_nodes; i++)
                if (r->config->nodes[i].worker && &r->config->nodes[i] != r->node)
                        return true;
        return false;
}

/* Labels span S (not a descriptor kept here) from the master's locations LOC (NULL when they
 * could not be had): a block this node holds or that nobody else holds is the local worker's
 * (it fills it); one another worker holds is read from there, never cached twice. */
static void plan_label(reader *r, const meta_locations *loc, reader_span *s)
{
        bool local_ok = r->node->worker && !local_is_down(r) && !miss_recent(r, s->id, true);
        const config_node *remote = NULL;
        bool here = false;
        char *const *holders;
        size_t n = 0;

        holders = meta_locations_find(loc, s->span.index, &n);
        for (size_t i = 0; i < n; i++) {
                const config_node *node = config_find_node(r->config, holders[i]);

                if (!node || !node->worker)
                        continue;
                if (node == r->node)
                        here = true;
                else if (!remote)
                        remote = node;
        }
        s->holder = remote;
        if (local_ok && (here || !remote))
                s->source = READER_LOCAL;
        else if (remote || has_other_worker(r))
                s->source = READER_REMOTE;
        else if (local_ok || here)
                s->source = READER_LOCAL;
        else
                s->source = READER_STORE;
}

static meta_locations *plan_locations(reader *r, const reader_file *f)
{
        meta_locations *loc = NULL;
        int k;

        if (!r->meta)
                return NULL;
        k = meta_blocks(r->meta, f->file_id, f->version, &loc);
        if (k < 0) {
                /* no master answers: the local worker, the others, then the store */
                log_debug_errno(k, "No block locations for %s: %m", f->path);
                return NULL;
        }
        return loc;
}

void reader_plan_init(reader *r, const reader_file *f, uint64_t offset, size_t len,
                      reader_plan *ret)
{
        block_span spans[READER_PLAN_MAX];
        meta_locations *loc = NULL;
        bool need_locations = false;
        unsigned n;

        assert(r && f && ret);
        assert(f->block_size > 0);
        *ret = (reader_plan){.offset = offset, .want = block_clamp_read(f->size, offset, len)};
        n = block_split(f->block_size, offset, ret->want, spans, READER_PLAN_MAX);
        for (unsigned i = 0; i < n; i++) {
                reader_span *s = &ret->spans[i];
                block_key key = {.epoch = f->epoch,
                                 .file_id = f->file_id,
                                 .version = f->version,
                                 .index = spans[i].index};
                uint64_t got = 0;
                int fd;

                *s = (reader_span){.span = spans[i], .fd = -1};
                block_id_format(s->id, &key);
                ret->len += spans[i].len;
                fd = fd_cache_get(r, s->id, &got);
                /* A file of one block: asking the local worker whether it holds it costs one
                 * request on a kept connection; asking the master where it is costs an HTTP
                 * call and the master's CPU, per file. Warm small files need no master at all.
                 * (Files of several blocks keep the one lookup per plan: a block another
                 * worker holds must not cost the local socket a miss each.) */
                if (fd < 0 && n == 1 && f->size <= f->block_size)
                        fd = local_block(r, s->id, block_length(f->size, f->block_size, 0), &got);
                if (fd >= 0) {
                        s->fd = fd;
                        s->source = READER_LOCAL_HIT;
                } else
                        need_locations = true;
        }
        ret->n = n;
        if (need_locations)
                loc = plan_locations(r, f);
        for (unsigned i = 0; i < n; i++)
                if (ret->spans[i].fd < 0)
                        plan_label(r, loc, &ret->spans[i]);
        meta_locations_unref(loc);
}

void reader_plan_done(reader_plan *p)
{
        for (unsigned i = 0; i < p->n; i++)
                p->spans[i].fd = safe_close(p->spans[i].fd);
        p->n = 0;
}

/* A descriptor of span S's block from the local worker (WAIT: the block when cached, filled
 * first otherwise), valid for [OFF, OFF + LEN) at least. A failure is remembered, and S is
 * relabelled so that the plan's next step does not ask again. */
static int local_wait(reader *r, const reader_file *f, reader_span *s, uint64_t off, uint64_t len)
{
        char req[BLOCK_ID_MAX + 48];
        uint64_t blen = block_length(f->size, f->block_size, s->span.index), got = 0;
        bool part = false;
        int fd;

        snprintf(req, sizeof(req), "WAIT %s %" PRIu64 " %" PRIu64 "\n", s->id, off, len);
        fd = local_request(r, req, (unsigned)MIN(r->opts.stall_ms, 60000u), &got, &part);
        if (fd >= 0) {
                miss_forget(r, s->id);
                /* a block still being filled holds only the bytes asked for: never kept */
                fd = accept_local_fd(r, s->id, fd, got, blen, !part);
        } else if (local_broken(fd)) {
                log_debug_errno(fd, "Local worker socket %s: %m", r->socket_path);
                local_mark_down(r);
        } else
                log_debug_errno(fd, "Block %s from the local worker: %m", s->id);
        if (fd < 0) {
                miss_remember(r, s->id, true);
                if (s->source == READER_LOCAL || s->source == READER_LOCAL_HIT)
                        s->source = s->holder || has_other_worker(r) ? READER_REMOTE : READER_STORE;
        }
        return fd;
}

int reader_plan_extents(reader *r, const reader_file *f, reader_plan *p, reader_extent *ext,
                        unsigned max, unsigned *ret_n)
{
        assert(r && f && p && ret_n);
        if (p->len != p->want || p->n > max)
                return -E2BIG;
        for (unsigned i = 0; i < p->n; i++)
                if (p->spans[i].source != READER_LOCAL_HIT && p->spans[i].source != READER_LOCAL)
                        return -EREMOTE;
        for (unsigned i = 0; i < p->n; i++) {
                reader_span *s = &p->spans[i];
                int fd = s->fd >= 0 ? fcntl(s->fd, F_DUPFD_CLOEXEC, 3)
                                    : local_wait(r, f, s, s->span.offset, s->span.len);

                if (fd < 0 && s->fd >= 0)
                        fd = -errno;
                if (fd < 0) {
                        for (unsigned j = 0; j < i; j++)
                                safe_close(ext[j].fd);
                        return fd;
                }
                ext[i] = (reader_extent){.fd = fd, .offset = s->span.offset, .len = s->span.len};
        }
        count(r, &r->stats.bytes_local, p->len);
        *ret_n = p->n;
        return 0;
}

/* --- one loop over the sources of a span ----------------------------------------------------- */

typedef struct source {
        reader_source kind;
        const config_node *node; /* READER_REMOTE */
} source;

/* The sources of span S in the order tried: its label first, then the local worker, the other
 * workers and the store. Returns the count (RET has room for n_nodes + 3). */
static unsigned span_sources(reader *r, const reader_span *s, bool warm_only, source *ret)
{
        bool local_ok = r->node->worker && !local_is_down(r);
        unsigned n = 0;

        if (s->fd >= 0)
                ret[n++] = (source){READER_LOCAL_HIT, NULL};
        if (s->source == READER_LOCAL || s->source == READER_LOCAL_HIT)
                ret[n++] = (source){READER_LOCAL, NULL};
        if (s->holder)
                ret[n++] = (source){READER_REMOTE, s->holder};
        if (s->source != READER_LOCAL && s->source != READER_LOCAL_HIT && local_ok &&
            !miss_recent(r, s->id, true))
                ret[n++] = (source){READER_LOCAL, NULL};
        for (size_t i = 0; i < r->config->n_nodes; i++) {
                const config_node *node = &r->config->nodes[i];

                if (node->worker && node != r->node && node != s->holder)
                        ret[n++] = (source){READER_REMOTE, node};
        }
        if (!warm_only && r->opts.store_fallback)
                ret[n++] = (source){READER_STORE, NULL};
        return n;
}

/* One attempt at span S of F into BUF (with WARM_ONLY, only makes the block cached on a worker)
 * through each of its sources in order: 0, or the last error. */
static int fetch_span(reader *r, const reader_file *f, reader_span *s, void *buf, bool warm_only)
{
        uint64_t blen = block_length(f->size, f->block_size, s->span.index);
        /* A warm-up asks for one byte: the worker fills the whole block to serve it. */
        uint64_t off = warm_only ? 0 : s->span.offset, len = warm_only ? 1 : s->span.len;
        _cleanup_free_ source *src = calloc(r->config->n_nodes + 3, sizeof(*src));
        int last = -EHOSTUNREACH, k = 0;
        unsigned n;
        char one;
        void *dst = warm_only ? (void *)&one : buf;

        if (!src)
                return -ENOMEM;
        n = span_sources(r, s, warm_only, src);
        for (unsigned i = 0; i < n; i++) {
                _cleanup_close_ int fd = -1;
                _cleanup_free_ char *api = NULL;

                switch (src[i].kind) {
                case READER_LOCAL_HIT:
                        if (warm_only)
                                return 0;
                        k = pread_all(s->fd, dst, len, off);
                        break;
                case READER_LOCAL:
                        fd = local_wait(r, f, s, off, len);
                        if (fd < 0)
                                k = fd;
                        else
                                k = warm_only ? 0 : pread_all(fd, dst, len, off);
                        break;
                case READER_REMOTE:
                        api = worker_api(src[i].node);
                        if (!api)
                                return -ENOMEM;
                        k = worker_get(r, api, s->id, off, len, off == 0 && len == blen, dst);
                        if (k < 0 && src[i].node == s->holder && r->meta)
                                /* the master's word was wrong: ask it again next time */
                                meta_blocks_forget(r->meta, f->file_id, f->version);
                        break;
                case READER_STORE:
                        k = store_read(r, f, s->span.index * f->block_size + off, len, dst);
                        if (k == -ESTALE || k == -ENOENT)
                                return k; /* the file changed upstream */
                        break;
                }
                /* A worker found the store's bytes of this version do not match its hash: the
                 * store (asked last) would send the same bytes again. */
                if (k == -EILSEQ)
                        return k;
                if (k == 0) {
                        if (!warm_only)
                                count(r,
                                      src[i].kind == READER_STORE    ? &r->stats.bytes_store
                                      : src[i].kind == READER_REMOTE ? &r->stats.bytes_remote
                                                                     : &r->stats.bytes_local,
                                      len);
                        return 0;
                }
                log_debug_errno(k, "Block %s from %s: %m", s->id,
                                src[i].kind == READER_REMOTE  ? src[i].node->name
                                : src[i].kind == READER_STORE ? "the store"
                                                              : "this node");
                last = k;
        }
        return last;
}

static int read_span(reader *r, const reader_file *f, reader_span *s, void *buf)
{
        uint64_t deadline = now_ms() + r->opts.retry_ms, backoff = 50;
        int k;

        for (unsigned attempt = 0;; attempt++) {
                k = fetch_span(r, f, s, buf, false);
                if (k == 0)
                        return 0;
                if (k == -ESTALE || k == -ENOMEM || k == -EILSEQ)
                        break; /* the file changed upstream, or its bytes are refused */
                /* No master at all: the local worker, the workers we knew of and the store were
                 * all asked; waiting retry_ms for a failover that is not happening helps no
                 * one, so the read fails now (EIO) and the cached ones go on. */
                if (meta_masters_down(r->meta))
                        break;
                if (now_ms() + backoff >= deadline)
                        break;
                count(r, &r->stats.retries, 1);
                log_debug_errno(k, "Block %s: attempt %u failed (%m), retrying", s->id,
                                attempt + 1);
                sleep_ms(backoff);
                backoff = MIN(backoff * 2, 1000);
                /* plan the span again: the locations may have changed meanwhile */
                s->fd = safe_close(s->fd);
                {
                        meta_locations *loc = plan_locations(r, f);

                        plan_label(r, loc, s);
                        meta_locations_unref(loc);
                }
        }
        count(r, &r->stats.errors, 1);
        if (k == -EILSEQ)
                log_error("Cannot read block %s of %s: the workers refuse it, because the store's "
                          "bytes of this version do not hash to its ETag (content mismatch)",
                          s->id, f->path);
        else
                log_error_errno(k,
                                "Cannot read block %s of %s (offset %" PRIu64 ", %" PRIu64
                                " bytes) from any worker or the store%s: %m",
                                s->id, f->path, s->span.offset, s->span.len,
                                meta_masters_down(r->meta) ? " (no master answers)" : "");
        /* Applications get EIO, not a transport error code that read(2) never returns. */
        return k == -ENOMEM ? k : -EIO;
}

ssize_t reader_read_plan(reader *r, const reader_file *f, reader_plan *p, void *buf)
{
        uint64_t done = 0;

        assert(r && f && p);
        for (unsigned i = 0; i < p->n; i++) {
                int k = read_span(r, f, &p->spans[i], (char *)buf + done);

                if (k < 0)
                        return k;
                done += p->spans[i].span.len;
        }
        while (done < p->want) {
                reader_plan next;
                ssize_t k;

                /* a read of more blocks than one plan holds: plan the rest */
                reader_plan_init(r, f, p->offset + done, p->want - done, &next);
                if (next.n == 0) {
                        reader_plan_done(&next);
                        return -EIO;
                }
                k = reader_read_plan(r, f, &next, (char *)buf + done);
                reader_plan_done(&next);
                if (k < 0)
                        return k;
                done += (uint64_t)k;
        }
        return (ssize_t)p->want;
}

ssize_t reader_read(reader *r, const reader_file *f, uint64_t offset, size_t len, void *buf)
{
        reader_plan p;
        ssize_t n;

        reader_plan_init(r, f, offset, len, &p);
        n = reader_read_plan(r, f, &p, buf);
        reader_plan_done(&p);
        return n;
}

int reader_local_fd(reader *r, const reader_file *f, uint64_t index)
{
        char id[BLOCK_ID_MAX];
        block_key key = {
                .epoch = f->epoch, .file_id = f->file_id, .version = f->version, .index = index};
        uint64_t len;

        block_id_format(id, &key);
        return local_block(r, id, block_length(f->size, f->block_size, index), &len);
}

int reader_warm(reader *r, const reader_file *f, uint64_t index)
{
        uint64_t blen = block_length(f->size, f->block_size, index);
        reader_plan p;
        int k;

        if (blen == 0)
                return 0;
        reader_plan_init(r, f, index * f->block_size, 1, &p);
        assert(p.n == 1);
        if (p.spans[0].source == READER_LOCAL_HIT)
                k = 0;
        else
                k = fetch_span(r, f, &p.spans[0], NULL, true);
        reader_plan_done(&p);
        return k;
}
