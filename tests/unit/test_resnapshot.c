/* Unit tests of engine/resnapshot.c: the merge of a re-snapshot chunk with the stream's changes
 * between its watermarks, the range delete it ends with, the key column it accepts, and the
 * operator's requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/resnapshot.h"

/* t(id bigint primary key, v text) */
static Table *table(TypeClass key_cls, int nkeys) {
        Table *t = table_new("public", "t", 2);
        t->cols[0].name = strdup("id");
        t->cols[0].cls = key_cls;
        t->cols[0].key = true;
        t->cols[1].name = strdup("v");
        t->cols[1].cls = TYPE_TEXT;
        t->cols[1].key = nkeys > 1;
        t->replident = 'd';
        return t;
}

static Value *row(int64_t id, const char *v) {
        Value *r = values_new(2);
        char buf[24];
        snprintf(buf, sizeof(buf), "%lld", (long long)id);
        value_set(&r[0], buf, strlen(buf));
        if (v)
                value_set(&r[1], v, strlen(v));
        return r;
}

static Change change(Table *t, ChangeOp op, int64_t before_id, int64_t after_id) {
        Change c = {.op = op, .table = table_ref(t)};
        if (before_id >= 0)
                c.before = row(before_id, NULL);
        if (after_id >= 0)
                c.after = row(after_id, "new");
        return c;
}

static ResnapChunk *chunk_of(Table *t, bool has_lo, int64_t lo, const int64_t *ids, int n, bool full) {
        ResnapChunk *ch = NULL;
        assert_int_equal(resnap_chunk_new(t, 0, has_lo, lo, &ch), 0);
        for (int i = 0; i < n; i++)
                assert_int_equal(resnap_chunk_add_row(ch, row(ids[i], "old")), 0);
        resnap_chunk_read(ch, full);
        return ch;
}

/* Finishes ch; checks the range delete's bounds and kept keys, and the keys of the rows left. */
static void expect_finish(ResnapChunk *ch, const char *lo, const char *hi, const char *keep, const int64_t *left,
                          int nleft) {
        Change del, *rows = NULL;
        int n = -1;
        assert_int_equal(resnap_chunk_finish(ch, &del, &rows, &n), 0);
        assert_int_equal(del.op, CHANGE_DELETE);
        assert_true(del.flags & CHANGE_RANGE);
        if (lo)
                assert_string_equal(del.before[0].data, lo);
        else
                assert_int_equal(del.before[0].kind, VALUE_NULL);
        if (hi)
                assert_string_equal(del.after[0].data, hi);
        else
                assert_int_equal(del.after[0].kind, VALUE_NULL);
        assert_string_equal(del.keep, keep);
        assert_int_equal(n, nleft);
        for (int i = 0; i < n; i++) {
                char buf[24];
                snprintf(buf, sizeof(buf), "%lld", (long long)left[i]);
                assert_int_equal(rows[i].op, CHANGE_INSERT);
                assert_true(rows[i].flags & CHANGE_IDEMPOTENT);
                assert_string_equal(rows[i].after[0].data, buf);
                assert_string_equal(rows[i].after[1].data, "old");
                change_clear(&rows[i]);
        }
        free(rows);
        change_clear(&del);
}

