/* Tests for weir-generator: runs the binary into temporary directories and checks what it links. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cleanup.h"
#include "config.h"
#include "generator.h"

/* Four nodes: node1 master + worker + FUSE, node2 worker + FUSE, node3 FUSE only (placement in
 * order), node4 worker only (its roles say so). Two datasets, one with a '-' that systemd-escape
 * turns into "\x2d". */
static const char yaml_four[] = "apiVersion: weir.io/v1\n"
                                "kind: Cluster\n"
                                "metadata: {name: t}\n"
                                "spec:\n"
                                "  nodes:\n"
                                "    - {name: node1, address: 192.0.2.201, dataDir: "
                                "/srv/weir%1}\n"
                                "    - {name: node2, address: 192.0.2.202, dataDir: "
                                "/var/lib/weir/node2}\n"
                                "    - {name: node3, address: 192.0.2.203}\n"
                                "    - {name: node4, address: 192.0.2.204, roles: [worker]}\n"
                                "---\n"
                                "apiVersion: data.fluid.io/v1alpha1\n"
                                "kind: Dataset\n"
                                "metadata: {name: hbase}\n"
                                "spec:\n"
                                "  mounts:\n"
                                "    - {mountPoint: 'http://192.0.2.1/hbase/', name: hbase}\n"
                                "---\n"
                                "apiVersion: data.fluid.io/v1alpha1\n"
                                "kind: AlluxioRuntime\n"
                                "metadata: {name: hbase}\n"
                                "spec:\n"
                                "  replicas: 3\n"
                                "  master: {replicas: 1}\n"
                                "  tieredstore:\n"
                                "    levels:\n"
                                "      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: "
                                "'0.95', low: '0.7'}\n"
                                "---\n"
                                "apiVersion: data.fluid.io/v1alpha1\n"
                                "kind: Dataset\n"
                                "metadata: {name: spark-logs}\n"
                                "spec:\n"
                                "  mounts:\n"
                                "    - {mountPoint: 'http://192.0.2.1/spark/', name: spark}\n";

/* One node that this host is by its loopback address (no node file, no matching name). */
static const char yaml_loopback[] = "apiVersion: weir.io/v1\n"
                                    "kind: Cluster\n"
                                    "metadata: {name: t}\n"
                                    "spec:\n"
                                    "  nodes:\n"
                                    "    - {name: weir-test-elsewhere, address: 192.0.2.201}\n"
                                    "    - {name: weir-test-loopback, address: 127.0.0.1}\n"
                                    "---\n"
                                    "apiVersion: data.fluid.io/v1alpha1\n"
                                    "kind: Dataset\n"
                                    "metadata: {name: hbase}\n"
                                    "spec:\n"
                                    "  mounts:\n"
                                    "    - {mountPoint: 'http://192.0.2.1/hbase/', name: hbase}\n";

/* Nodes that are not this host by any means (TEST-NET addresses, names no host has). */
static const char yaml_elsewhere[] = "apiVersion: weir.io/v1\n"
                                     "kind: Cluster\n"
                                     "metadata: {name: t}\n"
                                     "spec:\n"
                                     "  nodes:\n"
                                     "    - {name: weir-test-nowhere-a, address: 192.0.2.211}\n"
                                     "    - {name: weir-test-nowhere-b, address: 192.0.2.212}\n"
                                     "---\n"
                                     "apiVersion: data.fluid.io/v1alpha1\n"
                                     "kind: Dataset\n"
                                     "metadata: {name: hbase}\n"
                                     "spec:\n"
                                     "  mounts:\n"
                                     "    - {mountPoint: 'http://192.0.2.1/hbase/', name: hbase}\n";

static const char yaml_invalid[] = "apiVersion: weir.io/v1\n"
                                   "kind: Cluster\n"
                                   "spec:\n"
                                   "  nodes: [ {name: node1, address: 192.0.2.201\n";

/* Short paths (a temporary directory) in buffers that make every derived path fit. */
typedef struct fixture {
        char dir[256];
        char config[512];
        char node_file[512];
        char out[512]; /* the generator's normal directory */
} fixture;

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path)
{
        static char buf[8192];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return NULL;
        n = read(fd, buf, sizeof(buf) - 1);
        assert_true(n >= 0);
        buf[n] = '\0';
        return buf;
}

