/* Waking the loop through an eventfd (see loopwake.h). */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cleanup.h"
#include "loopwake.h"

static void on_readable(uv_poll_t *h, int status, int events)
{
        loopwake *w = (loopwake *)h;
        uint64_t n;

        /* Reset the counter first: a send from now on wakes the loop again. */
        while (read(w->fd, &n, sizeof(n)) < 0 && errno == EINTR)
                ;
        w->cb(w);
}

int loopwake_init(uv_loop_t *loop, loopwake *w, void (*cb)(loopwake *w))
{
        int r;

        w->cb = cb;
        w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->fd < 0)
                return -errno;
        r = uv_poll_init(loop, &w->poll, w->fd);
        if (r < 0) {
                w->fd = safe_close(w->fd);
                return r;
        }
        /* Only records the watcher (bad arguments alone fail it); the handle is open from here
         * and is closed with loopwake_close() in any case. */
        return uv_poll_start(&w->poll, UV_READABLE, on_readable);
}

void loopwake_send(loopwake *w)
{
        uint64_t one = 1;

        /* EAGAIN only when the counter is at its maximum: the loop is woken anyway. */
        while (write(w->fd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

static void on_closed(uv_handle_t *h)
{
        loopwake *w = (loopwake *)h;

        w->fd = safe_close(w->fd);
        if (w->close_cb)
                w->close_cb(h);
}

void loopwake_close(loopwake *w, uv_close_cb cb)
{
        w->close_cb = cb;
        if (!uv_is_closing((uv_handle_t *)&w->poll))
                uv_close((uv_handle_t *)&w->poll, on_closed);
}
