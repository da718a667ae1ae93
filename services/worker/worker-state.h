/* The worker daemon's state, shared by its parts: worker.c builds and tears it down in order,
 * api.c and dbus.c read it. The socket (fdsock.c) and registration (register.c) see only the
 * context structs of their headers. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "content-peers.h"
#include "fdsock.h"
#include "fill.h"
#include "httpc.h"
#include "httpd.h"
#include "mclient.h"
#include "register.h"
#include "store.h"

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
        fill_guard fill;       /* worker_free() takes the fill away before freeing the rest */
        unsigned fdsock_waits; /* atomic: socket WAITs not answered yet (fdsock.c) */
        mclient *mclient;
        httpc **resolvers; /* one per fill thread; resolvers[i] only used by fill thread i */
        unsigned n_resolvers;
        httpd *httpd;
        fdsock *fdsock;
        reg *reg;
        content_peers *peers; /* content checks across workers */
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