static void test_no_event(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        int64_t ids[] = {3, 4, 7};
        ResnapChunk *ch = chunk_of(t, true, 2, ids, 3, true);
        int64_t hi = 0;
        assert_true(resnap_chunk_hi(ch, &hi));
        assert_true(hi == 7);
        assert_true(resnap_chunk_covers(ch, 3) && resnap_chunk_covers(ch, 7));
        assert_false(resnap_chunk_covers(ch, 2) || resnap_chunk_covers(ch, 8));
        /* every row upserted; every other sink row in (2, 7] deleted */
        expect_finish(ch, "2", "7", "3,4,7", ids, 3);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_events_win(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        int64_t ids[] = {1, 2, 3, 4, 5};
        ResnapChunk *ch = chunk_of(t, false, 0, ids, 5, true);
        Change c;
        /* an update of 2 (applied as it came): the chunk's older row of 2 must not follow it */
        c = change(t, CHANGE_UPDATE, -1, 2);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* a delete of 4: gone at the source, the chunk's row must not bring it back */
        c = change(t, CHANGE_DELETE, 4, -1);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* 3 moved to key 9 (outside the chunk: a later chunk reads it) */
        c = change(t, CHANGE_UPDATE, 3, 9);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* a change of a key outside (0, 5] leaves the chunk alone */
        c = change(t, CHANGE_UPDATE, -1, 6);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        int64_t left[] = {1, 5};
        /* keys read are all kept (2 as the stream wrote it, 3 and 4 are gone anyway) */
        expect_finish(ch, NULL, "5", "1,2,3,4,5", left, 2);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_window_insert_kept(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        int64_t ids[] = {10, 20, 30};
        ResnapChunk *ch = chunk_of(t, true, 5, ids, 3, true);
        /* inserted after the chunk's SELECT, inside its range: the stream wrote it, it stays */
        Change c = change(t, CHANGE_INSERT, -1, 15);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* inserted then deleted in the window: nothing to keep, but keeping it is harmless */
        c = change(t, CHANGE_INSERT, -1, 25);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        c = change(t, CHANGE_DELETE, 25, -1);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* a key moved into the range */
        c = change(t, CHANGE_UPDATE, 100, 12);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* written twice: listed once */
        c = change(t, CHANGE_UPDATE, -1, 15);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        int64_t left[] = {10, 20, 30};
        expect_finish(ch, "5", "30", "10,12,15,20,25,30", left, 3);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_last_chunk_open_ended(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        int64_t ids[] = {41, 42};
        /* fewer rows than asked: the table's end, everything above lo is the chunk's */
        ResnapChunk *ch = chunk_of(t, true, 40, ids, 2, false);
        int64_t hi;
        assert_false(resnap_chunk_hi(ch, &hi));
        assert_true(resnap_chunk_covers(ch, 1000000));
        Change c = change(t, CHANGE_INSERT, -1, 500);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        expect_finish(ch, "40", NULL, "41,42,500", ids, 2);
        resnap_chunk_free(ch);
        /* an empty table: one chunk, no row, every sink row deleted */
        ch = chunk_of(t, false, 0, NULL, 0, false);
        expect_finish(ch, NULL, NULL, "", NULL, 0);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_truncate_in_window(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        int64_t ids[] = {1, 2, 3};
        ResnapChunk *ch = chunk_of(t, false, 0, ids, 3, true);
        Change c = change(t, CHANGE_INSERT, -1, 2);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        /* emptied at the source after the SELECT: none of the chunk's rows may come back */
        c = (Change){.op = CHANGE_TRUNCATE, .table = table_ref(t)};
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        c = change(t, CHANGE_INSERT, -1, 3);
        assert_int_equal(resnap_chunk_event(ch, &c), 0);
        change_clear(&c);
        Change del, *rows = NULL;
        int n = -1;
        assert_int_equal(resnap_chunk_finish(ch, &del, &rows, &n), 0);
        assert_int_equal(n, 0);
        change_clear(&del);
        free(rows);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_rows_in_order(void **state) {
        (void)state;
        Table *t = table(TYPE_INTEGER, 1);
        ResnapChunk *ch = NULL;
        assert_int_equal(resnap_chunk_new(t, 0, true, 5, &ch), 0);
        Value *r = row(5, "x"); /* not above lo */
        assert_int_equal(resnap_chunk_add_row(ch, r), -EINVAL);
        values_free(r, 2);
        assert_int_equal(resnap_chunk_add_row(ch, row(7, "x")), 0);
        r = row(6, "x"); /* not ascending */
        assert_int_equal(resnap_chunk_add_row(ch, r), -EINVAL);
        values_free(r, 2);
        r = values_new(2); /* a NULL key */
        assert_int_equal(resnap_chunk_add_row(ch, r), -EINVAL);
        values_free(r, 2);
        resnap_chunk_free(ch);
        table_unref(t);
}

static void test_key_column(void **state) {
        (void)state;
        char why[512];
        Table *t = table(TYPE_INTEGER, 1);
        assert_int_equal(resnap_key_column(t, why, sizeof(why)), 0);
        t->replident = 'f';
        assert_int_equal(resnap_key_column(t, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "no primary key"));
        table_unref(t);
        t = table(TYPE_TEXT, 1);
        assert_int_equal(resnap_key_column(t, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "integer key"));
        table_unref(t);
        t = table(TYPE_INTEGER, 2);
        assert_int_equal(resnap_key_column(t, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "2 columns"));
        table_unref(t);
        int64_t k;
        assert_int_equal(resnap_parse_key("-9223372036854775808", &k), 0);
        assert_true(k == INT64_MIN);
        assert_int_equal(resnap_parse_key("12x", &k), -EINVAL);
        assert_int_equal(resnap_parse_key("", &k), -EINVAL);
        assert_int_equal(resnap_parse_key("99999999999999999999", &k), -EINVAL);
}

static void test_requests(void **state) {
        (void)state;
        ResnapRequests q;
        resnap_requests_init(&q);
        char **v = NULL;
        int n = -1;
        resnap_requests_take(&q, &v, &n);
        assert_int_equal(n, 0);
        assert_null(v);
        const char *a[] = {"public.a", "public.b", "public.a"};
        assert_int_equal(resnap_requests_push(&q, a, 3), 0);
        assert_true(atomic_load(&q.pending));
        assert_int_equal(resnap_requests_push(&q, a + 1, 1), 0);
        resnap_requests_take(&q, &v, &n);
        assert_false(atomic_load(&q.pending));
        assert_int_equal(n, 2);
        assert_string_equal(v[0], "public.a");
        assert_string_equal(v[1], "public.b");
        for (int i = 0; i < n; i++)
                free(v[i]);
        free(v);
        assert_int_equal(resnap_requests_push(&q, NULL, 0), 0);
        resnap_requests_take(&q, &v, &n);
        assert_int_equal(n, 1);
        assert_string_equal(v[0], "*");
        free(v[0]);
        free(v);
        resnap_requests_destroy(&q);
        assert_true(resnap_table_name_ok("public.orders"));
        assert_false(resnap_table_name_ok("orders"));
        assert_false(resnap_table_name_ok("a.b.c"));
        assert_false(resnap_table_name_ok("public. x"));
        assert_false(resnap_table_name_ok(".x"));
        assert_false(resnap_table_name_ok("x."));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_event),           cmocka_unit_test(test_events_win),
                cmocka_unit_test(test_window_insert_kept), cmocka_unit_test(test_last_chunk_open_ended),
                cmocka_unit_test(test_truncate_in_window), cmocka_unit_test(test_rows_in_order),
                cmocka_unit_test(test_key_column),         cmocka_unit_test(test_requests),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
