/* Raft membership that follows the YAML (see members.h and docs/master.md "Membership").
 *
 * Threads: everything here runs on the manager's loop thread, except members_probe() (the
 * prober thread), members_status_fields() and the route handlers (HTTP threads), which touch
 * only the fields marked "state_lock" below, under m->state_lock, or the atomics.
 *
 * raft 0.15 has no call that reads the configuration, so the leader learns it from the answers
 * of raft_assign()/raft_remove() (RAFT_BADROLE: already a voter; RAFT_NOTFOUND/RAFT_BADID: not a
 * member) and records what it knows in the state machine (members_set) after every change, for
 * the followers, for weirctl and for a master that waits to be removed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "apiauth.h"
#include "cleanup.h"
#include "config-apply.h"
#include "log.h"
#include "manager-internal.h"
#include "members.h"
#include "rejoin.h"
#include "timeutil.h"

/* A leaving master that answered /healthz this recently counts as up when the leader orders
 * removals (three probe rounds). */
#define LEAVING_FRESH_MS 3000

/* A master of some config this process loaded: the prober asks the leaving ones whether they are
 * up, so that the leader removes the ones that are down first (reconcile_remove). */
typedef struct seen_peer {
        unsigned id;
        char api[300];        /* HOST:PORT of its API */
        uint64_t answered_ms; /* its last /healthz answer, 0 = none */
        uint64_t tried_ms;    /* its last probe, answered or not, 0 = not yet */
} seen_peer;

typedef enum change_kind {
        CHANGE_ADD,
        CHANGE_STANDBY,
        CHANGE_VOTER,
        CHANGE_REMOVE,
        CHANGE_RESET, /* removed to be added back: see members_reset() */
} change_kind;

struct members {
        manager *m;
        unsigned self_id; /* this master's raft id, fixed at start */
        uv_signal_t sighup;
        uv_timer_t timer; /* the bootstrap probe, then retries of changes */
        bool handles;
        bool probe_fired;
        atomic_int boot;      /* members_boot */
        atomic_bool retiring; /* the loaded YAML no longer makes this node a master */
        atomic_bool removed;  /* the leader confirmed it removed this node */
        config **owned;       /* configs loaded by reloads; kept until the end (see reload) */
        size_t n_owned;
        unsigned *seen_ids; /* raft ids of masters of every config loaded: removal candidates */
        size_t n_seen;

        /* Loop thread only. */
        struct raft_change change;
        bool change_pending;
        change_kind kind;
        unsigned change_id;
        bool record_pending;
        json_t *verified;   /* "ID" -> true: confirmed voter / confirmed absent in this term */
        json_t *record;     /* what the leader knows: [{"id","node","address",...,"role"}] */
        unsigned warned_id; /* last id a failure was logged for, to log it once */
        unsigned reset_id;  /* a master whose log was emptied, to remove and add back */
        bool saw_running;   /* at start, with an empty raft directory: a peer had a leader */

        /* state_lock */
        seen_peer *peers; /* one per seen_ids entry */
        size_t n_peers;
        char *boot_conf;   /* DIR/bootstrap: "ID@ADDRESS:PORT,..." of our first entry, or NULL */
        json_t *published; /* copy of record for the HTTP threads; NULL when not leader */
        char *reload_error;
        uint64_t reloads, reloads_refused;
        bool converged;
};

static void reconcile(members *ms);

static const char *role_name(int role)
{
        switch (role) {
        case RAFT_VOTER:
                return "voter";
        case RAFT_STANDBY:
                return "standby";
        case RAFT_SPARE:
                return "spare";
        default:
                return "?";
        }
}

static void seen_add(members *ms, const config *c)
{
        for (size_t i = 0; i < c->n_nodes; i++) {
                unsigned id = c->nodes[i].raft_id;
                bool known = false;
                if (!c->nodes[i].master)
                        continue;
                for (size_t k = 0; k < ms->n_seen; k++)
                        known = known || ms->seen_ids[k] == id;
                if (known)
                        continue;
                unsigned *a = realloc(ms->seen_ids, (ms->n_seen + 1) * sizeof(*a));
                if (!a)
                        return (void)log_oom();
                ms->seen_ids = a;
                ms->seen_ids[ms->n_seen++] = id;

                const config_node *n = &c->nodes[i];
                pthread_mutex_lock(&ms->m->state_lock);
                seen_peer *p = realloc(ms->peers, (ms->n_peers + 1) * sizeof(*p));
                if (p) {
                        ms->peers = p;
                        p = &ms->peers[ms->n_peers++];
                        *p = (seen_peer){.id = id};
                        snprintf(p->api, sizeof(p->api),
                                 strchr(n->address, ':') ? "[%s]:%u" : "%s:%u", n->address,
                                 n->master_port);
                }
                pthread_mutex_unlock(&ms->m->state_lock);
                if (!p)
                        return (void)log_oom();
        }
}

/* Whether leaving master ID answered the prober lately: 1 yes, 0 no, -1 not asked yet. */
static int heard_lately(members *ms, unsigned id)
{
        uint64_t now = now_ms();
        int up = -1;

        pthread_mutex_lock(&ms->m->state_lock);
        for (size_t i = 0; i < ms->n_peers; i++)
                if (ms->peers[i].id == id && ms->peers[i].tried_ms)
                        up = ms->peers[i].answered_ms &&
                             now - ms->peers[i].answered_ms < LEAVING_FRESH_MS;
        pthread_mutex_unlock(&ms->m->state_lock);
        return up;
}

