/* The cluster YAML's runtime documents (AlluxioRuntime, GooseFSRuntime, JindoRuntime, Runtime). */
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
                cfg_error_at(l, n,
                             "%s: expected a number in (0, 1] such as 0.95 or \"0.95\" (got %s)",
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

        if (!cfg_pick(l, item, "tieredstore level", fields, fluid_level))
                return;
        if (!medium || !path || !quota) {
                cfg_error_at(l, item, "tieredstore level: missing '%s'",
                             !medium ? "mediumtype"
                             : !path ? "path"
                                     : "quota");
                return;
        }
        s = cfg_get_str(l, medium, "mediumtype");
        if (!s)
                return;
        if (cfg_streq(s, "MEM"))
                t.medium = CONFIG_MEDIUM_MEM;
        else if (cfg_streq(s, "SSD"))
                t.medium = CONFIG_MEDIUM_SSD;
        else if (cfg_streq(s, "HDD"))
                t.medium = CONFIG_MEDIUM_HDD;
        else {
                cfg_error_at(l, medium, "mediumtype must be MEM, SSD or HDD (got '%s')", s);
                ok = false;
        }
        p = cfg_get_abs_path(l, path, "path");
        if (!p)
                ok = false;
        else if (strchr(p, ',')) {
                cfg_error_at(l, path,
                             "path '%s': several paths in one level are not supported; write one "
                             "level per path",
                             p);
                ok = false;
        }
        if (quota->type != YNODE_SCALAR || config_yaml_is_null(quota) ||
            parse_size(quota->value, &t.quota) < 0) {
                cfg_error_at(l, quota,
                             "quota: expected a size such as 2G, 2Gi, 512Mi or a number of bytes "
                             "(got %s)",
                             quota->type == YNODE_SCALAR && !config_yaml_is_null(quota)
                                     ? quota->value
                                     : config_yaml_describe(quota));
                ok = false;
        } else if (t.quota == 0) {
                cfg_error_at(l, quota, "quota must be larger than 0");
                ok = false;
        }
        if (high && !get_ratio(l, high, "high", &t.high))
                ok = false;
        if (low && !get_ratio(l, low, "low", &t.low))
                ok = false;
        if (ok && !(t.low < t.high)) {
                cfg_error_at(l, low ? low : high, "low (%g) must be less than high (%g)", t.low,
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
                if (cfg_streq(rt->tiers[i].path, t.path)) {
                        cfg_error_at(l, path, "path '%s' is used by two levels", p);
                        free(t.path);
                        return;
                }
        if (!t.path)
                return;
        rt->tiers[rt->n_tiers++] = t;
}

void cfg_load_runtime(loader *l, const ynode *doc, const ynode *kind_node, const char *kind,
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

        name = cfg_get_metadata_name(l, doc, metadata, kind, &name_node);
        if (!name)
                return;
        for (size_t i = 0; i < c->n_runtimes; i++)
                if (cfg_streq(c->runtimes[i].name, name)) {
                        cfg_error_at(
                                l, name_node,
                                "a second runtime for dataset '%s' (the first, %s, is at %u:%u)",
                                name, c->runtimes[i].kind, l->runtime_info[i].name->line,
                                l->runtime_info[i].name->column);
                        return;
                }
        if (c->n_runtimes >= CONFIG_MAX_DATASETS) {
                cfg_error_at(l, doc, "more than %u runtimes", CONFIG_MAX_DATASETS);
                return;
        }
        if (!spec) {
                cfg_error_at(l, doc, "%s '%s': missing 'spec'", kind, name);
                return;
        }
        if (!cfg_pick(l, spec, "runtime spec", fields, fluid_runtime_spec))
                return;
        if (!ARRAY_GROW(c->runtimes, l->n_runtimes_alloc, c->n_runtimes + 1) ||
            !ARRAY_GROW(l->runtime_info, l->n_runtime_info_alloc, c->n_runtimes + 1)) {
                l->oom = true;
                return;
        }
        rt = &c->runtimes[c->n_runtimes];
        info = &l->runtime_info[c->n_runtimes];
        *rt = (config_runtime){
                .name = cfg_l_strdup(l, name),
                .kind = cfg_l_strdup(l, kind),
                .replicas = DEFAULT_REPLICAS,
                .master_replicas = 1,
                .attr_timeout_ms = DEFAULT_FUSE_TIMEOUT_MS,
                .entry_timeout_ms = DEFAULT_FUSE_TIMEOUT_MS,
        };
        *info = (runtime_info){.name = name_node, .kind = kind_node};
        c->n_runtimes++;

        info->replicas = replicas;
        if (replicas && cfg_get_uint(l, replicas, "replicas", CONFIG_MAX_NODES, &v)) {
                if (v == 0)
                        cfg_error_at(l, replicas,
                                     "replicas (the number of workers) must be at "
                                     "least 1 (got 0)");
                else
                        rt->replicas = (unsigned)v;
        }

        if (master) {
                const ynode *mr = NULL;
                const field master_fields[] = {{"replicas", &mr}, {}};

                if (cfg_pick(l, master, "master", master_fields, fluid_component) && mr) {
                        info->master_replicas = mr;
                        if (mr->type != YNODE_SCALAR || config_yaml_is_null(mr) ||
                            parse_u64(mr->value, &v) < 0 || v % 2 == 0 || v > CONFIG_MAX_NODES)
                                cfg_error_at(l, mr,
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

                if (cfg_pick(l, fuse, "fuse", fuse_fields, fluid_component)) {
                        if (attr)
                                cfg_get_duration(l, attr, "fuse.attrTimeout", &rt->attr_timeout_ms);
                        if (entry)
                                cfg_get_duration(l, entry, "fuse.entryTimeout",
                                                 &rt->entry_timeout_ms);
                }
        }

        if (!tieredstore) {
                cfg_error_at(l, spec, "%s '%s': missing 'tieredstore' with the cache levels", kind,
                             name);
                return;
        }
        {
                const ynode *levels = NULL;
                const field ts_fields[] = {{"levels", &levels}, {}};

                if (!cfg_pick(l, tieredstore, "tieredstore", ts_fields, NULL))
                        return;
                if (!levels) {
                        cfg_error_at(l, tieredstore, "tieredstore: missing 'levels'");
                        return;
                }
                info->levels = levels;
                if (!cfg_check_list(l, levels, "levels", "level", "levels", CONFIG_MAX_TIERS, ""))
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
