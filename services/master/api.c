/* The master's HTTP API (docs/api.md): reads on libmicrohttpd's threads, writes through raft. */
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "apiauth.h"
#include "apibody.h"
#include "block.h"
#include "cleanup.h"
#include "httpc.h"
#include "log.h"
#include "listing.h"
#include "lswire.h"
#include "locations.h"
#include "api.h"
#include "gate.h"
#include "manager-internal.h"
#include "members.h"
#include "parse.h"
#include "rejoin.h"
#include "timeutil.h"
#include "verify.h"

#define WORKER_BODY_MAX (8u << 20)
#define WORKER_DEAD_S   15.0 /* a worker silent this long is not alive */
#define API_MAX_LABELS  1024 /* labels per dataset */
#define PEER_TIMEOUT_MS 500
#define PEER_CONNECT_MS 250
#define FUSE_DEAD_S     WORKER_DEAD_S /* a FUSE daemon reports as often as a worker */

/* ---- leader gate ---- */

/* True when this node serves leader-only calls; otherwise the request was answered. */
static bool api_leader_gate(manager *m, httpd_request *req)
{
        if (manager_get_view(m).serving)
                return true;
        gate_reply_not_leader(m, req);
        return false;
}

/* Answers a write's outcome; RESULT may carry a refusal {"error","status"}. */
static void api_reply_write(manager *m, httpd_request *req, int status, json_t *result)
{
        switch (status) {
        case 0: {
                json_t *err = json_object_get(result, "error");
                if (err) {
                        json_int_t code = json_integer_value(json_object_get(result, "status"));
                        httpd_reply_error(req, code >= 400 && code < 600 ? (unsigned)code : 400,
                                          "%s", json_string_value(err));
                } else
                        httpd_reply_json(req, 200, json_incref(result));
                return;
        }
        case -EAGAIN:
                gate_reply_not_leader(m, req);
                return;
        case -ECONNABORTED:
                httpd_reply_header(req, "Retry-After", "1");
                httpd_reply_error(req, 503,
                                  "leadership lost while committing; outcome unknown, "
                                  "retry");
                return;
        case -ECANCELED:
                httpd_reply_header(req, "Retry-After", "1");
                httpd_reply_error(req, 503, "master shutting down");
                return;
        default:
                httpd_reply_error(req, 500, "write failed: %s", strerror(-status));
        }
}

static void on_write_done(manager *m, int status, json_t *result, void *userdata)
{
        api_reply_write(m, userdata, status, result);
}

/* Submits CMD (taken) and answers REQ when it is committed. */
static void api_submit(manager *m, httpd_request *req, json_t *cmd)
{
        if (!cmd) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        int r = manager_submit(m, cmd, on_write_done, req);
        if (r < 0)
                api_reply_write(m, req, r, NULL);
}

/* ---- status, health, metrics ---- */

static json_t *api_status_json(manager *m)
{
        manager_view v = manager_get_view(m);
        char api[300];
        const config_node *leader = manager_master_node(m, v.leader_id);

        manager_api_address(m, m->node->raft_id, api, sizeof(api));
        json_t *s = json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:I,s:s?,s:b}", "node", m->node->name,
                              "raft_id", (int)m->node->raft_id, "api", api, "role",
                              manager_role_name(v.role), "term", (json_int_t)v.term, "applied",
                              (json_int_t)v.applied, "state_index", (json_int_t)fsm_index(m->fsm),
                              "leader", leader ? leader->name : NULL, "serving", v.serving);
        if (s)
                members_status_fields(m, s);
        loopwatch_stats w;
        loopwatch_read(&m->watch, &w);
        /* How late the loop thread ran (raft's timers share it) and what it spent on applies
         * and snapshots: what decides whether followers keep hearing from a leader. */
        json_t *loop = json_pack(
                "{s:f,s:f,s:f,s:f,s:I,s:f,s:I,s:I,s:f,s:I,s:f}", "late_max_ms",
                (double)w.late_max_us / 1000, "late_max_runq_ms", (double)w.late_runq_us / 1000,
                "late_recent_ms", (double)w.late_recent_us[0] / 1000, "apply_recent_ms",
                (double)w.apply_recent_us[0] / 1000, "ticks", (json_int_t)w.ticks, "apply_max_ms",
                (double)w.apply_max_us / 1000, "apply_max_bytes", (json_int_t)w.apply_max_bytes,
                "batches", (json_int_t)w.batches, "batch_max_ms", (double)w.batch_max_us / 1000,
                "snapshots", (json_int_t)w.snapshots, "snapshot_max_ms",
                (double)w.snapshot_max_us / 1000);
        if (s && loop)
                json_object_set_new(s, "loop", loop);
        else
                json_decref(loop);
        return s;
}

