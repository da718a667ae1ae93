/* Checked number, size and duration parsing shared by the config, the CLI and the daemons. */
#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "parse.h"

int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        *ret = v;
        return 0;
}

/* Splits "12.5Gi" into a non-negative decimal number and a suffix; rejects signs, exponents,
 * hex, spaces inside and empty numbers, which strtod would otherwise accept. */
static int split_number(const char *s, double *ret_value, const char **ret_suffix)
{
        const char *p = s;
        bool digits = false, dot = false;
        char buf[64];

        if (!s)
                return -EINVAL;
        while (*p == ' ')
                p++;
        const char *start = p;
        for (; *p; p++) {
                if (*p >= '0' && *p <= '9')
                        digits = true;
                else if (*p == '.' && !dot)
                        dot = true;
                else
                        break;
        }
        if (!digits || (size_t)(p - start) >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, start, (size_t)(p - start));
        buf[p - start] = 0;
        errno = 0;
        double v = strtod(buf, NULL);
        if (errno != 0 || !isfinite(v))
                return -ERANGE;
        while (*p == ' ')
                p++;
        *ret_value = v;
        *ret_suffix = p;
        return 0;
}

typedef struct unit {
        const char *suffix;
        double factor;
} unit;

/* A number with one of the N suffixes of TABLE, scaled and rounded; -ERANGE at or above LIMIT.
 * WHOLE_BASE: a number with a factor-1 suffix must be whole ("1.5" bytes is not a size; fractions
 * only make sense with a unit). */
static int parse_with_unit(const char *s, const unit *table, size_t n, double limit,
                           bool whole_base, uint64_t *ret)
{
        const char *suffix;
        double v;
        int r;

        r = split_number(s, &v, &suffix);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (strcmp(suffix, table[i].suffix) != 0)
                        continue;
                double scaled = v * table[i].factor;
                if (scaled >= limit)
                        return -ERANGE;
                if (whole_base && table[i].factor == 1.0 && floor(v) != v)
                        return -EINVAL;
                *ret = (uint64_t)llround(scaled);
                return 0;
        }
        return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret)
{
        static const unit table[] = {
                {"", 1.0},
                {"B", 1.0},
                {"K", 1e3},
                {"KB", 1e3},
                {"k", 1e3},
                {"M", 1e6},
                {"MB", 1e6},
                {"G", 1e9},
                {"GB", 1e9},
                {"T", 1e12},
                {"TB", 1e12},
                {"P", 1e15},
                {"PB", 1e15},
                {"Ki", 1024.0},
                {"KiB", 1024.0},
                {"Mi", 1048576.0},
                {"MiB", 1048576.0},
                {"Gi", 1073741824.0},
                {"GiB", 1073741824.0},
                {"Ti", 1099511627776.0},
                {"TiB", 1099511627776.0},
                {"Pi", 1125899906842624.0},
                {"PiB", 1125899906842624.0},
        };
        return parse_with_unit(s, table, ELEMENTSOF(table), 18446744073709551615.0, true, ret);
}

int parse_duration_ms(const char *s, uint64_t *ret)
{
        static const unit table[] = {
                {"", 1000.0},   {"ms", 1.0},      {"s", 1000.0},
                {"m", 60000.0}, {"min", 60000.0}, {"h", 3600000.0},
        };

        return parse_with_unit(s, table, ELEMENTSOF(table), 9.2e18, false, ret);
}

int parse_ratio(const char *s, double *ret)
{
        const char *suffix;
        double v;
        int r;

        r = split_number(s, &v, &suffix);
        if (r < 0)
                return r;
        if (*suffix)
                return -EINVAL;
        if (!(v > 0.0) || v > 1.0)
                return -ERANGE;
        *ret = v;
        return 0;
}

const char *format_bytes(char *buf, size_t len, uint64_t bytes)
{
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = (double)bytes;
        size_t i = 0;

        while (v >= 1024.0 && i + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                i++;
        }
        snprintf(buf, len, "%.2f%s", v, units[i]);
        return buf;
}
