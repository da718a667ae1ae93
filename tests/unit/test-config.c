/* Unit tests for config.c: the examples, Fluid's seed manifests, invalid documents with their
 * exact diagnostics, limits, secrets from files, placement. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cleanup.h"
#include "config.h"

/* Three nodes, 9 lines: the next document starts on line 10. */
#define CLUSTER3                                                                                   \
        "apiVersion: weir.io/v1\n"                                                                 \
        "kind: Cluster\n"                                                                          \
        "metadata: {name: c}\n"                                                                    \
        "spec:\n"                                                                                  \
        "  nodes:\n"                                                                               \
        "    - {name: n1, address: 10.0.0.1}\n"                                                    \
        "    - {name: n2, address: 10.0.0.2}\n"                                                    \
        "    - {name: n3, address: 10.0.0.3}\n"                                                    \
        "---\n"

/* Dataset "d" on lines 10-17: the next document starts on line 18. */
#define DATASET_D                                                                                  \
        "apiVersion: data.fluid.io/v1alpha1\n"                                                     \
        "kind: Dataset\n"                                                                          \
        "metadata: {name: d}\n"                                                                    \
        "spec:\n"                                                                                  \
        "  mounts:\n"                                                                              \
        "    - mountPoint: https://example.org/data/\n"                                            \
        "      name: data\n"                                                                       \
        "---\n"

/* Lines 18-21 of a runtime for "d"; its spec's keys start on line 22. */
#define RUNTIME_D_HEAD                                                                             \
        "apiVersion: data.fluid.io/v1alpha1\n"                                                     \
        "kind: AlluxioRuntime\n"                                                                   \
        "metadata: {name: d}\n"                                                                    \
        "spec:\n"

#define LEVEL_MEM "      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi}\n"
/* The cluster, dataset d and its runtime with the tier LEVELS (lines 24 on). */
#define TIERED(levels) CLUSTER3 DATASET_D RUNTIME_D_HEAD "  tieredstore:\n    levels:\n" levels
/* The same with EXTRA runtime keys (line 22) before one MEM tier. */
#define RUNTIME_D(extra)                                                                           \
        CLUSTER3 DATASET_D RUNTIME_D_HEAD extra "  tieredstore:\n    levels:\n" LEVEL_MEM

static char tmpdir[] = "/tmp/test-config-XXXXXX";

static void dump_diags(const config_diags *d)
{
        for (size_t i = 0; i < d->n; i++)
                print_message("  %u:%u: %s: %s\n", d->items[i].line, d->items[i].column,
                              d->items[i].warning ? "warning" : "error", d->items[i].message);
}

static size_t count(const config_diags *d, bool warning)
{
        size_t n = 0;

        for (size_t i = 0; i < d->n; i++)
                n += d->items[i].warning == warning;
        return n;
}

/* Loads a valid document: no error, and no warning unless WARNINGS_OK. */
static config *load_ok(const char *name, const char *yaml, bool warnings_ok)
{
        config_diags d = {};
        config *c = NULL;
        int r;

        r = config_load_buffer(name, yaml, strlen(yaml), &c, &d);
        if (r != 0 || (!warnings_ok && d.n > 0))
                dump_diags(&d);
        assert_int_equal(r, 0);
        if (!warnings_ok)
                assert_int_equal(d.n, 0);
        config_diags_done(&d);
        return c;
}

static config *load_file_ok(const char *rel)
{
        _cleanup_free_ char *path = NULL;
        config_diags d = {};
        config *c = NULL;
        int r;

        assert_true(asprintf(&path, "%s/%s", SOURCE_ROOT, rel) > 0);
        r = config_load(path, &c, &d);
        if (r != 0 || d.n > 0)
                dump_diags(&d);
        assert_int_equal(r, 0);
        assert_int_equal(d.n, 0);
        assert_string_equal(c->path, path);
        config_diags_done(&d);
        return c;
}

/* Expects YAML to be refused with an error at LINE:COLUMN whose message contains MESSAGE. */
static void expect_error_named(const char *name, const char *yaml, size_t len, unsigned line,
                               unsigned column, const char *message)
{
        config_diags d = {};
        config *c = NULL;
        bool found = false;
        int r;

        r = config_load_buffer(name, yaml, len, &c, &d);
        for (size_t i = 0; i < d.n; i++)
                if (!d.items[i].warning && d.items[i].line == line && d.items[i].column == column &&
                    strstr(d.items[i].message, message))
                        found = true;
        if (r != -EINVAL || !found) {
                print_message("expected %u:%u: error: ...%s..., got %d and:\n", line, column,
                              message, r);
                dump_diags(&d);
        }
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_true(found);
        /* Diagnostics come in file order. */
        for (size_t i = 1; i < d.n; i++)
                assert_true(d.items[i - 1].line < d.items[i].line ||
                            (d.items[i - 1].line == d.items[i].line &&
                             d.items[i - 1].column <= d.items[i].column));
        config_diags_done(&d);
}

static void expect_error_file(const char *name, const char *yaml, unsigned line, unsigned column,
                              const char *message)
{
        expect_error_named(name, yaml, strlen(yaml), line, column, message);
}

static void expect_error(const char *yaml, unsigned line, unsigned column, const char *message)
{
        expect_error_named("test.yaml", yaml, strlen(yaml), line, column, message);
}

/* ---- examples --------------------------------------------------------------------------- */

static void test_example_cluster_yaml(void **state)
{
        _cleanup_(config_freep) config *c = load_file_ok("config/cluster.yaml");
        const config_dataset *d;

        assert_string_equal(c->cluster_name, "hbase");
        assert_int_equal(c->n_nodes, 3);
        assert_int_equal(c->master_replicas, 3);
        assert_int_equal(c->worker_replicas, 3);
        assert_int_equal(config_n_masters(c), 3);
        for (unsigned i = 0; i < 3; i++) {
                const config_node *n = &c->nodes[i];

                assert_true(n->master && n->worker && n->fuse);
                assert_int_equal(n->raft_id, i + 1);
                assert_int_equal(n->raft_port, 19200);
                assert_int_equal(n->master_port, 19998);
                assert_int_equal(n->worker_port, 29999);
                assert_string_equal(n->data_dir, "/var/lib/weir");
                assert_string_equal(n->runtime_dir, "/run/weir");
                assert_string_equal(n->mount_root, "/mnt/weir");
        }
        assert_string_equal(c->nodes[2].address, "192.168.1.147");
        assert_ptr_equal(config_master_by_raft_id(c, 2), &c->nodes[1]);
        assert_null(config_master_by_raft_id(c, 4));
        assert_null(c->token_file);
        assert_int_equal(c->election_timeout_ms, 300);
        assert_int_equal(c->heartbeat_timeout_ms, 50);
        assert_false(c->raft_loop_normal); /* real-time loop thread by default */
        d = config_find_dataset(c, "hbase");
        assert_non_null(d);
        assert_int_equal(d->block_size, 16 << 20);
        assert_int_equal(d->sync_interval_ms, 0);
        assert_true(d->max_entries == CONFIG_DEFAULT_MAX_ENTRIES);
        assert_int_equal(d->n_mounts, 1);
        assert_string_equal(d->mounts[0].name, "hbase");
        assert_int_equal(d->mounts[0].scheme, CONFIG_SCHEME_HTTPS);
        assert_non_null(d->runtime);
        assert_string_equal(d->runtime->kind, "AlluxioRuntime");
        assert_int_equal(d->runtime->attr_timeout_ms, 60000);
        assert_int_equal(c->n_tiers, 1);
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_MEM);
        assert_string_equal(c->tiers[0].path, "/dev/shm");
        assert_true(c->tiers[0].quota == 2ull << 30);
        assert_true(c->tiers[0].high == 0.95 && c->tiers[0].low == 0.7);
}

