/* Metadata sync: walks each dataset's mounts in a thread, commits the tree from the loop. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsm.h"
#include "log.h"
#include "sync.h"
#include "ufs/ufs.h"
#include "timeutil.h"

typedef struct sync_job sync_job;
typedef struct sync_ds sync_ds;

struct sync_manager {
        manager *m;
        sync_ds *ds;
        size_t n_ds;
        bool leader;
        uint64_t seq;
        bool attached; /* loop handles initialised (on the first hook call, on the loop) */
        uv_async_t done_async;
        unsigned open_handles;

        pthread_mutex_t lock; /* guards done_head: the walk threads' hand-off to the loop */
        sync_job *done_head;
};

struct sync_ds {
        sync_manager *sm;
        const config_dataset *cfg;
        uv_timer_t timer; /* the next periodic sync or retry */
        sync_job *job;    /* the running sync, NULL if none */
        bool again;       /* asked for while one ran */
        unsigned failures;
};

typedef enum job_stage {
        STAGE_WALK,
        STAGE_BEGIN,
        STAGE_BATCH,
        STAGE_COMMIT,
        STAGE_ABORT,
} job_stage;

/* One file or directory found by the walk. */
typedef struct walk_item {
        char *path; /* relative to the mount */
        bool dir;
        bool gone; /* vanished between listing and HEAD */
        ufs_version version;
} walk_item;

typedef struct walk_list {
        walk_item *items;
        size_t n, allocated;
} walk_list;

/* One entry of the synced tree, as TREE_BATCH wants it. */
typedef struct sync_entry {
        char *path; /* "/MOUNT/..." */
        bool dir;
        uint64_t size;
        int64_t mtime;
        char *etag;    /* NULL = none */
        char *ufs_url; /* files only */
} sync_entry;

struct sync_job {
        sync_ds *ds;
        char sync_id[160];
        pthread_t thread;
        bool joined; /* loop thread only */
        atomic_bool cancel;
        struct timespec started;

        /* Written by the thread, read by the loop once the thread is done. Plain structs, not
         * JSON: a tree of a million files costs a third of the memory; each batch is turned
         * into JSON when it is sent. */
        sync_entry *entries;
        size_t n_entries, allocated;
        int error;
        char message[512];

        /* The loop's commit chain. */
        job_stage stage;
        size_t next;
        sync_job *done_next;
};

static double elapsed(const struct timespec *since)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)(ts.tv_sec - since->tv_sec) + (double)(ts.tv_nsec - since->tv_nsec) / 1e9;
}

static void walk_list_done(walk_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                ufs_version_done(&l->items[i].version);
        }
        free(l->items);
        *l = (walk_list){};
}

static int walk_list_add(walk_list *l, char *path_take, bool dir, ufs_version *version_take)
{
        if (l->n == l->allocated) {
                size_t a = l->allocated ? l->allocated * 2 : 256;
                walk_item *x = reallocarray(l->items, a, sizeof *x);

                if (!x) {
                        free(path_take);
                        return -ENOMEM;
                }
                l->items = x;
                l->allocated = a;
        }
        l->items[l->n++] = (walk_item){.path = path_take, .dir = dir};
        if (version_take) {
                l->items[l->n - 1].version = *version_take;
                *version_take = (ufs_version){};
        }
        return 0;
}

static int job_fail(sync_job *j, int err, const char *format, ...) _printf_(3, 4);
static int job_fail(sync_job *j, int err, const char *format, ...)
{
        va_list ap;

        if (j->error < 0)
                return err; /* keep the first */
        j->error = err;
        va_start(ap, format);
        vsnprintf(j->message, sizeof j->message, format, ap);
        va_end(ap);
        return err;
}

/* ---- the walk (its own thread) ---- */

/* The HEAD phase: SYNC_HEAD_THREADS threads, each with its own store handle, take files off a
 * shared counter. */
