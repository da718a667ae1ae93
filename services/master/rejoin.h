/* A damaged Raft log: refusing to start on it, and the operator's --rejoin. */
#pragma once

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
