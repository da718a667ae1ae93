/* Metadata from the master leader (docs/api.md), cached with the entry/attr timeouts. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apiauth.h"
#include "block.h"
#include "cleanup.h"
#include "hmap.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "lru.h"
#include "lswire.h"
#include "meta.h"
#include "timeutil.h"

#define META_CALL_TIMEOUT_MS 5000 /* one request to one master */
#define META_MAX_REDIRECTS   5
#define META_BLOCKS_TTL_MS   1000
#define META_API_MAX         300
#define META_STAT_CACHE      16384      /* entries: what lookups and getattrs revisit */
#define META_LISTING_CACHE   (8u << 20) /* bytes of listing pages, about 32 full pages */
/* Every master refusing connections (or timing out) for this long is "no master": calls then fail
 * at once, and lookups answer from the last metadata we had (stale) instead of waiting retry_ms.
 * A failover is not this: the surviving masters answer 503 or redirect meanwhile. */
#define META_DOWN_GRACE_MS 2000

typedef struct stat_item {
        uint64_t fetched_ms;
        meta_entry entry;
} stat_item;

typedef struct blocks_item {
        uint64_t key; /* hash of (file, version) is not unique: check both */
        uint64_t file_id, version;
        meta_locations *loc;
} blocks_item;

struct meta {
        const config *config;
        const config_dataset *dataset;
        meta_options opts;
        char **masters; /* "HOST:PORT" of every master */
        size_t n_masters;
        char *dataset_escaped;
        char *token; /* NULL when the YAML names no tokenFile */

        /* lock guards leader, the three caches, every item in them and the counters */
        pthread_mutex_t lock;
        char leader[META_API_MAX]; /* "" when unknown */
        size_t next_master;        /* where to start when the leader is unknown */
        lru *stats;                /* path -> stat_item, bounded by entries */
        lru *pages;                /* page_key() -> meta_listing, bounded by bytes */
        hmap blocks;               /* file_id -> blocks_item (one version per file) */
        meta_counters counters;
        bool masters_down;      /* the last call found no master at all */
        uint64_t stale_answers; /* lookups answered from expired metadata meanwhile */
};

static void stat_item_free(void *p)
{
        stat_item *s = p;

        meta_entry_done(&s->entry);
        free(s);
}

static void listing_unref_void(void *p)
{
        meta_listing_unref(p);
}

/* "PATH//AFTER": PATH holds no "//" and a name no "/", so the key is unique. */
static char *page_key(const char *path, const char *after)
{
        char *k = NULL;

        if (asprintf(&k, "%s//%s", path, after ? after : "") < 0)
                return NULL;
        return k;
}

/* What a page costs in memory, roughly: the cache's byte bound counts this. */
static size_t listing_bytes(const meta_listing *l)
{
        size_t b = sizeof(*l) + l->n * sizeof(meta_entry);

        if (l->names)
                return b + l->names_len + 2 * 16; /* two allocations */
        for (size_t i = 0; i < l->n; i++) {
                const meta_entry *e = &l->entries[i];

                b += strlen(e->name) + 1 + (e->etag ? strlen(e->etag) + 1 : 0) +
                     (e->ufs_url ? strlen(e->ufs_url) + 1 : 0) + 3 * 16; /* malloc headers */
        }
        return b;
}

void meta_entry_done(meta_entry *e)
{
        free(e->name);
        free(e->etag);
        free(e->ufs_url);
        *e = (meta_entry){};
}

static int strdup_null(const char *s, char **ret)
{
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

int meta_entry_copy(const meta_entry *src, meta_entry *ret)
{
        meta_entry e = *src;

        e.name = e.etag = e.ufs_url = NULL;
        if (strdup_null(src->name, &e.name) < 0 || strdup_null(src->etag, &e.etag) < 0 ||
            strdup_null(src->ufs_url, &e.ufs_url) < 0) {
                meta_entry_done(&e);
                return -ENOMEM;
        }
        *ret = e;
        return 0;
}

static int json_u64(json_t *o, const char *key, bool required, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                *ret = 0;
                return required ? -EBADMSG : 0;
        }
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                *ret = (uint64_t)json_integer_value(v);
                return 0;
        }
        if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1.8e19) {
                *ret = (uint64_t)json_real_value(v);
                return 0;
        }
        return -EBADMSG;
}

