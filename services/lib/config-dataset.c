/* The cluster YAML's Dataset documents: mounts, their options and secrets. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config-internal.h"
#include "config.h"
#include "log.h"
#include "parse.h"

/* ---- Dataset ---------------------------------------------------------------------------- */

static const char *const fluid_dataset_spec[] = {
        "owner",    "nodeAffinity", "tolerations",         "accessModes",
        "runtimes", "placement",    "dataRestoreLocation", NULL,
};

static const char *const fluid_mount[] = {"path", "readOnly", "shared", NULL};

void cfg_option_list_done(option_list *o)
{
        for (size_t i = 0; i < o->n; i++) {
                free(o->items[i].key);
                if (o->items[i].value && o->items[i].secret)
                        explicit_bzero(o->items[i].value, strlen(o->items[i].value));
                free(o->items[i].value);
        }
        free(o->items);
        free(o->where);
        *o = (option_list){};
}

static bool option_add(loader *l, option_list *o, const ynode *where, const char *key,
                       const char *value, bool secret)
{
        for (size_t i = 0; i < o->n; i++)
                if (cfg_streq(o->items[i].key, key)) {
                        cfg_error_at(l, where, "option '%s' given twice (first at %u:%u)", key,
                                     o->where[i]->line, o->where[i]->column);
                        return false;
                }
        if (o->n >= CONFIG_MAX_OPTIONS) {
                cfg_error_at(l, where, "more than %u options for one mount", CONFIG_MAX_OPTIONS);
                return false;
        }
        if (!CONFIG_GROW(o->items, o->alloc, o->n + 1) ||
            !CONFIG_GROW(o->where, o->alloc_where, o->n + 1)) {
                l->oom = true;
                return false;
        }
        o->items[o->n] = (config_option){
                .key = strdup(key),
                .value = strdup(value),
                .secret = secret,
        };
        o->where[o->n] = where;
        if (!o->items[o->n].key || !o->items[o->n].value) {
                free(o->items[o->n].key);
                free(o->items[o->n].value);
                l->oom = true;
                return false;
        }
        o->n++;
        return true;
}

/* Keys whose plain values are credentials: they are flagged secret so they are never printed. */
static bool key_looks_secret(const char *key)
{
        static const char *const words[] = {"secret",     "password",  "passwd",     "token",
                                            "credential", "accesskey", "access.key", "access_key",
                                            "privatekey", NULL};

        for (const char *const *w = words; *w; w++)
                if (strcasestr(key, *w))
                        return true;
        return false;
}

static void load_options(loader *l, option_list *o, const ynode *map, const char *what)
{
        if (map->type != YNODE_MAP) {
                cfg_error_at(l, map, "%s: expected a mapping of option names to values, got %s",
                             what, config_yaml_describe(map));
                return;
        }
        if (map->n_items / 2 > CONFIG_MAX_OPTIONS) {
                cfg_error_at(l, map, "%s: more than %u options", what, CONFIG_MAX_OPTIONS);
                return;
        }
        for (size_t i = 0; i + 1 < map->n_items; i += 2) {
                const ynode *k = map->items[i], *v = map->items[i + 1];
                const char *key = cfg_get_str(l, k, what), *value;

                if (!key)
                        continue;
                if (key[0] == 0) {
                        cfg_error_at(l, k, "%s: option names must not be empty", what);
                        continue;
                }
                if (v->type != YNODE_SCALAR) {
                        cfg_error_at(l, v, "%s: option '%s': expected a string, got %s", what, key,
                                     config_yaml_describe(v));
                        continue;
                }
                value = config_yaml_is_null(v) ? "" : v->value;
                if (strlen(value) != v->len && !config_yaml_is_null(v)) {
                        cfg_error_at(l, v, "%s: option '%s' contains a NUL character", what, key);
                        continue;
                }
                option_add(l, o, k, key, value, key_looks_secret(key));
        }
}

/* Reads a secret file: a regular file of at most CONFIG_MAX_SECRET bytes, one trailing newline
 * dropped. Never blocks (O_NONBLOCK against FIFOs) and never prints the content. */
static int read_secret(const char *path, char **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > CONFIG_MAX_SECRET)
                return -EFBIG;
        buf = malloc(CONFIG_MAX_SECRET + 2);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, CONFIG_MAX_SECRET + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > CONFIG_MAX_SECRET)
                        return -EFBIG;
        }
        if (memchr(buf, 0, n))
                return -EBADMSG;
        if (n > 0 && buf[n - 1] == '\n')
                n--;
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *secret_error(int r)
{
        switch (r) {
        case -EFBIG:
                return "larger than 64 KiB";
        case -EBADFD:
                return "not a regular file";
        case -EBADMSG:
                return "contains a NUL byte";
        default:
                return strerror(-r);
        }
}

