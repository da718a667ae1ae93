/* The cluster YAML's Cluster document: nodes, ports, directories, Raft and API settings. */
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
#include "config-internal.h"
#include "config.h"
#include "log.h"
#include "parse.h"

/* ---- Cluster ---------------------------------------------------------------------------- */

static const char *const k8s_metadata[] = {
        "namespace",       "labels",     "annotations",       "uid",
        "resourceVersion", "generation", "creationTimestamp", "generateName",
        "ownerReferences", "finalizers", "managedFields",     NULL,
};

const char *cfg_get_metadata_name(loader *l, const ynode *doc, const ynode *metadata,
                                  const char *kind, const ynode **ret_node)
{
        const ynode *name = NULL;
        const field fields[] = {{"name", &name}, {}};
        char what[64];

        if (!metadata) {
                cfg_error_at(l, doc, "%s: missing 'metadata' with the name", kind);
                return NULL;
        }
        snprintf(what, sizeof(what), "%s metadata", kind);
        if (!cfg_pick(l, metadata, what, fields, k8s_metadata))
                return NULL;
        if (!name) {
                cfg_error_at(l, metadata, "%s: missing 'name'", what);
                return NULL;
        }
        *ret_node = name;
        snprintf(what, sizeof(what), "%s name", kind);
        return cfg_get_name(l, name, what);
}

/* The directories and ports a node may set in its own entry and spec sets for every node. */
typedef struct node_settings {
        const ynode *dir[3];  /* dataDir, runtimeDir, mountRoot */
        const ynode *port[3]; /* raftPort, masterPort, workerPort */
} node_settings;

/* One field a line (clang-format would glue the macro body together). */
// clang-format off
#define NODE_SETTINGS_FIELDS(ns)                \
        {"dataDir", &(ns).dir[0]},              \
        {"runtimeDir", &(ns).dir[1]},           \
        {"mountRoot", &(ns).dir[2]},            \
        {"raftPort", &(ns).port[0]},            \
        {"masterPort", &(ns).port[1]},          \
        {"workerPort", &(ns).port[2]}
// clang-format on

/* Reads what NS names into DIRS and PORTS (same order); HAS (NULL for spec's) says which of the
 * six (dirs, then ports) were given and valid. */
static void load_node_settings(loader *l, const node_settings *ns, char **dirs[3],
                               uint16_t *ports[3], bool *has[6])
{
        static const char *const dir_keys[3] = {"dataDir", "runtimeDir", "mountRoot"};
        static const char *const port_keys[3] = {"raftPort", "masterPort", "workerPort"};
        const char *s;

        for (size_t i = 0; i < 3; i++)
                if (ns->dir[i] && (s = cfg_get_abs_path(l, ns->dir[i], dir_keys[i]))) {
                        *dirs[i] = cfg_l_strdup(l, s);
                        if (has)
                                *has[i] = true;
                }
        for (size_t i = 0; i < 3; i++)
                if (ns->port[i]) {
                        bool ok = cfg_get_port(l, ns->port[i], port_keys[i], ports[i]);
                        if (has)
                                *has[3 + i] = ok;
                }
}

