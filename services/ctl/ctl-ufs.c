/* weirctl ufs: list, stat and read a remote store directly, without a cluster (for debugging). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "parse.h"
#include "ufs/ufs.h"

#define CTL_UFS_MAX_OPTIONS 64

typedef struct ufs_args {
        bool recursive;
        bool exact;
        uint64_t offset;
        uint64_t length;
        bool have_length;
        ufs_version version; /* cat --version: read under this version instead of the current */
        bool have_version;
        config_option options[CTL_UFS_MAX_OPTIONS];
        size_t n_options;
} ufs_args;

static void ufs_args_done(ufs_args *a)
{
        ufs_version_done(&a->version);
        for (size_t i = 0; i < a->n_options; i++) {
                free(a->options[i].key);
                if (a->options[i].value)
                        explicit_bzero(a->options[i].value, strlen(a->options[i].value));
                free(a->options[i].value);
        }
}

static int read_secret_file(const char *path, char **ret)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char buf[65536];
        size_t n;

        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof buf - 1, f);
        if (ferror(f))
                return -EIO;
        if (!feof(f))
                return -EFBIG;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        *ret = strndup(buf, n);
        explicit_bzero(buf, sizeof buf);
        return *ret ? 0 : -ENOMEM;
}

static int add_option(ufs_args *a, const char *arg, bool from_file)
{
        const char *eq = strchr(arg, '=');
        config_option *o;
        int r;

        if (!eq || eq == arg) {
                fprintf(stderr, "weirctl ufs: expected KEY=VALUE, got '%s'\n", arg);
                return -EINVAL;
        }
        if (a->n_options >= CTL_UFS_MAX_OPTIONS)
                return -E2BIG;
        o = &a->options[a->n_options];
        *o = (config_option){.key = strndup(arg, (size_t)(eq - arg)), .secret = from_file};
        if (!o->key)
                return -ENOMEM;
        if (from_file) {
                r = read_secret_file(eq + 1, &o->value);
                if (r < 0) {
                        free(o->key);
                        return log_error_errno(r, "Failed to read %s: %m", eq + 1);
                }
        } else {
                o->value = strdup(eq + 1);
                if (!o->value) {
                        free(o->key);
                        return -ENOMEM;
                }
        }
        a->n_options++;
        return 0;
}

/* "SIZE,MTIME,ETAG" as 'ls -l' prints them ("-" for no ETag). */
static int parse_version(const char *s, ufs_version *ret)
{
        _cleanup_free_ char *copy = strdup(s);
        char *size, *mtime, *etag, *save = NULL;
        uint64_t sz, mt;

        if (!copy)
                return -ENOMEM;
        size = strtok_r(copy, ",", &save);
        mtime = strtok_r(NULL, ",", &save);
        etag = strtok_r(NULL, "", &save);
        if (!size || !mtime || !etag || parse_u64(size, &sz) < 0 || parse_u64(mtime, &mt) < 0 ||
            mt > INT64_MAX)
                return -EINVAL;
        *ret = (ufs_version){.size = sz, .mtime = (int64_t)mt};
        if (strcmp(etag, "-") != 0) {
                ret->etag = strdup(etag);
                if (!ret->etag)
                        return -ENOMEM;
        }
        return 0;
}

static void print_entry(json_t *out, const char *path, bool dir, const ufs_version *v, char *url)
{
        if (out) {
                json_t *o = json_pack("{s:s, s:s}", "path", path, "type", dir ? "dir" : "file");

                if (!o)
                        return;
                if (!dir) {
                        json_object_set_new(o, "size", json_integer((json_int_t)v->size));
                        json_object_set_new(o, "mtime", json_integer((json_int_t)v->mtime));
                        json_object_set_new(o, "etag",
                                            v->etag ? json_string(v->etag) : json_null());
                }
                if (url)
                        json_object_set_new(o, "ufs_url", json_string(url));
                json_array_append_new(out, o);
        } else if (dir)
                printf("d %s/\n", path);
        else
                printf("f %" PRIu64 " %" PRId64 " %s %s\n", v->size, v->mtime,
                       v->etag ? v->etag : "-", path);
        free(url);
}

static int list_dir(ufs *u, const ufs_args *a, const char *path, unsigned depth, json_t *out,
                    size_t *count)
{
        ufs_entry *entries = NULL;
        size_t n = 0;
        int r, ret = 0;

        if (depth > UFS_MAX_DEPTH)
                return log_error_errno(ELOOP, "%s: deeper than %u levels", path, UFS_MAX_DEPTH);
        r = ufs_list(u, path, &entries, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list '%s': %s", path, ufs_last_error(u));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                ufs_version v = {};

                if (asprintf(&p, "%s%s%s", path, *path ? "/" : "", entries[i].name) < 0) {
                        ret = log_oom();
                        break;
                }
                if (!entries[i].dir && a->exact) {
                        r = ufs_stat(u, p, &v);
                        if (r < 0) {
                                ret = log_error_errno(r, "Failed to stat '%s': %s", p,
                                                      ufs_last_error(u));
                                continue;
                        }
                }
                print_entry(out, p, entries[i].dir, a->exact ? &v : &entries[i].version,
                            out ? ufs_url(u, p) : NULL);
                ufs_version_done(&v);
                (*count)++;
                if (entries[i].dir && a->recursive) {
                        r = list_dir(u, a, p, depth + 1, out, count);
                        if (r < 0)
                                ret = r;
                }
        }
        ufs_entries_free(entries, n);
        return ret;
}

static int write_sink(const void *data, size_t len, void *userdata)
{
        if (fwrite(data, 1, len, stdout) != len)
                return -EIO;
        return 0;
}

