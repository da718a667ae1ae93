/* weirctl datasets, ls, stat and dataset sync: the dataset views of the master leader's API. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config-load.h"
#include "config.h"
#include "ctl.h"
#include "httpc.h"
#include "log.h"
#include "parse.h"

#define CTL_LS_PAGE     1000u  /* entries per ls request */
#define CTL_LS_PAGE_MAX 10000u /* the master's LISTING_LIMIT_MAX */

typedef struct api {
        config *cfg;
        httpc *c;
} api;

static void api_done(api *a)
{
        a->c = httpc_free(a->c);
        a->cfg = config_free(a->cfg);
}

static int api_open(const ctl_context *ctx, api *a)
{
        int r;

        /* once per command: ls asks page after page on one kept-alive connection (a client
         * per page would hold a connection per page, and the API limits each client's) */
        if (a->c)
                return 0;
        r = config_load_logged(ctx->config_path, false, &a->cfg);
        if (r < 0)
                return r;
        a->c = ctl_httpc(a->cfg, 10000, 1000);
        if (!a->c)
                return log_oom();
        return 0;
}

static int api_request(api *a, const char *method, const char *path, httpc_response *ret)
{
        return ctl_master_request(a->cfg, a->c, method, path, ret);
}

/* Prints the answer's error ("error" field or the status) and returns 1. */
static int api_fail(const httpc_response *res, const char *what)
{
        const char *err = json_string_value(json_object_get(res->json, "error"));

        log_error("%s: %s (HTTP %ld)", what, err ? err : "failed", res->status);
        return 1;
}

