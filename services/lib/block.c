/* Block ids: the one parser of "FILEID-VERSION-INDEX" (docs/api.md). */
#include <errno.h>
#include <string.h>

#include "block.h"
#include "parse.h"

int block_id_parse(const char *s, block_key *ret)
{
        uint64_t v[3];
        const char *p = s;

        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < 3; i++) {
                char buf[21];
                size_t n = strspn(p, "0123456789");

                if (n == 0 || n >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, p, n);
                buf[n] = 0;
                if (parse_u64(buf, &v[i]) < 0)
                        return -EINVAL;
                p += n;
                if (i < 2) {
                        if (*p != '-')
                                return -EINVAL;
                        p++;
                }
        }
        if (*p != 0)
                return -EINVAL;
        *ret = (block_key){.file_id = v[0], .version = v[1], .index = v[2]};
        return 0;
}