static void help(void)
{
        printf("Usage: weirctl ufs ls [-R] [-l] [OPTIONS] URL [PATH]\n"
               "       weirctl ufs stat [OPTIONS] URL PATH\n"
               "       weirctl ufs cat [--offset N] [--length N] [OPTIONS] URL PATH\n\n"
               "Query a remote store (a dataset mount point) directly, as a sync would.\n\n"
               "  -R, --recursive        follow subdirectories\n"
               "  -l, --exact            HEAD every file for its exact size, mtime and ETag\n"
               "  -o, --option KEY=VALUE a mount option (fs.s3a.endpoint=..., ...)\n"
               "  -O, --option-file KEY=FILE  a mount option read from FILE (secrets)\n"
               "      --offset N, --length N  the byte range for cat\n"
               "      --version SIZE,MTIME,ETAG  cat that version (as 'ls -l' shows it), or fail\n"
               "Lines: 'd PATH/' for directories, 'f SIZE MTIME ETAG PATH' for files\n"
               "(listing sizes may be rounded unless -l); --json before 'ufs' gives JSON.\n");
}

int ctl_ufs(const ctl_context *ctx, int argc, char **argv)
{
        enum { ARG_OFFSET = 0x100, ARG_LENGTH, ARG_VERSION };
        static const struct option options[] = {
                {"recursive", no_argument, NULL, 'R'},
                {"exact", no_argument, NULL, 'l'},
                {"option", required_argument, NULL, 'o'},
                {"option-file", required_argument, NULL, 'O'},
                {"offset", required_argument, NULL, ARG_OFFSET},
                {"length", required_argument, NULL, ARG_LENGTH},
                {"version", required_argument, NULL, ARG_VERSION},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(ufs_args_done) ufs_args a = {};
        const char *verb, *url, *path;
        config_mount mount = {};
        ufs *u = NULL;
        int c, r, ret = 1;

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                help();
                return argc < 2 ? 2 : 0;
        }
        verb = argv[1];
        argc--;
        argv++;
        while ((c = getopt_long(argc, argv, "Rlo:O:h", options, NULL)) >= 0) {
                switch (c) {
                case 'R':
                        a.recursive = true;
                        break;
                case 'l':
                        a.exact = true;
                        break;
                case 'o':
                case 'O':
                        if (add_option(&a, optarg, c == 'O') < 0)
                                return 2;
                        break;
                case ARG_OFFSET:
                        if (parse_u64(optarg, &a.offset) < 0) {
                                fprintf(stderr, "weirctl ufs: invalid offset '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_LENGTH:
                        if (parse_u64(optarg, &a.length) < 0) {
                                fprintf(stderr, "weirctl ufs: invalid length '%s'\n", optarg);
                                return 2;
                        }
                        a.have_length = true;
                        break;
                case ARG_VERSION:
                        ufs_version_done(&a.version);
                        if (parse_version(optarg, &a.version) < 0) {
                                fprintf(stderr, "weirctl ufs: invalid version '%s'\n", optarg);
                                return 2;
                        }
                        a.have_version = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind >= argc || argc - optind > 2) {
                help();
                return 2;
        }
        url = argv[optind];
        path = optind + 1 < argc ? argv[optind + 1] : "";
        while (*path == '/')
                path++;

        mount = (config_mount){
                .name = (char *)"ufs",
                .mount_point = (char *)url,
                .options = a.options,
                .n_options = a.n_options,
        };
        r = ufs_open(&mount, &u);
        if (r < 0) {
                log_error_errno(r, "Failed to open store %s: %m", url);
                return 1;
        }

        if (strcmp(verb, "ls") == 0) {
                json_t *out = ctx->json ? json_array() : NULL;
                size_t count = 0;

                r = list_dir(u, &a, path, 0, out, &count);
                if (out) {
                        json_dumpf(out, stdout, JSON_INDENT(2));
                        putchar('\n');
                        json_decref(out);
                }
                ret = r < 0 ? 1 : 0;
        } else if (strcmp(verb, "stat") == 0 || strcmp(verb, "cat") == 0) {
                ufs_version v = {};

                r = ufs_stat(u, path, &v);
                if (r < 0) {
                        log_error_errno(r, "Failed to stat '%s': %s", path, ufs_last_error(u));
                } else if (strcmp(verb, "stat") == 0) {
                        json_t *out = ctx->json ? json_array() : NULL;

                        print_entry(out, path, false, &v, out ? ufs_url(u, path) : NULL);
                        if (out) {
                                json_dumpf(json_array_get(out, 0), stdout, JSON_INDENT(2));
                                putchar('\n');
                                json_decref(out);
                        }
                        ret = 0;
                } else {
                        if (a.have_version) {
                                ufs_version_done(&v);
                                v = a.version;
                                a.version = (ufs_version){};
                        }
                        uint64_t off = MIN(a.offset, v.size);
                        uint64_t len = a.have_length ? MIN(a.length, v.size - off) : v.size - off;

                        r = ufs_read(u, path, &v, off, len, write_sink, NULL);
                        if (r < 0)
                                log_error_errno(r, "Failed to read '%s': %s", path,
                                                ufs_last_error(u));
                        else if (fflush(stdout) != 0)
                                log_error_errno(errno, "Failed to write: %m");
                        else
                                ret = 0;
                }
                ufs_version_done(&v);
        } else {
                fprintf(stderr, "weirctl ufs: unknown command '%s'\n", verb);
                ret = 2;
        }
        ufs_free(u);
        return ret;
}
