/* The master's manager: raft glue on the libuv loop, leadership tracking, notify, shutdown. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "apiauth.h"
#include "cleanup.h"
#include "fsutil.h"
#include "httpc.h"
#include "log.h"
#include "manager-internal.h"
#include "raft-compat.h"
#include "transport.h"
#include "ufs/ufs.h"
#include "weir-build.h"
#include "fsutil.h"
#include "timeutil.h"

#define CONNECT_RETRY_MS 100
#define PROBE_INTERVAL_S 1
#define PROBE_TIMEOUT_MS 300
#define SLOW_LOOP_US     100000 /* an apply or snapshot this long on the loop is logged */
/* How long a stop waits for pending raft requests before raft_close() (see manager_stop). */
#define STOP_DRAIN_MS 1000

struct manager_call {
        manager_call *next;
        json_t *cmd;
        manager_apply_cb cb;
        void (*fn)(manager *m, bool stopping, void *userdata);
        void *userdata;
};

typedef struct apply_req {
        struct raft_apply raft_req;
        manager *m;
        char *id;
        manager_apply_cb cb;
        void *userdata;
} apply_req;

static void manager_update(manager *m);
static void manager_stop(manager *m);

const char *manager_role_name(int role)
{
        switch (role) {
        case RAFT_FOLLOWER:
                return "follower";
        case RAFT_CANDIDATE:
                return "candidate";
        case RAFT_LEADER:
                return "leader";
        default:
                return "unavailable";
        }
}

uv_loop_t *manager_loop(manager *m)
{
        return &m->loop;
}

const config *manager_config(manager *m)
{
        return m->cfg;
}

void manager_set_sync_hooks(manager *m, const manager_sync_hooks *hooks)
{
        m->sync_hooks = *hooks;
}

manager_view manager_get_view(manager *m)
{
        pthread_mutex_lock(&m->state_lock);
        manager_view v = m->view;
        pthread_mutex_unlock(&m->state_lock);
        return v;
}

bool manager_is_leader(manager *m)
{
        return manager_get_view(m).serving;
}

void manager_read_fsm(manager *m, void (*fn)(fsm *f, void *userdata), void *userdata)
{
        /* No lock: every read is its own LMDB read transaction (fsm.h). */
        fn(m->fsm, userdata);
}

const config_node *manager_master_node(manager *m, unsigned id)
{
        return id ? config_master_by_raft_id(m->cfg, id) : NULL;
}

const char *manager_api_address(manager *m, unsigned id, char *buf, size_t len)
{
        const config_node *n = manager_master_node(m, id);
        if (!n)
                return NULL;
        if (strchr(n->address, ':'))
                snprintf(buf, len, "[%s]:%u", n->address, n->master_port);
        else
                snprintf(buf, len, "%s:%u", n->address, n->master_port);
        return buf;
}

/* ---- state machine glue (called by raft on the loop thread) ---- */

/* The database cannot take an entry that every other replica took: applying anything more would
 * diverge, so this master stops (and says why) rather than serve a wrong state. */
static void manager_fatal(manager *m, int r, const char *what)
{
        if (m->fatal)
                return;
        m->fatal = true;
        log_full_errno(LOG_CRIT, r,
                       "Cannot %s in the state database %s: %m. Stopping this master; it "
                       "catches up from its peers when restarted (delete the database to have it "
                       "copied from the leader).",
                       what, m->db_path);
        manager_stop(m);
}

static int raft_fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
        manager *m = rf->data;

        *result = NULL;
        if (m->fatal)
                return RAFT_IOERR;
        if (m->apply_skip > 0) {
                /* Already in the database (restarted on a current database): see restore. */
                m->apply_skip--;
                return 0;
        }
        /* Followers have nobody to give a result to; the leader's caller fetches it by request
         * id from the state machine (apply_done), so nothing is allocated for raft here. */
        uint64_t t0 = now_us();
        int r = fsm_apply(m->fsm, buf->base, buf->len, NULL);
        uint64_t took = now_us() - t0;
        loopwatch_note_apply(&m->watch, took, buf->len,
                             buf->len > 0 &&
                                     *(const unsigned char *)buf->base == FSM_TREE_BATCH_V1);
        if (took > SLOW_LOOP_US)
                log_warning("Applying an entry of %zu bytes took %" PRIu64 " ms.", buf->len,
                            took / 1000);
        if (r < 0) {
                manager_fatal(m, r, "apply a replicated entry");
                return RAFT_IOERR;
        }
        return 0;
}

/* raft's snapshot is a descriptor of the database (fsm.h): O(1) on the loop, no copy of the
 * state; the database is flushed first so that it is never older than a snapshot naming it. */