typedef struct head_pool {
        sync_job *job;
        const config_mount *mount;
        walk_list *list;
        atomic_size_t next;
        atomic_bool failed;
        pthread_mutex_t lock; /* guards the job's error fields */
} head_pool;

static void *head_thread(void *arg)
{
        head_pool *p = arg;
        ufs *u = NULL;
        int r;

        r = ufs_open(p->mount, &u);
        if (r >= 0)
                ufs_set_cancel(u, &p->job->cancel);
        if (r < 0) {
                pthread_mutex_lock(&p->lock);
                job_fail(p->job, r, "Cannot open the store of mount %s: %s", p->mount->name,
                         strerror(-r));
                pthread_mutex_unlock(&p->lock);
                atomic_store(&p->failed, true);
                return NULL;
        }
        for (;;) {
                size_t i = atomic_fetch_add(&p->next, 1);
                walk_item *it;
                ufs_version v = {};

                if (i >= p->list->n || atomic_load(&p->failed) || atomic_load(&p->job->cancel))
                        break;
                it = &p->list->items[i];
                if (it->dir)
                        continue;
                r = ufs_stat(u, it->path, &v);
                if (r == -ENOENT || r == -EACCES) {
                        /* Gone since the listing, or listed but not served (a 403 for one
                         * file of a mirror): not part of the dataset, not a failed sync. */
                        log_debug("Skipping %s: %s", it->path, ufs_last_error(u));
                        it->gone = true;
                        continue;
                }
                if (r < 0) {
                        pthread_mutex_lock(&p->lock);
                        job_fail(p->job, r, "%s", ufs_last_error(u));
                        pthread_mutex_unlock(&p->lock);
                        atomic_store(&p->failed, true);
                        break;
                }
                ufs_version_done(&it->version);
                it->version = v;
        }
        ufs_free(u);
        return NULL;
}

static int head_all(sync_job *j, const config_mount *mount, walk_list *list)
{
        head_pool p = {.job = j, .mount = mount, .list = list};
        pthread_t threads[SYNC_HEAD_THREADS];
        size_t started = 0;

        pthread_mutex_init(&p.lock, NULL);
        for (size_t i = 0; i < ELEMENTSOF(threads) && i < list->n; i++) {
                if (pthread_create(&threads[i], NULL, head_thread, &p) != 0)
                        break;
                started++;
        }
        if (started == 0)
                head_thread(&p); /* no thread to be had: do it here */
        for (size_t i = 0; i < started; i++)
                pthread_join(threads[i], NULL);
        pthread_mutex_destroy(&p.lock);
        if (atomic_load(&p.failed))
                return j->error < 0 ? j->error : -EIO;
        return 0;
}

static int job_add_entry(sync_job *j, sync_entry *e_take)
{
        if (j->n_entries == j->allocated) {
                size_t a = j->allocated ? j->allocated * 2 : 1024;
                sync_entry *x = reallocarray(j->entries, a, sizeof *x);

                if (!x)
                        return -ENOMEM;
                j->entries = x;
                j->allocated = a;
        }
        j->entries[j->n_entries++] = *e_take;
        *e_take = (sync_entry){};
        return 0;
}

static void sync_entry_done(sync_entry *e)
{
        free(e->path);
        free(e->etag);
        free(e->ufs_url);
        *e = (sync_entry){};
}

