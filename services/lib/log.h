/* The one logger of every weir binary: syslog levels, journald-style "<N>" prefixes when asked. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <syslog.h>

#include "cleanup.h"

typedef enum log_target {
        LOG_TARGET_CONSOLE, /* "weir-master: message" to stderr, for terminals and tests */
        LOG_TARGET_JOURNAL, /* "<6>message" to stderr; journald parses the priority prefix */
} log_target;

/* Picks the target from the environment (JOURNAL_STREAM set by systemd => journal) and the
 * maximum level from $WEIR_LOG_LEVEL ("debug", "info", ... or 0-7). */
void log_setup(const char *ident);
void log_set_max_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s);

/* Logs at LEVEL; if ERROR is non-zero it is taken as an errno (sign ignored) so that "%m" in
 * FORMAT expands to its message. Returns -abs(ERROR), so callers can
 * "return log_error_errno(r, "Failed to …: %m");". */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...)                                                          \
        ({                                                                                         \
                int _l_ = (level), _e_ = (error);                                                  \
                (log_get_max_level() >= _l_)                                                       \
                        ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)        \
                        : -(_e_ < 0 ? -_e_ : _e_);                                                 \
        })

#define log_full(level, ...) (void)log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* For "Out of memory." at the call site of a failed allocation. */
#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
