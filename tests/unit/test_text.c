/* Tests of the text module: UTF-8 and control characters told apart from text, and escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/text.h"

static int check(const char *s, size_t *at) {
        return text_check(s, strlen(s), at);
}

static void test_check(void **state) {
        (void)state;
        size_t at = 99;
        assert_int_equal(check("plain, with\ttab and é ✓ 𝄞", &at), 0);
        assert_int_equal(check("bad \xff byte", &at), TEXT_NOT_UTF8);
        assert_int_equal(at, 4);
        assert_int_equal(check("overlong \xc0\xaf", &at), TEXT_NOT_UTF8); /* '/' in two bytes */
        assert_int_equal(at, 9);
        assert_int_equal(check("surrogate \xed\xa0\x80", &at), TEXT_NOT_UTF8);
        assert_int_equal(check("past U+10FFFF \xf4\x90\x80\x80", &at), TEXT_NOT_UTF8);
        assert_int_equal(check("cut \xe2\x9c", &at), TEXT_NOT_UTF8);
        assert_int_equal(check("esc \x1b[31m", &at), TEXT_CONTROL);
        assert_int_equal(at, 4);
        assert_int_equal(check("del \x7f", &at), TEXT_CONTROL);
        assert_int_equal(check("cr \r", &at), TEXT_CONTROL);
        assert_int_equal(text_check("nul\0x", 5, &at), TEXT_CONTROL);
        assert_int_equal(at, 3);
}

static void test_escape(void **state) {
        (void)state;
        char buf[64];
        text_escape("a\x1b[31m é \xff\xfe\n", buf, sizeof(buf));
        assert_string_equal(buf, "a\\x1b[31m é \\xff\\xfe\\x0a");
        /* Cut to fit, never in the middle of a character or an escape. */
        text_escape("éé", buf, 4);
        assert_string_equal(buf, "é");
        text_escape("\x01\x02", buf, 6);
        assert_string_equal(buf, "\\x01");
        text_escape("x", buf, 1);
        assert_string_equal(buf, "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check),
                cmocka_unit_test(test_escape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