int members_new(manager *m)
{
        members *ms = calloc(1, sizeof(*ms));
        if (!ms)
                return log_oom();
        ms->m = m;
        ms->self_id = m->node->raft_id;
        atomic_init(&ms->boot, MEMBERS_BOOT_BOOTSTRAPPED);
        ms->verified = json_object();
        if (!ms->verified) {
                free(ms);
                return log_oom();
        }
        seen_add(ms, m->cfg);
        m->members = ms;
        return 0;
}

static void on_closed(uv_handle_t *h)
{
}

void members_stop(manager *m)
{
        members *ms = m->members;
        if (!ms || !ms->handles)
                return;
        ms->handles = false;
        uv_close((uv_handle_t *)&ms->sighup, on_closed);
        uv_close((uv_handle_t *)&ms->timer, on_closed);
}

void members_free(manager *m)
{
        members *ms = m->members;
        if (!ms)
                return;
        if (atomic_load(&ms->removed) && m->raft_dir) {
                /* A master that is added back later must start empty and join: an old log
                 * would carry a configuration the cluster left long ago. */
                _cleanup_free_ char *aside = NULL;
                if (asprintf(&aside, "%s.removed", m->raft_dir) < 0)
                        aside = NULL;
                /* rename() replaces an empty directory only: an older copy is dropped first. */
                if (aside && access(aside, F_OK) == 0)
                        log_warning("%s exists from an earlier removal; keeping the new raft data "
                                    "in %s, ignoring",
                                    aside, m->raft_dir);
                else if (aside && rename(m->raft_dir, aside) < 0)
                        log_warning_errno(errno, "Failed to move %s aside: %m, ignoring",
                                          m->raft_dir);
                else if (aside)
                        log_info("Moved the raft data of this removed master to %s.", aside);
        }
        for (size_t i = 0; i < ms->n_owned; i++)
                config_free(ms->owned[i]);
        free(ms->owned);
        free(ms->seen_ids);
        free(ms->peers);
        json_decref(ms->verified);
        json_decref(ms->record);
        json_decref(ms->published);
        free(ms->reload_error);
        free(ms->boot_conf);
        free(ms);
        m->members = NULL;
}

/* ---- joining: bootstrap or not ---- */

static bool raft_dir_empty(manager *m)
{
        for (int i = 1; i <= 2; i++) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/metadata%d", m->raft_dir, i);
                if (access(path, F_OK) == 0)
                        return false;
        }
        return true;
}

static void on_probe_timer(uv_timer_t *t)
{
        members *ms = t->data;
        ms->probe_fired = true;
}

static void on_sighup(uv_signal_t *s, int signum)
{
        members *ms = s->data;
        _cleanup_free_ char *error = NULL;

        log_info("Received SIGHUP: reloading %s.", ms->m->cfg->path);
        (void)members_reload(ms->m, &error);
}

static int handles_init(members *ms)
{
        manager *m = ms->m;
        if (ms->handles)
                return 0;
        int r = uv_signal_init(&m->loop, &ms->sighup);
        if (r < 0)
                return r;
        r = uv_timer_init(&m->loop, &ms->timer);
        if (r < 0) {
                uv_close((uv_handle_t *)&ms->sighup, on_closed);
                return r;
        }
        ms->sighup.data = ms->timer.data = ms;
        uv_signal_start(&ms->sighup, on_sighup, SIGHUP);
        ms->handles = true;
        return 0;
}

/* "ID@HOST:PORT,..." of the masters of C in raft id order: the first log entry raft_bootstrap()
 * writes for them, as a comparable string. */
static char *conf_string(const config *c)
{
        size_t cap = 64 * (c->n_nodes + 1), len = 0;
        char *s = calloc(1, cap);
        for (size_t id = 1; s && id <= c->n_nodes; id++) {
                const config_node *n = config_master_by_raft_id(c, (unsigned)id);
                if (!n)
                        break;
                len += (size_t)snprintf(s + len, cap - len,
                                        strchr(n->address, ':') ? "%s%zu@[%s]:%u" : "%s%zu@%s:%u",
                                        len ? "," : "", id, n->address, n->raft_port);
                if (len >= cap) {
                        free(s);
                        return NULL;
                }
        }
        return s;
}

static char *boot_path(manager *m)
{
        char *p = NULL;
        return asprintf(&p, "%s/bootstrap", m->dir) < 0 ? NULL : p;
}

void members_bootstrapped(manager *m)
{
        members *ms = m->members;
        _cleanup_free_ char *path = boot_path(m), *tmp = NULL;
        char *s = conf_string(m->cfg);

        if (!path || !s || asprintf(&tmp, "%s.tmp", path) < 0) {
                free(s);
                return (void)log_oom();
        }
        /* Format 1: one line "weir-bootstrap 1 CONF". */
        _cleanup_fclose_ FILE *f = fopen(tmp, "we");
        if (!f || fprintf(f, "weir-bootstrap 1 %s\n", s) < 0 || fflush(f) != 0 ||
            fsync(fileno(f)) < 0 || rename(tmp, path) < 0)
                log_warning_errno(errno, "Failed to write %s: %m, ignoring", path);
        pthread_mutex_lock(&m->state_lock);
        free(ms->boot_conf);
        ms->boot_conf = s;
        pthread_mutex_unlock(&m->state_lock);
}

static void load_boot_conf(manager *m)
{
        members *ms = m->members;
        _cleanup_free_ char *path = boot_path(m);
        char line[16384];
        _cleanup_fclose_ FILE *f = path ? fopen(path, "re") : NULL;

        if (!f || !fgets(line, sizeof(line), f) || strncmp(line, "weir-bootstrap 1 ", 17) != 0)
                return;
        line[strcspn(line, "\n")] = 0;
        char *s = strdup(line + 17);
        pthread_mutex_lock(&m->state_lock);
        free(ms->boot_conf);
        ms->boot_conf = s;
        pthread_mutex_unlock(&m->state_lock);
}

