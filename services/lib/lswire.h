/* The compact listing page (GET /v1/datasets/NAME/ls?...&format=binary): what weir-fuse reads
 * instead of JSON, encoded by the master and checked here on the way in. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Version 1, all integers little-endian (docs/api.md, "Compact listing pages"):
 *
 *   header, 24 bytes:  "WLST"  u32 version (1)  u64 epoch  u32 count  u32 flags (bit 0: more)
 *   COUNT entries:     u8 type (1 file, 2 dir)  u8 0  u16 name length  i64 mtime (s)
 *                      files only: u64 size  u64 file_id  u64 version
 *                      the name's bytes (no NUL)
 *
 * Entries are in strictly increasing byte order of their names (the order of JSON pages), a
 * name is one path component (1..LSWIRE_NAME_MAX bytes, no '/' or NUL, not "." or ".."), and
 * the body ends exactly after the last entry. A client that asks for format=binary from a master
 * that predates it gets JSON (it starts with '{'), and must fall back to that.
 */

#define LSWIRE_MAGIC        "WLST"
#define LSWIRE_VERSION      1u
#define LSWIRE_HEADER_SIZE  24u
#define LSWIRE_NAME_MAX     255u /* the store's limit (NAME_MAX) */
#define LSWIRE_FLAG_MORE    1u
#define LSWIRE_CONTENT_TYPE "application/vnd.weir.listing"

typedef struct lswire_entry {
        const char *name; /* not NUL-terminated: NAME_LEN bytes */
        size_t name_len;
        bool dir;
        int64_t mtime;
        uint64_t size, file_id, version; /* 0 for directories */
} lswire_entry;

typedef struct lswire_header {
        uint64_t epoch;
        uint32_t count;
        bool more;
} lswire_header;

/* --- encoding (the master) --- */

typedef struct lswire_buf {
        uint8_t *data;
        size_t len, alloc;
        uint32_t count;
} lswire_buf;

/* Starts a page with room for the header. -ENOMEM. */
int lswire_begin(lswire_buf *b);
/* Appends E. -EINVAL for a name the format cannot carry, -ENOMEM. */
int lswire_add(lswire_buf *b, const lswire_entry *e);
/* Writes the header (EPOCH, the count, MORE); the page is then DATA[0..LEN). */
void lswire_finish(lswire_buf *b, uint64_t epoch, bool more);
void lswire_buf_done(lswire_buf *b);

/* --- decoding (weir-fuse) --- */

/* Called for each entry in order; a negative return stops the parse and is returned. */
typedef int (*lswire_entry_cb)(const lswire_entry *e, void *userdata);

/* Checks the page DATA[0..LEN) completely and calls CB (may be NULL) for each entry. AFTER (may
 * be NULL) is the name the page was asked to follow: every name must sort after it. MAX_COUNT
 * bounds the entries accepted (the limit= asked for). On a malformed page: -EBADMSG and a
 * message naming what was wrong in ERR (ERR_LEN bytes, may be NULL); -EPROTONOSUPPORT for
 * another version. *ret_header (may be NULL) is set on success. */
int lswire_parse(const void *data, size_t len, const char *after, uint32_t max_count,
                 lswire_entry_cb cb, void *userdata, lswire_header *ret_header, char *err,
                 size_t err_len);
