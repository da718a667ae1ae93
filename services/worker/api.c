/* The worker's HTTP API (docs/api.md): blocks with Range and sendfile, loads, status, metrics. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "apiauth.h"
#include "apibody.h"
#include "cleanup.h"
#include "fill.h"
#include "log.h"
#include "parse.h"
#include "range.h"
#include "api.h"
#include "register.h"
#include "tiers.h"
#include "worker-state.h"

#define API_READAHEAD      2     /* blocks filled ahead of a sequential reader */
#define API_MAX_PATHS      10000 /* paths in one load request */
#define API_MAX_DEPTH      64
#define API_MAX_LOAD_FILES 1000000
/* Blocks of one load in flight: bounds its queued fills, and how far a load goes into a file
 * whose description is wrong (a "size" past its end) before the first failure stops it. */
#define API_LOAD_PENDING 64

/* ---- blocks ---- */

typedef struct block_request {
        worker *w;
        httpd_request *req;
        store_key key;
        unsigned attempts;
} block_request;

static unsigned errno_to_status(int r)
{
        switch (r) {
        case -ESTALE:
                return 409;
        case -ENOENT:
                return 404;
        case -ERANGE:
                return 416;
        case -EILSEQ:
                return 410; /* this version's content is refused for good (fill.h) */
        case -ENOSPC:
                return 507;
        case -ECANCELED:
        case -EAGAIN:
        case -EHOSTUNREACH:
                return 503;
        default:
                return 502;
        }
}

static int reply_errno(httpd_request *req, int r, const store_key *k)
{
        char kb[BLOCK_ID_MAX];
        unsigned status = errno_to_status(r);

        if (status == 503)
                (void)httpd_reply_header(req, "Retry-After", "1");
        switch (r) {
        case -ESTALE:
                return httpd_reply_error(req, status,
                                         "block %s: the file changed, or version %" PRIu64
                                         " or epoch %016" PRIx64 " is not current",
                                         block_id_format(kb, k), k->version, k->epoch);
        case -ERANGE:
                return httpd_reply_error(req, status, "block %s: no such block in the file",
                                         block_id_format(kb, k));
        default:
                return httpd_reply_error(req, status, "block %s: %s", block_id_format(kb, k),
                                         fill_strerror(r));
        }
}

/* Replies with bytes [OFF, OFF + LEN) of a block of SIZE bytes from FD (taken): 206 with its
 * Content-Range when RANGED, else 200. */
static void reply_block(worker *w, httpd_request *req, int fd, uint64_t off, uint64_t len,
                        uint64_t size, bool ranged, bool hit)
{
        char cr[96];

        if (ranged) {
                snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                         off + len - 1, size);
                (void)httpd_reply_header(req, "Content-Range", cr);
        }
        (void)httpd_reply_header(req, "Accept-Ranges", "bytes");
        (void)httpd_reply_header(req, "X-Weir-Cache", hit ? "hit" : "miss");
        __atomic_add_fetch(&w->served_bytes, len, __ATOMIC_RELAXED);
        (void)httpd_reply_fd(req, ranged ? 206 : 200, "application/octet-stream", fd, off, len);
}

/* Replies with the block when it is cached; -ENOENT (no reply) when it is not. */
static int serve_cached(worker *w, httpd_request *req, const store_key *k, bool hit)
{
        char cr[96];
        store_block *b;
        uint64_t size, off = 0, len;
        int fd, r;

        r = store_open(w->store, k, &b, &fd, &size);
        if (r < 0)
                return r;
        /* The descriptor stays valid after the pin: eviction only unlinks. */
        store_release(w->store, b);
        len = size;
        r = range_parse(httpd_request_header(req, "Range"), size, &off, &len);
        if (r == -ERANGE) {
                safe_close(fd);
                snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
                (void)httpd_reply_header(req, "Content-Range", cr);
                (void)httpd_reply_error(req, 416, "range not satisfiable");
                return 0;
        }
        reply_block(w, req, fd, off, len, size, r == 0, hit);
        return 0;
}