static int raft_fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
        manager *m = rf->data;
        _cleanup_free_ char *s = NULL;
        size_t len;

        uint64_t t0 = now_us();
        int r = fsm_flush(m->fsm);
        if (r >= 0)
                r = fsm_snapshot_descriptor(m->fsm, &s, &len);
        uint64_t took = now_us() - t0;
        loopwatch_note_snapshot(&m->watch, took);
        if (took > SLOW_LOOP_US)
                log_warning("Taking a snapshot took %" PRIu64 " ms.", took / 1000);
        if (r < 0) {
                log_warning_errno(r, "Cannot take a snapshot: %m, retrying later");
                return r == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
        }
        /* Version 2 without snapshot_finalize: raft frees both with raft_free(). */
        struct raft_buffer *b = raft_malloc(sizeof(*b));
        if (!b)
                return RAFT_NOMEM;
        size_t padded = (len + 7) & ~(size_t)7; /* 8-byte multiples, as for entries */
        b->base = raft_malloc(padded);
        if (!b->base) {
                raft_free(b);
                return RAFT_NOMEM;
        }
        memcpy(b->base, s, len);
        memset((char *)b->base + len, ' ', padded - len);
        b->len = padded;
        *bufs = b;
        *n_bufs = 1;
        log_debug("Snapshot taken: %s", s);
        return 0;
}

/* A snapshot says "the state after N applied entries". A database that has applied at least N
 * entries already holds it (a restart: raft replays from its snapshot, we skip what we have);
 * an older one (a lagging or wiped master) is replaced by a peer's copy. */
static int raft_fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
        manager *m = rf->data;
        uint64_t want, have;

        int r = fsm_snapshot_parse(buf->base, buf->len, &want);
        if (r < 0) {
                log_error("Refusing a snapshot of %zu bytes that is not a weir state descriptor "
                          "(written by an older weir?).",
                          buf->len);
                return RAFT_MALFORMED;
        }
        have = fsm_applied(m->fsm);
        if (have < want) {
                log_info("The state database has %" PRIu64 " entries, the snapshot %" PRIu64
                         ": copying the database from a peer.",
                         have, want);
                /* Seconds of download and file writing: not at real-time priority, where it would
                 * hold a CPU away from every normal process meanwhile. */
                if (m->loop_realtime)
                        loopwatch_thread_normal();
                r = manager_snapshot_fetch(m, want);
                if (m->loop_realtime && loopwatch_realtime() < 0)
                        m->loop_realtime = false;
                if (r < 0) {
                        log_error_errno(r, "Cannot install the snapshot: %m");
                        return RAFT_IOERR;
                }
                have = fsm_applied(m->fsm);
        }
        m->apply_skip = have - want;
        log_info("Restored a snapshot at %" PRIu64 " entries; the database has %" PRIu64
                 ", skipping %" PRIu64 " replayed entries.",
                 want, have, m->apply_skip);
        raft_free(buf->base);
        return 0;
}

/* ---- writes ---- */

