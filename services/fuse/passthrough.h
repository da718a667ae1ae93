/* FUSE passthrough (libfuse >= 3.17, Linux >= 6.9): the kernel reads a file wholly cached on this
 * node straight from the worker's tier file, without a request to this daemon and without a
 * second copy in the FUSE page cache.
 *
 * A tier file holds one block, and the kernel maps an open file to one backing file, so only
 * files of one block (size <= the dataset's blockSize, size > 0) qualify. The kernel refuses
 * (open fails with EIO) to mix passthrough and cached opens of one inode, or two backing files
 * for one inode: this module counts the opens per inode and decides each open accordingly.
 * The kernel wants every open of an inode that has a backing file to use it (a cached or direct
 * I/O open fails with EIO), so a new version reported while passthrough opens of the old one
 * live cannot be shown to new opens: they share the old backing file and read the old version,
 * whole and unmixed, until the last open of it closes; the next open gets the new version.
 *
 * Built without passthrough support, passthrough_open() always answers "cached" (0). */
#pragma once

#include "fuse-version.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct passthrough passthrough;

/* Returns a readable descriptor of the whole content of the file being opened (the caller's
 * choice of how), or a negative errno when it is not on this node. */
typedef int (*passthrough_fd_fn)(void *userdata);

int passthrough_new(passthrough **ret);
/* Frees the table; backing ids the kernel still holds go with the session. */
passthrough *passthrough_free(passthrough *p);

/* In FUSE init: asks for the capability when the kernel offers it. */
void passthrough_init(passthrough *p, struct fuse_conn_info *conn);
/* Whether the kernel granted it (after init). */
bool passthrough_enabled(passthrough *p);

typedef enum passthrough_mode {
        PASSTHROUGH_CACHED,  /* reads through this daemon and the kernel's page cache */
        PASSTHROUGH_BACKING, /* the kernel reads the backing file itself */
} passthrough_mode;

/* At open of INO at VERSION, for a file that qualifies (QUALIFIES false: never a new backing
 * file). *RET_BACKING_ID is the id for fi->backing_id with PASSTHROUGH_BACKING. GET_FD is called
 * only when a new backing file is needed. */
passthrough_mode passthrough_open(passthrough *p, fuse_req_t req, uint64_t ino, uint64_t version,
                                  bool qualifies, passthrough_fd_fn get_fd, void *userdata,
                                  int *ret_backing_id);
/* At release of an open that passthrough_open() answered MODE for. */
void passthrough_release(passthrough *p, fuse_req_t req, uint64_t ino, passthrough_mode mode);
/* When the reply to that open failed (libfuse has freed its request by then). */
void passthrough_abort_open(passthrough *p, uint64_t ino, passthrough_mode mode);

/* Opens answered with a backing file so far. */
uint64_t passthrough_opens(passthrough *p);