static void block_filled(int r, void *userdata)
{
        block_request *br = userdata;
        worker *w = br->w;

        for (;;) {
                if (r >= 0 && serve_cached(w, br->req, &br->key, false) >= 0)
                        break;
                if (r >= 0) {
                        /* Evicted between its fill and this read: fill it again, once. */
                        if (br->attempts++ < 1) {
                                r = fill_guard_block(&w->fill, &br->key, 0, block_filled, br);
                                if (r == 0)
                                        return; /* called again */
                                if (r > 0)
                                        continue;
                        } else
                                r = -EAGAIN;
                }
                (void)reply_errno(br->req, r, &br->key);
                break;
        }
        free(br);
}

/* A sequential reader keeps hitting the blocks that earlier read-ahead brought: keep the
 * read-ahead going from hits too, when the previous block is cached (a reader at random offsets
 * rarely has it, so it does not make the worker fetch what nobody reads). Prefetches past the
 * end of the file end quietly in their start task. */
static void prefetch_after_hit(worker *w, const store_key *k)
{
        store_key prev = *k;

        if (k->index > 0) {
                prev.index--;
                if (!store_contains(w->store, &prev))
                        return;
        }
        for (unsigned i = 1; i <= API_READAHEAD; i++) {
                store_key next = *k;

                next.index += i;
                (void)fill_guard_block(&w->fill, &next, 0, NULL, NULL);
        }
}

typedef struct part_request {
        worker *w;
        httpd_request *req;
        store_key key;
        uint64_t off, len;
} part_request;

/* The bytes a ranged GET of a cold block asked for are fetched: serve them from the block file
 * being filled (fill_block_part), or from the cache when the block is whole by now. */
static void part_filled(int r, int fd, uint64_t block_len, void *userdata)
{
        part_request *pr = userdata;
        worker *w = pr->w;

        if (r == 0)
                reply_block(w, pr->req, fd, pr->off, MIN(pr->len, block_len - pr->off), block_len,
                            true, false);
        else if (r > 0) {
                /* whole now (or the range lies past its end: the lookup says so) */
                block_request *br = calloc(1, sizeof(*br));

                if (!br)
                        (void)httpd_reply_error(pr->req, 500, "out of memory");
                else {
                        *br = (block_request){.w = w, .req = pr->req, .key = pr->key};
                        block_filled(0, br);
                }
        } else
                (void)reply_errno(pr->req, r, &pr->key);
        free(pr);
}

static void handle_block(httpd_request *req, void *userdata)
{
        worker *w = userdata;
        block_request *br;
        store_key k;
        uint64_t off, len;
        bool only_cached;
        int r;

        if (block_id_parse(httpd_request_suffix(req), &k) < 0) {
                (void)httpd_reply_error(req, 400,
                                        "invalid block id, expected EPOCH-FILE-VERSION-INDEX "
                                        "(EPOCH 16 hex digits, FILE > 0)");
                return;
        }
        /* RFC 9111's only-if-cached (or ?cache=only): what this worker holds, never a fill,
         * read-ahead included (weirctl load --verify compares cached bytes with the store's). */
        only_cached = strstr(httpd_request_header(req, "Cache-Control") ?: "", "only-if-cached") ||
                      strcmp(httpd_request_query(req, "cache") ?: "", "only") == 0;
        if (serve_cached(w, req, &k, true) >= 0) {
                __atomic_add_fetch(&w->hits, 1, __ATOMIC_RELAXED);
                if (!only_cached)
                        prefetch_after_hit(w, &k);
                return;
        }
        if (only_cached) {
                (void)httpd_reply_error(req, 504, "block %s is not cached here",
                                        httpd_request_suffix(req));
                return;
        }
        __atomic_add_fetch(&w->misses, 1, __ATOMIC_RELAXED);
        if (range_parse_bounded(httpd_request_header(req, "Range"), &off, &len) == 0) {
                part_request *pr = calloc(1, sizeof(*pr));

                if (!pr) {
                        (void)httpd_reply_error(req, 500, "out of memory");
                        return;
                }
                *pr = (part_request){.w = w, .req = req, .key = k, .off = off, .len = len};
                r = fill_guard_block_part(&w->fill, &k, off, len, API_READAHEAD, part_filled, pr);
                if (r == 0)
                        return; /* suspended until part_filled() */
                if (r > 0)
                        part_filled(1, -1, 0, pr); /* cached meanwhile */
                else {
                        (void)reply_errno(req, r, &k);
                        free(pr);
                }
                return;
        }
        br = calloc(1, sizeof(*br));
        if (!br) {
                (void)httpd_reply_error(req, 500, "out of memory");
                return;
        }
        *br = (block_request){.w = w, .req = req, .key = k};
        r = fill_guard_block(&w->fill, &k, API_READAHEAD, block_filled, br);
        if (r == 0)
                return; /* suspended until block_filled() */
        if (r > 0)
                block_filled(0, br); /* cached meanwhile */
        else {
                (void)reply_errno(req, r, &k);
                free(br);
        }
}