static void test_example_single_master(void **state)
{
        _cleanup_(config_freep) config *c = load_file_ok("config/examples/single-master.yaml");

        assert_int_equal(c->n_nodes, 1);
        assert_int_equal(c->master_replicas, 1);
        assert_int_equal(c->worker_replicas, 1);
        assert_true(c->nodes[0].master && c->nodes[0].worker && c->nodes[0].fuse);
        assert_int_equal(c->nodes[0].raft_id, 1);
        assert_string_equal(c->runtimes[0].kind, "Runtime");
        assert_int_equal(c->n_tiers, 1);
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_SSD);
        assert_true(c->tiers[0].quota == 20ull << 30);
        /* Fluid's (and Alluxio's) watermarks when omitted. */
        assert_true(c->tiers[0].high == 0.95 && c->tiers[0].low == 0.7);
}

static void test_example_three_master(void **state)
{
        _cleanup_(config_freep) config *c = load_file_ok("config/examples/three-master.yaml");

        assert_int_equal(c->master_replicas, 3);
        assert_int_equal(c->worker_replicas, 2);
        assert_string_equal(c->token_file, "/etc/weir/token");
        assert_true(c->nodes[0].worker && c->nodes[1].worker && !c->nodes[2].worker);
        assert_true(c->nodes[2].master && c->nodes[2].fuse);
        assert_int_equal(c->nodes[2].raft_id, 3);
        assert_string_equal(c->datasets[0].mounts[0].mount_point,
                            "https://mirrors.tuna.tsinghua.edu.cn/apache/hbase/stable/");
}

static void test_example_tiered(void **state)
{
        _cleanup_(config_freep) config *c = load_file_ok("config/examples/tiered.yaml");
        const config_node *gpu = config_find_node(c, "gpu1");

        assert_int_equal(c->n_nodes, 4);
        assert_non_null(gpu);
        assert_true(!gpu->master && !gpu->worker && gpu->fuse);
        assert_int_equal(gpu->raft_id, 0);
        assert_int_equal(config_n_masters(c), 3);
        assert_int_equal(c->n_tiers, 3);
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_MEM);
        assert_int_equal(c->tiers[1].medium, CONFIG_MEDIUM_SSD);
        assert_int_equal(c->tiers[2].medium, CONFIG_MEDIUM_HDD);
        assert_true(c->tiers[0].high == 0.9 && c->tiers[0].low == 0.6);
        assert_true(c->tiers[2].quota == 2000000000000ull);
        assert_true(c->datasets[0].block_size == 64ull << 20);
        assert_int_equal(c->datasets[0].sync_interval_ms, 3600000);
        assert_int_equal(c->datasets[0].mounts[0].scheme, CONFIG_SCHEME_FILE);
        assert_string_equal(c->datasets[0].mounts[0].name, "train");
}

static void test_example_s3_oss(void **state)
{
        _cleanup_(config_freep) config *c = load_file_ok("config/examples/s3-oss.yaml");
        const config_dataset *logs = config_find_dataset(c, "logs"),
                             *hadoop = config_find_dataset(c, "hadoop");
        const config_mount *m;

        assert_non_null(logs);
        assert_non_null(hadoop);
        m = &logs->mounts[0];
        assert_int_equal(m->scheme, CONFIG_SCHEME_S3);
        assert_int_equal(m->n_options, 4);
        assert_string_equal(config_mount_option(m, "fs.s3a.region"), "eu-central-1");
        assert_false(m->options[1].secret);
        assert_string_equal(config_mount_option(m, "fs.s3a.access.key"),
                            "EXAMPLE-NOT-A-REAL-KEY-ID");
        assert_string_equal(config_mount_option(m, "fs.s3a.secret.key"),
                            "example-not-a-real-secret");
        assert_true(m->options[2].secret && m->options[3].secret);
        assert_null(config_mount_option(m, "nope"));
        m = &hadoop->mounts[0];
        assert_int_equal(m->scheme, CONFIG_SCHEME_OSS);
        assert_string_equal(config_mount_option(m, "fs.oss.accessKeyId"), "EXAMPLE-OSS-KEY-ID");
        assert_string_equal(config_mount_option(m, "fs.oss.accessKeySecret"), "example-oss-secret");
        assert_int_equal(c->worker_replicas, 2);
        assert_ptr_equal(logs->runtime, &c->runtimes[0]);
        assert_ptr_equal(hadoop->runtime, &c->runtimes[1]);
}

/* ---- Fluid's seed manifests, unchanged, with a Cluster document added ------------------- */

/* The hbase Dataset of the Alluxio and GooseFS walkthroughs (the same in both). */
#define SEED_HBASE_DATASET                                                                         \
        "apiVersion: data.fluid.io/v1alpha1\n"                                                     \
        "kind: Dataset\n"                                                                          \
        "metadata:\n"                                                                              \
        "  name: hbase\n"                                                                          \
        "spec:\n"                                                                                  \
        "  mounts:\n"                                                                              \
        "    - mountPoint: https://mirrors.tuna.tsinghua.edu.cn/apache/hbase/stable/\n"            \
        "      name: hbase\n"

static void test_seed_alluxio(void **state)
{
        /* From the AlluxioRuntime master-HA walkthrough. */
        _cleanup_(config_freep) config *c =
                load_ok("seed.yaml",
                        CLUSTER3 SEED_HBASE_DATASET "---\n"
                                                    "apiVersion: data.fluid.io/v1alpha1\n"
                                                    "kind: AlluxioRuntime\n"
                                                    "metadata:\n"
                                                    "  name: hbase\n"
                                                    "spec:\n"
                                                    "  replicas: 2\n"
                                                    "  tieredstore:\n"
                                                    "    levels:\n"
                                                    "      - mediumtype: MEM\n"
                                                    "        path: /dev/shm\n"
                                                    "        quota: 2Gi\n"
                                                    "        high: \"0.95\"\n"
                                                    "        low: \"0.7\"\n"
                                                    "  master:\n"
                                                    "    replicas: 3\n",
                        false);

        assert_int_equal(c->master_replicas, 3);
        assert_int_equal(c->worker_replicas, 2);
        assert_true(c->nodes[1].worker && !c->nodes[2].worker);
        assert_true(c->tiers[0].quota == 2ull << 30);
}

static void test_seed_goosefs(void **state)
{
        /* From the GooseFSRuntime walkthroughs (Chinese, Korean, English). */
        _cleanup_(config_freep) config *c =
                load_ok("seed.yaml",
                        CLUSTER3 SEED_HBASE_DATASET "---\n"
                                                    "apiVersion: data.fluid.io/v1alpha1\n"
                                                    "kind: GooseFSRuntime\n"
                                                    "metadata:\n"
                                                    "  name: hbase\n"
                                                    "spec:\n"
                                                    "  replicas: 3\n"
                                                    "  tieredstore:\n"
                                                    "    levels:\n"
                                                    "      - mediumtype: HDD\n"
                                                    "        path: /mnt/disk1\n"
                                                    "        quota: 2G\n"
                                                    "        high: \"0.8\"\n"
                                                    "        low: \"0.7\"\n"
                                                    "  master:\n"
                                                    "    replicas: 3\n",
                        false);

        assert_int_equal(c->worker_replicas, 3);
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_HDD);
        assert_true(c->tiers[0].quota == 2000000000ull);
        assert_true(c->tiers[0].high == 0.8);
}

/* The JindoRuntime walkthrough names its runtime "hadoop" and its Dataset "hbase": Fluid binds a
 * runtime to the dataset of the same name, so neither Fluid nor weir can bind them. weir says so
 * precisely; the oss:// dataset itself, with its options, parses. */
