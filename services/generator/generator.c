/* weir-generator's logic: match this host to a node of the YAML, then link and drop in its units. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "generator.h"
#include "log.h"

/* systemd's limit on a unit name, including the suffix. */
#define UNIT_NAME_MAX 255
#define NODE_FILE_MAX 256

static void freeifaddrsp(struct ifaddrs **p)
{
        if (*p)
                freeifaddrs(*p);
}

const char *generator_match_to_string(generator_match m)
{
        switch (m) {
        case GENERATOR_MATCH_NODE_FILE:
                return "node file";
        case GENERATOR_MATCH_HOSTNAME:
                return "host name";
        case GENERATOR_MATCH_ADDRESS:
                return "interface address";
        }
        return "?";
}

static bool instance_char_ok(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || c == '.';
}

int generator_escape_instance(const char *s, char **ret)
{
        static const char hex[] = "0123456789abcdef";
        char *buf, *p;

        if (!s || !*s)
                return -EINVAL;
        buf = malloc(strlen(s) * 4 + 1);
        if (!buf)
                return -ENOMEM;
        p = buf;
        for (const char *q = s; *q; q++) {
                unsigned char c = (unsigned char)*q;

                if (c == '/')
                        *p++ = '-';
                else if (instance_char_ok((char)c) && !(q == s && c == '.'))
                        *p++ = (char)c;
                else {
                        *p++ = '\\';
                        *p++ = 'x';
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                }
        }
        *p = '\0';
        *ret = buf;
        return 0;
}

/* Reads the first line of the node file, trimmed. -ENOENT if it does not exist. */
static int read_node_file(const char *path, char **ret)
{
        _cleanup_close_ int fd = -1;
        char buf[NODE_FILE_MAX + 1];
        ssize_t n;
        char *b, *e;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        e = strchr(buf, '\n');
        if (e)
                *e = '\0';
        else if (n == NODE_FILE_MAX)
                return -E2BIG;
        b = buf;
        while (isspace((unsigned char)*b))
                b++;
        e = b + strlen(b);
        while (e > b && isspace((unsigned char)e[-1]))
                *--e = '\0';
        if (!*b)
                return -EINVAL;
        b = strdup(b);
        if (!b)
                return -ENOMEM;
        *ret = b;
        return 0;
}

static const config_node *find_by_hostname(const config *c, const char *hostname)
{
        size_t label;

        /* "node1" matches a host called "node1" or "node1.example.org". */
        label = strcspn(hostname, ".");
        for (size_t i = 0; i < c->n_nodes; i++)
                if (strcasecmp(c->nodes[i].name, hostname) == 0)
                        return &c->nodes[i];
        for (size_t i = 0; i < c->n_nodes; i++)
                if (strlen(c->nodes[i].name) == label &&
                    strncasecmp(c->nodes[i].name, hostname, label) == 0)
                        return &c->nodes[i];
        return NULL;
}

/* Parses an address literal ("10.0.0.1", "fd00::1", "[fd00::1]") into FAMILY and BUF. Host names
 * are not resolved: a generator runs before the network and must not block on DNS. */
static bool parse_address(const char *s, int *family, unsigned char buf[16])
{
        char tmp[INET6_ADDRSTRLEN + 2];
        size_t n;

        if (!s)
                return false;
        if (inet_pton(AF_INET, s, buf) == 1) {
                *family = AF_INET;
                return true;
        }
        n = strlen(s);
        if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(tmp)) {
                memcpy(tmp, s + 1, n - 2);
                tmp[n - 2] = '\0';
                s = tmp;
        }
        if (inet_pton(AF_INET6, s, buf) == 1) {
                *family = AF_INET6;
                return true;
        }
        return false;
}

static bool ifaddr_equal(const struct sockaddr *sa, int family, const unsigned char *addr)
{
        if (!sa || sa->sa_family != family)
                return false;
        if (family == AF_INET)
                return memcmp(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr, 4) ==
                       0;
        return memcmp(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, addr, 16) == 0;
}

