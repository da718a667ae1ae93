/* weirctl config apply: compare an edited cluster YAML with the running cluster, refuse what cannot
 * be applied, otherwise have systemd and the masters pick it up. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apiauth.h"
#include "cleanup.h"
#include "config-apply.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "parse.h"

#define APPLY_WAIT_MAX_S 3600
#define APPLY_POLL_MS    500
#define APPLY_TIMEOUT_MS 3000

extern char **environ;

static void help(void)
{
        printf("Usage: weirctl [--config FILE] config apply [FILE] [--dry-run] [--no-systemd]\n"
               "                                      [--wait SECONDS]\n\n"
               "Validate the edited cluster YAML, compare it with the running cluster (as its\n"
               "leader reports it), print what changes and apply it: systemctl daemon-reload,\n"
               "systemctl start --no-block weir.target, and systemctl reload weir-master.service\n"
               "where this host runs a master. A change that cannot be applied is refused with\n"
               "the YAML key that is wrong, and nothing is changed.\n\n"
               "Options:\n"
               "      --dry-run         only print what would change (or why it cannot)\n"
               "      --no-systemd      do not call systemctl; ask every master of the running\n"
               "                        cluster and of FILE that answers to reload instead\n"
               "                        (also $WEIR_NO_SYSTEMD=1, and when systemd is not "
               "running)\n"
               "      --wait SECONDS    then wait until the leader reports the membership and\n"
               "                        datasets of FILE (exit 1 when it does not in time)\n"
               "  -h, --help            show this help\n\n"
               "Put the same file on every node and apply it on each: systemctl acts on this\n"
               "host only. Exit status: 0 applied (or nothing to do), 1 invalid, refused or\n"
               "failed, 2 usage error.\n");
}

/* SCHEME://ADDRESS:PORT PATH of a master's API, as the YAML's TLS setting says. */
static void master_url(const config *cfg, char *buf, size_t len, const char *address,
                       long long port, const char *path)
{
        char base[320];

        if (apiauth_base_url(cfg, address, (unsigned)port, base, sizeof(base)) < 0)
                base[0] = 0;
        snprintf(buf, len, "%s%s", base, path);
}

/* The leader's GET /v1/config, asking the masters of CFG. 0 and *RET (the whole answer); -ENOENT
 * when no master answers at all (nothing runs yet); -EAGAIN when masters answer but none leads. */
static int fetch_running(const config *cfg, httpc *h, json_t **ret)
{
        bool answered = false;

        for (unsigned round = 0; round < 3; round++) {
                if (round > 0)
                        usleep(400 * 1000);
                for (size_t i = 0; i < cfg->n_nodes; i++) {
                        const config_node *n = &cfg->nodes[i];
                        httpc_response res = {};
                        char url[512];

                        if (!n->master)
                                continue;
                        master_url(cfg, url, sizeof(url), n->address, n->master_port, "/v1/config");
                        if (httpc_get(h, url, &res) < 0) {
                                log_debug("%s: %s", url, httpc_last_error(h));
                                continue;
                        }
                        answered = true;
                        if (res.status == 200 &&
                            json_is_true(json_object_get(res.json, "serving"))) {
                                *ret = json_incref(res.json);
                                httpc_response_done(&res);
                                return 0;
                        }
                        /* A follower names its leader, which the file may no longer list as a
                         * master (3 -> 1 masters). */
                        const char *leader =
                                json_string_value(json_object_get(res.json, "leader_api"));
                        char lurl[512];
                        snprintf(lurl, sizeof(lurl), "%s://%s/v1/config", apiauth_scheme(cfg),
                                 leader ?: "");
                        httpc_response_done(&res);
                        if (leader && httpc_get(h, lurl, &res) == 0) {
                                if (res.status == 200 &&
                                    json_is_true(json_object_get(res.json, "serving"))) {
                                        *ret = json_incref(res.json);
                                        httpc_response_done(&res);
                                        return 0;
                                }
                                httpc_response_done(&res);
                        }
                }
        }
        return answered ? -EAGAIN : -ENOENT;
}

