/* Metadata sync: lists each dataset's mounts in parallel threads, compares every directory with
 * the stored tree and commits only the differences from the loop (see sync.h).
 *
 * Threads: per running sync, one coordinator thread starts SYNC_LIST_THREADS listers and joins
 * them; listers take directories off the job's work queue and append changes to its change
 * queue. job->lock guards both queues, the counters and the error; job->cond wakes listers (new
 * work, space in the change queue, an error). The loop thread alone sends commands; it is woken
 * through sm->async (an eventfd, loopwake.h: the loop may be real-time) and reads the queues under
 * job->lock (priority inheritance: a lister holding it runs while the loop waits). */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "fsm.h"
#include "log.h"
#include "loopwake.h"
#include "loopwatch.h"
#include "sync-minute.h"
#include "sync.h"
#include "timeutil.h"
#include "ufs/ufs.h"

typedef struct sync_job sync_job;
typedef struct sync_ds sync_ds;

struct sync_manager {
        manager *m;
        sync_ds *ds;
        size_t n_ds;
        bool leader;
        uint64_t seq;
        bool attached;  /* loop handles initialised (on the first hook call, on the loop) */
        loopwake async; /* not uv_async: see loopwake.h */
        unsigned open_handles;
};

struct sync_ds {
        sync_manager *sm;
        const config_dataset *cfg;
        uv_timer_t timer; /* the next periodic sync or retry */
        sync_job *job;    /* the running sync, NULL if none */
        bool again;       /* asked for while one ran */
        unsigned failures;
        int64_t *prev_dates; /* per mount: see sync_job.dates; loop thread only */
        size_t n_prev_dates;
};

typedef enum change_kind {
        CHANGE_FILE,
        CHANGE_DIR,
        CHANGE_DELETE,
} change_kind;

/* One difference between the store and the state machine. */
typedef struct change {
        char *path; /* "/MOUNT/..." */
        change_kind kind;
        uint64_t size;
        int64_t mtime;
        char *etag; /* NULL = none */
} change;

typedef struct change_list {
        change *items;
        size_t n, allocated;
} change_list;

typedef struct dir_item {
        struct dir_item *next;
        size_t mount;
        char *path; /* relative to the mount, "" for its root */
        unsigned depth;
} dir_item;

struct sync_job {
        sync_ds *ds;
        char sync_id[160];
        pthread_t thread; /* the coordinator */
        bool joined;      /* loop thread only */
        atomic_bool cancel;
        struct timespec started;
        json_t *urls; /* written by the coordinator before walk_done */

        pthread_mutex_t lock; /* guards what follows, up to the loop's part */
        pthread_cond_t cond;
        dir_item *work_head, *work_tail;
        unsigned busy;   /* listers working on a directory */
        change_list out; /* changes not yet taken by the loop, from out_first on */
        size_t out_first;
        bool walk_done;
        int error;
        char message[512];
        uint64_t entries, dirs, heads, changes;
        /* Per mount: the earliest Date of the store's listings (-1: one had none), for the next
         * sync's minute rule (sync-minute.h); prev_dates: the previous completed sync's. */
        int64_t *dates, *prev_dates;
        bool minutes_warned;

        /* The loop's part. */
        bool begun, committing, aborting, finished;
        unsigned inflight;
        int apply_error; /* a refused or failed command */
};

static double elapsed(const struct timespec *since)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)(ts.tv_sec - since->tv_sec) + (double)(ts.tv_nsec - since->tv_nsec) / 1e9;
}

static void change_done(change *c)
{
        free(c->path);
        free(c->etag);
        *c = (change){};
}

static void change_list_done(change_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                change_done(&l->items[i]);
        free(l->items);
        *l = (change_list){};
}

static int change_add(change_list *l, change_kind kind, const char *path, uint64_t size,
                      int64_t mtime, const char *etag)
{
        if (!ARRAY_GROW(l->items, l->allocated, l->n + 1))
                return -ENOMEM;
        change c = {.kind = kind, .size = size, .mtime = mtime, .path = strdup(path)};
        if (!c.path || (etag && *etag && !(c.etag = strdup(etag)))) {
                change_done(&c);
                return -ENOMEM;
        }
        l->items[l->n++] = c;
        return 0;
}

/* Under job->lock. */
static int job_fail_locked(sync_job *j, int err, const char *format, ...) _printf_(3, 4);
static int job_fail_locked(sync_job *j, int err, const char *format, ...)
{
        va_list ap;

        if (j->error < 0)
                return err; /* keep the first */
        j->error = err;
        va_start(ap, format);
        vsnprintf(j->message, sizeof j->message, format, ap);
        va_end(ap);
        pthread_cond_broadcast(&j->cond);
        return err;
}

#define job_fail(j, err, ...)                                                                      \
        ({                                                                                         \
                pthread_mutex_lock(&(j)->lock);                                                    \
                int _r = job_fail_locked(j, err, __VA_ARGS__);                                     \
                pthread_mutex_unlock(&(j)->lock);                                                  \
                _r;                                                                                \
        })

static void job_wake_loop(sync_job *j)
{
        loopwake_send(&j->ds->sm->async);
}

static bool job_stopped(sync_job *j)
{
        return atomic_load(&j->cancel) || j->error < 0;
}

/* ---- reading the stored tree ---- */

typedef struct stored_child {
        char *name;
        bool dir;
        uint64_t size;
        int64_t mtime;
        char *etag;
} stored_child;

typedef struct stored_list {
        stored_child *items;
        size_t n, allocated;
} stored_list;

static void stored_list_done(stored_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].name);
                free(l->items[i].etag);
        }
        free(l->items);
        *l = (stored_list){};
}

