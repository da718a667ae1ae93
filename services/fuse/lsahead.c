/* Listing read-ahead for walks (see lsahead.h).
 *
 * A walk (find, du, ls -R: fts underneath) reads a directory whole, then descends into its
 * subdirectories in the order readdir gave, which is the listing's byte order. Each start of a
 * directory read therefore tells where the walk is: its first subdirectories come next, then
 * its siblings after it. Both are queued, at most `window` directories past the walk, and
 * `threads` threads fetch their first pages into the page cache (meta_list_page), so the
 * kernel's next READDIRPLUS is answered without waiting for the master. Within a directory of
 * several pages, the page after the one being read is fetched the same way.
 *
 * State per directory followed (up to LSAHEAD_DIRS, the least recently used replaced): the page
 * whose entries are being queued and how far, so that each step queues only the one or two
 * directories entering the window. Memory is bounded by the queue (LSAHEAD_QUEUE paths) and the
 * page cache's own byte bound; a walk that stops leaves at most the window fetched.
 *
 * Locking: `lock` guards the queue, the directory states and the counters. Fetches run
 * unlocked. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "inode.h"
#include "log.h"
#include "lsahead.h"

#define LSAHEAD_DIRS 8

typedef struct dir_state {
        char *path;
        meta_listing *page; /* the page of PATH being queued from */
        size_t issued_until;
        uint64_t used; /* tick of the last use: the smallest is replaced */
} dir_state;

struct lsahead {
        meta *meta;
        unsigned window;
        unsigned n_threads;
        pthread_t *threads;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct lsahead_job {
                char *path;
                char *after;    /* NULL: the first page */
        } queue[LSAHEAD_QUEUE]; /* a ring */
        size_t head, n;
        char *last_next; /* "DIR//AFTER" of the last next page queued (one per page, not per
                          * readdir request) */
        bool stop;
        dir_state dirs[LSAHEAD_DIRS];
        uint64_t tick;
        lsahead_stats stats;
};

void lsahead_window(const meta_listing *l, size_t i, unsigned window, size_t *issued_until,
                    size_t *ret_first, size_t *ret_end)
{
        size_t end = i;
        unsigned dirs = 0;

        while (end < l->n && dirs < window)
                dirs += l->entries[end++].dir;
        *ret_first = MAX(i, *issued_until);
        *ret_end = MAX(end, *ret_first);
        *issued_until = MAX(*issued_until, *ret_end);
}

