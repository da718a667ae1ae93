/* Directory index pages (Apache mod_autoindex, nginx autoindex, Python http.server) → entries. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "ufs-internal.h"

typedef struct html_entries {
        ufs_entry *items;
        size_t n, allocated;
} html_entries;

static void html_entries_done(html_entries *e)
{
        ufs_entries_free(e->items, e->n);
        *e = (html_entries){};
}

static bool ascii_prefix(const char *p, const char *end, const char *word)
{
        size_t n = strlen(word);

        return (size_t)(end - p) >= n && strncasecmp(p, word, n) == 0;
}

static const char *find_ci(const char *p, const char *end, const char *word)
{
        for (; p < end; p++)
                if (ascii_prefix(p, end, word))
                        return p;
        return NULL;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Finds the end of the tag starting at P ('<'), honouring quoted attribute values. */
static const char *tag_end(const char *p, const char *end)
{
        char quote = 0;

        for (; p < end; p++) {
                if (quote) {
                        if (*p == quote)
                                quote = 0;
                } else if (*p == '"' || *p == '\'')
                        quote = *p;
                else if (*p == '>')
                        return p;
        }
        return NULL;
}

/* The value of attribute NAME in the tag [P, END) (P after the tag name), entity-decoded. */
static int tag_attribute(const char *p, const char *end, const char *name, char **ret)
{
        size_t name_len = strlen(name);

        while (p < end) {
                const char *a, *v, *ve;

                while (p < end && (is_space(*p) || *p == '/'))
                        p++;
                a = p;
                while (p < end && !is_space(*p) && *p != '=' && *p != '>' && *p != '/')
                        p++;
                if (p == a) {
                        p++;
                        continue;
                }
                bool match = (size_t)(p - a) == name_len && strncasecmp(a, name, name_len) == 0;
                while (p < end && is_space(*p))
                        p++;
                if (p >= end || *p != '=') {
                        if (match) {
                                *ret = NULL;
                                return 0;
                        }
                        continue;
                }
                p++;
                while (p < end && is_space(*p))
                        p++;
                if (p < end && (*p == '"' || *p == '\'')) {
                        char q = *p++;

                        v = p;
                        while (p < end && *p != q)
                                p++;
                        ve = p;
                        if (p < end)
                                p++;
                } else {
                        v = p;
                        while (p < end && !is_space(*p) && *p != '>')
                                p++;
                        ve = p;
                }
                if (match) {
                        *ret = ufs_decode_entities(v, (size_t)(ve - v));
                        return *ret ? 1 : -ENOMEM;
                }
        }
        return 0;
}

/* Turns an href into an entry name relative to the page; 0 = not an entry of this directory. */
static int href_to_name(const char *href, const char *base_path, char **ret_name, bool *ret_dir)
{
        const char *h = href;
        size_t n;
        bool dir = false;
        char *name;
        int r;

        if (!*h || strpbrk(h, "?#"))
                return 0; /* sort links, anchors, queries */
        if (strstr(h, "://") || strncasecmp(h, "mailto:", 7) == 0 ||
            strncasecmp(h, "javascript:", 11) == 0 || strncmp(h, "//", 2) == 0)
                return 0; /* other hosts, schemes */
        if (*h == '/') {
                size_t bl = base_path ? strlen(base_path) : 0;
                _cleanup_free_ char *base_dec = NULL, *href_dec = NULL;

                /* Absolute links count only when they point into this very directory. Compared
                 * decoded: "/caf%C3%A9/" and "/caf%c3%a9/" are one directory. The rest of the
                 * href, still encoded, is the name. */
                if (bl == 0 || base_path[bl - 1] != '/')
                        return 0;
                if (strncmp(h, base_path, bl) == 0)
                        h += bl;
                else {
                        const char *slash = strrchr(h, '/');
                        size_t hl;

                        /* the directory part: up to the last '/' before an optional final one */
                        if (slash && slash[1] == 0 && slash > h)
                                slash = memrchr(h, '/', (size_t)(slash - h));
                        if (!slash)
                                return 0;
                        hl = (size_t)(slash - h) + 1;
                        r = ufs_unescape(base_path, bl, &base_dec);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return 0;
                        r = ufs_unescape(h, hl, &href_dec);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0 || strcmp(base_dec, href_dec) != 0)
                                return 0;
                        h += hl;
                }
        }
        while (strncmp(h, "./", 2) == 0) /* Apache writes "./a:b" so the colon is no scheme */
                h += 2;
        n = strlen(h);
        if (n > 0 && h[n - 1] == '/') {
                dir = true;
                n--;
        }
        if (n == 0 || memchr(h, '/', n))
                return 0;
        r = ufs_unescape(h, n, &name);
        if (r < 0)
                return r == -ENOMEM ? r : 0;
        if (strlen(name) > UFS_MAX_NAME) {
                free(name);
                return 2;
        }
        if (!ufs_name_valid(name)) {
                log_debug("Skipping index entry with unusable name (href \"%s\").", href);
                free(name);
                return 0;
        }
        *ret_name = name;
        *ret_dir = dir;
        return 1;
}

