/* Unit tests for services/lib/hmap.c's binary keys (the worker's block index and fill jobs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "block.h"
#include "hmap.h"

typedef struct item {
        block_key key;
        unsigned tag;
} item;

/* Keys that differ in one word only (the index, or the epoch) are told apart; a replaced value
 * hands its key over to the new one; removal and iteration see exactly what is there. */
static void test_block_keys(void **state)
{
        enum { FILES = 40, BLOCKS = 100 };
        item *items = calloc(2 * FILES * BLOCKS, sizeof(*items));
        hmap m;
        size_t it, seen = 0;

        assert_non_null(items);
        hmap_init_mem(&m, sizeof(block_key));
        for (unsigned i = 0; i < 2 * FILES * BLOCKS; i++) {
                unsigned n = i % (FILES * BLOCKS);
                items[i] = (item){.key = {.epoch = i < FILES * BLOCKS ? 7 : 8,
                                          .file_id = 1 + n / BLOCKS,
                                          .version = 1,
                                          .index = n % BLOCKS},
                                  .tag = i};
                assert_int_equal(hmap_put_mem(&m, &items[i].key, &items[i], NULL), 0);
        }
        assert_int_equal(m.n, 2 * FILES * BLOCKS);
        for (unsigned i = 0; i < 2 * FILES * BLOCKS; i++) {
                block_key k = items[i].key; /* a copy: lookups compare bytes, not pointers */
                item *got = hmap_get_mem(&m, &k);
                assert_non_null(got);
                assert_int_equal(got->tag, i);
        }
        block_key absent = {.epoch = 7, .file_id = 1, .version = 2, .index = 0};
        assert_null(hmap_get_mem(&m, &absent));
        assert_null(hmap_remove_mem(&m, &absent));

        item twin = {.key = items[5].key, .tag = 99999};
        void *old = NULL;
        assert_int_equal(hmap_put_mem(&m, &twin.key, &twin, &old), 0);
        assert_ptr_equal(old, &items[5]);
        items[5].key.index = 12345; /* the old value's key is no longer the map's */
        assert_ptr_equal(hmap_get_mem(&m, &twin.key), &twin);
        assert_int_equal(m.n, 2 * FILES * BLOCKS);

        for (unsigned i = 0; i < FILES * BLOCKS; i += 2)
                if (i != 5)
                        assert_ptr_equal(hmap_remove_mem(&m, &items[i].key), &items[i]);
        assert_int_equal(m.n, 2 * FILES * BLOCKS - FILES * BLOCKS / 2);
        for (hmap_node *n = hmap_first(&m, &it); n; n = hmap_next(&m, n, &it)) {
                const item *v = n->value;
                assert_ptr_equal(n->key.mem, &v->key);
                assert_true(v->tag % 2 == 1 || v->tag >= FILES * BLOCKS || v == &twin);
                seen++;
        }
        assert_int_equal(seen, m.n);
        hmap_done(&m);
        assert_int_equal(m.n, 0);
        assert_null(hmap_get_mem(&m, &twin.key)); /* usable (empty) after done */
        free(items);
}

/* Key sizes that are not a multiple of a word hash their tail too. */
static void test_odd_size(void **state)
{
        char keys[3][11] = {"abcdefghij", "abcdefghik", "abcdefghil"};
        hmap m;

        hmap_init_mem(&m, sizeof(keys[0]));
        for (int i = 0; i < 3; i++)
                assert_int_equal(hmap_put_mem(&m, keys[i], keys[i], NULL), 0);
        assert_int_equal(m.n, 3);
        for (int i = 0; i < 3; i++)
                assert_ptr_equal(hmap_get_mem(&m, keys[i]), keys[i]);
        hmap_done(&m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_block_keys),
                cmocka_unit_test(test_odd_size),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
