/* Unit tests of the compact listing page (services/lib/lswire.c): round trip, and every kind of
 * malformed page refused with -EBADMSG and a message saying what was wrong. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lswire.h"

typedef struct collected {
        size_t n;
        lswire_entry e[16];
        char names[16][LSWIRE_NAME_MAX + 1];
} collected;

static int collect(const lswire_entry *e, void *userdata)
{
        collected *c = userdata;

        assert_true(c->n < 16);
        c->e[c->n] = *e;
        memcpy(c->names[c->n], e->name, e->name_len);
        c->names[c->n][e->name_len] = 0;
        c->n++;
        return 0;
}

static void add(lswire_buf *b, const char *name, bool dir, uint64_t size, uint64_t id)
{
        lswire_entry e = {.name = name,
                          .name_len = strlen(name),
                          .dir = dir,
                          .mtime = 1700000000 + (int64_t)id,
                          .size = size,
                          .file_id = dir ? 0 : id,
                          .version = dir ? 0 : 3};

        assert_int_equal(lswire_add(b, &e), 0);
}

/* A page of three entries: "a dir" (dir), "b.JPEG" (file 7, 4096 bytes), "émoji" (file 9). */
static void three(lswire_buf *b, bool more)
{
        assert_int_equal(lswire_begin(b), 0);
        add(b, "a dir", true, 0, 0);
        add(b, "b.JPEG", false, 4096, 7);
        add(b, "\xc3\xa9moji", false, 1ull << 40, 9);
        lswire_finish(b, 0x0123456789abcdefull, more);
}

static void test_round_trip(void **state)
{
        lswire_buf b;
        lswire_header h;
        collected c = {};
        char err[200] = "";

        three(&b, true);
        assert_int_equal(lswire_parse(b.data, b.len, NULL, 1024, collect, &c, &h, err, sizeof(err)),
                         0);
        assert_true(h.epoch == 0x0123456789abcdefull);
        assert_int_equal(h.count, 3);
        assert_true(h.more);
        assert_int_equal(c.n, 3);
        assert_string_equal(c.names[0], "a dir");
        assert_true(c.e[0].dir);
        assert_int_equal(c.e[0].file_id, 0);
        assert_string_equal(c.names[1], "b.JPEG");
        assert_false(c.e[1].dir);
        assert_int_equal(c.e[1].size, 4096);
        assert_int_equal(c.e[1].file_id, 7);
        assert_int_equal(c.e[1].version, 3);
        assert_int_equal(c.e[1].mtime, 1700000007);
        assert_string_equal(c.names[2], "\xc3\xa9moji");
        assert_true(c.e[2].size == 1ull << 40);
        /* after= a name before the first: accepted; the first name itself or later: refused */
        assert_int_equal(lswire_parse(b.data, b.len, "a", 1024, NULL, NULL, NULL, NULL, 0), 0);
        assert_int_equal(
                lswire_parse(b.data, b.len, "a dir", 1024, NULL, NULL, NULL, err, sizeof(err)),
                -EBADMSG);
        assert_non_null(strstr(err, "does not sort after 'a dir'"));
        /* exactly the count asked for is fine, one fewer is not */
        assert_int_equal(lswire_parse(b.data, b.len, NULL, 3, NULL, NULL, NULL, NULL, 0), 0);
        assert_int_equal(lswire_parse(b.data, b.len, NULL, 2, NULL, NULL, NULL, err, sizeof(err)),
                         -EBADMSG);
        assert_non_null(strstr(err, "more than the 2 asked for"));
        lswire_buf_done(&b);

        /* an empty last page */
        assert_int_equal(lswire_begin(&b), 0);
        lswire_finish(&b, 1, false);
        assert_int_equal(b.len, LSWIRE_HEADER_SIZE);
        assert_int_equal(lswire_parse(b.data, b.len, "zzz", 1024, NULL, NULL, &h, NULL, 0), 0);
        assert_int_equal(h.count, 0);
        lswire_buf_done(&b);
}

static void test_encoder_refuses_bad_names(void **state)
{
        lswire_buf b;
        char longname[LSWIRE_NAME_MAX + 2];
        static const char *const bad[] = {"", ".", "..", "a/b"};

        assert_int_equal(lswire_begin(&b), 0);
        for (size_t i = 0; i < 4; i++) {
                lswire_entry e = {.name = bad[i], .name_len = strlen(bad[i]), .dir = true};
                assert_int_equal(lswire_add(&b, &e), -EINVAL);
        }
        lswire_entry nul = {.name = "a\0b", .name_len = 3, .dir = true};
        assert_int_equal(lswire_add(&b, &nul), -EINVAL);
        memset(longname, 'x', sizeof(longname));
        lswire_entry lng = {.name = longname, .name_len = LSWIRE_NAME_MAX + 1, .dir = true};
        assert_int_equal(lswire_add(&b, &lng), -EINVAL);
        lng.name_len = LSWIRE_NAME_MAX;
        assert_int_equal(lswire_add(&b, &lng), 0);
        assert_int_equal(b.count, 1);
        lswire_buf_done(&b);
}

