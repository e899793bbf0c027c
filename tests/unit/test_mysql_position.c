/* Unit tests of the MySQL source's position texts: file:pos, MariaDB GTID states, and the
 * checkpoint text that carries both. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mysql/mysql_source.h"

static void test_gtid_parse_format(void **state) {
        (void)state;
        MysqlGtidState st;
        char buf[256];
        const char *t = "1-2-9,0-1-57,4294967295-4294967295-18446744073709551615";
        assert_int_equal(mysql_source_gtid_parse(t, strlen(t), &st), 0);
        assert_int_equal(st.n, 3);
        /* kept sorted by domain, whatever the input order */
        assert_int_equal(st.g[0].domain, 0);
        assert_int_equal(st.g[0].server_id, 1);
        assert_int_equal(st.g[0].seq, 57);
        assert_int_equal(st.g[1].domain, 1);
        assert_int_equal(st.g[2].domain, UINT32_MAX);
        assert_true(st.g[2].seq == UINT64_MAX);
        assert_int_equal(mysql_source_gtid_format(&st, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "0-1-57,1-2-9,4294967295-4294967295-18446744073709551615");
        /* too small a buffer: nothing rather than a cut state */
        assert_int_equal(mysql_source_gtid_format(&st, buf, 10), -ENOSPC);
        assert_string_equal(buf, "");
        /* the empty state */
        assert_int_equal(mysql_source_gtid_parse("", 0, &st), 0);
        assert_int_equal(st.n, 0);
        assert_int_equal(mysql_source_gtid_format(&st, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");
}

static void test_gtid_parse_rejects(void **state) {
        (void)state;
        MysqlGtidState st = {.n = 7};
        const char *bad[] = {
                "0-1",
                "0-1-",
                "-1-5",
                "0-1-5,",
                ",0-1-5",
                "0-1-5,,1-1-1",
                "0-1-5 ",
                "a-1-5",
                "0-1-5x",
                "0--1-5",
                "0-1-5,0-2-6",              /* a domain twice */
                "4294967296-1-1",           /* domain past 32 bits */
                "0-1-18446744073709551616", /* seq past 64 bits */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(mysql_source_gtid_parse(bad[i], strlen(bad[i]), &st), -EINVAL);
                assert_int_equal(st.n, 7); /* untouched */
        }
        char many[MYSQL_SOURCE_GTID_MAX * 16 + 32] = "";
        size_t used = 0;
        for (int d = 0; d <= MYSQL_SOURCE_GTID_MAX; d++)
                used += (size_t)snprintf(many + used, sizeof(many) - used, "%s%d-1-1", d ? "," : "", d);
        assert_int_equal(mysql_source_gtid_parse(many, strlen(many), &st), -ENOSPC);
}

static void test_gtid_update(void **state) {
        (void)state;
        MysqlGtidState st = {0};
        char buf[128];
        assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){5, 1, 10}), 0);
        assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){0, 1, 3}), 0);
        assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){5, 2, 11}), 0); /* replaces domain 5 */
        mysql_source_gtid_format(&st, buf, sizeof(buf));
        assert_string_equal(buf, "0-1-3,5-2-11");
        for (uint32_t d = 100; st.n < MYSQL_SOURCE_GTID_MAX; d++)
                assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){d, 1, 1}), 0);
        assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){99, 1, 1}), -ENOSPC);
        assert_int_equal(mysql_source_gtid_update(&st, (MysqlGtid){0, 1, 4}), 0); /* known domain: fine */
}