static int stored_add(const fsm_child *c, void *userdata)
{
        stored_list *l = userdata;

        if (l->n == l->allocated) {
                size_t a = l->allocated ? l->allocated * 2 : 64;
                stored_child *x = reallocarray(l->items, a, sizeof *x);
                if (!x)
                        return -ENOMEM;
                l->items = x;
                l->allocated = a;
        }
        stored_child s = {
                .name = strdup(c->name),
                .dir = c->dir,
                .size = c->size,
                .mtime = c->mtime,
                .etag = strdup(c->etag),
        };
        if (!s.name || !s.etag) {
                free(s.name);
                free(s.etag);
                return -ENOMEM;
        }
        l->items[l->n++] = s;
        return 0;
}

typedef struct children_query {
        const char *dataset, *path;
        stored_list *list;
        int r;
} children_query;

static void read_children(fsm *f, void *userdata)
{
        children_query *q = userdata;
        q->r = fsm_children(f, q->dataset, q->path, stored_add, q->list);
}

/* The stored children of PATH, in name order; none when PATH is not a stored directory. */
static int stored_children(sync_job *j, const char *path, stored_list *ret)
{
        children_query q = {.dataset = j->ds->cfg->name, .path = path, .list = ret};

        manager_read_fsm(j->ds->sm->m, read_children, &q);
        if (q.r == -ENOENT || q.r == -ENOTDIR) {
                stored_list_done(ret);
                return 0;
        }
        return q.r;
}

/* Deletes of everything stored under directory PATH, deepest first (the state machine removes a
 * directory only when empty). */
static int delete_subtree(sync_job *j, const char *path, change_list *out)
{
        _cleanup_(stored_list_done) stored_list l = {};
        int r = stored_children(j, path, &l);

        for (size_t i = 0; r >= 0 && i < l.n; i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", path, l.items[i].name) < 0)
                        return -ENOMEM;
                if (l.items[i].dir)
                        r = delete_subtree(j, p, out);
                if (r >= 0)
                        r = change_add(out, CHANGE_DELETE, p, 0, 0, NULL);
        }
        return r;
}

/* ---- listing one directory ---- */

typedef struct lister {
        sync_job *j;
        ufs **handles; /* per mount, opened on first use */
        /* Per mount: whether a HEAD confirmed that the listing's minutes are the files' (0: not
         * yet, 1: yes, -1: no, e.g. nginx's autoindex_localtime: HEAD every file). */
        signed char *minutes_ok;
} lister;

static ufs *lister_handle(lister *l, size_t mount)
{
        const config_mount *mc = &l->j->ds->cfg->mounts[mount];

        if (!l->handles[mount]) {
                int r = ufs_open(mc, &l->handles[mount]);
                if (r < 0) {
                        /* Not the URL: it may carry credentials. */
                        job_fail(l->j, r, "Cannot open the store of mount %s: %s", mc->name,
                                 r == -EPROTONOSUPPORT ? "no backend for this scheme"
                                                       : strerror(-r));
                        return NULL;
                }
                ufs_set_cancel(l->handles[mount], &l->j->cancel);
        }
        return l->handles[mount];
}

static int entry_compare(const void *a, const void *b)
{
        return strcmp(((const ufs_entry *)a)->name, ((const ufs_entry *)b)->name);
}

/* Whether the listing's values for a file show it unchanged, changed, or cannot tell. */
typedef enum verdict {
        SAME,
        CHANGED, /* and the listing's values are exact: use them */
        MINUTE,  /* a version from a listing with minutes (sync-minute.h) */
        ASK,     /* HEAD it */
        CHECK,   /* HEAD it, and compare with the listed minute */
} verdict;

static verdict compare_file(ufs_exactness x, const ufs_entry *e, const stored_child *s)
{
        switch (x) {
        case UFS_EXACT:
                if (s && s->size == e->version.size && s->mtime == e->version.mtime &&
                    (!e->version.etag || strcmp(s->etag, e->version.etag) == 0))
                        return SAME;
                return CHANGED;
        default:
                return ASK; /* UFS_EXACT_SIZE: see minute_verdict() */
        }
}

static sync_minute_stored minute_stored(const stored_child *s)
{
        return (sync_minute_stored){.size = s->size, .mtime = s->mtime, .etag = s->etag};
}

/* For a listing with exact sizes and times to the minute (nginx's HTML index). Until a HEAD of
 * this lister confirmed that the page's minutes are the files' own (not local time), the first
 * file it would take from the page is HEADed and compared instead. A file whose stored version
 * the page matches needs no check: that version was a confirmed page's or a HEAD's. */
static verdict minute_verdict(lister *l, size_t mount, const ufs_entry *e, const stored_child *s,
                              int64_t date)
{
        sync_minute_stored st = s ? minute_stored(s) : (sync_minute_stored){};
        sync_minute_verdict v =
                sync_minute_judge(&e->version, date, l->j->prev_dates[mount], s ? &st : NULL);

        if (v == SYNC_MINUTE_ASK || l->minutes_ok[mount] < 0)
                return ASK;
        if (v == SYNC_MINUTE_SAME)
                return SAME;
        return l->minutes_ok[mount] == 0 ? CHECK : MINUTE;
}

/* HEADs REL and adds the file's change unless it equals S; *RET_MTIME (if not NULL) is the mtime
 * the store gave, 0 when it gave none. */
static int head_file(lister *l, ufs *u, const char *rel, const char *path, const stored_child *s,
                     change_list *out, int64_t *ret_mtime)
{
        ufs_version v = {};
        int r;

        pthread_mutex_lock(&l->j->lock);
        l->j->heads++;
        pthread_mutex_unlock(&l->j->lock);
        r = ufs_stat(u, rel, &v);
        if (r == -ENOENT || r == -EACCES) {
                /* Gone since the listing, or listed but not served (a 403 for one file of a
                 * mirror): not part of the dataset, not a failed sync. */
                log_debug("Leaving out %s: %s", rel, ufs_last_error(u));
                return s ? change_add(out, CHANGE_DELETE, path, 0, 0, NULL) : 0;
        }
        if (r < 0)
                return job_fail(l->j, r, "%s", ufs_last_error(u));
        if (ret_mtime)
                *ret_mtime = v.mtime;
        sync_minute_stored st = s ? minute_stored(s) : (sync_minute_stored){};
        if (s && sync_minute_head_same(&st, &v))
                r = 0;
        else
                r = change_add(out, CHANGE_FILE, path, v.size, v.mtime, v.etag);
        ufs_version_done(&v);
        return r;
}

