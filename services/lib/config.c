/* The cluster YAML: libyaml events -> a small bounded tree -> a validated, immutable struct config. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config-yaml.h"
#include "config.h"
#include "log.h"
#include "parse.h"

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

static const char *const medium_names[] = {
        [CONFIG_MEDIUM_MEM] = "MEM",
        [CONFIG_MEDIUM_SSD] = "SSD",
        [CONFIG_MEDIUM_HDD] = "HDD",
};

const char *config_medium_to_string(config_medium m)
{
        if ((size_t)m >= ELEMENTSOF(medium_names))
                return NULL;
        return medium_names[m];
}

/* ---- small helpers ---------------------------------------------------------------------- */

static bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

static char *l_strdup(loader *l, const char *s)
{
        char *r;

        if (!s)
                return NULL;
        r = strdup(s);
        if (!r)
                l->oom = true;
        return r;
}

_printf_(5, 0) static void diag_va(loader *l, bool warning, unsigned line, unsigned column,
                                   const char *format, va_list ap)
{
        char *msg;

        if (!warning)
                l->n_errors++;
        if (l->n_diags >= CONFIG_MAX_DIAGS) {
                l->n_dropped++;
                l->n_dropped_errors += !warning;
                return;
        }
        if (!CONFIG_GROW(l->diags, l->n_diags_alloc, l->n_diags + 1) ||
            vasprintf(&msg, format, ap) < 0) {
                l->oom = true;
                return;
        }
        l->diags[l->n_diags++] = (config_diag){
                .warning = warning,
                .line = line,
                .column = column,
                .message = msg,
        };
}

_printf_(5, 6) static void diag(loader *l, bool warning, unsigned line, unsigned column,
                                const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, warning, line, column, format, ap);
        va_end(ap);
}

_printf_(3, 4) static void error_at(loader *l, const ynode *n, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, false, n ? n->line : 1, n ? n->column : 1, format, ap);
        va_end(ap);
}

_printf_(3, 4) static void warning_at(loader *l, const ynode *n, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, true, n ? n->line : 1, n ? n->column : 1, format, ap);
        va_end(ap);
}

/* ---- reading the tree ------------------------------------------------------------------- */

typedef struct field {
        const char *key;
        const ynode **value;
} field;

/* Checks that SEQ (the value of KEY) is a list of 1 to MAX entries, reporting what is wrong:
 * "KEY: expected a list of ITEMS, got ...", "KEY: expected at least one ITEM",
 * "KEY: more than MAX ITEMS[WHERE]". */
static bool check_list(loader *l, const ynode *seq, const char *key, const char *item,
                       const char *items, unsigned max, const char *where)
{
        if (seq->type != YNODE_SEQ) {
                error_at(l, seq, "%s: expected a list of %s, got %s", key, items,
                         config_yaml_describe(seq));
                return false;
        }
        if (seq->n_items == 0) {
                error_at(l, seq, "%s: expected at least one %s", key, item);
                return false;
        }
        if (seq->n_items > max) {
                error_at(l, seq, "%s: more than %u %s%s", key, max, items, where);
                return false;
        }
        return true;
}

/* Copies the values of FIELDS' keys out of MAP and warns about any other key, naming the Fluid
 * ones (FLUID) as such. False when MAP is not a usable mapping (an error was reported). */
static bool pick(loader *l, const ynode *map, const char *what, const field *fields,
                 const char *const *fluid)
{
        size_t n;

        if (map->type != YNODE_MAP) {
                error_at(l, map, "%s: expected a mapping, got %s", what, config_yaml_describe(map));
                return false;
        }
        n = map->n_items / 2;
        if (n > MAP_MAX_KEYS) {
                error_at(l, map, "%s: more than %u keys", what, MAP_MAX_KEYS);
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                const ynode *key = map->items[2 * i];
                bool known = false;

                if (key->type != YNODE_SCALAR) {
                        error_at(l, key, "%s: keys must be strings, got %s", what,
                                 config_yaml_describe(key));
                        return false;
                }
                for (size_t j = 0; j < i; j++)
                        if (streq(map->items[2 * j]->value, key->value)) {
                                error_at(l, key, "%s: duplicate key '%s' (first at %u:%u)", what,
                                         key->value, map->items[2 * j]->line,
                                         map->items[2 * j]->column);
                                return false;
                        }
                for (const field *f = fields; f->key; f++)
                        if (streq(f->key, key->value)) {
                                *f->value = map->items[2 * i + 1];
                                known = true;
                                break;
                        }
                if (known)
                        continue;
                for (const char *const *k = fluid; k && *k; k++)
                        if (streq(*k, key->value)) {
                                warning_at(l, key,
                                           "%s: '%s' is a Fluid setting that weir does not use, "
                                           "ignoring",
                                           what, key->value);
                                known = true;
                                break;
                        }
                if (!known)
                        warning_at(l, key, "%s: unknown key '%s', ignoring", what, key->value);
        }
        return true;
}

static const char *get_str(loader *l, const ynode *n, const char *what)
{
        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                error_at(l, n, "%s: expected a string, got %s", what, config_yaml_describe(n));
                return NULL;
        }
        if (strlen(n->value) != n->len) {
                error_at(l, n, "%s: contains a NUL character", what);
                return NULL;
        }
        return n->value;
}

static bool get_uint(loader *l, const ynode *n, const char *what, uint64_t max, uint64_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                error_at(l, n, "%s: expected a number, got %s", what, config_yaml_describe(n));
                return false;
        }
        if (parse_u64(n->value, &v) < 0 || v > max) {
                error_at(l, n, "%s: expected a whole number between 0 and %llu (got '%s')", what,
                         (unsigned long long)max, n->value);
                return false;
        }
        *ret = v;
        return true;
}

static bool get_port(loader *l, const ynode *n, const char *what, uint16_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                error_at(l, n, "%s: expected a port number, got %s", what, config_yaml_describe(n));
                return false;
        }
        if (parse_u64(n->value, &v) < 0 || v < 1 || v > 65535) {
                error_at(l, n, "%s must be a port number between 1 and 65535 (got '%s')", what,
                         n->value);
                return false;
        }
        *ret = (uint16_t)v;
        return true;
}

static bool get_duration(loader *l, const ynode *n, const char *what, uint64_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                error_at(l, n, "%s: expected a duration, got %s", what, config_yaml_describe(n));
                return false;
        }
        if (parse_duration_ms(n->value, &v) < 0) {
                error_at(l, n, "%s: expected a duration such as 300ms, 2s, 5m or 1h (got '%s')",
                         what, n->value);
                return false;
        }
        *ret = v;
        return true;
}

