/* Raft membership that follows the YAML: joining without a bootstrap, reload on SIGHUP, add,
 * promote and remove masters one change at a time, retire a master that the YAML dropped. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "httpc.h"
#include "httpd.h"
#include "manager.h"

#define MEMBERS_RETRY_MS        1000 /* a refused or failed change is tried again this often */
#define MEMBERS_PROBE_MS        500  /* a fresh master asks the others this often */
#define MEMBERS_PROBE_TIMEOUT   300  /* ms per peer */
#define MEMBERS_RELOAD_BODY_MAX 256

typedef struct members members;

/* How this master entered the cluster, as /v1/status reports it ("bootstrap"). */
typedef enum members_boot {
        MEMBERS_BOOT_WAITING,      /* empty raft directory, asking the other masters */
        MEMBERS_BOOT_JOINED,       /* started without a configuration: waits to be added */
        MEMBERS_BOOT_BOOTSTRAPPED, /* bootstrapped the YAML's masters, or had a raft log */
} members_boot;

/* Allocates M's membership state and installs the SIGHUP handler (loop not running yet). */
int members_new(manager *m);
/* After the loop ended: frees it and, for a master that was removed, moves its raft directory
 * aside (DIR/raft.removed) so that adding it back later starts it empty. */
void members_free(manager *m);
/* manager_stop(): closes the handles. */
void members_stop(manager *m);

/*
 * Before raft_start(), with the API already serving /v1/status. Returns 1 when this master must
 * bootstrap the YAML's masters, 0 when it must start without a configuration and wait until the
 * leader adds it, -ECANCELED when asked to stop meanwhile. See docs/master.md for the rule.
 */
int members_decide_bootstrap(manager *m);

/* raft_bootstrap() wrote the YAML's masters as the first entry: remembered in DIR/bootstrap so
 * that a founding master that starts late bootstraps the identical entry (members.c). */
void members_bootstrapped(manager *m);

/* Loop thread, leader: removes master ID from the membership and adds it back (its log was
 * emptied: rejoin.c). 0 scheduled (or already), -EAGAIN not serving, -EBUSY another master's
 * reset is pending, -EINVAL ID is this leader, -ENOENT ID is not a master of the YAML. */
int members_reset(manager *m, unsigned id);

/* Loop thread: this node started (true) or stopped (false) serving as leader. */
void members_leader_changed(manager *m, bool leader);

/* Loop thread: re-reads the YAML. 0 applied; -EINVAL refused (*ret_error: "DOCUMENT: KEY:
 * MESSAGE", malloc'ed); -EBADMSG invalid file, other -errno unreadable (*ret_error:
 * "FILE:LINE:COLUMN: MESSAGE" or "FILE: reason"). On every failure the old configuration is
 * kept and nothing changed. */
int members_reload(manager *m, char **ret_error);

/* Prober thread, once a second: a retiring master asks the others whether it was removed. */
void members_probe(manager *m, httpc *c);

/* Extra fields of /v1/status: "bootstrap", "leader_id", "retiring". */
void members_status_fields(manager *m, json_t *status);

/* Routes: GET /v1/config (the running description, config-apply.h, plus reload state) and
 * POST /v1/config/reload (the same as SIGHUP; answers the outcome). */
void members_h_config(httpd_request *req, void *userdata);
void members_h_reload(httpd_request *req, void *userdata);