static void test_checkpoint_roundtrip(void **state) {
        (void)state;
        MysqlGtidState st = {0}, back;
        Position p = {.hi = 3, .lo = 1234}, bp;
        bool hp, hg;
        char buf[256];
        mysql_source_gtid_update(&st, (MysqlGtid){0, 1, 57});
        mysql_source_gtid_update(&st, (MysqlGtid){1, 2, 9});
        mysql_source_format_checkpoint("mysql-bin", p, &st, buf, sizeof(buf));
        assert_string_equal(buf, "mysql-bin.000003:1234 gtid=0-1-57,1-2-9");
        assert_int_equal(mysql_source_parse_checkpoint(buf, &bp, &hp, &back, &hg), 0);
        assert_true(hp && hg);
        assert_int_equal(position_cmp(bp, p), 0);
        assert_int_equal(back.n, 2);
        assert_int_equal(memcmp(back.g, st.g, sizeof(st.g[0]) * 2), 0);
        /* the Position part alone */
        assert_int_equal(mysql_source_parse_position(buf, &bp), 0);
        assert_int_equal(position_cmp(bp, p), 0);

        /* without a GTID state; the base name as the server has it, seven-digit numbers too */
        mysql_source_format_checkpoint("mariadb-bin", (Position){1234567, 4}, NULL, buf, sizeof(buf));
        assert_string_equal(buf, "mariadb-bin.1234567:4");
        assert_int_equal(mysql_source_parse_checkpoint(buf, &bp, &hp, &back, &hg), 0);
        assert_true(hp && !hg);
        assert_int_equal(back.n, 0);
        assert_true(bp.hi == 1234567 && bp.lo == 4);

        /* no running source: the plain form */
        mysql_source_format_position(p, buf, sizeof(buf));
        assert_string_equal(buf, "binlog.000003:1234");

        /* the empty state is a state: "nothing logged yet" */
        MysqlGtidState empty = {0};
        mysql_source_format_checkpoint("b", p, &empty, buf, sizeof(buf));
        assert_string_equal(buf, "b.000003:1234 gtid=");
        assert_int_equal(mysql_source_parse_checkpoint(buf, &bp, &hp, &back, &hg), 0);
        assert_true(hp && hg);
        assert_int_equal(back.n, 0);
}

static void test_checkpoint_too_long(void **state) {
        (void)state;
        MysqlGtidState st = {0};
        char buf[40];
        mysql_source_gtid_update(&st, (MysqlGtid){0, 1, 123456789});
        mysql_source_gtid_update(&st, (MysqlGtid){1, 2, 987654321});
        /* "mysql-bin.000003:1234" fits, the GTID part does not: left out whole */
        mysql_source_format_checkpoint("mysql-bin", (Position){3, 1234}, &st, buf, sizeof(buf));
        assert_string_equal(buf, "mysql-bin.000003:1234");
}

static void test_checkpoint_gtid_only(void **state) {
        (void)state;
        MysqlGtidState back;
        Position bp = {9, 9};
        bool hp = true, hg = false;
        assert_int_equal(mysql_source_parse_checkpoint("gtid=0-1-57", &bp, &hp, &back, &hg), 0);
        assert_true(!hp && hg);
        assert_true(position_is_zero(bp));
        assert_int_equal(back.n, 1);
        assert_true(back.g[0].seq == 57);
        assert_int_equal(mysql_source_parse_checkpoint("0-1-57,2-1-3", &bp, &hp, &back, &hg), 0);
        assert_true(!hp && hg);
        assert_int_equal(back.n, 2);
        assert_int_equal(mysql_source_parse_position("0-1-57", &bp), 0);
        assert_true(position_is_zero(bp));
}

static void test_checkpoint_rejects(void **state) {
        (void)state;
        const char *bad[] = {
                "",
                "mysql-bin.000003",
                "mysql-bin.000003:",
                "mysql-bin.000003:3", /* before the first event */
                ".000003:1234",
                "mysql-bin:1234",
                "mysql-bin.0000x3:1234",
                "mysql-bin.000003:12a4",
                "mysql-bin.000003:1234 gtid=0-1",
                "mysql-bin.000003:1234 lsn=5",
                "mysql-bin.000003:1234  gtid=0-1-5",
                "gtid=0-1-5,",
                "0-1",
        };
        Position p = {7, 7};
        MysqlGtidState st = {.n = 3};
        bool hp = true, hg = true;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(mysql_source_parse_checkpoint(bad[i], &p, &hp, &st, &hg), -EINVAL);
                assert_true(p.hi == 7 && p.lo == 7 && st.n == 3 && hp && hg); /* untouched */
                assert_int_equal(mysql_source_parse_position(bad[i], &p), -EINVAL);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gtid_parse_format),   cmocka_unit_test(test_gtid_parse_rejects),
                cmocka_unit_test(test_gtid_update),         cmocka_unit_test(test_checkpoint_roundtrip),
                cmocka_unit_test(test_checkpoint_too_long), cmocka_unit_test(test_checkpoint_gtid_only),
                cmocka_unit_test(test_checkpoint_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
