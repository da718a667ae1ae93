/* The worker manager (see worker.h): builds every part in order, runs the loop, tears down in
 * reverse order. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "cleanup.h"
#include "log.h"
#include "parse.h"
#include "api.h"
#include "dbus.h"
#include "tiers.h"
#include "worker-state.h"
#include "worker.h"
#include "fsutil.h"

#define WORKER_FILL_THREADS         16
#define WORKER_STATUS_INTERVAL_USEC (1000000ull)

/* "3 tiers, 1.2/4.0 GiB used, 1834 blocks" */
static void worker_status_line(worker *w, char *buf, size_t len)
{
        store_stats st;

        store_get_stats(w->store, &st);
        snprintf(buf, len, "%zu tier%s, %.1f/%.1f GiB used, %" PRIu64 " blocks", st.n_levels,
                 st.n_levels == 1 ? "" : "s", (double)st.used / (1ull << 30),
                 (double)st.quota / (1ull << 30), st.blocks);
}

/* fill's resolver: GET /v1/files/ID from the leader, on this fill thread's own client. */
static int resolve_file(void *userdata, unsigned thread, uint64_t file_id, fill_file *ret)
{
        worker *w = userdata;
        char path[64];
        httpc_response resp = {};
        fill_file f = {};
        json_t *j, *etag, *mtime;
        json_int_t v;
        int r;

        if (thread >= w->n_resolvers)
                return -EINVAL;
        snprintf(path, sizeof(path), "/v1/files/%" PRIu64, file_id);
        r = mclient_request(w->mclient, w->resolvers[thread], "GET", path, NULL, &resp);
        if (r < 0)
                return r;
        if (resp.status == 404) {
                httpc_response_done(&resp);
                return -ENOENT;
        }
        j = resp.json;
        if (resp.status != 200 || !json_is_object(j)) {
                log_warning("GET %s: HTTP %ld", path, resp.status);
                httpc_response_done(&resp);
                return -EIO;
        }
        f.file_id = file_id;
        /* Without a valid epoch the answer cannot be matched to a block: refused. */
        if (block_epoch_parse(json_string_value(json_object_get(j, "epoch")), &f.epoch) < 0) {
                log_warning("GET %s: no valid \"epoch\" in the answer", path);
                httpc_response_done(&resp);
                return -EBADMSG;
        }
        v = json_integer_value(json_object_get(j, "version"));
        f.version = v > 0 ? (uint64_t)v : 0;
        v = json_integer_value(json_object_get(j, "size"));
        f.size = v > 0 ? (uint64_t)v : 0;
        v = json_integer_value(json_object_get(j, "block_size"));
        f.block_size = v > 0 ? (uint64_t)v : 0;
        mtime = json_object_get(j, "mtime");
        f.mtime = json_is_number(mtime) ? (int64_t)json_number_value(mtime) : 0;
        etag = json_object_get(j, "etag");
        r = 0;
        if (json_is_string(etag) && json_string_length(etag) > 0 &&
            !(f.etag = strdup(json_string_value(etag))))
                r = -ENOMEM;
        if (json_is_string(json_object_get(j, "dataset")))
                f.dataset = strdup(json_string_value(json_object_get(j, "dataset")));
        if (json_is_string(json_object_get(j, "path")))
                f.path = strdup(json_string_value(json_object_get(j, "path")));
        httpc_response_done(&resp);
        if (r >= 0 && (f.version == 0 || !f.dataset || !f.path))
                r = -EBADMSG;
        if (r < 0) {
                fill_file_done(&f);
                return r;
        }
        *ret = f;
        return 0;
}

/* The content checks' resolver: the last client of w->resolvers, theirs alone. */
static int resolve_for_peers(void *userdata, uint64_t file_id, fill_file *ret)
{
        worker *w = userdata;

        return resolve_file(w, w->n_resolvers - 1, file_id, ret);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        worker *w = userdata;

        log_info("Received %s, stopping", strsignal((int)si->ssi_signo));
        (void)sd_notify(false, "STOPPING=1\nSTATUS=stopping");
        return sd_event_exit(w->event, 0);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        worker *w = userdata;
        char line[128], msg[160];

        worker_status_line(w, line, sizeof(line));
        snprintf(msg, sizeof(msg), "STATUS=%s%s", line,
                 w->reg && !reg_registered(w->reg) ? ", not registered" : "");
        (void)sd_notify(false, msg);
        (void)sd_event_source_set_time(s, usec + WORKER_STATUS_INTERVAL_USEC);
        return 0;
}

