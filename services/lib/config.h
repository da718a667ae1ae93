/* The cluster YAML as an immutable, validated struct: nodes, datasets, runtimes, the resolved plan. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

#define CONFIG_DEFAULT_PATH        "/etc/weir/cluster.yaml"
#define CONFIG_DEFAULT_RAFT_PORT   19200
#define CONFIG_DEFAULT_MASTER_PORT 19998
#define CONFIG_DEFAULT_WORKER_PORT 29999
#define CONFIG_DEFAULT_DATA_DIR    "/var/lib/weir"
#define CONFIG_DEFAULT_RUNTIME_DIR "/run/weir"
#define CONFIG_DEFAULT_MOUNT_ROOT  "/mnt/weir"
#define CONFIG_DEFAULT_BLOCK_SIZE  (16ull << 20)
#define CONFIG_DEFAULT_MAX_ENTRIES 100000000ull /* spec.maxEntries: files + directories */

/* Input limits: a config larger or deeper than this is refused with an error, never parsed. */
#define CONFIG_MAX_FILE_SIZE (4u << 20)
#define CONFIG_MAX_DOCUMENTS 256
#define CONFIG_MAX_DEPTH     32
#define CONFIG_MAX_STRING    4096
#define CONFIG_MAX_NODES     1024
#define CONFIG_MAX_DATASETS  256
#define CONFIG_MAX_MOUNTS    256 /* per dataset */
#define CONFIG_MAX_TIERS     8
#define CONFIG_MAX_OPTIONS   128 /* per mount */
#define CONFIG_MAX_SECRET    65536

typedef enum config_medium {
        CONFIG_MEDIUM_MEM,
        CONFIG_MEDIUM_SSD,
        CONFIG_MEDIUM_HDD,
} config_medium;

const char *config_medium_to_string(config_medium m);

typedef struct config_tier {
        config_medium medium;
        char *path;     /* as written in the YAML, e.g. "/dev/shm" (trailing slashes removed) */
        uint64_t quota; /* bytes */
        double high;    /* eviction starts above high * quota */
        double low;     /* ... and stops at low * quota; 0 < low < high <= 1 */
} config_tier;

typedef struct config_option {
        char *key;
        char *value; /* for valueFrom/secret files: the file's content, trailing newline removed */
        bool secret; /* never log or print the value */
} config_option;

typedef enum config_scheme {
        CONFIG_SCHEME_HTTP,
        CONFIG_SCHEME_HTTPS,
        CONFIG_SCHEME_S3,
        CONFIG_SCHEME_OSS,
        CONFIG_SCHEME_COS,
        CONFIG_SCHEME_FILE, /* file:// and local:// */
} config_scheme;

typedef struct config_mount {
        char *name; /* top-level directory in the dataset; defaults to the URL's last segment */
        char *mount_point; /* the URL as written */
        config_scheme scheme;
        config_option *options;
        size_t n_options;
} config_mount;

/* Looks up option KEY on a mount; NULL if absent. */
const char *config_mount_option(const config_mount *m, const char *key);

typedef struct config_dataset {
        char *name;
        config_mount *mounts;
        size_t n_mounts;
        uint64_t block_size;       /* bytes; weir extension spec.blockSize */
        uint64_t sync_interval_ms; /* 0 = no periodic sync; weir extension spec.syncInterval */
        uint64_t max_entries;      /* files + directories a sync accepts; spec.maxEntries */
        const struct config_runtime *runtime; /* the runtime bound to it, or NULL */
} config_dataset;

typedef struct config_runtime {
        char *name;        /* == the dataset's name, as Fluid binds them */
        char *kind;        /* "AlluxioRuntime", "GooseFSRuntime", "JindoRuntime", "Runtime" */
        unsigned replicas; /* workers wanted */
        unsigned master_replicas; /* 1 or odd >= 3 */
        config_tier *tiers;
        size_t n_tiers;
        uint64_t attr_timeout_ms; /* FUSE attr/entry cache; spec.fuse.attrTimeout */
        uint64_t entry_timeout_ms;
} config_runtime;

