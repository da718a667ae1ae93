/* File-system helpers (see fsutil.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fsutil.h"

int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int read_secret_file(const char *path, size_t max, char **ret)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *buf = NULL;
        size_t n;
        int r = 0;

        if (!f)
                return -errno;
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        n = fread(buf, 1, max + 1, f);
        if (ferror(f))
                r = -EIO;
        else if (n > max)
                r = -E2BIG;
        while (r == 0 && n > 0 && strchr(" \t\r\n", buf[n - 1]))
                n--;
        if (r == 0 && n == 0)
                r = -ENODATA;
        if (r < 0) {
                explicit_bzero(buf, max + 1);
                return r;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

char *secret_free(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}
