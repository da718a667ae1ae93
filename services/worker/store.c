/* The tiered block store (see store.h): index, quotas, eviction with demotion, crash-safe files.
 *
 * On disk, each level's directory holds one file per block, named "E-F-V-I.x3SUM" (E the
 * cluster's epoch) where SUM is the block's checksum in 16 hex digits and "x3" says which checksum
 * it is (checksum.h: XXH3; names of older formats, "F-V-I.SUM" and "E-F-V-I.SUM", are removed at
 * start, never verified with the wrong sum). The checksum lives in the name, not in a header or an
 * xattr, so the file is exactly the block's bytes (sendfile and the FUSE daemon's pread use
 * offsets as they are, with no header to skip), it works on tmpfs without user xattrs, and the
 * index is rebuilt from one readdir per level with no file opened. A block is written as
 * ".tmp-..." and renamed only after it was checksummed and, on persistent levels, fsynced, so a
 * crash leaves either a whole block or a temporary that the next start removes. The directory is
 * not fsynced: a rename lost to a power cut loses a block, never serves a wrong one.
 *
 * Checksums are verified lazily: a block written by this process was hashed from the bytes it
 * just wrote; a block found at start is verified on its first open (which also warms the page
 * cache for the read that follows). Verifying the whole cache at start would read every tier
 * end to end before the worker could serve (hours on a large HDD level).
 *
 * Readers pin blocks (store_open/store_release); eviction and demotion skip pinned blocks. A
 * descriptor may outlive its pin (the FUSE daemon keeps the ones it is handed): eviction only
 * unlinks files, so such a reader keeps reading the same bytes; the space returns to the
 * filesystem when it closes, which the quota does not see (a short overshoot on tmpfs at most).
 *
 * Locking: everything in struct store below `lock` (the index, each level's LRU list and
 * counters, every block's fields, the change journal) is guarded by `lock`, "the store lock".
 * No file I/O happens under it except unlink(); copies and checksums run unlocked on blocks
 * held by a reference. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "array.h"
#include "checksum.h"
#include "cleanup.h"
#include "fsutil.h"
#include "hmap.h"
#include "log.h"
#include "parse.h"
#include "store.h"

#define STORE_TMP_PREFIX  ".tmp-"
#define STORE_IO_CHUNK    (256u << 10)
#define STORE_JOURNAL_MAX (1u << 20) /* changes kept between two takes before a full report */
#define STORE_PATH_MAX    4096

typedef enum block_state {
        BLOCK_WRITING, /* reserved, being filled; not servable, not in an LRU list */
        BLOCK_READY,
} block_state;

struct store_block {
        store_key key;
        uint64_t size;
        uint64_t sum;
        unsigned level;
        block_state state;
        unsigned refs; /* memory references: pins plus internal holds */
        unsigned pins; /* readers; a pinned block is not evicted or demoted */
        bool linked;   /* in the index */
        bool moving;   /* being demoted */
        bool verified; /* checksum known good for the file on disk */
        int64_t mtime; /* for LRU order at rebuild only */
        store_block *lru_prev, *lru_next;
};

struct store_write {
        store_block *block;
        int fd;
        char *tmp_path;
};

typedef struct store_level {
        config_medium medium;
        char *dir;
        uint64_t quota, high_bytes, low_bytes;
        bool persistent;
        /* Guarded by the store lock: */
        uint64_t used;    /* ready blocks + reservations */
        uint64_t writing; /* reservations not committed yet: bytes the filesystem must still take */
        uint64_t blocks;
        store_block *lru_head, *lru_tail; /* head: least recently used */
} store_level;

typedef struct journal_entry {
        store_key key;
        bool added;
} journal_entry;

struct store {
        store_level levels[CONFIG_MAX_TIERS];
        size_t n_levels;
        unsigned flags;
        pthread_t evictor;
        bool evictor_started;

        pthread_mutex_t lock; /* "the store lock"; guards everything below */
        pthread_cond_t evict_cond;
        bool stopping;
        hmap index;      /* store_key (the block's own) -> store_block, any state */
        size_t n_blocks; /* in the index */
        uint64_t tmp_counter;
        uint64_t evictions, demotions, checksum_failures;
        journal_entry *journal;
        size_t n_journal, journal_cap;
        bool journal_overflow;
};

/* ---- index (store lock held) ---- */

static_assert(sizeof(store_key) == 4 * sizeof(uint64_t),
              "store_key is hashed as bytes: no padding");

static store_block *index_find(store *s, const store_key *k)
{
        return hmap_get_mem(&s->index, k);
}