static const char seed_jindo_dataset[] = "apiVersion: data.fluid.io/v1alpha1\n"
                                         "kind: Dataset\n"
                                         "metadata:\n"
                                         "  name: hbase\n"
                                         "spec:\n"
                                         "  mounts:\n"
                                         "    - mountPoint: oss://test-bucket/\n"
                                         "      options:\n"
                                         "        fs.oss.accessKeyId: <OSS_ACCESS_KEY_ID>\n"
                                         "        fs.oss.accessKeySecret: <OSS_ACCESS_KEY_SECRET>\n"
                                         "        fs.oss.endpoint: <OSS_ENDPOINT> \n"
                                         "      name: hadoop\n";

static const char seed_jindo_runtime[] = "apiVersion: data.fluid.io/v1alpha1\n"
                                         "kind: JindoRuntime\n"
                                         "metadata:\n"
                                         "  name: hadoop\n"
                                         "spec:\n"
                                         "  replicas: 3\n"
                                         "  tieredstore:\n"
                                         "    levels:\n"
                                         "      - mediumtype: HDD\n"
                                         "        path: /mnt/disk1\n"
                                         "        quota: 2G\n"
                                         "        high: \"0.8\"\n"
                                         "        low: \"0.7\"\n"
                                         "  master:\n"
                                         "    replicas: 3\n";

static void test_seed_jindo(void **state)
{
        _cleanup_free_ char *all = NULL, *dataset_only = NULL;
        _cleanup_(config_freep) config *c = NULL;
        const config_mount *m;

        assert_true(asprintf(&dataset_only, "%s%s", CLUSTER3, seed_jindo_dataset) > 0);
        c = load_ok("seed.yaml", dataset_only, true);
        m = &c->datasets[0].mounts[0];
        assert_string_equal(m->name, "hadoop");
        assert_int_equal(m->scheme, CONFIG_SCHEME_OSS);
        assert_string_equal(config_mount_option(m, "fs.oss.accessKeyId"), "<OSS_ACCESS_KEY_ID>");
        assert_string_equal(config_mount_option(m, "fs.oss.endpoint"), "<OSS_ENDPOINT>");
        /* Plain options that hold credentials are never printed either. */
        assert_true(m->options[0].secret && m->options[1].secret && !m->options[2].secret);

        /* Dataset on lines 10-21, the runtime's "name: hadoop" on line 26. */
        assert_true(asprintf(&all, "%s%s---\n%s", CLUSTER3, seed_jindo_dataset,
                             seed_jindo_runtime) > 0);
        expect_error(all, 26, 9, "JindoRuntime 'hadoop' has no Dataset named 'hadoop'");
}

static void test_fluid_fields_warn(void **state)
{
        config_diags d = {};
        config *c = NULL;
        static const char y[] =
                CLUSTER3 DATASET_D RUNTIME_D_HEAD "  jvmOptions: [\"-Xmx4G\"]\n"
                                                  "  properties: {a: b}\n"
                                                  "  master:\n"
                                                  "    jvmOptions: [\"-Xmx4G\"]\n"
                                                  "  fuse:\n"
                                                  "    args: [-oro]\n"
                                                  "  tieredstore:\n"
                                                  "    levels:\n" LEVEL_MEM "  frobnicate: 1\n"
                                                  "status: {}\n";

        assert_int_equal(config_load_buffer("t.yaml", y, strlen(y), &c, &d), 0);
        assert_non_null(c);
        assert_int_equal(count(&d, false), 0);
        assert_int_equal(d.n, 6);
        assert_int_equal(d.items[0].line, 22);
        assert_int_equal(d.items[0].column, 3);
        assert_string_equal(d.items[0].message,
                            "runtime spec: 'jvmOptions' is a Fluid setting that "
                            "weir does not use, ignoring");
        assert_int_equal(d.items[2].line, 25);
        assert_int_equal(d.items[2].column, 5);
        assert_int_equal(d.items[4].line, 31);
        assert_string_equal(d.items[4].message, "runtime spec: unknown key 'frobnicate', ignoring");
        assert_int_equal(d.items[5].line, 32);
        assert_int_equal(d.items[5].column, 1);
        config_free(c);
        config_diags_done(&d);
}

/* ---- invalid documents ------------------------------------------------------------------ */

static void test_invalid_master_replicas(void **state)
{
        expect_error(RUNTIME_D("  master: {replicas: 2}\n"), 22, 22,
                     "master.replicas must be 1 or an odd number >= 3 (got 2)");
        expect_error(RUNTIME_D("  master: {replicas: 0}\n"), 22, 22,
                     "master.replicas must be 1 or an odd number >= 3 (got 0)");
        expect_error(RUNTIME_D("  master: {replicas: -1}\n"), 22, 22,
                     "master.replicas must be 1 or an odd number >= 3 (got -1)");
        expect_error(RUNTIME_D("  master: {replicas: 5}\n"), 22, 22,
                     "master.replicas (5) must not be larger than the number of nodes (3)");
}

static void test_invalid_quota(void **state)
{
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 2X}\n"), 24, 50,
                     "quota: expected a size such as 2G, 2Gi, 512Mi or a number of bytes "
                     "(got 2X)");
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 0}\n"), 24, 50,
                     "quota must be larger than 0");
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm}\n"), 24, 9,
                     "tieredstore level: missing 'quota'");
}

static void test_invalid_watermarks(void **state)
{
        expect_error(
                TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: \"1.5\"}\n"),
                24, 61, "high: expected a number in (0, 1] such as 0.95 or \"0.95\" (got 1.5)");
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: 0.5, low: "
                            "0.7}\n"),
                     24, 71, "low (0.7) must be less than high (0.5)");
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, low: \"0\"}\n"),
                     24, 60, "low: expected a number in (0, 1]");
        /* Only high given, below the default low of 0.7. */
        expect_error(TIERED("      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: 0.6}\n"),
                     24, 61, "low (0.7) must be less than high (0.6)");
}

#define CLUSTER_API(api)                                                                           \
        "apiVersion: weir.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n"                      \
        "  tokenFile: /etc/weir/token\n" api "  nodes:\n    - {name: n1, address: 10.0.0.1}\n"

/* spec.api: defaults, every key, and each error named at its place. */
static void test_api_section(void **state)
{
        config *c = load_ok("/etc/weir/cluster.yaml", CLUSTER_API(""), false);
        assert_null(c->api.read_token_file);
        assert_null(c->api.bind_address);
        assert_null(c->api.tls_cert_file);
        assert_int_equal(c->api.max_connections, 512);
        assert_int_equal(c->api.max_connections_per_client, 256);
        assert_int_equal(c->api.request_timeout_ms, 10000);
        config_free(c);

        c = load_ok("/etc/weir/cluster.yaml",
                    CLUSTER_API("  api:\n    readTokenFile: read-token\n    bindAddress: 0.0.0.0\n"
                                "    tls: {certFile: /tls/c.pem, keyFile: k.pem, caFile: ca.pem}\n"
                                "    maxConnections: 100\n    maxConnectionsPerClient: 8\n"
                                "    requestTimeout: 2s\n"),
                    false);
        assert_string_equal(c->api.read_token_file, "/etc/weir/read-token");
        assert_string_equal(c->api.bind_address, "0.0.0.0");
        assert_string_equal(c->api.tls_cert_file, "/tls/c.pem");
        assert_string_equal(c->api.tls_key_file, "/etc/weir/k.pem");
        assert_string_equal(c->api.tls_ca_file, "/etc/weir/ca.pem");
        assert_int_equal(c->api.max_connections, 100);
        assert_int_equal(c->api.max_connections_per_client, 8);
        assert_int_equal(c->api.request_timeout_ms, 2000);
        config_free(c);

        c = load_ok("/etc/weir/cluster.yaml", CLUSTER_API("  api: {bindAddress: node}\n"), false);
        assert_null(c->api.bind_address);
        config_free(c);

        expect_error(CLUSTER_API("  api: {tls: {certFile: c.pem}}\n"), 6, 14,
                     "certFile and keyFile go together");
        expect_error(CLUSTER_API("  api: {requestTimeout: 10ms}\n"), 6, 25,
                     "api.requestTimeout must be between 100ms and 10m");
        expect_error(CLUSTER_API("  api: {maxConnections: 3}\n"), 6, 25,
                     "api.maxConnections must be at least 16");
        expect_error(CLUSTER_API("  api: {bindAddress: '[::]:80'}\n"), 6, 22,
                     "api.bindAddress: expected 'node' or an address");
        expect_error("apiVersion: weir.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n"
                     "  api: {readTokenFile: r}\n  nodes:\n    - {name: n1, address: 10.0.0.1}\n",
                     5, 24, "api.readTokenFile needs tokenFile");
}

