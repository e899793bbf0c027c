/* metrics + stats: the endpoint served over real loopback sockets, its exposition checked by promtool. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/connector.h"
#include "cdcsync/metrics.h"
#include "cdcsync/stats.h"

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
        int status;
        char *head; /* status line and headers */
        char *body;
} Answer;

static void answer_clear(Answer *a) {
        free(a->head);
        free(a->body);
        memset(a, 0, sizeof(*a));
}

/* One HTTP/1.0 request over a fresh connection; returns -errno when the connect fails. */
static int http(const char *family_addr, uint16_t port, const char *method, const char *path, const char *auth,
                Answer *ret) {
        struct sockaddr_storage ss = {0};
        socklen_t len;
        if (strchr(family_addr, ':')) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons(port);
                assert_int_equal(inet_pton(AF_INET6, family_addr, &a->sin6_addr), 1);
                len = sizeof(*a);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                a->sin_family = AF_INET;
                a->sin_port = htons(port);
                assert_int_equal(inet_pton(AF_INET, family_addr, &a->sin_addr), 1);
                len = sizeof(*a);
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        char req[512];
        int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: test\r\n%s%s%sContent-Length: 0\r\n\r\n", method,
                         path, auth ? "Authorization: Basic " : "", auth ? auth : "", auth ? "\r\n" : "");
        assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
        size_t cap = 1 << 20, got = 0;
        char *buf = malloc(cap);
        assert_non_null(buf);
        for (;;) {
                ssize_t k = recv(fd, buf + got, cap - got - 1, 0);
                assert_true(k >= 0);
                if (k == 0)
                        break;
                got += (size_t)k;
                assert_true(got < cap - 1);
        }
        buf[got] = '\0';
        close(fd);
        char *sep = strstr(buf, "\r\n\r\n");
        assert_non_null(sep);
        *sep = '\0';
        ret->head = strdup(buf);
        ret->body = strdup(sep + 4);
        assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &ret->status), 1);
        free(buf);
        return 0;
}

static bool matches(const char *text, const char *pattern) {
        regex_t re;
        assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
        bool ok = regexec(&re, text, 0, NULL, 0) == 0;
        regfree(&re);
        return ok;
}

/* Two pipelines with known values: "orders" streaming, "we\"ird\\name\n" retrying. */
static PipelineStats orders, weird;

static void fill_stats(void) {
        stats_init(&orders, "orders");
        stats_set_state(&orders, PIPELINE_STREAMING);
        for (int i = 0; i < 3; i++)
                stats_count_event(&orders, CHANGE_INSERT);
        stats_count_event(&orders, CHANGE_UPDATE);
        stats_count_event(&orders, CHANGE_DELETE);
        stats_count_bad_message(&orders, true);
        stats_count_bad_message(&orders, true);
        stats_count_bad_message(&orders, false);
        stats_count_transaction(&orders);
        stats_count_transaction(&orders);
        stats_count_conflict(&orders, "timestamp");
        stats_count_conflict(&orders, "weird-resolution"); /* not in the table: "other" */
        stats_observe_batch(&orders, 0.0005);
        stats_observe_batch(&orders, 0.003);
        stats_observe_batch(&orders, 2);
        stats_observe_batch(&orders, 100);
        atomic_store(&orders.queue_depth, 17);
        atomic_store(&orders.source_end_hi, 3);
        atomic_store(&orders.source_end_lo, 10000);
        atomic_store(&orders.applied_hi, 3);
        atomic_store(&orders.applied_lo, 6000);
        atomic_store(&orders.oldest_pending_ts, now_usec() - 5000000);
        atomic_store(&orders.lag_bytes, 4000); /* as the pipeline publishes it (lag.h) */
        stats_set_positions_text(&orders, "mariadb-bin.000003:10000", "mariadb-bin.000003:6000");

        stats_init(&weird, "we\"ird\\name\n");
        stats_set_state(&weird, PIPELINE_RETRYING);
        stats_set_lease(&weird, false, "node1"); /* ha = on: a standby; orders keeps ha = off's 1 */
        stats_count_error(&weird, "connection", "could not connect to \"pg_main\": connection refused");
        stats_count_error(&weird, "no-such-kind", NULL);
        atomic_store(&weird.source_end_lo, 9000);
        atomic_store(&weird.applied_hi, 0);
        atomic_store(&weird.applied_lo, 0); /* nothing applied yet: lag_bytes unknown, 0 */
}

