/* A small XML reader for S3 answers (ListObjectsV2, Error): elements, text, entities, CDATA. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "array.h"
#include "log.h"
#include "parse.h"
#include "ufs-internal.h"

#define XML_MAX_DEPTH 16

typedef struct xml_elem {
        const char *name;
        size_t name_len;
        const char *content; /* just after the start tag */
        bool children;
} xml_elem;

typedef struct xml_handler {
        int (*start)(void *ud, const xml_elem *stack, size_t depth);
        /* TEXT/TLEN: the raw content of a leaf element (NULL for elements with children). */
        int (*end)(void *ud, const xml_elem *stack, size_t depth, const char *text, size_t tlen);
} xml_handler;

static bool xml_name_char(char c)
{
        return !(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '>' || c == '/' ||
                 c == '=' || c == '"' || c == '\'' || c == '<' || c == 0);
}

static const char *find_str(const char *p, const char *end, const char *s)
{
        size_t n = strlen(s);

        for (; p + n <= end; p++)
                if (memcmp(p, s, n) == 0)
                        return p;
        return NULL;
}

static bool elem_is(const xml_elem *e, const char *name)
{
        return e->name_len == strlen(name) && memcmp(e->name, name, e->name_len) == 0;
}

static int xml_walk(const char *xml, size_t len, const xml_handler *h, void *ud)
{
        xml_elem stack[XML_MAX_DEPTH];
        size_t depth = 0;
        bool root_seen = false;
        const char *p = xml, *end = xml + len;
        int r;

        while (p < end) {
                const char *lt = memchr(p, '<', (size_t)(end - p)), *q;

                if (!lt)
                        break;
                if (end - lt >= 2 && lt[1] == '?') {
                        q = find_str(lt, end, "?>");
                        if (!q)
                                return -EBADMSG;
                        p = q + 2;
                } else if (end - lt >= 4 && memcmp(lt, "<!--", 4) == 0) {
                        q = find_str(lt + 4, end, "-->");
                        if (!q)
                                return -EBADMSG;
                        p = q + 3;
                } else if (end - lt >= 9 && memcmp(lt, "<![CDATA[", 9) == 0) {
                        q = find_str(lt + 9, end, "]]>");
                        if (!q || depth == 0)
                                return -EBADMSG;
                        p = q + 3;
                } else if (end - lt >= 2 && lt[1] == '!') {
                        /* A DOCTYPE; an internal subset could define entities: refused. */
                        q = memchr(lt, '>', (size_t)(end - lt));
                        if (!q || memchr(lt, '[', (size_t)(q - lt)))
                                return -EBADMSG;
                        p = q + 1;
                } else if (end - lt >= 2 && lt[1] == '/') {
                        const char *n = lt + 2, *ne = n;

                        while (ne < end && xml_name_char(*ne))
                                ne++;
                        q = memchr(ne, '>', (size_t)(end - ne));
                        if (!q || depth == 0)
                                return -EBADMSG;
                        xml_elem *top = &stack[depth - 1];
                        if ((size_t)(ne - n) != top->name_len ||
                            memcmp(n, top->name, top->name_len))
                                return -EBADMSG;
                        if (h->end) {
                                r = h->end(ud, stack, depth, top->children ? NULL : top->content,
                                           top->children ? 0 : (size_t)(lt - top->content));
                                if (r < 0)
                                        return r;
                        }
                        depth--;
                        p = q + 1;
                } else {
                        const char *n = lt + 1, *ne = n;
                        char quote = 0;

                        while (ne < end && xml_name_char(*ne))
                                ne++;
                        if (ne == n)
                                return -EBADMSG;
                        for (q = ne; q < end; q++) {
                                if (quote) {
                                        if (*q == quote)
                                                quote = 0;
                                } else if (*q == '"' || *q == '\'')
                                        quote = *q;
                                else if (*q == '>')
                                        break;
                        }
                        if (q >= end)
                                return -EBADMSG;
                        if (depth == 0 && root_seen)
                                return -EBADMSG; /* a second root */
                        if (depth >= XML_MAX_DEPTH)
                                return -EBADMSG;
                        if (depth > 0)
                                stack[depth - 1].children = true;
                        stack[depth++] = (xml_elem){
                                .name = n,
                                .name_len = (size_t)(ne - n),
                                .content = q + 1,
                        };
                        root_seen = true;
                        if (h->start) {
                                r = h->start(ud, stack, depth);
                                if (r < 0)
                                        return r;
                        }
                        if (q[-1] == '/') {
                                if (h->end) {
                                        r = h->end(ud, stack, depth, "", 0);
                                        if (r < 0)
                                                return r;
                                }
                                depth--;
                        }
                        p = q + 1;
                }
        }
        if (depth != 0 || !root_seen)
                return -EBADMSG;
        return 0;
}