worker *worker_free(worker *w)
{
        if (!w)
                return NULL;
        w->fdsock = fdsock_free(w->fdsock);
        w->bus_slot = sd_bus_slot_unref(w->bus_slot);
        w->bus = sd_bus_flush_close_unref(w->bus);

        /* Fills end first: their waiters (suspended block requests, loads) get replies. */
        fill_free(fill_guard_take(&w->fill));
        pthread_mutex_lock(&w->load_lock);
        while (w->loads_running > 0)
                pthread_cond_wait(&w->load_cond, &w->load_lock);
        pthread_mutex_unlock(&w->load_lock);
        w->httpd = httpd_free(w->httpd);
        /* Last of the threads: handlers and loads read w->reg. */
        w->reg = reg_stop(w->reg);
        /* After the fill threads, registration and handlers, which all call into it. */
        w->peers = content_peers_stop(w->peers);

        for (unsigned i = 0; w->resolvers && i < w->n_resolvers; i++)
                httpc_free(w->resolvers[i]);
        free(w->resolvers);
        w->mclient = mclient_free(w->mclient);
        w->store = store_free(w->store);
        w->event = sd_event_unref(w->event);
        safe_close(w->lock_fd);
        secret_free(w->token);
        free(w->api);
        free(w->data_dir);
        free(w->runtime_dir);
        fill_guard_done(&w->fill);
        pthread_cond_destroy(&w->load_cond);
        pthread_mutex_destroy(&w->load_lock);
        free(w);
        return NULL;
}

static int worker_open_store(worker *w)
{
        store_level_spec specs[CONFIG_MAX_TIERS];
        char *dirs[CONFIG_MAX_TIERS] = {};
        config_tier fallback = {.medium = CONFIG_MEDIUM_MEM,
                                .path = (char *)"/dev/shm",
                                .quota = 1ull << 30,
                                .high = 0.95,
                                .low = 0.7};
        const config_tier *tiers = w->cfg->tiers;
        size_t n = w->cfg->n_tiers;
        int r;

        if (n == 0) {
                log_notice("No tieredstore levels in %s: caching in 1 GiB of /dev/shm",
                           w->cfg->path);
                tiers = &fallback;
                n = 1;
        }
        for (size_t i = 0; i < n && i < CONFIG_MAX_TIERS; i++) {
                if (asprintf(&dirs[i], "%s/weir/%s", tiers[i].path, w->node->name) < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(dirs[j]);
                        return log_oom();
                }
                specs[i] = (store_level_spec){.medium = tiers[i].medium,
                                              .dir = dirs[i],
                                              .quota = tiers[i].quota,
                                              .high = tiers[i].high,
                                              .low = tiers[i].low};
        }
        r = store_new(specs, n, STORE_BACKGROUND_EVICTION, &w->store);
        for (size_t i = 0; i < n; i++)
                free(dirs[i]);
        if (r < 0)
                return log_error_errno(r, "Failed to open the tiered store: %m");
        return 0;
}

