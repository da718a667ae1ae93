/* ETags that are content hashes (etag.h). */
#include <string.h>

#include "etag.h"

bool etag_content_md5(const char *etag, uint8_t ret[static ETAG_MD5_LEN])
{
        if (!etag || strlen(etag) != 2 + 2 * ETAG_MD5_LEN || etag[0] != '"' ||
            etag[2 * ETAG_MD5_LEN + 1] != '"')
                return false;
        for (unsigned i = 0; i < 2 * ETAG_MD5_LEN; i++) {
                char c = etag[1 + i];
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;

                if (d < 0)
                        return false;
                if (i % 2 == 0)
                        ret[i / 2] = (uint8_t)(d << 4);
                else
                        ret[i / 2] |= (uint8_t)d;
        }
        return true;
}
