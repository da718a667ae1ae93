/* Unit tests for the FUSE daemon's inode table: lookup counts, forget, versions, paths. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hmap.h"
#include "inode.h"

static void test_root(void **state)
{
        inode_table *t = inode_table_new();
        char *p = NULL;

        assert_non_null(t);
        assert_int_equal(inode_table_size(t), 1);
        assert_int_equal(inode_table_path(t, INODE_ROOT, &p), 0);
        assert_string_equal(p, "/");
        free(p);
        /* the kernel never makes the root go away */
        assert_int_equal(inode_table_forget(t, INODE_ROOT, 1000000), 0);
        assert_int_equal(inode_table_size(t), 1);
        assert_int_equal(inode_table_path(t, 424242, &p), -ENOENT);
        assert_int_equal(inode_table_forget(t, 424242, 1), -ENOENT);
        inode_table_free(t);
}

static void test_lookup_count(void **state)
{
        inode_table *t = inode_table_new();
        uint64_t a, b, c;
        bool changed;
        char *p = NULL;

        assert_int_equal(inode_table_ref(t, "/hbase/x.tar.gz", 1, &a, &changed), 0);
        assert_false(changed);
        assert_int_equal(inode_table_ref(t, "/hbase/x.tar.gz", 1, &b, &changed), 0);
        assert_true(a == b);
        assert_int_equal(inode_table_ref(t, "/hbase/y", 1, &c, NULL), 0);
        assert_true(c != a && c != INODE_ROOT);
        assert_int_equal(inode_table_size(t), 3);

        /* two lookups: the first forget keeps it, the second frees it */
        assert_int_equal(inode_table_forget(t, a, 1), 0);
        assert_int_equal(inode_table_path(t, a, &p), 0);
        assert_string_equal(p, "/hbase/x.tar.gz");
        free(p);
        assert_int_equal(inode_table_forget(t, a, 1), 1);
        assert_int_equal(inode_table_path(t, a, &p), -ENOENT);
        assert_int_equal(inode_table_size(t), 2);

        /* a forget larger than the count frees too (batch forgets) */
        assert_int_equal(inode_table_forget(t, c, 5), 1);

        /* looked up again: a fresh number, never a reused one */
        assert_int_equal(inode_table_ref(t, "/hbase/x.tar.gz", 1, &b, NULL), 0);
        assert_true(b != a && b != c);
        inode_table_free(t);
}

static void test_versions(void **state)
{
        inode_table *t = inode_table_new();
        uint64_t a;
        bool changed, keep;

        assert_int_equal(inode_table_ref(t, "/m/f", 3, &a, &changed), 0);
        /* the first open: nothing cached yet */
        assert_int_equal(inode_table_open(t, a, 3, &keep), 0);
        assert_false(keep);
        /* the same version again: keep the kernel's pages */
        assert_int_equal(inode_table_open(t, a, 3, &keep), 0);
        assert_true(keep);
        /* the master reports version 4: a change, and the next open drops the pages */
        assert_int_equal(inode_table_set_version(t, a, 4, &changed), 0);
        assert_true(changed);
        assert_int_equal(inode_table_set_version(t, a, 4, &changed), 0);
        assert_false(changed);
        assert_int_equal(inode_table_open(t, a, 4, &keep), 0);
        assert_false(keep);
        assert_int_equal(inode_table_ref(t, "/m/f", 5, &a, &changed), 0);
        assert_true(changed);
        assert_int_equal(inode_table_open(t, 999, 1, &keep), -ENOENT);
        inode_table_free(t);
}

static void test_many(void **state)
{
        inode_table *t = inode_table_new();
        uint64_t *inos = calloc(10000, sizeof(uint64_t));
        char path[64];

        for (unsigned i = 0; i < 10000; i++) {
                snprintf(path, sizeof(path), "/small/f%05u", i);
                assert_int_equal(inode_table_ref(t, path, 1, &inos[i], NULL), 0);
        }
        assert_int_equal(inode_table_size(t), 10001);
        for (unsigned i = 0; i < 10000; i++) {
                char *p = NULL;

                snprintf(path, sizeof(path), "/small/f%05u", i);
                assert_int_equal(inode_table_path(t, inos[i], &p), 0);
                assert_string_equal(p, path);
                free(p);
        }
        for (unsigned i = 0; i < 10000; i++)
                assert_int_equal(inode_table_forget(t, inos[i], 1), 1);
        assert_int_equal(inode_table_size(t), 1);
        free(inos);
        inode_table_free(t);
}

typedef struct race {
        inode_table *t;
        unsigned id;
} race;

static void *race_thread(void *p)
{
        race *r = p;
        char path[64];

        for (unsigned i = 0; i < 20000; i++) {
                uint64_t ino;

                snprintf(path, sizeof(path), "/d/f%u", i % 50);
                if (inode_table_ref(r->t, path, 1, &ino, NULL) == 0)
                        inode_table_forget(r->t, ino, 1);
        }
        return NULL;
}