int worker_new(const config *cfg, const char *node, const char *data_dir, const char *runtime_dir,
               worker **ret)
{
        _cleanup_(worker_freep) worker *w = NULL;
        _cleanup_free_ char *lock_path = NULL, *sock_path = NULL;
        fill_options fo = {.threads = WORKER_FILL_THREADS};
        fdsock_context fc;
        reg_context rc;
        fill *f;
        char status[128];
        sigset_t mask;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return log_oom();
        w->lock_fd = -1;
        fill_guard_init(&w->fill, NULL);
        pthread_mutex_init(&w->load_lock, NULL);
        pthread_cond_init(&w->load_cond, NULL);
        w->cfg = cfg;
        w->node = config_find_node(cfg, node);
        if (!w->node)
                return log_error_errno(ENOENT, "Node %s is not in %s", node, cfg->path);
        if (!w->node->worker)
                return log_error_errno(EINVAL, "Node %s is not a worker in %s (no worker role)",
                                       node, cfg->path);
        w->data_dir = strdup(data_dir ? data_dir : w->node->data_dir);
        w->runtime_dir = strdup(runtime_dir ? runtime_dir : w->node->runtime_dir);
        if (!w->data_dir || !w->runtime_dir ||
            asprintf(&w->api, strchr(w->node->address, ':') ? "[%s]:%u" : "%s:%u", w->node->address,
                     (unsigned)w->node->worker_port) < 0)
                return log_oom();
        if ((r = mkdir_p(w->data_dir, 0750)) < 0)
                return log_error_errno(r, "Failed to create %s: %m", w->data_dir);
        if ((r = mkdir_p(w->runtime_dir, 0755)) < 0)
                return log_error_errno(r, "Failed to create %s: %m", w->runtime_dir);

        /* One worker per node and data directory: a second would corrupt the accounting. */
        if (asprintf(&lock_path, "%s/worker-%s.lock", w->data_dir, w->node->name) < 0)
                return log_oom();
        w->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (w->lock_fd < 0)
                return log_error_errno(errno, "Failed to open %s: %m", lock_path);
        if (flock(w->lock_fd, LOCK_EX | LOCK_NB) < 0)
                return log_error_errno(errno, "Another worker holds %s (%m)", lock_path);

        if (cfg->token_file) {
                r = read_secret_file(cfg->token_file, SECRET_MAX, &w->token);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the token file %s: %m",
                                               cfg->token_file);
        }

        r = worker_open_store(w);
        if (r < 0)
                return r;
        r = mclient_new(cfg, w->token, &w->mclient);
        if (r < 0)
                return log_error_errno(r, "No masters in %s: %m", cfg->path);
        /* One per fill thread, and the last for the content checks (content-peers.h). */
        w->resolvers = calloc(fo.threads + 1, sizeof(*w->resolvers));
        if (!w->resolvers)
                return log_oom();
        w->n_resolvers = fo.threads + 1;
        for (unsigned i = 0; i < w->n_resolvers; i++)
                if (!(w->resolvers[i] = mclient_httpc(w->mclient)))
                        return log_oom();
        r = fill_new(cfg, w->store, &fo, resolve_file, w, &f);
        if (r < 0)
                return log_error_errno(r, "Failed to start the fill threads: %m");
        w->fill.fill = f;
        r = content_peers_start(&(content_peers_context){.cfg = cfg,
                                                         .node = w->node,
                                                         .token = w->token,
                                                         .store = w->store,
                                                         .fill = &w->fill,
                                                         .mclient = w->mclient,
                                                         .resolve = resolve_for_peers,
                                                         .userdata = w},
                                &w->peers);
        if (r < 0)
                return log_error_errno(r, "Failed to start the content checks: %m");
        fill_set_mismatch_hook(f, content_peers_local_mismatch, w->peers);

        r = sd_event_new(&w->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        /* Blocked in main() before any thread started; delivered through the loop. */
        if ((r = sd_event_add_signal(w->event, NULL, SIGTERM, on_signal, w)) < 0 ||
            (r = sd_event_add_signal(w->event, NULL, SIGINT, on_signal, w)) < 0)
                return log_error_errno(r, "Failed to watch signals: %m");
        (void)sd_event_set_watchdog(w->event, true);

        r = api_start(w);
        if (r < 0)
                return r;
        if (asprintf(&sock_path, "%s/worker.sock", w->runtime_dir) < 0)
                return log_oom();
        fc = (fdsock_context){.store = w->store,
                              .fill = &w->fill,
                              .event = w->event,
                              .hits = &w->hits,
                              .misses = &w->misses,
                              .waits = &w->fdsock_waits};
        r = fdsock_new(&fc, sock_path, &w->fdsock);
        if (r < 0)
                return r;
        r = dbus_setup(w);
        if (r < 0)
                return r;
        rc = (reg_context){.node = w->node,
                           .api = w->api,
                           .store = w->store,
                           .mclient = w->mclient,
                           .hits = &w->hits,
                           .misses = &w->misses,
                           .peers = w->peers};
        r = reg_start(&rc, &w->reg);
        if (r < 0)
                return log_error_errno(r, "Failed to start registration: %m");

        worker_status_line(w, status, sizeof(status));
        log_info("Serving blocks on %s, local descriptors on %s; %s", w->api, sock_path, status);
        *ret = TAKE_PTR(w);
        return 0;
}

int worker_run(worker *w)
{
        char line[128], msg[160];
        uint64_t now;
        int r;

        r = sd_event_now(w->event, CLOCK_MONOTONIC, &now);
        if (r >= 0)
                r = sd_event_add_time(w->event, NULL, CLOCK_MONOTONIC,
                                      now + WORKER_STATUS_INTERVAL_USEC, 0, on_status_timer, w);
        if (r < 0)
                return log_error_errno(r, "Failed to add the status timer: %m");
        worker_status_line(w, line, sizeof(line));
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", line);
        (void)sd_notify(false, msg);
        r = sd_event_loop(w->event);
        (void)sd_notify(false, "STOPPING=1");
        return r;
}
