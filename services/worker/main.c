/* weir-worker: the tiered block cache of one node. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config-load.h"
#include "httpc.h"
#include "log.h"
#include "worker.h"
#include "weir-build.h"

static const char *arg_config = NULL;
static const char *arg_node = NULL;
static const char *arg_data_dir = NULL;
static const char *arg_runtime_dir = NULL;

static void help(void)
{
        printf("Usage: weir-worker [--config FILE] --node NAME [--data-dir DIR] [--runtime-dir "
               "DIR]\n\n"
               "Serve the tiered block cache of node NAME as the cluster YAML describes it.\n\n"
               "  -c, --config FILE       cluster YAML (default: $WEIR_CONFIG, else %s)\n"
               "  -n, --node NAME         this node's name in the YAML\n"
               "      --data-dir DIR      override the node's dataDir\n"
               "      --runtime-dir DIR   override the node's runtimeDir (worker.sock lives "
               "there)\n"
               "  -h, --help              show this help\n"
               "      --version           show the version\n",
               CONFIG_DEFAULT_PATH);
}

static int parse_argv(int argc, char **argv)
{
        enum { ARG_VERSION = 0x100, ARG_DATA_DIR, ARG_RUNTIME_DIR };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"node", required_argument, NULL, 'n'},
                {"data-dir", required_argument, NULL, ARG_DATA_DIR},
                {"runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:n:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'n':
                        arg_node = optarg;
                        break;
                case ARG_DATA_DIR:
                        arg_data_dir = optarg;
                        break;
                case ARG_RUNTIME_DIR:
                        arg_runtime_dir = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("weir-worker %s\n", WEIR_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc || !arg_node) {
                fprintf(stderr, "weir-worker: %s; see --help.\n",
                        arg_node ? "unexpected arguments" : "--node NAME is required");
                return -EINVAL;
        }
        return 1;
}

static int run(int argc, char **argv)
{
        config *cfg = NULL;
        worker *w = NULL;
        const char *path;
        sigset_t mask;
        int r;

        log_setup("weir-worker");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        path = config_resolve_path(arg_config);
        r = config_load_logged(path, true, &cfg);
        if (r < 0)
                return r;

        /* Before any thread exists: SIGTERM/SIGINT arrive through the event loop only. */
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        r = httpc_global_init();
        if (r >= 0)
                r = worker_new(cfg, arg_node, arg_data_dir, arg_runtime_dir, &w);
        if (r >= 0)
                r = worker_run(w);
        worker_free(w);
        config_free(cfg);
        return r;
}

int main(int argc, char **argv)
{
        return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
