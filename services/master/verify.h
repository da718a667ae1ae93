/* Which worker checks a file against its content hash once the file is cached whole across the
 * cluster (docs/stores.md, "Content hashes"). Soft state only: nothing is recorded. */
#pragma once

#include <jansson.h>

#include "fsm.h"
#include "locations.h"

/* Called by the leader for a heartbeat of NODE once its ADDED blocks are recorded (state_lock
 * held): the files whose ETag is a content MD5 that these blocks made whole on the live workers
 * (seen within DEAD_S of NOW), when NODE does not hold all of their blocks itself (then its own
 * check ran when it cached the last one). Returns a new array of the block ids of their block 0,
 * what the heartbeat's answer names in "verify" (at most 16; NULL only when out of memory). */
json_t *verify_due_locked(fsm *f, const locations *l, const char *node, const json_t *added,
                          double now, double dead_s);