static void h_healthz(httpd_request *req, void *userdata)
{
        httpd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_status(httpd_request *req, void *userdata)
{
        httpd_reply_json(req, 200, api_status_json(userdata));
}

/* The Prometheus text for /metrics (caller frees). */
static char *api_metrics_text(manager *m)
{
        manager_view v = manager_get_view(m);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        fprintf(f,
                "# HELP weir_master_role Raft role: 0 unavailable, 1 follower, 2 candidate, 3 "
                "leader.\n# TYPE weir_master_role gauge\nweir_master_role %d\n",
                v.role);
        fprintf(f,
                "# HELP weir_master_serving 1 when this master serves leader-only calls.\n"
                "# TYPE weir_master_serving gauge\nweir_master_serving %d\n",
                v.serving ? 1 : 0);
        fprintf(f,
                "# HELP weir_master_term Current raft term.\n# TYPE weir_master_term gauge\n"
                "weir_master_term %" PRIu64 "\n",
                v.term);
        fprintf(f,
                "# HELP weir_master_leader_changes_total Leader changes seen by this master.\n"
                "# TYPE weir_master_leader_changes_total counter\n"
                "weir_master_leader_changes_total %" PRIu64 "\n",
                v.leader_changes);
        fprintf(f,
                "# HELP weir_master_applied_index Last raft log index applied here.\n"
                "# TYPE weir_master_applied_index gauge\nweir_master_applied_index %" PRIu64 "\n",
                v.applied);
        fprintf(f,
                "# HELP weir_master_reachable_masters Masters answering health checks, this one "
                "included.\n# TYPE weir_master_reachable_masters gauge\n"
                "weir_master_reachable_masters %u\n",
                v.reachable_masters);
        loopwatch_metrics_write(&m->watch, f);
        if (m->httpd)
                httpd_metrics_write(m->httpd, f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static void h_metrics(httpd_request *req, void *userdata)
{
        _cleanup_free_ char *text = api_metrics_text(userdata);
        if (!text) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        httpd_reply_text(req, 200, "text/plain; version=0.0.4", text, strlen(text));
}

typedef struct peer_probe {
        pthread_t thread;
        bool started;
        char url[400];
        const config *cfg;
        json_t *status; /* the peer's /v1/status, NULL when it did not answer */
} peer_probe;

static void *peer_probe_main(void *userdata)
{
        peer_probe *p = userdata;
        httpc *c = httpc_new();
        httpc_response res = {};

        /* /v1/status is public: no token goes to the peers */
        if (!c || apiauth_httpc_setup(c, p->cfg, NULL) < 0) {
                httpc_free(c);
                return NULL;
        }
        httpc_set_timeout(c, PEER_TIMEOUT_MS, PEER_CONNECT_MS);
        httpc_set_max_redirects(c, 0);
        if (httpc_get(c, p->url, &res) == 0 && res.status == 200 && json_is_object(res.json))
                p->status = json_incref(res.json);
        httpc_response_done(&res);
        httpc_free(c);
        return NULL;
}

/* The peers' answers of the last probe round, shared by concurrent GET /v1/masters: while a
 * peer hangs each round costs an HTTP thread PEER_TIMEOUT_MS, so one round runs at a time and
 * calls that come while it runs answer from the previous round's result (when younger than
 * PEER_STALE_MS). Else a burst of these calls held every HTTP thread and stalled /healthz and
 * writes (test_attack_second.py). A call while no round runs always probes afresh. */
#define PEER_STALE_MS 3000
static pthread_mutex_t peer_round_lock = PTHREAD_MUTEX_INITIALIZER; /* held by the running round */
static pthread_mutex_t peer_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *peer_cache; /* {"NODE": STATUS} of answering peers */
static uint64_t peer_cache_ms;

/* A copy of the cached statuses when younger than MAX_AGE_MS, else NULL. */
static json_t *peer_cache_get(uint64_t max_age_ms)
{
        json_t *r = NULL;

        pthread_mutex_lock(&peer_cache_lock);
        if (peer_cache && now_ms() - peer_cache_ms < max_age_ms)
                r = json_deep_copy(peer_cache);
        pthread_mutex_unlock(&peer_cache_lock);
        return r;
}

/* Asks every other master for its status, all at once from short-lived threads (never from the
 * loop), each with a short timeout: a hung peer costs PEER_TIMEOUT_MS once, not per peer.
 * Returns {"NODE": STATUS} (new reference) or NULL when out of memory. */
static json_t *peer_round(manager *m)
{
        json_t *out;

        if (pthread_mutex_trylock(&peer_round_lock) != 0) {
                if ((out = peer_cache_get(PEER_STALE_MS)))
                        return out;
                pthread_mutex_lock(&peer_round_lock);
        }
        _cleanup_free_ peer_probe *probes = calloc(m->cfg->n_nodes, sizeof(peer_probe));
        out = json_object();
        if (!probes || !out) {
                pthread_mutex_unlock(&peer_round_lock);
                json_decref(out);
                return NULL;
        }
        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                const config_node *n = &m->cfg->nodes[i];
                char api[300];
                if (!n->master || n == m->node)
                        continue;
                manager_api_address(m, n->raft_id, api, sizeof(api));
                snprintf(probes[i].url, sizeof(probes[i].url), "%s://%s/v1/status",
                         apiauth_scheme(m->cfg), api);
                probes[i].cfg = m->cfg;
                probes[i].started =
                        pthread_create(&probes[i].thread, NULL, peer_probe_main, &probes[i]) == 0;
        }
        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                if (probes[i].started)
                        pthread_join(probes[i].thread, NULL);
                if (probes[i].status)
                        json_object_set_new(out, m->cfg->nodes[i].name, probes[i].status);
        }
        pthread_mutex_lock(&peer_cache_lock);
        json_decref(peer_cache);
        peer_cache = json_deep_copy(out);
        peer_cache_ms = now_ms();
        pthread_mutex_unlock(&peer_cache_lock);
        pthread_mutex_unlock(&peer_round_lock);
        return out;
}

static void h_masters(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        _cleanup_(json_decrefp) json_t *masters = json_array();
        _cleanup_(json_decrefp) json_t *peers = peer_round(m);
        const char *leader = NULL;
        char leader_api[300] = "";

        if (!masters || !peers) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        manager_view v = manager_get_view(m);
        if (v.leader_id) {
                const config_node *l = manager_master_node(m, v.leader_id);
                if (l) {
                        leader = l->name;
                        manager_api_address(m, v.leader_id, leader_api, sizeof(leader_api));
                }
        }
        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                const config_node *n = &m->cfg->nodes[i];
                char api[300];
                if (!n->master)
                        continue;
                manager_api_address(m, n->raft_id, api, sizeof(api));
                json_t *st = n == m->node ? api_status_json(m)
                                          : json_incref(json_object_get(peers, n->name));
                json_t *e;
                if (st) {
                        e = json_pack("{s:s,s:s,s:O?,s:O?,s:O?,s:b}", "node", n->name, "api", api,
                                      "role", json_object_get(st, "role"), "term",
                                      json_object_get(st, "term"), "applied",
                                      json_object_get(st, "applied"), "reachable", 1);
                        const char *role = json_string_value(json_object_get(st, "role"));
                        if (!leader && role && strcmp(role, "leader") == 0) {
                                leader = n->name;
                                snprintf(leader_api, sizeof(leader_api), "%s", api);
                        }
                        json_decref(st);
                } else
                        e = json_pack("{s:s,s:s,s:s,s:n,s:n,s:b}", "node", n->name, "api", api,
                                      "role", "unreachable", "term", "applied", "reachable", 0);
                json_array_append_new(masters, e);
        }
        httpd_reply_json(req, 200,
                         json_pack("{s:s?,s:s?,s:O}", "leader", leader, "leader_api",
                                   leader ? leader_api : NULL, "masters", masters));
}

