/* The cluster's epoch (epoch.c): proposed by the first serving leader, replicated. */
#pragma once

#include <inttypes.h>
#include <stdint.h>

#include "manager.h"

/* Loop thread: proposes a random epoch when this node serves as leader and the replicated state
 * has none yet (called on becoming leader and on every tick until one is recorded). */
void epoch_ensure(manager *m);

/* Any thread: the recorded epoch, 0 while there is none. */
uint64_t epoch_get(manager *m);
