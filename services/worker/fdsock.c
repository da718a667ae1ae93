/* The local descriptor socket (docs/api.md): "OPEN BLOCK_ID\n" gets "OK LENGTH\n" and the
 * block's read-only descriptor over SCM_RIGHTS, "MISS\n", or "ERR MESSAGE\n".
 * "WAIT BLOCK_ID OFFSET LENGTH\n" fills the block when it is not cached and answers as soon as
 * those bytes are fetched: "OK LENGTH\n" with the whole block's descriptor, or "PART LENGTH\n"
 * with a descriptor of the block being filled, in which only the bytes asked for are valid yet
 * (the reader must not keep it), or "ERR MESSAGE\n".
 * Runs on the daemon's sd-event loop: an OPEN is a store lookup and one sendmsg(); a WAIT that
 * has to fill is answered from a fill thread, on a duplicate of the connection's descriptor, and
 * ends the connection for the loop (the answer is its last message: replies never interleave).
 * Limits: a connection must send each whole line within FDSOCK_LINE_TIMEOUT_US of its start or
 * of the previous answer, however slowly bytes trickle; one process (SO_PEERCRED) holds at most
 * FDSOCK_MAX_PER_CLIENT connections; a full socket closes the connection that has waited
 * longest for its line to make room. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdsock-proto.h"
#include "log.h"
#include "fdsock.h"

#define FDSOCK_MAX_CONNECTIONS 256
#define FDSOCK_MAX_PER_CLIENT  64
#define FDSOCK_LINE_TIMEOUT_US (5 * 1000000ull)
#define FDSOCK_READAHEAD       2   /* blocks filled ahead of a waiting reader, as over HTTP */
#define FDSOCK_MAX_WAITS       256 /* WAITs answered later, at most (each holds a descriptor) */

typedef struct fdsock_conn {
        fdsock *sock;
        int fd;
        sd_event_source *source;
        sd_event_source *timer; /* the deadline of the line being read */
        pid_t pid;              /* the peer process, for the per-client limit */
        uint64_t since;         /* CLOCK_MONOTONIC us: when it started waiting for its line */
        char buf[FDSOCK_MAX_LINE];
        size_t len;
        struct fdsock_conn *prev, *next;
} fdsock_conn;

struct fdsock {
        fdsock_context ctx;
        char *path;
        int fd;
        int spare_fd; /* /dev/null, given up to take and refuse a connection when out of fds */
        sd_event_source *source;
        fdsock_conn *conns;
        unsigned n_conns;
};

static void conn_free(fdsock_conn *c)
{
        fdsock *s = c->sock;

        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        sd_event_source_disable_unref(c->source);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        free(c);
}

static int send_reply(int fd, const char *line, int pass_fd)
{
        struct iovec iov = {.iov_base = (void *)line, .iov_len = strlen(line)};
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

        if (pass_fd >= 0) {
                struct cmsghdr *cm;

                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof(control.buf);
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        }
        /* Replies are a few bytes: a blocking peer with a full buffer is a broken peer. */
        if (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)iov.iov_len)
                return -errno ?: -EIO;
        return 0;
}

/* Answers with block K's descriptor when it is cached: 0 sent, 1 not cached, -errno. */
static int reply_cached(const fdsock_context *ctx, int fd, const store_key *k)
{
        char reply[64];
        store_block *b;
        uint64_t size;
        int bfd, r;

        r = store_open(ctx->store, k, &b, &bfd, &size);
        if (r < 0)
                return 1;
        /* The FUSE daemon keeps the descriptor as long as it likes: the pin ends here, the
         * bytes stay (eviction unlinks, never truncates). */
        store_release(ctx->store, b);
        __atomic_add_fetch(ctx->hits, 1, __ATOMIC_RELAXED);
        snprintf(reply, sizeof(reply), "OK %" PRIu64 "\n", size);
        r = send_reply(fd, reply, bfd);
        safe_close(bfd);
        return r;
}

typedef struct wait_request {
        fdsock_context ctx; /* a copy: the worker frees the socket before its fills end */
        int fd; /* a duplicate of the connection's: the loop may close its own meanwhile */
        store_key key;
} wait_request;

