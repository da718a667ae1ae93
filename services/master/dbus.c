/* io.weir.Master1 on the system bus: role, term, leader, masters; TransferLeadership. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "dbus.h"
#include "manager-internal.h"

#define DBUS_NAME      "io.weir.Master1"
#define DBUS_PATH      "/io/weir/Master1"
#define DBUS_INTERFACE "io.weir.Master1"

static int prop_node(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->node->name);
}

static int prop_role(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s",
                                     manager_role_name(manager_get_view(userdata).role));
}

static int prop_term(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "t", manager_get_view(userdata).term);
}

static int prop_applied(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "t", manager_get_view(userdata).applied);
}

static int prop_serving(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "b", (int)manager_get_view(userdata).serving);
}

static int prop_leader(sd_bus *bus, const char *path, const char *interface, const char *property,
                       sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        manager *m = userdata;
        const config_node *l = manager_master_node(m, manager_get_view(m).leader_id);
        return sd_bus_message_append(reply, "s", l ? l->name : "");
}

/* a(ss): every master's node name and API address. */
static int prop_masters(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        manager *m = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "(ss)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                const config_node *n = &m->cfg->nodes[i];
                char api[300];
                if (!n->master)
                        continue;
                manager_api_address(m, n->raft_id, api, sizeof(api));
                r = sd_bus_message_append(reply, "(ss)", n->name, api);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* TransferLeadership(s node): "" lets raft pick a voter. */
static int method_transfer(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        manager *m = userdata;
        const char *node;
        unsigned id = 0;

        int r = sd_bus_message_read(msg, "s", &node);
        if (r < 0)
                return r;
        if (node[0]) {
                const config_node *n = config_find_node(m->cfg, node);
                if (!n || !n->master)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "%s is not a master", node);
                id = n->raft_id;
        }
        r = manager_transfer_leadership(m, id);
        if (r == -EAGAIN)
                return sd_bus_error_set(error, "io.weir.Master1.NotLeader",
                                        "This master is not the leader.");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Leadership transfer failed: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static const sd_bus_vtable master_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Node", "s", prop_node, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Role", "s", prop_role, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Term", "t", prop_term, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Leader", "s", prop_leader, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Serving", "b", prop_serving, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Applied", "t", prop_applied, 0, 0),
        SD_BUS_PROPERTY("Masters", "a(ss)", prop_masters, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD("TransferLeadership", "s", "", method_transfer, 0),
        SD_BUS_VTABLE_END,
};

static void bus_rearm(manager *m);

static void bus_detach(manager *m, int r)
{
        log_warning_errno(r, "D-Bus connection lost: %m, status no longer published, ignoring");
        dbus_stop(m);
}

static void bus_process(manager *m)
{
        for (;;) {
                int r = sd_bus_process(m->bus, NULL);
                if (r < 0)
                        return bus_detach(m, r);
                if (r == 0)
                        break;
        }
        bus_rearm(m);
}

static void on_bus_poll(uv_poll_t *h, int status, int events)
{
        bus_process(h->data);
}

static void on_bus_timer(uv_timer_t *t)
{
        bus_process(t->data);
}

/* sd-bus tells which events and which deadline it waits for; libuv watches them. */
static void bus_rearm(manager *m)
{
        if (!m->bus_active)
                return;
        int e = sd_bus_get_events(m->bus);
        if (e < 0)
                return bus_detach(m, e);
        uv_poll_start(&m->bus_poll,
                      ((e & POLLIN) ? UV_READABLE : 0) | ((e & POLLOUT) ? UV_WRITABLE : 0),
                      on_bus_poll);
        uint64_t until;
        if (sd_bus_get_timeout(m->bus, &until) >= 0 && until != UINT64_MAX) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
                uint64_t ms = until > now ? (until - now + 999) / 1000 : 0;
                uv_timer_start(&m->bus_timer, on_bus_timer, ms, 0);
        } else
                uv_timer_stop(&m->bus_timer);
}

int dbus_start(manager *m)
{
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, DBUS_PATH, DBUS_INTERFACE, master_vtable,
                                             m);
        if (r >= 0) {
                r = sd_bus_request_name(bus, DBUS_NAME, 0);
                if (r == -EEXIST || r == -EALREADY) {
                        /* Several masters on one bus (tests): the object stays reachable on
                         * this connection's unique name. */
                        log_info("D-Bus name %s is taken; publishing on the connection's "
                                 "unique name only.",
                                 DBUS_NAME);
                        r = 0;
                }
        }
        if (r < 0) {
                log_info("No system bus (%s), D-Bus status not published.", strerror(-r));
                sd_bus_flush_close_unref(bus);
                return 0;
        }
        m->bus = bus;
        uv_poll_init(&m->loop, &m->bus_poll, sd_bus_get_fd(bus));
        uv_timer_init(&m->loop, &m->bus_timer);
        m->bus_poll.data = m->bus_timer.data = m;
        m->bus_active = true;
        bus_process(m);
        log_info("Published %s on the system bus.", DBUS_PATH);
        return 0;
}

void dbus_emit_changed(manager *m)
{
        if (!m->bus_active)
                return;
        int r = sd_bus_emit_properties_changed(m->bus, DBUS_PATH, DBUS_INTERFACE, "Role", "Term",
                                               "Leader", "Serving", NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
        bus_rearm(m);
}

void dbus_stop(manager *m)
{
        if (!m->bus_active)
                return;
        m->bus_active = false;
        uv_close((uv_handle_t *)&m->bus_poll, NULL);
        uv_close((uv_handle_t *)&m->bus_timer, NULL);
        m->bus = sd_bus_flush_close_unref(m->bus);
}
