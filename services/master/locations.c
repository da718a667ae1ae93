/* The leader's soft state (see locations.h): three typed tables.
 *
 *   workers:  node -> worker_rec, with the set of block ids it holds
 *   versions: "FILE-VERSION" -> version_rec: block index -> the workers holding it
 *   fuses:    "NODE/DATASET" -> fuse_rec
 *
 * A block is in a worker's set exactly when that worker is among its index's holders; every
 * change keeps both sides (asserted). Versions are keyed by file and version only: the API
 * records only blocks of the cluster's current epoch (block.h), so no two epochs meet here. Not thread-safe: the manager's state_lock guards it. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "hmap.h"
#include "locations.h"

typedef struct block_ref {
        char id[BLOCK_ID_MAX]; /* the set's key, in block_id_format()'s spelling */
} block_ref;

typedef struct worker_rec {
        locations_worker pub;
        hmap blocks; /* block id -> block_ref */
} worker_rec;

typedef struct holders {
        uint64_t index;
        size_t n;
        worker_rec **w;
} holders;

typedef struct version_rec {
        char key[48]; /* "FILE-VERSION" */
        uint64_t file_id, version;
        hmap indexes; /* index -> holders */
} version_rec;

typedef struct fuse_rec {
        char *key; /* "NODE/DATASET" */
        locations_fuse pub;
} fuse_rec;

struct locations {
        hmap workers;  /* node -> worker_rec */
        hmap versions; /* "FILE-VERSION" -> version_rec */
        hmap fuses;    /* "NODE/DATASET" -> fuse_rec */
};

static void version_key(char buf[static 48], uint64_t file_id, uint64_t version)
{
        snprintf(buf, 48, "%" PRIu64 "-%" PRIu64, file_id, version);
}

static void version_free(version_rec *v)
{
        size_t it;

        for (hmap_node *n = hmap_first(&v->indexes, &it); n; n = hmap_next(&v->indexes, n, &it)) {
                holders *h = n->value;

                free(h->w);
                free(h);
        }
        hmap_done(&v->indexes);
        free(v);
}

static void worker_free_rec(worker_rec *w)
{
        size_t it;

        for (hmap_node *n = hmap_first(&w->blocks, &it); n; n = hmap_next(&w->blocks, n, &it))
                free(n->value);
        hmap_done(&w->blocks);
        json_decref(w->pub.tiers);
        json_decref(w->pub.hits);
        json_decref(w->pub.misses);
        free(w->pub.node);
        free(w);
}

static void fuse_free_rec(fuse_rec *f)
{
        json_decref(f->pub.mountpoint);
        free(f->pub.node);
        free(f->pub.dataset);
        free(f->key);
        free(f);
}

locations *locations_new(void)
{
        locations *l = calloc(1, sizeof(*l));

        if (!l)
                return NULL;
        hmap_init(&l->workers, true);
        hmap_init(&l->versions, true);
        hmap_init(&l->fuses, true);
        return l;
}

void locations_reset(locations *l)
{
        size_t it;

        assert(l);
        for (hmap_node *n = hmap_first(&l->versions, &it); n; n = hmap_next(&l->versions, n, &it))
                version_free(n->value);
        for (hmap_node *n = hmap_first(&l->workers, &it); n; n = hmap_next(&l->workers, n, &it))
                worker_free_rec(n->value);
        for (hmap_node *n = hmap_first(&l->fuses, &it); n; n = hmap_next(&l->fuses, n, &it))
                fuse_free_rec(n->value);
        hmap_done(&l->versions);
        hmap_done(&l->workers);
        hmap_done(&l->fuses);
        hmap_init(&l->workers, true);
        hmap_init(&l->versions, true);
        hmap_init(&l->fuses, true);
}

locations *locations_free(locations *l)
{
        if (!l)
                return NULL;
        locations_reset(l);
        free(l);
        return NULL;
}

