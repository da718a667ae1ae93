/* The store dispatcher: picks a backend by URL scheme, checks paths, keeps the last error. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "ufs-internal.h"

static const struct {
        const char *prefix;
        const ufs_backend *backend;
} schemes[] = {
        {"http://", &ufs_backend_http}, {"https://", &ufs_backend_http},
        {"file:", &ufs_backend_local},  {"local:", &ufs_backend_local},
        {"s3://", &ufs_backend_s3},     {"s3a://", &ufs_backend_s3},
        {"oss://", &ufs_backend_s3},    {"cos://", &ufs_backend_s3},
        {"cosn://", &ufs_backend_s3},
};

int ufs_fail(ufs *u, int err, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        vsnprintf(u->error, sizeof u->error, format, ap);
        va_end(ap);
        log_debug("%s", u->error);
        return err;
}

int ufs_open(const config_mount *mount, ufs **ret)
{
        const ufs_backend *backend = NULL;
        ufs *u;
        int r;

        if (!mount || !mount->mount_point || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
                if (strncasecmp(mount->mount_point, schemes[i].prefix, strlen(schemes[i].prefix)) ==
                    0) {
                        backend = schemes[i].backend;
                        break;
                }
        if (!backend)
                return -EPROTONOSUPPORT;

        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->backend = backend;
        u->sock = CURL_SOCKET_BAD;
        u->mount = mount;
        r = backend->open(u);
        if (r < 0) {
                log_debug("Cannot open store %s: %s", mount->name ? mount->name : "(unnamed)",
                          u->error[0] ? u->error : strerror(-r));
                ufs_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

ufs *ufs_free(ufs *u)
{
        if (!u)
                return NULL;
        if (u->backend && u->backend->free)
                u->backend->free(u);
        if (u->curl)
                curl_easy_cleanup(u->curl);
        free(u);
        return NULL;
}

int ufs_list(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n)
{
        if (!u || !ret_entries || !ret_n)
                return -EINVAL;
        if (!ufs_path_valid(path))
                return ufs_fail(u, -EINVAL, "Invalid store path \"%s\"", path ? path : "(null)");
        u->error[0] = 0;
        u->exactness = u->backend->exact_listing ? UFS_EXACT : UFS_INEXACT;
        u->date = 0;
        return u->backend->list(u, path, ret_entries, ret_n);
}

void ufs_entries_free(ufs_entry *entries, size_t n)
{
        if (!entries)
                return;
        for (size_t i = 0; i < n; i++) {
                free(entries[i].name);
                ufs_version_done(&entries[i].version);
        }
        free(entries);
}

int ufs_stat(ufs *u, const char *path, ufs_version *ret)
{
        if (!u || !ret)
                return -EINVAL;
        if (!ufs_path_valid(path) || !*path)
                return ufs_fail(u, -EINVAL, "Invalid store path \"%s\"", path ? path : "(null)");
        u->error[0] = 0;
        return u->backend->stat(u, path, ret);
}

void ufs_version_done(ufs_version *v)
{
        if (!v)
                return;
        free(v->etag);
        v->etag = NULL;
}

int ufs_read(ufs *u, const char *path, const ufs_version *version, uint64_t offset, uint64_t len,
             ufs_sink sink, void *userdata)
{
        if (!u || !version || !sink)
                return -EINVAL;
        if (!ufs_path_valid(path) || !*path)
                return ufs_fail(u, -EINVAL, "Invalid store path \"%s\"", path ? path : "(null)");
        if (offset > version->size || len > version->size - offset)
                return ufs_fail(u, -EINVAL, "Range %llu+%llu is past the end (%llu) of \"%s\"",
                                (unsigned long long)offset, (unsigned long long)len,
                                (unsigned long long)version->size, path);
        u->error[0] = 0;
        if (len == 0)
                return 0;
        if (version->etag && !*version->etag) {
                /* The masters store "no ETag" as "": that is no precondition on an ETag. */
                ufs_version v = *version;

                v.etag = NULL;
                return u->backend->read(u, path, &v, offset, len, sink, userdata);
        }
        return u->backend->read(u, path, version, offset, len, sink, userdata);
}

char *ufs_url(ufs *u, const char *path)
{
        if (!u || !ufs_path_valid(path))
                return NULL;
        return u->backend->url(u, path);
}

void ufs_set_cancel(ufs *u, const atomic_bool *cancel)
{
        if (u)
                u->cancel = cancel;
}

ufs_exactness ufs_list_exactness(ufs *u)
{
        return u ? u->exactness : UFS_INEXACT;
}

int64_t ufs_list_date(ufs *u)
{
        return u ? u->date : 0;
}

bool ufs_version_minute(const ufs_version *v)
{
        return v && v->etag && strcmp(v->etag, UFS_ETAG_MINUTE) == 0;
}

bool ufs_listing_exact(ufs *u)
{
        return u && u->backend->exact_listing;
}

const char *ufs_last_error(ufs *u)
{
        return u ? u->error : "";
}