/* Decodes the raw content of a leaf: entities outside CDATA sections, CDATA taken as is. */
static char *xml_text(const char *s, size_t len)
{
        const char *p = s, *end = s + len;
        char *out = malloc(len + 1);
        size_t n = 0;

        if (!out)
                return NULL;
        while (p < end) {
                const char *cd = find_str(p, end, "<![CDATA[");
                const char *seg_end = cd ? cd : end;
                char *dec = ufs_decode_entities(p, (size_t)(seg_end - p));

                if (!dec) {
                        free(out);
                        return NULL;
                }
                memcpy(out + n, dec, strlen(dec));
                n += strlen(dec);
                free(dec);
                if (!cd)
                        break;
                const char *ce = find_str(cd + 9, end, "]]>");
                if (!ce)
                        ce = end;
                memcpy(out + n, cd + 9, (size_t)(ce - cd - 9));
                n += (size_t)(ce - cd - 9);
                p = ce + 3;
        }
        out[n] = 0;
        return out;
}

int ufs_parse_iso8601(const char *s, int64_t *ret)
{
        struct tm tm = {};
        int y, mo, d, hh, mm, ss, consumed = 0;
        time_t t;

        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &hh, &mm, &ss, &consumed) != 6)
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = hh;
        tm.tm_min = mm;
        tm.tm_sec = ss;
        t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        *ret = (int64_t)t;
        return 0;
}

typedef struct list_state {
        const char *prefix;
        ufs_s3_page *page;
        size_t allocated;
        bool root_ok;
        /* The Contents or CommonPrefixes element being read. */
        char *key;
        ufs_version version;
} list_state;

static int list_start(void *ud, const xml_elem *stack, size_t depth)
{
        list_state *s = ud;

        if (depth == 1) {
                if (!elem_is(&stack[0], "ListBucketResult"))
                        return -EBADMSG;
                s->root_ok = true;
        }
        if (depth == 2 &&
            (elem_is(&stack[1], "Contents") || elem_is(&stack[1], "CommonPrefixes"))) {
                free(s->key);
                s->key = NULL;
                ufs_version_done(&s->version);
                s->version = (ufs_version){};
        }
        return 0;
}

static int list_add(list_state *s, bool dir)
{
        size_t pl = strlen(s->prefix);
        ufs_s3_page *page = s->page;
        _cleanup_free_ char *name = NULL;
        size_t n;

        if (!s->key || strncmp(s->key, s->prefix, pl) != 0)
                return 0; /* not under the listed directory: not ours */
        page->any = true;
        name = strdup(s->key + pl);
        if (!name)
                return -ENOMEM;
        n = strlen(name);
        if (dir) {
                if (n == 0 || name[n - 1] != '/')
                        return 0;
                name[--n] = 0;
        }
        if (n == 0)
                return 0; /* the directory marker object "prefix/" itself */
        if (!ufs_name_valid(name)) {
                log_debug("Skipping S3 key \"%s\": not a usable name.", s->key);
                return 0;
        }
        if (page->n >= UFS_MAX_ENTRIES)
                return -E2BIG;
        if (!ARRAY_GROW(page->entries, s->allocated, page->n + 1))
                return -ENOMEM;
        page->entries[page->n++] = (ufs_entry){
                .name = TAKE_PTR(name),
                .dir = dir,
                .version = dir ? (ufs_version){} : s->version,
        };
        if (!dir)
                s->version = (ufs_version){};
        return 0;
}