static Metrics *start(const char *listen, const char *user, const char *pass) {
        MetricsOptions o = {.listen = listen, .auth_user = user, .auth_password = pass};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        assert_non_null(m);
        assert_true(metrics_port(m) > 0);
        return m;
}

static void test_parse_listen(void **state) {
        (void)state;
        struct sockaddr_storage ss;
        socklen_t len;
        assert_int_equal(metrics_parse_listen("127.0.0.1:9780", &ss, &len), 0);
        assert_int_equal(ss.ss_family, AF_INET);
        assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9780);
        assert_int_equal(metrics_parse_listen("[::1]:9780", &ss, &len), 0);
        assert_int_equal(ss.ss_family, AF_INET6);
        assert_int_equal(metrics_parse_listen("localhost:1", &ss, &len), 0);
        assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
        const char *bad[] = {"",
                             "127.0.0.1",
                             "127.0.0.1:",
                             "127.0.0.1:65536",
                             "127.0.0.1:-1",
                             "127.0.0.1:+80",
                             "127.0.0.1:80x",
                             "::1:9780",
                             "[::1]9780",
                             "[::1]:",
                             "[127.0.0.1]:80",
                             "example.com:80",
                             "1.2.3:80",
                             "off"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(metrics_parse_listen(bad[i], &ss, &len), -EINVAL);
}

