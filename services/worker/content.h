/* Whole-file checks against a content hash the store gave (an S3 single-part ETag is the MD5 of
 * the object): once every block of a file version is cached on this worker, their bytes in
 * order must hash to it, or the blocks are dropped. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define CONTENT_MD5_LEN 16

/* True when ETAG is "<32 lowercase or upper-case hex digits>" (quotes included, not weak):
 * the form S3 gives objects uploaded in one part, whose ETag is the content's MD5. Multipart
 * ETags ("...-N") and anything else are no content hash. */
bool content_md5_from_etag(const char *etag, uint8_t ret[static CONTENT_MD5_LEN]);

/* The blocks of the file version FIRST names (its index ignored), SIZE bytes in blocks of
 * BLOCK_SIZE: when all are cached here, hashes them in order and compares with MD5.
 *  1  all cached and they match;
 *  0  not all cached here (nothing checked);
 *  -EBADMSG  they differ: every block of the version was dropped (logged);
 *  other -errno  could not check. */
int content_check_file(store *s, const store_key *first, uint64_t size, uint64_t block_size,
                       const uint8_t md5[static CONTENT_MD5_LEN]);
