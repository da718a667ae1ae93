/* Tokens, TLS and redirect trust for the cluster API, from the YAML (docs/api.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiauth.h"
#include "cleanup.h"
#include "fsutil.h"

int apiauth_client_token(const config *c, char **ret)
{
        int r = 0;

        *ret = NULL;
        if (c->token_file) {
                r = read_secret_file(c->token_file, SECRET_MAX, ret);
                if (r >= 0 || r == -ENOMEM)
                        return r;
        }
        if (c->api.read_token_file) {
                r = read_secret_file(c->api.read_token_file, SECRET_MAX, ret);
                if (r >= 0 || r == -ENOMEM)
                        return r;
        }
        return r;
}

const char *apiauth_scheme(const config *c)
{
        return c->api.tls_cert_file ? "https" : "http";
}

int apiauth_base_url(const config *c, const char *host, unsigned port, char *buf, size_t size)
{
        bool v6 = strchr(host, ':') != NULL;
        int n = snprintf(buf, size, "%s://%s%s%s:%u", apiauth_scheme(c), v6 ? "[" : "", host,
                         v6 ? "]" : "", port);

        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int apiauth_httpc_setup(httpc *h, const config *c, const char *token)
{
        int r;

        r = httpc_set_token(h, token);
        if (r < 0)
                return r;
        r = httpc_set_ca_file(h, c->api.tls_ca_file);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_nodes; i++) {
                const config_node *n = &c->nodes[i];

                if (n->master && (r = httpc_add_trusted(h, n->address, n->master_port)) < 0)
                        return r;
                if (n->worker && (r = httpc_add_trusted(h, n->address, n->worker_port)) < 0)
                        return r;
        }
        return 0;
}

void apiauth_httpd_config(httpd_config *hc, const config *c, const config_node *n,
                          const char *token, const char *read_token)
{
        hc->address = c->api.bind_address ? c->api.bind_address : n->address;
        hc->token = token;
        hc->read_token = read_token;
        hc->tls_cert_file = c->api.tls_cert_file;
        hc->tls_key_file = c->api.tls_key_file;
        hc->max_connections = c->api.max_connections;
        hc->max_per_client = c->api.max_connections_per_client;
        hc->request_timeout_ms = c->api.request_timeout_ms;
}