static void test_stats_labels_and_states(void **state) {
        (void)state;
        assert_string_equal(pipeline_state_name(PIPELINE_STREAMING), "streaming");
        assert_string_equal(pipeline_state_name(PIPELINE_FAILED), "failed");
        assert_string_equal(pipeline_state_name((PipelineState)42), "unknown");
        PipelineStats s;
        stats_init(&s, "p");
        stats_count_error(&s, "slot", "slot \"x\" is active");
        stats_count_error(&s, "bogus", NULL);
        assert_int_equal(atomic_load(&s.errors[1]), 1);                     /* "slot" */
        assert_int_equal(atomic_load(&s.errors[STATS_ERROR_KINDS - 1]), 1); /* "other" */
        /* Every kind a CdcError can have is a label of its own (a "query" error once fell into
         * "other"), in CdcErrorKind's order; "other" is last. */
        for (int k = 0; k < CDC_ERR_KINDS; k++) {
                CdcError e;
                cdc_error(&e, -EIO, false, (CdcErrorKind)k, "x");
                assert_string_equal(stats_error_kind_labels[k], e.kind);
                assert_string_equal(stats_error_kind_labels[k], cdc_error_kind_names[k]);
        }
        assert_string_equal(stats_error_kind_labels[STATS_ERROR_KINDS - 1], "other");
        char buf[64];
        assert_true(stats_copy_last_error(&s, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, "slot \"x\" is active");
        stats_set_error(&s, NULL);
        assert_int_equal(stats_copy_last_error(&s, buf, sizeof(buf)), 0);
        /* Boundaries belong to their bucket (le = less or equal). */
        stats_observe_batch(&s, 0.001);
        stats_observe_batch(&s, 30);
        stats_observe_batch(&s, 30.5);
        assert_int_equal(atomic_load(&s.batch_buckets[0]), 1);
        assert_int_equal(atomic_load(&s.batch_buckets[STATS_BATCH_BUCKETS - 1]), 1);
        assert_int_equal(atomic_load(&s.batch_buckets[STATS_BATCH_BUCKETS]), 1);
        assert_int_equal(atomic_load(&s.batch_count), 3);
        stats_destroy(&s);
}

static void test_metrics_exposition(void **state) {
        (void)state;
        fill_stats();
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        assert_int_equal(metrics_attach(m, &orders), 0);
        assert_int_equal(metrics_attach(m, &weird), 0);
        assert_int_equal(metrics_attach(m, &orders), -EEXIST);

        Answer a = {0};
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        assert_true(matches(a.head, "^Content-Type: text/plain; version=0\\.0\\.4"));
        const char *b = a.body;
        const char *expect[] = {
                "^# TYPE cdcsync_pipeline_up gauge$",
                "^cdcsync_build_info\\{version=\"" CDCSYNC_VERSION "\"\\} 1$",
                "^cdcsync_pipeline_up\\{pipeline=\"orders\"\\} 1$",
                "^cdcsync_pipeline_up\\{pipeline=\"we\\\\\"ird\\\\\\\\name\\\\n\"\\} 0$",
                "^# TYPE cdcsync_pipeline_leader gauge$",
                "^cdcsync_pipeline_leader\\{pipeline=\"orders\"\\} 1$",
                "^cdcsync_pipeline_leader\\{pipeline=\"we.*\"\\} 0$",
                "^cdcsync_pipeline_lag_seconds\\{pipeline=\"orders\"\\} 5\\.[0-9]+$",
                "^cdcsync_pipeline_lag_seconds\\{pipeline=\"we.*\"\\} 0\\.000000$",
                "^cdcsync_pipeline_lag_bytes\\{pipeline=\"orders\"\\} 4000$",
                "^cdcsync_pipeline_lag_bytes\\{pipeline=\"we.*\"\\} 0$",
                "^cdcsync_events_total\\{pipeline=\"orders\",op=\"insert\"\\} 3$",
                "^cdcsync_events_total\\{pipeline=\"orders\",op=\"update\"\\} 1$",
                "^cdcsync_events_total\\{pipeline=\"orders\",op=\"truncate\"\\} 0$",
                "^cdcsync_transactions_total\\{pipeline=\"orders\"\\} 2$",
                "^cdcsync_bad_messages_total\\{pipeline=\"orders\",action=\"skip\"\\} 1$",
                "^cdcsync_bad_messages_total\\{pipeline=\"orders\",action=\"dead_letter\"\\} 2$",
                "^cdcsync_bad_messages_total\\{pipeline=\"we.*\",action=\"skip\"\\} 0$",
                "^cdcsync_conflicts_total\\{pipeline=\"orders\",resolution=\"timestamp\"\\} 1$",
                "^cdcsync_conflicts_total\\{pipeline=\"orders\",resolution=\"other\"\\} 1$",
                "^cdcsync_errors_total\\{pipeline=\"we.*\",kind=\"connection\"\\} 1$",
                "^cdcsync_errors_total\\{pipeline=\"we.*\",kind=\"other\"\\} 1$",
                "^cdcsync_errors_total\\{pipeline=\"orders\",kind=\"connection\"\\} 0$",
                "^# TYPE cdcsync_sink_batch_seconds histogram$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"0\\.001\"\\} 1$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"0\\.0025\"\\} 1$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"0\\.005\"\\} 2$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"1\"\\} 2$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"5\"\\} 3$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"30\"\\} 3$",
                "^cdcsync_sink_batch_seconds_bucket\\{pipeline=\"orders\",le=\"\\+Inf\"\\} 4$",
                "^cdcsync_sink_batch_seconds_sum\\{pipeline=\"orders\"\\} 102\\.0035$",
                "^cdcsync_sink_batch_seconds_count\\{pipeline=\"orders\"\\} 4$",
                "^cdcsync_queue_depth\\{pipeline=\"orders\"\\} 17$",
        };
        for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
                if (!matches(b, expect[i]))
                        fail_msg("/metrics lacks a line matching %s:\n%s", expect[i], b);
        /* Every metric of the contract has HELP and TYPE. */
        const char *families[] = {"cdcsync_pipeline_up",  "cdcsync_pipeline_lag_seconds", "cdcsync_pipeline_lag_bytes",
                                  "cdcsync_events_total", "cdcsync_transactions_total",   "cdcsync_conflicts_total",
                                  "cdcsync_errors_total", "cdcsync_sink_batch_seconds",   "cdcsync_queue_depth",
                                  "cdcsync_build_info",   "cdcsync_bad_messages_total",   "cdcsync_pipeline_leader"};
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
                char re[128];
                snprintf(re, sizeof(re), "^# HELP %s [^\n]+$", families[i]);
                assert_true(matches(b, re));
                snprintf(re, sizeof(re), "^# TYPE %s (gauge|counter|histogram)$", families[i]);
                assert_true(matches(b, re));
        }

        /* promtool, Prometheus' own checker, must accept the exposition (it is a dependency of
         * the test setup, scripts/deps.sh installs it: its absence is a failure, not a skip). */
        char path[] = "/tmp/cdcsync-metrics-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, b, strlen(b)), (ssize_t)strlen(b));
        close(fd);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char out[4096] = "";
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        int rc = pclose(p);
        unlink(path);
        if (rc != 0)
                fail_msg("promtool check metrics failed (status %d): %s\n%s", rc, out, b);
        answer_clear(&a);

        /* Detach: the pipeline is gone from the next scrape. */
        assert_int_equal(metrics_detach(m, &weird), 0);
        assert_int_equal(metrics_detach(m, &weird), -ENOENT);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", NULL, &a), 0);
        assert_false(matches(a.body, "ird"));
        assert_true(matches(a.body, "^cdcsync_pipeline_up\\{pipeline=\"orders\"\\} 1$"));
        answer_clear(&a);

        metrics_free(m);
        stats_destroy(&orders);
        stats_destroy(&weird);
}

