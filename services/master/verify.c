/* The leader picks who verifies a file against its content hash (verify.h). A file spread over
 * several workers is whole nowhere, so no worker's own check (the worker's content.c) sees it;
 * the leader sees every block report and can tell the moment a heartbeat completes a file: it
 * asks that worker, in the heartbeat's answer, to hash the file's blocks, reading the others'
 * from their holders. Exactly one worker is asked per completion, none on registrations (a
 * failover would otherwise re-check every cached file). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "cleanup.h"
#include "etag.h"
#include "verify.h"

#define VERIFY_MAX_VERSIONS   64    /* recent file versions remembered per heartbeat */
#define VERIFY_MAX_PER_ANSWER 16    /* a worker checks one file at a time anyway */
#define VERIFY_MAX_BLOCKS     65536 /* as the worker's limit: larger files are not checked */

enum {
        COVER_LIVE = 1,  /* some live worker holds the block */
        COVER_NODE = 2,  /* the heartbeating worker holds it */
        COVER_ADDED = 4, /* ... and reported it in this heartbeat */
        COVER_OTHER = 8, /* a live worker other than it holds it */
};

typedef struct cover {
        uint64_t n;
        uint8_t *bits; /* per block index */
        const char *node;
        double now, dead_s;
} cover;

static void cover_holder(uint64_t index, const locations_worker *w, void *userdata)
{
        cover *c = userdata;

        if (index >= c->n || c->now - w->seen > c->dead_s)
                return;
        c->bits[index] |= COVER_LIVE;
        c->bits[index] |= strcmp(w->node, c->node) == 0 ? COVER_NODE : COVER_OTHER;
}

typedef struct others {
        const char *node;
        double now, dead_s;
        bool any;
} others;

static void other_holder(uint64_t index, const locations_worker *w, void *userdata)
{
        others *o = userdata;

        if (o->now - w->seen <= o->dead_s && strcmp(w->node, o->node) != 0)
                o->any = true;
}

/* Whether the version FIRST names (index 0) is whole on the live workers because of NODE's
 * blocks ADDED now, and NODE does not hold it all. */
static bool completed_by(fsm *f, const locations *l, const block_key *first, const char *node,
                         const json_t *added, double now, double dead_s)
{
        json_t *file = NULL;
        uint8_t md5[ETAG_MD5_LEN];
        bool due = false, node_all = true, by_added = false;
        others o = {.node = node, .now = now, .dead_s = dead_s};

        /* In memory first: with no other live holder, NODE holds it all or it is not whole (a
         * load of many small files, each whole on one worker, costs no database read). */
        locations_foreach_holder(l, first->file_id, first->version, other_holder, &o);
        if (!o.any || fsm_file(f, first->file_id, &file) < 0)
                return false;
        json_int_t version = json_integer_value(json_object_get(file, "version"));
        json_int_t size = json_integer_value(json_object_get(file, "size"));
        json_int_t block_size = json_integer_value(json_object_get(file, "block_size"));
        const char *etag = json_string_value(json_object_get(file, "etag"));
        uint64_t n =
                size >= 0 && block_size > 0 ? block_count((uint64_t)size, (uint64_t)block_size) : 0;

        if (version > 0 && (uint64_t)version == first->version && etag_content_md5(etag, md5) &&
            n > 0 && n <= VERIFY_MAX_BLOCKS) {
                cover c = {
                        .n = n, .bits = calloc(n, 1), .node = node, .now = now, .dead_s = dead_s};
                size_t i;
                json_t *v;

                if (c.bits) {
                        locations_foreach_holder(l, first->file_id, first->version, cover_holder,
                                                 &c);
                        json_array_foreach(added, i, v) {
                                block_key k;

                                if (block_id_parse(json_string_value(v), &k) >= 0 &&
                                    k.epoch == first->epoch && k.file_id == first->file_id &&
                                    k.version == first->version && k.index < n)
                                        c.bits[k.index] |= COVER_ADDED;
                        }
                        due = true;
                        for (uint64_t j = 0; j < n; j++) {
                                if (!(c.bits[j] & COVER_LIVE))
                                        due = false;
                                if (!(c.bits[j] & COVER_NODE))
                                        node_all = false;
                                /* Only NODE holds it and reported it now: before this heartbeat
                                 * the file was not whole, so this heartbeat completed it. */
                                if ((c.bits[j] & COVER_ADDED) && !(c.bits[j] & COVER_OTHER))
                                        by_added = true;
                        }
                        free(c.bits);
                }
        }
        json_decref(file);
        return due && by_added && !node_all;
}

json_t *verify_due_locked(fsm *f, const locations *l, const char *node, const json_t *added,
                          double now, double dead_s)
{
        json_t *out = json_array();
        block_key seen[VERIFY_MAX_VERSIONS];
        size_t n_seen = 0, i;
        json_t *v;
        uint64_t epoch = fsm_epoch(f);

        if (!out || epoch == 0)
                return out;
        json_array_foreach(added, i, v) {
                block_key k;
                bool dup = false;
                char id[BLOCK_ID_MAX];
                size_t j2;
                json_t *o;

                if (block_id_parse(json_string_value(v), &k) < 0 || k.epoch != epoch)
                        continue;
                for (size_t j = 0; j < MIN(n_seen, (size_t)VERIFY_MAX_VERSIONS) && !dup; j++)
                        dup = seen[j].file_id == k.file_id && seen[j].version == k.version;
                if (dup)
                        continue;
                if (json_array_size(out) == VERIFY_MAX_PER_ANSWER)
                        break;
                k.index = 0;
                seen[n_seen++ % VERIFY_MAX_VERSIONS] = k;
                if (!completed_by(f, l, &k, node, added, now, dead_s))
                        continue;
                /* A version met again after it left the ring of recent ones: listed once. */
                block_id_format(id, &k);
                json_array_foreach(out, j2, o)
                        if (strcmp(json_string_value(o), id) == 0)
                                dup = true;
                if (!dup)
                        json_array_append_new(out, json_string(id));
        }
        return out;
}