static int raft_error_to_errno(int rv)
{
        switch (rv) {
        case 0:
                return 0;
        case RAFT_NOTLEADER:
                return -EAGAIN;
        case RAFT_LEADERSHIPLOST:
                return -ECONNABORTED;
        case RAFT_SHUTDOWN:
                return -ECANCELED;
        case RAFT_NOMEM:
                return -ENOMEM;
        case RAFT_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

static void apply_done(struct raft_apply *req, int status, void *result)
{
        apply_req *a = req->data;
        manager *m = a->m;
        json_t *res = NULL;
        int r = raft_error_to_errno(status);

        m->raft_pending--;

        if (r == 0) {
                res = fsm_result(m->fsm, a->id);
                if (!res)
                        r = -ENOMEM;
        } else
                log_debug("Apply of %s failed: %s", a->id, raft_strerror(status));
        a->cb(m, r, res, a->userdata);
        json_decref(res);
        free(a->id);
        free(a);
}

int manager_apply(manager *m, json_t *cmd, manager_apply_cb cb, void *userdata)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r;

        if (m->stopping)
                return -ECANCELED;
        if (!m->serving_local)
                return -EAGAIN;

        r = fsm_command_encode(cmd, m->client_id, ++m->seq, &buf, &len);
        if (r < 0)
                return r;
        apply_req *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->id = strdup(json_string_value(json_object_get(cmd, "id")));
        /* Entry lengths must be multiples of 8: raft-cowsql refuses others, and raft 0.15
         * accepts them but writes closed segments it cannot load again. JSON ignores the
         * trailing blanks. */
        size_t padded = (len + 7) & ~(size_t)7;
        struct raft_buffer rb = {.base = raft_malloc(padded), .len = padded};
        if (!a->id || !rb.base) {
                free(a->id);
                free(a);
                raft_free(rb.base);
                return -ENOMEM;
        }
        memcpy(rb.base, buf, len);
        memset((char *)rb.base + len, ' ', padded - len);
        a->m = m;
        a->cb = cb;
        a->userdata = userdata;
        a->raft_req.data = a;
        int rv = raft_apply(&m->raft, &a->raft_req, &rb, 1, apply_done);
        if (rv != 0) {
                raft_free(rb.base); /* still ours on failure */
                free(a->id);
                free(a);
                return raft_error_to_errno(rv);
        }
        m->raft_pending++;
        return 0;
}

static void call_free(manager_call *c)
{
        json_decref(c->cmd);
        free(c);
}

static void call_run(manager *m, manager_call *c, bool stopping)
{
        if (c->fn)
                c->fn(m, stopping, c->userdata);
        else {
                int r = stopping ? -ECANCELED : manager_apply(m, c->cmd, c->cb, c->userdata);
                if (r < 0)
                        c->cb(m, r, NULL, c->userdata);
        }
        call_free(c);
}

static void drain_queue(manager *m, bool stopping)
{
        pthread_mutex_lock(&m->state_lock);
        manager_call *c = m->queue_head;
        m->queue_head = m->queue_tail = NULL;
        pthread_mutex_unlock(&m->state_lock);

        while (c) {
                manager_call *next = c->next;
                call_run(m, c, stopping);
                c = next;
        }
}

static int enqueue(manager *m, manager_call *c)
{
        pthread_mutex_lock(&m->state_lock);
        if (m->stopping) {
                pthread_mutex_unlock(&m->state_lock);
                return -ECANCELED;
        }
        if (m->queue_tail)
                m->queue_tail->next = c;
        else
                m->queue_head = c;
        m->queue_tail = c;
        /* Sent under the lock: once stopping is set nobody touches the handle, which the
         * shutdown chain then closes. */
        loopwake_send(&m->wakeup);
        pthread_mutex_unlock(&m->state_lock);
        return 0;
}

int manager_submit(manager *m, json_t *cmd_take, manager_apply_cb cb, void *userdata)
{
        manager_call *c = calloc(1, sizeof(*c));
        if (!c) {
                json_decref(cmd_take);
                return -ENOMEM;
        }
        c->cmd = cmd_take;
        c->cb = cb;
        c->userdata = userdata;
        int r = enqueue(m, c);
        if (r < 0)
                call_free(c);
        return r;
}

int manager_call_on_loop(manager *m, void (*fn)(manager *m, bool stopping, void *userdata),
                         void *userdata)
{
        manager_call *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fn = fn;
        c->userdata = userdata;
        int r = enqueue(m, c);
        if (r < 0)
                free(c);
        return r;
}

static void on_wakeup(loopwake *w)
{
        drain_queue(w->poll.data, false);
}

/* ---- leadership ---- */

static void on_ensure_done(manager *m, int status, json_t *result, void *userdata)
{
        _cleanup_free_ char *name = userdata;
        if (status < 0)
                log_warning_errno(status, "Failed to record dataset %s from the YAML: %m, ignoring",
                                  name);
        else
                log_info("Dataset %s recorded from the YAML.", name);
}

/* The mounts as replicated and shown by the API: credentials in a URL stay in the YAML. */
static json_t *config_mounts_json(const config_dataset *d)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < d->n_mounts; i++) {
                _cleanup_free_ char *url = ufs_url_redact(d->mounts[i].mount_point);
                if (!url) {
                        json_decref(a);
                        return NULL;
                }
                json_array_append_new(
                        a, json_pack("{s:s,s:s}", "name", d->mounts[i].name, "mount_point", url));
        }
        return a;
}

typedef struct ensure_check {
        const char *name;
        json_t *mounts;
        bool needed;
} ensure_check;

static void check_dataset(fsm *f, void *userdata)
{
        ensure_check *c = userdata;
        json_t *ds = NULL;
        if (fsm_dataset(f, c->name, &ds) < 0) {
                c->needed = true;
                return;
        }
        c->needed = !json_equal(json_object_get(ds, "mounts"), c->mounts);
        json_decref(ds);
}

/* The leader records the YAML's datasets that the replicated state lacks or has with other
 * mounts. Every master runs this on becoming leader; the commands are idempotent. */
void manager_ensure_datasets(manager *m)
{
        for (size_t i = 0; i < m->cfg->n_datasets; i++) {
                const config_dataset *d = &m->cfg->datasets[i];
                json_t *mounts = config_mounts_json(d);
                if (!mounts)
                        return (void)log_oom();
                ensure_check c = {.name = d->name, .mounts = mounts};
                manager_read_fsm(m, check_dataset, &c);
                if (c.needed) {
                        json_t *cmd = fsm_cmd_dataset_ensure(d->name, mounts, d->block_size,
                                                             (double)time(NULL));
                        char *name = strdup(d->name);
                        int r = cmd && name ? manager_apply(m, cmd, on_ensure_done, name) : -ENOMEM;
                        if (r < 0) {
                                log_warning_errno(r, "Failed to record dataset %s: %m, ignoring",
                                                  d->name);
                                free(name);
                        }
                        json_decref(cmd);
                }
                json_decref(mounts);
        }
}

static void on_barrier(struct raft_barrier *req, int status)
{
        manager *m = req->data;

        m->barrier_pending = false;
        m->raft_pending--;
        if (m->stopping)
                return;
        if (status != 0 || raft_state(&m->raft) != RAFT_LEADER) {
                log_debug("Leader barrier failed: %s", raft_strerror(status));
                return;
        }
        m->serving_local = true;
        pthread_mutex_lock(&m->state_lock);
        m->view.serving = true;
        pthread_mutex_unlock(&m->state_lock);
        log_info("Serving as leader.");
        manager_update(m);
        manager_ensure_datasets(m);
        m->opts.parts->members_leader_changed(m, true);
        m->opts.parts->epoch_ensure(m);
        if (m->sync_hooks.leader_changed)
                m->sync_hooks.leader_changed(m, true, m->sync_hooks.userdata);
}

