/* A damaged Raft log: weir-master refuses to start on it rather than drop committed entries
 * (libraft's auto-recovery, which renames a corrupt segment and starts without its entries, is
 * off), and --rejoin starts this master over with an empty log that the leader fills.
 *
 * An emptied master (--rejoin, or a deleted directory) asks the leader to reset it: the HTTP
 * handler runs on an API thread and hands the request to the loop (members_reset()); the asking
 * side runs on the loop thread before raft starts, blocking like members_decide_bootstrap(). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "apiauth.h"
#include "cleanup.h"
#include "gate.h"
#include "fsutil.h"
#include "httpc.h"
#include "log.h"
#include "manager-internal.h"
#include "rejoin.h"

#define PROBE_TIMEOUT_MS 1000
#define NAME_MAX_LEN     253 /* a master's name in the reset path */

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

/* ---- reset: the leader forgets what it knew of an emptied master's log ---- */

bool rejoin_mark_started(manager *m)
{
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        char line[64] = "";

        if (asprintf(&path, "%s/raft-started", m->dir) < 0 || asprintf(&tmp, "%s.tmp", path) < 0)
                return log_oom(), false;
        _cleanup_fclose_ FILE *in = fopen(path, "re");
        if (in && fgets(line, sizeof(line), in) && strncmp(line, "weir-raft-started ", 18) == 0)
                return true; /* any version: raft ran here */
        if (in)
                log_warning("%s does not start with 'weir-raft-started', rewriting it", path);
        /* A new master, or one that predates the file: a master with a log gets it now. */
        _cleanup_fclose_ FILE *f = fopen(tmp, "we");
        if (!f || fputs("weir-raft-started 1\n", f) < 0 || fflush(f) != 0 || fsync(fileno(f)) < 0 ||
            rename(tmp, path) < 0)
                log_warning_errno(errno, "Failed to write %s: %m, ignoring", path);
        return false;
}

typedef struct reset_call {
        httpd_request *req;
        unsigned id;
        char name[NAME_MAX_LEN + 1];
} reset_call;

static void reset_on_loop(manager *m, bool stopping, void *userdata)
{
        _cleanup_free_ reset_call *c = userdata;

        if (stopping) {
                httpd_reply_header(c->req, "Retry-After", "1");
                httpd_reply_error(c->req, 503, "master shutting down");
                return;
        }
        int r = m->opts.parts->members_reset(m, c->id);
        switch (r) {
        case 0:
                httpd_reply_json(c->req, 202, json_pack("{s:s,s:b}", "node", c->name, "reset", 1));
                return;
        case -EAGAIN:
                gate_reply_not_leader(m, c->req);
                return;
        case -ENOENT:
                /* Not a member to the leader: when a reload adds it, it starts afresh anyway. */
                httpd_reply_json(c->req, 200,
                                 json_pack("{s:s,s:b,s:s}", "node", c->name, "reset", 0, "reason",
                                           "not a master in the leader's cluster YAML"));
                return;
        case -EBUSY:
                httpd_reply_header(c->req, "Retry-After", "1");
                httpd_reply_error(c->req, 409, "the reset of another master is under way; retry");
                return;
        default:
                httpd_reply_error(c->req, 409, "%s is the leader: its log is not empty", c->name);
                return;
        }
}

