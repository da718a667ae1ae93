/* What the daemon tells the world: sd_notify READY/STATUS/WATCHDOG, D-Bus io.weir.Fuse1 and the
 * masters' heartbeat. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "cleanup.h"
#include "dbus.h"
#include "log.h"
#include "meta.h"
#include "parse.h"
#include "timeutil.h"

#define DBUS_NAME         "io.weir.Fuse1"
#define DBUS_PATH         "/io/weir/Fuse1"
#define DBUS_STATUS_MS    5000
#define DBUS_LIVE_TIMEOUT 60000

struct dbus {
        fs *fs;
        pthread_t thread;
        pthread_t peers_thread; /* heartbeats and refreshes: may block on the masters */
        bool peers_started;
        int stop_fd; /* eventfd: written once to end the thread */
        sd_bus *bus;
        sd_bus_slot *slot;
        /* only the thread touches these */
        fs_status status;
        bool live;
        uint64_t refresh_ms;
};

static int prop_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                       sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        dbus *d = userdata;
        const char *v = "";

        if (strcmp(property, "Dataset") == 0)
                v = d->status.dataset;
        else if (strcmp(property, "Mountpoint") == 0)
                v = d->status.mountpoint;
        return sd_bus_message_append(reply, "s", v ? v : "");
}

static int prop_u64(sd_bus *bus, const char *path, const char *interface, const char *property,
                    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        dbus *d = userdata;
        const fs_status *s = &d->status;
        uint64_t v = 0;

        if (strcmp(property, "Files") == 0)
                v = s->files;
        else if (strcmp(property, "TotalSize") == 0)
                v = s->total_size;
        else if (strcmp(property, "Cached") == 0)
                v = s->cached;
        else if (strcmp(property, "CachedHere") == 0)
                v = s->cached_here;
        else if (strcmp(property, "PassthroughOpens") == 0)
                v = s->passthrough_opens;
        else if (strcmp(property, "Inodes") == 0)
                v = s->inodes;
        else if (strcmp(property, "XattrRequests") == 0)
                v = s->xattr_requests;
        else if (strcmp(property, "ListingRequests") == 0)
                v = s->meta.page_calls;
        else if (strcmp(property, "StatRequests") == 0)
                v = s->meta.stat_calls;
        else if (strcmp(property, "BytesLocal") == 0)
                v = s->reads.bytes_local;
        else if (strcmp(property, "BytesRemote") == 0)
                v = s->reads.bytes_remote;
        else if (strcmp(property, "BytesStore") == 0)
                v = s->reads.bytes_store;
        else if (strcmp(property, "Retries") == 0)
                v = s->reads.retries;
        else if (strcmp(property, "Errors") == 0)
                v = s->reads.errors;
        else if (strcmp(property, "StaleAnswers") == 0)
                v = s->stale_answers;
        return sd_bus_message_append(reply, "t", v);
}

static int prop_mounted(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        dbus *d = userdata;

        return sd_bus_message_append(reply, "b", (int)d->live);
}

static int prop_stale(sd_bus *bus, const char *path, const char *interface, const char *property,
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        dbus *d = userdata;

        return sd_bus_message_append(reply, "b", (int)d->status.masters_down);
}

