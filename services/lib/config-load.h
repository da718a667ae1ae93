/* Loading the cluster YAML at a program's start, the same way in every daemon and weirctl verb. */
#pragma once

#include <stdbool.h>

#include "config.h"

/* Loads the cluster YAML at PATH into *RET. Its diagnostics go to stderr with file:line:column:
 * the errors always, the warnings too when WARNINGS (a verb whose output is parsed, such as a
 * --json listing, passes false). A failure is logged once, "Failed to load PATH: ...". */
int config_load_logged(const char *path, bool warnings, config **ret);
