/* The local backend (file://, local://): readdir, stat and pread on a directory of this host. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "fsutil.h"
#include "log.h"
#include "ufs-internal.h"

#define READ_CHUNK (256u << 10)

typedef struct local_data {
        char *root; /* absolute, no trailing '/' (except for "/" itself) */
} local_data;

static int local_open(ufs *u)
{
        const char *s = u->mount->mount_point, *p = strchr(s, ':');
        _cleanup_free_ char *root = NULL;
        local_data *d;
        size_t n;
        int r;

        p = p ? p + 1 : s;
        if (strncmp(p, "//", 2) == 0) {
                p += 2;
                /* file://HOST/path: only this host */
                if (strncasecmp(p, "localhost/", 10) == 0)
                        p += 9;
                else if (*p != '/')
                        return ufs_fail(u, -EINVAL, "%s: a local path must be absolute", s);
        }
        if (*p != '/')
                return ufs_fail(u, -EINVAL, "%s: a local path must be absolute", s);
        r = ufs_unescape(p, strlen(p), &root);
        if (r < 0)
                return ufs_fail(u, r, "%s: invalid escape in the path", s);
        n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                root[--n] = 0;
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->root = TAKE_PTR(root);
        u->data = d;
        return 0;
}

static void local_free(ufs *u)
{
        local_data *d = u->data;

        if (!d)
                return;
        free(d->root);
        free(d);
}

static char *local_full(ufs *u, const char *path)
{
        local_data *d = u->data;
        char *s;

        if (asprintf(&s, "%s%s%s", d->root, strcmp(d->root, "/") == 0 || !*path ? "" : "/", path) <
            0)
                return NULL;
        return s;
}

static int version_from_stat(const struct stat *st, ufs_version *ret)
{
        char *etag;

        if (asprintf(&etag, "\"%" PRIu64 "-%" PRId64 "\"", (uint64_t)st->st_size,
                     (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec) < 0)
                return -ENOMEM;
        *ret = (ufs_version){
                .size = (uint64_t)st->st_size,
                .mtime = st->st_mtim.tv_sec,
                .etag = etag,
        };
        return 0;
}

static int entry_compare(const void *a, const void *b)
{
        return strcmp(((const ufs_entry *)a)->name, ((const ufs_entry *)b)->name);
}

static int local_list(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n)
{
        _cleanup_free_ char *full = local_full(u, path);
        _cleanup_(closedirp) DIR *dir = NULL;
        ufs_entry *items = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        int fd, r;

        if (!full)
                return -ENOMEM;
        fd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ufs_fail(u, -errno, "Cannot open directory %s: %m", full);
        dir = fdopendir(fd);
        if (!dir) {
                r = -errno;
                safe_close(fd);
                return ufs_fail(u, r, "Cannot read directory %s: %s", full, strerror(-r));
        }
        for (;;) {
                struct stat st;

                errno = 0;
                de = readdir(dir);
                if (!de) {
                        if (errno != 0) {
                                r = ufs_fail(u, -errno, "Cannot read directory %s: %m", full);
                                goto fail;
                        }
                        break;
                }
                if (!ufs_name_valid(de->d_name)) {
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                                log_debug("Skipping %s/%s: not a usable name.", full, de->d_name);
                        continue;
                }
                if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                if (S_ISLNK(st.st_mode)) {
                        /* Symlinked files are served; symlinked directories are not followed,
                         * so that a link to a parent cannot make the tree endless. */
                        if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0 || S_ISDIR(st.st_mode))
                                continue;
                }
                if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                        continue;
                if (n >= UFS_MAX_ENTRIES) {
                        r = ufs_fail(u, -E2BIG, "%s has more than %u entries", full,
                                     (unsigned)UFS_MAX_ENTRIES);
                        goto fail;
                }
                if (!ARRAY_GROW(items, allocated, n + 1)) {
                        r = -ENOMEM;
                        goto fail;
                }
                items[n] = (ufs_entry){.name = strdup(de->d_name), .dir = S_ISDIR(st.st_mode)};
                if (!items[n].name) {
                        r = -ENOMEM;
                        goto fail;
                }
                n++;
                if (S_ISREG(st.st_mode)) {
                        r = version_from_stat(&st, &items[n - 1].version);
                        if (r < 0)
                                goto fail;
                } else
                        items[n - 1].version.mtime = st.st_mtim.tv_sec;
        }
        if (n > 0)
                qsort(items, n, sizeof *items, entry_compare);
        *ret_entries = items;
        *ret_n = n;
        return 0;
fail:
        ufs_entries_free(items, n);
        return r;
}

