/* One page of a directory listing: the LIMIT smallest names after AFTER, in name order. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "listing.h"
#include "lswire.h"

int listing_page(fsm *f, const char *dataset, const char *path, const char *after, size_t limit,
                 unsigned flags, json_t **ret_entries, bool *ret_more)
{
        json_t *out = NULL, *entries, *e;
        size_t i;
        int r;

        if (limit == 0 || limit > LISTING_LIMIT_MAX)
                return -EINVAL;
        r = fsm_ls_page(f, dataset, path, after && *after ? after : NULL, limit, &out);
        if (r < 0)
                return r;
        entries = json_object_get(out, "entries");
        if (flags & LISTING_ATTR_ONLY)
                json_array_foreach(entries, i, e) {
                        /* what a file system shows: half the bytes to encode and parse */
                        json_object_del(e, "etag");
                        json_object_del(e, "ufs_url");
                }
        *ret_more = json_object_get(out, "next") != NULL;
        *ret_entries = json_incref(entries);
        json_decref(out);
        return 0;
}

typedef struct binary_state {
        lswire_buf *buf;
        size_t limit;
        bool more;
} binary_state;

static int binary_one(const char *name, size_t name_len, const store_entry *e, void *userdata)
{
        binary_state *s = userdata;
        lswire_entry w = {
                .name = name,
                .name_len = name_len,
                .dir = e->dir,
                .mtime = e->mtime,
                .size = e->dir ? 0 : e->size,
                .file_id = e->dir ? 0 : e->id,
                .version = e->dir ? 0 : e->version,
        };

        if (s->buf->count == s->limit) {
                s->more = true;
                return 1;
        }
        return lswire_add(s->buf, &w);
}

int listing_page_binary(fsm *f, const char *dataset, const char *path, const char *after,
                        size_t limit, uint64_t epoch, lswire_buf *ret)
{
        _cleanup_(lswire_buf_done) lswire_buf b = {};
        binary_state s = {.buf = &b, .limit = limit};
        int r;

        if (limit == 0 || limit > LISTING_LIMIT_MAX)
                return -EINVAL;
        r = lswire_begin(&b);
        if (r < 0)
                return r;
        r = fsm_ls_raw(f, dataset, path, after && *after ? after : NULL, binary_one, &s);
        if (r < 0)
                return r;
        lswire_finish(&b, epoch, s.more);
        *ret = b;
        b = (lswire_buf){};
        return 0;
}