static char *join(const char *a, const char *b)
{
        char *s;

        if (!*a)
                return strdup(b);
        if (asprintf(&s, "%s/%s", a, b) < 0)
                return NULL;
        return s;
}

/* Hands CHANGES and the subdirectories to list (SUBDIRS, taken) to the job; waits while the loop
 * has SYNC_QUEUE_MAX changes to send. */
static int job_publish(sync_job *j, change_list *changes, dir_item *subdirs)
{
        pthread_mutex_lock(&j->lock);
        while (j->out.n - j->out_first >= SYNC_QUEUE_MAX && !job_stopped(j))
                pthread_cond_wait(&j->cond, &j->lock);
        if (job_stopped(j)) {
                pthread_mutex_unlock(&j->lock);
                while (subdirs) {
                        dir_item *d = subdirs;
                        subdirs = d->next;
                        free(d->path);
                        free(d);
                }
                return -ECANCELED;
        }
        if (changes->n > 0) {
                /* Compact what the loop already took before growing. */
                if (j->out_first > 0) {
                        memmove(j->out.items, j->out.items + j->out_first,
                                (j->out.n - j->out_first) * sizeof(change));
                        j->out.n -= j->out_first;
                        j->out_first = 0;
                }
                if (j->out.n + changes->n > j->out.allocated) {
                        size_t a = MAX(j->out.allocated * 2, j->out.n + changes->n);
                        change *x = reallocarray(j->out.items, a, sizeof *x);
                        if (!x) {
                                pthread_mutex_unlock(&j->lock);
                                return job_fail(j, -ENOMEM, "Out of memory");
                        }
                        j->out.items = x;
                        j->out.allocated = a;
                }
                memcpy(j->out.items + j->out.n, changes->items, changes->n * sizeof(change));
                j->out.n += changes->n;
                j->changes += changes->n;
                changes->n = 0;
        }
        bool wake = j->out.n - j->out_first >= SYNC_BATCH;
        while (subdirs) {
                dir_item *d = subdirs;
                subdirs = d->next;
                d->next = NULL;
                if (j->work_tail)
                        j->work_tail->next = d;
                else
                        j->work_head = d;
                j->work_tail = d;
        }
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&j->lock);
        if (wake)
                job_wake_loop(j);
        return 0;
}

/* The first HEAD of a file this lister would have trusted: does the page show its minute? */
static void minutes_checked(lister *l, size_t mount, const ufs_entry *e, int64_t mtime)
{
        sync_job *j = l->j;
        bool ok = sync_minute_floor(mtime) == e->version.mtime, warn;

        if (l->minutes_ok[mount] != 0)
                return;
        l->minutes_ok[mount] = ok ? 1 : -1;
        if (ok)
                return;
        pthread_mutex_lock(&j->lock);
        warn = !j->minutes_warned;
        j->minutes_warned = true;
        pthread_mutex_unlock(&j->lock);
        if (warn)
                log_warning("Sync of %s: the index of mount %s shows %s in another minute than "
                            "its Last-Modified (changed since, or a page in local time: nginx's "
                            "autoindex_localtime): its files are HEADed, ignoring",
                            j->ds->cfg->name, j->ds->cfg->mounts[mount].name, e->name);
}

