/* Requests to the master leader, shared by the verbs that talk to it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "fsutil.h"
#include "log.h"

#define CTL_MASTER_ROUNDS   3
#define CTL_MASTER_PAUSE_MS 400 /* between rounds: an election or restarting masters */

int ctl_master_request(const config *cfg, httpc *h, const char *method, const char *path,
                       httpc_response *ret)
{
        int last = -EHOSTUNREACH;

        for (unsigned round = 0; round < CTL_MASTER_ROUNDS; round++) {
                if (round > 0)
                        usleep(CTL_MASTER_PAUSE_MS * 1000);
                for (size_t i = 0; i < cfg->n_nodes; i++) {
                        const config_node *n = &cfg->nodes[i];
                        char url[2048];
                        int r;

                        if (!n->master)
                                continue;
                        snprintf(url, sizeof url,
                                 strchr(n->address, ':') ? "http://[%s]:%u%s" : "http://%s:%u%s",
                                 n->address, n->master_port, path);
                        r = httpc_request(h, method, url, NULL, ret);
                        if (r < 0) {
                                log_debug("%s: %s", url, httpc_last_error(h));
                                last = r;
                                continue;
                        }
                        if (ret->status == 503) { /* a master without a leader */
                                httpc_response_done(ret);
                                last = -EAGAIN;
                                continue;
                        }
                        return 0;
                }
        }
        return last;
}

int ctl_use_token(const config *cfg, httpc *h)
{
        _cleanup_secret_ char *token = NULL;
        int r;

        if (!cfg->token_file)
                return 0;
        r = read_secret_file(cfg->token_file, SECRET_MAX, &token);
        if (r < 0) {
                log_debug_errno(r, "Cannot read %s: %m", cfg->token_file);
                return 0;
        }
        return httpc_set_token(h, token) < 0 ? -ENOMEM : 0;
}