static int fixture_setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        const char *tmp = getenv("TMPDIR");

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "%s/weir-generator-XXXXXX", tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->config, sizeof(f->config), "%s/cluster.yaml", f->dir);
        snprintf(f->node_file, sizeof(f->node_file), "%s/node", f->dir);
        snprintf(f->out, sizeof(f->out), "%s/normal", f->dir);
        assert_int_equal(mkdir(f->out, 0755), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        fixture *f = *state;
        char cmd[PATH_MAX + 16];

        /* The tree is ours and made of plain files, directories and links. */
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

/* Runs the generator binary with ARGV (after its name) and nothing but ENVP in its environment;
 * returns its exit status. */
static int exec_generator(char *const *args, char *const *envp)
{
        char *argv[8] = {(char *)WEIR_GENERATOR};
        int status;
        pid_t pid;

        for (size_t i = 0; args[i]; i++) {
                assert_true(i + 2 < ELEMENTSOF(argv));
                argv[i + 1] = args[i];
        }
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execve(WEIR_GENERATOR, argv, envp);
                _exit(127);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* Runs the generator binary as systemd does (three directories), returns its exit status. */
static int run_generator(const fixture *f, bool with_node_file)
{
        char env_config[1024], env_node[1024], early[1024], late[1024];

        snprintf(env_config, sizeof(env_config), "WEIR_CONFIG=%s", f->config);
        snprintf(env_node, sizeof(env_node), "WEIR_NODE_FILE=%s%s", f->node_file,
                 with_node_file ? "" : ".absent");
        snprintf(early, sizeof(early), "%s/early", f->dir);
        snprintf(late, sizeof(late), "%s/late", f->dir);
        return exec_generator(
                (char *[]){(char *)f->out, early, late, NULL},
                (char *[]){env_config, env_node, (char *)"WEIR_GENERATOR_LOG=stderr", NULL});
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of DIR below the generator output, sorted and joined by spaces ("" if none). */
static const char *list_dir(const fixture *f, const char *dir)
{
        static char buf[4096];
        char path[PATH_MAX], *names[64];
        size_t n = 0;
        struct dirent *de;
        DIR *d;

        buf[0] = '\0';
        snprintf(path, sizeof(path), "%s/%s", f->out, dir);
        d = opendir(path);
        if (!d)
                return buf;
        while ((de = readdir(d)) && n < ELEMENTSOF(names))
                if (de->d_name[0] != '.')
                        names[n++] = strdup(de->d_name);
        closedir(d);
        qsort(names, n, sizeof(names[0]), cmp_str);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(buf, " ");
                strncat(buf, names[i], sizeof(buf) - strlen(buf) - 2);
                free(names[i]);
        }
        return buf;
}

static const char *link_target(const fixture *f, const char *name)
{
        static char buf[PATH_MAX];
        char path[PATH_MAX];
        ssize_t n;

        snprintf(path, sizeof(path), "%s/%s", f->out, name);
        n = readlink(path, buf, sizeof(buf) - 1);
        if (n < 0)
                return NULL;
        buf[n] = '\0';
        return buf;
}

static void assert_nothing_generated(const fixture *f)
{
        assert_string_equal(list_dir(f, ""), "");
}

static void assert_dropin(const fixture *f, const char *unit, const char *node)
{
        char path[PATH_MAX], want[1024];
        const char *text;

        snprintf(path, sizeof(path), "%s/%s.d/50-weir-node.conf", f->out, unit);
        text = read_text(path);
        assert_non_null(text);
        snprintf(want, sizeof(want), "Environment=\"WEIR_NODE=%s\"\n", node);
        assert_non_null(strstr(text, "[Service]\n"));
        assert_non_null(strstr(text, want));
        snprintf(want, sizeof(want), "Environment=\"WEIR_CONFIG=%s\"\n", f->config);
        assert_non_null(strstr(text, want));
}

static void assert_target_pulled_in(const fixture *f)
{
        assert_string_equal(list_dir(f, "multi-user.target.wants"), "weir.target");
        assert_string_equal(link_target(f, "multi-user.target.wants/weir.target"),
                            WEIR_SYSTEM_UNIT_DIR "/weir.target");
}

static void test_master_worker_fuse(void **state)
{
        fixture *f = *state;
        char path[PATH_MAX];

        write_text(f->config, yaml_four);
        write_text(f->node_file, "node1\n");
        assert_int_equal(run_generator(f, true), 0);

        assert_target_pulled_in(f);
        assert_string_equal(list_dir(f, "weir.target.wants"),
                            "weir-fuse@hbase.service weir-fuse@spark\\x2dlogs.service "
                            "weir-master.service weir-worker.service");
        assert_string_equal(link_target(f, "weir.target.wants/weir-master.service"),
                            WEIR_SYSTEM_UNIT_DIR "/weir-master.service");
        assert_string_equal(link_target(f, "weir.target.wants/weir-worker.service"),
                            WEIR_SYSTEM_UNIT_DIR "/weir-worker.service");
        assert_string_equal(link_target(f, "weir.target.wants/weir-fuse@spark\\x2dlogs.service"),
                            WEIR_SYSTEM_UNIT_DIR "/weir-fuse@.service");
        assert_dropin(f, "weir-master.service", "node1");
        assert_dropin(f, "weir-worker.service", "node1");
        assert_dropin(f, "weir-fuse@.service", "node1");
        /* A dataDir outside /var/lib/weir is made writable for the master ('%' escaped). */
        snprintf(path, sizeof(path), "%s/weir-master.service.d/50-weir-node.conf", f->out);
        assert_non_null(strstr(read_text(path), "\nReadWritePaths=-\"/srv/weir%%1\"\n"));
        snprintf(path, sizeof(path), "%s/weir-worker.service.d/50-weir-node.conf", f->out);
        assert_null(strstr(read_text(path), "ReadWritePaths"));
}

static void test_worker_fuse(void **state)
{
        fixture *f = *state;

        write_text(f->config, yaml_four);
        write_text(f->node_file, "  node2  \n");
        assert_int_equal(run_generator(f, true), 0);

        assert_target_pulled_in(f);
        assert_string_equal(list_dir(f, "weir.target.wants"),
                            "weir-fuse@hbase.service weir-fuse@spark\\x2dlogs.service "
                            "weir-worker.service");
        assert_string_equal(list_dir(f, ""), "multi-user.target.wants weir-fuse@.service.d "
                                             "weir-worker.service.d weir.target.wants");
        assert_dropin(f, "weir-worker.service", "node2");
}

static void test_fuse_only(void **state)
{
        fixture *f = *state;
        char path[PATH_MAX];

        write_text(f->config, yaml_four);
        write_text(f->node_file, "node3");
        assert_int_equal(run_generator(f, true), 0);

        assert_target_pulled_in(f);
        assert_string_equal(list_dir(f, "weir.target.wants"),
                            "weir-fuse@hbase.service weir-fuse@spark\\x2dlogs.service");
        assert_dropin(f, "weir-fuse@.service", "node3");
        snprintf(path, sizeof(path), "%s/weir-fuse@.service.d/50-weir-node.conf", f->out);
        assert_non_null(strstr(read_text(path), "Environment=\"WEIR_MOUNT_ROOT=/mnt/weir\"\n"));
}

static bool have_loopback_address(void)
{
        struct ifaddrs *ifs, *a;
        bool found = false;

        if (getifaddrs(&ifs) < 0)
                return false;
        for (a = ifs; a; a = a->ifa_next)
                if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET &&
                    ((struct sockaddr_in *)(void *)a->ifa_addr)->sin_addr.s_addr ==
                            htonl(INADDR_LOOPBACK))
                        found = true;
        freeifaddrs(ifs);
        return found;
}

static void test_worker_only(void **state)
{
        fixture *f = *state;

        write_text(f->config, yaml_four);
        write_text(f->node_file, "node4\n");
        assert_int_equal(run_generator(f, true), 0);

        assert_target_pulled_in(f);
        assert_string_equal(list_dir(f, "weir.target.wants"), "weir-worker.service");
        assert_string_equal(list_dir(f, ""),
                            "multi-user.target.wants weir-worker.service.d weir.target.wants");
        assert_dropin(f, "weir-worker.service", "node4");
}

static void test_by_address(void **state)
{
        fixture *f = *state;

        if (!have_loopback_address()) {
                print_message("no 127.0.0.1 on any interface here\n");
                skip();
        }
        write_text(f->config, yaml_loopback);
        assert_int_equal(run_generator(f, false), 0);

        assert_target_pulled_in(f);
        assert_dropin(f, "weir-fuse@.service", "weir-test-loopback");
}

/* What makes the generator start nothing and still succeed (boot goes on): a YAML it cannot
 * load, no YAML, no node of the YAML here, a node file naming a node the YAML does not list (an
 * explicit choice that is wrong is an error, not a reason to guess by address). */
static void test_nothing_generated(void **state)
{
        static const struct {
                const char *yaml;      /* NULL: no file */
                const char *node_file; /* NULL: none, the generator matches by address */
        } cases[] = {
                {yaml_invalid, "node1\n"},
                {NULL, "node1\n"},
                {yaml_elsewhere, NULL},
                {yaml_loopback, "node9\n"},
        };
        fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                print_message("case %zu\n", i);
                (void)unlink(f->config);
                (void)unlink(f->node_file);
                if (cases[i].yaml)
                        write_text(f->config, cases[i].yaml);
                if (cases[i].node_file)
                        write_text(f->node_file, cases[i].node_file);
                assert_int_equal(run_generator(f, cases[i].node_file != NULL), 0);
                assert_nothing_generated(f);
        }
}

