/* Checks of the JSON bodies the cluster API accepts (docs/api.md), without a server: the
 * handlers call them before they act, the fuzz target calls them on anything. Bodies come from
 * the network: every size is bounded, every type checked. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define APIBODY_MAX_BLOCK_REPORT (1u << 20) /* block ids in one registration or heartbeat */
#define APIBODY_MAX_NAME         255
#define APIBODY_MAX_PATHS        10000 /* paths or files in one load request */
#define APIBODY_MAX_MOUNTPOINT   4096

/* A request body as httpd takes it: a JSON object, duplicate keys refused; an empty body is an
 * empty object. 0 and a new reference, or -EINVAL with a message in ERR (SIZE bytes). */
int apibody_parse(const char *body, size_t len, json_t **ret, char *err, size_t size);

/* Each returns NULL when BODY is acceptable, else the message for the 400 answer. */
const char *apibody_worker_register(const json_t *body);  /* POST /v1/workers */
const char *apibody_worker_heartbeat(const json_t *body); /* POST /v1/workers/N/heartbeat */
const char *apibody_fuse_heartbeat(const json_t *body);   /* POST /v1/fuses/N/D/heartbeat */
const char *apibody_label(const json_t *body);            /* PUT .../labels/KEY */
const char *apibody_load(const json_t *body);             /* worker POST /v1/load */