static const char *json_str(json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

int meta_entry_from_json(json_t *o, meta_entry *ret)
{
        meta_entry e = {};
        const char *name = json_str(o, "name"), *type = json_str(o, "type");
        json_t *mtime = json_object_get(o, "mtime");
        int r;

        if (!json_is_object(o) || !name || !type || !*name || strchr(name, '/') ||
            strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return -EBADMSG;
        if (strcmp(type, "dir") == 0)
                e.dir = true;
        else if (strcmp(type, "file") != 0)
                return -EBADMSG;
        r = json_u64(o, "size", !e.dir, &e.size);
        if (r < 0)
                return r;
        r = json_u64(o, "file_id", !e.dir, &e.file_id);
        if (r < 0)
                return r;
        r = json_u64(o, "version", false, &e.version);
        if (r < 0)
                return r;
        if (!e.dir && e.file_id == 0)
                return -EBADMSG;
        /* Block ids need the epoch: a file without one is refused rather than read. */
        if (!e.dir && block_epoch_parse(json_str(o, "epoch"), &e.epoch) < 0)
                return -EBADMSG;
        e.mtime = json_is_number(mtime) ? json_number_value(mtime) : 0;
        if (strdup_null(name, &e.name) < 0 || strdup_null(json_str(o, "etag"), &e.etag) < 0 ||
            strdup_null(json_str(o, "ufs_url"), &e.ufs_url) < 0) {
                meta_entry_done(&e);
                return -ENOMEM;
        }
        *ret = e;
        return 0;
}

meta_listing *meta_listing_ref(meta_listing *l)
{
        if (l)
                __atomic_add_fetch(&l->refcount, 1, __ATOMIC_RELAXED);
        return l;
}

meta_listing *meta_listing_unref(meta_listing *l)
{
        if (!l || __atomic_sub_fetch(&l->refcount, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        /* with a names block, entries own nothing (compact pages carry no ETag or URL) */
        for (size_t i = 0; !l->names && i < l->n; i++)
                meta_entry_done(&l->entries[i]);
        free(l->names);
        free(l->entries);
        free(l);
        return NULL;
}

meta_locations *meta_locations_unref(meta_locations *l)
{
        if (!l || __atomic_sub_fetch(&l->refcount, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < l->n; i++) {
                for (size_t j = 0; j < l->blocks[i].n_nodes; j++)
                        free(l->blocks[i].nodes[j]);
                free(l->blocks[i].nodes);
        }
        free(l->blocks);
        free(l);
        return NULL;
}

char *const *meta_locations_find(const meta_locations *l, uint64_t index, size_t *ret_n)
{
        size_t lo = 0, hi = l ? l->n : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (l->blocks[mid].index == index) {
                        *ret_n = l->blocks[mid].n_nodes;
                        return l->blocks[mid].nodes;
                }
                if (l->blocks[mid].index < index)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_n = 0;
        return NULL;
}

static char *api_address(const char *address, uint16_t port)
{
        char *s = NULL;
        bool v6 = strchr(address, ':') != NULL;

        if (asprintf(&s, v6 ? "[%s]:%u" : "%s:%u", address, port) < 0)
                return NULL;
        return s;
}

int meta_new(const config *c, const config_dataset *d, const meta_options *o, meta **ret)
{
        meta *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->config = c;
        m->dataset = d;
        m->opts = *o;
        m->opts.token = NULL; /* borrowed: keep our own copy below */
        pthread_mutex_init(&m->lock, NULL);
        m->stats = lru_new(0, o->stat_cache_entries ? o->stat_cache_entries : META_STAT_CACHE,
                           stat_item_free);
        m->pages = lru_new(o->listing_cache_bytes ? o->listing_cache_bytes : META_LISTING_CACHE, 0,
                           listing_unref_void);
        hmap_init(&m->blocks, false);
        if (!m->stats || !m->pages) {
                meta_free(m);
                return -ENOMEM;
        }
        m->masters = calloc(c->n_nodes ? c->n_nodes : 1, sizeof(char *));
        m->dataset_escaped = http_escape(d->name);
        if (!m->masters || !m->dataset_escaped || (o->token && !(m->token = strdup(o->token)))) {
                meta_free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < c->n_nodes; i++) {
                if (!c->nodes[i].master)
                        continue;
                m->masters[m->n_masters] =
                        api_address(c->nodes[i].address, c->nodes[i].master_port);
                if (!m->masters[m->n_masters++]) {
                        meta_free(m);
                        return -ENOMEM;
                }
        }
        if (m->n_masters == 0) {
                meta_free(m);
                return log_error_errno(EINVAL, "The cluster YAML names no master.");
        }
        *ret = m;
        return 0;
}

meta *meta_free(meta *m)
{
        size_t it;

        if (!m)
                return NULL;
        lru_free(m->stats);
        lru_free(m->pages);
        for (hmap_node *n = hmap_first(&m->blocks, &it); n; n = hmap_next(&m->blocks, n, &it)) {
                blocks_item *b = n->value;

                meta_locations_unref(b->loc);
                free(b);
        }
        hmap_done(&m->blocks);
        for (size_t i = 0; i < m->n_masters; i++)
                free(m->masters[i]);
        free(m->masters);
        free(m->dataset_escaped);
        if (m->token) {
                explicit_bzero(m->token, strlen(m->token));
                free(m->token);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

/* "http[s]://HOST:PORT/..." -> "HOST:PORT" into BUF. */
static int location_api(const char *location, char *buf, size_t len)
{
        const char *p = location, *e;

        if (strncmp(p, "http://", 7) == 0)
                p += 7;
        else if (strncmp(p, "https://", 8) == 0)
                p += 8;
        else
                return -EINVAL;
        e = strchr(p, '/');
        if (!e)
                e = p + strlen(p);
        if (e == p || (size_t)(e - p) >= len)
                return -EINVAL;
        memcpy(buf, p, e - p);
        buf[e - p] = 0;
        return 0;
}

static void pick_target(meta *m, char *buf, size_t len)
{
        pthread_mutex_lock(&m->lock);
        if (m->leader[0]) {
                snprintf(buf, len, "%s", m->leader);
        } else {
                snprintf(buf, len, "%s", m->masters[m->next_master % m->n_masters]);
        }
        pthread_mutex_unlock(&m->lock);
}

/* TARGET did not answer as leader: forget it and move on to the next master. */
static void target_failed(meta *m, const char *target)
{
        pthread_mutex_lock(&m->lock);
        if (strcmp(m->leader, target) == 0)
                m->leader[0] = 0;
        for (size_t i = 0; i < m->n_masters; i++)
                if (strcmp(m->masters[i], target) == 0) {
                        m->next_master = i + 1;
                        break;
                }
        pthread_mutex_unlock(&m->lock);
}

static void set_leader(meta *m, const char *api)
{
        pthread_mutex_lock(&m->lock);
        snprintf(m->leader, sizeof(m->leader), "%s", api);
        pthread_mutex_unlock(&m->lock);
}

static pthread_key_t httpc_key;
static pthread_once_t httpc_key_once = PTHREAD_ONCE_INIT;

static void httpc_key_destroy(void *p)
{
        httpc_free(p);
}

static void httpc_key_init(void)
{
        (void)pthread_key_create(&httpc_key, httpc_key_destroy);
}

/* httpc handles are per thread: FUSE and prefetch threads each keep their own connections. */
static httpc *thread_httpc(meta *m)
{
        httpc *c;

        pthread_once(&httpc_key_once, httpc_key_init);
        c = pthread_getspecific(httpc_key);
        if (c)
                return c;
        c = httpc_new();
        if (!c)
                return NULL;
        httpc_set_timeout(c, META_CALL_TIMEOUT_MS, 1000);
        httpc_set_max_redirects(c, META_MAX_REDIRECTS);
        /* sent to masters only (and kept across their redirects to the leader) */
        if (apiauth_httpc_setup(c, m->config, m->token) < 0)
                return httpc_free(c);
        if (pthread_setspecific(httpc_key, c) != 0)
                return httpc_free(c);
        return c;
}

static void set_masters_down(meta *m, bool down)
{
        pthread_mutex_lock(&m->lock);
        if (m->masters_down != down)
                log_full(down ? LOG_WARNING : LOG_INFO, "%s",
                         down ? "No master answers: serving what is cached with the last "
                                "metadata (stale), failing what is not"
                              : "A master answers again: metadata is current");
        m->masters_down = down;
        pthread_mutex_unlock(&m->lock);
}

bool meta_masters_down(meta *m)
{
        bool down;

        pthread_mutex_lock(&m->lock);
        down = m->masters_down;
        pthread_mutex_unlock(&m->lock);
        return down;
}

uint64_t meta_stale_answers(meta *m)
{
        uint64_t n;

        pthread_mutex_lock(&m->lock);
        n = m->stale_answers;
        pthread_mutex_unlock(&m->lock);
        return n;
}

/* meta_call(), with the whole response when RAW (a non-JSON body: compact listing pages). */
static int call(meta *m, const char *path_query, bool raw, httpc_response *ret_raw, json_t **ret);

int meta_call(meta *m, const char *path_query, json_t **ret)
{
        return call(m, path_query, false, NULL, ret);
}

static int call(meta *m, const char *path_query, bool raw, httpc_response *ret_raw, json_t **ret)
{
        uint64_t start = now_ms(), deadline = start + m->opts.retry_ms, backoff = 50;
        httpc *c = thread_httpc(m);
        int last = -EHOSTUNREACH;
        size_t tried = 0, unreachable = 0; /* masters of this round that did not answer at all */

        if (!c)
                return -ENOMEM;
        for (;;) {
                char target[META_API_MAX], api[META_API_MAX];
                _cleanup_free_ char *url = NULL;
                httpc_response rep = {};
                int r;

                pick_target(m, target, sizeof(target));
                if (asprintf(&url, "%s://%s%s", apiauth_scheme(m->config), target, path_query) < 0)
                        return -ENOMEM;
                r = httpc_get(c, url, &rep);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* refused, timed out, reset, too many redirects: try another master */
                        log_debug_errno(r, "GET %s: %m (%s)", url, httpc_last_error(c));
                        last = r;
                        unreachable++;
                } else if (rep.status == 200) {
                        if (!raw && !rep.json) {
                                httpc_response_done(&rep);
                                return log_warning_errno(EBADMSG, "Bad JSON from %s", url);
                        }
                        /* the effective URL after redirects names the leader */
                        if (rep.url && location_api(rep.url, api, sizeof(api)) == 0)
                                set_leader(m, api);
                        set_masters_down(m, false);
                        if (raw) {
                                *ret_raw = rep;
                                return 0;
                        }
                        *ret = json_incref(rep.json);
                        httpc_response_done(&rep);
                        return 0;
                } else if (rep.status == 404) {
                        httpc_response_done(&rep);
                        set_masters_down(m, false);
                        return -ENOENT;
                } else if (rep.status >= 400 && rep.status < 500) {
                        log_warning("GET %s: HTTP %ld: %.200s", url, rep.status,
                                    rep.body ? rep.body : "");
                        httpc_response_done(&rep);
                        return -EIO;
                } else {
                        /* 503 during an election, 5xx from a dying master */
                        log_debug("GET %s: HTTP %ld, trying another master", url, rep.status);
                        last = rep.status == 503 ? -EAGAIN : -EIO;
                }
                httpc_response_done(&rep);
                target_failed(m, target);
                if (now_ms() >= deadline)
                        return log_warning_errno(last,
                                                 "No master answered %s within %" PRIu64 " ms: %m",
                                                 path_query, m->opts.retry_ms);
                if (++tried % m->n_masters == 0) {
                        /* A whole round without any answer: after the grace (at once when the
                         * last call found none either), no master is there to wait for. */
                        if (unreachable == m->n_masters &&
                            (meta_masters_down(m) || now_ms() - start >= META_DOWN_GRACE_MS)) {
                                set_masters_down(m, true);
                                return -EHOSTDOWN;
                        }
                        if (unreachable < m->n_masters)
                                set_masters_down(m, false);
                        unreachable = 0;
                        sleep_ms(backoff);
                        backoff = MIN(backoff * 2, 500);
                }
        }
}

int meta_post(meta *m, const char *path, const json_t *body)
{
        httpc *c = thread_httpc(m);
        int last = -EHOSTUNREACH;

        if (!c)
                return -ENOMEM;
        for (size_t tried = 0; tried < m->n_masters; tried++) {
                char target[META_API_MAX], api[META_API_MAX];
                _cleanup_free_ char *url = NULL;
                httpc_response rep = {};
                int r;

                pick_target(m, target, sizeof(target));
                if (asprintf(&url, "%s://%s%s", apiauth_scheme(m->config), target, path) < 0)
                        return -ENOMEM;
                r = httpc_post(c, url, body, &rep);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        log_debug_errno(r, "POST %s: %m (%s)", url, httpc_last_error(c));
                        last = r;
                } else if (rep.status >= 200 && rep.status < 300) {
                        if (rep.url && location_api(rep.url, api, sizeof(api)) == 0)
                                set_leader(m, api);
                        httpc_response_done(&rep);
                        return 0;
                } else if (rep.status >= 400 && rep.status < 500) {
                        log_debug("POST %s: HTTP %ld: %.200s", url, rep.status,
                                  rep.body ? rep.body : "");
                        r = rep.status == 404 ? -ENOENT : rep.status == 401 ? -EACCES : -EIO;
                        httpc_response_done(&rep);
                        return r;
                } else {
                        log_debug("POST %s: HTTP %ld, trying another master", url, rep.status);
                        last = rep.status == 503 ? -EAGAIN : -EIO;
                }
                httpc_response_done(&rep);
                target_failed(m, target);
        }
        return last;
}

/* Stores ENTRY for PATH in the stat cache (lock held). */
static int cache_stat_locked(meta *m, const char *path, const meta_entry *e, uint64_t now)
{
        stat_item *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        r = meta_entry_copy(e, &s->entry);
        if (r < 0) {
                free(s);
                return r;
        }
        s->fetched_ms = now;
        return lru_put(m->stats, path, s, sizeof(*s));
}

/* No master: PATH's entry from the last metadata we had, however old: the stat cache, else the
 * cached listing pages of its parent (lookups of listed names are answered from those). Lock
 * held. -EIO when neither has it. */
static int stale_entry_locked(meta *m, const char *path, meta_entry *ret)
{
        const char *slash = strrchr(path, '/');
        stat_item *s = lru_get(m->stats, path);
        _cleanup_free_ char *parent = NULL, *after = NULL;

        if (s)
                return meta_entry_copy(&s->entry, ret);
        if (!slash)
                return -EIO;
        parent = slash == path ? strdup("/") : strndup(path, slash - path);
        if (!parent)
                return -ENOMEM;
        for (;;) {
                _cleanup_free_ char *key = page_key(parent, after);
                meta_listing *l = key ? lru_get(m->pages, key) : NULL;
                const meta_entry *e;

                if (!l)
                        return -EIO;
                e = meta_listing_find(l, slash + 1);
                if (e)
                        return meta_entry_copy(e, ret);
                if (!l->more || l->n == 0)
                        return -EIO;
                free(after);
                after = strdup(l->entries[l->n - 1].name);
                if (!after)
                        return -ENOMEM;
        }
}

int meta_stat(meta *m, const char *path, bool fresh, meta_entry *ret)
{
        _cleanup_free_ char *esc = NULL, *query = NULL;
        uint64_t now = now_ms();
        json_t *j = NULL;
        meta_entry e;
        int r;

        if (strcmp(path, "/") == 0) {
                *ret = (meta_entry){.dir = true, .version = 1};
                return (ret->name = strdup("/")) ? 0 : -ENOMEM;
        }
        if (!fresh) {
                stat_item *s;

                pthread_mutex_lock(&m->lock);
                s = lru_get(m->stats, path);
                if (s && now - s->fetched_ms < m->opts.attr_timeout_ms) {
                        r = meta_entry_copy(&s->entry, ret);
                        m->counters.stat_hits++;
                        pthread_mutex_unlock(&m->lock);
                        return r;
                }
                pthread_mutex_unlock(&m->lock);
        }
        esc = http_escape(path);
        if (!esc || asprintf(&query, "/v1/datasets/%s/stat?path=%s", m->dataset_escaped, esc) < 0)
                return -ENOMEM;
        pthread_mutex_lock(&m->lock);
        m->counters.stat_calls++;
        pthread_mutex_unlock(&m->lock);
        log_debug("Asking the master for %s", path);
        r = meta_call(m, query, &j);
        if (r == -ENOENT) {
                pthread_mutex_lock(&m->lock);
                (void)lru_remove(m->stats, path);
                pthread_mutex_unlock(&m->lock);
        }
        if (r == -EHOSTDOWN) {
                /* No master: the last entry we had, however old, rather than nothing. File
                 * versions are immutable, so its blocks are still the right ones. */
                pthread_mutex_lock(&m->lock);
                r = stale_entry_locked(m, path, ret);
                if (r >= 0)
                        m->stale_answers++;
                pthread_mutex_unlock(&m->lock);
                return r;
        }
        if (r < 0) /* lookups answer to the kernel: no transport codes that stat(2) never gives */
                return r == -ENOENT || r == -ENOMEM ? r : -EIO;
        r = meta_entry_from_json(j, &e);
        json_decref(j);
        if (r < 0)
                return log_warning_errno(r, "Bad ENTRY from the master for %s", path);
        pthread_mutex_lock(&m->lock);
        (void)cache_stat_locked(m, path, &e, now);
        pthread_mutex_unlock(&m->lock);
        *ret = e;
        return 0;
}

static int entry_compare(const void *a, const void *b)
{
        return strcmp(((const meta_entry *)a)->name, ((const meta_entry *)b)->name);
}

/* A JSON page (a master older than format=binary answers that): each entry parsed and copied. */
static int listing_from_json(json_t *j, const char *path, const char *after, uint64_t now,
                             meta_listing **ret)
{
        json_t *entries = json_object_get(j, "entries"), *next = json_object_get(j, "next");
        meta_listing *l;
        int r;

        if (!json_is_array(entries) || (next && !json_is_string(next)))
                return log_warning_errno(EBADMSG, "Bad listing from the master for %s", path);
        l = calloc(1, sizeof(*l));
        if (!l || !(l->entries = calloc(json_array_size(entries) + 1, sizeof(meta_entry)))) {
                free(l);
                return -ENOMEM;
        }
        l->refcount = 1;
        l->fetched_ms = now;
        /* a master of the API's first version ignores limit= and sends everything at once */
        l->more = next != NULL;
        for (size_t i = 0; i < json_array_size(entries); i++) {
                meta_entry *e = &l->entries[l->n];

                r = meta_entry_from_json(json_array_get(entries, i), e);
                if (r == -ENOMEM) {
                        meta_listing_unref(l);
                        return r;
                }
                if (r < 0) {
                        log_warning_errno(r, "Bad entry %zu in the listing of %s, ignoring", i,
                                          path);
                        continue;
                }
                if (after && strcmp(e->name, after) <= 0) {
                        /* the next page starts after the last name: an earlier one is a bug */
                        log_warning("Entry '%s' of %s does not sort after '%s', ignoring", e->name,
                                    path, after);
                        meta_entry_done(e);
                        continue;
                }
                l->n++;
        }
        qsort(l->entries, l->n, sizeof(meta_entry), entry_compare);
        *ret = l;
        return 0;
}

typedef struct wire_state {
        meta_listing *l;
        uint64_t epoch;
        size_t names_len; /* pass 1: bytes the names need; pass 2: bytes used */
} wire_state;

static int wire_count(const lswire_entry *w, void *userdata)
{
        ((wire_state *)userdata)->names_len += w->name_len + 1;
        return 0;
}

static int wire_fill(const lswire_entry *w, void *userdata)
{
        wire_state *s = userdata;
        meta_entry *e = &s->l->entries[s->l->n++];
        char *name = s->l->names + s->names_len;

        memcpy(name, w->name, w->name_len);
        name[w->name_len] = 0;
        s->names_len += w->name_len + 1;
        *e = (meta_entry){
                .name = name,
                .dir = w->dir,
                .size = w->size,
                .mtime = (double)w->mtime,
                .epoch = w->dir ? 0 : s->epoch,
                .file_id = w->file_id,
                .version = w->version,
        };
        return 0;
}

/* A compact page (lswire.h): checked whole first, then copied into two allocations (entries and
 * names) instead of one per entry. A malformed page fails the readdir with EIO, logged with what
 * was wrong; nothing of it is used. */
static int listing_from_wire(const char *body, size_t len, const char *path, const char *after,
                             uint64_t now, meta_listing **ret)
{
        char err[256];
        lswire_header h;
        wire_state s = {};
        meta_listing *l;
        int r;

        r = lswire_parse(body, len, after, META_PAGE, wire_count, &s, &h, err, sizeof(err));
        if (r < 0)
                return log_warning_errno(EBADMSG, "Bad listing page from the master for %s: %s",
                                         path, err);
        if (h.epoch == 0 && h.count > 0)
                return log_warning_errno(
                        EBADMSG, "Listing page from the master for %s without an epoch", path);
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->refcount = 1;
        l->fetched_ms = now;
        l->more = h.more;
        l->entries = calloc(h.count + 1, sizeof(meta_entry));
        l->names = malloc(s.names_len + 1);
        if (!l->entries || !l->names) {
                meta_listing_unref(l);
                return -ENOMEM;
        }
        l->names_len = s.names_len;
        s = (wire_state){.l = l, .epoch = h.epoch};
        r = lswire_parse(body, len, after, META_PAGE, wire_fill, &s, NULL, NULL, 0);
        assert(r >= 0 && l->n == h.count); /* the same bytes passed the first time */
        *ret = l;
        return 0;
}

int meta_list_page(meta *m, const char *path, const char *after, bool fresh, meta_listing **ret)
{
        _cleanup_free_ char *esc = NULL, *query = NULL, *key = NULL, *esc_after = NULL;
        uint64_t now = now_ms();
        httpc_response rep = {};
        meta_listing *l;
        int r;

        key = page_key(path, after);
        if (!key)
                return -ENOMEM;
        pthread_mutex_lock(&m->lock);
        l = lru_get(m->pages, key);
        if (!fresh && l && now - l->fetched_ms < m->opts.entry_timeout_ms) {
                *ret = meta_listing_ref(l);
                m->counters.page_hits++;
                pthread_mutex_unlock(&m->lock);
                return 0;
        }
        m->counters.page_calls++;
        pthread_mutex_unlock(&m->lock);

        esc = http_escape(path);
        esc_after = after ? http_escape(after) : NULL;
        if (!esc || (after && !esc_after) ||
            asprintf(&query, "/v1/datasets/%s/ls?path=%s&limit=%u&fields=attr&format=binary%s%s",
                     m->dataset_escaped, esc, META_PAGE, after ? "&after=" : "",
                     after ? esc_after : "") < 0)
                return -ENOMEM;
        r = call(m, query, true, &rep, NULL);
        if (r == -EHOSTDOWN) {
                pthread_mutex_lock(&m->lock);
                l = lru_get(m->pages, key);
                if (l) {
                        *ret = meta_listing_ref(l);
                        m->stale_answers++;
                }
                pthread_mutex_unlock(&m->lock);
                return l ? 0 : -EIO;
        }
        if (r < 0)
                return r == -ENOENT || r == -ENOMEM ? r : -EIO;
        if (rep.body_len > 0 && rep.body[0] == '{') /* a master without format=binary */
                r = rep.json ? listing_from_json(rep.json, path, after, now, &l)
                             : log_warning_errno(EBADMSG, "Bad JSON listing for %s", path);
        else
                r = listing_from_wire(rep.body, rep.body_len, path, after, now, &l);
        httpc_response_done(&rep);
        if (r < 0)
                return r == -ENOMEM ? r : -EIO;
        if (l->more && l->n == 0) {
                meta_listing_unref(l);
                return log_warning_errno(EIO, "Empty page with a next from the master for %s",
                                         path);
        }
        pthread_mutex_lock(&m->lock);
        /* newer than what the stat cache holds of these children: drop what differs (pages
         * carry no ETag or store URL to replace it with; the next stat asks the master) */
        for (size_t i = 0; i < l->n && lru_entries(m->stats) > 0; i++) {
                const meta_entry *e = &l->entries[i];
                char child[8192];
                stat_item *st;

                if ((size_t)snprintf(child, sizeof(child), "%s%s%s", path,
                                     strcmp(path, "/") == 0 ? "" : "/", e->name) >= sizeof(child))
                        continue; /* longer than any path the kernel looks up */
                st = lru_get(m->stats, child);
                if (st && (st->entry.version != e->version || st->entry.size != e->size ||
                           st->entry.mtime != e->mtime || st->entry.dir != e->dir))
                        (void)lru_remove(m->stats, child);
        }
        (void)lru_put(m->pages, key, meta_listing_ref(l), listing_bytes(l));
        pthread_mutex_unlock(&m->lock);
        /* logged once cached: a test that saw this line finds the page in the cache */
        log_debug("Listed %s after '%s': %zu entries%s", path, after ? after : "", l->n,
                  l->more ? ", more to come" : "");
        *ret = l;
        return 0;
}

int meta_cached_page_of(meta *m, const char *dir, const char *name, meta_listing **ret,
                        size_t *ret_index)
{
        _cleanup_free_ char *after = NULL;
        uint64_t now = now_ms();
        int r = -ENOENT;

        pthread_mutex_lock(&m->lock);
        for (;;) {
                _cleanup_free_ char *key = page_key(dir, after);
                meta_listing *l = key ? lru_get(m->pages, key) : NULL;
                const meta_entry *e;

                if (!key) {
                        r = -ENOMEM;
                        break;
                }
                if (!l || now - l->fetched_ms >= m->opts.entry_timeout_ms)
                        break;
                if (l->n > 0 && strcmp(name, l->entries[l->n - 1].name) <= 0) {
                        e = meta_listing_find(l, name);
                        if (e) {
                                *ret = meta_listing_ref(l);
                                *ret_index = (size_t)(e - l->entries);
                                r = 0;
                        }
                        break; /* sorts within this page: absent is absent */
                }
                if (!l->more || l->n == 0)
                        break;
                free(after);
                after = strdup(l->entries[l->n - 1].name);
                if (!after) {
                        r = -ENOMEM;
                        break;
                }
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

bool meta_page_cached(meta *m, const char *dir, const char *after)
{
        _cleanup_free_ char *key = page_key(dir, after);
        meta_listing *l;
        bool fresh;

        if (!key)
                return false;
        pthread_mutex_lock(&m->lock);
        l = lru_get(m->pages, key);
        fresh = l && now_ms() - l->fetched_ms < m->opts.entry_timeout_ms;
        pthread_mutex_unlock(&m->lock);
        return fresh;
}

const meta_entry *meta_listing_find(const meta_listing *l, const char *name)
{
        size_t lo = 0, hi = l->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(l->entries[mid].name, name);

                if (c == 0)
                        return &l->entries[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int loc_compare(const void *a, const void *b)
{
        const struct meta_block_loc *x = a, *y = b;

        return x->index < y->index ? -1 : x->index > y->index;
}

static int parse_locations(json_t *j, meta_locations **ret)
{
        json_t *locs = json_object_get(j, "locations"), *nodes;
        meta_locations *l = calloc(1, sizeof(*l));
        const char *key;
        int r;

        if (!l)
                return -ENOMEM;
        l->refcount = 1;
        r = json_u64(j, "block_size", false, &l->block_size);
        if (r < 0 || (locs && !json_is_object(locs))) {
                meta_locations_unref(l);
                return -EBADMSG;
        }
        l->blocks = calloc(json_object_size(locs) + 1, sizeof(*l->blocks));
        if (!l->blocks) {
                meta_locations_unref(l);
                return -ENOMEM;
        }
        json_object_foreach(locs, key, nodes) {
                struct meta_block_loc *b = &l->blocks[l->n];
                char *end;
                unsigned long long idx;

                errno = 0;
                idx = strtoull(key, &end, 10);
                if (errno || *end || end == key || !json_is_array(nodes))
                        continue;
                b->index = idx;
                b->nodes = calloc(json_array_size(nodes) + 1, sizeof(char *));
                if (!b->nodes) {
                        meta_locations_unref(l);
                        return -ENOMEM;
                }
                l->n++;
                for (size_t i = 0; i < json_array_size(nodes); i++) {
                        const char *s = json_string_value(json_array_get(nodes, i));

                        if (s && !(b->nodes[b->n_nodes++] = strdup(s))) {
                                meta_locations_unref(l);
                                return -ENOMEM;
                        }
                }
        }
        qsort(l->blocks, l->n, sizeof(*l->blocks), loc_compare);
        *ret = l;
        return 0;
}

int meta_blocks(meta *m, uint64_t file_id, uint64_t version, meta_locations **ret)
{
        char query[128];
        uint64_t now = now_ms();
        meta_locations *l;
        blocks_item *b;
        json_t *j = NULL;
        int r;

        pthread_mutex_lock(&m->lock);
        b = hmap_get_u64(&m->blocks, file_id);
        if (b && b->version == version && now - b->loc->fetched_ms < META_BLOCKS_TTL_MS) {
                __atomic_add_fetch(&b->loc->refcount, 1, __ATOMIC_RELAXED);
                *ret = b->loc;
                pthread_mutex_unlock(&m->lock);
                return 0;
        }
        pthread_mutex_unlock(&m->lock);

        snprintf(query, sizeof(query), "/v1/blocks?file=%" PRIu64 "&version=%" PRIu64, file_id,
                 version);
        r = meta_call(m, query, &j);
        if (r == -EHOSTDOWN) {
                /* the last locations we had: workers may still hold those blocks */
                pthread_mutex_lock(&m->lock);
                b = hmap_get_u64(&m->blocks, file_id);
                if (b && b->version == version) {
                        __atomic_add_fetch(&b->loc->refcount, 1, __ATOMIC_RELAXED);
                        *ret = b->loc;
                        r = 0;
                }
                pthread_mutex_unlock(&m->lock);
                return r;
        }
        if (r < 0)
                return r;
        r = parse_locations(j, &l);
        json_decref(j);
        if (r < 0)
                return log_warning_errno(r, "Bad block locations from the master: %m");
        l->fetched_ms = now;

        pthread_mutex_lock(&m->lock);
        b = hmap_get_u64(&m->blocks, file_id);
        if (!b && (b = calloc(1, sizeof(*b))) && hmap_put_u64(&m->blocks, file_id, b, NULL) < 0) {
                free(b);
                b = NULL;
        }
        if (b) {
                meta_locations_unref(b->loc);
                b->file_id = file_id;
                b->version = version;
                b->loc = l;
                __atomic_add_fetch(&l->refcount, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&m->lock);
        *ret = l;
        return 0;
}

void meta_blocks_forget(meta *m, uint64_t file_id, uint64_t version)
{
        blocks_item *b;

        pthread_mutex_lock(&m->lock);
        b = hmap_get_u64(&m->blocks, file_id);
        if (b && b->version == version) {
                hmap_remove_u64(&m->blocks, file_id);
                meta_locations_unref(b->loc);
                free(b);
        }
        pthread_mutex_unlock(&m->lock);
}

int meta_dataset(meta *m, meta_dataset_info *ret)
{
        _cleanup_free_ char *query = NULL;
        json_t *j = NULL;
        int r;

        if (asprintf(&query, "/v1/datasets/%s", m->dataset_escaped) < 0)
                return -ENOMEM;
        r = meta_call(m, query, &j);
        if (r < 0)
                return r;
        *ret = (meta_dataset_info){};
        (void)json_u64(j, "ufs_total_size", false, &ret->total_size);
        (void)json_u64(j, "total_files", false, &ret->total_files);
        (void)json_u64(j, "cached", false, &ret->cached);
        if (m->opts.node)
                (void)json_u64(json_object_get(j, "cached_by_node"), m->opts.node, false,
                               &ret->cached_here);
        json_decref(j);
        return 0;
}

void meta_get_counters(meta *m, meta_counters *ret)
{
        pthread_mutex_lock(&m->lock);
        *ret = m->counters;
        ret->stat_cached = lru_entries(m->stats);
        ret->pages_cached = lru_entries(m->pages);
        ret->page_bytes = lru_bytes(m->pages);
        ret->page_evictions = lru_evictions(m->pages);
        pthread_mutex_unlock(&m->lock);
}
