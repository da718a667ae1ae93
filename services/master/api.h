/* The master's HTTP API (docs/api.md): started by the manager through manager_parts. */
#pragma once

typedef struct manager manager;

/* Serves the API on the node's master port; m->httpd. */
int api_start(manager *m);