static void load_encrypt_option(loader *l, option_list *o, const ynode *item, const char *what)
{
        const ynode *name = NULL, *value_from = NULL, *value_file = NULL;
        const field fields[] = {
                {"name", &name},
                {"valueFrom", &value_from},
                {"valueFile", &value_file},
                {},
        };
        _cleanup_free_ char *path = NULL;
        char *value = NULL;
        const ynode *where;
        const char *key;
        int r;

        if (!cfg_pick(l, item, what, fields, NULL))
                return;
        if (!name) {
                cfg_error_at(l, item, "%s: missing 'name', the option it sets", what);
                return;
        }
        key = cfg_get_str(l, name, what);
        if (!key)
                return;
        if (key[0] == 0) {
                cfg_error_at(l, name, "%s: option names must not be empty", what);
                return;
        }
        if (!!value_from == !!value_file) {
                cfg_error_at(l, item,
                             "%s '%s': expected exactly one of valueFrom.secretKeyRef or valueFile",
                             what, key);
                return;
        }
        if (value_from) {
                const ynode *ref = NULL, *sname = NULL, *skey = NULL;
                const field from_fields[] = {{"secretKeyRef", &ref}, {}};
                const field ref_fields[] = {{"name", &sname}, {"key", &skey}, {}};
                const char *sn, *sk;

                if (!cfg_pick(l, value_from, "valueFrom", from_fields, NULL))
                        return;
                if (!ref) {
                        cfg_error_at(l, value_from, "valueFrom: missing 'secretKeyRef'");
                        return;
                }
                if (!cfg_pick(l, ref, "secretKeyRef", ref_fields, NULL))
                        return;
                if (!sname || !skey) {
                        cfg_error_at(l, ref, "secretKeyRef: expected both 'name' and 'key'");
                        return;
                }
                sn = cfg_get_name(l, sname, "secretKeyRef.name");
                sk = cfg_get_name(l, skey, "secretKeyRef.key");
                if (!sn || !sk)
                        return;
                if (asprintf(&path, "%s/secrets/%s/%s", l->dir, sn, sk) < 0) {
                        path = NULL;
                        l->oom = true;
                        return;
                }
                where = ref;
        } else {
                const char *f = cfg_get_str(l, value_file, "valueFile");

                if (!f)
                        return;
                if (f[0] == 0) {
                        cfg_error_at(l, value_file, "valueFile must not be empty");
                        return;
                }
                if (f[0] == '/')
                        path = strdup(f);
                else if (asprintf(&path, "%s/%s", l->dir, f) < 0)
                        path = NULL;
                if (!path) {
                        l->oom = true;
                        return;
                }
                where = value_file;
        }
        r = read_secret(path, &value);
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                cfg_error_at(l, where, "cannot read secret file '%s' for option '%s': %s", path,
                             key, secret_error(r));
                return;
        }
        option_add(l, o, name, key, value, true);
        explicit_bzero(value, strlen(value));
        free(value);
}

static void load_encrypt_options(loader *l, option_list *o, const ynode *seq, const char *what)
{
        if (seq->type != YNODE_SEQ) {
                cfg_error_at(l, seq,
                             "%s: expected a list of {name, valueFrom or valueFile}, got %s", what,
                             config_yaml_describe(seq));
                return;
        }
        if (seq->n_items > CONFIG_MAX_OPTIONS) {
                cfg_error_at(l, seq, "%s: more than %u options", what, CONFIG_MAX_OPTIONS);
                return;
        }
        for (size_t i = 0; i < seq->n_items; i++)
                load_encrypt_option(l, o, seq->items[i], what);
}

static const struct {
        const char *name;
        config_scheme scheme;
} schemes[] = {
        {"http", CONFIG_SCHEME_HTTP},  {"https", CONFIG_SCHEME_HTTPS}, {"s3", CONFIG_SCHEME_S3},
        {"oss", CONFIG_SCHEME_OSS},    {"cos", CONFIG_SCHEME_COS},     {"file", CONFIG_SCHEME_FILE},
        {"local", CONFIG_SCHEME_FILE},
};

/* Checks URL's scheme and shape; derives the default mount name (last path segment, else the
 * host or bucket) into *ret_name (malloc'd). */