/* Takes W out of the holders of block K (W's own set is the caller's). */
static void holders_remove(locations *l, worker_rec *w, const block_key *k)
{
        char key[48];
        version_rec *v;
        holders *h;

        version_key(key, k->file_id, k->version);
        v = hmap_get_str(&l->versions, key);
        h = v ? hmap_get_u64(&v->indexes, k->index) : NULL;
        assert(h); /* the worker's set said it holds K */
        for (size_t i = 0; i < h->n; i++)
                if (h->w[i] == w) {
                        h->w[i] = h->w[--h->n];
                        break;
                }
        if (h->n == 0) {
                hmap_remove_u64(&v->indexes, k->index);
                free(h->w);
                free(h);
        }
        if (v->indexes.n == 0) {
                hmap_remove_str(&l->versions, v->key);
                version_free(v);
        }
}

/* Forgets worker W and every block it held. */
static void worker_forget(locations *l, worker_rec *w)
{
        size_t it;

        for (hmap_node *n = hmap_first(&w->blocks, &it); n; n = hmap_next(&w->blocks, n, &it)) {
                const block_ref *b = n->value;
                block_key k;
                int r = block_id_parse(b->id, &k);

                assert(r >= 0); /* only parsed ids enter the set */
                (void)r;
                holders_remove(l, w, &k);
        }
        hmap_remove_str(&l->workers, w->pub.node);
        worker_free_rec(w);
}

int locations_worker_register(locations *l, const char *node, double seen, json_t *tiers,
                              json_t *hits, json_t *misses)
{
        worker_rec *w, *old;

        assert(l && node);
        old = hmap_get_str(&l->workers, node);
        if (old)
                worker_forget(l, old);
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        hmap_init(&w->blocks, true);
        w->pub.node = strdup(node);
        w->pub.tiers = tiers ? json_incref(tiers) : json_array();
        if (!w->pub.node || !w->pub.tiers) {
                worker_free_rec(w);
                return -ENOMEM;
        }
        w->pub.seen = seen;
        w->pub.hits = json_incref(hits);
        w->pub.misses = json_incref(misses);
        if (hmap_put_str(&l->workers, w->pub.node, w, NULL) < 0) {
                worker_free_rec(w);
                return -ENOMEM;
        }
        return 0;
}

int locations_worker_heartbeat(locations *l, const char *node, double seen, json_t *tiers,
                               json_t *hits, json_t *misses)
{
        worker_rec *w;

        assert(l && node);
        w = hmap_get_str(&l->workers, node);
        if (!w)
                return -ENOENT;
        w->pub.seen = seen;
        if (tiers) {
                json_decref(w->pub.tiers);
                w->pub.tiers = json_incref(tiers);
        }
        if (hits) {
                json_decref(w->pub.hits);
                w->pub.hits = json_incref(hits);
        }
        if (misses) {
                json_decref(w->pub.misses);
                w->pub.misses = json_incref(misses);
        }
        return 0;
}

/* Undoes what a failed block_add created: H and V when they hold nothing. Returns -ENOMEM. */
static int block_add_undo(locations *l, version_rec *v, holders *h, uint64_t index)
{
        if (h && h->n == 0) {
                hmap_remove_u64(&v->indexes, index);
                free(h->w);
                free(h);
        }
        if (v->indexes.n == 0) {
                hmap_remove_str(&l->versions, v->key);
                version_free(v);
        }
        return -ENOMEM;
}