static void test_status_and_health(void **state) {
        (void)state;
        fill_stats();
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        assert_int_equal(metrics_attach(m, &orders), 0);

        Answer a = {0};
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/healthz", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        assert_string_equal(a.body, "ok\n");
        answer_clear(&a);

        assert_int_equal(metrics_attach(m, &weird), 0);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/healthz", NULL, &a), 0);
        assert_int_equal(a.status, 503);
        /* One line for the one pipeline that is not streaming, newlines of the name included. */
        assert_true(matches(a.body, "^pipeline we\"ird\\\\name\n: retrying \\(last error at "
                                    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z: "
                                    "could not connect to \"pg_main\": connection refused\\)$"));
        assert_false(matches(a.body, "orders"));
        answer_clear(&a);

        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/status", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        assert_true(matches(a.head, "^Content-Type: application/json"));
        json_error_t jerr;
        json_t *root = json_loads(a.body, 0, &jerr);
        assert_non_null(root);
        json_t *arr = json_object_get(root, "pipelines");
        assert_int_equal(json_array_size(arr), 2);
        json_t *o = json_array_get(arr, 0);
        assert_string_equal(json_string_value(json_object_get(o, "name")), "orders");
        assert_string_equal(json_string_value(json_object_get(o, "state")), "streaming");
        assert_string_equal(json_string_value(json_object_get(o, "source_position")), "mariadb-bin.000003:10000");
        assert_string_equal(json_string_value(json_object_get(o, "applied_position")), "mariadb-bin.000003:6000");
        double lag = json_real_value(json_object_get(o, "lag_seconds"));
        assert_true(lag >= 5.0 && lag < 60.0);
        assert_int_equal(json_integer_value(json_object_get(o, "lag_bytes")), 4000);
        assert_int_equal(json_integer_value(json_object_get(o, "transactions")), 2);
        assert_true(json_is_real(json_object_get(o, "events_per_second")));
        assert_true(json_is_null(json_object_get(o, "last_error")));
        json_t *w = json_array_get(arr, 1);
        assert_string_equal(json_string_value(json_object_get(w, "state")), "retrying");
        assert_true(json_is_null(json_object_get(w, "source_position")));
        json_t *le = json_object_get(w, "last_error");
        assert_string_equal(json_string_value(json_object_get(le, "message")),
                            "could not connect to \"pg_main\": connection refused");
        assert_true(matches(json_string_value(json_object_get(le, "time")),
                            "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"));
        json_decref(root);
        answer_clear(&a);

        metrics_free(m);
        stats_destroy(&orders);
        stats_destroy(&weird);
}