/* DELETE /v1/blocks/ID: drops a cached block (weirctl load --verify found it differs from the
 * store). A block a reader holds pinned at that moment is 409: ask again. */
static void handle_block_delete(httpd_request *req, void *userdata)
{
        worker *w = userdata;
        store_key k;
        int r;

        if (block_id_parse(httpd_request_suffix(req), &k) < 0) {
                (void)httpd_reply_error(req, 400, "invalid block id");
                return;
        }
        r = store_remove(w->store, &k);
        if (r == -ENOENT)
                (void)httpd_reply_error(req, 404, "block %s is not cached here",
                                        httpd_request_suffix(req));
        else if (r < 0)
                (void)httpd_reply_error(req, 409, "block %s is being read, retry",
                                        httpd_request_suffix(req));
        else {
                log_info("Dropped block %s on request", httpd_request_suffix(req));
                (void)httpd_reply_json(req, 200, json_pack("{s:b}", "dropped", 1));
        }
}

static void handle_content_mismatch(httpd_request *req, void *userdata)
{
        worker *w = userdata;

        content_peers_handle_mismatch(w->peers, req);
}

/* ---- load ---- */

typedef struct load {
        worker *w;
        httpd_request *req;
        char *dataset;
        char **paths;
        size_t n_paths;
        json_t *file_list; /* [{"epoch","file_id","version","size","blocks":[INDEX]}] or NULL */
        uint64_t block_size;
        httpc *client;
        pthread_mutex_t lock; /* guards the counters below */
        pthread_cond_t cond;
        uint64_t pending, blocks, files, bytes, cached, failed;
        uint64_t bad_file; /* a file id whose block failed for good: its other blocks are skipped */
        bool canceled;     /* a fill was canceled: the worker is stopping */
} load;

typedef struct load_block {
        load *load;
        uint64_t size;
        uint64_t file_id;
} load_block;

static void load_account(load *l, uint64_t blocks_done, uint64_t bytes_done, uint64_t failed)
{
        worker *w = l->w;

        pthread_mutex_lock(&w->load_lock);
        w->load.blocks_done += blocks_done;
        w->load.bytes_done += bytes_done;
        w->load.failed += failed;
        pthread_mutex_unlock(&w->load_lock);
}

static void load_block_done(int r, void *userdata)
{
        load_block *lb = userdata;
        load *l = lb->load;

        load_account(l, 1, r >= 0 ? lb->size : 0, r < 0);
        pthread_mutex_lock(&l->lock);
        if (r < 0)
                l->failed++;
        /* no such block, file or version: the request described the file wrongly */
        if (r == -ERANGE || r == -ESTALE || r == -ENOENT)
                l->bad_file = lb->file_id;
        if (r == -ECANCELED)
                l->canceled = true;
        l->pending--;
        pthread_cond_signal(&l->cond); /* the load thread waits for room, or for the end */
        pthread_mutex_unlock(&l->lock);
        free(lb);
}

/* 0, 1 when the block's file failed for good already (skip the rest of it), -ECANCELED when the
 * worker is stopping. */
static int load_one_block(load *l, const store_key *k, uint64_t len)
{
        load_block *lb = calloc(1, sizeof(*lb));
        int r;

        if (!lb)
                return -ENOMEM;
        *lb = (load_block){.load = l, .size = len, .file_id = k->file_id};
        pthread_mutex_lock(&l->lock);
        while (l->pending >= API_LOAD_PENDING)
                pthread_cond_wait(&l->cond, &l->lock);
        if (l->bad_file == k->file_id) {
                pthread_mutex_unlock(&l->lock);
                free(lb);
                return 1;
        }
        l->pending++;
        l->blocks++;
        l->bytes += len;
        pthread_mutex_unlock(&l->lock);
        r = fill_guard_block(&l->w->fill, k, 0, load_block_done, lb);
        if (r != 0) {
                if (r > 0) {
                        pthread_mutex_lock(&l->lock);
                        l->cached++;
                        pthread_mutex_unlock(&l->lock);
                }
                load_block_done(r > 0 ? 0 : r, lb);
        }
        /* The worker is stopping: end the load rather than go through its remaining blocks. */
        return r == -ECANCELED ? r : 0;
}