static bool check_url(loader *l, const ynode *where, const char *url, config_scheme *ret_scheme,
                      char **ret_name)
{
        const char *sep = strstr(url, "://"), *rest, *path, *last, *end;
        size_t slen, i;

        if (!sep || sep == url) {
                cfg_error_at(
                        l, where,
                        "mountPoint '%s' is not a URL; expected SCHEME://... with scheme http, "
                        "https, s3, oss, cos, file or local",
                        url);
                return false;
        }
        slen = (size_t)(sep - url);
        for (i = 0; i < ELEMENTSOF(schemes); i++)
                if (strlen(schemes[i].name) == slen && strncasecmp(url, schemes[i].name, slen) == 0)
                        break;
        if (i == ELEMENTSOF(schemes)) {
                cfg_error_at(
                        l, where,
                        "mountPoint '%s': unsupported scheme '%.*s'; expected http, https, s3, "
                        "oss, cos, file or local",
                        url, (int)MIN(slen, (size_t)32), url);
                return false;
        }
        *ret_scheme = schemes[i].scheme;
        rest = sep + 3;
        if (*ret_scheme == CONFIG_SCHEME_FILE) {
                if (rest[0] != '/') {
                        cfg_error_at(l, where,
                                     "mountPoint '%s': %.*s:// needs an absolute path, e.g. "
                                     "local:///srv/data",
                                     url, (int)slen, url);
                        return false;
                }
                path = rest;
        } else {
                path = strchr(rest, '/');
                if (!path)
                        path = rest + strlen(rest);
                if (path == rest) {
                        cfg_error_at(l, where, "mountPoint '%s': missing the %s after '://'", url,
                                     *ret_scheme <= CONFIG_SCHEME_HTTPS ? "host" : "bucket");
                        return false;
                }
        }
        /* The default name: the last non-empty path segment, else the host or bucket. */
        end = path + strlen(path);
        while (end > path && end[-1] == '/')
                end--;
        last = end;
        while (last > path && last[-1] != '/')
                last--;
        if (last == end) {
                last = rest;
                end = path;
        }
        {
                const char *q = memchr(last, '?', (size_t)(end - last));

                if (q)
                        end = q;
        }
        *ret_name = strndup(last, (size_t)(end - last));
        if (!*ret_name) {
                l->oom = true;
                return false;
        }
        return true;
}

static void load_mount(loader *l, config_dataset *d, const ynode **names, const ynode *item,
                       const option_list *shared)
{
        const ynode *mount_point = NULL, *name = NULL, *options = NULL, *encrypt = NULL;
        const field fields[] = {
                {"mountPoint", &mount_point},
                {"name", &name},
                {"options", &options},
                {"encryptOptions", &encrypt},
                {},
        };
        _cleanup_free_ char *derived = NULL;
        option_list o = {};
        config_scheme scheme;
        const char *url, *n;
        config_mount *m;

        if (!cfg_pick(l, item, "mount", fields, fluid_mount))
                return;
        if (!mount_point) {
                cfg_error_at(l, item, "mount: missing 'mountPoint', the URL of the remote store");
                return;
        }
        url = cfg_get_str(l, mount_point, "mountPoint");
        if (!url || !check_url(l, mount_point, url, &scheme, &derived))
                return;
        if (name)
                n = cfg_get_name(l, name, "mount name");
        else {
                n = derived;
                if (!cfg_name_ok(n)) {
                        cfg_error_at(
                                l, mount_point,
                                "mountPoint '%s': cannot derive a mount name from it; set 'name'",
                                url);
                        return;
                }
        }
        if (!n)
                return;
        for (size_t i = 0; i < d->n_mounts; i++)
                if (cfg_streq(d->mounts[i].name, n)) {
                        const ynode *w = name ? name : mount_point;

                        cfg_error_at(l, w,
                                     "duplicate mount name '%s' in dataset '%s' (first at %u:%u)",
                                     n, d->name, names[i]->line, names[i]->column);
                        return;
                }

        if (options)
                load_options(l, &o, options, "options");
        if (encrypt)
                load_encrypt_options(l, &o, encrypt, "encryptOptions");
        /* Fluid's sharedOptions apply to every mount; the mount's own options take precedence. */
        for (size_t i = 0; i < shared->n; i++)
                if (!config_mount_option(&(config_mount){.options = o.items, .n_options = o.n},
                                         shared->items[i].key))
                        option_add(l, &o, shared->where[i], shared->items[i].key,
                                   shared->items[i].value, shared->items[i].secret);

        m = &d->mounts[d->n_mounts];
        *m = (config_mount){
                .name = cfg_l_strdup(l, n),
                .mount_point = cfg_l_strdup(l, url),
                .scheme = scheme,
                .options = o.items,
                .n_options = o.n,
        };
        free(o.where);
        names[d->n_mounts] = name ? name : mount_point;
        d->n_mounts++;
}

