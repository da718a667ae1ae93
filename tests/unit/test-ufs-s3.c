/* Unit tests for ufs-xml.c and the S3 backend's setup: ListObjectsV2 pages, errors, options. */
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

static void test_list_pages(void **state)
{
        ufs_s3_page p;
        size_t len;
        char *xml = read_fixture("s3-list-1.xml", &len);

        assert_int_equal(ufs_s3_parse_list(xml, len, "set/", &p), 0);
        assert_true(p.truncated);
        assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
        /* The marker "set/" itself is no entry; names are decoded (&amp;, CDATA). */
        assert_int_equal(p.n, 4);
        assert_string_equal(p.entries[0].name, "a & b.txt");
        assert_false(p.entries[0].dir);
        assert_int_equal(p.entries[0].version.size, 1234567);
        assert_int_equal(p.entries[0].version.mtime, 1795168862);
        assert_string_equal(p.entries[0].version.etag, "\"0cc175b9c0f1b6a831c399e269772661\"");
        assert_string_equal(p.entries[1].name, "ünï 文件.bin");
        assert_string_equal(p.entries[1].version.etag, "\"9e107d9d372bb6826bd81d3542a419d6-2\"");
        assert_int_equal(p.entries[1].version.size, 10485760);
        assert_string_equal(p.entries[2].name, "sub dir");
        assert_true(p.entries[2].dir);
        assert_string_equal(p.entries[3].name, "cdata<&>");
        assert_true(p.entries[3].dir);
        ufs_s3_page_done(&p);
        free(xml);

        xml = read_fixture("s3-list-2.xml", &len);
        assert_int_equal(ufs_s3_parse_list(xml, len, "set/", &p), 0);
        assert_false(p.truncated);
        assert_null(p.next_token);
        /* "elsewhere/x.txt" is not under the prefix, "set/.." is no name. */
        assert_int_equal(p.n, 3);
        assert_string_equal(p.entries[0].name, "z.txt");
        assert_string_equal(p.entries[0].version.etag, "\"abc\"");
        assert_int_equal(p.entries[0].version.mtime, 1795364703);
        assert_string_equal(p.entries[1].name, "z dir");
        assert_true(p.entries[1].dir);
        assert_string_equal(p.entries[2].name, "empty");
        assert_null(p.entries[2].version.etag);
        ufs_s3_page_done(&p);
        free(xml);
}