static void load_node(loader *l, const ynode *item, size_t idx)
{
        const ynode *name = NULL, *address = NULL, *roles = NULL;
        node_settings ns = {};
        const field fields[] = {
                {"name", &name},
                {"address", &address},
                {"roles", &roles},
                NODE_SETTINGS_FIELDS(ns),
                {},
        };
        config_node *node = &l->c->nodes[l->c->n_nodes];
        node_info *info = &l->node_info[l->c->n_nodes];
        const char *s;

        *info = (node_info){.item = item};
        if (!cfg_pick(l, item, "node", fields, NULL))
                return;
        if (!name) {
                cfg_error_at(l, item, "node %zu: missing 'name'", idx + 1);
                return;
        }
        s = cfg_get_name(l, name, "node name");
        if (!s)
                return;
        for (size_t i = 0; i < l->c->n_nodes; i++)
                if (cfg_streq(l->c->nodes[i].name, s)) {
                        cfg_error_at(l, name, "duplicate node name '%s' (first at %u:%u)", s,
                                     l->node_info[i].name->line, l->node_info[i].name->column);
                        return;
                }
        info->name = name;
        if (!address) {
                cfg_error_at(l, item, "node '%s': missing 'address' (an IP address or host name)",
                             s);
                return;
        }
        {
                const char *a = cfg_get_str(l, address, "address");

                if (!a)
                        return;
                /* One colon is HOST:PORT; IPv6 literals have at least two. */
                if (a[0] == 0 || strpbrk(a, " \t/[]") ||
                    (strchr(a, ':') && strchr(a, ':') == strrchr(a, ':'))) {
                        cfg_error_at(l, address,
                                     "address: expected an IPv4 or IPv6 address or a host name, "
                                     "without port or brackets (got '%s')",
                                     a);
                        return;
                }
                node->address = cfg_l_strdup(l, a);
        }
        node->name = cfg_l_strdup(l, s);

        if (roles) {
                info->has_roles = true;
                info->roles = roles;
                if (roles->type != YNODE_SEQ) {
                        cfg_error_at(l, roles,
                                     "roles: expected a list of master, worker and fuse, got %s",
                                     config_yaml_describe(roles));
                } else
                        for (size_t i = 0; i < roles->n_items; i++) {
                                const ynode *r = roles->items[i];
                                const char *v = cfg_get_str(l, r, "roles");
                                bool *flag;

                                if (!v)
                                        continue;
                                if (cfg_streq(v, "master"))
                                        flag = &info->role_master;
                                else if (cfg_streq(v, "worker"))
                                        flag = &info->role_worker;
                                else if (cfg_streq(v, "fuse"))
                                        flag = &info->role_fuse;
                                else {
                                        cfg_error_at(l, r,
                                                     "roles: unknown role '%s'; expected master, "
                                                     "worker or fuse",
                                                     v);
                                        continue;
                                }
                                if (*flag)
                                        cfg_error_at(l, r, "roles: '%s' given twice", v);
                                *flag = true;
                        }
        }
        load_node_settings(
                l, &ns, (char **[3]){&node->data_dir, &node->runtime_dir, &node->mount_root},
                (uint16_t *[3]){&node->raft_port, &node->master_port, &node->worker_port},
                (bool *[6]){&info->has_data_dir, &info->has_runtime_dir, &info->has_mount_root,
                            &info->has_raft_port, &info->has_master_port, &info->has_worker_port});
        l->c->n_nodes++;
}

