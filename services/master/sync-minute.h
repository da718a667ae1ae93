/* When a sync may trust a listing whose times show the minute only (nginx's HTML autoindex). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ufs/ufs.h"

/*
 * A file listed with its size and the minute of its mtime is a version of its own (kept with
 * UFS_ETAG_MINUTE, read with any Last-Modified in that minute) once that minute had ended on the
 * store's clock when the store listed it: a later rewrite then carries a later minute, which the
 * next listing shows. A file whose minute had not ended (written in the last minute, or dated in
 * the future) is HEADed. A stored version that the listing's (size, minute) matches is unchanged
 * when a rewrite since it was taken would have moved the minute: always for one taken from a
 * listing (its minute had ended), and for one taken by a HEAD when its minute had ended before
 * the previous completed sync's first listing (PREV_DATE). Everything else is HEADed. The rule
 * assumes what nginx's ETag assumes already: mtimes move forward on the store's clock.
 * docs/stores.md, "Listings with times to the minute", says it for users.
 */

typedef enum sync_minute_verdict {
        SYNC_MINUTE_SAME,    /* the stored version stands */
        SYNC_MINUTE_LISTING, /* a new version from the listing: size, minute, UFS_ETAG_MINUTE */
        SYNC_MINUTE_ASK,     /* HEAD it */
} sync_minute_verdict;

/* The stored version of a file, as the sync compares it. */
typedef struct sync_minute_stored {
        uint64_t size;
        int64_t mtime;
        const char *etag; /* "" = none */
} sync_minute_stored;

/* LISTED: the listing's size and minute (Unix seconds of its first second) of one file. DATE: the
 * store's Date on that listing, 0 = none. PREV_DATE: the earliest Date of the previous completed
 * sync's listings of this mount, 0 = unknown. STORED: NULL for a file not in the tree yet. */
sync_minute_verdict sync_minute_judge(const ufs_version *listed, int64_t date, int64_t prev_date,
                                      const sync_minute_stored *stored);

/* After a HEAD: whether version V is the stored one. A minute version matches a HEAD of the same
 * size in the same minute (its minute had ended when it was listed, so nothing written since can
 * fall in it), one stored without an ETag (nginx's JSON index gives none) a HEAD of the same size
 * and second: a HEAD never bumps an unchanged file's version. */
bool sync_minute_head_same(const sync_minute_stored *stored, const ufs_version *v);

/* The first second of T's minute. */
int64_t sync_minute_floor(int64_t t);