static void test_list_root(void **state)
{
        static const char xml[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                  "<Contents><Key>top.txt</Key><Size>5</Size></Contents>"
                                  "<CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>"
                                  "</ListBucketResult>";
        ufs_s3_page p;

        assert_int_equal(ufs_s3_parse_list(xml, strlen(xml), "", &p), 0);
        assert_int_equal(p.n, 2);
        assert_string_equal(p.entries[0].name, "top.txt");
        assert_string_equal(p.entries[1].name, "d");
        ufs_s3_page_done(&p);
}

static void test_bad_xml(void **state)
{
        static const char *const bad[] = {
                "",
                "not xml at all",
                "<Error><Code>NoSuchBucket</Code></Error>", /* not a listing */
                "<ListBucketResult><Contents><Key>a</Key></ListBucketResult>",
                "<ListBucketResult><Contents><Key>a</Contents></Key></ListBucketResult>",
                "<ListBucketResult><Contents><Size>-1</Size></Contents></ListBucketResult>",
                "<ListBucketResult><Contents><Size>1e3</Size></Contents></ListBucketResult>",
                "<ListBucketResult><Contents><Key>a</Key><Size>9223372036854775808</Size>"
                "</Contents></ListBucketResult>",
                "<ListBucketResult></ListBucketResult><ListBucketResult></ListBucketResult>",
                "<!DOCTYPE x [<!ENTITY a 'b'>]><ListBucketResult></ListBucketResult>",
                "<ListBucketResult><a><b><c><d><e><f><g><h><i><j><k><l><m><n><o><p><q>"
                "</q></p></o></n></m></l></k></j></i></h></g></f></e></d></c></b></a>"
                "</ListBucketResult>",
                "<ListBucketResult><![CDATA[unterminated</ListBucketResult>",
        };
        ufs_s3_page p;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (ufs_s3_parse_list(bad[i], strlen(bad[i]), "", &p) != -EBADMSG)
                        fail_msg("accepted: %s", bad[i]);
}

static void test_error(void **state)
{
        size_t len;
        char *xml = read_fixture("s3-error.xml", &len), *code, *message;

        assert_int_equal(ufs_s3_parse_error(xml, len, &code, &message), 0);
        assert_string_equal(code, "SignatureDoesNotMatch");
        assert_non_null(strstr(message, "does not match"));
        free(code);
        free(message);
        free(xml);
}

static void test_iso8601(void **state)
{
        int64_t t;

        assert_int_equal(ufs_parse_iso8601("2026-11-22T16:25:03.000Z", &t), 0);
        assert_int_equal(t, 1795364703);
        assert_int_equal(ufs_parse_iso8601("1970-01-01T00:00:00Z", &t), 0);
        assert_int_equal(t, 0);
        assert_int_equal(ufs_parse_iso8601("2026-13-01T00:00:00Z", &t), -EINVAL);
        assert_int_equal(ufs_parse_iso8601("yesterday", &t), -EINVAL);
}

static config_mount mount_of(const char *url, config_option *o, size_t n)
{
        return (config_mount){
                .name = (char *)"m", .mount_point = (char *)url, .options = o, .n_options = n};
}

static void test_open_options(void **state)
{
        config_option s3_opts[] = {
                {(char *)"fs.s3a.endpoint", (char *)"http://127.0.3.1:9000/", false},
                {(char *)"fs.s3a.access.key", (char *)"AKID", false},
                {(char *)"fs.s3a.secret.key", (char *)"SECRET", true},
                {(char *)"fs.s3a.endpoint.region", (char *)"eu-west-1", false},
        };
        config_option oss_no_endpoint[] = {
                {(char *)"fs.oss.accessKeyId", (char *)"AKID", false},
                {(char *)"fs.oss.accessKeySecret", (char *)"SECRET", true},
        };
        config_option half[] = {
                {(char *)"fs.cos.endpoint", (char *)"cos.example", false},
                {(char *)"fs.cos.access.key", (char *)"AKID", false},
        };
        config_mount m;
        ufs *u;
        char *url;

        m = mount_of("s3://bucket/some/prefix/", s3_opts, ELEMENTSOF(s3_opts));
        assert_int_equal(ufs_open(&m, &u), 0);
        url = ufs_url(u, "a b/c.txt");
        assert_string_equal(url, "s3://bucket/some/prefix/a b/c.txt");
        free(url);
        ufs_free(u);

        /* Anonymous access to a public bucket needs neither key. */
        m = mount_of("s3://public", NULL, 0);
        assert_int_equal(ufs_open(&m, &u), 0);
        ufs_free(u);

        m = mount_of("oss://bucket/x", oss_no_endpoint, ELEMENTSOF(oss_no_endpoint));
        assert_int_equal(ufs_open(&m, &u), -EINVAL);
        m = mount_of("cos://bucket/x", half, ELEMENTSOF(half));
        assert_int_equal(ufs_open(&m, &u), -EINVAL);
        m = mount_of("s3://", NULL, 0);
        assert_int_equal(ufs_open(&m, &u), -EINVAL);
        m = mount_of("s3://bad bucket/x", NULL, 0);
        assert_int_equal(ufs_open(&m, &u), -EINVAL);
        m = mount_of("gs://bucket/x", NULL, 0);
        assert_int_equal(ufs_open(&m, &u), -EPROTONOSUPPORT);
}

/* Mutated listings: no crash, and either an error or entries with valid names. */
static void test_mutations(void **state)
{
        static const char *const fixtures[] = {"s3-list-1.xml", "s3-list-2.xml", "s3-error.xml"};
        static const char *const snippets[] = {
                "<",           ">",     "</",  "/>",    "<![CDATA[", "]]>",
                "<!--",        "&amp;", "&#x", "<Key>", "</Key>",    "<Contents>",
                "</Contents>", "<?",    "?>",  "\"",    "\xff",
        };
        uint32_t seed = 4242;

        for (size_t f = 0; f < ELEMENTSOF(fixtures); f++) {
                size_t len;
                char *xml = read_fixture(fixtures[f], &len);

                for (int iter = 0; iter < 600; iter++) {
                        char *buf = malloc(len + 64);
                        size_t n = len;

                        assert_non_null(buf);
                        memcpy(buf, xml, len);
                        for (int k = 0; k < 6; k++) {
                                seed = seed * 1103515245u + 12345u;
                                size_t at = n ? (seed >> 8) % n : 0;
                                const char *snip = snippets[(seed >> 4) % ELEMENTSOF(snippets)];
                                size_t sl = strlen(snip);

                                if (seed % 3 == 0)
                                        n = at;
                                else if (seed % 3 == 1 && at + sl <= n)
                                        memcpy(buf + at, snip, sl);
                                else if (n)
                                        buf[at] = (char)(seed >> 16);
                        }
                        ufs_s3_page p;
                        char *code = NULL, *message = NULL;

                        if (ufs_s3_parse_list(buf, n, "set/", &p) == 0) {
                                for (size_t i = 0; i < p.n; i++)
                                        assert_true(ufs_name_valid(p.entries[i].name));
                                ufs_s3_page_done(&p);
                        }
                        if (ufs_s3_parse_error(buf, n, &code, &message) == 0) {
                                free(code);
                                free(message);
                        }
                        free(buf);
                }
                free(xml);
        }
}

static void check_urls(const char *mount_point, config_option *o, size_t n, const char *object,
                       const char *list)
{
        config_mount m = mount_of(mount_point, o, n);
        ufs *u;
        char *s;

        assert_int_equal(ufs_open(&m, &u), 0);
        s = ufs_s3_request_url(u, "a b/c+d.txt", false);
        assert_string_equal(s, object);
        free(s);
        s = ufs_s3_request_url(u, "p/", true);
        assert_string_equal(s, list);
        free(s);
        ufs_free(u);
}

/* Path-style for s3:// (MinIO, Ceph and AWS accept it), virtual-hosted for OSS and COS (which
 * require it); either way when the option says so. */
static void test_addressing(void **state)
{
        config_option s3[] = {{(char *)"fs.s3a.endpoint", (char *)"http://127.0.3.1:9000", false}};
        config_option s3_vhost[] = {
                {(char *)"fs.s3a.endpoint", (char *)"s3.example.com", false},
                {(char *)"fs.s3a.path.style.access", (char *)"false", false},
        };
        config_option oss[] = {
                {(char *)"fs.oss.endpoint", (char *)"oss-cn-hangzhou.aliyuncs.com", false}};
        config_option cos_path[] = {
                {(char *)"fs.cos.endpoint", (char *)"https://cos.example:8443/", false},
                {(char *)"fs.cos.path.style.access", (char *)"true", false},
        };
        config_option bad[] = {
                {(char *)"fs.s3a.path.style.access", (char *)"maybe", false},
        };

        check_urls("s3://bkt/pre", s3, 1, "http://127.0.3.1:9000/bkt/pre/a%20b/c%2Bd.txt",
                   "http://127.0.3.1:9000/bkt?delimiter=%2F&list-type=2&max-keys=1000&prefix=p%2F");
        check_urls("s3://bkt", s3_vhost, 2, "https://bkt.s3.example.com/a%20b/c%2Bd.txt",
                   "https://bkt.s3.example.com/?delimiter=%2F&list-type=2&max-keys=1000"
                   "&prefix=p%2F");
        check_urls("oss://bkt/x/", oss, 1,
                   "https://bkt.oss-cn-hangzhou.aliyuncs.com/x/a%20b/c%2Bd.txt",
                   "https://bkt.oss-cn-hangzhou.aliyuncs.com/?delimiter=%2F&list-type=2"
                   "&max-keys=1000&prefix=p%2F");
        check_urls("cos://bkt", cos_path, 2, "https://cos.example:8443/bkt/a%20b/c%2Bd.txt",
                   "https://cos.example:8443/bkt?delimiter=%2F&list-type=2&max-keys=1000"
                   "&prefix=p%2F");
        /* The default endpoint of s3:// is AWS's, in the region's name. */
        check_urls("s3://bkt", NULL, 0, "https://s3.us-east-1.amazonaws.com/bkt/a%20b/c%2Bd.txt",
                   "https://s3.us-east-1.amazonaws.com/bkt?delimiter=%2F&list-type=2"
                   "&max-keys=1000&prefix=p%2F");

        config_mount m = mount_of("s3://bkt", bad, 1);
        ufs *u;
        assert_int_equal(ufs_open(&m, &u), -EINVAL);
}

static void check_region(const char *url, config_option *o, size_t n, const char *want)
{
        config_mount m = mount_of(url, o, n);
        ufs *u;

        assert_int_equal(ufs_open(&m, &u), 0);
        assert_string_equal(ufs_s3_signing(u), want);
        ufs_free(u);
}

/* The signing region: the option, else what OSS and COS endpoints say, else us-east-1. */
static void test_regions(void **state)
{
        config_option oss[] = {
                {(char *)"fs.oss.endpoint", (char *)"https://s3.oss-cn-hangzhou.aliyuncs.com", 0}};
        config_option oss_internal[] = {
                {(char *)"fs.oss.endpoint", (char *)"oss-cn-beijing-internal.aliyuncs.com", 0}};
        config_option cos[] = {
                {(char *)"fs.cos.endpoint", (char *)"cos.ap-guangzhou.myqcloud.com", false}};
        config_option given[] = {
                {(char *)"fs.oss.endpoint", (char *)"oss.example.com", false},
                {(char *)"fs.oss.region", (char *)"my-region", false},
        };
        config_option s3[] = {{(char *)"fs.s3a.endpoint", (char *)"minio:9000", false}};

        check_region("oss://b", oss, 1, "aws:amz:cn-hangzhou:s3");
        check_region("oss://b", oss_internal, 1, "aws:amz:cn-beijing:s3");
        check_region("cos://b", cos, 1, "aws:amz:ap-guangzhou:s3");
        check_region("oss://b", given, 2, "aws:amz:my-region:s3");
        check_region("s3://b", s3, 1, "aws:amz:us-east-1:s3");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_list_pages), cmocka_unit_test(test_list_root),
                cmocka_unit_test(test_bad_xml),    cmocka_unit_test(test_error),
                cmocka_unit_test(test_iso8601),    cmocka_unit_test(test_open_options),
                cmocka_unit_test(test_mutations),  cmocka_unit_test(test_addressing),
                cmocka_unit_test(test_regions),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
