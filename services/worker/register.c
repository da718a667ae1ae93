/* Registration with the master leader and heartbeats: a full block report when registering,
 * deltas with each heartbeat, a new full report whenever the leader does not know us (404 after
 * a failover) or a heartbeat was lost (its deltas with it). Runs on its own thread: a request to
 * an unreachable master may block for a timeout, which the event loop must not. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "log.h"
#include "register.h"
#include "tiers.h"

#define REG_INTERVAL_MS 1000
/* Block ids per request of a full report: ~2 MiB of JSON, under the master's 8 MiB body limit
 * and its 1 Mi ids per array. A larger report (past 1.5 TiB of 16 MiB blocks; far less with
 * small files, each a block of its own) is a registration with the first chunk, then heartbeats
 * adding the rest. */
#define REG_CHUNK 100000

struct reg {
        reg_context ctx;
        httpc *client;
        pthread_t tid;
        pthread_mutex_t lock; /* guards stop and registered */
        pthread_cond_t cond;
        bool stop;
        bool registered;
        bool kick;          /* report now, do not wait for the interval */
        uint64_t started;   /* reports begun */
        uint64_t completed; /* the last report that succeeded (its number in `started`) */
        pthread_cond_t done_cond;
        unsigned failures; /* consecutive, for quieter logs */
};

