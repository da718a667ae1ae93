/* Unit tests of the HTTP glue: httpd routing, limits, token, deferred replies; httpc against it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "httpc.h"
#include "httpd.h"

#define ADDR   "127.0.1.30"
#define PORT_A 18931
#define PORT_B 18932
#define TOKEN  "s3cret"

static void h_echo(httpd_request *req, void *userdata)
{
        json_t *body = httpd_request_json(req);
        const char *q = httpd_request_query(req, "q");
        httpd_reply_json(req, 200,
                         json_pack("{s:s,s:s,s:s?,s:O?,s:b}", "method", httpd_request_method(req),
                                   "suffix", httpd_request_suffix(req), "q", q, "body", body,
                                   "authorized", httpd_request_authorized(req)));
}

static void *reply_later(void *p)
{
        usleep(100 * 1000);
        httpd_reply_header(p, "X-Late", "yes");
        httpd_reply_json(p, 202, json_pack("{s:b}", "late", 1));
        return NULL;
}

/* Returns without replying: the reply comes from another thread. */
static void h_deferred(httpd_request *req, void *userdata)
{
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, reply_later, req), 0);
        pthread_detach(t);
}

static void h_redirect(httpd_request *req, void *userdata)
{
        httpd_reply_redirect(req, "http://" ADDR ":18932");
}

static void h_text(httpd_request *req, void *userdata)
{
        httpd_reply_text(req, 200, "text/plain", "hello\n", 6);
}

static const httpd_route routes_a[] = {
        {"GET", "/echo/", h_echo, HTTPD_ROUTE_PREFIX, 0},
        {"PUT", "/echo/", h_echo, HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_JSON, 0},
        {"POST", "/small", h_echo, HTTPD_ROUTE_JSON | HTTPD_ROUTE_PUBLIC, 64},
        {"POST", "/deferred", h_deferred, 0, 0},
        {NULL, "/moved/", h_redirect, HTTPD_ROUTE_PREFIX, 0},
        {"GET", "/text", h_text, 0, 0},
};

static const httpd_route routes_b[] = {
        {NULL, "/moved/", h_echo, HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_JSON, 0},
};

typedef struct fixture {
        httpd *a, *b;
        httpc *c;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        httpd_config cfg = {.name = "test", .address = ADDR, .port = PORT_A, .token = TOKEN};
        if (httpd_new(&cfg, routes_a, ELEMENTSOF(routes_a), NULL, &f->a) < 0)
                return -1;
        cfg.port = PORT_B;
        if (httpd_new(&cfg, routes_b, ELEMENTSOF(routes_b), NULL, &f->b) < 0)
                return -1;
        f->c = httpc_new();
        *state = f;
        return f->c ? 0 : -1;
}

static int teardown(void **state)
{
        fixture *f = *state;
        httpc_free(f->c);
        httpd_free(f->a);
        httpd_free(f->b);
        free(f);
        return 0;
}

#define URL(path) "http://" ADDR ":18931" path

