/* The loop thread's lateness and what held it (see loopwatch.h). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "loopwatch.h"
#include "timeutil.h"

const uint64_t loopwatch_bounds_us[LOOPWATCH_BUCKETS] = {
        1000, 5000, 10000, 25000, 50000, 100000, 200000, 300000, 1000000, UINT64_MAX,
};

/* At most one warning per this many microseconds: a starved loop must not also flood the log. */
#define WARN_EVERY_US 1000000

static void put(uint64_t *p, uint64_t v)
{
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
        return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void add(uint64_t *p, uint64_t v)
{
        put(p, get(p) + v); /* one writer */
}

static unsigned bucket(uint64_t us)
{
        unsigned i = 0;
        while (us > loopwatch_bounds_us[i])
                i++;
        return i;
}

/* Nanoseconds this thread spent runnable but waiting for a CPU; 0 when the kernel does not say. */
static uint64_t runq_ns(loopwatch *w)
{
        char buf[128];
        uint64_t run, wait;

        if (w->schedstat_fd < 0)
                return 0;
        ssize_t n = pread(w->schedstat_fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        if (sscanf(buf, "%" SCNu64 " %" SCNu64, &run, &wait) != 2)
                return 0;
        return wait;
}

void loopwatch_init(loopwatch *w, unsigned interval_ms)
{
        memset(w, 0, sizeof(*w));
        w->interval_us = (uint64_t)interval_ms * 1000;
        /* Per thread: the loop thread calls this. */
        w->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (w->schedstat_fd < 0)
                log_debug_errno(errno, "/proc/thread-self/schedstat: %m, ignoring");
        w->last_runq_ns = runq_ns(w);
}

int loopwatch_realtime(void)
{
        struct sched_param p = {.sched_priority = 1};

        /* The loop's own work is bounded per callback (an apply of at most one batch, a
         * snapshot descriptor): at priority 1 it preempts normal threads only for that long, and
         * the kernel's real-time throttling (95 % of each second by default) still holds. */
        if (sched_setscheduler(0, SCHED_RR, &p) < 0)
                return -errno;
        return 0;
}

void loopwatch_thread_normal(void)
{
        struct sched_param p = {.sched_priority = 0};

        if (sched_getscheduler(0) != SCHED_OTHER && sched_setscheduler(0, SCHED_OTHER, &p) < 0)
                log_warning_errno(errno, "Cannot return a thread to normal scheduling: %m, "
                                         "ignoring");
}

void loopwatch_mutex_init(pthread_mutex_t *m)
{
        pthread_mutexattr_t a;

        pthread_mutexattr_init(&a);
        /* Without it, a real-time loop waiting for a lock whose holder waits for a CPU at normal
         * priority waits as long as that holder (priority inversion). */
        (void)pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
        pthread_mutex_init(m, &a);
        pthread_mutexattr_destroy(&a);
}

void loopwatch_done(loopwatch *w)
{
        w->schedstat_fd = safe_close(w->schedstat_fd);
}

/* Starts a new window of recent maxima when the current one has ended. */
static void window_roll(loopwatch *w, uint64_t now)
{
        uint64_t win = now / (LOOPWATCH_WINDOW_S * 1000000ull);

        if (win == get(&w->s.window))
                return;
        bool adjacent = win == get(&w->s.window) + 1;
        put(&w->s.late_recent_us[1], adjacent ? get(&w->s.late_recent_us[0]) : 0);
        put(&w->s.apply_recent_us[1], adjacent ? get(&w->s.apply_recent_us[0]) : 0);
        put(&w->s.late_recent_us[0], 0);
        put(&w->s.apply_recent_us[0], 0);
        put(&w->s.window, win);
}

static void max_into(uint64_t *p, uint64_t v)
{
        if (v > get(p))
                put(p, v);
}

void loopwatch_tick(loopwatch *w, uint64_t warn_us)
{
        uint64_t now = now_us(), runq = runq_ns(w);

        window_roll(w, now);

        if (w->last_tick_us) {
                uint64_t gap = now - w->last_tick_us;
                uint64_t late = gap > w->interval_us ? gap - w->interval_us : 0;
                uint64_t waited = runq > w->last_runq_ns ? (runq - w->last_runq_ns) / 1000 : 0;

                add(&w->s.late_hist[bucket(late)], 1);
                add(&w->s.late_us_total, late);
                max_into(&w->s.late_recent_us[0], late);
                if (late > get(&w->s.late_max_us)) {
                        put(&w->s.late_max_us, late);
                        put(&w->s.late_runq_us, waited);
                }
                if (warn_us && late >= warn_us && now - w->warned_us >= WARN_EVERY_US) {
                        w->warned_us = now;
                        log_warning("The loop thread ran %" PRIu64 " ms late: %" PRIu64
                                    " ms waiting for a CPU; on the loop meanwhile %" PRIu64
                                    " applies (%" PRIu64 " bytes, %" PRIu64
                                    " ms), snapshots %" PRIu64 " ms.",
                                    late / 1000, waited / 1000, w->since_applies,
                                    w->since_apply_bytes, w->since_apply_us / 1000,
                                    w->since_snapshot_us / 1000);
                }
        }
        add(&w->s.ticks, 1);
        w->last_tick_us = now;
        w->last_runq_ns = runq;
        w->since_apply_us = w->since_apply_bytes = w->since_applies = w->since_snapshot_us = 0;
}

void loopwatch_note_apply(loopwatch *w, uint64_t us, size_t bytes, bool batch)
{
        add(&w->s.applies, 1);
        add(&w->s.apply_us_total, us);
        add(&w->s.apply_hist[bucket(us)], 1);
        window_roll(w, now_us());
        max_into(&w->s.apply_recent_us[0], us);
        if (us > get(&w->s.apply_max_us)) {
                put(&w->s.apply_max_us, us);
                put(&w->s.apply_max_bytes, bytes);
        }
        if (batch) {
                add(&w->s.batches, 1);
                if (us > get(&w->s.batch_max_us))
                        put(&w->s.batch_max_us, us);
        }
        w->since_applies++;
        w->since_apply_us += us;
        w->since_apply_bytes += bytes;
}

void loopwatch_note_snapshot(loopwatch *w, uint64_t us)
{
        add(&w->s.snapshots, 1);
        if (us > get(&w->s.snapshot_max_us))
                put(&w->s.snapshot_max_us, us);
        w->since_snapshot_us += us;
}

void loopwatch_read(const loopwatch *w, loopwatch_stats *ret)
{
        const uint64_t *src = (const uint64_t *)&w->s;
        uint64_t *dst = (uint64_t *)ret;

        for (size_t i = 0; i < sizeof(*ret) / sizeof(uint64_t); i++)
                dst[i] = get(&src[i]);
        /* A window that ended long ago (no tick since: the loop is stuck) still counts. */
        ret->late_recent_us[0] = MAX(ret->late_recent_us[0], ret->late_recent_us[1]);
        ret->apply_recent_us[0] = MAX(ret->apply_recent_us[0], ret->apply_recent_us[1]);
}

static void histogram(FILE *f, const char *name, const char *help, const uint64_t *hist,
                      uint64_t count, uint64_t sum_us)
{
        uint64_t cum = 0;

        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (unsigned i = 0; i < LOOPWATCH_BUCKETS; i++) {
                cum += hist[i];
                if (loopwatch_bounds_us[i] == UINT64_MAX)
                        fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
                else
                        fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                                (double)loopwatch_bounds_us[i] / 1e6, cum);
        }
        fprintf(f, "%s_sum %g\n%s_count %" PRIu64 "\n", name, (double)sum_us / 1e6, name, count);
}

void loopwatch_metrics_write(const loopwatch *w, FILE *f)
{
        loopwatch_stats s;
        uint64_t ticks = 0;

        loopwatch_read(w, &s);
        for (unsigned i = 0; i < LOOPWATCH_BUCKETS; i++)
                ticks += s.late_hist[i];
        histogram(f, "weir_master_loop_lateness_seconds",
                  "How late the loop thread ran its periodic tick (raft's timers share the loop).",
                  s.late_hist, ticks, s.late_us_total);
        histogram(f, "weir_master_apply_seconds",
                  "Time to apply one raft entry (one database transaction) on the loop thread.",
                  s.apply_hist, s.applies, s.apply_us_total);
        fprintf(f,
                "# HELP weir_master_loop_lateness_max_seconds The latest tick since start.\n"
                "# TYPE weir_master_loop_lateness_max_seconds gauge\n"
                "weir_master_loop_lateness_max_seconds %g\n",
                (double)s.late_max_us / 1e6);
        fprintf(f,
                "# HELP weir_master_apply_max_seconds The longest apply since start.\n"
                "# TYPE weir_master_apply_max_seconds gauge\n"
                "weir_master_apply_max_seconds %g\n",
                (double)s.apply_max_us / 1e6);
        fprintf(f,
                "# HELP weir_master_snapshot_max_seconds The longest raft snapshot hook on the "
                "loop since start.\n# TYPE weir_master_snapshot_max_seconds gauge\n"
                "weir_master_snapshot_max_seconds %g\n",
                (double)s.snapshot_max_us / 1e6);
}
