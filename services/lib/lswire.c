/* The compact listing page: encoder for the master, checking decoder for weir-fuse. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "lswire.h"

#define ENTRY_FIXED 12u /* type, pad, name length, mtime */
#define FILE_FIXED  24u /* size, file_id, version */

static void put_u16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
        for (unsigned i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
        for (unsigned i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
        return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

/* One path component: what the store holds and a directory entry may carry. */
static bool name_valid(const char *name, size_t len)
{
        if (len == 0 || len > LSWIRE_NAME_MAX)
                return false;
        if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
                return false;
        return !memchr(name, '/', len) && !memchr(name, 0, len);
}

/* strcmp order of two names that hold no NUL */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        int c = memcmp(a, b, alen < blen ? alen : blen);

        if (c != 0)
                return c;
        return alen < blen ? -1 : alen > blen;
}

int lswire_begin(lswire_buf *b)
{
        *b = (lswire_buf){};
        if (!ARRAY_GROW(b->data, b->alloc, 64 * 1024))
                return -ENOMEM;
        memset(b->data, 0, LSWIRE_HEADER_SIZE);
        b->len = LSWIRE_HEADER_SIZE;
        return 0;
}

int lswire_add(lswire_buf *b, const lswire_entry *e)
{
        size_t need = ENTRY_FIXED + (e->dir ? 0 : FILE_FIXED) + e->name_len;
        uint8_t *p;

        if (!name_valid(e->name, e->name_len) || b->count == UINT32_MAX)
                return -EINVAL;
        if (!ARRAY_GROW(b->data, b->alloc, b->len + need))
                return -ENOMEM;
        p = b->data + b->len;
        p[0] = e->dir ? 2 : 1;
        p[1] = 0;
        put_u16(p + 2, (uint16_t)e->name_len);
        put_u64(p + 4, (uint64_t)e->mtime);
        p += ENTRY_FIXED;
        if (!e->dir) {
                put_u64(p, e->size);
                put_u64(p + 8, e->file_id);
                put_u64(p + 16, e->version);
                p += FILE_FIXED;
        }
        memcpy(p, e->name, e->name_len);
        b->len += need;
        b->count++;
        return 0;
}

void lswire_finish(lswire_buf *b, uint64_t epoch, bool more)
{
        memcpy(b->data, LSWIRE_MAGIC, 4);
        put_u32(b->data + 4, LSWIRE_VERSION);
        put_u64(b->data + 8, epoch);
        put_u32(b->data + 16, b->count);
        put_u32(b->data + 20, more ? LSWIRE_FLAG_MORE : 0);
}

void lswire_buf_done(lswire_buf *b)
{
        free(b->data);
        *b = (lswire_buf){};
}

__attribute__((format(printf, 3, 4))) static int bad(char *err, size_t err_len, const char *fmt,
                                                     ...)
{
        va_list ap;

        if (err && err_len) {
                va_start(ap, fmt);
                vsnprintf(err, err_len, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

int lswire_parse(const void *data, size_t len, const char *after, uint32_t max_count,
                 lswire_entry_cb cb, void *userdata, lswire_header *ret_header, char *err,
                 size_t err_len)
{
        const uint8_t *p = data, *end = p + len;
        const char *prev = after;
        size_t prev_len = after ? strlen(after) : 0;
        lswire_header h;
        uint32_t version, flags;
        int r;

        if (len < LSWIRE_HEADER_SIZE)
                return bad(err, err_len, "%zu bytes, shorter than the %u-byte header", len,
                           LSWIRE_HEADER_SIZE);
        if (memcmp(p, LSWIRE_MAGIC, 4) != 0)
                return bad(err, err_len, "no \"%s\" magic at the start", LSWIRE_MAGIC);
        version = get_u32(p + 4);
        if (version != LSWIRE_VERSION) {
                if (err && err_len)
                        snprintf(err, err_len, "version %" PRIu32 ", this build reads %u", version,
                                 LSWIRE_VERSION);
                return -EPROTONOSUPPORT;
        }
        h.epoch = get_u64(p + 8);
        h.count = get_u32(p + 16);
        flags = get_u32(p + 20);
        if (flags & ~LSWIRE_FLAG_MORE)
                return bad(err, err_len, "unknown flags 0x%" PRIx32, flags);
        h.more = flags & LSWIRE_FLAG_MORE;
        if (h.count > max_count)
                return bad(err, err_len, "%" PRIu32 " entries, more than the %" PRIu32 " asked for",
                           h.count, max_count);
        if (h.more && h.count == 0)
                return bad(err, err_len, "no entries but more to come");
        /* each entry takes at least ENTRY_FIXED + 1 bytes: refuse a count the body cannot hold
         * before looking at any entry */
        if ((uint64_t)h.count * (ENTRY_FIXED + 1) > len - LSWIRE_HEADER_SIZE)
                return bad(err, err_len, "%" PRIu32 " entries cannot fit in %zu bytes", h.count,
                           len);
        p += LSWIRE_HEADER_SIZE;
        for (uint32_t i = 0; i < h.count; i++) {
                lswire_entry e = {};
                uint8_t type;

                if ((size_t)(end - p) < ENTRY_FIXED)
                        return bad(err, err_len, "entry %" PRIu32 " is cut short", i);
                type = p[0];
                if ((type != 1 && type != 2) || p[1] != 0)
                        return bad(err, err_len, "entry %" PRIu32 " has type %u (1 file, 2 dir)", i,
                                   type);
                e.dir = type == 2;
                e.name_len = get_u16(p + 2);
                e.mtime = (int64_t)get_u64(p + 4);
                p += ENTRY_FIXED;
                if (!e.dir) {
                        if ((size_t)(end - p) < FILE_FIXED)
                                return bad(err, err_len, "entry %" PRIu32 " is cut short", i);
                        e.size = get_u64(p);
                        e.file_id = get_u64(p + 8);
                        e.version = get_u64(p + 16);
                        p += FILE_FIXED;
                        if (e.file_id == 0)
                                return bad(err, err_len, "file entry %" PRIu32 " has no file id",
                                           i);
                        if (e.size > INT64_MAX)
                                return bad(err, err_len,
                                           "file entry %" PRIu32 " is %" PRIu64 " bytes long", i,
                                           e.size);
                }
                if ((size_t)(end - p) < e.name_len)
                        return bad(err, err_len, "the name of entry %" PRIu32 " is cut short", i);
                e.name = (const char *)p;
                p += e.name_len;
                if (!name_valid(e.name, e.name_len))
                        return bad(err, err_len,
                                   "entry %" PRIu32 " has an invalid name (%zu bytes: empty, "
                                   "over %u, '.', '..', or holding '/' or NUL)",
                                   i, e.name_len, LSWIRE_NAME_MAX);
                if (prev && name_cmp(prev, prev_len, e.name, e.name_len) >= 0)
                        return bad(err, err_len,
                                   "entry %" PRIu32 " ('%.*s') does not sort after '%.*s'", i,
                                   (int)(e.name_len > 64 ? 64 : e.name_len), e.name,
                                   (int)(prev_len > 64 ? 64 : prev_len), prev);
                prev = e.name;
                prev_len = e.name_len;
                if (cb) {
                        r = cb(&e, userdata);
                        if (r < 0)
                                return r;
                }
        }
        if (p != end)
                return bad(err, err_len, "%zu bytes after the last entry", (size_t)(end - p));
        if (ret_header)
                *ret_header = h;
        return 0;
}