static char *escape_query(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
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

static uint64_t json_u64(const json_t *v)
{
        if (json_is_integer(v) && json_integer_value(v) >= 0)
                return (uint64_t)json_integer_value(v);
        if (json_is_real(v) && json_real_value(v) >= 0)
                return (uint64_t)json_real_value(v);
        return 0;
}

/* kubectl's AGE: "45s", "12m", "5h", "3d". */
static void format_age(double since, char *buf, size_t len)
{
        double age = since > 0 ? difftime(time(NULL), (time_t)since) : -1;

        if (age < 0)
                snprintf(buf, len, "<unknown>");
        else if (age < 120)
                snprintf(buf, len, "%.0fs", age);
        else if (age < 7200)
                snprintf(buf, len, "%.0fm", floor(age / 60));
        else if (age < 172800)
                snprintf(buf, len, "%.0fh", floor(age / 3600));
        else
                snprintf(buf, len, "%.0fd", floor(age / 86400));
}

#define DATASET_COLUMNS 9

/* Prints CELLS (N_ROWS rows of N_COLS) as kubectl does: columns padded to their widest cell
 * plus three spaces, no trailing blanks. */
static void print_table(char (*cells)[DATASET_COLUMNS][64], size_t n_rows, size_t n_cols)
{
        size_t width[DATASET_COLUMNS] = {};

        for (size_t r = 0; r < n_rows; r++)
                for (size_t c = 0; c < n_cols; c++)
                        width[c] = MAX(width[c], strlen(cells[r][c]));
        for (size_t r = 0; r < n_rows; r++) {
                for (size_t c = 0; c < n_cols; c++) {
                        if (c + 1 < n_cols)
                                printf("%-*s   ", (int)width[c], cells[r][c]);
                        else
                                printf("%s\n", cells[r][c]);
                }
        }
}

static int print_datasets(const json_t *list, bool wide)
{
        static const char *const header[DATASET_COLUMNS] = {
                "NAME",
                "UFS TOTAL SIZE",
                "CACHED",
                "CACHE CAPACITY",
                "CACHED PERCENTAGE",
                "PHASE",
                "AGE",
                "TOTAL FILES",
                "CACHE HIT RATIO",
        };
        size_t n = json_array_size(list), n_cols = wide ? 9 : 7;
        _cleanup_free_ char(*cells)[DATASET_COLUMNS][64] = calloc(n + 1, sizeof *cells);
        size_t i;
        json_t *d;

        if (!cells)
                return log_oom();
        for (size_t c = 0; c < DATASET_COLUMNS; c++)
                snprintf(cells[0][c], sizeof cells[0][c], "%s", header[c]);
        json_array_foreach(list, i, d) {
                char(*row)[64] = cells[i + 1];
                uint64_t t = json_u64(json_object_get(d, "ufs_total_size"));
                uint64_t c = json_u64(json_object_get(d, "cached"));

                snprintf(row[0], 64, "%s", json_string_value(json_object_get(d, "name")) ?: "?");
                format_bytes(row[1], 64, t);
                format_bytes(row[2], 64, c);
                format_bytes(row[3], 64, json_u64(json_object_get(d, "cache_capacity")));
                snprintf(row[4], 64, "%.1f%%", t > 0 ? 100.0 * (double)c / (double)t : 0.0);
                snprintf(row[5], 64, "%s", json_string_value(json_object_get(d, "phase")) ?: "?");
                format_age(json_number_value(json_object_get(d, "created")), row[6], 64);
                snprintf(row[7], 64, "%" PRIu64, json_u64(json_object_get(d, "total_files")));
                snprintf(row[8], 64, "%.1f%%",
                         100.0 * json_number_value(json_object_get(d, "hit_ratio")));
        }
        print_table(cells, n + 1, n_cols);
        return 0;
}

int ctl_datasets(const ctl_context *ctx, int argc, char **argv)
{
        static const struct option options[] = {
                {"output", required_argument, NULL, 'o'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(api_done) api a = {};
        httpc_response res = {};
        bool wide = false, json = ctx->json;
        int c;

        while ((c = getopt_long(argc, argv, "o:h", options, NULL)) >= 0)
                switch (c) {
                case 'o':
                        if (strcmp(optarg, "wide") == 0)
                                wide = true;
                        else if (strcmp(optarg, "json") == 0)
                                json = true;
                        else {
                                fprintf(stderr, "weirctl datasets: -o wide or -o json\n");
                                return 2;
                        }
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        printf("Usage: weirctl datasets [-o wide] [--json]\n\n"
                               "The datasets with Fluid's columns; -o wide adds TOTAL FILES and "
                               "CACHE HIT RATIO.\n");
                        return 0;
                default:
                        return 2;
                }
        if (api_open(ctx, &a) < 0)
                return 1;
        if (api_request(&a, "GET", "/v1/datasets", &res) < 0) {
                log_error("No master of %s answered.", ctx->config_path);
                return 1;
        }
        if (res.status != 200 || !json_is_array(json_object_get(res.json, "datasets"))) {
                int r = api_fail(&res, "Listing the datasets failed");
                httpc_response_done(&res);
                return r;
        }
        if (json) {
                json_dumpf(res.json, stdout, JSON_INDENT(2));
                putchar('\n');
        } else {
                json_t *list = json_object_get(res.json, "datasets");
                size_t i;
                json_t *d;

                bool first = true;

                if (print_datasets(list, wide) < 0) {
                        httpc_response_done(&res);
                        return 1;
                }
                /* Fluid shows why a dataset failed in its conditions; here, below the table. */
                json_array_foreach(list, i, d) {
                        const char *err = json_string_value(json_object_get(d, "sync_error"));

                        if (err && *err)
                                printf("%s%s: last sync failed: %s\n", first ? "\n" : "",
                                       json_string_value(json_object_get(d, "name")) ?: "?", err);
                        if (err && *err)
                                first = false;
                }
        }
        httpc_response_done(&res);
        return 0;
}

/* "/DATASET/MOUNT/PATH" → dataset name and "/MOUNT/PATH" ("/" for the dataset's root). */
static int split_path(const char *arg, char **ret_dataset, char **ret_path)
{
        const char *p = arg, *slash;

        while (*p == '/')
                p++;
        if (!*p)
                return -EINVAL;
        slash = strchr(p, '/');
        *ret_dataset = strndup(p, slash ? (size_t)(slash - p) : strlen(p));
        *ret_path = strdup(slash && slash[1] ? slash : "/");
        if (!*ret_dataset || !*ret_path) {
                free(*ret_dataset);
                free(*ret_path);
                return -ENOMEM;
        }
        return 0;
}

static void format_time(const json_t *v, char *buf, size_t len)
{
        time_t t = (time_t)json_u64(v);
        struct tm tm;

        if (t <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0)
                snprintf(buf, len, "%-16s", "-");
}

/* GET /v1/datasets/DATASET/VERB?path=PATH&EXTRA (EXTRA already escaped, may be NULL). */
static int get_entry(const ctl_context *ctx, api *a, const char *verb, const char *arg,
                     const char *extra, httpc_response *res)
{
        _cleanup_free_ char *dataset = NULL, *path = NULL, *qd = NULL, *qp = NULL, *url = NULL;

        if (split_path(arg, &dataset, &path) < 0) {
                fprintf(stderr, "weirctl %s: expected /DATASET[/MOUNT/PATH], got '%s'\n", verb,
                        arg);
                return 2;
        }
        qd = escape_query(dataset);
        qp = escape_query(path);
        if (!qd || !qp ||
            asprintf(&url, "/v1/datasets/%s/%s?path=%s%s%s", qd, verb, qp, extra ? "&" : "",
                     extra ?: "") < 0) {
                log_oom();
                return 1;
        }
        /* once: ls calls this for every page, on one keep-alive connection */
        if (!a->c && api_open(ctx, a) < 0)
                return 1;
        if (api_request(a, "GET", url, res) < 0) {
                log_error("No master of %s answered.", ctx->config_path);
                return 1;
        }
        if (res->status != 200) {
                int r = api_fail(res, arg);
                httpc_response_done(res);
                return r;
        }
        return 0;
}

static void print_ls_entry(const json_t *e, bool longf)
{
        const char *name = json_string_value(json_object_get(e, "name")) ?: "?";
        bool dir = strcmp(json_string_value(json_object_get(e, "type")) ?: "", "dir") == 0;

        if (longf) {
                char when[64];

                format_time(json_object_get(e, "mtime"), when, sizeof when);
                if (dir)
                        printf("d %14s %s %5s %s/\n", "-", when, "-", name);
                else
                        printf("f %14" PRIu64 " %s %5" PRIu64 " %s\n",
                               json_u64(json_object_get(e, "size")), when,
                               json_u64(json_object_get(e, "version")), name);
        } else
                printf("%s%s\n", name, dir ? "/" : "");
}

int ctl_ls(const ctl_context *ctx, int argc, char **argv)
{
        static const struct option options[] = {
                {"long", no_argument, NULL, 'l'},
                {"json", no_argument, NULL, 'j'},
                {"page-size", required_argument, NULL, 'p'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(api_done) api a = {};
        _cleanup_free_ char *after = NULL;
        bool longf = false, json = ctx->json, first = true;
        uint64_t page = CTL_LS_PAGE;
        int c, r;

        while ((c = getopt_long(argc, argv, "lh", options, NULL)) >= 0)
                switch (c) {
                case 'l':
                        longf = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'p':
                        if (parse_u64(optarg, &page) < 0 || page == 0 || page > CTL_LS_PAGE_MAX) {
                                fprintf(stderr, "weirctl ls: --page-size must be 1..%u, got '%s'\n",
                                        CTL_LS_PAGE_MAX, optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        printf("Usage: weirctl ls [-l] [--json] [--page-size N] "
                               "/DATASET[/MOUNT/PATH]\n\n"
                               "List a directory of a dataset as the masters hold it, in name "
                               "order,\nasking for N entries at a time (default %u, at most "
                               "%u).\n"
                               "-l: TYPE SIZE MODIFIED VERSION NAME (sizes in bytes).\n",
                               CTL_LS_PAGE, CTL_LS_PAGE_MAX);
                        return 0;
                default:
                        return 2;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "Usage: weirctl ls [-l] [--page-size N] /DATASET[/MOUNT/PATH]\n");
                return 2;
        }
        /* one page in memory at a time: --json streams the entries of all pages as one array */
        for (;;) {
                _cleanup_free_ char *extra = NULL, *qa = after ? escape_query(after) : NULL;
                httpc_response res = {};
                json_t *entries, *next, *e;
                size_t i;

                if ((after && !qa) || asprintf(&extra, "limit=%" PRIu64 "%s%s", page,
                                               qa ? "&after=" : "", qa ?: "") < 0)
                        return log_oom();
                r = get_entry(ctx, &a, "ls", argv[optind], extra, &res);
                if (r != 0)
                        return r;
                entries = json_object_get(res.json, "entries");
                next = json_object_get(res.json, "next");
                if (!json_is_array(entries) || (next && !json_is_string(next))) {
                        httpc_response_done(&res);
                        log_error("%s: the master's listing has no entries array.", argv[optind]);
                        return 1;
                }
                if (next && after && strcmp(json_string_value(next), after) <= 0) {
                        /* a page must move forward, or this loop would never end */
                        httpc_response_done(&res);
                        log_error("%s: the master's listing did not advance past '%s'.",
                                  argv[optind], after);
                        return 1;
                }
                if (json && first) {
                        _cleanup_free_ char *p =
                                json_dumps(json_object_get(res.json, "path"), JSON_ENCODE_ANY);

                        printf("{\n  \"path\": %s,\n  \"entries\": [", p ?: "null");
                }
                json_array_foreach(entries, i, e) {
                        if (json) {
                                _cleanup_free_ char *s = json_dumps(e, JSON_COMPACT);

                                printf("%s\n    %s", first ? "" : ",", s ?: "null");
                                first = false;
                        } else
                                print_ls_entry(e, longf);
                }
                first = false;
                free(after);
                after = next ? strdup(json_string_value(next)) : NULL;
                httpc_response_done(&res);
                if (next && !after)
                        return log_oom();
                if (!next)
                        break;
        }
        if (json)
                printf("\n  ]\n}\n");
        return 0;
}

int ctl_stat(const ctl_context *ctx, int argc, char **argv)
{
        _cleanup_(api_done) api a = {};
        httpc_response res = {};
        bool json = ctx->json;
        const char *arg = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        printf("Usage: weirctl stat [--json] /DATASET/MOUNT/PATH\n");
                        return 0;
                } else if (!arg)
                        arg = argv[i];
                else
                        return 2;
        }
        if (!arg) {
                fprintf(stderr, "Usage: weirctl stat [--json] /DATASET/MOUNT/PATH\n");
                return 2;
        }
        r = get_entry(ctx, &a, "stat", arg, NULL, &res);
        if (r != 0)
                return r;
        if (json)
                json_dumpf(res.json, stdout, JSON_INDENT(2));
        else {
                json_t *e = res.json;
                char when[64], size[FORMAT_BYTES_MAX];
                bool dir = strcmp(json_string_value(json_object_get(e, "type")) ?: "", "dir") == 0;

                const char *etag = json_string_value(json_object_get(e, "etag"));

                format_time(json_object_get(e, "mtime"), when, sizeof when);
                format_bytes(size, sizeof size, json_u64(json_object_get(e, "size")));
                printf("  Path: %s\n  Type: %s\n", arg, dir ? "directory" : "file");
                if (!dir)
                        printf("  Size: %" PRIu64 " (%s)\n  Modified: %s\n  Version: %" PRIu64
                               "\n  ETag: %s\n  File id: %" PRIu64 "\n  Store URL: %s",
                               json_u64(json_object_get(e, "size")), size, when,
                               json_u64(json_object_get(e, "version")), etag && *etag ? etag : "-",
                               json_u64(json_object_get(e, "file_id")),
                               json_string_value(json_object_get(e, "ufs_url")) ?: "-");
        }
        putchar('\n');
        httpc_response_done(&res);
        return 0;
}

/* Waits until the dataset's "synced" or "sync_error" moves past what it was before. */
static int wait_sync(api *a, const char *qname, const json_t *before, unsigned timeout_s)
{
        _cleanup_free_ char *url = NULL;
        double synced0 = json_number_value(json_object_get(before, "synced"));
        time_t deadline = time(NULL) + (time_t)timeout_s;

        if (asprintf(&url, "/v1/datasets/%s", qname) < 0)
                return log_oom();
        while (time(NULL) < deadline) {
                httpc_response res = {};

                usleep(200 * 1000);
                if (api_request(a, "GET", url, &res) < 0 || res.status != 200) {
                        httpc_response_done(&res);
                        continue;
                }
                double synced = json_number_value(json_object_get(res.json, "synced"));
                const char *err = json_string_value(json_object_get(res.json, "sync_error"));
                const char *err0 = json_string_value(json_object_get(before, "sync_error"));
                bool changed_error = err && (!err0 || strcmp(err, err0) != 0);

                if (synced > synced0) {
                        printf("Synced: %" PRIu64 " files, phase %s.\n",
                               json_u64(json_object_get(res.json, "total_files")),
                               json_string_value(json_object_get(res.json, "phase")) ?: "?");
                        httpc_response_done(&res);
                        return 0;
                }
                if (changed_error) {
                        log_error("Sync failed: %s", err);
                        httpc_response_done(&res);
                        return -EIO;
                }
                httpc_response_done(&res);
        }
        log_error("The sync did not finish within %us.", timeout_s);
        return -ETIMEDOUT;
}

int ctl_dataset(const ctl_context *ctx, int argc, char **argv)
{
        static const struct option options[] = {
                {"wait", no_argument, NULL, 'w'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(api_done) api a = {};
        _cleanup_free_ char *qname = NULL, *url = NULL, *durl = NULL;
        httpc_response res = {}, before = {};
        bool wait = false;
        uint64_t timeout_ms = 600000;
        int c, r;

        if (argc < 2 || strcmp(argv[1], "sync") != 0) {
                if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                        printf("Usage: weirctl dataset sync [--wait [--timeout DURATION]] NAME\n");
                        return 0;
                }
                fprintf(stderr, "Usage: weirctl dataset sync [--wait] NAME\n");
                return 2;
        }
        argc--;
        argv++;
        while ((c = getopt_long(argc, argv, "wh", options, NULL)) >= 0)
                switch (c) {
                case 'w':
                        wait = true;
                        break;
                case 't':
                        if (parse_duration_ms(optarg, &timeout_ms) < 0) {
                                fprintf(stderr, "weirctl dataset sync: invalid timeout '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        printf("Usage: weirctl dataset sync [--wait [--timeout DURATION]] NAME\n\n"
                               "Start a metadata sync of NAME on the leader; --wait until it "
                               "committed or failed.\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "Usage: weirctl dataset sync [--wait] NAME\n");
                return 2;
        }
        qname = escape_query(argv[optind]);
        if (!qname || asprintf(&url, "/v1/datasets/%s/sync", qname) < 0 ||
            asprintf(&durl, "/v1/datasets/%s", qname) < 0)
                return log_oom(), 1;
        if (api_open(ctx, &a) < 0)
                return 1;
        if (wait && (api_request(&a, "GET", durl, &before) < 0 || before.status != 200)) {
                r = before.status ? api_fail(&before, argv[optind]) : 1;
                if (!before.status)
                        log_error("No master of %s answered.", ctx->config_path);
                httpc_response_done(&before);
                return r;
        }
        if (api_request(&a, "POST", url, &res) < 0) {
                log_error("No master of %s answered.", ctx->config_path);
                httpc_response_done(&before);
                return 1;
        }
        if (res.status != 202 && res.status != 200) {
                r = api_fail(&res, "Starting the sync failed");
                httpc_response_done(&res);
                httpc_response_done(&before);
                return r;
        }
        httpc_response_done(&res);
        if (!wait) {
                printf("Sync of %s started.\n", argv[optind]);
                return 0;
        }
        r = wait_sync(&a, qname, before.json, (unsigned)MAX(timeout_ms / 1000, (uint64_t)1));
        httpc_response_done(&before);
        return r < 0 ? 1 : 0;
}
