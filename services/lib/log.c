/* The logger: one line per message on stderr, journald priority prefixes under systemd. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "parse.h"

static const char *log_ident = "weir";
static int log_max_level = LOG_INFO;
static log_target log_tgt = LOG_TARGET_CONSOLE;

static const char *const level_names[] = {
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

int log_level_from_string(const char *s)
{
        uint64_t v;

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int)i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
        if (parse_u64(s, &v) >= 0 && v <= LOG_DEBUG)
                return (int)v;
        return -EINVAL;
}

void log_setup(const char *ident)
{
        const char *e;
        int l;

        if (ident)
                log_ident = ident;
        log_tgt = getenv("JOURNAL_STREAM") ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        e = getenv("WEIR_LOG_LEVEL");
        if (e && (l = log_level_from_string(e)) >= 0)
                log_max_level = l;
}

void log_set_max_level(int level)
{
        log_max_level = level;
}

int log_get_max_level(void)
{
        return log_max_level;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...)
{
        char buf[2048];
        va_list ap;

        (void)file;
        (void)line;
        (void)func;
        if (error < 0)
                error = -error;
        /* "%m" in FORMAT expands to strerror(errno): make errno the error we were given. */
        errno = error;
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (log_tgt == LOG_TARGET_JOURNAL)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "%s: %s\n", log_ident, buf);
        return -error;
}