/* ---- the cluster epoch on file entries ---- */

static void stamp_entry(json_t *e, const char *epoch)
{
        if (json_is_object(e) && json_is_string(json_object_get(e, "type")) &&
            strcmp(json_string_value(json_object_get(e, "type")), "file") == 0)
                json_object_set_new(e, "epoch", json_string(epoch));
}

/* Adds "epoch" E (fsm_epoch(), a read transaction) to the file entries of OUT (an entry, or
 * {"entries": [...]}): readers build block ids from it (block.h). False while no epoch is
 * recorded: the caller answers 503, since block ids without one could name another cluster's
 * bytes. */
static bool stamp_epoch(json_t *out, uint64_t e)
{
        char epoch[BLOCK_EPOCH_MAX];
        size_t i;
        json_t *v;

        if (e == 0)
                return false;
        block_epoch_format(epoch, e);
        stamp_entry(out, epoch);
        json_array_foreach(json_object_get(out, "entries"), i, v)
                stamp_entry(v, epoch);
        return true;
}

static void reply_no_epoch(httpd_request *req, json_t *out)
{
        json_decref(out);
        httpd_reply_header(req, "Retry-After", "1");
        httpd_reply_error(req, 503, "the cluster epoch is not recorded yet (a new leader), retry");
}

/* ---- datasets ---- */

typedef struct cache_fields {
        manager *m;
        const char *name; /* the dataset */
        double now;
        uint64_t capacity, hits, misses, cached;
        unsigned live_workers;
        json_t *by_node; /* node -> bytes of this dataset it caches */
        uint64_t size, block_size;
        json_t *seen; /* indexes of the version at hand counted in `cached` already */
} cache_fields;

static void cache_fields_worker(const locations_worker *w, void *userdata)
{
        cache_fields *c = userdata;
        size_t i;
        json_t *t;

        c->hits += (uint64_t)json_integer_value(w->hits);
        c->misses += (uint64_t)json_integer_value(w->misses);
        if (c->now - w->seen > WORKER_DEAD_S)
                return;
        c->live_workers++;
        json_array_foreach(w->tiers, i, t) {
                c->capacity += (uint64_t)json_integer_value(json_object_get(t, "quota"));
        }
}

static void cache_fields_holder(uint64_t index, const locations_worker *w, void *userdata)
{
        cache_fields *c = userdata;
        uint64_t len = block_length(c->size, c->block_size, index);
        char key[32];
        json_t *n = json_object_get(c->by_node, w->node);

        snprintf(key, sizeof(key), "%" PRIu64, index);
        if (!json_object_get(c->seen, key)) {
                c->cached += len;
                json_object_set_new(c->seen, key, json_true());
        }
        json_object_set_new(c->by_node, w->node,
                            json_integer((json_int_t)((uint64_t)json_integer_value(n) + len)));
}

static void cache_fields_version(uint64_t file_id, uint64_t version, void *userdata)
{
        cache_fields *c = userdata;
        json_t *file = NULL;

        if (fsm_file(c->m->fsm, file_id, &file) < 0)
                return;
        if (strcmp(json_string_value(json_object_get(file, "dataset")) ?: "", c->name) == 0 &&
            (uint64_t)json_integer_value(json_object_get(file, "version")) == version) {
                c->block_size = (uint64_t)json_integer_value(json_object_get(file, "block_size"));
                c->size = (uint64_t)json_integer_value(json_object_get(file, "size"));
                c->seen = json_object();
                if (c->block_size > 0 && c->seen)
                        locations_foreach_holder(c->m->locations, file_id, version,
                                                 cache_fields_holder, c);
                json_decref(c->seen);
                c->seen = NULL;
        }
        json_decref(file);
}

/* Soft-state figures of a dataset: cached bytes, capacity and hit ratio. Locked. */
static void dataset_cache_fields_locked(manager *m, json_t *ds)
{
        cache_fields c = {.m = m,
                          .name = json_string_value(json_object_get(ds, "name")) ?: "",
                          .now = now_s(),
                          .by_node = json_object()};

        locations_foreach_worker(m->locations, cache_fields_worker, &c);
        locations_foreach_version(m->locations, cache_fields_version, &c);
        /* Bound means synced and served: once workers have registered, a synced dataset is
         * Bound only while at least one of them is alive (before any worker, synced is enough). */
        if (locations_n_workers(m->locations) > 0 && c.live_workers == 0 &&
            strcmp(json_string_value(json_object_get(ds, "phase")) ?: "", "Bound") == 0) {
                json_object_set_new(ds, "phase", json_string("NotBound"));
                json_object_set_new(ds, "reason",
                                    json_string("metadata synced; no worker is alive"));
        }
        json_object_set_new(ds, "cached", json_integer((json_int_t)c.cached));
        json_object_set_new(ds, "cached_by_node", c.by_node ? c.by_node : json_object());
        json_object_set_new(ds, "cache_capacity", json_integer((json_int_t)c.capacity));
        json_object_set_new(
                ds, "hit_ratio",
                json_real(c.hits + c.misses ? (double)c.hits / (double)(c.hits + c.misses) : 0));
}

