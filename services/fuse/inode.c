/* The inode table: kernel inode numbers <-> dataset paths, lifetime tied to the lookup count. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "hmap.h"
#include "inode.h"

/* One allocation per inode, path and hash chains included (no map nodes): after a walk the
 * kernel holds an inode for every file it saw, so this is most of the daemon's memory per file
 * (docs/fuse.md). */
typedef struct inode {
        struct inode *next_ino, *next_path; /* chains of the two bucket arrays */
        uint64_t path_hash;
        uint64_t ino;
        uint64_t nlookup;
        uint64_t version;       /* as last reported by the master */
        uint64_t cache_version; /* whose pages the kernel may hold; 0 = none yet */
        inode_attr attr;        /* fetched_ms 0: none recorded */
        char path[];
} inode;

struct inode_table {
        /* lock guards both maps, the counter and every field of every inode */
        pthread_mutex_t lock;
        inode **by_ino, **by_path; /* bucket arrays of n_buckets (a power of two) */
        size_t n_buckets, n;
        uint64_t next_ino;
};

static uint64_t hash_path(const char *s)
{
        uint64_t h = 1469598103934665603ull; /* FNV-1a, then mixed: the low bits pick the bucket */

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ull;
        }
        return h ^ (h >> 29);
}

static size_t bucket_ino(const inode_table *t, uint64_t ino)
{
        return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (t->n_buckets - 1);
}

static inode *find_ino(const inode_table *t, uint64_t ino)
{
        inode *i = t->by_ino[bucket_ino(t, ino)];

        while (i && i->ino != ino)
                i = i->next_ino;
        return i;
}

/* H: hash_path(PATH), computed once by the caller (a new inode keeps it). */
static inode *find_path_hashed(const inode_table *t, const char *path, uint64_t h)
{
        inode *i = t->by_path[h & (t->n_buckets - 1)];

        while (i && (i->path_hash != h || strcmp(i->path, path) != 0))
                i = i->next_path;
        return i;
}

/* Takes the table's lock and finds INO; the caller unlocks. -ENOENT (unlocked) when unknown. */
static int lock_ino(inode_table *t, uint64_t ino, inode **ret)
{
        pthread_mutex_lock(&t->lock);
        *ret = find_ino(t, ino);
        if (*ret)
                return 0;
        pthread_mutex_unlock(&t->lock);
        return -ENOENT;
}

static inode *find_path(const inode_table *t, const char *path)
{
        return find_path_hashed(t, path, hash_path(path));
}

static void link_inode(inode_table *t, inode *i)
{
        size_t b = bucket_ino(t, i->ino), p = i->path_hash & (t->n_buckets - 1);

        i->next_ino = t->by_ino[b];
        t->by_ino[b] = i;
        i->next_path = t->by_path[p];
        t->by_path[p] = i;
}

/* Doubles the bucket arrays when the table holds as many inodes as buckets. */
static int grow(inode_table *t)
{
        size_t nb = t->n_buckets * 2;
        inode **bi = calloc(nb, sizeof(*bi)), **bp = calloc(nb, sizeof(*bp));
        inode **old = t->by_ino;
        size_t old_n = t->n_buckets;

        if (!bi || !bp) {
                free(bi);
                free(bp);
                return -ENOMEM;
        }
        free(t->by_path);
        t->by_ino = bi;
        t->by_path = bp;
        t->n_buckets = nb;
        for (size_t b = 0; b < old_n; b++)
                for (inode *i = old[b], *next; i; i = next) {
                        next = i->next_ino;
                        link_inode(t, i);
                }
        free(old);
        return 0;
}

static void unlink_inode(inode_table *t, inode *i)
{
        inode **p;

        for (p = &t->by_ino[bucket_ino(t, i->ino)]; *p != i; p = &(*p)->next_ino)
                ;
        *p = i->next_ino;
        for (p = &t->by_path[i->path_hash & (t->n_buckets - 1)]; *p != i; p = &(*p)->next_path)
                ;
        *p = i->next_path;
        t->n--;
}

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

static inode *inode_new(uint64_t ino, const char *path, uint64_t path_hash)
{
        size_t len = strlen(path);
        inode *i = malloc(sizeof(*i) + len + 1);

        if (!i)
                return NULL;
        *i = (inode){.ino = ino, .path_hash = path_hash};
        memcpy(i->path, path, len + 1);
        return i;
}

static int table_insert(inode_table *t, inode *i)
{
        if (t->n + 1 > t->n_buckets) {
                int r = grow(t);

                if (r < 0)
                        return r;
        }
        link_inode(t, i);
        t->n++;
        return 0;
}

