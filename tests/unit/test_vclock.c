/* Tests of version vectors: the order and merge laws over random vectors, and both wire forms. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/vclock.h"

static uint64_t rng_state;

static uint64_t rnd(void) {
        /* xorshift64*: fixed seed, so a failure reproduces */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static const char *const pool[] = {"pg_a", "pg_b", "mysql_shop", "kafka.x", "n-4", "Z5"};

static VClock random_vclock(void) {
        VClock v = {0};
        for (size_t i = 0; i < sizeof(pool) / sizeof(pool[0]); i++)
                if (rnd() % 2)
                        assert_int_equal(vclock_set(&v, pool[i], 1 + rnd() % 4), 0);
        return v;
}

static void assert_sorted(const VClock *v) {
        for (uint32_t i = 1; i < v->n; i++)
                assert_true(strcmp(v->e[i - 1].node, v->e[i].node) < 0);
        for (uint32_t i = 0; i < v->n; i++)
                assert_true(v->e[i].counter > 0);
}

static void test_set_get(void **state) {
        (void)state;
        VClock v = {0};
        assert_int_equal(vclock_get(&v, "a"), 0);
        assert_int_equal(vclock_set(&v, "c", 3), 0);
        assert_int_equal(vclock_set(&v, "a", 1), 0);
        assert_int_equal(vclock_set(&v, "b", 2), 0);
        assert_int_equal(v.n, 3);
        assert_sorted(&v);
        assert_int_equal(vclock_get(&v, "b"), 2);
        assert_int_equal(vclock_set(&v, "b", 9), 0);
        assert_int_equal(vclock_get(&v, "b"), 9);
        assert_int_equal(vclock_set(&v, "b", 0), 0); /* zero removes */
        assert_int_equal(v.n, 2);
        assert_int_equal(vclock_get(&v, "b"), 0);
        assert_sorted(&v);
        assert_int_equal(vclock_set(&v, "", 1), -EINVAL);
        assert_int_equal(vclock_set(&v, "a:b", 1), -EINVAL);
        assert_int_equal(vclock_set(&v, "a,b", 1), -EINVAL);
        char longname[80];
        memset(longname, 'x', sizeof(longname));
        longname[64] = '\0';
        assert_int_equal(vclock_set(&v, longname, 1), -EINVAL);
        longname[63] = '\0';
        assert_int_equal(vclock_set(&v, longname, 1), 0);

        VClock w = {0};
        char name[16];
        for (int i = 0; i < VCLOCK_MAX_NODES; i++) {
                snprintf(name, sizeof(name), "n%02d", i);
                assert_int_equal(vclock_set(&w, name, (uint64_t)i + 1), 0);
        }
        VClock before = w;
        assert_int_equal(vclock_set(&w, "zz", 1), -E2BIG);
        assert_memory_equal(&w, &before, sizeof(w));
        assert_int_equal(vclock_set(&w, "n03", 100), 0); /* existing node: fine when full */
        VClock other = {0};
        assert_int_equal(vclock_set(&other, "zz", 1), 0);
        VClock m = {0};
        assert_int_equal(vclock_merge(&w, &other, &m), -E2BIG);
}

static void test_compare_cases(void **state) {
        (void)state;
        VClock a = {0}, b = {0};
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_EQUAL);
        vclock_set(&b, "x", 1);
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_BEFORE);
        assert_int_equal(vclock_compare(&b, &a), VCLOCK_AFTER);
        vclock_set(&a, "y", 1);
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_CONCURRENT);
        vclock_set(&b, "y", 1);
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_BEFORE);
        vclock_set(&a, "x", 1);
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_EQUAL);
        vclock_set(&a, "x", 2);
        vclock_set(&b, "y", 2);
        assert_int_equal(vclock_compare(&a, &b), VCLOCK_CONCURRENT);
}

