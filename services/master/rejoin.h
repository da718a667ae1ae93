/* A damaged Raft log: refusing to start on it, and the operator's --rejoin. */
#pragma once

#include "config.h"
#include "httpd.h"
#include "manager.h"

/* Loud error and -EBADMSG when RAFT_DIR holds segments that libraft set aside as corrupt
 * ("corrupt-*"): the log they came from lacks committed entries. */
int rejoin_check_dir(const char *raft_dir);

/* --rejoin: only while another master serves as leader (it will send this one the state), moves
 * RAFT_DIR aside to RAFT_DIR.damaged-TIMESTAMP and creates it empty. */
int rejoin_prepare(const config *cfg, const config_node *self, const char *token,
                   const char *raft_dir);

/* Logs why the master refuses to start after raft could not load its log (ERRMSG) and what to
 * do. Returns -EBADMSG. */
int rejoin_explain(const config_node *self, const char *raft_dir, const char *errmsg);

/* Every start, before raft starts: records in DIR/raft-started that this master ran raft here
 * (format 1: the line "weir-raft-started 1"). True when it had been recorded before: an empty
 * raft directory then means a lost log, not a new master. */
bool rejoin_mark_started(manager *m);

/* A master that starts with an empty raft directory in a running cluster (--rejoin, or its
 * directory was deleted) asks the leader, over the API, to remove it from the membership and add
 * it back: the leader's replication state for it would otherwise still describe its lost log.
 * Loop thread, before raft_start(); retries for REJOIN_RESET_TRIES x REJOIN_RESET_WAIT_MS. Returns 0
 * (asked, or gave up with a warning), -ECANCELED when asked to stop meanwhile. */
#define REJOIN_RESET_TRIES   40
#define REJOIN_RESET_WAIT_MS 500 /* the pace of members.c's probes (MEMBERS_PROBE_MS) */
int rejoin_ask_reset(manager *m);

/* POST /v1/masters/NAME/reset (leader; followers redirect): 202 once the reset of NAME is
 * scheduled (members_reset()), 200 {"reset": false} when NAME is no master in the leader's YAML
 * (nothing to reset), 409 for the leader itself or while another reset runs. */
void rejoin_h_reset(httpd_request *req, void *userdata);
