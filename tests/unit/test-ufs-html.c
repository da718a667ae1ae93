/* Unit tests for ufs-html.c: index pages of nginx, Apache (table, fancy, plain, mirror), Python. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ufs/ufs-internal.h"

#define FIXTURES SOURCE_ROOT "/tests/unit/fixtures/ufs/"
#include "fixture.h"

/* The names every captured top-level page lists (tests/integration/weirtest/stores.py). */
static const char *const top_names[] = {
        "-leading-dash",
        "50% off #1?.txt",
        "UPPER.lower",
        "a&b<c>'d\".txt",
        "big",
        "plus+semi;colon:eq=.dat",
        "sub dir",
        "tab-free,comma,name.csv",
        "with space.txt",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.long",
        "émoji 🚀.txt",
        "ünïcödé-文件.bin",
};

static const ufs_entry *find(const ufs_entry *e, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(e[i].name, name) == 0)
                        return &e[i];
        return NULL;
}

/* Parses FIXTURE and checks it lists exactly top_names, "big" and "sub dir" as directories. */
static void check_top(const char *fixture, bool sizes)
{
        size_t len, n;
        char *page = read_fixture(fixture, &len);
        ufs_entry *e;

        assert_int_equal(ufs_html_parse(page, len, "/", &e, &n), 0);
        assert_int_equal(n, ELEMENTSOF(top_names));
        for (size_t i = 0; i < ELEMENTSOF(top_names); i++) {
                const ufs_entry *x = find(e, n, top_names[i]);

                if (!x)
                        fail_msg("%s: missing \"%s\"", fixture, top_names[i]);
                assert_int_equal(x->dir, strcmp(top_names[i], "big") == 0 ||
                                                 strcmp(top_names[i], "sub dir") == 0);
        }
        /* Sorted by name, byte-wise. */
        for (size_t i = 1; i < n; i++)
                assert_true(strcmp(e[i - 1].name, e[i].name) < 0);
        if (sizes) {
                /* The fixture tree gives ODD_NAMES[j] 100 + j bytes. */
                assert_int_equal(find(e, n, "with space.txt")->version.size, 100);
                assert_int_equal(find(e, n, "ünïcödé-文件.bin")->version.size, 101);
                assert_int_equal(find(e, n, "a&b<c>'d\".txt")->version.size, 102);
                assert_true(find(e, n, "with space.txt")->version.mtime > 1700000000);
        }
        ufs_entries_free(e, n);
        free(page);
}

static void test_nginx(void **state)
{
        check_top("nginx.html", true);
}

static void test_apache_table(void **state)
{
        check_top("apache-table.html", true);
}

static void test_apache_fancy(void **state)
{
        check_top("apache-fancy.html", true);
}

static void test_apache_plain(void **state)
{
        check_top("apache-plain.html", false);
}

static void test_python(void **state)
{
        check_top("python.html", false);
}

/* A subdirectory page: the parent link ("../" or the absolute "/") is not an entry; sizes as
 * the server shows them (nginx exact, Apache rounded). */
static void test_subdir_pages(void **state)
{
        static const struct {
                const char *fixture;
                uint64_t size;
        } cases[] = {
                {"nginx-big.html", 1234567},
                {"apache-table-big.html", (uint64_t)(1.2 * 1024 * 1024)},
                {"apache-fancy-big.html", (uint64_t)(1.2 * 1024 * 1024)},
                {"apache-plain-big.html", 0},
                {"python-big.html", 0},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t len, n;
                char *page = read_fixture(cases[i].fixture, &len);
                ufs_entry *e;

                assert_int_equal(ufs_html_parse(page, len, "/big/", &e, &n), 0);
                if (n != 1)
                        fail_msg("%s: %zu entries", cases[i].fixture, n);
                assert_string_equal(e[0].name, "one.bin");
                assert_false(e[0].dir);
                assert_int_equal(e[0].version.size, cases[i].size);
                ufs_entries_free(e, n);
                free(page);
        }
}

