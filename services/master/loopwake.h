/* Waking the master's loop from other threads without libuv's uv_async, whose receiving side
 * spins while a sender is between its two steps: a real-time loop thread then spins for as long
 * as a preempted sender of normal priority waits for a CPU (measured: up to the kernel's
 * real-time throttling limit, 950 ms of every second, with every raft timer late). */
#pragma once

#include <uv.h>

/*
 * An eventfd watched by a uv_poll handle: loopwake_send() is one write(2), complete or not done
 * at all, so the loop never waits for a sender. Wake-ups coalesce like uv_async's: several sends
 * before the loop runs give one callback. POLL is the first member: its `data` is the caller's,
 * and the close callback receives it as the handle (its type is UV_POLL).
 */
typedef struct loopwake loopwake;
struct loopwake {
        uv_poll_t poll;
        int fd;
        void (*cb)(loopwake *w);
        uv_close_cb close_cb;
};

/* Loop thread. Returns 0 or a negative errno / libuv code. */
int loopwake_init(uv_loop_t *loop, loopwake *w, void (*cb)(loopwake *w));
/* Any thread, also while the loop runs its callback. */
void loopwake_send(loopwake *w);
/* Loop thread: closes the handle, then the eventfd, then calls CB with the handle. */
void loopwake_close(loopwake *w, uv_close_cb cb);
