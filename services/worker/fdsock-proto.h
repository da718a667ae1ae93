/* The local descriptor socket's request lines (docs/api.md), parsed without a worker: shared by
 * fdsock.c and the fuzz target. */
#pragma once

#include <stdint.h>

#include "block.h"

/* A request line is at most this long, newline included; longer is refused. The longest valid
 * one, a WAIT with a format 2 block id of 20-digit numbers, is 127 bytes. */
#define FDSOCK_MAX_LINE 192

typedef enum fdsock_verb {
        FDSOCK_OPEN,
        FDSOCK_WAIT,
} fdsock_verb;

typedef struct fdsock_cmd {
        fdsock_verb verb;
        block_key key;
        uint64_t offset, length; /* WAIT only; length > 0 */
} fdsock_cmd;

/* Parses LINE (without its newline, NUL-terminated): 0 and *RET, or -EINVAL with *RET_ERROR set
 * to the "ERR ...\n" answer to send. */
int fdsock_parse(const char *line, fdsock_cmd *ret, const char **ret_error);
