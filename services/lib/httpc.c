/* libcurl JSON client: one easy handle per httpc, reused for keep-alive. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "cleanup.h"
#include "httpc.h"
#include "log.h"

#define HTTPC_DEFAULT_TIMEOUT_MS 5000
#define HTTPC_DEFAULT_CONNECT_MS 1000
#define HTTPC_DEFAULT_REDIRECTS  5
#define HTTPC_DEFAULT_MAX_BODY   (64u << 20)

struct httpc {
        CURL *curl;
        char *token_header;
        char *ca_file;
        char **trusted; /* "host:port" origins redirects may lead to with the token */
        size_t n_trusted;
        long timeout_ms;
        long connect_ms;
        long max_redirects;
        size_t max_body;
        char errbuf[CURL_ERROR_SIZE];
};

typedef struct httpc_buf {
        char *data;
        size_t len, cap, max;
        bool overflow;
} httpc_buf;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result;

static void global_init_once(void)
{
        global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int httpc_global_init(void)
{
        pthread_once(&global_once, global_init_once);
        return global_result == CURLE_OK ? 0 : -EIO;
}

httpc *httpc_new(void)
{
        if (httpc_global_init() < 0)
                return NULL;
        httpc *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->curl = curl_easy_init();
        if (!c->curl) {
                free(c);
                return NULL;
        }
        c->timeout_ms = HTTPC_DEFAULT_TIMEOUT_MS;
        c->connect_ms = HTTPC_DEFAULT_CONNECT_MS;
        c->max_redirects = HTTPC_DEFAULT_REDIRECTS;
        c->max_body = HTTPC_DEFAULT_MAX_BODY;
        return c;
}

httpc *httpc_free(httpc *c)
{
        if (!c)
                return NULL;
        curl_easy_cleanup(c->curl);
        free(c->ca_file);
        for (size_t i = 0; i < c->n_trusted; i++)
                free(c->trusted[i]);
        free(c->trusted);
        if (c->token_header) {
                explicit_bzero(c->token_header, strlen(c->token_header));
                free(c->token_header);
        }
        free(c);
        return NULL;
}

int httpc_set_token(httpc *c, const char *token)
{
        char *h = NULL;

        if (token && token[0] && asprintf(&h, "Authorization: Bearer %s", token) < 0)
                return -ENOMEM;
        if (c->token_header) {
                explicit_bzero(c->token_header, strlen(c->token_header));
                free(c->token_header);
        }
        c->token_header = h;
        return 0;
}

int httpc_set_ca_file(httpc *c, const char *path)
{
        char *p = NULL;

        if (path && !(p = strdup(path)))
                return -ENOMEM;
        free(c->ca_file);
        c->ca_file = p;
        return 0;
}

/* "host:port" with IPv6 brackets removed and the host lower-cased, as both sides compare it. */
static char *origin_key(const char *host, unsigned port)
{
        char *s = NULL;
        size_t n = strlen(host);

        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                host++;
                n -= 2;
        }
        if (asprintf(&s, "%.*s:%u", (int)n, host, port) < 0)
                return NULL;
        for (char *p = s; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char)(*p - 'A' + 'a');
        return s;
}

int httpc_add_trusted(httpc *c, const char *host, unsigned port)
{
        char *k = origin_key(host, port);
        char **t;

        if (!k)
                return -ENOMEM;
        t = realloc(c->trusted, (c->n_trusted + 1) * sizeof(*t));
        if (!t) {
                free(k);
                return -ENOMEM;
        }
        c->trusted = t;
        c->trusted[c->n_trusted++] = k;
        return 0;
}

/* The origin of URL as origin_key() writes it; NULL when it is not an http(s) URL. *HTTPS: its
 * scheme is https. */
static char *url_origin(const char *url, bool *https)
{
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL, *k = NULL;
        unsigned long p;
        char *end;

        if (!u)
                return NULL;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
            (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)) {
                errno = 0;
                p = strtoul(port, &end, 10);
                if (errno == 0 && *end == 0 && p > 0 && p < 65536)
                        k = origin_key(host, (unsigned)p);
                *https = strcmp(scheme, "https") == 0;
        }
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return k;
}

/* Whether a redirect from FROM to TO may carry the token: the same origin, or a trusted one,
 * and never from https to http (the token would cross the network in clear). */
static bool redirect_trusted(const httpc *c, const char *from, const char *to)
{
        bool from_https = false, to_https = false;
        _cleanup_free_ char *a = url_origin(from, &from_https), *b = url_origin(to, &to_https);

        if (!a || !b || (from_https && !to_https))
                return false;
        if (strcmp(a, b) == 0)
                return true;
        for (size_t i = 0; i < c->n_trusted; i++)
                if (strcmp(c->trusted[i], b) == 0)
                        return true;
        return false;
}

void httpc_set_timeout(httpc *c, long total_ms, long connect_ms)
{
        c->timeout_ms = total_ms > 0 ? total_ms : HTTPC_DEFAULT_TIMEOUT_MS;
        c->connect_ms = connect_ms > 0 ? connect_ms : HTTPC_DEFAULT_CONNECT_MS;
}

void httpc_set_max_redirects(httpc *c, long n)
{
        c->max_redirects = n < 0 ? 0 : n;
}

