/* weirctl status: the local daemons' status objects on the system bus (io.weir.*1). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "ctl.h"
#include "log.h"

static const struct {
        const char *service;
        const char *path;
        const char *what;
} objects[] = {
        {"io.weir.Master1", "/io/weir/Master1", "master"},
        {"io.weir.Worker1", "/io/weir/Worker1", "worker"},
        {"io.weir.Fuse1", "/io/weir/Fuse1", "fuse"},
};

/* Prints the value at the message's cursor: basic types, arrays and structs of them. */
static int print_value(sd_bus_message *msg)
{
        char type;
        const char *contents;
        int r = sd_bus_message_peek_type(msg, &type, &contents);
        if (r <= 0)
                return r;
        if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_STRUCT ||
            type == SD_BUS_TYPE_VARIANT) {
                r = sd_bus_message_enter_container(msg, type, contents);
                if (r < 0)
                        return r;
                const char *open = type == SD_BUS_TYPE_ARRAY    ? "["
                                   : type == SD_BUS_TYPE_STRUCT ? "("
                                                                : "";
                const char *close = type == SD_BUS_TYPE_ARRAY    ? "]"
                                    : type == SD_BUS_TYPE_STRUCT ? ")"
                                                                 : "";
                printf("%s", open);
                for (bool first = true;; first = false) {
                        r = sd_bus_message_at_end(msg, false);
                        if (r != 0)
                                break;
                        if (!first)
                                printf(type == SD_BUS_TYPE_STRUCT ? " " : ", ");
                        r = print_value(msg);
                        if (r < 0)
                                return r;
                }
                printf("%s", close);
                return sd_bus_message_exit_container(msg);
        }
        union {
                const char *s;
                uint8_t y;
                int b;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
        } v;
        r = sd_bus_message_read_basic(msg, type, &v);
        if (r < 0)
                return r;
        switch (type) {
        case SD_BUS_TYPE_STRING:
        case SD_BUS_TYPE_OBJECT_PATH:
        case SD_BUS_TYPE_SIGNATURE:
                printf("%s", v.s);
                break;
        case SD_BUS_TYPE_BOOLEAN:
                printf("%s", v.b ? "yes" : "no");
                break;
        case SD_BUS_TYPE_BYTE:
                printf("%u", v.y);
                break;
        case SD_BUS_TYPE_INT16:
                printf("%d", v.n);
                break;
        case SD_BUS_TYPE_UINT16:
                printf("%u", v.q);
                break;
        case SD_BUS_TYPE_INT32:
                printf("%d", v.i);
                break;
        case SD_BUS_TYPE_UINT32:
                printf("%u", v.u);
                break;
        case SD_BUS_TYPE_INT64:
                printf("%lld", (long long)v.x);
                break;
        case SD_BUS_TYPE_UINT64:
                printf("%llu", (unsigned long long)v.t);
                break;
        case SD_BUS_TYPE_DOUBLE:
                printf("%g", v.d);
                break;
        default:
                printf("?");
        }
        return 0;
}

static int show_object(sd_bus *bus, const char *service, const char *path, const char *what)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, service, path, "org.freedesktop.DBus.Properties", "GetAll",
                                   &error, &reply, "s", service);
        if (r < 0) {
                printf("%s: not running (%s)\n", what,
                       sd_bus_error_is_set(&error) ? error.name : strerror(-r));
                sd_bus_error_free(&error);
                return 0;
        }
        printf("%s (%s):\n", what, service);
        r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "{sv}");
        while (r >= 0 &&
               (r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                const char *name;
                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        break;
                printf("  %-12s ", name);
                r = print_value(reply);
                printf("\n");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : 1;
}

int ctl_status(const ctl_context *ctx, int argc, char **argv)
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {},
        };
        sd_bus *bus = NULL;
        int opt, r, found = 0;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        printf("Usage: weirctl status\n\n"
                               "Show the local weir daemons' status from the system bus.\n");
                        return 0;
                default:
                        return 2;
                }

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                log_error_errno(r, "Cannot reach the system bus: %m");
                return 1;
        }
        for (size_t i = 0; i < ELEMENTSOF(objects); i++) {
                r = show_object(bus, objects[i].service, objects[i].path, objects[i].what);
                if (r < 0)
                        log_warning_errno(r, "Failed to read %s: %m", objects[i].service);
                else
                        found += r;
        }
        sd_bus_flush_close_unref(bus);
        if (found == 0) {
                printf("No weir daemon publishes its status on this host's bus.\n");
                return 1;
        }
        return 0;
}