/* Source-side health: exported once sampled; /healthz warns past retained_warn_bytes and its
 * status stays the states'. */
static void test_source_health(void **state) {
        (void)state;
        fill_stats();
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        assert_int_equal(metrics_attach(m, &orders), 0);
        char *body = metrics_render_prometheus(m);
        assert_true(matches(body, "# TYPE cdcsync_source_retained_bytes gauge"));
        assert_false(matches(body, "cdcsync_source_retained_bytes\\{"));
        assert_false(matches(body, "cdcsync_source_slot_active\\{"));
        free(body);
        atomic_store(&orders.retained_bytes, 5000);
        atomic_store(&orders.slot_active, 0);
        atomic_store(&orders.retained_warn_bytes, 4096);
        body = metrics_render_prometheus(m);
        assert_true(matches(body, "^cdcsync_source_retained_bytes\\{pipeline=\"orders\"\\} 5000$"));
        assert_true(matches(body, "^cdcsync_source_slot_active\\{pipeline=\"orders\"\\} 0$"));
        free(body);
        bool ok = false;
        body = metrics_render_health(m, &ok);
        assert_true(ok);
        assert_string_equal(body, "warning: pipeline orders: the source keeps 5000 bytes of log for it, more than "
                                  "retained_warn_bytes (4096)\nok\n");
        free(body);
        atomic_store(&orders.retained_warn_bytes, 0); /* off */
        body = metrics_render_health(m, &ok);
        assert_string_equal(body, "ok\n");
        free(body);
        metrics_free(m);
        stats_destroy(&orders);
        stats_destroy(&weird);
}

static void test_routes_and_methods(void **state) {
        (void)state;
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        Answer a = {0};
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/nope", NULL, &a), 0);
        assert_int_equal(a.status, 404);
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "POST", "/metrics", NULL, &a), 0);
        assert_int_equal(a.status, 405);
        assert_true(matches(a.head, "^Allow: GET, HEAD"));
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "DELETE", "/status", NULL, &a), 0);
        assert_int_equal(a.status, 405);
        answer_clear(&a);
        /* No pipelines: vacuously healthy. */
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/healthz", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        answer_clear(&a);
        metrics_free(m);
}

