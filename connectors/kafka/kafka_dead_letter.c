/* The Kafka source's dead letters (see kafka_dead_letter.h): a producer of their own, and each
 * message produced with where-and-why headers, its delivery waited for. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cdcsync/log.h"
#include "kafka/kafka_dead_letter.h"

#define DEAD_LETTER_TIMEOUT_MS 30000 /* delivery of one dead letter */

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        LogLevel l = level <= 3 ? LOG_LEVEL_ERROR : level == 4 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG;
        log_msg(l, rd_kafka_opaque(rk), "kafka %s: %s", fac, buf);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        *(rd_kafka_resp_err_t *)m->_private = m->err;
}

int kafka_conf_set(rd_kafka_conf_t *conf, const ConnectorConf *conn, const char *key, const char *value,
                   CdcError *err) {
        char errstr[512];
        if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s:%d: connector %s: kafka.%s: %s", conn->file,
                                 conn->line, conn->name, key, errstr);
        return 0;
}

/* Consumer-only properties: a producer would warn about each. */
static bool consumer_only(const char *key) {
        static const char *const prefixes[] = {"group.",
                                               "enable.auto.",
                                               "auto.",
                                               "session.timeout.ms",
                                               "heartbeat.interval.ms",
                                               "max.poll.interval.ms",
                                               "partition.assignment.strategy",
                                               "fetch.",
                                               "queued.",
                                               "isolation.level",
                                               "check.crcs",
                                               "consume.",
                                               "offset."};
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
                if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

/* The producer of dead letters: the connector's cluster and properties (the consumer's own left
 * out), each delivery waited for. */
static int make_producer(rd_kafka_t **ret, const ConnectorConf *conn, const PipelineConf *pipe, const char *ctx,
                         CdcError *err) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[512], client_id[256], timeout[16];
        int r = 0;
        snprintf(client_id, sizeof(client_id), "cdcsync-%s-dead-letters", pipe->name);
        snprintf(timeout, sizeof(timeout), "%d", DEAD_LETTER_TIMEOUT_MS);
        const char *defaults[][2] = {
                {"bootstrap.servers", conn->brokers},
                {"client.id", client_id},
                {"message.timeout.ms", timeout},
        };
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && r == 0; i++)
                r = kafka_conf_set(conf, conn, defaults[i][0], defaults[i][1], err);
        if (r == 0 && conn->password)
                r = kafka_conf_set(conf, conn, "sasl.password", conn->password, err);
        for (int i = 0; i < conn->nkafka_props && r == 0; i++)
                if (!consumer_only(conn->kafka_props[i].key) && strcmp(conn->kafka_props[i].key, "message.timeout.ms"))
                        r = kafka_conf_set(conf, conn, conn->kafka_props[i].key, conn->kafka_props[i].value, err);
        if (r < 0) {
                rd_kafka_conf_destroy(conf);
                return r;
        }
        rd_kafka_conf_set_opaque(conf, (void *)ctx);
        rd_kafka_conf_set_log_cb(conf, on_log);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        *ret = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!*ret) {
                rd_kafka_conf_destroy(conf);
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: dead-letter producer: %s",
                                 conn->name, errstr);
        }
        return 0;
}

int kafka_dead_letter(rd_kafka_t **producer, const ConnectorConf *conn, const PipelineConf *pipe, const char *ctx,
                      const rd_kafka_message_t *m, const char *topic, const char *why, CdcError *err) {
        const char *dlt = pipe->dead_letter_topic;
        char part[16], off[24];
        int r = *producer ? 0 : make_producer(producer, conn, pipe, ctx, err);
        if (r < 0)
                return r;
        snprintf(part, sizeof(part), "%" PRId32, m->partition);
        snprintf(off, sizeof(off), "%" PRId64, m->offset);
        rd_kafka_resp_err_t delivered = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        rd_kafka_resp_err_t ke = rd_kafka_producev(
                *producer, RD_KAFKA_V_TOPIC(dlt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                RD_KAFKA_V_HEADER("cdcsync.error", why, -1), RD_KAFKA_V_HEADER("cdcsync.topic", topic, -1),
                RD_KAFKA_V_HEADER("cdcsync.partition", part, -1), RD_KAFKA_V_HEADER("cdcsync.offset", off, -1),
                RD_KAFKA_V_HEADER("cdcsync.pipeline", pipe->name, -1), RD_KAFKA_V_OPAQUE(&delivered), RD_KAFKA_V_END);
        int64_t deadline = mono_ms() + DEAD_LETTER_TIMEOUT_MS + 5000;
        while (!ke && delivered == RD_KAFKA_RESP_ERR__IN_PROGRESS && mono_ms() < deadline)
                rd_kafka_poll(*producer, 100);
        if (!ke && delivered == RD_KAFKA_RESP_ERR__IN_PROGRESS) {
                /* Not delivered in time: the message's pointer to `delivered` must not outlive
                 * this frame, so the producer goes (and a new one comes with the next attempt). */
                rd_kafka_purge(*producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_destroy(*producer);
                *producer = NULL;
                ke = RD_KAFKA_RESP_ERR__TIMED_OUT;
        }
        if (!ke)
                ke = delivered;
        if (ke)
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                                 "cannot produce the message at %s[%" PRId32 "] offset %" PRId64
                                 " to dead-letter topic %s: %s — it is read again once that topic takes it (create "
                                 "it if it does not exist)",
                                 topic, m->partition, m->offset, dlt, rd_kafka_err2str(ke));
        return 0;
}