inode_table *inode_table_new(void)
{
        inode_table *t = calloc(1, sizeof(*t));
        inode *root;

        if (!t)
                return NULL;
        pthread_mutex_init(&t->lock, NULL);
        t->n_buckets = 64;
        t->by_ino = calloc(t->n_buckets, sizeof(*t->by_ino));
        t->by_path = calloc(t->n_buckets, sizeof(*t->by_path));
        if (!t->by_ino || !t->by_path)
                return inode_table_free(t);
        t->next_ino = INODE_ROOT + 1;
        root = inode_new(INODE_ROOT, "/", hash_path("/"));
        if (!root || table_insert(t, root) < 0) {
                inode_free(root);
                return inode_table_free(t);
        }
        root->nlookup = UINT64_MAX / 2; /* never forgotten */
        return t;
}

inode_table *inode_table_free(inode_table *t)
{
        if (!t)
                return NULL;
        for (size_t b = 0; t->by_ino && b < t->n_buckets; b++)
                for (inode *i = t->by_ino[b], *next; i; i = next) {
                        next = i->next_ino;
                        inode_free(i);
                }
        free(t->by_ino);
        free(t->by_path);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

int inode_table_ref(inode_table *t, const char *path, uint64_t version, uint64_t *ret_ino,
                    bool *ret_changed)
{
        return inode_table_ref_attr(t, path, version, NULL, ret_ino, ret_changed);
}

int inode_table_ref_attr(inode_table *t, const char *path, uint64_t version, const inode_attr *a,
                         uint64_t *ret_ino, bool *ret_changed)
{
        bool changed = false;
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        uint64_t h = hash_path(path);
        i = find_path_hashed(t, path, h);
        if (i) {
                changed = i->version != version;
                i->version = version;
        } else {
                i = inode_new(t->next_ino, path, h);
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
        if (a)
                i->attr = *a;
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
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        if (ino != INODE_ROOT) {
                i->nlookup = nlookup >= i->nlookup ? 0 : i->nlookup - nlookup;
                r = i->nlookup == 0;
                if (r) {
                        unlink_inode(t, i);
                        inode_free(i);
                }
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_path(inode_table *t, uint64_t ino, char **ret_path)
{
        inode *i;
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        if (!(*ret_path = strdup(i->path)))
                r = -ENOMEM;
        pthread_mutex_unlock(&t->lock);
        return r;
}

int inode_table_set_version(inode_table *t, uint64_t ino, uint64_t version, bool *ret_changed)
{
        inode *i;
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        if (ret_changed)
                *ret_changed = i->version != version;
        i->version = version;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

int inode_table_open(inode_table *t, uint64_t ino, uint64_t version, bool *ret_keep_cache)
{
        inode *i;
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        *ret_keep_cache = i->cache_version == version;
        i->cache_version = version;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

int inode_table_lookup(inode_table *t, const char *path, uint64_t *ret_ino, uint64_t *ret_version)
{
        inode *i;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        i = find_path(t, path);
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
        size_t n = 0;
        int r = 0;

        hmap_init(&seen, true);
        pthread_mutex_lock(&t->lock);
        for (size_t b = 0; b < t->n_buckets && r >= 0; b++)
                for (inode *i = t->by_ino[b]; i && r >= 0; i = i->next_ino) {
                        const char *slash = strrchr(i->path, '/');
                        char buf[512], *dir;
                        size_t len;

                        if (i->version == 0 || !slash)
                                continue;
                        len = slash == i->path ? 1 : (size_t)(slash - i->path);
                        if (len < sizeof(buf)) {
                                /* most files share their directory with others: copy it once */
                                memcpy(buf, i->path, len);
                                buf[len] = 0;
                                if (hmap_get_str(&seen, buf))
                                        continue;
                        }
                        dir = strndup(i->path, len);
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

int inode_table_set_attr(inode_table *t, uint64_t ino, const inode_attr *a)
{
        inode *i;
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        i->attr = *a;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

int inode_table_get_attr(inode_table *t, uint64_t ino, inode_attr *ret, uint64_t *ret_version)
{
        inode *i;
        int r = lock_ino(t, ino, &i);

        if (r < 0)
                return r;
        if (i->attr.fetched_ms == 0)
                r = -ENODATA;
        else {
                *ret = i->attr;
                *ret_version = i->version;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

size_t inode_table_size(inode_table *t)
{
        size_t n;

        pthread_mutex_lock(&t->lock);
        n = t->n;
        pthread_mutex_unlock(&t->lock);
        return n;
}