static void test_binds_exact_address(void **state) {
        (void)state;
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        Answer a = {0};
        /* Another loopback address of the same host: must not be answered. */
        assert_int_equal(http("127.0.0.2", metrics_port(m), "GET", "/healthz", NULL, &a), -ECONNREFUSED);
        char listen[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", metrics_port(m));
        MetricsOptions o = {.listen = listen};
        Metrics *m2 = NULL;
        assert_int_equal(metrics_start(&o, &m2), -EADDRINUSE);
        assert_null(m2);
        metrics_free(m);

        /* IPv6 loopback, IPv6 only. */
        m = start("[::1]:0", NULL, NULL);
        assert_int_equal(http("::1", metrics_port(m), "GET", "/healthz", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/healthz", NULL, &a), -ECONNREFUSED);
        metrics_free(m);

        o.listen = "127.0.0.1:80x";
        assert_int_equal(metrics_start(&o, &m2), -EINVAL);
        o.listen = "127.0.0.1:0";
        o.auth_user = "admin"; /* a user without a password */
        assert_int_equal(metrics_start(&o, &m2), -EINVAL);
        assert_null(m2);
}

static void test_basic_auth(void **state) {
        (void)state;
        Metrics *m = start("127.0.0.1:0", "admin", "s3cret");
        Answer a = {0};
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", NULL, &a), 0);
        assert_int_equal(a.status, 401);
        assert_true(matches(a.head, "^WWW-Authenticate: Basic realm=\"cdcsync\""));
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", "YWRtaW46d3Jvbmc=", &a), 0);
        assert_int_equal(a.status, 401); /* admin:wrong */
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", "YWRtaW46czNjcmU=", &a), 0);
        assert_int_equal(a.status, 401); /* admin:s3cre, a prefix of the password */
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/metrics", "YWRtaW46czNjcmV0", &a), 0);
        assert_int_equal(a.status, 200); /* admin:s3cret */
        assert_true(matches(a.body, "^cdcsync_build_info"));
        answer_clear(&a);
        /* Even a 404 is not told to a stranger. */
        assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/nope", NULL, &a), 0);
        assert_int_equal(a.status, 401);
        answer_clear(&a);
        metrics_free(m);
}

/* What the admin API's fake action saw. */
static char acted[256];

static int fake_action(void *userdata, const char *pipeline, const char *action, json_t *body, char *msg, size_t len) {
        (void)userdata;
        (void)body;
        if (strcmp(pipeline, "orders") != 0) {
                snprintf(msg, len, "no pipeline %s", pipeline);
                return -ENOENT;
        }
        snprintf(acted, sizeof(acted), "%s %s", action, pipeline);
        snprintf(msg, len, "%s asked", action);
        return 0;
}

/* The admin API through HTTP: reads open without metrics auth, actions only with the admin
 * credentials (ops:adm = b3BzOmFkbQ==), a wrong method before credentials, the action's answer
 * as JSON, the console at /. */
static void test_admin_api(void **state) {
        (void)state;
        fill_stats();
        Metrics *m = NULL;
        MetricsOptions o = {
                .listen = "127.0.0.1:0", .admin_user = "ops", .admin_password = "adm", .action = fake_action};
        assert_int_equal(metrics_start(&o, &m), 0);
        assert_int_equal(metrics_attach(m, &orders), 0);
        uint16_t port = metrics_port(m);
        Answer a = {0};
        assert_int_equal(http("127.0.0.1", port, "GET", "/api/pipelines", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        json_error_t jerr;
        json_t *root = json_loads(a.body, 0, &jerr);
        json_t *p = json_array_get(json_object_get(root, "pipelines"), 0);
        assert_string_equal(json_string_value(json_object_get(p, "name")), "orders");
        json_t *h = json_object_get(p, "lag_history");
        assert_true(json_real_value(json_object_get(h, "interval_s")) == 10.0);
        assert_int_equal(json_array_size(json_object_get(h, "seconds")), 1); /* the point taken at attach */
        json_decref(root);
        answer_clear(&a);

        assert_int_equal(http("127.0.0.1", port, "GET", "/", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        assert_true(matches(a.head, "^Content-Type: text/html"));
        assert_true(matches(a.body, "<title>cdcsync</title>"));
        answer_clear(&a);

        acted[0] = '\0';
        assert_int_equal(http("127.0.0.1", port, "POST", "/api/pipelines/orders/pause", NULL, &a), 0);
        assert_int_equal(a.status, 401);
        assert_true(matches(a.head, "^WWW-Authenticate: Basic"));
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "POST", "/api/pipelines/orders/pause", "b3BzOmFkbg==", &a), 0);
        assert_int_equal(a.status, 401); /* ops:adn */
        answer_clear(&a);
        assert_string_equal(acted, "");
        assert_int_equal(http("127.0.0.1", port, "GET", "/api/pipelines/orders/pause", NULL, &a), 0);
        assert_int_equal(a.status, 405);
        assert_true(matches(a.head, "^Allow: POST"));
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "POST", "/api/pipelines/orders/pause", "b3BzOmFkbQ==", &a), 0);
        assert_int_equal(a.status, 202);
        assert_string_equal(a.body, "{\"pipeline\":\"orders\",\"action\":\"pause\",\"message\":\"pause asked\"}");
        assert_string_equal(acted, "pause orders");
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "POST", "/api/pipelines/nope/resume", "b3BzOmFkbQ==", &a), 0);
        assert_int_equal(a.status, 404);
        assert_string_equal(a.body, "{\"error\":\"no pipeline nope\"}");
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "POST", "/api/pipelines/orders/explode", "b3BzOmFkbQ==", &a), 0);
        assert_int_equal(a.status, 404);
        assert_true(matches(a.body, "pause\\|resume\\|restart"));
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "GET", "/api/conflicts?limit=0", NULL, &a), 0);
        assert_int_equal(a.status, 400);
        answer_clear(&a);
        assert_int_equal(http("127.0.0.1", port, "GET", "/api/conflicts", NULL, &a), 0);
        assert_int_equal(a.status, 200);
        assert_string_equal(a.body, "{\"conflicts\":[],\"complete\":true}"); /* no state_dir */
        answer_clear(&a);
        metrics_free(m);

        /* No credentials configured: reads work, actions are refused with what to configure. */
        assert_int_equal(metrics_start(&(MetricsOptions){.listen = "127.0.0.1:0", .action = fake_action}, &m), 0);
        assert_int_equal(http("127.0.0.1", metrics_port(m), "POST", "/api/pipelines/orders/pause", "b3BzOmFkbQ==", &a),
                         0);
        assert_int_equal(a.status, 403);
        assert_true(matches(a.body, "admin_user and admin_password_file"));
        answer_clear(&a);
        metrics_free(m);
        stats_destroy(&orders);
        stats_destroy(&weird);
}