static void test_failure_leaves_nothing(void **state)
{
        fixture *f = *state;
        char path[PATH_MAX];

        /* A file where the generator wants the FUSE drop-in directory: the links it made before
         * noticing must be gone again. */
        write_text(f->config, yaml_four);
        write_text(f->node_file, "node1\n");
        snprintf(path, sizeof(path), "%s/weir-fuse@.service.d", f->out);
        write_text(path, "in the way\n");
        assert_int_equal(run_generator(f, true), 0);
        assert_string_equal(list_dir(f, ""), "weir-fuse@.service.d");
}

static void test_usage(void **state)
{
        fixture *f = *state;

        assert_int_equal(exec_generator((char *[]){(char *)f->out, (char *)"x", NULL},
                                        (char *[]){(char *)"WEIR_GENERATOR_LOG=stderr", NULL}),
                         1);
        assert_nothing_generated(f);
}

/* --rescan after the network came up: when the boot-time run already pulled weir.target in, it
 * leaves systemd alone (no reload) and succeeds. */
static void test_rescan_already_found(void **state)
{
        fixture *f = *state;
        char env_dir[1024];

        write_text(f->config, yaml_four);
        write_text(f->node_file, "node3\n");
        assert_int_equal(run_generator(f, true), 0);
        assert_non_null(link_target(f, "multi-user.target.wants/weir.target"));

        snprintf(env_dir, sizeof(env_dir), "WEIR_GENERATOR_DIR=%s", f->out);
        /* No bus address: were it to try a reload, it would fail. */
        char no_bus[] = "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent";
        assert_int_equal(exec_generator((char *[]){(char *)"--rescan", NULL},
                                        (char *[]){env_dir, no_bus, NULL}),
                         0);
}

