/* String helpers of the store layer: percent-encoding, entities, UTF-8 and path checks. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ufs-internal.h"

static bool is_unreserved(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/* S with every byte KEEP refuses percent-encoded; NULL on OOM. */
static char *escape_with(const char *s, bool (*keep)(unsigned char c, bool flag), bool flag)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out, *o;

        if (n > SIZE_MAX / 3 - 1)
                return NULL;
        out = o = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (keep(*p, flag))
                        *o++ = (char)*p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = 0;
        return out;
}

static bool keep_unreserved(unsigned char c, bool keep_slash)
{
        return is_unreserved(c) || (keep_slash && c == '/');
}

/* Printable ASCII but the characters a URL may not hold as they are. */
static bool keep_loose(unsigned char c, bool unused)
{
        return c > 0x20 && c < 0x7f && !strchr("<>\"`{|}^\\", c);
}

char *ufs_escape(const char *s, bool keep_slash)
{
        return escape_with(s, keep_unreserved, keep_slash);
}

char *ufs_escape_path(const char *path)
{
        return ufs_escape(path, true);
}

char *ufs_escape_loose(const char *s)
{
        return escape_with(s, keep_loose, false);
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int ufs_unescape(const char *s, size_t len, char **ret)
{
        char *out, *o;

        out = o = malloc(len + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        int hi, lo;

                        if (i + 2 >= len) {
                                free(out);
                                return -EINVAL;
                        }
                        hi = hex_value(s[i + 1]);
                        lo = hex_value(s[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(out);
                                return -EINVAL;
                        }
                        *o++ = (char)(hi << 4 | lo);
                        i += 2;
                } else if (s[i] == 0) {
                        free(out);
                        return -EINVAL;
                } else
                        *o++ = s[i];
        }
        *o = 0;
        *ret = out;
        return 0;
}

/* Appends code point CP as UTF-8; false for a value that is not a scalar value. */
static bool put_utf8(char **o, uint32_t cp)
{
        char *p = *o;

        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return false;
        if (cp < 0x80)
                *p++ = (char)cp;
        else if (cp < 0x800) {
                *p++ = (char)(0xc0 | cp >> 6);
                *p++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                *p++ = (char)(0xe0 | cp >> 12);
                *p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *p++ = (char)(0x80 | (cp & 0x3f));
        } else {
                *p++ = (char)(0xf0 | cp >> 18);
                *p++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *p++ = (char)(0x80 | (cp & 0x3f));
        }
        *o = p;
        return true;
}

static const struct {
        const char *name;
        uint32_t cp;
} entities[] = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xa0},
};

/* Decodes one reference at S (just after '&', up to END); returns bytes consumed incl. ';' or 0. */
static size_t decode_reference(const char *s, const char *end, char **o)
{
        const char *semi = memchr(s, ';', (size_t)MIN(end - s, 12));
        uint32_t cp = 0;

        if (!semi || semi == s)
                return 0;
        if (*s == '#') {
                const char *p = s + 1;
                int base = 10;

                if (p < semi && (*p == 'x' || *p == 'X')) {
                        base = 16;
                        p++;
                }
                if (p == semi)
                        return 0;
                for (; p < semi; p++) {
                        int v = hex_value(*p);

                        if (v < 0 || v >= base)
                                return 0;
                        cp = cp * (uint32_t)base + (uint32_t)v;
                        if (cp > 0x10ffff)
                                return 0;
                }
        } else {
                size_t n = (size_t)(semi - s);
                bool found = false;

                for (size_t i = 0; i < ELEMENTSOF(entities); i++)
                        if (strlen(entities[i].name) == n && memcmp(entities[i].name, s, n) == 0) {
                                cp = entities[i].cp;
                                found = true;
                        }
                if (!found)
                        return 0;
        }
        if (!put_utf8(o, cp))
                return 0;
        return (size_t)(semi - s) + 1;
}

char *ufs_decode_entities(const char *s, size_t len)
{
        const char *end = s + len;
        char *out, *o;

        /* A reference never decodes to more bytes than it takes ("&#1;" is 4 → 1..4). */
        out = o = malloc(len + 1);
        if (!out)
                return NULL;
        while (s < end) {
                if (*s == '&') {
                        size_t used = decode_reference(s + 1, end, &o);

                        if (used > 0) {
                                s += 1 + used;
                                continue;
                        }
                }
                *o++ = *s++;
        }
        *o = 0;
        return out;
}

bool ufs_utf8_valid(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        while (*p) {
                uint32_t cp;
                int n;

                if (*p < 0x80) {
                        p++;
                        continue;
                } else if ((*p & 0xe0) == 0xc0) {
                        cp = *p & 0x1f;
                        n = 1;
                } else if ((*p & 0xf0) == 0xe0) {
                        cp = *p & 0x0f;
                        n = 2;
                } else if ((*p & 0xf8) == 0xf0) {
                        cp = *p & 0x07;
                        n = 3;
                } else
                        return false;
                p++;
                for (int i = 0; i < n; i++, p++) {
                        if ((*p & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (*p & 0x3f);
                }
                /* Overlong forms, surrogates and values past Unicode are not UTF-8. */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
        }
        return true;
}

bool ufs_name_valid(const char *name)
{
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > UFS_MAX_NAME)
                return false;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
                if (*p == '/' || *p < 0x20 || *p == 0x7f)
                        return false;
        return ufs_utf8_valid(name);
}

bool ufs_path_valid(const char *path)
{
        const char *p = path;

        if (!path)
                return false;
        if (!*path)
                return true;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                char part[UFS_MAX_NAME + 1];

                if (n == 0 || n > UFS_MAX_NAME)
                        return false;
                memcpy(part, p, n);
                part[n] = 0;
                if (!ufs_name_valid(part))
                        return false;
                if (!slash)
                        return true;
                p = slash + 1;
        }
}

char *ufs_path_join(const char *a, const char *b)
{
        char *s;

        if (asprintf(&s, "%s%s%s", a, (*a && *b) ? "/" : "", b) < 0)
                return NULL;
        return s;
}

char *ufs_url_redact(const char *url)
{
        const char *auth = strstr(url, "://");
        const char *host, *end, *at;

        if (!auth)
                return strdup(url);
        host = auth + 3;
        end = host + strcspn(host, "/?#");
        /* The last '@' before the path ends the userinfo: passwords may contain '@'. */
        at = NULL;
        for (const char *p = host; p < end; p++)
                if (*p == '@')
                        at = p;
        if (!at)
                return strdup(url);
        size_t scheme_len = (size_t)(host - url), rest = strlen(at + 1);
        char *out = malloc(scheme_len + rest + 1);
        if (!out)
                return NULL;
        memcpy(out, url, scheme_len);
        memcpy(out + scheme_len, at + 1, rest + 1);
        return out;
}
