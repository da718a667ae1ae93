/* The cluster YAML loader's diagnostics and typed readers of the tree (see config-internal.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "cleanup.h"
#include "config-internal.h"
#include "config.h"
#include "log.h"
#include "parse.h"

/* ---- small helpers ---------------------------------------------------------------------- */

bool cfg_streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

char *cfg_l_strdup(loader *l, const char *s)
{
        char *r;

        if (!s)
                return NULL;
        r = strdup(s);
        if (!r)
                l->oom = true;
        return r;
}

_printf_(5, 0) static void diag_va(loader *l, bool warning, unsigned line, unsigned column,
                                   const char *format, va_list ap)
{
        char *msg;

        if (!warning)
                l->n_errors++;
        if (l->n_diags >= CONFIG_MAX_DIAGS) {
                l->n_dropped++;
                l->n_dropped_errors += !warning;
                return;
        }
        if (!ARRAY_GROW(l->diags, l->n_diags_alloc, l->n_diags + 1) ||
            vasprintf(&msg, format, ap) < 0) {
                l->oom = true;
                return;
        }
        l->diags[l->n_diags++] = (config_diag){
                .warning = warning,
                .line = line,
                .column = column,
                .message = msg,
        };
}

_printf_(5, 6) void cfg_diag(loader *l, bool warning, unsigned line, unsigned column,
                             const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, warning, line, column, format, ap);
        va_end(ap);
}

_printf_(3, 4) void cfg_error_at(loader *l, const ynode *n, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, false, n ? n->line : 1, n ? n->column : 1, format, ap);
        va_end(ap);
}

_printf_(3, 4) void cfg_warning_at(loader *l, const ynode *n, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        diag_va(l, true, n ? n->line : 1, n ? n->column : 1, format, ap);
        va_end(ap);
}

/* ---- reading the tree ------------------------------------------------------------------- */

/* Checks that SEQ (the value of KEY) is a list of 1 to MAX entries, reporting what is wrong:
 * "KEY: expected a list of ITEMS, got ...", "KEY: expected at least one ITEM",
 * "KEY: more than MAX ITEMS[WHERE]". */
bool cfg_check_list(loader *l, const ynode *seq, const char *key, const char *item,
                    const char *items, unsigned max, const char *where)
{
        if (seq->type != YNODE_SEQ) {
                cfg_error_at(l, seq, "%s: expected a list of %s, got %s", key, items,
                             config_yaml_describe(seq));
                return false;
        }
        if (seq->n_items == 0) {
                cfg_error_at(l, seq, "%s: expected at least one %s", key, item);
                return false;
        }
        if (seq->n_items > max) {
                cfg_error_at(l, seq, "%s: more than %u %s%s", key, max, items, where);
                return false;
        }
        return true;
}

/* Copies the values of FIELDS' keys out of MAP and warns about any other key, naming the Fluid
 * ones (FLUID) as such. False when MAP is not a usable mapping (an error was reported). */
bool cfg_pick(loader *l, const ynode *map, const char *what, const field *fields,
              const char *const *fluid)
{
        size_t n;

        if (map->type != YNODE_MAP) {
                cfg_error_at(l, map, "%s: expected a mapping, got %s", what,
                             config_yaml_describe(map));
                return false;
        }
        n = map->n_items / 2;
        if (n > MAP_MAX_KEYS) {
                cfg_error_at(l, map, "%s: more than %u keys", what, MAP_MAX_KEYS);
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                const ynode *key = map->items[2 * i];
                bool known = false;

                if (key->type != YNODE_SCALAR) {
                        cfg_error_at(l, key, "%s: keys must be strings, got %s", what,
                                     config_yaml_describe(key));
                        return false;
                }
                for (size_t j = 0; j < i; j++)
                        if (cfg_streq(map->items[2 * j]->value, key->value)) {
                                cfg_error_at(l, key, "%s: duplicate key '%s' (first at %u:%u)",
                                             what, key->value, map->items[2 * j]->line,
                                             map->items[2 * j]->column);
                                return false;
                        }
                for (const field *f = fields; f->key; f++)
                        if (cfg_streq(f->key, key->value)) {
                                *f->value = map->items[2 * i + 1];
                                known = true;
                                break;
                        }
                if (known)
                        continue;
                for (const char *const *k = fluid; k && *k; k++)
                        if (cfg_streq(*k, key->value)) {
                                cfg_warning_at(
                                        l, key,
                                        "%s: '%s' is a Fluid setting that weir does not use, "
                                        "ignoring",
                                        what, key->value);
                                known = true;
                                break;
                        }
                if (!known)
                        cfg_warning_at(l, key, "%s: unknown key '%s', ignoring", what, key->value);
        }
        return true;
}

