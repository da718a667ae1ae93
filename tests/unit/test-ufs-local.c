/* Unit tests for the local backend (file://, local://) through the public ufs.h interface. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ufs/ufs.h"

typedef struct fixture {
        char dir[64];
        char url[96];
        config_mount mount;
        ufs *u;
} fixture;

static void write_file(const char *dir, const char *rel, const char *content)
{
        char path[512];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, rel);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof *f);
        char path[256];

        snprintf(f->dir, sizeof f->dir, "/tmp/weir-ufs-local-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(path, sizeof path, "%s/sub dir", f->dir);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/sub dir/ünï", f->dir);
        mkdir(path, 0755);
        write_file(f->dir, "hello.txt", "hello, world\n");
        write_file(f->dir, "sub dir/a&b.txt", "0123456789");
        snprintf(path, sizeof path, "%s/dangling", f->dir);
        if (symlink("/nonexistent/weir", path) < 0)
                return -1;
        snprintf(path, sizeof path, "%s/sub dir/loop", f->dir);
        if (symlink("..", path) < 0)
                return -1;
        snprintf(path, sizeof path, "%s/sub dir/link.txt", f->dir);
        if (symlink("../hello.txt", path) < 0)
                return -1;
        snprintf(path, sizeof path, "%s/fifo", f->dir);
        mkfifo(path, 0644);
        /* Percent-encoded in the URL, as a file URL may be written. */
        snprintf(f->url, sizeof f->url, "local://%s/", f->dir);
        f->mount = (config_mount){.name = (char *)"m", .mount_point = f->url};
        if (ufs_open(&f->mount, &f->u) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        char cmd[256];

        ufs_free(f->u);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                return -1;
        free(f);
        return 0;
}

static void test_list(void **state)
{
        fixture *f = *state;
        ufs_entry *e;
        size_t n;

        assert_int_equal(ufs_list(f->u, "", &e, &n), 0);
        /* Sorted; the dangling symlink and the FIFO are no entries. */
        assert_int_equal(n, 2);
        assert_string_equal(e[0].name, "hello.txt");
        assert_false(e[0].dir);
        assert_int_equal(e[0].version.size, 13);
        assert_non_null(e[0].version.etag);
        assert_string_equal(e[1].name, "sub dir");
        assert_true(e[1].dir);
        ufs_entries_free(e, n);

        /* The symlinked file is an entry, the symlink to a directory (a loop) is not. */
        assert_int_equal(ufs_list(f->u, "sub dir", &e, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].name, "a&b.txt");
        assert_string_equal(e[1].name, "link.txt");
        assert_false(e[1].dir);
        assert_int_equal(e[1].version.size, 13);
        assert_string_equal(e[2].name, "ünï");
        ufs_entries_free(e, n);

        assert_int_equal(ufs_list(f->u, "missing", &e, &n), -ENOENT);
        assert_int_equal(ufs_list(f->u, "hello.txt", &e, &n), -ENOTDIR);
        assert_int_equal(ufs_list(f->u, "../etc", &e, &n), -EINVAL);
        assert_int_equal(ufs_list(f->u, "/sub dir", &e, &n), -EINVAL);
}

static int collect(const void *data, size_t len, void *userdata)
{
        char *buf = userdata;

        strncat(buf, data, len);
        return 0;
}

static int refuse(const void *data, size_t len, void *userdata)
{
        return -ENOSPC;
}

static void test_stat_read(void **state)
{
        fixture *f = *state;
        ufs_version v;
        char buf[64] = "";
        char *url;

        assert_int_equal(ufs_stat(f->u, "sub dir/a&b.txt", &v), 0);
        assert_int_equal(v.size, 10);
        assert_true(v.mtime > 0);
        assert_int_equal(ufs_read(f->u, "sub dir/a&b.txt", &v, 3, 4, collect, buf), 0);
        assert_string_equal(buf, "3456");
        assert_int_equal(ufs_read(f->u, "sub dir/a&b.txt", &v, 3, 8, collect, buf), -EINVAL);
        assert_int_equal(ufs_read(f->u, "sub dir/a&b.txt", &v, 0, 1, refuse, NULL), -ENOSPC);

        url = ufs_url(f->u, "sub dir/a&b.txt");
        assert_non_null(strstr(url, "file:///tmp/weir-ufs-local-"));
        assert_non_null(strstr(url, "/sub%20dir/a%26b.txt"));
        free(url);

        /* The file changes: the old version cannot be read any more. */
        struct timeval later[2] = {{.tv_sec = 2000000000}, {.tv_sec = 2000000000}};
        char path[256];
        snprintf(path, sizeof path, "%s/sub dir/a&b.txt", f->dir);
        assert_int_equal(utimes(path, later), 0);
        assert_int_equal(ufs_read(f->u, "sub dir/a&b.txt", &v, 0, 1, collect, buf), -ESTALE);
        ufs_version_done(&v);

        assert_int_equal(ufs_stat(f->u, "sub dir", &v), -EISDIR);
        assert_int_equal(ufs_stat(f->u, "nope", &v), -ENOENT);
        assert_int_equal(ufs_stat(f->u, "", &v), -EINVAL);
}

static void test_open_urls(void **state)
{
        static const struct {
                const char *url;
                int r;
        } cases[] = {
                {"file:///tmp", 0},
                {"file:/tmp", 0},
                {"local:///tmp/", 0},
                {"file://localhost/tmp", 0},
                {"file://otherhost/tmp", -EINVAL},
                {"local://relative", -EINVAL},
                {"file:///a%zz", -EINVAL},
                {"ftp://x/", -EPROTONOSUPPORT},
        };

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                config_mount m = {.name = (char *)"m", .mount_point = (char *)cases[i].url};
                ufs *u = NULL;

                if (ufs_open(&m, &u) != cases[i].r)
                        fail_msg("%s: not %d", cases[i].url, cases[i].r);
                ufs_free(u);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stat_read, setup, teardown),
                cmocka_unit_test(test_open_urls),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