typedef enum probe_verdict {
        PROBE_WAIT,
        PROBE_JOIN,
        PROBE_BOOTSTRAP,
} probe_verdict;

/* One round: asks every other master of the YAML for /v1/status. */
static probe_verdict probe_round(manager *m, httpc *c, char *why, size_t why_len)
{
        const config *cfg = m->cfg;
        size_t n = config_n_masters(cfg), fresh = 1, answered = 0;
        _cleanup_free_ char *mine = conf_string(cfg);

        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *p = &cfg->nodes[i];
                char api[300], url[400];
                httpc_response res = {};

                if (!p->master || p == m->node)
                        continue;
                manager_api_address(m, p->raft_id, api, sizeof(api));
                snprintf(url, sizeof(url), "%s://%s/v1/status", apiauth_scheme(m->cfg), api);
                if (httpc_get(c, url, &res) < 0 || res.status != 200 || !res.json) {
                        httpc_response_done(&res);
                        continue;
                }
                answered++;
                /* Then the leader's replication state for us describes a log we no longer have. */
                if (json_integer_value(json_object_get(res.json, "leader_id")) > 0 ||
                    json_integer_value(json_object_get(res.json, "term")) >= 2)
                        m->members->saw_running = true;
                const char *theirs =
                        json_string_value(json_object_get(res.json, "bootstrap_config"));
                if (theirs && mine && strcmp(theirs, mine) == 0) {
                        /* A founding master that starts late: the cluster's first entry is the one
                         * we would write, and its membership never changed since. */
                        snprintf(why, why_len,
                                 "%s bootstrapped the same masters and their membership is "
                                 "unchanged",
                                 p->name);
                        httpc_response_done(&res);
                        return PROBE_BOOTSTRAP;
                }
                json_int_t term = json_integer_value(json_object_get(res.json, "term"));
                json_int_t leader = json_integer_value(json_object_get(res.json, "leader_id"));
                const char *boot = json_string_value(json_object_get(res.json, "bootstrap"));
                const char *leader_name = json_string_value(json_object_get(res.json, "leader"));
                if (leader > 0 || leader_name || term >= 2) {
                        /* An election happened: the cluster exists, and its leader adds us. */
                        snprintf(why, why_len, "%s reports a running cluster (term %lld)", p->name,
                                 (long long)term);
                        httpc_response_done(&res);
                        return PROBE_JOIN;
                }
                if (boot && strcmp(boot, "joined") == 0) {
                        httpc_response_done(&res);
                        continue; /* waits to be added: knows no configuration to vote with */
                }
                if ((boot && strcmp(boot, "waiting") == 0) || term <= 1)
                        fresh++;
                httpc_response_done(&res);
        }
        if (fresh >= n / 2 + 1) {
                snprintf(why, why_len, "%zu of %zu masters are new and none has a cluster", fresh,
                         n);
                return PROBE_BOOTSTRAP;
        }
        snprintf(why, why_len, "%zu of %zu other masters answered, %zu new (need %zu)", answered,
                 n - 1, fresh, n / 2 + 1);
        return PROBE_WAIT;
}

int members_decide_bootstrap(manager *m)
{
        members *ms = m->members;
        char why[256];
        int r;

        r = handles_init(ms);
        if (r < 0)
                return log_error_errno(EIO, "libuv: %s", uv_strerror(r));
        load_boot_conf(m);
        bool had_log = rejoin_mark_started(m) || m->opts.rejoin;
        if (!raft_dir_empty(m) || config_n_masters(m->cfg) <= 1) {
                /* A log exists (raft answers RAFT_CANTBOOTSTRAP), or a single master. */
                atomic_store(&ms->boot, MEMBERS_BOOT_BOOTSTRAPPED);
                return 1;
        }

        /* An empty directory: either the cluster's first start (every master is new: bootstrap
         * the same configuration everywhere) or a master added to a running cluster, which must
         * not bootstrap: it would found a second cluster. The other masters tell which. */
        atomic_store(&ms->boot, MEMBERS_BOOT_WAITING);
        httpc *c = httpc_new();
        if (!c)
                return log_oom();
        httpc_set_timeout(c, MEMBERS_PROBE_TIMEOUT, MEMBERS_PROBE_TIMEOUT);
        httpc_set_max_redirects(c, 0);
        if (apiauth_httpc_setup(c, m->cfg, m->token) < 0) {
                httpc_free(c);
                return log_oom();
        }
        bool logged = false;
        probe_verdict v;
        for (;;) {
                v = probe_round(m, c, why, sizeof(why));
                if (v != PROBE_WAIT || m->stopping)
                        break;
                if (!logged) {
                        log_info("New master with an empty raft directory: waiting for a running "
                                 "cluster or a majority of new masters (%s).",
                                 why);
                        (void)sd_notifyf(false, "STATUS=new master, waiting for the others: %s",
                                         why);
                        logged = true;
                }
                (void)sd_notify(false, "WATCHDOG=1");
                ms->probe_fired = false;
                uv_timer_start(&ms->timer, on_probe_timer, MEMBERS_PROBE_MS, 0);
                /* Runs signal handlers (SIGTERM stops us) and the API's queued calls. */
                while (!m->stopping && !ms->probe_fired && ms->handles)
                        uv_run(&m->loop, UV_RUN_ONCE);
                if (m->stopping)
                        break;
        }
        httpc_free(c);
        if (m->stopping)
                return -ECANCELED;
        if (v == PROBE_JOIN) {
                atomic_store(&ms->boot, MEMBERS_BOOT_JOINED);
                log_info("Not bootstrapping: %s; this master waits until the leader adds it.", why);
                return had_log ? rejoin_ask_reset(m) : 0;
        }
        atomic_store(&ms->boot, MEMBERS_BOOT_BOOTSTRAPPED);
        log_info("Bootstrapping the masters of the YAML: %s.", why);
        r = had_log && ms->saw_running ? rejoin_ask_reset(m) : 0;
        return r < 0 ? r : 1;
}

