/* weirctl config check: validate the cluster YAML and print the plan it resolves to. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "apiauth.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "parse.h"

static const char *const scheme_names[] = {
        [CONFIG_SCHEME_HTTP] = "http", [CONFIG_SCHEME_HTTPS] = "https",
        [CONFIG_SCHEME_S3] = "s3",     [CONFIG_SCHEME_OSS] = "oss",
        [CONFIG_SCHEME_COS] = "cos",   [CONFIG_SCHEME_FILE] = "file",
};

static void help(void)
{
        printf("Usage: weirctl [--config FILE] config check [FILE] [--node NAME] [--json]\n\n"
               "Validate the cluster YAML and print the resolved plan: which node runs which\n"
               "daemons, on which addresses and ports, with which directories.\n\n"
               "Options:\n"
               "      --node NAME   show only node NAME\n"
               "      --json        print the plan as JSON\n"
               "  -h, --help        show this help\n\n"
               "FILE overrides --config. Exit status: 0 valid, 1 invalid, 2 usage error.\n\n"
               "weirctl config apply [FILE] applies an edited file to the running cluster;\n"
               "see 'weirctl config apply --help'.\n");
}

/* "HOST:PORT", with brackets around IPv6 literals. */
static void format_endpoint(char *buf, size_t len, const char *address, unsigned port)
{
        if (strchr(address, ':'))
                snprintf(buf, len, "[%s]:%u", address, port);
        else
                snprintf(buf, len, "%s:%u", address, port);
}

static int print_node_text(const config *c, const config_node *n)
{
        char ep[300], ep2[300], size[FORMAT_BYTES_MAX];

        printf("node %s (%s)\n", n->name, n->address);
        if (n->master) {
                format_endpoint(ep, sizeof(ep), n->address, n->raft_port);
                format_endpoint(ep2, sizeof(ep2), n->address, n->master_port);
                printf("  weir-master          raft id %u, raft %s, API %s://%s\n", n->raft_id, ep,
                       apiauth_scheme(c), ep2);
        }
        if (n->worker) {
                format_endpoint(ep, sizeof(ep), n->address, n->worker_port);
                printf("  weir-worker          API %s://%s\n", apiauth_scheme(c), ep);
                for (size_t i = 0; i < c->n_tiers; i++) {
                        const config_tier *t = &c->tiers[i];
                        _cleanup_free_ char *dir = NULL;

                        if (config_tier_dir(t, n->name, &dir) < 0)
                                return -ENOMEM;
                        printf("    tier %-3s %s, quota %s, high %.2f, low %.2f\n",
                               config_medium_to_string(t->medium), dir,
                               format_bytes(size, sizeof(size), t->quota), t->high, t->low);
                }
        }
        if (n->fuse)
                for (size_t i = 0; i < c->n_datasets; i++) {
                        _cleanup_free_ char *mp = NULL;

                        if (config_fuse_mount_point(n, c->datasets[i].name, &mp) < 0)
                                return -ENOMEM;
                        printf("  weir-fuse@%-10s mount %s\n", c->datasets[i].name, mp);
                }
        if (!n->master && !n->worker && !(n->fuse && c->n_datasets > 0))
                printf("  (no daemons)\n");
        printf("  data dir             %s\n", n->data_dir);
        printf("  runtime dir          %s\n", n->runtime_dir);
        return 0;
}

/* "off", "1h", "10m", "30s" or "250ms": the largest unit that divides it. */
static void print_duration(uint64_t ms)
{
        if (ms == 0)
                printf("off");
        else if (ms % 3600000 == 0)
                printf("every %lluh", (unsigned long long)(ms / 3600000));
        else if (ms % 60000 == 0)
                printf("every %llum", (unsigned long long)(ms / 60000));
        else if (ms % 1000 == 0)
                printf("every %llus", (unsigned long long)(ms / 1000));
        else
                printf("every %llums", (unsigned long long)ms);
}