static void test_escape(void **state)
{
        static const char *const cases[][2] = {
                {"hbase", "hbase"},
                {"spark-logs", "spark\\x2dlogs"},
                {"a/b", "a-b"},
                {".hidden", "\\x2ehidden"},
                {"x.y:z_1", "x.y:z_1"},
                {"sp ace", "sp\\x20ace"},
                {"\xc3\xa9", "\\xc3\\xa9"},
        };
        char *s;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                assert_int_equal(generator_escape_instance(cases[i][0], &s), 0);
                assert_string_equal(s, cases[i][1]);
                free(s);
        }
        assert_int_equal(generator_escape_instance("", &s), -EINVAL);
}

static void test_find_by_hostname(void **state)
{
        fixture *f = *state;
        const config_node *n;
        generator_match how;
        config *c = NULL;

        assert_int_equal(config_load_buffer("four.yaml", yaml_four, strlen(yaml_four), &c, NULL),
                         0);
        assert_int_equal(generator_find_node(c, f->node_file, "node2", &n, &how), 0);
        assert_string_equal(n->name, "node2");
        assert_int_equal(how, GENERATOR_MATCH_HOSTNAME);
        /* The first label of a fully qualified name counts too. */
        assert_int_equal(generator_find_node(c, f->node_file, "node3.example.org", &n, &how), 0);
        assert_string_equal(n->name, "node3");
        /* The node file wins over the host name. */
        write_text(f->node_file, "node1\n");
        assert_int_equal(generator_find_node(c, f->node_file, "node3", &n, &how), 0);
        assert_string_equal(n->name, "node1");
        assert_int_equal(how, GENERATOR_MATCH_NODE_FILE);
        config_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_master_worker_fuse, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_worker_fuse, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_fuse_only, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_worker_only, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_by_address, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_nothing_generated, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_failure_leaves_nothing, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_usage, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_rescan_already_found, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test(test_escape),
                cmocka_unit_test_setup_teardown(test_find_by_hostname, fixture_setup,
                                                fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
