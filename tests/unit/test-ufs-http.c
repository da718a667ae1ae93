/* Unit tests for the HTTP side of the store layer against a scripted server on 127.0.3.1: ranged
 * reads and their preconditions, servers that ignore ranges, short bodies, HEAD, S3 requests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ufs/ufs.h"

#define MAX_SCRIPT 4
#define HANG       "(hang)"

/* One scripted server: answers the Nth connection with response N, then closes it. */
typedef struct server {
        int fd;
        uint16_t port;
        pthread_t thread;
        pthread_mutex_t lock; /* guards everything below */
        const char *responses[MAX_SCRIPT];
        size_t n_responses, next;
        char requests[MAX_SCRIPT][4096];
} server;

static server srv;

static void *server_run(void *arg)
{
        for (;;) {
                int c = accept4(srv.fd, NULL, NULL, SOCK_CLOEXEC);
                char buf[4096];
                size_t n = 0;
                const char *resp = NULL;

                if (c < 0)
                        return NULL;
                while (n < sizeof buf - 1) {
                        ssize_t k = read(c, buf + n, sizeof buf - 1 - n);

                        if (k <= 0)
                                break;
                        n += (size_t)k;
                        buf[n] = 0;
                        if (strstr(buf, "\r\n\r\n"))
                                break;
                }
                buf[n] = 0;
                pthread_mutex_lock(&srv.lock);
                if (srv.next < srv.n_responses) {
                        snprintf(srv.requests[srv.next], sizeof srv.requests[0], "%s", buf);
                        resp = srv.responses[srv.next++];
                }
                pthread_mutex_unlock(&srv.lock);
                if (resp && strcmp(resp, HANG) == 0)
                        ; /* a hung store: say nothing until the client gives up */
                else {
                        if (resp)
                                (void)!write(c, resp, strlen(resp));
                        shutdown(c, SHUT_WR);
                }
                /* Drain so that the client sees our close after our bytes. */
                while (read(c, buf, sizeof buf) > 0)
                        ;
                close(c);
        }
}

static void script(size_t n, const char *const *responses)
{
        pthread_mutex_lock(&srv.lock);
        for (size_t i = 0; i < n; i++) {
                srv.responses[i] = responses[i];
                srv.requests[i][0] = 0;
        }
        srv.n_responses = n;
        srv.next = 0;
        pthread_mutex_unlock(&srv.lock);
}

/* A response with BODY and its right Content-Length; kept in a small static ring. */
static const char *answer(const char *status, const char *type, const char *body)
{
        static char ring[8][2048];
        static size_t next;
        char *b = ring[next++ % 8];

        snprintf(b, sizeof ring[0],
                 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", status, type,
                 strlen(body), body);
        return b;
}

static const char *request(size_t i)
{
        return srv.requests[i];
}

static int group_setup(void **state)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t l = sizeof a;

        inet_pton(AF_INET, "127.0.3.1", &a.sin_addr);
        srv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            listen(srv.fd, 16) < 0 || getsockname(srv.fd, (struct sockaddr *)&a, &l) < 0)
                return -1;
        srv.port = ntohs(a.sin_port);
        pthread_mutex_init(&srv.lock, NULL);
        return pthread_create(&srv.thread, NULL, server_run, NULL) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
        shutdown(srv.fd, SHUT_RDWR);
        pthread_join(srv.thread, NULL);
        close(srv.fd);
        return 0;
}

static ufs *open_http(char *url_buf, size_t len, config_mount *m)
{
        ufs *u;

        snprintf(url_buf, len, "http://127.0.3.1:%u/data/", srv.port);
        *m = (config_mount){.name = (char *)"m", .mount_point = url_buf};
        assert_int_equal(ufs_open(m, &u), 0);
        return u;
}

typedef struct sink_buf {
        char data[256];
        size_t len;
} sink_buf;

static int collect(const void *data, size_t len, void *userdata)
{
        sink_buf *b = userdata;

        if (b->len + len >= sizeof b->data)
                return -EFBIG;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = 0;
        return 0;
}

static const ufs_version v1 = {.size = 26, .mtime = 1700000000, .etag = (char *)"\"v1\""};

