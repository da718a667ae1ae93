/* What the store backends share: the handle, the backend table, URL and HTTP helpers, parsers. */
#pragma once

#include <curl/curl.h>
#include <stdarg.h>

#include "cleanup.h"
#include "ufs.h"

typedef struct ufs_backend {
        const char *name;
        bool exact_listing; /* see ufs_listing_exact() */
        /* Fills u->data from u->mount; the handle is freed by the caller on failure. */
        int (*open)(ufs *u);
        void (*free)(ufs *u);
        int (*list)(ufs *u, const char *path, ufs_entry **ret_entries, size_t *ret_n);
        int (*stat)(ufs *u, const char *path, ufs_version *ret);
        int (*read)(ufs *u, const char *path, const ufs_version *version, uint64_t offset,
                    uint64_t len, ufs_sink sink, void *userdata);
        char *(*url)(ufs *u, const char *path);
} ufs_backend;

struct ufs {
        const ufs_backend *backend;
        const config_mount *mount;
        CURL *curl;                /* created lazily by ufs_curl(); kept for keep-alive */
        curl_socket_t sock;        /* the connection curl opened last (ufs-curl.c: SO_RCVLOWAT) */
        void *data;                /* the backend's */
        const atomic_bool *cancel; /* ufs_set_cancel() */
        ufs_exactness exactness;   /* of the last listing; the backend may lower or raise it */
        int64_t date;              /* Date of the last GET's answer (ufs_http_get), 0 = none */
        char error[512];
};

extern const ufs_backend ufs_backend_http;
extern const ufs_backend ufs_backend_local;
extern const ufs_backend ufs_backend_s3;

/* Records the handle's last error message (never a secret). Returns ERR for "return ufs_fail()". */
int ufs_fail(ufs *u, int err, const char *format, ...) _printf_(3, 4);

/* ---- strings and URLs (ufs-url.c) ---- */

/* Percent-encodes every byte of S except RFC 3986 unreserved ones and, when KEEP_SLASH, '/'.
 * This is also the encoding AWS SigV4 wants for paths and query values. NULL on OOM. */
char *ufs_escape(const char *s, bool keep_slash);
/* Encodes only what may not appear in a URL as written (controls, space, non-ASCII, "<>\"`{|}^\\"),
 * keeping existing %XX escapes: for mount points as an operator wrote them. */
char *ufs_escape_loose(const char *s);
/* Decodes %XX escapes of S[0..LEN); -EINVAL for a malformed escape or one giving NUL. */
int ufs_unescape(const char *s, size_t len, char **ret);
/* Decodes HTML/XML character references (&amp; &lt; &gt; &quot; &apos; &#39; &#x27; &nbsp; ...)
 * in S[0..LEN). Unknown named references are kept literally. NULL on OOM. */
char *ufs_decode_entities(const char *s, size_t len);
bool ufs_utf8_valid(const char *s);
/* A name that can be one path component: non-empty, no '/', not "." or "..", valid UTF-8,
 * at most UFS_MAX_NAME bytes, no control characters. */
bool ufs_name_valid(const char *name);
/* PATH as ufs.h defines it: "" or components joined by single '/', each ufs_name_valid. */
bool ufs_path_valid(const char *path);
/* A + B with '/' between when both are non-empty. NULL on OOM. */
char *ufs_path_join(const char *a, const char *b);

/* ---- HTML index pages (ufs-html.c) ---- */

/* Parses a directory index page (Apache mod_autoindex in any of its formats, nginx autoindex,
 * Python's http.server, and pages alike) into its entries, sorted by name without duplicates.
 * BASE_PATH is the URL path of the page ("/pub/x/") so that absolute links into this very
 * directory count too; NULL accepts only relative links. Links to parents, other directories,
 * other hosts, sort links (?C=N;O=D) and fragments are ignored. Sizes and mtimes are taken from
 * the listing where it shows them (rounded: hints only). -E2BIG past UFS_MAX_ENTRIES. */
int ufs_html_parse(const char *page, size_t len, const char *base_path, ufs_entry **ret_entries,
                   size_t *ret_n);
