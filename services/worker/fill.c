/* Fills (see fill.h). A pool of threads, each holding its own kept-alive store handles, takes
 * tasks from one queue: "start" (resolve the file, reserve the block, split it into ranges) and
 * "range" (fetch one range into the block's temporary file). Ranges go to the front of the queue
 * so that started blocks finish before new ones start (bounded reservations, early first
 * bytes); prefetches wait until nothing else is queued. The thread that finishes a block's last
 * range commits it and tells the waiters. At most `threads` connections to the store exist.
 *
 * Locking: `lock` ("the fill lock") guards the queue, the job table (single flight), the
 * metadata cache and the counters. Store I/O, network I/O and waiter callbacks run unlocked. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "content.h"
#include "cleanup.h"
#include "fill.h"
#include "hmap.h"
#include "log.h"
#include "ufs/ufs.h"
#include "timeutil.h"

#define FILL_META_SLOTS     1024  /* direct-mapped cache of file metadata */
#define FILL_UFS_PER_THREAD 16    /* store handles a thread keeps open (one per mount) */
#define FILL_MISMATCH_SLOTS 1024  /* direct-mapped marks of file versions that failed a check */
#define FILL_STALE_SLOTS    1024  /* direct-mapped marks of file versions the store no longer has */
#define FILL_STALE_MS       10000 /* ... kept this long */

typedef struct fill_waiter {
        fill_done_fn done;
        void *userdata;
        struct fill_waiter *next;
} fill_waiter;

/* A reader of part of the block (fill_block_part). */
typedef struct part_waiter {
        uint64_t off, end; /* block-relative */
        fill_part_fn done;
        void *userdata;
        struct part_waiter *next;
} part_waiter;

/* One range of a started block: [start, end), written up to pos (bytes below pos are final). */
typedef struct fill_range {
        uint64_t start, end;
        uint64_t pos; /* atomic (seq_cst): written by its range task, read under the lock */
} fill_range;

typedef struct fill_job {
        store_key key;
        unsigned readahead;
        fill_waiter *waiters;
        /* Set by the start task: */
        store_write *write;
        int fd;
        fill_file file;
        const config_mount *mount;
        const char *rel; /* into file.path */
        uint64_t offset, len;
        uint64_t *chunk_sums; /* checksum.h: one per CHECKSUM_CHUNK, filled by the ranges */
        fill_range *ranges;   /* set by the start task; NULL before */
        unsigned n_ranges;
        unsigned ranges_left;
        int error;
        part_waiter *parts; /* guarded by the fill lock */
        unsigned n_parts;   /* atomic (seq_cst) mirror of the list's length */
        bool committing;    /* fill lock: fd is about to close, part waiters wait for the end */
} fill_job;

typedef struct fill_task {
        fill_job *job;
        bool start;
        uint64_t offset, len; /* a range, relative to the block */
        fill_range *range;
        struct fill_task *next;
} fill_task;

typedef struct fill_thread {
        fill *fill;
        unsigned index;
        pthread_t tid;
        bool started;
        struct {
                const config_mount *mount;
                ufs *ufs;
        } handles[FILL_UFS_PER_THREAD];
        unsigned next_handle;
} fill_thread;

typedef struct meta_slot {
        bool valid;
        fill_file file;
        /* A thread asks the master for file RESOLVING_ID. A flag, not a sentinel id: a request for
         * a file id equal to the sentinel would wait for a lookup that nobody makes. */
        bool resolving;
        uint64_t resolving_id;
} meta_slot;

struct fill {
        const config *cfg;
        store *store;
        fill_options opts;
        fill_resolve_fn resolve;
        void *userdata;
        fill_thread *threads;

        pthread_mutex_t lock;     /* "the fill lock"; guards everything below */
        pthread_cond_t cond;      /* the queue got a task, or stopping */
        pthread_cond_t meta_cond; /* a metadata lookup ended */
        bool stopping;
        fill_task *head, *tail;       /* demand: starts at the tail, ranges at the head */
        fill_task *pf_head, *pf_tail; /* prefetch starts */
        hmap jobs;                    /* store_key (the job's own) -> fill_job, until job_finish */
        meta_slot meta[FILL_META_SLOTS];
        fill_stats stats;
        /* File versions whose content did not match the store's hash (key with index 0): never
         * filled again here (fill_mark_mismatch). */
        store_key mismatch[FILL_MISMATCH_SLOTS];
        /* File versions the store refused as changed (412; key with index 0), for
         * FILL_STALE_MS: a reader retrying such a version is answered -ESTALE at once instead of
         * sending the store one refused range per try (readers retry until a sync brings the new
         * version). */
        struct {
                store_key key;
                uint64_t until_ms;
        } stale[FILL_STALE_SLOTS];
        fill_mismatch_fn mismatch_hook;
        void *mismatch_userdata;
};

void fill_file_done(fill_file *f)
{
        free(f->etag);
        free(f->dataset);
        free(f->path);
        *f = (fill_file){};
}