static void wait_answer(int r, int bfd, uint64_t block_len, void *userdata)
{
        wait_request *wr = userdata;
        char reply[64];

        if (r == 0) {
                snprintf(reply, sizeof(reply), "PART %" PRIu64 "\n", block_len);
                (void)send_reply(wr->fd, reply, bfd);
                safe_close(bfd);
        } else if (r > 0) {
                if (reply_cached(&wr->ctx, wr->fd, &wr->key) == 1)
                        (void)send_reply(wr->fd, "MISS\n", -1); /* evicted at once */
        } else {
                snprintf(reply, sizeof(reply), "ERR %s\n", fill_strerror(r));
                (void)send_reply(wr->fd, reply, -1);
        }
        safe_close(wr->fd);
        __atomic_sub_fetch(wr->ctx.waits, 1, __ATOMIC_RELAXED);
        free(wr);
}

/* 0 answered, 1 handed to a fill (the connection ends for the loop), -errno. */
static int handle_wait(fdsock *s, int fd, const fdsock_cmd *cmd)
{
        uint64_t off = cmd->offset, len = cmd->length;
        const fdsock_context *ctx = &s->ctx;
        wait_request *wr;
        int r;

        wr = calloc(1, sizeof(*wr));
        if (!wr)
                return send_reply(fd, "ERR out of memory\n", -1);
        wr->key = cmd->key;
        r = reply_cached(ctx, fd, &wr->key);
        if (r != 1) {
                free(wr);
                return r;
        }
        __atomic_add_fetch(ctx->misses, 1, __ATOMIC_RELAXED);
        if (__atomic_add_fetch(ctx->waits, 1, __ATOMIC_RELAXED) > FDSOCK_MAX_WAITS) {
                __atomic_sub_fetch(ctx->waits, 1, __ATOMIC_RELAXED);
                free(wr);
                return send_reply(fd, "ERR busy: too many WAITs pending\n", -1);
        }
        wr->ctx = *ctx;
        wr->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (wr->fd < 0) {
                __atomic_sub_fetch(ctx->waits, 1, __ATOMIC_RELAXED);
                free(wr);
                return send_reply(fd, "ERR out of file descriptors\n", -1);
        }
        r = fill_guard_block_part(ctx->fill, &wr->key, off, len, FDSOCK_READAHEAD, wait_answer, wr);
        if (r == 0)
                return 1; /* wait_answer() replies */
        if (r > 0) {
                wait_answer(1, -1, 0, wr);
                return 1;
        }
        r = send_reply(
                fd, r == -EILSEQ ? "ERR " FILL_MISMATCH_TEXT "\n" : "ERR cannot fill the block\n",
                -1);
        safe_close(wr->fd);
        __atomic_sub_fetch(ctx->waits, 1, __ATOMIC_RELAXED);
        free(wr);
        return r;
}

static int handle_line(fdsock *s, int fd, const char *line)
{
        const char *error;
        fdsock_cmd cmd;
        int r;

        if (fdsock_parse(line, &cmd, &error) < 0)
                return send_reply(fd, error, -1);
        if (cmd.verb == FDSOCK_WAIT)
                return handle_wait(s, fd, &cmd);
        r = reply_cached(&s->ctx, fd, &cmd.key);
        if (r == 1) {
                __atomic_add_fetch(s->ctx.misses, 1, __ATOMIC_RELAXED);
                return send_reply(fd, "MISS\n", -1);
        }
        return r;
}

static uint64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int on_deadline(sd_event_source *es, uint64_t usec, void *userdata);

static int on_conn(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        fdsock_conn *c = userdata;
        ssize_t n;

        n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                conn_free(c);
                return 0;
        }
        c->len += (size_t)n;
        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                size_t used;

                if (!nl) {
                        if (c->len == sizeof(c->buf)) {
                                (void)send_reply(fd, "ERR line too long\n", -1);
                                conn_free(c);
                        }
                        return 0;
                }
                *nl = 0;
                /* < 0: a broken peer; > 0: a WAIT answered later, on its own descriptor. A NUL
                 * byte would cut the line short ("OPEN ID\0junk" is not "OPEN ID"): refused. */
                if (memchr(c->buf, 0, (size_t)(nl - c->buf))
                            ? send_reply(fd, "ERR line contains a NUL byte\n", -1) < 0
                            : handle_line(c->sock, fd, c->buf) != 0) {
                        conn_free(c);
                        return 0;
                }
                used = (size_t)(nl - c->buf) + 1;
                memmove(c->buf, c->buf + used, c->len - used);
                c->len -= used;
                /* answered: the next line has its own deadline */
                c->since = now_us();
                (void)sd_event_source_set_time(c->timer, c->since + FDSOCK_LINE_TIMEOUT_US);
        }
}

