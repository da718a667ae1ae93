/* Content checks across workers (content-peers.h).
 *
 * Threads: one thread of its own runs the checks and tells the other workers of a mismatch
 * (network I/O that may block for its timeouts); the registration thread queues the master's
 * requests, a fill thread queues its own failed check, an HTTP thread runs the handler. `lock`
 * guards the queue and `stop`. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiauth.h"
#include "block.h"
#include "cleanup.h"
#include "content-peers.h"
#include "etag.h"
#include "log.h"
#include "timeutil.h"

#define PEERS_QUEUE      4096  /* checks waiting (a load completes many files at once) */
#define PEERS_PER_ANSWER 64    /* entries of one "verify" list looked at */
#define PEERS_MAX_BLOCKS 65536 /* as content.c: larger files are not checked */
#define PEERS_IO_CHUNK   (1u << 20)
/* One block from a peer: 30 s plus 1 s per MiB (a slow peer fails the check, which is given up;
 * a stop waits for at most one such transfer). */
#define PEERS_TIMEOUT_MS(block_size) (30000 + (long)((block_size) >> 20) * 1000)
#define PEERS_TELL_TRIES             3
#define PEERS_PATH_MAX               4096

typedef struct peers_item {
        bool tell; /* tell the other workers of a mismatch found here; else check */
        store_key first;
        uint64_t n_blocks; /* tell */
        char *path;        /* tell; may be NULL */
} peers_item;

struct content_peers {
        content_peers_context ctx;
        pthread_t tid;
        bool started;
        httpc *master; /* this thread's client for the masters */
        httpc *peer;   /* ... and for the other workers */

        pthread_mutex_t lock; /* guards what follows */
        pthread_cond_t cond;
        bool stop;
        peers_item queue[PEERS_QUEUE];
        size_t head, n;
};