int fill_file_copy(const fill_file *from, fill_file *to)
{
        fill_file c = *from;

        c.etag = from->etag ? strdup(from->etag) : NULL;
        c.dataset = from->dataset ? strdup(from->dataset) : NULL;
        c.path = from->path ? strdup(from->path) : NULL;
        if ((from->etag && !c.etag) || (from->dataset && !c.dataset) || (from->path && !c.path)) {
                fill_file_done(&c);
                return -ENOMEM;
        }
        *to = c;
        return 0;
}

int fill_block_range(uint64_t size, uint64_t block_size, uint64_t index, uint64_t *ret_offset,
                     uint64_t *ret_len)
{
        uint64_t off;

        if (block_size == 0)
                return -EINVAL;
        if (index > UINT64_MAX / block_size)
                return -ERANGE;
        off = index * block_size;
        if (off >= size && !(size == 0 && index == 0))
                return -ERANGE;
        *ret_offset = off;
        *ret_len = MIN(block_size, size - off);
        return 0;
}

/* ---- queue (fill lock held) ---- */

static void queue_push(fill *f, fill_task *t, bool front, bool prefetch)
{
        fill_task **head = prefetch ? &f->pf_head : &f->head;
        fill_task **tail = prefetch ? &f->pf_tail : &f->tail;

        if (front) {
                t->next = *head;
                *head = t;
                if (!*tail)
                        *tail = t;
        } else {
                t->next = NULL;
                if (*tail)
                        (*tail)->next = t;
                else
                        *head = t;
                *tail = t;
        }
        pthread_cond_signal(&f->cond);
}

static fill_task *queue_pop(fill *f)
{
        fill_task **head = f->head ? &f->head : &f->pf_head;
        fill_task **tail = f->head ? &f->tail : &f->pf_tail;
        fill_task *t = *head;

        if (t) {
                *head = t->next;
                if (!*head)
                        *tail = NULL;
        }
        return t;
}

static fill_job *job_find(fill *f, const store_key *k)
{
        return hmap_get_mem(&f->jobs, k);
}

static void job_unlink(fill *f, fill_job *job)
{
        if (hmap_get_mem(&f->jobs, &job->key) == job)
                (void)hmap_remove_mem(&f->jobs, &job->key);
}

/* Enqueues a fill of K unless it is cached or queued; WAITER (may be NULL) is attached. The job
 * goes to *RET_JOB when that is not NULL. */
static bool mismatch_locked(fill *f, const store_key *k)
{
        const store_key *m = &f->mismatch[k->file_id % FILL_MISMATCH_SLOTS];

        return m->file_id == k->file_id && m->version == k->version && m->epoch == k->epoch;
}

static bool stale_locked(const fill *f, const store_key *k)
{
        const store_key *m = &f->stale[k->file_id % FILL_STALE_SLOTS].key;

        return m->file_id == k->file_id && m->version == k->version && m->epoch == k->epoch &&
               now_ms() < f->stale[k->file_id % FILL_STALE_SLOTS].until_ms;
}

static void mark_stale(fill *f, const store_key *k)
{
        store_key m = *k;

        m.index = 0;
        pthread_mutex_lock(&f->lock);
        f->stale[k->file_id % FILL_STALE_SLOTS].key = m;
        f->stale[k->file_id % FILL_STALE_SLOTS].until_ms = now_ms() + FILL_STALE_MS;
        pthread_mutex_unlock(&f->lock);
}

static int job_request_locked(fill *f, const store_key *k, unsigned readahead, fill_waiter *waiter,
                              bool prefetch, fill_job **ret_job)
{
        fill_job *job = job_find(f, k);
        fill_task *t;

        if (!job && mismatch_locked(f, k))
                return -EILSEQ; /* the store's bytes for it do not match its hash */
        if (!job && stale_locked(f, k)) {
                f->stats.stale_refusals++;
                return -ESTALE; /* the store has another version by now */
        }
        if (job) {
                if (waiter) {
                        waiter->next = job->waiters;
                        job->waiters = waiter;
                }
                if (ret_job)
                        *ret_job = job;
                return 0;
        }
        job = calloc(1, sizeof(*job));
        t = calloc(1, sizeof(*t));
        if (!job || !t) {
                free(job);
                free(t);
                return -ENOMEM;
        }
        job->key = *k;
        job->readahead = readahead;
        job->fd = -1;
        job->waiters = waiter;
        if (waiter)
                waiter->next = NULL;
        int r = hmap_put_mem(&f->jobs, &job->key, job, NULL);
        if (r < 0) {
                free(job);
                free(t);
                return r;
        }
        f->stats.queued++;
        t->job = job;
        t->start = true;
        queue_push(f, t, false, prefetch && !waiter);
        if (ret_job)
                *ret_job = job;
        return 0;
}

/* Ends JOB with R: unlinks it (so that a new request starts a new fill) and tells its waiters.
 * R > 0: the block was cached meanwhile, no fill happened (waiters are told 0). */
