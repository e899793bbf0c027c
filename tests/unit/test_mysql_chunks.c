/* Unit tests of the MySQL/MariaDB chunked copy's key-range planning (connectors/mysql/mysql_chunks.c):
 * the key space, chunk widths, plans around chunks done, the records' keys and the WHERE clauses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mysql/mysql_chunks.h"

#define END UINT64_MAX
#define S(v) mysql_chunks_from_signed(v)

static void assert_plan(const MysqlKeyRange *got, int n, const MysqlKeyRange *want, int nwant) {
        assert_int_equal(n, nwant);
        for (int i = 0; i < n; i++) {
                assert_true(got[i].lo == want[i].lo);
                assert_true(got[i].hi == want[i].hi);
        }
}

/* Every key value is in exactly one chunk of plan ∪ done: the plan and the done ranges tile the space. */
static void assert_tiles(const MysqlKeyRange *plan, int n, const MysqlKeyRange *done, int ndone) {
        int total = n + ndone;
        MysqlKeyRange *all = malloc(sizeof(*all) * (size_t)total);
        assert_non_null(all);
        if (n > 0) /* memcpy with NULL is undefined even for 0 bytes */
                memcpy(all, plan, sizeof(*all) * (size_t)n);
        if (ndone > 0)
                memcpy(all + n, done, sizeof(*all) * (size_t)ndone);
        for (int i = 0; i < total; i++) /* selection sort: small lists */
                for (int j = i + 1; j < total; j++)
                        if (all[j].lo < all[i].lo) {
                                MysqlKeyRange t = all[i];
                                all[i] = all[j];
                                all[j] = t;
                        }
        assert_true(all[0].lo == 0);
        for (int i = 0; i + 1 < total; i++)
                assert_true(all[i].hi == all[i + 1].lo);
        assert_true(all[total - 1].hi == END);
        free(all);
}

static void test_key_space(void **state) {
        (void)state;
        /* order kept across zero and at the ends */
        assert_true(S(INT64_MIN) == 0);
        assert_true(S(-1) < S(0));
        assert_true(S(0) < S(1));
        assert_true(S(INT64_MAX) == END);
        for (int64_t v = -3; v <= 3; v++)
                assert_true(mysql_chunks_to_signed(S(v)) == v);
        assert_true(mysql_chunks_to_signed(0) == INT64_MIN);
}

static void test_width(void **state) {
        (void)state;
        /* 1..2,000,000 dense: 100,000 rows a chunk are 100,000 key values */
        assert_true(mysql_chunks_width(1, 2000000, 2000000, 100000) == 100000);
        /* half the keys deleted: twice as wide */
        assert_true(mysql_chunks_width(1, 2000000, 1000000, 100000) == 200000);
        /* no estimate (InnoDB said 0): one row per key value assumed */
        assert_true(mysql_chunks_width(1, 2000000, 0, 1000) == 1000);
        /* an estimate far above the span (many rows per value cannot be, but estimates err): >= 1 */
        assert_true(mysql_chunks_width(1, 10, 1000000, 100) == 1);
        /* a sparse key over the whole space: never more than MYSQL_CHUNKS_MAX chunks */
        uint64_t w = mysql_chunks_width(0, END, 1000000000, 10);
        assert_true(w >= END / MYSQL_CHUNKS_MAX);
        /* one key value */
        assert_true(mysql_chunks_width(7, 7, 1, 100) >= 1);
}

static void test_plan_fresh(void **state) {
        MysqlKeyRange *v = NULL;
        int n = -1;
        (void)state;
        /* keys 1..10, 4 a chunk: (-inf,5) [5,9) [9,+inf); below the minimum and above the
         * maximum join the ends, so keys inserted there are read too */
        assert_int_equal(mysql_chunks_plan(false, 1, 10, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, 5}, {5, 9}, {9, END}}, 3);
        assert_tiles(v, n, NULL, 0);
        free(v);
        /* an empty table: one chunk, the whole table */
        assert_int_equal(mysql_chunks_plan(true, 0, 0, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, END}}, 1);
        free(v);
        /* one chunk's width covers every key: one chunk */
        assert_int_equal(mysql_chunks_plan(false, 1, 10, 100, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, END}}, 1);
        free(v);
        /* a span that is a multiple of the width: no empty last chunk */
        assert_int_equal(mysql_chunks_plan(false, 1, 8, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, 5}, {5, END}}, 2);
        free(v);
        /* signed keys around zero: -10..9, 10 a chunk */
        assert_int_equal(mysql_chunks_plan(false, S(-10), S(9), 10, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, S(0)}, {S(0), END}}, 2);
        free(v);
        /* keys at the very top of the space: no overflow */
        assert_int_equal(mysql_chunks_plan(false, END - 10, END, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{0, END - 6}, {END - 6, END - 2}, {END - 2, END}}, 3);
        free(v);
}