typedef struct config_node {
        char *name;
        char *address; /* IPv4/IPv6 literal or host name */
        uint16_t raft_port;
        uint16_t master_port;
        uint16_t worker_port;
        char *data_dir;    /* default CONFIG_DEFAULT_DATA_DIR */
        char *runtime_dir; /* default CONFIG_DEFAULT_RUNTIME_DIR */
        char *mount_root;  /* default CONFIG_DEFAULT_MOUNT_ROOT */
        /* Resolved roles. */
        bool master;
        bool worker;
        bool fuse;
        unsigned raft_id; /* 1-based among masters, 0 when not a master */
} config_node;

/* spec.api: how the HTTP APIs listen and who may read them (docs/config.md, docs/api.md). */
typedef struct config_api {
        char *read_token_file; /* a token that may only read; NULL = reads need the cluster's */
        char *bind_address;    /* NULL = each node's own address; else this address on every node */
        char *tls_cert_file, *tls_key_file; /* both set: the APIs speak HTTPS only */
        char *tls_ca_file; /* what clients verify the APIs' certificates with; NULL = system CAs */
        unsigned max_connections;            /* per listener; default 512 */
        unsigned max_connections_per_client; /* per client address; default 256 */
        uint64_t request_timeout_ms; /* deadline for a request's header and body, default 10 s */
} config_api;

#define CONFIG_DEFAULT_MAX_CONNECTIONS 512u
#define CONFIG_DEFAULT_MAX_PER_CLIENT  256u
#define CONFIG_DEFAULT_REQUEST_TIMEOUT 10000u

typedef struct config {
        char *path; /* the file it was loaded from */
        char *cluster_name;
        config_node *nodes;
        size_t n_nodes;
        config_dataset *datasets;
        size_t n_datasets;
        config_runtime *runtimes;
        size_t n_runtimes;

        /* Cluster-wide, resolved. */
        unsigned master_replicas; /* agreed by all runtimes (1 when there is none) */
        unsigned worker_replicas; /* max over runtimes */
        const config_tier *tiers; /* the workers' tiered store (see docs/config.md) */
        size_t n_tiers;
        char *token_file;              /* spec.tokenFile; NULL = mutating calls unauthenticated */
        uint64_t election_timeout_ms;  /* spec.raft.electionTimeout, default 300 */
        uint64_t heartbeat_timeout_ms; /* spec.raft.heartbeatTimeout, default 50 */
        char *raft_secret_file;        /* spec.raft.secretFile; NULL = the token is the secret */
        bool raft_loop_normal; /* spec.raft.loopScheduling: normal; false = realtime (default) */
        config_api api;        /* spec.api */
} config;

/* One diagnostic: "FILE:LINE:COLUMN: error: MESSAGE". Warnings (unknown keys) do not fail. */
typedef struct config_diag {
        bool warning;
        unsigned line;   /* 1-based */
        unsigned column; /* 1-based */
        char *message;
} config_diag;

typedef struct config_diags {
        config_diag *items;
        size_t n;
} config_diags;

/* Parses and validates PATH. On success *ret is set and 0 returned; on failure a negative errno
 * (-EINVAL: invalid config, -ENOENT etc.: unreadable file) and no *ret. DIAGS, when non-NULL,
 * receives every error and warning in file order either way; free with config_diags_done(). */
int config_load(const char *path, config **ret, config_diags *diags);

/* The same on a buffer; NAME is used in messages and to resolve relative secret files. */
int config_load_buffer(const char *name, const char *data, size_t len, config **ret,
                       config_diags *diags);

config *config_free(config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(config *, config_free);
void config_diags_done(config_diags *d);

/* Writes every diagnostic to stderr as "FILE:LINE:COL: error|warning: MESSAGE". */
void config_diags_print(const config_diags *d, const char *file);

/* Lookups; NULL when absent. */
const config_node *config_find_node(const config *c, const char *name);
const config_dataset *config_find_dataset(const config *c, const char *name);
const config_node *config_master_by_raft_id(const config *c, unsigned raft_id);
size_t config_n_masters(const config *c);

/* The config path from --config, else $WEIR_CONFIG, else CONFIG_DEFAULT_PATH. */
const char *config_resolve_path(const char *arg);

/* The directory of tier T on node NODE: "<path>/weir/<node>" (several nodes may share a host). */
int config_tier_dir(const config_tier *t, const char *node, char **ret);

/* Where node N mounts DATASET: "<mountRoot>/<dataset>". */
int config_fuse_mount_point(const config_node *n, const char *dataset, char **ret);
