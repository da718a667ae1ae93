/* The plumbing around a FUSE mount (see mount.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "mount.h"

static int run_fusermount_uz(const char *mountpoint)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return -errno;
        if (pid == 0) {
                execlp("fusermount3", "fusermount3", "-uz", mountpoint, (char *)NULL);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* statfs() always reaches a stale mount (stat() may be answered from the kernel's cache). */
int mount_clear_stale(const char *mountpoint)
{
        struct statvfs sv;
        int r;

        if (statvfs(mountpoint, &sv) >= 0 || errno != ENOTCONN)
                return 0;
        log_notice("%s is a stale FUSE mount (transport endpoint not connected), unmounting it.",
                   mountpoint);
        if (umount2(mountpoint, MNT_DETACH) < 0) {
                r = -errno;
                log_debug_errno(r, "umount2(%s, MNT_DETACH): %m, trying fusermount3 -uz",
                                mountpoint);
                r = run_fusermount_uz(mountpoint);
                if (r < 0)
                        return log_error_errno(r, "Cannot unmount the stale mount at %s: %m",
                                               mountpoint);
        }
        return 0;
}

/* Raises the kernel read-ahead of the mount's backing device (128 KiB by default) so that a
 * sequential reader keeps several 1 MiB requests in flight. */
void mount_set_read_ahead(const char *mountpoint, unsigned kb)
{
        char path[128], val[32];
        struct stat st;
        _cleanup_close_ int fd = -1;
        int n;

        if (kb == 0 || stat(mountpoint, &st) < 0)
                return;
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
                 minor(st.st_dev));
        fd = open(path, O_WRONLY | O_CLOEXEC);
        n = snprintf(val, sizeof(val), "%u", kb);
        if (fd < 0 || write(fd, val, n) != n)
                log_debug("Cannot set %s: %m, keeping the kernel's read-ahead", path);
}

/* The largest read to ask the kernel for. libfuse splices a reply from the tier file through a
 * pipe into /dev/fuse (no copy in this process) only when the pipe holds the whole reply plus a
 * page per buffer and two more; otherwise it reads the bytes into a fresh buffer and writes them
 * (two copies and page faults, measured at a third of this process's time). A pipe grows past
 * fs.pipe-max-size (1 MiB by default) only with CAP_SYS_RESOURCE, which containers and hardened
 * units often lack: then reads stay a few pages under the limit so that splicing works. */
unsigned mount_choose_max_read(uint64_t block_size, unsigned max_read, unsigned max_extents)
{
        _cleanup_fclose_ FILE *fp = NULL;
        unsigned long pipe_max = 0;
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), bufs, reserve, max = max_read;
        int p[2];
        bool grows = false;

        /* A read must not touch more blocks than one reply takes extents (MAX_EXTENTS). */
        block_size = MAX(block_size, 1);
        if ((max_extents - 1) * block_size < max)
                max = MAX((max_extents - 1) * block_size / page * page, page);
        if (pipe2(p, O_CLOEXEC) == 0) {
                grows = fcntl(p[0], F_SETPIPE_SZ, (int)(2 * max_read)) >= 0;
                safe_close(p[0]);
                safe_close(p[1]);
        }
        if (grows)
                return (unsigned)max;
        fp = fopen("/proc/sys/fs/pipe-max-size", "re");
        if (!fp || fscanf(fp, "%lu", &pipe_max) != 1)
                return (unsigned)max;
        /* libfuse 3.14 wants (buffers + 2) pages more than the reply's 16-byte header and data,
         * one buffer per block the read touches: at most max / block_size + 2 of them,
         * MAX_EXTENTS at most. One more page for the header once the data is rounded down to
         * pages. */
        bufs = MIN((uint64_t)max_extents, max / block_size + 2);
        reserve = (bufs + 3) * page;
        if (pipe_max <= reserve + page)
                return (unsigned)max;
        pipe_max = (pipe_max - reserve) / page * page;
        return (unsigned)MIN((uint64_t)pipe_max, max);
}

int mount_is_live(const char *mountpoint)
{
        _cleanup_free_ char *parent = NULL;
        struct stat st, pst;

        if (asprintf(&parent, "%s/..", mountpoint) < 0)
                return -ENOMEM;
        if (stat(mountpoint, &st) < 0 || stat(parent, &pst) < 0)
                return -errno;
        return st.st_dev == pst.st_dev ? -ENOTCONN : 0;
}
