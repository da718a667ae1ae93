/* Unit tests for config-apply.c: an edited YAML compared with the description of a running
 * cluster (what is refused with which key, what is reported as a change). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cleanup.h"
#include "config-apply.h"
#include "config.h"

#define _cleanup_json_ _cleanup_(json_decrefp)

/* A cluster of NODES ("{name: n1, address: 10.0.0.1}" lines), master REPLICAS, and dataset "d"
 * with MOUNT and BLOCK (a "blockSize: ..." line or ""). */
static config *load(const char *nodes, unsigned replicas, const char *mount, const char *block,
                    const char *name)
{
        char *text = NULL;
        config *c = NULL;
        config_diags d = {};

        assert_true(asprintf(&text,
                             "apiVersion: weir.io/v1\nkind: Cluster\nmetadata: {name: %s}\n"
                             "spec:\n  nodes:\n%s---\n"
                             "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\n"
                             "metadata: {name: d}\nspec:\n%s  mounts:\n"
                             "    - {mountPoint: '%s', name: data}\n---\n"
                             "apiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\n"
                             "metadata: {name: d}\nspec:\n  replicas: 1\n"
                             "  master: {replicas: %u}\n  tieredstore:\n    levels:\n"
                             "      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi}\n",
                             name, nodes, block, mount, replicas) > 0);
        int r = config_load_buffer("test.yaml", text, strlen(text), &c, &d);
        for (size_t i = 0; i < d.n; i++)
                print_message("  %u:%u: %s\n", d.items[i].line, d.items[i].column,
                              d.items[i].message);
        config_diags_done(&d);
        free(text);
        assert_int_equal(r, 0);
        return c;
}

#define NODES3                                                                                     \
        "    - {name: n1, address: 10.0.0.1}\n"                                                    \
        "    - {name: n2, address: 10.0.0.2}\n"                                                    \
        "    - {name: n3, address: 10.0.0.3}\n"

static config *load3(unsigned replicas)
{
        return load(NODES3, replicas, "https://example.org/data/", "", "c");
}

/* The refusal whose key is KEY, or NULL. */
static const config_refusal *refusal(const config_plan *p, const char *key)
{
        for (size_t i = 0; i < p->n_refusals; i++)
                if (strcmp(p->refusals[i].key, key) == 0)
                        return &p->refusals[i];
        return NULL;
}

