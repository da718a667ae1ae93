/* weirctl masters: the leader and every master, in the shape of "alluxio fs masterInfo". */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config-load.h"
#include "config.h"
#include "apiauth.h"
#include "ctl.h"
#include "httpc.h"
#include "log.h"

/* "node1:19998" from an API address "HOST:PORT" and the node's name. */
static void short_name(const json_t *m, char *buf, size_t len)
{
        const char *api = json_string_value(json_object_get(m, "api")) ?: "";
        const char *port = strrchr(api, ':');
        snprintf(buf, len, "%s%s", json_string_value(json_object_get(m, "node")) ?: "?",
                 port ? port : "");
}

static void print_number(const json_t *v, char *buf, size_t len)
{
        if (json_is_integer(v))
                snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                snprintf(buf, len, "-");
}

int ctl_masters(const ctl_context *ctx, int argc, char **argv)
{
        enum { ARG_JSON = 0x100 };
        static const struct option options[] = {
                {"json", no_argument, NULL, ARG_JSON},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(config_freep) config *cfg = NULL;
        _cleanup_(httpc_freep) httpc *c = NULL;
        bool json = ctx->json;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_JSON:
                        json = true;
                        break;
                case 'h':
                        printf("Usage: weirctl masters [--json]\n\n"
                               "Show the leader and every master with role, term, applied "
                               "index and health.\n");
                        return 0;
                default:
                        return 2;
                }

        r = config_load_logged(ctx->config_path, false, &cfg);
        if (r < 0)
                return 1;

        c = ctl_httpc(cfg, 2000, 500);
        if (!c) {
                log_oom();
                return 1;
        }

        /* Any reachable master answers; /v1/masters is not leader-only, but a redirect would
         * be followed all the same. */
        httpc_response res = {};
        bool got = false;
        for (size_t i = 0; i < cfg->n_nodes && !got; i++) {
                const config_node *n = &cfg->nodes[i];
                char url[512], base[320];
                if (!n->master ||
                    apiauth_base_url(cfg, n->address, n->master_port, base, sizeof(base)) < 0)
                        continue;
                snprintf(url, sizeof(url), "%s/v1/masters", base);
                r = httpc_get(c, url, &res);
                if (r == 0 && res.status == 200 && json_is_object(res.json))
                        got = true;
                else {
                        log_debug("%s: %s", url, r < 0 ? httpc_last_error(c) : "unexpected answer");
                        httpc_response_done(&res);
                }
        }
        if (!got) {
                log_error("No master of %s answered.", ctx->config_path);
                return 1;
        }

        if (json) {
                json_dumpf(res.json, stdout, JSON_INDENT(2));
                putchar('\n');
                httpc_response_done(&res);
                return 0;
        }

        json_t *masters = json_object_get(res.json, "masters");
        const char *leader = json_string_value(json_object_get(res.json, "leader"));
        char name[300];
        size_t i;
        json_t *m;

        if (leader) {
                const char *lapi = json_string_value(json_object_get(res.json, "leader_api"));
                const char *port = lapi ? strrchr(lapi, ':') : NULL;
                printf("Current leader master: %s%s\n", leader, port ? port : "");
        } else
                printf("Current leader master: none (election in progress)\n");
        printf("All masters: [");
        json_array_foreach(masters, i, m) {
                short_name(m, name, sizeof(name));
                printf("%s%s", i ? ", " : "", name);
        }
        printf("]\n\n");
        printf("%-16s %-24s %-12s %-8s %-10s %s\n", "NODE", "ADDRESS", "ROLE", "TERM", "APPLIED",
               "HEALTH");
        json_array_foreach(masters, i, m) {
                char term[32], applied[32];
                print_number(json_object_get(m, "term"), term, sizeof(term));
                print_number(json_object_get(m, "applied"), applied, sizeof(applied));
                bool ok = json_is_true(json_object_get(m, "reachable"));
                printf("%-16s %-24s %-12s %-8s %-10s %s\n",
                       json_string_value(json_object_get(m, "node")) ?: "?",
                       json_string_value(json_object_get(m, "api")) ?: "?",
                       json_string_value(json_object_get(m, "role")) ?: "?", term, applied,
                       ok ? "ok" : "unreachable");
        }
        httpc_response_done(&res);
        return 0;
}
