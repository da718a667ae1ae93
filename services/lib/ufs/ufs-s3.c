/* The S3-compatible backend (s3://, oss://, cos://): ListObjectsV2, HEAD, ranged GET, SigV4. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "ufs-internal.h"

#define S3_MAX_KEYS       1000
#define S3_MAX_PAGES      (UFS_MAX_ENTRIES / 100) /* a store that never stops paging */
#define S3_DEFAULT_REGION "us-east-1"

/* The option keys of URL schemes, as Fluid (Alluxio, GooseFS, JindoFS) names them. The first
 * key of each list is the documented one; the others are accepted aliases. */
typedef struct s3_keys {
        const char *schemes[2]; /* the URL schemes these keys serve */
        const char *endpoint[3];
        const char *access_key[3];
        const char *secret_key[3];
        const char *region[3];
        const char *path_style[3];
        bool endpoint_required;
        bool path_style_default; /* else virtual-hosted: https://BUCKET.ENDPOINT/KEY */
} s3_keys;

static const s3_keys s3_key_table[] = {
        {
                .schemes = {"s3", "s3a"},
                .endpoint = {"fs.s3a.endpoint", "s3.endpoint"},
                .access_key = {"fs.s3a.access.key", "aws.accessKeyId"},
                .secret_key = {"fs.s3a.secret.key", "aws.secretKey"},
                .region = {"fs.s3a.endpoint.region", "s3.region", "alluxio.underfs.s3.region"},
                .path_style = {"fs.s3a.path.style.access"},
                .path_style_default = true,
        },
        {
                .schemes = {"oss"},
                .endpoint = {"fs.oss.endpoint"},
                .access_key = {"fs.oss.accessKeyId"},
                .secret_key = {"fs.oss.accessKeySecret"},
                .region = {"fs.oss.region"},
                .path_style = {"fs.oss.path.style.access"},
                .endpoint_required = true,
        },
        {
                .schemes = {"cos", "cosn"},
                .endpoint = {"fs.cos.endpoint", "fs.cosn.endpoint"},
                .access_key = {"fs.cos.access.key", "fs.cosn.userinfo.secretId"},
                .secret_key = {"fs.cos.secret.key", "fs.cosn.userinfo.secretKey"},
                .region = {"fs.cos.region", "fs.cosn.bucket.region"},
                .path_style = {"fs.cos.path.style.access"},
                .endpoint_required = true,
        },
};

typedef struct s3_data {
        char *scheme;
        char *endpoint; /* "https://host:port", no trailing '/' */
        char *base;     /* "https://host:port/BUCKET" or "https://BUCKET.host:port" */
        bool path_style;
        char *bucket;
        char *prefix; /* "" or ending in '/' */
        char *sigv4;  /* "aws:amz:REGION:s3" */
        ufs_http_auth auth;
} s3_data;

/* The mount's option KEY: looked up here so that the store layer needs nothing of config.c. */
static const char *mount_option(const config_mount *m, const char *const keys[3])
{
        for (size_t k = 0; k < 3 && keys[k]; k++)
                for (size_t i = 0; i < m->n_options; i++)
                        if (m->options[i].key && strcmp(m->options[i].key, keys[k]) == 0)
                                return m->options[i].value;
        return NULL;
}

/* "cn-hangzhou" from "oss-cn-hangzhou.aliyuncs.com", "s3.oss-cn-hangzhou-internal.aliyuncs.com";
 * "ap-guangzhou" from "cos.ap-guangzhou.myqcloud.com"; NULL when the endpoint says nothing. */
static const char *region_from_endpoint(const s3_keys *keys, const char *endpoint, char *buf,
                                        size_t len)
{
        const char *h, *start = NULL;
        size_t n;

        if (!endpoint)
                return NULL;
        h = strstr(endpoint, "://");
        h = h ? h + 3 : endpoint;
        if (strcmp(keys->schemes[0], "oss") == 0) {
                start = strstr(h, "oss-");
                if (start)
                        start += 4;
        } else if (strcmp(keys->schemes[0], "cos") == 0 && strncmp(h, "cos.", 4) == 0)
                start = h + 4;
        if (!start)
                return NULL;
        n = strcspn(start, ".:/");
        if (n >= 9 && strncmp(start + n - 9, "-internal", 9) == 0)
                n -= 9;
        if (n == 0 || n >= len)
                return NULL;
        memcpy(buf, start, n);
        buf[n] = 0;
        return buf;
}