static void job_finish(fill *f, fill_job *job, int r)
{
        fill_waiter *w;
        part_waiter *pw;

        pthread_mutex_lock(&f->lock);
        job_unlink(f, job);
        w = job->waiters;
        job->waiters = NULL;
        pw = job->parts;
        job->parts = NULL;
        f->stats.queued--;
        if (r == 0)
                f->stats.fills++;
        else if (!(r == -ERANGE && !w))
                f->stats.failures++; /* (a prefetch past the end of a file is no failure) */
        pthread_mutex_unlock(&f->lock);

        if (r < 0 && r != -ECANCELED) {
                char kb[BLOCK_ID_MAX];

                log_full_errno(r == -ESTALE || r == -ERANGE ? LOG_DEBUG : LOG_WARNING, r,
                               "Failed to fill block %s: %m", block_id_format(kb, &job->key));
        }
        while (w) {
                fill_waiter *next = w->next;

                w->done(MIN(r, 0), w->userdata);
                free(w);
                w = next;
        }
        while (pw) {
                part_waiter *next = pw->next;

                pw->done(r >= 0 ? 1 : r, -1, 0, pw->userdata);
                free(pw);
                pw = next;
        }
        fill_file_done(&job->file);
        free(job->chunk_sums);
        free(job->ranges);
        free(job);
}

int fill_block(fill *f, const store_key *k, unsigned readahead, fill_done_fn done, void *userdata)
{
        fill_waiter *w = NULL;
        int r;

        if (store_contains(f->store, k))
                return 1;
        if (done) {
                w = calloc(1, sizeof(*w));
                if (!w)
                        return -ENOMEM;
                w->done = done;
                w->userdata = userdata;
        }
        pthread_mutex_lock(&f->lock);
        r = f->stopping ? -ECANCELED : job_request_locked(f, k, readahead, w, !done, NULL);
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                free(w);
        return r;
}

/* ---- readers of part of a block (fill lock held unless said) ---- */

/* Whether the bytes PW waits for are all written. Past the block's end: never (the waiter is
 * answered when the block is complete, and the store lookup then says what there is). */
static bool part_ready_locked(const fill_job *job, const part_waiter *pw)
{
        uint64_t end;

        if (!job->ranges || job->committing || pw->off >= job->len)
                return false;
        end = MIN(pw->end, job->len);
        for (unsigned i = 0; i < job->n_ranges; i++) {
                const fill_range *rg = &job->ranges[i];

                if (rg->end <= pw->off || rg->start >= end)
                        continue;
                if (__atomic_load_n(&rg->pos, __ATOMIC_SEQ_CST) < MIN(rg->end, end))
                        return false;
        }
        return true;
}

/* A read-only descriptor of the block's temporary file: the reader must not be able to write
 * into the cache. Under the fill lock, while the job's fd is open (not committing). */
static int reopen_read_only(int fd)
{
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        r = open(path, O_RDONLY | O_CLOEXEC);
        return r < 0 ? -errno : r;
}

typedef struct part_ready {
        part_waiter *waiter;
        int fd;
        uint64_t block_len; /* copied: the job may be gone when the waiter is answered */
} part_ready;

/* Takes the waiters of JOB whose bytes are there off its list, with a descriptor each, into
 * READY (at most MAX); returns how many. */
static unsigned parts_take_ready_locked(fill_job *job, part_ready *ready, unsigned max)
{
        unsigned n = 0;

        for (part_waiter **p = &job->parts; *p && n < max;) {
                part_waiter *pw = *p;
                int fd;

                if (!part_ready_locked(job, pw) || (fd = reopen_read_only(job->fd)) < 0) {
                        p = &pw->next;
                        continue; /* answered at the end of the fill */
                }
                *p = pw->next;
                __atomic_sub_fetch(&job->n_parts, 1, __ATOMIC_SEQ_CST);
                ready[n++] = (part_ready){.waiter = pw, .fd = fd, .block_len = job->len};
        }
        return n;
}

/* No lock held: answers the waiters in READY. */
static void parts_answer(part_ready *ready, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                ready[i].waiter->done(0, ready[i].fd, ready[i].block_len,
                                      ready[i].waiter->userdata);
                free(ready[i].waiter);
        }
}

/* From a range task that wrote more bytes: answers the part waiters those bytes complete. */
static void parts_progress(fill *f, fill_job *job)
{
        part_ready ready[16];
        unsigned n;

        do {
                pthread_mutex_lock(&f->lock);
                n = parts_take_ready_locked(job, ready, 16);
                pthread_mutex_unlock(&f->lock);
                parts_answer(ready, n);
        } while (n == 16);
}

