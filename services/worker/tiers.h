/* The tiered store as the master and operators see it: the JSON of its levels. */
#pragma once

#include <jansson.h>

#include "store.h"

/* [{"medium","path","quota","used","blocks"}] of S's levels; NULL on OOM. */
json_t *tiers_json(store *s);
