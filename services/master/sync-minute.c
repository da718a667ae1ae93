/* The sync's rule for listings with times to the minute (see sync-minute.h). */
#include <string.h>

#include "sync-minute.h"

int64_t sync_minute_floor(int64_t t)
{
        int64_t r = t % 60;

        return t - (r < 0 ? r + 60 : r);
}

static bool stored_minute(const sync_minute_stored *s)
{
        return s->etag && strcmp(s->etag, UFS_ETAG_MINUTE) == 0;
}

sync_minute_verdict sync_minute_judge(const ufs_version *listed, int64_t date, int64_t prev_date,
                                      const sync_minute_stored *stored)
{
        int64_t minute = listed->mtime;

        /* No time, not a minute, or no clock of the store to compare it with. */
        if (minute <= 0 || sync_minute_floor(minute) != minute || date <= 0)
                return SYNC_MINUTE_ASK;
        /* The minute had not ended when the store listed it: a rewrite may still fall in it
         * (also what a time in the future looks like). */
        if (minute > INT64_MAX - 60 || minute + 60 > date)
                return SYNC_MINUTE_ASK;
        if (!stored || stored->size != listed->size || sync_minute_floor(stored->mtime) != minute)
                return SYNC_MINUTE_LISTING;
        if (stored_minute(stored))
                return SYNC_MINUTE_SAME;
        /* Taken by a HEAD, at some second of the minute perhaps: unchanged only if the minute had
         * ended before the previous sync listed it, so any rewrite since moved the minute. */
        if (prev_date > 0 && minute + 60 <= prev_date)
                return SYNC_MINUTE_SAME;
        return SYNC_MINUTE_ASK;
}

bool sync_minute_head_same(const sync_minute_stored *stored, const ufs_version *v)
{
        if (!stored || stored->size != v->size)
                return false;
        if (stored_minute(stored))
                return v->mtime > 0 && sync_minute_floor(v->mtime) == stored->mtime;
        /* A version stored without an ETag (taken from a JSON index) is its size and time. */
        return stored->mtime == v->mtime &&
               (!stored->etag || !*stored->etag || strcmp(stored->etag, v->etag ?: "") == 0);
}
