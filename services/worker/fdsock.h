/* The local descriptor socket (RUNTIME_DIR/worker.sock): OPEN and WAIT from the FUSE daemon on
 * this node, answered with block files' descriptors (protocol in fdsock-proto.h). */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "fill.h"
#include "store.h"

/* What the socket uses of the worker; every pointer must outlive every WAIT still being
 * answered (the worker frees the socket first, then takes the fill, then frees the rest). */
typedef struct fdsock_context {
        store *store;
        fill_guard *fill;
        sd_event *event; /* the loop that accepts and reads requests */
        uint64_t *hits;  /* the worker's counters, updated with atomics */
        uint64_t *misses;
        unsigned *waits; /* WAITs not answered yet (atomic), at most FDSOCK_MAX_WAITS */
} fdsock_context;

typedef struct fdsock fdsock;

/* Listens on PATH (mode 0600) with CTX (copied). */
int fdsock_new(const fdsock_context *ctx, const char *path, fdsock **ret);
fdsock *fdsock_free(fdsock *s);
