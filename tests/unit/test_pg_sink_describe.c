/* Unit tests of how the PostgreSQL sink names a change in its error messages (pg_sink_describe,
 * connectors/postgres/pg_sink.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

static Table *table(const char *name, int ncols, int nkeys) {
        static const char *names[] = {"a", "b", "c", "d", "e"};
        Table *t = table_new("shop", name, ncols);
        for (int i = 0; i < ncols; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].key = i < nkeys;
        }
        return t;
}

static void set(Value *v, const char *s) {
        assert_int_equal(value_set(v, s, strlen(s)), 0);
}

static void expect(char *got, const char *want) {
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
}

static void test_no_key(void **state) {
        Table *t = table("orders", 2, 1);
        (void)state;
        expect(pg_sink_describe("truncate", "shop", "orders", t, NULL, NULL, 0), "truncate of shop.orders");
        table_unref(t);
}

static void test_key(void **state) {
        Table *t = table("orders", 3, 2);
        Value *kv = values_new(3);
        uint8_t mask[3] = {PG_SQL_WHERE, PG_SQL_WHERE_NULL, PG_SQL_SET};
        (void)state;
        set(&kv[0], "42");
        set(&kv[2], "not shown");
        expect(pg_sink_describe("update", "shop", "orders", t, kv, mask, 0),
               "update of shop.orders key (a, b)=(42, null)");
        values_free(kv, 3);
        table_unref(t);
}

/* Key values are cut to 64 bytes; control characters anywhere are shown as '?'. */
static void test_key_cut_and_control_chars(void **state) {
        Table *t = table("orders", 1, 1);
        Value *kv = values_new(1);
        uint8_t mask[1] = {PG_SQL_WHERE};
        char big[101], want[200];
        (void)state;
        memset(big, 'x', 100);
        big[100] = '\0';
        set(&kv[0], big);
        snprintf(want, sizeof(want), "delete of shop.orders key (a)=(%.64s…)", big);
        expect(pg_sink_describe("delete", "shop", "orders", t, kv, mask, 0), want);
        values_free(kv, 1);
        kv = values_new(1);
        set(&kv[0], "a\nb\tc\x7f");
        expect(pg_sink_describe("delete", "shop",
                                "or\x01"
                                "ders",
                                t, kv, mask, 0),
               "delete of shop.or?ders key (a)=(a?b?c?)");
        values_free(kv, 1);
        table_unref(t);
}

/* Without a key: the row's place in its source transaction and its first three columns, each cut
 * to 24 bytes, never inside a UTF-8 character. */
static void test_keyless_row(void **state) {
        Table *t = table("log", 5, 0);
        Value *kv = values_new(5);
        uint8_t mask[5] = {PG_SQL_WHERE, PG_SQL_WHERE_NULL, PG_SQL_WHERE, PG_SQL_WHERE, PG_SQL_WHERE};
        (void)state;
        set(&kv[0], "1");
        set(&kv[2], "abcdefghijklmnopqrstuvw\xc3\xa9z"); /* é across the 24-byte cut */
        set(&kv[3], "d");
        set(&kv[4], "e");
        expect(pg_sink_describe("insert", "shop", "log", t, kv, mask, 3),
               "insert of shop.log (row 3 of its source transaction, no key: a=1, b=null, "
               "c=abcdefghijklmnopqrstuvw…, and 2 more columns)");
        mask[4] = 0;
        expect(pg_sink_describe("insert", "shop", "log", t, kv, mask, 1),
               "insert of shop.log (row 1 of its source transaction, no key: a=1, b=null, "
               "c=abcdefghijklmnopqrstuvw…, and 1 more column)");
        mask[3] = 0;
        expect(pg_sink_describe("insert", "shop", "log", t, kv, mask, 1),
               "insert of shop.log (row 1 of its source transaction, no key: a=1, b=null, "
               "c=abcdefghijklmnopqrstuvw…)");
        values_free(kv, 5);
        table_unref(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_key),
                cmocka_unit_test(test_key),
                cmocka_unit_test(test_key_cut_and_control_chars),
                cmocka_unit_test(test_keyless_row),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
