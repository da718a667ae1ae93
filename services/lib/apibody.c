/* Request body checks of the cluster API (see apibody.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "apibody.h"
#include "block.h"

int apibody_parse(const char *body, size_t len, json_t **ret, char *err, size_t size)
{
        json_error_t e;
        json_t *j;

        if (len == 0) {
                j = json_object();
                if (!j)
                        return -ENOMEM;
                *ret = j;
                return 0;
        }
        j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        if (!j) {
                snprintf(err, size, "invalid JSON at line %d column %d: %s", e.line, e.column,
                         e.text);
                return -EINVAL;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                snprintf(err, size, "invalid JSON: expected an object");
                return -EINVAL;
        }
        *ret = j;
        return 0;
}

/* Absent, or an array of at most MAX block ids. */
static bool block_id_array(const json_t *a, size_t max)
{
        block_key k;
        size_t i;
        json_t *v;

        if (!a)
                return true;
        if (!json_is_array(a) || json_array_size(a) > max)
                return false;
        json_array_foreach(a, i, v)
                if (!json_is_string(v) || block_id_parse(json_string_value(v), &k) < 0)
                        return false;
        return true;
}

static bool count_ok(const json_t *v)
{
        return !v || (json_is_integer(v) && json_integer_value(v) >= 0);
}

/* Absent, or an array of at most CONFIG_MAX_TIERS-like objects with sane numbers. */
static bool tiers_ok(const json_t *tiers)
{
        size_t i;
        json_t *t;

        if (!tiers)
                return true;
        if (!json_is_array(tiers) || json_array_size(tiers) > 16)
                return false;
        json_array_foreach(tiers, i, t) {
                const json_t *medium = json_object_get(t, "medium"),
                             *path = json_object_get(t, "path");
                if (!json_is_object(t) || !count_ok(json_object_get(t, "quota")) ||
                    !count_ok(json_object_get(t, "used")) ||
                    (medium && (!json_is_string(medium) || json_string_length(medium) > 8)) ||
                    (path && (!json_is_string(path) || json_string_length(path) > 4096)))
                        return false;
        }
        return true;
}

static bool short_string(const json_t *v, size_t max)
{
        return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= max &&
               strlen(json_string_value(v)) == json_string_length(v);
}

const char *apibody_worker_register(const json_t *body)
{
        if (!short_string(json_object_get(body, "node"), APIBODY_MAX_NAME) ||
            !short_string(json_object_get(body, "api"), 2 * APIBODY_MAX_NAME) ||
            !tiers_ok(json_object_get(body, "tiers")) ||
            !block_id_array(json_object_get(body, "blocks"), APIBODY_MAX_BLOCK_REPORT))
                return "body must be {\"node\",\"api\",\"tiers\":[TIER],\"blocks\":[BLOCK_ID]}";
        return NULL;
}

const char *apibody_worker_heartbeat(const json_t *body)
{
        if (!block_id_array(json_object_get(body, "added"), APIBODY_MAX_BLOCK_REPORT) ||
            !block_id_array(json_object_get(body, "removed"), APIBODY_MAX_BLOCK_REPORT))
                return "added and removed must be arrays of block ids";
        if (!tiers_ok(json_object_get(body, "tiers")) || !count_ok(json_object_get(body, "hits")) ||
            !count_ok(json_object_get(body, "misses")))
                return "tiers must be [TIER], hits and misses counts";
        return NULL;
}

const char *apibody_fuse_heartbeat(const json_t *body)
{
        if (!short_string(json_object_get(body, "mountpoint"), APIBODY_MAX_MOUNTPOINT) ||
            !count_ok(json_object_get(body, "files")))
                return "body must be {\"mountpoint\": PATH, \"files\": N}";
        return NULL;
}

const char *apibody_label(const json_t *body)
{
        if (!json_is_string(json_object_get(body, "value")))
                return "body must be {\"value\": STRING}";
        return NULL;
}

const char *apibody_load(const json_t *body)
{
        static const char msg[] = "expected {\"dataset\", \"paths\": [\"/MOUNT/...\"], \"files\": "
                                  "[{\"file_id\", \"version\", \"size\", \"blocks\": [INDEX]}]}";
        const json_t *paths = json_object_get(body, "paths"),
                     *files = json_object_get(body, "files");
        size_t i, j;
        json_t *v, *b;

        if (!short_string(json_object_get(body, "dataset"), APIBODY_MAX_NAME))
                return msg;
        if (paths && (!json_is_array(paths) || json_array_size(paths) > APIBODY_MAX_PATHS))
                return msg;
        json_array_foreach(paths, i, v)
                if (!short_string(v, 4096))
                        return msg;
        if (files && (!json_is_array(files) || json_array_size(files) > APIBODY_MAX_PATHS))
                return msg;
        json_array_foreach(files, i, v) {
                const json_t *blocks = json_object_get(v, "blocks");
                if (!json_is_object(v) || !json_is_integer(json_object_get(v, "file_id")) ||
                    !count_ok(json_object_get(v, "file_id")) ||
                    !json_is_integer(json_object_get(v, "version")) ||
                    !count_ok(json_object_get(v, "version")) ||
                    !count_ok(json_object_get(v, "size")) ||
                    (blocks && (!json_is_array(blocks) || json_array_size(blocks) > 1000000)))
                        return msg;
                json_array_foreach(blocks, j, b)
                        if (!count_ok(b) || !b)
                                return msg;
        }
        return NULL;
}
