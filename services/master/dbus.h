/* io.weir.Master1 on the system bus: role, term, leader, changes signalled. Called by the
 * manager through manager_parts, on the loop thread. */
#pragma once

typedef struct manager manager;

/* Connects to the system bus (logged once and ignored when there is none). */
int dbus_start(manager *m);
void dbus_emit_changed(manager *m);
void dbus_stop(manager *m);
