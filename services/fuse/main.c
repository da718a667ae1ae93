/* weir-fuse: mounts one dataset of the cluster read-only, as local files. */
#include "fuse-version.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "apiauth.h"
#include "cleanup.h"
#include "config-load.h"
#include "config.h"
#include "dbus.h"
#include "fs.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "lsahead.h"
#include "parse.h"
#include "weir-build.h"
#include "fsutil.h"

/* Fluid's read-only FUSE keeps entries and attributes for two hours. */
#define DEFAULT_CACHE_TIMEOUT_MS (7200ull * 1000)
#define DEFAULT_RETRY_MS         30000
#define DEFAULT_REFRESH_MS       60000

static const char *arg_config = NULL;
static const char *arg_node = NULL;
static const char *arg_dataset = NULL;
static const char *arg_mountpoint = NULL;
static bool arg_debug = false;

static void help(void)
{
        printf("Usage: weir-fuse --config FILE --node NAME --dataset NAME [--mountpoint DIR]\n"
               "\n"
               "Mounts dataset NAME of the cluster read-only (default at the node's mount root\n"
               "/DATASET), reading blocks from the workers and metadata from the master leader.\n"
               "\n"
               "  -c --config FILE      the cluster YAML (default $WEIR_CONFIG or %s)\n"
               "  -n --node NAME        this node's name in the YAML\n"
               "  -d --dataset NAME     the dataset to mount\n"
               "  -m --mountpoint DIR   where to mount it\n"
               "     --debug            log every FUSE request\n"
               "  -h --help             this help\n"
               "     --version          the version\n"
               "\n"
               "Environment: WEIR_LOG_LEVEL, WEIR_FUSE_RETRY (how long reads and metadata calls\n"
               "retry through failovers before failing, default 30s), WEIR_FUSE_REFRESH (how\n"
               "often the versions of known files are checked, default 60s or the attr timeout),\n"
               "WEIR_FUSE_XATTRS=1 (answer the user.weir.* xattrs; by default getxattr and\n"
               "listxattr answer ENOSYS once and the kernel stops asking), "
               "WEIR_FUSE_LISTING_CACHE\n"
               "(bytes of directory listing pages kept, default 8Mi),\n"
               "WEIR_FUSE_PREFETCH_FILES (files of a directory warmed ahead of a reader opening\n"
               "them in order, default 16, 0 = off, at most 256), WEIR_FUSE_PREFETCH_BYTES (their\n"
               "bytes at most, default 64Mi), WEIR_FUSE_LIST_AHEAD (directories whose first\n"
               "listing page is fetched ahead of a walk, default 8, 0 = off, at most 64),\n"
               "WEIR_FUSE_NO_OPEN=1 (files are opened by the kernel without asking the daemon:\n"
               "two requests less per file, but a file whose version changes while it is open is\n"
               "read as the new version from then on; see docs/fuse.md).\n",
               CONFIG_DEFAULT_PATH);
}

static int parse_args(int argc, char **argv)
{
        enum { ARG_VERSION = 0x100, ARG_DEBUG };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"node", required_argument, NULL, 'n'},
                {"dataset", required_argument, NULL, 'd'},
                {"mountpoint", required_argument, NULL, 'm'},
                {"debug", no_argument, NULL, ARG_DEBUG},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:n:d:m:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'n':
                        arg_node = optarg;
                        break;
                case 'd':
                        arg_dataset = optarg;
                        break;
                case 'm':
                        arg_mountpoint = optarg;
                        break;
                case ARG_DEBUG:
                        arg_debug = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("weir-fuse %s (libfuse %s, %s)\n", WEIR_VERSION, fuse_pkgversion(),
                               HAVE_FUSE_PASSTHROUGH ? "+passthrough" : "-passthrough");
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc || !arg_node || !arg_dataset) {
                fprintf(stderr, "weir-fuse: --node and --dataset are required (see --help).\n");
                return -EINVAL;
        }
        return 1;
}

