/* The change model: positions, table references, values, change cleanup. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/change.h"
#include "cdcsync/connector.h"

static void test_position_order(void **state) {
        (void)state;
        Position a = {0, 100}, b = {0, 200}, c = {1, 5};
        assert_true(position_cmp(a, b) < 0);
        assert_true(position_cmp(b, a) > 0);
        assert_int_equal(position_cmp(a, a), 0);
        /* hi dominates: a later binlog file beats any offset in an earlier one */
        assert_true(position_cmp(b, c) < 0);
        assert_true(position_is_zero((Position){0, 0}));
        assert_false(position_is_zero(a));
}

static void test_position_counter_monotonic(void **state) {
        (void)state;
        /* PostgreSQL: the LSN itself */
        assert_int_equal(position_counter((Position){0, 0x16B3748}), 0x16B3748);
        /* MySQL: file sequence above the offset, so a later file always counts higher */
        uint64_t end_of_1 = position_counter((Position){1, (UINT64_C(1) << 40) - 1});
        uint64_t start_of_2 = position_counter((Position){2, 4});
        assert_true(start_of_2 > end_of_1);
        assert_true(position_counter((Position){2, 100}) > position_counter((Position){2, 99}));
}

static void test_table_refcount(void **state) {
        (void)state;
        Table *t = table_new("public", "orders", 3);
        assert_non_null(t);
        assert_int_equal(t->ncols, 3);
        assert_int_equal(t->cols[0].typmod, -1);
        t->cols[0].name = strdup("id");
        t->cols[0].key = true;
        t->cols[2].key = true;
        assert_int_equal(table_nkeys(t), 2);
        Table *r = table_ref(t);
        assert_ptr_equal(r, t);
        assert_int_equal(atomic_load(&t->refs), 2);
        assert_null(table_unref(t));
        assert_int_equal(atomic_load(&r->refs), 1);
        assert_null(table_unref(r)); /* frees; ASan reports a leak or double free otherwise */
        assert_null(table_unref(NULL));
        assert_null(table_ref(NULL));
}

static void test_values_and_change_clear(void **state) {
        (void)state;
        Table *t = table_new("s", "t", 2);
        Change c = {.op = CHANGE_UPDATE, .table = t};
        c.after = values_new(2);
        c.before = values_new(2);
        assert_int_equal(c.after[0].kind, VALUE_NULL);
        assert_int_equal(value_set(&c.after[0], "a\0b", 3), 0); /* embedded NUL kept by length */
        assert_int_equal(c.after[0].kind, VALUE_TEXT);
        assert_int_equal(c.after[0].len, 3);
        assert_memory_equal(c.after[0].data, "a\0b", 3);
        assert_int_equal(c.after[0].data[3], '\0');
        assert_int_equal(value_set(&c.after[0], "xyz", 3), 0); /* replacing frees the old text */
        assert_string_equal(c.after[0].data, "xyz");
        c.after[1].kind = VALUE_UNCHANGED;
        assert_int_equal(value_set(&c.before[0], "1", 1), 0);
        change_clear(&c); /* drops the table reference and both images */
        assert_null(c.table);
        assert_null(c.after);
        assert_null(c.before);
        assert_int_equal(c.op, 0);
}

/* values_pack: one allocation holds the values and their text; setting or clearing one of them
 * must not free into it (ASan: a bad free), and the rest stay readable. */
static void test_values_pack(void **state) {
        (void)state;
        const char *data[4] = {"12", NULL, "a\0b", ""};
        size_t lens[4] = {2, 0, 3, 0};
        Value *v = values_pack(4, data, lens);
        assert_non_null(v);
        assert_int_equal(v[0].kind, VALUE_TEXT);
        assert_string_equal(v[0].data, "12");
        assert_int_equal(v[1].kind, VALUE_NULL);
        assert_null(v[1].data);
        assert_int_equal(v[2].len, 3);
        assert_memory_equal(v[2].data, "a\0b", 4); /* NUL-terminated after its bytes */
        assert_int_equal(v[3].kind, VALUE_TEXT);   /* an empty text is not NULL */
        assert_string_equal(v[3].data, "");
        assert_ptr_not_equal(v[0].data, data[0]); /* copied */
        assert_int_equal(value_set(&v[0], "345", 3), 0);
        assert_false(v[0].packed);
        assert_string_equal(v[0].data, "345");
        value_clear(&v[2]);
        assert_int_equal(v[2].kind, VALUE_NULL);
        assert_null(v[2].data);
        assert_string_equal(v[3].data, "");
        values_free(v, 4);
        Value *none = values_pack(0, NULL, NULL);
        assert_non_null(none);
        values_free(none, 0);
}

static void test_event_clear(void **state) {
        (void)state;
        Event ev = {.kind = EVENT_CHANGE};
        ev.change.op = CHANGE_INSERT;
        ev.change.table = table_new("s", "t", 1);
        ev.change.after = values_new(1);
        value_set(&ev.change.after[0], "42", 2);
        event_clear(&ev);
        assert_int_equal(ev.kind, 0);
        assert_null(ev.change.table);
        Event k = {.kind = EVENT_KEEPALIVE, .ckpt.pos = {0, 7}};
        event_clear(&k);
        assert_true(position_is_zero(k.ckpt.pos));
}

static void test_cdc_error(void **state) {
        (void)state;
        CdcError err;
        int r = cdc_error(&err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: %d", "pg", 5);
        assert_int_equal(r, -EIO);
        assert_true(err.retriable);
        assert_string_equal(err.kind, "connection");
        assert_string_equal(err.message, "connector pg: 5");
        assert_int_equal(cdc_error(NULL, -EINVAL, false, CDC_ERR_CONF, "x"), -EINVAL);
}

static void test_type_class_names(void **state) {
        (void)state;
        assert_string_equal(type_class_name(TYPE_TIMESTAMPTZ), "timestamptz");
        assert_string_equal(type_class_name(TYPE_BYTES), "bytes");
        assert_string_equal(type_class_name((TypeClass)999), "other");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_position_order), cmocka_unit_test(test_position_counter_monotonic),
                cmocka_unit_test(test_table_refcount), cmocka_unit_test(test_values_and_change_clear),
                cmocka_unit_test(test_values_pack),    cmocka_unit_test(test_event_clear),
                cmocka_unit_test(test_cdc_error),      cmocka_unit_test(test_type_class_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