static void test_laws(void **state) {
        (void)state;
        rng_state = 0x9E3779B97F4A7C15u;
        int seen[4] = {0};
        for (int it = 0; it < 20000; it++) {
                VClock a = random_vclock(), b = random_vclock(), c = random_vclock();
                /* related vectors too, or EQUAL and ordered pairs would be rare */
                if (rnd() % 3 == 0) {
                        b = a;
                        if (rnd() % 2) {
                                const char *node = pool[rnd() % 6];
                                vclock_set(&b, node, vclock_get(&b, node) + 1);
                        }
                }
                VClock ab, ba, bc, ab_c, a_bc, aa;
                assert_int_equal(vclock_merge(&a, &b, &ab), 0);
                assert_int_equal(vclock_merge(&b, &a, &ba), 0);
                assert_int_equal(vclock_merge(&b, &c, &bc), 0);
                assert_int_equal(vclock_merge(&ab, &c, &ab_c), 0);
                assert_int_equal(vclock_merge(&a, &bc, &a_bc), 0);
                assert_int_equal(vclock_merge(&a, &a, &aa), 0);
                assert_sorted(&ab);
                assert_memory_equal(&ab, &ba, sizeof(ab));     /* commutative */
                assert_memory_equal(&ab_c, &a_bc, sizeof(ab)); /* associative */
                assert_memory_equal(&aa, &a, sizeof(aa));      /* idempotent */
                VClockOrder o = vclock_compare(&ab, &a);
                assert_true(o == VCLOCK_EQUAL || o == VCLOCK_AFTER); /* dominates both */
                o = vclock_compare(&ab, &b);
                assert_true(o == VCLOCK_EQUAL || o == VCLOCK_AFTER);
                for (uint32_t i = 0; i < ab.n; i++) /* and is the least such vector */
                        assert_true(ab.e[i].counter == vclock_get(&a, ab.e[i].node) ||
                                    ab.e[i].counter == vclock_get(&b, ab.e[i].node));

                VClockOrder x = vclock_compare(&a, &b), y = vclock_compare(&b, &a);
                seen[x]++;
                switch (x) { /* antisymmetric */
                case VCLOCK_EQUAL:
                        assert_int_equal(y, VCLOCK_EQUAL);
                        assert_memory_equal(&a, &b, sizeof(a));
                        break;
                case VCLOCK_BEFORE:
                        assert_int_equal(y, VCLOCK_AFTER);
                        assert_memory_equal(&ab, &b, sizeof(ab));
                        break;
                case VCLOCK_AFTER:
                        assert_int_equal(y, VCLOCK_BEFORE);
                        assert_memory_equal(&ab, &a, sizeof(ab));
                        break;
                case VCLOCK_CONCURRENT:
                        assert_int_equal(y, VCLOCK_CONCURRENT);
                        assert_int_equal(vclock_compare(&ab, &a), VCLOCK_AFTER);
                        assert_int_equal(vclock_compare(&ab, &b), VCLOCK_AFTER);
                        break;
                }
                /* transitivity of BEFORE */
                if (x == VCLOCK_BEFORE && vclock_compare(&b, &c) == VCLOCK_BEFORE)
                        assert_int_equal(vclock_compare(&a, &c), VCLOCK_BEFORE);
        }
        for (int i = 0; i < 4; i++) /* the generator reaches every case */
                assert_true(seen[i] > 50);
}

