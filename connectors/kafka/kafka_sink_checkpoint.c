/* The Kafka sink's checkpoint topic cdcsync.checkpoints: created at open, its records' value, and
 * the newest record of a pipeline read back when it resumes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/kafka_sink_int.h"

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Creates cdcsync.checkpoints compacted with one partition when it does not exist. A cluster that
 * refuses (no privilege, old broker) gets a warning: the topic is then auto-created on the first
 * checkpoint with the broker's defaults, which works but keeps every checkpoint ever written. */
int kafka_sink_ensure_checkpoint_topic(Sink *k, CdcError *err) {
        const rd_kafka_metadata_t *md = NULL;
        int r = kafka_sink_metadata(k->rk, &md, k->conn->name, err);
        if (r < 0)
                return r;
        bool exists = kafka_sink_find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC) != NULL;
        int replicas = md->broker_cnt < 3 ? md->broker_cnt : 3;
        rd_kafka_metadata_destroy(md);
        if (exists)
                return 0;

        char errstr[512];
        rd_kafka_NewTopic_t *nt =
                rd_kafka_NewTopic_new(KAFKA_SINK_CHECKPOINT_TOPIC, 1, replicas, errstr, sizeof(errstr));
        rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
        rd_kafka_event_t *ev = NULL;
        if (!nt || !q) {
                log_warn(k->ctx, "cannot prepare creating topic %s: %s", KAFKA_SINK_CHECKPOINT_TOPIC, errstr);
                goto out;
        }
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
        /* A cluster that does not know CreateTopics (librdkafka's mock) never answers: do not
         * wait long for it. */
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        if (ao)
                rd_kafka_AdminOptions_set_request_timeout(ao, 3000, errstr, sizeof(errstr));
        rd_kafka_CreateTopics(k->rk, &nt, 1, ao, q);
        if (ao)
                rd_kafka_AdminOptions_destroy(ao);
        ev = rd_kafka_queue_poll(q, 5000);
        const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        if (!res) {
                log_warn(k->ctx, "creating topic %s: %s", KAFKA_SINK_CHECKPOINT_TOPIC,
                         ev ? rd_kafka_event_error_string(ev) : "no answer");
                goto out;
        }
        size_t n;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
                if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                        log_warn(k->ctx,
                                 "cannot create topic %s (compacted, 1 partition): %s — create it so, or it is "
                                 "auto-created with the broker's defaults",
                                 KAFKA_SINK_CHECKPOINT_TOPIC, rd_kafka_err2str(e));
                else if (!e)
                        log_info(k->ctx, "created topic %s (compacted)", KAFKA_SINK_CHECKPOINT_TOPIC);
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        if (q)
                rd_kafka_queue_destroy(q);
        if (nt)
                rd_kafka_NewTopic_destroy(nt);
        return 0;
}

/* The checkpoint record of pipe at ckpt: its position as text and as numbers, and when it was
 * written. */
char *kafka_sink_checkpoint_value(const PipelineConf *pipe, const Checkpoint *ckpt) {
        json_t *j = json_object();
        char hi[24], lo[24];
        snprintf(hi, sizeof(hi), "%" PRIu64, ckpt->pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, ckpt->pos.lo);
        json_object_set_new(j, "pipeline", json_string(pipe->name));
        json_object_set_new(j, "source", json_string(pipe->source->name));
        json_object_set_new(j, "position", json_string(ckpt->text));
        json_object_set_new(j, "hi", json_string(hi));
        json_object_set_new(j, "lo", json_string(lo));
        json_object_set_new(j, "ts_ms", json_integer(now_ms()));
        char *value = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return value;
}

/* Reads the checkpoint record of this pipeline from [from, to) of one partition; *ret_found is
 * set when one is there (the last one wins). */
