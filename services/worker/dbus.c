/* io.weir.Worker1 at /io/weir/Worker1 on the system bus, when there is one: tiers, capacity,
 * used, blocks; method Free(bytes) drops cached blocks. A missing bus is not an error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "dbus.h"
#include "worker-state.h"

#define DBUS_NAME      "io.weir.Worker1"
#define DBUS_PATH      "/io/weir/Worker1"
#define DBUS_INTERFACE "io.weir.Worker1"

static int prop_tiers(sd_bus *bus, const char *path, const char *interface, const char *property,
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        worker *w = userdata;
        store_stats st;
        int r;

        store_get_stats(w->store, &st);
        r = sd_bus_message_open_container(reply, 'a', "(sstt)");
        for (size_t i = 0; r >= 0 && i < st.n_levels; i++)
                r = sd_bus_message_append(reply, "(sstt)",
                                          config_medium_to_string(st.levels[i].medium),
                                          st.levels[i].dir, st.levels[i].quota, st.levels[i].used);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int prop_u64(sd_bus *bus, const char *path, const char *interface, const char *property,
                    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        worker *w = userdata;
        store_stats st;
        uint64_t v = 0;

        store_get_stats(w->store, &st);
        if (strcmp(property, "Capacity") == 0)
                v = st.quota;
        else if (strcmp(property, "Used") == 0)
                v = st.used;
        else if (strcmp(property, "Blocks") == 0)
                v = st.blocks;
        else if (strcmp(property, "Hits") == 0)
                v = __atomic_load_n(&w->hits, __ATOMIC_RELAXED);
        else if (strcmp(property, "Misses") == 0)
                v = __atomic_load_n(&w->misses, __ATOMIC_RELAXED);
        return sd_bus_message_append(reply, "t", v);
}

static int prop_node(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        worker *w = userdata;

        return sd_bus_message_append(reply, "s", w->node->name);
}

/* False while no master answers: the cache is served as it is, misses of files whose metadata
 * the worker never had fail (docs/worker.md). */
static int prop_registered(sd_bus *bus, const char *path, const char *interface,
                           const char *property, sd_bus_message *reply, void *userdata,
                           sd_bus_error *error)
{
        worker *w = userdata;

        return sd_bus_message_append(reply, "b", w->reg ? (int)reg_registered(w->reg) : 0);
}

static int method_free(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        worker *w = userdata;
        uint64_t bytes;
        int r;

        r = sd_bus_message_read(m, "t", &bytes);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "t", store_drop(w->store, bytes));
}

static const sd_bus_vtable worker_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Node", "s", prop_node, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Tiers", "a(sstt)", prop_tiers, 0, 0),
        SD_BUS_PROPERTY("Capacity", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Used", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Blocks", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Hits", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Misses", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Registered", "b", prop_registered, 0, 0),
        /* Free(bytes): drop unpinned blocks, least recently used first, until BYTES are freed
         * (0: all); returns the bytes freed. Privileged (sd-bus: same user or CAP_SYS_ADMIN). */
        SD_BUS_METHOD("Free", "t", "t", method_free, 0),
        SD_BUS_VTABLE_END,
};

int dbus_setup(worker *w)
{
        int r;

        r = sd_bus_open_system(&w->bus);
        if (r < 0) {
                log_info_errno(r, "No system bus (%m), not publishing " DBUS_NAME);
                w->bus = NULL;
                return 0;
        }
        /* A bus whose policy drops our replies must not hold the start for sd-bus' 25 s. */
        (void)sd_bus_set_method_call_timeout(w->bus, 2 * 1000 * 1000);
        r = sd_bus_add_object_vtable(w->bus, &w->bus_slot, DBUS_PATH, DBUS_INTERFACE, worker_vtable,
                                     w);
        if (r >= 0) {
                /* Before attaching: a refused name (policy) is survived, the object stays. */
                int q = sd_bus_request_name(w->bus, DBUS_NAME, 0);

                if (q < 0)
                        log_warning_errno(q, "Failed to own " DBUS_NAME " (%m; bus policy?), "
                                             "ignoring");
                r = sd_bus_attach_event(w->bus, w->event, SD_EVENT_PRIORITY_NORMAL);
        }
        if (r < 0) {
                log_warning_errno(r, "Failed to publish " DBUS_PATH " (%m), ignoring");
                w->bus_slot = sd_bus_slot_unref(w->bus_slot);
                w->bus = sd_bus_flush_close_unref(w->bus);
        }
        return 0;
}
