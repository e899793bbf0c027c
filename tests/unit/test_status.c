/* status: `cdcsync status` against the real endpoint served in-process on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
        atomic_store(&orders.lag_bytes, 0x748);

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

/* ha = on: the STATE cell says who runs the pipeline, from /status's leader and lease_holder. */
static void test_ha_roles(void **state) {
        (void)state;
        PipelineStats led, standby, plain;
        stats_init(&led, "led");
        stats_set_state(&led, PIPELINE_STREAMING);
        stats_set_lease(&led, true, "node0");
        stats_init(&standby, "standby");
        stats_set_state(&standby, PIPELINE_STANDBY);
        stats_set_lease(&standby, false, "node1");
        stats_init(&plain, "plain"); /* ha = off: no holder, no role shown */
        stats_set_state(&plain, PIPELINE_STREAMING);
        MetricsOptions o = {.listen = "127.0.0.1:0"};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        assert_int_equal(metrics_attach(m, &led), 0);
        assert_int_equal(metrics_attach(m, &standby), 0);
        assert_int_equal(metrics_attach(m, &plain), 0);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port(m));
        Printed p;
        print_status(addr, false, &p);
        assert_int_equal(p.r, 0);
        if (!matches(p.out, "^led +streaming, leader +") || !matches(p.out, "^standby +standby, node1 leads +") ||
            !matches(p.out, "^plain +streaming +-"))
                fail_msg("roles not as expected:\n%s", p.out);
        printed_clear(&p);
        print_status(addr, true, &p);
        assert_int_equal(p.r, 0);
        json_t *root = json_loads(p.out, 0, NULL);
        assert_non_null(root);
        json_t *arr = json_object_get(root, "pipelines");
        assert_true(json_is_true(json_object_get(json_array_get(arr, 0), "leader")));
        assert_true(json_is_false(json_object_get(json_array_get(arr, 1), "leader")));
        assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "lease_holder")), "node1");
        assert_true(json_is_true(json_object_get(json_array_get(arr, 2), "leader")));
        assert_true(json_is_null(json_object_get(json_array_get(arr, 2), "lease_holder")));
        json_decref(root);
        printed_clear(&p);
        metrics_free(m);
        stats_destroy(&led);
        stats_destroy(&standby);
        stats_destroy(&plain);
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

/* ---- answers from something that is not (or not only) cdcsync ---- */

typedef struct {
        int listen_fd;
        const char *answer;
        size_t len;
} Canned;

/* Accepts one connection, reads the request up to its blank line, sends the answer, closes. */
static void *serve_canned(void *arg) {
        Canned *sv = arg;
        int fd = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return NULL;
        char req[2048];
        size_t got = 0;
        while (got < sizeof(req) - 1) {
                ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);
                if (n <= 0)
                        break;
                got += (size_t)n;
                req[got] = '\0';
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        for (size_t sent = 0; sent < sv->len;) {
                ssize_t n = send(fd, sv->answer + sent, sv->len - sent, MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                sent += (size_t)n;
        }
        close(fd);
        return NULL;
}

/* status_print against a loopback server that answers `answer`. */
static void print_canned(const char *answer, size_t len, bool json, Printed *p) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof(a);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(lfd, 1), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
        Canned sv = {.listen_fd = lfd, .answer = answer, .len = len};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, serve_canned, &sv), 0);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(a.sin_port));
        print_status(addr, json, p);
        pthread_join(t, NULL);
        close(lfd);
}

/* The LAG cell of pipeline name's line in the table. */
static void expect_lag(const char *table, const char *name, const char *want) {
        size_t n = strlen(name);
        for (const char *l = table; *l;) {
                const char *e = strchr(l, '\n');
                if (strncmp(l, name, n) == 0 && l[n] == ' ') {
                        /* PIPELINE STATE SOURCE_POS APPLIED_POS LAG ... */
                        char lag[64] = "";
                        assert_int_equal(sscanf(l, "%*s %*s %*s %*s %63s", lag), 1);
                        assert_string_equal(lag, want);
                        return;
                }
                if (!e)
                        break;
                l = e + 1;
        }
        fail_msg("no line for %s in:\n%s", name, table);
}

/* Lags of 3e9 s (past 2^31), -5 s and 1e300 s in the answer (tests/fixtures/crafted/status/
 * lag_past_int.http) were cast to int unchecked: undefined behaviour ("833333h-14m" on x86). */
static void test_lag_beyond_int(void **state) {
        (void)state;
        const char *dir = getenv("FIXTURES");
        char path[1024];
        snprintf(path, sizeof(path), "%s/crafted/status/lag_past_int.http", dir ? dir : "tests/fixtures");
        FILE *f = fopen(path, "rbe");
        assert_non_null(f);
        static char answer[1 << 16];
        size_t len = fread(answer, 1, sizeof(answer) - 1, f);
        fclose(f);
        Printed p;
        print_canned(answer, len, false, &p);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.err, "");
        expect_lag(p.out, "past_int", "833333h20m");
        expect_lag(p.out, "negative", "-");
        expect_lag(p.out, "huge", "2.78e+296h");
        expect_lag(p.out, "hour", "1h02m");
        printed_clear(&p);
}

/* Answers that are not a status: each refused with its message, nothing printed on out. */
static void test_not_a_status(void **state) {
        (void)state;
        static const struct {
                const char *answer;
                int r;
                const char *msg;
        } cases[] = {
                {"SSH-2.0-OpenSSH_9.2\r\n", -EPROTO, "is not HTTP"},
                {"HTTP/1.1 2x0 OK\r\n\r\n{}", -EPROTO, "malformed HTTP status line"},
                {"HTTP/1.1 401 Unauthorized\r\n\r\n", -EACCES, "asks for a password"},
                {"HTTP/1.1 404 Not Found\r\n\r\nnope", -EPROTO, "answered HTTP 404"},
                {"HTTP/1.1 200 OK\r\n\r\n{\"pipelines\":{}}", -EBADMSG, "not cdcsync's status JSON"},
                {"HTTP/1.1 200 OK\r\n\r\n{\"pipelines\":[", -EBADMSG, "not cdcsync's status JSON"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                Printed p;
                print_canned(cases[i].answer, strlen(cases[i].answer), false, &p);
                assert_int_equal(p.r, cases[i].r);
                if (!strstr(p.err, cases[i].msg))
                        fail_msg("answer %zu: %s", i, p.err);
                assert_string_equal(p.out, "");
                printed_clear(&p);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),        cmocka_unit_test(test_events_per_second),
                cmocka_unit_test(test_ha_roles),     cmocka_unit_test(test_not_running),
                cmocka_unit_test(test_bad_address),  cmocka_unit_test(test_auth_refused),
                cmocka_unit_test(test_no_pipelines), cmocka_unit_test(test_lag_beyond_int),
                cmocka_unit_test(test_not_a_status),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