static void notify_status(manager *m, const manager_view *v)
{
        char buf[256];
        unsigned n = (unsigned)config_n_masters(m->cfg);

        if (v->role == RAFT_LEADER)
                snprintf(buf, sizeof(buf), "leader%s, term %" PRIu64 ", %u/%u masters",
                         v->serving ? "" : " (committing barrier)", v->term, v->reachable_masters,
                         n);
        else if (v->leader_id) {
                const config_node *l = manager_master_node(m, v->leader_id);
                snprintf(buf, sizeof(buf), "%s of %s, term %" PRIu64, manager_role_name(v->role),
                         l ? l->name : "?", v->term);
        } else
                snprintf(buf, sizeof(buf), "%s, no leader known, term %" PRIu64,
                         manager_role_name(v->role), v->term);
        if (strcmp(buf, m->status_text) == 0)
                return;
        snprintf(m->status_text, sizeof(m->status_text), "%s", buf);
        log_info("Status: %s", buf);
        (void)sd_notifyf(false, "STATUS=%s", buf);
}

/* Polls raft and publishes what changed: role, leader, term, applied index. */
static void manager_update(manager *m)
{
        int state = raft_state(&m->raft);
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&m->raft, &lid, &laddr);

        if (state == RAFT_LEADER && !m->serving_local && !m->barrier_pending && !m->stopping) {
                /* raft 0.15 may commit old-term entries by counting replicas; a barrier in the
                 * new term settles them before this leader serves anything. */
                m->barrier.data = m;
                int rv = raft_barrier(&m->raft, &m->barrier, on_barrier);
                if (rv == 0) {
                        m->barrier_pending = true;
                        m->raft_pending++;
                } else
                        log_debug("raft_barrier: %s", raft_strerror(rv));
        }
        bool lost = state != RAFT_LEADER && m->serving_local;
        if (lost) {
                m->serving_local = false;
                log_info("No longer the leader.");
        }

        bool changed = state != m->last_state || lid != m->last_leader;
        if (changed || ++m->term_poll >= RAFT_COMPAT_TERM_POLLS)
                m->term_poll = 0;
        uint64_t term = (changed || m->term_poll == 0)
                                ? raft_compat_term(&m->raft, m->raft_dir, m->view.term)
                                : m->view.term;

        pthread_mutex_lock(&m->state_lock);
        manager_view old = m->view;
        m->view.role = state;
        m->view.leader_id = (unsigned)lid;
        m->view.term = term;
        m->view.applied = raft_last_applied(&m->raft);
        if (lost) {
                m->view.serving = false;
                if (m->leadership_lost_locked)
                        m->leadership_lost_locked(m);
        }
        if (lid && lid != m->last_leader)
                m->view.leader_changes++;
        if (config_n_masters(m->cfg) <= 1)
                m->view.reachable_masters = 1;
        manager_view v = m->view;
        pthread_mutex_unlock(&m->state_lock);

        m->last_state = state;
        m->last_leader = (unsigned)lid;

        if (lost && m->sync_hooks.leader_changed)
                m->sync_hooks.leader_changed(m, false, m->sync_hooks.userdata);
        if (lost)
                m->opts.parts->members_leader_changed(m, false);

        if (!m->ready_sent && (v.serving || (v.leader_id && state == RAFT_FOLLOWER))) {
                m->ready_sent = true;
                (void)sd_notify(false, "READY=1");
                log_info("Ready: %s.", v.serving ? "serving as leader" : "following a leader");
        }
        notify_status(m, &v);
        if (old.role != v.role || old.term != v.term || old.leader_id != v.leader_id ||
            old.serving != v.serving)
                m->opts.parts->dbus_emit_changed(m);
}

static void on_tick(uv_timer_t *t)
{
        manager *m = t->data;

        loopwatch_tick(&m->watch, SLOW_LOOP_US);
        manager_update(m);
        m->opts.parts->epoch_ensure(m); /* a failed proposal is retried */
}

static void on_watchdog(uv_timer_t *t)
{
        (void)sd_notify(false, "WATCHDOG=1");
}

static void on_transfer(struct raft_transfer *req)
{
        manager *m = req->data;
        m->transfer_pending = false;
        manager_update(m);
}

int manager_transfer_leadership(manager *m, unsigned id)
{
        if (m->transfer_pending)
                return -EBUSY;
        if (!m->raft_initialised || raft_state(&m->raft) != RAFT_LEADER)
                return -EAGAIN;
        m->transfer.data = m;
        int rv = raft_transfer(&m->raft, &m->transfer, id, on_transfer);
        if (rv != 0) {
                log_warning("Leadership transfer refused: %s", raft_errmsg(&m->raft));
                return rv == RAFT_NOTFOUND || rv == RAFT_BADID ? -ENOENT : -EIO;
        }
        m->transfer_pending = true;
        return 0;
}