/* Loads the blocks of the file ENTRY describes ({"epoch","file_id","version","size"}): those in
 * INDICES when given (weirctl spreads a file's blocks over the workers), else all. */
static int load_file(load *l, json_t *entry, json_t *indices)
{
        json_int_t fid = json_integer_value(json_object_get(entry, "file_id"));
        json_int_t ver = json_integer_value(json_object_get(entry, "version"));
        json_int_t size = json_integer_value(json_object_get(entry, "size"));
        uint64_t n, blocks = 0, bytes = 0, done = 0, off, len, epoch;
        worker *w = l->w;
        json_t *v;
        size_t j;

        if (fid <= 0 || ver <= 0 || size < 0 || (indices && !json_is_array(indices)) ||
            block_epoch_parse(json_string_value(json_object_get(entry, "epoch")), &epoch) < 0)
                return -EBADMSG;
        if (l->files >= API_MAX_LOAD_FILES)
                return -E2BIG;
        n = size == 0 ? 1 : ((uint64_t)size - 1) / l->block_size + 1;
        /* Counted first, so that progress has its total before the fills end. */
        if (indices)
                json_array_foreach(indices, j, v) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                            fill_block_range((uint64_t)size, l->block_size,
                                             (uint64_t)json_integer_value(v), &off, &len) < 0)
                                return -ERANGE;
                        blocks++;
                        bytes += len;
                }
        else {
                blocks = n;
                bytes = (uint64_t)size;
        }
        pthread_mutex_lock(&w->load_lock);
        w->load.files++;
        w->load.blocks += blocks;
        w->load.bytes += bytes;
        pthread_mutex_unlock(&w->load_lock);
        l->files++;
        for (uint64_t i = 0; i < (indices ? json_array_size(indices) : n); i++) {
                uint64_t idx =
                        indices ? (uint64_t)json_integer_value(json_array_get(indices, i)) : i;
                store_key k = {epoch, (uint64_t)fid, (uint64_t)ver, idx};
                int r;

                if (fill_block_range((uint64_t)size, l->block_size, idx, &off, &len) < 0)
                        break;
                r = load_one_block(l, &k, len);
                if (r < 0)
                        return r;
                if (r > 0) {
                        /* the rest of this file is not asked: out of the progress totals */
                        pthread_mutex_lock(&w->load_lock);
                        w->load.blocks -= blocks - i;
                        w->load.bytes -= bytes - done;
                        pthread_mutex_unlock(&w->load_lock);
                        break;
                }
                done += len;
        }
        return 0;
}

static int master_json(load *l, const char *what, const char *path, json_t **ret)
{
        _cleanup_free_ char *url = NULL;
        char *esc_ds = curl_easy_escape(NULL, l->dataset, 0);
        char *esc_path = curl_easy_escape(NULL, path, 0);
        httpc_response resp = {};
        int r;

        if (!esc_ds || !esc_path ||
            asprintf(&url, "/v1/datasets/%s/%s?path=%s", esc_ds, what, esc_path) < 0) {
                curl_free(esc_ds);
                curl_free(esc_path);
                return -ENOMEM;
        }
        curl_free(esc_ds);
        curl_free(esc_path);
        r = mclient_request(l->w->mclient, l->client, "GET", url, NULL, &resp);
        if (r < 0)
                return r;
        if (resp.status == 404 || !resp.json) {
                httpc_response_done(&resp);
                return -ENOENT;
        }
        if (resp.status != 200) {
                httpc_response_done(&resp);
                return -EIO;
        }
        *ret = json_incref(resp.json);
        httpc_response_done(&resp);
        return 0;
}