static int run(int argc, char **argv)
{
        _cleanup_(config_freep) config *c = NULL;
        _cleanup_(fs_freep) fs *f = NULL;
        _cleanup_free_ char *mountpoint = NULL;
        _cleanup_secret_ char *token = NULL;
        const config_node *node;
        const config_dataset *d;
        const char *path, *e;
        fs_options o = {
                .attr_timeout_ms = DEFAULT_CACHE_TIMEOUT_MS,
                .entry_timeout_ms = DEFAULT_CACHE_TIMEOUT_MS,
                .retry_ms = DEFAULT_RETRY_MS,
                .max_threads = 32,
                .prefetch_threads = 4,
                .prefetch_bytes = 64ull << 20,
                .prefetch_files = 16,
                .prefetch_files_bytes = 64ull << 20,
                .list_ahead = LSAHEAD_WINDOW_DEFAULT,
                .read_ahead_kb = 16384,
        };
        dbus *bus = NULL;
        int r;

        log_setup("weir-fuse");
        r = parse_args(argc, argv);
        if (r <= 0)
                return r;

        path = config_resolve_path(arg_config);
        r = config_load_logged(path, true, &c);
        if (r < 0)
                return r;
        node = config_find_node(c, arg_node);
        if (!node)
                return log_error_errno(EINVAL, "%s names no node '%s'.", path, arg_node);
        d = config_find_dataset(c, arg_dataset);
        if (!d)
                return log_error_errno(EINVAL, "%s names no dataset '%s'.", path, arg_dataset);
        if (d->runtime && d->runtime->attr_timeout_ms)
                o.attr_timeout_ms = d->runtime->attr_timeout_ms;
        if (d->runtime && d->runtime->entry_timeout_ms)
                o.entry_timeout_ms = d->runtime->entry_timeout_ms;
        /* a sync may give files new versions long before the attr timeout ends */
        o.refresh_ms = MIN(o.attr_timeout_ms, DEFAULT_REFRESH_MS);
        e = getenv("WEIR_FUSE_REFRESH");
        if (e && parse_duration_ms(e, &o.refresh_ms) < 0)
                return log_error_errno(EINVAL, "Bad WEIR_FUSE_REFRESH=%s.", e);
        e = getenv("WEIR_FUSE_PREFETCH_FILES");
        if (e) {
                uint64_t v;

                if (parse_u64(e, &v) < 0 || v > FS_MAX_PREFETCH_FILES)
                        return log_error_errno(EINVAL,
                                               "Bad WEIR_FUSE_PREFETCH_FILES=%s: expected a "
                                               "number of files from 0 (off) to %u.",
                                               e, FS_MAX_PREFETCH_FILES);
                o.prefetch_files = (unsigned)v;
        }
        e = getenv("WEIR_FUSE_LIST_AHEAD");
        uint64_t v;
        if (e && (parse_u64(e, &v) < 0 || v > LSAHEAD_WINDOW_MAX))
                return log_error_errno(EINVAL,
                                       "Bad WEIR_FUSE_LIST_AHEAD=%s: expected a number of "
                                       "directories from 0 (off) to %u.",
                                       e, LSAHEAD_WINDOW_MAX);
        if (e)
                o.list_ahead = (unsigned)v;
        e = getenv("WEIR_FUSE_PREFETCH_BYTES");
        if (e && (parse_size(e, &o.prefetch_files_bytes) < 0 || o.prefetch_files_bytes == 0))
                return log_error_errno(EINVAL,
                                       "Bad WEIR_FUSE_PREFETCH_BYTES=%s: expected a size such "
                                       "as 64Mi.",
                                       e);
        e = getenv("WEIR_FUSE_RETRY");
        if (e && parse_duration_ms(e, &o.retry_ms) < 0)
                return log_error_errno(EINVAL, "Bad WEIR_FUSE_RETRY=%s.", e);
        e = getenv("WEIR_FUSE_XATTRS");
        if (e && (strcmp(e, "1") == 0 || strcmp(e, "0") == 0))
                o.xattrs = e[0] == '1';
        else if (e && *e)
                return log_error_errno(EINVAL, "Bad WEIR_FUSE_XATTRS=%s: 0 or 1.", e);
        e = getenv("WEIR_FUSE_NO_OPEN");
        if (e && (strcmp(e, "1") == 0 || strcmp(e, "0") == 0))
                o.no_open = e[0] == '1';
        else if (e && *e)
                return log_error_errno(EINVAL, "Bad WEIR_FUSE_NO_OPEN=%s: 0 or 1.", e);
        e = getenv("WEIR_FUSE_LISTING_CACHE");
        if (e) {
                uint64_t b;

                if (parse_size(e, &b) < 0 || b < 4096 || b > (1ull << 40))
                        return log_error_errno(EINVAL,
                                               "Bad WEIR_FUSE_LISTING_CACHE=%s: a size from 4Ki "
                                               "to 1Ti.",
                                               e);
                o.listing_cache_bytes = (size_t)b;
        }
        o.debug = arg_debug;
        if (c->token_file) {
                /* the cluster token, else the read token: reads work, heartbeats say 401 */
                r = apiauth_client_token(c, &token);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        log_warning_errno(r,
                                          "Cannot read the token file %s (%m): every call to the "
                                          "masters and workers will be refused, ignoring.",
                                          c->token_file);
                o.token = token;
        }

        if (arg_mountpoint)
                mountpoint = strdup(arg_mountpoint);
        else if (asprintf(&mountpoint, "%s/%s", node->mount_root, d->name) < 0)
                mountpoint = NULL;
        if (!mountpoint)
                return log_oom();

        /* a worker or master dying mid-request must not kill us */
        signal(SIGPIPE, SIG_IGN);
        if (http_global_init() < 0 || httpc_global_init() < 0)
                return log_error_errno(EIO, "Cannot initialise libcurl.");

        r = fs_new(c, node, d, &o, &f);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the file system: %m");
        r = fs_mount(f, mountpoint);
        if (r < 0)
                return r;
        r = dbus_new(f, o.refresh_ms, &bus);
        if (r < 0)
                return log_error_errno(r, "Cannot start the status thread: %m");

        r = fs_run(f);

        (void)sd_notify(false, "STOPPING=1");
        log_info("Unmounting %s.", mountpoint);
        dbus_free(bus);
        fs_unmount(f);
        return r;
}

int main(int argc, char **argv)
{
        int r = run(argc, argv);

        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
