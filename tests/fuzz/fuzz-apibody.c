/* libFuzzer target: any bytes as the body of every JSON call the master and worker APIs accept,
 * parsed as httpd parses them and checked as the handlers check them. No crash, no leak; an
 * accepted body has the types the handlers then read without further checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apibody.h"
#include "block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[512];
        json_t *body = NULL;
        size_t i;
        json_t *v;

        if (apibody_parse((const char *)data, size, &body, err, sizeof(err)) < 0)
                return 0;
        if (!json_is_object(body))
                __builtin_trap();
        if (!apibody_worker_register(body)) {
                if (!json_is_string(json_object_get(body, "node")) ||
                    !json_is_string(json_object_get(body, "api")))
                        __builtin_trap();
                json_array_foreach(json_object_get(body, "blocks"), i, v) {
                        block_key k;
                        if (block_id_parse(json_string_value(v), &k) < 0)
                                __builtin_trap();
                }
        }
        (void)apibody_worker_heartbeat(body);
        if (!apibody_fuse_heartbeat(body) &&
            json_string_length(json_object_get(body, "mountpoint")) == 0)
                __builtin_trap();
        if (!apibody_label(body) && !json_is_string(json_object_get(body, "value")))
                __builtin_trap();
        if (!apibody_load(body) && !json_is_string(json_object_get(body, "dataset")))
                __builtin_trap();
        json_decref(body);
        return 0;
}
