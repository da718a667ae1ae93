/* The worker daemon's manager: one object that owns the store, the fills, the API server, the
 * local descriptor socket, the master registration and the bus object (worker-state.h). */
#pragma once

#include "cleanup.h"
#include "config.h"

typedef struct worker worker;

int worker_new(const config *cfg, const char *node, const char *data_dir, const char *runtime_dir,
               worker **ret);
worker *worker_free(worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(worker *, worker_free);
/* Serves until SIGTERM/SIGINT: READY=1, STATUS=, watchdog, STOPPING=1. */
int worker_run(worker *w);