static int load_walk(load *l, const char *path, json_t *entry, unsigned depth)
{
        _cleanup_(json_decrefp) json_t *owned = NULL, *listing = NULL;
        json_t *entries, *e;
        const char *type;
        size_t i;
        int r;

        if (depth > API_MAX_DEPTH)
                return -ELOOP;
        if (!entry && strcmp(path, "/") != 0) {
                r = master_json(l, "stat", path, &owned);
                if (r < 0)
                        return r;
                entry = owned;
        }
        type = entry ? json_string_value(json_object_get(entry, "type")) : "dir";
        if (type && strcmp(type, "file") == 0)
                return load_file(l, entry, NULL);
        r = master_json(l, "ls", path, &listing);
        if (r < 0)
                return r;
        entries = json_object_get(listing, "entries");
        json_array_foreach(entries, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                _cleanup_free_ char *child = NULL;

                if (!name || !*name || strchr(name, '/') || strcmp(name, "..") == 0 ||
                    strcmp(name, ".") == 0)
                        continue;
                if (asprintf(&child, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
                             name) < 0)
                        return -ENOMEM;
                r = load_walk(l, child, e, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void load_free(load *l)
{
        for (size_t i = 0; i < l->n_paths; i++)
                free(l->paths[i]);
        free(l->paths);
        json_decref(l->file_list);
        free(l->dataset);
        httpc_free(l->client);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

static void *load_main(void *userdata)
{
        load *l = userdata;
        worker *w = l->w;
        int r = 0;

        for (size_t i = 0; i < l->n_paths && r >= 0; i++)
                r = load_walk(l, l->paths[i], NULL, 0);
        if (l->file_list) {
                size_t i;
                json_t *e;

                json_array_foreach(l->file_list, i, e) {
                        r = load_file(l, e, json_object_get(e, "blocks"));
                        if (r < 0)
                                break;
                }
        }

        pthread_mutex_lock(&l->lock);
        while (l->pending > 0)
                pthread_cond_wait(&l->cond, &l->lock);
        if (l->canceled && r >= 0)
                r = -ECANCELED; /* said as such, not as blocks that failed */
        pthread_mutex_unlock(&l->lock);
        if (w->reg)
                reg_flush(w->reg, 3000);

        if (r < 0)
                (void)httpd_reply_error(l->req, r == -ENOENT ? 404 : 502, "load of %s failed: %s",
                                        l->dataset, strerror(-r));
        else
                (void)httpd_reply_json(
                        l->req, 200,
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "blocks", (json_int_t)l->blocks, "files",
                                  (json_int_t)l->files, "bytes", (json_int_t)l->bytes, "cached",
                                  (json_int_t)l->cached, "failed", (json_int_t)l->failed));
        load_free(l);

        pthread_mutex_lock(&w->load_lock);
        w->load.active--;
        w->loads_running--;
        pthread_cond_broadcast(&w->load_cond);
        pthread_mutex_unlock(&w->load_lock);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(load *, load_free);

/* The load a request body asks for: -EINVAL for bad paths or files, -ENOMEM. */
static int load_new(worker *w, httpd_request *req, const config_dataset *d, json_t *body,
                    load **ret)
{
        _cleanup_(load_freep) load *l = calloc(1, sizeof(*l));
        json_t *paths = json_object_get(body, "paths"), *p;
        size_t i;

        if (!l)
                return -ENOMEM;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        l->w = w;
        l->req = req;
        l->block_size = d->block_size ? d->block_size : CONFIG_DEFAULT_BLOCK_SIZE;
        if (paths && (!json_is_array(paths) || json_array_size(paths) > API_MAX_PATHS))
                return -EINVAL;
        l->file_list = json_incref(json_object_get(body, "files"));
        if (l->file_list &&
            (!json_is_array(l->file_list) || json_array_size(l->file_list) > API_MAX_PATHS))
                return -EINVAL;
        l->dataset = strdup(d->name);
        l->paths = calloc(json_array_size(paths) + 1, sizeof(*l->paths));
        l->client = mclient_httpc(w->mclient);
        if (!l->dataset || !l->paths || !l->client)
                return -ENOMEM;
        json_array_foreach(paths, i, p) {
                const char *s = json_string_value(p);

                if (!s || s[0] != '/' || strstr(s, "/../") || strstr(s, "/./"))
                        return -EINVAL;
                if (!(l->paths[l->n_paths++] = strdup(s)))
                        return -ENOMEM;
        }
        /* Neither paths nor files: the whole dataset. */
        if (l->n_paths == 0 && !l->file_list && !(l->paths[l->n_paths++] = strdup("/")))
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

static void handle_load(httpd_request *req, void *userdata)
{
        worker *w = userdata;
        json_t *body = httpd_request_json(req);
        const char *ds = json_string_value(json_object_get(body, "dataset"));
        const config_dataset *d;
        pthread_attr_t attr;
        pthread_t tid;
        load *l;
        int r;

        const char *bad = apibody_load(body);
        if (bad) {
                (void)httpd_reply_error(req, 400, "%s, at most %d of each", bad, API_MAX_PATHS);
                return;
        }
        if (!ds || !(d = config_find_dataset(w->cfg, ds))) {
                (void)httpd_reply_error(req, ds ? 404 : 400,
                                        ds ? "no dataset %s" : "no dataset given", ds);
                return;
        }
        r = load_new(w, req, d, body, &l);
        if (r == -EINVAL) {
                (void)httpd_reply_error(
                        req, 400,
                        "expected {\"dataset\", \"paths\": [\"/MOUNT/...\"], "
                        "\"files\": [{\"epoch\", \"file_id\", \"version\", \"size\", "
                        "\"blocks\": [INDEX]}]}, at most %d of each",
                        API_MAX_PATHS);
                return;
        }
        if (r < 0) {
                (void)httpd_reply_error(req, 500, "out of memory");
                return;
        }

        pthread_mutex_lock(&w->load_lock);
        w->load.active++;
        w->loads_running++;
        pthread_mutex_unlock(&w->load_lock);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&tid, &attr, load_main, l);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                pthread_mutex_lock(&w->load_lock);
                w->load.active--;
                w->loads_running--;
                pthread_mutex_unlock(&w->load_lock);
                load_free(l);
                (void)httpd_reply_error(req, 500, "cannot start the load: %s", strerror(r));
        }
}

/* ---- status ---- */

static void handle_healthz(httpd_request *req, void *userdata)
{
        (void)httpd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void handle_status(httpd_request *req, void *userdata)
{
        worker *w = userdata;
        store_stats st;
        fill_stats fs = {};
        worker_load_stats ls;

        store_get_stats(w->store, &st);
        fill_guard_stats(&w->fill, &fs);
        pthread_mutex_lock(&w->load_lock);
        ls = w->load;
        pthread_mutex_unlock(&w->load_lock);
        (void)httpd_reply_json(
                req, 200,
                json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:{s:I,s:I,s:I,s:I,"
                          "s:I,s:I,s:I}}",
                          "node", w->node->name, "api", w->api, "tiers", tiers_json(w->store),
                          "blocks", (json_int_t)st.blocks, "used", (json_int_t)st.used, "capacity",
                          (json_int_t)st.quota, "hits",
                          (json_int_t)__atomic_load_n(&w->hits, __ATOMIC_RELAXED), "misses",
                          (json_int_t)__atomic_load_n(&w->misses, __ATOMIC_RELAXED), "store_bytes",
                          (json_int_t)fs.store_bytes, "served_bytes",
                          (json_int_t)__atomic_load_n(&w->served_bytes, __ATOMIC_RELAXED),
                          "evictions", (json_int_t)st.evictions, "registered",
                          w->reg ? reg_registered(w->reg) : false, "load", "active",
                          (json_int_t)ls.active, "files", (json_int_t)ls.files, "blocks",
                          (json_int_t)ls.blocks, "bytes", (json_int_t)ls.bytes, "blocks_done",
                          (json_int_t)ls.blocks_done, "bytes_done", (json_int_t)ls.bytes_done,
                          "failed", (json_int_t)ls.failed));
}

static void handle_metrics(httpd_request *req, void *userdata)
{
        worker *w = userdata;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        store_stats st;
        fill_stats fs = {};

        if (!f) {
                (void)httpd_reply_error(req, 500, "out of memory");
                return;
        }
        store_get_stats(w->store, &st);
        fill_guard_stats(&w->fill, &fs);
        fprintf(f,
                "# TYPE weir_worker_hits_total counter\nweir_worker_hits_total %" PRIu64 "\n"
                "# TYPE weir_worker_misses_total counter\nweir_worker_misses_total %" PRIu64 "\n"
                "# TYPE weir_worker_store_bytes_total counter\n"
                "weir_worker_store_bytes_total %" PRIu64 "\n"
                "# TYPE weir_worker_served_bytes_total counter\n"
                "weir_worker_served_bytes_total %" PRIu64 "\n"
                "# TYPE weir_worker_evictions_total counter\n"
                "weir_worker_evictions_total %" PRIu64 "\n"
                "# TYPE weir_worker_demotions_total counter\n"
                "weir_worker_demotions_total %" PRIu64 "\n"
                "# TYPE weir_worker_checksum_failures_total counter\n"
                "weir_worker_checksum_failures_total %" PRIu64 "\n"
                "# TYPE weir_worker_fills_total counter\nweir_worker_fills_total %" PRIu64 "\n"
                "# TYPE weir_worker_fill_failures_total counter\n"
                "weir_worker_fill_failures_total %" PRIu64 "\n"
                "# TYPE weir_worker_fill_retries_total counter\n"
                "weir_worker_fill_retries_total %" PRIu64 "\n"
                "# TYPE weir_worker_content_checks_total counter\n"
                "weir_worker_content_checks_total %" PRIu64 "\n"
                "# TYPE weir_worker_content_check_failures_total counter\n"
                "weir_worker_content_check_failures_total %" PRIu64 "\n"
                "# TYPE weir_worker_stale_refusals_total counter\n"
                "weir_worker_stale_refusals_total %" PRIu64 "\n"
                "# TYPE weir_worker_blocks gauge\nweir_worker_blocks %" PRIu64 "\n",
                __atomic_load_n(&w->hits, __ATOMIC_RELAXED),
                __atomic_load_n(&w->misses, __ATOMIC_RELAXED), fs.store_bytes,
                __atomic_load_n(&w->served_bytes, __ATOMIC_RELAXED), st.evictions, st.demotions,
                st.checksum_failures, fs.fills, fs.failures, fs.retries, fs.content_checks,
                fs.content_failures, fs.stale_refusals, st.blocks);
        fprintf(f, "# TYPE weir_worker_tier_used_bytes gauge\n");
        for (size_t i = 0; i < st.n_levels; i++)
                fprintf(f, "weir_worker_tier_used_bytes{tier=\"%s\",level=\"%zu\"} %" PRIu64 "\n",
                        config_medium_to_string(st.levels[i].medium), i, st.levels[i].used);
        fprintf(f, "# TYPE weir_worker_tier_quota_bytes gauge\n");
        for (size_t i = 0; i < st.n_levels; i++)
                fprintf(f, "weir_worker_tier_quota_bytes{tier=\"%s\",level=\"%zu\"} %" PRIu64 "\n",
                        config_medium_to_string(st.levels[i].medium), i, st.levels[i].quota);
        (void)httpd_metrics_write(w->httpd, f);
        if (fclose(f) != 0) {
                (void)httpd_reply_error(req, 500, "out of memory");
                return;
        }
        (void)httpd_reply_text(req, 200, "text/plain; version=0.0.4", text, len);
}

static const httpd_route routes[] = {
        {"GET", "/healthz", handle_healthz, HTTPD_ROUTE_PUBLIC, 0},
        {"GET", "/metrics", handle_metrics, 0, 0},
        {"GET", "/v1/status", handle_status, 0, 0},
        {"GET", "/v1/blocks/", handle_block, HTTPD_ROUTE_PREFIX, 0},
        {"DELETE", "/v1/blocks/", handle_block_delete, HTTPD_ROUTE_PREFIX, 0},
        {"POST", "/v1/load", handle_load, HTTPD_ROUTE_JSON, 0},
        {"POST", "/v1/content/mismatch", handle_content_mismatch, HTTPD_ROUTE_JSON, 0},
};

int api_start(worker *w)
{
        _cleanup_secret_ char *read_token = NULL;
        httpd_config hc = {
                .name = "worker API",
                .port = w->node->worker_port,
                .threads = 8,
                .metrics_prefix = "weir_http",
        };
        int r;

        if (w->cfg->api.read_token_file) {
                r = read_secret_file(w->cfg->api.read_token_file, SECRET_MAX, &read_token);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the read token from %s: %m",
                                               w->cfg->api.read_token_file);
        }
        apiauth_httpd_config(&hc, w->cfg, w->node, w->token, read_token);

        r = httpd_new(&hc, routes, ELEMENTSOF(routes), w, &w->httpd);
        if (r < 0)
                return log_error_errno(r, "Failed to serve the worker API on %s: %m", w->api);
        return 0;
}
