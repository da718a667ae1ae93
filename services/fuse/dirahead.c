/* Prefetch across files (see dirahead.h).
 *
 * Each open of a file looks its name up in its directory's listing page (cached: the reader
 * listed it; the page after the current one when the reader crosses into it) and moves that
 * directory's window (within one page: at a page's end it waits until the reader crosses; at
 * most DIRAHEAD_DIRS directories are followed, the least recently opened one is dropped). Files entering the window are queued as jobs; `threads` threads take
 * them and ask a worker for each file's first blocks (reader_warm: the local worker fills the
 * block from the store with its own connections, one fetch however many ask), so a single
 * sequential reader keeps as many store transfers in flight as that many parallel readers would.
 *
 * Cancelling: each directory's queued jobs share a ticket. An open out of order in that
 * directory, an open in another directory after it, or its eviction from the table cancels the
 * ticket; threads drop jobs whose ticket is cancelled instead of starting them. Warm-ups already
 * started finish (they are bounded by the window).
 *
 * Locking: `lock` guards the directory table, the queue, the tickets' flags and the counters.
 * Metadata calls and warm-ups run unlocked. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "cleanup.h"
#include "dirahead.h"
#include "inode.h"
#include "log.h"

#define DIRAHEAD_DIRS 16

void dirahead_window_init(dirahead_window *w, unsigned max_files, uint64_t max_bytes)
{
        *w = (dirahead_window){.last = SIZE_MAX, .max_files = max_files, .max_bytes = max_bytes};
}

static uint64_t entry_cost(const dirahead_window *w, const meta_entry *e)
{
        return e->dir ? 0 : MIN(e->size, w->max_bytes);
}

void dirahead_window_next_page(dirahead_window *w)
{
        w->last = SIZE_MAX;
        w->issued_until = 0;
        w->carried = w->window > 0;
}

bool dirahead_window_advance(dirahead_window *w, const meta_listing *l, size_t i, size_t *ret_first,
                             size_t *ret_end)
{
        bool in_order = (w->last != SIZE_MAX && i > w->last && i <= w->last + 1 + DIRAHEAD_SLACK) ||
                        (w->last == SIZE_MAX && w->carried && i <= DIRAHEAD_SLACK);
        bool cancel = false;
        uint64_t ahead = 0;
        unsigned files = 0;
        size_t j;

        *ret_first = *ret_end = 0;
        if (w->max_files == 0 || i >= l->n)
                return false;
        if (w->last != SIZE_MAX && i == w->last)
                return false; /* the same file opened again */
        if (in_order) {
                w->window = w->window ? MIN(w->window * 2, w->max_files) : 1;
        } else {
                /* The first open in a directory may start a walk: one file ahead costs little.
                 * Anything else out of order ends the walk. */
                cancel = w->last != SIZE_MAX && w->issued_until > i + 1;
                w->window = w->last == SIZE_MAX ? 1 : 0;
                w->issued_until = 0;
        }
        w->last = i;
        w->carried = false;
        if (w->window == 0)
                return cancel;
        /* what is already started ahead of the reader counts against both bounds */
        for (j = i + 1; j < MIN(w->issued_until, l->n); j++) {
                if (l->entries[j].dir)
                        continue;
                ahead += entry_cost(w, &l->entries[j]);
                files++;
        }
        j = MAX(i + 1, w->issued_until);
        *ret_first = j;
        for (; j < l->n && files < w->window; j++) {
                const meta_entry *e = &l->entries[j];
                uint64_t cost = entry_cost(w, e);

                if (e->dir)
                        continue;
                if (files > 0 && ahead + cost > w->max_bytes)
                        break;
                ahead += cost;
                files++;
        }
        *ret_end = j;
        if (j > w->issued_until)
                w->issued_until = j;
        if (*ret_first >= *ret_end)
                *ret_first = *ret_end = 0;
        return cancel;
}

typedef struct ticket {
        unsigned refs; /* under the lock */
        bool cancelled;
} ticket;

typedef struct job {
        struct job *next;
        ticket *ticket;
        reader_file file;
        uint64_t bytes; /* warm the blocks holding the first BYTES */
} job;

typedef struct dir_track {
        char *dir;
        meta_listing *listing;
        dirahead_window w;
        ticket *ticket;
        uint64_t used; /* the table's clock at its last open */
} dir_track;

struct dirahead {
        reader *reader;
        meta *meta;
        dirahead_options opts;
        pthread_t *threads;
        unsigned n_threads;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        job *head, *tail;
        bool stopping;
        dir_track dirs[DIRAHEAD_DIRS];
        uint64_t clock;
        dir_track *last_dir; /* where the last open was */
        dirahead_stats stats;
};