static void test_read_206(void **state)
{
        static const char *const r[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/26\r\n"
                "ETag: \"v1\"\r\nContent-Length: 10\r\nConnection: close\r\n\r\nklmnopqrst",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        sink_buf b = {};

        script(1, r);
        assert_int_equal(ufs_read(u, "dir/a b.txt", &v1, 10, 10, collect, &b), 0);
        assert_string_equal(b.data, "klmnopqrst");
        assert_non_null(strstr(request(0), "GET /data/dir/a%20b.txt HTTP/1.1\r\n"));
        assert_non_null(strstr(request(0), "\r\nRange: bytes=10-19\r\n"));
        assert_non_null(strstr(request(0), "\r\nIf-Match: \"v1\"\r\n"));
        ufs_free(u);
}

static void test_read_changed(void **state)
{
        static const char *const r412[] = {
                "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n",
        };
        static const char *const r_other_etag[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/26\r\n"
                "ETag: \"v2\"\r\nContent-Length: 2\r\n\r\nab",
        };
        static const char *const r_other_size[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/27\r\n"
                "Content-Length: 2\r\n\r\nab",
        };
        static const char *const r_200_other_size[] = {
                "HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\nabcdefghijklmnopqrstuvwxyz!",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        sink_buf b = {};

        script(1, r412);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 2, collect, &b), -ESTALE);
        script(1, r_other_etag);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 2, collect, &b), -ESTALE);
        script(1, r_other_size);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 2, collect, &b), -ESTALE);
        script(1, r_200_other_size);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 2, collect, &b), -ESTALE);
        assert_int_equal(b.len, 0); /* nothing of another version reached the sink */
        assert_non_null(strstr(ufs_last_error(u), "changed"));
        ufs_free(u);
}

/* A server without range support (Python's http.server) sends 200 and the whole file. */
static void test_read_200_whole_file(void **state)
{
        static const char *const r[] = {
                "HTTP/1.0 200 OK\r\nContent-Length: 26\r\n"
                "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\nabcdefghijklmnopqrstuvwxyz",
        };
        const ufs_version v = {.size = 26, .mtime = 1700000000};
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        sink_buf b = {};

        script(1, r);
        assert_int_equal(ufs_read(u, "f", &v, 20, 3, collect, &b), 0);
        assert_string_equal(b.data, "uvw");
        /* No ETag known: the time precondition instead. */
        assert_non_null(
                strstr(request(0), "\r\nIf-Unmodified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));

        /* An ETag of "" (how the masters store none) is no ETag: the time precondition. */
        const ufs_version empty_etag = {.size = 26, .mtime = 1700000000, .etag = (char *)""};
        b.len = 0;
        script(1, r);
        assert_int_equal(ufs_read(u, "f", &empty_etag, 0, 3, collect, &b), 0);
        assert_null(strstr(request(0), "If-Match"));
        assert_non_null(strstr(request(0), "\r\nIf-Unmodified-Since: "));

        /* Another Last-Modified: another version. */
        const ufs_version older = {.size = 26, .mtime = 1600000000};
        b.len = 0;
        script(1, r);
        assert_int_equal(ufs_read(u, "f", &older, 0, 3, collect, &b), -ESTALE);
        ufs_free(u);
}

static void test_read_short(void **state)
{
        static const char *const r[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/26\r\n"
                "ETag: \"v1\"\r\nContent-Length: 10\r\n\r\nabcde",
        };
        static const char *const r404[] = {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
        };
        static const char *const r500[] = {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        sink_buf b = {};

        script(1, r);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 10, collect, &b), -EIO);
        script(1, r404);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 10, collect, &b), -ENOENT);
        script(1, r500);
        assert_int_equal(ufs_read(u, "f", &v1, 0, 10, collect, &b), -EIO);
        assert_non_null(strstr(ufs_last_error(u), "HTTP 500"));
        ufs_free(u);
}