static void test_encode_decode(void **state) {
        (void)state;
        rng_state = 12345;
        uint8_t buf[VCLOCK_ENCODED_MAX];
        for (int it = 0; it < 5000; it++) {
                VClock a = random_vclock(), b;
                if (rnd() % 8 == 0)
                        vclock_set(&a, "big", UINT64_MAX - rnd() % 3);
                int n = vclock_encode(&a, buf, sizeof(buf));
                assert_true(n > 0);
                assert_int_equal(vclock_decode(buf, (size_t)n, &b), n);
                assert_memory_equal(&a, &b, sizeof(a));
                for (int cut = 0; cut < n; cut++) /* every truncation is refused */
                        assert_int_equal(vclock_decode(buf, (size_t)cut, &b), -EBADMSG);
                assert_int_equal(vclock_encode(&a, buf, (size_t)n - 1), -ENOBUFS);
        }
        VClock full = {0};
        char name[VCLOCK_NODE_MAX];
        for (int i = 0; i < VCLOCK_MAX_NODES; i++) {
                memset(name, 'a' + i, VCLOCK_NODE_MAX - 1);
                name[VCLOCK_NODE_MAX - 1] = '\0';
                assert_int_equal(vclock_set(&full, name, UINT64_MAX), 0);
        }
        assert_int_equal(vclock_encode(&full, buf, sizeof(buf)), VCLOCK_ENCODED_MAX);

        /* garbage: never crashes; what decodes is canonical (re-encodes to the same bytes) */
        static const uint8_t likely[] = {2, 1, 'a', 1, 'b', 5};
        for (int it = 0; it < 100000; it++) {
                uint8_t g[48], again[VCLOCK_ENCODED_MAX];
                size_t len = rnd() % sizeof(g);
                for (size_t i = 0; i < len; i++)
                        g[i] = rnd() % 4 == 0 ? (uint8_t)rnd() : likely[rnd() % sizeof(likely)];
                VClock v;
                int r = vclock_decode(g, len, &v);
                if (r < 0) {
                        assert_int_equal(r, -EBADMSG);
                        continue;
                }
                assert_int_equal(vclock_encode(&v, again, sizeof(again)), r);
                assert_memory_equal(again, g, (size_t)r);
        }
        const uint8_t unsorted[] = {2, 1, 'b', 1, 1, 'a', 1};
        const uint8_t dup[] = {2, 1, 'a', 1, 1, 'a', 2};
        const uint8_t zero[] = {1, 1, 'a', 0};
        const uint8_t overflow[] = {1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        const uint8_t toomany[] = {17};
        const uint8_t badname[] = {1, 1, ':', 1};
        /* 1 and 0 in two bytes instead of one, 128 in three instead of two */
        const uint8_t long1[] = {1, 1, 'a', 0x81, 0x00};
        const uint8_t long0[] = {1, 1, 'a', 0x80, 0x00};
        const uint8_t long128[] = {1, 1, 'a', 0x80, 0x81, 0x00};
        VClock v;
        assert_int_equal(vclock_decode(long1, sizeof(long1), &v), -EBADMSG);
        assert_int_equal(vclock_decode(long0, sizeof(long0), &v), -EBADMSG);
        assert_int_equal(vclock_decode(long128, sizeof(long128), &v), -EBADMSG);
        const uint8_t short128[] = {1, 1, 'a', 0x80, 0x01};
        assert_int_equal(vclock_decode(short128, sizeof(short128), &v), (int)sizeof(short128));
        assert_true(vclock_get(&v, "a") == 128);
        assert_int_equal(vclock_decode(unsorted, sizeof(unsorted), &v), -EBADMSG);
        assert_int_equal(vclock_decode(dup, sizeof(dup), &v), -EBADMSG);
        assert_int_equal(vclock_decode(zero, sizeof(zero), &v), -EBADMSG);
        assert_int_equal(vclock_decode(overflow, sizeof(overflow), &v), -EBADMSG);
        assert_int_equal(vclock_decode(toomany, sizeof(toomany), &v), -EBADMSG);
        assert_int_equal(vclock_decode(badname, sizeof(badname), &v), -EBADMSG);
}

static void test_text(void **state) {
        (void)state;
        char buf[VCLOCK_TEXT_MAX];
        VClock v = {0}, w;
        assert_int_equal(vclock_format(&v, buf, sizeof(buf)), 2);
        assert_string_equal(buf, "{}");
        vclock_set(&v, "pg_b", 7);
        vclock_set(&v, "pg_a", 42);
        assert_int_equal(vclock_format(&v, buf, sizeof(buf)), (int)strlen("{pg_a:42,pg_b:7}"));
        assert_string_equal(buf, "{pg_a:42,pg_b:7}");
        assert_int_equal(vclock_format(&v, buf, 16), -ENOBUFS);
        assert_int_equal(vclock_format(&v, buf, 17), 16);

        assert_int_equal(vclock_parse("{pg_a:42,pg_b:7}", &w), 0);
        assert_memory_equal(&v, &w, sizeof(v));
        assert_int_equal(vclock_parse("{}", &w), 0);
        assert_int_equal(w.n, 0);
        assert_int_equal(vclock_parse("{a:18446744073709551615}", &w), 0);
        assert_true(vclock_get(&w, "a") == UINT64_MAX);
        const char *bad[] = {"", "{", "}", "{a}", "{a:}", "{:1}", "{a:1,}", "{a:1,a:2}", "{a:-1}", "{a:1}x",
                             "{a:1 b:2}", "{a b:1}", "{a:18446744073709551616}", "a:1", "{a:1}}", "{a:0x10}",
                             /* other spellings of a vector that has a canonical one */
                             " { pg_b : 7 , pg_a:42 } ", "{pg_b:7,pg_a:42}", "{a:0,a:5}", "{a:5,a:0}", "{a:0}",
                             "{a:0,b:1}", "{a:05}", "{a:00}", "{ a:1}", "{a :1}", "{a: 1}", "{a:1 }", "{a:1,b:1} ",
                             " {}", "{ }"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(vclock_parse(bad[i], &w), -EINVAL);

        rng_state = 777;
        for (int it = 0; it < 5000; it++) {
                VClock a = random_vclock(), b;
                assert_true(vclock_format(&a, buf, sizeof(buf)) > 0);
                assert_int_equal(vclock_parse(buf, &b), 0);
                assert_memory_equal(&a, &b, sizeof(a));
        }
        VClock full = {0};
        char name[VCLOCK_NODE_MAX];
        for (int i = 0; i < VCLOCK_MAX_NODES; i++) {
                memset(name, 'a' + i, VCLOCK_NODE_MAX - 1);
                name[VCLOCK_NODE_MAX - 1] = '\0';
                vclock_set(&full, name, UINT64_MAX);
        }
        int n = vclock_format(&full, buf, sizeof(buf));
        assert_true(n > 0 && (size_t)n < sizeof(buf));
        assert_int_equal(vclock_parse(buf, &w), 0);
        assert_memory_equal(&full, &w, sizeof(w));
}

/* Other spellings of equal vectors are refused, so equal vectors are equal bytes in every form
 * (tests/fixtures/crafted/vclock/: "T" + a text form, "V" + a binary one, as the fuzz target
 * reads them). And garbage text: what parses formats back to exactly the same text. */
static void test_one_spelling(void **state) {
        (void)state;
        static const struct {
                const char *file;
                int r;
        } crafted[] = {{"dup_node.txt", -EINVAL},
                       {"leading_zero.txt", -EINVAL},
                       {"leb128_long.bin", -EBADMSG},
                       {"fuzz-nul-in-node.bin", -EBADMSG}};
        for (size_t i = 0; i < sizeof(crafted) / sizeof(crafted[0]); i++) {
                const char *dir = getenv("FIXTURES");
                char path[1024];
                snprintf(path, sizeof(path), "%s/crafted/vclock/%s", dir ? dir : "tests/fixtures", crafted[i].file);
                FILE *f = fopen(path, "rbe");
                assert_non_null(f);
                char buf[256] = "";
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                assert_true(len > 1);
                VClock v;
                if (buf[0] == 'T')
                        assert_int_equal(vclock_parse(buf + 1, &v), crafted[i].r);
                else
                        assert_int_equal(vclock_decode((const uint8_t *)buf + 1, len - 1, &v), crafted[i].r);
        }

        static const char *const tokens[] = {"{", "}", ",", ":", "a", "b", "0", "1", "5", " ", "a:1", "b:0", "a:01"};
        rng_state = 99;
        int parsed = 0;
        for (int it = 0; it < 200000; it++) {
                char text[64] = "{", again[VCLOCK_TEXT_MAX];
                size_t n = 1, k = rnd() % 8;
                for (size_t j = 0; j < k; j++) {
                        const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
                        if (n + strlen(t) + 2 >= sizeof(text))
                                break;
                        memcpy(text + n, t, strlen(t));
                        n += strlen(t);
                }
                if (rnd() % 2)
                        text[n++] = '}';
                text[n] = '\0';
                VClock v;
                if (vclock_parse(text, &v) != 0)
                        continue;
                parsed++;
                assert_true(vclock_format(&v, again, sizeof(again)) > 0);
                if (strcmp(again, text) != 0)
                        fail_msg("\"%s\" parsed, but its vector is written \"%s\"", text, again);
        }
        assert_true(parsed > 100);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_set_get), cmocka_unit_test(test_compare_cases),
                cmocka_unit_test(test_laws),    cmocka_unit_test(test_encode_decode),
                cmocka_unit_test(test_text),    cmocka_unit_test(test_one_spelling),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
