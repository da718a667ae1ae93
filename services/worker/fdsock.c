/* The local descriptor socket (docs/api.md): "OPEN BLOCK_ID\n" gets "OK LENGTH\n" and the
 * block's read-only descriptor over SCM_RIGHTS, "MISS\n", or "ERR MESSAGE\n". Runs on the
 * daemon's sd-event loop: each request is a store lookup and one sendmsg(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "worker.h"

#define FDSOCK_MAX_LINE        128
#define FDSOCK_MAX_CONNECTIONS 256

typedef struct fdsock_conn {
        fdsock *sock;
        int fd;
        sd_event_source *source;
        char buf[FDSOCK_MAX_LINE];
        size_t len;
        struct fdsock_conn *prev, *next;
} fdsock_conn;

struct fdsock {
        worker *w;
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

static int handle_line(fdsock *s, int fd, const char *line)
{
        char reply[64];
        store_block *b;
        store_key k;
        uint64_t size;
        int bfd, r;

        if (strncmp(line, "OPEN ", 5) != 0)
                return send_reply(fd, "ERR unknown command, expected OPEN BLOCK_ID\n", -1);
        if (block_id_parse(line + 5, &k) < 0)
                return send_reply(fd, "ERR invalid block id\n", -1);
        r = store_open(s->w->store, &k, &b, &bfd, &size);
        if (r < 0) {
                __atomic_add_fetch(&s->w->misses, 1, __ATOMIC_RELAXED);
                return send_reply(fd, "MISS\n", -1);
        }
        /* The FUSE daemon keeps the descriptor as long as it likes: the pin ends here, the
         * bytes stay (eviction unlinks, never truncates). */
        store_release(s->w->store, b);
        __atomic_add_fetch(&s->w->hits, 1, __ATOMIC_RELAXED);
        snprintf(reply, sizeof(reply), "OK %" PRIu64 "\n", size);
        r = send_reply(fd, reply, bfd);
        safe_close(bfd);
        return r;
}

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
                if (handle_line(c->sock, fd, c->buf) < 0) {
                        conn_free(c);
                        return 0;
                }
                used = (size_t)(nl - c->buf) + 1;
                memmove(c->buf, c->buf + used, c->len - used);
                c->len -= used;
        }
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
        if (s->n_conns >= FDSOCK_MAX_CONNECTIONS) {
                log_warning("Too many connections on %s, refusing one", s->path);
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
        r = sd_event_add_io(sd_event_source_get_event(es), &c->source, cfd, EPOLLIN, on_conn, c);
        if (r < 0) {
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

int fdsock_new(worker *w, const char *path, fdsock **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        fdsock *s;
        mode_t old;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long", path);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->w = w;
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
                r = sd_event_add_io(w->event, &s->source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0) {
                fdsock_free(s);
                return log_error_errno(r, "Failed to listen on %s: %m", path);
        }
        *ret = s;
        return 0;
}
