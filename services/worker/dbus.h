/* io.weir.Worker1 on the system bus: counters, tiers, dropping cached bytes. */
#pragma once

typedef struct worker worker;

/* Publishes W on the system bus; without a bus it logs and returns 0. */
int dbus_setup(worker *w);
