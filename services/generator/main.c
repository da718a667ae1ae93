/* weir-generator: a systemd generator that pulls in the weir units this host runs per the YAML. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "generator.h"
#include "log.h"
#include "weir-build.h"

/* Generators run before journald: messages go to the kernel log, which the journal imports. */
static int kmsg_fd = -1;

static void gen_log(int level, const char *format, ...) _printf_(2, 3);

static void gen_log(int level, const char *format, ...)
{
        char msg[900], line[1024];
        va_list ap;
        int n;

        va_start(ap, format);
        vsnprintf(msg, sizeof(msg), format, ap);
        va_end(ap);
        if (kmsg_fd >= 0) {
                /* One write() is one kernel log record; LOG_DAEMON keeps it out of "kernel". */
                n = snprintf(line, sizeof(line), "<%d>weir-generator[%d]: %s\n", LOG_DAEMON | level,
                             (int)getpid(), msg);
                if (n > 0 && write(kmsg_fd, line, MIN((size_t)n, sizeof(line) - 1)) >= 0)
                        return;
        }
        fprintf(stderr, "weir-generator: %s\n", msg);
}

static void log_open(void)
{
        const char *e = getenv("WEIR_GENERATOR_LOG");

        /* Tests and manual runs may ask for stderr; at boot the kernel log is the only sink. */
        if (e && strcmp(e, "stderr") == 0)
                return;
        kmsg_fd = open("/dev/kmsg", O_WRONLY | O_NOCTTY | O_CLOEXEC);
}

static const char *env_or(const char *name, const char *fallback)
{
        const char *e = getenv(name);

        return e && *e ? e : fallback;
}

/* The kernel rate-limits each writer of /dev/kmsg (a burst of 10): the first errors, then a
 * pointer to the whole list. */
#define MAX_DIAGS 6

static void log_diags(const config_diags *d, const char *path)
{
        size_t shown = 0, errors = 0;

        for (size_t i = 0; i < d->n; i++)
                errors += !d->items[i].warning;
        for (size_t i = 0; i < d->n && shown < MAX_DIAGS; i++) {
                /* Errors are why nothing starts; warnings only when there is room. */
                if (d->items[i].warning && errors >= MAX_DIAGS)
                        continue;
                gen_log(d->items[i].warning ? LOG_WARNING : LOG_ERR, "%s:%u:%u: %s: %s", path,
                        d->items[i].line, d->items[i].column,
                        d->items[i].warning ? "warning" : "error", d->items[i].message);
                shown++;
        }
        if (shown < d->n)
                gen_log(LOG_ERR, "%s: %zu more; weirctl config check %s lists them all.", path,
                        d->n - shown, path);
}

static void log_plan(const config *c, const config_node *node, generator_match how)
{
        char roles[700];
        size_t len = 0;

        roles[0] = '\0';
        if (node->master)
                len += snprintf(roles + len, sizeof(roles) - len, " master");
        if (node->worker && len < sizeof(roles))
                len += snprintf(roles + len, sizeof(roles) - len, " worker");
        for (size_t i = 0; node->fuse && i < c->n_datasets && len < sizeof(roles); i++)
                len += snprintf(roles + len, sizeof(roles) - len, " fuse@%s", c->datasets[i].name);
        gen_log(LOG_INFO, "This host is node %s (by %s); weir.target pulls in:%s", node->name,
                generator_match_to_string(how), len > 0 ? roles : " nothing (no roles)");
}

static int run(int argc, char **argv)
{
        _cleanup_(config_diags_done) config_diags diags = {};
        const char *path, *node_file, *dest;
        const config_node *node;
        generator_match how;
        config *c = NULL;
        int r;

        if (argc != 2 && argc != 4) {
                gen_log(LOG_ERR,
                        "Usage: weir-generator NORMAL_DIR [EARLY_DIR LATE_DIR] | --rescan");
                return -EINVAL;
        }
        dest = argv[1];

        /* The initrd has no weir: its units belong to the real root. */
        if (getenv("SYSTEMD_IN_INITRD") && strcmp(getenv("SYSTEMD_IN_INITRD"), "1") == 0)
                return 0;

        path = config_resolve_path(NULL);
        node_file = env_or("WEIR_NODE_FILE", GENERATOR_NODE_FILE);

        /* Every failure below is reported and swallowed: weir stays off, boot goes on. */
        r = config_load(path, &c, &diags);
        if (r == -ENOENT) {
                gen_log(LOG_NOTICE, "%s does not exist; no weir units started.", path);
                return 0;
        }
        if (r < 0) {
                log_diags(&diags, path);
                gen_log(LOG_ERR, "%s: %s; no weir units started.", path,
                        r == -EINVAL ? "invalid cluster configuration" : strerror(-r));
                return 0;
        }

        r = generator_find_node(c, node_file, NULL, &node, &how);
        if (r == -EINVAL)
                gen_log(LOG_ERR, "%s names a node that %s does not list; no weir units started.",
                        node_file, path);
        else if (r == -ENOTUNIQ)
                gen_log(LOG_ERR,
                        "Several nodes of %s have addresses of this host; name one in %s. "
                        "No weir units started.",
                        path, node_file);
        else if (r == -ENOENT)
                gen_log(LOG_ERR,
                        "This host is none of the nodes in %s (no %s, no node named like the "
                        "host, no node with an address of this host yet); no weir units started. "
                        "weir-rescan.service, where enabled, looks again once the network is up.",
                        path, node_file);
        else if (r < 0)
                gen_log(LOG_ERR, "Failed to find this host in %s: %s; no weir units started.", path,
                        strerror(-r));
        if (r < 0) {
                config_free(c);
                return 0;
        }

        r = generator_write(c, node, dest, WEIR_SYSTEM_UNIT_DIR);
        if (r < 0)
                gen_log(LOG_ERR,
                        "Failed to write units for node %s into %s: %s; "
                        "no weir units started.",
                        node->name, dest, strerror(-r));
        else
                log_plan(c, node, how);
        config_free(c);
        return 0;
}

int main(int argc, char **argv)
{
        int r;

        log_setup("weir-generator");
        if (argc == 2 && strcmp(argv[1], "--rescan") == 0) {
                /* A service, not a generator: the journal is up and log.h writes to it. */
                r = generator_rescan(env_or("WEIR_GENERATOR_DIR", GENERATOR_NORMAL_DIR));
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        log_open();
        r = run(argc, argv);
        kmsg_fd = safe_close(kmsg_fd);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
