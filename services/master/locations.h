/* The leader's soft state: which worker holds which block, the workers' last reports and the
 * FUSE daemons' heartbeats. Nothing here goes through Raft: a new leader starts empty and the
 * workers' next registrations (a full block report each) rebuild it (docs/design.md).
 *
 * Not thread-safe: the caller holds the manager's state_lock around every call (the API threads
 * read and change it; the loop thread resets it when leadership is lost). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "block.h"

typedef struct locations locations;

/* What the leader knows of one registered worker. */
typedef struct locations_worker {
        char *node;
        double seen;    /* wall-clock seconds of the last registration or heartbeat */
        json_t *tiers;  /* as the worker last reported them (an array; never NULL) */
        json_t *hits;   /* as reported: an integer, or NULL when the worker sent none */
        json_t *misses; /* likewise */
        size_t n_blocks;
} locations_worker;

/* The last heartbeat of one FUSE daemon of one dataset. */
typedef struct locations_fuse {
        char *node;
        char *dataset;
        json_t *mountpoint;
        uint64_t files;
        double seen;
} locations_fuse;

locations *locations_new(void);
locations *locations_free(locations *l);
/* Forgets everything (this node is no longer the leader). */
void locations_reset(locations *l);

/* NODE registered (again): its earlier record and blocks are forgotten; TIERS, HITS and MISSES
 * (borrowed; NULL for none) are kept. 0 or -ENOMEM (then NODE is not registered). */
int locations_worker_register(locations *l, const char *node, double seen, json_t *tiers,
                              json_t *hits, json_t *misses);
/* A heartbeat of NODE: SEEN, and TIERS, HITS, MISSES where not NULL. -ENOENT for a node that is
 * not registered (with this leader). */
int locations_worker_heartbeat(locations *l, const char *node, double seen, json_t *tiers,
                               json_t *hits, json_t *misses);
/* NODE holds (ADD) or no longer holds block ID. -EINVAL for a malformed ID, -ENOENT for an
 * unregistered NODE, -ENOMEM. Adding a block held already and removing one not held are 0. */
int locations_block_set(locations *l, const char *node, const char *id, bool add);

/* NULL when NODE is not registered. */
const locations_worker *locations_worker_get(const locations *l, const char *node);
size_t locations_n_workers(const locations *l);
typedef void (*locations_worker_fn)(const locations_worker *w, void *userdata);
void locations_foreach_worker(const locations *l, locations_worker_fn fn, void *userdata);

/* Every file version some worker holds blocks of. */
typedef void (*locations_version_fn)(uint64_t file_id, uint64_t version, void *userdata);
void locations_foreach_version(const locations *l, locations_version_fn fn, void *userdata);
/* Every (block index, holder) of one file version. */
typedef void (*locations_holder_fn)(uint64_t index, const locations_worker *w, void *userdata);
void locations_foreach_holder(const locations *l, uint64_t file_id, uint64_t version,
                              locations_holder_fn fn, void *userdata);

/* The heartbeat of NODE's FUSE daemon of DATASET; MOUNTPOINT borrowed. 0 or -ENOMEM. */
int locations_fuse_seen(locations *l, const char *node, const char *dataset, json_t *mountpoint,
                        uint64_t files, double seen);
typedef void (*locations_fuse_fn)(const locations_fuse *f, void *userdata);
void locations_foreach_fuse(const locations *l, locations_fuse_fn fn, void *userdata);
