/* Unit tests for ufs-url.c: percent-encoding both ways, entities, UTF-8 and path checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ufs/ufs-internal.h"

static void check_escape(const char *in, bool keep_slash, const char *want)
{
        char *s = ufs_escape(in, keep_slash);

        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
}

static void test_escape(void **state)
{
        check_escape("", true, "");
        check_escape("a-Z_0.9~", true, "a-Z_0.9~");
        check_escape("a b/c", true, "a%20b/c");
        check_escape("a b/c", false, "a%20b%2Fc");
        check_escape("50%+#?&=;:", true, "50%25%2B%23%3F%26%3D%3B%3A");
        check_escape("ü文", true, "%C3%BC%E6%96%87");

        char *s = ufs_escape_loose("http://h/a b/%20ü?");
        assert_string_equal(s, "http://h/a%20b/%20%C3%BC?");
        free(s);
}

static void check_unescape(const char *in, int want_r, const char *want)
{
        char *s = NULL;

        assert_int_equal(ufs_unescape(in, strlen(in), &s), want_r);
        if (want_r == 0) {
                assert_string_equal(s, want);
                free(s);
        }
}

static void test_unescape(void **state)
{
        check_unescape("a%20b", 0, "a b");
        check_unescape("%c3%bc%C3%BC", 0, "üü");
        check_unescape("plain+plus", 0, "plain+plus"); /* '+' is no space in a path */
        check_unescape("%", -EINVAL, NULL);
        check_unescape("%2", -EINVAL, NULL);
        check_unescape("%zz", -EINVAL, NULL);
        check_unescape("a%00b", -EINVAL, NULL);
        check_unescape("end%4", -EINVAL, NULL);
        check_unescape("end%41", 0, "endA");
}

static void check_entities(const char *in, const char *want)
{
        char *s = ufs_decode_entities(in, strlen(in));

        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
}

static void test_entities(void **state)
{
        check_entities("a&amp;b&lt;c&gt;&quot;&apos;&#39;&#x27;", "a&b<c>\"'''");
        check_entities("&#233;&#x1F680;", "é🚀");
        check_entities("&nbsp;", "\xc2\xa0");
        check_entities("&unknown; & &#; &#xZZ; &#0; &#1114112;",
                       "&unknown; & &#; &#xZZ; &#0; &#1114112;");
        check_entities("&amp", "&amp");
        check_entities("&#xD800;", "&#xD800;");
}

static void test_names(void **state)
{
        assert_true(ufs_name_valid("a"));
        assert_true(ufs_name_valid("with space"));
        assert_true(ufs_name_valid("ünï 文件"));
        assert_true(ufs_name_valid("..."));
        assert_false(ufs_name_valid(""));
        assert_false(ufs_name_valid("."));
        assert_false(ufs_name_valid(".."));
        assert_false(ufs_name_valid("a/b"));
        assert_false(ufs_name_valid("tab\there"));
        assert_false(ufs_name_valid("latin1\xe9"));
        assert_false(ufs_name_valid("overlong\xc0\xaf"));
        assert_false(ufs_name_valid("surrogate\xed\xa0\x80"));

        assert_true(ufs_path_valid(""));
        assert_true(ufs_path_valid("a"));
        assert_true(ufs_path_valid("a/b c/d"));
        assert_false(ufs_path_valid("/a"));
        assert_false(ufs_path_valid("a/"));
        assert_false(ufs_path_valid("a//b"));
        assert_false(ufs_path_valid("a/../b"));
        assert_false(ufs_path_valid("./a"));
        assert_false(ufs_path_valid(NULL));
}

static void check_redact(const char *in, const char *want)
{
        char *out = ufs_url_redact(in);
        assert_non_null(out);
        assert_string_equal(out, want);
        free(out);
}

static void test_redact(void **state)
{
        check_redact("https://user:secret@example.org/hbase/", "https://example.org/hbase/");
        check_redact("http://u:p@ss@10.0.0.1:8080/a@b/", "http://10.0.0.1:8080/a@b/");
        check_redact("http://example.org/a@b/c", "http://example.org/a@b/c");
        check_redact("s3://bucket/prefix", "s3://bucket/prefix");
        check_redact("/local/path", "/local/path");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escape),   cmocka_unit_test(test_unescape),
                cmocka_unit_test(test_entities), cmocka_unit_test(test_names),
                cmocka_unit_test(test_redact),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
