/* Content checks of files spread over several workers (docs/stores.md, "Content hashes"): the
 * master names, in a heartbeat's answer, the files this worker's blocks just made whole across
 * the cluster; this worker hashes their blocks in order, its own from the tiers and the others'
 * from their holders (GET ?cache=only, which never fills), and compares with the MD5 ETag. On a
 * mismatch every worker of the YAML is told (POST /v1/content/mismatch): each marks the version
 * (fill_mark_mismatch: never filled again there) and drops its blocks. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "fill.h"
#include "httpd.h"
#include "mclient.h"
#include "store.h"

typedef struct content_peers content_peers;

/* What the checks use; every pointer must outlive content_peers_stop(). */
typedef struct content_peers_context {
        const config *cfg;
        const config_node *node; /* this worker */
        const char *token;       /* cluster token, NULL for none */
        store *store;
        fill_guard *fill;
        mclient *mclient;
        /* The file's metadata from the master (the worker's resolver); called on this module's
         * thread only. */
        int (*resolve)(void *userdata, uint64_t file_id, fill_file *ret);
        void *userdata;
} content_peers_context;

int content_peers_start(const content_peers_context *ctx, content_peers **ret);
/* Stops the thread (a check in progress ends after its current block). Accepts NULL. */
content_peers *content_peers_stop(content_peers *p);

/* The master's "verify" list (block ids of block 0; anything else is ignored): queued, at most
 * 4096 waiting (more are dropped with a debug line: the master asks again when a file becomes
 * whole again). P may be NULL. */
void content_peers_request(content_peers *p, const json_t *verify);

/* A fill_mismatch_fn: this worker's own check failed; tell the other workers (queued). */
void content_peers_local_mismatch(void *userdata, const store_key *first, uint64_t n_blocks,
                                  const char *path);

/* POST /v1/content/mismatch: {"file":BLOCK_ID of block 0,"blocks":N (1..65536),"path"?:STRING}
 * → {"dropped":K}. Marks the version and drops this worker's blocks 0..N-1 of it. */
void content_peers_handle_mismatch(content_peers *p, httpd_request *req);