static int list_dir(lister *l, const dir_item *item)
{
        sync_job *j = l->j;
        const config_dataset *d = j->ds->cfg;
        const config_mount *mount = &d->mounts[item->mount];
        _cleanup_(change_list_done) change_list out = {};
        _cleanup_(stored_list_done) stored_list stored = {};
        _cleanup_free_ char *store_path = NULL;
        dir_item *subdirs = NULL, **tail = &subdirs;
        ufs_entry *e = NULL;
        size_t n = 0;
        int r;

        ufs *u = lister_handle(l, item->mount);
        if (!u)
                return -EIO;
        if (item->depth > UFS_MAX_DEPTH)
                return job_fail(j, -ELOOP,
                                "Mount %s: deeper than %u levels at %s (a listing that loops?)",
                                mount->name, UFS_MAX_DEPTH, item->path);
        if (asprintf(&store_path, "/%s%s%s", mount->name, *item->path ? "/" : "", item->path) < 0)
                return job_fail(j, -ENOMEM, "Out of memory");

        r = ufs_list(u, item->path, &e, &n);
        if ((r == -ENOENT || r == -EACCES) && *item->path) {
                /* A subdirectory that went away or may not be listed: leave it out. The mount's
                 * root failing is the sync failing (wrong credentials, wrong URL). */
                log_debug("Leaving out directory %s: %s", item->path, ufs_last_error(u));
                r = delete_subtree(j, store_path, &out);
                if (r >= 0)
                        r = change_add(&out, CHANGE_DELETE, store_path, 0, 0, NULL);
                if (r < 0)
                        return job_fail(j, r, "Out of memory");
                return job_publish(j, &out, NULL);
        }
        if (r < 0)
                return job_fail(j, r, "%s", ufs_last_error(u));
        ufs_exactness x = ufs_list_exactness(u);
        int64_t date = ufs_list_date(u);

        pthread_mutex_lock(&j->lock);
        j->entries += n;
        j->dirs++;
        if (date <= 0)
                j->dates[item->mount] = -1;
        else if (j->dates[item->mount] == 0 ||
                 (j->dates[item->mount] > 0 && date < j->dates[item->mount]))
                j->dates[item->mount] = date;
        bool over = j->entries > d->max_entries;
        pthread_mutex_unlock(&j->lock);
        if (over) {
                ufs_entries_free(e, n);
                return job_fail(j, -E2BIG,
                                "Dataset %s has more than %" PRIu64
                                " entries (files and directories); raise spec.maxEntries to sync "
                                "it",
                                d->name, d->max_entries);
        }
        /* Names a FUSE mount cannot show (NAME_MAX) are left out here, not refused by the
         * state machine at every sync. */
        size_t kept = 0, dropped = 0;
        for (size_t i = 0; i < n; i++) {
                if (strlen(e[i].name) > STORE_MAX_NAME) {
                        free(e[i].name);
                        ufs_version_done(&e[i].version);
                        dropped++;
                        continue;
                }
                e[kept++] = e[i];
        }
        n = kept;
        if (dropped)
                log_warning("Sync of %s: %zu names longer than %u bytes left out in %s.", d->name,
                            dropped, STORE_MAX_NAME, store_path);
        if (n > 1) /* qsort() of an empty listing would get NULL (UBSan) */
                qsort(e, n, sizeof *e, entry_compare);

        r = stored_children(j, store_path, &stored);
        if (r < 0) {
                ufs_entries_free(e, n);
                return job_fail(j, r, "Cannot read the stored tree at %s: %s", store_path,
                                strerror(-r));
        }

        /* Merge the two sorted lists. */
        size_t a = 0, b = 0;
        while (r >= 0 && (a < n || b < stored.n) && !job_stopped(j)) {
                int c = a == n ? 1 : b == stored.n ? -1 : strcmp(e[a].name, stored.items[b].name);
                const ufs_entry *le = c <= 0 ? &e[a] : NULL;
                const stored_child *se = c >= 0 ? &stored.items[b] : NULL;
                _cleanup_free_ char *path = NULL, *rel = NULL;

                a += c <= 0;
                b += c >= 0;
                if (asprintf(&path, "%s/%s", store_path, le ? le->name : se->name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                /* Removed, or replaced by one of the other type: the old one goes first. */
                if (se && (!le || le->dir != se->dir)) {
                        if (se->dir)
                                r = delete_subtree(j, path, &out);
                        if (r >= 0)
                                r = change_add(&out, CHANGE_DELETE, path, 0, 0, NULL);
                        se = NULL;
                }
                if (!le || r < 0)
                        continue;
                rel = join(item->path, le->name);
                if (!rel) {
                        r = -ENOMEM;
                        break;
                }
                if (le->dir) {
                        if (!se)
                                r = change_add(&out, CHANGE_DIR, path, 0, 0, NULL);
                        dir_item *di = calloc(1, sizeof *di);
                        if (!di) {
                                r = -ENOMEM;
                                break;
                        }
                        *di = (dir_item){.mount = item->mount,
                                         .path = TAKE_PTR(rel),
                                         .depth = item->depth + 1};
                        *tail = di;
                        tail = &di->next;
                        continue;
                }
                verdict v = x == UFS_EXACT_SIZE ? minute_verdict(l, item->mount, le, se, date)
                                                : compare_file(x, le, se);
                int64_t mtime = 0;
                switch (v) {
                case SAME:
                        break;
                case CHANGED:
                        r = change_add(&out, CHANGE_FILE, path, le->version.size, le->version.mtime,
                                       le->version.etag);
                        break;
                case MINUTE:
                        r = change_add(&out, CHANGE_FILE, path, le->version.size, le->version.mtime,
                                       UFS_ETAG_MINUTE);
                        break;
                case ASK:
                        r = head_file(l, u, rel, path, se, &out, NULL);
                        break;
                case CHECK:
                        r = head_file(l, u, rel, path, se, &out, &mtime);
                        if (r >= 0 && mtime > 0)
                                minutes_checked(l, item->mount, le, mtime);
                        break;
                }
        }
        ufs_entries_free(e, n);
        if (r < 0) {
                while (subdirs) {
                        dir_item *di = subdirs;
                        subdirs = di->next;
                        free(di->path);
                        free(di);
                }
                return j->error < 0 ? j->error : job_fail(j, r, "Out of memory");
        }
        return job_publish(j, &out, subdirs);
}

/* The walk yields the CPU to the loop thread, whose raft heartbeats must not wait for it. */
static void walk_thread_priority(void)
{
        loopwatch_thread_normal(); /* started by a real-time loop thread */
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, (id_t)gettid());
        if (errno == 0 &&
            setpriority(PRIO_PROCESS, (id_t)gettid(), MIN(nice + SYNC_THREAD_NICE, 19)) < 0)
                log_debug_errno(errno, "setpriority: %m, ignoring");
}

static void *lister_thread(void *arg)
{
        lister *l = arg;
        sync_job *j = l->j;

        walk_thread_priority();
        pthread_mutex_lock(&j->lock);
        for (;;) {
                while (!j->work_head && j->busy > 0 && !job_stopped(j))
                        pthread_cond_wait(&j->cond, &j->lock);
                if (job_stopped(j) || !j->work_head)
                        break; /* stopped, or no work and nobody who could add some */
                dir_item *item = j->work_head;
                j->work_head = item->next;
                if (!j->work_head)
                        j->work_tail = NULL;
                j->busy++;
                pthread_mutex_unlock(&j->lock);

                (void)list_dir(l, item);
                free(item->path);
                free(item);

                pthread_mutex_lock(&j->lock);
                j->busy--;
                pthread_cond_broadcast(&j->cond);
        }
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&j->lock);
        return NULL;
}

/* How a mount's store URLs are made from paths, for ufs_url in listings: PREFIX + the path,
 * percent-encoded when ESCAPE. Learned from the backend itself. */
