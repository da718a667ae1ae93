/* weir-generator --rescan: once the network is up, run the generators again and start weir.target
 * if this host is now found (its address came from DHCP after the generator ran at boot). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "cleanup.h"
#include "generator.h"
#include "log.h"

#define SYSTEMD_SERVICE   "org.freedesktop.systemd1"
#define SYSTEMD_PATH      "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER   "org.freedesktop.systemd1.Manager"
#define RELOAD_TIMEOUT_US (120ull * 1000 * 1000)

static int manager_call(sd_bus *bus, const char *method, const char *unit)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           method);
        if (r < 0)
                return r;
        if (unit) {
                r = sd_bus_message_append(m, "ss", unit, "replace");
                if (r < 0)
                        return r;
        }
        /* Reload answers only once the generators ran and the units are loaded again. */
        r = sd_bus_call(bus, m, RELOAD_TIMEOUT_US, &error, &reply);
        if (r < 0)
                return log_error_errno(r, "%s%s%s failed: %s", method, unit ? " " : "",
                                       unit ? unit : "", error.message ? error.message : "");
        return 0;
}

/* The link, not its target: whether the generator pulled weir.target in. */
static bool link_exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) >= 0;
}

int generator_rescan(const char *generator_dir)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *link = NULL;
        int r;

        if (asprintf(&link, "%s/multi-user.target.wants/weir.target", generator_dir) < 0)
                return log_oom();
        if (link_exists(link)) {
                log_info("weir.target is already pulled in; nothing to look for again.");
                return 0;
        }

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");

        log_info("Looking for this host in the cluster YAML again (systemctl daemon-reload).");
        r = manager_call(bus, "Reload", NULL);
        if (r < 0)
                return r;
        if (!link_exists(link)) {
                log_notice("This host is still none of the YAML's nodes; weir stays off (see the "
                           "kernel log for weir-generator's reason).");
                return 0;
        }
        log_info("This host is now found; starting weir.target.");
        return manager_call(bus, "StartUnit", "weir.target");
}