static int find_by_address(const config *c, const config_node **ret)
{
        _cleanup_(freeifaddrsp) struct ifaddrs *ifs = NULL;
        const config_node *found = NULL;

        if (getifaddrs(&ifs) < 0)
                return -errno;
        for (size_t i = 0; i < c->n_nodes; i++) {
                unsigned char addr[16];
                int family;

                if (!parse_address(c->nodes[i].address, &family, addr))
                        continue;
                for (struct ifaddrs *a = ifs; a; a = a->ifa_next) {
                        if (!ifaddr_equal(a->ifa_addr, family, addr))
                                continue;
                        if (found && found != &c->nodes[i])
                                return -ENOTUNIQ;
                        found = &c->nodes[i];
                }
        }
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

int generator_find_node(const config *c, const char *node_file, const char *hostname,
                        const config_node **ret, generator_match *ret_match)
{
        _cleanup_free_ char *name = NULL;
        char host[HOST_NAME_MAX + 1];
        const config_node *n = NULL;
        int r;

        r = read_node_file(node_file, &name);
        if (r >= 0) {
                n = config_find_node(c, name);
                if (!n)
                        return log_debug_errno(EINVAL, "%s names node \"%s\", not in the YAML",
                                               node_file, name);
                *ret = n;
                *ret_match = GENERATOR_MATCH_NODE_FILE;
                return 0;
        }
        if (r != -ENOENT)
                return log_debug_errno(r, "Failed to read %s: %m", node_file);

        if (!hostname) {
                if (gethostname(host, sizeof(host)) < 0)
                        host[0] = '\0';
                host[sizeof(host) - 1] = '\0';
                hostname = host;
        }
        if (*hostname) {
                n = find_by_hostname(c, hostname);
                if (n) {
                        *ret = n;
                        *ret_match = GENERATOR_MATCH_HOSTNAME;
                        return 0;
                }
        }

        r = find_by_address(c, &n);
        if (r < 0)
                return r;
        *ret = n;
        *ret_match = GENERATOR_MATCH_ADDRESS;
        return 0;
}

/* What generator_write() created, so that a failure can take all of it back. */
typedef struct created {
        char *paths[128];
        bool is_dir[128];
        size_t n;
} created;

static void created_undo(created *c)
{
        while (c->n > 0) {
                c->n--;
                if (c->is_dir[c->n])
                        (void)rmdir(c->paths[c->n]);
                else
                        (void)unlink(c->paths[c->n]);
                free(c->paths[c->n]);
        }
}

static void created_forget(created *c)
{
        while (c->n > 0)
                free(c->paths[--c->n]);
}

static int created_add(created *c, const char *path, bool is_dir)
{
        if (c->n >= ELEMENTSOF(c->paths))
                return -E2BIG;
        c->paths[c->n] = strdup(path);
        if (!c->paths[c->n])
                return -ENOMEM;
        c->is_dir[c->n++] = is_dir;
        return 0;
}

static int path_join(char **ret, const char *a, const char *b)
{
        if (asprintf(ret, "%s/%s", a, b) < 0)
                return -ENOMEM;
        return 0;
}

static int make_dir(created *c, const char *dest, const char *name)
{
        _cleanup_free_ char *p = NULL;

        if (path_join(&p, dest, name) < 0)
                return -ENOMEM;
        if (mkdir(p, 0755) < 0) {
                if (errno == EEXIST)
                        return 0; /* the directory is shared with other generators */
                return log_debug_errno(errno, "Failed to create %s: %m", p);
        }
        return created_add(c, p, true);
}

/* Links DEST/DIR/NAME to UNIT_DIR/TARGET. */
static int make_link(created *c, const char *dest, const char *dir, const char *name,
                     const char *unit_dir, const char *target)
{
        _cleanup_free_ char *p = NULL, *t = NULL;
        char old[PATH_MAX];
        ssize_t n;

        if (asprintf(&p, "%s/%s/%s", dest, dir, name) < 0 || path_join(&t, unit_dir, target) < 0)
                return -ENOMEM;
        if (symlink(t, p) < 0) {
                if (errno != EEXIST)
                        return log_debug_errno(errno, "Failed to link %s: %m", p);
                /* Already there and the same: nothing to do, nothing to undo. */
                n = readlink(p, old, sizeof(old) - 1);
                if (n < 0)
                        return log_debug_errno(errno, "%s exists and is not a link", p);
                old[n] = '\0';
                if (strcmp(old, t) != 0)
                        return log_debug_errno(EEXIST, "%s exists and points to %s", p, old);
                return 0;
        }
        return created_add(c, p, false);
}

static int write_file(created *c, const char *dest, const char *name, const char *content)
{
        _cleanup_free_ char *p = NULL;
        _cleanup_close_ int fd = -1;
        size_t len = strlen(content);
        ssize_t n;
        int r;

        if (path_join(&p, dest, name) < 0)
                return -ENOMEM;
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return log_debug_errno(errno, "Failed to create %s: %m", p);
        r = created_add(c, p, false);
        if (r < 0) {
                (void)unlink(p);
                return r;
        }
        n = write(fd, content, len);
        if (n < 0)
                return log_debug_errno(errno, "Failed to write %s: %m", p);
        if ((size_t)n != len)
                return log_debug_errno(EIO, "Short write to %s", p);
        return 0;
}

/* Writes S quoted for a unit file: inside double quotes, with '\\' and '"' escaped as C escapes and
 * '%' doubled so that systemd does not take it for a specifier. */
static void unit_quote(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if (ch == '\\' || ch == '"')
                        fprintf(f, "\\%c", ch);
                else if (ch == '%')
                        fputs("%%", f);
                else if (ch < 0x20 || ch == 0x7f)
                        fprintf(f, "\\x%02x", ch);
                else
                        fputc(ch, f);
        }
        fputc('"', f);
}