static int s3_open(ufs *u)
{
        const char *url = u->mount->mount_point, *sep = strstr(url, "://"), *b, *slash;
        const s3_keys *keys = NULL;
        const char *endpoint, *access, *secret, *region;
        char region_buf[64];
        s3_data *d;
        size_t n;
        int r;

        if (!sep)
                return ufs_fail(u, -EINVAL, "Invalid URL \"%s\"", url);
        for (size_t i = 0; i < ELEMENTSOF(s3_key_table); i++)
                for (size_t j = 0; j < ELEMENTSOF(s3_key_table[i].schemes); j++) {
                        const char *scheme = s3_key_table[i].schemes[j];
                        if (scheme && strlen(scheme) == (size_t)(sep - url) &&
                            strncasecmp(url, scheme, (size_t)(sep - url)) == 0)
                                keys = &s3_key_table[i];
                }
        if (!keys)
                return -EPROTONOSUPPORT;

        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        u->data = d;
        d->scheme = strndup(url, (size_t)(sep - url));
        if (!d->scheme)
                return -ENOMEM;

        b = sep + 3;
        slash = strchr(b, '/');
        n = slash ? (size_t)(slash - b) : strlen(b);
        if (n == 0 || n > 255)
                return ufs_fail(u, -EINVAL, "%s: no bucket name", url);
        d->bucket = strndup(b, n);
        if (!d->bucket)
                return -ENOMEM;
        for (const char *c = d->bucket; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_'))
                        return ufs_fail(u, -EINVAL, "%s: invalid bucket name", url);
        {
                const char *p = slash ? slash + 1 : "";
                size_t pl = strlen(p);

                while (pl > 0 && p[pl - 1] == '/')
                        pl--;
                if (asprintf(&d->prefix, "%.*s%s", (int)pl, p, pl > 0 ? "/" : "") < 0) {
                        d->prefix = NULL;
                        return -ENOMEM;
                }
        }

        region = mount_option(u->mount, keys->region);
        if (!region || !*region) {
                /* OSS and COS name the region in their endpoints; sign with it. */
                region = region_from_endpoint(keys, mount_option(u->mount, keys->endpoint),
                                              region_buf, sizeof region_buf)
                                 ?: S3_DEFAULT_REGION;
        }
        for (const char *c = region; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
                        return ufs_fail(u, -EINVAL, "%s: invalid region \"%s\"", url, region);

        endpoint = mount_option(u->mount, keys->endpoint);
        if (!endpoint || !*endpoint) {
                if (keys->endpoint_required)
                        return ufs_fail(u, -EINVAL,
                                        "%s: option %s (the store's endpoint) is missing", url,
                                        keys->endpoint[0]);
                if (asprintf(&d->endpoint, "https://s3.%s.amazonaws.com", region) < 0) {
                        d->endpoint = NULL;
                        return -ENOMEM;
                }
        } else {
                const char *scheme = strstr(endpoint, "://") ? "" : "https://";

                if (strpbrk(endpoint, " ?#\"<>\\"))
                        return ufs_fail(u, -EINVAL, "%s: invalid endpoint \"%s\"", url, endpoint);
                if (asprintf(&d->endpoint, "%s%s", scheme, endpoint) < 0) {
                        d->endpoint = NULL;
                        return -ENOMEM;
                }
                n = strlen(d->endpoint);
                while (n > 0 && d->endpoint[n - 1] == '/')
                        d->endpoint[--n] = 0;
        }

        const char *ps = mount_option(u->mount, keys->path_style);
        if (!ps || !*ps)
                d->path_style = keys->path_style_default;
        else if (strcasecmp(ps, "true") == 0)
                d->path_style = true;
        else if (strcasecmp(ps, "false") == 0)
                d->path_style = false;
        else
                return ufs_fail(u, -EINVAL, "%s: option %s must be true or false", url,
                                keys->path_style[0]);
        if (d->path_style)
                r = asprintf(&d->base, "%s/%s", d->endpoint, d->bucket);
        else {
                const char *h = strstr(d->endpoint, "://") + 3;

                r = asprintf(&d->base, "%.*s%s.%s", (int)(h - d->endpoint), d->endpoint, d->bucket,
                             h);
        }
        if (r < 0) {
                d->base = NULL;
                return -ENOMEM;
        }

        access = mount_option(u->mount, keys->access_key);
        secret = mount_option(u->mount, keys->secret_key);
        if ((access && *access) != (secret && *secret))
                return ufs_fail(u, -EINVAL, "%s: options %s and %s go together", url,
                                keys->access_key[0], keys->secret_key[0]);
        if (asprintf(&d->sigv4, "aws:amz:%s:s3", region) < 0) {
                d->sigv4 = NULL;
                return -ENOMEM;
        }
        d->auth = (ufs_http_auth){
                .signing = access && *access ? UFS_SIGN_AWS_V4 : UFS_SIGN_NONE,
                .sigv4 = d->sigv4,
                .user = access,
                .password = secret,
        };
        return 0;
}

static void s3_free(ufs *u)
{
        s3_data *d = u->data;

        if (!d)
                return;
        free(d->scheme);
        free(d->endpoint);
        free(d->base);
        free(d->bucket);
        free(d->prefix);
        free(d->sigv4);
        free(d);
}

static char *s3_object_url(s3_data *d, const char *path)
{
        _cleanup_free_ char *key = NULL, *escaped = NULL;
        char *s;

        if (asprintf(&key, "%s%s", d->prefix, path) < 0)
                return NULL;
        escaped = ufs_escape(key, true);
        if (!escaped || asprintf(&s, "%s/%s", d->base, escaped) < 0)
                return NULL;
        return s;
}

/* Parameters in the order SigV4's canonical query wants them (sorted by name), values encoded. */
static char *s3_list_url(s3_data *d, const char *prefix, const char *token)
{
        _cleanup_free_ char *p = ufs_escape(prefix, false), *t = NULL;
        char *s;

        if (!p)
                return NULL;
        if (token) {
                t = ufs_escape(token, false);
                if (!t)
                        return NULL;
        }
        /* An empty prefix is left out: some servers drop blank parameters before they check
         * the signature, and no prefix means the same. */
        if (asprintf(&s, "%s%s?%s%s%sdelimiter=%%2F&list-type=2&max-keys=%d%s%s", d->base,
                     d->path_style ? "" : "/", t ? "continuation-token=" : "", t ? t : "",
                     t ? "&" : "", S3_MAX_KEYS, *p ? "&prefix=" : "", p) < 0)
                return NULL;
        return s;
}

/* An S3 error answer as a message: "SignatureDoesNotMatch: The request signature ...". */
static int s3_fail_status(ufs *u, long status, const char *url, const char *body, size_t len)
{
        _cleanup_free_ char *code = NULL, *message = NULL;

        if (body && len > 0)
                (void)ufs_s3_parse_error(body, len, &code, &message);
        return ufs_fail(u, ufs_errno_from_status(status), "HTTP %ld from %s%s%s%s%.200s", status,
                        url, code ? ": " : "", code ? code : "", message ? ": " : "",
                        message ? message : "");
}

static int entry_compare(const void *a, const void *b)
{
        const ufs_entry *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        /* Directories first, so that a key "a" and a prefix "a/" keep the directory. */
        return c != 0 ? c : (int)y->dir - (int)x->dir;
}

static int s3_list(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n)
{
        s3_data *d = u->data;
        _cleanup_free_ char *prefix = NULL, *token = NULL;
        ufs_entry *all = NULL;
        size_t n = 0;
        bool any = false;
        int r;

        if (asprintf(&prefix, "%s%s%s", d->prefix, path, *path ? "/" : "") < 0)
                return -ENOMEM;
        for (size_t pages = 0;; pages++) {
                _cleanup_free_ char *url = NULL, *body = NULL;
                ufs_s3_page page = {};
                size_t len;
                long status;

                if (pages >= S3_MAX_PAGES) {
                        r = ufs_fail(u, -E2BIG, "Listing s3://%s/%s takes too many pages",
                                     d->bucket, prefix);
                        goto fail;
                }
                url = s3_list_url(d, prefix, token);
                if (!url) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = ufs_http_get(u, &d->auth, url, &status, &body, &len, NULL, NULL);
                if (r < 0)
                        goto fail;
                if (status != 200) {
                        r = s3_fail_status(u, status, url, body, len);
                        goto fail;
                }
                r = ufs_s3_parse_list(body, len, prefix, &page);
                if (r < 0) {
                        r = ufs_fail(u, r, "Cannot parse the listing from %s", url);
                        goto fail;
                }
                if (n + page.n > UFS_MAX_ENTRIES) {
                        ufs_s3_page_done(&page);
                        r = ufs_fail(u, -E2BIG, "s3://%s/%s has more than %u entries", d->bucket,
                                     prefix, (unsigned)UFS_MAX_ENTRIES);
                        goto fail;
                }
                if (page.n > 0) {
                        ufs_entry *x = reallocarray(all, n + page.n, sizeof *x);

                        if (!x) {
                                ufs_s3_page_done(&page);
                                r = -ENOMEM;
                                goto fail;
                        }
                        all = x;
                        memcpy(all + n, page.entries, page.n * sizeof *x);
                        n += page.n;
                        free(page.entries);
                        page.entries = NULL;
                        page.n = 0;
                }
                any = any || page.any;
                free(token);
                token = TAKE_PTR(page.next_token);
                bool more = page.truncated;
                ufs_s3_page_done(&page);
                if (!more)
                        break;
                if (!token) {
                        r = ufs_fail(u, -EBADMSG, "%s is truncated without a continuation token",
                                     url);
                        goto fail;
                }
        }
        if (!any && *path) {
                r = ufs_fail(u, -ENOENT, "s3://%s/%s: no such directory", d->bucket, prefix);
                goto fail;
        }
        if (n > 0)
                qsort(all, n, sizeof *all, entry_compare);
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
                if (w > 0 && strcmp(all[w - 1].name, all[i].name) == 0) {
                        log_debug("s3://%s/%s%s is both a key and a prefix, taking the prefix.",
                                  d->bucket, prefix, all[i].name);
                        free(all[i].name);
                        ufs_version_done(&all[i].version);
                        continue;
                }
                all[w++] = all[i];
        }
        *ret_entries = all;
        *ret_n = w;
        return 0;
fail:
        ufs_entries_free(all, n);
        return r;
}

static int s3_stat(ufs *u, const char *path, ufs_version *ret)
{
        s3_data *d = u->data;
        _cleanup_free_ char *url = s3_object_url(d, path);

        if (!url)
                return -ENOMEM;
        return ufs_http_head(u, &d->auth, url, ret);
}

static int s3_read(ufs *u, const char *path, const ufs_version *version, uint64_t offset,
                   uint64_t len, ufs_sink sink, void *userdata)
{
        s3_data *d = u->data;
        _cleanup_free_ char *url = s3_object_url(d, path);

        if (!url)
                return -ENOMEM;
        return ufs_http_read(u, &d->auth, url, version, offset, len, sink, userdata);
}

static char *s3_url(ufs *u, const char *path)
{
        s3_data *d = u->data;
        char *s;

        if (asprintf(&s, "%s://%s/%s%s", d->scheme, d->bucket, d->prefix, path) < 0)
                return NULL;
        return s;
}

const char *ufs_s3_signing(ufs *u)
{
        if (!u || u->backend != &ufs_backend_s3)
                return NULL;
        return ((s3_data *)u->data)->sigv4;
}

char *ufs_s3_request_url(ufs *u, const char *path, bool list)
{
        if (!u || u->backend != &ufs_backend_s3)
                return NULL;
        return list ? s3_list_url(u->data, path, NULL) : s3_object_url(u->data, path);
}

const ufs_backend ufs_backend_s3 = {
        .name = "s3",
        .exact_listing = true,
        .open = s3_open,
        .free = s3_free,
        .list = s3_list,
        .stat = s3_stat,
        .read = s3_read,
        .url = s3_url,
};
