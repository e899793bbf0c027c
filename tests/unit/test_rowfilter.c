/* Row filters (rowfilter.c): the expression subset, its errors, and SQL's three-valued logic on
 * row images. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "cdcsync/change.h"
#include "cdcsync/rowfilter.h"

/* public.orders (id integer key, region text, amount numeric, paid boolean, note text) */
static Table *orders(void) {
        static const char *names[] = {"id", "region", "amount", "paid", "note"};
        static const char *types[] = {"integer", "text", "numeric(10,2)", "boolean", "text"};
        static const TypeClass cls[] = {TYPE_INTEGER, TYPE_TEXT, TYPE_NUMERIC, TYPE_BOOLEAN, TYPE_TEXT};
        Table *t = table_new("public", "orders", 5);
        for (int i = 0; i < 5; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(types[i]);
                t->cols[i].cls = cls[i];
                t->cols[i].key = i == 0;
                t->cols[i].typmod = -1;
        }
        return t;
}

/* NULL: SQL NULL; "~": an unchanged TOAST value */
static Value *row(const char *id, const char *region, const char *amount, const char *paid, const char *note) {
        const char *v[] = {id, region, amount, paid, note};
        Value *r = values_new(5);
        for (int i = 0; i < 5; i++)
                if (v[i] && strcmp(v[i], "~") == 0)
                        r[i].kind = VALUE_UNCHANGED;
                else if (v[i])
                        value_set(&r[i], v[i], strlen(v[i]));
        return r;
}

/* Evaluates expr on img (freed), -100 when it does not parse or bind. */
static int eval(const char *expr, Value *img) {
        Table *t = orders();
        RowFilter *f = NULL;
        char err[512];
        int idx[8], r = -100;
        if (rowfilter_parse(expr, &f, err, sizeof(err)) == 0 && rowfilter_bind(f, t, idx, err, sizeof(err)) == 0)
                r = rowfilter_eval(f, t, idx, img);
        rowfilter_free(f);
        values_free(img, 5);
        table_unref(t);
        return r;
}