static void test_invalid_medium(void **state)
{
        expect_error(TIERED("      - {mediumtype: NVM, path: /dev/shm, quota: 1Gi}\n"), 24, 22,
                     "mediumtype must be MEM, SSD or HDD (got 'NVM')");
        expect_error(TIERED("      - {mediumtype: SSD, path: cache, quota: 1Gi}\n"), 24, 33,
                     "path must be an absolute path (got 'cache')");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  tieredstore:\n"
                                                       "    levels: []\n",
                     23, 13, "levels: expected at least one level");
        expect_error(TIERED("      - {mediumtype: SSD, path: /mnt/a, quota: 1Gi}\n"
                            "      - {mediumtype: HDD, path: /mnt/a/, quota: 1Gi}\n"),
                     25, 33, "path '/mnt/a/' is used by two levels");
        expect_error(TIERED("      - {mediumtype: SSD, path: \"/a,/b\", quota: 1Gi}\n"), 24, 33,
                     "several paths in one level are not supported");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  replicas: 1\n", 22, 3,
                     "AlluxioRuntime 'd': missing 'tieredstore'");
}

static void test_invalid_duplicates(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n"
                     "    - {name: n1, address: 10.0.0.2}\n",
                     7, 14, "duplicate node name 'n1' (first at 6:14)");
        expect_error(CLUSTER3 DATASET_D DATASET_D, 20, 18,
                     "duplicate dataset name 'd' (first at 12:18)");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: https://example.org/a/data/\n"
                              "    - mountPoint: https://example.org/b/data/\n",
                     16, 19, "duplicate mount name 'data' in dataset 'd' (first at 15:19)");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM
                                                       "---\n" RUNTIME_D_HEAD "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM,
                     28, 18,
                     "a second runtime for dataset 'd' (the first, AlluxioRuntime, is at 20:18)");
        expect_error(CLUSTER3 CLUSTER3, 11, 7, "a second Cluster document (the first is at 1:1)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "kind: Cluster\n",
                     3, 1, "document: duplicate key 'kind' (first at 2:1)");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      options: {k: a}\n"
                              "      encryptOptions:\n"
                              "        - {name: k, valueFile: " SOURCE_ROOT
                              "/config/examples/secrets/s3/access-key}\n",
                     18, 18, "option 'k' given twice (first at 16:17)");
}

static void test_invalid_kind(void **state)
{
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: JuiceFSRuntime\n"
                              "metadata: {name: d}\n",
                     11, 7,
                     "unknown kind 'JuiceFSRuntime'; expected Cluster, Dataset, Runtime, "
                     "AlluxioRuntime, GooseFSRuntime or JindoRuntime");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "metadata: {name: d}\n",
                     10, 1, "missing 'kind'");
        expect_error("apiVersion: data.fluid.io/v1alpha1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n",
                     1, 13,
                     "apiVersion 'data.fluid.io/v1alpha1' is not supported for kind "
                     "Cluster; expected weir.io/v1");
        expect_error("- a\n- b\n", 1, 1,
                     "a document must be a mapping with apiVersion, kind, metadata and spec, got "
                     "a list");
}

static void test_invalid_no_cluster(void **state)
{
        expect_error(DATASET_D, 1, 1, "no Cluster document; add one");
        expect_error("", 1, 1, "no Cluster document");
        expect_error("# just a comment\n---\n", 1, 1, "no Cluster document");
}

static void test_invalid_scheme(void **state)
{
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: ftp://example.org/pub/\n",
                     15, 19,
                     "unsupported scheme 'ftp'; expected http, https, s3, oss, cos, file "
                     "or local");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: /srv/data\n",
                     15, 19, "mountPoint '/srv/data' is not a URL");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: local://srv/data\n",
                     15, 19, "local:// needs an absolute path");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: https:///x\n",
                     15, 19, "missing the host after '://'");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: file:///\n",
                     15, 19, "cannot derive a mount name from it; set 'name'");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - name: x\n",
                     15, 7, "mount: missing 'mountPoint'");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts: []\n",
                     14, 11, "mounts: expected at least one mount");
}

static void test_invalid_runtime_without_dataset(void **state)
{
        expect_error(CLUSTER3 "apiVersion: weir.io/v1\n"
                              "kind: Runtime\n"
                              "metadata:\n"
                              "  name: other\n"
                              "spec:\n"
                              "  tieredstore:\n"
                              "    levels:\n" LEVEL_MEM,
                     13, 9, "Runtime 'other' has no Dataset named 'other'");
}

static void test_invalid_types(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec: 3\n",
                     4, 7, "Cluster spec: expected a mapping, got a scalar");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes: {n1: 10.0.0.1}\n",
                     5, 10, "nodes: expected a list of nodes, got a mapping");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: [c]\n",
                     3, 11, "Cluster metadata: expected a mapping, got a list");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  replicas: [1]\n"
                                                       "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM,
                     22, 13, "replicas: expected a number, got a list");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      options: [a, b]\n",
                     16, 16, "options: expected a mapping of option names to values, got a list");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      options: {k: {a: b}}\n",
                     16, 20, "options: option 'k': expected a string, got a mapping");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1}\n",
                     6, 7, "node 'n1': missing 'address'");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, roles: [master, client]}\n",
                     6, 53, "roles: unknown role 'client'; expected master, worker or fuse");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes: []\n",
                     5, 10, "nodes: expected at least one node");
}

static void test_invalid_ports(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raftPort: 70000\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 13, "raftPort must be a port number between 1 and 65535 (got '70000')");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, workerPort: 0}\n",
                     6, 49, "workerPort must be a port number between 1 and 65535 (got '0')");
        /* Two nodes on one address need their own ports and directories. */
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 127.0.0.1, dataDir: /tmp/a, runtimeDir: /tmp/a}\n"
                     "    - {name: n2, address: 127.0.0.1, dataDir: /tmp/b, runtimeDir: /tmp/b}\n"
                     "---\n" DATASET_D RUNTIME_D_HEAD "  replicas: 2\n"
                     "  tieredstore:\n"
                     "    levels:\n" LEVEL_MEM,
                     7, 7,
                     "node 'n2': worker API port 127.0.0.1:29999 is already used by the "
                     "worker API of node 'n1'");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 127.0.0.1}\n"
                     "    - {name: n2, address: 127.0.0.1, masterPort: 1, workerPort: 2}\n",
                     7, 7, "nodes 'n1' and 'n2' share the address 127.0.0.1 and a dataDir");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 127.0.0.1, dataDir: /a, runtimeDir: /a}\n"
                     "    - {name: n2, address: 127.0.0.1, dataDir: /b, runtimeDir: /b,\n"
                     "       masterPort: 1}\n"
                     "---\n" DATASET_D,
                     7, 7, "nodes 'n1' and 'n2' share the address 127.0.0.1 and a mountRoot");
}

