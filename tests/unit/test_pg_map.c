/* Unit tests of the PostgreSQL sink's string-keyed hash map (connectors/postgres/pg_map.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postgres/pg_sink_int.h"

static void test_hash_is_fnv1a(void **state) {
        (void)state;
        assert_true(pg_map_hash_str("") == UINT64_C(14695981039346656037));
        assert_true(pg_map_hash_str("a") == UINT64_C(0xaf63dc4c8601ec8c));
        assert_true(pg_map_hash_str("ab") != pg_map_hash_str("ba"));
}

static void test_empty(void **state) {
        Map m = {0};
        (void)state;
        assert_null(pg_map_find(&m, "x"));
        pg_map_clear(&m); /* nothing to free */
        assert_int_equal(m.cap, 0);
}

/* Enough keys to grow the table several times: every key is found again, with its name. */
static void test_add_find_grow(void **state) {
        Map m = {0};
        char key[32], name[32];
        (void)state;
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "SELECT %d", i);
                snprintf(name, sizeof(name), "cdcsync_%d", i);
                assert_int_equal(pg_map_add(&m, strdup(key), i % 2 ? strdup(name) : NULL), 0);
        }
        assert_int_equal(m.n, 1000);
        assert_true(m.cap >= 2000 && (m.cap & (m.cap - 1)) == 0); /* at most half full, a power of two */
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "SELECT %d", i);
                MapEntry *e = pg_map_find(&m, key);
                assert_non_null(e);
                assert_string_equal(e->key, key);
                if (i % 2) {
                        snprintf(name, sizeof(name), "cdcsync_%d", i);
                        assert_string_equal(e->name, name);
                } else {
                        assert_null(e->name);
                }
        }
        assert_null(pg_map_find(&m, "SELECT 1000"));
        pg_map_clear(&m);
        assert_int_equal(m.n, 0);
        assert_int_equal(m.cap, 0);
        assert_null(m.e);
        assert_null(pg_map_find(&m, "SELECT 1"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_is_fnv1a),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_add_find_grow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