static void test_comparisons(void **state) {
        (void)state;
        assert_int_equal(eval("region = 'eu'", row("1", "eu", "5", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("region = 'eu'", row("1", "EU", "5", "t", "x")), ROWFILTER_NO); /* bytes */
        assert_int_equal(eval("region <> 'eu'", row("1", "us", "5", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("region != 'eu'", row("1", "eu", "5", "t", "x")), ROWFILTER_NO);
        /* numbers as exact decimals, not as text: 10 > 9, 5.50 = 5.5 */
        assert_int_equal(eval("amount > 9", row("1", "eu", "10.00", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("amount = 5.5", row("1", "eu", "5.50", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("amount >= -0.01", row("1", "eu", "-0.02", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("amount < '100'", row("1", "eu", "99.999", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("id <= 12345678901234567890", row("12345678901234567891", "eu", "1", "t", "x")),
                         ROWFILTER_NO);
        assert_int_equal(eval("1.5e3 = amount", row("1", "eu", "1500", "t", "x")), ROWFILTER_YES);
        /* booleans by truth: PostgreSQL's t, MySQL's 1 */
        assert_int_equal(eval("paid = TRUE", row("1", "eu", "1", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("paid = true", row("1", "eu", "1", "1", "x")), ROWFILTER_YES);
        assert_int_equal(eval("paid = FALSE", row("1", "eu", "1", "t", "x")), ROWFILTER_NO);
        /* a quote inside a literal, a quoted column name */
        assert_int_equal(eval("note = 'it''s'", row("1", "eu", "1", "t", "it's")), ROWFILTER_YES);
        assert_int_equal(eval("\"region\" = 'eu'", row("1", "eu", "1", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("REGION = 'eu'", row("1", "eu", "1", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("\"REGION\" = 'eu'", row("1", "eu", "1", "t", "x")), -100);
        /* column against column */
        assert_int_equal(eval("region = note", row("1", "eu", "1", "t", "eu")), ROWFILTER_YES);
}

static void test_logic_and_nulls(void **state) {
        (void)state;
        const char *e = "region IN ('eu', 'uk') AND (amount > 100 OR NOT paid = TRUE)";
        assert_int_equal(eval(e, row("1", "uk", "50", "f", "x")), ROWFILTER_YES);
        assert_int_equal(eval(e, row("1", "uk", "50", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval(e, row("1", "us", "500", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("region not in ('eu')", row("1", "us", "5", "t", "x")), ROWFILTER_YES);
        /* NULL: a comparison is unknown, so the row does not match, and NOT unknown is unknown */
        assert_int_equal(eval("region = 'eu'", row("1", NULL, "5", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("NOT region = 'eu'", row("1", NULL, "5", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("region = 'eu' OR region IS NULL", row("1", NULL, "5", "t", "x")), ROWFILTER_YES);
        assert_int_equal(eval("region IS NOT NULL", row("1", NULL, "5", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("region NOT IN ('eu', NULL)", row("1", "us", "5", "t", "x")), ROWFILTER_NO);
        assert_int_equal(eval("region IN ('eu', NULL)", row("1", "eu", "5", "t", "x")), ROWFILTER_YES);
        /* what the image lacks cannot be decided, unless the rest decides */
        assert_int_equal(eval("note = 'x'", row("1", "eu", "5", "t", "~")), ROWFILTER_MISSING);
        assert_int_equal(eval("note = 'x' AND region = 'us'", row("1", "eu", "5", "t", "~")), ROWFILTER_NO);
        assert_int_equal(eval("note = 'x' OR region = 'eu'", row("1", "eu", "5", "t", "~")), ROWFILTER_YES);
        assert_int_equal(eval("region = 'eu'", NULL), ROWFILTER_MISSING);
        /* a value that is no number in a number column: unknown, as a failed cast */
        assert_int_equal(eval("amount > 1", row("1", "eu", "NaNx", "t", "x")), ROWFILTER_NO);
}

static void expect_error(const char *expr, const char *msg) {
        Table *t = orders();
        RowFilter *f = NULL;
        char err[512] = "";
        int idx[8];
        int r = rowfilter_parse(expr, &f, err, sizeof(err));
        if (r == 0)
                r = rowfilter_bind(f, t, idx, err, sizeof(err));
        if (r != -EINVAL || !strstr(err, msg))
                fail_msg("'%s': got %d '%s', wanted '%s'", expr, r, err, msg);
        rowfilter_free(f);
        table_unref(t);
}

static void test_errors(void **state) {
        (void)state;
        expect_error("", "empty");
        expect_error("region = 'eu", "never closed");
        expect_error("region = 'eu' AND", "ends where a column name or a literal");
        expect_error("region LIKE 'e%'", "at character 8 ('LIKE'): expected a comparison");
        expect_error("region = 'eu')", "expected AND, OR or the end");
        expect_error("lower(region) = 'eu'", "expected a comparison");
        expect_error("region IN 'eu'", "'(' after IN");
        expect_error("region IN ('eu' 'uk')", "',' or ')' in the IN list");
        expect_error("region IS 'eu'", "NULL after IS");
        expect_error("amount > 1; DROP TABLE x", "character 11");
        expect_error("country = 'fr'", "column country is not in public.orders");
        expect_error("amount > 'lots'", "column amount of public.orders (numeric(10,2)) is compared with 'lots', "
                                        "which is no number");
        expect_error("paid = 'maybe'", "which is no boolean");
        char deep[400];
        memset(deep, '(', 100);
        snprintf(deep + 100, sizeof(deep) - 100, "id = 1");
        expect_error(deep, "fewer nested parentheses");
}

/* rowfilter_sql against a server table id int4 key, region text, amount numeric, paid bool, "Note"
 * text (a column "zone" it lacks). */
static const char *sql_column(void *ud, int i, RowFilterColClass *cls) {
        const RowFilter *f = ud;
        const char *c = rowfilter_column(f, i);
        if (strcasecmp(c, "id") == 0) {
                *cls = ROWFILTER_COL_NUMBER;
                return "id";
        }
        if (strcmp(c, "region") == 0 || strcasecmp(c, "note") == 0) {
                *cls = ROWFILTER_COL_TEXT;
                return strcmp(c, "region") == 0 ? "region" : "\"Note\"";
        }
        if (strcmp(c, "amount") == 0) {
                *cls = ROWFILTER_COL_OTHER;
                return "amount";
        }
        if (strcmp(c, "paid") == 0) {
                *cls = ROWFILTER_COL_BOOL;
                return "paid";
        }
        return NULL;
}

static char *sql_literal(void *ud, const char *text) {
        (void)ud;
        char *q = malloc(strlen(text) * 2 + 3), *p = q;
        if (!q)
                return NULL;
        *p++ = '\'';
        for (; *text; text++) {
                if (*text == '\'')
                        *p++ = '\'';
                *p++ = *text;
        }
        *p++ = '\'';
        *p = 0;
        return q;
}

/* The SQL of expr, or "-" when it could select otherwise on the server. */
static void expect_sql(const char *expr, const char *want) {
        RowFilter *f = NULL;
        char err[512], *got = NULL;
        assert_int_equal(rowfilter_parse(expr, &f, err, sizeof(err)), 0);
        RowFilterSqlOps ops = {.column = sql_column, .literal = sql_literal, .ud = f};
        int r = rowfilter_sql(f, &ops, &got);
        assert_true(r >= 0);
        assert_string_equal(r == 1 ? got : "-", want);
        free(got);
        rowfilter_free(f);
}

static void test_sql(void **state) {
        (void)state;
        expect_sql("id = 1", "(id = 1)");
        expect_sql("ID >= 10 AND id < 20 OR id IS NULL", "(((id >= 10) AND (id < 20)) OR (id IS NULL))");
        expect_sql("NOT id IN (1, 2, NULL)", "(NOT (id IN (1, 2, NULL)))");
        expect_sql("region IN ('eu', 'o''brien') AND paid = true",
                   "((region IN ('eu', 'o''brien')) AND (paid = true))");
        expect_sql("'eu' <> region", "('eu' <> region)");
        expect_sql("note is not null", "(\"Note\" IS NOT NULL)");
        expect_sql("region = NULL", "(region = NULL)");
        /* what the server could decide otherwise */
        expect_sql("region < 'm'", "-");         /* a text ordering: the collation's */
        expect_sql("amount = 5", "-");           /* numeric: NaN */
        expect_sql("id = 1e2", "-");             /* compared as a double here */
        expect_sql("id = '5'", "-");             /* a text literal cast on the server */
        expect_sql("paid > false", "-");         /* a boolean ordering */
        expect_sql("id = region", "-");          /* two classes */
        expect_sql("1 = 1", "-");                /* no column */
        expect_sql("zone = 'x' OR id = 1", "-"); /* a column the table lacks */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_comparisons),
                cmocka_unit_test(test_logic_and_nulls),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_sql),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