static int index_add(store *s, store_block *b)
{
        int r = hmap_put_mem(&s->index, &b->key, b, NULL);
        if (r < 0)
                return r;
        b->linked = true;
        s->n_blocks++;
        return 0;
}

static void index_remove(store *s, store_block *b)
{
        if (!b->linked)
                return;
        (void)hmap_remove_mem(&s->index, &b->key);
        b->linked = false;
        s->n_blocks--;
}

static void lru_unlink(store_level *l, store_block *b)
{
        if (b->lru_prev)
                b->lru_prev->lru_next = b->lru_next;
        else
                l->lru_head = b->lru_next;
        if (b->lru_next)
                b->lru_next->lru_prev = b->lru_prev;
        else
                l->lru_tail = b->lru_prev;
        b->lru_prev = b->lru_next = NULL;
}

static void lru_append(store_level *l, store_block *b)
{
        b->lru_next = NULL;
        b->lru_prev = l->lru_tail;
        if (l->lru_tail)
                l->lru_tail->lru_next = b;
        else
                l->lru_head = b;
        l->lru_tail = b;
}

static void journal_add(store *s, const store_key *k, bool added)
{
        if (s->journal_overflow)
                return;
        if (s->n_journal >= STORE_JOURNAL_MAX ||
            !ARRAY_GROW(s->journal, s->journal_cap, s->n_journal + 1)) {
                /* The next take asks for a full report instead. */
                s->journal_overflow = true;
                s->n_journal = 0;
                return;
        }
        s->journal[s->n_journal++] = (journal_entry){.key = *k, .added = added};
}

static void block_unref_locked(store *s, store_block *b)
{
        if (--b->refs == 0 && !b->linked)
                free(b);
}

static int block_path(const store *s, const store_block *b, unsigned level, char *buf, size_t len)
{
        char k[BLOCK_ID_MAX];
        int n = snprintf(buf, len, "%s/%s." CHECKSUM_NAME_TAG "%016" PRIx64, s->levels[level].dir,
                         block_id_format(k, &b->key), b->sum);

        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Removes a ready block from the cache: its file, its index entry and its space. */
static void block_drop_locked(store *s, store_block *b)
{
        store_level *l = &s->levels[b->level];
        char path[STORE_PATH_MAX];

        if (block_path(s, b, b->level, path, sizeof(path)) >= 0 && unlink(path) < 0 &&
            errno != ENOENT)
                log_warning_errno(errno, "Failed to remove %s: %m, ignoring", path);
        lru_unlink(l, b);
        l->used -= b->size;
        l->blocks--;
        index_remove(s, b);
        journal_add(s, &b->key, false);
        if (b->refs == 0)
                free(b);
}

/* ---- file helpers (no lock) ---- */

static int fd_checksum(int fd, uint64_t size, uint64_t *ret)
{
        _cleanup_free_ uint8_t *buf = malloc(STORE_IO_CHUNK);
        _cleanup_free_ uint64_t *sums = NULL;
        size_t n = checksum_n_chunks(size);
        uint64_t off = 0;
        struct stat st;

        if (!buf || !(sums = calloc(n + 1, sizeof(*sums))))
                return -ENOMEM;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size != size)
                return -EIO;
        for (size_t i = 0; i < n; i++) {
                uint64_t end = MIN(size, off + CHECKSUM_CHUNK);
                checksum c;

                checksum_init(&c, end - off);
                while (off < end) {
                        ssize_t r = pread(fd, buf, MIN((uint64_t)STORE_IO_CHUNK, end - off), off);

                        if (r < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        if (r == 0)
                                return -EIO;
                        checksum_update(&c, buf, (size_t)r);
                        off += (uint64_t)r;
                }
                sums[i] = checksum_final(&c);
        }
        *ret = checksum_combine(sums, n, size);
        return 0;
}

static int copy_fd(int in, int out, uint64_t size)
{
        uint64_t off = 0;

        /* sendfile between regular files works across filesystems; fall back to read/write. */
        while (off < size) {
                off_t o = (off_t)off;
                ssize_t n = sendfile(out, in, &o, MIN(size - off, (uint64_t)1 << 30));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EINVAL && errno != ENOSYS)
                                return -errno;
                        break;
                }
                if (n == 0)
                        return -EIO;
                off += (uint64_t)n;
        }
        if (off < size) {
                _cleanup_free_ uint8_t *buf = malloc(STORE_IO_CHUNK);

                if (!buf)
                        return -ENOMEM;
                while (off < size) {
                        ssize_t n = pread(in, buf, MIN((uint64_t)STORE_IO_CHUNK, size - off), off);

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                return n < 0 ? -errno : -EIO;
                        for (ssize_t w = 0; w < n;) {
                                ssize_t m = pwrite(out, buf + w, n - w, off + w);

                                if (m < 0 && errno == EINTR)
                                        continue;
                                if (m <= 0)
                                        return m < 0 ? -errno : -EIO;
                                w += m;
                        }
                        off += (uint64_t)n;
                }
        }
        return 0;
}

