/* Loading the cluster YAML at a program's start (see config-load.h). */
#include "config-load.h"
#include "log.h"

int config_load_logged(const char *path, bool warnings, config **ret)
{
        config_diags diags = {};
        int r = config_load(path, ret, &diags);

        if (r < 0 || warnings)
                config_diags_print(&diags, path);
        config_diags_done(&diags);
        if (r < 0)
                return log_error_errno(r, "Failed to load %s: %m", path);
        return r;
}
