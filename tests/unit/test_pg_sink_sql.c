/* Unit tests of the PostgreSQL sink's statement texts (connectors/postgres/pg_sql.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postgres/pg_sql.h"

static Table *orders(void) {
        static const char *names[] = {"id", "re\"gion", "total", "note"};
        static const char *types[] = {"integer", "text", "numeric(10,2)", "text[]"};
        Table *t = table_new("shop", "Order \"Items\"", 4);
        for (int i = 0; i < 4; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(types[i]);
        }
        t->cols[0].key = true;
        t->cols[1].key = true;
        t->cols[2].cls = TYPE_NUMERIC;
        t->cols[3].cls = TYPE_ARRAY;
        t->replident = 'd';
        return t;
}

/* got is read after the builder ran (argument evaluation order is unspecified). */
static void expect_sql(int r, char **got, const char *want) {
        assert_int_equal(r, 0);
        assert_string_equal(*got, want);
        free(*got);
        *got = NULL;
}

static void test_quote_ident(void **state) {
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_quote_ident("a\"b\"\"", &s), &s, "\"a\"\"b\"\"\"\"\"");
        expect_sql(pg_sql_quote_ident("", &s), &s, "\"\"");
        expect_sql(pg_sql_quote_ident("x; DROP TABLE y", &s), &s, "\"x; DROP TABLE y\"");
}

static void test_insert(void **state) {
        Table *t = orders();
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_insert("shop", t->name, t, &s), &s,
                   "INSERT INTO \"shop\".\"Order \"\"Items\"\"\" (\"id\", \"re\"\"gion\", \"total\", "
                   "\"note\") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4)");
        table_unref(t);
}

static void test_update(void **state) {
        Table *t = orders();
        /* total unchanged (TOAST) is left out; key (id, region) with region NULL in the old key. */
        uint8_t mask[4] = {PG_SQL_SET | PG_SQL_WHERE, PG_SQL_SET | PG_SQL_WHERE_NULL, 0, PG_SQL_SET};
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_update("shop", "o", t, mask, false, &s), &s,
                   "UPDATE \"shop\".\"o\" SET \"id\" = $1, \"re\"\"gion\" = $2, \"note\" = $3 WHERE "
                   "\"id\" = $4 AND \"re\"\"gion\" IS NULL");
        uint8_t mask2[4] = {PG_SQL_WHERE, PG_SQL_WHERE, PG_SQL_SET | PG_SQL_WHERE_NULL, PG_SQL_WHERE};
        expect_sql(pg_sql_update("s", "o", t, mask2, true, &s), &s,
                   "UPDATE \"s\".\"o\" SET \"total\" = $1 WHERE ctid = (SELECT ctid FROM \"s\".\"o\" "
                   "WHERE \"id\" = $2 AND \"re\"\"gion\" = $3 AND \"total\" IS NULL AND \"note\" = $4 "
                   "LIMIT 1)");
        uint8_t nothing_set[4] = {PG_SQL_WHERE, 0, 0, 0};
        s = NULL;
        assert_int_equal(pg_sql_update("s", "o", t, nothing_set, false, &s), -EINVAL);
        assert_null(s);
        uint8_t no_where[4] = {PG_SQL_SET, 0, 0, 0};
        assert_int_equal(pg_sql_update("s", "o", t, no_where, false, &s), -EINVAL);
        assert_null(s);
        table_unref(t);
}

static void test_delete_truncate(void **state) {
        Table *t = orders();
        uint8_t mask[4] = {PG_SQL_WHERE, PG_SQL_WHERE, 0, 0};
        uint8_t none[4] = {0};
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_delete("s", "o", t, mask, false, &s), &s,
                   "DELETE FROM \"s\".\"o\" WHERE \"id\" = $1 AND \"re\"\"gion\" = $2");
        assert_int_equal(pg_sql_delete("s", "o", t, none, false, &s), -EINVAL);
        expect_sql(pg_sql_truncate("s", "o", 0, &s), &s, "TRUNCATE \"s\".\"o\"");
        expect_sql(pg_sql_truncate("s", "o", TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY, &s), &s,
                   "TRUNCATE \"s\".\"o\" RESTART IDENTITY CASCADE");
        table_unref(t);
}

