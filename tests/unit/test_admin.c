/* The admin API's decisions: routes, who may make a request, limit=, and the conflict log read
 * backwards with bounded memory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/admin.h"

static void test_routes(void **state) {
        (void)state;
        AdminRoute r;
        bool ok;
        assert_int_equal(admin_route("GET", "/", &r, &ok), 1);
        assert_int_equal(r.kind, ADMIN_ROUTE_CONSOLE);
        assert_true(ok);
        assert_false(r.mutation);
        assert_int_equal(admin_route("HEAD", "/api/pipelines", &r, &ok), 1);
        assert_int_equal(r.kind, ADMIN_ROUTE_PIPELINES);
        assert_true(ok);
        assert_int_equal(admin_route("POST", "/api/pipelines", &r, &ok), 1);
        assert_false(ok);
        assert_string_equal(r.allow, "GET, HEAD");
        assert_int_equal(admin_route("GET", "/api/conflicts", &r, &ok), 1);
        assert_int_equal(r.kind, ADMIN_ROUTE_CONFLICTS);

        for (const char *const *a = admin_actions; *a; a++) {
                char url[128];
                snprintf(url, sizeof(url), "/api/pipelines/orders-1/%s", *a);
                assert_int_equal(admin_route("POST", url, &r, &ok), 1);
                assert_int_equal(r.kind, ADMIN_ROUTE_ACTION);
                assert_true(r.mutation);
                assert_true(ok);
                assert_string_equal(r.pipeline, "orders-1");
                assert_string_equal(r.action, *a);
                assert_int_equal(admin_route("GET", url, &r, &ok), 1);
                assert_false(ok);
                assert_string_equal(r.allow, "POST");
        }
        /* Names nothing under /api/: unknown actions, empty or overlong names, extra parts. */
        const char *none[] = {"/api/pipelines/orders/explode",
                              "/api/pipelines//pause",
                              "/api/pipelines/orders",
                              "/api/pipelines/orders/pause/x",
                              "/api/nothing",
                              "/api",
                              "/api/"};
        for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
                assert_int_equal(admin_route("POST", none[i], &r, &ok), -ENOENT);
        char longurl[400];
        memset(longurl, 'a', sizeof(longurl));
        memcpy(longurl, "/api/pipelines/", 15);
        memcpy(longurl + 300, "/pause", 7);
        assert_int_equal(admin_route("POST", longurl, &r, &ok), -ENOENT);
        /* Not the API's: the caller serves them. */
        assert_int_equal(admin_route("GET", "/metrics", &r, &ok), 0);
        assert_int_equal(admin_route("GET", "/apix", &r, &ok), 0);
}

static void test_auth(void **state) {
        (void)state;
        AdminCreds admin = {"ops", "adm"}, metrics = {"mon", "met"}, none = {NULL, NULL};
        /* Reads: open without metrics auth; else the metrics or the admin credentials. */
        assert_int_equal(admin_auth(&none, &none, NULL, NULL, false), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&admin, &none, NULL, NULL, false), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&admin, &metrics, NULL, NULL, false), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&admin, &metrics, "mon", "met", false), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&admin, &metrics, "ops", "adm", false), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&admin, &metrics, "mon", "adm", false), ADMIN_AUTH_DENIED);
        /* Mutations: the admin credentials, else the metrics ones, else nobody. */
        assert_int_equal(admin_auth(&none, &none, "ops", "adm", true), ADMIN_AUTH_UNCONFIGURED);
        assert_int_equal(admin_auth(NULL, NULL, NULL, NULL, true), ADMIN_AUTH_UNCONFIGURED);
        assert_int_equal(admin_auth(&admin, &metrics, "ops", "adm", true), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&admin, &metrics, "mon", "met", true), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&admin, &metrics, NULL, NULL, true), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&admin, &metrics, "ops", "ad", true), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&admin, &metrics, "ops", "admm", true), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&admin, &metrics, "ops", "", true), ADMIN_AUTH_DENIED);
        assert_int_equal(admin_auth(&none, &metrics, "mon", "met", true), ADMIN_AUTH_OK);
        assert_int_equal(admin_auth(&none, &metrics, "ops", "adm", true), ADMIN_AUTH_DENIED);
        assert_true(admin_ct_equal("abc", "abc"));
        assert_false(admin_ct_equal("abcd", "abc"));
        assert_false(admin_ct_equal("ab", "abc"));
        assert_false(admin_ct_equal("", "abc"));
}

