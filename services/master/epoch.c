/* The cluster's epoch: a random 64-bit value the first serving leader proposes in a replicated
 * EPOCH_SET command, so that every replica records the same value while the randomness stays
 * out of the state machine's apply (which must be deterministic). Block ids carry it (block.h),
 * so a new cluster or a master restarted without its state, whose file ids start at 1 again,
 * never names blocks that workers cached for another one. Runs on the loop thread. */
#include <errno.h>
#include <sys/random.h>

#include "cleanup.h"
#include "epoch.h"
#include "log.h"
#include "manager-internal.h"

static void read_epoch(fsm *f, void *userdata)
{
        *(uint64_t *)userdata = fsm_epoch(f);
}

uint64_t epoch_get(manager *m)
{
        uint64_t e = 0;

        manager_read_fsm(m, read_epoch, &e);
        return e;
}

static void on_epoch_done(manager *m, int status, json_t *result, void *userdata)
{
        m->epoch_pending = false;
        if (status < 0 || json_object_get(result, "error"))
                log_warning_errno(status < 0 ? status : -EPROTO,
                                  "Failed to record the cluster epoch: %m, retrying");
        else
                log_info("Cluster epoch %016" PRIx64 ".", epoch_get(m));
}

void epoch_ensure(manager *m)
{
        uint64_t e = 0;
        json_t *cmd;
        int r;

        if (!m->serving_local || m->epoch_pending || m->stopping || epoch_get(m) != 0)
                return;
        /* getrandom() blocks only before the kernel's pool is initialised, once per boot. */
        while (e == 0)
                if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e)) {
                        log_warning_errno(-errno, "getrandom() failed: %m, retrying");
                        return;
                }
        cmd = fsm_cmd_epoch_set(e);
        if (!cmd)
                return (void)log_oom();
        r = manager_apply(m, cmd, on_epoch_done, NULL);
        json_decref(cmd);
        if (r < 0)
                log_warning_errno(r, "Failed to propose the cluster epoch: %m, retrying");
        else
                m->epoch_pending = true;
}