void httpc_set_max_body(httpc *c, size_t max_body_size)
{
        c->max_body = max_body_size;
}

const char *httpc_last_error(const httpc *c)
{
        return c->errbuf;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        httpc_buf *b = userdata;
        size_t n = size * nmemb;

        if (n > b->max - b->len) {
                b->overflow = true;
                return 0; /* makes curl fail with CURLE_WRITE_ERROR */
        }
        return array_append_text(&b->data, &b->len, &b->cap, ptr, n) ? n : 0;
}

static int curl_code_to_errno(CURLcode cc)
{
        switch (cc) {
        case CURLE_OK:
                return 0;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

void httpc_response_done(httpc_response *r)
{
        if (!r)
                return;
        json_decref(r->json);
        free(r->body);
        free(r->url);
        *r = (httpc_response){};
}

/* One request, no redirect followed. */
static int request_once(httpc *c, const char *method, const char *url, const json_t *body,
                        httpc_response *ret, char **ret_location)
{
        _cleanup_free_ char *payload = NULL;
        struct curl_slist *headers = NULL;
        httpc_buf buf = {.max = c->max_body};
        CURL *e = c->curl;
        CURLcode cc;
        int r;

        c->errbuf[0] = 0;
        curl_easy_reset(e); /* keeps the connection cache: keep-alive survives */
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
        /* Redirects are followed by httpc_request(), which knows where the token may go. */
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
        if (c->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &buf);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "weir");
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif

        headers = curl_slist_append(headers, "Accept: application/json");
        if (c->token_header)
                headers = curl_slist_append(headers, c->token_header);
        if (body || strcmp(method, "GET") != 0) {
                if (body) {
                        payload = json_dumps(body, JSON_COMPACT);
                        if (!payload) {
                                curl_slist_free_all(headers);
                                return -ENOMEM;
                        }
                }
                headers = curl_slist_append(headers, "Content-Type: application/json");
                if (strcmp(method, "GET") != 0) {
                        curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload ? payload : "");
                        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                                         (long)(payload ? strlen(payload) : 0));
                }
        }
        /* Avoids "Expect: 100-continue" round trips on larger bodies. */
        headers = curl_slist_append(headers, "Expect:");
        if (!headers)
                return -ENOMEM;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        if (strcmp(method, "GET") == 0)
                curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        else if (strcmp(method, "POST") != 0)
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);

        cc = curl_easy_perform(e);
        curl_slist_free_all(headers);
        if (cc != CURLE_OK) {
                free(buf.data);
                if (buf.overflow)
                        return -E2BIG;
                r = curl_code_to_errno(cc);
                if (!c->errbuf[0])
                        snprintf(c->errbuf, sizeof(c->errbuf), "%s", curl_easy_strerror(cc));
                log_debug("httpc: %s %s: %s", method, url, c->errbuf);
                return r;
        }

        httpc_response res = {};
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &res.status);
        char *eff = NULL, *loc = NULL;
        curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
        curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
        *ret_location = loc ? strdup(loc) : NULL;
        res.url = strdup(eff ? eff : url);
        res.body = buf.data ? buf.data : strdup("");
        res.body_len = buf.len;
        if (!res.url || !res.body) {
                httpc_response_done(&res);
                return -ENOMEM;
        }
        if (res.body_len > 0)
                res.json = json_loadb(res.body, res.body_len, 0, NULL);
        *ret = res;
        return 0;
}

int httpc_request(httpc *c, const char *method, const char *url, const json_t *body,
                  httpc_response *ret)
{
        _cleanup_free_ char *current = strdup(url);
        int r;

        if (!current)
                return -ENOMEM;
        for (long hops = 0;; hops++) {
                _cleanup_free_ char *location = NULL;
                httpc_response res = {};

                r = request_once(c, method, current, body, &res, &location);
                if (r < 0)
                        return r;
                /* The cluster redirects with 307/308 only (method and body kept). */
                if ((res.status != 307 && res.status != 308) || !location ||
                    c->max_redirects == 0) {
                        *ret = res;
                        return 0;
                }
                httpc_response_done(&res);
                if (hops >= c->max_redirects) {
                        snprintf(c->errbuf, sizeof(c->errbuf), "more than %ld redirects",
                                 c->max_redirects);
                        return -ELOOP;
                }
                /* The token (and the body) go only to the cluster's own API addresses. */
                if (!redirect_trusted(c, current, location)) {
                        snprintf(c->errbuf, sizeof(c->errbuf),
                                 "redirect to %s refused: not an API address of this cluster, or "
                                 "https to http",
                                 location);
                        log_debug("httpc: %s %s: %s", method, current, c->errbuf);
                        return -EPERM;
                }
                free(current);
                current = TAKE_PTR(location);
        }
}

int httpc_get(httpc *c, const char *url, httpc_response *ret)
{
        return httpc_request(c, "GET", url, NULL, ret);
}

int httpc_post(httpc *c, const char *url, const json_t *body, httpc_response *ret)
{
        return httpc_request(c, "POST", url, body, ret);
}

int httpc_put(httpc *c, const char *url, const json_t *body, httpc_response *ret)
{
        return httpc_request(c, "PUT", url, body, ret);
}
