/* The leader gate (gate.h): where a follower sends a leader-only call. */
#include <assert.h>
#include <stdio.h>

#include "apiauth.h"
#include "gate.h"
#include "manager-internal.h"

bool gate_reply_not_leader(manager *m, httpd_request *req)
{
        manager_view v;
        char api[300], base[320];

        assert(m && req);
        v = manager_get_view(m);
        if (v.leader_id && v.leader_id != m->node->raft_id &&
            manager_api_address(m, v.leader_id, api, sizeof(api))) {
                snprintf(base, sizeof(base), "%s://%s", apiauth_scheme(m->cfg), api);
                httpd_reply_redirect(req, base);
                return true;
        }
        httpd_reply_header(req, "Retry-After", "1");
        httpd_reply_error(req, 503, "no leader is serving yet (election in progress); retry");
        return true;
}