/* ---- peer prober: a thread, because its blocking HTTP calls must not stall the loop ---- */

static void *prober_main(void *userdata)
{
        manager *m = userdata;

        loopwatch_thread_normal(); /* started by the real-time loop thread */
        httpc *c = httpc_new();
        if (!c || apiauth_httpc_setup(c, m->cfg, m->token) < 0) /* members_probe reads /v1/config */
                return httpc_free(c);
        httpc_set_timeout(c, PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS);
        httpc_set_max_redirects(c, 0);

        pthread_mutex_lock(&m->state_lock);
        while (!m->stopping) {
                pthread_mutex_unlock(&m->state_lock);
                unsigned ok = 1;
                for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                        const config_node *n = &m->cfg->nodes[i];
                        char api[300], url[400];
                        httpc_response res = {};
                        if (!n->master || n == m->node)
                                continue;
                        manager_api_address(m, n->raft_id, api, sizeof(api));
                        snprintf(url, sizeof(url), "%s://%s/healthz", apiauth_scheme(m->cfg), api);
                        if (httpc_get(c, url, &res) == 0 && res.status == 200)
                                ok++;
                        httpc_response_done(&res);
                }
                m->opts.parts->members_probe(m, c);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += PROBE_INTERVAL_S;
                pthread_mutex_lock(&m->state_lock);
                m->view.reachable_masters = ok;
                if (!m->stopping)
                        pthread_cond_timedwait(&m->prober_cond, &m->state_lock, &until);
        }
        pthread_mutex_unlock(&m->state_lock);
        httpc_free(c);
        return NULL;
}

/* ---- start and stop ---- */

/* Opens DIR/state.mdb. A database without a raft log beside it belongs to no log we have (the
 * raft directory was wiped, or this is another cluster's): it is dropped, and refilled from the
 * log or a peer's copy, because replaying a new log over it would skip entries. */
static int manager_open_state(manager *m)
{
        _cleanup_free_ char *meta1 = NULL, *meta2 = NULL, *lock = NULL;
        int r;

        if (asprintf(&m->db_path, "%s/state.mdb", m->dir) < 0 ||
            asprintf(&meta1, "%s/metadata1", m->raft_dir) < 0 ||
            asprintf(&meta2, "%s/metadata2", m->raft_dir) < 0 ||
            asprintf(&lock, "%s/state.mdb-lock", m->dir) < 0) {
                m->db_path = NULL;
                return log_oom();
        }
        if (access(meta1, F_OK) < 0 && access(meta2, F_OK) < 0 && access(m->db_path, F_OK) == 0) {
                log_warning("%s has no raft log beside it: starting with an empty state.",
                            m->db_path);
                if (unlink(m->db_path) < 0 || (unlink(lock) < 0 && errno != ENOENT))
                        return log_error_errno(errno, "Failed to remove %s: %m", m->db_path);
        }
        r = fsm_open(m->db_path, &m->fsm);
        if (r < 0)
                return log_error_errno(r, "Failed to open the state database %s: %m", m->db_path);
        /* Until raft restores a snapshot, it replays its log from the first entry. */
        m->apply_skip = fsm_applied(m->fsm);
        log_info("State database %s: %" PRIu64 " entries applied.", m->db_path, m->apply_skip);
        return 0;
}