int fill_block_part(fill *f, const store_key *k, uint64_t off, uint64_t len, unsigned readahead,
                    fill_part_fn done, void *userdata)
{
        part_ready ready;
        fill_job *job = NULL;
        part_waiter *pw;
        unsigned n = 0;
        int r;

        if (len == 0 || off > UINT64_MAX - len)
                return -EINVAL;
        if (store_contains(f->store, k))
                return 1;
        pw = calloc(1, sizeof(*pw));
        if (!pw)
                return -ENOMEM;
        *pw = (part_waiter){.off = off, .end = off + len, .done = done, .userdata = userdata};
        pthread_mutex_lock(&f->lock);
        r = f->stopping ? -ECANCELED : job_request_locked(f, k, readahead, NULL, false, &job);
        if (r >= 0) {
                pw->next = job->parts;
                job->parts = pw;
                /* Sequentially consistent with the range writers' store of pos and load of
                 * n_parts: either they see this waiter or the check below sees their bytes. */
                __atomic_add_fetch(&job->n_parts, 1, __ATOMIC_SEQ_CST);
                /* The bytes may be there already (a fill that another reader started). */
                n = parts_take_ready_locked(job, &ready, 1);
        }
        pthread_mutex_unlock(&f->lock);
        if (r < 0) {
                free(pw);
                return r;
        }
        parts_answer(&ready, n);
        return 0;
}

/* ---- metadata ---- */

void fill_forget_file(fill *f, uint64_t file_id)
{
        meta_slot *m = &f->meta[file_id % FILL_META_SLOTS];

        pthread_mutex_lock(&f->lock);
        if (m->valid && m->file.file_id == file_id) {
                fill_file_done(&m->file);
                m->valid = false;
        }
        pthread_mutex_unlock(&f->lock);
}

void fill_mark_mismatch(fill *f, const store_key *k)
{
        store_key m = *k;

        m.index = 0;
        pthread_mutex_lock(&f->lock);
        f->mismatch[k->file_id % FILL_MISMATCH_SLOTS] = m;
        pthread_mutex_unlock(&f->lock);
}

bool fill_is_mismatch(fill *f, const store_key *k)
{
        pthread_mutex_lock(&f->lock);
        bool r = mismatch_locked(f, k);
        pthread_mutex_unlock(&f->lock);
        return r;
}

void fill_set_mismatch_hook(fill *f, fill_mismatch_fn fn, void *userdata)
{
        f->mismatch_hook = fn;
        f->mismatch_userdata = userdata;
}

void fill_count_content_check(fill *f, bool match)
{
        pthread_mutex_lock(&f->lock);
        f->stats.content_checks++;
        if (!match)
                f->stats.content_failures++;
        pthread_mutex_unlock(&f->lock);
}

const char *fill_strerror(int r)
{
        if (r == -EILSEQ)
                return FILL_MISMATCH_TEXT;
        return strerror(r < 0 ? -r : r);
}

/* Store errors worth asking the master again for. */
static bool meta_retryable(int r)
{
        return r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EAGAIN || r == -EHOSTUNREACH ||
               r == -ECONNRESET || r == -EIO;
}

/* The file's metadata at version VERSION: from the cache, else from the resolver (once more when
 * the cached version is another). -ESTALE when the master's version is not VERSION or its epoch
 * not EPOCH. One lookup
 * per file at a time: the blocks of a load all start at once and would each ask the master. */
static int meta_get(fill_thread *th, uint64_t epoch, uint64_t file_id, uint64_t version,
                    fill_file *ret)
{
        fill *f = th->fill;
        meta_slot *m = &f->meta[file_id % FILL_META_SLOTS];
        fill_file got = {};
        bool waited = false;
        int r;

        pthread_mutex_lock(&f->lock);
        for (;;) {
                if (m->valid && m->file.epoch == epoch && m->file.file_id == file_id &&
                    m->file.version == version) {
                        r = fill_file_copy(&m->file, ret);
                        pthread_mutex_unlock(&f->lock);
                        return r;
                }
                /* Another thread asks for this file: its answer may be the one we need. */
                if (m->resolving && m->resolving_id == file_id && !waited && !f->stopping) {
                        while (m->resolving && m->resolving_id == file_id && !f->stopping)
                                pthread_cond_wait(&f->meta_cond, &f->lock);
                        waited = true;
                        continue;
                }
                break;
        }
        /* Only one lookup per slot is waited for; a lookup of another file in the same slot runs
         * without announcing itself. */
        bool mine = !m->resolving;
        if (mine) {
                m->resolving = true;
                m->resolving_id = file_id;
        }
        pthread_mutex_unlock(&f->lock);

        for (unsigned attempt = 0;; attempt++) {
                r = f->resolve(f->userdata, th->index, file_id, &got);
                if (r >= 0 || !meta_retryable(r) || attempt >= f->opts.retries ||
                    __atomic_load_n(&f->stopping, __ATOMIC_RELAXED))
                        break;
                sleep_ms(f->opts.backoff_ms << MIN(attempt, 5u));
        }
        if (r >= 0 && (got.block_size == 0 || !got.dataset || !got.path)) {
                fill_file_done(&got);
                r = -EBADMSG;
        }
        pthread_mutex_lock(&f->lock);
        if (r >= 0) {
                if (m->valid)
                        fill_file_done(&m->file);
                m->valid = fill_file_copy(&got, &m->file) >= 0;
        }
        if (mine)
                m->resolving = false;
        pthread_cond_broadcast(&f->meta_cond);
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                return r;
        /* Another epoch: the id names a file of another cluster (or of this one before its master
         * lost its state); the master's file of that id is not the block's. */
        if (got.version != version || got.epoch != epoch) {
                fill_file_done(&got);
                return -ESTALE;
        }
        *ret = got;
        return 0;
}

