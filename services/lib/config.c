/* The cluster YAML: libyaml events -> a small bounded tree -> a validated, immutable struct
 * config. This file: the documents of the stream, resolving the plan, the entry points. The
 * sections of the documents are read by config-cluster.c, config-dataset.c and
 * config-runtime.c with the readers of config-read.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "cleanup.h"
#include "config-internal.h"
#include "config.h"
#include "log.h"
#include "parse.h"

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
                cfg_error_at(
                        l, doc,
                        "a document must be a mapping with apiVersion, kind, metadata and spec, "
                        "got %s",
                        config_yaml_describe(doc));
                return;
        }
        if (!cfg_pick(l, doc, "document", fields, fluid_top))
                return;
        if (!kind) {
                cfg_error_at(l, doc,
                             "missing 'kind'; expected Cluster, Dataset, Runtime, AlluxioRuntime, "
                             "GooseFSRuntime or JindoRuntime");
                return;
        }
        k = cfg_get_str(l, kind, "kind");
        if (!k)
                return;
        is_cluster = cfg_streq(k, "Cluster");
        is_dataset = cfg_streq(k, "Dataset");
        for (const char *const *r = runtime_kinds; *r; r++)
                if (cfg_streq(*r, k))
                        is_runtime = true;
        if (!is_cluster && !is_dataset && !is_runtime) {
                cfg_error_at(
                        l, kind,
                        "unknown kind '%s'; expected Cluster, Dataset, Runtime, AlluxioRuntime, "
                        "GooseFSRuntime or JindoRuntime",
                        k);
                return;
        }
        if (!api) {
                cfg_error_at(l, doc, "%s: missing 'apiVersion' (expected %s)", k,
                             is_cluster ? "weir.io/v1" : "data.fluid.io/v1alpha1 or weir.io/v1");
                return;
        }
        a = cfg_get_str(l, api, "apiVersion");
        if (!a)
                return;
        if (is_cluster ? !cfg_streq(a, "weir.io/v1")
                       : !cfg_streq(a, "weir.io/v1") && !cfg_streq(a, "data.fluid.io/v1alpha1")) {
                cfg_error_at(l, api, "apiVersion '%s' is not supported for kind %s; expected %s", a,
                             k, is_cluster ? "weir.io/v1" : "data.fluid.io/v1alpha1 or weir.io/v1");
                return;
        }
        if (is_cluster)
                cfg_load_cluster(l, doc, kind, metadata, spec);
        else if (is_dataset)
                cfg_load_dataset(l, doc, metadata, spec);
        else
                cfg_load_runtime(l, doc, kind, k, metadata, spec);
}

/* ---- resolving the plan ----------------------------------------------------------------- */