/* Parses DATA[0..LEN) expecting R and a message containing WHAT. */
static void expect_bad(const void *data, size_t len, int r, const char *what)
{
        char err[256] = "";
        collected c = {};

        assert_int_equal(lswire_parse(data, len, NULL, 1024, collect, &c, NULL, err, sizeof(err)),
                         r);
        if (!strstr(err, what))
                fail_msg("expected '%s' in the error, got '%s'", what, err);
}

static void test_malformed(void **state)
{
        lswire_buf b;
        uint8_t *p;
        size_t n;

        three(&b, false);
        n = b.len;
        p = malloc(n + 8);
        assert_non_null(p);

        memcpy(p, b.data, n);
        expect_bad(p, 10, -EBADMSG, "shorter than the 24-byte header");
        expect_bad(p, 0, -EBADMSG, "shorter than the 24-byte header");
        p[0] = '{';
        expect_bad(p, n, -EBADMSG, "no \"WLST\" magic");

        memcpy(p, b.data, n);
        p[4] = 2;
        expect_bad(p, n, -EPROTONOSUPPORT, "version 2, this build reads 1");

        memcpy(p, b.data, n);
        p[20] = 6; /* flags: more + unknown bits */
        expect_bad(p, n, -EBADMSG, "unknown flags 0x6");

        memcpy(p, b.data, n);
        p[16] = 0xff; /* count 255: cannot fit */
        expect_bad(p, n, -EBADMSG, "cannot fit");
        p[16] = 0xff, p[17] = 0xff, p[18] = 0xff, p[19] = 0xff;
        expect_bad(p, n, -EBADMSG, "more than the 1024 asked for");

        memcpy(p, b.data, n);
        p[16] = 0, p[20] = 1; /* no entries, more to come */
        expect_bad(p, LSWIRE_HEADER_SIZE, -EBADMSG, "no entries but more");

        memcpy(p, b.data, n);
        p[24] = 3; /* type of entry 0 */
        expect_bad(p, n, -EBADMSG, "entry 0 has type 3");

        memcpy(p, b.data, n);
        expect_bad(p, n - 1, -EBADMSG, "the name of entry 2 is cut short");
        expect_bad(p, LSWIRE_HEADER_SIZE + 12 + 5 + 12 + 10, -EBADMSG, "entry 1 is cut short");

        memcpy(p, b.data, n);
        p[n] = 0;
        expect_bad(p, n + 1, -EBADMSG, "1 bytes after the last entry");

        /* entry 1 ("b.JPEG") starts at 24 + 12 + 5; its file id at + 12 + 8 */
        memcpy(p, b.data, n);
        memset(p + 24 + 17 + 20, 0, 8);
        expect_bad(p, n, -EBADMSG, "file entry 1 has no file id");

        memcpy(p, b.data, n);
        p[24 + 17 + 12 + 7] = 0x80; /* size over 2^63 */
        expect_bad(p, n, -EBADMSG, "file entry 1 is");

        /* names: entry 0 "a dir" at 24 + 12 */
        memcpy(p, b.data, n);
        p[24 + 12 + 1] = '/';
        expect_bad(p, n, -EBADMSG, "entry 0 has an invalid name");
        p[24 + 12 + 1] = 0;
        expect_bad(p, n, -EBADMSG, "entry 0 has an invalid name");
        memcpy(p, b.data, n);
        p[24 + 12] = 'c'; /* "c dir" > "b.JPEG" */
        expect_bad(p, n, -EBADMSG, "entry 1 ('b.JPEG') does not sort after 'c dir'");
        memcpy(p, b.data, n);
        p[24 + 2] = 0; /* name length 0 */
        expect_bad(p, n, -EBADMSG, "entry 0 has an invalid name");
        free(p);
        lswire_buf_done(&b);

        /* "." and ".." and a duplicate */
        static const char *const names[] = {".", ".."};
        for (size_t i = 0; i < 2; i++) {
                uint8_t page[64] = "WLST\1\0\0\0\1\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0";
                page[24] = 2;
                page[26] = (uint8_t)strlen(names[i]);
                memcpy(page + 36, names[i], strlen(names[i]));
                expect_bad(page, 36 + strlen(names[i]), -EBADMSG, "invalid name");
        }
        assert_int_equal(lswire_begin(&b), 0);
        add(&b, "same", true, 0, 0);
        add(&b, "same", true, 0, 0);
        lswire_finish(&b, 1, false);
        expect_bad(b.data, b.len, -EBADMSG, "does not sort after 'same'");
        lswire_buf_done(&b);
}

/* Every single-byte change and every truncation of a valid page: a clean answer, never a crash
 * or a read past the end (run under ASan in the fuzz build; here at least no crash). */
static void test_mutations(void **state)
{
        lswire_buf b;

        three(&b, true);
        for (size_t len = 0; len <= b.len; len++)
                (void)lswire_parse(b.data, len, NULL, 1024, NULL, NULL, NULL, NULL, 0);
        for (size_t i = 0; i < b.len; i++)
                for (unsigned v = 0; v < 256; v += 17) {
                        uint8_t *copy = malloc(b.len);
                        collected c = {};
                        int r;

                        assert_non_null(copy);
                        memcpy(copy, b.data, b.len);
                        copy[i] = (uint8_t)v;
                        r = lswire_parse(copy, b.len, NULL, 1024, collect, &c, NULL, NULL, 0);
                        assert_true(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
                        free(copy);
                }
        lswire_buf_done(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_encoder_refuses_bad_names),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_mutations),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