static void test_create_table(void **state) {
        Table *t = orders();
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_create_table("s", "o", t, true, &s), &s,
                   "CREATE TABLE IF NOT EXISTS \"s\".\"o\" (\"id\" integer, \"re\"\"gion\" text, "
                   "\"total\" numeric(10,2), \"note\" text[], PRIMARY KEY (\"id\", \"re\"\"gion\"))");
        /* From another system: types follow the class. */
        expect_sql(pg_sql_create_table("s", "o", t, false, &s), &s,
                   "CREATE TABLE IF NOT EXISTS \"s\".\"o\" (\"id\" text, \"re\"\"gion\" text, "
                   "\"total\" numeric, \"note\" text, PRIMARY KEY (\"id\", \"re\"\"gion\"))");
        /* REPLICA IDENTITY FULL flags all columns: no primary key. */
        t->replident = 'f';
        expect_sql(pg_sql_create_table("s", "o", t, true, &s), &s,
                   "CREATE TABLE IF NOT EXISTS \"s\".\"o\" (\"id\" integer, \"re\"\"gion\" text, "
                   "\"total\" numeric(10,2), \"note\" text[])");
        /* A type name that could smuggle SQL is refused. */
        free(t->cols[3].type_name);
        t->cols[3].type_name = strdup("text); DROP TABLE x; --");
        s = NULL;
        assert_int_equal(pg_sql_create_table("s", "o", t, true, &s), -EINVAL);
        assert_null(s);
        table_unref(t);
}

/* Generated columns (PostgreSQL source) in their places, with the source's expression; a table
 * without any column. */
static void test_create_table_generated_and_empty(void **state) {
        Table *t = orders();
        char *s = NULL;
        (void)state;
        t->ngen = 2;
        t->gen = calloc(2, sizeof(*t->gen));
        t->gen[0] = (GenColumn){strdup("first"), strdup("integer"), strdup("(id * 2)"), 0};
        t->gen[1] = (GenColumn){strdup("last"), strdup("text"), strdup("upper(note[1])"), 4};
        expect_sql(pg_sql_create_table("s", "o", t, true, &s), &s,
                   "CREATE TABLE IF NOT EXISTS \"s\".\"o\" (\"first\" integer GENERATED ALWAYS AS ((id * 2)) "
                   "STORED, \"id\" integer, \"re\"\"gion\" text, \"total\" numeric(10,2), \"note\" text[], "
                   "\"last\" text GENERATED ALWAYS AS (upper(note[1])) STORED, PRIMARY KEY (\"id\", \"re\"\"gion\"))");
        /* the rows written never name them */
        expect_sql(pg_sql_insert("s", "o", t, &s), &s,
                   "INSERT INTO \"s\".\"o\" (\"id\", \"re\"\"gion\", \"total\", \"note\") OVERRIDING SYSTEM VALUE "
                   "VALUES ($1, $2, $3, $4)");
        /* from another system there are none */
        expect_sql(pg_sql_create_table("s", "o", t, false, &s), &s,
                   "CREATE TABLE IF NOT EXISTS \"s\".\"o\" (\"id\" text, \"re\"\"gion\" text, "
                   "\"total\" numeric, \"note\" text, PRIMARY KEY (\"id\", \"re\"\"gion\"))");
        free(t->gen[1].type_name);
        t->gen[1].type_name = strdup("text; drop table x");
        assert_int_equal(pg_sql_create_table("s", "o", t, true, &s), -EINVAL);
        table_unref(t);

        Table *z = table_new("s", "z", 0);
        uint8_t none[1] = {0};
        z->replident = 'f';
        expect_sql(pg_sql_create_table("s", "z", z, true, &s), &s, "CREATE TABLE IF NOT EXISTS \"s\".\"z\" ()");
        expect_sql(pg_sql_insert("s", "z", z, &s), &s, "INSERT INTO \"s\".\"z\" DEFAULT VALUES");
        expect_sql(pg_sql_delete("s", "z", z, none, true, &s), &s,
                   "DELETE FROM \"s\".\"z\" WHERE ctid = (SELECT ctid FROM \"s\".\"z\" LIMIT 1)");
        table_unref(z);
}