static int month_from_abbrev(const char *s)
{
        static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

        for (int i = 0; i < 12; i++)
                if (strncasecmp(s, months + i * 3, 3) == 0)
                        return i;
        return -1;
}

#define DETAILS_TIME        1 /* a date and time were found */
#define DETAILS_PLAIN_BYTES 2 /* the size was a plain number of bytes */

/* Size and time from the text after the link, as the listings print them:
 *   nginx:   "22-Nov-2026 16:25    1234" (exact bytes, or "-" for directories)
 *   Apache:  "2026-11-22 16:25  1.2K" or "22-Nov-2026 16:25  1.2K" (rounded)
 * Best effort: anything that does not look like that leaves size and mtime 0. Returns
 * DETAILS_* flags. */
static unsigned parse_details(const char *text, ufs_version *v)
{
        unsigned flags = 0;
        char buf[256];
        char *tokens[16];
        size_t nt = 0;
        char *save = NULL;

        snprintf(buf, sizeof buf, "%s", text);
        for (char *t = strtok_r(buf, " \t\r\n", &save); t && nt < ELEMENTSOF(tokens);
             t = strtok_r(NULL, " \t\r\n", &save))
                tokens[nt++] = t;

        for (size_t i = 0; i + 1 < nt; i++) {
                struct tm tm = {};
                int y, mo = -1, d, hh, mm, ss = 0;
                char mon[4];

                if (sscanf(tokens[i], "%4d-%2d-%2d", &y, &mo, &d) == 3 && mo >= 1 && mo <= 12)
                        mo--;
                else if (sscanf(tokens[i], "%2d-%3[A-Za-z]-%4d", &d, mon, &y) == 3)
                        mo = month_from_abbrev(mon);
                else
                        continue;
                if (mo < 0 || sscanf(tokens[i + 1], "%2d:%2d:%2d", &hh, &mm, &ss) < 2)
                        continue;
                tm.tm_year = y - 1900;
                tm.tm_mon = mo;
                tm.tm_mday = d;
                tm.tm_hour = hh;
                tm.tm_min = mm;
                tm.tm_sec = ss;
                v->mtime = timegm(&tm);
                if (v->mtime < 0)
                        v->mtime = 0;
                else
                        flags |= DETAILS_TIME;
                break;
        }
        if (nt > 0) {
                const char *s = tokens[nt - 1];
                char *e;
                double d;

                if (*s < '0' || *s > '9')
                        return flags;
                d = strtod(s, &e);
                if (*e == 0) {
                        if (strspn(s, "0123456789") == strlen(s) && strlen(s) < 19) {
                                /* exact: no float rounding of large sizes */
                                v->size = strtoull(s, NULL, 10);
                                return flags | DETAILS_PLAIN_BYTES;
                        }
                } else if (strchr("KkMGTP", *e) && e[1] == 0) {
                        static const char units[] = "KMGTP";
                        char u = *e == 'k' ? 'K' : *e;

                        for (const char *x = units; *x; x++) {
                                d *= 1024;
                                if (*x == u)
                                        break;
                        }
                } else
                        return flags;
                if (d >= 0 && d < 9.2e18) /* a JSON integer (signed 64 bits) later */
                        v->size = (uint64_t)d;
        }
        return flags;
}

