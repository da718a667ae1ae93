/* weirctl: the operator's command line for a weir cluster. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "log.h"
#include "weir-build.h"

typedef struct ctl_verb {
        const char *name;
        int (*run)(const ctl_context *ctx, int argc, char **argv);
        const char *usage;
        const char *summary;
} ctl_verb;

static const ctl_verb verbs[] = {
        {"config", ctl_config, "config check [FILE] [--node NAME] [--json]",
         "validate and show the plan"},
        {"config", ctl_config, "config apply [FILE] [--dry-run] [--no-systemd] [--wait S]",
         "apply an edited YAML to the running cluster"},
        {"masters", ctl_masters, "masters [--json]",
         "the leader and every master (role, term, health)"},
        {"status", ctl_status, "status", "the local daemons' status over D-Bus"},
        {"datasets", ctl_datasets, "datasets [-o wide] [--json]", "datasets with Fluid's columns"},
        {"dataset", ctl_dataset, "dataset sync [--wait] NAME", "sync a dataset's metadata now"},
        {"ls", ctl_ls, "ls [-l] /DATASET[/MOUNT/PATH]", "list a dataset directory"},
        {"stat", ctl_stat, "stat /DATASET/MOUNT/PATH", "a file's size, version, ETag, store URL"},
        {"load", ctl_load, "load [--status] DATASET [PATH...]", "load a dataset into the cache"},
        {"runtime", ctl_runtime, "runtime [--json]", "runtimes with Fluid's columns and phases"},
        {"ufs", ctl_ufs, "ufs ls|stat|cat URL [PATH]", "query a remote store directly (debugging)"},
};

static void help(void)
{
        printf("Usage: weirctl [--config FILE] [--json] COMMAND [ARGS...]\n\n"
               "Operate a weir cluster described by one YAML file.\n\n"
               "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-44s %s\n", verbs[i].usage, verbs[i].summary);
        printf("\nOptions:\n"
               "  -c, --config FILE   cluster YAML (default: $WEIR_CONFIG, else %s)\n"
               "      --json          machine-readable output\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n",
               CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
        enum { ARG_VERSION = 0x100, ARG_JSON };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"json", no_argument, NULL, ARG_JSON},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        const char *arg_config = NULL;
        ctl_context ctx = {};
        int c;

        log_setup("weirctl");
        /* Options before the verb only: "+" stops at the first non-option. */
        while ((c = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_JSON:
                        ctx.json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("weirctl %s\n", WEIR_VERSION);
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind >= argc) {
                help();
                return 2;
        }
        ctx.config_path = config_resolve_path(arg_config);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(argv[optind], verbs[i].name) == 0) {
                        int first = optind;
                        optind = 0; /* let the verb run its own getopt from scratch */
                        return verbs[i].run(&ctx, argc - first, argv + first);
                }
        fprintf(stderr, "weirctl: unknown command '%s'; see 'weirctl --help'.\n", argv[optind]);
        return 2;
}
