/* weirctl load: Fluid's DataLoad. Lists the paths on the master leader, spreads their blocks
 * round-robin over the live workers (POST /v1/load with explicit blocks, one request per file
 * and worker), shows progress on a terminal and a summary. Loading is idempotent: blocks that
 * are cached already are skipped, so running it again after an interruption resumes it. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "block.h"
#include "cleanup.h"
#include "config-load.h"
#include "config.h"
#include "ctl.h"
#include "fsutil.h"
#include "httpc.h"
#include "log.h"
#include "parse.h"
#include "timeutil.h"
#include "ufs/ufs.h"

#define LOAD_MAX_DEPTH  64
#define LOAD_MAX_FILES  1000000
#define LOAD_TIMEOUT_MS (24L * 3600 * 1000) /* one file's blocks on one worker */

typedef struct load_file {
        uint64_t epoch, file_id, version, size;
        int64_t mtime; /* as the master knows it: the store's version, for --verify */
        char *etag;    /* NULL = none */
        char *path;
        unsigned parts_left; /* worker requests not done yet; guarded by load_ctx.lock */
} load_file;

typedef struct load_ctx load_ctx;

typedef struct load_worker {
        load_ctx *ctx;
        char *node;
        char *api;
        json_t *requests; /* [{"file": INDEX, "blocks": [...]}] */
        pthread_t tid;
        bool started;
} load_worker;

struct load_ctx {
        config *cfg;
        const char *dataset;
        uint64_t block_size;
        load_file *files;
        size_t n_files, cap_files;
        load_worker *workers;
        size_t n_workers;
        uint64_t total_bytes, total_blocks;

        pthread_mutex_t lock; /* guards the results below, and files[].parts_left */
        uint64_t files_done, blocks, bytes, cached, failed;
        uint64_t polled; /* bytes loaded as the workers' counters say, for progress only */
        unsigned errors; /* requests that failed as a whole */
};

static httpc *client_new(load_ctx *c, long timeout_ms)
{
        return ctl_httpc(c->cfg, timeout_ms, 2000);
}

static int master_get(load_ctx *c, httpc *h, const char *path, httpc_response *ret)
{
        return ctl_master_request(c->cfg, h, "GET", path, ret);
}

static char *escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~/", ch))
                        *p++ = (char)ch;
                else {
                        *p++ = '%';
                        *p++ = hex[ch >> 4];
                        *p++ = hex[ch & 15];
                }
        }
        *p = 0;
        return out;
}

/* The JSON of GET /v1/datasets/DATASET/WHAT?path=PATH; -ENOENT on 404. */
static int dataset_get(load_ctx *c, httpc *h, const char *what, const char *path, json_t **ret)
{
        _cleanup_free_ char *ep = escape(path), *ed = escape(c->dataset), *url = NULL;
        httpc_response res = {};
        int r;

        if (!ep || !ed || asprintf(&url, "/v1/datasets/%s/%s?path=%s", ed, what, ep) < 0)
                return -ENOMEM;
        r = master_get(c, h, url, &res);
        if (r < 0)
                return r;
        r = res.status == 404 ? -ENOENT : res.status != 200 || !res.json ? -EIO : 0;
        if (r >= 0)
                *ret = json_incref(res.json);
        else if (r == -EIO)
                log_error("GET %s: HTTP %ld %s", url, res.status, res.body ? res.body : "");
        httpc_response_done(&res);
        return r;
}