static bool name_ok(const char *s)
{
        size_t len = strlen(s);

        if (len == 0 || len > NAME_MAX_LEN || streq(s, ".") || streq(s, ".."))
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p == '/' || *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

/* A name that becomes a directory, a systemd instance name and a URL path segment. */
static const char *get_name(loader *l, const ynode *n, const char *what)
{
        const char *s = get_str(l, n, what);

        if (!s)
                return NULL;
        if (s[0] == 0) {
                error_at(l, n, "%s must not be empty", what);
                return NULL;
        }
        if (!name_ok(s)) {
                error_at(l, n,
                         "%s '%s' cannot be used as a directory name (1-%u bytes, no '/', spaces "
                         "or control characters, not '.' or '..')",
                         what, s, NAME_MAX_LEN);
                return NULL;
        }
        return s;
}

static const char *get_abs_path(loader *l, const ynode *n, const char *what)
{
        const char *s = get_str(l, n, what);

        if (!s)
                return NULL;
        if (s[0] != '/') {
                error_at(l, n, "%s must be an absolute path (got '%s')", what, s);
                return NULL;
        }
        return s;
}

/* ---- Cluster ---------------------------------------------------------------------------- */

static const char *const k8s_metadata[] = {
        "namespace",       "labels",     "annotations",       "uid",
        "resourceVersion", "generation", "creationTimestamp", "generateName",
        "ownerReferences", "finalizers", "managedFields",     NULL,
};

static const char *get_metadata_name(loader *l, const ynode *doc, const ynode *metadata,
                                     const char *kind, const ynode **ret_node)
{
        const ynode *name = NULL;
        const field fields[] = {{"name", &name}, {}};
        char what[64];

        if (!metadata) {
                error_at(l, doc, "%s: missing 'metadata' with the name", kind);
                return NULL;
        }
        snprintf(what, sizeof(what), "%s metadata", kind);
        if (!pick(l, metadata, what, fields, k8s_metadata))
                return NULL;
        if (!name) {
                error_at(l, metadata, "%s: missing 'name'", what);
                return NULL;
        }
        *ret_node = name;
        snprintf(what, sizeof(what), "%s name", kind);
        return get_name(l, name, what);
}

static void load_node(loader *l, const ynode *item, size_t idx)
{
        const ynode *name = NULL, *address = NULL, *roles = NULL, *data_dir = NULL,
                    *runtime_dir = NULL, *mount_root = NULL, *raft_port = NULL, *master_port = NULL,
                    *worker_port = NULL;
        const field fields[] = {
                {"name", &name},
                {"address", &address},
                {"roles", &roles},
                {"dataDir", &data_dir},
                {"runtimeDir", &runtime_dir},
                {"mountRoot", &mount_root},
                {"raftPort", &raft_port},
                {"masterPort", &master_port},
                {"workerPort", &worker_port},
                {},
        };
        config_node *node = &l->c->nodes[l->c->n_nodes];
        node_info *info = &l->node_info[l->c->n_nodes];
        const char *s;

        *info = (node_info){.item = item};
        if (!pick(l, item, "node", fields, NULL))
                return;
        if (!name) {
                error_at(l, item, "node %zu: missing 'name'", idx + 1);
                return;
        }
        s = get_name(l, name, "node name");
        if (!s)
                return;
        for (size_t i = 0; i < l->c->n_nodes; i++)
                if (streq(l->c->nodes[i].name, s)) {
                        error_at(l, name, "duplicate node name '%s' (first at %u:%u)", s,
                                 l->node_info[i].name->line, l->node_info[i].name->column);
                        return;
                }
        info->name = name;
        if (!address) {
                error_at(l, item, "node '%s': missing 'address' (an IP address or host name)", s);
                return;
        }
        {
                const char *a = get_str(l, address, "address");

                if (!a)
                        return;
                /* One colon is HOST:PORT; IPv6 literals have at least two. */
                if (a[0] == 0 || strpbrk(a, " \t/[]") ||
                    (strchr(a, ':') && strchr(a, ':') == strrchr(a, ':'))) {
                        error_at(l, address,
                                 "address: expected an IPv4 or IPv6 address or a host name, "
                                 "without port or brackets (got '%s')",
                                 a);
                        return;
                }
                node->address = l_strdup(l, a);
        }
        node->name = l_strdup(l, s);

        if (roles) {
                info->has_roles = true;
                info->roles = roles;
                if (roles->type != YNODE_SEQ) {
                        error_at(l, roles,
                                 "roles: expected a list of master, worker and fuse, got %s",
                                 config_yaml_describe(roles));
                } else
                        for (size_t i = 0; i < roles->n_items; i++) {
                                const ynode *r = roles->items[i];
                                const char *v = get_str(l, r, "roles");
                                bool *flag;

                                if (!v)
                                        continue;
                                if (streq(v, "master"))
                                        flag = &info->role_master;
                                else if (streq(v, "worker"))
                                        flag = &info->role_worker;
                                else if (streq(v, "fuse"))
                                        flag = &info->role_fuse;
                                else {
                                        error_at(l, r,
                                                 "roles: unknown role '%s'; expected master, "
                                                 "worker or fuse",
                                                 v);
                                        continue;
                                }
                                if (*flag)
                                        error_at(l, r, "roles: '%s' given twice", v);
                                *flag = true;
                        }
        }
        if (data_dir && (s = get_abs_path(l, data_dir, "dataDir"))) {
                node->data_dir = l_strdup(l, s);
                info->has_data_dir = true;
        }
        if (runtime_dir && (s = get_abs_path(l, runtime_dir, "runtimeDir"))) {
                node->runtime_dir = l_strdup(l, s);
                info->has_runtime_dir = true;
        }
        if (mount_root && (s = get_abs_path(l, mount_root, "mountRoot"))) {
                node->mount_root = l_strdup(l, s);
                info->has_mount_root = true;
        }
        if (raft_port)
                info->has_raft_port = get_port(l, raft_port, "raftPort", &node->raft_port);
        if (master_port)
                info->has_master_port = get_port(l, master_port, "masterPort", &node->master_port);
        if (worker_port)
                info->has_worker_port = get_port(l, worker_port, "workerPort", &node->worker_port);
        l->c->n_nodes++;
}

/* A file named in the YAML: absolute, or relative to the YAML's directory. NULL on error. */
static char *get_file(loader *l, const ynode *n, const char *what)
{
        const char *s = get_str(l, n, what);
        char *p = NULL;

        if (!s)
                return NULL;
        if (s[0] == 0) {
                error_at(l, n, "%s must not be empty", what);
                return NULL;
        }
        if (s[0] == '/')
                p = strdup(s);
        else if (asprintf(&p, "%s/%s", l->dir, s) < 0)
                p = NULL;
        if (!p)
                l->oom = true;
        return p;
}

/* spec.api: read token, bind address, TLS, listener limits. */
static void load_api(loader *l, const ynode *api)
{
        const ynode *read_token = NULL, *bind = NULL, *tls = NULL, *max_conn = NULL,
                    *per_client = NULL, *timeout = NULL, *cert = NULL, *key = NULL, *ca = NULL;
        const field fields[] = {
                {"readTokenFile", &read_token},
                {"bindAddress", &bind},
                {"tls", &tls},
                {"maxConnections", &max_conn},
                {"maxConnectionsPerClient", &per_client},
                {"requestTimeout", &timeout},
                {},
        };
        const field tls_fields[] = {
                {"certFile", &cert},
                {"keyFile", &key},
                {"caFile", &ca},
                {},
        };
        config_api *a = &l->c->api;
        const char *s;
        uint64_t v;

        if (!pick(l, api, "api", fields, NULL))
                return;
        if (read_token && !l->c->token_file)
                error_at(l, read_token,
                         "api.readTokenFile needs tokenFile: without the cluster token nothing "
                         "could write");
        else if (read_token)
                a->read_token_file = get_file(l, read_token, "api.readTokenFile");
        if (bind && (s = get_str(l, bind, "api.bindAddress"))) {
                if (s[0] == 0 || strlen(s) > 255 || strpbrk(s, " /[]"))
                        error_at(l, bind,
                                 "api.bindAddress: expected 'node' or an address without port "
                                 "or brackets, such as 0.0.0.0 or :: (got '%s')",
                                 s);
                else if (!streq(s, "node") && !(a->bind_address = strdup(s)))
                        l->oom = true;
        }
        if (tls && pick(l, tls, "api.tls", tls_fields, NULL)) {
                if (cert)
                        a->tls_cert_file = get_file(l, cert, "api.tls.certFile");
                if (key)
                        a->tls_key_file = get_file(l, key, "api.tls.keyFile");
                if (ca)
                        a->tls_ca_file = get_file(l, ca, "api.tls.caFile");
                if (!cert != !key)
                        error_at(l, tls, "api.tls: certFile and keyFile go together");
        }
        if (max_conn && get_uint(l, max_conn, "api.maxConnections", 65536, &v)) {
                if (v < 16)
                        error_at(l, max_conn, "api.maxConnections must be at least 16");
                else
                        a->max_connections = (unsigned)v;
        }
        if (per_client && get_uint(l, per_client, "api.maxConnectionsPerClient", 65536, &v)) {
                if (v < 1)
                        error_at(l, per_client, "api.maxConnectionsPerClient must be at least 1");
                else
                        a->max_connections_per_client = (unsigned)v;
        }
        if (timeout && get_duration(l, timeout, "api.requestTimeout", &v)) {
                if (v < 100 || v > 600000)
                        error_at(l, timeout,
                                 "api.requestTimeout must be between 100ms and 10m (got %llums)",
                                 (unsigned long long)v);
                else
                        a->request_timeout_ms = v;
        }
}

static void load_cluster(loader *l, const ynode *doc, const ynode *kind, const ynode *metadata,
                         const ynode *spec)
{
        const ynode *nodes = NULL, *token_file = NULL, *raft = NULL, *data_dir = NULL,
                    *runtime_dir = NULL, *mount_root = NULL, *raft_port = NULL, *master_port = NULL,
                    *worker_port = NULL, *name_node = NULL, *api = NULL;
        const field fields[] = {
                {"nodes", &nodes},
                {"api", &api},
                {"tokenFile", &token_file},
                {"raft", &raft},
                {"dataDir", &data_dir},
                {"runtimeDir", &runtime_dir},
                {"mountRoot", &mount_root},
                {"raftPort", &raft_port},
                {"masterPort", &master_port},
                {"workerPort", &worker_port},
                {},
        };
        config *c = l->c;
        const char *name, *s;

        if (l->cluster_doc) {
                error_at(l, kind,
                         "a second Cluster document (the first is at %u:%u); "
                         "expected exactly one",
                         l->cluster_doc->line, l->cluster_doc->column);
                return;
        }
        l->cluster_doc = doc;
        name = get_metadata_name(l, doc, metadata, "Cluster", &name_node);
        if (name)
                c->cluster_name = l_strdup(l, name);
        if (!spec) {
                error_at(l, doc, "Cluster: missing 'spec' with the nodes");
                return;
        }
        if (!pick(l, spec, "Cluster spec", fields, NULL))
                return;

        if (data_dir && (s = get_abs_path(l, data_dir, "dataDir")))
                l->data_dir = l_strdup(l, s);
        if (runtime_dir && (s = get_abs_path(l, runtime_dir, "runtimeDir")))
                l->runtime_dir = l_strdup(l, s);
        if (mount_root && (s = get_abs_path(l, mount_root, "mountRoot")))
                l->mount_root = l_strdup(l, s);
        if (raft_port)
                get_port(l, raft_port, "raftPort", &l->raft_port);
        if (master_port)
                get_port(l, master_port, "masterPort", &l->master_port);
        if (worker_port)
                get_port(l, worker_port, "workerPort", &l->worker_port);

        if (token_file && (s = get_str(l, token_file, "tokenFile"))) {
                if (s[0] == 0)
                        error_at(l, token_file, "tokenFile must not be empty");
                else if (s[0] == '/')
                        c->token_file = l_strdup(l, s);
                else if (asprintf(&c->token_file, "%s/%s", l->dir, s) < 0) {
                        c->token_file = NULL;
                        l->oom = true;
                }
        }

        if (api)
                load_api(l, api);

        if (raft) {
                const ynode *election = NULL, *heartbeat = NULL, *secret = NULL;
                const field raft_fields[] = {
                        {"electionTimeout", &election},
                        {"heartbeatTimeout", &heartbeat},
                        {"secretFile", &secret},
                        {},
                };

                if (pick(l, raft, "raft", raft_fields, NULL)) {
                        uint64_t v;

                        if (election && get_duration(l, election, "raft.electionTimeout", &v)) {
                                if (v < 10 || v > 60000)
                                        error_at(l, election,
                                                 "raft.electionTimeout must be between 10ms and "
                                                 "60s (got %llums)",
                                                 (unsigned long long)v);
                                else
                                        c->election_timeout_ms = v;
                        }
                        if (heartbeat && get_duration(l, heartbeat, "raft.heartbeatTimeout", &v)) {
                                if (v < 1 || v > 60000)
                                        error_at(l, heartbeat,
                                                 "raft.heartbeatTimeout must be between 1ms and "
                                                 "60s (got %llums)",
                                                 (unsigned long long)v);
                                else
                                        c->heartbeat_timeout_ms = v;
                        }
                        if (secret && (s = get_str(l, secret, "raft.secretFile"))) {
                                if (s[0] == 0)
                                        error_at(l, secret, "raft.secretFile must not be empty");
                                else if (s[0] == '/')
                                        c->raft_secret_file = l_strdup(l, s);
                                else if (asprintf(&c->raft_secret_file, "%s/%s", l->dir, s) < 0) {
                                        c->raft_secret_file = NULL;
                                        l->oom = true;
                                }
                        }
                        if (c->heartbeat_timeout_ms >= c->election_timeout_ms)
                                error_at(l, heartbeat ? heartbeat : election,
                                         "raft.heartbeatTimeout (%llums) must be shorter than "
                                         "raft.electionTimeout (%llums)",
                                         (unsigned long long)c->heartbeat_timeout_ms,
                                         (unsigned long long)c->election_timeout_ms);
                }
        }

        if (!nodes) {
                error_at(l, spec, "Cluster spec: missing 'nodes', the list of hosts");
                return;
        }
        l->cluster_nodes = nodes;
        if (!check_list(l, nodes, "nodes", "node", "nodes", CONFIG_MAX_NODES, ""))
                return;
        c->nodes = calloc(nodes->n_items, sizeof(*c->nodes));
        l->node_info = calloc(nodes->n_items, sizeof(*l->node_info));
        if (!c->nodes || !l->node_info) {
                l->oom = true;
                return;
        }
        for (size_t i = 0; i < nodes->n_items; i++)
                load_node(l, nodes->items[i], i);
}

/* ---- Dataset ---------------------------------------------------------------------------- */

static const char *const fluid_dataset_spec[] = {
        "owner",    "nodeAffinity", "tolerations",         "accessModes",
        "runtimes", "placement",    "dataRestoreLocation", NULL,
};

static const char *const fluid_mount[] = {"path", "readOnly", "shared", NULL};

static void option_list_done(option_list *o)
{
        for (size_t i = 0; i < o->n; i++) {
                free(o->items[i].key);
                if (o->items[i].value && o->items[i].secret)
                        explicit_bzero(o->items[i].value, strlen(o->items[i].value));
                free(o->items[i].value);
        }
        free(o->items);
        free(o->where);
        *o = (option_list){};
}

static bool option_add(loader *l, option_list *o, const ynode *where, const char *key,
                       const char *value, bool secret)
{
        for (size_t i = 0; i < o->n; i++)
                if (streq(o->items[i].key, key)) {
                        error_at(l, where, "option '%s' given twice (first at %u:%u)", key,
                                 o->where[i]->line, o->where[i]->column);
                        return false;
                }
        if (o->n >= CONFIG_MAX_OPTIONS) {
                error_at(l, where, "more than %u options for one mount", CONFIG_MAX_OPTIONS);
                return false;
        }
        if (!CONFIG_GROW(o->items, o->alloc, o->n + 1) ||
            !CONFIG_GROW(o->where, o->alloc_where, o->n + 1)) {
                l->oom = true;
                return false;
        }
        o->items[o->n] = (config_option){
                .key = strdup(key),
                .value = strdup(value),
                .secret = secret,
        };
        o->where[o->n] = where;
        if (!o->items[o->n].key || !o->items[o->n].value) {
                free(o->items[o->n].key);
                free(o->items[o->n].value);
                l->oom = true;
                return false;
        }
        o->n++;
        return true;
}

/* Keys whose plain values are credentials: they are flagged secret so they are never printed. */
static bool key_looks_secret(const char *key)
{
        static const char *const words[] = {"secret",     "password",  "passwd",     "token",
                                            "credential", "accesskey", "access.key", "access_key",
                                            "privatekey", NULL};

        for (const char *const *w = words; *w; w++)
                if (strcasestr(key, *w))
                        return true;
        return false;
}

static void load_options(loader *l, option_list *o, const ynode *map, const char *what)
{
        if (map->type != YNODE_MAP) {
                error_at(l, map, "%s: expected a mapping of option names to values, got %s", what,
                         config_yaml_describe(map));
                return;
        }
        if (map->n_items / 2 > CONFIG_MAX_OPTIONS) {
                error_at(l, map, "%s: more than %u options", what, CONFIG_MAX_OPTIONS);
                return;
        }
        for (size_t i = 0; i + 1 < map->n_items; i += 2) {
                const ynode *k = map->items[i], *v = map->items[i + 1];
                const char *key = get_str(l, k, what), *value;

                if (!key)
                        continue;
                if (key[0] == 0) {
                        error_at(l, k, "%s: option names must not be empty", what);
                        continue;
                }
                if (v->type != YNODE_SCALAR) {
                        error_at(l, v, "%s: option '%s': expected a string, got %s", what, key,
                                 config_yaml_describe(v));
                        continue;
                }
                value = config_yaml_is_null(v) ? "" : v->value;
                if (strlen(value) != v->len && !config_yaml_is_null(v)) {
                        error_at(l, v, "%s: option '%s' contains a NUL character", what, key);
                        continue;
                }
                option_add(l, o, k, key, value, key_looks_secret(key));
        }
}

/* Reads a secret file: a regular file of at most CONFIG_MAX_SECRET bytes, one trailing newline
 * dropped. Never blocks (O_NONBLOCK against FIFOs) and never prints the content. */
static int read_secret(const char *path, char **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > CONFIG_MAX_SECRET)
                return -EFBIG;
        buf = malloc(CONFIG_MAX_SECRET + 2);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, CONFIG_MAX_SECRET + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > CONFIG_MAX_SECRET)
                        return -EFBIG;
        }
        if (memchr(buf, 0, n))
                return -EBADMSG;
        if (n > 0 && buf[n - 1] == '\n')
                n--;
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *secret_error(int r)
{
        switch (r) {
        case -EFBIG:
                return "larger than 64 KiB";
        case -EBADFD:
                return "not a regular file";
        case -EBADMSG:
                return "contains a NUL byte";
        default:
                return strerror(-r);
        }
}