static void test_invalid_names(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: \"\", address: 10.0.0.1}\n",
                     6, 14, "node name must not be empty");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: a/b, address: 10.0.0.1}\n",
                     6, 14, "node name 'a/b' cannot be used as a directory name");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: ..}\n",
                     12, 18, "Dataset name '..' cannot be used as a directory name");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - {mountPoint: \"s3://b/x\", name: .}\n",
                     15, 38, "mount name '.' cannot be used as a directory name");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {namespace: default}\n",
                     12, 11, "Dataset metadata: missing 'name'");
}

static void test_invalid_yaml(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: [Cluster\n",
                     3, 1,
                     "invalid YAML: did not find expected ',' or ']' (while parsing a flow "
                     "sequence at 2:7)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "spec:\n"
                     "\tnodes: []\n",
                     4, 1, "invalid YAML: found character that cannot start any token");
        expect_error("a: b\n  c: d\n", 2, 4,
                     "invalid YAML: mapping values are not allowed in this context");
        expect_error("a: *nope\n", 1, 4, "undefined alias '*nope'");
        expect_error_named("t.yaml", "a: b\n\x01", 6, 2, 1,
                           "invalid YAML: control characters are not allowed");
}

static void test_invalid_master_agreement(void **state)
{
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  master: {replicas: 3}\n"
                                                       "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM "---\n"
                                                       "apiVersion: data.fluid.io/v1alpha1\n"
                                                       "kind: Dataset\n"
                                                       "metadata: {name: e}\n"
                                                       "spec:\n"
                                                       "  mounts: [{mountPoint: \"s3://b/e\"}]\n"
                                                       "---\n"
                                                       "apiVersion: data.fluid.io/v1alpha1\n"
                                                       "kind: JindoRuntime\n"
                                                       "metadata: {name: e}\n"
                                                       "spec:\n"
                                                       "  master: {replicas: 1}\n"
                                                       "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM,
                     37, 22,
                     "master.replicas of JindoRuntime 'e' (1) differs from AlluxioRuntime "
                     "'d' (3, at 22:22); all runtimes share the masters and must agree");
}

static void test_invalid_roles(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, roles: [master]}\n"
                     "    - {name: n2, address: 10.0.0.2, roles: [master]}\n"
                     "    - {name: n3, address: 10.0.0.3}\n",
                     7, 44, "2 nodes have the role master but master.replicas is 1");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, roles: [worker, fuse]}\n",
                     6, 5, "master.replicas is 1 but only 0 nodes may run a master");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, roles: [fuse, fuse]}\n",
                     6, 51, "roles: 'fuse' given twice");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  replicas: 4\n"
                                                       "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM,
                     22, 13, "replicas (workers) is 4 but only 3 nodes may run a worker");
}

static void test_invalid_misc(void **state)
{
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {electionTimeout: 100ms, heartbeatTimeout: 100ms}\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 52,
                     "raft.heartbeatTimeout (100ms) must be shorter than "
                     "raft.electionTimeout (100ms)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {electionTimeout: soon}\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 27,
                     "raft.electionTimeout: expected a duration such as 300ms, 2s, 5m or "
                     "1h (got 'soon')");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  blockSize: 1000\n"
                              "  mounts: [{mountPoint: \"s3://b/x\"}]\n",
                     14, 14, "blockSize must be a multiple of 4Ki between 4Ki and 1Gi (got 1000)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  dataDir: var/lib/weir\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 12, "dataDir must be an absolute path (got 'var/lib/weir')");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: \"10.0.0.1:80\"}\n",
                     6, 27, "address: expected an IPv4 or IPv6 address or a host name");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      encryptOptions:\n"
                              "        - {name: k}\n",
                     17, 11,
                     "encryptOptions 'k': expected exactly one of valueFrom.secretKeyRef "
                     "or valueFile");
}

static void test_invalid_more(void **state)
{
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  replicas: 0\n"
                                                       "  tieredstore:\n"
                                                       "    levels:\n" LEVEL_MEM,
                     22, 13, "replicas (the number of workers) must be at least 1 (got 0)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1, roles: [worker]}\n"
                     "    - {name: n2, address: 10.0.0.2, roles: [master, worker]}\n"
                     "---\n" DATASET_D RUNTIME_D_HEAD "  replicas: 1\n"
                     "  tieredstore:\n"
                     "    levels:\n" LEVEL_MEM,
                     21, 13, "2 nodes have the role worker but replicas (workers) is 1");
        expect_error(TIERED("      - {mediumtype: MEM, path: /m1, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m2, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m3, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m4, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m5, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m6, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m7, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m8, quota: 1Gi}\n"
                            "      - {mediumtype: MEM, path: /m9, quota: 1Gi}\n"),
                     24, 7, "levels: more than 8 levels");
        expect_error(CLUSTER3 DATASET_D RUNTIME_D_HEAD "  tieredstore: {}\n", 22, 16,
                     "tieredstore: missing 'levels'");
        expect_error(CLUSTER3 "kind: Dataset\n"
                              "metadata: {name: d}\n",
                     10, 1,
                     "Dataset: missing 'apiVersion' (expected data.fluid.io/v1alpha1 or "
                     "weir.io/v1)");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n",
                     10, 1, "Dataset 'd': missing 'spec' with the mounts");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts: s3://b/x\n",
                     14, 11, "mounts: expected a list of mounts, got a scalar");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  blockSize: big\n"
                              "  mounts: [{mountPoint: \"s3://b/x\"}]\n",
                     14, 14, "blockSize: expected a size such as 4Mi, 16Mi or 64Mi (got big)");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  maxEntries: 0\n"
                              "  mounts: [{mountPoint: \"s3://b/x\"}]\n",
                     14, 15,
                     "maxEntries: expected a positive number of files and directories (got 0)");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      options: {k: \"a\\0b\"}\n",
                     16, 20, "options: option 'k' contains a NUL character");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      encryptOptions:\n"
                              "        - valueFrom: {secretKeyRef: {name: s}}\n",
                     17, 11, "encryptOptions: missing 'name', the option it sets");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      encryptOptions:\n"
                              "        - {name: k, valueFrom: {secretKeyRef: {name: s}}}\n",
                     17, 47, "secretKeyRef: expected both 'name' and 'key'");
        expect_error(CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                              "kind: Dataset\n"
                              "metadata: {name: d}\n"
                              "spec:\n"
                              "  mounts:\n"
                              "    - mountPoint: s3://b/x\n"
                              "      encryptOptions: {k: v}\n",
                     16, 23, "encryptOptions: expected a list of {name, valueFrom or valueFile}");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  ? [a]\n"
                     "  : b\n",
                     5, 5, "Cluster spec: keys must be strings, got a list");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {electionTimeout: 2m}\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 27, "raft.electionTimeout must be between 10ms and 60s (got 120000ms)");
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {loopScheduling: fast}\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n",
                     5, 26, "raft.loopScheduling must be realtime or normal (got 'fast')");
        {
                _cleanup_(config_freep) config *c = load_ok("t.yaml",
                                                            "apiVersion: weir.io/v1\n"
                                                            "kind: Cluster\n"
                                                            "metadata: {name: c}\n"
                                                            "spec:\n"
                                                            "  raft: {loopScheduling: normal}\n"
                                                            "  nodes:\n"
                                                            "    - {name: n1, address: 10.0.0.1}\n",
                                                            false);
                assert_true(c->raft_loop_normal);
        }
        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {}\n",
                     5, 3, "Cluster spec: missing 'nodes', the list of hosts");
}

