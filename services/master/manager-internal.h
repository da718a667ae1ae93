/* The manager's fields, shared by manager.c (raft glue), api.c (HTTP) and dbus.c; not an API. */
#pragma once

#include <pthread.h>
#include <raft.h>
#include <raft/uv.h>
#include <systemd/sd-bus.h>

#include "httpd.h"
#include "locations.h"
#include "loopwake.h"
#include "loopwatch.h"
#include "manager.h"

typedef struct manager_call manager_call;
typedef struct members members;

/* What the loop publishes for the API threads (under state_lock). */
typedef struct manager_view {
        int role; /* RAFT_UNAVAILABLE .. RAFT_LEADER */
        uint64_t term;
        unsigned leader_id; /* 0 = none known */
        bool serving;       /* leader with its barrier committed */
        uint64_t applied;   /* raft_last_applied */
        uint64_t leader_changes;
        unsigned reachable_masters; /* this one included, from the prober */
} manager_view;

struct manager {
        /* Swapped by a reload (members.c) with __atomic stores; every config loaded stays
         * allocated until manager_free(), so a reader holding the old pointer is safe. */
        const config *cfg;
        const config_node *node;
        const config *boot_cfg; /* the one given to manager_new() */
        members *members;
        manager_options opts;
        char *dir;      /* the master's directory */
        char *raft_dir; /* DIR/raft */
        int lock_fd;    /* flock'ed DIR/lock */
        char *token;    /* bearer token, NULL = none */
        char client_id[96];
        uint64_t seq; /* loop thread only */
        char raft_address[300];

        uv_loop_t loop;
        bool loop_initialised;
        uv_signal_t sigterm, sigint;
        uv_timer_t tick;
        uv_timer_t watchdog;
        loopwake wakeup;       /* not uv_async: see loopwake.h */
        unsigned open_handles; /* ours, closed by the shutdown chain */
        uint64_t watchdog_usec;
        loopwatch watch;    /* the loop thread's lateness, applies, snapshots (loopwatch.h) */
        bool loop_realtime; /* the loop thread runs SCHED_RR (loopwatch_realtime) */

        /* The replicated state (fsm.h, LMDB): read from any thread without state_lock; written
         * only by the loop thread (raft apply and restore). */
        fsm *fsm;
        char *db_path;
        uint64_t apply_skip; /* entries raft replays that the database already holds */
        bool fatal;          /* the database failed an apply: stopping */

        struct raft raft;
        struct raft_io io;
        struct raft_uv_transport transport;
        struct raft_fsm raft_fsm;
        bool raft_initialised;
        struct raft_barrier barrier;
        bool barrier_pending;
        /* raft_apply/raft_barrier requests whose callback has not fired (manager_stop waits) */
        unsigned raft_pending;
        uint64_t stop_deadline; /* uv_now() until which a stop waits for them */
        struct raft_transfer transfer;
        bool transfer_pending;
        bool serving_local; /* loop thread's copy of view.serving */
        bool epoch_pending; /* an EPOCH_SET is in flight (epoch.c) */
        unsigned term_poll;
        int last_state;
        unsigned last_leader;

        httpd *httpd;
        manager_sync_hooks sync_hooks;
        bool ready_sent;
        char status_text[256];

        /* state_lock guards everything below. Why a lock and not only marshalling: reads are
         * the bulk of API traffic and are answered directly on libmicrohttpd's threads from the
         * state machine, without a trip through the loop; the loop thread takes the lock while
         * raft applies or restores. Writes (raft_apply must run on the loop) are queued here and
         * the loop is woken with uv_async. Never call raft or block while holding it. */
        pthread_mutex_t state_lock;
        manager_view view;
        bool stopping;
        manager_call *queue_head, *queue_tail;
        locations *locations; /* leader only: the soft state (locations.h) */
        /* The leadership hook: called on the loop thread, under state_lock, when this node stops
         * serving as leader (api.c sets it: the soft state goes), or NULL. */
        void (*leadership_lost_locked)(manager *m);
        pthread_cond_t prober_cond;
        unsigned copies_running; /* snapshot.c: database copies being sent */
        pthread_cond_t copies_cond;

        pthread_t prober;
        bool prober_started;

        sd_bus *bus;
        uv_poll_t bus_poll;
        uv_timer_t bus_timer;
        bool bus_active;
};

/* Any thread: runs FN(m, userdata) on the loop thread (or with STOPPING=true during shutdown,
 * so that waiting requests can be answered). */
int manager_call_on_loop(manager *m, void (*fn)(manager *m, bool stopping, void *userdata),
                         void *userdata);

/* A copy of the published view. */
manager_view manager_get_view(manager *m);
const char *manager_role_name(int role);
/* "HOST:PORT" of the master with RAFT_ID's API into BUF; NULL if unknown. */
const char *manager_api_address(manager *m, unsigned id, char *buf, size_t len);
const config_node *manager_master_node(manager *m, unsigned id);
/* Hands leadership to RAFT_ID (0 = any voter). Loop thread. */
int manager_transfer_leadership(manager *m, unsigned id);
/* Loop thread: records the YAML's datasets that the replicated state lacks (leader). */
void manager_ensure_datasets(manager *m);
/* Loop thread: the same as SIGTERM. */
void manager_request_stop(manager *m);

/* snapshot.c (part of the manager, hence the prefix): replaces the state database with a copy from a peer that has applied at least
 * MIN_APPLIED entries (the leader first). Loop thread. */
int manager_snapshot_fetch(manager *m, uint64_t min_applied);
/* POST /v1/internal/state: streams a consistent copy of this master's database, made on a
 * thread of its own (an HTTP thread stays free for the other calls). */
void manager_state_copy(httpd_request *req, void *userdata);
/* Waits for the copies being made (before the HTTP server goes away). */
void manager_snapshot_copies_wait(manager *m);