/* ---- the leader's reconciliation ---- */

static json_t *record_find(json_t *record, unsigned id, size_t *ret_index)
{
        size_t i;
        json_t *e;
        json_array_foreach(record, i, e)
                if ((unsigned)json_integer_value(json_object_get(e, "id")) == id) {
                        if (ret_index)
                                *ret_index = i;
                        return e;
                }
        return NULL;
}

static json_t *member_json(const config_node *n, const char *role)
{
        return json_pack("{s:i,s:s,s:s,s:i,s:i,s:s}", "id", (int)n->raft_id, "node", n->name,
                         "address", n->address, "raft_port", (int)n->raft_port, "master_port",
                         (int)n->master_port, "role", role);
}

static void record_set_role(members *ms, unsigned id, const char *role)
{
        json_t *e = record_find(ms->record, id, NULL);
        const config_node *n = config_master_by_raft_id(ms->m->cfg, id);
        if (e)
                json_object_set_new(e, "role", json_string(role));
        else if (n)
                json_array_append_new(ms->record, member_json(n, role));
}

static void record_drop(members *ms, unsigned id)
{
        size_t i;
        if (record_find(ms->record, id, &i))
                json_array_remove(ms->record, i);
}

static void publish(members *ms, bool converged)
{
        manager *m = ms->m;
        json_t *copy = ms->record ? json_deep_copy(ms->record) : NULL;
        pthread_mutex_lock(&m->state_lock);
        json_decref(ms->published);
        ms->published = copy;
        ms->converged = converged;
        pthread_mutex_unlock(&m->state_lock);
}

static void verified_set(members *ms, unsigned id)
{
        char k[16];
        snprintf(k, sizeof(k), "%u", id);
        json_object_set_new(ms->verified, k, json_true());
}

static bool verified(members *ms, unsigned id)
{
        char k[16];
        snprintf(k, sizeof(k), "%u", id);
        return json_object_get(ms->verified, k) != NULL;
}

static void on_retry(uv_timer_t *t)
{
        reconcile(t->data);
}

static void retry_later(members *ms)
{
        if (ms->handles && !ms->m->stopping)
                uv_timer_start(&ms->timer, on_retry, MEMBERS_RETRY_MS, 0);
}

static void on_record_done(manager *m, int status, json_t *result, void *userdata)
{
        members *ms = userdata;
        ms->record_pending = false;
        if (status < 0)
                log_warning_errno(status, "Failed to record the membership: %m, retrying");
        reconcile(ms);
}

/* A raft_add/raft_assign/raft_remove was accepted: its configuration entry is being appended,
 * so a stop waits for it like for an apply (manager_stop: raft_close() cancelling that append
 * crashed libraft 0.15). on_change() ends it. */
static void change_started(members *ms)
{
        ms->change_pending = true;
        ms->m->raft_pending++;
}

static void on_change(struct raft_change *req, int status)
{
        members *ms = req->data;
        manager *m = ms->m;
        unsigned id = ms->change_id;
        const config_node *n = config_master_by_raft_id(m->cfg, id);
        const char *name = n ? n->name : "?";

        ms->change_pending = false;
        m->raft_pending--;
        if (m->stopping)
                return;
        if (status != 0) {
                log_warning("Membership change for master %s (raft id %u) failed: %s, retrying.",
                            name, id, raft_strerror(status));
                retry_later(ms);
                return;
        }
        switch (ms->kind) {
        case CHANGE_ADD:
                record_set_role(ms, id, "spare");
                log_info("Added master %s (raft id %u) as a spare.", name, id);
                break;
        case CHANGE_STANDBY:
                record_set_role(ms, id, "standby");
                log_info("Master %s (raft id %u) is a standby: it receives the log.", name, id);
                break;
        case CHANGE_VOTER:
                record_set_role(ms, id, "voter");
                verified_set(ms, id);
                log_info("Master %s (raft id %u) is a voter.", name, id);
                break;
        case CHANGE_REMOVE:
                record_drop(ms, id);
                verified_set(ms, id);
                log_info("Removed raft id %u from the membership.", id);
                break;
        case CHANGE_RESET: {
                /* Not verified (a change that completed meanwhile may have set it):
                 * reconcile_add() adds it back, with fresh replication state. */
                char k[16];
                snprintf(k, sizeof(k), "%u", id);
                json_object_del(ms->verified, k);
                record_drop(ms, id);
                ms->reset_id = 0;
                log_info("Removed master %s (raft id %u), whose log was emptied; adding it back.",
                         name, id);
                break;
        }
        }
        publish(ms, false);
        reconcile(ms);
}

static bool desired(const config *cfg, unsigned id)
{
        return config_master_by_raft_id(cfg, id) != NULL;
}

static void change_failed(members *ms, unsigned id, const char *what, int rv)
{
        if (ms->warned_id != id)
                log_warning("Cannot %s raft id %u yet: %s; retrying every %u ms.", what, id,
                            raft_errmsg(&ms->m->raft), MEMBERS_RETRY_MS);
        ms->warned_id = id;
        (void)rv;
        retry_later(ms);
}