static void test_tiers_differ(void **state)
{
        _cleanup_free_ char *token = NULL;
        _cleanup_(config_freep) config *c = NULL;
        config_diags d = {};
        static const char y[] = "apiVersion: weir.io/v1\n"
                                "kind: Cluster\n"
                                "metadata: {name: c}\n"
                                "spec:\n"
                                "  tokenFile: token\n"
                                "  nodes:\n"
                                "    - {name: n1, address: 10.0.0.1, mountRoot: /data/mnt}\n"
                                "---\n" DATASET_D RUNTIME_D_HEAD "  tieredstore:\n"
                                "    levels:\n" LEVEL_MEM "---\n"
                                "apiVersion: data.fluid.io/v1alpha1\n"
                                "kind: Dataset\n"
                                "metadata: {name: e}\n"
                                "spec:\n"
                                "  mounts: [{mountPoint: \"s3://b/e\"}]\n"
                                "---\n"
                                "apiVersion: weir.io/v1\n"
                                "kind: Runtime\n"
                                "metadata: {name: e}\n"
                                "spec:\n"
                                "  replicas: 1\n"
                                "  tieredstore:\n"
                                "    levels:\n"
                                "      - {mediumtype: SSD, path: /ssd, quota: 1Gi}\n";

        assert_int_equal(config_load_buffer("/etc/weir/cluster.yaml", y, strlen(y), &c, &d), 0);
        assert_int_equal(d.n, 1);
        assert_true(d.items[0].warning);
        assert_int_equal(d.items[0].line, 38);
        assert_int_equal(d.items[0].column, 7);
        assert_string_equal(d.items[0].message,
                            "tieredstore of Runtime 'e' differs from AlluxioRuntime 'd' (at "
                            "19:18); the workers share one cache and use the first runtime's "
                            "levels, ignoring");
        config_diags_done(&d);
        /* The first runtime's levels are the cluster's. */
        assert_int_equal(c->n_tiers, 1);
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_MEM);
        assert_ptr_equal(c->datasets[1].runtime, &c->runtimes[1]);
        /* A relative tokenFile is beside the YAML. */
        assert_string_equal(c->token_file, "/etc/weir/token");
        assert_string_equal(c->nodes[0].mount_root, "/data/mnt");
        assert_int_equal(config_fuse_mount_point(&c->nodes[0], "e", &token), 0);
        assert_string_equal(token, "/data/mnt/e");
}

static void test_raft_secret_file(void **state)
{
        _cleanup_(config_freep) config *c = NULL;
        config_diags d = {};
        static const char y[] = "apiVersion: weir.io/v1\n"
                                "kind: Cluster\n"
                                "metadata: {name: c}\n"
                                "spec:\n"
                                "  raft: {secretFile: raft.key}\n"
                                "  nodes:\n"
                                "    - {name: n1, address: 10.0.0.1}\n"
                                "---\n" DATASET_D;

        assert_int_equal(config_load_buffer("/etc/weir/cluster.yaml", y, strlen(y), &c, &d), 0);
        config_diags_done(&d);
        /* Relative to the YAML's directory, like tokenFile. */
        assert_string_equal(c->raft_secret_file, "/etc/weir/raft.key");
        assert_null(c->token_file);

        expect_error("apiVersion: weir.io/v1\n"
                     "kind: Cluster\n"
                     "metadata: {name: c}\n"
                     "spec:\n"
                     "  raft: {secretFile: \"\"}\n"
                     "  nodes:\n"
                     "    - {name: n1, address: 10.0.0.1}\n"
                     "---\n" DATASET_D,
                     5, 22, "raft.secretFile must not be empty");
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_limit_file_size(void **state)
{
        size_t len = CONFIG_MAX_FILE_SIZE + 1;
        _cleanup_free_ char *y = malloc(len);

        assert_non_null(y);
        memset(y, '#', len);
        expect_error_named("big.yaml", y, len, 1, 1, "file larger than 4194304 bytes");
}

static void test_limit_file_size_on_disk(void **state)
{
        _cleanup_free_ char *path = NULL, *block = calloc(1, 1 << 20);
        config_diags d = {};
        config *c = NULL;
        FILE *f;

        assert_non_null(block);
        memset(block, '#', 1 << 20);
        assert_true(asprintf(&path, "%s/big.yaml", tmpdir) > 0);
        f = fopen(path, "we");
        assert_non_null(f);
        for (int i = 0; i < 5; i++)
                assert_int_equal(fwrite(block, 1, 1 << 20, f), 1 << 20);
        fclose(f);
        assert_int_equal(config_load(path, &c, &d), -EINVAL);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.items[0].message, "file larger than 4194304 bytes");
        config_diags_done(&d);
        assert_int_equal(config_load("/nonexistent/cluster.yaml", &c, &d), -ENOENT);
        assert_int_equal(d.n, 0);
}

static void test_limit_depth(void **state)
{
        char y[200] = "a: ";
        size_t n = strlen(y);

        for (int i = 0; i < 40; i++)
                y[n++] = '[';
        y[n] = 0;
        /* The 33rd collection: the mapping, then 31 '[' fit; the 32nd '[' (column 35) does not. */
        expect_error(y, 1, 35, "nested deeper than 32 levels");
}

static void test_limit_string(void **state)
{
        _cleanup_free_ char *y = malloc(CONFIG_MAX_STRING + 100);

        assert_non_null(y);
        strcpy(y, "apiVersion: weir.io/v1\nkind: ");
        memset(y + strlen(y), 'x', CONFIG_MAX_STRING + 1);
        y[29 + CONFIG_MAX_STRING + 1] = 0;
        expect_error(y, 2, 7, "string longer than 4096 bytes");
}

static void test_limit_documents(void **state)
{
        _cleanup_free_ char *y = malloc(300 * 9 + 1);

        assert_non_null(y);
        y[0] = 0;
        for (int i = 0; i < 300; i++)
                strcat(y, "---\na: 1\n");
        expect_error(y, 513, 1, "more than 256 documents in one file");
}

static void test_limit_aliases(void **state)
{
        /* "Billion laughs": each level doubles ten times; expansion is bounded. */
        static const char y[] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                                "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                                "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                                "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                                "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";

        expect_error(y, 6, 36, "document too large once its aliases are expanded");
        /* An anchor cannot refer to itself. */
        expect_error("a: &a [*a]\n", 1, 8, "undefined alias '*a'");
}

static void test_limit_counts(void **state)
{
        _cleanup_free_ char *y = malloc(1100 * 48 + 200);
        char *p;

        assert_non_null(y);
        p = y + sprintf(y, "apiVersion: weir.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n"
                           "  nodes:\n");
        for (int i = 0; i < CONFIG_MAX_NODES + 1; i++)
                p += sprintf(p, "    - {name: n%d, address: 10.0.%d.%d}\n", i, i / 256, i % 256);
        expect_error(y, 6, 5, "nodes: more than 1024 nodes");
}

static void test_limit_yaml_nodes(void **state)
{
        size_t n = 200001;
        _cleanup_free_ char *y = malloc(4 + 2 * n + 2);
        char *p = y;

        assert_non_null(y);
        p += sprintf(p, "a: [");
        for (size_t i = 0; i < n; i++)
                p += sprintf(p, "x,");
        strcpy(p - 1, "]");
        /* The mapping, the key "a" and the list are 3 nodes: item 199998 is node 200001. */
        expect_error(y, 1, 4 + 2 * 199997 + 1, "more than 200000 YAML nodes in one file");
}

static void test_limit_options(void **state)
{
        _cleanup_free_ char *y = malloc(200 * 16 + 1000);
        char *p = y;

        assert_non_null(y);
        p += sprintf(p, CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\n"
                                 "metadata: {name: d}\nspec:\n  mounts:\n"
                                 "    - mountPoint: s3://b/x\n      options:\n");
        for (int i = 0; i < 129; i++)
                p += sprintf(p, "        k%d: v\n", i);
        expect_error(y, 17, 9, "options: more than 128 options");
}