int manager_new(const config *cfg, const config_node *node, const manager_options *opts,
                manager **ret)
{
        int r;

        assert(opts && opts->parts);
        manager *m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        m->cfg = m->boot_cfg = cfg;
        m->node = node;
        m->opts = *opts;
        m->lock_fd = -1;
        m->last_state = -1;
        loopwatch_mutex_init(&m->state_lock); /* the loop may be real-time */
        pthread_cond_init(&m->prober_cond, NULL);
        pthread_cond_init(&m->copies_cond, NULL);
        if (m->opts.parts->members_new(m) < 0) {
                manager_free(m);
                return -ENOMEM;
        }
        m->locations = locations_new();
        if (!m->locations) {
                manager_free(m);
                return log_oom();
        }
        /* The loop exists from here to manager_free(), so that other modules (sync.c) can add
         * their handles before manager_run() and close them after it returned. */
        r = uv_loop_init(&m->loop);
        if (r < 0) {
                log_error("uv_loop_init: %s", uv_strerror(r));
                manager_free(m);
                return -EIO;
        }
        m->loop_initialised = true;

        if (opts->data_dir)
                m->dir = strdup(opts->data_dir);
        else if (asprintf(&m->dir, "%s/master", node->data_dir) < 0)
                m->dir = NULL;
        if (!m->dir || asprintf(&m->raft_dir, "%s/raft", m->dir) < 0) {
                manager_free(m);
                return log_oom();
        }
        r = mkdir_p(m->raft_dir, 0750);
        if (r < 0) {
                log_error_errno(r, "Failed to create %s: %m", m->raft_dir);
                manager_free(m);
                return r;
        }

        _cleanup_free_ char *lock_path = NULL;
        if (asprintf(&lock_path, "%s/lock", m->dir) < 0) {
                manager_free(m);
                return log_oom();
        }
        m->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (m->lock_fd < 0) {
                r = log_error_errno(errno, "Failed to open %s: %m", lock_path);
                manager_free(m);
                return r;
        }
        if (flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        r = log_error_errno(EBUSY,
                                            "Another weir-master is already using %s (lock %s "
                                            "is held); refusing to start a second one.",
                                            m->dir, lock_path);
                else
                        r = log_error_errno(errno, "Failed to lock %s: %m", lock_path);
                manager_free(m);
                return r;
        }
        char pid[32];
        int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(m->lock_fd, 0) == 0)
                (void)!write(m->lock_fd, pid, (size_t)len);

        if (cfg->token_file) {
                r = read_secret_file(cfg->token_file, SECRET_MAX, &m->token);
                if (r < 0) {
                        log_error_errno(r, "Failed to read the cluster token from %s: %m",
                                        cfg->token_file);
                        manager_free(m);
                        return r;
                }
        }

        /* A damaged log is never started on silently (rejoin.c). */
        r = opts->rejoin ? opts->parts->rejoin_prepare(cfg, node, m->token, m->raft_dir)
                         : opts->parts->rejoin_check_dir(m->raft_dir);
        if (r < 0) {
                manager_free(m);
                return r;
        }

        /* After a rejoin moved the log aside: its database goes with it. */
        r = manager_open_state(m);
        if (r < 0) {
                manager_free(m);
                return r;
        }

        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(m->client_id, sizeof(m->client_id), "%s/%d/%lld.%09ld", node->name, (int)getpid(),
                 (long long)ts.tv_sec, ts.tv_nsec);
        if (strchr(node->address, ':'))
                snprintf(m->raft_address, sizeof(m->raft_address), "[%s]:%u", node->address,
                         node->raft_port);
        else
                snprintf(m->raft_address, sizeof(m->raft_address), "%s:%u", node->address,
                         node->raft_port);

        *ret = m;
        return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
        manager *m = h->data;
        m->open_handles--;
}

static void close_handle(manager *m, uv_handle_t *h)
{
        if (h->loop && !uv_is_closing(h)) {
                h->data = m;
                uv_close(h, on_handle_closed);
        }
}

static void close_wakeup(manager *m)
{
        if (m->wakeup.poll.loop && !uv_is_closing((uv_handle_t *)&m->wakeup.poll)) {
                m->wakeup.poll.data = m;
                loopwake_close(&m->wakeup, on_handle_closed);
        }
}

/* struct raft's fields are off limits (they moved between raft versions): find the manager
 * from the embedded member instead of raft->data. */
static manager *manager_from_raft(struct raft *r)
{
        return (manager *)((char *)r - offsetof(manager, raft));
}

static void on_raft_closed(struct raft *r)
{
        manager *m = manager_from_raft(r);

        raft_uv_close(&m->io);
        transport_free(&m->transport);
        m->raft_initialised = false;
        /* Every apply callback has fired: no request waits on the loop any more. */
        drain_queue(m, true);
        manager_snapshot_copies_wait(m);
        m->httpd = httpd_free(m->httpd);
        m->opts.parts->dbus_stop(m);
        close_wakeup(m);
        log_debug("Raft closed.");
}

static void on_stop_drain(uv_timer_t *t)
{
        manager *m = t->data;

        if (m->raft_pending > 0 && uv_now(&m->loop) < m->stop_deadline)
                return;
        if (m->raft_pending > 0)
                log_debug("Closing raft with %u request(s) still pending.", m->raft_pending);
        uv_timer_stop(t);
        close_handle(m, (uv_handle_t *)t);
        raft_close(&m->raft, on_raft_closed);
}

static void manager_stop(manager *m)
{
        if (m->stopping)
                return;
        log_info("Stopping.");
        (void)sd_notify(false, "STOPPING=1");
        m->stopping = true;
        pthread_mutex_lock(&m->state_lock);
        m->stopping = true;
        pthread_cond_broadcast(&m->prober_cond);
        pthread_mutex_unlock(&m->state_lock);

        close_handle(m, (uv_handle_t *)&m->sigterm);
        close_handle(m, (uv_handle_t *)&m->sigint);
        close_handle(m, (uv_handle_t *)&m->watchdog);
        m->opts.parts->members_stop(m);
        /* Queued writes are answered "shutting down"; raft_close then fails pending applies
         * (their callbacks answer the waiting HTTP requests) and calls on_raft_closed. */
        drain_queue(m, true);
        if (m->raft_initialised && m->raft_pending > 0 && m->tick.loop &&
            !uv_is_closing((uv_handle_t *)&m->tick)) {
                /* libraft 0.15 dereferences NULL in its log's reference counts (refsDecr, from
                 * the leader's append callback) when raft_close() cancels an append of the
                 * entries a new leader just proposed: a leader stopped right after its election
                 * died of SIGSEGV. Their callbacks fire once the entries are written and
                 * committed; wait for that, bounded (without a quorum they never commit, but
                 * the local write has long finished by the deadline). */
                m->stop_deadline = uv_now(&m->loop) + STOP_DRAIN_MS;
                log_debug("Waiting up to %u ms for %u pending raft request(s).", STOP_DRAIN_MS,
                          m->raft_pending);
                uv_timer_start(&m->tick, on_stop_drain, 10, 10);
                return;
        }
        close_handle(m, (uv_handle_t *)&m->tick);
        if (m->raft_initialised)
                raft_close(&m->raft, on_raft_closed);
        else {
                manager_snapshot_copies_wait(m);
                m->httpd = httpd_free(m->httpd);
                m->opts.parts->dbus_stop(m);
                close_wakeup(m);
        }
}