/* Adds and promotes missing masters, one change at a time. Returns true when a change is
 * pending or must be retried (stop here), false when all desired masters are voters. */
static bool reconcile_add(members *ms)
{
        manager *m = ms->m;
        const config *cfg = m->cfg;

        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *n = &cfg->nodes[i];
                unsigned id = n->raft_id;
                if (!n->master || id == ms->self_id || verified(ms, id))
                        continue;
                json_t *e = record_find(ms->record, id, NULL);
                const char *role = e ? json_string_value(json_object_get(e, "role")) : NULL;
                int rv;

                ms->change.data = ms;
                ms->change_id = id;
                if (role && strcmp(role, "spare") == 0) {
                        /* Catch up as a non-voter first: a standby receives the log. */
                        ms->kind = CHANGE_STANDBY;
                        rv = raft_assign(&m->raft, &ms->change, id, RAFT_STANDBY, on_change);
                        if (rv == RAFT_BADROLE) {
                                record_set_role(ms, id, "standby");
                                return reconcile_add(ms);
                        }
                } else {
                        /* A standby, or a member whose role the record may not know: raft
                         * catches it up before the change that makes it a voter. */
                        ms->kind = CHANGE_VOTER;
                        rv = raft_assign(&m->raft, &ms->change, id, RAFT_VOTER, on_change);
                        if (rv == RAFT_BADROLE) {
                                record_set_role(ms, id, "voter");
                                verified_set(ms, id);
                                continue;
                        }
                }
                if (rv == RAFT_NOTFOUND || rv == RAFT_BADID) {
                        char addr[300];
                        snprintf(addr, sizeof(addr), strchr(n->address, ':') ? "[%s]:%u" : "%s:%u",
                                 n->address, n->raft_port);
                        record_drop(ms, id);
                        ms->kind = CHANGE_ADD;
                        rv = raft_add(&m->raft, &ms->change, id, addr, on_change);
                        if (rv == 0)
                                log_info("Adding master %s (raft id %u) at %s.", n->name, id, addr);
                }
                if (rv == 0) {
                        change_started(ms);
                        if (ms->kind != CHANGE_ADD)
                                log_info("Assigning master %s (raft id %u) the role %s.", n->name,
                                         id,
                                         role_name(ms->kind == CHANGE_VOTER ? RAFT_VOTER
                                                                            : RAFT_STANDBY));
                        return true;
                }
                change_failed(ms, id, ms->kind == CHANGE_ADD ? "add" : "promote", rv);
                return true;
        }
        return false;
}

static bool reconcile_remove(members *ms)
{
        manager *m = ms->m;
        unsigned ids[CONFIG_MAX_NODES];
        size_t n = 0, i;
        json_t *e;

        json_array_foreach(ms->record, i, e)
                if (n < ELEMENTSOF(ids))
                        ids[n++] = (unsigned)json_integer_value(json_object_get(e, "id"));
        for (size_t k = 0; k < ms->n_seen && n < ELEMENTSOF(ids); k++)
                ids[n++] = ms->seen_ids[k];

        /* Masters that are down go first: removing one that is up proposes a configuration
         * whose majority may need one that is down (3 -> 1 with node3 down: removing node2 first
         * proposes {1,3}; the leader loses leadership and no one can be elected again). So
         * every leaving master is asked first (the prober, within a second). */
        for (size_t k = 0; k < n; k++)
                if (ids[k] != ms->self_id && !desired(m->cfg, ids[k]) && !verified(ms, ids[k]) &&
                    heard_lately(ms, ids[k]) < 0) {
                        retry_later(ms);
                        return true;
                }
        for (size_t k = 0; k < 2 * n; k++) {
                unsigned id = ids[k % n];
                if (id == ms->self_id || desired(m->cfg, id) || verified(ms, id) ||
                    heard_lately(ms, id) != (k >= n))
                        continue;
                ms->change.data = ms;
                ms->change_id = id;
                ms->kind = CHANGE_REMOVE;
                int rv = raft_remove(&m->raft, &ms->change, id, on_change);
                if (rv == 0) {
                        change_started(ms);
                        log_info("Removing raft id %u from the membership.", id);
                        return true;
                }
                if (rv == RAFT_BADID || rv == RAFT_NOTFOUND) {
                        record_drop(ms, id);
                        verified_set(ms, id);
                        continue;
                }
                change_failed(ms, id, "remove", rv);
                return true;
        }
        return false;
}

typedef struct record_cmp {
        const json_t *record;
        bool equal;
} record_cmp;

static void compare_record(fsm *f, void *userdata)
{
        record_cmp *c = userdata;
        json_auto_t *stored = fsm_members(f);
        c->equal = stored && json_equal(stored, (json_t *)c->record);
}

/* Starts recording ms->record when the state machine holds something else. True when a write
 * is pending or must be retried: reconcile() stops there. */
static bool record_write(members *ms)
{
        manager *m = ms->m;
        record_cmp c = {.record = ms->record};

        manager_read_fsm(m, compare_record, &c);
        if (c.equal)
                return false;
        json_t *cmd = fsm_cmd_members_set(ms->record);
        int r = cmd ? manager_apply(m, cmd, on_record_done, ms) : -ENOMEM;
        json_decref(cmd);
        if (r == 0) {
                ms->record_pending = true;
                return true;
        }
        log_warning_errno(r, "Failed to record the membership: %m, retrying");
        retry_later(ms);
        return true;
}

