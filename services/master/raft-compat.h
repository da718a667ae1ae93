/* What differs between the two libraft builds weir supports, in one place: Debian's libraft
 * 0.15 (canonical) and nixpkgs' raft-cowsql 0.22 (docs/design.md, "Dependencies";
 * ../shared notes: never read `struct raft` fields, they moved between versions). */
#pragma once

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>

/* How often the manager polls raft_state() and raft_leader(). 0.15 has no state callback;
 * raft-cowsql's raft_register_state_cb() is not used either (its presence in 0.22.1 and its
 * signature could not be built against here), so both builds poll. */
#define RAFT_COMPAT_POLL_MS 5

/* Polls between two reads of the term when nothing else changed (0.5 s). */
#define RAFT_COMPAT_TERM_POLLS 100

/* The current term of R, whose data directory is RAFT_DIR: raft_current_term() where it exists
 * (RAFT_VERSION_NUMBER >= 0.19); on 0.15 from raft's metadata files, and LAST when they cannot
 * be read. */
uint64_t raft_compat_term(struct raft *r, const char *raft_dir, uint64_t last);

/* Zeroes transport T and sets the interface version the library expects (1 from 0.17 on; the
 * field does not exist in 0.15). */
void raft_compat_transport_init(struct raft_uv_transport *t);