/* The mount of a dataset path "/MOUNT/rest" and the part after it. */
static int resolve_mount(const config *cfg, const fill_file *file, const config_mount **ret_mount,
                         const char **ret_rel)
{
        const config_dataset *d = config_find_dataset(cfg, file->dataset);
        const char *p = file->path, *slash;

        if (!d || p[0] != '/')
                return -ENOENT;
        p++;
        slash = strchr(p, '/');
        if (!slash)
                return -ENOENT;
        for (size_t i = 0; i < d->n_mounts; i++)
                if (strlen(d->mounts[i].name) == (size_t)(slash - p) &&
                    strncmp(d->mounts[i].name, p, slash - p) == 0) {
                        *ret_mount = &d->mounts[i];
                        *ret_rel = slash + 1;
                        return 0;
                }
        return -ENOENT;
}

static int thread_ufs(fill_thread *th, const config_mount *mount, ufs **ret)
{
        unsigned i;
        int r;

        for (i = 0; i < FILL_UFS_PER_THREAD; i++)
                if (th->handles[i].mount == mount && th->handles[i].ufs) {
                        *ret = th->handles[i].ufs;
                        return 0;
                }
        i = th->next_handle++ % FILL_UFS_PER_THREAD;
        th->handles[i].ufs = ufs_free(th->handles[i].ufs);
        th->handles[i].mount = NULL;
        r = ufs_open(mount, &th->handles[i].ufs);
        if (r < 0)
                return log_warning_errno(r, "Failed to open store %s: %m", mount->mount_point);
        th->handles[i].mount = mount;
        *ret = th->handles[i].ufs;
        return 0;
}

static void thread_drop_ufs(fill_thread *th, ufs *u)
{
        for (unsigned i = 0; i < FILL_UFS_PER_THREAD; i++)
                if (th->handles[i].ufs == u) {
                        th->handles[i].ufs = ufs_free(u);
                        th->handles[i].mount = NULL;
                }
}

/* ---- tasks (no lock held) ---- */

static void task_start(fill_thread *th, fill_job *job)
{
        fill *f = th->fill;
        fill_range *ranges;
        uint64_t n_blocks, part, n_parts;
        int r;

        r = meta_get(th, job->key.epoch, job->key.file_id, job->key.version, &job->file);
        if (r >= 0)
                r = fill_block_range(job->file.size, job->file.block_size, job->key.index,
                                     &job->offset, &job->len);
        if (r >= 0)
                r = resolve_mount(f->cfg, &job->file, &job->mount, &job->rel);
        if (r >= 0) {
                r = store_begin(f->store, &job->key, job->len, &job->write);
                if (r == -EEXIST) {
                        job_finish(f, job, 1); /* filled meanwhile (a load racing a read) */
                        return;
                }
        }
        if (r < 0) {
                job_finish(f, job, r);
                return;
        }
        job->fd = store_write_fd(job->write);

        /* Sequential readers: the next blocks of this file, as prefetches. */
        n_blocks = job->file.size == 0 ? 1 : (job->file.size - 1) / job->file.block_size + 1;
        if (job->readahead > 0) {
                pthread_mutex_lock(&f->lock);
                for (uint64_t i = 1; i <= job->readahead && job->key.index + i < n_blocks; i++) {
                        store_key k = job->key;

                        k.index += i;
                        if (!store_contains(f->store, &k))
                                (void)job_request_locked(f, &k, 0, NULL, true, NULL);
                }
                pthread_mutex_unlock(&f->lock);
        }

        job->chunk_sums = calloc(checksum_n_chunks(job->len) + 1, sizeof(*job->chunk_sums));
        if (!job->chunk_sums) {
                store_abort(f->store, job->write);
                job->write = NULL;
                job_finish(f, job, -ENOMEM);
                return;
        }

        /* Split into ranges of at least part_size, at most max_parts of them, on checksum chunk
         * boundaries so that each range hashes whole chunks of its own. */
        n_parts = job->len <= f->opts.part_size ? 1 : (job->len - 1) / f->opts.part_size + 1;
        n_parts = MIN(n_parts, (uint64_t)f->opts.max_parts);
        part = n_parts <= 1 ? job->len : (job->len - 1) / n_parts + 1;
        part = (part + CHECKSUM_CHUNK - 1) / CHECKSUM_CHUNK * CHECKSUM_CHUNK;
        if (part == 0)
                part = CHECKSUM_CHUNK;
        n_parts = job->len == 0 ? 1 : (job->len - 1) / part + 1;
        job->ranges_left = (unsigned)n_parts;
        ranges = calloc(n_parts, sizeof(*ranges));
        if (!ranges) {
                store_abort(f->store, job->write);
                job->write = NULL;
                job_finish(f, job, -ENOMEM);
                return;
        }
        for (uint64_t i = 0; i < n_parts; i++) {
                ranges[i].start = ranges[i].pos = i * part;
                ranges[i].end = MIN((i + 1) * part, job->len);
        }

        pthread_mutex_lock(&f->lock);
        job->ranges = ranges;
        job->n_ranges = (unsigned)n_parts;
        /* Pushed to the front in reverse so that they run in order. */
        for (uint64_t i = n_parts; i-- > 0;) {
                fill_task *t = calloc(1, sizeof(*t));

                if (!t) {
                        /* Count it as done and failed; the others still run and end the job. */
                        job->error = -ENOMEM;
                        job->ranges_left--;
                        continue;
                }
                t->job = job;
                t->offset = i * part;
                t->len = MIN(part, job->len - t->offset);
                t->range = &ranges[i];
                queue_push(f, t, true, false);
        }
        if (job->ranges_left == 0) {
                pthread_mutex_unlock(&f->lock);
                store_abort(f->store, job->write);
                job_finish(f, job, -ENOMEM);
                return;
        }
        pthread_mutex_unlock(&f->lock);
}

