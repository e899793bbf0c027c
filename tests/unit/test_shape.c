/* The shaping keys (shape.c): parsing and its errors, kept and dropped columns, masks, skipped
 * operations and soft deletes, on changes as a source hands them on. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/change.h"
#include "cdcsync/connector.h"
#include "cdcsync/shape.h"

static char *tables[] = {"public.users", "public.logs"};
static ConnectorConf pg = {.name = "pg", .type = "postgres"};

static PipelineConf conf(void) {
        return (PipelineConf){.name = "p", .source = &pg, .tables = tables, .ntables = 2};
}

/* public.users (id key, email, password_hash, ssn) */
static Table *users(void) {
        static const char *names[] = {"id", "email", "password_hash", "ssn"};
        Table *t = table_new("public", "users", 4);
        for (int i = 0; i < 4; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(i == 0 ? "integer" : "text");
                t->cols[i].cls = i == 0 ? TYPE_INTEGER : TYPE_TEXT;
                t->cols[i].key = i == 0;
                t->cols[i].typmod = -1;
        }
        return t;
}

static Value *img(const char *id, const char *email, const char *hash, const char *ssn) {
        const char *v[] = {id, email, hash, ssn};
        Value *r = values_new(4);
        for (int i = 0; i < 4; i++)
                if (v[i])
                        value_set(&r[i], v[i], strlen(v[i]));
        return r;
}

static Change change(Table *t, ChangeOp op, Value *before, Value *after) {
        return (Change){.op = op, .table = table_ref(t), .before = before, .after = after};
}

static const char *text(const Change *c, const Value *v, const char *col) {
        for (int i = 0; i < c->table->ncols; i++)
                if (strcmp(c->table->cols[i].name, col) == 0)
                        return v[i].kind == VALUE_TEXT ? v[i].data : v[i].kind == VALUE_NULL ? "NULL" : "UNCHANGED";
        return "ABSENT";
}

static int parse(PipelineConf *p, Shape **s, char *err) {
        return shape_new(p, s, err, 512);
}

static void test_parse_errors(void **state) {
        (void)state;
        char err[512];
        Shape *s = NULL;
        PipelineConf p = conf();
        assert_int_equal(parse(&p, &s, err), 0);
        assert_null(s); /* nothing set: nothing shapes */

        p.columns = "public.users: id, email; public.users: id";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "names public.users twice"));
        p = conf();
        p.columns = "public.users: id, email";
        p.exclude_columns = "public.users: ssn";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "exclude_columns names public.users, which the other"));
        p = conf();
        p.columns = "public.orders: id";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "public.orders, which is not in tables"));
        p = conf();
        p.columns = "public.users id, email";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "has no ':'"));
        p = conf();
        p.mask_columns = "public.users.email: md5";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "'md5' is no mask — write sha256 or redact"));
        p = conf();
        p.skip = "delete, insert";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "'insert' is no operation that can be skipped"));
        p = conf();
        p.skip = "delete";
        p.soft_delete = "deleted_at";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "soft_delete and skip = delete are both set"));
        p = conf();
        p.mask_columns = "public.users.email: sha256";
        p.bidirectional = true;
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "reverse pipeline"));
        assert_null(s);
}

/* columns keeps the key and the named columns, in table order; masks replace values, the same
 * input giving the same hash; an unchanged value stays unchanged. */