static int mount_url_rule(sync_job *j, const config_mount *mc, json_t *urls)
{
        ufs *u = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;
        int r = ufs_open(mc, &u);

        if (r < 0)
                return 0; /* the walk reports it */
        a = ufs_url(u, "a");
        b = ufs_url(u, "a b");
        ufs_free(u);
        if (!a || !b)
                return -ENOMEM;
        size_t la = strlen(a), lb = strlen(b);
        if (la < 1 || a[la - 1] != 'a')
                return 0;
        a[la - 1] = 0;
        bool escape = lb >= 5 && strcmp(b + lb - 5, "a%20b") == 0;
        json_t *rule = json_pack("{s:s,s:b}", "prefix", a, "escape", escape);
        if (!rule || json_object_set_new(urls, mc->name, rule) < 0)
                return -ENOMEM;
        return 0;
}

static void *coordinator_thread(void *arg)
{
        sync_job *j = arg;
        const config_dataset *d = j->ds->cfg;
        _cleanup_(change_list_done) change_list root_changes = {};
        _cleanup_(stored_list_done) stored_list stored = {};
        dir_item *roots = NULL, **tail = &roots;
        lister listers[SYNC_LIST_THREADS] = {};
        pthread_t threads[SYNC_LIST_THREADS];
        size_t started = 0;
        int r;

        walk_thread_priority();
        json_t *urls = json_object();
        for (size_t i = 0; urls && i < d->n_mounts; i++)
                if (mount_url_rule(j, &d->mounts[i], urls) < 0) {
                        json_decref(urls);
                        urls = NULL;
                }
        if (!urls) {
                job_fail(j, -ENOMEM, "Out of memory");
                goto done;
        }
        j->urls = urls;

        /* The dataset's root holds one directory per mount: mounts gone from the YAML go. */
        r = stored_children(j, "/", &stored);
        for (size_t i = 0; r >= 0 && i < stored.n; i++) {
                bool configured = false;
                for (size_t k = 0; k < d->n_mounts; k++)
                        configured |= strcmp(d->mounts[k].name, stored.items[i].name) == 0;
                if (configured && stored.items[i].dir)
                        continue;
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "/%s", stored.items[i].name) < 0)
                        r = -ENOMEM;
                if (r >= 0 && stored.items[i].dir)
                        r = delete_subtree(j, p, &root_changes);
                if (r >= 0)
                        r = change_add(&root_changes, CHANGE_DELETE, p, 0, 0, NULL);
        }
        for (size_t i = 0; r >= 0 && i < d->n_mounts; i++) {
                dir_item *di = calloc(1, sizeof *di);
                if (!di || !(di->path = strdup(""))) {
                        free(di);
                        r = -ENOMEM;
                        break;
                }
                di->mount = i;
                *tail = di;
                tail = &di->next;
                bool stored_dir = false;
                for (size_t k = 0; k < stored.n; k++)
                        stored_dir |= stored.items[k].dir &&
                                      strcmp(d->mounts[i].name, stored.items[k].name) == 0;
                if (!stored_dir) {
                        _cleanup_free_ char *p = NULL;
                        if (asprintf(&p, "/%s", d->mounts[i].name) < 0)
                                r = -ENOMEM;
                        else
                                r = change_add(&root_changes, CHANGE_DIR, p, 0, 0, NULL);
                }
        }
        if (r < 0) {
                job_fail(j, r, "Cannot read the stored tree: %s", strerror(-r));
                while (roots) {
                        dir_item *di = roots;
                        roots = di->next;
                        free(di->path);
                        free(di);
                }
                goto done;
        }
        if (job_publish(j, &root_changes, roots) < 0)
                goto done;

        for (size_t i = 0; i < ELEMENTSOF(threads); i++) {
                listers[i].j = j;
                listers[i].handles = calloc(MAX(d->n_mounts, (size_t)1), sizeof(ufs *));
                listers[i].minutes_ok = calloc(MAX(d->n_mounts, (size_t)1), 1);
                if (!listers[i].handles || !listers[i].minutes_ok ||
                    pthread_create(&threads[i], NULL, lister_thread, &listers[i]) != 0) {
                        free(listers[i].handles);
                        free(listers[i].minutes_ok);
                        listers[i].handles = NULL;
                        break;
                }
                started++;
        }
        if (started == 0) {
                job_fail(j, -EAGAIN, "Cannot start a listing thread");
                goto done;
        }
        for (size_t i = 0; i < started; i++) {
                pthread_join(threads[i], NULL);
                for (size_t k = 0; k < d->n_mounts; k++)
                        ufs_free(listers[i].handles[k]);
                free(listers[i].handles);
                free(listers[i].minutes_ok);
        }
done:
        pthread_mutex_lock(&j->lock);
        while (j->work_head) { /* left by a failed walk */
                dir_item *di = j->work_head;
                j->work_head = di->next;
                free(di->path);
                free(di);
        }
        j->work_tail = NULL;
        j->walk_done = true;
        pthread_mutex_unlock(&j->lock);
        job_wake_loop(j);
        return NULL;
}

/* ---- the loop side ---- */

static void ds_schedule(sync_ds *ds, uint64_t ms);
static void job_pump(sync_job *j);

static void job_free(sync_job *j)
{
        if (!j)
                return;
        for (size_t i = j->out_first; i < j->out.n; i++)
                change_done(&j->out.items[i]);
        free(j->out.items);
        free(j->dates);
        free(j->prev_dates);
        json_decref(j->urls);
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->cond);
        free(j);
}

/* Loop thread, after a completed sync: its listings' dates become the next sync's. */
static void keep_dates(sync_ds *ds, sync_job *j)
{
        size_t n = ds->cfg->n_mounts;

        for (size_t i = 0; i < n; i++)
                j->dates[i] = MAX(j->dates[i], (int64_t)0);
        free(ds->prev_dates);
        ds->prev_dates = TAKE_PTR(j->dates);
        ds->n_prev_dates = n;
}

