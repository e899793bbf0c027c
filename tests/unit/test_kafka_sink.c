/* Tests of the Kafka sink's pipelined commit against librdkafka's in-process mock cluster: a
 * batch is reported durable only once delivered (brokers down: nothing past the last delivered
 * batch), later batches go on meanwhile, and a failed delivery fails the poll without reporting. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "cdcsync/connector.h"

#define BROKERS 3
#define PRODUCE_API_KEY 0 /* Kafka protocol: Produce */

typedef struct {
        rd_kafka_t *host; /* owns the mock cluster */
        rd_kafka_mock_cluster_t *mc;
        ConnectorConf src, bus;
        PipelineConf pipe;
        Table *t;
        uint64_t next_id;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
        f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        assert_non_null(f->host);
        f->mc = rd_kafka_mock_cluster_new(f->host, BROKERS);
        assert_non_null(f->mc);
        f->src = (ConnectorConf){.name = "src", .type = "postgres", .dsn = "dbname=t"};
        f->bus = (ConnectorConf){
                .name = "bus", .type = "kafka", .brokers = (char *)rd_kafka_mock_cluster_bootstraps(f->mc)};
        f->pipe = (PipelineConf){.name = "p", .source = &f->src, .sink = &f->bus, .batch_max_rows = 5000};
        f->t = table_new("public", "t", 2);
        assert_non_null(f->t);
        f->t->cols[0] = (Column){.name = strdup("id"), .type_name = strdup("bigint"), .cls = TYPE_INTEGER, .key = true};
        f->t->cols[1] = (Column){.name = strdup("v"), .type_name = strdup("text"), .cls = TYPE_TEXT};
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        table_unref(f->t);
        rd_kafka_mock_cluster_destroy(f->mc);
        rd_kafka_destroy(f->host);
        free(f);
        return 0;
}

/* One batch of n inserts, ended with commit at position lo (which does not wait for delivery). */
static void batch(Fixture *f, const SinkOps *ops, Sink *k, int n, uint64_t lo) {
        CdcError err = {0};
        TxnInfo txn = {.xid = lo, .commit_pos = {0, lo}, .commit_ts = 1};
        assert_int_equal(ops->begin(k, &err), 0);
        for (int i = 0; i < n; i++) {
                char id[32];
                snprintf(id, sizeof(id), "%" PRIu64, ++f->next_id);
                Change c = {.op = CHANGE_INSERT, .table = table_ref(f->t), .after = values_new(2), .lsn = lo - 1};
                assert_int_equal(value_set(&c.after[0], id, strlen(id)), 0);
                assert_int_equal(value_set(&c.after[1], "payload", 7), 0);
                if (ops->apply(k, &txn, &c, &err) != 0)
                        fail_msg("apply: %s", err.message);
                change_clear(&c);
        }
        Checkpoint ckpt = {.pos = {0, lo}};
        snprintf(ckpt.text, sizeof(ckpt.text), "0/%" PRIX64, lo);
        if (ops->commit(k, &ckpt, &txn, &err) != 0)
                fail_msg("commit: %s", err.message);
}

/* Polls for ms milliseconds or until the durable position reaches want; returns what it is. */
static uint64_t poll_for(const SinkOps *ops, Sink *k, int ms, uint64_t want) {
        CdcError err = {0};
        Position pos = {0};
        bool found = false;
        uint64_t seen = 0;
        for (int waited = 0; waited < ms; waited += 20) {
                if (ops->poll_durable(k, 20, &pos, &found, &err) != 0)
                        fail_msg("poll_durable: %s", err.message);
                if (found) {
                        assert_true(pos.lo >= seen); /* never goes back */
                        seen = pos.lo;
                }
                if (found && pos.lo >= want)
                        break;
        }
        return seen;
}

static void test_durable_only_when_delivered(void **state) {
        Fixture *f = *state;
        const SinkOps *ops = connector_sink("kafka");
        assert_non_null(ops->poll_durable);
        Sink *k = NULL;
        CdcError err = {0};
        /* The data's partitions all led by broker 2, the checkpoint's by broker 1: with broker 2
         * down a checkpoint could still be delivered, and must not be sent. */
        assert_int_equal(rd_kafka_mock_topic_create(f->mc, "cdc.src.public.t", 4, 3), 0);
        assert_int_equal(rd_kafka_mock_topic_create(f->mc, "cdcsync.checkpoints", 1, 3), 0);
        for (int part = 0; part < 4; part++)
                assert_int_equal(rd_kafka_mock_partition_set_leader(f->mc, "cdc.src.public.t", part, 2), 0);
        assert_int_equal(rd_kafka_mock_partition_set_leader(f->mc, "cdcsync.checkpoints", 0, 1), 0);
        if (ops->open(&f->bus, &f->pipe, &k, &err) != 0)
                fail_msg("open: %s", err.message);
        batch(f, ops, k, 50, 100);
        assert_int_equal(poll_for(ops, k, 20000, 100), 100);

        /* Batches 2 and 3 are taken (commit does not wait) and never reported durable
         * while their messages cannot be delivered. */
        rd_kafka_mock_broker_set_down(f->mc, 2);
        batch(f, ops, k, 50, 200);
        batch(f, ops, k, 50, 300);
        assert_int_equal(poll_for(ops, k, 1500, 300), 100);

        rd_kafka_mock_broker_set_up(f->mc, 2);
        assert_int_equal(poll_for(ops, k, 30000, 300), 300);
        k = ops->free(k);

        /* What was reported durable is the checkpoint a new sink starts from. */
        Checkpoint last = {0};
        bool found = false;
        assert_int_equal(ops->open(&f->bus, &f->pipe, &k, &err), 0);
        assert_int_equal(ops->last_position(k, &last, &found, &err), 0);
        assert_true(found);
        assert_int_equal(last.pos.lo, 300);
        ops->free(k);
}

static void test_failed_delivery_fails_poll(void **state) {
        Fixture *f = *state;
        const SinkOps *ops = connector_sink("kafka");
        Sink *k = NULL;
        CdcError err = {0};
        if (ops->open(&f->bus, &f->pipe, &k, &err) != 0)
                fail_msg("open: %s", err.message);
        batch(f, ops, k, 20, 100);
        assert_int_equal(poll_for(ops, k, 20000, 100), 100);

        /* Every produce request fails for good: the batch must not become durable. */
        rd_kafka_resp_err_t errs[64];
        for (size_t i = 0; i < 64; i++)
                errs[i] = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
        rd_kafka_mock_push_request_errors_array(f->mc, PRODUCE_API_KEY, 64, errs);
        batch(f, ops, k, 20, 200);
        Position pos = {0};
        bool found = false;
        int r = 0;
        for (int waited = 0; waited < 20000 && r == 0; waited += 20) {
                r = ops->poll_durable(k, 20, &pos, &found, &err);
                if (r == 0)
                        assert_int_equal(pos.lo, 100);
        }
        assert_true(r < 0);
        assert_false(err.retriable); /* too large: another attempt cannot help */
        assert_non_null(strstr(err.message, "not delivered"));
        ops->rollback(k);
        ops->free(k);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_durable_only_when_delivered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_delivery_fails_poll, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
