/* File-system helpers every daemon needs: directories, secret files, directory handles. */
#pragma once

#include <dirent.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates PATH and its missing parents: parents with 0755, PATH itself with MODE. Existing
 * directories are fine. 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

/* The longest token or key weir reads from a file. */
#define SECRET_MAX 4096

/* Reads a secret (a token, a key) from PATH: the content without trailing whitespace, at most MAX
 * bytes. -E2BIG when longer, -ENODATA when empty, -errno when unreadable. The buffer it read into
 * is wiped; free the result with secret_free(). */
int read_secret_file(const char *path, size_t max, char **ret);

/* Wipes and frees a secret; NULL is fine. Returns NULL. */
char *secret_free(char *s);

static inline void secret_freep(char **s)
{
        secret_free(*s);
}
#define _cleanup_secret_ __attribute__((cleanup(secret_freep)))

static inline void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
