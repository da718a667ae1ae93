/* The master daemon's one object: raft node, state machine, API server, bus and notify glue. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cleanup.h"
#include "config.h"
#include "fsm.h"
#include "httpc.h"

typedef struct manager manager;

/* The parts the manager starts and calls back: the API (api.h), the bus object (dbus.h), the
 * membership (members.h), the cluster epoch (epoch.h) and the damaged-log checks (rejoin.h). main.c wires them, so that manager.c includes none of their headers
 * while they include the manager's (no include cycle, docs/design.md). All are required. */
typedef struct manager_parts {
        int (*api_start)(manager *m);
        int (*dbus_start)(manager *m);
        void (*dbus_emit_changed)(manager *m);
        void (*dbus_stop)(manager *m);
        int (*members_new)(manager *m);
        void (*members_free)(manager *m);
        void (*members_stop)(manager *m);
        int (*members_decide_bootstrap)(manager *m);
        void (*members_bootstrapped)(manager *m);
        void (*members_leader_changed)(manager *m, bool leader);
        void (*members_probe)(manager *m, httpc *c);
        int (*members_reset)(manager *m, unsigned id); /* called by rejoin.c */
        void (*epoch_ensure)(manager *m);
        int (*rejoin_check_dir)(const char *raft_dir);
        int (*rejoin_prepare)(const config *cfg, const config_node *self, const char *token,
                              const char *raft_dir);
        int (*rejoin_explain)(const config_node *self, const char *raft_dir, const char *errmsg);
} manager_parts;

typedef struct manager_options {
        const char *data_dir;        /* the master's own directory; NULL = node data_dir/master */
        unsigned snapshot_threshold; /* entries between snapshots; 0 = 1024 */
        unsigned snapshot_trailing;  /* entries kept after a snapshot; 0 = threshold/2 */
        bool rejoin;                 /* move a damaged raft dir aside, get the state anew */
        const manager_parts *parts;  /* required; borrowed, must outlive the manager */
} manager_options;

/* Takes nothing: CONFIG and NODE are borrowed and must outlive the manager. */
int manager_new(const config *cfg, const config_node *node, const manager_options *opts,
                manager **ret);
manager *manager_free(manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(manager *, manager_free);

/* Binds, starts raft and the API, then runs the loop until SIGTERM/SIGINT and a clean close. */
int manager_run(manager *m);

/*
 * Replicated writes. Outcome given to the callback (on the loop thread):
 *   0             committed and applied; RESULT is the state machine's result (borrowed: take a
 *                 reference to keep it), which may itself be {"error","status"} (refused)
 *   -EAGAIN       this node is not a serving leader; nothing was appended (redirect or retry)
 *   -ECONNABORTED leadership was lost while the entry was pending: outcome unknown; retrying
 *                 the SAME command object (it keeps its request id) is safe
 *   -ECANCELED    the daemon is shutting down
 *   other -errno  not appended
 */
typedef void (*manager_apply_cb)(manager *m, int status, json_t *result, void *userdata);

/* Loop thread only. CMD is borrowed; it is stamped with a request id on first use. */
int manager_apply(manager *m, json_t *cmd, manager_apply_cb cb, void *userdata);

/* Any thread: hands CMD (taken) to the loop, which calls manager_apply(); CB runs on the loop.
 * On a synchronous failure (-ECANCELED when stopping, -ENOMEM) CB is not called. */
int manager_submit(manager *m, json_t *cmd_take, manager_apply_cb cb, void *userdata);

/* True when this node is the leader and has committed its barrier: leader-only calls served. */
bool manager_is_leader(manager *m);

/* The loop, for code that adds its own handles (the metadata sync's timers). It exists from
 * manager_new() to manager_free(): handles may be added before manager_run() and must be closed
 * (and the loop run once more) after it returned. Handles that should not keep manager_run()
 * alive at shutdown must be uv_unref()'ed. */
uv_loop_t *manager_loop(manager *m);
const config *manager_config(manager *m);

/*
 * Metadata sync hook (services/master/sync.c): POST /v1/datasets/NAME/sync calls START on the
 * loop thread of the leader; it returns 0 when a sync started (202) or -errno (-EBUSY: already
 * running → 409, -ENOENT → 404). Without a hook the call answers 501. LEADER_CHANGED is
 * called on the loop thread whenever this node starts or stops serving as leader.
 */
typedef struct manager_sync_hooks {
        int (*start)(manager *m, const char *dataset, void *userdata);
        void (*leader_changed)(manager *m, bool leader, void *userdata);
        /* The YAML was reloaded (manager_config() is the new one): new datasets, new mounts. */
        void (*config_changed)(manager *m, void *userdata);
        void *userdata;
} manager_sync_hooks;
void manager_set_sync_hooks(manager *m, const manager_sync_hooks *hooks);

/* Runs FN with the state machine for reads from any thread (each read is its own LMDB read
 * transaction: no lock, never waiting for an apply). */
void manager_read_fsm(manager *m, void (*fn)(fsm *f, void *userdata), void *userdata);