static int on_deadline(sd_event_source *es, uint64_t usec, void *userdata)
{
        fdsock_conn *c = userdata;

        log_debug("%s: no whole request line within %llu s, closing the connection", c->sock->path,
                  FDSOCK_LINE_TIMEOUT_US / 1000000);
        (void)send_reply(c->fd, "ERR request line timed out\n", -1);
        conn_free(c);
        return 0;
}

/* Room for one more connection from PID: false when that process holds its share already;
 * on a full socket, the connection waiting longest for its line is closed. */
static bool make_room(fdsock *s, pid_t pid)
{
        fdsock_conn *oldest = NULL;
        unsigned same = 0;

        for (fdsock_conn *c = s->conns; c; c = c->next) {
                if (c->pid == pid)
                        same++;
                if (!oldest || c->since < oldest->since)
                        oldest = c;
        }
        if (pid > 0 && same >= FDSOCK_MAX_PER_CLIENT) {
                log_warning("Process %d holds %u connections to %s, refusing one more", (int)pid,
                            same, s->path);
                return false;
        }
        if (s->n_conns >= FDSOCK_MAX_CONNECTIONS && oldest) {
                log_warning("Too many connections on %s, closing the longest waiting one", s->path);
                conn_free(oldest);
        }
        return true;
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        fdsock *s = userdata;
        fdsock_conn *c;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0 && (errno == EMFILE || errno == ENFILE) && s->spare_fd >= 0) {
                /* Out of descriptors: the pending connection would keep the socket readable and
                 * the loop spinning. Free the spare, take the connection, drop it, re-arm. */
                s->spare_fd = safe_close(s->spare_fd);
                safe_close(accept4(fd, NULL, NULL, SOCK_CLOEXEC));
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                log_warning("Out of file descriptors on %s, refused a connection", s->path);
                return 0;
        }
        if (cfd < 0)
                return 0;
        struct ucred cred = {};
        socklen_t cl = sizeof(cred);
        (void)getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
        if (!make_room(s, cred.pid)) {
                (void)send_reply(cfd, "ERR too many connections from this process\n", -1);
                safe_close(cfd);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(cfd);
                return 0;
        }
        c->sock = s;
        c->fd = cfd;
        c->pid = cred.pid;
        c->since = now_us();
        r = sd_event_add_io(sd_event_source_get_event(es), &c->source, cfd, EPOLLIN, on_conn, c);
        if (r >= 0)
                r = sd_event_add_time(sd_event_source_get_event(es), &c->timer, CLOCK_MONOTONIC,
                                      c->since + FDSOCK_LINE_TIMEOUT_US, 100000, on_deadline, c);
        if (r < 0) {
                sd_event_source_disable_unref(c->source);
                safe_close(cfd);
                free(c);
                return 0;
        }
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        return 0;
}

fdsock *fdsock_free(fdsock *s)
{
        if (!s)
                return NULL;
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->source);
        safe_close(s->spare_fd);
        if (s->fd >= 0) {
                safe_close(s->fd);
                (void)unlink(s->path);
        }
        free(s->path);
        free(s);
        return NULL;
}

int fdsock_new(const fdsock_context *ctx, const char *path, fdsock **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        fdsock *s;
        mode_t old;
        int r;

        assert(ctx && ctx->store && ctx->fill && ctx->event && ctx->hits && ctx->misses &&
               ctx->waits);
        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long", path);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->ctx = *ctx;
        s->fd = -1;
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        s->path = strdup(path);
        if (!s->path) {
                fdsock_free(s);
                return -ENOMEM;
        }
        strcpy(sa.sun_path, path);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0) {
                r = -errno;
                fdsock_free(s);
                return log_error_errno(r, "Failed to create a socket: %m");
        }
        (void)unlink(path); /* a stale socket of an earlier run */
        old = umask(0177);  /* mode 0600: the FUSE daemon runs as the same user */
        r = bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
        umask(old);
        if (r >= 0 && chmod(path, 0600) < 0)
                r = -errno;
        if (r >= 0 && listen(s->fd, 64) < 0)
                r = -errno;
        if (r >= 0)
                r = sd_event_add_io(ctx->event, &s->source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0) {
                fdsock_free(s);
                return log_error_errno(r, "Failed to listen on %s: %m", path);
        }
        *ret = s;
        return 0;
}