typedef struct range_sink {
        fill *fill;
        fill_job *job;
        fill_range *range;
        int fd;
        uint64_t pos; /* offset in the temporary block file */
        uint64_t end;
        checksum chunk; /* of the chunk that pos is in */
} range_sink;

static uint64_t chunk_len(const fill_job *job, uint64_t pos)
{
        uint64_t start = pos / CHECKSUM_CHUNK * CHECKSUM_CHUNK;

        return MIN((uint64_t)CHECKSUM_CHUNK, job->len - start);
}

static int range_write(const void *data, size_t len, void *userdata)
{
        range_sink *s = userdata;
        const uint8_t *p = data;

        if (len > s->end - s->pos)
                return -EIO; /* the store sent more than asked */
        while (len > 0) {
                /* Up to the end of the current checksum chunk at most. */
                size_t take = MIN(len, (size_t)(CHECKSUM_CHUNK - s->pos % CHECKSUM_CHUNK));
                ssize_t n = pwrite(s->fd, p, take, (off_t)s->pos);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                checksum_update(&s->chunk, p, (size_t)n);
                p += n;
                len -= (size_t)n;
                s->pos += (uint64_t)n;
                __atomic_store_n(&s->range->pos, s->pos, __ATOMIC_SEQ_CST);
                __atomic_add_fetch(&s->fill->stats.store_bytes, (uint64_t)n, __ATOMIC_RELAXED);
                if (s->pos % CHECKSUM_CHUNK == 0 || s->pos == s->job->len) {
                        s->job->chunk_sums[(s->pos - 1) / CHECKSUM_CHUNK] =
                                checksum_final(&s->chunk);
                        if (s->pos < s->job->len)
                                checksum_init(&s->chunk, chunk_len(s->job, s->pos));
                }
        }
        if (__atomic_load_n(&s->job->n_parts, __ATOMIC_SEQ_CST) > 0)
                parts_progress(s->fill, s->job);
        return 0;
}

static bool retryable(int r)
{
        return !(r == -ESTALE || r == -ENOENT || r == -EACCES || r == -EPERM || r == -ENOSPC ||
                 r == -EDQUOT || r == -ENOMEM || r == -ECANCELED || r == -EPROTONOSUPPORT ||
                 r == -EINVAL || r == -ERANGE);
}

/* A block of a file whose ETag is its MD5 was committed: if that made the file whole here, its
 * bytes must hash to the ETag (content.h). Run after the waiters were answered. */
static void content_check(fill *f, const store_key *key, uint64_t size, uint64_t block_size,
                          const uint8_t md5[static CONTENT_MD5_LEN], const char *path)
{
        int r;

        pthread_mutex_lock(&f->lock);
        bool known = mismatch_locked(f, key);
        pthread_mutex_unlock(&f->lock);
        if (known)
                return; /* found already (a check the master asked for, or another worker) */
        r = content_check_file(f->store, key, size, block_size, md5);
        if (r == 0)
                return;
        if (r < 0 && r != -EBADMSG) {
                log_debug_errno(r, "Content check skipped: %m");
                return;
        }
        fill_count_content_check(f, r == 1);
        if (r == -EBADMSG) {
                fill_mark_mismatch(f, key);
                if (f->mismatch_hook)
                        f->mismatch_hook(f->mismatch_userdata, key, block_count(size, block_size),
                                         path);
        }
}