static void test_limit_diags(void **state)
{
        /* A flood of warnings is cut off, and does not fail a valid config. */
        _cleanup_free_ char *y = malloc(3 * (200 + 500 * 12) + 400);
        config_diags d = {};
        config *c = NULL;
        char *p;

        assert_non_null(y);
        p = y + sprintf(y, CLUSTER3);
        for (int doc = 0; doc < 3; doc++) {
                p += sprintf(p,
                             "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\n"
                             "metadata: {name: d%d}\nspec:\n"
                             "  mounts: [{mountPoint: \"s3://b/x\"}]\n",
                             doc);
                for (int i = 0; i < 500; i++)
                        p += sprintf(p, "  k%d: 1\n", i);
                p += sprintf(p, "---\n");
        }
        /* 1500 unknown keys and the "no runtime" warning: 1000 kept, the last a summary. */
        assert_int_equal(config_load_buffer("w.yaml", y, strlen(y), &c, &d), 0);
        assert_int_equal(d.n, 1000);
        assert_true(d.items[999].warning);
        assert_non_null(strstr(d.items[999].message, "too many problems; 502 more"));
        config_free(c);
        config_diags_done(&d);
}

/* ---- secrets ---------------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *content)
{
        _cleanup_free_ char *path = NULL;
        FILE *f;

        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
}

static void test_secrets(void **state)
{
        _cleanup_free_ char *name = NULL, *abs = NULL, *y = NULL, *sdir = NULL;
        _cleanup_(config_freep) config *c = NULL;
        const config_mount *m;

        assert_true(asprintf(&sdir, "%s/secrets", tmpdir) > 0);
        mkdir(sdir, 0700);
        free(sdir);
        assert_true(asprintf(&sdir, "%s/secrets/creds", tmpdir) > 0);
        mkdir(sdir, 0700);
        write_file(sdir, "id", "AKIDEXAMPLE\n");
        write_file(tmpdir, "key.txt", "s3cr3t\r\n");
        write_file(tmpdir, "token", "");
        assert_true(asprintf(&abs, "%s/key.txt", tmpdir) > 0);
        assert_true(asprintf(&name, "%s/cluster.yaml", tmpdir) > 0);
        assert_true(asprintf(&y,
                             CLUSTER3
                             "apiVersion: data.fluid.io/v1alpha1\n"
                             "kind: Dataset\n"
                             "metadata: {name: d}\n"
                             "spec:\n"
                             "  sharedEncryptOptions:\n"
                             "    - {name: shared.key, valueFile: %s}\n"
                             "  mounts:\n"
                             "    - mountPoint: cos://bucket-1250000000/data\n"
                             "      encryptOptions:\n"
                             "        - name: fs.cos.id\n"
                             "          valueFrom: {secretKeyRef: {name: creds, key: id}}\n"
                             "        - name: fs.cos.key\n"
                             "          valueFile: key.txt\n"
                             "        - {name: empty, valueFile: token}\n",
                             abs) > 0);
        c = load_ok(name, y, true);
        m = &c->datasets[0].mounts[0];
        assert_int_equal(m->scheme, CONFIG_SCHEME_COS);
        assert_string_equal(m->name, "data");
        assert_int_equal(m->n_options, 4);
        assert_string_equal(config_mount_option(m, "fs.cos.id"), "AKIDEXAMPLE");
        assert_string_equal(config_mount_option(m, "fs.cos.key"), "s3cr3t");
        assert_string_equal(config_mount_option(m, "empty"), "");
        assert_string_equal(config_mount_option(m, "shared.key"), "s3cr3t");
        for (size_t i = 0; i < m->n_options; i++)
                assert_true(m->options[i].secret);
}

static void test_secrets_unreadable(void **state)
{
        _cleanup_free_ char *name = NULL, *big = NULL, *fifo = NULL;

        assert_true(asprintf(&name, "%s/cluster.yaml", tmpdir) > 0);
        expect_error_file(name,
                          CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                   "kind: Dataset\n"
                                   "metadata: {name: d}\n"
                                   "spec:\n"
                                   "  mounts:\n"
                                   "    - mountPoint: s3://b/x\n"
                                   "      encryptOptions:\n"
                                   "        - name: k\n"
                                   "          valueFrom: {secretKeyRef: {name: nope, key: id}}\n",
                          18, 37, "cannot read secret file '/tmp/test-config-");
        expect_error_file(name,
                          CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                   "kind: Dataset\n"
                                   "metadata: {name: d}\n"
                                   "spec:\n"
                                   "  mounts:\n"
                                   "    - mountPoint: s3://b/x\n"
                                   "      encryptOptions:\n"
                                   "        - {name: k, valueFile: .}\n",
                          17, 32, "Is a directory");
        /* secretKeyRef names cannot climb out of the secrets directory. */
        expect_error_file(name,
                          CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                   "kind: Dataset\n"
                                   "metadata: {name: d}\n"
                                   "spec:\n"
                                   "  mounts:\n"
                                   "    - mountPoint: s3://b/x\n"
                                   "      encryptOptions:\n"
                                   "        - name: k\n"
                                   "          valueFrom: {secretKeyRef: {name: .., key: id}}\n",
                          18, 44, "secretKeyRef.name '..' cannot be used as a directory name");

        big = malloc(CONFIG_MAX_SECRET + 2);
        assert_non_null(big);
        memset(big, 'k', CONFIG_MAX_SECRET + 1);
        big[CONFIG_MAX_SECRET + 1] = 0;
        write_file(tmpdir, "big", big);
        expect_error_file(name,
                          CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                   "kind: Dataset\n"
                                   "metadata: {name: d}\n"
                                   "spec:\n"
                                   "  mounts:\n"
                                   "    - mountPoint: s3://b/x\n"
                                   "      encryptOptions:\n"
                                   "        - {name: k, valueFile: big}\n",
                          17, 32, "larger than 64 KiB");

        /* A FIFO would block a reader: refused without opening it for long. */
        assert_true(asprintf(&fifo, "%s/fifo", tmpdir) > 0);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        expect_error_file(name,
                          CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                   "kind: Dataset\n"
                                   "metadata: {name: d}\n"
                                   "spec:\n"
                                   "  mounts:\n"
                                   "    - mountPoint: s3://b/x\n"
                                   "      encryptOptions:\n"
                                   "        - {name: k, valueFile: fifo}\n",
                          17, 32, "not a regular file");
}

/* ---- resolution details ----------------------------------------------------------------- */