static int walk_mount(sync_job *j, const config_mount *mount, size_t *total)
{
        _cleanup_(walk_list_done) walk_list list = {};
        ufs *u = NULL;
        size_t cursor = 0;
        int r;

        r = ufs_open(mount, &u);
        if (r < 0)
                /* Not the URL: it may carry credentials (ufs keeps them out of its messages). */
                return job_fail(j, r, "Cannot open the store of mount %s: %s", mount->name,
                                r == -EPROTONOSUPPORT ? "no backend for this scheme"
                                                      : strerror(-r));

        ufs_set_cancel(u, &j->cancel);
        /* Breadth first: the list holds every entry; directories are expanded in order. */
        r = walk_list_add(&list, strdup(""), true, NULL);
        if (r < 0 || !list.items[0].path)
                goto oom;
        while (cursor < list.n) {
                walk_item *dir = &list.items[cursor++];
                ufs_entry *e = NULL;
                size_t n = 0;
                unsigned depth = 0;

                if (!dir->dir)
                        continue;
                if (atomic_load(&j->cancel)) {
                        r = -ECANCELED;
                        goto out;
                }
                for (const char *c = dir->path; *c; c++)
                        depth += *c == '/';
                if (*dir->path && depth + 1 > UFS_MAX_DEPTH) {
                        r = job_fail(j, -ELOOP, "Mount %s: deeper than %u levels at %s",
                                     mount->name, UFS_MAX_DEPTH, dir->path);
                        goto out;
                }
                char *dir_path = dir->path; /* the list may move while we add */
                size_t dir_index = cursor - 1;
                r = ufs_list(u, dir_path, &e, &n);
                if ((r == -ENOENT || r == -EACCES) && *dir_path) {
                        /* A subdirectory that went away or may not be listed: leave it out.
                         * The mount's root failing is the sync failing (wrong credentials). */
                        log_debug("Skipping directory %s: %s", dir_path, ufs_last_error(u));
                        list.items[dir_index].gone = true;
                        continue;
                }
                if (r < 0) {
                        job_fail(j, r, "%s", ufs_last_error(u));
                        goto out;
                }
                for (size_t i = 0; i < n; i++) {
                        char *p = *dir_path ? NULL : strdup(e[i].name);

                        if (*dir_path && asprintf(&p, "%s/%s", dir_path, e[i].name) < 0)
                                p = NULL;
                        if (!p || ++*total > UFS_MAX_ENTRIES) {
                                free(p);
                                ufs_entries_free(e, n);
                                if (!p)
                                        goto oom;
                                r = job_fail(j, -E2BIG, "more than %u entries",
                                             (unsigned)UFS_MAX_ENTRIES);
                                goto out;
                        }
                        r = walk_list_add(&list, p, e[i].dir, e[i].dir ? NULL : &e[i].version);
                        if (r < 0) {
                                ufs_entries_free(e, n);
                                goto oom;
                        }
                }
                ufs_entries_free(e, n);
        }

        if (!ufs_listing_exact(u)) {
                r = head_all(j, mount, &list);
                if (r < 0)
                        goto out;
        }

        for (size_t i = 1; i < list.n; i++) {
                walk_item *it = &list.items[i];
                _cleanup_(sync_entry_done) sync_entry e = {.dir = it->dir};

                if (it->gone)
                        continue;
                if (asprintf(&e.path, "/%s/%s", mount->name, it->path) < 0) {
                        e.path = NULL;
                        goto oom;
                }
                if (!it->dir) {
                        e.size = it->version.size;
                        e.mtime = it->version.mtime;
                        e.etag = TAKE_PTR(it->version.etag);
                        e.ufs_url = ufs_url(u, it->path);
                        if (!e.ufs_url)
                                goto oom;
                }
                if (job_add_entry(j, &e) < 0)
                        goto oom;
        }
        r = 0;
        goto out;
oom:
        r = job_fail(j, -ENOMEM, "Out of memory");
out:
        ufs_free(u);
        return r;
}

static void job_hand_to_loop(sync_job *j)
{
        sync_manager *sm = j->ds->sm;

        pthread_mutex_lock(&sm->lock);
        j->done_next = sm->done_head;
        sm->done_head = j;
        pthread_mutex_unlock(&sm->lock);
        uv_async_send(&sm->done_async);
}

static void *walk_thread(void *arg)
{
        sync_job *j = arg;
        const config_dataset *d = j->ds->cfg;
        size_t total = 0;

        for (size_t i = 0; i < d->n_mounts && j->error == 0; i++)
                if (walk_mount(j, &d->mounts[i], &total) < 0 && j->error == 0)
                        job_fail(j, -EIO, "Listing mount %s failed", d->mounts[i].name);
        job_hand_to_loop(j);
        return NULL;
}