static bool tiers_equal(const config_runtime *a, const config_runtime *b)
{
        if (a->n_tiers != b->n_tiers)
                return false;
        for (size_t i = 0; i < a->n_tiers; i++)
                if (a->tiers[i].medium != b->tiers[i].medium ||
                    !cfg_streq(a->tiers[i].path, b->tiers[i].path) ||
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
                        if (cfg_streq(c->datasets[j].name, rt->name)) {
                                c->datasets[j].runtime = rt;
                                bound = true;
                        }
                if (!bound)
                        cfg_error_at(l, info->name,
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

                        cfg_error_at(l, w,
                                     "master.replicas of %s '%s' (%u) differs from %s '%s' (%u, at "
                                     "%u:%u); all runtimes share the masters and must agree",
                                     rt->kind, rt->name, rt->master_replicas,
                                     c->runtimes[first_mr].kind, c->runtimes[first_mr].name,
                                     c->master_replicas, fw->line, fw->column);
                }
                c->worker_replicas = MAX(c->worker_replicas, rt->replicas);
                if (i > 0 && c->runtimes[0].n_tiers > 0 && rt->n_tiers > 0 &&
                    !tiers_equal(&c->runtimes[0], rt))
                        cfg_warning_at(
                                l, info->levels ? info->levels : info->name,
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
                cfg_error_at(
                        l, where,
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
                cfg_error_at(l, where,
                             "%u nodes have the role master but master.replicas is %u; they must "
                             "agree",
                             masters, c->master_replicas);
                return;
        }
        if (capable_m < c->master_replicas) {
                cfg_error_at(l, where,
                             "master.replicas is %u but only %u nodes may run a master (the others "
                             "list roles without master)",
                             c->master_replicas, capable_m);
                return;
        }
        if (workers > c->worker_replicas && c->n_runtimes > 0) {
                cfg_error_at(
                        l, replicas_where(l),
                        "%u nodes have the role worker but replicas (workers) is %u; they must "
                        "agree",
                        workers, c->worker_replicas);
                return;
        }
        if (capable_w < c->worker_replicas) {
                cfg_error_at(l, replicas_where(l),
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

                        if (e[i].port != e[j].port || !cfg_streq(a->address, b->address))
                                continue;
                        cfg_error_at(
                                l, l->node_info[e[i].node].item,
                                "node '%s': %s port %s:%u is already used by the %s of node '%s'",
                                b->name, e[i].what, b->address, e[i].port, e[j].what, a->name);
                        break;
                }
        /* Several nodes on one host need their own directories. */
        for (size_t i = 0; i < c->n_nodes; i++)
                for (size_t j = 0; j < i; j++) {
                        const config_node *a = &c->nodes[j], *b = &c->nodes[i];
                        const char *shared = NULL;

                        if (!cfg_streq(a->address, b->address))
                                continue;
                        if (cfg_streq(a->data_dir, b->data_dir))
                                shared = "dataDir";
                        else if (cfg_streq(a->runtime_dir, b->runtime_dir))
                                shared = "runtimeDir";
                        else if (a->fuse && b->fuse && c->n_datasets > 0 &&
                                 cfg_streq(a->mount_root, b->mount_root))
                                shared = "mountRoot";
                        if (shared)
                                cfg_error_at(l, l->node_info[i].item,
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
                cfg_diag(l, false, 1, 1,
                         "no Cluster document; add one (apiVersion: weir.io/v1, kind: Cluster) "
                         "listing the nodes");
        }
        for (size_t i = 0; i < c->n_nodes; i++) {
                config_node *n = &c->nodes[i];
                const node_info *info = &l->node_info[i];

                if (!info->has_data_dir)
                        n->data_dir = cfg_l_strdup(l, l->data_dir ? l->data_dir
                                                                  : CONFIG_DEFAULT_DATA_DIR);
                if (!info->has_runtime_dir)
                        n->runtime_dir = cfg_l_strdup(
                                l, l->runtime_dir ? l->runtime_dir : CONFIG_DEFAULT_RUNTIME_DIR);
                if (!info->has_mount_root)
                        n->mount_root = cfg_l_strdup(l, l->mount_root ? l->mount_root
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
                cfg_diag(l, true, l->dataset_info[0].name->line, l->dataset_info[0].name->column,
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
                cfg_diag(&l, false, 1, 1, "file larger than %u bytes", CONFIG_MAX_FILE_SIZE);
                r = -EINVAL;
        } else {
                r = config_yaml_parse(&l.yaml, data, len);
                if (r == -EINVAL && l.yaml.error)
                        cfg_diag(&l, false, l.yaml.error_line, l.yaml.error_column, "%s",
                                 l.yaml.error);
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
                        if (!ARRAY_GROW(buf, alloc,
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
        cfg_option_list_done(&o);
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
                if (cfg_streq(m->options[i].key, key))
                        return m->options[i].value;
        return NULL;
}

const config_node *config_find_node(const config *c, const char *name)
{
        for (size_t i = 0; i < c->n_nodes; i++)
                if (cfg_streq(c->nodes[i].name, name))
                        return &c->nodes[i];
        return NULL;
}

const config_dataset *config_find_dataset(const config *c, const char *name)
{
        for (size_t i = 0; i < c->n_datasets; i++)
                if (cfg_streq(c->datasets[i].name, name))
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