static void h_datasets(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        if (!api_leader_gate(m, req))
                return;
        json_t *all = fsm_datasets(m->fsm); /* a read transaction: no lock */
        size_t i;
        json_t *ds;
        pthread_mutex_lock(&m->state_lock);
        json_array_foreach(all, i, ds)
                dataset_cache_fields_locked(m, ds);
        pthread_mutex_unlock(&m->state_lock);
        if (!all) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        httpd_reply_json(req, 200, json_pack("{s:o}", "datasets", all));
}

static void reply_fsm_error(httpd_request *req, int r, const char *what)
{
        if (r == -ENOENT)
                httpd_reply_error(req, 404, "no such %s", what);
        else if (r == -ENOTDIR)
                httpd_reply_error(req, 400, "not a directory");
        else
                httpd_reply_error(req, 500, "%s", strerror(-r));
}

typedef struct sync_call {
        httpd_request *req;
        char *dataset;
} sync_call;

static void sync_on_loop(manager *m, bool stopping, void *userdata)
{
        sync_call *s = userdata;
        if (stopping) {
                httpd_reply_header(s->req, "Retry-After", "1");
                httpd_reply_error(s->req, 503, "master shutting down");
        } else if (!manager_is_leader(m))
                gate_reply_not_leader(m, s->req);
        else if (!m->sync_hooks.start)
                httpd_reply_error(s->req, 501, "metadata sync is not available in this build");
        else {
                int r = m->sync_hooks.start(m, s->dataset, m->sync_hooks.userdata);
                if (r >= 0)
                        httpd_reply_json(s->req, 202, json_pack("{s:b}", "started", 1));
                else if (r == -EBUSY)
                        httpd_reply_error(s->req, 409, "a sync of %s is already running",
                                          s->dataset);
                else if (r == -ENOENT)
                        httpd_reply_error(s->req, 404, "no such dataset");
                else
                        httpd_reply_error(s->req, 500, "sync failed to start: %s", strerror(-r));
        }
        free(s->dataset);
        free(s);
}

/* ?limit=N&after=NAME&fields=attr|full of ls and stat: 0 with *ret_limit 0 when absent (no
 * paging); else 400. */
static int page_query(httpd_request *req, size_t *ret_limit, const char **ret_after,
                      unsigned *ret_flags)
{
        const char *limit = httpd_request_query(req, "limit");
        const char *after = httpd_request_query(req, "after");
        const char *fields = httpd_request_query(req, "fields");
        uint64_t n = 0;

        if (fields && strcmp(fields, "attr") != 0 && strcmp(fields, "full") != 0) {
                httpd_reply_error(req, 400, "fields must be attr or full, got '%.40s'", fields);
                return -EINVAL;
        }
        if (fields && !limit) {
                httpd_reply_error(req, 400, "fields= needs limit=");
                return -EINVAL;
        }
        *ret_flags = fields && strcmp(fields, "attr") == 0 ? LISTING_ATTR_ONLY : 0;
        if (limit && (parse_u64(limit, &n) < 0 || n == 0 || n > LISTING_LIMIT_MAX)) {
                httpd_reply_error(req, 400, "limit must be an integer from 1 to %u, got '%.40s'",
                                  LISTING_LIMIT_MAX, limit);
                return -EINVAL;
        }
        if (after && !limit) {
                httpd_reply_error(req, 400, "after= needs limit=");
                return -EINVAL;
        }
        if (after && strlen(after) > LISTING_AFTER_MAX) {
                httpd_reply_error(req, 400, "after is longer than %u bytes", LISTING_AFTER_MAX);
                return -EINVAL;
        }
        *ret_limit = (size_t)n;
        *ret_after = after;
        return 0;
}

/* format= of ls and stat: 0 for JSON (the default, for weirctl and people), 1 for the compact
 * pages of weir-fuse (lswire.h), -EINVAL when answered with a 400. */
static int ls_format(httpd_request *req, bool ls, size_t limit)
{
        const char *format = httpd_request_query(req, "format");

        if (!format || strcmp(format, "json") == 0)
                return 0;
        if (strcmp(format, "binary") != 0)
                httpd_reply_error(req, 400, "format must be json or binary, got '%.40s'", format);
        else if (!ls || limit == 0)
                httpd_reply_error(req, 400, "format=binary needs ls and limit=");
        else
                return 1;
        return -EINVAL;
}

static void ls_binary(manager *m, httpd_request *req, const char *name, const char *path,
                      const char *after, size_t limit)
{
        uint64_t epoch = fsm_epoch(m->fsm);
        lswire_buf b = {};
        int r;

        if (epoch == 0) {
                httpd_reply_header(req, "Retry-After", "1");
                httpd_reply_error(req, 503,
                                  "the cluster epoch is not recorded yet (a new leader), "
                                  "retry");
                return;
        }
        r = listing_page_binary(m->fsm, name, path, after, limit, epoch, &b);
        if (r < 0)
                return reply_fsm_error(req, r, fsm_has_dataset(m->fsm, name) ? "path" : "dataset");
        httpd_reply_text(req, 200, LSWIRE_CONTENT_TYPE, (const char *)b.data, b.len);
        lswire_buf_done(&b);
}

/* GET ls / stat. With limit=, a directory's entries come in name order, LIMIT at a time, and
 * "next" names the after= of the next page (absent on the last): no answer holds more than
 * LISTING_LIMIT_MAX entries. stat of a directory adds that page of "entries" to its ENTRY. */
