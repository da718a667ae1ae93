/* The inode table: kernel inode numbers <-> dataset paths, lifetime tied to the lookup count. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "hmap.h"
#include "inode.h"

/* One allocation per inode, path included: after a walk the kernel holds an inode for every
 * file it saw, so this is most of the daemon's memory per file (docs/fuse.md). */
typedef struct inode {
        uint64_t ino;
        uint64_t nlookup;
        uint64_t version;       /* as last reported by the master */
        uint64_t cache_version; /* whose pages the kernel may hold; 0 = none yet */
        char path[];
} inode;

struct inode_table {
        /* lock guards both maps, the counter and every field of every inode */
        pthread_mutex_t lock;
        hmap by_ino;
        hmap by_path;
        uint64_t next_ino;
};

static inode *inode_free(inode *i)
{
        free(i);
        return NULL;
}

char *inode_path_join(const char *dir, const char *name)
{
        size_t dl = strlen(dir), nl = strlen(name);
        bool slash = dl == 0 || dir[dl - 1] != '/';
        char *p = malloc(dl + slash + nl + 1);

        if (!p)
                return NULL;
        memcpy(p, dir, dl);
        if (slash)
                p[dl] = '/';
        memcpy(p + dl + slash, name, nl + 1);
        return p;
}

static inode *inode_new(uint64_t ino, const char *path)
{
        size_t len = strlen(path);
        inode *i = malloc(sizeof(*i) + len + 1);

        if (!i)
                return NULL;
        *i = (inode){.ino = ino};
        memcpy(i->path, path, len + 1);
        return i;
}

static int table_insert(inode_table *t, inode *i)
{
        int r = hmap_put_u64(&t->by_ino, i->ino, i, NULL);

        if (r < 0)
                return r;
        r = hmap_put_str(&t->by_path, i->path, i, NULL);
        if (r < 0) {
                hmap_remove_u64(&t->by_ino, i->ino);
                return r;
        }
        return 0;
}

inode_table *inode_table_new(void)
{
        inode_table *t = calloc(1, sizeof(*t));
        inode *root;

        if (!t)
                return NULL;
        pthread_mutex_init(&t->lock, NULL);
        hmap_init(&t->by_ino, false);
        hmap_init(&t->by_path, true);
        t->next_ino = INODE_ROOT + 1;
        root = inode_new(INODE_ROOT, "/");
        if (!root || table_insert(t, root) < 0) {
                inode_free(root);
                return inode_table_free(t);
        }
        root->nlookup = UINT64_MAX / 2; /* never forgotten */
        return t;
}

inode_table *inode_table_free(inode_table *t)
{
        size_t it;

        if (!t)
                return NULL;
        for (hmap_node *n = hmap_first(&t->by_ino, &it); n; n = hmap_next(&t->by_ino, n, &it))
                inode_free(n->value);
        hmap_done(&t->by_ino);
        hmap_done(&t->by_path);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

int inode_table_ref(inode_table *t, const char *path, uint64_t version, uint64_t *ret_ino,
                    bool *ret_changed)
{
        bool changed = false;
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_str(&t->by_path, path);
        if (i) {
                changed = i->version != version;
                i->version = version;
        } else {
                i = inode_new(t->next_ino, path);
                if (!i) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = table_insert(t, i);
                if (r < 0) {
                        inode_free(i);
                        goto finish;
                }
                t->next_ino++;
                i->version = version;
        }
        i->nlookup++;
        *ret_ino = i->ino;
        if (ret_changed)
                *ret_changed = changed;
finish:
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_forget(inode_table *t, uint64_t ino, uint64_t nlookup)
{
        inode *i;
        int r;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_u64(&t->by_ino, ino);
        if (!i) {
                r = -ENOENT;
        } else if (ino == INODE_ROOT) {
                r = 0;
        } else {
                i->nlookup = nlookup >= i->nlookup ? 0 : i->nlookup - nlookup;
                r = i->nlookup == 0;
                if (r) {
                        hmap_remove_u64(&t->by_ino, ino);
                        hmap_remove_str(&t->by_path, i->path);
                        inode_free(i);
                }
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_path(inode_table *t, uint64_t ino, char **ret_path)
{
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_u64(&t->by_ino, ino);
        if (!i)
                r = -ENOENT;
        else if (!(*ret_path = strdup(i->path)))
                r = -ENOMEM;
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_set_version(inode_table *t, uint64_t ino, uint64_t version, bool *ret_changed)
{
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_u64(&t->by_ino, ino);
        if (!i) {
                r = -ENOENT;
        } else {
                if (ret_changed)
                        *ret_changed = i->version != version;
                i->version = version;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_open(inode_table *t, uint64_t ino, uint64_t version, bool *ret_keep_cache)
{
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_u64(&t->by_ino, ino);
        if (!i) {
                r = -ENOENT;
        } else {
                *ret_keep_cache = i->cache_version == version;
                i->cache_version = version;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_lookup(inode_table *t, const char *path, uint64_t *ret_ino, uint64_t *ret_version)
{
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = hmap_get_str(&t->by_path, path);
        if (!i)
                r = -ENOENT;
        else {
                *ret_ino = i->ino;
                *ret_version = i->version;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_file_dirs(inode_table *t, char ***ret, size_t *ret_n)
{
        hmap seen; /* directory path (borrowed from an inode) -> itself */
        char **dirs = NULL;
        size_t n = 0, it;
        int r = 0;

        hmap_init(&seen, true);
        pthread_mutex_lock(&t->lock);
        for (hmap_node *h = hmap_first(&t->by_ino, &it); h; h = hmap_next(&t->by_ino, h, &it)) {
                inode *i = h->value;
                const char *slash = strrchr(i->path, '/');
                char *dir;

                if (i->version == 0 || !slash)
                        continue;
                dir = strndup(i->path, slash == i->path ? 1 : (size_t)(slash - i->path));
                if (!dir) {
                        r = -ENOMEM;
                        break;
                }
                if (hmap_get_str(&seen, dir)) {
                        free(dir);
                        continue;
                }
                if (n % 64 == 0) {
                        char **a = realloc(dirs, (n + 64) * sizeof(*a));

                        if (!a) {
                                free(dir);
                                r = -ENOMEM;
                                break;
                        }
                        dirs = a;
                }
                dirs[n++] = dir;
                r = hmap_put_str(&seen, dir, dir, NULL);
                if (r < 0)
                        break;
        }
        pthread_mutex_unlock(&t->lock);
        hmap_done(&seen);
        if (r < 0) {
                for (size_t k = 0; k < n; k++)
                        free(dirs[k]);
                free(dirs);
                return r;
        }
        *ret = dirs;
        *ret_n = n;
        return 0;
}

size_t inode_table_size(inode_table *t)
{
        size_t n;

        pthread_mutex_lock(&t->lock);
        n = t->by_ino.n;
        pthread_mutex_unlock(&t->lock);
        return n;
}