static int read_checkpoints(rd_kafka_t *rc, const char *pipeline, int32_t part, int64_t from, int64_t to, Position *ret,
                            bool *ret_found, CdcError *err) {
        rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, KAFKA_SINK_CHECKPOINT_TOPIC, part)->offset = from;
        rd_kafka_resp_err_t e = rd_kafka_assign(rc, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        int r = 0;
        if (e)
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "cannot read %s: %s", KAFKA_SINK_CHECKPOINT_TOPIC,
                                 rd_kafka_err2str(e));
        int64_t deadline = mono_ms() + 30000, next = from;
        while (next < to) {
                if (mono_ms() > deadline) {
                        r = cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                      "timed out reading %s partition %d at offset %" PRId64 " of %" PRId64,
                                      KAFKA_SINK_CHECKPOINT_TOPIC, part, next, to);
                        break;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rc, 500);
                if (!m)
                        continue;
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                r = cdc_error(err, -EIO, kafka_sink_err_retriable(m->err), kafka_sink_err_kind(m->err),
                                              "reading %s: %s", KAFKA_SINK_CHECKPOINT_TOPIC,
                                              rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        if (r < 0)
                                break;
                        continue;
                }
                next = m->offset + 1;
                if (m->key && m->key_len == strlen(pipeline) && memcmp(m->key, pipeline, m->key_len) == 0 &&
                    m->payload && m->len < CHECKPOINT_VALUE_MAX) {
                        json_error_t jerr;
                        json_t *j = json_loadb(m->payload, m->len, 0, &jerr);
                        const char *hi = json_string_value(json_object_get(j, "hi"));
                        const char *lo = json_string_value(json_object_get(j, "lo"));
                        char *e1 = NULL, *e2 = NULL;
                        errno = 0;
                        unsigned long long h = hi ? strtoull(hi, &e1, 10) : 0, l = lo ? strtoull(lo, &e2, 10) : 0;
                        if (!hi || !lo || errno || *e1 || *e2) {
                                r = cdc_error(err, -EBADMSG, false, CDC_ERR_DATA,
                                              "%s partition %d offset %" PRId64 ": checkpoint of pipeline %s is not "
                                              "readable",
                                              KAFKA_SINK_CHECKPOINT_TOPIC, part, m->offset, pipeline);
                                json_decref(j);
                                rd_kafka_message_destroy(m);
                                break;
                        }
                        *ret = (Position){h, l};
                        *ret_found = true;
                        json_decref(j);
                } else if (m->key && m->key_len == strlen(pipeline) && memcmp(m->key, pipeline, m->key_len) == 0 &&
                           !m->payload) {
                        *ret_found = false; /* a tombstone: the pipeline was reset */
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(rc, NULL);
        return r;
}

/* The newest checkpoint record's position. Its text is not read back (yet): a source resumes from
 * the Position. */
int kafka_sink_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err) {
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rc = NULL;
        const rd_kafka_metadata_t *md = NULL;
        char errstr[512], client_id[256];
        Position best = {0};
        bool have = false;
        int r;

        snprintf(client_id, sizeof(client_id), "cdcsync-%s-checkpoint", k->pipe->name);
        r = kafka_sink_make_conf(k->conn, client_id, false, &conf, err);
        if (r < 0)
                goto out;
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr));
        /* assign() needs a group id in librdkafka 2.0 ("Unknown group" otherwise); nothing joins
         * or commits under it. */
        rd_kafka_conf_set(conf, "group.id", client_id, errstr, sizeof(errstr));
        rd_kafka_conf_set_log_cb(conf, kafka_sink_on_log);
        rc = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!rc) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "cannot create a kafka reader: %s", errstr);
                goto out;
        }
        conf = NULL;
        r = kafka_sink_metadata(rc, &md, k->conn->name, err);
        if (r < 0)
                goto out;
        const rd_kafka_metadata_topic_t *t = kafka_sink_find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC);
        for (int p = 0; t && p < t->partition_cnt; p++) {
                int32_t part = t->partitions[p].id;
                int64_t low, high;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rc, KAFKA_SINK_CHECKPOINT_TOPIC, part, &low,
                                                                         &high, METADATA_TIMEOUT_MS);
                if (e) {
                        r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "cannot read the offsets of %s: %s",
                                      KAFKA_SINK_CHECKPOINT_TOPIC, rd_kafka_err2str(e));
                        goto out;
                }
                /* Backwards in windows from the end: the newest record of this pipeline is all
                 * that matters, and an uncompacted topic can be long. */
                for (int64_t to = high; to > low;) {
                        int64_t from = to - CHECKPOINT_WINDOW > low ? to - CHECKPOINT_WINDOW : low;
                        Position pos;
                        bool f = false;
                        r = read_checkpoints(rc, k->pipe->name, part, from, to, &pos, &f, err);
                        if (r < 0)
                                goto out;
                        if (f && (!have || position_cmp(pos, best) > 0)) {
                                best = pos;
                                have = true;
                        }
                        if (f)
                                break;
                        to = from;
                }
        }
        *ret = (Checkpoint){.pos = best};
        *ret_found = have;
        r = 0;
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        if (rc) {
                rd_kafka_consumer_close(rc);
                rd_kafka_destroy(rc);
        }
        if (conf)
                rd_kafka_conf_destroy(conf);
        return r;
}