/* ---- the loop side ---- */

static void ds_schedule(sync_ds *ds, uint64_t ms);
static void job_apply_next(sync_job *j);

static void job_free(sync_job *j)
{
        if (!j)
                return;
        for (size_t i = 0; i < j->n_entries; i++)
                sync_entry_done(&j->entries[i]);
        free(j->entries);
        free(j);
}

static bool dataset_synced(sync_manager *sm, const char *name, double *ret_synced);

static void job_finish(sync_job *j, bool ok)
{
        sync_ds *ds = j->ds;
        sync_manager *sm = ds->sm;

        ds->job = NULL;
        if (ok) {
                ds->failures = 0;
                log_info("Synced dataset %s: %zu entries in %.1fs.", ds->cfg->name, j->n_entries,
                         elapsed(&j->started));
        } else if (j->error != -ECANCELED) {
                ds->failures++;
                log_warning("Sync of dataset %s failed: %s", ds->cfg->name,
                            j->message[0] ? j->message : strerror(-j->error));
        }
        job_free(j);
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

static void on_applied(manager *m, int status, json_t *result, void *userdata)
{
        sync_job *j = userdata;
        const char *err = json_string_value(json_object_get(result, "error"));

        if (status < 0) {
                /* Not the leader any more, or stopping: the next leader syncs again. */
                job_fail(j, status == -ECANCELED ? -ECANCELED : status,
                         "Lost leadership while committing (%s)", strerror(-status));
                job_finish(j, false);
                return;
        }
        if (err) {
                bool aborting = j->stage == STAGE_ABORT;

                job_fail(j, -EIO, "The state machine refused the sync: %s", err);
                if (aborting || j->stage == STAGE_BEGIN) {
                        job_finish(j, false);
                        return;
                }
                j->stage = STAGE_ABORT;
                job_apply_next(j);
                return;
        }
        switch (j->stage) {
        case STAGE_BEGIN:
                j->stage = j->error < 0 ? STAGE_ABORT
                                        : (j->n_entries > 0 ? STAGE_BATCH : STAGE_COMMIT);
                break;
        case STAGE_BATCH:
                if (j->next >= j->n_entries)
                        j->stage = STAGE_COMMIT;
                break;
        case STAGE_COMMIT:
                job_finish(j, true);
                return;
        case STAGE_ABORT:
                job_finish(j, false);
                return;
        default:
                break;
        }
        job_apply_next(j);
}

static void job_apply_next(sync_job *j)
{
        sync_manager *sm = j->ds->sm;
        json_t *cmd = NULL;
        int r;

        switch (j->stage) {
        case STAGE_BEGIN:
                cmd = fsm_cmd_tree_begin(j->ds->cfg->name, j->sync_id);
                break;
        case STAGE_BATCH: {
                size_t end = MIN(j->n_entries, j->next + SYNC_BATCH);
                json_t *batch = json_array();

                for (size_t i = j->next; batch && i < end; i++) {
                        const sync_entry *e = &j->entries[i];
                        json_t *o =
                                e->dir ? json_pack("{s:s,s:s}", "path", e->path, "type", "dir")
                                       : json_pack("{s:s,s:s,s:I,s:I,s:s*,s:s}", "path", e->path,
                                                   "type", "file", "size", (json_int_t)e->size,
                                                   "mtime", (json_int_t)e->mtime, "etag", e->etag,
                                                   "ufs_url", e->ufs_url);

                        if (!o || json_array_append_new(batch, o) < 0) {
                                json_decref(batch);
                                batch = NULL;
                        }
                }
                j->next = end;
                cmd = batch ? fsm_cmd_tree_batch(j->sync_id, batch) : NULL;
                json_decref(batch);
                break;
        }
        case STAGE_COMMIT:
                cmd = fsm_cmd_tree_commit(j->sync_id, wall_s());
                break;
        case STAGE_ABORT:
                cmd = fsm_cmd_tree_abort(j->sync_id,
                                         j->message[0] ? j->message : strerror(-j->error));
                break;
        default:
                break;
        }
        r = cmd ? manager_apply(sm->m, cmd, on_applied, j) : -ENOMEM;
        json_decref(cmd);
        if (r < 0) {
                job_fail(j, r, "Cannot commit the sync: %s", strerror(-r));
                job_finish(j, false);
        }
}

static void on_done(uv_async_t *h)
{
        sync_manager *sm = h->data;
        sync_job *list;

        pthread_mutex_lock(&sm->lock);
        list = sm->done_head;
        sm->done_head = NULL;
        pthread_mutex_unlock(&sm->lock);

        while (list) {
                sync_job *j = list;

                list = j->done_next;
                pthread_join(j->thread, NULL);
                j->joined = true;
                if (atomic_load(&j->cancel) || !sm->leader) {
                        j->error = -ECANCELED;
                        job_finish(j, false);
                        continue;
                }
                /* A failed walk still begins a (then aborted) staging tree: the abort records
                 * the error on the dataset through the state machine, on every master. */
                j->stage = STAGE_BEGIN;
                job_apply_next(j);
        }
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
        atomic_init(&j->cancel, false);
        clock_gettime(CLOCK_MONOTONIC, &j->started);
        snprintf(j->sync_id, sizeof j->sync_id, "%s/%s/%" PRIu64 "/%.0f",
                 manager_config(sm->m)->cluster_name ?: "weir", ds->cfg->name, ++sm->seq,
                 wall_s() * 1000);
        r = -pthread_create(&j->thread, NULL, walk_thread, j);
        if (r < 0) {
                free(j);
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

static void read_synced(const fsm *f, void *userdata)
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
        r = uv_async_init(loop, &sm->done_async, on_done);
        if (r < 0)
                return r;
        sm->done_async.data = sm;
        uv_unref((uv_handle_t *)&sm->done_async); /* the manager's handles decide the loop's life */
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
                        if (ds->job)
                                atomic_store(&ds->job->cancel, true);
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
                        if (!ds->job)
                                ds->cfg = d;
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
        pthread_mutex_init(&sm->lock, NULL);
        sm->ds = calloc(CONFIG_MAX_DATASETS, sizeof *sm->ds);
        if (!sm->ds) {
                pthread_mutex_destroy(&sm->lock);
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
        /* Walks stop at their next directory or file; none can call into the manager: their
         * results only ever reach the loop through done_async, drained below. */
        for (size_t i = 0; i < sm->n_ds; i++)
                if (sm->ds[i].job && !sm->ds[i].job->joined) {
                        atomic_store(&sm->ds[i].job->cancel, true);
                        pthread_join(sm->ds[i].job->thread, NULL);
                        sm->ds[i].job->joined = true;
                }
        pthread_mutex_lock(&sm->lock);
        sync_job *list = sm->done_head;
        sm->done_head = NULL;
        pthread_mutex_unlock(&sm->lock);
        while (list) {
                sync_job *j = list;

                list = j->done_next;
                if (j->ds->job == j)
                        j->ds->job = NULL;
                job_free(j);
        }
        for (size_t i = 0; i < sm->n_ds; i++) {
                sync_ds *ds = &sm->ds[i];

                if (ds->job) { /* committing when the loop stopped */
                        job_free(ds->job);
                        ds->job = NULL;
                }
                if (sm->attached)
                        uv_close((uv_handle_t *)&ds->timer, on_handle_closed);
        }
        if (sm->attached)
                uv_close((uv_handle_t *)&sm->done_async, on_handle_closed);
        while (sm->open_handles > 0)
                uv_run(manager_loop(sm->m), UV_RUN_NOWAIT);
        pthread_mutex_destroy(&sm->lock);
        free(sm->ds);
        free(sm);
        return NULL;
}