static int run_cmd(char *const argv[])
{
        pid_t pid;
        int status;

        printf("+");
        for (size_t i = 0; argv[i]; i++)
                printf(" %s", argv[i]);
        printf("\n");
        fflush(stdout);
        int r = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
        if (r != 0) {
                fprintf(stderr, "weirctl: cannot run %s: %s\n", argv[0], strerror(r));
                return -r;
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int apply_systemd(void)
{
        char *reload[] = {"systemctl", "daemon-reload", NULL};
        char *start[] = {"systemctl", "start", "--no-block", "weir.target", NULL};
        char *active[] = {"systemctl", "is-active", "--quiet", "weir-master.service", NULL};
        char *hup[] = {"systemctl", "reload", "weir-master.service", NULL};

        /* daemon-reload runs weir-generator again: the units of roles this host gained are
         * pulled into weir.target. --no-block: a master added to a running cluster becomes
         * ready only once the leader added it, which may need the leader's own apply first. */
        if (run_cmd(reload) != 0 || run_cmd(start) != 0)
                return -EIO;
        if (run_cmd(active) == 0 && run_cmd(hup) != 0)
                return -EIO;
        return 0;
}

static bool member_listed(const json_t *list, const char *node)
{
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
                if (strcmp(json_string_value(json_object_get(e, "node")) ?: "", node) == 0)
                        return true;
        return false;
}

/* POST /v1/config/reload on every master that answers: those of FILE and those running. */
static int apply_http(const config *next, const json_t *running, httpc *h)
{
        const json_t *masters = json_object_get(running, "masters");
        int failed = 0, reached = 0;
        char url[512];

        for (size_t i = 0; i < next->n_nodes + json_array_size(masters); i++) {
                const char *name, *address;
                long long port;
                httpc_response res = {};

                if (i < next->n_nodes) {
                        const config_node *n = &next->nodes[i];
                        if (!n->master)
                                continue;
                        name = n->name;
                        address = n->address;
                        port = n->master_port;
                } else {
                        const json_t *e = json_array_get(masters, i - next->n_nodes);
                        name = json_string_value(json_object_get(e, "node")) ?: "?";
                        const config_node *n = config_find_node(next, name);
                        if (n && n->master)
                                continue; /* asked above */
                        address = json_string_value(json_object_get(e, "address")) ?: "";
                        port = json_integer_value(json_object_get(e, "master_port"));
                }
                master_url(next, url, sizeof(url), address, port, "/v1/config/reload");
                if (httpc_post(h, url, NULL, &res) < 0) {
                        printf("  %s: not reachable (%s)%s\n", name, httpc_last_error(h),
                               member_listed(masters, name)
                                       ? ""
                                       : "; a new master reads the file when it starts");
                        continue;
                }
                reached++;
                const char *error = json_string_value(json_object_get(res.json, "error"));
                if (res.status == 200)
                        printf("  %s: reloaded %s\n", name,
                               json_string_value(json_object_get(res.json, "path")) ?: "");
                else {
                        printf("  %s: %s (HTTP %ld)\n", name, error ?: "failed", res.status);
                        failed++;
                }
                httpc_response_done(&res);
        }
        if (reached == 0)
                printf("No master answered: each reads the file when it starts.\n");
        return failed ? -EIO : 0;
}

/* Whether the leader's answer shows NEXT applied: its recorded membership is NEXT's masters, every
 * dataset of NEXT is replicated, and it has no pending membership work. */
static bool converged(const config *next, const json_t *answer)
{
        const json_t *running = json_object_get(answer, "running");
        const json_t *members = json_object_get(answer, "members");
        const json_t *datasets = json_object_get(running, "datasets");

        if (!json_is_true(json_object_get(answer, "converged")) || !json_is_array(members) ||
            json_array_size(members) != config_n_masters(next))
                return false;
        for (size_t i = 0; i < next->n_nodes; i++)
                if (next->nodes[i].master && !member_listed(members, next->nodes[i].name))
                        return false;
        for (size_t i = 0; i < next->n_datasets; i++) {
                bool found = false;
                size_t k;
                json_t *d;
                json_array_foreach(datasets, k, d)
                        if (strcmp(json_string_value(json_object_get(d, "name")) ?: "",
                                   next->datasets[i].name) == 0)
                                found = true;
                if (!found)
                        return false;
        }
        return true;
}

static int wait_converged(const config *next, httpc *h, unsigned seconds)
{
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                json_auto_t *answer = NULL;
                if (fetch_running(next, h, &answer) == 0 && converged(next, answer)) {
                        printf("The cluster runs %s: %zu master(s), %zu dataset(s).\n", next->path,
                               config_n_masters(next), next->n_datasets);
                        return 0;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - start.tv_sec >= (time_t)seconds) {
                        fprintf(stderr,
                                "weirctl: the cluster did not reach %s within %u s (see "
                                "journalctl -u weir-master on the leader)\n",
                                next->path, seconds);
                        return -ETIMEDOUT;
                }
                usleep(APPLY_POLL_MS * 1000);
        }
}

static bool systemd_running(void)
{
        return access("/run/systemd/system", F_OK) == 0;
}

static int config_apply(const char *path, bool dry_run, bool no_systemd, bool force_systemd,
                        unsigned wait_s)
{
        _cleanup_(config_freep) config *next = NULL;
        _cleanup_(config_diags_done) config_diags d = {};
        _cleanup_(httpc_freep) httpc *h = NULL;
        json_auto_t *answer = NULL;
        int r;

        r = config_load(path, &next, &d);
        config_diags_print(&d, path);
        if (r < 0) {
                if (d.n == 0)
                        fprintf(stderr, "weirctl: cannot read %s: %s\n", path, strerror(-r));
                fprintf(stderr, "%s: invalid; nothing was applied\n", path);
                return 1;
        }
        h = ctl_httpc(next, APPLY_TIMEOUT_MS, 1000);
        if (!h)
                return log_oom(), 1;

        r = fetch_running(next, h, &answer);
        if (r == -EAGAIN) {
                fprintf(stderr,
                        "%s: masters answer but none leads the cluster: cannot compare the file "
                        "with it; nothing was applied (retry when `weirctl masters` shows a "
                        "leader)\n",
                        path);
                return 1;
        }
        if (r == -ENOENT) {
                /* Either nothing runs yet, or the file moved every running master: the edited
                 * file cannot tell which, so nothing is done. */
                fprintf(stderr, "%s: no master of the file answers (", path);
                for (size_t i = 0, k = 0; i < next->n_nodes; i++)
                        if (next->nodes[i].master)
                                fprintf(stderr, "%s%s at %s:%u", k++ ? ", " : "",
                                        next->nodes[i].name, next->nodes[i].address,
                                        next->nodes[i].master_port);
                fprintf(stderr,
                        "): nothing to compare with; nothing was applied. A cluster that does "
                        "not run yet is started with systemctl start weir.target; the address of "
                        "a running master cannot change (spec.nodes[N].address).\n");
                return 1;
        }
        {
                const json_t *running = json_object_get(answer, "running");
                config_plan plan = {};
                r = config_plan_apply(next, running, &plan);
                if (r < 0) {
                        fprintf(stderr, "weirctl: the leader's answer is not understood: %s\n",
                                strerror(-r));
                        return 1;
                }
                if (plan.n_refusals > 0) {
                        for (size_t i = 0; i < plan.n_refusals; i++) {
                                const config_refusal *x = &plan.refusals[i];
                                fprintf(stderr, "%s: refused: %s: %s: %s\n", path, x->document,
                                        x->key, x->message);
                        }
                        fprintf(stderr, "%s: cannot be applied; nothing was changed\n", path);
                        config_plan_done(&plan);
                        return 1;
                }
                if (plan.n_changes == 0)
                        printf("No changes for the running cluster.\n");
                else
                        printf("Changes:\n");
                for (size_t i = 0; i < plan.n_changes; i++)
                        printf("  %s\n", plan.changes[i]);
                config_plan_done(&plan);
        }
        if (dry_run)
                return 0;

        if (!no_systemd && !force_systemd && !systemd_running()) {
                printf("systemd is not running here: reloading the masters over HTTP only.\n");
                no_systemd = true;
        }
        if (no_systemd) {
                json_auto_t *empty = json_pack("{s:[]}", "masters");
                const json_t *running = answer ? json_object_get(answer, "running") : empty;
                printf("Reloading the masters:\n");
                r = apply_http(next, running, h);
        } else
                r = apply_systemd();
        if (r < 0) {
                fprintf(stderr, "weirctl: applying %s failed\n", path);
                return 1;
        }
        if (wait_s > 0 && wait_converged(next, h, wait_s) < 0)
                return 1;
        return 0;
}

int ctl_config_apply(const ctl_context *ctx, int argc, char **argv)
{
        enum { ARG_DRY_RUN = 0x100, ARG_NO_SYSTEMD, ARG_WAIT };
        static const struct option options[] = {
                {"dry-run", no_argument, NULL, ARG_DRY_RUN},
                {"no-systemd", no_argument, NULL, ARG_NO_SYSTEMD},
                {"wait", required_argument, NULL, ARG_WAIT},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        bool dry_run = false;
        const char *env = getenv("WEIR_NO_SYSTEMD");
        bool no_systemd = env && (strcmp(env, "1") == 0 || strcmp(env, "yes") == 0);
        /* "0": systemctl even where /run/systemd/system is missing (a container that forwards
         * systemctl, and the tests, which put their own systemctl first in $PATH). */
        bool force_systemd = env && strcmp(env, "0") == 0;
        unsigned wait_s = 0;
        uint64_t u;
        int c;

        argv[0] = (char *)"weirctl config apply";
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DRY_RUN:
                        dry_run = true;
                        break;
                case ARG_NO_SYSTEMD:
                        no_systemd = true;
                        break;
                case ARG_WAIT:
                        if (parse_u64(optarg, &u) < 0 || u == 0 || u > APPLY_WAIT_MAX_S) {
                                fprintf(stderr,
                                        "weirctl config apply: --wait expects 1..%u seconds, got "
                                        "'%s'\n",
                                        APPLY_WAIT_MAX_S, optarg);
                                return 2;
                        }
                        wait_s = (unsigned)u;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        const char *path = ctl_config_operand(ctx, "config apply", argc, argv);
        if (!path)
                return 2;
        return config_apply(path, dry_run, no_systemd, force_systemd, wait_s);
}