static bool has_change(const config_plan *p, const char *prefix)
{
        for (size_t i = 0; i < p->n_changes; i++)
                if (strncmp(p->changes[i], prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

static void plan(const config *next, const json_t *running, config_plan *p)
{
        assert_int_equal(config_plan_apply(next, running, p), 0);
        for (size_t i = 0; i < p->n_refusals; i++)
                print_message("  refused %s: %s: %s\n", p->refusals[i].document, p->refusals[i].key,
                              p->refusals[i].message);
}

static void test_same_file_no_changes(void **state)
{
        _cleanup_(config_freep) config *c = load3(3);
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(c, running, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_int_equal(p.n_changes, 0);
        assert_false(p.masters_change);
        assert_false(p.datasets_change);
        config_plan_done(&p);
}

static void test_one_to_three_and_back(void **state)
{
        _cleanup_(config_freep) config *one = load3(1);
        _cleanup_(config_freep) config *three = load3(3);
        _cleanup_json_ json_t *r1 = config_running_json(one, NULL, NULL);
        _cleanup_json_ json_t *r3 = config_running_json(three, NULL, NULL);
        config_plan p = {};

        plan(three, r1, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(p.masters_change);
        assert_true(has_change(&p, "add master n2 (raft id 2)"));
        assert_true(has_change(&p, "add master n3 (raft id 3)"));
        config_plan_done(&p);

        plan(one, r3, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(p.masters_change);
        assert_true(has_change(&p, "remove master n2 (raft id 2)"));
        assert_true(has_change(&p, "remove master n3 (raft id 3)"));
        assert_false(has_change(&p, "remove master n1"));
        config_plan_done(&p);
}

/* The running membership comes from the masters' record, not from the running YAML: a master
 * still in the record while the YAML lost it is reported as removed. */
static void test_recorded_members_win(void **state)
{
        _cleanup_(config_freep) config *one = load3(1);
        _cleanup_(config_freep) config *three = load3(3);
        _cleanup_json_ json_t *members = config_masters_json(three);
        _cleanup_json_ json_t *running = config_running_json(one, members, NULL);
        config_plan p = {};

        plan(one, running, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(has_change(&p, "remove master n2"));
        config_plan_done(&p);
}

static void test_running_master_moves_refused(void **state)
{
        _cleanup_(config_freep) config *c = load3(3);
        _cleanup_(config_freep) config *moved =
                load("    - {name: n1, address: 10.0.0.1}\n"
                     "    - {name: n2, address: 10.0.0.9}\n"
                     "    - {name: n3, address: 10.0.0.3, raftPort: 19300, masterPort: 19999}\n",
                     3, "https://example.org/data/", "", "c");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(moved, running, &p);
        assert_int_equal(p.n_refusals, 3);
        const config_refusal *x = refusal(&p, "spec.nodes[1].address");
        assert_non_null(x);
        assert_string_equal(x->document, "Cluster");
        assert_non_null(strstr(x->message, "10.0.0.2"));
        assert_non_null(refusal(&p, "spec.nodes[2].raftPort"));
        assert_non_null(refusal(&p, "spec.nodes[2].masterPort"));
        config_plan_done(&p);
}

/* A non-master node may move: its daemons restart there. */
static void test_worker_node_moves(void **state)
{
        _cleanup_(config_freep) config *c = load(NODES3 "    - {name: n4, address: 10.0.0.4}\n", 1,
                                                 "https://example.org/data/", "", "c");
        _cleanup_(config_freep) config *moved =
                load(NODES3 "    - {name: n4, address: 10.0.0.44}\n", 1,
                     "https://example.org/data/", "", "c");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(moved, running, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(has_change(&p, "node n4 moves from 10.0.0.4 to 10.0.0.44"));
        config_plan_done(&p);
}

/* Masters are numbered in node order: a master inserted before the running ones, or a middle
 * one removed, would renumber them. */
static void test_raft_id_reassignment_refused(void **state)
{
        _cleanup_(config_freep) config *c = load(NODES3, 3, "https://example.org/data/", "", "c");
        _cleanup_(config_freep) config *inserted =
                load("    - {name: n0, address: 10.0.0.10}\n" NODES3
                     "    - {name: n4, address: 10.0.0.4}\n",
                     5, "https://example.org/data/", "", "c");
        _cleanup_(config_freep) config *middle =
                load("    - {name: n1, address: 10.0.0.1, roles: [master]}\n"
                     "    - {name: n2, address: 10.0.0.2, roles: [worker, fuse]}\n"
                     "    - {name: n3, address: 10.0.0.3, roles: [master]}\n"
                     "    - {name: n4, address: 10.0.0.4, roles: [master]}\n",
                     3, "https://example.org/data/", "", "c");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(inserted, running, &p);
        assert_int_equal(p.n_refusals, 3); /* n0, n1, n2 would take ids 1, 2, 3 */
        const config_refusal *x = refusal(&p, "spec.nodes[0]");
        assert_non_null(x);
        assert_non_null(strstr(x->message, "raft id 1"));
        config_plan_done(&p);

        /* All masters replaced by others: the new ones would have nobody to join. */
        _cleanup_(config_freep) config *replaced =
                load("    - {name: n1, address: 10.0.0.1, roles: [worker, fuse]}\n"
                     "    - {name: n5, address: 10.0.0.5, roles: [master]}\n",
                     1, "https://example.org/data/", "", "c");
        _cleanup_(config_freep) config *single = load3(1);
        _cleanup_json_ json_t *running1 = config_running_json(single, NULL, NULL);
        plan(replaced, running1, &p);
        assert_non_null(refusal(&p, "spec.master.replicas"));
        config_plan_done(&p);

        plan(middle, running, &p);
        assert_non_null(refusal(&p, "spec.nodes[2]")); /* n3 would become raft id 2 */
        config_plan_done(&p);
}

static void test_mount_kind_change_refused(void **state)
{
        _cleanup_(config_freep) config *c = load3(1);
        _cleanup_(config_freep) config *s3 = load(NODES3, 1, "s3://bucket/data/", "", "c");
        _cleanup_(config_freep) config *http =
                load(NODES3, 1, "http://example.org/other/", "", "c");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(s3, running, &p);
        assert_int_equal(p.n_refusals, 1);
        const config_refusal *x = refusal(&p, "spec.mounts[0].mountPoint");
        assert_non_null(x);
        assert_string_equal(x->document, "Dataset d");
        assert_non_null(strstr(x->message, "kind http"));
        assert_non_null(strstr(x->message, "kind s3"));
        _cleanup_free_ char *line = config_refusal_format(x);
        assert_non_null(strstr(line, "Dataset d: spec.mounts[0].mountPoint: mount data"));
        config_plan_done(&p);

        /* https -> http on another path: same kind, a change. */
        plan(http, running, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(p.datasets_change);
        assert_true(has_change(&p, "dataset d: mount data moves to http://example.org/other/"));
        config_plan_done(&p);
}

static void test_block_size_and_cluster_name_refused(void **state)
{
        _cleanup_(config_freep) config *c = load3(1);
        _cleanup_(config_freep) config *bs =
                load(NODES3, 1, "https://example.org/data/", "  blockSize: 4Mi\n", "c");
        _cleanup_(config_freep) config *renamed =
                load(NODES3, 1, "https://example.org/data/", "", "other");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        config_plan p = {};

        plan(bs, running, &p);
        assert_int_equal(p.n_refusals, 1);
        assert_non_null(refusal(&p, "spec.blockSize"));
        config_plan_done(&p);

        plan(renamed, running, &p);
        assert_int_equal(p.n_refusals, 1);
        assert_non_null(refusal(&p, "metadata.name"));
        config_plan_done(&p);
}

/* New and removed datasets, nodes and workers are changes, never refusals. */
static void test_datasets_and_nodes_added(void **state)
{
        _cleanup_(config_freep) config *c = load3(1);
        _cleanup_(config_freep) config *more =
                load(NODES3 "    - {name: n4, address: 10.0.0.4, roles: [worker]}\n", 1,
                     "https://example.org/data/", "", "c");
        _cleanup_json_ json_t *running = config_running_json(c, NULL, NULL);
        _cleanup_json_ json_t *datasets =
                json_loads("[{\"name\":\"d\",\"block_size\":16777216,\"mounts\":[{\"name\":"
                           "\"data\",\"mount_point\":\"https://example.org/data/\"}]},"
                           "{\"name\":\"gone\",\"block_size\":1,\"mounts\":[]}]",
                           0, NULL);
        _cleanup_json_ json_t *with_gone = config_running_json(c, NULL, datasets);
        _cleanup_json_ json_t *no_datasets = json_deep_copy(running);
        config_plan p = {};

        plan(more, running, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(has_change(&p, "add node n4 at 10.0.0.4, running: worker"));
        config_plan_done(&p);

        json_object_set_new(no_datasets, "datasets", json_array());
        plan(c, no_datasets, &p);
        assert_true(p.datasets_change);
        assert_true(has_change(&p, "add dataset d (1 mount)"));
        config_plan_done(&p);

        plan(c, with_gone, &p);
        assert_int_equal(p.n_refusals, 0);
        assert_true(has_change(&p, "dataset gone is no longer in the file"));
        config_plan_done(&p);
}

static void test_bad_running_description(void **state)
{
        _cleanup_(config_freep) config *c = load3(1);
        _cleanup_json_ json_t *v2 = config_running_json(c, NULL, NULL);
        config_plan p = {};

        json_object_set_new(v2, "version", json_integer(2));
        assert_int_equal(config_plan_apply(c, v2, &p), -EBADMSG);
        assert_int_equal(config_plan_apply(c, NULL, &p), -EBADMSG);
        json_object_del(v2, "masters");
        json_object_set_new(v2, "version", json_integer(1));
        assert_int_equal(config_plan_apply(c, v2, &p), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_file_no_changes),
                cmocka_unit_test(test_one_to_three_and_back),
                cmocka_unit_test(test_recorded_members_win),
                cmocka_unit_test(test_running_master_moves_refused),
                cmocka_unit_test(test_worker_node_moves),
                cmocka_unit_test(test_raft_id_reassignment_refused),
                cmocka_unit_test(test_mount_kind_change_refused),
                cmocka_unit_test(test_block_size_and_cluster_name_refused),
                cmocka_unit_test(test_datasets_and_nodes_added),
                cmocka_unit_test(test_bad_running_description),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