/* raft keeps a follower's match index for as long as it is a member, and raft-cowsql (from
 * 0.20, its in-flight limit) then never sends entries to a follower that lost its log: out of the
 * membership and back in, it gets the progress of a new server on every libraft. */
static bool reconcile_reset(members *ms)
{
        manager *m = ms->m;
        unsigned id = ms->reset_id;

        if (!id)
                return false;
        ms->change.data = ms;
        ms->change_id = id;
        ms->kind = CHANGE_RESET;
        int rv = raft_remove(&m->raft, &ms->change, id, on_change);
        if (rv == 0) {
                change_started(ms);
                log_info("Removing raft id %u from the membership to add it back: its log was "
                         "emptied.",
                         id);
                return true;
        }
        if (rv == RAFT_BADID || rv == RAFT_NOTFOUND) {
                ms->reset_id = 0; /* not a member: reconcile_add() adds it */
                return false;
        }
        change_failed(ms, id, "reset", rv);
        return true;
}

int members_reset(manager *m, unsigned id)
{
        members *ms = m->members;

        if (!ms || !m->serving_local)
                return -EAGAIN;
        if (id == 0)
                return -ENOENT;
        if (id == ms->self_id)
                return -EINVAL;
        if (!desired(m->cfg, id))
                return -ENOENT; /* added later, if ever, with fresh state */
        if (ms->reset_id && ms->reset_id != id)
                return -EBUSY;
        if (ms->reset_id == id)
                return 0;
        ms->reset_id = id;
        reconcile(ms); /* or the pending change's callback does */
        return 0;
}

static void reconcile(members *ms)
{
        manager *m = ms->m;

        if (m->stopping || !m->serving_local || ms->change_pending || ms->record_pending ||
            !ms->record)
                return;
        if (!desired(m->cfg, ms->self_id)) {
                /* This master leaves: hand leadership to a voter that stays; that leader removes
                 * us. A candidate that is no voter answers -ENOENT: try the next. */
                if (m->transfer_pending)
                        return;
                for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                        const config_node *n = &m->cfg->nodes[i];
                        if (!n->master)
                                continue;
                        if (manager_transfer_leadership(m, n->raft_id) == 0) {
                                log_info("This master leaves the membership: handing leadership "
                                         "to %s.",
                                         n->name);
                                break;
                        }
                }
                retry_later(ms);
                return;
        }
        /* What the last change did is recorded before the next one starts: followers, weirctl
         * and a master waiting to be removed see each step. And once more at the end: the
         * probes may have corrected the record without a change. */
        if (record_write(ms) || reconcile_reset(ms) || reconcile_add(ms) || reconcile_remove(ms) ||
            record_write(ms))
                return;
        bool was = false;
        pthread_mutex_lock(&m->state_lock);
        was = ms->converged;
        pthread_mutex_unlock(&m->state_lock);
        if (!was)
                log_info("Membership matches the YAML: %zu master(s).", config_n_masters(m->cfg));
        ms->warned_id = 0;
        publish(ms, true);
}

static void load_record(fsm *f, void *userdata)
{
        json_t **ret = userdata;
        *ret = fsm_members(f);
}

void members_leader_changed(manager *m, bool leader)
{
        members *ms = m->members;
        if (!ms)
                return;
        json_object_clear(ms->verified);
        json_decref(ms->record);
        ms->record = NULL;
        ms->reset_id = 0; /* a new leader starts every follower's replication state afresh */
        if (!leader) {
                if (ms->handles)
                        uv_timer_stop(&ms->timer);
                publish(ms, false);
                return;
        }
        manager_read_fsm(m, load_record, &ms->record);
        if (!ms->record) {
                /* Nothing recorded: the cluster was bootstrapped from the masters of the YAML it
                 * started with, all voters (membership was static before). */
                ms->record = json_array();
                for (size_t i = 0; ms->record && i < m->boot_cfg->n_nodes; i++)
                        if (m->boot_cfg->nodes[i].master)
                                json_array_append_new(ms->record,
                                                      member_json(&m->boot_cfg->nodes[i], "voter"));
        }
        if (!ms->record)
                return (void)log_oom();
        publish(ms, false);
        reconcile(ms);
}

/* ---- reload ---- */

typedef struct running_query {
        const config *cfg;
        const json_t *masters;
        json_t *running;
} running_query;

static void build_running(fsm *f, void *userdata)
{
        running_query *q = userdata;
        json_auto_t *stored = fsm_members(f);
        json_auto_t *datasets = fsm_datasets(f);
        q->running = config_running_json(q->cfg, q->masters ?: stored, datasets);
}

/* The description of what runs here, as GET /v1/config serves it. Any thread. */
static json_t *running_json(manager *m)
{
        members *ms = m->members;
        pthread_mutex_lock(&m->state_lock);
        json_t *published = json_incref(ms->published);
        pthread_mutex_unlock(&m->state_lock);
        running_query q = {.cfg = m->cfg, .masters = published};
        manager_read_fsm(m, build_running, &q);
        json_decref(published);
        return q.running;
}

static void set_reload_result(manager *m, const char *error)
{
        members *ms = m->members;
        char *copy = error ? strdup(error) : NULL;
        pthread_mutex_lock(&m->state_lock);
        free(ms->reload_error);
        ms->reload_error = copy;
        ms->reloads++;
        if (error)
                ms->reloads_refused++;
        pthread_mutex_unlock(&m->state_lock);
}

