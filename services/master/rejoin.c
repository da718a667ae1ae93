/* A damaged Raft log: weir-master refuses to start on it rather than drop committed entries
 * (libraft's auto-recovery, which renames a corrupt segment and starts without its entries, is
 * off), and --rejoin starts this master over with an empty log that the leader fills. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apiauth.h"
#include "cleanup.h"
#include "fsutil.h"
#include "httpc.h"
#include "log.h"
#include "rejoin.h"

#define PROBE_TIMEOUT_MS 1000

int rejoin_check_dir(const char *raft_dir)
{
        _cleanup_(closedirp) DIR *d = opendir(raft_dir);
        struct dirent *de;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "corrupt-", 8) == 0) {
                        log_error("The Raft log in %s is damaged: libraft set the segment %s "
                                  "aside, and starting without it would drop committed "
                                  "entries. Refusing to start. See 'weir-master --rejoin' in "
                                  "docs/operations.md.",
                                  raft_dir, de->d_name);
                        return -EBADMSG;
                }
        return 0;
}

int rejoin_explain(const config_node *self, const char *raft_dir, const char *errmsg)
{
        log_error("The Raft log in %s cannot be loaded (%s). Refusing to start: going on "
                  "without the damaged part would drop committed entries. If the other masters "
                  "have a leader, run 'weir-master --node %s --rejoin' once: it moves %s aside "
                  "and this master gets the state from the leader. Otherwise restore %s from a "
                  "backup.",
                  raft_dir, errmsg && errmsg[0] ? errmsg : "no detail", self->name, raft_dir,
                  raft_dir);
        return -EBADMSG;
}

/* The name of a master that serves as leader, probed over the API; NULL when none answers. */
static const config_node *find_leader(const config *cfg, const config_node *self, const char *token)
{
        _cleanup_(httpc_freep) httpc *c = httpc_new();
        if (!c)
                return NULL;
        httpc_set_timeout(c, PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS);
        httpc_set_max_redirects(c, 0);
        if (apiauth_httpc_setup(c, cfg, token) < 0)
                return NULL;
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *n = &cfg->nodes[i];
                char url[400];
                httpc_response res = {};

                if (!n->master || n == self)
                        continue;
                if (apiauth_base_url(cfg, n->address, n->master_port, url, sizeof(url) - 16) < 0)
                        continue;
                strcat(url, "/v1/status");
                bool serving = httpc_get(c, url, &res) == 0 && res.status == 200 &&
                               json_is_true(json_object_get(res.json, "serving"));
                httpc_response_done(&res);
                if (serving)
                        return n;
        }
        return NULL;
}

int rejoin_prepare(const config *cfg, const config_node *self, const char *token,
                   const char *raft_dir)
{
        char aside[PATH_MAX];
        struct timespec ts;

        if (config_n_masters(cfg) <= 1)
                return log_error_errno(EINVAL,
                                       "--rejoin needs other masters to copy the state "
                                       "from; this cluster has one master. Restore %s "
                                       "from a backup instead.",
                                       raft_dir);
        const config_node *leader = find_leader(cfg, self, token);
        if (!leader)
                return log_error_errno(EAGAIN,
                                       "--rejoin: none of the other masters answers as a serving "
                                       "leader, so nobody could send this master the state; "
                                       "its log in %s is left as it is. Start the other masters "
                                       "first.",
                                       raft_dir);
        clock_gettime(CLOCK_REALTIME, &ts);
        if (snprintf(aside, sizeof(aside), "%s.damaged-%lld", raft_dir, (long long)ts.tv_sec) >=
            (int)sizeof(aside))
                return log_error_errno(ENAMETOOLONG, "Path too long: %s", raft_dir);
        if (rename(raft_dir, aside) < 0 && errno != ENOENT)
                return log_error_errno(errno, "Failed to move %s aside to %s: %m", raft_dir, aside);
        if (mkdir(raft_dir, 0750) < 0)
                return log_error_errno(errno, "Failed to create %s: %m", raft_dir);
        log_notice("Rejoining: the old Raft log is kept in %s; %s (the leader) will send this "
                   "master the state.",
                   aside, leader->name);
        return 0;
}