static int add_file(load_ctx *c, const char *path, const json_t *e)
{
        load_file *f;
        json_int_t id = json_integer_value(json_object_get(e, "file_id"));
        json_int_t ver = json_integer_value(json_object_get(e, "version"));
        json_int_t size = json_integer_value(json_object_get(e, "size"));
        uint64_t epoch;

        if (id <= 0 || ver <= 0 || size < 0)
                return log_error_errno(EBADMSG, "The master described %s without a file id", path);
        if (block_epoch_parse(json_string_value(json_object_get(e, "epoch")), &epoch) < 0)
                return log_error_errno(EBADMSG, "The master described %s without a cluster epoch",
                                       path);
        if (c->n_files >= LOAD_MAX_FILES)
                return log_error_errno(E2BIG, "More than %d files to load", LOAD_MAX_FILES);
        if (!ARRAY_GROW(c->files, c->cap_files, c->n_files + 1))
                return log_oom();
        f = &c->files[c->n_files];
        *f = (load_file){.mtime = (int64_t)json_number_value(json_object_get(e, "mtime")),
                         .etag = json_string_value(json_object_get(e, "etag")) &&
                                                 *json_string_value(json_object_get(e, "etag"))
                                         ? strdup(json_string_value(json_object_get(e, "etag")))
                                         : NULL,
                         .epoch = epoch,
                         .file_id = (uint64_t)id,
                         .version = (uint64_t)ver,
                         .size = (uint64_t)size,
                         .path = strdup(path)};
        if (!f->path)
                return log_oom();
        c->n_files++;
        c->total_bytes += f->size;
        c->total_blocks += f->size == 0 ? 1 : (f->size - 1) / c->block_size + 1;
        return 0;
}

