/* One page of a directory listing (GET /v1/datasets/NAME/ls and /stat with ?limit=&after=). */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "fsm.h"
#include "lswire.h"

#define LISTING_LIMIT_MAX 10000u /* entries per page a client may ask for */
#define LISTING_AFTER_MAX 4096u  /* bytes of the after= name */

/* flags of listing_page() */
#define LISTING_ATTR_ONLY 1u /* entries without etag and ufs_url (fields=attr) */

/* The entries of directory PATH of DATASET whose names sort (bytewise, strcmp) after AFTER
 * (NULL or "": from the first), at most LIMIT (1..LISTING_LIMIT_MAX) of them, in that order.
 * *ret_entries: a new array of ENTRY; *ret_more: whether entries remain after the last one.
 * -ENOENT (no dataset or path), -ENOTDIR, -ENOMEM, -EINVAL (LIMIT out of range).
 *
 * The one read path of paged listings: the store keeps a directory's children in name order,
 * so a page is a cursor positioned after AFTER reading LIMIT + 1 entries, O(LIMIT) whatever the
 * directory's size, from one read transaction (no lock). FLAGS: LISTING_ATTR_ONLY or 0. */
int listing_page(fsm *f, const char *dataset, const char *path, const char *after, size_t limit,
                 unsigned flags, json_t **ret_entries, bool *ret_more);

/* The same page in the compact format (services/lib/lswire.h, format=binary), encoded straight
 * from the store's read view: no JSON object per entry. EPOCH goes into its header. *ret: the
 * encoded page (lswire_buf_done() it). Errors as listing_page(). */
int listing_page_binary(fsm *f, const char *dataset, const char *path, const char *after,
                        size_t limit, uint64_t epoch, lswire_buf *ret);
