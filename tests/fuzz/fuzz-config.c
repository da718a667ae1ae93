/* libFuzzer target: any bytes into config_load_buffer; no crash, no leak, invariants hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What every user of a loaded config relies on; a violation is a bug, so trap. */
static void check_invariants(const config *c)
{
        size_t masters = 0;

        if (!c->path || !c->cluster_name || c->n_nodes == 0)
                __builtin_trap();
        for (size_t i = 0; i < c->n_nodes; i++) {
                const config_node *n = &c->nodes[i];

                if (!n->name || !n->address || !n->data_dir || !n->runtime_dir || !n->mount_root)
                        __builtin_trap();
                if (n->raft_port == 0 || n->master_port == 0 || n->worker_port == 0)
                        __builtin_trap();
                if (n->master != (n->raft_id != 0))
                        __builtin_trap();
                if (n->master && config_master_by_raft_id(c, n->raft_id) != n)
                        __builtin_trap();
                masters += n->master;
        }
        if (masters != c->master_replicas || c->master_replicas % 2 == 0)
                __builtin_trap();
        for (size_t i = 0; i < c->n_tiers; i++)
                if (!c->tiers[i].path || c->tiers[i].quota == 0 ||
                    !(0 < c->tiers[i].low && c->tiers[i].low < c->tiers[i].high &&
                      c->tiers[i].high <= 1))
                        __builtin_trap();
        for (size_t i = 0; i < c->n_datasets; i++) {
                const config_dataset *d = &c->datasets[i];

                if (!d->name || d->n_mounts == 0 || config_find_dataset(c, d->name) != d)
                        __builtin_trap();
                for (size_t j = 0; j < d->n_mounts; j++)
                        if (!d->mounts[j].name || !d->mounts[j].mount_point ||
                            strchr(d->mounts[j].name, '/'))
                                __builtin_trap();
        }
        for (size_t i = 0; i < c->n_runtimes; i++)
                if (!config_find_dataset(c, c->runtimes[i].name))
                        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        config_diags d = {};
        config *c = NULL;
        int r;

        r = config_load_buffer("fuzz.yaml", (const char *)data, size, &c, &d);
        if (r == 0) {
                check_invariants(c);
                for (size_t i = 0; i < d.n; i++)
                        if (!d.items[i].warning)
                                __builtin_trap(); /* success with an error */
        } else if (r == -22 /* EINVAL */) {
                size_t errors = 0;

                for (size_t i = 0; i < d.n; i++)
                        errors += !d.items[i].warning;
                if (errors == 0)
                        __builtin_trap(); /* refused without saying why */
        }
        for (size_t i = 0; i < d.n; i++)
                if (!d.items[i].message || d.items[i].line == 0 || d.items[i].column == 0)
                        __builtin_trap();
        config_free(c);
        config_diags_done(&d);
        return 0;
}
