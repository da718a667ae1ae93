/* Unit tests for the FUSE daemon's master client: ENTRY and block-location parsing, listings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* The module under test, for its statics (chrony-style). */
#include "meta.c"

static json_t *parse(const char *s)
{
        json_error_t e;
        json_t *j = json_loads(s, 0, &e);

        assert_non_null(j);
        return j;
}

static void test_entry(void **state)
{
        json_t *j =
                parse("{\"name\":\"hbase-2.5.10-bin.tar.gz\",\"type\":\"file\",\"size\":275901234,"
                      "\"mtime\":1700000000.5,\"file_id\":17,\"version\":2,"
                      "\"epoch\":\"0123456789abcdef\","
                      "\"etag\":\"\\\"abc\\\"\",\"ufs_url\":\"http://x/hbase/a\"}");
        meta_entry e, c;

        assert_int_equal(meta_entry_from_json(j, &e), 0);
        assert_true(e.epoch == 0x0123456789abcdefull);
        assert_string_equal(e.name, "hbase-2.5.10-bin.tar.gz");
        assert_false(e.dir);
        assert_true(e.size == 275901234 && e.file_id == 17 && e.version == 2);
        assert_true(e.mtime > 1700000000.4 && e.mtime < 1700000000.6);
        assert_string_equal(e.etag, "\"abc\"");
        assert_int_equal(meta_entry_copy(&e, &c), 0);
        assert_string_equal(c.ufs_url, "http://x/hbase/a");
        meta_entry_done(&c);
        meta_entry_done(&e);
        json_decref(j);

        /* a directory needs no file id */
        j = parse("{\"name\":\"hbase\",\"type\":\"dir\"}");
        assert_int_equal(meta_entry_from_json(j, &e), 0);
        assert_true(e.dir && e.etag == NULL);
        meta_entry_done(&e);
        json_decref(j);
}

static void test_bad_entries(void **state)
{
        static const char *const bad[] = {
                "{\"type\":\"file\",\"size\":1,\"file_id\":1}",                    /* no name */
                "{\"name\":\"a/b\",\"type\":\"file\",\"size\":1,\"file_id\":1}",   /* a slash */
                "{\"name\":\"..\",\"type\":\"dir\"}",                              /* dot-dot */
                "{\"name\":\"a\",\"type\":\"link\"}",                              /* type */
                "{\"name\":\"a\",\"type\":\"file\",\"file_id\":1}",                /* no size */
                "{\"name\":\"a\",\"type\":\"file\",\"size\":-1,\"file_id\":1}",    /* negative */
                "{\"name\":\"a\",\"type\":\"file\",\"size\":1}",                   /* no file id */
                "{\"name\":\"a\",\"type\":\"file\",\"size\":\"1\",\"file_id\":1}", /* a string */
                /* a file without a valid cluster epoch */
                "{\"name\":\"a\",\"type\":\"file\",\"size\":1,\"file_id\":1,\"version\":1}",
                "{\"name\":\"a\",\"type\":\"file\",\"size\":1,\"file_id\":1,"
                "\"epoch\":\"0000000000000000\"}",
                "{\"name\":\"a\",\"type\":\"file\",\"size\":1,\"file_id\":1,\"epoch\":225}",
                "[]",
        };
        meta_entry e;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *j = parse(bad[i]);

                assert_int_equal(meta_entry_from_json(j, &e), -EBADMSG);
                json_decref(j);
        }
}

static void test_locations(void **state)
{
        json_t *j = parse("{\"block_size\":16777216,\"locations\":{\"10\":[\"node2\"],"
                          "\"2\":[\"node1\",\"node3\"],\"x\":[\"bad\"],\"0\":[]}}");
        meta_locations *l = NULL;
        char *const *nodes;
        size_t n;

        assert_int_equal(parse_locations(j, &l), 0);
        assert_true(l->block_size == 16777216);
        nodes = meta_locations_find(l, 2, &n);
        assert_int_equal(n, 2);
        assert_string_equal(nodes[0], "node1");
        assert_string_equal(nodes[1], "node3");
        nodes = meta_locations_find(l, 10, &n);
        assert_int_equal(n, 1);
        assert_string_equal(nodes[0], "node2");
        assert_null(meta_locations_find(l, 3, &n));
        assert_int_equal(n, 0);
        (void)meta_locations_find(l, 0, &n);
        assert_int_equal(n, 0);
        meta_locations_unref(l);
        json_decref(j);
        assert_null(meta_locations_find(NULL, 1, &n));
}

static void test_paths(void **state)
{
        char api[64], *k;

        /* page cache keys: distinct for every (directory, after) pair */
        k = page_key("/hbase", "a.tar.gz");
        assert_string_equal(k, "/hbase//a.tar.gz");
        free(k);
        k = page_key("/", NULL);
        assert_string_equal(k, "///");
        free(k);
        k = page_key("/", "x");
        assert_string_equal(k, "///x");
        free(k);
        assert_int_equal(
                location_api("http://127.0.4.2:19998/v1/datasets/x/ls?path=/", api, sizeof(api)),
                0);
        assert_string_equal(api, "127.0.4.2:19998");
        /* with api.tls the leader's address comes in an https:// URL */
        assert_int_equal(location_api("https://a:1/b", api, sizeof(api)), 0);
        assert_string_equal(api, "a:1");
        assert_int_equal(location_api("ftp://a/b", api, sizeof(api)), -EINVAL);
        assert_int_equal(location_api("http:///b", api, sizeof(api)), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_entry),
                cmocka_unit_test(test_bad_entries),
                cmocka_unit_test(test_locations),
                cmocka_unit_test(test_paths),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