static int env_quote(FILE *f, const char *key, const char *s)
{
        _cleanup_free_ char *assignment = NULL;

        if (asprintf(&assignment, "%s=%s", key, s) < 0)
                return -ENOMEM;
        fputs("Environment=", f);
        unit_quote(f, assignment);
        fputc('\n', f);
        return ferror(f) ? -EIO : 0;
}

static bool path_under(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The master runs with ProtectSystem=strict: a dataDir or runtimeDir that the YAML moves out of
 * its StateDirectory/RuntimeDirectory must be made writable (and must exist: "-" skips it
 * otherwise, and the master then reports the read-only directory). */
static void writable_path(FILE *f, const char *path, const char *default_dir)
{
        if (!path || path_under(path, default_dir))
                return;
        fputs("ReadWritePaths=-", f);
        unit_quote(f, path);
        fputc('\n', f);
}

typedef enum dropin_kind {
        DROPIN_MASTER,
        DROPIN_WORKER,
        DROPIN_FUSE,
} dropin_kind;

static int dropin_content(const config *c, const config_node *node, dropin_kind kind, char **ret)
{
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f,
                "# Written at boot by weir-generator from %s: this host is node %s.\n"
                "[Service]\n",
                c->path ? c->path : CONFIG_DEFAULT_PATH, node->name);
        r = env_quote(f, "WEIR_NODE", node->name);
        if (r >= 0 && c->path)
                r = env_quote(f, "WEIR_CONFIG", c->path);
        if (r >= 0 && kind == DROPIN_FUSE)
                r = env_quote(f, "WEIR_MOUNT_ROOT",
                              node->mount_root ? node->mount_root : CONFIG_DEFAULT_MOUNT_ROOT);
        if (r >= 0 && kind == DROPIN_MASTER) {
                writable_path(f, node->data_dir, CONFIG_DEFAULT_DATA_DIR);
                writable_path(f, node->runtime_dir, CONFIG_DEFAULT_RUNTIME_DIR);
                if (ferror(f))
                        r = -EIO;
        }
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* The units of this node: the unit file each comes from and the name it is pulled in as. */
typedef struct wanted {
        char *names[64];            /* e.g. "weir-fuse@hbase.service" */
        const char *unit_files[64]; /* e.g. "weir-fuse@.service" */
        size_t n;
} wanted;

static void wanted_done(wanted *w)
{
        while (w->n > 0)
                free(w->names[--w->n]);
}

static int wanted_add(wanted *w, const char *unit_file, const char *instance)
{
        char *name;

        if (w->n >= ELEMENTSOF(w->names))
                return log_debug_errno(E2BIG, "Too many units for one node");
        if (instance) {
                _cleanup_free_ char *esc = NULL;
                const char *at = strchr(unit_file, '@');
                int r;

                assert(at);
                r = generator_escape_instance(instance, &esc);
                if (r < 0)
                        return r;
                if (asprintf(&name, "%.*s%s%s", (int)(at - unit_file + 1), unit_file, esc, at + 1) <
                    0)
                        return -ENOMEM;
                if (strlen(name) > UNIT_NAME_MAX) {
                        free(name);
                        return log_debug_errno(ENAMETOOLONG, "\"%s\" too long for a unit name",
                                               instance);
                }
        } else {
                name = strdup(unit_file);
                if (!name)
                        return -ENOMEM;
        }
        w->names[w->n] = name;
        w->unit_files[w->n++] = unit_file;
        return 0;
}

static int write_dropin(created *cr, const config *c, const config_node *node, const char *dest,
                        const char *unit_file, dropin_kind kind)
{
        _cleanup_free_ char *dir = NULL, *file = NULL, *content = NULL;
        int r;

        if (asprintf(&dir, "%s.d", unit_file) < 0 ||
            asprintf(&file, "%s/50-weir-node.conf", dir) < 0)
                return -ENOMEM;
        r = dropin_content(c, node, kind, &content);
        if (r < 0)
                return r;
        r = make_dir(cr, dest, dir);
        if (r < 0)
                return r;
        return write_file(cr, dest, file, content);
}

int generator_write(const config *c, const config_node *node, const char *dest,
                    const char *unit_dir)
{
        _cleanup_(wanted_done) wanted w = {};
        created cr = {};
        int r = 0;

        /* Decide everything before the first write, so that a bad name writes nothing. */
        if (node->master)
                r = wanted_add(&w, "weir-master.service", NULL);
        if (r >= 0 && node->worker)
                r = wanted_add(&w, "weir-worker.service", NULL);
        for (size_t i = 0; r >= 0 && node->fuse && i < c->n_datasets; i++)
                r = wanted_add(&w, "weir-fuse@.service", c->datasets[i].name);
        if (r < 0)
                return r;
        if (w.n == 0)
                return 0; /* a node with no roles runs nothing */

        r = make_dir(&cr, dest, "weir.target.wants");
        if (r >= 0)
                r = make_dir(&cr, dest, "multi-user.target.wants");
        for (size_t i = 0; r >= 0 && i < w.n; i++)
                r = make_link(&cr, dest, "weir.target.wants", w.names[i], unit_dir,
                              w.unit_files[i]);
        if (r >= 0 && node->master)
                r = write_dropin(&cr, c, node, dest, "weir-master.service", DROPIN_MASTER);
        if (r >= 0 && node->worker)
                r = write_dropin(&cr, c, node, dest, "weir-worker.service", DROPIN_WORKER);
        if (r >= 0 && node->fuse && c->n_datasets > 0)
                r = write_dropin(&cr, c, node, dest, "weir-fuse@.service", DROPIN_FUSE);
        /* Last: weir.target itself, so that nothing starts unless all of the above is there. */
        if (r >= 0)
                r = make_link(&cr, dest, "multi-user.target.wants", "weir.target", unit_dir,
                              "weir.target");
        if (r < 0)
                created_undo(&cr);
        else
                created_forget(&cr);
        return r;
}