static void test_placement_roles(void **state)
{
        _cleanup_(config_freep) config *c =
                load_ok("t.yaml",
                        "apiVersion: weir.io/v1\n"
                        "kind: Cluster\n"
                        "metadata: {name: c}\n"
                        "spec:\n"
                        "  dataDir: /srv/weir\n"
                        "  masterPort: 8080\n"
                        "  nodes:\n"
                        "    - {name: a, address: 10.0.0.1, roles: [fuse]}\n"
                        "    - {name: b, address: 10.0.0.2}\n"
                        "    - {name: c, address: 10.0.0.3, roles: [master, worker]}\n"
                        "    - {name: d, address: \"::1\", dataDir: /data, raftPort: 7000}\n"
                        "    - {name: e, address: 10.0.0.5}\n"
                        "---\n" DATASET_D "apiVersion: data.fluid.io/v1alpha1\n"
                        "kind: AlluxioRuntime\n"
                        "metadata: {name: d}\n"
                        "spec:\n"
                        "  replicas: 2\n"
                        "  master: {replicas: 3}\n"
                        "  tieredstore:\n"
                        "    levels:\n"
                        "      - {mediumtype: HDD, path: /mnt/hdd/, quota: 10G}\n"
                        "      - {mediumtype: MEM, path: /dev/shm, quota: 512Mi}\n",
                        false);
        _cleanup_free_ char *dir = NULL, *mp = NULL;

        /* a: only fuse; b: master 1 + worker; c: master 2 + worker, no fuse; d: master 3. */
        assert_true(!c->nodes[0].master && !c->nodes[0].worker && c->nodes[0].fuse);
        assert_true(c->nodes[1].master && c->nodes[1].worker && c->nodes[1].fuse);
        assert_true(c->nodes[2].master && c->nodes[2].worker && !c->nodes[2].fuse);
        assert_true(c->nodes[3].master && !c->nodes[3].worker && c->nodes[3].fuse);
        assert_true(!c->nodes[4].master && !c->nodes[4].worker && c->nodes[4].fuse);
        assert_int_equal(c->nodes[1].raft_id, 1);
        assert_int_equal(c->nodes[2].raft_id, 2);
        assert_int_equal(c->nodes[3].raft_id, 3);
        assert_string_equal(c->nodes[0].data_dir, "/srv/weir");
        assert_string_equal(c->nodes[3].data_dir, "/data");
        assert_int_equal(c->nodes[3].raft_port, 7000);
        assert_int_equal(c->nodes[3].master_port, 8080);
        assert_int_equal(c->nodes[0].worker_port, 29999);
        /* Levels fastest first. */
        assert_int_equal(c->tiers[0].medium, CONFIG_MEDIUM_MEM);
        assert_int_equal(c->tiers[1].medium, CONFIG_MEDIUM_HDD);
        assert_string_equal(c->tiers[1].path, "/mnt/hdd");
        assert_int_equal(config_tier_dir(&c->tiers[1], "b", &dir), 0);
        assert_string_equal(dir, "/mnt/hdd/weir/b");
        assert_int_equal(config_fuse_mount_point(&c->nodes[1], "d", &mp), 0);
        assert_string_equal(mp, "/mnt/weir/d");
}

static void test_defaults_and_shared(void **state)
{
        _cleanup_(config_freep) config *c = NULL;
        config_diags d = {};
        static const char y[] = CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                                         "kind: Dataset\n"
                                         "metadata: {name: d, namespace: default}\n"
                                         "spec:\n"
                                         "  sharedOptions: {a: shared, b: shared}\n"
                                         "  mounts:\n"
                                         "    - mountPoint: oss://bucket\n"
                                         "      options: {b: own}\n"
                                         "    - mountPoint: HTTP://host/a/b?x=1\n";

        assert_int_equal(config_load_buffer("t.yaml", y, strlen(y), &c, &d), 0);
        /* namespace (Fluid) and "no runtime" warnings only. */
        assert_int_equal(count(&d, false), 0);
        assert_int_equal(d.n, 2);
        assert_int_equal(d.items[0].line, 12);
        assert_int_equal(d.items[0].column, 18);
        assert_non_null(strstr(d.items[0].message, "no runtime document"));
        assert_int_equal(d.items[1].line, 12);
        assert_int_equal(d.items[1].column, 21);
        assert_string_equal(d.items[1].message, "Dataset metadata: 'namespace' is a Fluid setting "
                                                "that weir does not use, ignoring");
        config_diags_done(&d);
        assert_int_equal(c->master_replicas, 1);
        assert_int_equal(c->worker_replicas, 0);
        assert_int_equal(c->n_tiers, 0);
        assert_true(c->nodes[0].master && !c->nodes[1].master && !c->nodes[0].worker);
        assert_null(c->datasets[0].runtime);
        assert_string_equal(c->datasets[0].mounts[0].name, "bucket");
        assert_string_equal(config_mount_option(&c->datasets[0].mounts[0], "a"), "shared");
        assert_string_equal(config_mount_option(&c->datasets[0].mounts[0], "b"), "own");
        assert_string_equal(c->datasets[0].mounts[1].name, "b");
        assert_int_equal(c->datasets[0].mounts[1].scheme, CONFIG_SCHEME_HTTP);
        assert_string_equal(config_mount_option(&c->datasets[0].mounts[1], "b"), "shared");
}

static void test_anchors(void **state)
{
        /* Anchors and aliases work for what an operator would share. */
        _cleanup_(config_freep) config *c = load_ok(
                "t.yaml",
                CLUSTER3 "apiVersion: data.fluid.io/v1alpha1\n"
                         "kind: Dataset\n"
                         "metadata: {name: d}\n"
                         "spec:\n"
                         "  mounts:\n"
                         "    - {mountPoint: \"s3://b/x\", options: &opts {region: eu, x: y}}\n"
                         "    - {mountPoint: \"s3://b/y\", options: *opts}\n",
                true);

        assert_string_equal(config_mount_option(&c->datasets[0].mounts[1], "region"), "eu");
}

static void test_resolve_path(void **state)
{
        unsetenv("WEIR_CONFIG");
        assert_string_equal(config_resolve_path(NULL), CONFIG_DEFAULT_PATH);
        assert_string_equal(config_resolve_path("/x.yaml"), "/x.yaml");
        setenv("WEIR_CONFIG", "/env.yaml", 1);
        assert_string_equal(config_resolve_path(NULL), "/env.yaml");
        assert_string_equal(config_resolve_path("/x.yaml"), "/x.yaml");
        unsetenv("WEIR_CONFIG");
        assert_string_equal(config_medium_to_string(CONFIG_MEDIUM_SSD), "SSD");
}

static int setup(void **state)
{
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        _cleanup_free_ char *cmd = NULL;

        if (asprintf(&cmd, "rm -rf '%s'", tmpdir) < 0)
                return -1;
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_example_cluster_yaml),
                cmocka_unit_test(test_example_single_master),
                cmocka_unit_test(test_example_three_master),
                cmocka_unit_test(test_example_tiered),
                cmocka_unit_test(test_example_s3_oss),
                cmocka_unit_test(test_seed_alluxio),
                cmocka_unit_test(test_seed_goosefs),
                cmocka_unit_test(test_seed_jindo),
                cmocka_unit_test(test_fluid_fields_warn),
                cmocka_unit_test(test_invalid_master_replicas),
                cmocka_unit_test(test_invalid_quota),
                cmocka_unit_test(test_invalid_watermarks),
                cmocka_unit_test(test_invalid_medium),
                cmocka_unit_test(test_api_section),
                cmocka_unit_test(test_invalid_duplicates),
                cmocka_unit_test(test_invalid_kind),
                cmocka_unit_test(test_invalid_no_cluster),
                cmocka_unit_test(test_invalid_scheme),
                cmocka_unit_test(test_invalid_runtime_without_dataset),
                cmocka_unit_test(test_invalid_types),
                cmocka_unit_test(test_invalid_ports),
                cmocka_unit_test(test_invalid_names),
                cmocka_unit_test(test_invalid_yaml),
                cmocka_unit_test(test_invalid_master_agreement),
                cmocka_unit_test(test_invalid_roles),
                cmocka_unit_test(test_invalid_misc),
                cmocka_unit_test(test_invalid_more),
                cmocka_unit_test(test_tiers_differ),
                cmocka_unit_test(test_raft_secret_file),
                cmocka_unit_test(test_limit_file_size),
                cmocka_unit_test(test_limit_file_size_on_disk),
                cmocka_unit_test(test_limit_depth),
                cmocka_unit_test(test_limit_string),
                cmocka_unit_test(test_limit_documents),
                cmocka_unit_test(test_limit_aliases),
                cmocka_unit_test(test_limit_counts),
                cmocka_unit_test(test_limit_diags),
                cmocka_unit_test(test_limit_yaml_nodes),
                cmocka_unit_test(test_limit_options),
                cmocka_unit_test(test_secrets),
                cmocka_unit_test(test_secrets_unreadable),
                cmocka_unit_test(test_placement_roles),
                cmocka_unit_test(test_defaults_and_shared),
                cmocka_unit_test(test_anchors),
                cmocka_unit_test(test_resolve_path),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
