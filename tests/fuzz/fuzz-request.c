/* libFuzzer target: the small peer-controlled strings of a block request: a block id, a Range
 * header against a block size, and a line of the worker's local socket protocol. No crash; an
 * accepted range lies inside the block and is not empty; an accepted id formats back to one that
 * parses to the same key; an accepted WAIT asks for at least one byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "fdsock-proto.h"
#include "range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t block_size = 0, off, len;
        char *s;
        block_key k, k2;
        char buf[BLOCK_ID_MAX];
        const char *error;
        fdsock_cmd cmd;
        int r;

        /* the first 8 bytes choose the block size, the rest is the string */
        if (size < 8)
                return 0;
        memcpy(&block_size, data, 8);
        s = malloc(size - 8 + 1);
        if (!s)
                return 0;
        memcpy(s, data + 8, size - 8);
        s[size - 8] = 0;

        if (block_id_parse(s, &k) == 0) {
                if (block_id_parse(block_id_format(buf, &k), &k2) < 0 || !block_key_equal(&k, &k2))
                        __builtin_trap();
        }
        r = range_parse(s, block_size, &off, &len);
        if (r == 0 && (len == 0 || off >= block_size || len > block_size - off))
                __builtin_trap();
        if (r < 0 && r != -34 /* -ERANGE */)
                __builtin_trap();
        if (range_parse_bounded(s, &off, &len) == 0 && len == 0)
                __builtin_trap();
        if (strlen(s) < FDSOCK_MAX_LINE && fdsock_parse(s, &cmd, &error) == 0 &&
            cmd.verb == FDSOCK_WAIT && cmd.length == 0)
                __builtin_trap();
        free(s);
        return 0;
}