static const sd_bus_vtable fuse_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Dataset", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Mountpoint", "s", prop_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Mounted", "b", prop_mounted, 0, 0),
        SD_BUS_PROPERTY("Files", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("TotalSize", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Cached", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("CachedHere", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("PassthroughOpens", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Inodes", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("XattrRequests", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("ListingRequests", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("StatRequests", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("BytesLocal", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("BytesRemote", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("BytesStore", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Retries", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("Errors", "t", prop_u64, 0, 0),
        SD_BUS_PROPERTY("MetadataStale", "b", prop_stale, 0, 0),
        SD_BUS_PROPERTY("StaleAnswers", "t", prop_u64, 0, 0),
        SD_BUS_VTABLE_END,
};

static void bus_connect(dbus *d)
{
        int r = sd_bus_open_system(&d->bus);

        if (r >= 0)
                r = sd_bus_add_object_vtable(d->bus, &d->slot, DBUS_PATH, DBUS_NAME, fuse_vtable,
                                             d);
        if (r >= 0)
                /* one FUSE daemon per dataset: later ones queue for the name */
                r = sd_bus_request_name(d->bus, DBUS_NAME, SD_BUS_NAME_QUEUE);
        if (r < 0 && r != -EEXIST) {
                log_info_errno(r, "No system bus (%m): not publishing " DBUS_NAME ", ignoring.");
                d->slot = sd_bus_slot_unref(d->slot);
                d->bus = sd_bus_flush_close_unref(d->bus);
        }
}

static void update_status(dbus *d)
{
        char cached[FORMAT_BYTES_MAX];
        unsigned here, all;

        fs_get_status(d->fs, &d->status);
        here = d->status.total_size ? (unsigned)(d->status.cached_here * 100 / d->status.total_size)
                                    : 0;
        all = d->status.total_size ? (unsigned)(d->status.cached * 100 / d->status.total_size) : 0;
        (void)sd_notifyf(false,
                         "STATUS=mounted %s, %" PRIu64 " files, %u%% cached on this node (%u%%, "
                         "%s, on all workers); read %" PRIu64 " MiB local, %" PRIu64
                         " MiB from workers, %" PRIu64 " MiB from the store%s%s",
                         d->status.mountpoint, d->status.files, here, all,
                         format_bytes(cached, sizeof(cached), d->status.cached),
                         d->status.reads.bytes_local >> 20, d->status.reads.bytes_remote >> 20,
                         d->status.reads.bytes_store >> 20,
                         d->status.passthrough ? "; passthrough" : "",
                         d->status.masters_down
                                 ? "; no master answers: cached files served with stale metadata"
                                 : "");
        if (d->bus)
                (void)sd_bus_emit_properties_changed(d->bus, DBUS_PATH, DBUS_NAME, "Files",
                                                     "Cached", "CachedHere", "Inodes",
                                                     "MetadataStale", "StaleAnswers", NULL);
}

/* Everything that talks to the masters, apart from the thread pinging the watchdog: with the
 * leader gone a heartbeat or refresh waits META_CALL_TIMEOUT_MS per master, longer than
 * WatchdogSec allows. */
static void *peers_thread(void *userdata)
{
        dbus *d = userdata;
        uint64_t next_heartbeat = 0, next_refresh = 0;
        int r;

        for (;;) {
                struct pollfd p = {.fd = d->stop_fd, .events = POLLIN};
                uint64_t now = now_ms(), timeout;

                if (now >= next_heartbeat) {
                        /* soft state on the leader; a failover only delays the next one */
                        r = fs_heartbeat(d->fs);
                        if (r < 0)
                                log_debug_errno(r, "FUSE heartbeat to the masters failed: %m");
                        next_heartbeat = now_ms() + DBUS_STATUS_MS;
                }
                if (d->refresh_ms && now >= next_refresh) {
                        if (next_refresh)
                                fs_refresh(d->fs);
                        next_refresh = now_ms() + d->refresh_ms;
                }
                now = now_ms();
                timeout = next_heartbeat > now ? next_heartbeat - now : 0;
                if (d->refresh_ms)
                        timeout = MIN(timeout, next_refresh > now ? next_refresh - now : 0);
                r = poll(&p, 1, (int)MIN(timeout, (uint64_t)DBUS_STATUS_MS));
                if (r < 0 && errno != EINTR) {
                        log_warning_errno(errno, "poll: %m");
                        break;
                }
                if (p.revents & POLLIN)
                        break;
        }
        return NULL;
}

static void *dbus_thread(void *userdata)
{
        dbus *d = userdata;
        uint64_t watchdog_usec = 0, next_status = 0;
        int r;

        r = fs_wait_live(d->fs, DBUS_LIVE_TIMEOUT);
        if (r < 0) {
                log_error_errno(r, "The mount did not come up: %m");
                return NULL;
        }
        d->live = true;
        r = pthread_create(&d->peers_thread, NULL, peers_thread, d);
        if (r != 0)
                log_warning_errno(-r, "No heartbeats to the masters: thread: %m");
        else
                d->peers_started = true;
        fs_get_status(d->fs, &d->status);
        log_info("Mounted %s on %s.", d->status.dataset, d->status.mountpoint);
        (void)sd_notify(false, "READY=1");
        bus_connect(d);
        if (sd_watchdog_enabled(false, &watchdog_usec) <= 0)
                watchdog_usec = 0;

        for (;;) {
                struct pollfd p[2] = {{.fd = d->stop_fd, .events = POLLIN}, {.fd = -1}};
                uint64_t now = now_ms(), timeout = DBUS_STATUS_MS, bus_timeout;

                if (now >= next_status) {
                        update_status(d);
                        if (watchdog_usec)
                                (void)sd_notify(false, "WATCHDOG=1");
                        next_status = now + MIN(DBUS_STATUS_MS, watchdog_usec ? watchdog_usec / 2000
                                                                              : DBUS_STATUS_MS);
                }
                timeout = next_status - now;
                if (d->bus) {
                        while ((r = sd_bus_process(d->bus, NULL)) > 0)
                                ;
                        if (r < 0) {
                                log_warning_errno(r, "The system bus failed (%m), ignoring.");
                                d->slot = sd_bus_slot_unref(d->slot);
                                d->bus = sd_bus_flush_close_unref(d->bus);
                        }
                }
                if (d->bus) {
                        p[1].fd = sd_bus_get_fd(d->bus);
                        p[1].events = (short)sd_bus_get_events(d->bus);
                        if (sd_bus_get_timeout(d->bus, &bus_timeout) >= 0 &&
                            bus_timeout != UINT64_MAX) {
                                uint64_t now_us = now * 1000;

                                timeout = MIN(timeout, bus_timeout > now_us
                                                               ? (bus_timeout - now_us) / 1000
                                                               : 0);
                        }
                }
                r = poll(p, 2, (int)MIN(timeout, (uint64_t)DBUS_STATUS_MS));
                if (r < 0 && errno != EINTR) {
                        log_warning_errno(errno, "poll: %m");
                        break;
                }
                if (p[0].revents & POLLIN)
                        break;
        }
        d->slot = sd_bus_slot_unref(d->slot);
        d->bus = sd_bus_flush_close_unref(d->bus);
        return NULL;
}

int dbus_new(fs *f, uint64_t refresh_ms, dbus **ret)
{
        dbus *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        d->fs = f;
        d->refresh_ms = refresh_ms;
        d->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (d->stop_fd < 0) {
                r = -errno;
                free(d);
                return r;
        }
        r = pthread_create(&d->thread, NULL, dbus_thread, d);
        if (r != 0) {
                safe_close(d->stop_fd);
                free(d);
                return -r;
        }
        *ret = d;
        return 0;
}

dbus *dbus_free(dbus *d)
{
        uint64_t one = 1;

        if (!d)
                return NULL;
        if (write(d->stop_fd, &one, sizeof(one)) < 0)
                log_debug_errno(errno, "eventfd write: %m");
        pthread_join(d->thread, NULL);
        /* started by the dbus thread, now joined: no race on peers_started */
        if (d->peers_started)
                pthread_join(d->peers_thread, NULL);
        safe_close(d->stop_fd);
        free(d);
        return NULL;
}