static void test_plan_around_done(void **state) {
        MysqlKeyRange *v = NULL;
        int n = -1;
        (void)state;
        /* done out of order, as parallel readers finish them: only the gaps are planned */
        MysqlKeyRange done[] = {{9, 13}, {0, 5}};
        assert_int_equal(mysql_chunks_plan(false, 1, 20, 4, done, 2, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{5, 9}, {13, 17}, {17, END}}, 3);
        assert_tiles(v, n, done, 2);
        free(v);
        /* every chunk done, the last one open-ended: nothing left */
        MysqlKeyRange all[] = {{0, 5}, {5, END}};
        assert_int_equal(mysql_chunks_plan(false, 1, 10, 4, all, 2, &v, &n), 0);
        assert_int_equal(n, 0);
        free(v);
        /* the table grew since the chunks were planned (resume): the gap past the done ones is cut
         * by the new keys, from the new minimum on */
        MysqlKeyRange first[] = {{0, 5}, {5, 9}};
        assert_int_equal(mysql_chunks_plan(false, 3, 30, 10, first, 2, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{9, 13}, {13, 23}, {23, END}}, 3);
        assert_tiles(v, n, first, 2);
        free(v);
        /* overlapping done ranges (a chunk of an earlier plan and one of a later) */
        MysqlKeyRange over[] = {{0, 10}, {5, 15}};
        assert_int_equal(mysql_chunks_plan(false, 1, 20, 100, over, 2, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{15, END}}, 1);
        free(v);
        /* the table emptied since: each gap is one chunk */
        assert_int_equal(mysql_chunks_plan(true, 0, 0, 4, done, 2, &v, &n), 0);
        assert_plan(v, n, (MysqlKeyRange[]){{5, 9}, {13, END}}, 2);
        free(v);
}

static void test_keys(void **state) {
        char buf[128];
        MysqlKeyRange r;
        (void)state;
        /* signed: values as the column holds them */
        mysql_chunks_key("test.big", (MysqlKeyRange){S(-5), S(100)}, true, buf, sizeof(buf));
        assert_string_equal(buf, "test.big [-5,100)");
        assert_true(mysql_chunks_parse(buf, "test.big", true, &r));
        assert_true(r.lo == S(-5) && r.hi == S(100));
        mysql_chunks_key("test.big", (MysqlKeyRange){0, S(100)}, true, buf, sizeof(buf));
        assert_string_equal(buf, "test.big [,100)");
        assert_true(mysql_chunks_parse(buf, "test.big", true, &r));
        assert_true(r.lo == 0 && r.hi == S(100));
        mysql_chunks_key("test.big", (MysqlKeyRange){S(100), END}, true, buf, sizeof(buf));
        assert_string_equal(buf, "test.big [100,)");
        assert_true(mysql_chunks_parse(buf, "test.big", true, &r));
        assert_true(r.lo == S(100) && r.hi == END);
        mysql_chunks_key("test.nokey", (MysqlKeyRange){0, END}, false, buf, sizeof(buf));
        assert_string_equal(buf, "test.nokey [,)");
        assert_true(mysql_chunks_parse(buf, "test.nokey", false, &r));
        assert_true(r.lo == 0 && r.hi == END);
        /* unsigned: the whole range of BIGINT UNSIGNED */
        mysql_chunks_key("d.u", (MysqlKeyRange){18446744073709551000u, END}, false, buf, sizeof(buf));
        assert_string_equal(buf, "d.u [18446744073709551000,)");
        assert_true(mysql_chunks_parse(buf, "d.u", false, &r));
        assert_true(r.lo == 18446744073709551000u);
        /* not this table's, or malformed */
        assert_false(mysql_chunks_parse("test.bigger [1,2)", "test.big", true, &r));
        assert_false(mysql_chunks_parse("test.big", "test.big", true, &r));
        assert_false(mysql_chunks_parse("test.big [2,1)", "test.big", true, &r));
        assert_false(mysql_chunks_parse("test.big [1,2) ", "test.big", true, &r));
        assert_false(mysql_chunks_parse("test.big [x,2)", "test.big", true, &r));
        assert_false(mysql_chunks_parse("test.big [-1,2)", "test.big", false, &r));
        assert_false(mysql_chunks_parse("test.big [99999999999999999999,)", "test.big", true, &r));
}

static void test_where(void **state) {
        char buf[128];
        (void)state;
        mysql_chunks_where((MysqlKeyRange){S(-5), S(100)}, true, "`id`", buf, sizeof(buf));
        assert_string_equal(buf, " WHERE `id` >= -5 AND `id` < 100");
        mysql_chunks_where((MysqlKeyRange){0, 100}, false, "`id`", buf, sizeof(buf));
        assert_string_equal(buf, " WHERE `id` < 100");
        mysql_chunks_where((MysqlKeyRange){100, END}, false, "`id`", buf, sizeof(buf));
        assert_string_equal(buf, " WHERE `id` >= 100");
        mysql_chunks_where((MysqlKeyRange){0, END}, false, "`id`", buf, sizeof(buf));
        assert_string_equal(buf, "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key_space),  cmocka_unit_test(test_width),
                cmocka_unit_test(test_plan_fresh), cmocka_unit_test(test_plan_around_done),
                cmocka_unit_test(test_keys),       cmocka_unit_test(test_where),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
