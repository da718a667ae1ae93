/* Block ids: the one parser of "EPOCH-FILEID-VERSION-INDEX" (docs/api.md). */
#include <errno.h>
#include <string.h>

#include "block.h"
#include "parse.h"

static int epoch_parse_n(const char *s, size_t n, uint64_t *ret)
{
        uint64_t v = 0;

        if (n != BLOCK_EPOCH_ID)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
                        : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
                                                     : -1;

                if (d < 0)
                        return -EINVAL;
                v = v << 4 | (uint64_t)d;
        }
        if (v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int block_epoch_parse(const char *s, uint64_t *ret)
{
        if (!s)
                return -EINVAL;
        return epoch_parse_n(s, strlen(s), ret);
}

/* N decimal numbers separated by '-' at P, without leading zeros; the rest must be empty. */
static int decimals_parse(const char *p, unsigned n, uint64_t *v)
{
        for (unsigned i = 0; i < n; i++) {
                char buf[21];
                size_t len = strspn(p, "0123456789");

                /* one spelling per block: "01" is not block 1 (ids are compared as text in
                 * logs, drop lists and file names) */
                if (len == 0 || len >= sizeof(buf) || (len > 1 && p[0] == '0'))
                        return -EINVAL;
                memcpy(buf, p, len);
                buf[len] = 0;
                if (parse_u64(buf, &v[i]) < 0)
                        return -EINVAL;
                p += len;
                if (i + 1 < n) {
                        if (*p != '-')
                                return -EINVAL;
                        p++;
                }
        }
        return *p == 0 ? 0 : -EINVAL;
}

int block_id_parse(const char *s, block_key *ret)
{
        uint64_t epoch, v[3];
        const char *dash;

        if (!s)
                return -EINVAL;
        dash = strchr(s, '-');
        if (!dash || epoch_parse_n(s, (size_t)(dash - s), &epoch) < 0)
                return -EINVAL;
        if (decimals_parse(dash + 1, 3, v) < 0 || v[0] == 0)
                return -EINVAL;
        *ret = (block_key){.epoch = epoch, .file_id = v[0], .version = v[1], .index = v[2]};
        return 0;
}

bool block_id_is_v1(const char *s)
{
        uint64_t v[3];

        return s && decimals_parse(s, 3, v) == 0;
}