/* Text between the end of the link and the next link or row end, tags removed, entities decoded. */
static char *details_text(const char *p, const char *end)
{
        const char *stop = p;
        char raw[512];
        size_t n = 0;
        bool in_tag = false;

        while (stop < end && *stop != '\n' && !ascii_prefix(stop, end, "<a ") &&
               !ascii_prefix(stop, end, "</tr") && (size_t)(stop - p) < 4096)
                stop++;
        for (const char *q = p; q < stop && n + 1 < sizeof raw; q++) {
                if (*q == '<')
                        in_tag = true;
                else if (*q == '>') {
                        in_tag = false;
                        raw[n++] = ' ';
                } else if (!in_tag)
                        raw[n++] = *q;
        }
        raw[n] = 0;
        char *decoded = ufs_decode_entities(raw, n);
        if (decoded) /* &nbsp; is U+00A0: make it a separator */
                for (char *q = decoded; *q; q++)
                        if ((unsigned char)q[0] == 0xc2 && (unsigned char)q[1] == 0xa0)
                                q[0] = q[1] = ' ';
        return decoded;
}

static int entry_compare(const void *a, const void *b)
{
        return strcmp(((const ufs_entry *)a)->name, ((const ufs_entry *)b)->name);
}

int ufs_html_parse(const char *page, size_t len, const char *base_path, ufs_entry **ret_entries,
                   size_t *ret_n)
{
        ufs_exactness x;

        return ufs_html_parse_exactness(page, len, base_path, ret_entries, ret_n, &x);
}

int ufs_html_parse_exactness(const char *page, size_t len, const char *base_path,
                             ufs_entry **ret_entries, size_t *ret_n, ufs_exactness *ret_exactness)
{
        _cleanup_(html_entries_done) html_entries e = {};
        const char *p = page, *end = page + len;
        bool files_exact = true;
        int r;

        while (p < end) {
                const char *lt = memchr(p, '<', (size_t)(end - p)), *gt;
                _cleanup_free_ char *href = NULL, *name = NULL, *details = NULL;
                bool dir;

                if (!lt)
                        break;
                if (ascii_prefix(lt, end, "<!--")) {
                        const char *c = find_ci(lt + 4, end, "-->");

                        if (!c)
                                break;
                        p = c + 3;
                        continue;
                }
                gt = tag_end(lt, end);
                if (!gt)
                        break;
                p = gt + 1;
                if (!(ascii_prefix(lt, end, "<a") && gt > lt + 2 &&
                      (is_space(lt[2]) || lt[2] == '>')))
                        continue;
                r = tag_attribute(lt + 2, gt, "href", &href);
                if (r < 0)
                        return r;
                if (r == 0 || !href)
                        continue;
                r = href_to_name(href, base_path, &name, &dir);
                if (r < 0)
                        return r;
                if (r == 2)
                        return -ENAMETOOLONG;
                if (r == 0)
                        continue;
                if (e.n >= UFS_MAX_ENTRIES)
                        return -E2BIG;
                if (e.n == e.allocated) {
                        size_t a = e.allocated ? e.allocated * 2 : 64;
                        ufs_entry *items = reallocarray(e.items, a, sizeof *items);

                        if (!items)
                                return -ENOMEM;
                        e.items = items;
                        e.allocated = a;
                }
                ufs_entry *entry = &e.items[e.n++];
                *entry = (ufs_entry){.name = TAKE_PTR(name), .dir = dir};

                const char *close = find_ci(p, MIN(end, p + 8192), "</a");
                if (close) {
                        const char *ce = tag_end(close, end);

                        if (ce) {
                                details = details_text(ce + 1, end);
                                if (!details)
                                        return -ENOMEM;
                                unsigned flags = parse_details(details, &entry->version);
                                if (!dir && flags != (DETAILS_TIME | DETAILS_PLAIN_BYTES))
                                        files_exact = false;
                        } else
                                files_exact = false;
                } else
                        files_exact = false;
        }
        /* nginx's page: <pre> rows, a "../" link, no icons and no sort links (Apache has them,
         * and prints small sizes in plain bytes too). */
        bool nginx = find_ci(page, end, "<pre>") && find_ci(page, end, "<a href=\"../\">") &&
                     !find_ci(page, end, "<img") && !find_ci(page, end, "?C=");
        *ret_exactness = nginx && files_exact ? UFS_EXACT_SIZE : UFS_INEXACT;

        if (e.n > 0)
                qsort(e.items, e.n, sizeof *e.items, entry_compare);
        /* Pages may link one entry twice (icon and name): keep the first. */
        size_t w = 0;
        for (size_t i = 0; i < e.n; i++) {
                if (w > 0 && strcmp(e.items[w - 1].name, e.items[i].name) == 0) {
                        ufs_entry *kept = &e.items[w - 1];

                        kept->dir = kept->dir || e.items[i].dir;
                        if (kept->version.size == 0 && kept->version.mtime == 0) {
                                ufs_version_done(&kept->version);
                                kept->version = e.items[i].version;
                                e.items[i].version = (ufs_version){};
                        }
                        free(e.items[i].name);
                        ufs_version_done(&e.items[i].version);
                        continue;
                }
                e.items[w++] = e.items[i];
        }
        e.n = w;
        *ret_entries = TAKE_PTR(e.items);
        *ret_n = e.n;
        e.n = 0;
        return 0;
}

