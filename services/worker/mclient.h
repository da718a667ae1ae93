/* The worker's view of the masters: which to ask, following the leader across failovers. */
#pragma once

#include "config.h"
#include "httpc.h"

typedef struct mclient mclient;

/* The masters of CFG (borrowed); TOKEN (copied, may be NULL) is sent with every request. */
int mclient_new(const config *cfg, const char *token, mclient **ret);
mclient *mclient_free(mclient *m);

/* A client for one thread: timeouts and token set. NULL on OOM. */
httpc *mclient_httpc(mclient *m);

/* Sends PATH ("/v1/...") to the leader: the last master that answered first, then every other
 * one; a follower's 307 is followed by httpc. A master that is unreachable or answers 503 (no
 * leader yet) makes it try the next one. 0 and *ret when some master answered otherwise, else
 * the last -errno (-EAGAIN for 503 everywhere). */
int mclient_request(mclient *m, httpc *c, const char *method, const char *path, const json_t *body,
                    httpc_response *ret);
