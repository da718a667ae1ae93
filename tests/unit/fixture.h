/* Unit-test helper: fixture files read whole. Include after cmocka.h, with FIXTURES defined as
 * the directory they are in (ending in '/'). */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#ifndef FIXTURES
#error "define FIXTURES before including fixture.h"
#endif

/* The fixture FIXTURES/NAME, NUL-terminated; its length in *RET_LEN.
 * Fails the test when it cannot be read. */
static inline char *read_fixture(const char *name, size_t *ret_len)
{
        char path[512];
        FILE *f;
        char *buf;
        long n;

        snprintf(path, sizeof path, FIXTURES "%s", name);
        f = fopen(path, "re");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = 0;
        fclose(f);
        *ret_len = (size_t)n;
        return buf;
}