static void task_range(fill_thread *th, fill_task *t)
{
        fill *f = th->fill;
        fill_job *job = t->job;
        range_sink sink = {.fill = f,
                           .job = job,
                           .range = t->range,
                           .fd = job->fd,
                           .pos = t->offset,
                           .end = t->offset + t->len};
        ufs_version ver = {
                .size = job->file.size, .mtime = job->file.mtime, .etag = job->file.etag};
        unsigned delay = f->opts.backoff_ms;
        bool last;
        int r = 0;

        if (t->len > 0)
                checksum_init(&sink.chunk, chunk_len(job, t->offset));

        for (unsigned attempt = 0; sink.pos < sink.end || t->len == 0; attempt++) {
                ufs *u = NULL;

                if (__atomic_load_n(&job->error, __ATOMIC_RELAXED) < 0 ||
                    __atomic_load_n(&f->stopping, __ATOMIC_RELAXED)) {
                        r = -ECANCELED; /* another range failed, or shutting down */
                        break;
                }
                r = thread_ufs(th, job->mount, &u);
                if (r >= 0) {
                        /* Resumes after what earlier attempts wrote. */
                        r = ufs_read(u, job->rel, &ver, job->offset + sink.pos, sink.end - sink.pos,
                                     range_write, &sink);
                        if (r < 0)
                                log_debug_errno(r, "Store read of %s failed: %s (%m)", job->rel,
                                                ufs_last_error(u));
                }
                /* The filesystem is fuller than the quota thought: make room and go on where the
                 * write stopped (the quota check at reservation saw the space of that moment). */
                if (r == -ENOSPC && attempt < f->opts.retries &&
                    store_reclaim(f->store, job->write) >= 0) {
                        log_debug("Tier full while filling %s, evicted and retrying", job->rel);
                        continue;
                }
                if (r >= 0 || !retryable(r) || attempt >= f->opts.retries)
                        break;
                if (r != -EIO)
                        thread_drop_ufs(th, u); /* a fresh connection next time */
                pthread_mutex_lock(&f->lock);
                f->stats.retries++;
                pthread_mutex_unlock(&f->lock);
                sleep_ms(delay + (unsigned)(rand() % (delay / 2 + 1)));
                delay = MIN(delay * 2, 5000u);
        }
        if (r >= 0 && sink.pos != sink.end)
                r = -EIO;
        if (r == -ESTALE) {
                /* The store refused the version the master gave: it has another by now. (A
                 * version the master does not list is not marked: a lagging master may say so.) */
                fill_forget_file(f, job->key.file_id);
                mark_stale(f, &job->key);
        }

        pthread_mutex_lock(&f->lock);
        if (r < 0 && job->error >= 0)
                job->error = r;
        last = --job->ranges_left == 0;
        if (last)
                job->committing = true; /* the fd closes next: part waiters wait for the end */
        pthread_mutex_unlock(&f->lock);
        free(t);
        if (!last)
                return;

        r = job->error;
        if (r >= 0)
                r = store_commit_sum(
                        f->store, job->write,
                        checksum_combine(job->chunk_sums, checksum_n_chunks(job->len), job->len));
        else
                store_abort(f->store, job->write);
        job->write = NULL;
        if (r >= 0) {
                /* Marked while it was being fetched: the mark's drop may have run before this
                 * commit, so drop it here (a mark after this check drops it then). */
                pthread_mutex_lock(&f->lock);
                bool bad = mismatch_locked(f, &job->key);
                pthread_mutex_unlock(&f->lock);
                if (bad) {
                        (void)store_remove(f->store, &job->key);
                        r = -EILSEQ;
                }
        }
        {
                /* What the content check needs, copied: JOB is gone after job_finish(). */
                uint8_t md5[CONTENT_MD5_LEN];
                bool check = r >= 0 && content_md5_from_etag(job->file.etag, md5);
                store_key key = job->key;
                uint64_t size = job->file.size, block_size = job->file.block_size;
                _cleanup_free_ char *path = check && job->file.path ? strdup(job->file.path) : NULL;

                job_finish(f, job, r);
                if (check)
                        content_check(f, &key, size, block_size, md5, path);
        }
}

static void *thread_main(void *userdata)
{
        fill_thread *th = userdata;
        fill *f = th->fill;

        for (;;) {
                fill_task *t;

                pthread_mutex_lock(&f->lock);
                while (!f->stopping && !f->head && !f->pf_head)
                        pthread_cond_wait(&f->cond, &f->lock);
                if (f->stopping) {
                        pthread_mutex_unlock(&f->lock);
                        break;
                }
                t = queue_pop(f);
                pthread_mutex_unlock(&f->lock);

                if (t->start) {
                        task_start(th, t->job);
                        free(t);
                } else
                        task_range(th, t);
        }
        for (unsigned i = 0; i < FILL_UFS_PER_THREAD; i++)
                th->handles[i].ufs = ufs_free(th->handles[i].ufs);
        return NULL;
}

int fill_new(const config *cfg, store *s, const fill_options *opts, fill_resolve_fn resolve,
             void *userdata, fill **ret)
{
        fill *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        f->cfg = cfg;
        f->store = s;
        f->resolve = resolve;
        f->userdata = userdata;
        f->opts = opts ? *opts : (fill_options){};
        if (f->opts.threads == 0)
                f->opts.threads = 16;
        if (f->opts.part_size == 0)
                f->opts.part_size = 2u << 20;
        if (f->opts.max_parts == 0)
                f->opts.max_parts = 8;
        if (f->opts.backoff_ms == 0)
                f->opts.backoff_ms = 100;
        if (f->opts.retries == 0)
                f->opts.retries = 4;
        hmap_init_mem(&f->jobs, sizeof(store_key));
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        pthread_cond_init(&f->meta_cond, NULL);
        f->threads = calloc(f->opts.threads, sizeof(*f->threads));
        if (!f->threads) {
                fill_free(f);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < f->opts.threads; i++) {
                f->threads[i] = (fill_thread){.fill = f, .index = i};
                r = -pthread_create(&f->threads[i].tid, NULL, thread_main, &f->threads[i]);
                if (r < 0) {
                        fill_free(f);
                        return r;
                }
                f->threads[i].started = true;
        }
        *ret = f;
        return 0;
}