static void test_add_columns(void **state) {
        Table *t = orders();
        char *s = NULL;
        bool none[4] = {false, false, false, false}, add[4] = {false, true, false, true};
        (void)state;
        /* from a MySQL source: types by class, as pg_sql_create_table gives them */
        expect_sql(pg_sql_add_columns("s", "o", t, add, false, &s), &s,
                   "ALTER TABLE \"s\".\"o\" ADD COLUMN IF NOT EXISTS \"re\"\"gion\" text, ADD COLUMN IF NOT EXISTS "
                   "\"note\" text");
        expect_sql(pg_sql_add_columns("s", "o", t, add, true, &s), &s,
                   "ALTER TABLE \"s\".\"o\" ADD COLUMN IF NOT EXISTS \"re\"\"gion\" text, ADD COLUMN IF NOT EXISTS "
                   "\"note\" text[]");
        assert_int_equal(pg_sql_add_columns("s", "o", t, none, false, &s), -EINVAL);
        free(t->cols[3].type_name);
        t->cols[3].type_name = strdup("text; drop table x");
        assert_int_equal(pg_sql_add_columns("s", "o", t, add, true, &s), -EINVAL);
        assert_null(s);
        table_unref(t);
}

static void test_type_name_ok(void **state) {
        (void)state;
        assert_true(pg_sql_type_name_ok("timestamp with time zone"));
        assert_true(pg_sql_type_name_ok("numeric(10,2)"));
        assert_true(pg_sql_type_name_ok("character varying(20)[]"));
        assert_true(pg_sql_type_name_ok("public.\"My Type\""));
        assert_false(pg_sql_type_name_ok(""));
        assert_false(pg_sql_type_name_ok(NULL));
        assert_false(pg_sql_type_name_ok("int; select 1"));
        assert_false(pg_sql_type_name_ok("int -- x"));
        assert_true(pg_sql_type_name_ok("numeric(3,-6)"));
        assert_true(pg_sql_type_name_ok("public.mood[]"));
        assert_false(pg_sql_type_name_ok("numeric(3,--6)"));
        assert_false(pg_sql_type_name_ok("int -"));
        assert_false(pg_sql_type_name_ok("text /* x */"));
        assert_false(pg_sql_type_name_ok("\"unterminated"));
        assert_false(pg_sql_type_name_ok("\"a(b\""));
        assert_false(pg_sql_type_name_ok("varchar('x')"));
}