/* Creates a temporary file in LEVEL. The name is unique within this process; a crash leaves it
 * for the next start to remove. */
static int tmp_create(store *s, unsigned level, const store_key *k, char **ret_path)
{
        char kb[BLOCK_ID_MAX];
        _cleanup_free_ char *path = NULL;
        uint64_t n;
        int fd;

        pthread_mutex_lock(&s->lock);
        n = ++s->tmp_counter;
        pthread_mutex_unlock(&s->lock);
        if (asprintf(&path, "%s/" STORE_TMP_PREFIX "%s-%d-%" PRIu64, s->levels[level].dir,
                     block_id_format(kb, k), (int)getpid(), n) < 0)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        *ret_path = TAKE_PTR(path);
        return fd;
}

/* ---- eviction (store lock held; these drop and retake it around file copies) ---- */

static int make_room_locked(store *s, unsigned level, uint64_t size);

/* Moves B out of its level: into the next level when it exists and can make room, else out of
 * the cache. -EBUSY when B is pinned (or got pinned while it was being copied). */
static int evict_one_locked(store *s, store_block *b)
{
        unsigned from = b->level, to = from + 1;
        char src[STORE_PATH_MAX], dst[STORE_PATH_MAX];
        _cleanup_free_ char *tmp = NULL;
        int r;

        if (b->pins > 0 || b->moving || b->state != BLOCK_READY)
                return -EBUSY;

        if (to < s->n_levels && b->size <= s->levels[to].quota) {
                b->moving = true;
                b->refs++;
                r = make_room_locked(s, to, b->size);
                if (r >= 0) {
                        _cleanup_close_ int in = -1, out = -1;

                        s->levels[to].used += b->size;
                        s->levels[to].writing += b->size;
                        r = block_path(s, b, from, src, sizeof(src));
                        if (r >= 0)
                                r = block_path(s, b, to, dst, sizeof(dst));
                        pthread_mutex_unlock(&s->lock);
                        if (r >= 0) {
                                in = open(src, O_RDONLY | O_CLOEXEC);
                                r = in < 0 ? -errno : 0;
                        }
                        if (r >= 0)
                                r = out = tmp_create(s, to, &b->key, &tmp);
                        if (r >= 0)
                                r = copy_fd(in, out, b->size);
                        if (r >= 0 && s->levels[to].persistent && fsync(out) < 0)
                                r = -errno;
                        if (r >= 0 && rename(tmp, dst) < 0)
                                r = -errno;
                        if (r >= 0) {
                                free(tmp);
                                tmp = NULL;
                        }
                        pthread_mutex_lock(&s->lock);
                        s->levels[to].writing -= b->size;

                        if (r >= 0 && b->linked && b->pins == 0) {
                                if (unlink(src) < 0 && errno != ENOENT)
                                        log_warning_errno(errno,
                                                          "Failed to remove %s: %m, ignoring", src);
                                lru_unlink(&s->levels[from], b);
                                s->levels[from].used -= b->size;
                                s->levels[from].blocks--;
                                b->level = to;
                                s->levels[to].blocks++;
                                lru_append(&s->levels[to], b);
                                s->demotions++;
                                s->evictions++;
                                b->moving = false;
                                block_unref_locked(s, b);
                                return 0;
                        }
                        /* Copy failed, or B was pinned or dropped meanwhile: undo the copy. */
                        if (r >= 0 && unlink(dst) < 0 && errno != ENOENT)
                                log_warning_errno(errno, "Failed to remove %s: %m, ignoring", dst);
                        if (tmp)
                                (void)unlink(tmp);
                        s->levels[to].used -= b->size;
                        if (r < 0)
                                log_warning_errno(r,
                                                  "Failed to demote block to %s: %m, dropping it",
                                                  s->levels[to].dir);
                }
                b->moving = false;
                if (!b->linked) {
                        block_unref_locked(s, b);
                        return 0; /* gone anyway */
                }
                block_unref_locked(s, b);
                if (b->pins > 0)
                        return -EBUSY;
        }
        block_drop_locked(s, b);
        s->evictions++;
        return 0;
}

static store_block *lru_victim(store_level *l)
{
        for (store_block *b = l->lru_head; b; b = b->lru_next)
                if (b->pins == 0 && !b->moving)
                        return b;
        return NULL;
}

