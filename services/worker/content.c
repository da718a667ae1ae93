/* Whole-file content checks against an MD5 the store gave as ETag (content.h). Runs on the fill
 * thread that committed a file's last missing block, after its waiters were answered. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "cleanup.h"
#include "content.h"
#include "etag.h"
#include "log.h"

#define CONTENT_IO_CHUNK   (1u << 20)
#define CONTENT_MAX_BLOCKS 65536 /* 1 TiB of 16 MiB blocks: larger files are not checked */

bool content_md5_from_etag(const char *etag, uint8_t ret[static CONTENT_MD5_LEN])
{
        return etag_content_md5(etag, ret);
}

static void drop_all(store *s, const store_key *first, uint64_t n)
{
        for (uint64_t i = 0; i < n; i++) {
                store_key k = *first;

                k.index = i;
                (void)store_remove(s, &k);
        }
}

int content_check_file(store *s, const store_key *first, uint64_t size, uint64_t block_size,
                       const uint8_t md5[static CONTENT_MD5_LEN])
{
        uint64_t n = block_count(size, block_size);
        _cleanup_free_ uint8_t *buf = NULL;
        gnutls_hash_hd_t h;
        uint8_t got[CONTENT_MD5_LEN];
        char id[BLOCK_ID_MAX];
        int r = 0;

        if (n == 0 || n > CONTENT_MAX_BLOCKS)
                return 0;
        for (uint64_t i = 0; i < n; i++) {
                store_key k = *first;

                k.index = i;
                if (!store_contains(s, &k))
                        return 0;
        }
        buf = malloc(CONTENT_IO_CHUNK);
        if (!buf)
                return -ENOMEM;
        if (gnutls_hash_init(&h, GNUTLS_DIG_MD5) < 0)
                return -EOPNOTSUPP; /* MD5 disabled (FIPS mode) */
        for (uint64_t i = 0; i < n && r >= 0; i++) {
                store_key k = *first;
                store_block *b = NULL;
                uint64_t len = 0, off = 0;
                int fd = -1;

                k.index = i;
                r = store_open(s, &k, &b, &fd, &len);
                if (r == -ENOENT) {
                        r = 0; /* evicted meanwhile: check another time */
                        n = 0;
                        break;
                }
                while (r >= 0 && off < len) {
                        ssize_t m = pread(fd, buf, MIN((uint64_t)CONTENT_IO_CHUNK, len - off),
                                          (off_t)off);

                        if (m < 0 && errno == EINTR)
                                continue;
                        if (m <= 0)
                                r = m < 0 ? -errno : -EIO;
                        else {
                                (void)gnutls_hash(h, buf, (size_t)m);
                                off += (uint64_t)m;
                        }
                }
                if (b)
                        store_release(s, b);
                safe_close(fd);
        }
        gnutls_hash_deinit(h, got);
        if (r < 0 || n == 0)
                return r;
        if (memcmp(got, md5, CONTENT_MD5_LEN) == 0)
                return 1;
        drop_all(s, first, block_count(size, block_size));
        {
                store_key k = *first;

                k.index = 0;
                log_error("The %" PRIu64 " cached blocks of %s... do not hash to the MD5 the store "
                          "gave as ETag: dropped them (the store sent other bytes than it "
                          "describes, or they were damaged on the way)",
                          block_count(size, block_size), block_id_format(id, &k));
        }
        return -EBADMSG;
}
