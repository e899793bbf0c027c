/* The Kafka sink's delivery tracking: each batch from begin() until all its messages are
 * delivered, then its checkpoint sent, and what poll_durable() reports (see kafka_sink.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/kafka_sink_int.h"

void kafka_sink_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        Sink *k = opaque;
        if (m->_private == &k->ckpt_marker) {
                k->ckpt_inflight = false;
                /* Produced only once its batch and every earlier one were delivered. */
                if (!m->err && (!k->have_durable || position_cmp(k->ckpt_pos, k->durable) > 0)) {
                        k->durable = k->ckpt_pos;
                        k->have_durable = true;
                }
        } else if (m->_private) {
                ((Batch *)m->_private)->done++;
        }
        if (m->err && k->failed++ == 0) {
                k->first_err = m->err;
                snprintf(k->first_err_topic, sizeof(k->first_err_topic), "%s",
                         m->rkt ? rd_kafka_topic_name(m->rkt) : "?");
        }
}

static int serve(Sink *k, int timeout_ms, CdcError *err);

int kafka_sink_begin(Sink *k, CdcError *err) {
        if (k->cur)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "kafka sink: begin inside an open batch");
        /* Bounded: past BATCHES_MAX undelivered batches, wait for the oldest. */
        while (k->bcount == BATCHES_MAX) {
                int r = serve(k, 100, err);
                if (r < 0)
                        return r;
        }
        k->cur = &k->batches[(k->bhead + k->bcount++) % BATCHES_MAX];
        memset(k->cur, 0, sizeof(*k->cur));
        k->have_txn = false;
        return 0;
}

/* The advice for a topic that does not exist: said the same way whether kafka_sink_produce() or a delivery
 * report found it. */
#define UNKNOWN_TOPIC_HINT                                                                                             \
        "does not exist and was not created (the brokers' auto.create.topics.enable, or "                              \
        "kafka.allow.auto.create.topics, is off?): create it; nothing after the last checkpoint is acknowledged "      \
        "meanwhile"

static int delivery_error(Sink *k, CdcError *err) {
        const TopicEntry *te = NULL; /* the failed message's table, NULL for a checkpoint */
        for (size_t i = 0; i < k->ntopics && !te; i++)
                if (strcmp(k->topics[i]->topic, k->first_err_topic) == 0)
                        te = k->topics[i];
        if (kafka_sink_err_unknown_topic(k->first_err))
                return cdc_error(err, -EIO, true, kafka_sink_err_kind(k->first_err),
                                 "topic %s of table %s " UNKNOWN_TOPIC_HINT " (%" PRIu64
                                 " message(s) not delivered: %s)",
                                 k->first_err_topic, te ? te->table : "?", k->failed, rd_kafka_err2str(k->first_err));
        return cdc_error(err, -EIO, kafka_sink_err_retriable(k->first_err), kafka_sink_err_kind(k->first_err),
                         "%" PRIu64 " message(s) not delivered; first to topic %s%s%s: %s", k->failed,
                         k->first_err_topic, te ? " of table " : "", te ? te->table : "",
                         rd_kafka_err2str(k->first_err));
}

static int advance(Sink *k, CdcError *err);

/* Queues one message (copies key, value; takes hdrs). A full local queue is waited out by
 * serving delivery reports, for at most the delivery timeout. c: the change the message is of
 * (NULL for a checkpoint), named in errors so an operator finds the row. b: the batch it belongs
 * to, NULL for a checkpoint (whose opaque is &k->ckpt_marker). */
int kafka_sink_produce(Sink *k, const char *topic, const char *key, const char *value, rd_kafka_headers_t *hdrs,
                       const Change *c, Batch *b, CdcError *err) {
        void *opaque = b ? (void *)b : (void *)&k->ckpt_marker;
        int64_t deadline = 0; /* set when the queue is first found full */
        for (;;) {
                rd_kafka_resp_err_t e =
                        rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                          RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0),
                                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (!b)
                                return 0;
                        b->sent++;
                        /* Serve delivery reports as we go: an earlier batch's checkpoint leaves
                         * as soon as that batch is delivered, while this one is still filled. */
                        rd_kafka_poll(k->rk, 0);
                        return advance(k, err);
                }
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        if (c && kafka_sink_err_unknown_topic(e))
                                return cdc_error(err, -EIO, true, kafka_sink_err_kind(e),
                                                 "topic %s of table %s.%s " UNKNOWN_TOPIC_HINT " (%s)", topic,
                                                 c->table->schema, c->table->name, rd_kafka_err2str(e));
                        if (c)
                                return cdc_error(
                                        err, -EIO, kafka_sink_err_retriable(e), kafka_sink_err_kind(e),
                                        "cannot kafka_sink_produce a change of table %s.%s (key %.200s, %zu bytes) to "
                                        "topic %s: %s",
                                        c->table->schema, c->table->name, key ? key : "none",
                                        (value ? strlen(value) : 0) + (key ? strlen(key) : 0), topic,
                                        rd_kafka_err2str(e));
                        return cdc_error(err, -EIO, kafka_sink_err_retriable(e), kafka_sink_err_kind(e),
                                         "cannot kafka_sink_produce to topic %s: %s", topic, rd_kafka_err2str(e));
                }
                if (!deadline)
                        deadline = mono_ms() + k->timeout_ms + DELIVERY_SLACK_MS;
                rd_kafka_poll(k->rk, 100);
                if (k->failed || mono_ms() > deadline) {
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        if (k->failed)
                                return delivery_error(k, err);
                        return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                         "the kafka producer's queue stayed full for %ld ms: brokers unreachable?",
                                         k->timeout_ms + DELIVERY_SLACK_MS);
                }
        }
}

