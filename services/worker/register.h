/* Registration with the master leader and heartbeats, on a thread of their own. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "content-peers.h"
#include "mclient.h"
#include "store.h"

/* What registration reports; every pointer must outlive reg_stop(). */
typedef struct reg_context {
        const config_node *node;
        const char *api; /* "HOST:PORT" as the master and the FUSE daemons reach this worker */
        store *store;
        mclient *mclient;
        const uint64_t *hits; /* the worker's counters, read with atomics */
        const uint64_t *misses;
        content_peers *peers; /* gets the answers' "verify" lists; may be NULL */
} reg_context;

typedef struct reg reg;

/* Starts the thread with CTX (copied). */
int reg_start(const reg_context *ctx, reg **ret);
reg *reg_stop(reg *r);
bool reg_registered(reg *r);
/* Sends a report now and waits (up to TIMEOUT_MS) until the master has every change made
 * before the call: a finished load is visible in the master's CACHED when its reply arrives. */
void reg_flush(reg *r, unsigned timeout_ms);