/* The same, and how exact the page's sizes and times are: UFS_EXACT_SIZE for nginx's autoindex
 * page (no icons, no sort links, a "../" link, and every file with a time and a size in plain
 * bytes), UFS_INEXACT otherwise. */
int ufs_html_parse_exactness(const char *page, size_t len, const char *base_path,
                             ufs_entry **ret_entries, size_t *ret_n, ufs_exactness *ret_exactness);

/* Parses nginx's JSON directory index (autoindex_format json): an array of {"name","type":
 * "directory"|"file","mtime","size"}; sorted and checked like ufs_html_parse(). -EBADMSG for
 * anything else. */
int ufs_json_index_parse(const char *page, size_t len, ufs_entry **ret_entries, size_t *ret_n);

/* ---- S3 XML (ufs-xml.c) ---- */

typedef struct ufs_s3_page {
        ufs_entry *entries;
        size_t n;
        bool truncated;
        char *next_token; /* NextContinuationToken, NULL when absent */
        bool any;         /* some key was under the prefix (if only the directory marker) */
} ufs_s3_page;

/* Parses one ListObjectsV2 answer. Keys and common prefixes must start with PREFIX (the
 * listed directory, "" or ending in '/'); the remainder becomes the entry name. The key equal to
 * PREFIX itself (a "directory marker" object) is skipped, and so are names that are not valid
 * path components. -EBADMSG for XML that is not a ListBucketResult. */
int ufs_s3_parse_list(const char *xml, size_t len, const char *prefix, ufs_s3_page *ret);
void ufs_s3_page_done(ufs_s3_page *p);
/* From an S3 <Error> body: the Code and Message (either may be NULL). */
int ufs_s3_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message);
/* The URL a request goes to: for PATH's object, or (LIST) the first listing page of the prefix
 * PATH (a key prefix: "" or ending in '/'). For tests. */
char *ufs_s3_request_url(ufs *u, const char *path, bool list);
/* The CURLOPT_AWS_SIGV4 value ("aws:amz:REGION:s3"). For tests. */
const char *ufs_s3_signing(ufs *u);
/* Parses an ISO 8601 UTC time "2026-11-22T16:25:03.000Z" into Unix seconds. */
int ufs_parse_iso8601(const char *s, int64_t *ret);

/* ---- HTTP over libcurl (ufs-curl.c), shared by the http and s3 backends ---- */

typedef enum ufs_signing {
        UFS_SIGN_NONE,
        UFS_SIGN_AWS_V4,
} ufs_signing;

typedef struct ufs_http_auth {
        ufs_signing signing;
        const char *sigv4;    /* "aws:amz:REGION:s3" */
        const char *user;     /* access key; with UFS_SIGN_NONE: basic auth user, or NULL */
        const char *password; /* secret */
        bool follow_redirects;
} ufs_http_auth;

/* The easy handle of U, created on first use and reset between requests. NULL on OOM. */
CURL *ufs_curl(ufs *u);
/* Translates a libcurl result to -errno; the only place that does. */
int ufs_errno_from_curl(CURLcode c);
/* Translates an HTTP status (not 2xx) to -errno. */
int ufs_errno_from_status(long status);

/* GETs URL into memory (at most UFS_MAX_PAGE_SIZE bytes, else -EFBIG). Any status is returned in
 * *ret_status with its body; transport errors are -errno. *ret_content_type may be NULL. */
int ufs_http_get(ufs *u, const ufs_http_auth *auth, const char *url, long *ret_status,
                 char **ret_body, size_t *ret_len, char **ret_effective_url,
                 char **ret_content_type);
/* HEADs URL: exact size, Last-Modified and ETag. -ENOENT on 404, -EACCES on 401/403. */
int ufs_http_head(ufs *u, const ufs_http_auth *auth, const char *url, ufs_version *ret);
/* A ranged GET under VERSION's precondition, see ufs_read(). */
int ufs_http_read(ufs *u, const ufs_http_auth *auth, const char *url, const ufs_version *version,
                  uint64_t offset, uint64_t len, ufs_sink sink, void *userdata);