int ufs_json_index_parse(const char *page, size_t len, ufs_entry **ret_entries, size_t *ret_n)
{
        _cleanup_(html_entries_done) html_entries e = {};
        json_error_t err;
        json_t *root = json_loadb(page, len, 0, &err), *item;
        size_t i;

        if (!json_is_array(root)) {
                json_decref(root);
                return -EBADMSG;
        }
        if (json_array_size(root) > UFS_MAX_ENTRIES) {
                json_decref(root);
                return -E2BIG;
        }
        json_array_foreach(root, i, item)
        {
                const char *name = json_string_value(json_object_get(item, "name"));
                const char *type = json_string_value(json_object_get(item, "type"));
                const char *mtime = json_string_value(json_object_get(item, "mtime"));
                json_t *size = json_object_get(item, "size");
                bool dir;

                if (!name || !type)
                        continue;
                if (strcmp(type, "directory") == 0)
                        dir = true;
                else if (strcmp(type, "file") == 0)
                        dir = false;
                else
                        continue; /* "other": sockets, devices */
                if (!ufs_name_valid(name)) {
                        log_debug("Skipping index entry with unusable name \"%s\".", name);
                        continue;
                }
                if (e.n == e.allocated) {
                        size_t a = e.allocated ? e.allocated * 2 : 64;
                        ufs_entry *items = reallocarray(e.items, a, sizeof *items);

                        if (!items) {
                                json_decref(root);
                                return -ENOMEM;
                        }
                        e.items = items;
                        e.allocated = a;
                }
                ufs_entry *entry = &e.items[e.n];
                *entry = (ufs_entry){.name = strdup(name), .dir = dir};
                if (!entry->name) {
                        json_decref(root);
                        return -ENOMEM;
                }
                e.n++;
                if (json_is_integer(size) && json_integer_value(size) >= 0)
                        entry->version.size = (uint64_t)json_integer_value(size);
                if (mtime) {
                        time_t t = curl_getdate(mtime, NULL);

                        entry->version.mtime = t > 0 ? (int64_t)t : 0;
                }
        }
        json_decref(root);
        if (e.n > 0)
                qsort(e.items, e.n, sizeof *e.items, entry_compare);
        for (size_t k = 1; k < e.n; k++)
                if (strcmp(e.items[k - 1].name, e.items[k].name) == 0)
                        return -EBADMSG; /* a directory does not list a name twice */
        *ret_entries = TAKE_PTR(e.items);
        *ret_n = e.n;
        e.n = 0;
        return 0;
}