void manager_request_stop(manager *m)
{
        manager_stop(m);
}

static void on_signal(uv_signal_t *s, int signum)
{
        log_info("Received %s.", strsignal(signum));
        manager_stop(s->data);
}

static int manager_start_raft(manager *m)
{
        struct raft_configuration conf;
        int rv;

        /* Raft connections are authenticated before libraft sees them (transport.c). */
        uint8_t key[HS_KEY_BYTES];
        bool keyed;
        int r = transport_load_key(m->cfg, m->token, key, &keyed);
        if (r >= 0)
                r = transport_init(&m->transport, &m->loop, &m->cfg, key);
        sodium_memzero(key, sizeof(key));
        if (r < 0)
                return log_error_errno(r, "Failed to set up the Raft transport: %m");
        rv = raft_uv_init(&m->io, &m->loop, m->raft_dir, &m->transport);
        if (rv != 0) {
                log_error("Failed to open the raft log in %s: %s", m->raft_dir, raft_strerror(rv));
                transport_free(&m->transport);
                return -EIO;
        }
        raft_uv_set_connect_retry_delay(&m->io, CONNECT_RETRY_MS);
        /* Its recovery renames a corrupt segment and starts without the entries in it. */
        raft_uv_set_auto_recovery(&m->io, false);

        m->raft_fsm = (struct raft_fsm){
                .version = 2,
                .data = m,
                .apply = raft_fsm_apply,
                .snapshot = raft_fsm_snapshot,
                .restore = raft_fsm_restore,
                .snapshot_finalize = NULL,
        };
        rv = raft_init(&m->raft, &m->io, &m->raft_fsm, m->node->raft_id, m->raft_address);
        if (rv != 0) {
                log_error("raft_init: %s", raft_errmsg(&m->raft));
                raft_uv_close(&m->io);
                transport_free(&m->transport);
                return -EIO;
        }
        m->raft_initialised = true;

        /* The first start of a cluster bootstraps the same configuration (the YAML's masters) on
         * every master; once the log exists raft answers RAFT_CANTBOOTSTRAP, which is expected.
         * A master added to a running cluster starts without one (members.c decides). */
        int boot = m->opts.parts->members_decide_bootstrap(m);
        if (boot < 0)
                return boot;
        raft_configuration_init(&conf);
        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                const config_node *n = &m->cfg->nodes[i];
                char addr[300];
                if (!n->master)
                        continue;
                snprintf(addr, sizeof(addr), strchr(n->address, ':') ? "[%s]:%u" : "%s:%u",
                         n->address, n->raft_port);
                rv = raft_configuration_add(&conf, n->raft_id, addr, RAFT_VOTER);
                if (rv != 0) {
                        raft_configuration_close(&conf);
                        return log_error_errno(EINVAL, "Bad master configuration for %s: %s",
                                               n->name, raft_strerror(rv));
                }
        }
        rv = boot ? raft_bootstrap(&m->raft, &conf) : 0;
        raft_configuration_close(&conf);
        if (boot && rv == 0)
                m->opts.parts->members_bootstrapped(m);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
                log_error("raft_bootstrap: %s", raft_errmsg(&m->raft));
                return -EIO;
        }

        /* Snapshots are descriptors (raft_fsm_snapshot): cheap, so taken often, which keeps
         * raft's in-memory log (large sync batches) short. */
        unsigned threshold = m->opts.snapshot_threshold ? m->opts.snapshot_threshold : 128;
        raft_set_election_timeout(&m->raft, (unsigned)(m->cfg->election_timeout_ms ?: 300));
        raft_set_heartbeat_timeout(&m->raft, (unsigned)(m->cfg->heartbeat_timeout_ms ?: 50));
        raft_set_pre_vote(&m->raft, true);
        raft_set_snapshot_threshold(&m->raft, threshold);
        raft_set_snapshot_trailing(&m->raft, m->opts.snapshot_trailing ? m->opts.snapshot_trailing
                                                                       : MAX(threshold / 2, 1u));
        rv = raft_start(&m->raft);
        if (rv != 0 && !transport_listen_called(&m->transport))
                return m->opts.parts->rejoin_explain(m->node, m->raft_dir, raft_errmsg(&m->raft));
        if (rv != 0) {
                log_error("Failed to start raft on %s: %s%s", m->raft_address,
                          raft_errmsg(&m->raft),
                          rv == RAFT_IOERR ? " (is the raft port already in use?)" : "");
                return -EIO;
        }
        log_info("Raft node %u on %s, data in %s, %zu master(s).", m->node->raft_id,
                 m->raft_address, m->raft_dir, config_n_masters(m->cfg));
        return 0;
}

