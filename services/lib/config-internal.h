/* What the files of the cluster YAML loader share (config.c, config-read.c, config-cluster.c,
 * config-dataset.c, config-runtime.c); not an API: only these files include it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config-yaml.h"
#include "config.h"

/* Limits beyond config.h's and config-yaml.h's. */
#define MAP_MAX_KEYS            512u /* in a mapping that weir interprets */
#define CONFIG_MAX_DIAGS        1000u
#define NAME_MAX_LEN            255u
#define DEFAULT_REPLICAS        1u
#define DEFAULT_HIGH            0.95
#define DEFAULT_LOW             0.7
#define DEFAULT_ELECTION        300u
#define DEFAULT_HEARTBEAT       50u
#define DEFAULT_FUSE_TIMEOUT_MS 60000u
#define MIN_BLOCK_SIZE          (4ull << 10)
#define MAX_BLOCK_SIZE          (1ull << 30)

typedef struct node_info {
        const ynode *item, *name, *roles;
        bool has_roles, role_master, role_worker, role_fuse;
        bool has_data_dir, has_runtime_dir, has_mount_root;
        bool has_raft_port, has_master_port, has_worker_port;
} node_info;

typedef struct dataset_info {
        const ynode *name;
} dataset_info;

typedef struct runtime_info {
        const ynode *name, *kind, *replicas, *master_replicas, *levels;
} runtime_info;

typedef struct option_list {
        config_option *items;
        const ynode **where;
        size_t n, alloc, alloc_where;
} option_list;

typedef struct loader {
        const char *name; /* for messages */
        char *dir;        /* relative secret files are read from here */
        config_diag *diags;
        size_t n_diags, n_diags_alloc, n_dropped, n_dropped_errors, n_errors;
        bool oom;

        config_yaml yaml;

        config *c;
        const ynode *cluster_doc;
        const ynode *cluster_nodes;
        node_info *node_info;
        dataset_info *dataset_info;
        size_t n_datasets_alloc, n_dataset_info_alloc;
        runtime_info *runtime_info;
        size_t n_runtimes_alloc, n_runtime_info_alloc;

        /* Cluster-level defaults for the nodes. */
        char *data_dir, *runtime_dir, *mount_root;
        uint16_t raft_port, master_port, worker_port;
} loader;

typedef struct field {
        const char *key;
        const ynode **value;
} field;

/* config-read.c: diagnostics (errors and warnings with line:column) and typed readers. */
bool cfg_streq(const char *a, const char *b);
char *cfg_l_strdup(loader *l, const char *s);
_printf_(5, 6) void cfg_diag(loader *l, bool warning, unsigned line, unsigned column,
                             const char *format, ...);
_printf_(3, 4) void cfg_error_at(loader *l, const ynode *n, const char *format, ...);
_printf_(3, 4) void cfg_warning_at(loader *l, const ynode *n, const char *format, ...);
/* Checks that SEQ (the value of KEY) is a list of 1 to MAX entries, reporting what is wrong:
 * "KEY: expected a list of ITEMS, got ...", "KEY: expected at least one ITEM",
 * "KEY: more than MAX ITEMS[WHERE]". */
bool cfg_check_list(loader *l, const ynode *seq, const char *key, const char *item,
                    const char *items, unsigned max, const char *where);
/* Copies the values of FIELDS' keys out of MAP and warns about any other key, naming the Fluid
 * ones (FLUID) as such. False when MAP is not a usable mapping (an error was reported). */
bool cfg_pick(loader *l, const ynode *map, const char *what, const field *fields,
              const char *const *fluid);
const char *cfg_get_str(loader *l, const ynode *n, const char *what);
bool cfg_get_uint(loader *l, const ynode *n, const char *what, uint64_t max, uint64_t *ret);
bool cfg_get_port(loader *l, const ynode *n, const char *what, uint16_t *ret);
bool cfg_get_duration(loader *l, const ynode *n, const char *what, uint64_t *ret);
bool cfg_name_ok(const char *s);
/* A name that becomes a directory, a systemd instance name and a URL path segment. */
const char *cfg_get_name(loader *l, const ynode *n, const char *what);
const char *cfg_get_abs_path(loader *l, const ynode *n, const char *what);

/* config-cluster.c */
const char *cfg_get_metadata_name(loader *l, const ynode *doc, const ynode *metadata,
                                  const char *kind, const ynode **ret_node);
void cfg_load_cluster(loader *l, const ynode *doc, const ynode *kind, const ynode *metadata,
                      const ynode *spec);

/* config-dataset.c */
void cfg_option_list_done(option_list *o);
void cfg_load_dataset(loader *l, const ynode *doc, const ynode *metadata, const ynode *spec);

/* config-runtime.c */
void cfg_load_runtime(loader *l, const ynode *doc, const ynode *kind_node, const char *kind,
                      const ynode *metadata, const ynode *spec);