static int print_text(const config *c, const config_node *only)
{
        char size[FORMAT_BYTES_MAX];
        int r;

        printf("cluster %s: %zu node%s, %u master%s%s, %u worker%s, %zu dataset%s\n",
               c->cluster_name, c->n_nodes, c->n_nodes == 1 ? "" : "s", c->master_replicas,
               c->master_replicas == 1 ? "" : "s", c->master_replicas > 1 ? " (raft)" : "",
               c->worker_replicas, c->worker_replicas == 1 ? "" : "s", c->n_datasets,
               c->n_datasets == 1 ? "" : "s");
        printf("raft: election timeout %llums, heartbeat %llums, secret %s; token file %s\n",
               (unsigned long long)c->election_timeout_ms,
               (unsigned long long)c->heartbeat_timeout_ms,
               c->raft_secret_file ? c->raft_secret_file
               : c->token_file     ? "from the token file"
                                   : "(none: Raft connections are not authenticated)",
               c->token_file ? c->token_file : "(none: the API is not authenticated)");
        printf("api: %s%s%s, bound to %s, read token file %s; at most %u connections (%u per "
               "client), request deadline %llums\n\n",
               apiauth_scheme(c), c->api.tls_ca_file ? " verified with " : "",
               c->api.tls_ca_file ? c->api.tls_ca_file : "",
               c->api.bind_address ? c->api.bind_address : "each node's address",
               c->api.read_token_file ? c->api.read_token_file : "(none)", c->api.max_connections,
               c->api.max_connections_per_client, (unsigned long long)c->api.request_timeout_ms);
        for (size_t i = 0; i < c->n_nodes; i++) {
                if (only && only != &c->nodes[i])
                        continue;
                r = print_node_text(c, &c->nodes[i]);
                if (r < 0)
                        return r;
                printf("\n");
        }
        for (size_t i = 0; i < c->n_datasets; i++) {
                const config_dataset *d = &c->datasets[i];

                printf("dataset %s: block size %s, sync ", d->name,
                       format_bytes(size, sizeof(size), d->block_size));
                print_duration(d->sync_interval_ms);
                if (d->runtime)
                        printf(", runtime %s (%u worker%s)", d->runtime->kind, d->runtime->replicas,
                               d->runtime->replicas == 1 ? "" : "s");
                else
                        printf(", no runtime");
                printf("\n");
                for (size_t j = 0; j < d->n_mounts; j++) {
                        const config_mount *m = &d->mounts[j];

                        printf("  mount %s: %s\n", m->name, m->mount_point);
                        for (size_t k = 0; k < m->n_options; k++)
                                printf("    %s = %s\n", m->options[k].key,
                                       m->options[k].secret ? "(secret)" : m->options[k].value);
                }
        }
        return 0;
}

static json_t *node_json(const config *c, const config_node *n)
{
        char ep[300], ep2[300];
        json_t *j, *fuse;

        j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", n->name, "address", n->address,
                      "data_dir", n->data_dir, "runtime_dir", n->runtime_dir, "mount_root",
                      n->mount_root);
        if (!j)
                return NULL;
        if (n->master) {
                format_endpoint(ep, sizeof(ep), n->address, n->raft_port);
                format_endpoint(ep2, sizeof(ep2), n->address, n->master_port);
                json_object_set_new(j, "master",
                                    json_pack("{s:I, s:s, s:s}", "raft_id", (json_int_t)n->raft_id,
                                              "raft", ep, "api", ep2));
        } else
                json_object_set_new(j, "master", json_null());
        if (n->worker) {
                json_t *tiers = json_array();

                format_endpoint(ep, sizeof(ep), n->address, n->worker_port);
                for (size_t i = 0; i < c->n_tiers; i++) {
                        const config_tier *t = &c->tiers[i];
                        _cleanup_free_ char *dir = NULL;

                        if (config_tier_dir(t, n->name, &dir) < 0)
                                break;
                        json_array_append_new(
                                tiers, json_pack("{s:s, s:s, s:s, s:I, s:f, s:f}", "medium",
                                                 config_medium_to_string(t->medium), "path",
                                                 t->path, "dir", dir, "quota", (json_int_t)t->quota,
                                                 "high", t->high, "low", t->low));
                }
                json_object_set_new(j, "worker",
                                    json_pack("{s:s, s:o}", "api", ep, "tiers", tiers));
        } else
                json_object_set_new(j, "worker", json_null());
        fuse = json_array();
        if (n->fuse)
                for (size_t i = 0; i < c->n_datasets; i++) {
                        _cleanup_free_ char *mp = NULL;

                        if (config_fuse_mount_point(n, c->datasets[i].name, &mp) < 0)
                                break;
                        json_array_append_new(fuse,
                                              json_pack("{s:s, s:s}", "dataset",
                                                        c->datasets[i].name, "mount_point", mp));
                }
        json_object_set_new(j, "fuse", fuse);
        return j;
}

