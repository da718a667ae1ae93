/* libraft 0.15 versus raft-cowsql 0.22 (see raft-compat.h). */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "raft-compat.h"
#include "weir-build.h"

uint64_t raft_compat_term(struct raft *r, const char *raft_dir, uint64_t last)
{
        assert(r && raft_dir);
#if HAVE_RAFT_VERSION_NUMBER && defined(RAFT_VERSION_NUMBER) && RAFT_VERSION_NUMBER >= 1900
        (void)last;
        return raft_current_term(r);
#else
        /* 0.15 keeps the term only in struct raft, which we must not read; its metadata files
         * (format 1: four little-endian u64: format, version, term, voted_for; the higher
         * version is current) have it. */
        uint64_t best_version = 0, term = last;

        for (int i = 1; i <= 2; i++) {
                char path[PATH_MAX];
                unsigned char b[32];
                uint64_t v[4];

                snprintf(path, sizeof(path), "%s/metadata%d", raft_dir, i);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
                        continue;
                for (int k = 0; k < 4; k++) {
                        v[k] = 0;
                        for (int j = 7; j >= 0; j--)
                                v[k] = (v[k] << 8) | b[k * 8 + j];
                }
                if (v[0] != 1 || v[1] == 0 || v[1] < best_version)
                        continue;
                best_version = v[1];
                term = v[2];
        }
        return term;
#endif
}

void raft_compat_transport_init(struct raft_uv_transport *t)
{
        assert(t);
        /* Zeroed first: raft-cowsql reads `version`, which 0.15 lacks. */
        memset(t, 0, sizeof(*t));
#if HAVE_RAFT_VERSION_NUMBER
        t->version = 1;
#endif
}
