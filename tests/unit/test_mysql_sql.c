/* Unit tests of the MySQL/MariaDB sink's statement texts (connectors/mysql/mysql_sql.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mysql/mysql_sql.h"

/* Composite key (id, re`gion), a table name and a key column that need their backticks doubled,
 * and a BIT column whose values come as bit strings. */
static Table *orders(bool keyed) {
        static const char *names[] = {"id", "re`gion", "total", "flags"};
        static const char *types[] = {"int", "varchar(20)", "decimal(10,2)", "bit(3)"};
        Table *t = table_new("shop", "order`items", 4);
        for (int i = 0; i < 4; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(types[i]);
        }
        t->cols[0].key = keyed;
        t->cols[1].key = keyed;
        t->cols[2].cls = TYPE_NUMERIC;
        t->cols[3].cls = TYPE_TEXT;
        return t;
}

/* A row image of kinds only: the builders never read the values. */
static void image(Value *v, ValueKind k0, ValueKind k1, ValueKind k2, ValueKind k3) {
        ValueKind k[4] = {k0, k1, k2, k3};
        for (int i = 0; i < 4; i++)
                v[i] = (Value){.kind = k[i]};
}

/* Checks the text built so far and empties q for the next statement. */
static void expect_sql(StrBuf *q, const char *want) {
        assert_false(q->oom);
        assert_non_null(q->data);
        assert_string_equal(q->data, want);
        assert_int_equal(q->len, strlen(want));
        free(q->data);
        *q = (StrBuf){0};
}

static void expect_text(char *got, const char *want) {
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
}

static void test_ident(void **state) {
        StrBuf q = {0};
        (void)state;
        mysql_sql_ident(&q, "a`b``");
        expect_sql(&q, "`a``b`````");
        mysql_sql_ident(&q, "");
        expect_sql(&q, "``");
        mysql_sql_ident(&q, "x; DROP TABLE y");
        expect_sql(&q, "`x; DROP TABLE y`");
        mysql_sql_table(&q, "s`", "`t");
        expect_sql(&q, "`s```.```t`");
}

static void test_upsert(void **state) {
        Table *t = orders(true);
        StrBuf q = {0};
        (void)state;
        mysql_sql_upsert(&q, "shop", t->name, t);
        expect_sql(&q, "INSERT INTO `shop`.`order``items` (`id`, `re``gion`, `total`, `flags`) VALUES (?, ?, ?, "
                       "CAST(CONV(?, 2, 10) AS UNSIGNED)) ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `re``gion` = "
                       "VALUES(`re``gion`), `total` = VALUES(`total`), `flags` = VALUES(`flags`)");
        table_unref(t);
}

static void test_update(void **state) {
        Table *t = orders(true);
        Value after[4], before[4];
        StrBuf q = {0};
        (void)state;
        /* total unchanged (TOAST) is left out of SET; the WHERE compares the old key only */
        image(after, VALUE_TEXT, VALUE_NULL, VALUE_UNCHANGED, VALUE_TEXT);
        image(before, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT);
        mysql_sql_update(&q, "shop", t->name, t, after, before);
        expect_sql(&q, "UPDATE `shop`.`order``items` SET `id` = ?, `re``gion` = ?, `flags` = CAST(CONV(?, 2, 10) AS "
                       "UNSIGNED) WHERE `id` <=> ? AND `re``gion` <=> ?");
        table_unref(t);

        /* without a key: every column of the old row that was sent, and one row at most */
        t = orders(false);
        image(after, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT);
        image(before, VALUE_TEXT, VALUE_NULL, VALUE_UNCHANGED, VALUE_TEXT);
        mysql_sql_update(&q, "s", "t", t, after, before);
        expect_sql(&q, "UPDATE `s`.`t` SET `id` = ?, `re``gion` = ?, `total` = ?, `flags` = CAST(CONV(?, 2, 10) AS "
                       "UNSIGNED) WHERE `id` <=> ? AND `re``gion` <=> ? AND `flags` <=> CAST(CONV(?, 2, 10) AS "
                       "UNSIGNED) LIMIT 1");
        table_unref(t);
}

