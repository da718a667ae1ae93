/* Applying an edited cluster YAML to a running cluster: the pure comparison (see config-apply.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config-apply.h"
#include "ufs/ufs.h"

static int plan_add_change(config_plan *p, const char *fmt, ...) _printf_(2, 3);
static int plan_add_change(config_plan *p, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        char **a = realloc(p->changes, (p->n_changes + 1) * sizeof(*a));
        if (!a) {
                free(s);
                return -ENOMEM;
        }
        p->changes = a;
        p->changes[p->n_changes++] = s;
        return 0;
}

static int plan_refuse(config_plan *p, const char *document, const char *key, const char *fmt, ...)
        _printf_(4, 5);
static int plan_refuse(config_plan *p, const char *document, const char *key, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;

        va_start(ap, fmt);
        int n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        config_refusal *a = realloc(p->refusals, (p->n_refusals + 1) * sizeof(*a));
        if (!a) {
                free(msg);
                return -ENOMEM;
        }
        p->refusals = a;
        config_refusal *r = &p->refusals[p->n_refusals];
        r->document = strdup(document);
        r->key = strdup(key);
        r->message = msg;
        if (!r->document || !r->key) {
                free(r->document);
                free(r->key);
                free(msg);
                return -ENOMEM;
        }
        p->n_refusals++;
        return 0;
}

void config_plan_done(config_plan *p)
{
        for (size_t i = 0; i < p->n_refusals; i++) {
                free(p->refusals[i].document);
                free(p->refusals[i].key);
                free(p->refusals[i].message);
        }
        for (size_t i = 0; i < p->n_changes; i++)
                free(p->changes[i]);
        free(p->refusals);
        free(p->changes);
        *p = (config_plan){};
}

char *config_refusal_format(const config_refusal *r)
{
        char *s = NULL;
        if (asprintf(&s, "%s: %s: %s", r->document, r->key, r->message) < 0)
                return NULL;
        return s;
}

static const char *jstr(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

static long long jint(const json_t *o, const char *key)
{
        return json_integer_value(json_object_get(o, key));
}

static size_t node_index(const config *c, const config_node *n)
{
        return (size_t)(n - c->nodes);
}

/* The store kind a mount point's URL names: changing it would turn the files of a running
 * mount into another store's, so it is refused; http <-> https is the same kind. */
static const char *url_kind(const char *url)
{
        static const struct {
                const char *prefix, *kind;
        } kinds[] = {
                {"http://", "http"}, {"https://", "http"}, {"s3://", "s3"},       {"oss://", "oss"},
                {"cos://", "cos"},   {"file://", "local"}, {"local://", "local"},
        };
        for (size_t i = 0; url && i < ELEMENTSOF(kinds); i++)
                if (strncasecmp(url, kinds[i].prefix, strlen(kinds[i].prefix)) == 0)
                        return kinds[i].kind;
        return "unknown";
}

/* The runtime document that sets master.replicas, for messages ("Cluster" without one). */
static void master_document(const config *c, char *buf, size_t len)
{
        if (c->n_runtimes > 0)
                snprintf(buf, len, "%s %s", c->runtimes[0].kind, c->runtimes[0].name);
        else
                snprintf(buf, len, "Cluster");
}