static void test_multi_row(void **state) {
        Table *t = orders();
        uint8_t mask[4] = {0, 0, PG_SQL_SET, 0}; /* note unchanged: left out */
        char *s = NULL;
        (void)state;
        expect_sql(
                pg_sql_insert_rows("s", "o", t, 2, &s), &s,
                "INSERT INTO \"s\".\"o\" (\"id\", \"re\"\"gion\", \"total\", \"note\") OVERRIDING SYSTEM VALUE VALUES "
                "($1, $2, $3, $4), ($5, $6, $7, $8)");
        /* Key columns travel in each row; the typed first row never matches (NULL key). */
        expect_sql(pg_sql_update_rows("s", "o", t, mask, 2, &s), &s,
                   "UPDATE \"s\".\"o\" SET \"total\" = v.c2 FROM (VALUES (NULL::int, "
                   "(NULL::\"s\".\"o\").\"id\", (NULL::\"s\".\"o\").\"re\"\"gion\", "
                   "(NULL::\"s\".\"o\").\"total\"), (1, $1, $2, $3), (2, $4, $5, $6)) AS v(n, c0, c1, c2) "
                   "WHERE \"s\".\"o\".\"id\" = v.c0 AND \"s\".\"o\".\"re\"\"gion\" = v.c1 RETURNING v.n");
        /* A key column in the SET mask is left out of SET (the join keeps it equal), unless
         * nothing else is set. */
        uint8_t with_key[4] = {PG_SQL_SET, PG_SQL_SET, PG_SQL_SET, 0};
        expect_sql(pg_sql_update_rows("s", "o", t, with_key, 1, &s), &s,
                   "UPDATE \"s\".\"o\" SET \"total\" = v.c2 FROM (VALUES (NULL::int, "
                   "(NULL::\"s\".\"o\").\"id\", (NULL::\"s\".\"o\").\"re\"\"gion\", "
                   "(NULL::\"s\".\"o\").\"total\"), (1, $1, $2, $3)) AS v(n, c0, c1, c2) "
                   "WHERE \"s\".\"o\".\"id\" = v.c0 AND \"s\".\"o\".\"re\"\"gion\" = v.c1 RETURNING v.n");
        uint8_t only_key[4] = {PG_SQL_SET, 0, 0, 0};
        expect_sql(pg_sql_update_rows("s", "o", t, only_key, 1, &s), &s,
                   "UPDATE \"s\".\"o\" SET \"id\" = v.c0 FROM (VALUES (NULL::int, "
                   "(NULL::\"s\".\"o\").\"id\", (NULL::\"s\".\"o\").\"re\"\"gion\"), (1, $1, $2)) AS v(n, c0, c1) "
                   "WHERE \"s\".\"o\".\"id\" = v.c0 AND \"s\".\"o\".\"re\"\"gion\" = v.c1 RETURNING v.n");
        expect_sql(pg_sql_delete_rows("s", "o", t, 1, &s), &s,
                   "DELETE FROM \"s\".\"o\" USING (VALUES (NULL::int, (NULL::\"s\".\"o\").\"id\", "
                   "(NULL::\"s\".\"o\").\"re\"\"gion\"), (1, $1, $2)) AS v(n, c0, c1) WHERE "
                   "\"s\".\"o\".\"id\" = v.c0 AND \"s\".\"o\".\"re\"\"gion\" = v.c1 RETURNING v.n");
        /* Limits: no rows, nothing set, too many parameters, no key. */
        uint8_t none[4] = {0};
        assert_int_equal(pg_sql_insert_rows("s", "o", t, 0, &s), -EINVAL);
        assert_int_equal(pg_sql_update_rows("s", "o", t, none, 1, &s), -EINVAL);
        assert_int_equal(pg_sql_insert_rows("s", "o", t, PG_SQL_MAX_PARAMS / 4 + 1, &s), -EINVAL);
        assert_int_equal(pg_sql_delete_rows("s", "o", t, PG_SQL_MAX_PARAMS / 2 + 1, &s), -EINVAL);
        t->cols[0].key = t->cols[1].key = false;
        assert_int_equal(pg_sql_delete_rows("s", "o", t, 1, &s), -EINVAL);
        assert_null(s);
        table_unref(t);
}

static void test_copy_statement(void **state) {
        Table *t = orders();
        Table *empty = table_new("s", "e", 0);
        char *s = NULL;
        (void)state;
        expect_sql(pg_sql_copy("s", "Order \"Items\"", t, &s), &s,
                   "COPY \"s\".\"Order \"\"Items\"\"\" (\"id\", \"re\"\"gion\", \"total\", \"note\") FROM STDIN");
        assert_int_equal(pg_sql_copy("s", "e", empty, &s), -EINVAL);
        assert_null(s);
        table_unref(t);
        table_unref(empty);
}

/* in escaped into a fresh buffer of exactly 2 * len bytes (ASan sees any overrun), as a string. */
static char *escaped(const char *in, size_t len) {
        char *out = malloc(2 * len + 1);
        assert_non_null(out);
        size_t n = pg_sql_copy_escape(in, len, out);
        assert_true(n <= 2 * len);
        out[n] = '\0';
        return out;
}