static json_t *datasets_json(const config *c)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < c->n_datasets; i++) {
                const config_dataset *d = &c->datasets[i];
                json_t *mounts = json_array(), *jd;

                for (size_t j = 0; j < d->n_mounts; j++) {
                        const config_mount *m = &d->mounts[j];
                        json_t *opts = json_object();

                        for (size_t k = 0; k < m->n_options; k++)
                                json_object_set_new(opts, m->options[k].key,
                                                    json_string(m->options[k].secret
                                                                        ? "(secret)"
                                                                        : m->options[k].value));
                        json_array_append_new(mounts,
                                              json_pack("{s:s, s:s, s:s, s:o}", "name", m->name,
                                                        "mount_point", m->mount_point, "scheme",
                                                        scheme_names[m->scheme], "options", opts));
                }
                jd = json_pack("{s:s, s:I, s:I, s:o}", "name", d->name, "block_size",
                               (json_int_t)d->block_size, "sync_interval_ms",
                               (json_int_t)d->sync_interval_ms, "mounts", mounts);
                if (d->runtime)
                        json_object_set_new(jd, "runtime",
                                            json_pack("{s:s, s:s, s:I}", "kind", d->runtime->kind,
                                                      "name", d->runtime->name, "replicas",
                                                      (json_int_t)d->runtime->replicas));
                else
                        json_object_set_new(jd, "runtime", json_null());
                json_array_append_new(a, jd);
        }
        return a;
}

static json_t *diags_json(const config_diags *d)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < d->n; i++)
                json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:s}", "severity",
                                                   d->items[i].warning ? "warning" : "error",
                                                   "line", (json_int_t)d->items[i].line, "column",
                                                   (json_int_t)d->items[i].column, "message",
                                                   d->items[i].message));
        return a;
}

static int print_json(const char *path, const config *c, const config_node *only,
                      const config_diags *d)
{
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_t *nodes;

        j = json_pack("{s:s, s:b, s:o}", "file", path, "valid", c != NULL, "diagnostics",
                      diags_json(d));
        if (!j)
                return -ENOMEM;
        if (c) {
                nodes = json_array();
                for (size_t i = 0; i < c->n_nodes; i++)
                        if (!only || only == &c->nodes[i])
                                json_array_append_new(nodes, node_json(c, &c->nodes[i]));
                json_object_set_new(j, "cluster", json_string(c->cluster_name));
                json_object_set_new(j, "master_replicas", json_integer(c->master_replicas));
                json_object_set_new(j, "worker_replicas", json_integer(c->worker_replicas));
                json_object_set_new(j, "raft",
                                    json_pack("{s:I, s:I, s:s?}", "election_timeout_ms",
                                              (json_int_t)c->election_timeout_ms,
                                              "heartbeat_timeout_ms",
                                              (json_int_t)c->heartbeat_timeout_ms, "secret_file",
                                              c->raft_secret_file));
                json_object_set_new(j, "token_file",
                                    c->token_file ? json_string(c->token_file) : json_null());
                json_object_set_new(
                        j, "api",
                        json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:I}", "scheme",
                                  apiauth_scheme(c), "bind_address", c->api.bind_address,
                                  "read_token_file", c->api.read_token_file, "tls_cert_file",
                                  c->api.tls_cert_file, "tls_ca_file", c->api.tls_ca_file,
                                  "max_connections", (json_int_t)c->api.max_connections,
                                  "max_connections_per_client",
                                  (json_int_t)c->api.max_connections_per_client,
                                  "request_timeout_ms", (json_int_t)c->api.request_timeout_ms));
                json_object_set_new(j, "nodes", nodes);
                json_object_set_new(j, "datasets", datasets_json(c));
        }
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) <
            0)
                return -EIO;
        printf("\n");
        return 0;
}