static void test_apache_mirror(void **state)
{
        static const char *const names[] = {
                "CHANGES.md",         "RELEASENOTES.md",        "api",
                "café.txt",           "hbase-2.5.8-bin.tar.gz", "hbase-2.5.8-bin.tar.gz.asc",
                "notes & errata.txt",
        };
        size_t len, n;
        char *page = read_fixture("apache-mirror.html", &len);
        ufs_entry *e;

        assert_int_equal(ufs_html_parse(page, len, "/hbase/stable/", &e, &n), 0);
        assert_int_equal(n, ELEMENTSOF(names));
        for (size_t i = 0; i < n; i++)
                assert_string_equal(e[i].name, names[i]);
        assert_true(e[2].dir);
        /* Icon and name both link: one entry, with the size of the row. */
        assert_int_equal(e[4].version.size, 280ull << 20);
        assert_int_equal(e[5].version.size, 833);
        assert_int_equal(e[6].version.size, 12 * 1024);
        /* "07-May-2024 18:46" and "2024-05-07 18:46" are the same minute. */
        assert_int_equal(e[4].version.mtime, e[5].version.mtime);
        assert_int_equal(e[5].version.mtime, 1715107560);
        ufs_entries_free(e, n);

        /* Without a base path absolute links count for nothing. */
        assert_int_equal(ufs_html_parse(page, len, NULL, &e, &n), 0);
        assert_int_equal(n, ELEMENTSOF(names) - 1);
        assert_null(find(e, n, "CHANGES.md"));
        ufs_entries_free(e, n);
        free(page);
}

static void test_edge_cases(void **state)
{
        static const char *page = "<html><body><!-- <a href=\"commented.txt\">x</a> -->"
                                  "<a title='a > b' href=\"quoted%20gt.txt\">q</a>"
                                  "<a\nhref=\"newline.txt\">n</a>"
                                  "<abbr href=\"abbr.txt\">not a link</abbr>"
                                  "<a href=\"&#x2F;etc&#47;passwd\">entity slash</a>"
                                  "<a href=\"&#47;\">root</a>"
                                  "<a href=\"x&#233;.txt\">numeric entity</a>"
                                  "<a href=\"unterminated.txt";
        ufs_entry *e;
        size_t n;

        assert_int_equal(ufs_html_parse(page, strlen(page), "/data/", &e, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].name, "newline.txt");
        assert_string_equal(e[1].name, "quoted gt.txt");
        assert_string_equal(e[2].name, "xé.txt");
        ufs_entries_free(e, n);

        /* Absolute links match the page's directory however its path is escaped. */
        static const char abs_page[] = "<a href=\"/caf%c3%a9/one.txt\">1</a>"
                                       "<a href=\"/caf\xc3\xa9/two%20x/\">2</a>"
                                       "<a href=\"/caf%C3%A9/\">self</a>"
                                       "<a href=\"/caf%C3%A9/a/b.txt\">deeper</a>"
                                       "<a href=\"/cafe/other.txt\">other</a>";
        assert_int_equal(ufs_html_parse(abs_page, strlen(abs_page), "/caf%C3%A9/", &e, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].name, "one.txt");
        assert_string_equal(e[1].name, "two x");
        assert_true(e[1].dir);
        ufs_entries_free(e, n);

        assert_int_equal(ufs_html_parse("", 0, "/", &e, &n), 0);
        assert_int_equal(n, 0);
        ufs_entries_free(e, n);
}