static void test_routing_and_query(void **state)
{
        fixture *f = *state;
        httpc_response r;

        httpc_set_token(f->c, NULL);
        assert_int_equal(httpc_get(f->c, URL("/echo/a%20b?q=x%26y"), &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(json_object_get(r.json, "suffix")), "a b");
        assert_string_equal(json_string_value(json_object_get(r.json, "q")), "x&y");
        httpc_response_done(&r);

        assert_int_equal(httpc_get(f->c, URL("/nowhere"), &r), 0);
        assert_int_equal(r.status, 404);
        assert_non_null(json_object_get(r.json, "error"));
        httpc_response_done(&r);

        assert_int_equal(httpc_request(f->c, "DELETE", URL("/text"), NULL, &r), 0);
        assert_int_equal(r.status, 405);
        httpc_response_done(&r);

        assert_int_equal(httpc_get(f->c, URL("/text"), &r), 0);
        assert_int_equal(r.status, 200);
        assert_null(r.json);
        assert_string_equal(r.body, "hello\n");
        httpc_response_done(&r);
}

static void test_token_and_json(void **state)
{
        fixture *f = *state;
        httpc_response r;
        json_t *body = json_pack("{s:i}", "n", 1);

        httpc_set_token(f->c, NULL);
        assert_int_equal(httpc_put(f->c, URL("/echo/x"), body, &r), 0);
        assert_int_equal(r.status, 401);
        httpc_response_done(&r);

        httpc_set_token(f->c, "s3creT");
        assert_int_equal(httpc_put(f->c, URL("/echo/x"), body, &r), 0);
        assert_int_equal(r.status, 401);
        httpc_response_done(&r);

        httpc_set_token(f->c, TOKEN);
        assert_int_equal(httpc_put(f->c, URL("/echo/x"), body, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(json_equal(json_object_get(r.json, "body"), body));
        assert_true(json_is_true(json_object_get(r.json, "authorized")));
        httpc_response_done(&r);

        /* A public route needs no token; a body over the route's limit is 413; malformed JSON
         * and non-objects are 400. */
        httpc_set_token(f->c, NULL);
        assert_int_equal(httpc_post(f->c, URL("/small"), body, &r), 0);
        assert_int_equal(r.status, 200);
        httpc_response_done(&r);
        json_t *big = json_pack("{s:s}", "k",
                                "0123456789012345678901234567890123456789012345678901234567890123");
        assert_int_equal(httpc_post(f->c, URL("/small"), big, &r), 0);
        assert_int_equal(r.status, 413);
        httpc_response_done(&r);
        json_decref(big);
        json_t *arr = json_pack("[i]", 1);
        assert_int_equal(httpc_post(f->c, URL("/small"), arr, &r), 0);
        assert_int_equal(r.status, 400);
        httpc_response_done(&r);
        json_decref(arr);
        json_decref(body);
}

static void test_deferred_reply_and_redirect(void **state)
{
        fixture *f = *state;
        httpc_response r;

        httpc_set_token(f->c, TOKEN);
        assert_int_equal(httpc_post(f->c, URL("/deferred"), NULL, &r), 0);
        assert_int_equal(r.status, 202);
        assert_true(json_is_true(json_object_get(r.json, "late")));
        httpc_response_done(&r);

        /* 307 to the other server: method, body, query and token kept. */
        json_t *body = json_pack("{s:s}", "v", "w");
        assert_int_equal(httpc_put(f->c, URL("/moved/k?q=1"), body, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(json_object_get(r.json, "method")), "PUT");
        assert_string_equal(json_string_value(json_object_get(r.json, "q")), "1");
        assert_true(json_equal(json_object_get(r.json, "body"), body));
        assert_true(json_is_true(json_object_get(r.json, "authorized")));
        assert_string_equal(r.url, "http://" ADDR ":18932/moved/k?q=1");
        httpc_response_done(&r);

        httpc_set_max_redirects(f->c, 0);
        assert_int_equal(httpc_put(f->c, URL("/moved/k"), body, &r), 0);
        assert_int_equal(r.status, 307);
        httpc_response_done(&r);
        httpc_set_max_redirects(f->c, 5);
        json_decref(body);
}

static void test_metrics_and_errors(void **state)
{
        fixture *f = *state;
        char *buf = NULL;
        size_t len = 0;
        httpc_response r;

        FILE *m = open_memstream(&buf, &len);
        assert_int_equal(httpd_metrics_write(f->a, m), 0);
        fclose(m);
        assert_non_null(strstr(buf, "weir_http_requests_total{code=\"200\"}"));
        assert_non_null(strstr(buf, "weir_http_request_seconds_bucket{le=\"+Inf\"}"));
        free(buf);

        /* Nothing listens on port 1 of this address: refused, not an HTTP status. */
        assert_int_equal(httpc_get(f->c, "http://" ADDR ":1/", &r), -ECONNREFUSED);

        httpd *dup;
        httpd_config cfg = {.address = ADDR, .port = PORT_A};
        assert_int_equal(httpd_new(&cfg, routes_b, ELEMENTSOF(routes_b), NULL, &dup), -EADDRINUSE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_routing_and_query),
                cmocka_unit_test(test_token_and_json),
                cmocka_unit_test(test_deferred_reply_and_redirect),
                cmocka_unit_test(test_metrics_and_errors),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