static void test_delete(void **state) {
        Table *t = orders(true);
        Value before[4];
        StrBuf q = {0};
        (void)state;
        image(before, VALUE_TEXT, VALUE_TEXT, VALUE_NULL, VALUE_NULL);
        mysql_sql_delete(&q, "shop", t->name, t, before);
        expect_sql(&q, "DELETE FROM `shop`.`order``items` WHERE `id` <=> ? AND `re``gion` <=> ?");
        table_unref(t);

        t = orders(false);
        mysql_sql_delete(&q, "shop", t->name, t, before);
        expect_sql(&q, "DELETE FROM `shop`.`order``items` WHERE `id` <=> ? AND `re``gion` <=> ? AND `total` <=> ? "
                       "AND `flags` <=> CAST(CONV(?, 2, 10) AS UNSIGNED) LIMIT 1");

        /* a truncate empties the table without TRUNCATE TABLE (DDL, which commits) */
        mysql_sql_delete_all(&q, "shop", t->name);
        expect_sql(&q, "DELETE FROM `shop`.`order``items`");
        table_unref(t);
}

static void test_append(void **state) {
        Table *t = orders(true);
        Value before[4];
        StrBuf q = {0};
        (void)state;
        /* builders append: a kept buffer is reused by resetting its length */
        strbuf_puts(&q, "-- ");
        mysql_sql_delete_all(&q, "a", "b");
        expect_sql(&q, "-- DELETE FROM `a`.`b`");
        strbuf_puts(&q, "DELETE FROM x");
        q.len = 0;
        image(before, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT, VALUE_TEXT);
        mysql_sql_delete(&q, "a", "b", t, before);
        expect_sql(&q, "DELETE FROM `a`.`b` WHERE `id` <=> ? AND `re``gion` <=> ?");
        table_unref(t);
}

static void test_multi(void **state) {
        Table *t = orders(true);
        (void)state;
        t->cols[1].key = false; /* one key column: what multi-row statements are used for */
        expect_text(mysql_sql_multi_by_key("shop", t->name, t, 3, false),
                    "DELETE FROM `shop`.`order``items` WHERE `id` IN (?, ?, ?)");
        expect_text(mysql_sql_multi_by_key("shop", t->name, t, 2, true),
                    "SELECT COUNT(*) FROM `shop`.`order``items` WHERE `id` IN (?, ?) FOR UPDATE");
        expect_text(mysql_sql_multi_upsert("shop", t->name, t, 2),
                    "INSERT INTO `shop`.`order``items` (`id`, `re``gion`, `total`, `flags`) VALUES (?, ?, ?, "
                    "CAST(CONV(?, 2, 10) AS UNSIGNED)), (?, ?, ?, CAST(CONV(?, 2, 10) AS UNSIGNED)) ON DUPLICATE KEY "
                    "UPDATE `id` = VALUES(`id`), `re``gion` = VALUES(`re``gion`), `total` = VALUES(`total`), "
                    "`flags` = VALUES(`flags`)");
        /* LOAD DATA: every column in table order, a bit string through a variable and CONV */
        expect_text(mysql_sql_load("shop", t->name, t),
                    "LOAD DATA LOCAL INFILE 'cdcsync' INTO TABLE `shop`.`order``items` CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `re``gion`, "
                    "`total`, @cdcsync_3) SET `flags` = CAST(CONV(@cdcsync_3, 2, 10) AS UNSIGNED)");
        t->cols[3].cls = TYPE_BYTES; /* bytes for a BIT column (a PostgreSQL source): stored as they are */
        expect_text(mysql_sql_load("s", "t", t),
                    "LOAD DATA LOCAL INFILE 'cdcsync' INTO TABLE `s`.`t` CHARACTER SET utf8mb4 FIELDS "
                    "TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `re``gion`, `total`, "
                    "`flags`)");
        table_unref(t);

        /* no key column: no multi-row statement */
        t = orders(false);
        assert_null(mysql_sql_multi_by_key("s", "t", t, 2, false));
        assert_null(mysql_sql_multi_upsert("s", "t", t, 2));
        table_unref(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ident),  cmocka_unit_test(test_upsert), cmocka_unit_test(test_update),
                cmocka_unit_test(test_delete), cmocka_unit_test(test_append), cmocka_unit_test(test_multi),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
