/* Requests to the master leader, shared by the verbs that talk to it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "apiauth.h"
#include "ctl.h"
#include "fsutil.h"
#include "log.h"

#define CTL_MASTER_ROUNDS   3
#define CTL_MASTER_PAUSE_MS 400 /* between rounds: an election or restarting masters */

httpc *ctl_httpc(const config *cfg, long timeout_ms, long connect_ms)
{
        _cleanup_secret_ char *token = NULL;
        httpc *h = httpc_new();
        int r;

        if (!h)
                return NULL;
        /* Without a readable token the public calls still work; the others will say 401. */
        r = apiauth_client_token(cfg, &token);
        if (r == -ENOMEM)
                return httpc_free(h);
        if (r < 0)
                log_debug_errno(r, "Cannot read the token file %s: %m", cfg->token_file);
        if (apiauth_httpc_setup(h, cfg, token) < 0)
                return httpc_free(h);
        httpc_set_timeout(h, timeout_ms, connect_ms);
        return h;
}

char *ctl_url(const config *cfg, const char *api, const char *path)
{
        char *s = NULL;

        if (asprintf(&s, "%s://%s%s", apiauth_scheme(cfg), api, path) < 0)
                return NULL;
        return s;
}

int ctl_master_request(const config *cfg, httpc *h, const char *method, const char *path,
                       httpc_response *ret)
{
        int last = -EHOSTUNREACH;

        for (unsigned round = 0; round < CTL_MASTER_ROUNDS; round++) {
                if (round > 0)
                        usleep(CTL_MASTER_PAUSE_MS * 1000);
                for (size_t i = 0; i < cfg->n_nodes; i++) {
                        const config_node *n = &cfg->nodes[i];
                        char url[2048], base[320];
                        int r;

                        if (!n->master)
                                continue;
                        if (apiauth_base_url(cfg, n->address, n->master_port, base, sizeof base) <
                            0)
                                continue;
                        snprintf(url, sizeof url, "%s%s", base, path);
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