static int plan_masters(const config *next, const json_t *running, config_plan *p)
{
        const json_t *masters = json_object_get(running, "masters");
        size_t i, kept = 0;
        json_t *rm;
        char key[128];
        int r;

        json_array_foreach(masters, i, rm) {
                const char *name = jstr(rm, "node") ?: "";
                const char *address = jstr(rm, "address") ?: "";
                unsigned id = (unsigned)jint(rm, "id");
                const config_node *nn = config_find_node(next, name);
                const config_node *holder = config_master_by_raft_id(next, id);

                if (nn && nn->master)
                        kept++;
                if (holder && strcmp(holder->name, name) != 0) {
                        snprintf(key, sizeof(key), "spec.nodes[%zu]", node_index(next, holder));
                        r = plan_refuse(p, "Cluster", key,
                                        "node %s would become master with raft id %u, which "
                                        "running master %s holds: masters are numbered in "
                                        "spec.nodes order, so add new masters after the existing "
                                        "ones and remove only the last ones",
                                        holder->name, id, name);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!nn || !nn->master) {
                        p->masters_change = true;
                        r = plan_add_change(p,
                                            "remove master %s (raft id %u) from the Raft "
                                            "membership; its weir-master then exits",
                                            name, id);
                        if (r < 0)
                                return r;
                        continue;
                }
                size_t ni = node_index(next, nn);
                if (strcmp(nn->address, address) != 0) {
                        snprintf(key, sizeof(key), "spec.nodes[%zu].address", ni);
                        r = plan_refuse(p, "Cluster", key,
                                        "running master %s is at %s and cannot move to %s (remove "
                                        "it from the masters and apply, then add it back)",
                                        name, address, nn->address);
                        if (r < 0)
                                return r;
                }
                /* What a running master cannot change under it: its ports. */
                const struct {
                        const char *yaml_key, *json_key; /* spec.nodes[].KEY; the master's */
                        unsigned port;                   /* in NEXT */
                        const char *what, *why;          /* "running master NAME WHAT PORTWHY" */
                } fixed[] = {
                        {"raftPort", "raft_port", nn->raft_port, "uses raft port",
                         "; a member's Raft address cannot change"},
                        {"masterPort", "master_port", nn->master_port, "serves its API on port",
                         ", which cannot change while it runs"},
                };
                for (size_t f = 0; f < ELEMENTSOF(fixed); f++) {
                        if (fixed[f].port == jint(rm, fixed[f].json_key))
                                continue;
                        snprintf(key, sizeof(key), "spec.nodes[%zu].%s", ni, fixed[f].yaml_key);
                        r = plan_refuse(p, "Cluster", key, "running master %s %s %lld%s", name,
                                        fixed[f].what, jint(rm, fixed[f].json_key), fixed[f].why);
                        if (r < 0)
                                return r;
                }
        }
        if (json_array_size(masters) > 0 && kept == 0) {
                char doc[300];
                master_document(next, doc, sizeof(doc));
                r = plan_refuse(p, doc, "spec.master.replicas",
                                "no running master stays a master: at least one must, since the "
                                "new ones join through it");
                if (r < 0)
                        return r;
        }

        for (size_t k = 0; k < next->n_nodes; k++) {
                const config_node *n = &next->nodes[k];
                bool running_member = false;

                if (!n->master)
                        continue;
                json_array_foreach(masters, i, rm)
                        if (strcmp(jstr(rm, "node") ?: "", n->name) == 0)
                                running_member = true;
                if (running_member)
                        continue;
                p->masters_change = true;
                r = plan_add_change(p,
                                    "add master %s (raft id %u) at %s:%u: it starts empty, joins "
                                    "as a non-voter and becomes a voter once caught up",
                                    n->name, n->raft_id, n->address, n->raft_port);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int plan_datasets(const config *next, const json_t *running, config_plan *p)
{
        const json_t *datasets = json_object_get(running, "datasets");
        size_t i;
        json_t *rd;
        char doc[300], key[128];
        int r;

        json_array_foreach(datasets, i, rd) {
                const char *name = jstr(rd, "name") ?: "";
                const config_dataset *nd = config_find_dataset(next, name);

                if (!nd) {
                        r = plan_add_change(p,
                                            "dataset %s is no longer in the file: no FUSE mount "
                                            "of it starts any more (stop running ones with "
                                            "systemctl stop weir-fuse@%s); the masters keep its "
                                            "state",
                                            name, name);
                        if (r < 0)
                                return r;
                        continue;
                }
                snprintf(doc, sizeof(doc), "Dataset %s", name);
                if (json_is_integer(json_object_get(rd, "block_size")) &&
                    (unsigned long long)jint(rd, "block_size") != nd->block_size) {
                        r = plan_refuse(p, doc, "spec.blockSize",
                                        "the running dataset has blocks of %lld bytes, cached on "
                                        "the workers by that size; it cannot change (create a new "
                                        "dataset instead)",
                                        jint(rd, "block_size"));
                        if (r < 0)
                                return r;
                }
                const json_t *mounts = json_object_get(rd, "mounts");
                for (size_t j = 0; j < nd->n_mounts; j++) {
                        const config_mount *nm = &nd->mounts[j];
                        size_t k;
                        json_t *rm;
                        bool found = false;

                        json_array_foreach(mounts, k, rm) {
                                if (strcmp(jstr(rm, "name") ?: "", nm->name) != 0)
                                        continue;
                                found = true;
                                const char *old_kind = url_kind(jstr(rm, "mount_point"));
                                const char *new_kind = url_kind(nm->mount_point);
                                if (strcmp(old_kind, new_kind) != 0) {
                                        snprintf(key, sizeof(key), "spec.mounts[%zu].mountPoint",
                                                 j);
                                        r = plan_refuse(p, doc, key,
                                                        "mount %s reads a store of kind %s in "
                                                        "the running cluster and cannot change "
                                                        "to kind %s (give the new mount another "
                                                        "name)",
                                                        nm->name, old_kind, new_kind);
                                } else {
                                        _cleanup_free_ char *url = ufs_url_redact(nm->mount_point);
                                        if (!url)
                                                return -ENOMEM;
                                        r = 0;
                                        if (strcmp(url, jstr(rm, "mount_point") ?: "") != 0) {
                                                p->datasets_change = true;
                                                r = plan_add_change(p,
                                                                    "dataset %s: mount %s moves "
                                                                    "to %s (listed at the next "
                                                                    "sync)",
                                                                    name, nm->name, url);
                                        }
                                }
                                if (r < 0)
                                        return r;
                        }
                        if (!found) {
                                p->datasets_change = true;
                                r = plan_add_change(p, "dataset %s: add mount %s", name, nm->name);
                                if (r < 0)
                                        return r;
                        }
                }
        }
        for (size_t k = 0; k < next->n_datasets; k++) {
                const config_dataset *d = &next->datasets[k];
                bool known = false;

                json_array_foreach(datasets, i, rd)
                        if (strcmp(jstr(rd, "name") ?: "", d->name) == 0)
                                known = true;
                if (known)
                        continue;
                p->datasets_change = true;
                r = plan_add_change(p,
                                    "add dataset %s (%zu mount%s): the leader records it and "
                                    "syncs it; weir-fuse@%s starts on the FUSE nodes",
                                    d->name, d->n_mounts, d->n_mounts == 1 ? "" : "s", d->name);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void roles_text(bool master, bool worker, bool fuse, char *buf, size_t len)
{
        snprintf(buf, len, "%s%s%s", master ? " master" : "", worker ? " worker" : "",
                 fuse ? " fuse" : "");
        if (!buf[0])
                snprintf(buf, len, " (none)");
}

static int plan_nodes(const config *next, const json_t *running, config_plan *p)
{
        const json_t *nodes = json_object_get(running, "nodes");
        char roles[64];
        int r;

        for (size_t k = 0; k < next->n_nodes; k++) {
                const config_node *n = &next->nodes[k];
                const json_t *rn = NULL, *it;
                size_t i;

                json_array_foreach(nodes, i, it)
                        if (strcmp(jstr(it, "name") ?: "", n->name) == 0)
                                rn = it;
                if (!rn) {
                        roles_text(n->master, n->worker, n->fuse, roles, sizeof(roles));
                        r = plan_add_change(p, "add node %s at %s, running:%s", n->name, n->address,
                                            roles);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!n->master && strcmp(jstr(rn, "address") ?: "", n->address) != 0) {
                        r = plan_add_change(p,
                                            "node %s moves from %s to %s: restart its daemons "
                                            "there",
                                            n->name, jstr(rn, "address") ?: "?", n->address);
                        if (r < 0)
                                return r;
                }
                bool ow = json_is_true(json_object_get(rn, "worker"));
                if (ow != n->worker) {
                        r = plan_add_change(p,
                                            n->worker ? "node %s: start weir-worker"
                                                      : "node %s: weir-worker is no longer "
                                                        "wanted (systemctl stop weir-worker "
                                                        "there)",
                                            n->name);
                        if (r < 0)
                                return r;
                }
        }
        size_t i;
        json_t *it;
        json_array_foreach(nodes, i, it) {
                const char *name = jstr(it, "name") ?: "";
                if (config_find_node(next, name))
                        continue;
                r = plan_add_change(p,
                                    "node %s is no longer in the file: stop weir.target there "
                                    "(after its master, if any, was removed)",
                                    name);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_plan_apply(const config *next, const json_t *running, config_plan *ret)
{
        config_plan p = {};
        int r;

        if (!json_is_object(running) || jint(running, "version") != CONFIG_RUNNING_VERSION ||
            !json_is_array(json_object_get(running, "masters")) ||
            !json_is_array(json_object_get(running, "datasets")) ||
            !json_is_array(json_object_get(running, "nodes")))
                return -EBADMSG;

        const char *old_name = jstr(running, "cluster");
        if (strcmp(old_name ?: "", next->cluster_name ?: "") != 0) {
                r = plan_refuse(&p, "Cluster", "metadata.name",
                                "the running cluster is named '%s': the name is part of every "
                                "request id and cannot change",
                                old_name ?: "");
                if (r < 0)
                        goto fail;
        }
        r = plan_masters(next, running, &p);
        if (r >= 0)
                r = plan_datasets(next, running, &p);
        if (r >= 0)
                r = plan_nodes(next, running, &p);
        if (r < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        config_plan_done(&p);
        return r;
}

json_t *config_masters_json(const config *c)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < c->n_nodes; i++) {
                const config_node *n = &c->nodes[i];
                if (!n->master)
                        continue;
                if (json_array_append_new(a, json_pack("{s:i,s:s,s:s,s:i,s:i}", "id",
                                                       (int)n->raft_id, "node", n->name, "address",
                                                       n->address, "raft_port", (int)n->raft_port,
                                                       "master_port", (int)n->master_port)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *datasets_json(const config *c)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < c->n_datasets; i++) {
                const config_dataset *d = &c->datasets[i];
                json_t *mounts = json_array();
                for (size_t j = 0; mounts && j < d->n_mounts; j++) {
                        _cleanup_free_ char *url = ufs_url_redact(d->mounts[j].mount_point);
                        if (!url ||
                            json_array_append_new(mounts,
                                                  json_pack("{s:s,s:s}", "name", d->mounts[j].name,
                                                            "mount_point", url)) < 0) {
                                json_decref(mounts);
                                mounts = NULL;
                        }
                }
                if (!mounts ||
                    json_array_append_new(a, json_pack("{s:s,s:I,s:o}", "name", d->name,
                                                       "block_size", (json_int_t)d->block_size,
                                                       "mounts", mounts)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

json_t *config_running_json(const config *c, const json_t *masters, const json_t *datasets)
{
        json_t *nodes = json_array();
        for (size_t i = 0; nodes && i < c->n_nodes; i++) {
                const config_node *n = &c->nodes[i];
                if (json_array_append_new(nodes,
                                          json_pack("{s:s,s:s,s:b,s:b,s:b}", "name", n->name,
                                                    "address", n->address, "master", n->master,
                                                    "worker", n->worker, "fuse", n->fuse)) < 0) {
                        json_decref(nodes);
                        nodes = NULL;
                }
        }
        json_t *m = masters ? json_deep_copy(masters) : config_masters_json(c);
        json_t *d = datasets ? json_deep_copy(datasets) : datasets_json(c);
        if (!nodes || !m || !d) {
                json_decref(nodes);
                json_decref(m);
                json_decref(d);
                return NULL;
        }
        return json_pack("{s:i,s:s?,s:o,s:o,s:o}", "version", CONFIG_RUNNING_VERSION, "cluster",
                         c->cluster_name, "masters", m, "nodes", nodes, "datasets", d);
}
