/* The worker daemon's manager: one object that owns the store, the fills, the API server, the
 * local descriptor socket, the master registration and the bus object. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "cleanup.h"
#include "config.h"
#include "fill.h"
#include "httpc.h"
#include "httpd.h"
#include "mclient.h"
#include "store.h"

typedef struct fdsock fdsock;
typedef struct reg reg;

/* Progress of the loads this worker runs (POST /v1/load), for /v1/status and weirctl load. */
typedef struct worker_load_stats {
        uint64_t active;
        uint64_t files, blocks, bytes;
        uint64_t blocks_done, bytes_done, failed;
} worker_load_stats;

typedef struct worker {
        const config *cfg;
        const config_node *node;
        char *runtime_dir;
        char *data_dir;
        char *api;   /* "HOST:PORT" as the master and the FUSE daemons reach it */
        char *token; /* cluster token, NULL when the YAML names none */
        int lock_fd;

        store *store;
        pthread_rwlock_t fill_guard; /* readers use `fill`; worker_free() takes it to stop it */
        fill *fill;
        unsigned fdsock_waits; /* atomic: socket WAITs not answered yet (fdsock.c) */
        mclient *mclient;
        httpc **resolvers; /* one per fill thread; resolvers[i] only used by fill thread i */
        unsigned n_resolvers;
        httpd *httpd;
        fdsock *fdsock;
        reg *reg;
        sd_event *event;
        sd_bus *bus;
        sd_bus_slot *bus_slot;

        /* Counters, updated with atomics from any thread. */
        uint64_t hits, misses, served_bytes;

        pthread_mutex_t load_lock; /* guards `load` */
        worker_load_stats load;
        unsigned loads_running; /* load threads not finished yet */
        pthread_cond_t load_cond;
} worker;

int worker_new(const config *cfg, const char *node, const char *data_dir, const char *runtime_dir,
               worker **ret);
worker *worker_free(worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(worker *, worker_free);
/* Serves until SIGTERM/SIGINT: READY=1, STATUS=, watchdog, STOPPING=1. */
int worker_run(worker *w);

/* "3 tiers, 1.2/4.0 GiB used, 1834 blocks" */
void worker_status_line(worker *w, char *buf, size_t len);
/* [{"medium","path","quota","used"}] */
json_t *worker_tiers_json(worker *w);
/* fill_block() and fill_block_part() on w->fill, which worker_free() may be taking away
 * (fill_guard): -ECANCELED once it is gone. */
int worker_fill(worker *w, const store_key *k, unsigned readahead, fill_done_fn done,
                void *userdata);
int worker_fill_part(worker *w, const store_key *k, uint64_t off, uint64_t len, unsigned readahead,
                     fill_part_fn done, void *userdata);

/* api.c */
int api_start(worker *w);
/* fdsock.c */
int fdsock_new(worker *w, const char *path, fdsock **ret);
fdsock *fdsock_free(fdsock *s);
/* register.c */
int reg_start(worker *w, reg **ret);
reg *reg_stop(reg *r);
bool reg_registered(reg *r);
/* Sends a report now and waits (up to TIMEOUT_MS) until the master has every change made
 * before the call: a finished load is visible in the master's CACHED when its reply arrives. */
void reg_flush(reg *r, unsigned timeout_ms);
/* dbus.c */
int dbus_setup(worker *w);