static int run(const char *cmd) {
        int rc = system(cmd);
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_tls(void **state) {
        (void)state;
        char dir[] = "/tmp/cdcsync-tls-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char cmd[1024], cert[128], key[128];
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                 "-keyout %s -out %s >/dev/null 2>&1",
                 key, cert);
        assert_int_equal(run(cmd), 0);

        MetricsOptions o = {.listen = "127.0.0.1:0", .tls_cert_file = cert, .tls_key_file = key};
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&o, &m), 0);
        snprintf(cmd, sizeof(cmd),
                 "curl -sS --max-time 10 --cacert %s --resolve localhost:%u:127.0.0.1 "
                 "https://localhost:%u/healthz | grep -qx ok",
                 cert, metrics_port(m), metrics_port(m));
        assert_int_equal(run(cmd), 0);
        /* Plain HTTP to a TLS port gets no answer that looks like a page. */
        snprintf(cmd, sizeof(cmd), "curl -s --max-time 5 http://127.0.0.1:%u/healthz | grep -qx ok", metrics_port(m));
        assert_int_not_equal(run(cmd), 0);
        metrics_free(m);

        o.tls_key_file = "/nonexistent/key.pem";
        m = NULL;
        assert_int_equal(metrics_start(&o, &m), -ENOENT);
        assert_null(m);
        /* A certificate file that is not PEM: the daemon refuses it. */
        o.tls_key_file = key;
        o.tls_cert_file = "/etc/hostname";
        assert_true(metrics_start(&o, &m) < 0);
        assert_null(m);

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(run(cmd), 0);
}

static void test_concurrent_attach_detach(void **state) {
        (void)state;
        /* Scrapes while pipelines come and go (a SIGHUP reload): no crash, no stale pointer
         * (the sanitizer build turns a use-after-free here into a failure). */
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        for (int round = 0; round < 20; round++) {
                PipelineStats *s = malloc(sizeof(*s));
                assert_non_null(s);
                char name[32];
                snprintf(name, sizeof(name), "p%d", round);
                stats_init(s, name);
                assert_int_equal(metrics_attach(m, s), 0);
                Answer a = {0};
                assert_int_equal(http("127.0.0.1", metrics_port(m), "GET", "/status", NULL, &a), 0);
                assert_int_equal(a.status, 200);
                answer_clear(&a);
                assert_int_equal(metrics_detach(m, s), 0);
                stats_destroy(s);
                free(s);
        }
        metrics_free(m);
}

static void test_status_not_utf8(void **state) {
        (void)state;
        /* A latin1 error message from a server must not cost the whole /status answer. */
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        PipelineStats s;
        stats_init(&s, "caf\xe9");
        stats_count_error(&s, "data", "invalid byte \xff in column");
        assert_int_equal(metrics_attach(m, &s), 0);
        char *body = metrics_render_status(m);
        assert_non_null(body);
        json_error_t jerr;
        json_t *root = json_loads(body, 0, &jerr);
        assert_non_null(root);
        json_t *p = json_array_get(json_object_get(root, "pipelines"), 0);
        assert_string_equal(json_string_value(json_object_get(p, "name")), "caf?");
        assert_string_equal(json_string_value(json_object_get(json_object_get(p, "last_error"), "message")),
                            "invalid byte ? in column");
        json_decref(root);
        free(body);
        metrics_detach(m, &s);
        stats_destroy(&s);
        metrics_free(m);
}