int members_reload(manager *m, char **ret_error)
{
        members *ms = m->members;
        const char *path = m->cfg->path;
        _cleanup_(config_freep) config *next = NULL;
        config_diags diags = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = config_load(path, &next, &diags);
        if (r < 0) {
                for (size_t i = 0; i < diags.n && !error; i++)
                        if (!diags.items[i].warning &&
                            asprintf(&error, "%s:%u:%u: %s", path, diags.items[i].line,
                                     diags.items[i].column, diags.items[i].message) < 0)
                                error = NULL;
                config_diags_done(&diags);
                if (!error && asprintf(&error, "%s: %s", path, strerror(-r)) < 0)
                        error = NULL;
                log_error("Reload refused: %s; keeping the running configuration.",
                          error ?: "invalid file");
                set_reload_result(m, error ?: "invalid file");
                *ret_error = TAKE_PTR(error);
                return r == -EINVAL ? -EBADMSG : r; /* -EINVAL means refused by the plan */
        }
        config_diags_done(&diags);

        json_auto_t *running = running_json(m);
        config_plan plan = {};
        r = running ? config_plan_apply(next, running, &plan) : -ENOMEM;
        if (r < 0) {
                set_reload_result(m, "internal error");
                return log_error_errno(r, "Failed to compare %s with the running cluster: %m",
                                       path);
        }
        if (plan.n_refusals > 0) {
                for (size_t i = 0; i < plan.n_refusals; i++) {
                        _cleanup_free_ char *s = config_refusal_format(&plan.refusals[i]);
                        log_error("Reload of %s refused: %s; keeping the running configuration.",
                                  path, s ?: "?");
                        if (!error)
                                error = TAKE_PTR(s);
                }
                config_plan_done(&plan);
                set_reload_result(m, error ?: "refused");
                *ret_error = TAKE_PTR(error);
                return -EINVAL;
        }
        /* A follower's replicated state may lag (a new master catching up): the changes it
         * would list are the leader's to make and to log. */
        for (size_t i = 0; m->serving_local && i < plan.n_changes; i++)
                log_info("Reload: %s.", plan.changes[i]);
        if (!m->serving_local)
                log_info("Reload: %s loaded; the leader applies its changes.", path);
        else if (plan.n_changes == 0)
                log_info("Reload: %s has no changes for the running cluster.", path);
        config_plan_done(&plan);

        config **a = realloc(ms->owned, (ms->n_owned + 1) * sizeof(*a));
        if (!a)
                return log_oom();
        ms->owned = a;
        /* The old config stays allocated until the manager is freed: the HTTP and prober
         * threads and running syncs read m->cfg without a lock, and a pointer swap is all they
         * may see. A reload costs one parsed file; operators reload a handful of times. */
        config *cfg = TAKE_PTR(next);
        ms->owned[ms->n_owned++] = cfg;
        seen_add(ms, cfg);

        const config_node *self = config_find_node(cfg, m->node->name);
        if (self && self->master && self->raft_id == ms->self_id) {
                __atomic_store_n(&m->node, self, __ATOMIC_RELEASE);
                /* A master again (the removal was reverted before the leader got to it). */
                if (atomic_exchange(&ms->retiring, false))
                        log_info("This node is a master in %s again: no longer retiring.", path);
        } else if (!atomic_exchange(&ms->retiring, true))
                log_info("This node is no longer a master in %s: it stays a member until the "
                         "leader removes it, then exits.",
                         path);
        __atomic_store_n(&m->cfg, cfg, __ATOMIC_RELEASE);
        set_reload_result(m, NULL);

        /* The Raft transport follows m->cfg by itself (transport.c, peers_refresh). */
        if (m->sync_hooks.config_changed)
                m->sync_hooks.config_changed(m, m->sync_hooks.userdata);
        if (m->serving_local) {
                manager_ensure_datasets(m);
                json_object_clear(ms->verified);
                publish(ms, false);
                reconcile(ms);
        }
        return 0;
}

/* ---- retiring ---- */

static void retire_on_loop(manager *m, bool stopping, void *userdata)
{
        if (stopping)
                return;
        log_info("The leader removed this master from the membership: exiting.");
        manager_request_stop(m);
}

/* Asks every leaving master (one the loaded YAML no longer names) whether it is up. */
static void probe_leaving(members *ms, const config *cfg, httpc *c)
{
        manager *m = ms->m;
        _cleanup_free_ seen_peer *copy = NULL;
        size_t n;

        pthread_mutex_lock(&m->state_lock);
        n = ms->n_peers;
        copy = n ? malloc(n * sizeof(*copy)) : NULL;
        if (copy)
                memcpy(copy, ms->peers, n * sizeof(*copy));
        pthread_mutex_unlock(&m->state_lock);
        if (!copy)
                return;
        for (size_t i = 0; i < n; i++) {
                char url[400];
                httpc_response res = {};

                if (copy[i].id == ms->self_id || desired(cfg, copy[i].id))
                        continue;
                snprintf(url, sizeof(url), "%s://%s/healthz", apiauth_scheme(cfg), copy[i].api);
                bool up = httpc_get(c, url, &res) == 0 && res.status == 200;
                httpc_response_done(&res);
                pthread_mutex_lock(&m->state_lock);
                for (size_t k = 0; k < ms->n_peers; k++)
                        if (ms->peers[k].id == copy[i].id) {
                                ms->peers[k].tried_ms = now_ms();
                                if (up)
                                        ms->peers[k].answered_ms = ms->peers[k].tried_ms;
                        }
                pthread_mutex_unlock(&m->state_lock);
        }
}

