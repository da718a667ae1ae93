/* What an ETag says about a file's content: S3 gives the MD5 of an object uploaded in one part. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define ETAG_MD5_LEN 16

/* How a worker's refusal of a file version whose bytes did not match its content hash starts
 * (its socket's "ERR ..." answer; HTTP says 410): weir-fuse then fails the read, without asking
 * the store for the same bytes again. */
#define ETAG_MISMATCH_PREFIX "content mismatch"

/* True when ETAG is "<32 lowercase or upper-case hex digits>" (quotes included, not weak): the
 * form S3 gives objects uploaded in one part, whose ETag is the content's MD5 (then RET holds
 * it). Multipart ETags ("...-N"), weak ones, nginx's "MTIME-SIZE" and anything else are no
 * content hash. */
bool etag_content_md5(const char *etag, uint8_t ret[static ETAG_MD5_LEN]);