static void h_ls_stat(manager *m, httpd_request *req, const char *name, bool ls)
{
        const char *path = httpd_request_query(req, "path") ?: "/";
        const char *after = NULL;
        json_t *out = NULL, *entries = NULL;
        bool more = false, has, dir = ls;
        size_t limit = 0;
        unsigned flags = 0;
        int r;

        if (page_query(req, &limit, &after, &flags) < 0 || (r = ls_format(req, ls, limit)) < 0)
                return;
        if (r == 1)
                return ls_binary(m, req, name, path, after, limit);
        /* Read transactions (fsm.h): never waiting for an apply or a snapshot. */
        has = fsm_has_dataset(m->fsm, name);
        if (!has)
                r = -ENOENT;
        else if (!ls)
                r = fsm_stat(m->fsm, name, path, &out);
        else if (limit == 0)
                r = fsm_ls(m->fsm, name, path, &out);
        else
                r = 0;
        if (r >= 0 && !ls && limit > 0)
                dir = strcmp(json_string_value(json_object_get(out, "type")) ?: "", "dir") == 0;
        if (r >= 0 && limit > 0 && dir)
                r = listing_page(m->fsm, name, path, after, limit, flags, &entries, &more);
        uint64_t epoch = fsm_epoch(m->fsm);
        if (r < 0) {
                json_decref(out);
                return reply_fsm_error(req, r, has ? "path" : "dataset");
        }
        if (entries) {
                if (!out)
                        out = json_pack("{s:s}", "path", path);
                json_t *last = json_array_get(entries, json_array_size(entries) - 1);
                json_t *next = more ? json_incref(json_object_get(last, "name")) : NULL;

                if (!out || json_object_set_new(out, "entries", entries) < 0 ||
                    (next && json_object_set_new(out, "next", next) < 0)) {
                        json_decref(out ? NULL : entries);
                        json_decref(out);
                        httpd_reply_error(req, 500, "out of memory");
                        return;
                }
        }
        if (!stamp_epoch(out, epoch))
                return reply_no_epoch(req, out);
        httpd_reply_json(req, 200, out);
}

static void h_dataset(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        const char *method = httpd_request_method(req);
        const char *suffix = httpd_request_suffix(req);
        char name[256];
        int r;

        if (!api_leader_gate(m, req))
                return;
        const char *slash = strchr(suffix, '/');
        size_t nlen = slash ? (size_t)(slash - suffix) : strlen(suffix);
        if (nlen == 0 || nlen >= sizeof(name)) {
                httpd_reply_error(req, 404, "no such dataset");
                return;
        }
        memcpy(name, suffix, nlen);
        name[nlen] = 0;
        const char *rest = slash ? slash + 1 : "";
        bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

        if (get && rest[0] == 0) {
                json_t *ds = NULL;
                r = fsm_dataset(m->fsm, name, &ds);
                if (r >= 0) {
                        pthread_mutex_lock(&m->state_lock);
                        dataset_cache_fields_locked(m, ds);
                        pthread_mutex_unlock(&m->state_lock);
                }
                if (r < 0)
                        return reply_fsm_error(req, r, "dataset");
                httpd_reply_json(req, 200, ds);
                return;
        }
        if (get && (strcmp(rest, "ls") == 0 || strcmp(rest, "stat") == 0)) {
                h_ls_stat(m, req, name, rest[0] == 'l');
                return;
        }
        if (get && strcmp(rest, "labels") == 0) {
                json_t *labels = NULL;
                r = fsm_labels(m->fsm, name, &labels);
                if (r < 0)
                        return reply_fsm_error(req, r, "dataset");
                httpd_reply_json(req, 200, json_pack("{s:o}", "labels", labels));
                return;
        }
        if (strncmp(rest, "labels/", 7) == 0 && rest[7] &&
            (strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0)) {
                const char *key = rest + 7;
                if (strcmp(method, "DELETE") == 0) {
                        api_submit(m, req, fsm_cmd_label_delete(name, key));
                        return;
                }
                json_t *value = json_object_get(httpd_request_json(req), "value");
                const char *bad = apibody_label(httpd_request_json(req));
                if (bad) {
                        httpd_reply_error(req, 400, "%s", bad);
                        return;
                }
                /* Every label is in the replicated state and in each snapshot: bounded. Checked
                 * here, not in the apply (which must give the same result on replay): two racing
                 * writes may pass it together, no more than the API threads. */
                json_auto_t *labels = NULL;
                if (fsm_labels(m->fsm, name, &labels) >= 0 &&
                    json_object_size(labels) >= API_MAX_LABELS && !json_object_get(labels, key)) {
                        httpd_reply_error(req, 409,
                                          "dataset %s has %d labels, the most it may hold: "
                                          "delete one first",
                                          name, API_MAX_LABELS);
                        return;
                }
                api_submit(m, req, fsm_cmd_label_set(name, key, json_string_value(value)));
                return;
        }
        if (strcmp(rest, "sync") == 0 && strcmp(method, "POST") == 0) {
                sync_call *s = calloc(1, sizeof(*s));
                if (!s || !(s->dataset = strdup(name))) {
                        free(s);
                        httpd_reply_error(req, 500, "out of memory");
                        return;
                }
                s->req = req;
                r = manager_call_on_loop(m, sync_on_loop, s);
                if (r < 0) {
                        free(s->dataset);
                        free(s);
                        api_reply_write(m, req, r, NULL);
                }
                return;
        }
        httpd_reply_error(req, get ? 404 : 405, "no such call on a dataset");
}

static void h_file(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        uint64_t id;
        json_t *out = NULL;

        if (!api_leader_gate(m, req))
                return;
        if (parse_u64(httpd_request_suffix(req), &id) < 0) {
                httpd_reply_error(req, 400, "file id must be a decimal number");
                return;
        }
        int r = fsm_file(m->fsm, id, &out);
        bool stamped = r >= 0 && stamp_epoch(out, fsm_epoch(m->fsm));
        if (r < 0)
                return reply_fsm_error(req, r, "file");
        if (!stamped)
                return reply_no_epoch(req, out);
        httpd_reply_json(req, 200, out);
}