static void fail_queued(fill *f, fill_task **head, fill_task **tail)
{
        while (*head) {
                fill_task *t = *head;

                *head = t->next;
                if (t->start)
                        job_finish(f, t->job, -ECANCELED);
                else {
                        /* Threads are joined: ranges of started jobs end them here. */
                        fill_job *job = t->job;

                        if (--job->ranges_left == 0) {
                                store_abort(f->store, job->write);
                                job_finish(f, job, -ECANCELED);
                        }
                }
                free(t);
        }
        *tail = NULL;
}

fill *fill_free(fill *f)
{
        if (!f)
                return NULL;
        pthread_mutex_lock(&f->lock);
        f->stopping = true;
        pthread_cond_broadcast(&f->cond);
        pthread_cond_broadcast(&f->meta_cond);
        pthread_mutex_unlock(&f->lock);
        for (unsigned i = 0; f->threads && i < f->opts.threads; i++)
                if (f->threads[i].started)
                        pthread_join(f->threads[i].tid, NULL);
        fail_queued(f, &f->head, &f->tail);
        fail_queued(f, &f->pf_head, &f->pf_tail);
        for (size_t i = 0; i < FILL_META_SLOTS; i++)
                if (f->meta[i].valid)
                        fill_file_done(&f->meta[i].file);
        free(f->threads);
        hmap_done(&f->jobs); /* empty: every job ended in job_finish */
        pthread_cond_destroy(&f->cond);
        pthread_cond_destroy(&f->meta_cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return NULL;
}

void fill_get_stats(fill *f, fill_stats *ret)
{
        pthread_mutex_lock(&f->lock);
        *ret = f->stats;
        pthread_mutex_unlock(&f->lock);
        ret->store_bytes = __atomic_load_n(&f->stats.store_bytes, __ATOMIC_RELAXED);
}

/* --- the guard (fill.h) ---------------------------------------------------------------------- */

void fill_guard_init(fill_guard *g, fill *f_take)
{
        assert(g);
        pthread_rwlock_init(&g->lock, NULL);
        g->fill = f_take;
}

fill *fill_guard_take(fill_guard *g)
{
        fill *f;

        pthread_rwlock_wrlock(&g->lock);
        f = g->fill;
        g->fill = NULL;
        pthread_rwlock_unlock(&g->lock);
        return f;
}

void fill_guard_done(fill_guard *g)
{
        assert(!g->fill); /* taken first: a fill left here would leak its threads */
        pthread_rwlock_destroy(&g->lock);
}

int fill_guard_block(fill_guard *g, const store_key *k, unsigned readahead, fill_done_fn done,
                     void *userdata)
{
        int r;

        pthread_rwlock_rdlock(&g->lock);
        r = g->fill ? fill_block(g->fill, k, readahead, done, userdata) : -ECANCELED;
        pthread_rwlock_unlock(&g->lock);
        return r;
}

int fill_guard_block_part(fill_guard *g, const store_key *k, uint64_t off, uint64_t len,
                          unsigned readahead, fill_part_fn done, void *userdata)
{
        int r;

        pthread_rwlock_rdlock(&g->lock);
        r = g->fill ? fill_block_part(g->fill, k, off, len, readahead, done, userdata) : -ECANCELED;
        pthread_rwlock_unlock(&g->lock);
        return r;
}

void fill_guard_stats(fill_guard *g, fill_stats *ret)
{
        pthread_rwlock_rdlock(&g->lock);
        if (g->fill)
                fill_get_stats(g->fill, ret);
        else
                *ret = (fill_stats){};
        pthread_rwlock_unlock(&g->lock);
}

void fill_guard_mark_mismatch(fill_guard *g, const store_key *k)
{
        pthread_rwlock_rdlock(&g->lock);
        if (g->fill)
                fill_mark_mismatch(g->fill, k);
        pthread_rwlock_unlock(&g->lock);
}

bool fill_guard_is_mismatch(fill_guard *g, const store_key *k)
{
        bool r = false;

        pthread_rwlock_rdlock(&g->lock);
        if (g->fill)
                r = fill_is_mismatch(g->fill, k);
        pthread_rwlock_unlock(&g->lock);
        return r;
}

void fill_guard_count_content_check(fill_guard *g, bool match)
{
        pthread_rwlock_rdlock(&g->lock);
        if (g->fill)
                fill_count_content_check(g->fill, match);
        pthread_rwlock_unlock(&g->lock);
}