/* Whether the filesystem under LEVEL lacks room for SIZE more bytes besides what fills in progress
 * there will still write (counted whole, although some is written: the error is on the safe
 * side). The quota is what the operator allows; the filesystem may hold less (a small tmpfs,
 * a disk shared with others), and a fill that runs into ENOSPC would fail with nothing evicted.
 * statfs is a metadata call, cheap enough under the lock. */
static bool fs_short_locked(store *s, unsigned level, uint64_t size)
{
        store_level *l = &s->levels[level];
        struct statvfs sv;

        if (statvfs(l->dir, &sv) < 0)
                return false; /* unknown: the quota decides */
        return (uint64_t)sv.f_bavail * sv.f_frsize < l->writing + size;
}

/* Evicts from LEVEL until SIZE more bytes fit under its quota and in its filesystem. */
static int make_room_locked(store *s, unsigned level, uint64_t size)
{
        store_level *l = &s->levels[level];
        /* Bounds the work when blocks keep getting pinned under us. */
        uint64_t tries = l->blocks + 16;

        if (size > l->quota)
                return -ENOSPC;
        while (l->used + size > l->quota || fs_short_locked(s, level, size)) {
                store_block *v = lru_victim(l);

                if (!v || tries-- == 0)
                        return -ENOSPC;
                (void)evict_one_locked(s, v);
        }
        return 0;
}

static bool over_high_locked(const store *s)
{
        for (size_t i = 0; i < s->n_levels; i++)
                if (s->levels[i].used > s->levels[i].high_bytes)
                        return true;
        return false;
}

static int evict_watermarks_locked(store *s)
{
        int n = 0;

        for (unsigned i = 0; i < s->n_levels; i++) {
                store_level *l = &s->levels[i];
                uint64_t tries;

                if (l->used <= l->high_bytes)
                        continue;
                tries = l->blocks + 16;
                while (l->used > l->low_bytes && tries-- > 0) {
                        store_block *v = lru_victim(l);

                        if (!v)
                                break; /* the rest is pinned or being written */
                        if (evict_one_locked(s, v) >= 0)
                                n++;
                }
        }
        return n;
}

int store_evict(store *s)
{
        int n;

        pthread_mutex_lock(&s->lock);
        n = evict_watermarks_locked(s);
        pthread_mutex_unlock(&s->lock);
        return n;
}

