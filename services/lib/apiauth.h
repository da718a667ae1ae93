/* Who may call the cluster API and how it is reached: tokens, TLS, bind address, listener limits
 * and trusted redirect targets, all derived from the YAML's tokenFile and spec.api. */
#pragma once

#include "cleanup.h"
#include "config.h"
#include "httpc.h"
#include "httpd.h"

/* Tokens are read with read_secret_file() (fsutil.h) and freed with secret_free(). */

/* The token a client presents: the cluster token when its file is readable, else the read
 * token when that one is, else none (*ret NULL, returns 0). -errno only for out of memory or
 * when the YAML names token files and none can be read (with *ret NULL: the caller decides). */
int apiauth_client_token(const config *c, char **ret);

/* "https" when spec.api.tls names a certificate, else "http". */
const char *apiauth_scheme(const config *c);

/* "SCHEME://HOST:PORT" (IPv6 in brackets) into BUF; -ENAMETOOLONG when it does not fit. */
int apiauth_base_url(const config *c, const char *host, unsigned port, char *buf, size_t size);

/* Prepares H for calls inside the cluster: TOKEN (may be NULL), the CA file, and every master's
 * and worker's API address as a trusted redirect target. */
int apiauth_httpc_setup(httpc *h, const config *c, const char *token);

/* Fills HC's address, TLS files, limits and tokens for node N's API from the YAML. TOKEN and
 * READ_TOKEN are borrowed (NULL = none). */
void apiauth_httpd_config(httpd_config *hc, const config *c, const config_node *n,
                          const char *token, const char *read_token);
