/* status: `cdcsync status` against the real endpoint served in-process on loopback. */
#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/metrics.h"
#include "cdcsync/stats.h"
#include "cdcsync/status.h"

/* Nothing of ours listens there (56300-56309 are this module's test ports). */
#define DEAD_ADDR "127.0.0.1:56309"

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool matches(const char *text, const char *pattern) {
        regex_t re;
        assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
        bool ok = regexec(&re, text, 0, NULL, 0) == 0;
        regfree(&re);
        return ok;
}

typedef struct {
        char *out, *err;
        size_t out_len, err_len;
        int r;
} Printed;

static void print_status(const char *addr, bool json, Printed *p) {
        memset(p, 0, sizeof(*p));
        FILE *out = open_memstream(&p->out, &p->out_len);
        FILE *err = open_memstream(&p->err, &p->err_len);
        assert_non_null(out);
        assert_non_null(err);
        p->r = status_print(addr, json, out, err);
        fclose(out);
        fclose(err);
}

static void printed_clear(Printed *p) {
        free(p->out);
        free(p->err);
}

static void test_table(void **state) {
        (void)state;
        PipelineStats orders, users;
        stats_init(&orders, "orders");
        stats_set_state(&orders, PIPELINE_STREAMING);
        stats_set_positions_text(&orders, "0/16B3748", "0/16B3000");
        atomic_store(&orders.source_end_lo, 0x16B3748);
        atomic_store(&orders.applied_lo, 0x16B3000);
        atomic_store(&orders.oldest_pending_ts, now_usec() - 90 * 1000000LL); /* 1m30s behind */

        stats_init(&users, "users_to_kafka");
        stats_set_state(&users, PIPELINE_RETRYING);
        stats_count_error(&users, "connection", "kafka broker 127.0.0.1:9092 is down\nretrying in 5 s");

        MetricsOptions o = {.listen = "127.0.0.1:0"};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        assert_int_equal(metrics_attach(m, &orders), 0);
        assert_int_equal(metrics_attach(m, &users), 0);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port(m));

        Printed p;
        print_status(addr, false, &p);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.err, "");
        /* Column widths follow the longest cell: "users_to_kafka" (14), "streaming" (9),
         * "SOURCE_POS" (10), "APPLIED_POS" (11), "1m30s/1.8KiB" (12), "EVENTS/S" (8). */
        const char *expect_head =
                "PIPELINE        STATE      SOURCE_POS  APPLIED_POS  LAG           EVENTS/S  LAST_ERROR\n";
        assert_true(strncmp(p.out, expect_head, strlen(expect_head)) == 0);
        if (!matches(p.out, "^orders          streaming  0/16B3748   0/16B3000    1m3[01]s/1\\.8KiB  0\\.0       -$"))
                fail_msg("orders line not as expected:\n%s", p.out);
        if (!matches(p.out, "^users_to_kafka  retrying   -           -            0\\.0s          0\\.0       "
                            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z kafka broker 127\\.0\\.0\\.1:9092 "
                            "is down retrying in 5 s$"))
                fail_msg("users line not as expected:\n%s", p.out);
        /* Exactly a header and two lines. */
        int lines = 0;
        for (const char *c = p.out; *c; c++)
                lines += *c == '\n';
        assert_int_equal(lines, 3);
        printed_clear(&p);

        /* --json: the endpoint's JSON as it came, which parses and names both pipelines. */
        print_status(addr, true, &p);
        assert_int_equal(p.r, 0);
        json_error_t jerr;
        json_t *root = json_loads(p.out, 0, &jerr);
        assert_non_null(root);
        json_t *arr = json_object_get(root, "pipelines");
        assert_int_equal(json_array_size(arr), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "name")), "users_to_kafka");
        json_decref(root);
        printed_clear(&p);

        metrics_free(m);
        stats_destroy(&orders);
        stats_destroy(&users);
}

static void test_events_per_second(void **state) {
        (void)state;
        PipelineStats s;
        stats_init(&s, "busy");
        stats_set_state(&s, PIPELINE_STREAMING);
        MetricsOptions o = {.listen = "127.0.0.1:0"}; /* default 1 s interval: a 10 s window */
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);

        double t0 = mono_sec();
        assert_int_equal(metrics_attach(m, &s), 0);
        for (int i = 0; i < 300; i++)
                stats_count_event(&s, CHANGE_INSERT);
        usleep(300 * 1000);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port(m));
        Printed p;
        print_status(addr, true, &p);
        double t1 = mono_sec();
        assert_int_equal(p.r, 0);
        json_error_t jerr;
        json_t *root = json_loads(p.out, 0, &jerr);
        assert_non_null(root);
        double rate = json_real_value(
                json_object_get(json_array_get(json_object_get(root, "pipelines"), 0), "events_per_second"));
        /* The 300 events happened after the attach-time reading, within the window: the rate is
         * 300 over the time since attach, which lies between 0.3 s and t1 - t0. */
        if (!(rate >= 300 / (t1 - t0) - 1e-6 && rate <= 300 / 0.3 + 1e-6))
                fail_msg("events_per_second %f outside [%f, %f]", rate, 300 / (t1 - t0), 300 / 0.3);
        json_decref(root);
        printed_clear(&p);
        metrics_free(m);
        stats_destroy(&s);
}

static void test_not_running(void **state) {
        (void)state;
        Printed p;
        print_status(DEAD_ADDR, false, &p);
        assert_int_equal(p.r, -ECONNREFUSED);
        assert_string_equal(p.out, "");
        assert_string_equal(p.err, "cdcsync is not running (nothing answers on " DEAD_ADDR
                                   " \u2014 start it with systemctl start cdcsync)\n");
        printed_clear(&p);
}

static void test_bad_address(void **state) {
        (void)state;
        Printed p;
        print_status("127.0.0.1", false, &p);
        assert_int_equal(p.r, -EINVAL);
        assert_true(matches(p.err, "^metrics_listen '127\\.0\\.0\\.1' is not HOST:PORT"));
        printed_clear(&p);
        print_status(NULL, false, &p);
        assert_int_equal(p.r, -EINVAL);
        assert_true(matches(p.err, "metrics_listen is off"));
        printed_clear(&p);
}

static void test_auth_refused(void **state) {
        (void)state;
        MetricsOptions o = {.listen = "127.0.0.1:0", .auth_user = "u", .auth_password = "p"};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port(m));
        Printed p;
        print_status(addr, false, &p);
        assert_int_equal(p.r, -EACCES);
        assert_true(matches(p.err, "asks for a password"));
        printed_clear(&p);
        metrics_free(m);
}

static void test_no_pipelines(void **state) {
        (void)state;
        MetricsOptions o = {.listen = "[::1]:0"};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        char addr[64];
        snprintf(addr, sizeof(addr), "[::1]:%u", metrics_port(m));
        Printed p;
        print_status(addr, false, &p);
        assert_int_equal(p.r, 0);
        assert_true(matches(p.out, "^PIPELINE  STATE  SOURCE_POS  APPLIED_POS  LAG  EVENTS/S  LAST_ERROR$"));
        assert_true(matches(p.out, "^\\(no pipelines configured\\)$"));
        printed_clear(&p);
        metrics_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),        cmocka_unit_test(test_events_per_second),
                cmocka_unit_test(test_not_running),  cmocka_unit_test(test_bad_address),
                cmocka_unit_test(test_auth_refused), cmocka_unit_test(test_no_pipelines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