static void job_finish(sync_job *j, bool ok)
{
        sync_ds *ds = j->ds;
        sync_manager *sm = ds->sm;

        if (!j->joined) {
                pthread_join(j->thread, NULL);
                j->joined = true;
        }
        ds->job = NULL;
        if (ok) {
                ds->failures = 0;
                keep_dates(ds, j);
                log_info("Synced dataset %s in %.1fs: %" PRIu64 " entries in %" PRIu64
                         " directories listed, %" PRIu64 " HEADs, %" PRIu64 " changes.",
                         ds->cfg->name, elapsed(&j->started), j->entries, j->dirs, j->heads,
                         j->changes);
        } else if (j->error != -ECANCELED) {
                ds->failures++;
                log_warning("Sync of dataset %s failed: %s", ds->cfg->name,
                            j->message[0] ? j->message : strerror(-j->error));
        }
        job_free(j);
#ifdef __GLIBC__
        /* The walk's threads freed their listings in their own malloc arenas: give the pages
         * back rather than keep the peak of a sync as the master's resident size. */
        malloc_trim(0);
#endif
        if (!sm->leader)
                return;
        if (ds->again) {
                ds->again = false;
                ds_schedule(ds, 0);
        } else if (!ok) {
                uint64_t ms = SYNC_RETRY_MIN_MS;

                for (unsigned i = 1; i < ds->failures && ms < SYNC_RETRY_MAX_MS; i++)
                        ms *= 2;
                ds_schedule(ds, MIN(ms, (uint64_t)SYNC_RETRY_MAX_MS));
        } else if (ds->cfg->sync_interval_ms > 0)
                ds_schedule(ds, ds->cfg->sync_interval_ms);
}

typedef enum cmd_kind {
        CMD_BEGIN,
        CMD_BATCH,
        CMD_COMMIT,
        CMD_ABORT,
} cmd_kind;

typedef struct job_cmd {
        sync_job *j;
        cmd_kind kind;
} job_cmd;

static void on_applied(manager *m, int status, json_t *result, void *userdata)
{
        job_cmd *c = userdata;
        sync_job *j = c->j;
        cmd_kind kind = c->kind;
        const char *err = json_string_value(json_object_get(result, "error"));

        free(c);
        j->inflight--;
        if (status < 0 || err) {
                pthread_mutex_lock(&j->lock);
                if (status == -ECANCELED)
                        job_fail_locked(j, -ECANCELED, "Shutting down");
                else if (status < 0)
                        /* Not the leader any more, or stopping: the next leader syncs again. */
                        job_fail_locked(j, status, "Lost leadership while committing (%s)",
                                        strerror(-status));
                else
                        job_fail_locked(j, -EIO, "The state machine refused the sync: %s", err);
                pthread_mutex_unlock(&j->lock);
                atomic_store(&j->cancel, true);
                if (kind == CMD_ABORT || kind == CMD_COMMIT || status < 0)
                        j->apply_error = status < 0 ? status : -EIO;
        } else if (kind == CMD_BATCH && json_integer_value(json_object_get(result, "rejected")))
                log_warning("Sync of %s: %" JSON_INTEGER_FORMAT " entries refused (first: %s), "
                            "ignoring",
                            j->ds->cfg->name,
                            json_integer_value(json_object_get(result, "rejected")),
                            json_string_value(json_object_get(result, "first_rejected")) ?: "?");
        if (kind == CMD_COMMIT && status == 0 && !err) {
                j->finished = true;
                job_finish(j, true);
                return;
        }
        if (kind == CMD_ABORT) {
                j->finished = true;
                job_finish(j, false);
                return;
        }
        job_pump(j);
}

static int job_send(sync_job *j, cmd_kind kind, json_t *cmd_take)
{
        job_cmd *c = calloc(1, sizeof *c);
        int r;

        if (!cmd_take || !c) {
                json_decref(cmd_take);
                free(c);
                return -ENOMEM;
        }
        *c = (job_cmd){.j = j, .kind = kind};
        r = manager_apply(j->ds->sm->m, cmd_take, on_applied, c);
        json_decref(cmd_take);
        if (r < 0) {
                free(c);
                return r;
        }
        j->inflight++;
        return 0;
}

static json_t *change_json(const change *c)
{
        switch (c->kind) {
        case CHANGE_FILE:
                return json_pack("{s:s,s:s,s:I,s:I,s:s}", "path", c->path, "type", "file", "size",
                                 (json_int_t)c->size, "mtime", (json_int_t)c->mtime, "etag",
                                 c->etag ?: "");
        case CHANGE_DIR:
                return json_pack("{s:s,s:s}", "path", c->path, "type", "dir");
        default:
                return json_pack("{s:s,s:s}", "path", c->path, "type", "delete");
        }
}