static bool queue_push(content_peers *p, const peers_item *it)
{
        bool ok;

        pthread_mutex_lock(&p->lock);
        ok = p->n < PEERS_QUEUE && !p->stop;
        for (size_t i = 0; ok && i < p->n; i++) {
                const peers_item *q = &p->queue[(p->head + i) % PEERS_QUEUE];

                /* the same request twice (two heartbeats before the check ran): once */
                if (q->tell == it->tell && q->first.file_id == it->first.file_id &&
                    q->first.version == it->first.version && q->first.epoch == it->first.epoch)
                        ok = false;
        }
        if (ok) {
                p->queue[(p->head + p->n) % PEERS_QUEUE] = *it;
                p->n++;
                pthread_cond_signal(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        return ok;
}

void content_peers_request(content_peers *p, const json_t *verify)
{
        size_t i;
        json_t *v;

        if (!p)
                return;
        json_array_foreach(verify, i, v) {
                peers_item it = {};
                char id[BLOCK_ID_MAX];

                if (i == PEERS_PER_ANSWER)
                        break; /* the leader names at most 16: a longer list is not its */
                if (block_id_parse(json_string_value(v), &it.first) < 0 || it.first.index != 0)
                        continue;
                if (!queue_push(p, &it))
                        log_debug("Content check of %s not queued (queued already, or full)",
                                  block_id_format(id, &it.first));
        }
}

void content_peers_local_mismatch(void *userdata, const store_key *first, uint64_t n_blocks,
                                  const char *path)
{
        content_peers *p = userdata;
        peers_item it = {.tell = true, .first = *first, .n_blocks = n_blocks};

        it.first.index = 0;
        if (path && !(it.path = strdup(path)))
                log_oom();
        if (!queue_push(p, &it)) {
                log_warning("Cannot tell the other workers that a file version's content does "
                            "not match (queue full), ignoring");
                free(it.path);
        }
}

/* Marks the version FIRST names and drops this worker's blocks 0..N-1 of it: the number
 * dropped. A block that a reader pins at that moment is tried again for a while. */
static uint64_t drop_version(content_peers *p, const store_key *first, uint64_t n)
{
        uint64_t dropped = 0;

        fill_guard_mark_mismatch(p->ctx.fill, first);
        for (uint64_t i = 0; i < n; i++) {
                store_key k = *first;
                int r;

                k.index = i;
                for (unsigned attempt = 0; attempt < 50; attempt++) {
                        r = store_remove(p->ctx.store, &k);
                        if (r >= 0 || r == -ENOENT)
                                break;
                        sleep_ms(10); /* pinned while a reader opens it */
                }
                if (r >= 0)
                        dropped++;
                else if (r != -ENOENT)
                        log_warning_errno(r, "Failed to drop a block of a version whose content "
                                             "does not match: %m, ignoring");
        }
        return dropped;
}

static void tell_workers(content_peers *p, const store_key *first, uint64_t n, const char *path)
{
        const config *cfg = p->ctx.cfg;
        char id[BLOCK_ID_MAX];
        json_auto_t *body = json_pack("{s:s,s:I,s:s?}", "file", block_id_format(id, first),
                                      "blocks", (json_int_t)n, "path", path);

        if (!body) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *node = &cfg->nodes[i];
                char url[512];
                int r = -EIO;
                long status = 0;

                if (!node->worker || node == p->ctx.node)
                        continue;
                if (apiauth_base_url(cfg, node->address, node->worker_port, url, sizeof(url)) < 0)
                        continue;
                strncat(url, "/v1/content/mismatch", sizeof(url) - strlen(url) - 1);
                for (unsigned t = 0; t < PEERS_TELL_TRIES; t++) {
                        httpc_response resp = {};

                        r = httpc_post(p->peer, url, body, &resp);
                        status = resp.status;
                        httpc_response_done(&resp);
                        if (r >= 0 && status == 200)
                                break;
                        sleep_ms(200u << t);
                }
                if (r < 0 || status != 200)
                        log_warning("Could not tell worker %s that %s does not match its ETag "
                                    "(%s): it drops what it holds of it at its next check",
                                    node->name, path ? path : id, r < 0 ? strerror(-r) : "refused");
        }
}

/* Hashes LEN bytes of FD into H. */
static int hash_fd(gnutls_hash_hd_t h, int fd, uint64_t len, uint8_t *buf)
{
        uint64_t off = 0;

        while (off < len) {
                ssize_t m = pread(fd, buf, MIN((uint64_t)PEERS_IO_CHUNK, len - off), (off_t)off);

                if (m < 0 && errno == EINTR)
                        continue;
                if (m <= 0)
                        return m < 0 ? -errno : -EIO;
                (void)gnutls_hash(h, buf, (size_t)m);
                off += (uint64_t)m;
        }
        return 0;
}

/* Block K (LEN bytes) into H: from the tiers here, else from a holder LOCS names. 1 when hashed,
 * 0 when no copy could be had (evicted meanwhile: the check is given up), -errno. */
static int hash_block(content_peers *p, gnutls_hash_hd_t h, const store_key *k, uint64_t len,
                      const json_t *locs, uint8_t *buf)
{
        store_block *b = NULL;
        uint64_t have = 0;
        int fd = -1, r;
        char key[32], id[BLOCK_ID_MAX];
        size_t i;
        json_t *v;

        r = store_open(p->ctx.store, k, &b, &fd, &have);
        if (r >= 0) {
                r = have == len ? hash_fd(h, fd, len, buf) : -EIO;
                store_release(p->ctx.store, b);
                safe_close(fd);
                return r < 0 ? r : 1;
        }
        snprintf(key, sizeof(key), "%" PRIu64, k->index);
        block_id_format(id, k);
        json_array_foreach(json_object_get(locs, key), i, v) {
                const config_node *node = config_find_node(p->ctx.cfg, json_string_value(v) ?: "");
                httpc_response resp = {};
                char url[512];

                if (!node || !node->worker || node == p->ctx.node ||
                    apiauth_base_url(p->ctx.cfg, node->address, node->worker_port, url,
                                     sizeof(url)) < 0)
                        continue;
                /* ?cache=only: a holder that evicted it meanwhile says 504, never fills */
                snprintf(url + strlen(url), sizeof(url) - strlen(url), "/v1/blocks/%s?cache=only",
                         id);
                r = httpc_get(p->peer, url, &resp);
                if (r >= 0 && resp.status == 200 && resp.body_len == len) {
                        (void)gnutls_hash(h, resp.body, len);
                        httpc_response_done(&resp);
                        return 1;
                }
                log_debug("Block %s from worker %s for a content check: %s", id, node->name,
                          r < 0 ? strerror(-r) : "not there");
                httpc_response_done(&resp);
        }
        return 0;
}

static void check_one(content_peers *p, const store_key *first)
{
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t md5[ETAG_MD5_LEN], got[ETAG_MD5_LEN];
        fill_file f = {};
        httpc_response resp = {};
        char id[BLOCK_ID_MAX], path[96];
        gnutls_hash_hd_t h;
        uint64_t n;
        int r;

        block_id_format(id, first);
        if (fill_guard_is_mismatch(p->ctx.fill, first))
                return; /* found already, by this worker's own check or another's */
        r = p->ctx.resolve(p->ctx.userdata, first->file_id, &f);
        if (r < 0) {
                log_debug_errno(r, "Content check of %s: no metadata: %m", id);
                return;
        }
        n = f.block_size > 0 ? block_count(f.size, f.block_size) : 0;
        if (f.epoch != first->epoch || f.version != first->version ||
            !etag_content_md5(f.etag, md5) || n == 0 || n > PEERS_MAX_BLOCKS) {
                fill_file_done(&f);
                return; /* another version by now, or nothing to check against */
        }
        snprintf(path, sizeof(path), "/v1/blocks?file=%" PRIu64 "&version=%" PRIu64, first->file_id,
                 first->version);
        r = mclient_request(p->ctx.mclient, p->master, "GET", path, NULL, &resp);
        if (r < 0 || resp.status != 200 || !json_is_object(resp.json)) {
                log_debug("Content check of %s: no locations (%s)", id,
                          r < 0 ? strerror(-r) : "refused");
                httpc_response_done(&resp);
                fill_file_done(&f);
                return;
        }
        httpc_set_max_body(p->peer, (size_t)MAX(f.block_size + 1, (uint64_t)PEERS_IO_CHUNK));
        httpc_set_timeout(p->peer, PEERS_TIMEOUT_MS(f.block_size), 2000);
        buf = malloc(PEERS_IO_CHUNK);
        if (!buf || gnutls_hash_init(&h, GNUTLS_DIG_MD5) < 0) {
                httpc_response_done(&resp);
                fill_file_done(&f);
                return; /* out of memory, or MD5 disabled (FIPS mode) */
        }
        r = 1;
        for (uint64_t i = 0; i < n && r > 0; i++) {
                store_key k = *first;
                uint64_t off, len;

                pthread_mutex_lock(&p->lock);
                bool stop = p->stop;
                pthread_mutex_unlock(&p->lock);
                if (stop)
                        r = 0;
                else if (fill_block_range(f.size, f.block_size, i, &off, &len) < 0)
                        r = -ERANGE;
                else {
                        k.index = i;
                        r = hash_block(p, h, &k, len, json_object_get(resp.json, "locations"), buf);
                }
        }
        gnutls_hash_deinit(h, got);
        httpc_response_done(&resp);
        if (r <= 0) {
                log_debug("Content check of %s (%s) given up: %s", id, f.path,
                          r < 0 ? strerror(-r) : "a block is cached nowhere any more");
        } else if (memcmp(got, md5, sizeof(md5)) == 0) {
                fill_guard_count_content_check(p->ctx.fill, true);
                log_debug("Content of %s:%s (%" PRIu64 " blocks) matches its ETag", f.dataset,
                          f.path, n);
        } else {
                fill_guard_count_content_check(p->ctx.fill, false);
                log_error("The %" PRIu64 " cached blocks of %s:%s (%s...), spread over the "
                          "workers, do not hash to the MD5 the store gave as ETag: dropping them "
                          "on every worker (the store sent other bytes than it describes, or "
                          "they were damaged on the way)",
                          n, f.dataset, f.path, id);
                (void)drop_version(p, first, n);
                tell_workers(p, first, n, f.path);
        }
        fill_file_done(&f);
}

static void *peers_main(void *userdata)
{
        content_peers *p = userdata;

        for (;;) {
                peers_item it;

                pthread_mutex_lock(&p->lock);
                while (!p->stop && p->n == 0)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stop) {
                        pthread_mutex_unlock(&p->lock);
                        break;
                }
                it = p->queue[p->head];
                p->head = (p->head + 1) % PEERS_QUEUE;
                p->n--;
                pthread_mutex_unlock(&p->lock);

                if (it.tell)
                        tell_workers(p, &it.first, it.n_blocks, it.path);
                else
                        check_one(p, &it.first);
                free(it.path);
        }
        return NULL;
}

