/* The tiered store's levels as JSON, for registration, heartbeats and GET /v1/status. */
#include <assert.h>

#include "tiers.h"

json_t *tiers_json(store *s)
{
        store_stats st;
        json_t *a = json_array();

        assert(s);
        store_get_stats(s, &st);
        for (size_t i = 0; a && i < st.n_levels; i++)
                json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:I,s:I}", "medium",
                                                   config_medium_to_string(st.levels[i].medium),
                                                   "path", st.levels[i].dir, "quota",
                                                   (json_int_t)st.levels[i].quota, "used",
                                                   (json_int_t)st.levels[i].used, "blocks",
                                                   (json_int_t)st.levels[i].blocks));
        return a;
}
