/* One page of a directory listing: the LIMIT smallest names after AFTER, in name order. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "listing.h"

typedef struct page_item {
        const char *name; /* borrowed from the state: valid while the state lock is held */
        const fsm_node *node;
} page_item;

typedef struct page_scan {
        const char *after;
        size_t limit;
        page_item *heap; /* max-heap by name: heap[0] is the largest name kept */
        size_t n;
        bool more; /* a name after AFTER was not kept */
} page_scan;

static void heap_sift_down(page_item *h, size_t n, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, big = i;

                if (l < n && strcmp(h[l].name, h[big].name) > 0)
                        big = l;
                if (r < n && strcmp(h[r].name, h[big].name) > 0)
                        big = r;
                if (big == i)
                        return;
                page_item t = h[i];
                h[i] = h[big];
                h[big] = t;
                i = big;
        }
}

static void heap_sift_up(page_item *h, size_t i)
{
        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (strcmp(h[i].name, h[parent].name) <= 0)
                        return;
                page_item t = h[i];
                h[i] = h[parent];
                h[parent] = t;
                i = parent;
        }
}

static int page_scan_one(const char *name, const fsm_node *node, void *userdata)
{
        page_scan *s = userdata;

        if (s->after && strcmp(name, s->after) <= 0)
                return 0;
        if (s->n < s->limit) {
                s->heap[s->n] = (page_item){.name = name, .node = node};
                heap_sift_up(s->heap, s->n++);
                return 0;
        }
        s->more = true;
        if (strcmp(name, s->heap[0].name) < 0) {
                /* replaces the largest kept name, which becomes one of those left for later */
                s->heap[0] = (page_item){.name = name, .node = node};
                heap_sift_down(s->heap, s->n, 0);
        }
        return 0;
}

static int item_compare(const void *a, const void *b)
{
        return strcmp(((const page_item *)a)->name, ((const page_item *)b)->name);
}

int listing_page(const fsm *f, const char *dataset, const char *path, const char *after,
                 size_t limit, unsigned flags, json_t **ret_entries, bool *ret_more)
{
        _cleanup_free_ page_item *heap = NULL;
        page_scan s = {.after = after && *after ? after : NULL, .limit = limit};
        json_t *entries;
        int r;

        if (limit == 0 || limit > LISTING_LIMIT_MAX)
                return -EINVAL;
        heap = calloc(limit, sizeof(*heap));
        if (!heap)
                return -ENOMEM;
        s.heap = heap;
        r = fsm_dir_scan(f, dataset, path, page_scan_one, &s);
        if (r < 0)
                return r;
        qsort(heap, s.n, sizeof(*heap), item_compare);
        entries = json_array();
        if (!entries)
                return -ENOMEM;
        for (size_t i = 0; i < s.n; i++) {
                json_t *e = fsm_node_entry(heap[i].node);

                if (e && (flags & LISTING_ATTR_ONLY)) {
                        /* what a file system shows: half the bytes to encode and parse */
                        json_object_del(e, "etag");
                        json_object_del(e, "ufs_url");
                }
                if (json_array_append_new(entries, e) < 0) {
                        json_decref(entries);
                        return -ENOMEM;
                }
        }
        *ret_entries = entries;
        *ret_more = s.more;
        return 0;
}