void rejoin_h_reset(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        const char *suffix = httpd_request_suffix(req);
        const char *slash = strchr(suffix, '/');
        size_t len = slash ? (size_t)(slash - suffix) : 0;

        if (strcmp(httpd_request_method(req), "POST") != 0) {
                httpd_reply_error(req, 405, "only POST /v1/masters/NAME/reset");
                return;
        }
        if (!slash || strcmp(slash, "/reset") != 0 || len == 0 || len > NAME_MAX_LEN) {
                httpd_reply_error(req, 404, "no such call: expected POST /v1/masters/NAME/reset");
                return;
        }
        _cleanup_free_ reset_call *c = calloc(1, sizeof(*c));
        if (!c) {
                httpd_reply_error(req, 500, "out of memory");
                return;
        }
        memcpy(c->name, suffix, len);
        if (!manager_get_view(m).serving) {
                gate_reply_not_leader(m, req);
                return;
        }
        /* The leader's YAML decides; a name it does not know is answered on the loop. */
        const config *cfg = __atomic_load_n(&m->cfg, __ATOMIC_ACQUIRE);
        const config_node *n = config_find_node(cfg, c->name);
        c->req = req;
        c->id = n && n->master ? n->raft_id : 0;
        if (manager_call_on_loop(m, reset_on_loop, c) < 0) {
                httpd_reply_header(req, "Retry-After", "1");
                httpd_reply_error(req, 503, "master shutting down");
                return;
        }
        TAKE_PTR(c);
}

static void on_wait_timer(uv_timer_t *t)
{
        *(bool *)t->data = true;
}

static void on_wait_closed(uv_handle_t *h)
{
        *(bool *)h->data = true;
}

/* Waits MS on the loop, which keeps answering signals (SIGTERM) and the API's queued calls. */
static void wait_on_loop(manager *m, unsigned ms)
{
        uv_timer_t t;
        bool done = false;

        if (uv_timer_init(&m->loop, &t) < 0)
                return;
        t.data = &done;
        uv_timer_start(&t, on_wait_timer, ms, 0);
        while (!done && !m->stopping)
                uv_run(&m->loop, UV_RUN_ONCE);
        done = false;
        uv_close((uv_handle_t *)&t, on_wait_closed);
        while (!done)
                uv_run(&m->loop, UV_RUN_ONCE);
}

/* One round: POST to the other masters in YAML order (a follower redirects to the leader).
 * True once one answered 202 or 200; WHY says what the last one answered otherwise. */
static bool ask_round(manager *m, httpc *c, char *why, size_t why_len)
{
        const config *cfg = m->cfg;

        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *p = &cfg->nodes[i];
                char api[300], url[700];
                httpc_response res = {};

                if (!p->master || p == m->node)
                        continue;
                manager_api_address(m, p->raft_id, api, sizeof(api));
                snprintf(url, sizeof(url), "%s://%s/v1/masters/%s/reset", apiauth_scheme(cfg), api,
                         m->node->name);
                int r = httpc_post(c, url, NULL, &res);
                if (r == 0 && (res.status == 202 || res.status == 200)) {
                        if (res.status == 200)
                                log_info("The leader does not count this master as one yet (%s): "
                                         "it adds it with fresh replication state.",
                                         json_string_value(json_object_get(res.json, "reason"))
                                                 ?: "");
                        else
                                log_info("This master's raft log is empty: asked the leader to "
                                         "reset it (remove it from the membership and add it "
                                         "back), so that the leader sends it the whole state.");
                        httpc_response_done(&res);
                        return true;
                }
                if (r < 0)
                        snprintf(why, why_len, "%s: %s", p->name, strerror(-r));
                else
                        snprintf(why, why_len, "%s answered %u", p->name, (unsigned)res.status);
                httpc_response_done(&res);
        }
        return false;
}

int rejoin_ask_reset(manager *m)
{
        _cleanup_(httpc_freep) httpc *c = httpc_new();
        char why[400] = "no other master";

        if (!c || apiauth_httpc_setup(c, m->cfg, m->token) < 0)
                return log_oom();
        httpc_set_timeout(c, PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS);
        for (unsigned i = 0; i < REJOIN_RESET_TRIES && !m->stopping; i++) {
                (void)sd_notify(false, "WATCHDOG=1");
                if (ask_round(m, c, why, sizeof(why)))
                        return 0;
                wait_on_loop(m, REJOIN_RESET_WAIT_MS);
        }
        if (m->stopping)
                return -ECANCELED;
        log_warning("Could not ask the leader to reset this master, whose raft log is empty (%s). "
                    "Without it, raft-cowsql never sends it the log (docs/master.md); restart it "
                    "once a leader serves, ignoring.",
                    why);
        return 0;
}