static int list_end(void *ud, const xml_elem *stack, size_t depth, const char *text, size_t tlen)
{
        list_state *s = ud;
        _cleanup_free_ char *t = NULL;

        if (text) {
                t = xml_text(text, tlen);
                if (!t)
                        return -ENOMEM;
        }
        if (depth == 2) {
                if (elem_is(&stack[1], "Contents"))
                        return list_add(s, false);
                if (elem_is(&stack[1], "CommonPrefixes"))
                        return list_add(s, true);
                if (elem_is(&stack[1], "IsTruncated") && t)
                        s->page->truncated = strcmp(t, "true") == 0;
                else if (elem_is(&stack[1], "NextContinuationToken") && t && *t) {
                        free(s->page->next_token);
                        s->page->next_token = TAKE_PTR(t);
                }
                return 0;
        }
        if (depth != 3 || !t)
                return 0;
        if (elem_is(&stack[1], "Contents")) {
                if (elem_is(&stack[2], "Key")) {
                        free(s->key);
                        s->key = TAKE_PTR(t);
                } else if (elem_is(&stack[2], "Size")) {
                        /* Sizes travel as JSON integers (signed 64 bits) from here on. */
                        if (parse_u64(t, &s->version.size) < 0 || s->version.size > INT64_MAX)
                                return -EBADMSG;
                } else if (elem_is(&stack[2], "LastModified"))
                        (void)ufs_parse_iso8601(t, &s->version.mtime);
                else if (elem_is(&stack[2], "ETag") && *t) {
                        free(s->version.etag);
                        s->version.etag = TAKE_PTR(t);
                }
        } else if (elem_is(&stack[1], "CommonPrefixes") && elem_is(&stack[2], "Prefix")) {
                free(s->key);
                s->key = TAKE_PTR(t);
        }
        return 0;
}

void ufs_s3_page_done(ufs_s3_page *p)
{
        if (!p)
                return;
        ufs_entries_free(p->entries, p->n);
        free(p->next_token);
        *p = (ufs_s3_page){};
}

int ufs_s3_parse_list(const char *xml, size_t len, const char *prefix, ufs_s3_page *ret)
{
        static const xml_handler h = {.start = list_start, .end = list_end};
        ufs_s3_page page = {};
        list_state s = {.prefix = prefix, .page = &page};
        int r;

        r = xml_walk(xml, len, &h, &s);
        free(s.key);
        ufs_version_done(&s.version);
        if (r >= 0 && !s.root_ok)
                r = -EBADMSG;
        if (r < 0) {
                ufs_s3_page_done(&page);
                return r;
        }
        *ret = page;
        return 0;
}

typedef struct error_state {
        char *code, *message;
} error_state;

static int error_end(void *ud, const xml_elem *stack, size_t depth, const char *text, size_t tlen)
{
        error_state *s = ud;
        char **target;

        if (depth != 2 || !text || !elem_is(&stack[0], "Error"))
                return 0;
        if (elem_is(&stack[1], "Code"))
                target = &s->code;
        else if (elem_is(&stack[1], "Message"))
                target = &s->message;
        else
                return 0;
        free(*target);
        *target = xml_text(text, tlen);
        return *target ? 0 : -ENOMEM;
}

int ufs_s3_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message)
{
        static const xml_handler h = {.end = error_end};
        error_state s = {};
        int r;

        r = xml_walk(xml, len, &h, &s);
        if (r < 0) {
                free(s.code);
                free(s.message);
                return r;
        }
        *ret_code = s.code;
        *ret_message = s.message;
        return 0;
}
