/* weir's Raft transport: libraft's TCP streams, handed over only after a mutual handshake. */
#pragma once

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "handshake.h"

/* Limits; see docs/master.md. */
#define TRANSPORT_HANDSHAKE_TIMEOUT_MS 2000 /* whole handshake, both directions */
#define TRANSPORT_MAX_PENDING          64   /* unauthenticated inbound connections at once */
#define TRANSPORT_MAX_PENDING_PER_IP   8

/* The cluster secret: spec.raft.secretFile, else the cluster token (may be NULL). Fills KEY and
 * sets *RET_KEYED (false: no secret anywhere, the handshake then proves nothing). Logs. */
int transport_load_key(const config *cfg, const char *token, uint8_t key[HS_KEY_BYTES],
                       bool *ret_keyed);

/* Sets T up for raft_uv_init(). Only the masters of *CFGP are accepted (by raft id, claimed
 * address and, where the YAML names an IP address, the connection's source address); *CFGP is
 * read again on the loop thread at each new connection, so a reloaded config takes effect (host
 * names are resolved when a config is first seen). CFGP must outlive T. */
int transport_init(struct raft_uv_transport *t, uv_loop_t *loop, const config *const *cfgp,
                   const uint8_t key[HS_KEY_BYTES]);
/* Whether libraft got as far as asking T to listen (raft_start loads the log before that). */
bool transport_listen_called(const struct raft_uv_transport *t);
/* Frees T's memory; after raft_uv_close() (libraft calls T's close first) or instead of it when
 * raft_uv_init() was never called. */
void transport_free(struct raft_uv_transport *t);
