/* The plumbing around a FUSE mount that does not need the session: stale mounts, the largest
 * read the kernel should send, the backing device's read-ahead, whether the mount answers. */
#pragma once

#include <stdint.h>

/* A daemon killed with SIGKILL leaves its mount behind (every access fails with ENOTCONN):
 * detaches it (umount2 MNT_DETACH, else fusermount3 -uz). 0 when MOUNTPOINT is not such a mount
 * or was detached; -errno (logged) when it stays. */
int mount_clear_stale(const char *mountpoint);

/* The largest read to ask the kernel for, at most MAX_READ, touching at most MAX_EXTENTS - 1
 * blocks of BLOCK_SIZE, and small enough that libfuse can splice the reply (see mount.c). */
unsigned mount_choose_max_read(uint64_t block_size, unsigned max_read, unsigned max_extents);

/* Sets the read-ahead of the mount's backing device to KB (0: leaves the kernel's). Failure is
 * logged at debug level only. */
void mount_set_read_ahead(const char *mountpoint, unsigned kb);

/* 0 when MOUNTPOINT is a mounted root (another device than the directory it covers),
 * -ENOTCONN when not yet, -errno when it cannot be looked at. */
int mount_is_live(const char *mountpoint);
