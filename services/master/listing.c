/* One page of a directory listing: the LIMIT smallest names after AFTER, in name order. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "listing.h"

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
                json_array_foreach(entries, i, e)
                {
                        /* what a file system shows: half the bytes to encode and parse */
                        json_object_del(e, "etag");
                        json_object_del(e, "ufs_url");
                }
        *ret_more = json_object_get(out, "next") != NULL;
        *ret_entries = json_incref(entries);
        json_decref(out);
        return 0;
}