static int walk(load_ctx *c, httpc *h, const char *path, const json_t *entry, unsigned depth)
{
        _cleanup_(json_decrefp) json_t *owned = NULL, *listing = NULL;
        const char *type;
        json_t *e;
        size_t i;
        int r;

        if (depth > LOAD_MAX_DEPTH)
                return log_error_errno(ELOOP, "%s: too deep", path);
        if (!entry && strcmp(path, "/") != 0) {
                r = dataset_get(c, h, "stat", path, &owned);
                if (r == -ENOENT)
                        return log_error_errno(r, "%s: no such path in dataset %s", path,
                                               c->dataset);
                if (r < 0)
                        return log_error_errno(r, "Failed to stat %s: %m", path);
                entry = owned;
        }
        type = entry ? json_string_value(json_object_get(entry, "type")) : "dir";
        if (type && strcmp(type, "file") == 0)
                return add_file(c, path, entry);
        r = dataset_get(c, h, "ls", path, &listing);
        if (r < 0)
                return log_error_errno(r, "Failed to list %s: %m", path);
        json_array_foreach(json_object_get(listing, "entries"), i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                _cleanup_free_ char *child = NULL;

                if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
                    strcmp(name, "..") == 0)
                        continue;
                if (asprintf(&child, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
                             name) < 0)
                        return log_oom();
                r = walk(c, h, child, e, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int find_workers(load_ctx *c, httpc *h)
{
        httpc_response res = {};
        json_t *w;
        size_t i;
        int r;

        r = master_get(c, h, "/v1/workers", &res);
        if (r < 0)
                return log_error_errno(r, "Cannot reach the master leader: %m");
        if (res.status != 200) {
                log_error("GET /v1/workers: HTTP %ld", res.status);
                httpc_response_done(&res);
                return -EIO;
        }
        c->workers = calloc(json_array_size(json_object_get(res.json, "workers")) + 1,
                            sizeof(*c->workers));
        if (!c->workers) {
                httpc_response_done(&res);
                return log_oom();
        }
        json_array_foreach(json_object_get(res.json, "workers"), i, w) {
                const char *api = json_string_value(json_object_get(w, "api"));
                const char *node = json_string_value(json_object_get(w, "node"));

                if (!api || !node || !json_is_true(json_object_get(w, "alive")))
                        continue;
                c->workers[c->n_workers] = (load_worker){.ctx = c,
                                                         .node = strdup(node),
                                                         .api = strdup(api),
                                                         .requests = json_array()};
                if (!c->workers[c->n_workers].api || !c->workers[c->n_workers].node)
                        return log_oom();
                c->n_workers++;
        }
        httpc_response_done(&res);
        if (c->n_workers == 0)
                return log_error_errno(ENXIO, "No live workers registered with the master");
        return 0;
}

/* Block i of the whole list goes to worker i % n: even bytes per worker, and a sequential
 * reader of one file reads from every worker in turn. */
static int spread(load_ctx *c)
{
        uint64_t k = 0;

        for (size_t f = 0; f < c->n_files; f++) {
                uint64_t n = c->files[f].size == 0 ? 1 : (c->files[f].size - 1) / c->block_size + 1;
                json_t **per = calloc(c->n_workers, sizeof(*per));

                if (!per)
                        return log_oom();
                for (uint64_t b = 0; b < n; b++, k++) {
                        size_t w = k % c->n_workers;

                        if (!per[w])
                                per[w] = json_array();
                        json_array_append_new(per[w], json_integer((json_int_t)b));
                }
                for (size_t w = 0; w < c->n_workers; w++)
                        if (per[w]) {
                                json_array_append_new(c->workers[w].requests,
                                                      json_pack("{s:I,s:o}", "file", (json_int_t)f,
                                                                "blocks", per[w]));
                                c->files[f].parts_left++;
                        }
                free(per);
        }
        return 0;
}

static void *worker_main(void *userdata)
{
        load_worker *lw = userdata;
        load_ctx *c = lw->ctx;
        _cleanup_free_ char *url = NULL;
        httpc *h = client_new(c, LOAD_TIMEOUT_MS);
        json_t *req;
        size_t i;

        if (!h || !(url = ctl_url(c->cfg, lw->api, "/v1/load"))) {
                httpc_free(h);
                return NULL;
        }
        json_array_foreach(lw->requests, i, req) {
                load_file *f = &c->files[json_integer_value(json_object_get(req, "file"))];
                char epoch[BLOCK_EPOCH_MAX];
                json_auto_t *body =
                        json_pack("{s:s,s:[{s:s,s:I,s:I,s:I,s:O}]}", "dataset", c->dataset, "files",
                                  "epoch", block_epoch_format(epoch, f->epoch), "file_id",
                                  (json_int_t)f->file_id, "version", (json_int_t)f->version, "size",
                                  (json_int_t)f->size, "blocks", json_object_get(req, "blocks"));
                httpc_response res = {};
                int r = body ? httpc_post(h, url, body, &res) : -ENOMEM;

                pthread_mutex_lock(&c->lock);
                if (r < 0 || res.status != 200) {
                        c->errors++;
                        c->failed += json_array_size(json_object_get(req, "blocks"));
                        log_error("Worker %s could not load %s: %s", lw->node, f->path,
                                  r < 0 ? httpc_last_error(h)
                                        : (res.body ? res.body : "HTTP error"));
                } else {
                        c->blocks +=
                                (uint64_t)json_integer_value(json_object_get(res.json, "blocks"));
                        c->bytes +=
                                (uint64_t)json_integer_value(json_object_get(res.json, "bytes"));
                        c->cached +=
                                (uint64_t)json_integer_value(json_object_get(res.json, "cached"));
                        c->failed +=
                                (uint64_t)json_integer_value(json_object_get(res.json, "failed"));
                }
                if (--f->parts_left == 0)
                        c->files_done++;
                pthread_mutex_unlock(&c->lock);
                if (r >= 0)
                        httpc_response_done(&res);
        }
        httpc_free(h);
        return NULL;
}

static void print_progress(load_ctx *c, double start, bool final)
{
        char done_b[FORMAT_BYTES_MAX], total_b[FORMAT_BYTES_MAX], rate_b[FORMAT_BYTES_MAX];
        uint64_t bytes, files;
        double el = now_s() - start, rate, eta;

        pthread_mutex_lock(&c->lock);
        bytes = MAX(c->bytes, c->polled);
        files = c->files_done;
        pthread_mutex_unlock(&c->lock);
        rate = el > 0 ? (double)bytes / el : 0;
        eta = rate > 0 ? (double)(c->total_bytes - MIN(bytes, c->total_bytes)) / rate : 0;
        format_bytes(done_b, sizeof(done_b), bytes);
        format_bytes(total_b, sizeof(total_b), c->total_bytes);
        format_bytes(rate_b, sizeof(rate_b), (uint64_t)rate);
        printf("\r\033[K%5.1f%%  %s/%s  %" PRIu64 "/%zu files  %s/s  ETA %.0fs%s",
               c->total_bytes ? 100.0 * (double)bytes / (double)c->total_bytes : 100.0, done_b,
               total_b, files, c->n_files, rate_b, eta, final ? "\n" : "");
        fflush(stdout);
}

/* Progress between whole-file requests: the workers' own counters (GET /v1/status). */
static uint64_t workers_bytes_done(load_ctx *c, httpc *h)
{
        uint64_t sum = 0;

        for (size_t i = 0; i < c->n_workers; i++) {
                _cleanup_free_ char *url = NULL;
                httpc_response res = {};

                if (!(url = ctl_url(c->cfg, c->workers[i].api, "/v1/status")))
                        continue;
                if (httpc_get(h, url, &res) < 0)
                        continue;
                sum += (uint64_t)json_integer_value(
                        json_object_get(json_object_get(res.json, "load"), "bytes_done"));
                httpc_response_done(&res);
        }
        return sum;
}

static int load_status(load_ctx *c, httpc *h, bool json)
{
        _cleanup_free_ char *ed = escape(c->dataset), *url = NULL;
        httpc_response res = {};
        json_auto_t *out = json_object();
        uint64_t cached, total;
        int r;

        if (!ed || asprintf(&url, "/v1/datasets/%s", ed) < 0)
                return log_oom();
        r = master_get(c, h, url, &res);
        if (r < 0)
                return log_error_errno(r, "Cannot reach the master leader: %m"), 1;
        if (res.status != 200) {
                log_error("Dataset %s: HTTP %ld", c->dataset, res.status);
                httpc_response_done(&res);
                return 1;
        }
        cached = (uint64_t)json_integer_value(json_object_get(res.json, "cached"));
        total = (uint64_t)json_integer_value(json_object_get(res.json, "ufs_total_size"));
        httpc_response_done(&res);
        json_object_set_new(out, "dataset", json_string(c->dataset));
        json_object_set_new(out, "cached", json_integer((json_int_t)cached));
        json_object_set_new(out, "total", json_integer((json_int_t)total));
        json_object_set_new(out, "workers", json_array());
        if (find_workers(c, h) >= 0)
                for (size_t i = 0; i < c->n_workers; i++) {
                        _cleanup_free_ char *wurl = NULL;
                        httpc_response wr = {};
                        json_t *l;

                        if (!(wurl = ctl_url(c->cfg, c->workers[i].api, "/v1/status")) ||
                            httpc_get(h, wurl, &wr) < 0)
                                continue;
                        l = json_object_get(wr.json, "load");
                        json_array_append_new(
                                json_object_get(out, "workers"),
                                json_pack("{s:s,s:O?}", "node", c->workers[i].node, "load", l));
                        httpc_response_done(&wr);
                }
        if (json) {
                char *s = json_dumps(out, JSON_INDENT(2));

                printf("%s\n", s ? s : "{}");
                free(s);
                return 0;
        }
        {
                char cb[FORMAT_BYTES_MAX], tb[FORMAT_BYTES_MAX];
                json_t *w;
                size_t i;

                printf("%s: %s of %s cached (%.1f%%)\n", c->dataset,
                       format_bytes(cb, sizeof(cb), cached), format_bytes(tb, sizeof(tb), total),
                       total ? 100.0 * (double)cached / (double)total : 0.0);
                json_array_foreach(json_object_get(out, "workers"), i, w) {
                        json_t *l = json_object_get(w, "load");
                        uint64_t active =
                                (uint64_t)json_integer_value(json_object_get(l, "active"));

                        printf("  %s: %s, %" PRIu64 "/%" PRIu64 " blocks loaded, %" PRIu64
                               " failed\n",
                               json_string_value(json_object_get(w, "node")),
                               active ? "loading" : "idle",
                               (uint64_t)json_integer_value(json_object_get(l, "blocks_done")),
                               (uint64_t)json_integer_value(json_object_get(l, "blocks")),
                               (uint64_t)json_integer_value(json_object_get(l, "failed")));
                }
        }
        return 0;
}

static void ctx_done(load_ctx *c)
{
        for (size_t i = 0; i < c->n_files; i++) {
                free(c->files[i].path);
                free(c->files[i].etag);
        }
        free(c->files);
        for (size_t i = 0; i < c->n_workers; i++) {
                free(c->workers[i].node);
                free(c->workers[i].api);
                json_decref(c->workers[i].requests);
        }
        free(c->workers);
        config_free(c->cfg);
        pthread_mutex_destroy(&c->lock);
}

/* ---- verify: cached blocks against the store's bytes ---- */

typedef struct verify_sink {
        uint8_t *buf;
        uint64_t pos, len;
} verify_sink;

static int verify_write(const void *data, size_t len, void *userdata)
{
        verify_sink *v = userdata;

        if (len > v->len - v->pos)
                return -EIO;
        memcpy(v->buf + v->pos, data, len);
        v->pos += len;
        return 0;
}

typedef struct verify_stats {
        uint64_t files, blocks, bytes, mismatched, dropped, not_cached, changed, errors;
} verify_stats;

/* The store mount of dataset path "/MOUNT/rest", and "rest". */
static const config_mount *verify_mount(const config_dataset *d, const char *path,
                                        const char **ret_rel)
{
        const char *p = path + 1, *slash = strchr(p, '/');

        if (path[0] != '/' || !slash)
                return NULL;
        for (size_t i = 0; i < d->n_mounts; i++)
                if (strlen(d->mounts[i].name) == (size_t)(slash - p) &&
                    strncmp(d->mounts[i].name, p, slash - p) == 0) {
                        *ret_rel = slash + 1;
                        return &d->mounts[i];
                }
        return NULL;
}

static const char *verify_worker_api(load_ctx *c, const char *node)
{
        for (size_t i = 0; i < c->n_workers; i++)
                if (strcmp(c->workers[i].node, node) == 0)
                        return c->workers[i].api;
        return NULL;
}

/* Compares every cached copy of every block of F (the master's locations) with the store's bytes
 * of the same version; drops the copies that differ. */
static void verify_file(load_ctx *c, httpc *h, const config_dataset *d, load_file *f,
                        verify_stats *st)
{
        _cleanup_(ufs_freep) ufs *u = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ uint8_t *want = NULL;
        ufs_version ver = {.size = f->size, .mtime = f->mtime, .etag = f->etag};
        const config_mount *mount;
        const char *rel = NULL, *index;
        httpc_response loc = {};
        json_t *holders;
        int r;

        st->files++;
        mount = verify_mount(d, f->path, &rel);
        if (!mount || ufs_open(mount, &u) < 0) {
                log_error("%s: cannot open its store", f->path);
                st->errors++;
                return;
        }
        if (asprintf(&path, "/v1/blocks?file=%" PRIu64 "&version=%" PRIu64, f->file_id,
                     f->version) < 0 ||
            !(want = malloc(c->block_size))) {
                st->errors++;
                return;
        }
        r = master_get(c, h, path, &loc);
        if (r < 0 || loc.status != 200) {
                log_error("%s: no block locations from the master (%s)", f->path,
                          r < 0 ? strerror(-r) : "HTTP error");
                st->errors++;
                httpc_response_done(&loc);
                return;
        }
        json_object_foreach(json_object_get(loc.json, "locations"), index, holders) {
                uint64_t i, off, len;
                verify_sink sink = {.buf = want};
                size_t j;
                json_t *node;
                char id[BLOCK_ID_MAX];

                if (parse_u64(index, &i) < 0 || i * c->block_size >= MAX(f->size, 1))
                        continue;
                off = i * c->block_size;
                len = MIN(c->block_size, f->size - off);
                sink.len = len;
                block_id_format(id, &(block_key){f->epoch, f->file_id, f->version, i});
                r = ufs_read(u, rel, &ver, off, len, verify_write, &sink);
                if (r == -ESTALE || r == -ENOENT) {
                        printf("%s: changed in the store since the last sync (%s): its cached "
                               "blocks belong to the old version and are never served for the "
                               "new one; run 'weirctl dataset sync'\n",
                               f->path, r == -ESTALE ? "another ETag or mtime" : "gone");
                        st->changed++;
                        break;
                }
                if (r < 0 || sink.pos != len) {
                        log_error("%s: reading block %" PRIu64 " from the store failed: %s",
                                  f->path, i, r < 0 ? ufs_last_error(u) : "short read");
                        st->errors++;
                        continue;
                }
                json_array_foreach(holders, j, node) {
                        const char *api = verify_worker_api(c, json_string_value(node) ?: "");
                        _cleanup_free_ char *bpath = NULL, *url = NULL;
                        httpc_response got = {};

                        if (!api || asprintf(&bpath, "/v1/blocks/%s?cache=only", id) < 0 ||
                            !(url = ctl_url(c->cfg, api, bpath)))
                                continue;
                        r = httpc_get(h, url, &got);
                        if (r >= 0 && got.status == 504) {
                                st->not_cached++;
                        } else if (r < 0 || got.status != 200) {
                                log_error("%s: block %s from %s: %s", f->path, id,
                                          json_string_value(node),
                                          r < 0 ? httpc_last_error(h) : "HTTP error");
                                st->errors++;
                        } else if (got.body_len != len || memcmp(got.body, want, len) != 0) {
                                httpc_response del = {};

                                st->mismatched++;
                                r = httpc_request(h, "DELETE", url, NULL, &del);
                                if (r >= 0 && del.status == 200)
                                        st->dropped++;
                                printf("%s: block %" PRIu64 " on %s differs from the store "
                                       "(same size, mtime and ETag): %s\n",
                                       f->path, i, json_string_value(node),
                                       r >= 0 && del.status == 200 ? "dropped"
                                                                   : "could NOT be dropped");
                                httpc_response_done(&del);
                        } else {
                                st->blocks++;
                                st->bytes += len;
                        }
                        httpc_response_done(&got);
                }
        }
        httpc_response_done(&loc);
}

/* Walks the PATH operands after optind (/MOUNT/..., the whole dataset when none). */
static int walk_operands(load_ctx *c, httpc *h, int argc, char **argv)
{
        int r = 0;

        if (optind == argc)
                return walk(c, h, "/", NULL, 0);
        for (int i = optind; i < argc && r >= 0; i++)
                r = argv[i][0] == '/'
                            ? walk(c, h, argv[i], NULL, 0)
                            : log_error_errno(EINVAL, "%s: paths are /MOUNT/...", argv[i]);
        return r;
}

/* weirctl load --verify: every cached copy of the blocks of the files listed, against a fresh
 * read of the store. For stores that change a file without changing its size, mtime or ETag. */
static int verify_run(const ctl_context *ctx, load_ctx *c, httpc *h, const config_dataset *d,
                      int argc, char **argv)
{
        verify_stats st = {};
        char bb[FORMAT_BYTES_MAX];
        double start = now_s();
        int r = walk_operands(c, h, argc, argv);

        if (r < 0 || find_workers(c, h) < 0)
                return 1;
        for (size_t i = 0; i < c->n_files; i++)
                verify_file(c, h, d, &c->files[i], &st);
        if (ctx->json) {
                json_auto_t *j = json_pack(
                        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "dataset", c->dataset, "files",
                        (json_int_t)st.files, "blocks_matching", (json_int_t)st.blocks, "bytes",
                        (json_int_t)st.bytes, "mismatched", (json_int_t)st.mismatched, "dropped",
                        (json_int_t)st.dropped, "not_cached", (json_int_t)st.not_cached,
                        "changed_files", (json_int_t)st.changed, "errors", (json_int_t)st.errors,
                        "seconds", now_s() - start);
                char *txt = json_dumps(j, JSON_INDENT(2));

                printf("%s\n", txt ? txt : "{}");
                free(txt);
        } else
                printf("Verified %s: %" PRIu64 " files, %" PRIu64 " cached blocks (%s) match "
                       "the store, %" PRIu64 " differed (%" PRIu64 " dropped), %" PRIu64
                       " files changed since the last sync, %" PRIu64 " errors, in %.1fs\n",
                       c->dataset, st.files, st.blocks, format_bytes(bb, sizeof(bb), st.bytes),
                       st.mismatched, st.dropped, st.changed, st.errors, now_s() - start);
        return st.mismatched || st.errors ? 1 : 0;
}

/* Lists, spreads, loads and reports; the exit status. */
static int load_run(const ctl_context *ctx, load_ctx *c, httpc *h, int argc, char **argv,
                    bool quiet)
{
        bool tty;
        double start;
        int r = walk_operands(c, h, argc, argv), ret;

        if (r < 0 || find_workers(c, h) < 0 || spread(c) < 0)
                return 1;

        tty = !quiet && !ctx->json && isatty(STDOUT_FILENO);
        start = now_s();
        for (size_t i = 0; i < c->n_workers; i++) {
                if (pthread_create(&c->workers[i].tid, NULL, worker_main, &c->workers[i]) != 0) {
                        log_error("Failed to start a thread");
                        break;
                }
                c->workers[i].started = true;
        }
        if (tty) {
                uint64_t base = workers_bytes_done(c, h);

                for (;;) {
                        bool all;
                        uint64_t polled;

                        pthread_mutex_lock(&c->lock);
                        all = c->files_done == c->n_files;
                        pthread_mutex_unlock(&c->lock);
                        if (all)
                                break;
                        /* Finer than whole files: what the workers say they loaded. */
                        polled = workers_bytes_done(c, h) - base;
                        pthread_mutex_lock(&c->lock);
                        c->polled = MIN(polled, c->total_bytes);
                        pthread_mutex_unlock(&c->lock);
                        print_progress(c, start, false);
                        usleep(250 * 1000);
                }
        }
        for (size_t i = 0; i < c->n_workers; i++)
                if (c->workers[i].started)
                        pthread_join(c->workers[i].tid, NULL);
        {
                double el = now_s() - start;
                char bb[FORMAT_BYTES_MAX], rb[FORMAT_BYTES_MAX];

                c->polled = 0;
                if (tty)
                        print_progress(c, start, true);
                if (ctx->json) {
                        json_auto_t *j = json_pack(
                                "{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:I}", "dataset", c->dataset, "files",
                                (json_int_t)c->n_files, "blocks", (json_int_t)c->blocks, "bytes",
                                (json_int_t)c->bytes, "cached", (json_int_t)c->cached, "failed",
                                (json_int_t)c->failed, "seconds", el, "workers",
                                (json_int_t)c->n_workers);
                        char *s = json_dumps(j, JSON_INDENT(2));

                        printf("%s\n", s ? s : "{}");
                        free(s);
                } else
                        printf("Loaded %s: %zu files, %" PRIu64 " blocks, %s in %.1fs (%s/s) on "
                               "%zu workers; %" PRIu64 " blocks were cached already, %" PRIu64
                               " failed\n",
                               c->dataset, c->n_files, c->blocks,
                               format_bytes(bb, sizeof(bb), c->bytes), el,
                               format_bytes(rb, sizeof(rb),
                                            el > 0 ? (uint64_t)((double)c->bytes / el) : 0),
                               c->n_workers, c->cached, c->failed);
                ret = c->failed || c->errors ? 1 : 0;
        }
        return ret;
}

int ctl_load(const ctl_context *ctx, int argc, char **argv)
{
        static const struct option options[] = {
                {"status", no_argument, NULL, 's'},
                {"quiet", no_argument, NULL, 'q'},
                {"verify", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        load_ctx c = {};
        const config_dataset *d;
        httpc *h = NULL;
        bool status = false, quiet = false, verify = false;
        int opt, r, ret = 1;

        while ((opt = getopt_long(argc, argv, "sqVh", options, NULL)) >= 0)
                switch (opt) {
                case 's':
                        status = true;
                        break;
                case 'q':
                        quiet = true;
                        break;
                case 'V':
                        verify = true;
                        break;
                case 'h':
                        printf("Usage: weirctl load [--status|--verify] [-q] DATASET [PATH...]\n\n"
                               "Load DATASET (or the PATHs in it, /MOUNT/...) into the workers'\n"
                               "cache. Blocks already cached are skipped: run it again to resume\n"
                               "an interrupted load. --status shows what is cached and loading.\n"
                               "--verify reads the files again from the store and compares every\n"
                               "cached copy of their blocks; copies that differ (a store that\n"
                               "changed a file without changing its size, mtime and ETag) are\n"
                               "dropped and reported; exit 1 when any differed.\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind >= argc) {
                fprintf(stderr, "weirctl load: DATASET expected; see 'weirctl load --help'.\n");
                return 2;
        }
        pthread_mutex_init(&c.lock, NULL);
        c.dataset = argv[optind++];
        r = config_load_logged(ctx->config_path, true, &c.cfg);
        if (r >= 0 && !(d = config_find_dataset(c.cfg, c.dataset)))
                log_error("No dataset %s in %s", c.dataset, ctx->config_path);
        else if (r >= 0) {
                c.block_size = d->block_size ? d->block_size : CONFIG_DEFAULT_BLOCK_SIZE;
                h = client_new(&c, 10000);
                if (!h)
                        log_oom();
                else if (status)
                        ret = load_status(&c, h, ctx->json);
                else if (verify)
                        ret = verify_run(ctx, &c, h, d, argc, argv);
                else
                        ret = load_run(ctx, &c, h, argc, argv, quiet);
        }
        httpc_free(h);
        ctx_done(&c);
        return ret;
}
