/* weir-master: the Raft-replicated metadata service of one master node. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "config-load.h"
#include "config.h"
#include "dbus.h"
#include "epoch.h"
#include "httpc.h"
#include "log.h"
#include "manager.h"
#include "members.h"
#include "parse.h"
#include "rejoin.h"
#include "sync.h"
#include "weir-build.h"

static const char *arg_config = NULL;
static const char *arg_node = NULL;
static const manager_parts parts = {
        .api_start = api_start,
        .dbus_start = dbus_start,
        .dbus_emit_changed = dbus_emit_changed,
        .dbus_stop = dbus_stop,
        .members_new = members_new,
        .members_free = members_free,
        .members_stop = members_stop,
        .members_decide_bootstrap = members_decide_bootstrap,
        .members_bootstrapped = members_bootstrapped,
        .members_leader_changed = members_leader_changed,
        .members_probe = members_probe,
        .members_reset = members_reset,
        .epoch_ensure = epoch_ensure,
        .rejoin_check_dir = rejoin_check_dir,
        .rejoin_prepare = rejoin_prepare,
        .rejoin_explain = rejoin_explain,
};
static manager_options arg_options = {.parts = &parts};

static void help(void)
{
        printf("Usage: weir-master [--config FILE] --node NAME [--data-dir DIR] [--rejoin]\n\n"
               "Run the weir master of node NAME as described by the cluster YAML.\n\n"
               "  -c, --config FILE   cluster YAML (default: $WEIR_CONFIG, else %s)\n"
               "  -n, --node NAME     this node's name in the YAML\n"
               "  -d, --data-dir DIR  the master's state directory (default: the node's\n"
               "                      dataDir + /master)\n"
               "      --rejoin        move a damaged Raft log aside and get the state from the\n"
               "                      leader (only while another master leads); also after\n"
               "                      the data directory was lost\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n",
               CONFIG_DEFAULT_PATH);
}

static int parse_argv(int argc, char **argv)
{
        /* --snapshot-threshold/--snapshot-trailing are for tests: they make snapshots frequent. */
        enum { ARG_VERSION = 0x100, ARG_SNAPSHOT_THRESHOLD, ARG_SNAPSHOT_TRAILING, ARG_REJOIN };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"node", required_argument, NULL, 'n'},
                {"data-dir", required_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"rejoin", no_argument, NULL, ARG_REJOIN},
                {"snapshot-threshold", required_argument, NULL, ARG_SNAPSHOT_THRESHOLD},
                {"snapshot-trailing", required_argument, NULL, ARG_SNAPSHOT_TRAILING},
                {},
        };
        uint64_t u;
        int c;

        while ((c = getopt_long(argc, argv, "c:n:d:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'n':
                        arg_node = optarg;
                        break;
                case 'd':
                        arg_options.data_dir = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("weir-master %s\n", WEIR_VERSION);
                        return 0;
                case ARG_REJOIN:
                        arg_options.rejoin = true;
                        break;
                case ARG_SNAPSHOT_THRESHOLD:
                case ARG_SNAPSHOT_TRAILING:
                        if (parse_u64(optarg, &u) < 0 || u == 0 || u > 1000000) {
                                log_error("Invalid snapshot setting '%s': expected 1..1000000.",
                                          optarg);
                                return -EINVAL;
                        }
                        if (c == ARG_SNAPSHOT_THRESHOLD)
                                arg_options.snapshot_threshold = (unsigned)u;
                        else
                                arg_options.snapshot_trailing = (unsigned)u;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'; see --help.", argv[optind]);
                return -EINVAL;
        }
        if (!arg_node) {
                log_error("--node NAME is required; see --help.");
                return -EINVAL;
        }
        return 1;
}

static int run(int argc, char **argv)
{
        _cleanup_(config_freep) config *cfg = NULL;
        _cleanup_(manager_freep) manager *m = NULL;
        _cleanup_(sync_manager_freep) sync_manager *s = NULL; /* freed before m */
        int r;

        log_setup("weir-master");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        const char *path = config_resolve_path(arg_config);
        r = config_load_logged(path, true, &cfg);
        if (r < 0)
                return r;

        const config_node *node = config_find_node(cfg, arg_node);
        if (!node)
                return log_error_errno(ENOENT, "Node '%s' is not in %s.", arg_node, path);
        if (!node->master) {
                char names[1024] = "";
                for (size_t i = 0; i < cfg->n_nodes; i++)
                        if (cfg->nodes[i].master) {
                                size_t l = strlen(names);
                                snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "",
                                         cfg->nodes[i].name);
                        }
                /* A master restarted with a file that dropped it, before the leader removed it
                 * from the Raft membership: say how to get out of that. */
                char raft_meta[PATH_MAX];
                if (arg_options.data_dir)
                        snprintf(raft_meta, sizeof(raft_meta), "%s/raft/metadata1",
                                 arg_options.data_dir);
                else
                        snprintf(raft_meta, sizeof(raft_meta), "%s/master/raft/metadata1",
                                 node->data_dir);
                if (access(raft_meta, F_OK) == 0)
                        log_error("Node '%s' was a master (its raft log is still there): if the "
                                  "leader has not removed it yet, start it with the previous file "
                                  "and let weirctl config apply reload the masters instead.",
                                  arg_node);
                return log_error_errno(EINVAL,
                                       "Node '%s' runs no master in %s; the masters are: %s.",
                                       arg_node, path, names);
        }

        r = httpc_global_init();
        if (r < 0)
                return log_error_errno(r, "Failed to initialise libcurl: %m");
        r = manager_new(cfg, node, &arg_options, &m);
        if (r < 0)
                return r;
        r = sync_manager_new(m, &s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the metadata sync: %m");
        return manager_run(m);
}

int main(int argc, char **argv)
{
        return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
