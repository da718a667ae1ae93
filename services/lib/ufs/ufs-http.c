/* The http(s) backend: directory index pages for listings, HEAD for versions, ranged GET. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "ufs-internal.h"

typedef struct http_data {
        char *base; /* the mount point without user info, escaped where needed, ending in '/' */
        char *user, *password; /* from "http://USER:PASSWORD@HOST/": sent as basic auth */
        ufs_http_auth auth;
} http_data;

/* Moves "USER:PASSWORD@" out of URL (in place) into *RET_USER and *RET_PASSWORD, decoded, so that
 * neither store URLs (shown by the API) nor messages carry them. */
static int take_userinfo(char *url, char **ret_user, char **ret_password)
{
        char *auth = strstr(url, "://") + 3, *end = auth + strcspn(auth, "/"), *at = NULL;
        char *colon;
        int r;

        for (char *p = auth; p < end; p++)
                if (*p == '@')
                        at = p;
        if (!at)
                return 0;
        colon = memchr(auth, ':', (size_t)(at - auth));
        r = ufs_unescape(auth, (size_t)((colon ? colon : at) - auth), ret_user);
        if (r < 0)
                return r;
        r = colon ? ufs_unescape(colon + 1, (size_t)(at - colon - 1), ret_password)
                  : ((*ret_password = strdup("")) ? 0 : -ENOMEM);
        if (r < 0)
                return r;
        memmove(auth, at + 1, strlen(at + 1) + 1);
        return 1;
}

static int http_open(ufs *u)
{
        _cleanup_free_ char *escaped = NULL;
        http_data *d;
        const char *host;
        size_t n;
        int r;

        escaped = ufs_escape_loose(u->mount->mount_point);
        if (!escaped)
                return -ENOMEM;
        host = strstr(escaped, "://");
        if (!host || !host[3] || host[3] == '/' || strpbrk(escaped, "?#"))
                return ufs_fail(u, -EINVAL, "Invalid http(s) URL for mount %s",
                                u->mount->name ? u->mount->name : "(unnamed)");
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        u->data = d;
        r = take_userinfo(escaped, &d->user, &d->password);
        if (r < 0)
                return ufs_fail(u, -EINVAL, "Invalid user info in the URL of mount %s",
                                u->mount->name ? u->mount->name : "(unnamed)");
        n = strlen(escaped);
        if (n == 0 || !strstr(escaped, "://")[3])
                return ufs_fail(u, -EINVAL, "Invalid http(s) URL for mount %s",
                                u->mount->name ? u->mount->name : "(unnamed)");
        if (asprintf(&d->base, "%s%s", escaped, escaped[n - 1] == '/' ? "" : "/") < 0) {
                d->base = NULL;
                return -ENOMEM;
        }
        d->auth = (ufs_http_auth){
                .follow_redirects = true,
                .user = d->user,
                .password = d->password,
        };
        return 0;
}

static void http_free(ufs *u)
{
        http_data *d = u->data;

        if (!d)
                return;
        free(d->base);
        free(d->user);
        if (d->password) {
                explicit_bzero(d->password, strlen(d->password));
                free(d->password);
        }
        free(d);
}

static char *http_url(ufs *u, const char *path)
{
        http_data *d = u->data;
        _cleanup_free_ char *escaped = ufs_escape(path, true);
        char *s;

        if (!escaped || asprintf(&s, "%s%s", d->base, escaped) < 0)
                return NULL;
        return s;
}

/* The path part of URL ("/a/b/" of "http://h:1/a/b/?x"), for absolute links in index pages. */
static char *url_path(const char *url)
{
        const char *p = strstr(url, "://"), *e;

        if (!p)
                return NULL;
        p = strchr(p + 3, '/');
        if (!p)
                return strdup("/");
        e = p + strcspn(p, "?#");
        return strndup(p, (size_t)(e - p));
}

static int http_list(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n)
{
        _cleanup_free_ char *url = NULL, *body = NULL, *effective = NULL, *type = NULL,
                            *base_path = NULL;
        size_t len;
        long status;
        int r;

        url = http_url(u, path);
        if (!url)
                return -ENOMEM;
        if (*path) {
                char *s;

                if (asprintf(&s, "%s/", url) < 0)
                        return -ENOMEM;
                free(url);
                url = s;
        }
        r = ufs_http_get(u, &((http_data *)u->data)->auth, url, &status, &body, &len, &effective,
                         &type);
        if (r < 0)
                return r;
        if (status != 200)
                return ufs_fail(u, ufs_errno_from_status(status), "HTTP %ld from %s", status, url);
        if (type && strncasecmp(type, "application/json", 16) == 0) {
                /* nginx with autoindex_format json */
                r = ufs_json_index_parse(body, len, ret_entries, ret_n);
                if (r < 0)
                        return ufs_fail(u, r == -EBADMSG ? -ENOTDIR : r,
                                        "%s is no directory index (JSON, but not nginx's)", url);
                u->exactness = UFS_EXACT; /* bytes, and times to the second */
                return 0;
        }
        if (type && strncasecmp(type, "text/html", 9) != 0 &&
            strncasecmp(type, "application/xhtml", 17) != 0)
                return ufs_fail(u, -ENOTDIR, "%s is no directory index (Content-Type: %s)", url,
                                type);
        if (memchr(body, 0, len))
                return ufs_fail(u, -EBADMSG, "%s is no directory index (binary)", url);
        base_path = url_path(effective);
        r = ufs_html_parse_exactness(body, len, base_path, ret_entries, ret_n, &u->exactness);
        if (r == -ENAMETOOLONG)
                return ufs_fail(u, r, "The index page %s names an entry longer than %u bytes", url,
                                UFS_MAX_NAME);
        if (r == -E2BIG)
                return ufs_fail(u, r, "The index page %s lists more than %u entries", url,
                                UFS_MAX_ENTRIES);
        if (r < 0)
                return ufs_fail(u, r, "Cannot parse the index page %s: %s", url, strerror(-r));
        return 0;
}

static int http_stat(ufs *u, const char *path, ufs_version *ret)
{
        _cleanup_free_ char *url = http_url(u, path);

        if (!url)
                return -ENOMEM;
        return ufs_http_head(u, &((http_data *)u->data)->auth, url, ret);
}

static int http_read(ufs *u, const char *path, const ufs_version *version, uint64_t offset,
                     uint64_t len, ufs_sink sink, void *userdata)
{
        _cleanup_free_ char *url = http_url(u, path);

        if (!url)
                return -ENOMEM;
        return ufs_http_read(u, &((http_data *)u->data)->auth, url, version, offset, len, sink,
                             userdata);
}

const ufs_backend ufs_backend_http = {
        .name = "http",
        .open = http_open,
        .free = http_free,
        .list = http_list,
        .stat = http_stat,
        .read = http_read,
        .url = http_url,
};