void cfg_load_dataset(loader *l, const ynode *doc, const ynode *metadata, const ynode *spec)
{
        const ynode *mounts = NULL, *block_size = NULL, *sync = NULL, *shared = NULL,
                    *shared_enc = NULL, *name_node = NULL, *max_entries = NULL;
        const field fields[] = {
                {"mounts", &mounts},
                {"blockSize", &block_size},
                {"syncInterval", &sync},
                {"maxEntries", &max_entries},
                {"sharedOptions", &shared},
                {"sharedEncryptOptions", &shared_enc},
                {},
        };
        _cleanup_free_ const ynode **names = NULL;
        option_list shared_opts = {};
        config *c = l->c;
        config_dataset *d;
        const char *name;

        name = cfg_get_metadata_name(l, doc, metadata, "Dataset", &name_node);
        if (!name)
                return;
        for (size_t i = 0; i < c->n_datasets; i++)
                if (cfg_streq(c->datasets[i].name, name)) {
                        cfg_error_at(l, name_node, "duplicate dataset name '%s' (first at %u:%u)",
                                     name, l->dataset_info[i].name->line,
                                     l->dataset_info[i].name->column);
                        return;
                }
        if (c->n_datasets >= CONFIG_MAX_DATASETS) {
                cfg_error_at(l, doc, "more than %u datasets", CONFIG_MAX_DATASETS);
                return;
        }
        if (!spec) {
                cfg_error_at(l, doc, "Dataset '%s': missing 'spec' with the mounts", name);
                return;
        }
        if (!cfg_pick(l, spec, "Dataset spec", fields, fluid_dataset_spec))
                return;
        if (!CONFIG_GROW(c->datasets, l->n_datasets_alloc, c->n_datasets + 1) ||
            !CONFIG_GROW(l->dataset_info, l->n_dataset_info_alloc, c->n_datasets + 1)) {
                l->oom = true;
                return;
        }
        d = &c->datasets[c->n_datasets];
        *d = (config_dataset){
                .name = cfg_l_strdup(l, name),
                .block_size = CONFIG_DEFAULT_BLOCK_SIZE,
                .max_entries = CONFIG_DEFAULT_MAX_ENTRIES,
        };
        l->dataset_info[c->n_datasets] = (dataset_info){.name = name_node};
        c->n_datasets++;

        if (block_size) {
                uint64_t v;

                if (block_size->type != YNODE_SCALAR || config_yaml_is_null(block_size) ||
                    parse_size(block_size->value, &v) < 0)
                        cfg_error_at(
                                l, block_size,
                                "blockSize: expected a size such as 4Mi, 16Mi or 64Mi (got %s)",
                                block_size->type == YNODE_SCALAR
                                        ? block_size->value
                                        : config_yaml_describe(block_size));
                else if (v < MIN_BLOCK_SIZE || v > MAX_BLOCK_SIZE || v % 4096 != 0)
                        cfg_error_at(
                                l, block_size,
                                "blockSize must be a multiple of 4Ki between 4Ki and 1Gi (got %s)",
                                block_size->value);
                else
                        d->block_size = v;
        }
        if (sync)
                cfg_get_duration(l, sync, "syncInterval", &d->sync_interval_ms);
        if (max_entries &&
            (max_entries->type != YNODE_SCALAR ||
             parse_u64(max_entries->value, &d->max_entries) < 0 || d->max_entries == 0))
                cfg_error_at(
                        l, max_entries,
                        "maxEntries: expected a positive number of files and directories (got %s)",
                        max_entries->type == YNODE_SCALAR ? max_entries->value
                                                          : config_yaml_describe(max_entries));

        if (shared)
                load_options(l, &shared_opts, shared, "sharedOptions");
        if (shared_enc)
                load_encrypt_options(l, &shared_opts, shared_enc, "sharedEncryptOptions");

        if (!mounts)
                cfg_error_at(l, spec, "Dataset '%s': missing 'mounts', the list of mount points",
                             name);
        else if (cfg_check_list(l, mounts, "mounts", "mount", "mounts", CONFIG_MAX_MOUNTS,
                                " in one dataset")) {
                d->mounts = calloc(mounts->n_items, sizeof(*d->mounts));
                names = calloc(mounts->n_items, sizeof(*names));
                if (!d->mounts || !names)
                        l->oom = true;
                else
                        for (size_t i = 0; i < mounts->n_items; i++)
                                load_mount(l, d, names, mounts->items[i], &shared_opts);
        }
        cfg_option_list_done(&shared_opts);
}
