/* Unit tests for config.c: a first smoke test (deepened below). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"

static void test_minimal(void **state)
{
        static const char y[] = "apiVersion: weir.io/v1\n"
                                "kind: Cluster\n"
                                "metadata: {name: c}\n"
                                "spec:\n"
                                "  nodes:\n"
                                "    - {name: n1, address: 127.0.0.1}\n";
        config *c = NULL;
        config_diags d = {};

        assert_int_equal(config_load_buffer("t.yaml", y, strlen(y), &c, &d), 0);
        assert_string_equal(c->nodes[0].name, "n1");
        assert_true(c->nodes[0].master);
        config_free(c);
        config_diags_done(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_minimal),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
