/* weirctl runtime: Fluid's runtime columns (READY/DESIRED MASTERS, MASTER PHASE, READY/DESIRED
 * WORKERS, WORKER PHASE, READY/DESIRED FUSES, FUSE PHASE, AGE) from the YAML's wishes and the
 * master leader's view (GET /v1/masters, /v1/workers, /v1/fuses, /v1/datasets/NAME). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "config-load.h"
#include "config.h"
#include "apiauth.h"
#include "ctl.h"
#include "httpc.h"
#include "log.h"

/* GET PATH from any master that answers (followers redirect); the JSON or NULL. */
static json_t *master_json(const config *cfg, httpc *h, const char *path)
{
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *n = &cfg->nodes[i];
                _cleanup_free_ char *url = NULL;
                httpc_response res = {};
                json_t *j;

                if (!n->master)
                        continue;
                char base[320];

                if (apiauth_base_url(cfg, n->address, n->master_port, base, sizeof(base)) < 0 ||
                    asprintf(&url, "%s%s", base, path) < 0)
                        return NULL;
                if (httpc_get(h, url, &res) < 0)
                        continue;
                if (res.status != 200 || !res.json) {
                        httpc_response_done(&res);
                        continue;
                }
                j = json_incref(res.json);
                httpc_response_done(&res);
                return j;
        }
        return NULL;
}

static const char *phase(unsigned ready, unsigned desired, bool usable)
{
        if (!usable || ready == 0)
                return "NotReady";
        return ready >= desired ? "Ready" : "PartialReady";
}

static void format_age(double created, char *buf, size_t len)
{
        double s = (double)time(NULL) - created;

        if (created <= 0 || s < 0)
                snprintf(buf, len, "-");
        else if (s < 120)
                snprintf(buf, len, "%.0fs", s);
        else if (s < 7200)
                snprintf(buf, len, "%.0fm", s / 60);
        else if (s < 172800)
                snprintf(buf, len, "%.0fh", s / 3600);
        else
                snprintf(buf, len, "%.0fd", s / 86400);
}

int ctl_runtime(const ctl_context *ctx, int argc, char **argv)
{
        _cleanup_(config_freep) config *cfg = NULL;
        _cleanup_(httpc_freep) httpc *h = NULL;
        _cleanup_(json_decrefp) json_t *masters = NULL, *workers = NULL, *fuses = NULL, *out = NULL;
        json_t *m;
        unsigned ready_masters = 0, ready_workers = 0, desired_fuses = 0;
        bool leader;
        size_t i;
        int r;

        if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                printf("Usage: weirctl [--json] runtime\n\n"
                       "Each runtime with Fluid's columns: masters, workers and FUSE mounts,\n"
                       "ready and desired, and their phases.\n");
                return 0;
        }
        r = config_load_logged(ctx->config_path, true, &cfg);
        if (r < 0)
                return 1;
        h = ctl_httpc(cfg, 5000, 1000);
        if (!h) {
                log_oom();
                return 1;
        }
        masters = master_json(cfg, h, "/v1/masters");
        workers = master_json(cfg, h, "/v1/workers");
        fuses = master_json(cfg, h, "/v1/fuses");
        leader = masters && json_is_string(json_object_get(masters, "leader"));
        json_array_foreach(json_object_get(masters, "masters"), i, m) {
                const char *role = json_string_value(json_object_get(m, "role"));

                if (json_is_true(json_object_get(m, "reachable")) && role &&
                    (strcmp(role, "leader") == 0 || strcmp(role, "follower") == 0))
                        ready_masters++;
        }
        json_array_foreach(json_object_get(workers, "workers"), i, m)
                if (json_is_true(json_object_get(m, "alive")))
                        ready_workers++;
        for (i = 0; i < cfg->n_nodes; i++)
                desired_fuses += cfg->nodes[i].fuse;

        out = json_array();
        if (!ctx->json)
                printf("%-16s %-14s %-15s %-12s %-14s %-15s %-12s %-12s %-13s %-10s %s\n", "NAME",
                       "READY MASTERS", "DESIRED MASTERS", "MASTER PHASE", "READY WORKERS",
                       "DESIRED WORKERS", "WORKER PHASE", "READY FUSES", "DESIRED FUSES",
                       "FUSE PHASE", "AGE");
        for (i = 0; i < cfg->n_runtimes; i++) {
                const config_runtime *rt = &cfg->runtimes[i];
                _cleanup_free_ char *path = NULL;
                json_t *ds = NULL;
                char age[32];
                unsigned dm = rt->master_replicas ? rt->master_replicas : 1;
                const char *mp = phase(ready_masters, dm, leader);
                const char *wp = phase(ready_workers, rt->replicas, leader);
                unsigned ready_fuses = 0;
                const char *fp;
                size_t j;
                json_t *fu;

                if (asprintf(&path, "/v1/datasets/%s", rt->name) >= 0)
                        ds = master_json(cfg, h, path);
                format_age(json_number_value(json_object_get(ds, "created")), age, sizeof(age));
                json_decref(ds);
                /* each FUSE daemon mounts one dataset and reports it to the leader */
                json_array_foreach(json_object_get(fuses, "fuses"), j, fu) {
                        const char *name = json_string_value(json_object_get(fu, "dataset"));

                        if (json_is_true(json_object_get(fu, "alive")) && name &&
                            strcmp(name, rt->name) == 0)
                                ready_fuses++;
                }
                fp = phase(ready_fuses, desired_fuses, leader);
                if (ctx->json)
                        json_array_append_new(
                                out,
                                json_pack("{s:s,s:s,s:i,s:i,s:s,s:i,s:i,s:s,s:i,s:i,s:s,s:s}",
                                          "name", rt->name, "kind", rt->kind, "ready_masters",
                                          (int)ready_masters, "desired_masters", (int)dm,
                                          "master_phase", mp, "ready_workers", (int)ready_workers,
                                          "desired_workers", (int)rt->replicas, "worker_phase", wp,
                                          "ready_fuses", (int)ready_fuses, "desired_fuses",
                                          (int)desired_fuses, "fuse_phase", fp, "age", age));
                else
                        printf("%-16s %-14u %-15u %-12s %-14u %-15u %-12s %-12u %-13u %-10s %s\n",
                               rt->name, ready_masters, dm, mp, ready_workers, rt->replicas, wp,
                               ready_fuses, desired_fuses, fp, age);
        }
        if (ctx->json) {
                char *s = json_dumps(out, JSON_INDENT(2));

                printf("%s\n", s ? s : "[]");
                free(s);
        }
        if (!masters) {
                log_error("No master answered: the phases above are NotReady");
                return 1;
        }
        return 0;
}
