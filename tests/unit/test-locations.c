/* Unit tests for the master's soft state (services/master/locations.c): both sides of the
 * worker <-> block tables stay in step through adds, removes, re-registration and reset. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "locations.h"

typedef struct seen_holders {
        unsigned n;
        uint64_t index_sum;
        char nodes[512];
} seen_holders;

static void on_holder(uint64_t index, const locations_worker *w, void *userdata)
{
        seen_holders *s = userdata;

        s->n++;
        s->index_sum += index;
        strcat(s->nodes, w->node);
        strcat(s->nodes, " ");
}

static seen_holders holders_of(locations *l, uint64_t file_id, uint64_t version)
{
        seen_holders s = {};

        locations_foreach_holder(l, file_id, version, on_holder, &s);
        return s;
}

static void on_version(uint64_t file_id, uint64_t version, void *userdata)
{
        (*(unsigned *)userdata)++;
}

static unsigned n_versions(locations *l)
{
        unsigned n = 0;

        locations_foreach_version(l, on_version, &n);
        return n;
}

static void test_blocks_and_holders(void **state)
{
        locations *l = locations_new();
        json_t *tiers = json_pack("[{s:s,s:i}]", "medium", "MEM", "quota", 100);
        seen_holders s;

        assert_non_null(l);
        assert_int_equal(locations_block_set(l, "n1", "00000000000000aa-5-1-0", true), -ENOENT);
        assert_int_equal(locations_worker_register(l, "n1", 10.0, tiers, NULL, NULL), 0);
        assert_int_equal(locations_worker_register(l, "n2", 10.0, NULL, NULL, NULL), 0);
        assert_int_equal(locations_n_workers(l), 2);
        assert_true(json_is_array(locations_worker_get(l, "n2")->tiers));
        assert_int_equal(locations_block_set(l, "n1", "00000000000000aa-5-1-0", true), 0);
        assert_int_equal(locations_block_set(l, "n1", "00000000000000aa-5-1-0", true),
                         0); /* again: no-op */
        assert_int_equal(locations_block_set(l, "n1", "00000000000000aa-5-1-3", true), 0);
        assert_int_equal(locations_block_set(l, "n2", "00000000000000aa-5-1-3", true), 0);
        assert_int_equal(locations_block_set(l, "n2", "00000000000000aa-6-2-0", true), 0);
        assert_int_equal(locations_block_set(l, "n2", "00000000000000aa-5-1-x", true), -EINVAL);
        assert_int_equal(locations_block_set(l, "n2", " 00000000000000aa-5-1-1", true), -EINVAL);
        assert_int_equal(locations_worker_get(l, "n1")->n_blocks, 2);
        s = holders_of(l, 5, 1);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.index_sum, 6);
        assert_int_equal(n_versions(l), 2);

        /* removing what is not held changes nothing */
        assert_int_equal(locations_block_set(l, "n1", "00000000000000aa-6-2-0", false), 0);
        assert_int_equal(holders_of(l, 6, 2).n, 1);
        assert_int_equal(locations_block_set(l, "n2", "00000000000000aa-6-2-0", false), 0);
        assert_int_equal(holders_of(l, 6, 2).n, 0);
        assert_int_equal(n_versions(l), 1); /* an emptied version goes */

        /* registering again forgets the worker's earlier report */
        assert_int_equal(locations_worker_register(l, "n1", 20.0, NULL, NULL, NULL), 0);
        assert_int_equal(locations_worker_get(l, "n1")->n_blocks, 0);
        s = holders_of(l, 5, 1);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.nodes, "n2 ");

        /* heartbeat: unknown nodes are told so */
        assert_int_equal(locations_worker_heartbeat(l, "n9", 30.0, NULL, NULL, NULL), -ENOENT);
        {
                json_t *hits = json_integer(7);

                assert_int_equal(locations_worker_heartbeat(l, "n1", 30.0, NULL, hits, NULL), 0);
                json_decref(hits);
                assert_int_equal(json_integer_value(locations_worker_get(l, "n1")->hits), 7);
        }
        assert_true(locations_worker_get(l, "n1")->seen == 30.0);

        /* leadership lost: everything goes */
        locations_reset(l);
        assert_int_equal(locations_n_workers(l), 0);
        assert_int_equal(n_versions(l), 0);
        assert_null(locations_worker_get(l, "n2"));
        assert_int_equal(locations_block_set(l, "n2", "00000000000000aa-5-1-3", true), -ENOENT);
        json_decref(tiers);
        locations_free(l);
}

static void on_fuse(const locations_fuse *f, void *userdata)
{
        (*(unsigned *)userdata)++;
        assert_true(f->files == 42);
}

static void test_fuses(void **state)
{
        locations *l = locations_new();
        json_t *mp = json_string("/mnt/weir");
        unsigned n = 0;

        assert_int_equal(locations_fuse_seen(l, "n1", "ds", mp, 1, 1.0), 0);
        assert_int_equal(locations_fuse_seen(l, "n1", "ds", mp, 42, 2.0), 0); /* replaced */
        assert_int_equal(locations_fuse_seen(l, "n2", "ds", mp, 42, 2.0), 0);
        locations_foreach_fuse(l, on_fuse, &n);
        assert_int_equal(n, 2);
        locations_reset(l);
        n = 0;
        locations_foreach_fuse(l, on_fuse, &n);
        assert_int_equal(n, 0);
        json_decref(mp);
        locations_free(l);
}

/* Many workers and blocks: the tables stay consistent when workers come and go in any order. */
static void test_churn(void **state)
{
        locations *l = locations_new();
        char node[16], id[64];

        for (unsigned w = 0; w < 8; w++) {
                snprintf(node, sizeof(node), "n%u", w);
                assert_int_equal(locations_worker_register(l, node, 1.0, NULL, NULL, NULL), 0);
                for (unsigned b = 0; b < 500; b++) {
                        snprintf(id, sizeof(id), "00000000000000aa-%u-1-%u", b % 7 + 1,
                                 (b * (w + 1)) % 100);
                        assert_int_equal(locations_block_set(l, node, id, true), 0);
                }
        }
        for (unsigned w = 0; w < 8; w += 2) {
                snprintf(node, sizeof(node), "n%u", w);
                assert_int_equal(locations_worker_register(l, node, 2.0, NULL, NULL, NULL), 0);
        }
        for (unsigned f = 1; f <= 7; f++) {
                seen_holders s = holders_of(l, f, 1);

                assert_null(strstr(s.nodes, "n0 "));
                assert_null(strstr(s.nodes, "n2 "));
        }
        locations_free(l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_blocks_and_holders),
                cmocka_unit_test(test_fuses),
                cmocka_unit_test(test_churn),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