static void test_limit(void **state) {
        (void)state;
        int n;
        assert_int_equal(admin_parse_limit(NULL, &n), 0);
        assert_int_equal(n, ADMIN_CONFLICTS_DEFAULT);
        assert_int_equal(admin_parse_limit("1", &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(admin_parse_limit("1000", &n), 0);
        assert_int_equal(n, 1000);
        const char *bad[] = {"0", "1001", "-1", "", "abc", "5x", " 5", "99999999999999999999", "+5"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(admin_parse_limit(bad[i], &n), -EINVAL);
}

static char path[64];

static int setup(void **state) {
        (void)state;
        snprintf(path, sizeof(path), "/tmp/test_admin.XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        return 0;
}

static int teardown(void **state) {
        (void)state;
        unlink(path);
        return 0;
}

static void append(const char *text, size_t len) {
        FILE *f = fopen(path, "a");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        fclose(f);
}

static void record(int i, const char *pipeline) {
        char line[256];
        int n = snprintf(line, sizeof(line),
                         "{\"ts_us\":%d,\"pipeline\":\"%s\",\"table\":\"public.t\",\"key\":\"%d\"}\n", i, pipeline, i);
        append(line, (size_t)n);
}

static const char *key_at(json_t *o, size_t i) {
        return json_string_value(json_object_get(json_array_get(json_object_get(o, "conflicts"), i), "key"));
}

static void test_conflicts(void **state) {
        (void)state;
        json_t *o;
        /* A missing log is an empty one. */
        assert_int_equal(admin_conflicts("/nonexistent/conflicts.jsonl", NULL, 10, &o), 0);
        assert_int_equal(json_array_size(json_object_get(o, "conflicts")), 0);
        assert_true(json_is_true(json_object_get(o, "complete")));
        json_decref(o);

        /* Enough records to cross several 64 KiB blocks, with junk between: a line that is no
         * JSON, an empty line, a line far longer than any record (skipped whole). */
        for (int i = 0; i < 3000; i++) {
                record(i, i % 3 == 0 ? "a" : "b");
                if (i == 1000) {
                        append("not json\n\n", 10);
                        size_t big = 200 * 1024;
                        char *junk = malloc(big + 1);
                        memset(junk, 'x', big);
                        junk[big] = '\n';
                        append(junk, big + 1);
                        free(junk);
                }
        }
        assert_int_equal(admin_conflicts(path, NULL, 3, &o), 0);
        assert_int_equal(json_array_size(json_object_get(o, "conflicts")), 3);
        assert_string_equal(key_at(o, 0), "2999");
        assert_string_equal(key_at(o, 2), "2997");
        json_decref(o);
        assert_int_equal(admin_conflicts(path, "a", 1000, &o), 0);
        assert_int_equal(json_array_size(json_object_get(o, "conflicts")), 1000);
        assert_string_equal(key_at(o, 0), "2997");
        assert_string_equal(key_at(o, 999), "0");
        assert_true(json_is_true(json_object_get(o, "complete")));
        json_decref(o);
        assert_int_equal(admin_conflicts(path, "nobody", 5, &o), 0);
        assert_int_equal(json_array_size(json_object_get(o, "conflicts")), 0);
        json_decref(o);
        /* A last line without its newline (a writer mid-append) is still read. */
        const char *tail = "{\"pipeline\":\"a\",\"key\":\"tail\"}";
        append(tail, strlen(tail));
        assert_int_equal(admin_conflicts(path, "a", 2, &o), 0);
        assert_string_equal(key_at(o, 0), "tail");
        assert_string_equal(key_at(o, 1), "2997");
        json_decref(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_routes),
                cmocka_unit_test(test_auth),
                cmocka_unit_test(test_limit),
                cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