static void load_encrypt_option(loader *l, option_list *o, const ynode *item, const char *what)
{
        const ynode *name = NULL, *value_from = NULL, *value_file = NULL;
        const field fields[] = {
                {"name", &name},
                {"valueFrom", &value_from},
                {"valueFile", &value_file},
                {},
        };
        _cleanup_free_ char *path = NULL;
        char *value = NULL;
        const ynode *where;
        const char *key;
        int r;

        if (!pick(l, item, what, fields, NULL))
                return;
        if (!name) {
                error_at(l, item, "%s: missing 'name', the option it sets", what);
                return;
        }
        key = get_str(l, name, what);
        if (!key)
                return;
        if (key[0] == 0) {
                error_at(l, name, "%s: option names must not be empty", what);
                return;
        }
        if (!!value_from == !!value_file) {
                error_at(l, item,
                         "%s '%s': expected exactly one of valueFrom.secretKeyRef or valueFile",
                         what, key);
                return;
        }
        if (value_from) {
                const ynode *ref = NULL, *sname = NULL, *skey = NULL;
                const field from_fields[] = {{"secretKeyRef", &ref}, {}};
                const field ref_fields[] = {{"name", &sname}, {"key", &skey}, {}};
                const char *sn, *sk;

                if (!pick(l, value_from, "valueFrom", from_fields, NULL))
                        return;
                if (!ref) {
                        error_at(l, value_from, "valueFrom: missing 'secretKeyRef'");
                        return;
                }
                if (!pick(l, ref, "secretKeyRef", ref_fields, NULL))
                        return;
                if (!sname || !skey) {
                        error_at(l, ref, "secretKeyRef: expected both 'name' and 'key'");
                        return;
                }
                sn = get_name(l, sname, "secretKeyRef.name");
                sk = get_name(l, skey, "secretKeyRef.key");
                if (!sn || !sk)
                        return;
                if (asprintf(&path, "%s/secrets/%s/%s", l->dir, sn, sk) < 0) {
                        path = NULL;
                        l->oom = true;
                        return;
                }
                where = ref;
        } else {
                const char *f = get_str(l, value_file, "valueFile");

                if (!f)
                        return;
                if (f[0] == 0) {
                        error_at(l, value_file, "valueFile must not be empty");
                        return;
                }
                if (f[0] == '/')
                        path = strdup(f);
                else if (asprintf(&path, "%s/%s", l->dir, f) < 0)
                        path = NULL;
                if (!path) {
                        l->oom = true;
                        return;
                }
                where = value_file;
        }
        r = read_secret(path, &value);
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                error_at(l, where, "cannot read secret file '%s' for option '%s': %s", path, key,
                         secret_error(r));
                return;
        }
        option_add(l, o, name, key, value, true);
        explicit_bzero(value, strlen(value));
        free(value);
}

