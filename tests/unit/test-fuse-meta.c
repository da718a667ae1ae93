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

/* A page of the compact format: COUNT names "dNNN" (directories at even NNN), from FIRST. */
static void wire_page(lswire_buf *b, unsigned first, unsigned count, bool more)
{
        assert_int_equal(lswire_begin(b), 0);
        for (unsigned i = first; i < first + count; i++) {
                char name[16];
                lswire_entry e = {.name = name, .dir = i % 2 == 0, .mtime = 5};

                e.name_len = (size_t)snprintf(name, sizeof(name), "d%03u", i);
                if (!e.dir) {
                        e.size = i;
                        e.file_id = 100 + i;
                        e.version = 1;
                }
                assert_int_equal(lswire_add(b, &e), 0);
        }
        lswire_finish(b, 0xabcull, more);
}

static void test_wire_listing(void **state)
{
        lswire_buf b;
        meta_listing *l = NULL;

        wire_page(&b, 0, 10, true);
        assert_int_equal(listing_from_wire((const char *)b.data, b.len, "/m", NULL, 77, &l), 0);
        assert_int_equal(l->n, 10);
        assert_true(l->more);
        assert_int_equal(l->fetched_ms, 77);
        assert_string_equal(l->entries[3].name, "d003");
        assert_false(l->entries[3].dir);
        assert_int_equal(l->entries[3].file_id, 103);
        assert_int_equal(l->entries[3].size, 3);
        assert_true(l->entries[3].epoch == 0xabc);
        assert_true(l->entries[4].dir);
        assert_int_equal(l->entries[4].epoch, 0);
        assert_ptr_equal(meta_listing_find(l, "d009"), &l->entries[9]);
        assert_null(meta_listing_find(l, "d010"));
        /* one block of names: "dNNN\0" ten times */
        assert_int_equal(l->names_len, 50);
        meta_listing_unref(l);
        /* a page that must follow "d005" but starts at d000: refused whole */
        l = NULL;
        assert_int_equal(listing_from_wire((const char *)b.data, b.len, "/m", "d005", 77, &l),
                         -EBADMSG);
        assert_null(l);
        /* cut short, garbage, another version */
        assert_int_equal(listing_from_wire((const char *)b.data, b.len - 1, "/m", NULL, 1, &l),
                         -EBADMSG);
        assert_int_equal(listing_from_wire("{\"entries\":[]}", 15, "/m", NULL, 1, &l), -EBADMSG);
        b.data[4] = 9;
        assert_int_equal(listing_from_wire((const char *)b.data, b.len, "/m", NULL, 1, &l),
                         -EBADMSG);
        lswire_buf_done(&b);
        /* files without an epoch cannot be read: refused */
        wire_page(&b, 1, 1, false);
        memset(b.data + 8, 0, 8);
        assert_int_equal(listing_from_wire((const char *)b.data, b.len, "/m", NULL, 1, &l),
                         -EBADMSG);
        lswire_buf_done(&b);
}

/* meta_cached_page_of: the cached page holding a name, across pages, never asking a master */
static void test_cached_page_of(void **state)
{
        meta m = {.opts = {.entry_timeout_ms = 3600 * 1000}};
        meta_listing *p1, *p2, *l;
        lswire_buf b;
        size_t i;

        pthread_mutex_init(&m.lock, NULL);
        m.pages = lru_new(1 << 20, 0, listing_unref_void);
        assert_non_null(m.pages);
        wire_page(&b, 0, 10, true);
        assert_int_equal(listing_from_wire((const char *)b.data, b.len, "/m", NULL, now_ms(), &p1),
                         0);
        lswire_buf_done(&b);
        wire_page(&b, 10, 5, false);
        assert_int_equal(
                listing_from_wire((const char *)b.data, b.len, "/m", "d009", now_ms(), &p2), 0);
        lswire_buf_done(&b);
        /* only the first page cached: names on it are found, later ones are not */
        assert_int_equal(lru_put(m.pages, "/m//", meta_listing_ref(p1), 100), 0);
        assert_int_equal(meta_cached_page_of(&m, "/m", "d004", &l, &i), 0);
        assert_ptr_equal(l, p1);
        assert_int_equal(i, 4);
        meta_listing_unref(l);
        assert_int_equal(meta_cached_page_of(&m, "/m", "d012", &l, &i), -ENOENT);
        assert_int_equal(meta_cached_page_of(&m, "/m", "d004x", &l, &i), -ENOENT);
        assert_int_equal(meta_cached_page_of(&m, "/other", "d004", &l, &i), -ENOENT);
        assert_true(meta_page_cached(&m, "/m", NULL));
        assert_false(meta_page_cached(&m, "/m", "d009"));
        /* with the second page: found there */
        assert_int_equal(lru_put(m.pages, "/m//d009", meta_listing_ref(p2), 100), 0);
        assert_int_equal(meta_cached_page_of(&m, "/m", "d012", &l, &i), 0);
        assert_ptr_equal(l, p2);
        assert_int_equal(i, 2);
        meta_listing_unref(l);
        assert_int_equal(meta_cached_page_of(&m, "/m", "d015", &l, &i), -ENOENT);
        /* expired pages are not answers */
        p1->fetched_ms = now_ms() - m.opts.entry_timeout_ms - 1;
        assert_int_equal(meta_cached_page_of(&m, "/m", "d004", &l, &i), -ENOENT);
        assert_false(meta_page_cached(&m, "/m", NULL));
        meta_listing_unref(p1);
        meta_listing_unref(p2);
        lru_free(m.pages);
        pthread_mutex_destroy(&m.lock);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_entry),        cmocka_unit_test(test_bad_entries),
                cmocka_unit_test(test_locations),    cmocka_unit_test(test_paths),
                cmocka_unit_test(test_wire_listing), cmocka_unit_test(test_cached_page_of),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