/* ---- workers and blocks (soft state on the leader) ---- */

/* The leadership hook (manager.c calls it under state_lock when this node stops serving as
 * leader): the soft state goes with the leadership. */
static void api_leadership_lost_locked(manager *m)
{
        locations_reset(m->locations);
}

/* The last file looked up by block_current_locked(): reports list a file's blocks together. */
typedef struct current_cache {
        bool valid, current;
        uint64_t file_id, version;
} current_cache;

/* Whether K names a block of a file version the state holds now, in this cluster's epoch. A
 * worker's cache may hold blocks of another epoch (a master that lost its state, another
 * cluster), of files gone or of older versions: never located, and the worker is told to drop
 * them. state_lock held. */
static bool block_current_locked(manager *m, const block_key *k, current_cache *c)
{
        json_t *file = NULL;

        if (k->epoch != fsm_epoch(m->fsm))
                return false;
        if (c->valid && c->file_id == k->file_id && c->version == k->version)
                return c->current;
        *c = (current_cache){.valid = true, .file_id = k->file_id, .version = k->version};
        if (fsm_file(m->fsm, k->file_id, &file) >= 0) {
                json_int_t v = json_integer_value(json_object_get(file, "version"));
                c->current = v > 0 && (uint64_t)v == k->version;
        }
        json_decref(file);
        return c->current;
}

/* Blocks a worker is told to drop per answer at most; the rest are named in a later answer. */
#define MAX_DROP 100000

/* Records that NODE holds block ID when it names a current block; otherwise appends ID to DROP
 * (when given), the list the worker is told to remove. 0, or -ENOMEM (nothing recorded). */
static int block_add_locked(manager *m, const char *node, const char *id, current_cache *cache,
                            json_t *drop)
{
        block_key k;

        /* ids were checked by apibody; no epoch recorded yet (the moments after a first
         * election): nothing can be judged */
        if (!id || block_id_parse(id, &k) < 0 || fsm_epoch(m->fsm) == 0)
                return 0;
        if (!block_current_locked(m, &k, cache)) {
                if (drop && json_array_size(drop) < MAX_DROP)
                        json_array_append_new(drop, json_string(id));
                return 0;
        }
        return locations_block_set(m->locations, node, id, true);
}

/* Forgets that NODE holds block ID. */
static int block_remove_locked(manager *m, const char *node, const char *id)
{
        int r = locations_block_set(m->locations, node, id, false);

        return r == -EINVAL ? 0 : r; /* a malformed id names nothing held */
}

typedef struct register_call {
        httpd_request *req;
        char *node;
        json_t *body;
} register_call;

static void on_register_done(manager *m, int status, json_t *result, void *userdata)
{
        register_call *rc = userdata;

        if (status == 0 && !json_object_get(result, "error")) {
                size_t i;
                json_t *b;
                int r;

                pthread_mutex_lock(&m->state_lock);
                r = locations_worker_register(
                        m->locations, rc->node, now_s(), json_object_get(rc->body, "tiers"),
                        json_object_get(rc->body, "hits"), json_object_get(rc->body, "misses"));
                json_t *drop = json_array();
                current_cache cache = {};
                json_array_foreach(json_object_get(rc->body, "blocks"), i, b) {
                        if (r < 0)
                                break;
                        r = block_add_locked(m, rc->node, json_string_value(b), &cache, drop);
                }
                pthread_mutex_unlock(&m->state_lock);
                if (r < 0) {
                        /* the worker registers again after an error: its report is not lost */
                        json_decref(drop);
                        httpd_reply_error(rc->req, 500, "cannot record the block report: %s",
                                          strerror(-r));
                } else
                        httpd_reply_json(rc->req, 200,
                                         json_pack("{s:b,s:o}", "registered", 1, "drop",
                                                   drop ?: json_array()));
        } else
                api_reply_write(m, rc->req, status, result);
        free(rc->node);
        json_decref(rc->body);
        free(rc);
}

