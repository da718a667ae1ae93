/* HTTP Range headers of block GETs (docs/api.md): the one parser, shared with the fuzz target. */
#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "parse.h"
#include "range.h"

/* Parses one "bytes=" range against SIZE. 0 and the range; 1 when there is no usable Range
 * header (serve it all); -ERANGE when unsatisfiable. */
int range_parse(const char *h, uint64_t size, uint64_t *ret_off, uint64_t *ret_len)
{
        const char *dash;
        uint64_t a, b;
        char buf[32];

        if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
                return 1; /* absent, another unit or several ranges: the whole block */
        h += 6;
        dash = strchr(h, '-');
        if (!dash || (size_t)(dash - h) >= sizeof(buf))
                return 1;
        if (dash == h) { /* suffix: the last N bytes */
                if (parse_u64(dash + 1, &b) < 0)
                        return 1;
                if (b == 0 || size == 0)
                        return -ERANGE;
                b = MIN(b, size);
                *ret_off = size - b;
                *ret_len = b;
                return 0;
        }
        memcpy(buf, h, dash - h);
        buf[dash - h] = 0;
        if (parse_u64(buf, &a) < 0)
                return 1;
        if (a >= size)
                return -ERANGE;
        if (dash[1] == 0)
                b = size - 1;
        else if (parse_u64(dash + 1, &b) < 0 || b < a)
                return 1;
        b = MIN(b, size - 1);
        *ret_off = a;
        *ret_len = b - a + 1;
        return 0;
}

/* The explicit "bytes=A-B" range of a request, which can be answered before the block's length
 * is known; 1 for anything else. */
int range_parse_bounded(const char *h, uint64_t *ret_off, uint64_t *ret_len)
{
        const char *dash = h ? strchr(h, '-') : NULL;

        if (!dash || strncmp(h, "bytes=", 6) != 0 || dash == h + 6 || dash[1] == 0)
                return 1;
        return range_parse(h, UINT64_MAX, ret_off, ret_len) == 0 ? 0 : 1;
}