static void test_threads(void **state)
{
        inode_table *t = inode_table_new();
        pthread_t th[4];
        race r[4];

        for (unsigned i = 0; i < 4; i++) {
                r[i] = (race){.t = t, .id = i};
                pthread_create(&th[i], NULL, race_thread, &r[i]);
        }
        for (unsigned i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        /* every reference was dropped again */
        assert_int_equal(inode_table_size(t), 1);
        inode_table_free(t);
}

static void test_join(void **state)
{
        char *p;

        p = inode_path_join("/", "a");
        assert_string_equal(p, "/a");
        free(p);
        p = inode_path_join("/a", "b c");
        assert_string_equal(p, "/a/b c");
        free(p);
}

static void test_hmap(void **state)
{
        hmap m;
        size_t it, seen = 0;

        hmap_init(&m, false);
        for (uint64_t i = 1; i <= 1000; i++)
                assert_int_equal(hmap_put_u64(&m, i, (void *)(uintptr_t)(i * 2), NULL), 0);
        assert_int_equal(m.n, 1000);
        assert_true((uintptr_t)hmap_get_u64(&m, 500) == 1000);
        assert_null(hmap_get_u64(&m, 1001));
        for (hmap_node *n = hmap_first(&m, &it); n; n = hmap_next(&m, n, &it))
                seen++;
        assert_int_equal(seen, 1000);
        assert_true((uintptr_t)hmap_remove_u64(&m, 500) == 1000);
        assert_null(hmap_get_u64(&m, 500));
        assert_int_equal(m.n, 999);
        hmap_done(&m);
}

/* What the periodic version check asks: a path's inode and version, and the directories that
 * hold file inodes; forgotten inodes leave both. */
static void test_lookup_and_file_dirs(void **state)
{
        inode_table *t = inode_table_new();
        uint64_t a, b, d, ino, version;
        char **dirs = NULL;
        size_t n = 0;

        assert_int_equal(inode_table_ref(t, "/m/d1/f1", 3, &a, NULL), 0);
        assert_int_equal(inode_table_ref(t, "/m/d1/f2", 1, &b, NULL), 0);
        assert_int_equal(inode_table_ref(t, "/m/d1", 0, &d, NULL), 0); /* a directory */
        assert_int_equal(inode_table_lookup(t, "/m/d1/f1", &ino, &version), 0);
        assert_int_equal(ino, a);
        assert_int_equal(version, 3);
        assert_int_equal(inode_table_lookup(t, "/m/d1/f3", &ino, &version), -ENOENT);
        assert_int_equal(inode_table_file_dirs(t, &dirs, &n), 0);
        assert_int_equal(n, 1); /* two files, one directory; /m/d1 itself holds no file inode */
        assert_string_equal(dirs[0], "/m/d1");
        for (size_t i = 0; i < n; i++)
                free(dirs[i]);
        free(dirs);
        assert_int_equal(inode_table_forget(t, a, 1), 1);
        assert_int_equal(inode_table_forget(t, b, 1), 1);
        assert_int_equal(inode_table_lookup(t, "/m/d1/f1", &ino, &version), -ENOENT);
        assert_int_equal(inode_table_file_dirs(t, &dirs, &n), 0);
        assert_int_equal(n, 0);
        free(dirs);
        assert_int_equal(inode_table_size(t), 2); /* root and /m/d1 */
        inode_table_free(t);
}

/* readdirplus refs every entry of a walk, forget drops them: the table shrinks back to the
 * root, whatever order the kernel forgets in. */
static void test_walk_then_forget_all(void **state)
{
        inode_table *t = inode_table_new();
        uint64_t *inos = calloc(100000, sizeof(*inos));
        char path[64];

        assert_non_null(inos);
        for (int i = 0; i < 100000; i++) {
                snprintf(path, sizeof(path), "/train/n%08d/n%08d_%d.JPEG", i % 1000, i % 1000,
                         i / 1000);
                assert_int_equal(inode_table_ref(t, path, 1, &inos[i], NULL), 0);
                if (i % 3 == 0) /* a second lookup of some */
                        assert_int_equal(inode_table_ref(t, path, 1, &inos[i], NULL), 0);
        }
        assert_int_equal(inode_table_size(t), 100001);
        for (int i = 99999; i >= 0; i--)
                assert_int_equal(inode_table_forget(t, inos[i], i % 3 == 0 ? 2 : 1), 1);
        assert_int_equal(inode_table_size(t), 1);
        free(inos);
        inode_table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_root),
                cmocka_unit_test(test_lookup_count),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_many),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_join),
                cmocka_unit_test(test_hmap),
                cmocka_unit_test(test_lookup_and_file_dirs),
                cmocka_unit_test(test_walk_then_forget_all),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