static void load_encrypt_options(loader *l, option_list *o, const ynode *seq, const char *what)
{
        if (seq->type != YNODE_SEQ) {
                error_at(l, seq, "%s: expected a list of {name, valueFrom or valueFile}, got %s",
                         what, config_yaml_describe(seq));
                return;
        }
        if (seq->n_items > CONFIG_MAX_OPTIONS) {
                error_at(l, seq, "%s: more than %u options", what, CONFIG_MAX_OPTIONS);
                return;
        }
        for (size_t i = 0; i < seq->n_items; i++)
                load_encrypt_option(l, o, seq->items[i], what);
}

static const struct {
        const char *name;
        config_scheme scheme;
} schemes[] = {
        {"http", CONFIG_SCHEME_HTTP},  {"https", CONFIG_SCHEME_HTTPS}, {"s3", CONFIG_SCHEME_S3},
        {"oss", CONFIG_SCHEME_OSS},    {"cos", CONFIG_SCHEME_COS},     {"file", CONFIG_SCHEME_FILE},
        {"local", CONFIG_SCHEME_FILE},
};

/* Checks URL's scheme and shape; derives the default mount name (last path segment, else the
 * host or bucket) into *ret_name (malloc'd). */
static bool check_url(loader *l, const ynode *where, const char *url, config_scheme *ret_scheme,
                      char **ret_name)
{
        const char *sep = strstr(url, "://"), *rest, *path, *last, *end;
        size_t slen, i;

        if (!sep || sep == url) {
                error_at(l, where,
                         "mountPoint '%s' is not a URL; expected SCHEME://... with scheme http, "
                         "https, s3, oss, cos, file or local",
                         url);
                return false;
        }
        slen = (size_t)(sep - url);
        for (i = 0; i < ELEMENTSOF(schemes); i++)
                if (strlen(schemes[i].name) == slen && strncasecmp(url, schemes[i].name, slen) == 0)
                        break;
        if (i == ELEMENTSOF(schemes)) {
                error_at(l, where,
                         "mountPoint '%s': unsupported scheme '%.*s'; expected http, https, s3, "
                         "oss, cos, file or local",
                         url, (int)MIN(slen, (size_t)32), url);
                return false;
        }
        *ret_scheme = schemes[i].scheme;
        rest = sep + 3;
        if (*ret_scheme == CONFIG_SCHEME_FILE) {
                if (rest[0] != '/') {
                        error_at(l, where,
                                 "mountPoint '%s': %.*s:// needs an absolute path, e.g. "
                                 "local:///srv/data",
                                 url, (int)slen, url);
                        return false;
                }
                path = rest;
        } else {
                path = strchr(rest, '/');
                if (!path)
                        path = rest + strlen(rest);
                if (path == rest) {
                        error_at(l, where, "mountPoint '%s': missing the %s after '://'", url,
                                 *ret_scheme <= CONFIG_SCHEME_HTTPS ? "host" : "bucket");
                        return false;
                }
        }
        /* The default name: the last non-empty path segment, else the host or bucket. */
        end = path + strlen(path);
        while (end > path && end[-1] == '/')
                end--;
        last = end;
        while (last > path && last[-1] != '/')
                last--;
        if (last == end) {
                last = rest;
                end = path;
        }
        {
                const char *q = memchr(last, '?', (size_t)(end - last));

                if (q)
                        end = q;
        }
        *ret_name = strndup(last, (size_t)(end - last));
        if (!*ret_name) {
                l->oom = true;
                return false;
        }
        return true;
}

static void load_mount(loader *l, config_dataset *d, const ynode **names, const ynode *item,
                       const option_list *shared)
{
        const ynode *mount_point = NULL, *name = NULL, *options = NULL, *encrypt = NULL;
        const field fields[] = {
                {"mountPoint", &mount_point},
                {"name", &name},
                {"options", &options},
                {"encryptOptions", &encrypt},
                {},
        };
        _cleanup_free_ char *derived = NULL;
        option_list o = {};
        config_scheme scheme;
        const char *url, *n;
        config_mount *m;

        if (!pick(l, item, "mount", fields, fluid_mount))
                return;
        if (!mount_point) {
                error_at(l, item, "mount: missing 'mountPoint', the URL of the remote store");
                return;
        }
        url = get_str(l, mount_point, "mountPoint");
        if (!url || !check_url(l, mount_point, url, &scheme, &derived))
                return;
        if (name)
                n = get_name(l, name, "mount name");
        else {
                n = derived;
                if (!name_ok(n)) {
                        error_at(l, mount_point,
                                 "mountPoint '%s': cannot derive a mount name from it; set 'name'",
                                 url);
                        return;
                }
        }
        if (!n)
                return;
        for (size_t i = 0; i < d->n_mounts; i++)
                if (streq(d->mounts[i].name, n)) {
                        const ynode *w = name ? name : mount_point;

                        error_at(l, w, "duplicate mount name '%s' in dataset '%s' (first at %u:%u)",
                                 n, d->name, names[i]->line, names[i]->column);
                        return;
                }

        if (options)
                load_options(l, &o, options, "options");
        if (encrypt)
                load_encrypt_options(l, &o, encrypt, "encryptOptions");
        /* Fluid's sharedOptions apply to every mount; the mount's own options take precedence. */
        for (size_t i = 0; i < shared->n; i++)
                if (!config_mount_option(&(config_mount){.options = o.items, .n_options = o.n},
                                         shared->items[i].key))
                        option_add(l, &o, shared->where[i], shared->items[i].key,
                                   shared->items[i].value, shared->items[i].secret);

        m = &d->mounts[d->n_mounts];
        *m = (config_mount){
                .name = l_strdup(l, n),
                .mount_point = l_strdup(l, url),
                .scheme = scheme,
                .options = o.items,
                .n_options = o.n,
        };
        free(o.where);
        names[d->n_mounts] = name ? name : mount_point;
        d->n_mounts++;
}

