/* weirctl's verbs: each lives in its own ctl-VERB.c and is listed in main.c's table. */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "httpc.h"

typedef struct ctl_context {
        const char *config_path; /* resolved: --config, $WEIR_CONFIG or the default */
        bool json;               /* --json given before the verb */
} ctl_context;

/* Each verb gets argv starting at its own name (argv[0] == "config", ...) and returns the process
 * exit status: 0 success, 1 failure, 2 usage error. */
int ctl_config(const ctl_context *ctx, int argc, char **argv);
/* "config apply" (ctl-apply.c); argv[0] == "apply". */
int ctl_config_apply(const ctl_context *ctx, int argc, char **argv);
/* The cluster YAML a "config check|apply" names after its options (at most one operand, else
 * --config, $WEIR_CONFIG or the default). NULL, after telling stderr (VERB names the command),
 * when more than one operand is left. */
const char *ctl_config_operand(const ctl_context *ctx, const char *verb, int argc, char **argv);
int ctl_masters(const ctl_context *ctx, int argc, char **argv);
int ctl_status(const ctl_context *ctx, int argc, char **argv);
int ctl_ufs(const ctl_context *ctx, int argc, char **argv);
int ctl_datasets(const ctl_context *ctx, int argc, char **argv);
int ctl_dataset(const ctl_context *ctx, int argc, char **argv);
int ctl_ls(const ctl_context *ctx, int argc, char **argv);
int ctl_stat(const ctl_context *ctx, int argc, char **argv);
int ctl_load(const ctl_context *ctx, int argc, char **argv);
int ctl_runtime(const ctl_context *ctx, int argc, char **argv);

/* A client for this cluster's API: the cluster token (else the read token) when readable, the
 * CA file, redirects trusted to the cluster's addresses, TIMEOUT_MS per request. NULL on OOM. */
httpc *ctl_httpc(const config *cfg, long timeout_ms, long connect_ms);
/* "SCHEME://API" + PATH, API being "HOST:PORT" as the masters report it. NULL on OOM. */
char *ctl_url(const config *cfg, const char *api, const char *path);

/* METHOD PATH (no body) to the master leader: each master of CFG in turn, three rounds
 * (followers redirect to the leader; a master without a leader says 503, so does an election).
 * 0 with *RET filled by the first master that answered otherwise, or the last -errno. */
int ctl_master_request(const config *cfg, httpc *h, const char *method, const char *path,
                       httpc_response *ret);