static void *fetch_thread(void *userdata)
{
        lsahead *a = userdata;

        pthread_mutex_lock(&a->lock);
        for (;;) {
                _cleanup_free_ char *path = NULL, *after = NULL;
                meta_listing *l = NULL;

                while (!a->stop && a->n == 0)
                        pthread_cond_wait(&a->cond, &a->lock);
                if (a->stop)
                        break;
                path = a->queue[a->head].path;
                after = a->queue[a->head].after;
                a->head = (a->head + 1) % LSAHEAD_QUEUE;
                a->n--;
                pthread_mutex_unlock(&a->lock);
                /* a page read since it was queued is cached: nothing to do */
                bool fetch = !meta_page_cached(a->meta, path, after);
                if (fetch && meta_list_page(a->meta, path, after, false, &l) >= 0)
                        meta_listing_unref(l);
                else
                        fetch = false;
                pthread_mutex_lock(&a->lock);
                a->stats.fetched += fetch;
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

int lsahead_new(meta *m, unsigned window, unsigned threads, lsahead **ret)
{
        lsahead *a = calloc(1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        a->meta = m;
        a->window = MIN(window, LSAHEAD_WINDOW_MAX);
        pthread_mutex_init(&a->lock, NULL);
        pthread_cond_init(&a->cond, NULL);
        if (a->window > 0 && threads > 0) {
                a->threads = calloc(threads, sizeof(pthread_t));
                if (!a->threads) {
                        lsahead_free(a);
                        return -ENOMEM;
                }
                for (; a->n_threads < threads; a->n_threads++) {
                        int r = pthread_create(&a->threads[a->n_threads], NULL, fetch_thread, a);
                        if (r != 0) {
                                lsahead_free(a);
                                return -r;
                        }
                }
        } else {
                a->window = 0;
        }
        *ret = a;
        return 0;
}

lsahead *lsahead_free(lsahead *a)
{
        if (!a)
                return NULL;
        pthread_mutex_lock(&a->lock);
        a->stop = true;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
        for (unsigned i = 0; i < a->n_threads; i++)
                pthread_join(a->threads[i], NULL);
        free(a->threads);
        for (; a->n > 0; a->n--, a->head = (a->head + 1) % LSAHEAD_QUEUE) {
                free(a->queue[a->head].path);
                free(a->queue[a->head].after);
        }
        free(a->last_next);
        for (size_t i = 0; i < LSAHEAD_DIRS; i++) {
                free(a->dirs[i].path);
                meta_listing_unref(a->dirs[i].page);
        }
        pthread_cond_destroy(&a->cond);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
}

/* The state of directory PATH reading from PAGE (lock held): found, or the least recently used
 * one replaced; a state on another page of PATH starts that page over. NULL on out of memory. */
static dir_state *state_locked(lsahead *a, const char *path, const meta_listing *page)
{
        dir_state *s = NULL;

        for (size_t i = 0; i < LSAHEAD_DIRS; i++)
                if (a->dirs[i].path && strcmp(a->dirs[i].path, path) == 0) {
                        s = &a->dirs[i];
                        break;
                }
        if (!s) {
                char *copy = strdup(path);

                if (!copy)
                        return NULL;
                s = &a->dirs[0];
                for (size_t i = 1; i < LSAHEAD_DIRS; i++)
                        if (a->dirs[i].used < s->used)
                                s = &a->dirs[i];
                free(s->path);
                meta_listing_unref(s->page);
                *s = (dir_state){.path = copy};
        }
        if (s->page != page) {
                meta_listing_unref(s->page);
                s->page = meta_listing_ref((meta_listing *)page);
                s->issued_until = 0;
        }
        s->used = ++a->tick;
        return s;
}

/* Queues the subdirectories of DIR among entries [I, I + window dirs) of its PAGE (lock held). */
static void queue_from_locked(lsahead *a, const char *dir, const meta_listing *page, size_t i)
{
        dir_state *s = state_locked(a, dir, page);
        size_t first, end;

        if (!s)
                return;
        lsahead_window(page, i, a->window, &s->issued_until, &first, &end);
        for (size_t j = first; j < end; j++) {
                char *path;

                if (!page->entries[j].dir)
                        continue;
                if (a->n == LSAHEAD_QUEUE) {
                        a->stats.dropped++;
                        continue;
                }
                path = inode_path_join(dir, page->entries[j].name);
                if (!path)
                        return;
                a->queue[(a->head + a->n++) % LSAHEAD_QUEUE] = (struct lsahead_job){.path = path};
                a->stats.queued++;
                pthread_cond_signal(&a->cond);
        }
}

void lsahead_started(lsahead *a, const char *dir, const meta_listing *first)
{
        _cleanup_free_ char *parent = NULL;
        const char *slash = strrchr(dir, '/');
        meta_listing *page = NULL;
        size_t i;

        if (!a || a->window == 0)
                return;
        /* the siblings after DIR, from the parent's cached pages (the walk read them) */
        if (slash && slash[1] &&
            (parent = slash == dir ? strdup("/") : strndup(dir, (size_t)(slash - dir))) &&
            meta_cached_page_of(a->meta, parent, slash + 1, &page, &i) < 0)
                page = NULL;
        pthread_mutex_lock(&a->lock);
        if (first)
                queue_from_locked(a, dir, first, 0);
        if (page)
                queue_from_locked(a, parent, page, i + 1);
        pthread_mutex_unlock(&a->lock);
        meta_listing_unref(page);
}

void lsahead_next_page(lsahead *a, const char *dir, const meta_listing *page)
{
        _cleanup_free_ char *key = NULL;
        const char *last;

        if (!a || a->window == 0 || !page->more || page->n == 0)
                return;
        last = page->entries[page->n - 1].name;
        if (asprintf(&key, "%s//%s", dir, last) < 0)
                return;
        pthread_mutex_lock(&a->lock);
        if (!a->last_next || strcmp(a->last_next, key) != 0) {
                char *path = strdup(dir), *after = strdup(last);

                if (a->n == LSAHEAD_QUEUE || !path || !after) {
                        a->stats.dropped += a->n == LSAHEAD_QUEUE;
                        free(path);
                        free(after);
                } else {
                        a->queue[(a->head + a->n++) % LSAHEAD_QUEUE] =
                                (struct lsahead_job){.path = path, .after = after};
                        a->stats.queued++;
                        free(a->last_next);
                        a->last_next = TAKE_PTR(key);
                        pthread_cond_signal(&a->cond);
                }
        }
        pthread_mutex_unlock(&a->lock);
}

void lsahead_get_stats(lsahead *a, lsahead_stats *ret)
{
        pthread_mutex_lock(&a->lock);
        *ret = a->stats;
        pthread_mutex_unlock(&a->lock);
}