int content_peers_start(const content_peers_context *ctx, content_peers **ret)
{
        content_peers *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->ctx = *ctx;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        p->master = mclient_httpc(ctx->mclient);
        p->peer = httpc_new();
        if (!p->master || !p->peer) {
                content_peers_stop(p);
                return -ENOMEM;
        }
        r = apiauth_httpc_setup(p->peer, ctx->cfg, ctx->token);
        if (r < 0) {
                content_peers_stop(p);
                return r;
        }
        httpc_set_timeout(p->peer, PEERS_TIMEOUT_MS(0), 2000);
        httpc_set_max_redirects(p->peer, 0);
        r = -pthread_create(&p->tid, NULL, peers_main, p);
        if (r < 0) {
                content_peers_stop(p);
                return r;
        }
        p->started = true;
        *ret = p;
        return 0;
}

content_peers *content_peers_stop(content_peers *p)
{
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        if (p->started)
                pthread_join(p->tid, NULL);
        for (size_t i = 0; i < p->n; i++)
                free(p->queue[(p->head + i) % PEERS_QUEUE].path);
        httpc_free(p->master);
        httpc_free(p->peer);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

/* No control characters: the path goes into the log. */
static bool printable(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

void content_peers_handle_mismatch(content_peers *p, httpd_request *req)
{
        json_t *body = httpd_request_json(req);
        json_t *blocks = json_object_get(body, "blocks");
        json_t *path = json_object_get(body, "path");
        store_key first;
        uint64_t dropped;

        if (!p) {
                (void)httpd_reply_error(req, 503, "shutting down");
                return;
        }
        if (block_id_parse(json_string_value(json_object_get(body, "file")) ?: "", &first) < 0 ||
            first.index != 0) {
                (void)httpd_reply_error(req, 400, "\"file\" must be the block id of a block 0");
                return;
        }
        if (!json_is_integer(blocks) || json_integer_value(blocks) < 1 ||
            json_integer_value(blocks) > PEERS_MAX_BLOCKS) {
                (void)httpd_reply_error(req, 400, "\"blocks\" must be an integer from 1 to %d",
                                        PEERS_MAX_BLOCKS);
                return;
        }
        if (path && (!json_is_string(path) || json_string_length(path) > PEERS_PATH_MAX ||
                     !printable(json_string_value(path)))) {
                (void)httpd_reply_error(
                        req, 400,
                        "\"path\" must be a string of at most %d bytes, without control characters",
                        PEERS_PATH_MAX);
                return;
        }
        dropped = drop_version(p, &first, (uint64_t)json_integer_value(blocks));
        log_warning("Another worker found that %s (%s...) does not hash to its ETag: dropped "
                    "%" PRIu64 " cached blocks of it here, and it is not filled again",
                    path ? json_string_value(path) : "a file",
                    json_string_value(json_object_get(body, "file")), dropped);
        (void)httpd_reply_json(req, 200, json_pack("{s:I}", "dropped", (json_int_t)dropped));
}