static void *evictor_main(void *userdata)
{
        store *s = userdata;

        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                if (!over_high_locked(s)) {
                        pthread_cond_wait(&s->evict_cond, &s->lock);
                        continue;
                }
                if (evict_watermarks_locked(s) == 0 && over_high_locked(s)) {
                        /* Everything left is pinned or being written: wait for a change. */
                        pthread_cond_wait(&s->evict_cond, &s->lock);
                }
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void kick_evictor_locked(store *s)
{
        if (s->evictor_started && over_high_locked(s))
                pthread_cond_signal(&s->evict_cond);
}

/* ---- lifecycle and rebuild ---- */

/* -EPROTO: a block of an older checksum format (checksum.h), -EINVAL: not a block name. */
static int parse_block_name(const char *name, store_key *ret_key, uint64_t *ret_sum)
{
        const char *dot = strrchr(name, '.'), *hex;
        char stem[BLOCK_ID_MAX];
        uint64_t sum = 0;
        bool current;

        if (!dot || (size_t)(dot - name) >= sizeof(stem))
                return -EINVAL;
        current = strncmp(dot + 1, CHECKSUM_NAME_TAG, strlen(CHECKSUM_NAME_TAG)) == 0;
        hex = current ? dot + 1 + strlen(CHECKSUM_NAME_TAG) : dot + 1;
        if (strlen(hex) != 16)
                return -EINVAL;
        for (const char *p = hex; *p; p++) {
                int d = *p >= '0' && *p <= '9'   ? *p - '0'
                        : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                                                 : -1;

                if (d < 0)
                        return -EINVAL;
                sum = sum << 4 | (uint64_t)d;
        }
        memcpy(stem, name, dot - name);
        stem[dot - name] = 0;
        if (block_id_parse(stem, ret_key) < 0)
                return -EINVAL;
        if (!current)
                return -EPROTO;
        *ret_sum = sum;
        return 0;
}

/* "FILE-VERSION-INDEX.SUM", the names of block format 1 (no epoch). */
static bool is_v1_block_name(const char *name)
{
        const char *dot = strrchr(name, '.');
        char stem[BLOCK_ID_MAX];

        if (!dot || (size_t)(dot - name) >= sizeof(stem) || strlen(dot + 1) != 16 ||
            strspn(dot + 1, "0123456789abcdef") != 16)
                return false;
        memcpy(stem, name, dot - name);
        stem[dot - name] = 0;
        return block_id_is_v1(stem);
}

static int cmp_mtime(const void *a, const void *b)
{
        const store_block *x = *(store_block *const *)a, *y = *(store_block *const *)b;

        return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* Scans LEVEL's directory: removes temporaries, indexes block files in mtime order. A block found
 * on two levels (a crash between a demotion's rename and its unlink) keeps the faster copy. */
static int level_rebuild(store *s, unsigned level)
{
        store_level *l = &s->levels[level];
        _cleanup_(closedirp) DIR *d = opendir(l->dir);
        store_block **found = NULL;
        size_t n_found = 0, cap = 0, old_format = 0;
        struct dirent *de;
        int r = 0;

        if (!d)
                return log_error_errno(errno, "Failed to open %s: %m", l->dir);
        while ((de = readdir(d))) {
                struct stat st;
                store_key k;
                uint64_t sum;
                store_block *b;

                if (de->d_name[0] == '.' && (de->d_name[1] == 0 || strcmp(de->d_name, "..") == 0))
                        continue;
                if (strncmp(de->d_name, STORE_TMP_PREFIX, strlen(STORE_TMP_PREFIX)) == 0) {
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                                log_warning_errno(errno, "Failed to remove %s/%s: %m, ignoring",
                                                  l->dir, de->d_name);
                        else
                                log_debug("Removed temporary %s/%s", l->dir, de->d_name);
                        continue;
                }
                r = parse_block_name(de->d_name, &k, &sum);
                if (r == -EPROTO || (r < 0 && is_v1_block_name(de->d_name))) {
                        /* An older cache format: format 1 named blocks without the cluster's
                         * epoch (whose bytes they hold cannot be told any more), format 2 summed
                         * them with weir's own hash. Removed, never served nor verified with the
                         * wrong checksum; fetched again when read. */
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                                log_warning_errno(errno, "Failed to remove %s/%s: %m, ignoring",
                                                  l->dir, de->d_name);
                        else
                                old_format++;
                        r = 0;
                        continue;
                }
                if (r < 0) {
                        log_warning("Unexpected file %s/%s in the cache, ignoring", l->dir,
                                    de->d_name);
                        r = 0;
                        continue;
                }
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                if (index_find(s, &k)) {
                        (void)unlinkat(dirfd(d), de->d_name, 0);
                        continue;
                }
                if (n_found >= cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        store_block **nf = reallocarray(found, ncap, sizeof(*nf));

                        if (!nf) {
                                r = -ENOMEM;
                                break;
                        }
                        found = nf;
                        cap = ncap;
                }
                b = calloc(1, sizeof(*b));
                if (!b) {
                        r = -ENOMEM;
                        break;
                }
                *b = (store_block){.key = k,
                                   .size = (uint64_t)st.st_size,
                                   .sum = sum,
                                   .level = level,
                                   .state = BLOCK_READY,
                                   .mtime = (int64_t)st.st_mtime};
                r = index_add(s, b);
                if (r < 0) {
                        free(b);
                        break;
                }
                found[n_found++] = b;
        }
        if (found) {
                qsort(found, n_found, sizeof(*found), cmp_mtime);
                for (size_t i = 0; i < n_found; i++) {
                        lru_append(l, found[i]);
                        l->used += found[i]->size;
                        l->blocks++;
                }
        }
        free(found);
        if (old_format > 0)
                log_notice(
                        "Removed %zu blocks of an older cache format from %s (checksum format %d "
                        "now); they are fetched again when read.",
                        old_format, l->dir, CHECKSUM_FORMAT);
        return r;
}

store *store_free(store *s)
{
        if (!s)
                return NULL;
        if (s->evictor_started) {
                pthread_mutex_lock(&s->lock);
                s->stopping = true;
                pthread_cond_broadcast(&s->evict_cond);
                pthread_mutex_unlock(&s->lock);
                pthread_join(s->evictor, NULL);
        }
        size_t it;
        for (hmap_node *n = hmap_first(&s->index, &it); n; n = hmap_next(&s->index, n, &it)) {
                store_block *b = n->value;
                /* Blocks still referenced (a caller leaked a pin or a write) are leaked with it
                 * rather than freed under the caller. */
                if (b->refs == 0)
                        free(b);
        }
        hmap_done(&s->index);
        for (size_t i = 0; i < s->n_levels; i++)
                free(s->levels[i].dir);
        free(s->journal);
        pthread_cond_destroy(&s->evict_cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

int store_new(const store_level_spec *levels, size_t n_levels, unsigned flags, store **ret)
{
        _cleanup_(store_freep) store *s = NULL;
        int r;

        if (n_levels == 0 || n_levels > CONFIG_MAX_TIERS)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->evict_cond, NULL);
        s->flags = flags;
        hmap_init_mem(&s->index, sizeof(store_key));
        for (size_t i = 0; i < n_levels; i++) {
                store_level *l = &s->levels[i];

                if (!levels[i].dir || levels[i].quota == 0 || !(levels[i].low > 0) ||
                    !(levels[i].low < levels[i].high) || !(levels[i].high <= 1.0))
                        return -EINVAL;
                l->medium = levels[i].medium;
                l->dir = strdup(levels[i].dir);
                if (!l->dir)
                        return -ENOMEM;
                s->n_levels = i + 1;
                l->quota = levels[i].quota;
                l->high_bytes = (uint64_t)((double)l->quota * levels[i].high);
                l->low_bytes = (uint64_t)((double)l->quota * levels[i].low);
                l->persistent = l->medium != CONFIG_MEDIUM_MEM;
                r = mkdir_p(l->dir, 0750);
                if (r < 0)
                        return log_error_errno(r, "Failed to create %s: %m", l->dir);
        }
        for (unsigned i = 0; i < s->n_levels; i++) {
                r = level_rebuild(s, i);
                if (r < 0)
                        return r;
        }
        /* A quota lowered since the last run: get back under it before serving. */
        pthread_mutex_lock(&s->lock);
        for (unsigned i = 0; i < s->n_levels; i++)
                (void)make_room_locked(s, i, 0);
        (void)evict_watermarks_locked(s);
        pthread_mutex_unlock(&s->lock);

        if (flags & STORE_BACKGROUND_EVICTION) {
                r = -pthread_create(&s->evictor, NULL, evictor_main, s);
                if (r < 0)
                        return r;
                s->evictor_started = true;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- reading ---- */

int store_open(store *s, const store_key *k, store_block **ret_block, int *ret_fd,
               uint64_t *ret_size)
{
        char path[STORE_PATH_MAX];
        store_block *b;
        bool verified;
        int fd, r;

        pthread_mutex_lock(&s->lock);
        b = index_find(s, k);
        if (!b || b->state != BLOCK_READY) {
                pthread_mutex_unlock(&s->lock);
                return -ENOENT;
        }
        b->pins++;
        b->refs++;
        lru_unlink(&s->levels[b->level], b);
        lru_append(&s->levels[b->level], b);
        verified = b->verified;
        r = block_path(s, b, b->level, path, sizeof(path));
        pthread_mutex_unlock(&s->lock);

        /* Pinned: it cannot move or leave while we open it. */
        fd = r < 0 ? r : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                r = r < 0 ? r : -errno;
        if (fd >= 0 && !verified) {
                uint64_t sum;

                r = fd_checksum(fd, b->size, &sum);
                if (r >= 0 && sum != b->sum)
                        r = -EBADMSG;
        }
        if (r < 0) {
                fd = safe_close(fd);
                pthread_mutex_lock(&s->lock);
                if (r == -EBADMSG || r == -EIO)
                        s->checksum_failures++;
                log_warning_errno(r, "Cached block %s is unreadable or corrupt (%m), dropping it",
                                  path);
                b->pins--;
                if (b->linked)
                        block_drop_locked(s, b);
                block_unref_locked(s, b);
                pthread_mutex_unlock(&s->lock);
                return -ENOENT;
        }
        if (!verified) {
                pthread_mutex_lock(&s->lock);
                b->verified = true;
                pthread_mutex_unlock(&s->lock);
        }
        *ret_block = b;
        *ret_fd = fd;
        *ret_size = b->size;
        return 0;
}

void store_release(store *s, store_block *b)
{
        if (!b)
                return;
        pthread_mutex_lock(&s->lock);
        b->pins--;
        block_unref_locked(s, b);
        pthread_mutex_unlock(&s->lock);
}

bool store_contains(store *s, const store_key *k)
{
        store_block *b;
        bool yes;

        pthread_mutex_lock(&s->lock);
        b = index_find(s, k);
        yes = b && b->state == BLOCK_READY;
        pthread_mutex_unlock(&s->lock);
        return yes;
}

/* ---- writing ---- */

int store_begin(store *s, const store_key *k, uint64_t size, store_write **ret)
{
        _cleanup_free_ store_write *w = calloc(1, sizeof(*w));
        store_block *b, *old;
        int r = -ENOSPC;

        if (!w)
                return -ENOMEM;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        pthread_mutex_lock(&s->lock);
        old = index_find(s, k);
        if (old) {
                pthread_mutex_unlock(&s->lock);
                free(b);
                return old->state == BLOCK_READY ? -EEXIST : -EBUSY;
        }
        *b = (store_block){.key = *k, .size = size, .state = BLOCK_WRITING, .refs = 1};
        /* In the index from now on, so that a second writer of the same block gets -EBUSY even
         * while make_room_locked() drops the lock. */
        r = index_add(s, b);
        if (r < 0) {
                pthread_mutex_unlock(&s->lock);
                free(b);
                return r;
        }
        r = -ENOSPC;
        for (unsigned i = 0; i < s->n_levels; i++) {
                r = make_room_locked(s, i, size);
                if (r >= 0) {
                        s->levels[i].used += size;
                        s->levels[i].writing += size;
                        b->level = i;
                        break;
                }
        }
        if (r < 0) {
                index_remove(s, b);
                block_unref_locked(s, b);
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        kick_evictor_locked(s);
        pthread_mutex_unlock(&s->lock);

        w->block = b;
        w->fd = tmp_create(s, b->level, k, &w->tmp_path);
        if (w->fd < 0) {
                r = w->fd;
                w->fd = -1;
                store_abort(s, TAKE_PTR(w));
                return r;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

int store_write_fd(const store_write *w)
{
        return w->fd;
}

void store_abort(store *s, store_write *w)
{
        store_block *b;

        if (!w)
                return;
        b = w->block;
        if (w->tmp_path && unlink(w->tmp_path) < 0 && errno != ENOENT)
                log_warning_errno(errno, "Failed to remove %s: %m, ignoring", w->tmp_path);
        safe_close(w->fd);
        free(w->tmp_path);
        free(w);
        pthread_mutex_lock(&s->lock);
        s->levels[b->level].used -= b->size;
        s->levels[b->level].writing -= b->size;
        index_remove(s, b);
        block_unref_locked(s, b);
        pthread_cond_broadcast(&s->evict_cond);
        pthread_mutex_unlock(&s->lock);
}

/* SUM: the block's checksum as the writer computed it from the bytes it wrote, or NULL to
 * compute it from the file. */
static int commit(store *s, store_write *w, const uint64_t *sum)
{
        store_block *b = w->block;
        store_level *l = &s->levels[b->level];
        char path[STORE_PATH_MAX];
        struct stat st;
        int r = 0;

        if (sum) {
                if (fstat(w->fd, &st) < 0)
                        r = -errno;
                else if ((uint64_t)st.st_size != b->size)
                        r = -EIO;
                else
                        b->sum = *sum; /* not yet visible to anyone else: state is WRITING */
        } else
                r = fd_checksum(w->fd, b->size, &b->sum);
        if (r >= 0 && l->persistent && fsync(w->fd) < 0)
                r = -errno;
        if (r >= 0)
                r = block_path(s, b, b->level, path, sizeof(path));
        if (r >= 0 && rename(w->tmp_path, path) < 0)
                r = -errno;
        if (r < 0) {
                store_abort(s, w);
                return r;
        }
        safe_close(w->fd);
        free(w->tmp_path);
        free(w);

        pthread_mutex_lock(&s->lock);
        l->writing -= b->size;
        b->state = BLOCK_READY;
        b->verified = true;
        l->blocks++;
        lru_append(l, b);
        journal_add(s, &b->key, true);
        block_unref_locked(s, b);
        kick_evictor_locked(s);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

int store_commit(store *s, store_write *w)
{
        return commit(s, w, NULL);
}

int store_commit_sum(store *s, store_write *w, uint64_t sum)
{
        return commit(s, w, &sum);
}

/* ---- administration ---- */

uint64_t store_drop(store *s, uint64_t bytes)
{
        uint64_t freed = 0;

        pthread_mutex_lock(&s->lock);
        /* Slowest level first: what is dropped is what is least likely to be read soon. */
        for (size_t i = s->n_levels; i-- > 0 && (bytes == 0 || freed < bytes);) {
                store_level *l = &s->levels[i];

                for (store_block *b = l->lru_head, *next; b && (bytes == 0 || freed < bytes);
                     b = next) {
                        next = b->lru_next;
                        if (b->pins > 0 || b->moving)
                                continue;
                        freed += b->size;
                        block_drop_locked(s, b);
                        s->evictions++;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return freed;
}

int store_reclaim(store *s, const store_write *w)
{
        store_level *l;
        uint64_t tries;
        int r = -ENOSPC;

        pthread_mutex_lock(&s->lock);
        l = &s->levels[w->block->level];
        tries = l->blocks + 16;
        /* Down to no reservation at all, not only this one: the filesystem said it is full. */
        while (fs_short_locked(s, w->block->level, 0) && tries-- > 0) {
                store_block *v = lru_victim(l);

                if (!v)
                        break;
                if (evict_one_locked(s, v) >= 0)
                        r = 0;
        }
        if (!fs_short_locked(s, w->block->level, 0))
                r = 0;
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_remove(store *s, const store_key *k)
{
        store_block *b;
        int r = -ENOENT;

        pthread_mutex_lock(&s->lock);
        b = index_find(s, k);
        if (b && b->state == BLOCK_READY) {
                if (b->pins > 0 || b->moving)
                        r = -EBUSY;
                else {
                        block_drop_locked(s, b);
                        s->evictions++;
                        r = 0;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

void store_get_stats(store *s, store_stats *ret)
{
        store_stats st = {.n_levels = s->n_levels};

        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n_levels; i++) {
                const store_level *l = &s->levels[i];

                st.levels[i] = (store_level_stats){.medium = l->medium,
                                                   .dir = l->dir,
                                                   .quota = l->quota,
                                                   .used = l->used,
                                                   .blocks = l->blocks};
                st.quota += l->quota;
                st.used += l->used;
                st.blocks += l->blocks;
        }
        st.evictions = s->evictions;
        st.demotions = s->demotions;
        st.checksum_failures = s->checksum_failures;
        pthread_mutex_unlock(&s->lock);
        *ret = st;
}

int store_list(store *s, store_key **ret_keys, size_t *ret_n)
{
        store_key *keys;
        size_t n = 0;

        pthread_mutex_lock(&s->lock);
        keys = calloc(s->n_blocks + 1, sizeof(*keys));
        if (!keys) {
                pthread_mutex_unlock(&s->lock);
                return -ENOMEM;
        }
        size_t it;
        for (hmap_node *e = hmap_first(&s->index, &it); e; e = hmap_next(&s->index, e, &it)) {
                const store_block *b = e->value;
                if (b->state == BLOCK_READY)
                        keys[n++] = b->key;
        }
        /* A full report supersedes the changes journaled so far. */
        s->n_journal = 0;
        s->journal_overflow = false;
        pthread_mutex_unlock(&s->lock);
        *ret_keys = keys;
        *ret_n = n;
        return 0;
}

typedef struct tagged_change {
        journal_entry e;
        size_t pos;
} tagged_change;

static int cmp_tagged(const void *a, const void *b)
{
        const tagged_change *x = a, *y = b;
        if (x->e.key.epoch != y->e.key.epoch)
                return x->e.key.epoch < y->e.key.epoch ? -1 : 1;
        if (x->e.key.file_id != y->e.key.file_id)
                return x->e.key.file_id < y->e.key.file_id ? -1 : 1;
        if (x->e.key.version != y->e.key.version)
                return x->e.key.version < y->e.key.version ? -1 : 1;
        if (x->e.key.index != y->e.key.index)
                return x->e.key.index < y->e.key.index ? -1 : 1;
        return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int store_take_changes(store *s, store_key **ret_added, size_t *ret_n_added,
                       store_key **ret_removed, size_t *ret_n_removed)
{
        _cleanup_free_ journal_entry *j = NULL;
        _cleanup_free_ tagged_change *t = NULL;
        _cleanup_free_ store_key *added = NULL, *removed = NULL;
        size_t n, n_added = 0, n_removed = 0;
        bool overflow;

        pthread_mutex_lock(&s->lock);
        j = TAKE_PTR(s->journal);
        n = s->n_journal;
        overflow = s->journal_overflow;
        s->n_journal = s->journal_cap = 0;
        s->journal_overflow = false;
        pthread_mutex_unlock(&s->lock);
        if (overflow)
                return -ENOBUFS; /* the caller sends a full report instead */

        added = calloc(n + 1, sizeof(*added));
        removed = calloc(n + 1, sizeof(*removed));
        t = calloc(n + 1, sizeof(*t));
        if (!added || !removed || !t)
                return -ENOMEM;
        /* Sort by key, then by journal position: the last change of each key decides. */
        for (size_t i = 0; i < n; i++)
                t[i] = (tagged_change){.e = j[i], .pos = i};
        qsort(t, n, sizeof(*t), cmp_tagged);
        for (size_t i = 0; i < n; i++) {
                if (i + 1 < n && block_key_equal(&t[i].e.key, &t[i + 1].e.key))
                        continue;
                if (t[i].e.added)
                        added[n_added++] = t[i].e.key;
                else
                        removed[n_removed++] = t[i].e.key;
        }
        *ret_added = TAKE_PTR(added);
        *ret_n_added = n_added;
        *ret_removed = TAKE_PTR(removed);
        *ret_n_removed = n_removed;
        return 0;
}
