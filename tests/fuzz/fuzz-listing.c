/* libFuzzer target: any bytes as an HTTP directory index (Apache in its three formats, nginx HTML
 * and JSON, Python's http.server), as an S3 ListObjectsV2 or Error answer, and as the master's
 * compact listing page (lswire.h). No crash, no leak, and every entry the parsers return is one
 * valid path component, sorted, without duplicates. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lswire.h"
#include "ufs-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entries(const ufs_entry *e, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (!e[i].name || !ufs_name_valid(e[i].name))
                        __builtin_trap();
                if (i > 0 && strcmp(e[i - 1].name, e[i].name) >= 0)
                        __builtin_trap();
        }
}

static int check_wire_entry(const lswire_entry *e, void *userdata)
{
        const char **prev = userdata;

        if (e->name_len == 0 || e->name_len > LSWIRE_NAME_MAX ||
            memchr(e->name, '/', e->name_len) || memchr(e->name, 0, e->name_len) ||
            (!e->dir && e->file_id == 0))
                __builtin_trap();
        *prev = e->name;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *page = (const char *)data;
        ufs_entry *e = NULL;
        size_t n = 0;
        ufs_s3_page p = {};
        char *code = NULL, *message = NULL;

        /* the parsers take a length, not a string: no NUL needed, none assumed */
        if (ufs_html_parse(page, size, "/pub/dir/", &e, &n) == 0) {
                check_entries(e, n);
                ufs_entries_free(e, n);
        }
        e = NULL;
        n = 0;
        if (ufs_html_parse(page, size, NULL, &e, &n) == 0) {
                check_entries(e, n);
                ufs_entries_free(e, n);
        }
        e = NULL;
        n = 0;
        if (ufs_json_index_parse(page, size, &e, &n) == 0) {
                check_entries(e, n);
                ufs_entries_free(e, n);
        }
        if (ufs_s3_parse_list(page, size, "", &p) == 0) {
                check_entries(p.entries, p.n);
                ufs_s3_page_done(&p);
        }
        p = (ufs_s3_page){};
        if (ufs_s3_parse_list(page, size, "data/dir/", &p) == 0) {
                check_entries(p.entries, p.n);
                ufs_s3_page_done(&p);
        }
        const char *prev = NULL;
        char err[128];
        lswire_header h;
        if (lswire_parse(data, size, NULL, 10000, check_wire_entry, &prev, &h, err, sizeof(err)) ==
                    0 &&
            h.more && h.count == 0)
                __builtin_trap();
        (void)lswire_parse(data, size, "n00000042", 1024, check_wire_entry, &prev, NULL, NULL, 0);
        if (ufs_s3_parse_error(page, size, &code, &message) == 0) {
                free(code);
                free(message);
        }
        return 0;
}