static json_t *keys_json(const store_key *keys, size_t n)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++) {
                char kb[BLOCK_ID_MAX];

                if (json_array_append_new(a, json_string(block_id_format(kb, &keys[i]))) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

/* Removes the blocks the master named in an answer's "drop": blocks of another cluster epoch,
 * of files that are gone or of versions that are not current (docs/api.md). */
static void reg_apply_drops(reg *g, json_t *answer)
{
        json_t *drop = json_object_get(answer, "drop");
        size_t i, n = 0;
        json_t *v;

        json_array_foreach(drop, i, v) {
                store_key k;

                if (block_id_parse(json_string_value(v), &k) >= 0 &&
                    store_remove(g->ctx.store, &k) >= 0)
                        n++;
        }
        if (n > 0)
                log_info("Dropped %zu cached blocks that the master says name no current file", n);
        content_peers_request(g->ctx.peers, json_object_get(answer, "verify"));
}

static int reg_register(reg *g)
{
        const reg_context *w = &g->ctx;
        _cleanup_free_ store_key *keys = NULL;
        json_auto_t *body = NULL;
        httpc_response resp = {};
        size_t n;
        int r;

        r = store_list(w->store, &keys, &n);
        if (r < 0)
                return r;
        body = json_pack("{s:s,s:s,s:o,s:o}", "node", w->node->name, "api", w->api, "tiers",
                         tiers_json(w->store), "blocks", keys_json(keys, MIN(n, REG_CHUNK)));
        if (!body)
                return -ENOMEM;
        r = mclient_request(w->mclient, g->client, "POST", "/v1/workers", body, &resp);
        if (r < 0)
                return r;
        if (resp.status != 200 && resp.status != 201) {
                log_full(g->failures ? LOG_DEBUG : LOG_WARNING,
                         "Master refused the registration: HTTP %ld %s", resp.status,
                         resp.body ? resp.body : "");
                httpc_response_done(&resp);
                return -EPROTO;
        }
        reg_apply_drops(g, resp.json);
        httpc_response_done(&resp);
        /* The rest of a large report: any failure makes the next attempt a full registration. */
        for (size_t off = REG_CHUNK; off < n; off += REG_CHUNK) {
                _cleanup_free_ char *path = NULL;
                json_auto_t *more =
                        json_pack("{s:o}", "added", keys_json(keys + off, MIN(n - off, REG_CHUNK)));

                if (!more || asprintf(&path, "/v1/workers/%s/heartbeat", w->node->name) < 0)
                        return -ENOMEM;
                r = mclient_request(w->mclient, g->client, "POST", path, more, &resp);
                if (r < 0)
                        return r;
                r = resp.status == 200 ? 0 : -EPROTO;
                if (r < 0)
                        log_warning("Master refused part %zu of the block report: HTTP %ld %s",
                                    off / REG_CHUNK + 1, resp.status, resp.body ? resp.body : "");
                else
                        reg_apply_drops(g, resp.json);
                httpc_response_done(&resp);
                if (r < 0)
                        return r;
        }
        log_info("Registered with the master leader, %zu blocks reported", n);
        return 0;
}

static int reg_heartbeat(reg *g)
{
        const reg_context *w = &g->ctx;
        _cleanup_free_ store_key *added = NULL, *removed = NULL;
        _cleanup_free_ char *path = NULL;
        json_auto_t *body = NULL;
        httpc_response resp = {};
        size_t n_added, n_removed;
        int r;

        r = store_take_changes(w->store, &added, &n_added, &removed, &n_removed);
        if (r < 0)
                return r; /* -ENOBUFS: too many changes kept, a full report follows */
        body = json_pack("{s:o,s:o,s:o,s:I,s:I}", "tiers", tiers_json(w->store), "added",
                         keys_json(added, n_added), "removed", keys_json(removed, n_removed),
                         "hits", (json_int_t)__atomic_load_n(w->hits, __ATOMIC_RELAXED), "misses",
                         (json_int_t)__atomic_load_n(w->misses, __ATOMIC_RELAXED));
        if (!body || asprintf(&path, "/v1/workers/%s/heartbeat", w->node->name) < 0)
                return -ENOMEM;
        r = mclient_request(w->mclient, g->client, "POST", path, body, &resp);
        if (r < 0)
                return r;
        r = resp.status == 404 ? -ENOENT : resp.status >= 300 ? -EPROTO : 0;
        if (r == -ENOENT)
                log_info("The master leader does not know this worker (a new leader?), "
                         "registering again");
        else if (r < 0)
                log_warning("Heartbeat refused: HTTP %ld %s", resp.status,
                            resp.body ? resp.body : "");
        else
                reg_apply_drops(g, resp.json);
        httpc_response_done(&resp);
        return r;
}

static void *reg_main(void *userdata)
{
        reg *g = userdata;

        pthread_mutex_lock(&g->lock);
        while (!g->stop) {
                bool registered = g->registered;
                uint64_t seq = ++g->started;
                struct timespec ts;
                int r;

                g->kick = false;
                pthread_mutex_unlock(&g->lock);
                /* A failed heartbeat lost its deltas: only a full report makes the leader right. */
                r = registered ? reg_heartbeat(g) : reg_register(g);
                if (r < 0 && g->failures++ == 0 && r != -ENOENT)
                        log_warning_errno(r, "Cannot reach the master leader (%m), retrying");
                if (r >= 0)
                        g->failures = 0;
                pthread_mutex_lock(&g->lock);
                g->registered = r >= 0;
                if (r >= 0) {
                        g->completed = seq;
                        pthread_cond_broadcast(&g->done_cond);
                }
                if (registered && r == -ENOENT)
                        continue; /* register right away */
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += (long)REG_INTERVAL_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                while (!g->stop && !g->kick && pthread_cond_timedwait(&g->cond, &g->lock, &ts) == 0)
                        ;
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

void reg_flush(reg *g, unsigned timeout_ms)
{
        struct timespec ts;
        uint64_t want;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&g->lock);
        /* A report that begins after this call carries every change made before it. */
        want = g->started + 1;
        g->kick = true;
        pthread_cond_broadcast(&g->cond);
        while (!g->stop && g->completed < want &&
               pthread_cond_timedwait(&g->done_cond, &g->lock, &ts) == 0)
                ;
        pthread_mutex_unlock(&g->lock);
}

bool reg_registered(reg *g)
{
        bool b;

        pthread_mutex_lock(&g->lock);
        b = g->registered;
        pthread_mutex_unlock(&g->lock);
        return b;
}

int reg_start(const reg_context *ctx, reg **ret)
{
        reg *g;
        pthread_condattr_t ca;
        int r;

        assert(ctx && ctx->node && ctx->api && ctx->store && ctx->mclient && ctx->hits &&
               ctx->misses);
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->ctx = *ctx;
        g->client = mclient_httpc(ctx->mclient);
        if (!g->client) {
                free(g);
                return -ENOMEM;
        }
        /* The block report can be large; the master's limit is 8 MiB (docs/api.md). */
        httpc_set_timeout(g->client, 3000, 500);
        pthread_mutex_init(&g->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&g->cond, &ca);
        pthread_cond_init(&g->done_cond, &ca);
        pthread_condattr_destroy(&ca);
        r = -pthread_create(&g->tid, NULL, reg_main, g);
        if (r < 0) {
                httpc_free(g->client);
                free(g);
                return r;
        }
        *ret = g;
        return 0;
}

reg *reg_stop(reg *g)
{
        if (!g)
                return NULL;
        pthread_mutex_lock(&g->lock);
        g->stop = true;
        pthread_cond_broadcast(&g->cond);
        pthread_cond_broadcast(&g->done_cond);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->tid, NULL);
        httpc_free(g->client);
        pthread_cond_destroy(&g->cond);
        pthread_cond_destroy(&g->done_cond);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
}