static void test_columns_and_masks(void **state) {
        (void)state;
        char err[512], want[65];
        Shape *s = NULL;
        PipelineConf p = conf();
        p.columns = "public.users: ssn, id, email";
        p.mask_columns = "public.users.email: sha256, public.users.ssn: redact";
        assert_int_equal(parse(&p, &s, err), 0);
        Table *t = users();
        CdcError e = {0};
        Change c = change(t, CHANGE_INSERT, NULL, img("7", "a@example.com", "secret", "123-45"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.table->ncols, 3);
        assert_string_equal(c.table->cols[0].name, "id");
        assert_true(c.table->cols[0].key);
        assert_string_equal(c.table->cols[1].name, "email");
        assert_string_equal(c.table->cols[1].type_name, "varchar(64)");
        assert_string_equal(c.table->cols[2].name, "ssn");
        assert_string_equal(text(&c, c.after, "id"), "7");
        shape_sha256_hex("a@example.com", 13, want);
        assert_string_equal(text(&c, c.after, "email"), want);
        /* the well-known digest of the empty text: the mask is plain SHA-256 of the value's bytes */
        shape_sha256_hex("", 0, want);
        assert_string_equal(want, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_string_equal(text(&c, c.after, "ssn"), "NULL");
        assert_string_equal(text(&c, c.after, "password_hash"), "ABSENT");
        Table *shaped = c.table;
        change_clear(&c);
        /* an update whose password_hash is an unchanged TOAST value: the same shaped table */
        Value *a = img("7", "b@example.com", NULL, "9");
        a[2].kind = VALUE_UNCHANGED;
        c = change(t, CHANGE_UPDATE, NULL, a);
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_ptr_equal(c.table, shaped);
        shape_sha256_hex("b@example.com", 13, want);
        assert_string_equal(text(&c, c.after, "email"), want);
        change_clear(&c);
        table_unref(t);
        shape_free(s);
}

/* What only the table's shape can show is a non-retriable conf error naming the column. */
static void test_errors_against_the_table(void **state) {
        (void)state;
        static const struct {
                const char *columns, *exclude, *masks, *soft, *want;
        } cases[] = {
                {"public.users: id, emial", NULL, NULL, NULL, "columns names column emial of public.users"},
                {"public.users: email", NULL, NULL, NULL, "columns leaves out id of public.users, a key column"},
                {NULL, "public.users: id", NULL, NULL, "exclude_columns leaves out id of public.users"},
                {NULL, NULL, "public.users.id: redact", NULL, "id of public.users is a key column: redacted"},
                {NULL, NULL, "public.users.pin: sha256", NULL, "mask_columns names column pin of public.users"},
                {NULL, NULL, NULL, "email", "soft_delete = email: the source table public.users has a column"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[512];
                Shape *s = NULL;
                PipelineConf p = conf();
                p.columns = (char *)cases[i].columns;
                p.exclude_columns = (char *)cases[i].exclude;
                p.mask_columns = (char *)cases[i].masks;
                p.soft_delete = (char *)cases[i].soft;
                assert_int_equal(parse(&p, &s, err), 0);
                Table *t = users();
                CdcError e = {0};
                Change c = change(t, CHANGE_INSERT, NULL, img("1", "x", "y", "z"));
                assert_true(shape_apply(s, &c, 0, false, &e) < 0);
                assert_string_equal(e.kind, "conf");
                assert_false(e.retriable);
                if (!strstr(e.message, cases[i].want))
                        fail_msg("case %zu: %s", i, e.message);
                change_clear(&c);
                table_unref(t);
                shape_free(s);
        }
}

/* skip drops those operations (a copy's TRUNCATE is kept); soft_delete turns a delete into an
 * update of the key and the mark, and makes an insert an upsert that clears it. Tables no key
 * names are left as they are. */
static void test_skip_and_soft_delete(void **state) {
        (void)state;
        char err[512];
        Shape *s = NULL;
        PipelineConf p = conf();
        p.skip = "truncate, update";
        p.soft_delete = "deleted_at";
        assert_int_equal(parse(&p, &s, err), 0);
        Table *t = users();
        CdcError e = {0};
        Change c = change(t, CHANGE_UPDATE, NULL, img("1", "x", "y", "z"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_DROP);
        change_clear(&c);
        c = change(t, CHANGE_TRUNCATE, NULL, NULL);
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_DROP);
        assert_int_equal(shape_apply(s, &c, 0, true, &e), SHAPE_KEEP);
        change_clear(&c);

        c = change(t, CHANGE_INSERT, NULL, img("1", "x", "y", "z"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.table->ncols, 5);
        assert_string_equal(c.table->cols[4].name, "deleted_at");
        assert_string_equal(c.table->cols[4].type_name, "timestamptz");
        assert_string_equal(text(&c, c.after, "deleted_at"), "NULL");
        assert_true(c.flags & CHANGE_IDEMPOTENT);
        change_clear(&c);

        /* 2026-12-06 00:30:00.000042 UTC */
        int64_t ts = INT64_C(1796517000) * 1000000 + 42;
        c = change(t, CHANGE_DELETE, img("1", NULL, NULL, NULL), NULL);
        assert_int_equal(shape_apply(s, &c, ts, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_UPDATE);
        assert_string_equal(text(&c, c.before, "id"), "1");
        assert_string_equal(text(&c, c.after, "id"), "1");
        assert_string_equal(text(&c, c.after, "email"), "UNCHANGED");
        assert_string_equal(text(&c, c.after, "deleted_at"), "2026-12-06 00:30:00.000042+00");
        change_clear(&c);
        table_unref(t);
        shape_free(s);

        /* a MySQL source: the mark is a datetime(6) in UTC */
        ConnectorConf my = {.name = "my", .type = "mysql"};
        p = conf();
        p.source = &my;
        p.soft_delete = "deleted_at";
        assert_int_equal(parse(&p, &s, err), 0);
        t = users();
        c = change(t, CHANGE_DELETE, img("1", NULL, NULL, NULL), NULL);
        assert_int_equal(shape_apply(s, &c, ts, false, &e), SHAPE_KEEP);
        assert_string_equal(c.table->cols[4].type_name, "datetime(6)");
        assert_string_equal(text(&c, c.after, "deleted_at"), "2026-12-06 00:30:00.000042");
        change_clear(&c);
        table_unref(t);
        shape_free(s);
}

/* where: a condition on a non-key column (email), rows entering and leaving it. */
static void test_where(void **state) {
        (void)state;
        char err[512];
        Shape *s = NULL;
        PipelineConf p = conf();
        p.where = "public.users: email = 'a;b' OR email IN ('keep', 'also') ; public.logs: id > 3";
        assert_int_equal(parse(&p, &s, err), 0);
        Table *t = users();
        CdcError e = {0};
        /* inserts and deletes pass when their row matches */
        Change c = change(t, CHANGE_INSERT, NULL, img("1", "keep", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_INSERT);
        change_clear(&c);
        c = change(t, CHANGE_INSERT, NULL, img("1", "a;b", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        change_clear(&c);
        c = change(t, CHANGE_INSERT, NULL, img("2", "drop", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, true, &e), SHAPE_DROP);
        change_clear(&c);
        Table *tf = users();
        tf->replident = 'f'; /* PostgreSQL's REPLICA IDENTITY FULL: whole old rows */
        c = change(tf, CHANGE_DELETE, img("2", "drop", "h", "s"), NULL);
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_DROP);
        change_clear(&c);
        c = change(tf, CHANGE_DELETE, img("2", "keep", "h", "s"), NULL);
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_false(c.flags & CHANGE_IDEMPOTENT);
        change_clear(&c);
        /* a delete carrying only its key: deleted if the sink has it */
        c = change(t, CHANGE_DELETE, img("2", NULL, NULL, NULL), NULL);
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_true(c.flags & CHANGE_IDEMPOTENT);
        change_clear(&c);

        /* whole old rows (MySQL, REPLICA IDENTITY FULL): exact transitions */
        c = change(tf, CHANGE_UPDATE, img("1", "keep", "h", "s"), img("1", "also", "h2", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_UPDATE);
        assert_false(c.flags & CHANGE_IDEMPOTENT);
        change_clear(&c);
        c = change(tf, CHANGE_UPDATE, img("1", "keep", "h", "s"), img("1", "gone", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_DELETE);
        assert_null(c.after);
        assert_string_equal(text(&c, c.before, "id"), "1");
        change_clear(&c);
        c = change(tf, CHANGE_UPDATE, img("1", "out", "h", "s"), img("1", "keep", "h", NULL));
        c.after[2].kind = VALUE_UNCHANGED; /* an unchanged TOAST value: taken from the old row */
        free(c.after[2].data);
        c.after[2].data = NULL;
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_INSERT);
        assert_null(c.before);
        assert_string_equal(text(&c, c.after, "password_hash"), "h");
        assert_string_equal(text(&c, c.after, "ssn"), "NULL");
        change_clear(&c);
        c = change(tf, CHANGE_UPDATE, img("1", "out", "h", "s"), img("1", "still out", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_DROP);
        change_clear(&c);

        /* with a key-only old image, its NULLs are not the row's: a delete of the key if there */
        c = change(t, CHANGE_UPDATE, img("1", NULL, NULL, NULL), img("1", "gone", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_DELETE);
        assert_true(c.flags & CHANGE_IDEMPOTENT);
        change_clear(&c);
        table_unref(tf);

        /* no old row (PostgreSQL's default replica identity) */
        c = change(t, CHANGE_UPDATE, NULL, img("1", "keep", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_UPDATE);
        assert_true(c.flags & CHANGE_IDEMPOTENT); /* an upsert: it may be entering */
        change_clear(&c);
        c = change(t, CHANGE_UPDATE, NULL, img("1", "out", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_KEEP);
        assert_int_equal(c.op, CHANGE_DELETE); /* it may be leaving: its key goes */
        assert_true(c.flags & CHANGE_IDEMPOTENT);
        assert_string_equal(text(&c, c.before, "id"), "1");
        assert_string_equal(text(&c, c.before, "email"), "NULL");
        change_clear(&c);
        /* the condition's column not sent: it cannot be decided, and says what to do */
        c = change(t, CHANGE_UPDATE, NULL, img("1", NULL, "h", "s"));
        c.after[1].kind = VALUE_UNCHANGED;
        assert_int_equal(shape_apply(s, &c, 0, false, &e), -EINVAL);
        assert_non_null(strstr(e.message, "REPLICA IDENTITY FULL"));
        assert_non_null(strstr(e.message, "column email"));
        change_clear(&c);
        /* a key that changed with the new row matching and no old row: an upsert cannot remove
         * the old key, so this is refused too */
        c = change(t, CHANGE_UPDATE, img("1", NULL, NULL, NULL), img("9", "keep", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), -EINVAL);
        change_clear(&c);
        table_unref(t);
        shape_free(s);

        /* with skip = delete, a row leaving the filter stays on the sink */
        p = conf();
        p.where = "public.users: email = 'keep'";
        p.skip = "delete";
        assert_int_equal(parse(&p, &s, err), 0);
        t = users();
        c = change(t, CHANGE_UPDATE, img("1", "keep", "h", "s"), img("1", "gone", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), SHAPE_DROP);
        change_clear(&c);
        table_unref(t);
        shape_free(s);

        /* errors: at parse, and against the table */
        p = conf();
        p.where = "public.users: email = 'x' AND";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "where: the condition of public.users cannot be read: the expression ends"));
        p.where = "public.orders: id = 1";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "where names public.orders, which is not in tables"));
        p.where = "public.users id = 1";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "has no ':'"));
        p.where = "public.users: id = 1; public.users: id = 2";
        assert_int_equal(parse(&p, &s, err), -EINVAL);
        assert_non_null(strstr(err, "names public.users twice"));
        p.where = "public.users: region = 'eu'";
        assert_int_equal(parse(&p, &s, err), 0);
        t = users();
        c = change(t, CHANGE_INSERT, NULL, img("1", "keep", "h", "s"));
        assert_int_equal(shape_apply(s, &c, 0, false, &e), -EINVAL);
        assert_non_null(strstr(e.message, "where on public.users: column region is not in public.users"));
        change_clear(&c);
        table_unref(t);
        shape_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_columns_and_masks),
                cmocka_unit_test(test_errors_against_the_table),
                cmocka_unit_test(test_skip_and_soft_delete),
                cmocka_unit_test(test_where),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