/* A commit time far before the epoch (what a Begin with a hostile timestamp gave before sources
 * clamped theirs): now - oldest overflowed int64 (UBSan), the lag read negative. It reads 0:
 * no commit time is known. */
static void test_lag_hostile_commit_time(void **state) {
        (void)state;
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        PipelineStats s;
        stats_init(&s, "p");
        stats_set_state(&s, PIPELINE_STREAMING);
        atomic_store(&s.oldest_pending_ts, INT64_MIN + INT64_C(946684800000000));
        assert_int_equal(metrics_attach(m, &s), 0);
        char *body = metrics_render_status(m);
        assert_non_null(body);
        json_error_t jerr;
        json_t *root = json_loads(body, 0, &jerr);
        assert_non_null(root);
        json_t *p = json_array_get(json_object_get(root, "pipelines"), 0);
        assert_true(json_real_value(json_object_get(p, "lag_seconds")) == 0.0);
        json_decref(root);
        free(body);
        body = metrics_render_prometheus(m);
        assert_non_null(body);
        assert_true(matches(body, "^cdcsync_pipeline_lag_seconds\\{pipeline=\"p\"\\} 0\\.000000$"));
        free(body);
        metrics_detach(m, &s);
        stats_destroy(&s);
        metrics_free(m);
}

typedef struct {
        Metrics *m;
        atomic_bool stop;
        atomic_int renders;
} Scraper;

static void *scrape_loop(void *arg) {
        Scraper *sc = arg;
        while (!atomic_load(&sc->stop)) {
                free(metrics_render_prometheus(sc->m));
                free(metrics_render_status(sc->m));
                atomic_fetch_add(&sc->renders, 1);
        }
        return NULL;
}

static void test_reload_while_scraping(void **state) {
        (void)state;
        /* A scraper thread renders without pause while pipelines are attached, counted into,
         * detached and freed, as a SIGHUP reload does: the sanitizer build turns any read of a
         * detached (freed) PipelineStats into a failure. */
        Metrics *m = start("127.0.0.1:0", NULL, NULL);
        Scraper sc = {.m = m};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, scrape_loop, &sc), 0);
        for (int round = 0; round < 200; round++) {
                PipelineStats *s = malloc(sizeof(*s));
                assert_non_null(s);
                char name[32];
                snprintf(name, sizeof(name), "p%d", round);
                stats_init(s, name);
                assert_int_equal(metrics_attach(m, s), 0);
                for (int i = 0; i < 50; i++) {
                        stats_count_event(s, CHANGE_UPDATE);
                        stats_observe_batch(s, 0.01);
                }
                stats_count_error(s, "data", "bad row");
                /* At least one whole render with s attached, so detach really races a reader. */
                int seen = atomic_load(&sc.renders);
                while (atomic_load(&sc.renders) < seen + 2)
                        sched_yield();
                assert_int_equal(metrics_detach(m, s), 0);
                stats_destroy(s);
                free(s);
        }
        atomic_store(&sc.stop, true);
        pthread_join(t, NULL);
        assert_true(atomic_load(&sc.renders) >= 400);
        metrics_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_listen),
                cmocka_unit_test(test_stats_labels_and_states),
                cmocka_unit_test(test_metrics_exposition),
                cmocka_unit_test(test_status_and_health),
                cmocka_unit_test(test_source_health),
                cmocka_unit_test(test_admin_api),
                cmocka_unit_test(test_routes_and_methods),
                cmocka_unit_test(test_binds_exact_address),
                cmocka_unit_test(test_basic_auth),
                cmocka_unit_test(test_tls),
                cmocka_unit_test(test_concurrent_attach_detach),
                cmocka_unit_test(test_status_not_utf8),
                cmocka_unit_test(test_reload_while_scraping),
                cmocka_unit_test(test_lag_hostile_commit_time),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