/* Loop thread: sends what can be sent now. */
static void job_pump(sync_job *j)
{
        sync_ds *ds = j->ds;
        int r = 0;

        if (j->finished)
                return;
        for (;;) {
                pthread_mutex_lock(&j->lock);
                size_t pending = j->out.n - j->out_first;
                bool done = j->walk_done, failed = j->error < 0;
                pthread_mutex_unlock(&j->lock);

                if (failed || j->apply_error) {
                        /* Wait for the walk and for what is in flight, then record the error. */
                        if (!done || j->inflight > 0 || j->aborting)
                                return;
                        if (!ds->sm->leader || j->apply_error || j->error == -ECANCELED) {
                                j->finished = true;
                                job_finish(j, false);
                                return;
                        }
                        j->aborting = true;
                        r = job_send(j, CMD_ABORT,
                                     fsm_cmd_tree_abort(ds->cfg->name, j->sync_id,
                                                        j->message[0] ? j->message
                                                                      : strerror(-j->error)));
                        break;
                }
                if (j->committing)
                        return;
                if (pending >= SYNC_BATCH || (done && pending > 0)) {
                        if (j->inflight >= SYNC_INFLIGHT)
                                return;
                        if (!j->begun) {
                                j->begun = true;
                                r = job_send(j, CMD_BEGIN,
                                             fsm_cmd_tree_begin(ds->cfg->name, j->sync_id));
                                if (r < 0)
                                        break;
                                continue;
                        }
                        json_t *entries = json_array();
                        size_t end;
                        pthread_mutex_lock(&j->lock);
                        end = j->out_first + MIN(pending, (size_t)SYNC_BATCH);
                        for (size_t i = j->out_first; entries && i < end; i++) {
                                json_t *o = change_json(&j->out.items[i]);
                                if (!o || json_array_append_new(entries, o) < 0) {
                                        json_decref(entries);
                                        entries = NULL;
                                }
                        }
                        if (entries) {
                                for (size_t i = j->out_first; i < end; i++)
                                        change_done(&j->out.items[i]);
                                j->out_first = end;
                                pthread_cond_broadcast(&j->cond); /* room for the listers */
                        }
                        pthread_mutex_unlock(&j->lock);
                        r = entries ? job_send(j, CMD_BATCH,
                                               fsm_cmd_tree_batch(ds->cfg->name, j->sync_id,
                                                                  entries))
                                    : -ENOMEM;
                        json_decref(entries);
                        if (r < 0)
                                break;
                        continue;
                }
                if (done && pending == 0 && j->inflight == 0) {
                        if (!j->joined) {
                                pthread_join(j->thread, NULL);
                                j->joined = true;
                        }
                        j->committing = true;
                        r = job_send(
                                j, CMD_COMMIT,
                                fsm_cmd_tree_commit(ds->cfg->name, j->sync_id, wall_s(), j->urls));
                }
                break;
        }
        if (r < 0) {
                pthread_mutex_lock(&j->lock);
                job_fail_locked(j, r, "Cannot commit the sync: %s", strerror(-r));
                pthread_mutex_unlock(&j->lock);
                atomic_store(&j->cancel, true);
                j->apply_error = r;
                j->aborting = false;
                j->committing = false;
                if (j->inflight == 0) {
                        pthread_mutex_lock(&j->lock);
                        bool done = j->walk_done;
                        pthread_mutex_unlock(&j->lock);
                        if (done) {
                                j->finished = true;
                                job_finish(j, false);
                        }
                }
        }
}

static void on_async(loopwake *w)
{
        sync_manager *sm = w->poll.data;

        for (size_t i = 0; i < sm->n_ds; i++)
                if (sm->ds[i].job)
                        job_pump(sm->ds[i].job);
}

static int ds_start(sync_ds *ds)
{
        sync_manager *sm = ds->sm;
        sync_job *j;
        int r;

        if (ds->job)
                return -EBUSY;
        uv_timer_stop(&ds->timer);
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->ds = ds;
        /* One more than needed: a dataset may have no mounts. */
        j->dates = calloc(ds->cfg->n_mounts + 1, sizeof *j->dates);
        j->prev_dates = calloc(ds->cfg->n_mounts + 1, sizeof *j->prev_dates);
        if (!j->dates || !j->prev_dates) {
                free(j->dates);
                free(j->prev_dates);
                free(j);
                return -ENOMEM;
        }
        if (ds->prev_dates && ds->n_prev_dates == ds->cfg->n_mounts)
                memcpy(j->prev_dates, ds->prev_dates, ds->n_prev_dates * sizeof *j->prev_dates);
        atomic_init(&j->cancel, false);
        loopwatch_mutex_init(&j->lock);
        pthread_cond_init(&j->cond, NULL);
        clock_gettime(CLOCK_MONOTONIC, &j->started);
        snprintf(j->sync_id, sizeof j->sync_id, "%s/%s/%" PRIu64 "/%.0f",
                 manager_config(sm->m)->cluster_name ?: "weir", ds->cfg->name, ++sm->seq,
                 wall_s() * 1000);
        r = -pthread_create(&j->thread, NULL, coordinator_thread, j);
        if (r < 0) {
                job_free(j);
                return r;
        }
        ds->job = j;
        log_info("Syncing dataset %s.", ds->cfg->name);
        return 0;
}

static void on_timer(uv_timer_t *t)
{
        sync_ds *ds = t->data;

        if (!ds->sm->leader)
                return;
        int r = ds_start(ds);
        if (r < 0 && r != -EBUSY) {
                log_warning_errno(r, "Cannot start the sync of %s: %m, retrying", ds->cfg->name);
                ds_schedule(ds, SYNC_RETRY_MIN_MS);
        }
}

static void ds_schedule(sync_ds *ds, uint64_t ms)
{
        uv_timer_start(&ds->timer, on_timer, ms, 0);
}

typedef struct synced_query {
        const char *name;
        bool found;
        double synced;
} synced_query;

static void read_synced(fsm *f, void *userdata)
{
        synced_query *q = userdata;
        json_t *d = NULL;

        if (fsm_dataset(f, q->name, &d) < 0)
                return;
        json_t *s = json_object_get(d, "synced");
        if (json_is_number(s)) {
                q->found = true;
                q->synced = json_number_value(s);
        }
        json_decref(d);
}

/* Whether NAME has a committed tree, and when it was committed. */
static bool dataset_synced(sync_manager *sm, const char *name, double *ret_synced)
{
        synced_query q = {.name = name};

        manager_read_fsm(sm->m, read_synced, &q);
        if (ret_synced)
                *ret_synced = q.synced;
        return q.found;
}

/* The loop's handles, created on the loop thread at the first hook call: the loop runs then. */
static int sync_attach(sync_manager *sm)
{
        uv_loop_t *loop = manager_loop(sm->m);
        int r;

        if (sm->attached)
                return 0;
        r = loopwake_init(loop, &sm->async, on_async);
        if (r < 0)
                return r;
        sm->async.poll.data = sm;
        uv_unref((uv_handle_t *)&sm->async.poll); /* the manager's handles decide the loop's life */
        sm->open_handles++;
        for (size_t i = 0; i < sm->n_ds; i++) {
                uv_timer_init(loop, &sm->ds[i].timer);
                sm->ds[i].timer.data = &sm->ds[i];
                uv_unref((uv_handle_t *)&sm->ds[i].timer);
                sm->open_handles++;
        }
        sm->attached = true;
        return 0;
}

