/* Unit tests of the master's paged listings (listing_page): order, boundaries, odd names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm.h"
#include "listing.h"
#include "lswire.h"

static void apply_ok(fsm *f, json_t *cmd, uint64_t seq)
{
        json_t *result = NULL;
        char *buf;
        size_t len;

        assert_non_null(cmd);
        assert_int_equal(fsm_command_encode(cmd, "test", seq, &buf, &len), 0);
        assert_int_equal(fsm_apply(f, buf, len, &result), 0);
        if (json_object_get(result, "error"))
                fail_msg("command refused: %s",
                         json_string_value(json_object_get(result, "error")));
        json_decref(result);
        json_decref(cmd);
        free(buf);
}

/* A database in a directory removed right away: LMDB keeps working on the open files. */
static fsm *fsm_new(void)
{
        char dir[] = "/tmp/test-listing-XXXXXX", path[64], lock[80];
        fsm *f = NULL;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/state.mdb", dir);
        snprintf(lock, sizeof lock, "%s-lock", path);
        assert_int_equal(fsm_open(path, &f), 0);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(unlink(lock), 0);
        assert_int_equal(rmdir(dir), 0);
        return f;
}

/* Dataset "ds" with mount "m": the files /m/NAME for each of NAMES, in the order given. */
static fsm *fsm_with_files(const char *const *names, size_t n)
{
        fsm *f = fsm_new();
        json_t *mounts = json_pack("[{s:s,s:s}]", "name", "m", "mount_point", "https://x/");
        json_t *entries = json_array(), *cmd;
        uint64_t seq = 1;

        assert_non_null(f);
        apply_ok(f, fsm_cmd_dataset_ensure("ds", mounts, 16 << 20, 1000.0), seq++);
        json_decref(mounts);
        for (size_t i = 0; i < n; i++) {
                char path[600];

                snprintf(path, sizeof(path), "/m/%s", names[i]);
                json_array_append_new(entries, json_pack("{s:s,s:s,s:I,s:f,s:s}", "path", path,
                                                         "type", "file", "size", (json_int_t)i,
                                                         "mtime", 100.0, "etag", "\"e\""));
        }
        apply_ok(f, fsm_cmd_tree_begin("ds", "s1"), seq++);
        cmd = fsm_cmd_tree_batch("ds", "s1", entries);
        json_decref(entries);
        apply_ok(f, cmd, seq++);
        /* store URLs are composed from the mount's rule recorded at the commit */
        json_t *urls = json_pack("{s:{s:s,s:b}}", "m", "prefix", "https://x/", "escape", 1);
        apply_ok(f, fsm_cmd_tree_commit("ds", "s1", 2000.0, urls), seq++);
        json_decref(urls);
        return f;
}

static const char *name_at(json_t *entries, size_t i)
{
        return json_string_value(json_object_get(json_array_get(entries, i), "name"));
}