static void test_nginx_json(void **state)
{
        size_t len, n;
        char *page = read_fixture("nginx.json", &len);
        ufs_entry *e;

        assert_int_equal(ufs_json_index_parse(page, len, &e, &n), 0);
        assert_int_equal(n, ELEMENTSOF(top_names));
        for (size_t i = 0; i < ELEMENTSOF(top_names); i++) {
                const ufs_entry *x = find(e, n, top_names[i]);

                assert_non_null(x);
                assert_int_equal(x->dir, strcmp(top_names[i], "big") == 0 ||
                                                 strcmp(top_names[i], "sub dir") == 0);
        }
        assert_int_equal(find(e, n, "a&b<c>'d\".txt")->version.size, 102);
        assert_int_equal(find(e, n, "big")->version.mtime, 1795365148);
        ufs_entries_free(e, n);
        free(page);

        page = read_fixture("nginx-big.json", &len);
        assert_int_equal(ufs_json_index_parse(page, len, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(e[0].version.size, 1234567);
        ufs_entries_free(e, n);
        free(page);

        static const char *const bad[] = {
                "",
                "{}",
                "[",
                "\"x\"",
                "[{\"name\":\"a\",\"type\":\"file\"},{\"name\":\"a\",\"type\":\"file\"}]",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(ufs_json_index_parse(bad[i], strlen(bad[i]), &e, &n), -EBADMSG);
        /* Unusable names and other types are skipped, not fatal. */
        static const char odd[] = "[{\"name\":\"..\",\"type\":\"directory\"},"
                                  "{\"name\":\"a/b\",\"type\":\"file\"},"
                                  "{\"name\":\"sock\",\"type\":\"other\"},"
                                  "{\"name\":\"ok\",\"type\":\"file\",\"size\":-1}]";
        assert_int_equal(ufs_json_index_parse(odd, strlen(odd), &e, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].name, "ok");
        assert_int_equal(e[0].version.size, 0);
        ufs_entries_free(e, n);
}

/* Parses many mutated copies of every fixture: nothing crashes (ASan, UBSan run these tests)
 * and every result keeps the invariants: valid unique names in byte order. */
static void test_mutations(void **state)
{
        static const char *const fixtures[] = {
                "nginx.html",        "apache-table.html", "apache-fancy.html",
                "apache-plain.html", "python.html",       "apache-mirror.html",
        };
        static const char *const snippets[] = {
                "<a href=\"", "\"",   "'",    ">",  "<",          "</a>", "&amp;",
                "&#",         "%",    "%2F",  "/",  "../",        "<!--", "-->",
                "?C=N",       "\xc3", "\xff", "\n", "<a href=x>", "./",
        };
        uint32_t seed = 12345;

        for (size_t f = 0; f < ELEMENTSOF(fixtures); f++) {
                size_t len;
                char *page = read_fixture(fixtures[f], &len);

                for (int iter = 0; iter < 400; iter++) {
                        char *buf = malloc(len + 64);
                        size_t n = len;

                        assert_non_null(buf);
                        memcpy(buf, page, len);
                        for (int k = 0; k < 8; k++) {
                                seed = seed * 1103515245u + 12345u;
                                size_t at = n ? (seed >> 8) % n : 0;
                                const char *snip = snippets[(seed >> 4) % ELEMENTSOF(snippets)];
                                size_t sl = strlen(snip);

                                switch (seed % 3) {
                                case 0: /* truncate */
                                        n = at;
                                        break;
                                case 1: /* overwrite */
                                        if (at + sl <= n)
                                                memcpy(buf + at, snip, sl);
                                        break;
                                default: /* one random byte */
                                        if (n)
                                                buf[at] = (char)(seed >> 16);
                                        break;
                                }
                        }
                        ufs_entry *e = NULL;
                        size_t ne = 0;
                        int r = ufs_html_parse(buf, n, "/", &e, &ne);

                        assert_true(r == 0);
                        for (size_t i = 0; i < ne; i++) {
                                assert_true(ufs_name_valid(e[i].name));
                                if (i > 0)
                                        assert_true(strcmp(e[i - 1].name, e[i].name) < 0);
                        }
                        ufs_entries_free(e, ne);
                        free(buf);
                }
                free(page);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nginx),         cmocka_unit_test(test_apache_table),
                cmocka_unit_test(test_apache_fancy),  cmocka_unit_test(test_apache_plain),
                cmocka_unit_test(test_python),        cmocka_unit_test(test_subdir_pages),
                cmocka_unit_test(test_apache_mirror), cmocka_unit_test(test_edge_cases),
                cmocka_unit_test(test_mutations),     cmocka_unit_test(test_nginx_json),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