/* Retires delivered batches (oldest first: a batch counts only once every earlier one is
 * delivered too) and sends the checkpoint of the newest of them when none is in flight. */
static int advance(Sink *k, CdcError *err) {
        while (k->bcount > 0) {
                Batch *b = &k->batches[k->bhead];
                if (!b->committed || b->done < b->sent)
                        break;
                log_debug(k->ctx,
                          "batch to %s: %" PRIu64 " messages, the last delivered %" PRId64 " ms after its commit",
                          b->ckpt.text, b->sent, mono_ms() - b->committed_ms);
                k->have_delivered = true;
                k->delivered = b->ckpt;
                k->bhead = (k->bhead + 1) % BATCHES_MAX;
                k->bcount--;
        }
        if (!k->have_delivered || k->ckpt_inflight || k->failed)
                return 0;
        /* Those batches are in Kafka: only now may the checkpoint say so. */
        char *value = kafka_sink_checkpoint_value(k->pipe, &k->delivered);
        if (!value)
                return cdc_oom(err);
        /* Marked in flight first: its report may be served inside kafka_sink_produce(). */
        k->ckpt_inflight = true;
        k->ckpt_pos = k->delivered.pos;
        k->ckpt_ms = mono_ms();
        k->have_delivered = false;
        int r = kafka_sink_produce(k, KAFKA_SINK_CHECKPOINT_TOPIC, k->pipe->name, value, NULL, NULL, NULL, err);
        free(value);
        if (r < 0)
                k->ckpt_inflight = false;
        return r;
}

/* Serves delivery reports for at most timeout_ms, moves batches on; fails on a failed delivery
 * or on a batch (or checkpoint) without a report past the delivery timeout. */
static int serve(Sink *k, int timeout_ms, CdcError *err) {
        rd_kafka_poll(k->rk, timeout_ms);
        int r = advance(k, err);
        if (r < 0)
                return r;
        if (k->failed)
                return delivery_error(k, err);
        int64_t now = mono_ms(), limit = k->timeout_ms + DELIVERY_SLACK_MS;
        if (k->bcount > 0 && k->batches[k->bhead].committed && now - k->batches[k->bhead].committed_ms > limit)
                return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                 "%" PRIu64 " message(s) without a delivery report after %" PRId64 " ms",
                                 k->batches[k->bhead].sent - k->batches[k->bhead].done, limit);
        if (k->ckpt_inflight && now - k->ckpt_ms > limit)
                return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                 "the checkpoint to %s has no delivery report after %" PRId64 " ms",
                                 KAFKA_SINK_CHECKPOINT_TOPIC, limit);
        return 0;
}

/* Closes the batch without waiting for it: poll_durable() reports it once delivered. */
int kafka_sink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        (void)last;
        Batch *b = k->cur;
        if (!b)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "kafka sink: commit without a batch");
        b->committed = true;
        b->ckpt = *ckpt;
        b->committed_ms = mono_ms();
        k->cur = NULL;
        return serve(k, 0, err);
}

int kafka_sink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        int r = serve(k, timeout_ms, err);
        if (r < 0)
                return r;
        *ret_found = k->have_durable;
        *ret = k->have_durable ? k->durable : (Position){0};
        return 0;
}

int kafka_sink_rollback(Sink *k) {
        /* Sent messages cannot be taken back; those still queued are dropped, and every batch not
         * yet reported durable is abandoned (the attempt reads them again). */
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE);
        rd_kafka_flush(k->rk, 1000);
        k->cur = NULL;
        k->have_delivered = false;
        if (rd_kafka_outq_len(k->rk) > 0) {
                /* Reports still to come point into the ring: it cannot be reused. Keep it full and
                 * failed so that this sink refuses further batches. */
                k->bcount = BATCHES_MAX;
                if (k->failed++ == 0) {
                        k->first_err = RD_KAFKA_RESP_ERR__PURGE_QUEUE;
                        snprintf(k->first_err_topic, sizeof(k->first_err_topic), "?");
                }
                return 0;
        }
        k->bhead = k->bcount = 0;
        k->ckpt_inflight = false;
        k->failed = 0;
        k->first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
        return 0;
}