static int add_handle(manager *m, int r)
{
        if (r == 0)
                m->open_handles++;
        return r;
}

int manager_run(manager *m)
{
        int r;

        signal(SIGPIPE, SIG_IGN); /* survivors died of SIGPIPE when a peer was killed */

        m->sigterm.data = m->sigint.data = m->tick.data = m->watchdog.data = m->wakeup.poll.data =
                m;

        r = add_handle(m, loopwake_init(&m->loop, &m->wakeup, on_wakeup));
        if (r >= 0)
                r = add_handle(m, uv_signal_init(&m->loop, &m->sigterm));
        if (r >= 0)
                r = add_handle(m, uv_signal_init(&m->loop, &m->sigint));
        if (r >= 0)
                r = add_handle(m, uv_timer_init(&m->loop, &m->tick));
        if (r >= 0)
                r = add_handle(m, uv_timer_init(&m->loop, &m->watchdog));
        if (r < 0) {
                log_error("libuv: %s", uv_strerror(r));
                goto fail;
        }
        m->sigterm.data = m->sigint.data = m->tick.data = m->watchdog.data = m->wakeup.poll.data =
                m;
        uv_signal_start(&m->sigterm, on_signal, SIGTERM);
        uv_signal_start(&m->sigint, on_signal, SIGINT);

        /* The API first: a new master asks the others' /v1/status before it decides whether to
         * bootstrap, and they ask it. */
        r = m->opts.parts->api_start(m);
        if (r < 0)
                goto fail;
        /* D-Bus before raft, too: a new master waiting for the others already says so there. */
        (void)m->opts.parts->dbus_start(m);
        if (!m->cfg->raft_loop_normal) {
                /* After the HTTP threads started (they keep normal scheduling), before raft
                 * starts libuv's pool (it must inherit it: loopwatch.h). */
                int rt = loopwatch_realtime();
                if (rt < 0)
                        log_full_errno(LOG_NOTICE, rt,
                                       "Cannot give the loop thread real-time scheduling "
                                       "(%m): on a busy machine raft heartbeats may then wait "
                                       "for a CPU past the election timeout. Allow it with "
                                       "LimitRTPRIO=1 (the unit does), or set "
                                       "spec.raft.loopScheduling: normal to silence this.");
                else {
                        m->loop_realtime = true;
                        log_info("The loop thread runs with real-time scheduling (SCHED_RR 1).");
                }
        }
        r = manager_start_raft(m);
        if (r == -ECANCELED) { /* SIGTERM while a new master waited for the others */
                uv_run(&m->loop, UV_RUN_DEFAULT);
                return 0;
        }
        if (r < 0)
                goto fail;

        /* Also with one master: a reload may add others, and a retiring master asks them. */
        {
                r = pthread_create(&m->prober, NULL, prober_main, m);
                if (r != 0) {
                        r = log_error_errno(r, "Failed to start the peer prober: %m");
                        goto fail;
                }
                m->prober_started = true;
        }

        loopwatch_init(&m->watch, RAFT_COMPAT_POLL_MS);
        uv_timer_start(&m->tick, on_tick, 0, RAFT_COMPAT_POLL_MS);
        if (sd_watchdog_enabled(false, &m->watchdog_usec) > 0 && m->watchdog_usec > 0) {
                uint64_t ms = MAX(m->watchdog_usec / 2000, 1);
                uv_timer_start(&m->watchdog, on_watchdog, ms, ms);
        }

        uv_run(&m->loop, UV_RUN_DEFAULT);
        loopwatch_done(&m->watch);
        log_info("Stopped.");
        return m->fatal ? -EIO : 0;

fail:
        manager_stop(m);
        uv_run(&m->loop, UV_RUN_DEFAULT);
        return r < 0 ? r : -EIO;
}

manager *manager_free(manager *m)
{
        if (!m)
                return NULL;
        if (m->prober_started) {
                pthread_mutex_lock(&m->state_lock);
                m->stopping = true;
                pthread_cond_broadcast(&m->prober_cond);
                pthread_mutex_unlock(&m->state_lock);
                pthread_join(m->prober, NULL);
        }
        manager_snapshot_copies_wait(m);
        m->httpd = httpd_free(m->httpd);
        if (m->loop_initialised) {
                int r = uv_loop_close(&m->loop);
                if (r < 0)
                        log_debug("uv_loop_close: %s", uv_strerror(r));
        }
        fsm_free(m->fsm);
        free(m->db_path);
        m->locations = locations_free(m->locations);
        secret_free(m->token);
        m->opts.parts->members_free(m);
        safe_close(m->lock_fd);
        free(m->dir);
        free(m->raft_dir);
        pthread_cond_destroy(&m->prober_cond);
        pthread_cond_destroy(&m->copies_cond);
        pthread_mutex_destroy(&m->state_lock);
        free(m);
        return NULL;
}