static void test_stat(void **state)
{
        static const char *const ok[] = {
                "HTTP/1.1 200 OK\r\nContent-Length: 1234567\r\nETag: \"abc-123\"\r\n"
                "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n",
        };
        static const char *const gone[] = {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"};
        static const char *const no_head[] = {
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/777\r\n"
                "Content-Length: 1\r\n\r\nx",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        ufs_version v;

        script(1, ok);
        assert_int_equal(ufs_stat(u, "big/one.bin", &v), 0);
        assert_int_equal(v.size, 1234567);
        assert_int_equal(v.mtime, 1700000000);
        assert_string_equal(v.etag, "\"abc-123\"");
        assert_non_null(strstr(request(0), "HEAD /data/big/one.bin HTTP/1.1\r\n"));
        ufs_version_done(&v);

        script(1, gone);
        assert_int_equal(ufs_stat(u, "x", &v), -ENOENT);

        script(2, no_head);
        assert_int_equal(ufs_stat(u, "x", &v), 0);
        assert_int_equal(v.size, 777);
        assert_non_null(strstr(request(1), "\r\nRange: bytes=0-0\r\n"));
        ufs_version_done(&v);
        ufs_free(u);
}

static void test_list_http(void **state)
{
        const char *page[] = {answer("200 OK", "text/html; charset=utf-8",
                                     "<pre><a href=\"../\">../</a>\n<a href=\"x%20y/\">x y/</a>\n"
                                     "<a href=\"z.txt\">z.txt</a>\n</pre>")};
        const char *not_html[] = {answer("200 OK", "application/octet-stream", "abc")};
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        ufs_entry *e;
        size_t n;

        script(1, page);
        assert_int_equal(ufs_list(u, "sub dir", &e, &n), 0);
        assert_non_null(strstr(request(0), "GET /data/sub%20dir/ HTTP/1.1\r\n"));
        assert_int_equal(n, 2);
        assert_string_equal(e[0].name, "x y");
        assert_true(e[0].dir);
        assert_string_equal(e[1].name, "z.txt");
        ufs_entries_free(e, n);

        script(1, not_html);
        assert_int_equal(ufs_list(u, "", &e, &n), -ENOTDIR);
        ufs_free(u);
}

/* A version taken from a listing with minutes (UFS_ETAG_MINUTE): any Last-Modified in that minute
 * is it, If-Unmodified-Since names the minute's last second, other minutes and sizes are -ESTALE. */
static void test_read_minute(void **state)
{
        /* 1700000040 = Tue, 14 Nov 2023 22:14:00 GMT */
        static const ufs_version vm = {
                .size = 26, .mtime = 1700000040, .etag = (char *)UFS_ETAG_MINUTE};
        static const char *const in_minute[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/26\r\n"
                "ETag: \"6553f1b7-1a\"\r\nLast-Modified: Tue, 14 Nov 2023 22:14:59 GMT\r\n"
                "Content-Length: 2\r\n\r\nab",
        };
        static const char *const next_minute[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/26\r\n"
                "Last-Modified: Tue, 14 Nov 2023 22:15:00 GMT\r\nContent-Length: 2\r\n\r\nab",
        };
        static const char *const other_size[] = {
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/27\r\n"
                "Last-Modified: Tue, 14 Nov 2023 22:14:10 GMT\r\nContent-Length: 2\r\n\r\nab",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        sink_buf b = {};

        script(1, in_minute);
        assert_int_equal(ufs_read(u, "f", &vm, 0, 2, collect, &b), 0);
        assert_string_equal(b.data, "ab");
        assert_non_null(
                strstr(request(0), "\r\nIf-Unmodified-Since: Tue, 14 Nov 2023 22:14:59 GMT\r\n"));
        assert_null(strstr(request(0), "If-Match"));

        b.len = 0;
        script(1, next_minute);
        assert_int_equal(ufs_read(u, "f", &vm, 0, 2, collect, &b), -ESTALE);
        script(1, other_size);
        assert_int_equal(ufs_read(u, "f", &vm, 0, 2, collect, &b), -ESTALE);
        ufs_free(u);
}

/* The store's Date on a listing is kept for the sync; an ETag that looks like weir's own minute
 * marker is not taken from a store. */
static void test_list_date_and_marker(void **state)
{
        const char *page[] = {"HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                              "Content-Type: text/html\r\nContent-Length: 37\r\n\r\n"
                              "<pre><a href=\"z.txt\">z.txt</a>\n</pre>"};
        const char *no_date[] = {answer("200 OK", "text/html", "<a href=\"z\">z</a>")};
        const char *cached[] = {"HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                                "Age: 600\r\nContent-Type: text/html\r\nContent-Length: 37\r\n"
                                "\r\n<pre><a href=\"z.txt\">z.txt</a>\n</pre>"};
        const char *bad_age[] = {"HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                                 "Age: soon\r\nContent-Type: text/html\r\nContent-Length: 37\r\n"
                                 "\r\n<pre><a href=\"z.txt\">z.txt</a>\n</pre>"};
        static const char *const marker[] = {
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: weir:minute\r\n"
                "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n",
        };
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        ufs_entry *e;
        ufs_version v;
        size_t n;

        script(1, page);
        assert_int_equal(ufs_list(u, "", &e, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(ufs_list_date(u), 1700000000);
        ufs_entries_free(e, n);
        script(1, no_date);
        assert_int_equal(ufs_list(u, "", &e, &n), 0);
        assert_int_equal(ufs_list_date(u), 0);
        ufs_entries_free(e, n);
        /* A cache's copy: its Date less its Age; an unreadable Age: no date. */
        script(1, cached);
        assert_int_equal(ufs_list(u, "", &e, &n), 0);
        assert_int_equal(ufs_list_date(u), 1700000000 - 600);
        ufs_entries_free(e, n);
        script(1, bad_age);
        assert_int_equal(ufs_list(u, "", &e, &n), 0);
        assert_int_equal(ufs_list_date(u), 0);
        ufs_entries_free(e, n);

        script(1, marker);
        assert_int_equal(ufs_stat(u, "z", &v), 0);
        assert_null(v.etag);
        assert_false(ufs_version_minute(&v));
        assert_int_equal(v.mtime, 1700000000);
        ufs_version_done(&v);
        ufs_free(u);
}

static void test_refused(void **state)
{
        config_mount m = {.name = (char *)"m", .mount_point = (char *)"http://127.0.3.1:1/"};
        ufs_entry *e;
        size_t n;
        ufs *u;

        assert_int_equal(ufs_open(&m, &u), 0);
        assert_int_equal(ufs_list(u, "", &e, &n), -ECONNREFUSED);
        assert_non_null(strstr(ufs_last_error(u), "127.0.3.1:1"));
        ufs_free(u);
}

/* Credentials in the mount URL go out as basic auth, never into store URLs or messages. */
static void test_userinfo(void **state)
{
        const char *r[] = {answer("200 OK", "text/html", "<a href=\"f.txt\">f.txt</a>"),
                           answer("401 Unauthorized", "text/html", "no")};
        char url[128];
        config_mount m;
        ufs_entry *e;
        size_t n;
        ufs *u;

        snprintf(url, sizeof url, "http://weir:p%%40ss%%3Aw0rd@127.0.3.1:%u/data/", srv.port);
        m = (config_mount){.name = (char *)"m", .mount_point = url};
        assert_int_equal(ufs_open(&m, &u), 0);
        script(2, r);
        assert_int_equal(ufs_list(u, "", &e, &n), 0);
        assert_int_equal(n, 1);
        ufs_entries_free(e, n);
        /* "weir:p@ss:w0rd" in base64 */
        assert_non_null(strstr(request(0), "\r\nAuthorization: Basic d2VpcjpwQHNzOncwcmQ=\r\n"));
        assert_non_null(strstr(request(0), "GET /data/ HTTP/1.1\r\n"));
        char *s = ufs_url(u, "f.txt");
        assert_non_null(s);
        assert_null(strstr(s, "weir"));
        assert_null(strstr(s, "ss"));
        free(s);
        assert_int_equal(ufs_list(u, "", &e, &n), -EACCES);
        assert_null(strstr(ufs_last_error(u), "w0rd"));
        assert_null(strstr(ufs_last_error(u), "%3A"));
        ufs_free(u);
}

static void *cancel_later(void *arg)
{
        usleep(300 * 1000);
        atomic_store((atomic_bool *)arg, true);
        return NULL;
}

/* A store that never answers: ufs_set_cancel() gets the caller out within about a second. */
static void test_cancel(void **state)
{
        static const char *const r[] = {HANG};
        atomic_bool cancel = false;
        struct timespec t0, t1;
        char url[128];
        config_mount m;
        ufs *u = open_http(url, sizeof url, &m);
        pthread_t t;
        ufs_entry *e;
        size_t n;

        ufs_set_cancel(u, &cancel);
        script(1, r);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(pthread_create(&t, NULL, cancel_later, &cancel), 0);
        assert_int_equal(ufs_list(u, "", &e, &n), -ECANCELED);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_join(t, NULL);
        double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_true(took > 0.25 && took < 3.0);
        ufs_free(u);
}

/* The S3 requests: path-style URL, a canonical (sorted, encoded) query, a SigV4 header, and the
 * secret nowhere on the wire. */
static void test_s3_requests(void **state)
{
        const char *r[] = {
                answer("200 OK", "application/xml",
                       "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>"
                       "t/+=1</NextContinuationToken><Contents><Key>pre/p q/a.txt</Key><Size>3"
                       "</Size></Contents></ListBucketResult>"),
                answer("200 OK", "application/xml",
                       "<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>"
                       "pre/p q/d/</Prefix></CommonPrefixes></ListBucketResult>"),
                answer("403 Forbidden", "application/xml",
                       "<Error><Code>SignatureDoesNotMatch</Code><Message>bad signature</Message>"
                       "</Error>"),
        };
        char endpoint[64];
        config_option o[] = {
                {(char *)"fs.s3a.endpoint", endpoint, false},
                {(char *)"fs.s3a.access.key", (char *)"AKIDWEIR", false},
                {(char *)"fs.s3a.secret.key", (char *)"s3cr3t-never-sent", true},
                {(char *)"fs.s3a.endpoint.region", (char *)"weir-1", false},
        };
        config_mount m = {.name = (char *)"m",
                          .mount_point = (char *)"s3://bkt/pre/",
                          .options = o,
                          .n_options = 4};
        ufs_entry *e;
        size_t n;
        ufs *u;

        snprintf(endpoint, sizeof endpoint, "http://127.0.3.1:%u", srv.port);
        assert_int_equal(ufs_open(&m, &u), 0);
        script(3, r);
        assert_int_equal(ufs_list(u, "p q", &e, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].name, "a.txt");
        assert_string_equal(e[1].name, "d");
        assert_true(e[1].dir);
        ufs_entries_free(e, n);
        assert_non_null(strstr(request(0), "GET /bkt?delimiter=%2F&list-type=2&max-keys=1000"
                                           "&prefix=pre%2Fp%20q%2F HTTP/1.1\r\n"));
        assert_non_null(strstr(request(1), "GET /bkt?continuation-token=t%2F%2B%3D1&delimiter="));
        for (int i = 0; i < 2; i++) {
                const char *a = strstr(request(i), "\r\nAuthorization: AWS4-HMAC-SHA256 ");

                assert_non_null(a);
                assert_non_null(strstr(a, "Credential=AKIDWEIR/"));
                assert_non_null(strstr(a, "/weir-1/s3/aws4_request"));
                assert_non_null(strstr(a, "Signature="));
                assert_non_null(strcasestr(request(i), "\r\nX-Amz-Date: "));
                assert_null(strstr(request(i), "s3cr3t"));
        }

        /* A refused signature: -EACCES and S3's own words in the message. */
        script(1, r + 2);
        assert_int_equal(ufs_list(u, "", &e, &n), -EACCES);
        assert_non_null(strstr(ufs_last_error(u), "SignatureDoesNotMatch"));
        assert_null(strstr(ufs_last_error(u), "s3cr3t"));
        ufs_free(u);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_read_206),
                cmocka_unit_test(test_read_changed),
                cmocka_unit_test(test_read_200_whole_file),
                cmocka_unit_test(test_read_short),
                cmocka_unit_test(test_stat),
                cmocka_unit_test(test_list_http),
                cmocka_unit_test(test_read_minute),
                cmocka_unit_test(test_list_date_and_marker),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_userinfo),
                cmocka_unit_test(test_s3_requests),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