static void expect_escaped(const char *in, size_t len, const char *want) {
        char *got = escaped(in, len);
        assert_string_equal(got, want);
        free(got);
}

/* COPY text format as the server reads one field (copyfromparse.c, CopyReadAttributesText):
 * returns the decoded length, -1 for a raw delimiter or line end (the field would split), -2
 * for the NULL marker. */
static long copy_decode(const char *in, size_t len, char *out) {
        size_t o = 0;
        if (len == 2 && in[0] == '\\' && in[1] == 'N')
                return -2;
        for (size_t i = 0; i < len; i++) {
                char c = in[i];
                if (c == '\t' || c == '\n' || c == '\r')
                        return -1;
                if (c != '\\') {
                        out[o++] = c;
                        continue;
                }
                if (++i == len)
                        return -1; /* a lone backslash at the end */
                switch (in[i]) {
                case 'b': out[o++] = '\b'; break;
                case 'f': out[o++] = '\f'; break;
                case 'n': out[o++] = '\n'; break;
                case 'r': out[o++] = '\r'; break;
                case 't': out[o++] = '\t'; break;
                case 'v': out[o++] = '\v'; break;
                case 'N': return -1; /* \N inside a field: not a value we would write */
                case '.': return -1; /* end-of-data marker */
                default:
                        if ((in[i] >= '0' && in[i] <= '7') || in[i] == 'x')
                                return -1; /* octal / hex escapes: never written by us */
                        out[o++] = in[i];
                }
        }
        return (long)o;
}

static void test_copy_escape(void **state) {
        (void)state;
        expect_escaped("", 0, "");
        expect_escaped("plain ünïcødé 日本語 ✓", strlen("plain ünïcødé 日本語 ✓"), "plain ünïcødé 日本語 ✓");
        expect_escaped("a\tb\nc\rd\\e", 9, "a\\tb\\nc\\rd\\\\e");
        /* bytea and arrays go as their text: \x... and {"a\\"b"} keep every backslash, doubled */
        expect_escaped("\\x00ff5c", 8, "\\\\x00ff5c");
        expect_escaped("{\"a\\\"b\",NULL}", 13, "{\"a\\\\\"b\",NULL}");
        /* a value that reads like the NULL marker or the end-of-data line is not one */
        expect_escaped("\\N", 2, "\\\\N");
        expect_escaped("\\.", 2, "\\\\.");
        expect_escaped("N", 1, "N");
        /* the worst case doubles, other control bytes go as they are */
        expect_escaped("\\\\\\\\", 4, "\\\\\\\\\\\\\\\\");
        expect_escaped("\x01\b\f\v\x7f", 5, "\x01\b\f\v\x7f");

        /* Round trip: whatever bytes (but NUL, which a text value cannot hold), the server reads
         * back exactly the value, never the NULL marker, never a split field or line. */
        unsigned seed = 14;
        char in[64], dec[64];
        for (int iter = 0; iter < 20000; iter++) {
                size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in));
                for (size_t i = 0; i < len; i++) {
                        static const char hot[] = "\\\t\n\rN.x0b";
                        int pick = rand_r(&seed) % 4;
                        in[i] = pick == 0 ? hot[rand_r(&seed) % (int)(sizeof(hot) - 1)]
                                          : (char)(1 + rand_r(&seed) % 255);
                }
                char *out = escaped(in, len);
                long n = copy_decode(out, strlen(out), dec);
                assert_int_equal(n, (long)len);
                assert_memory_equal(dec, in, len);
                free(out);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_quote_ident),
                cmocka_unit_test(test_insert),
                cmocka_unit_test(test_update),
                cmocka_unit_test(test_delete_truncate),
                cmocka_unit_test(test_create_table),
                cmocka_unit_test(test_type_name_ok),
                cmocka_unit_test(test_multi_row),
                cmocka_unit_test(test_add_columns),
                cmocka_unit_test(test_create_table_generated_and_empty),
                cmocka_unit_test(test_copy_statement),
                cmocka_unit_test(test_copy_escape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