static void load_dataset(loader *l, const ynode *doc, const ynode *metadata, const ynode *spec)
{
        const ynode *mounts = NULL, *block_size = NULL, *sync = NULL, *shared = NULL,
                    *shared_enc = NULL, *name_node = NULL, *max_entries = NULL;
        const field fields[] = {
                {"mounts", &mounts},
                {"blockSize", &block_size},
                {"syncInterval", &sync},
                {"maxEntries", &max_entries},
                {"sharedOptions", &shared},
                {"sharedEncryptOptions", &shared_enc},
                {},
        };
        _cleanup_free_ const ynode **names = NULL;
        option_list shared_opts = {};
        config *c = l->c;
        config_dataset *d;
        const char *name;

        name = get_metadata_name(l, doc, metadata, "Dataset", &name_node);
        if (!name)
                return;
        for (size_t i = 0; i < c->n_datasets; i++)
                if (streq(c->datasets[i].name, name)) {
                        error_at(l, name_node, "duplicate dataset name '%s' (first at %u:%u)", name,
                                 l->dataset_info[i].name->line, l->dataset_info[i].name->column);
                        return;
                }
        if (c->n_datasets >= CONFIG_MAX_DATASETS) {
                error_at(l, doc, "more than %u datasets", CONFIG_MAX_DATASETS);
                return;
        }
        if (!spec) {
                error_at(l, doc, "Dataset '%s': missing 'spec' with the mounts", name);
                return;
        }
        if (!pick(l, spec, "Dataset spec", fields, fluid_dataset_spec))
                return;
        if (!CONFIG_GROW(c->datasets, l->n_datasets_alloc, c->n_datasets + 1) ||
            !CONFIG_GROW(l->dataset_info, l->n_dataset_info_alloc, c->n_datasets + 1)) {
                l->oom = true;
                return;
        }
        d = &c->datasets[c->n_datasets];
        *d = (config_dataset){
                .name = l_strdup(l, name),
                .block_size = CONFIG_DEFAULT_BLOCK_SIZE,
                .max_entries = CONFIG_DEFAULT_MAX_ENTRIES,
        };
        l->dataset_info[c->n_datasets] = (dataset_info){.name = name_node};
        c->n_datasets++;

        if (block_size) {
                uint64_t v;

                if (block_size->type != YNODE_SCALAR || config_yaml_is_null(block_size) ||
                    parse_size(block_size->value, &v) < 0)
                        error_at(l, block_size,
                                 "blockSize: expected a size such as 4Mi, 16Mi or 64Mi (got %s)",
                                 block_size->type == YNODE_SCALAR
                                         ? block_size->value
                                         : config_yaml_describe(block_size));
                else if (v < MIN_BLOCK_SIZE || v > MAX_BLOCK_SIZE || v % 4096 != 0)
                        error_at(l, block_size,
                                 "blockSize must be a multiple of 4Ki between 4Ki and 1Gi (got %s)",
                                 block_size->value);
                else
                        d->block_size = v;
        }
        if (sync)
                get_duration(l, sync, "syncInterval", &d->sync_interval_ms);
        if (max_entries &&
            (max_entries->type != YNODE_SCALAR ||
             parse_u64(max_entries->value, &d->max_entries) < 0 || d->max_entries == 0))
                error_at(l, max_entries,
                         "maxEntries: expected a positive number of files and directories (got %s)",
                         max_entries->type == YNODE_SCALAR ? max_entries->value
                                                           : config_yaml_describe(max_entries));

        if (shared)
                load_options(l, &shared_opts, shared, "sharedOptions");
        if (shared_enc)
                load_encrypt_options(l, &shared_opts, shared_enc, "sharedEncryptOptions");

        if (!mounts)
                error_at(l, spec, "Dataset '%s': missing 'mounts', the list of mount points", name);
        else if (check_list(l, mounts, "mounts", "mount", "mounts", CONFIG_MAX_MOUNTS,
                            " in one dataset")) {
                d->mounts = calloc(mounts->n_items, sizeof(*d->mounts));
                names = calloc(mounts->n_items, sizeof(*names));
                if (!d->mounts || !names)
                        l->oom = true;
                else
                        for (size_t i = 0; i < mounts->n_items; i++)
                                load_mount(l, d, names, mounts->items[i], &shared_opts);
        }
        option_list_done(&shared_opts);
}

/* ---- Runtimes --------------------------------------------------------------------------- */

static const char *const fluid_runtime_spec[] = {
        "worker",
        "properties",
        "jvmOptions",
        "jobMaster",
        "jobWorker",
        "apiGateway",
        "initUsers",
        "data",
        "runAs",
        "disablePrometheus",
        "hadoopConfig",
        "podMetadata",
        "volumes",
        "management",
        "imagePullSecrets",
        "secret",
        "user",
        "networkmode",
        "alluxioVersion",
        "goosefsVersion",
        "jindoVersion",
        "version",
        "labels",
        "logConfig",
        "cleanCachePolicy",
        "runtimeManagement",
        "tolerations",
        "nodeSelector",
        NULL,
};

static const char *const fluid_component[] = {
        "image",
        "imageTag",
        "imagePullPolicy",
        "imagePullSecrets",
        "jvmOptions",
        "properties",
        "env",
        "resources",
        "nodeSelector",
        "ports",
        "volumeMounts",
        "podMetadata",
        "disabled",
        "networkmode",
        "journal",
        "options",
        "labels",
        "args",
        "cleanPolicy",
        "global",
        "metrics",
        "launchMode",
        "tolerations",
        "annotations",
        NULL,
};

static const char *const fluid_level[] = {"volumeType", "volumeSource", "quotaList", NULL};

static bool get_ratio(loader *l, const ynode *n, const char *what, double *ret)
{
        if (n->type != YNODE_SCALAR || config_yaml_is_null(n) || parse_ratio(n->value, ret) < 0) {
                error_at(l, n, "%s: expected a number in (0, 1] such as 0.95 or \"0.95\" (got %s)",
                         what,
                         n->type == YNODE_SCALAR && !config_yaml_is_null(n)
                                 ? n->value
                                 : config_yaml_describe(n));
                return false;
        }
        return true;
}

static int tier_compare(const void *a, const void *b)
{
        const config_tier *x = a, *y = b;

        return (int)x->medium - (int)y->medium;
}

static void load_level(loader *l, config_runtime *rt, const ynode *item)
{
        const ynode *medium = NULL, *path = NULL, *quota = NULL, *high = NULL, *low = NULL;
        const field fields[] = {
                {"mediumtype", &medium}, {"path", &path}, {"quota", &quota},
                {"high", &high},         {"low", &low},   {},
        };
        config_tier t = {.high = DEFAULT_HIGH, .low = DEFAULT_LOW};
        const char *s, *p;
        bool ok = true;

        if (!pick(l, item, "tieredstore level", fields, fluid_level))
                return;
        if (!medium || !path || !quota) {
                error_at(l, item, "tieredstore level: missing '%s'",
                         !medium ? "mediumtype"
                         : !path ? "path"
                                 : "quota");
                return;
        }
        s = get_str(l, medium, "mediumtype");
        if (!s)
                return;
        if (streq(s, "MEM"))
                t.medium = CONFIG_MEDIUM_MEM;
        else if (streq(s, "SSD"))
                t.medium = CONFIG_MEDIUM_SSD;
        else if (streq(s, "HDD"))
                t.medium = CONFIG_MEDIUM_HDD;
        else {
                error_at(l, medium, "mediumtype must be MEM, SSD or HDD (got '%s')", s);
                ok = false;
        }
        p = get_abs_path(l, path, "path");
        if (!p)
                ok = false;
        else if (strchr(p, ',')) {
                error_at(l, path,
                         "path '%s': several paths in one level are not supported; write one "
                         "level per path",
                         p);
                ok = false;
        }
        if (quota->type != YNODE_SCALAR || config_yaml_is_null(quota) ||
            parse_size(quota->value, &t.quota) < 0) {
                error_at(l, quota,
                         "quota: expected a size such as 2G, 2Gi, 512Mi or a number of bytes "
                         "(got %s)",
                         quota->type == YNODE_SCALAR && !config_yaml_is_null(quota)
                                 ? quota->value
                                 : config_yaml_describe(quota));
                ok = false;
        } else if (t.quota == 0) {
                error_at(l, quota, "quota must be larger than 0");
                ok = false;
        }
        if (high && !get_ratio(l, high, "high", &t.high))
                ok = false;
        if (low && !get_ratio(l, low, "low", &t.low))
                ok = false;
        if (ok && !(t.low < t.high)) {
                error_at(l, low ? low : high, "low (%g) must be less than high (%g)", t.low,
                         t.high);
                ok = false;
        }
        if (!ok)
                return;
        /* Without trailing slashes, so that "<path>/weir/<node>" is the same however written. */
        {
                size_t len = strlen(p);

                while (len > 1 && p[len - 1] == '/')
                        len--;
                t.path = strndup(p, len);
                if (!t.path) {
                        l->oom = true;
                        return;
                }
        }
        for (size_t i = 0; i < rt->n_tiers; i++)
                if (streq(rt->tiers[i].path, t.path)) {
                        error_at(l, path, "path '%s' is used by two levels", p);
                        free(t.path);
                        return;
                }
        if (!t.path)
                return;
        rt->tiers[rt->n_tiers++] = t;
}

