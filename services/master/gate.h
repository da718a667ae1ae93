/* The leader gate of leader-only HTTP calls (api.c, rejoin.c). */
#pragma once

#include <stdbool.h>

#include "httpd.h"
#include "manager.h"

/* Replies 307 to the leader, or 503 while none serves. Returns true. */
bool gate_reply_not_leader(manager *m, httpd_request *req);