/* A file named in the YAML: absolute, or relative to the YAML's directory. NULL on error. */
static char *get_file(loader *l, const ynode *n, const char *what)
{
        const char *s = cfg_get_str(l, n, what);
        char *p = NULL;

        if (!s)
                return NULL;
        if (s[0] == 0) {
                cfg_error_at(l, n, "%s must not be empty", what);
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

        if (!cfg_pick(l, api, "api", fields, NULL))
                return;
        if (read_token && !l->c->token_file)
                cfg_error_at(l, read_token,
                             "api.readTokenFile needs tokenFile: without the cluster token nothing "
                             "could write");
        else if (read_token)
                a->read_token_file = get_file(l, read_token, "api.readTokenFile");
        if (bind && (s = cfg_get_str(l, bind, "api.bindAddress"))) {
                if (s[0] == 0 || strlen(s) > 255 || strpbrk(s, " /[]"))
                        cfg_error_at(l, bind,
                                     "api.bindAddress: expected 'node' or an address without port "
                                     "or brackets, such as 0.0.0.0 or :: (got '%s')",
                                     s);
                else if (!cfg_streq(s, "node") && !(a->bind_address = strdup(s)))
                        l->oom = true;
        }
        if (tls && cfg_pick(l, tls, "api.tls", tls_fields, NULL)) {
                if (cert)
                        a->tls_cert_file = get_file(l, cert, "api.tls.certFile");
                if (key)
                        a->tls_key_file = get_file(l, key, "api.tls.keyFile");
                if (ca)
                        a->tls_ca_file = get_file(l, ca, "api.tls.caFile");
                if (!cert != !key)
                        cfg_error_at(l, tls, "api.tls: certFile and keyFile go together");
        }
        if (max_conn && cfg_get_uint(l, max_conn, "api.maxConnections", 65536, &v)) {
                if (v < 16)
                        cfg_error_at(l, max_conn, "api.maxConnections must be at least 16");
                else
                        a->max_connections = (unsigned)v;
        }
        if (per_client && cfg_get_uint(l, per_client, "api.maxConnectionsPerClient", 65536, &v)) {
                if (v < 1)
                        cfg_error_at(l, per_client,
                                     "api.maxConnectionsPerClient must be at least 1");
                else
                        a->max_connections_per_client = (unsigned)v;
        }
        if (timeout && cfg_get_duration(l, timeout, "api.requestTimeout", &v)) {
                if (v < 100 || v > 600000)
                        cfg_error_at(
                                l, timeout,
                                "api.requestTimeout must be between 100ms and 10m (got %llums)",
                                (unsigned long long)v);
                else
                        a->request_timeout_ms = v;
        }
}

void cfg_load_cluster(loader *l, const ynode *doc, const ynode *kind, const ynode *metadata,
                      const ynode *spec)
{
        const ynode *nodes = NULL, *token_file = NULL, *raft = NULL, *name_node = NULL, *api = NULL;
        node_settings ns = {};
        const field fields[] = {
                {"nodes", &nodes},          {"api", &api},
                {"tokenFile", &token_file}, {"raft", &raft},
                NODE_SETTINGS_FIELDS(ns),   {},
        };
        config *c = l->c;
        const char *name, *s;

        if (l->cluster_doc) {
                cfg_error_at(l, kind,
                             "a second Cluster document (the first is at %u:%u); "
                             "expected exactly one",
                             l->cluster_doc->line, l->cluster_doc->column);
                return;
        }
        l->cluster_doc = doc;
        name = cfg_get_metadata_name(l, doc, metadata, "Cluster", &name_node);
        if (name)
                c->cluster_name = cfg_l_strdup(l, name);
        if (!spec) {
                cfg_error_at(l, doc, "Cluster: missing 'spec' with the nodes");
                return;
        }
        if (!cfg_pick(l, spec, "Cluster spec", fields, NULL))
                return;

        load_node_settings(l, &ns, (char **[3]){&l->data_dir, &l->runtime_dir, &l->mount_root},
                           (uint16_t *[3]){&l->raft_port, &l->master_port, &l->worker_port}, NULL);

        if (token_file && (s = cfg_get_str(l, token_file, "tokenFile"))) {
                if (s[0] == 0)
                        cfg_error_at(l, token_file, "tokenFile must not be empty");
                else if (s[0] == '/')
                        c->token_file = cfg_l_strdup(l, s);
                else if (asprintf(&c->token_file, "%s/%s", l->dir, s) < 0) {
                        c->token_file = NULL;
                        l->oom = true;
                }
        }

        if (api)
                load_api(l, api);

        if (raft) {
                const ynode *election = NULL, *heartbeat = NULL, *secret = NULL, *sched = NULL;
                const field raft_fields[] = {
                        {"electionTimeout", &election},
                        {"heartbeatTimeout", &heartbeat},
                        {"secretFile", &secret},
                        {"loopScheduling", &sched},
                        {},
                };

                if (cfg_pick(l, raft, "raft", raft_fields, NULL)) {
                        uint64_t v;

                        if (election && cfg_get_duration(l, election, "raft.electionTimeout", &v)) {
                                if (v < 10 || v > 60000)
                                        cfg_error_at(
                                                l, election,
                                                "raft.electionTimeout must be between 10ms and "
                                                "60s (got %llums)",
                                                (unsigned long long)v);
                                else
                                        c->election_timeout_ms = v;
                        }
                        if (heartbeat &&
                            cfg_get_duration(l, heartbeat, "raft.heartbeatTimeout", &v)) {
                                if (v < 1 || v > 60000)
                                        cfg_error_at(
                                                l, heartbeat,
                                                "raft.heartbeatTimeout must be between 1ms and "
                                                "60s (got %llums)",
                                                (unsigned long long)v);
                                else
                                        c->heartbeat_timeout_ms = v;
                        }
                        if (secret && (s = cfg_get_str(l, secret, "raft.secretFile"))) {
                                if (s[0] == 0)
                                        cfg_error_at(l, secret,
                                                     "raft.secretFile must not be empty");
                                else if (s[0] == '/')
                                        c->raft_secret_file = cfg_l_strdup(l, s);
                                else if (asprintf(&c->raft_secret_file, "%s/%s", l->dir, s) < 0) {
                                        c->raft_secret_file = NULL;
                                        l->oom = true;
                                }
                        }
                        if (sched && (s = cfg_get_str(l, sched, "raft.loopScheduling"))) {
                                if (strcmp(s, "normal") == 0)
                                        c->raft_loop_normal = true;
                                else if (strcmp(s, "realtime") != 0)
                                        cfg_error_at(l, sched,
                                                     "raft.loopScheduling must be realtime or "
                                                     "normal (got '%s')",
                                                     s);
                        }
                        if (c->heartbeat_timeout_ms >= c->election_timeout_ms)
                                cfg_error_at(l, heartbeat ? heartbeat : election,
                                             "raft.heartbeatTimeout (%llums) must be shorter than "
                                             "raft.electionTimeout (%llums)",
                                             (unsigned long long)c->heartbeat_timeout_ms,
                                             (unsigned long long)c->election_timeout_ms);
                }
        }

        if (!nodes) {
                cfg_error_at(l, spec, "Cluster spec: missing 'nodes', the list of hosts");
                return;
        }
        l->cluster_nodes = nodes;
        if (!cfg_check_list(l, nodes, "nodes", "node", "nodes", CONFIG_MAX_NODES, ""))
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