static int block_add(locations *l, worker_rec *w, const block_key *k, const char *id)
{
        char key[48];
        version_rec *v;
        holders *h;
        block_ref *b;
        worker_rec **grown;

        if (hmap_get_str(&w->blocks, id))
                return 0;
        version_key(key, k->file_id, k->version);
        v = hmap_get_str(&l->versions, key);
        if (!v) {
                v = calloc(1, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                memcpy(v->key, key, sizeof(key));
                v->file_id = k->file_id;
                v->version = k->version;
                hmap_init(&v->indexes, false);
                if (hmap_put_str(&l->versions, v->key, v, NULL) < 0) {
                        version_free(v);
                        return -ENOMEM;
                }
        }
        h = hmap_get_u64(&v->indexes, k->index);
        if (!h) {
                h = calloc(1, sizeof(*h));
                if (!h || hmap_put_u64(&v->indexes, k->index, h, NULL) < 0) {
                        free(h);
                        return block_add_undo(l, v, NULL, k->index);
                }
                h->index = k->index;
        }
        b = calloc(1, sizeof(*b));
        grown = realloc(h->w, (h->n + 1) * sizeof(*h->w));
        if (grown)
                h->w = grown;
        if (!b || !grown) {
                free(b);
                return block_add_undo(l, v, h, k->index);
        }
        memcpy(b->id, id, sizeof(b->id));
        if (hmap_put_str(&w->blocks, b->id, b, NULL) < 0) {
                free(b);
                return block_add_undo(l, v, h, k->index);
        }
        h->w[h->n++] = w;
        w->pub.n_blocks++;
        return 0;
}

int locations_block_set(locations *l, const char *node, const char *id, bool add)
{
        char canon[BLOCK_ID_MAX];
        worker_rec *w;
        block_ref *b;
        block_key k;

        assert(l && node);
        if (!id || block_id_parse(id, &k) < 0)
                return -EINVAL;
        w = hmap_get_str(&l->workers, node);
        if (!w)
                return -ENOENT;
        block_id_format(canon, &k);
        if (add)
                return block_add(l, w, &k, canon);
        b = hmap_remove_str(&w->blocks, canon);
        if (!b)
                return 0;
        free(b);
        assert(w->pub.n_blocks > 0);
        w->pub.n_blocks--;
        holders_remove(l, w, &k);
        return 0;
}

const locations_worker *locations_worker_get(const locations *l, const char *node)
{
        worker_rec *w = hmap_get_str(&l->workers, node);

        return w ? &w->pub : NULL;
}

size_t locations_n_workers(const locations *l)
{
        return l->workers.n;
}

void locations_foreach_worker(const locations *l, locations_worker_fn fn, void *userdata)
{
        size_t it;

        for (hmap_node *n = hmap_first(&l->workers, &it); n; n = hmap_next(&l->workers, n, &it))
                fn(&((worker_rec *)n->value)->pub, userdata);
}

void locations_foreach_version(const locations *l, locations_version_fn fn, void *userdata)
{
        size_t it;

        for (hmap_node *n = hmap_first(&l->versions, &it); n; n = hmap_next(&l->versions, n, &it)) {
                const version_rec *v = n->value;

                fn(v->file_id, v->version, userdata);
        }
}

void locations_foreach_holder(const locations *l, uint64_t file_id, uint64_t version,
                              locations_holder_fn fn, void *userdata)
{
        char key[48];
        version_rec *v;
        size_t it;

        version_key(key, file_id, version);
        v = hmap_get_str(&l->versions, key);
        if (!v)
                return;
        for (hmap_node *n = hmap_first(&v->indexes, &it); n; n = hmap_next(&v->indexes, n, &it)) {
                const holders *h = n->value;

                for (size_t i = 0; i < h->n; i++)
                        fn(h->index, &h->w[i]->pub, userdata);
        }
}

int locations_fuse_seen(locations *l, const char *node, const char *dataset, json_t *mountpoint,
                        uint64_t files, double seen)
{
        _cleanup_free_ char *key = NULL;
        fuse_rec *f;

        assert(l && node && dataset);
        if (asprintf(&key, "%s/%s", node, dataset) < 0)
                return -ENOMEM;
        f = hmap_get_str(&l->fuses, key);
        if (!f) {
                f = calloc(1, sizeof(*f));
                if (!f)
                        return -ENOMEM;
                f->key = TAKE_PTR(key);
                f->pub.node = strdup(node);
                f->pub.dataset = strdup(dataset);
                if (!f->pub.node || !f->pub.dataset ||
                    hmap_put_str(&l->fuses, f->key, f, NULL) < 0) {
                        fuse_free_rec(f);
                        return -ENOMEM;
                }
        }
        json_decref(f->pub.mountpoint);
        f->pub.mountpoint = json_incref(mountpoint);
        f->pub.files = files;
        f->pub.seen = seen;
        return 0;
}

void locations_foreach_fuse(const locations *l, locations_fuse_fn fn, void *userdata)
{
        size_t it;

        for (hmap_node *n = hmap_first(&l->fuses, &it); n; n = hmap_next(&l->fuses, n, &it))
                fn(&((fuse_rec *)n->value)->pub, userdata);
}