const char *cfg_get_str(loader *l, const ynode *n, const char *what)
{
        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                cfg_error_at(l, n, "%s: expected a string, got %s", what, config_yaml_describe(n));
                return NULL;
        }
        if (strlen(n->value) != n->len) {
                cfg_error_at(l, n, "%s: contains a NUL character", what);
                return NULL;
        }
        return n->value;
}

bool cfg_get_uint(loader *l, const ynode *n, const char *what, uint64_t max, uint64_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                cfg_error_at(l, n, "%s: expected a number, got %s", what, config_yaml_describe(n));
                return false;
        }
        if (parse_u64(n->value, &v) < 0 || v > max) {
                cfg_error_at(l, n, "%s: expected a whole number between 0 and %llu (got '%s')",
                             what, (unsigned long long)max, n->value);
                return false;
        }
        *ret = v;
        return true;
}

bool cfg_get_port(loader *l, const ynode *n, const char *what, uint16_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                cfg_error_at(l, n, "%s: expected a port number, got %s", what,
                             config_yaml_describe(n));
                return false;
        }
        if (parse_u64(n->value, &v) < 0 || v < 1 || v > 65535) {
                cfg_error_at(l, n, "%s must be a port number between 1 and 65535 (got '%s')", what,
                             n->value);
                return false;
        }
        *ret = (uint16_t)v;
        return true;
}

bool cfg_get_duration(loader *l, const ynode *n, const char *what, uint64_t *ret)
{
        uint64_t v;

        if (n->type != YNODE_SCALAR || config_yaml_is_null(n)) {
                cfg_error_at(l, n, "%s: expected a duration, got %s", what,
                             config_yaml_describe(n));
                return false;
        }
        if (parse_duration_ms(n->value, &v) < 0) {
                cfg_error_at(l, n, "%s: expected a duration such as 300ms, 2s, 5m or 1h (got '%s')",
                             what, n->value);
                return false;
        }
        *ret = v;
        return true;
}

bool cfg_name_ok(const char *s)
{
        size_t len = strlen(s);

        if (len == 0 || len > NAME_MAX_LEN || cfg_streq(s, ".") || cfg_streq(s, ".."))
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p == '/' || *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

/* A name that becomes a directory, a systemd instance name and a URL path segment. */
const char *cfg_get_name(loader *l, const ynode *n, const char *what)
{
        const char *s = cfg_get_str(l, n, what);

        if (!s)
                return NULL;
        if (s[0] == 0) {
                cfg_error_at(l, n, "%s must not be empty", what);
                return NULL;
        }
        if (!cfg_name_ok(s)) {
                cfg_error_at(
                        l, n,
                        "%s '%s' cannot be used as a directory name (1-%u bytes, no '/', spaces "
                        "or control characters, not '.' or '..')",
                        what, s, NAME_MAX_LEN);
                return NULL;
        }
        return s;
}

const char *cfg_get_abs_path(loader *l, const ynode *n, const char *what)
{
        const char *s = cfg_get_str(l, n, what);

        if (!s)
                return NULL;
        if (s[0] != '/') {
                cfg_error_at(l, n, "%s must be an absolute path (got '%s')", what, s);
                return NULL;
        }
        return s;
}
