/* Sequential read-ahead: an adaptive window per open file, and threads that warm blocks. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "cleanup.h"
#include "hmap.h"
#include "log.h"
#include "prefetch.h"

#define PREFETCH_MAX_QUEUE 256

void prefetch_window_init(prefetch_window *w, unsigned max_window)
{
        *w = (prefetch_window){.max_window = max_window};
}

void prefetch_window_advance(prefetch_window *w, uint64_t offset, uint64_t len, uint64_t block_size,
                             uint64_t n_blocks, uint64_t *ret_first, uint64_t *ret_end)
{
        uint64_t end = offset + len, cur, first, last;
        bool sequential = offset + PREFETCH_SEQ_SLACK >= w->next_offset &&
                          offset <= w->next_offset + PREFETCH_SEQ_SLACK;

        *ret_first = *ret_end = 0;
        if (sequential) {
                w->window = w->window ? MIN(w->window * 2, w->max_window) : MIN(1u, w->max_window);
                if (end > w->next_offset)
                        w->next_offset = end;
        } else {
                w->window = 0;
                w->issued_until = 0;
                w->next_offset = end;
                return;
        }
        if (len == 0 || w->window == 0 || block_size == 0)
                return;
        cur = (end - 1) / block_size;
        first = MAX(cur + 1, w->issued_until);
        last = MIN(cur + 1 + w->window, n_blocks);
        if (first < last) {
                *ret_first = first;
                *ret_end = last;
                w->issued_until = last;
        }
}

typedef struct job {
        struct job *next;
        char id[BLOCK_ID_MAX];
        reader_file file;
        uint64_t index;
} job;

struct prefetch {
        reader *reader;
        pthread_t *threads;
        unsigned n_threads;

        /* lock guards the queue, the in-flight set and stopping */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        job *head, *tail;
        size_t queued;
        hmap pending; /* block id -> job, queued or running */
        bool stopping;
};

static job *job_free(job *j)
{
        if (j) {
                reader_file_done(&j->file);
                free(j);
        }
        return NULL;
}

static void *prefetch_thread(void *userdata)
{
        prefetch *p = userdata;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                job *j;
                int r;

                while (!p->stopping && !p->head)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stopping)
                        break;
                j = p->head;
                p->head = j->next;
                if (!p->head)
                        p->tail = NULL;
                p->queued--;
                pthread_mutex_unlock(&p->lock);

                r = reader_warm(p->reader, &j->file, j->index);
                if (r < 0)
                        log_debug_errno(r, "Prefetch of block %s failed: %m", j->id);

                pthread_mutex_lock(&p->lock);
                hmap_remove_str(&p->pending, j->id);
                job_free(j);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int prefetch_new(reader *r, unsigned n_threads, prefetch **ret)
{
        prefetch *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->reader = r;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        hmap_init(&p->pending, true);
        p->threads = calloc(n_threads ? n_threads : 1, sizeof(pthread_t));
        if (!p->threads) {
                prefetch_free(p);
                return -ENOMEM;
        }
        for (; p->n_threads < n_threads; p->n_threads++) {
                int k = pthread_create(&p->threads[p->n_threads], NULL, prefetch_thread, p);

                if (k != 0) {
                        prefetch_free(p);
                        return -k;
                }
        }
        *ret = p;
        return 0;
}

prefetch *prefetch_free(prefetch *p)
{
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        for (job *j = p->head, *n; j; j = n) {
                n = j->next;
                job_free(j);
        }
        hmap_done(&p->pending);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
        return NULL;
}

void prefetch_queue(prefetch *p, const reader_file *f, uint64_t index)
{
        block_key key = {
                .epoch = f->epoch, .file_id = f->file_id, .version = f->version, .index = index};
        job *j = calloc(1, sizeof(*j));

        if (!j)
                return;
        block_id_format(j->id, &key);
        j->index = index;
        j->file = *f;
        j->file.path = strdup(f->path);
        j->file.etag = f->etag ? strdup(f->etag) : NULL;
        if (!j->file.path || (f->etag && !j->file.etag)) {
                job_free(j);
                return;
        }
        pthread_mutex_lock(&p->lock);
        if (p->stopping || p->queued >= PREFETCH_MAX_QUEUE || hmap_get_str(&p->pending, j->id) ||
            hmap_put_str(&p->pending, j->id, j, NULL) < 0) {
                pthread_mutex_unlock(&p->lock);
                job_free(j);
                return;
        }
        if (p->tail)
                p->tail->next = j;
        else
                p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
}
