/* The worker's master client (see mclient.h). The leader hint is guarded by `lock`. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiauth.h"
#include "cleanup.h"
#include "log.h"
#include "mclient.h"

struct mclient {
        char **urls; /* "SCHEME://HOST:PORT" per master */
        size_t n_urls;
        const config *cfg;
        char *token;
        pthread_mutex_t lock; /* guards `hint` */
        size_t hint;          /* index of the master that answered last */
};

static char *base_url(const config *cfg, const char *address, uint16_t port)
{
        char buf[320];

        if (apiauth_base_url(cfg, address, port, buf, sizeof(buf)) < 0)
                return NULL;
        return strdup(buf);
}

mclient *mclient_free(mclient *m)
{
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_urls; i++)
                free(m->urls[i]);
        free(m->urls);
        free(m->token);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

int mclient_new(const config *cfg, const char *token, mclient **ret)
{
        mclient *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        pthread_mutex_init(&m->lock, NULL);
        m->cfg = cfg;
        m->urls = calloc(cfg->n_nodes + 1, sizeof(*m->urls));
        if (!m->urls || (token && !(m->token = strdup(token)))) {
                mclient_free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                if (!cfg->nodes[i].master)
                        continue;
                m->urls[m->n_urls] =
                        base_url(cfg, cfg->nodes[i].address, cfg->nodes[i].master_port);
                if (!m->urls[m->n_urls]) {
                        mclient_free(m);
                        return -ENOMEM;
                }
                m->n_urls++;
        }
        if (m->n_urls == 0) {
                mclient_free(m);
                return -ENXIO;
        }
        *ret = m;
        return 0;
}

httpc *mclient_httpc(mclient *m)
{
        httpc *c = httpc_new();

        if (!c)
                return NULL;
        if (apiauth_httpc_setup(c, m->cfg, m->token) < 0)
                return httpc_free(c);
        httpc_set_timeout(c, 5000, 500);
        httpc_set_max_body(c, 16u << 20);
        return c;
}

int mclient_request(mclient *m, httpc *c, const char *method, const char *path, const json_t *body,
                    httpc_response *ret)
{
        size_t first;
        int r = -EHOSTUNREACH;

        pthread_mutex_lock(&m->lock);
        first = m->hint;
        pthread_mutex_unlock(&m->lock);

        for (size_t i = 0; i < m->n_urls; i++) {
                size_t idx = (first + i) % m->n_urls;
                _cleanup_free_ char *url = NULL;
                httpc_response resp = {};

                if (asprintf(&url, "%s%s", m->urls[idx], path) < 0)
                        return -ENOMEM;
                r = httpc_request(c, method, url, body, &resp);
                if (r < 0) {
                        log_debug_errno(r, "Master %s: %s (%m)", m->urls[idx], httpc_last_error(c));
                        continue;
                }
                if (resp.status == 503) {
                        httpc_response_done(&resp);
                        r = -EAGAIN;
                        continue;
                }
                /* Remember who answered: the redirect target when there was one. */
                pthread_mutex_lock(&m->lock);
                m->hint = idx;
                for (size_t j = 0; resp.url && j < m->n_urls; j++)
                        if (strncmp(resp.url, m->urls[j], strlen(m->urls[j])) == 0 &&
                            resp.url[strlen(m->urls[j])] == '/')
                                m->hint = j;
                pthread_mutex_unlock(&m->lock);
                *ret = resp;
                return 0;
        }
        return r;
}