static void load_runtime(loader *l, const ynode *doc, const ynode *kind_node, const char *kind,
                         const ynode *metadata, const ynode *spec)
{
        const ynode *replicas = NULL, *master = NULL, *tieredstore = NULL, *fuse = NULL,
                    *name_node = NULL;
        const field fields[] = {
                {"replicas", &replicas},
                {"master", &master},
                {"tieredstore", &tieredstore},
                {"fuse", &fuse},
                {},
        };
        config *c = l->c;
        config_runtime *rt;
        runtime_info *info;
        const char *name;
        uint64_t v;

        name = get_metadata_name(l, doc, metadata, kind, &name_node);
        if (!name)
                return;
        for (size_t i = 0; i < c->n_runtimes; i++)
                if (streq(c->runtimes[i].name, name)) {
                        error_at(l, name_node,
                                 "a second runtime for dataset '%s' (the first, %s, is at %u:%u)",
                                 name, c->runtimes[i].kind, l->runtime_info[i].name->line,
                                 l->runtime_info[i].name->column);
                        return;
                }
        if (c->n_runtimes >= CONFIG_MAX_DATASETS) {
                error_at(l, doc, "more than %u runtimes", CONFIG_MAX_DATASETS);
                return;
        }
        if (!spec) {
                error_at(l, doc, "%s '%s': missing 'spec'", kind, name);
                return;
        }
        if (!pick(l, spec, "runtime spec", fields, fluid_runtime_spec))
                return;
        if (!CONFIG_GROW(c->runtimes, l->n_runtimes_alloc, c->n_runtimes + 1) ||
            !CONFIG_GROW(l->runtime_info, l->n_runtime_info_alloc, c->n_runtimes + 1)) {
                l->oom = true;
                return;
        }
        rt = &c->runtimes[c->n_runtimes];
        info = &l->runtime_info[c->n_runtimes];
        *rt = (config_runtime){
                .name = l_strdup(l, name),
                .kind = l_strdup(l, kind),
                .replicas = DEFAULT_REPLICAS,
                .master_replicas = 1,
                .attr_timeout_ms = DEFAULT_FUSE_TIMEOUT_MS,
                .entry_timeout_ms = DEFAULT_FUSE_TIMEOUT_MS,
        };
        *info = (runtime_info){.name = name_node, .kind = kind_node};
        c->n_runtimes++;

        info->replicas = replicas;
        if (replicas && get_uint(l, replicas, "replicas", CONFIG_MAX_NODES, &v)) {
                if (v == 0)
                        error_at(l, replicas,
                                 "replicas (the number of workers) must be at "
                                 "least 1 (got 0)");
                else
                        rt->replicas = (unsigned)v;
        }

        if (master) {
                const ynode *mr = NULL;
                const field master_fields[] = {{"replicas", &mr}, {}};

                if (pick(l, master, "master", master_fields, fluid_component) && mr) {
                        info->master_replicas = mr;
                        if (mr->type != YNODE_SCALAR || config_yaml_is_null(mr) ||
                            parse_u64(mr->value, &v) < 0 || v % 2 == 0 || v > CONFIG_MAX_NODES)
                                error_at(l, mr,
                                         "master.replicas must be 1 or an odd number >= 3 (got "
                                         "%s)",
                                         mr->type == YNODE_SCALAR && !config_yaml_is_null(mr)
                                                 ? mr->value
                                                 : config_yaml_describe(mr));
                        else
                                rt->master_replicas = (unsigned)v;
                }
        }

        if (fuse) {
                const ynode *attr = NULL, *entry = NULL;
                const field fuse_fields[] = {
                        {"attrTimeout", &attr},
                        {"entryTimeout", &entry},
                        {},
                };

                if (pick(l, fuse, "fuse", fuse_fields, fluid_component)) {
                        if (attr)
                                get_duration(l, attr, "fuse.attrTimeout", &rt->attr_timeout_ms);
                        if (entry)
                                get_duration(l, entry, "fuse.entryTimeout", &rt->entry_timeout_ms);
                }
        }

        if (!tieredstore) {
                error_at(l, spec, "%s '%s': missing 'tieredstore' with the cache levels", kind,
                         name);
                return;
        }
        {
                const ynode *levels = NULL;
                const field ts_fields[] = {{"levels", &levels}, {}};

                if (!pick(l, tieredstore, "tieredstore", ts_fields, NULL))
                        return;
                if (!levels) {
                        error_at(l, tieredstore, "tieredstore: missing 'levels'");
                        return;
                }
                info->levels = levels;
                if (!check_list(l, levels, "levels", "level", "levels", CONFIG_MAX_TIERS, ""))
                        return;
                rt->tiers = calloc(levels->n_items, sizeof(*rt->tiers));
                if (!rt->tiers) {
                        l->oom = true;
                        return;
                }
                for (size_t i = 0; i < levels->n_items; i++)
                        load_level(l, rt, levels->items[i]);
                /* Fastest first: the worker evicts from one level to the next. qsort is not
                 * stable, so ties keep their order by a stable insertion sort instead. */
                for (size_t i = 1; i < rt->n_tiers; i++)
                        for (size_t j = i;
                             j > 0 && tier_compare(&rt->tiers[j - 1], &rt->tiers[j]) > 0; j--) {
                                config_tier tmp = rt->tiers[j];

                                rt->tiers[j] = rt->tiers[j - 1];
                                rt->tiers[j - 1] = tmp;
                        }
        }
}

/* ---- documents -------------------------------------------------------------------------- */

static const char *const runtime_kinds[] = {
        "Runtime", "AlluxioRuntime", "GooseFSRuntime", "JindoRuntime", NULL,
};

static void load_document(loader *l, const ynode *doc)
{
        const ynode *api = NULL, *kind = NULL, *metadata = NULL, *spec = NULL;
        const field fields[] = {
                {"apiVersion", &api}, {"kind", &kind}, {"metadata", &metadata}, {"spec", &spec}, {},
        };
        static const char *const fluid_top[] = {"status", NULL};
        const char *k, *a;
        bool is_cluster, is_dataset, is_runtime = false;

        if (!doc || config_yaml_is_null(doc))
                return; /* an empty document, e.g. after a trailing '---' */
        if (doc->type != YNODE_MAP) {
                error_at(l, doc,
                         "a document must be a mapping with apiVersion, kind, metadata and spec, "
                         "got %s",
                         config_yaml_describe(doc));
                return;
        }
        if (!pick(l, doc, "document", fields, fluid_top))
                return;
        if (!kind) {
                error_at(l, doc,
                         "missing 'kind'; expected Cluster, Dataset, Runtime, AlluxioRuntime, "
                         "GooseFSRuntime or JindoRuntime");
                return;
        }
        k = get_str(l, kind, "kind");
        if (!k)
                return;
        is_cluster = streq(k, "Cluster");
        is_dataset = streq(k, "Dataset");
        for (const char *const *r = runtime_kinds; *r; r++)
                if (streq(*r, k))
                        is_runtime = true;
        if (!is_cluster && !is_dataset && !is_runtime) {
                error_at(l, kind,
                         "unknown kind '%s'; expected Cluster, Dataset, Runtime, AlluxioRuntime, "
                         "GooseFSRuntime or JindoRuntime",
                         k);
                return;
        }
        if (!api) {
                error_at(l, doc, "%s: missing 'apiVersion' (expected %s)", k,
                         is_cluster ? "weir.io/v1" : "data.fluid.io/v1alpha1 or weir.io/v1");
                return;
        }
        a = get_str(l, api, "apiVersion");
        if (!a)
                return;
        if (is_cluster ? !streq(a, "weir.io/v1")
                       : !streq(a, "weir.io/v1") && !streq(a, "data.fluid.io/v1alpha1")) {
                error_at(l, api, "apiVersion '%s' is not supported for kind %s; expected %s", a, k,
                         is_cluster ? "weir.io/v1" : "data.fluid.io/v1alpha1 or weir.io/v1");
                return;
        }
        if (is_cluster)
                load_cluster(l, doc, kind, metadata, spec);
        else if (is_dataset)
                load_dataset(l, doc, metadata, spec);
        else
                load_runtime(l, doc, kind, k, metadata, spec);
}

/* ---- resolving the plan ----------------------------------------------------------------- */

static bool tiers_equal(const config_runtime *a, const config_runtime *b)
{
        if (a->n_tiers != b->n_tiers)
                return false;
        for (size_t i = 0; i < a->n_tiers; i++)
                if (a->tiers[i].medium != b->tiers[i].medium ||
                    !streq(a->tiers[i].path, b->tiers[i].path) ||
                    a->tiers[i].quota != b->tiers[i].quota ||
                    a->tiers[i].high != b->tiers[i].high || a->tiers[i].low != b->tiers[i].low)
                        return false;
        return true;
}