static void on_leader_changed(manager *m, bool leader, void *userdata)
{
        sync_manager *sm = userdata;

        if (sync_attach(sm) < 0) {
                log_error("Cannot set up the metadata sync on the loop; no syncs will run.");
                return;
        }

        if (sm->leader == leader)
                return;
        sm->leader = leader;
        for (size_t i = 0; i < sm->n_ds; i++) {
                sync_ds *ds = &sm->ds[i];
                double synced;

                if (!leader) {
                        uv_timer_stop(&ds->timer);
                        ds->again = false;
                        if (ds->job) {
                                atomic_store(&ds->job->cancel, true);
                                job_fail(ds->job, -ECANCELED, "No longer the leader");
                        }
                        continue;
                }
                if (ds->job) {
                        /* A walk from our previous term still runs: sync again after it. */
                        ds->again = true;
                        continue;
                }
                if (!dataset_synced(sm, ds->cfg->name, &synced))
                        ds_schedule(ds, 0); /* first bind, or a sync the old leader left */
                else if (ds->cfg->sync_interval_ms > 0) {
                        double due = synced + (double)ds->cfg->sync_interval_ms / 1000 - wall_s();

                        ds_schedule(ds, due > 0 ? (uint64_t)(due * 1000) : 0);
                }
        }
}

/* A reload added datasets or changed mounts. The array never moves (allocated for
 * CONFIG_MAX_DATASETS): its timers are libuv handles. A dataset whose walk runs keeps the old
 * mounts until that walk ends (the thread reads them); the old config outlives the manager. */
static void on_config_changed(manager *m, void *userdata)
{
        sync_manager *sm = userdata;
        const config *cfg = manager_config(m);

        for (size_t i = 0; i < cfg->n_datasets; i++) {
                const config_dataset *d = &cfg->datasets[i];
                sync_ds *ds = NULL;

                for (size_t k = 0; k < sm->n_ds; k++)
                        if (strcmp(sm->ds[k].cfg->name, d->name) == 0)
                                ds = &sm->ds[k];
                if (ds) {
                        if (!ds->job && ds->cfg != d) {
                                ds->cfg = d;
                                /* Mounts may have moved: the minute rule starts afresh. */
                                free(ds->prev_dates);
                                ds->prev_dates = NULL;
                                ds->n_prev_dates = 0;
                        }
                        continue;
                }
                if (sm->n_ds >= CONFIG_MAX_DATASETS)
                        break;
                ds = &sm->ds[sm->n_ds++];
                ds->sm = sm;
                ds->cfg = d;
                if (sm->attached) {
                        uv_timer_init(manager_loop(m), &ds->timer);
                        ds->timer.data = ds;
                        uv_unref((uv_handle_t *)&ds->timer);
                        sm->open_handles++;
                        if (sm->leader)
                                ds_schedule(ds, 0);
                }
        }
}

static int on_start(manager *m, const char *dataset, void *userdata)
{
        sync_manager *sm = userdata;
        int r = sync_attach(sm);

        if (r < 0)
                return r;
        for (size_t i = 0; i < sm->n_ds; i++)
                if (strcmp(sm->ds[i].cfg->name, dataset) == 0) {
                        if (!sm->leader)
                                return -EAGAIN;
                        return ds_start(&sm->ds[i]);
                }
        return -ENOENT;
}

static void on_handle_closed(uv_handle_t *h)
{
        sync_manager *sm = h->data;

        /* Timers carry their dataset; the async carries the manager. */
        if (h->type == UV_TIMER)
                sm = ((sync_ds *)h->data)->sm;
        sm->open_handles--;
}

int sync_manager_new(manager *m, sync_manager **ret)
{
        const config *cfg = manager_config(m);
        sync_manager *sm;

        sm = calloc(1, sizeof *sm);
        if (!sm)
                return -ENOMEM;
        sm->m = m;
        sm->ds = calloc(CONFIG_MAX_DATASETS, sizeof *sm->ds);
        if (!sm->ds) {
                free(sm);
                return -ENOMEM;
        }
        for (size_t i = 0; i < cfg->n_datasets; i++) {
                sm->ds[i].sm = sm;
                sm->ds[i].cfg = &cfg->datasets[i];
                sm->n_ds++;
        }
        manager_set_sync_hooks(m, &(manager_sync_hooks){
                                          .start = on_start,
                                          .leader_changed = on_leader_changed,
                                          .config_changed = on_config_changed,
                                          .userdata = sm,
                                  });
        *ret = sm;
        return 0;
}

sync_manager *sync_manager_free(sync_manager *sm)
{
        if (!sm)
                return NULL;
        manager_set_sync_hooks(sm->m, &(manager_sync_hooks){});
        sm->leader = false;
        /* Walks stop at their next directory or file; none can call into the manager. Their
         * wake-ups go to the async handle, closed below after the joins. */
        for (size_t i = 0; i < sm->n_ds; i++) {
                sync_ds *ds = &sm->ds[i];

                if (!ds->job)
                        continue;
                atomic_store(&ds->job->cancel, true);
                job_fail(ds->job, -ECANCELED, "Shutting down");
                if (!ds->job->joined)
                        pthread_join(ds->job->thread, NULL);
                job_free(ds->job);
                ds->job = NULL;
        }
        for (size_t i = 0; i < sm->n_ds; i++) {
                free(sm->ds[i].prev_dates);
                if (sm->attached)
                        uv_close((uv_handle_t *)&sm->ds[i].timer, on_handle_closed);
        }
        if (sm->attached)
                loopwake_close(&sm->async, on_handle_closed);
        while (sm->open_handles > 0)
                uv_run(manager_loop(sm->m), UV_RUN_NOWAIT);
        free(sm->ds);
        free(sm);
        return NULL;
}
