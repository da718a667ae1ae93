/* Applying an edited cluster YAML to a running cluster: what changes, and what cannot be applied. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * The running cluster is described by a JSON object that every master serves as
 * GET /v1/config ("running") and builds from its loaded YAML and its replicated state:
 *
 *   {"version": 1, "cluster": NAME|null,
 *    "masters":  [{"id", "node", "address", "raft_port", "master_port"}],   Raft membership
 *    "nodes":    [{"name", "address", "master", "worker", "fuse"}],        the loaded YAML
 *    "datasets": [{"name", "block_size", "mounts": [{"name", "mount_point"}]}]}
 *
 * config_plan_apply() compares an edited YAML with it. It is pure: weirctl runs it before it
 * reloads anything, and each master runs it again on SIGHUP against its own state, so a file that
 * one of them refuses changes nothing there.
 */

#define CONFIG_RUNNING_VERSION 1

typedef struct config_refusal {
        char *document; /* "Cluster", "Dataset hbase", "AlluxioRuntime hbase" */
        char *key;      /* the YAML key, e.g. "spec.nodes[1].address" */
        char *message;
} config_refusal;

typedef struct config_plan {
        config_refusal *refusals; /* non-empty: the file cannot be applied, nothing may change */
        size_t n_refusals;
        char **changes; /* human-readable, one line each, in a stable order */
        size_t n_changes;
        bool masters_change; /* the Raft membership changes */
        bool datasets_change;
} config_plan;

/* Compares NEXT with RUNNING (borrowed). 0 with *RET filled (refusals or not), -ENOMEM, or
 * -EBADMSG when RUNNING is not a description of version CONFIG_RUNNING_VERSION. */
int config_plan_apply(const config *next, const json_t *running, config_plan *ret);
void config_plan_done(config_plan *p);

/* "DOCUMENT: KEY: MESSAGE" of refusal I (malloc'ed). */
char *config_refusal_format(const config_refusal *r);

/* The description of a cluster that runs C. MASTERS (the recorded Raft membership, an array as
 * above) and DATASETS (as replicated) are borrowed and used when non-NULL; otherwise they are
 * derived from C. New reference, NULL on OOM. */
json_t *config_running_json(const config *c, const json_t *masters, const json_t *datasets);

/* The masters of C as the "masters" array above. New reference, NULL on OOM. */
json_t *config_masters_json(const config *c);
