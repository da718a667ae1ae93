/* The worker's HTTP API (docs/api.md): blocks, loads, status. */
#pragma once

typedef struct worker worker;

/* Starts libmicrohttpd on W's API address; W->httpd. */
int api_start(worker *w);