void members_probe(manager *m, httpc *c)
{
        members *ms = m->members;
        const config *cfg = __atomic_load_n(&m->cfg, __ATOMIC_ACQUIRE);

        if (ms)
                probe_leaving(ms, cfg, c);
        if (!ms || !atomic_load(&ms->retiring) || atomic_load(&ms->removed))
                return;
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *n = &cfg->nodes[i];
                char api[300], url[400];
                httpc_response res = {};
                if (!n->master || n->raft_id == ms->self_id)
                        continue;
                snprintf(api, sizeof(api), strchr(n->address, ':') ? "[%s]:%u" : "%s:%u",
                         n->address, n->master_port);
                snprintf(url, sizeof(url), "%s://%s/v1/config", apiauth_scheme(cfg), api);
                if (httpc_get(c, url, &res) == 0 && res.status == 200 &&
                    json_is_true(json_object_get(res.json, "serving"))) {
                        json_t *list = json_object_get(res.json, "members");
                        bool listed = !json_is_array(list);
                        size_t k;
                        json_t *e;
                        json_array_foreach(list, k, e)
                                if ((unsigned)json_integer_value(json_object_get(e, "id")) ==
                                    ms->self_id)
                                        listed = true;
                        if (!listed) {
                                atomic_store(&ms->removed, true);
                                httpc_response_done(&res);
                                (void)manager_call_on_loop(m, retire_on_loop, NULL);
                                return;
                        }
                }
                httpc_response_done(&res);
        }
}

/* ---- HTTP ---- */

/* The conf_string() of a recorded membership (voters only: a spare or standby means a change is
 * under way). */
static char *record_conf_string(const json_t *record)
{
        size_t cap = 64 * (json_array_size(record) + 1), len = 0;
        char *s = calloc(1, cap);
        for (unsigned id = 1; s && id <= json_array_size(record); id++) {
                json_t *e = record_find((json_t *)record, id, NULL);
                const char *role = json_string_value(json_object_get(e, "role"));
                const char *a = json_string_value(json_object_get(e, "address"));
                if (!e || !a || (role && strcmp(role, "voter") != 0)) {
                        free(s);
                        return NULL;
                }
                len += (size_t)snprintf(
                        s + len, cap - len, strchr(a, ':') ? "%s%u@[%s]:%lld" : "%s%u@%s:%lld",
                        len ? "," : "", id, a, json_integer_value(json_object_get(e, "raft_port")));
                if (len >= cap) {
                        free(s);
                        return NULL;
                }
        }
        return s;
}

void members_status_fields(manager *m, json_t *status)
{
        members *ms = m->members;
        static const char *const boot[] = {
                [MEMBERS_BOOT_WAITING] = "waiting",
                [MEMBERS_BOOT_JOINED] = "joined",
                [MEMBERS_BOOT_BOOTSTRAPPED] = "bootstrapped",
        };
        if (!ms)
                return;
        manager_view v = manager_get_view(m);
        json_object_set_new(status, "bootstrap", json_string(boot[atomic_load(&ms->boot)]));
        json_object_set_new(status, "leader_id", json_integer(v.leader_id));
        json_object_set_new(status, "retiring", json_boolean(atomic_load(&ms->retiring)));
        /* Our first log entry, while the membership is still that one: a founding master that
         * starts late may write the identical entry (probe_round). */
        pthread_mutex_lock(&m->state_lock);
        _cleanup_free_ char *boot_conf = ms->boot_conf ? strdup(ms->boot_conf) : NULL;
        pthread_mutex_unlock(&m->state_lock);
        if (boot_conf) {
                json_auto_t *stored = NULL;
                manager_read_fsm(m, load_record, &stored);
                _cleanup_free_ char *now = stored ? record_conf_string(stored) : NULL;
                if (!stored || (now && strcmp(now, boot_conf) == 0))
                        json_object_set_new(status, "bootstrap_config", json_string(boot_conf));
        }
}

void members_h_config(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        members *ms = m->members;
        json_t *running = running_json(m);
        json_auto_t *stored = NULL;

        manager_read_fsm(m, load_record, &stored);
        manager_view v = manager_get_view(m);
        char api[300];
        /* A follower names the leader: weirctl run with a file whose masters are not the
         * leader (3 -> 1) finds it through here. */
        const char *leader_api =
                v.leader_id ? manager_api_address(m, v.leader_id, api, sizeof(api)) : NULL;
        pthread_mutex_lock(&m->state_lock);
        json_t *out = json_pack("{s:o*,s:O*,s:b,s:b,s:s,s:I,s:I,s:s?,s:s?}", "running", running,
                                "members", stored, "serving", v.serving, "converged", ms->converged,
                                "path", m->cfg->path, "reloads", (json_int_t)ms->reloads,
                                "reloads_refused", (json_int_t)ms->reloads_refused, "reload_error",
                                ms->reload_error, "leader_api", leader_api);
        pthread_mutex_unlock(&m->state_lock);
        if (!out) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        httpd_reply_json(req, 200, out);
}

static void reload_on_loop(manager *m, bool stopping, void *userdata)
{
        httpd_request *req = userdata;
        _cleanup_free_ char *error = NULL;

        if (stopping) {
                httpd_reply_error(req, 503, "shutting down");
                return;
        }
        int r = members_reload(m, &error);
        if (r == 0)
                httpd_reply_json(req, 200,
                                 json_pack("{s:b,s:s}", "applied", true, "path", m->cfg->path));
        else if (r == -EINVAL)
                httpd_reply_json(req, 409,
                                 json_pack("{s:b,s:s}", "applied", false, "error", error));
        else
                httpd_reply_json(req, 422,
                                 json_pack("{s:b,s:s}", "applied", false, "error",
                                           error ?: "reload failed"));
}

void members_h_reload(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        int r = manager_call_on_loop(m, reload_on_loop, req);
        if (r < 0)
                httpd_reply_error(req, 503, "shutting down");
}
