/* What the daemon tells the world: sd_notify READY/STATUS/WATCHDOG and D-Bus io.weir.Fuse1. */
#pragma once

#include "fs.h"

typedef struct dbus dbus;

/* Starts a thread that waits for the mount to be live, sends READY=1, keeps STATUS= current and
 * serves io.weir.Fuse1 at /io/weir/Fuse1 on the system bus when one is reachable
 * (DBUS_SYSTEM_BUS_ADDRESS honoured; no bus is logged once, not fatal), and every REFRESH_MS
 * (0 = never) checks the versions of the files the kernel knows (fs_refresh). F is borrowed. */
int dbus_new(fs *f, uint64_t refresh_ms, dbus **ret);
/* Stops the thread. */
dbus *dbus_free(dbus *d);
