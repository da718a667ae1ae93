/* How late the master's loop thread runs, and what held it: the measure of what makes a Raft
 * leader lose its followers (an election timeout without heartbeats) on a busy machine. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Threads: the loop thread alone calls loopwatch_tick() and loopwatch_note_*(); any thread reads
 * with loopwatch_read() and loopwatch_metrics_write(). Fields are published with relaxed atomic
 * stores and read with atomic loads: every value is a counter or a maximum on its own, no two
 * need to agree.
 *
 * Lateness is measured at the manager's periodic tick (every RAFT_COMPAT_POLL_MS): how much
 * later than its interval the tick ran. libraft's own timers run on the same loop, so a late tick
 * is a late heartbeat (leader) or a late election timer (follower). At a late tick, the loop
 * thread's time on the run queue over the same interval (/proc/thread-self/schedstat) tells CPU
 * starvation (the thread was runnable but got no CPU) from work done on the loop (a long apply,
 * a snapshot's fsync), which the notes name.
 */

#define LOOPWATCH_BUCKETS  10
#define LOOPWATCH_WINDOW_S 5

/* Upper bounds of the lateness and apply histograms, in microseconds (the last is +Inf). */
extern const uint64_t loopwatch_bounds_us[LOOPWATCH_BUCKETS];

typedef struct loopwatch_stats {
        uint64_t ticks;
        uint64_t late_max_us;  /* the latest tick, since start */
        uint64_t late_runq_us; /* of that tick: time the thread waited for a CPU */
        /* The latest tick and the longest apply in the current and the previous
         * LOOPWATCH_WINDOW_S seconds (loopwatch_read() gives the larger in [0]). */
        uint64_t late_recent_us[2], apply_recent_us[2];
        uint64_t window; /* which window [0] is: now / LOOPWATCH_WINDOW_S */
        uint64_t late_us_total;
        uint64_t late_hist[LOOPWATCH_BUCKETS];
        uint64_t applies;
        uint64_t apply_max_us; /* the longest apply (one raft entry, one transaction) */
        uint64_t apply_max_bytes;
        uint64_t apply_us_total;
        uint64_t apply_hist[LOOPWATCH_BUCKETS];
        uint64_t batches;      /* TREE_BATCH entries applied */
        uint64_t batch_max_us; /* the longest of those */
        uint64_t snapshots;
        uint64_t snapshot_max_us; /* raft's snapshot hook on the loop */
} loopwatch_stats;

typedef struct loopwatch {
        loopwatch_stats s;
        /* Loop thread only. */
        uint64_t interval_us;
        uint64_t last_tick_us;
        uint64_t last_runq_ns;
        int schedstat_fd;
        /* What ran on the loop since the previous tick, for the warning of a late one. */
        uint64_t since_apply_us, since_apply_bytes, since_applies, since_snapshot_us;
        uint64_t warned_us; /* when the last warning was logged */
} loopwatch;

/* INTERVAL_MS: the period of the tick that calls loopwatch_tick(). Loop thread. */
void loopwatch_init(loopwatch *w, unsigned interval_ms);
void loopwatch_done(loopwatch *w);

/* Gives the calling thread (the loop) real-time round-robin scheduling at the lowest real-time
 * priority, so that busy processes of normal priority cannot keep raft's timers and messages
 * waiting past an election timeout. -EPERM without CAP_SYS_NICE or RLIMIT_RTPRIO >= 1.
 *
 * Threads it creates afterwards inherit it: libuv's pool, which runs raft's file operations and
 * wakes the loop through libuv's own uv_async, must, or a preempted pool thread would keep the
 * loop spinning (see loopwake.h). Every other thread started after it calls
 * loopwatch_thread_normal() first. The loop must never wait for a thread of normal priority:
 * the locks it shares with them are made with loopwatch_mutex_init() (priority inheritance),
 * and they wake it with loopwake, never uv_async. */
int loopwatch_realtime(void);

/* The calling thread back to normal scheduling (a thread started by the real-time loop). */
void loopwatch_thread_normal(void);

/* A mutex with priority inheritance: its holder runs at the priority of the highest waiter. */
void loopwatch_mutex_init(pthread_mutex_t *m);

/* At each periodic tick. WARN_US: lateness from which a warning is logged (0 = never). */
void loopwatch_tick(loopwatch *w, uint64_t warn_us);

/* One raft entry applied in US microseconds (BYTES long; BATCH: a TREE_BATCH). */
void loopwatch_note_apply(loopwatch *w, uint64_t us, size_t bytes, bool batch);
void loopwatch_note_snapshot(loopwatch *w, uint64_t us);

/* Any thread: a copy of the counters. */
void loopwatch_read(const loopwatch *w, loopwatch_stats *ret);

/* Prometheus text: weir_master_loop_lateness_seconds (histogram), weir_master_apply_seconds
 * (histogram), maxima as gauges. */
void loopwatch_metrics_write(const loopwatch *w, FILE *f);