static int cmp(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_pages_cover_everything_in_order(void **state)
{
        enum { N = 2500 };
        char *names[N];
        const char *sorted[N];
        json_t *entries;
        fsm *f;
        bool more = true;
        size_t got = 0;
        char *after = NULL;

        /* inserted in a scrambled order */
        for (int i = 0; i < N; i++) {
                assert_true(asprintf(&names[i], "f%05d", (i * 7919) % N) > 0);
                sorted[i] = names[i];
        }
        f = fsm_with_files((const char *const *)names, N);
        qsort(sorted, N, sizeof(*sorted), cmp);
        while (more) {
                assert_int_equal(listing_page(f, "ds", "/m", after, 1000, 0, &entries, &more), 0);
                assert_true(json_array_size(entries) <= 1000);
                for (size_t i = 0; i < json_array_size(entries); i++)
                        assert_string_equal(name_at(entries, i), sorted[got++]);
                free(after);
                after = json_array_size(entries)
                                ? strdup(name_at(entries, json_array_size(entries) - 1))
                                : NULL;
                json_decref(entries);
        }
        assert_int_equal(got, N);
        free(after);
        /* exactly one page: no more */
        assert_int_equal(listing_page(f, "ds", "/m", "f01499", 1000, 0, &entries, &more), 0);
        assert_int_equal(json_array_size(entries), 1000);
        assert_false(more);
        assert_string_equal(name_at(entries, 0), "f01500");
        json_decref(entries);
        /* after the last name: empty, no more */
        assert_int_equal(listing_page(f, "ds", "/m", "f02499", 10, 0, &entries, &more), 0);
        assert_int_equal(json_array_size(entries), 0);
        assert_false(more);
        json_decref(entries);
        /* AFTER need not be a name that exists */
        assert_int_equal(listing_page(f, "ds", "/m", "f00009x", 2, 0, &entries, &more), 0);
        assert_string_equal(name_at(entries, 0), "f00010");
        assert_string_equal(name_at(entries, 1), "f00011");
        assert_true(more);
        json_decref(entries);
        for (int i = 0; i < N; i++)
                free(names[i]);
        fsm_free(f);
}

static void test_odd_names_sort_bytewise(void **state)
{
        /* UTF-8 sorts after ASCII bytewise; space, '%', '&' and '#' before letters */
        static const char *const names[] = {
                "émoji 🚀.txt", "Z",      "a",    "with space.txt", "50% off #1?.txt",
                "a&b",         "~tilde", "文件", "-dash",          "a b",
        };
        const char *sorted[10];
        json_t *entries;
        bool more;
        fsm *f = fsm_with_files(names, 10);

        memcpy(sorted, names, sizeof(sorted));
        qsort(sorted, 10, sizeof(*sorted), cmp);
        for (size_t k = 0; k < 10; k++) {
                /* one entry a page, each page starting after the previous name */
                assert_int_equal(listing_page(f, "ds", "/m", k ? sorted[k - 1] : NULL, 1, 0,
                                              &entries, &more),
                                 0);
                assert_int_equal(json_array_size(entries), 1);
                assert_string_equal(name_at(entries, 0), sorted[k]);
                /* the entry is that name's own (its size is its index in NAMES) */
                for (size_t i = 0; i < 10; i++)
                        if (strcmp(names[i], sorted[k]) == 0)
                                assert_int_equal(json_integer_value(json_object_get(
                                                         json_array_get(entries, 0), "size")),
                                                 i);
                assert_int_equal(more, k < 9);
                json_decref(entries);
        }
        fsm_free(f);
}

static void test_errors(void **state)
{
        static const char *const names[] = {"a"};
        json_t *entries = NULL;
        bool more;
        fsm *f = fsm_with_files(names, 1);

        assert_int_equal(listing_page(f, "nope", "/m", NULL, 10, 0, &entries, &more), -ENOENT);
        assert_int_equal(listing_page(f, "ds", "/missing", NULL, 10, 0, &entries, &more), -ENOENT);
        assert_int_equal(listing_page(f, "ds", "/m/a", NULL, 10, 0, &entries, &more), -ENOTDIR);
        assert_int_equal(listing_page(f, "ds", "/m", NULL, 0, 0, &entries, &more), -EINVAL);
        assert_int_equal(
                listing_page(f, "ds", "/m", NULL, LISTING_LIMIT_MAX + 1, 0, &entries, &more),
                -EINVAL);
        /* the root lists the mounts */
        assert_int_equal(listing_page(f, "ds", "/", NULL, 10, 0, &entries, &more), 0);
        assert_int_equal(json_array_size(entries), 1);
        assert_string_equal(name_at(entries, 0), "m");
        json_decref(entries);
        fsm_free(f);
}

static void test_attr_only(void **state)
{
        static const char *const names[] = {"a", "b"};
        json_t *entries = NULL, *e;
        bool more;
        fsm *f = fsm_with_files(names, 2);

        assert_int_equal(listing_page(f, "ds", "/m", NULL, 10, 0, &entries, &more), 0);
        e = json_array_get(entries, 0);
        assert_string_equal(json_string_value(json_object_get(e, "etag")), "\"e\"");
        assert_string_equal(json_string_value(json_object_get(e, "ufs_url")), "https://x/a");
        json_decref(entries);
        assert_int_equal(listing_page(f, "ds", "/m", NULL, 10, LISTING_ATTR_ONLY, &entries, &more),
                         0);
        assert_int_equal(json_array_size(entries), 2);
        e = json_array_get(entries, 1);
        assert_null(json_object_get(e, "etag"));
        assert_null(json_object_get(e, "ufs_url"));
        assert_string_equal(json_string_value(json_object_get(e, "name")), "b");
        assert_int_equal(json_integer_value(json_object_get(e, "size")), 1);
        assert_non_null(json_object_get(e, "file_id"));
        assert_non_null(json_object_get(e, "version"));
        json_decref(entries);
        fsm_free(f);
}

typedef struct page_copy {
        size_t n;
        json_t *json; /* the JSON page to compare with */
} page_copy;

static int same_as_json(const lswire_entry *w, void *userdata)
{
        page_copy *c = userdata;
        json_t *e = json_array_get(c->json, c->n++);
        const char *name = json_string_value(json_object_get(e, "name"));

        assert_non_null(e);
        assert_int_equal(strlen(name), w->name_len);
        assert_memory_equal(name, w->name, w->name_len);
        assert_int_equal(w->dir, strcmp(json_string_value(json_object_get(e, "type")), "dir") == 0);
        assert_int_equal(w->mtime, json_integer_value(json_object_get(e, "mtime")));
        if (!w->dir) {
                assert_int_equal(w->size, json_integer_value(json_object_get(e, "size")));
                assert_int_equal(w->file_id, json_integer_value(json_object_get(e, "file_id")));
                assert_int_equal(w->version, json_integer_value(json_object_get(e, "version")));
        }
        return 0;
}

/* format=binary pages carry what the JSON pages carry, page for page, with the same "more" */
static void test_binary_pages_match_json(void **state)
{
        enum { N = 2100 };
        char *names[N];
        fsm *f;
        bool more = true;
        size_t total = 0;
        char *after = NULL;

        for (int i = 0; i < N; i++)
                assert_true(asprintf(&names[i], "n%05d_%d.JPEG", (i * 7919) % N, i) > 0);
        f = fsm_with_files((const char *const *)names, N);
        while (more) {
                json_t *entries;
                lswire_buf b;
                lswire_header h;
                page_copy c = {};
                char err[200] = "";

                assert_int_equal(listing_page(f, "ds", "/m", after, 1000, LISTING_ATTR_ONLY,
                                              &entries, &more),
                                 0);
                assert_int_equal(listing_page_binary(f, "ds", "/m", after, 1000, 42, &b), 0);
                c.json = entries;
                assert_int_equal(lswire_parse(b.data, b.len, after, 1000, same_as_json, &c, &h, err,
                                              sizeof(err)),
                                 0);
                assert_int_equal(c.n, json_array_size(entries));
                assert_int_equal(h.more, more);
                assert_int_equal(h.epoch, 42);
                total += c.n;
                free(after);
                after = c.n ? strdup(name_at(entries, c.n - 1)) : NULL;
                json_decref(entries);
                lswire_buf_done(&b);
        }
        assert_int_equal(total, N);
        free(after);
        /* the root: directories, no file fields */
        lswire_buf b;
        lswire_header h;
        assert_int_equal(listing_page_binary(f, "ds", "/", NULL, 10, 1, &b), 0);
        assert_int_equal(lswire_parse(b.data, b.len, NULL, 10, NULL, NULL, &h, NULL, 0), 0);
        assert_int_equal(h.count, 1);
        assert_int_equal(b.data[LSWIRE_HEADER_SIZE], 2); /* a directory */
        lswire_buf_done(&b);
        assert_int_equal(listing_page_binary(f, "nope", "/m", NULL, 10, 1, &b), -ENOENT);
        assert_int_equal(listing_page_binary(f, "ds", "/m/x", NULL, 10, 1, &b), -ENOENT);
        assert_int_equal(listing_page_binary(f, "ds", "/m", NULL, 0, 1, &b), -EINVAL);
        for (int i = 0; i < N; i++)
                free(names[i]);
        fsm_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pages_cover_everything_in_order),
                cmocka_unit_test(test_odd_names_sort_bytewise),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_attr_only),
                cmocka_unit_test(test_binary_pages_match_json),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
