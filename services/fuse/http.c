/* Ranged block GETs to workers (libcurl, one kept-alive handle per thread); JSON goes via httpc. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "http.h"
#include "log.h"

#define HTTP_CONNECT_TIMEOUT_MS 1000

static pthread_key_t handle_key;

static void handle_destroy(void *p)
{
        curl_easy_cleanup(p);
}

int http_global_init(void)
{
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        if (pthread_key_create(&handle_key, handle_destroy) != 0)
                return -ENOMEM;
        return 0;
}

void http_global_done(void)
{
        CURL *h = pthread_getspecific(handle_key);

        if (h) {
                curl_easy_cleanup(h);
                pthread_setspecific(handle_key, NULL);
        }
        curl_global_cleanup();
}

/* One easy handle per thread keeps its connections alive between requests. */
static CURL *thread_handle(void)
{
        CURL *h = pthread_getspecific(handle_key);

        if (h) {
                curl_easy_reset(h);
        } else {
                h = curl_easy_init();
                if (!h)
                        return NULL;
                if (pthread_setspecific(handle_key, h) != 0) {
                        curl_easy_cleanup(h);
                        return NULL;
                }
        }
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_USERAGENT,
                         "weir-fuse/"
                         "0.1");
        return h;
}

/* The one place CURLcode becomes an errno. */
static int errno_from_curl(CURLcode c)
{
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_WRITE_ERROR:
                return -EMSGSIZE; /* our sink refused: too much data */
        default:
                return -EIO;
        }
}

typedef struct fixed_buf {
        char *data;
        uint64_t len, cap;
} fixed_buf;

static size_t fixed_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        fixed_buf *b = userdata;
        size_t n = size * nmemb;

        if (n > b->cap - b->len)
                return 0; /* more than asked for: refuse rather than mix */
        memcpy(b->data + b->len, ptr, n);
        b->len += n;
        return n;
}

int http_get_range(const char *url, const http_auth *auth, uint64_t offset, uint64_t len, int whole,
                   void *buf, uint64_t stall_ms, long *ret_status)
{
        struct curl_slist *headers = NULL;
        _cleanup_free_ char *auth_header = NULL;
        fixed_buf b = {.data = buf, .cap = len};
        CURL *h = thread_handle();
        char range[64];
        long status = 0;
        CURLcode c;
        int r;

        if (!h)
                return -ENOMEM;
        curl_easy_setopt(h, CURLOPT_URL, url);
        if (!whole || offset != 0) {
                snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
                curl_easy_setopt(h, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)MAX(stall_ms / 1000, 1));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fixed_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        if (auth && auth->token) {
                if (asprintf(&auth_header, "Authorization: Bearer %s", auth->token) < 0) {
                        auth_header = NULL;
                        return -ENOMEM;
                }
                headers = curl_slist_append(NULL, auth_header);
                if (!headers)
                        return -ENOMEM;
                curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        }
        if (auth && auth->ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, auth->ca_file);
        c = curl_easy_perform(h);
        curl_slist_free_all(headers);
        if (auth_header)
                explicit_bzero(auth_header, strlen(auth_header));
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (ret_status)
                *ret_status = status;
        r = errno_from_curl(c);
        if (r == -EMSGSIZE && status != 200 && status != 206)
                r = 0; /* an error body larger than the buffer: report the status below */
        if (r < 0)
                return log_debug_errno(r, "GET %s (%" PRIu64 "+%" PRIu64 "): %s", url, offset, len,
                                       curl_easy_strerror(c));
        if (status == 404)
                return -ENOENT;
        if (status == 401)
                return log_debug_errno(EACCES, "GET %s: HTTP 401, the worker wants the token", url);
        if (status == 200 && offset != 0)
                return log_debug_errno(EIO, "GET %s: server ignored Range", url);
        if (status != 200 && status != 206)
                return log_debug_errno(EIO, "GET %s: HTTP %ld", url, status);
        if (b.len != len)
                return log_debug_errno(EIO, "GET %s: %" PRIu64 " bytes instead of %" PRIu64, url,
                                       b.len, len);
        return 0;
}

char *http_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(n * 3 + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = *s;

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~/", ch)) {
                        *p++ = ch;
                } else {
                        *p++ = '%';
                        *p++ = hex[ch >> 4];
                        *p++ = hex[ch & 15];
                }
        }
        *p = 0;
        return out;
}
