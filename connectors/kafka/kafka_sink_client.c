/* The Kafka sink's librdkafka clients from the conf: producer and reader settings, cluster
 * metadata, error classes, and `check --connect`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/kafka_sink_int.h"

/* Errors that another attempt (a new producer, after a backoff) cannot fix. */
bool kafka_sink_err_retriable(rd_kafka_resp_err_t e) {
        switch (e) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        /* (A topic that does not exist and cannot be created is retried: an operator creates it,
         * and the pipeline then catches up from its checkpoint.) */
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        case RD_KAFKA_RESP_ERR__AUTHENTICATION: return false;
        default: return true;
        }
}

CdcErrorKind kafka_sink_err_kind(rd_kafka_resp_err_t e) {
        switch (e) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD: return CDC_ERR_DATA;
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED: return CDC_ERR_PRIVILEGE;
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION: return CDC_ERR_SCHEMA;
        default: return CDC_ERR_CONNECTION;
        }
}

bool kafka_sink_err_unknown_topic(rd_kafka_resp_err_t e) {
        return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

void kafka_sink_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        const char *ctx = rd_kafka_opaque(rk) ? ((Sink *)rd_kafka_opaque(rk))->ctx : NULL;
        LogLevel l = level <= 3 ? LOG_LEVEL_ERROR : level == 4 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG;
        log_msg(l, ctx, "kafka %s: %s", fac, buf);
}

/* The producer's (or a reader's) conf: our defaults, then the kafka.* keys of the conf file. */
int kafka_sink_make_conf(const ConnectorConf *conn, const char *client_id, bool producer, rd_kafka_conf_t **ret,
                         CdcError *err) {
        char errstr[512], timeout[16];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int r = 0;
        snprintf(timeout, sizeof(timeout), "%d", conf_timeout_ms(conn));
        if (!conn->brokers) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s:%d: connector %s has no brokers", conn->file,
                              conn->line, conn->name);
                goto out;
        }
        const char *defaults[][2] = {
                {"bootstrap.servers", conn->brokers},
                {"client.id", client_id},
                /* Retries must not reorder or duplicate within a partition: per-key order. */
                {"enable.idempotence", "true"},
                /* Same key → same partition as the Java client computes it. */
                {"partitioner", "murmur2_random"},
                {"linger.ms", "5"},
                /* A broker that stops answering (no FIN, no RST): requests fail after timeout_s, a
                 * batch undelivered for that long fails the attempt (the pipeline retries). */
                {"message.timeout.ms", timeout},
                {"socket.timeout.ms", timeout},
                {"socket.keepalive.enable", "true"},
                /* Bounded memory: at most 64 MB / 100k messages wait in the local queue. */
                {"queue.buffering.max.kbytes", "65536"},
                {"queue.buffering.max.messages", "100000"},
        };
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
                if (!producer && i >= 2)
                        break;
                if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof(errstr)) !=
                    RD_KAFKA_CONF_OK) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s:%d: connector %s: %s: %s", conn->file,
                                      conn->line, conn->name, defaults[i][0], errstr);
                        goto out;
                }
        }
        if (conn->password &&
            rd_kafka_conf_set(conf, "sasl.password", conn->password, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                              "connector %s: the password cannot be used as sasl.password", conn->name);
                goto out;
        }
        for (int i = 0; i < conn->nkafka_props; i++) {
                const KeyValue *kv = &conn->kafka_props[i];
                if (strcmp(kv->key, "enable.idempotence") == 0 && strcmp(kv->value, "true") != 0) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                      "%s:%d: connector %s: kafka.enable.idempotence cannot be turned off: per-key "
                                      "order and no duplicates on retry rely on it",
                                      conn->file, conn->line, conn->name);
                        goto out;
                }
                /* A reader only needs what connects (security, addresses); producer keys would
                 * only be warned about. */
                if (!producer && strncmp(kv->key, "security.", 9) != 0 && strncmp(kv->key, "sasl.", 5) != 0 &&
                    strncmp(kv->key, "ssl.", 4) != 0 && strcmp(kv->key, "bootstrap.servers") != 0)
                        continue;
                if (rd_kafka_conf_set(conf, kv->key, kv->value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s:%d: connector %s: kafka.%s: %s",
                                      conn->file, conn->line, conn->name, kv->key, errstr);
                        goto out;
                }
        }
        *ret = conf;
        conf = NULL;
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        return r;
}

/* Metadata of every topic (never of one: asking for one would auto-create it). */
int kafka_sink_metadata(rd_kafka_t *rk, const rd_kafka_metadata_t **ret, const char *name, CdcError *err) {
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, ret, METADATA_TIMEOUT_MS);
        if (e)
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                                 "kafka connector %s: cannot read cluster metadata: %s", name, rd_kafka_err2str(e));
        return 0;
}

const rd_kafka_metadata_topic_t *kafka_sink_find_topic(const rd_kafka_metadata_t *md, const char *topic) {
        for (int i = 0; i < md->topic_cnt; i++)
                if (strcmp(md->topics[i].topic, topic) == 0)
                        return &md->topics[i];
        return NULL;
}

int kafka_sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        const rd_kafka_metadata_t *md = NULL;
        char errstr[512], client_id[256];
        snprintf(client_id, sizeof(client_id), "cdcsync-%s-check", pipe->name);
        int r = kafka_sink_make_conf(conn, client_id, true, &conf, err);
        if (r < 0)
                goto out;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: %s", conn->name, errstr);
                goto out;
        }
        conf = NULL;
        r = kafka_sink_metadata(rk, &md, conn->name, err);
        if (r < 0)
                goto out;
        printf("kafka %s: %d broker(s):", conn->name, md->broker_cnt);
        for (int i = 0; i < md->broker_cnt; i++)
                printf(" %s:%d", md->brokers[i].host, md->brokers[i].port);
        printf("; %d topic(s); checkpoint topic %s %s\n", md->topic_cnt, KAFKA_SINK_CHECKPOINT_TOPIC,
               kafka_sink_find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC) ? "present" : "absent (created at start)");
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        if (rk)
                rd_kafka_destroy(rk);
        if (conf)
                rd_kafka_conf_destroy(conf);
        return r;
}