static void h_worker_register(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        json_t *body = httpd_request_json(req);
        const char *node = json_string_value(json_object_get(body, "node"));
        const char *api = json_string_value(json_object_get(body, "api"));
        json_t *tiers = json_object_get(body, "tiers");

        if (!api_leader_gate(m, req))
                return;
        const char *bad = apibody_worker_register(body);
        if (bad) {
                httpd_reply_error(req, 400, "%s", bad);
                return;
        }
        /* Only the YAML's workers, at the address the YAML gives them: a registration records
         * the name and address in the replicated state, and weirctl load sends the token to
         * that address. */
        const config_node *n = config_find_node(m->cfg, node);
        char want[300];
        if (!n || !n->worker) {
                httpd_reply_error(req, 404, "no worker node \"%s\" in the cluster YAML", node);
                return;
        }
        snprintf(want, sizeof(want), strchr(n->address, ':') ? "[%s]:%u" : "%s:%u", n->address,
                 (unsigned)n->worker_port);
        if (strcmp(api, want) != 0) {
                httpd_reply_error(req, 400,
                                  "api \"%s\" is not %s's address and workerPort in the cluster "
                                  "YAML (%s)",
                                  api, node, want);
                return;
        }
        register_call *rc = calloc(1, sizeof(*rc));
        if (!rc || !(rc->node = strdup(node))) {
                free(rc);
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        rc->req = req;
        rc->body = json_incref(body);
        json_t *cmd = fsm_cmd_worker_register(node, api, tiers ?: json_array(), (double)time(NULL));
        int r = cmd ? manager_submit(m, cmd, on_register_done, rc) : -ENOMEM;
        if (r < 0) {
                free(rc->node);
                json_decref(rc->body);
                free(rc);
                api_reply_write(m, req, r, NULL);
        }
}

static void h_worker_heartbeat(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        const char *suffix = httpd_request_suffix(req);
        json_t *body = httpd_request_json(req);
        char node[256];

        if (!api_leader_gate(m, req))
                return;
        const char *slash = strchr(suffix, '/');
        if (!slash || strcmp(slash, "/heartbeat") != 0 || slash == suffix ||
            (size_t)(slash - suffix) >= sizeof(node)) {
                httpd_reply_error(req, 404, "no such call on a worker");
                return;
        }
        memcpy(node, suffix, (size_t)(slash - suffix));
        node[slash - suffix] = 0;
        const char *bad = apibody_worker_heartbeat(body);
        if (bad) {
                httpd_reply_error(req, 400, "%s", bad);
                return;
        }

        pthread_mutex_lock(&m->state_lock);
        int r = locations_worker_heartbeat(
                m->locations, node, now_s(), json_object_get(body, "tiers"),
                json_object_get(body, "hits"), json_object_get(body, "misses"));
        if (r == -ENOENT) {
                pthread_mutex_unlock(&m->state_lock);
                httpd_reply_error(req, 404, "unknown worker %s: register again", node);
                return;
        }
        size_t i;
        json_t *b, *drop = json_array();
        current_cache cache = {};
        json_array_foreach(json_object_get(body, "added"), i, b) {
                if (r < 0)
                        break;
                r = block_add_locked(m, node, json_string_value(b), &cache, drop);
        }
        json_array_foreach(json_object_get(body, "removed"), i, b) {
                if (r < 0)
                        break;
                r = block_remove_locked(m, node, json_string_value(b));
        }
        /* files these blocks made whole across the workers: NODE checks their content hash */
        json_t *verify =
                r >= 0 ? verify_due_locked(m->fsm, m->locations, node,
                                           json_object_get(body, "added"), now_s(), WORKER_DEAD_S)
                       : NULL;
        pthread_mutex_unlock(&m->state_lock);
        if (r < 0) {
                /* a lost delta: the worker's next heartbeat fails too and it registers again
                 * with a full report */
                json_decref(drop);
                httpd_reply_error(req, 500, "cannot record the blocks: %s", strerror(-r));
                return;
        }
        httpd_reply_json(req, 200,
                         json_pack("{s:b,s:o,s:o}", "ok", 1, "drop", drop ?: json_array(), "verify",
                                   verify ?: json_array()));
}

static void h_workers(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        double now = now_s();

        if (!api_leader_gate(m, req))
                return;
        json_t *out = json_array();
        json_t *registered = fsm_workers(m->fsm);
        pthread_mutex_lock(&m->state_lock);
        const char *node;
        json_t *reg;
        json_object_foreach(registered, node, reg) {
                const locations_worker *w = locations_worker_get(m->locations, node);
                json_t *tiers = w ? w->tiers : json_object_get(reg, "tiers");
                uint64_t capacity = 0, used = 0;
                size_t i;
                json_t *t;
                json_array_foreach(tiers, i, t) {
                        capacity += (uint64_t)json_integer_value(json_object_get(t, "quota"));
                        used += (uint64_t)json_integer_value(json_object_get(t, "used"));
                }
                double age = w ? now - w->seen : -1;
                json_array_append_new(
                        out, json_pack("{s:s,s:O?,s:I,s:I,s:I,s:o,s:b,s:O?}", "node", node, "api",
                                       json_object_get(reg, "api"), "capacity",
                                       (json_int_t)capacity, "used", (json_int_t)used, "blocks",
                                       (json_int_t)(w ? w->n_blocks : 0), "last_heartbeat_age",
                                       w ? json_real(age) : json_null(), "alive",
                                       w && age <= WORKER_DEAD_S, "tiers", tiers));
        }
        pthread_mutex_unlock(&m->state_lock);
        json_decref(registered);
        httpd_reply_json(req, 200, json_pack("{s:o}", "workers", out));
}

typedef struct blocks_out {
        json_t *locations; /* "INDEX" -> [live holders] */
        double now;
} blocks_out;

static void blocks_holder(uint64_t index, const locations_worker *w, void *userdata)
{
        blocks_out *bo = userdata;
        char key[32];
        json_t *nodes;

        if (bo->now - w->seen > WORKER_DEAD_S)
                return;
        snprintf(key, sizeof(key), "%" PRIu64, index);
        nodes = json_object_get(bo->locations, key);
        if (!nodes) {
                nodes = json_array();
                if (json_object_set_new(bo->locations, key, nodes) < 0)
                        return;
        }
        json_array_append_new(nodes, json_string(w->node));
}

static void h_blocks(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        uint64_t file_id, version;
        json_t *file = NULL;
        double now = now_s();

        if (!api_leader_gate(m, req))
                return;
        if (parse_u64(httpd_request_query(req, "file") ?: "", &file_id) < 0 ||
            parse_u64(httpd_request_query(req, "version") ?: "", &version) < 0) {
                httpd_reply_error(req, 400, "file and version must be decimal numbers");
                return;
        }
        json_t *locs = json_object();
        /* A read transaction (fsm.h); only the soft locations need state_lock. */
        int r = fsm_file(m->fsm, file_id, &file);
        pthread_mutex_lock(&m->state_lock);
        blocks_out bo = {.locations = locs, .now = now};
        if (locs)
                locations_foreach_holder(m->locations, file_id, version, blocks_holder, &bo);
        pthread_mutex_unlock(&m->state_lock);
        if (r < 0) {
                json_decref(locs);
                return reply_fsm_error(req, r, "file");
        }
        json_t *out =
                json_pack("{s:O?,s:O?,s:o}", "block_size", json_object_get(file, "block_size"),
                          "version", json_object_get(file, "version"), "locations", locs);
        json_decref(file);
        httpd_reply_json(req, 200, out);
}

/* ---- FUSE daemons (soft state on the leader, like workers; nothing goes through raft) ---- */

/* Splits "NODE/DATASET/heartbeat" into names the YAML knows; false when it is anything else. */
static bool fuse_path_split(const config *cfg, const char *suffix, char *ret_node,
                            char *ret_dataset, size_t len)
{
        const char *a = strchr(suffix, '/');
        const char *b = a ? strchr(a + 1, '/') : NULL;

        if (!a || !b || strcmp(b, "/heartbeat") != 0 || a == suffix || b == a + 1 ||
            (size_t)(a - suffix) >= len || (size_t)(b - a - 1) >= len)
                return false;
        memcpy(ret_node, suffix, (size_t)(a - suffix));
        ret_node[a - suffix] = 0;
        memcpy(ret_dataset, a + 1, (size_t)(b - a - 1));
        ret_dataset[b - a - 1] = 0;
        return config_find_node(cfg, ret_node) && config_find_dataset(cfg, ret_dataset);
}

static void h_fuse_heartbeat(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        json_t *body = httpd_request_json(req);
        json_t *mountpoint = json_object_get(body, "mountpoint");
        json_t *files = json_object_get(body, "files");
        char node[256], dataset[256];

        if (!api_leader_gate(m, req))
                return;
        if (!fuse_path_split(m->cfg, httpd_request_suffix(req), node, dataset, sizeof(node))) {
                httpd_reply_error(req, 404, "no such node or dataset in the cluster YAML");
                return;
        }
        const char *bad = apibody_fuse_heartbeat(body);
        if (bad) {
                httpd_reply_error(req, 400, "%s", bad);
                return;
        }
        json_int_t n_files = files ? json_integer_value(files) : 0;
        pthread_mutex_lock(&m->state_lock);
        int r = locations_fuse_seen(m->locations, node, dataset, mountpoint,
                                    n_files > 0 ? (uint64_t)n_files : 0, now_s());
        pthread_mutex_unlock(&m->state_lock);
        if (r < 0) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        httpd_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

typedef struct fuses_out {
        json_t *out;
        double now;
} fuses_out;

static void fuses_one(const locations_fuse *f, void *userdata)
{
        fuses_out *fo = userdata;
        double age = fo->now - f->seen;

        json_array_append_new(fo->out,
                              json_pack("{s:s,s:s,s:O?,s:I,s:f,s:b}", "node", f->node, "dataset",
                                        f->dataset, "mountpoint", f->mountpoint, "files",
                                        (json_int_t)f->files, "last_heartbeat_age", age, "alive",
                                        age <= FUSE_DEAD_S));
}

static void h_fuses(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        fuses_out fo = {.now = now_s()};

        if (!api_leader_gate(m, req))
                return;
        fo.out = json_array();
        pthread_mutex_lock(&m->state_lock);
        if (fo.out)
                locations_foreach_fuse(m->locations, fuses_one, &fo);
        pthread_mutex_unlock(&m->state_lock);
        json_t *out = fo.out;
        httpd_reply_json(req, 200, json_pack("{s:o}", "fuses", out));
}

static const httpd_route api_routes[] = {
        /* Public: liveness, and this master's role and term for probes and weirctl status. */
        {"GET", "/healthz", h_healthz, HTTPD_ROUTE_PUBLIC, 0},
        {"GET", "/metrics", h_metrics, 0, 0},
        {"GET", "/v1/status", h_status, HTTPD_ROUTE_PUBLIC, 0},
        {"GET", "/v1/masters", h_masters, 0, 0},
        {"GET", "/v1/datasets", h_datasets, 0, 0},
        {NULL, "/v1/datasets/", h_dataset, HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_JSON, 0},
        {"GET", "/v1/files/", h_file, HTTPD_ROUTE_PREFIX, 0},
        {"GET", "/v1/workers", h_workers, 0, 0},
        {"POST", "/v1/workers", h_worker_register, HTTPD_ROUTE_JSON, WORKER_BODY_MAX},
        {"POST", "/v1/workers/", h_worker_heartbeat, HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_JSON,
         WORKER_BODY_MAX},
        {"GET", "/v1/blocks", h_blocks, 0, 0},
        {"GET", "/v1/fuses", h_fuses, 0, 0},
        {"POST", "/v1/internal/state", manager_state_copy, 0, 0},
        {"POST", "/v1/fuses/", h_fuse_heartbeat, HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_JSON, 0},
        {"GET", "/v1/config", members_h_config, 0, 0},
        {"POST", "/v1/config/reload", members_h_reload, 0, MEMBERS_RELOAD_BODY_MAX},
        {NULL, "/v1/masters/", rejoin_h_reset, HTTPD_ROUTE_PREFIX, 0},
};

int api_start(manager *m)
{
        _cleanup_secret_ char *read_token = NULL;
        httpd_config cfg = {
                .name = "master API",
                .port = m->node->master_port,
        };
        int r;

        if (m->cfg->api.read_token_file) {
                r = read_secret_file(m->cfg->api.read_token_file, SECRET_MAX, &read_token);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the read token from %s: %m",
                                               m->cfg->api.read_token_file);
        }
        apiauth_httpd_config(&cfg, m->cfg, m->node, m->token, read_token);
        pthread_mutex_lock(&m->state_lock);
        m->leadership_lost_locked = api_leadership_lost_locked;
        pthread_mutex_unlock(&m->state_lock);
        r = httpd_new(&cfg, api_routes, ELEMENTSOF(api_routes), m, &m->httpd);
        if (r < 0)
                return log_error_errno(r, "Failed to serve the API on %s:%u: %m", cfg.address,
                                       m->node->master_port);
        log_info("API on %s://%s:%u/%s", apiauth_scheme(m->cfg), cfg.address, m->node->master_port,
                 m->token ? " (token required for every call but /healthz and /v1/status)" : "");
        return 0;
}
