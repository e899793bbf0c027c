/* Tests of the growing string (strbuf.h): appends of every kind, texts longer than printf's
 * scratch space, the numbers' padding and extremes, and handing the text over. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/strbuf.h"

static void test_appends(void **state) {
        (void)state;
        StrBuf b = {0};
        strbuf_puts(&b, "id = ");
        strbuf_printf(&b, "$%d", 12);
        strbuf_put(&b, " AND x", 4);
        assert_string_equal(b.data, "id = $12 AND");
        assert_int_equal(b.len, strlen("id = $12 AND"));
        char *out = NULL;
        assert_int_equal(strbuf_finish(&b, &out), 0);
        assert_string_equal(out, "id = $12 AND");
        assert_null(b.data); /* handed over: b is empty and reusable */
        free(out);
}

static void test_long_printf(void **state) {
        (void)state;
        char want[1001];
        memset(want, 'q', 1000);
        want[1000] = '\0';
        StrBuf b = {0};
        strbuf_puts(&b, "<");
        strbuf_printf(&b, "%s>", want); /* far past the 128-byte scratch */
        assert_false(b.oom);
        assert_int_equal(b.len, 1002);
        assert_int_equal(b.data[0], '<');
        assert_memory_equal(b.data + 1, want, 1000);
        assert_string_equal(b.data + 1001, ">");
        strbuf_free(&b);
        assert_null(b.data);
}

static void test_numbers(void **state) {
        (void)state;
        StrBuf b = {0};
        strbuf_uint(&b, 7, 4);
        strbuf_puts(&b, " ");
        strbuf_uint(&b, 0, 0);
        strbuf_puts(&b, " ");
        strbuf_uint(&b, UINT64_MAX, 2);
        strbuf_puts(&b, " ");
        strbuf_int(&b, INT64_MIN);
        strbuf_puts(&b, " ");
        strbuf_int(&b, -5);
        char want[128];
        snprintf(want, sizeof(want), "0007 0 %" PRIu64 " %" PRId64 " -5", UINT64_MAX, INT64_MIN);
        assert_string_equal(b.data, want);
        strbuf_free(&b);
}

static void test_empty_and_oom(void **state) {
        (void)state;
        StrBuf b = {0};
        char *out = NULL;
        assert_int_equal(strbuf_finish(&b, &out), 0);
        assert_string_equal(out, "");
        free(out);
        /* After a failed allocation every append is a no-op and finish reports it. */
        strbuf_puts(&b, "abc");
        b.oom = true;
        strbuf_puts(&b, "def");
        strbuf_printf(&b, "%d", 1);
        assert_string_equal(b.data, "abc");
        out = NULL;
        assert_int_equal(strbuf_finish(&b, &out), -ENOMEM);
        assert_null(out);
        assert_null(b.data);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_appends),
                cmocka_unit_test(test_long_printf),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_empty_and_oom),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
