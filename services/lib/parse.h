/* Checked parsing of numbers, sizes ("2Gi", "512M") and durations ("300ms", "2s"); never atoi. */
#pragma once

#include <stdint.h>

/* Decimal unsigned integer, whole string, no sign, no overflow. -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t *ret);

/* Byte size: plain bytes, or a number (may have a fraction: "1.5Gi") with suffix
 * K/M/G/T/P (powers of 1000, also "KB", "MB"…) or Ki/Mi/Gi/Ti/Pi (powers of 1024, also "KiB"…).
 * A lone "B" is bytes. -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *ret);

/* Duration in milliseconds: "250ms", "2s", "1.5s", "5m", "1h", or a plain number of seconds.
 * -EINVAL / -ERANGE. */
int parse_duration_ms(const char *s, uint64_t *ret);

/* Ratio in (0, 1]: "0.95", ".7", "1". -EINVAL / -ERANGE. */
int parse_ratio(const char *s, double *ret);

/* Formats BYTES the way Fluid prints sizes ("550.82MiB", "0.00B", "4.00GiB") into BUF. */
const char *format_bytes(char *buf, size_t len, uint64_t bytes);
#define FORMAT_BYTES_MAX 32
