/* Unit tests of the PostgreSQL source's positions as text, "X/X" like pg_lsn
 * (pg_source_format_position, pg_source_parse_position; connectors/postgres/pg_source.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "postgres/pg_source_int.h"

static void test_format(void **state) {
        char buf[32];
        (void)state;
        pg_source_format_position((Position){0, 0x16B3748}, buf, sizeof(buf));
        assert_string_equal(buf, "0/16B3748");
        pg_source_format_position((Position){0, UINT64_C(0xA00000001)}, buf, sizeof(buf));
        assert_string_equal(buf, "A/1");
        pg_source_format_position((Position){0, 0}, buf, sizeof(buf));
        assert_string_equal(buf, "0/0");
}

static void test_parse(void **state) {
        Position p = {7, 7};
        char buf[32];
        (void)state;
        assert_int_equal(pg_source_parse_position("0/16B3748", &p), 0);
        assert_true(p.hi == 0 && p.lo == 0x16B3748);
        assert_int_equal(pg_source_parse_position("FFFFFFFF/FFFFFFFF", &p), 0);
        assert_true(p.hi == 0 && p.lo == UINT64_MAX);
        pg_source_format_position(p, buf, sizeof(buf));
        assert_string_equal(buf, "FFFFFFFF/FFFFFFFF");
        assert_int_equal(pg_source_parse_position("", &p), -EINVAL);
        assert_int_equal(pg_source_parse_position("16B3748", &p), -EINVAL);
        assert_int_equal(pg_source_parse_position("0/16B3748 ", &p), -EINVAL);
        assert_int_equal(pg_source_parse_position("0/1x", &p), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