static int local_stat(ufs *u, const char *path, ufs_version *ret)
{
        _cleanup_free_ char *full = local_full(u, path);
        struct stat st;

        if (!full)
                return -ENOMEM;
        if (stat(full, &st) < 0)
                return ufs_fail(u, -errno, "Cannot stat %s: %m", full);
        if (S_ISDIR(st.st_mode))
                return ufs_fail(u, -EISDIR, "%s is a directory", full);
        if (!S_ISREG(st.st_mode))
                return ufs_fail(u, -ENOENT, "%s is not a regular file", full);
        return version_from_stat(&st, ret);
}

static bool version_matches(const ufs_version *want, const struct stat *st)
{
        ufs_version now;
        bool same;

        if (version_from_stat(st, &now) < 0)
                return false;
        if (want->etag)
                same = strcmp(want->etag, now.etag) == 0;
        else
                same = want->size == now.size && (want->mtime == 0 || want->mtime == now.mtime);
        ufs_version_done(&now);
        return same;
}

static int local_read(ufs *u, const char *path, const ufs_version *version, uint64_t offset,
                      uint64_t len, ufs_sink sink, void *userdata)
{
        _cleanup_free_ char *full = local_full(u, path), *buf = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        uint64_t done = 0;
        int r;

        if (!full)
                return -ENOMEM;
        fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return ufs_fail(u, -errno, "Cannot open %s: %m", full);
        if (fstat(fd, &st) < 0)
                return ufs_fail(u, -errno, "Cannot stat %s: %m", full);
        if (!S_ISREG(st.st_mode))
                return ufs_fail(u, -EISDIR, "%s is not a regular file", full);
        if (!version_matches(version, &st))
                return ufs_fail(u, -ESTALE, "%s changed in the store", full);
        buf = malloc(READ_CHUNK);
        if (!buf)
                return -ENOMEM;
        while (done < len) {
                size_t want = (size_t)MIN((uint64_t)READ_CHUNK, len - done);
                ssize_t k = pread(fd, buf, want, (off_t)(offset + done));

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return ufs_fail(u, -errno, "Cannot read %s: %m", full);
                }
                if (k == 0)
                        break;
                r = sink(buf, (size_t)k, userdata);
                if (r < 0)
                        return r;
                done += (uint64_t)k;
        }
        /* Changed while we read: the bytes may mix two versions. */
        if (fstat(fd, &st) < 0 || !version_matches(version, &st))
                return ufs_fail(u, -ESTALE, "%s changed in the store while read", full);
        if (done < len)
                return ufs_fail(u, -EIO, "%s: short read (%" PRIu64 " of %" PRIu64 " bytes)", full,
                                done, len);
        return 0;
}

static char *local_url(ufs *u, const char *path)
{
        _cleanup_free_ char *full = local_full(u, path), *escaped = NULL;
        char *s;

        if (!full)
                return NULL;
        escaped = ufs_escape(full, true);
        if (!escaped || asprintf(&s, "file://%s", escaped) < 0)
                return NULL;
        return s;
}

const ufs_backend ufs_backend_local = {
        .name = "local",
        .exact_listing = true,
        .open = local_open,
        .free = local_free,
        .list = local_list,
        .stat = local_stat,
        .read = local_read,
        .url = local_url,
};