static void resolve_runtimes(loader *l, const ynode **ret_mr_where)
{
        config *c = l->c;
        size_t first_mr = SIZE_MAX;

        c->master_replicas = 1;
        c->worker_replicas = 0;
        for (size_t i = 0; i < c->n_runtimes; i++) {
                config_runtime *rt = &c->runtimes[i];
                const runtime_info *info = &l->runtime_info[i];
                bool bound = false;

                for (size_t j = 0; j < c->n_datasets; j++)
                        if (streq(c->datasets[j].name, rt->name)) {
                                c->datasets[j].runtime = rt;
                                bound = true;
                        }
                if (!bound)
                        error_at(l, info->name,
                                 "%s '%s' has no Dataset named '%s'; a runtime binds to the "
                                 "dataset of the same name",
                                 rt->kind, rt->name, rt->name);

                if (i == 0) {
                        c->master_replicas = rt->master_replicas;
                        first_mr = 0;
                } else if (rt->master_replicas != c->master_replicas) {
                        const runtime_info *f = &l->runtime_info[first_mr];
                        const ynode *w = info->master_replicas ? info->master_replicas : info->name;
                        const ynode *fw = f->master_replicas ? f->master_replicas : f->name;

                        error_at(l, w,
                                 "master.replicas of %s '%s' (%u) differs from %s '%s' (%u, at "
                                 "%u:%u); all runtimes share the masters and must agree",
                                 rt->kind, rt->name, rt->master_replicas,
                                 c->runtimes[first_mr].kind, c->runtimes[first_mr].name,
                                 c->master_replicas, fw->line, fw->column);
                }
                c->worker_replicas = MAX(c->worker_replicas, rt->replicas);
                if (i > 0 && c->runtimes[0].n_tiers > 0 && rt->n_tiers > 0 &&
                    !tiers_equal(&c->runtimes[0], rt))
                        warning_at(l, info->levels ? info->levels : info->name,
                                   "tieredstore of %s '%s' differs from %s '%s' (at %u:%u); the "
                                   "workers share one cache and use the first runtime's levels, "
                                   "ignoring",
                                   rt->kind, rt->name, c->runtimes[0].kind, c->runtimes[0].name,
                                   l->runtime_info[0].name->line, l->runtime_info[0].name->column);
        }
        if (c->n_runtimes > 0) {
                c->tiers = c->runtimes[0].tiers;
                c->n_tiers = c->runtimes[0].n_tiers;
                const runtime_info *f = &l->runtime_info[0];
                *ret_mr_where = f->master_replicas ? f->master_replicas : f->name;
        }
}

/* Where the runtime that asks for the most workers says so. */
static const ynode *replicas_where(const loader *l)
{
        const config *c = l->c;

        for (size_t i = 0; i < c->n_runtimes; i++)
                if (c->runtimes[i].replicas == c->worker_replicas)
                        return l->runtime_info[i].replicas ? l->runtime_info[i].replicas
                                                           : l->runtime_info[i].name;
        return l->cluster_nodes;
}

static void resolve_placement(loader *l, const ynode *mr_where)
{
        config *c = l->c;
        unsigned masters = 0, workers = 0, capable_m = 0, capable_w = 0;
        const ynode *where = mr_where ? mr_where : l->cluster_nodes;

        if (c->master_replicas > c->n_nodes) {
                error_at(l, where,
                         "master.replicas (%u) must not be larger than the number of nodes (%zu)",
                         c->master_replicas, c->n_nodes);
                return;
        }
        /* Nodes with roles run exactly those; the others fill up masters and workers in order. */
        for (size_t i = 0; i < c->n_nodes; i++) {
                const node_info *info = &l->node_info[i];

                if (info->has_roles) {
                        c->nodes[i].master = info->role_master;
                        c->nodes[i].worker = info->role_worker;
                        c->nodes[i].fuse = info->role_fuse;
                        masters += info->role_master;
                        workers += info->role_worker;
                        capable_m += info->role_master;
                        capable_w += info->role_worker;
                } else {
                        capable_m++;
                        capable_w++;
                }
        }
        if (masters > c->master_replicas) {
                /* Point at the first node with the role master beyond master.replicas. */
                unsigned seen = 0;

                for (size_t i = 0; i < c->n_nodes; i++)
                        if (l->node_info[i].role_master && ++seen > c->master_replicas) {
                                where = l->node_info[i].roles;
                                break;
                        }
                error_at(l, where,
                         "%u nodes have the role master but master.replicas is %u; they must "
                         "agree",
                         masters, c->master_replicas);
                return;
        }
        if (capable_m < c->master_replicas) {
                error_at(l, where,
                         "master.replicas is %u but only %u nodes may run a master (the others "
                         "list roles without master)",
                         c->master_replicas, capable_m);
                return;
        }
        if (workers > c->worker_replicas && c->n_runtimes > 0) {
                error_at(l, replicas_where(l),
                         "%u nodes have the role worker but replicas (workers) is %u; they must "
                         "agree",
                         workers, c->worker_replicas);
                return;
        }
        if (capable_w < c->worker_replicas) {
                error_at(l, replicas_where(l),
                         "replicas (workers) is %u but only %u nodes may run a worker",
                         c->worker_replicas, capable_w);
                return;
        }
        for (size_t i = 0; i < c->n_nodes; i++) {
                if (l->node_info[i].has_roles)
                        continue;
                c->nodes[i].fuse = true;
                if (masters < c->master_replicas) {
                        c->nodes[i].master = true;
                        masters++;
                }
                if (workers < c->worker_replicas) {
                        c->nodes[i].worker = true;
                        workers++;
                }
        }
        for (size_t i = 0, id = 1; i < c->n_nodes; i++)
                if (c->nodes[i].master)
                        c->nodes[i].raft_id = (unsigned)id++;
}

typedef struct endpoint {
        size_t node;
        const char *what;
        uint16_t port;
} endpoint;

static void resolve_ports(loader *l)
{
        config *c = l->c;
        _cleanup_free_ endpoint *e = calloc(c->n_nodes * 3 + 1, sizeof(*e));
        size_t n = 0;

        if (!e) {
                l->oom = true;
                return;
        }
        for (size_t i = 0; i < c->n_nodes; i++) {
                if (c->nodes[i].master) {
                        e[n++] = (endpoint){i, "raft", c->nodes[i].raft_port};
                        e[n++] = (endpoint){i, "master API", c->nodes[i].master_port};
                }
                if (c->nodes[i].worker)
                        e[n++] = (endpoint){i, "worker API", c->nodes[i].worker_port};
        }
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < i; j++) {
                        const config_node *a = &c->nodes[e[j].node], *b = &c->nodes[e[i].node];

                        if (e[i].port != e[j].port || !streq(a->address, b->address))
                                continue;
                        error_at(l, l->node_info[e[i].node].item,
                                 "node '%s': %s port %s:%u is already used by the %s of node '%s'",
                                 b->name, e[i].what, b->address, e[i].port, e[j].what, a->name);
                        break;
                }
        /* Several nodes on one host need their own directories. */
        for (size_t i = 0; i < c->n_nodes; i++)
                for (size_t j = 0; j < i; j++) {
                        const config_node *a = &c->nodes[j], *b = &c->nodes[i];
                        const char *shared = NULL;

                        if (!streq(a->address, b->address))
                                continue;
                        if (streq(a->data_dir, b->data_dir))
                                shared = "dataDir";
                        else if (streq(a->runtime_dir, b->runtime_dir))
                                shared = "runtimeDir";
                        else if (a->fuse && b->fuse && c->n_datasets > 0 &&
                                 streq(a->mount_root, b->mount_root))
                                shared = "mountRoot";
                        if (shared)
                                error_at(l, l->node_info[i].item,
                                         "nodes '%s' and '%s' share the address %s and a %s; "
                                         "nodes on one host need their own",
                                         a->name, b->name, a->address, shared);
                }
}

static void resolve(loader *l)
{
        config *c = l->c;
        const ynode *mr_where = NULL;

        if (!l->cluster_doc) {
                diag(l, false, 1, 1,
                     "no Cluster document; add one (apiVersion: weir.io/v1, kind: Cluster) "
                     "listing the nodes");
        }
        for (size_t i = 0; i < c->n_nodes; i++) {
                config_node *n = &c->nodes[i];
                const node_info *info = &l->node_info[i];

                if (!info->has_data_dir)
                        n->data_dir =
                                l_strdup(l, l->data_dir ? l->data_dir : CONFIG_DEFAULT_DATA_DIR);
                if (!info->has_runtime_dir)
                        n->runtime_dir = l_strdup(l, l->runtime_dir ? l->runtime_dir
                                                                    : CONFIG_DEFAULT_RUNTIME_DIR);
                if (!info->has_mount_root)
                        n->mount_root = l_strdup(l, l->mount_root ? l->mount_root
                                                                  : CONFIG_DEFAULT_MOUNT_ROOT);
                if (!info->has_raft_port)
                        n->raft_port = l->raft_port;
                if (!info->has_master_port)
                        n->master_port = l->master_port;
                if (!info->has_worker_port)
                        n->worker_port = l->worker_port;
        }
        resolve_runtimes(l, &mr_where);
        if (c->n_runtimes == 0 && c->n_datasets > 0)
                diag(l, true, l->dataset_info[0].name->line, l->dataset_info[0].name->column,
                     "no runtime document: no workers will run and datasets are read from the "
                     "remote store without a cache");
        if (l->n_errors > 0 || l->oom || c->n_nodes == 0)
                return; /* placement on a broken config would only add noise */
        resolve_placement(l, mr_where);
        if (l->n_errors > 0 || l->oom)
                return;
        resolve_ports(l);
}

/* ---- entry points ----------------------------------------------------------------------- */