static void ticket_unref_locked(ticket *t)
{
        if (t && --t->refs == 0)
                free(t);
}

static void job_free_locked(job *j)
{
        ticket_unref_locked(j->ticket);
        reader_file_done(&j->file);
        free(j);
}

static void track_cancel_locked(dirahead *d, dir_track *t)
{
        if (t->ticket) {
                t->ticket->cancelled = true;
                ticket_unref_locked(t->ticket);
                t->ticket = NULL;
        }
        /* files not started yet may be started again when the reader comes back */
        if (t->w.last != SIZE_MAX)
                t->w.issued_until = t->w.last + 1;
        (void)d;
}

static void track_clear_locked(dirahead *d, dir_track *t)
{
        track_cancel_locked(d, t);
        meta_listing_unref(t->listing);
        free(t->dir);
        *t = (dir_track){};
}

static void *dirahead_thread(void *userdata)
{
        dirahead *d = userdata;

        pthread_mutex_lock(&d->lock);
        for (;;) {
                job *j;

                while (!d->stopping && !d->head)
                        pthread_cond_wait(&d->cond, &d->lock);
                if (d->stopping)
                        break;
                j = d->head;
                d->head = j->next;
                if (!d->head)
                        d->tail = NULL;
                if (j->ticket->cancelled) {
                        d->stats.cancelled++;
                        job_free_locked(j);
                        continue;
                }
                d->stats.files++;
                d->stats.bytes += j->bytes;
                pthread_mutex_unlock(&d->lock);

                for (uint64_t b = 0; b * j->file.block_size < j->bytes; b++) {
                        int r = reader_warm(d->reader, &j->file, b);

                        if (r < 0) {
                                log_debug_errno(r, "Prefetch of block %" PRIu64 " of %s: %m", b,
                                                j->file.path);
                                break;
                        }
                }

                pthread_mutex_lock(&d->lock);
                job_free_locked(j);
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

int dirahead_new(reader *r, meta *m, const dirahead_options *o, dirahead **ret)
{
        dirahead *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        d->reader = r;
        d->meta = m;
        d->opts = *o;
        pthread_mutex_init(&d->lock, NULL);
        pthread_cond_init(&d->cond, NULL);
        d->threads = calloc(MAX(o->threads, 1u), sizeof(pthread_t));
        if (!d->threads) {
                dirahead_free(d);
                return -ENOMEM;
        }
        for (; o->max_files > 0 && d->n_threads < o->threads; d->n_threads++) {
                int k = pthread_create(&d->threads[d->n_threads], NULL, dirahead_thread, d);

                if (k != 0) {
                        dirahead_free(d);
                        return -k;
                }
        }
        *ret = d;
        return 0;
}

dirahead *dirahead_free(dirahead *d)
{
        if (!d)
                return NULL;
        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_broadcast(&d->cond);
        pthread_mutex_unlock(&d->lock);
        for (unsigned i = 0; i < d->n_threads; i++)
                pthread_join(d->threads[i], NULL);
        pthread_mutex_lock(&d->lock);
        for (job *j = d->head, *n; j; j = n) {
                n = j->next;
                job_free_locked(j);
        }
        for (size_t i = 0; i < DIRAHEAD_DIRS; i++)
                track_clear_locked(d, &d->dirs[i]);
        pthread_mutex_unlock(&d->lock);
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
        free(d->threads);
        free(d);
        return NULL;
}

/* The directory's slot: found, or the least recently used one, cleared. */
static dir_track *track_get_locked(dirahead *d, const char *dir, bool *ret_new)
{
        dir_track *lru = &d->dirs[0];

        for (size_t i = 0; i < DIRAHEAD_DIRS; i++) {
                dir_track *t = &d->dirs[i];

                if (t->dir && strcmp(t->dir, dir) == 0) {
                        *ret_new = false;
                        return t;
                }
                if (!t->dir || (lru->dir && t->used < lru->used))
                        lru = t;
        }
        track_clear_locked(d, lru);
        *ret_new = true;
        return lru;
}

static job *job_new(const char *dir, const meta_entry *e, uint64_t block_size, uint64_t bytes)
{
        job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->file = (reader_file){
                .path = inode_path_join(dir, e->name),
                .epoch = e->epoch,
                .file_id = e->file_id,
                .version = e->version,
                .size = e->size,
                .mtime = (int64_t)e->mtime,
                .etag = e->etag ? strdup(e->etag) : NULL,
                .block_size = block_size,
        };
        j->bytes = bytes;
        if (!j->file.path || (e->etag && !j->file.etag)) {
                reader_file_done(&j->file);
                free(j);
                return NULL;
        }
        return j;
}

/* The listing page of DIR holding NAME: the page the directory's tracker holds, the page after
 * it (a reader crossing into it; cached when readdir fetched it), or the first page. Never a walk
 * through the pages: a file found in none of them gets no prefetch (one request at most). */
static meta_listing *find_page(dirahead *d, const char *dir, const char *name,
                               meta_listing *current, bool *ret_next)
{
        meta_listing *l = NULL;

        *ret_next = false;
        if (current && meta_listing_find(current, name))
                return meta_listing_ref(current);
        if (current && current->more && current->n > 0 &&
            strcmp(name, current->entries[current->n - 1].name) > 0) {
                if (meta_list_page(d->meta, dir, current->entries[current->n - 1].name, false, &l) <
                    0)
                        return NULL;
                if (meta_listing_find(l, name)) {
                        *ret_next = true;
                        return l;
                }
                meta_listing_unref(l);
                return NULL;
        }
        if (meta_list_page(d->meta, dir, NULL, false, &l) < 0)
                return NULL;
        if (meta_listing_find(l, name))
                return l;
        meta_listing_unref(l);
        return NULL;
}

void dirahead_opened(dirahead *d, const char *path, uint64_t block_size)
{
        _cleanup_free_ char *dir = NULL;
        const char *slash = strrchr(path, '/');
        meta_listing *l = NULL, *current = NULL;
        const meta_entry *e;
        size_t first, end, i;
        job *head = NULL, **tail = &head;
        dir_track *t;
        bool fresh, next_page;

        if (!d || d->opts.max_files == 0 || !slash || block_size == 0)
                return;
        dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        if (!dir)
                return;
        pthread_mutex_lock(&d->lock);
        for (size_t k = 0; k < DIRAHEAD_DIRS; k++)
                if (d->dirs[k].dir && strcmp(d->dirs[k].dir, dir) == 0 && d->dirs[k].listing)
                        current = meta_listing_ref(d->dirs[k].listing);
        pthread_mutex_unlock(&d->lock);
        l = find_page(d, dir, slash + 1, current, &next_page);
        meta_listing_unref(current);
        if (!l)
                return;
        e = meta_listing_find(l, slash + 1);
        i = (size_t)(e - l->entries);

        pthread_mutex_lock(&d->lock);
        t = track_get_locked(d, dir, &fresh);
        if (fresh) {
                t->dir = TAKE_PTR(dir);
                dirahead_window_init(&t->w, d->opts.max_files, d->opts.max_bytes);
        }
        if (t->listing != l) {
                if (next_page && t->listing)
                        /* the reader went on into the next page: the walk goes on there */
                        dirahead_window_next_page(&t->w);
                else if (t->listing)
                        /* another page or a refreshed one: indices moved, start over */
                        dirahead_window_init(&t->w, d->opts.max_files, d->opts.max_bytes);
                meta_listing_unref(t->listing);
                t->listing = meta_listing_ref(l);
        }
        t->used = ++d->clock;
        /* the reader went elsewhere: what was queued for the directory it left is not needed */
        if (d->last_dir && d->last_dir != t)
                track_cancel_locked(d, d->last_dir);
        d->last_dir = t;
        if (dirahead_window_advance(&t->w, l, i, &first, &end))
                track_cancel_locked(d, t);
        for (size_t k = first; k < end; k++) {
                const meta_entry *n = &l->entries[k];
                job *j;

                if (n->dir || n->size == 0)
                        continue;
                if (!t->ticket) {
                        t->ticket = calloc(1, sizeof(*t->ticket));
                        if (!t->ticket)
                                break;
                        t->ticket->refs = 1;
                }
                j = job_new(t->dir, n, block_size, MIN(n->size, d->opts.max_bytes));
                if (!j)
                        break;
                j->ticket = t->ticket;
                t->ticket->refs++;
                *tail = j;
                tail = &j->next;
        }
        if (head) {
                if (d->tail)
                        d->tail->next = head;
                else
                        d->head = head;
                /* one thread woken per job: a broadcast would wake every idle thread for each
                 * open, most of them to find nothing (tens of futex calls per small file) */
                for (job *j = head; j; j = j->next) {
                        d->tail = j;
                        pthread_cond_signal(&d->cond);
                }
        }
        pthread_mutex_unlock(&d->lock);
        meta_listing_unref(l);
}

void dirahead_get_stats(dirahead *d, dirahead_stats *ret)
{
        *ret = (dirahead_stats){};
        if (!d)
                return;
        pthread_mutex_lock(&d->lock);
        *ret = d->stats;
        pthread_mutex_unlock(&d->lock);
}