static int config_check(const ctl_context *ctx, const char *path, const char *node, bool json)
{
        _cleanup_(config_freep) config *c = NULL;
        _cleanup_(config_diags_done) config_diags d = {};
        const config_node *only = NULL;
        int r, ret = 0;

        r = config_load(path, &c, &d);
        if (r < 0 && d.n == 0) {
                fprintf(stderr, "weirctl: cannot read %s: %s\n", path, strerror(-r));
                return 1;
        }
        config_diags_print(&d, path);
        if (r < 0) {
                size_t errors = 0;

                for (size_t i = 0; i < d.n; i++)
                        errors += !d.items[i].warning;
                fprintf(stderr, "%s: invalid (%zu error%s)\n", path, errors,
                        errors == 1 ? "" : "s");
                if (json)
                        print_json(path, NULL, NULL, &d);
                return 1;
        }
        if (node) {
                only = config_find_node(c, node);
                if (!only) {
                        fprintf(stderr, "weirctl: no node '%s' in %s; nodes:", node, path);
                        for (size_t i = 0; i < c->n_nodes; i++)
                                fprintf(stderr, " %s", c->nodes[i].name);
                        fprintf(stderr, "\n");
                        return 1;
                }
        }
        r = json ? print_json(path, c, only, &d) : print_text(c, only);
        if (r < 0) {
                fprintf(stderr, "weirctl: cannot print the plan: %s\n", strerror(-r));
                ret = 1;
        }
        return ret;
}

const char *ctl_config_operand(const ctl_context *ctx, const char *verb, int argc, char **argv)
{
        if (argc - optind > 1) {
                fprintf(stderr, "weirctl %s: unexpected argument '%s'\n", verb, argv[optind + 1]);
                return NULL;
        }
        if (optind < argc)
                return argv[optind];
        return ctx->config_path ?: config_resolve_path(NULL);
}

int ctl_config(const ctl_context *ctx, int argc, char **argv)
{
        enum { ARG_NODE = 0x100, ARG_JSON };
        static const struct option options[] = {
                {"node", required_argument, NULL, ARG_NODE},
                {"json", no_argument, NULL, ARG_JSON},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *node = NULL, *path;
        bool json = ctx->json;
        int c;

        /* argv[0] is "config"; the subcommand follows, options may come anywhere after it. */
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                help();
                return 0;
        }
        if (argc >= 2 && strcmp(argv[1], "apply") == 0)
                return ctl_config_apply(ctx, argc - 1, argv + 1);
        if (argc < 2 || strcmp(argv[1], "check") != 0) {
                if (argc < 2)
                        fprintf(stderr, "weirctl config: missing subcommand; expected 'check' or "
                                        "'apply'\n");
                else
                        fprintf(stderr,
                                "weirctl config: unknown subcommand '%s'; expected 'check' or "
                                "'apply'\n",
                                argv[1]);
                return 2;
        }
        argc--;
        argv++;
        argv[0] = (char *)"weirctl config check"; /* getopt's messages name it */
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_NODE:
                        node = optarg;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        path = ctl_config_operand(ctx, "config check", argc, argv);
        if (!path)
                return 2;
        return config_check(ctx, path, node, json);
}