static void diags_sort(config_diag *d, size_t n)
{
        /* Insertion sort: stable, and n is bounded by CONFIG_MAX_DIAGS. */
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0; j--) {
                        config_diag *a = &d[j - 1], *b = &d[j];
                        config_diag tmp;

                        if (a->line < b->line || (a->line == b->line && a->column <= b->column))
                                break;
                        tmp = *a;
                        *a = *b;
                        *b = tmp;
                }
}

static void loader_done(loader *l)
{
        config_yaml_done(&l->yaml);
        for (size_t i = 0; i < l->n_diags; i++)
                free(l->diags[i].message);
        free(l->diags);
        free(l->dir);
        free(l->node_info);
        free(l->dataset_info);
        free(l->runtime_info);
        free(l->data_dir);
        free(l->runtime_dir);
        free(l->mount_root);
        config_free(l->c);
}

static char *dir_of(const char *name)
{
        const char *slash = strrchr(name, '/');

        if (!slash)
                return strdup(".");
        if (slash == name)
                return strdup("/");
        return strndup(name, (size_t)(slash - name));
}

int config_load_buffer(const char *name, const char *data, size_t len, config **ret,
                       config_diags *diags)
{
        loader l = {
                .name = name ? name : "<buffer>",
                .raft_port = CONFIG_DEFAULT_RAFT_PORT,
                .master_port = CONFIG_DEFAULT_MASTER_PORT,
                .worker_port = CONFIG_DEFAULT_WORKER_PORT,
        };
        int r = 0;

        if (diags)
                *diags = (config_diags){};
        l.dir = dir_of(l.name);
        l.c = calloc(1, sizeof(*l.c));
        if (!l.dir || !l.c) {
                loader_done(&l);
                return -ENOMEM;
        }
        l.c->path = strdup(l.name);
        l.c->election_timeout_ms = DEFAULT_ELECTION;
        l.c->heartbeat_timeout_ms = DEFAULT_HEARTBEAT;
        l.c->api.max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
        l.c->api.max_connections_per_client = CONFIG_DEFAULT_MAX_PER_CLIENT;
        l.c->api.request_timeout_ms = CONFIG_DEFAULT_REQUEST_TIMEOUT;
        l.c->master_replicas = 1;
        if (!l.c->path)
                l.oom = true;

        if (len > CONFIG_MAX_FILE_SIZE) {
                diag(&l, false, 1, 1, "file larger than %u bytes", CONFIG_MAX_FILE_SIZE);
                r = -EINVAL;
        } else {
                r = config_yaml_parse(&l.yaml, data, len);
                if (r == -EINVAL && l.yaml.error)
                        diag(&l, false, l.yaml.error_line, l.yaml.error_column, "%s", l.yaml.error);
                else if (r == -EINVAL)
                        r = -ENOMEM; /* the message itself could not be allocated */
        }
        if (r >= 0) {
                for (size_t i = 0; i < l.yaml.n_docs && !l.oom; i++)
                        load_document(&l, l.yaml.docs[i]);
                if (!l.oom)
                        resolve(&l);
        }
        if (l.oom)
                r = -ENOMEM;
        else if (r >= 0 && l.n_errors > 0)
                r = -EINVAL;

        if (l.n_dropped > 0 && l.n_diags > 0) {
                /* The last slot becomes a summary, an error only when errors were dropped. */
                config_diag *last = &l.diags[l.n_diags - 1];
                char *msg;

                if (asprintf(&msg, "too many problems; %zu more not shown", l.n_dropped + 1) >= 0) {
                        free(last->message);
                        *last = (config_diag){.warning = l.n_dropped_errors == 0 && last->warning,
                                              .line = last->line,
                                              .column = last->column,
                                              .message = msg};
                }
        }
        diags_sort(l.diags, l.n_diags);
        log_debug("%s: %zu diagnostics, %zu errors", l.name, l.n_diags, l.n_errors);
        if (diags) {
                diags->items = TAKE_PTR(l.diags);
                diags->n = l.n_diags;
                l.n_diags = 0;
        }
        if (r >= 0 && ret)
                *ret = TAKE_PTR(l.c);
        loader_done(&l);
        return r;
}

int config_load(const char *path, config **ret, config_diags *diags)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, alloc = 0;

        if (diags)
                *diags = (config_diags){};
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_debug_errno(errno, "Failed to open %s: %m", path);
        /* Read at most one byte past the limit, so that pipes work and huge files stop early. */
        for (;;) {
                ssize_t k;

                if (n == alloc) {
                        if (alloc > CONFIG_MAX_FILE_SIZE)
                                break;
                        if (!CONFIG_GROW(buf, alloc,
                                         MIN(MAX(alloc * 2, (size_t)65536),
                                             (size_t)CONFIG_MAX_FILE_SIZE + 1)))
                                return -ENOMEM;
                }
                k = read(fd, buf + n, alloc - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_debug_errno(errno, "Failed to read %s: %m", path);
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        return config_load_buffer(path, buf ? buf : "", n, ret, diags);
}

static void config_runtime_done(config_runtime *rt)
{
        free(rt->name);
        free(rt->kind);
        for (size_t i = 0; i < rt->n_tiers; i++)
                free(rt->tiers[i].path);
        free(rt->tiers);
}

static void config_mount_done(config_mount *m)
{
        option_list o = {.items = m->options, .n = m->n_options};

        free(m->name);
        free(m->mount_point);
        option_list_done(&o);
}

config *config_free(config *c)
{
        if (!c)
                return NULL;
        free(c->path);
        free(c->cluster_name);
        for (size_t i = 0; i < c->n_nodes; i++) {
                free(c->nodes[i].name);
                free(c->nodes[i].address);
                free(c->nodes[i].data_dir);
                free(c->nodes[i].runtime_dir);
                free(c->nodes[i].mount_root);
        }
        free(c->nodes);
        for (size_t i = 0; i < c->n_datasets; i++) {
                for (size_t j = 0; j < c->datasets[i].n_mounts; j++)
                        config_mount_done(&c->datasets[i].mounts[j]);
                free(c->datasets[i].mounts);
                free(c->datasets[i].name);
        }
        free(c->datasets);
        for (size_t i = 0; i < c->n_runtimes; i++)
                config_runtime_done(&c->runtimes[i]);
        free(c->runtimes);
        free(c->token_file);
        free(c->raft_secret_file);
        free(c->api.read_token_file);
        free(c->api.bind_address);
        free(c->api.tls_cert_file);
        free(c->api.tls_key_file);
        free(c->api.tls_ca_file);
        free(c);
        return NULL;
}

void config_diags_done(config_diags *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->items[i].message);
        free(d->items);
        *d = (config_diags){};
}

void config_diags_print(const config_diags *d, const char *file)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                fprintf(stderr, "%s:%u:%u: %s: %s\n", file, d->items[i].line, d->items[i].column,
                        d->items[i].warning ? "warning" : "error", d->items[i].message);
}

const char *config_mount_option(const config_mount *m, const char *key)
{
        for (size_t i = 0; i < m->n_options; i++)
                if (streq(m->options[i].key, key))
                        return m->options[i].value;
        return NULL;
}

const config_node *config_find_node(const config *c, const char *name)
{
        for (size_t i = 0; i < c->n_nodes; i++)
                if (streq(c->nodes[i].name, name))
                        return &c->nodes[i];
        return NULL;
}

const config_dataset *config_find_dataset(const config *c, const char *name)
{
        for (size_t i = 0; i < c->n_datasets; i++)
                if (streq(c->datasets[i].name, name))
                        return &c->datasets[i];
        return NULL;
}

const config_node *config_master_by_raft_id(const config *c, unsigned raft_id)
{
        if (raft_id == 0)
                return NULL;
        for (size_t i = 0; i < c->n_nodes; i++)
                if (c->nodes[i].master && c->nodes[i].raft_id == raft_id)
                        return &c->nodes[i];
        return NULL;
}

size_t config_n_masters(const config *c)
{
        size_t n = 0;

        for (size_t i = 0; i < c->n_nodes; i++)
                n += c->nodes[i].master;
        return n;
}

const char *config_resolve_path(const char *arg)
{
        const char *e;

        if (arg && arg[0])
                return arg;
        e = getenv("WEIR_CONFIG");
        if (e && e[0])
                return e;
        return CONFIG_DEFAULT_PATH;
}

int config_tier_dir(const config_tier *t, const char *node, char **ret)
{
        size_t len = strlen(t->path);
        char *s;

        while (len > 1 && t->path[len - 1] == '/')
                len--;
        if (asprintf(&s, "%.*s%sweir/%s", (int)len, t->path, len == 1 ? "" : "/", node) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int config_fuse_mount_point(const config_node *n, const char *dataset, char **ret)
{
        size_t len = strlen(n->mount_root);
        char *s;

        while (len > 1 && n->mount_root[len - 1] == '/')
                len--;
        if (asprintf(&s, "%.*s%s%s", (int)len, n->mount_root, len == 1 ? "" : "/", dataset) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}
