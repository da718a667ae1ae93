/* HTTP Range headers of block GETs (docs/api.md). The header comes from peers: never trusted. */
#pragma once

#include <stdint.h>

/* Parses one "bytes=" range (NULL: none) against a resource of SIZE bytes: 0 with the range, of
 * at least one byte inside [0, SIZE); 1 when there is no usable Range header (serve it all: an
 * absent header, another unit, several ranges, garbage); -ERANGE when unsatisfiable. */
int range_parse(const char *h, uint64_t size, uint64_t *ret_off, uint64_t *ret_len);

/* The explicit "bytes=A-B" range of a request, which can be answered before the resource's
 * length is known: 0 with it, 1 for anything else. */
int range_parse_bounded(const char *h, uint64_t *ret_off, uint64_t *ret_len);
