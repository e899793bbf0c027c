/* The Kafka sink (see kafka_sink.h for its design): librdkafka producer, delivery accounting,
 * and the pipeline checkpoint in the compacted topic cdcsync.checkpoints. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/envelope.h"
#include "kafka/kafka_rules.h"
#include "kafka/kafka_sink.h"

#define DEFAULT_TOPIC "cdc.{connector}.{schema}.{table}"
#define METADATA_TIMEOUT_MS 10000
#define CHECKPOINT_WINDOW 500     /* checkpoint records read per step, backwards from the end */
#define CHECKPOINT_VALUE_MAX 4096 /* a checkpoint record is small: anything bigger is not ours */
#define DELIVERY_SLACK_MS 30000   /* past message.timeout.ms, how long a flush may still take */
#define TOPICS_MAX 100000         /* tables one sink publishes: past this, the cache is not grown */
#define BATCHES_MAX 32            /* batches between begin() and delivery: past this, begin() waits */

/* A table's topic, worked out once per sink (template and map); a failed delivery report finds
 * its table by the topic. Entries are allocated one by one and never moved or freed before the
 * producer. */
typedef struct {
        char *schema, *name; /* owned: the source's names (the cache key) */
        char table[520];     /* "schema.table" as the sink names it (after map) */
        char topic[ENVELOPE_TOPIC_MAX + 1];
        rd_kafka_topic_t *rkt; /* owned: a handle made at open to fetch the topic's metadata early */
} TopicEntry;

/* One batch from begin() until every message of it has its delivery report. It is the opaque of
 * its messages, so a slot is reused only once none of them is in flight. */
typedef struct {
        uint64_t sent, done;  /* messages produced; delivery reports received (ok or failed) */
        bool committed;       /* commit() was called: sent is final */
        Checkpoint ckpt;      /* the batch's end, once committed */
        int64_t committed_ms; /* monotonic */
} Batch;

struct Sink {
        rd_kafka_t *rk;            /* producer, owned */
        const ConnectorConf *conn; /* borrowed, outlives the sink */
        const PipelineConf *pipe;  /* borrowed */
        const SourceOps *src_ops;  /* formats the source's positions */
        char ctx[256];
        char *db;                  /* owned: the source database's name, NULL when unknown */
        const char *src_connector; /* Debezium's connector name: "postgresql" or "mysql" */
        bool src_lsn;              /* a change's lsn is its whole position (ConnectorType.source_lsn_is_position) */
        long timeout_ms;           /* message.timeout.ms in effect */
        /* Delivery reports run in the sink thread (inside poll/flush): no locking. A failure is
         * kept until rollback(): every batch after it is suspect, the attempt must end. */
        uint64_t failed;
        rd_kafka_resp_err_t first_err;
        char first_err_topic[ENVELOPE_TOPIC_MAX + 1];
        /* Batches not yet delivered, oldest first (ring); the newest may be the open one, cur. */
        Batch batches[BATCHES_MAX];
        size_t bhead, bcount;
        Batch *cur; /* the open batch, NULL between commit and begin */
        /* The newest batch delivered (it and every earlier one) whose checkpoint is not yet sent. */
        bool have_delivered;
        Checkpoint delivered;
        /* At most one checkpoint in flight: later batches' deliveries fold into the next one. */
        bool ckpt_inflight;
        Position ckpt_pos;
        int64_t ckpt_ms;  /* monotonic, when it was produced */
        char ckpt_marker; /* its address is the opaque of checkpoint messages */
        /* The newest batch whose checkpoint is delivered: what poll_durable() reports. */
        bool have_durable;
        Position durable;
        TopicEntry **topics; /* owned, ntopics entries (see TopicEntry) */
        size_t ntopics, topics_cap;
        TopicEntry *last_topic; /* the entry of the previous change: batches are runs of one table */
        /* The source transaction being applied: its changes are numbered from 0. */
        bool have_txn;
        uint64_t txn_xid;
        Position txn_pos;
        uint32_t index;
        char txn_pos_text[96];
};

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The envelope's ts_ms (when cdcsync processed the change), once per message: the coarse clock
 * (a few ms of resolution) costs no clock read. */
static int64_t coarse_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Errors that another attempt (a new producer, after a backoff) cannot fix. */
static bool err_retriable(rd_kafka_resp_err_t e) {
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

static CdcErrorKind err_kind(rd_kafka_resp_err_t e) {
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

static bool err_unknown_topic(rd_kafka_resp_err_t e) {
        return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
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

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        const char *ctx = rd_kafka_opaque(rk) ? ((Sink *)rd_kafka_opaque(rk))->ctx : NULL;
        LogLevel l = level <= 3 ? LOG_LEVEL_ERROR : level == 4 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG;
        log_msg(l, ctx, "kafka %s: %s", fac, buf);
}

/* The producer's (or a reader's) conf: our defaults, then the kafka.* keys of the conf file. */
static int make_conf(const ConnectorConf *conn, const char *client_id, bool producer, rd_kafka_conf_t **ret,
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
static int get_metadata(rd_kafka_t *rk, const rd_kafka_metadata_t **ret, const char *name, CdcError *err) {
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, ret, METADATA_TIMEOUT_MS);
        if (e)
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                                 "kafka connector %s: cannot read cluster metadata: %s", name, rd_kafka_err2str(e));
        return 0;
}

static const rd_kafka_metadata_topic_t *find_topic(const rd_kafka_metadata_t *md, const char *topic) {
        for (int i = 0; i < md->topic_cnt; i++)
                if (strcmp(md->topics[i].topic, topic) == 0)
                        return &md->topics[i];
        return NULL;
}

/* Creates cdcsync.checkpoints compacted with one partition when it does not exist. A cluster that
 * refuses (no privilege, old broker) gets a warning: the topic is then auto-created on the first
 * checkpoint with the broker's defaults, which works but keeps every checkpoint ever written. */
static int ensure_checkpoint_topic(Sink *k, CdcError *err) {
        const rd_kafka_metadata_t *md = NULL;
        int r = get_metadata(k->rk, &md, k->conn->name, err);
        if (r < 0)
                return r;
        bool exists = find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC) != NULL;
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

static Sink *kafka_sink_free(Sink *k) {
        if (!k)
                return NULL;
        if (k->rk) {
                /* Whatever is still queued belongs to a batch that was not reported durable: it
                 * is sent again by the next attempt, so there is no point in waiting for it. */
                rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_flush(k->rk, 1000);
        }
        /* Topic handles go before the producer (librdkafka's rule). */
        for (size_t i = 0; i < k->ntopics; i++)
                if (k->topics[i]->rkt)
                        rd_kafka_topic_destroy(k->topics[i]->rkt);
        if (k->rk)
                rd_kafka_destroy(k->rk);
        for (size_t i = 0; i < k->ntopics; i++) {
                free(k->topics[i]->schema);
                free(k->topics[i]->name);
                free(k->topics[i]);
        }
        free(k->topics);
        free(k->db);
        free(k);
        return NULL;
}

static int topic_entry(Sink *k, const char *tschema, const char *tname, TopicEntry **ret, CdcError *err);

/* For the tables the conf names, the producer learns the topics' partitions and leaders now,
 * while the source connects, instead of holding the first batch while it asks. */
static int warm_topics(Sink *k, CdcError *err) {
        for (int i = 0; i < k->pipe->ntables && !k->pipe->all_tables; i++) {
                char schema[256];
                const char *dot = strchr(k->pipe->tables[i], '.');
                if (!dot || (size_t)(dot - k->pipe->tables[i]) >= sizeof(schema))
                        continue;
                memcpy(schema, k->pipe->tables[i], (size_t)(dot - k->pipe->tables[i]));
                schema[dot - k->pipe->tables[i]] = '\0';
                TopicEntry *te = NULL;
                int r = topic_entry(k, schema, dot + 1, &te, err);
                if (r < 0)
                        return r;
                if (!te->rkt)
                        te->rkt = rd_kafka_topic_new(k->rk, te->topic, NULL); /* NULL: only no warm-up */
        }
        return 0;
}

static int kafka_sink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        Sink *k = calloc(1, sizeof(*k));
        rd_kafka_conf_t *conf = NULL;
        char errstr[512], client_id[256];
        int r;
        if (!k)
                return cdc_oom(err);
        k->conn = conn;
        k->pipe = pipe;
        k->src_ops = connector_source(pipe->source->type);
        snprintf(k->ctx, sizeof(k->ctx), "[pipeline=%s sink=%s]", pipe->name, conn->name);
        if (!k->src_ops) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "source type %s has no positions", pipe->source->type);
                goto out;
        }
        const ConnectorType *st = connector_type(pipe->source->type);
        k->src_connector = st->debezium_name;
        k->src_lsn = st->source_lsn_is_position;
        if (st->conf_database(pipe->source, &k->db) < 0) {
                r = cdc_oom(err);
                goto out;
        }
        char probe[ENVELOPE_TOPIC_MAX + 1];
        if (envelope_topic(conn->topic ? conn->topic : DEFAULT_TOPIC, "c", "s", "t", probe, sizeof(probe)) < 0) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                              "%s:%d: connector %s: topic template '%s' may use only {connector}, {schema}, {table}",
                              conn->file, conn->line, conn->name, conn->topic);
                goto out;
        }
        snprintf(client_id, sizeof(client_id), "cdcsync-%s", pipe->name);
        r = make_conf(conn, client_id, true, &conf, err);
        if (r < 0)
                goto out;
        char val[32];
        size_t vlen = sizeof(val);
        k->timeout_ms = conf_timeout_ms(conn);
        if (rd_kafka_conf_get(conf, "message.timeout.ms", val, &vlen) == RD_KAFKA_CONF_OK) {
                char *end;
                errno = 0;
                long t = strtol(val, &end, 10);
                if (!errno && *end == '\0' && t > 0)
                        k->timeout_ms = t;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_log_cb(conf, on_log);
        rd_kafka_conf_set_opaque(conf, k);
        k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!k->rk) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: cannot create the kafka producer: %s",
                              conn->name, errstr);
                goto out;
        }
        conf = NULL; /* owned by rk now */
        r = ensure_checkpoint_topic(k, err);
        if (r < 0)
                goto out;
        r = warm_topics(k, err);
        if (r < 0)
                goto out;
        *ret = k;
        k = NULL;
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        kafka_sink_free(k);
        return r;
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
                                r = cdc_error(err, -EIO, err_retriable(m->err), err_kind(m->err), "reading %s: %s",
                                              KAFKA_SINK_CHECKPOINT_TOPIC, rd_kafka_message_errstr(m));
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
static int kafka_sink_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err) {
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rc = NULL;
        const rd_kafka_metadata_t *md = NULL;
        char errstr[512], client_id[256];
        Position best = {0};
        bool have = false;
        int r;

        snprintf(client_id, sizeof(client_id), "cdcsync-%s-checkpoint", k->pipe->name);
        r = make_conf(k->conn, client_id, false, &conf, err);
        if (r < 0)
                goto out;
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr));
        /* assign() needs a group id in librdkafka 2.0 ("Unknown group" otherwise); nothing joins
         * or commits under it. */
        rd_kafka_conf_set(conf, "group.id", client_id, errstr, sizeof(errstr));
        rd_kafka_conf_set_log_cb(conf, on_log);
        rc = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!rc) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "cannot create a kafka reader: %s", errstr);
                goto out;
        }
        conf = NULL;
        r = get_metadata(rc, &md, k->conn->name, err);
        if (r < 0)
                goto out;
        const rd_kafka_metadata_topic_t *t = find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC);
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

static int serve(Sink *k, int timeout_ms, CdcError *err);

static int kafka_sink_begin(Sink *k, CdcError *err) {
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

/* The advice for a topic that does not exist: said the same way whether produce() or a delivery
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
        if (err_unknown_topic(k->first_err))
                return cdc_error(err, -EIO, true, err_kind(k->first_err),
                                 "topic %s of table %s " UNKNOWN_TOPIC_HINT " (%" PRIu64
                                 " message(s) not delivered: %s)",
                                 k->first_err_topic, te ? te->table : "?", k->failed, rd_kafka_err2str(k->first_err));
        return cdc_error(err, -EIO, err_retriable(k->first_err), err_kind(k->first_err),
                         "%" PRIu64 " message(s) not delivered; first to topic %s%s%s: %s", k->failed,
                         k->first_err_topic, te ? " of table " : "", te ? te->table : "",
                         rd_kafka_err2str(k->first_err));
}

static int advance(Sink *k, CdcError *err);

/* Queues one message (copies key, value; takes hdrs). A full local queue is waited out by
 * serving delivery reports, for at most the delivery timeout. c: the change the message is of
 * (NULL for a checkpoint), named in errors so an operator finds the row. b: the batch it belongs
 * to, NULL for a checkpoint (whose opaque is &k->ckpt_marker). */
static int produce(Sink *k, const char *topic, const char *key, const char *value, rd_kafka_headers_t *hdrs,
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
                        if (c && err_unknown_topic(e))
                                return cdc_error(err, -EIO, true, err_kind(e),
                                                 "topic %s of table %s.%s " UNKNOWN_TOPIC_HINT " (%s)", topic,
                                                 c->table->schema, c->table->name, rd_kafka_err2str(e));
                        if (c)
                                return cdc_error(err, -EIO, err_retriable(e), err_kind(e),
                                                 "cannot produce a change of table %s.%s (key %.200s, %zu bytes) to "
                                                 "topic %s: %s",
                                                 c->table->schema, c->table->name, key ? key : "none",
                                                 (value ? strlen(value) : 0) + (key ? strlen(key) : 0), topic,
                                                 rd_kafka_err2str(e));
                        return cdc_error(err, -EIO, err_retriable(e), err_kind(e), "cannot produce to topic %s: %s",
                                         topic, rd_kafka_err2str(e));
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

static rd_kafka_headers_t *make_headers(Sink *k) {
        char seq[16];
        snprintf(seq, sizeof(seq), "%" PRIu32, k->index);
        rd_kafka_headers_t *h = rd_kafka_headers_new(3);
        rd_kafka_header_add(h, "cdcsync.position", -1, k->txn_pos_text, -1);
        rd_kafka_header_add(h, "cdcsync.sequence", -1, seq, -1);
        rd_kafka_header_add(h, "cdcsync.source", -1, k->pipe->source->name, -1);
        return h;
}

/* One envelope message (and its tombstone after a delete). */
static int produce_change(Sink *k, TopicEntry *te, const TxnInfo *txn, const Change *c, const EnvelopeSource *src,
                          CdcError *err) {
        char *key = NULL, *value = NULL;
        int r = envelope_key(c, &key);
        if (r == 0)
                r = envelope_value(c, txn, src, coarse_now_ms(), &value);
        if (r < 0) {
                r = cdc_error(err, r, false, r == -ENOMEM ? CDC_ERR_INTERNAL : CDC_ERR_DATA,
                              "cannot build the message of a change of %s.%s: %s", c->table->schema, c->table->name,
                              strerror(-r));
                goto out;
        }
        r = produce(k, te->topic, key, value, make_headers(k), c, k->cur, err);
        if (r == 0 && c->op == CHANGE_DELETE && key)
                r = produce(k, te->topic, key, NULL, make_headers(k), c, k->cur, err);
out:
        free(key);
        free(value);
        return r;
}

/* The topic entry of a table (source-side names), made on first use. */
static int topic_entry(Sink *k, const char *tschema, const char *tname, TopicEntry **ret, CdcError *err) {
        char schema[256], table[256];
        TopicEntry *te = k->last_topic;
        if (te && strcmp(te->name, tname) == 0 && strcmp(te->schema, tschema) == 0) {
                *ret = te;
                return 0;
        }
        for (size_t i = 0; i < k->ntopics; i++) {
                te = k->topics[i];
                if (strcmp(te->name, tname) == 0 && strcmp(te->schema, tschema) == 0) {
                        *ret = k->last_topic = te;
                        return 0;
                }
        }
        if (conf_map_table(k->pipe, tschema, tname, schema, sizeof(schema), table, sizeof(table)) < 0)
                return cdc_error(err, -ENAMETOOLONG, false, CDC_ERR_CONF, "table name %s.%s is too long", tschema,
                                 tname);
        if (k->ntopics >= TOPICS_MAX)
                return cdc_error(err, -E2BIG, false, CDC_ERR_CONF, "more than %d tables published by one pipeline",
                                 TOPICS_MAX);
        te = calloc(1, sizeof(*te));
        if (!te)
                return cdc_oom(err);
        int r = envelope_topic(k->conn->topic ? k->conn->topic : DEFAULT_TOPIC, k->pipe->source->name, schema, table,
                               te->topic, sizeof(te->topic));
        if (r < 0) {
                free(te);
                return cdc_error(err, r, false, CDC_ERR_CONF, "no topic for table %s.%s from template %s: %s", schema,
                                 table, k->conn->topic ? k->conn->topic : DEFAULT_TOPIC, strerror(-r));
        }
        snprintf(te->table, sizeof(te->table), "%s.%s", schema, table);
        te->schema = strdup(tschema);
        te->name = strdup(tname);
        if (k->ntopics == k->topics_cap) {
                size_t cap = k->topics_cap ? 2 * k->topics_cap : 16;
                TopicEntry **n = realloc(k->topics, cap * sizeof(*n));
                if (n) {
                        k->topics = n;
                        k->topics_cap = cap;
                }
        }
        if (!te->schema || !te->name || k->ntopics == k->topics_cap) {
                free(te->schema);
                free(te->name);
                free(te);
                return cdc_oom(err);
        }
        k->topics[k->ntopics++] = te;
        *ret = k->last_topic = te;
        return 0;
}

static int kafka_sink_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        char pos_text[96], seq[160];
        TopicEntry *te = NULL;
        int r;
        /* The snapshot opens with a truncate so that a database sink starts empty; on Kafka it
         * would tell consumers to drop rows that the snapshot's reads then upsert anyway (and
         * Debezium sends none), so it is not published. */
        if (c->op == CHANGE_TRUNCATE && txn->snapshot)
                return 0;
        if (copies_is_registry(c->table)) /* a database sink's bookkeeping (copies.h) */
                return 0;
        if (!k->cur)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "kafka sink: apply outside a batch");
        if (!k->have_txn || k->txn_xid != txn->xid || position_cmp(k->txn_pos, txn->commit_pos) != 0) {
                k->have_txn = true;
                k->txn_xid = txn->xid;
                k->txn_pos = txn->commit_pos;
                k->index = 0;
                k->src_ops->format_position(txn->commit_pos, k->txn_pos_text, sizeof(k->txn_pos_text));
        }
        r = topic_entry(k, c->table->schema, c->table->name, &te, err);
        if (r < 0)
                return r;
        /* A PostgreSQL change knows its own LSN; others are placed by their commit position. */
        if (c->lsn && k->src_lsn)
                k->src_ops->format_position((Position){0, c->lsn}, pos_text, sizeof(pos_text));
        else
                snprintf(pos_text, sizeof(pos_text), "%s", k->txn_pos_text);
        snprintf(seq, sizeof(seq), "[\"%s\",\"%" PRIu32 "\"]", k->txn_pos_text, k->index);
        EnvelopeSource src = {
                .connector = k->src_connector,
                .name = k->pipe->source->name,
                .db = k->db,
                .pos_text = pos_text,
                .sequence = seq,
                .vclock = c->version ? &c->version->vv : NULL, /* NULL: the pipeline keeps no versions */
        };
        if (envelope_key_changed(c)) {
                /* Debezium's form: delete + tombstone of the old key, create of the new one. The
                 * version is the new key's: the old key's delete is published without one rather
                 * than with a vector of another key's history. */
                Change del = {.op = CHANGE_DELETE, .table = c->table, .before = c->before, .lsn = c->lsn};
                Change ins = {.op = CHANGE_INSERT, .table = c->table, .after = c->after, .lsn = c->lsn};
                EnvelopeSource del_src = src;
                del_src.vclock = NULL;
                r = produce_change(k, te, txn, &del, &del_src, err);
                if (r == 0)
                        r = produce_change(k, te, txn, &ins, &src, err);
        } else {
                r = produce_change(k, te, txn, c, &src, err);
        }
        k->index++;
        return r;
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
        json_t *j = json_object();
        char hi[24], lo[24];
        snprintf(hi, sizeof(hi), "%" PRIu64, k->delivered.pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, k->delivered.pos.lo);
        json_object_set_new(j, "pipeline", json_string(k->pipe->name));
        json_object_set_new(j, "source", json_string(k->pipe->source->name));
        json_object_set_new(j, "position", json_string(k->delivered.text));
        json_object_set_new(j, "hi", json_string(hi));
        json_object_set_new(j, "lo", json_string(lo));
        json_object_set_new(j, "ts_ms", json_integer(now_ms()));
        char *value = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!value)
                return cdc_oom(err);
        /* Marked in flight first: its report may be served inside produce(). */
        k->ckpt_inflight = true;
        k->ckpt_pos = k->delivered.pos;
        k->ckpt_ms = mono_ms();
        k->have_delivered = false;
        int r = produce(k, KAFKA_SINK_CHECKPOINT_TOPIC, k->pipe->name, value, NULL, NULL, NULL, err);
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
static int kafka_sink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
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

static int kafka_sink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        int r = serve(k, timeout_ms, err);
        if (r < 0)
                return r;
        *ret_found = k->have_durable;
        *ret = k->have_durable ? k->durable : (Position){0};
        return 0;
}

static int kafka_sink_rollback(Sink *k) {
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

static int kafka_sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        const rd_kafka_metadata_t *md = NULL;
        char errstr[512], client_id[256];
        snprintf(client_id, sizeof(client_id), "cdcsync-%s-check", pipe->name);
        int r = make_conf(conn, client_id, true, &conf, err);
        if (r < 0)
                goto out;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: %s", conn->name, errstr);
                goto out;
        }
        conf = NULL;
        r = get_metadata(rk, &md, conn->name, err);
        if (r < 0)
                goto out;
        printf("kafka %s: %d broker(s):", conn->name, md->broker_cnt);
        for (int i = 0; i < md->broker_cnt; i++)
                printf(" %s:%d", md->brokers[i].host, md->brokers[i].port);
        printf("; %d topic(s); checkpoint topic %s %s\n", md->topic_cnt, KAFKA_SINK_CHECKPOINT_TOPIC,
               find_topic(md, KAFKA_SINK_CHECKPOINT_TOPIC) ? "present" : "absent (created at start)");
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        if (rk)
                rd_kafka_destroy(rk);
        if (conf)
                rd_kafka_conf_destroy(conf);
        return r;
}

/* Topics keep no copy records (copy_records is false): there are none to read. */
static int kafka_sink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        (void)k, (void)err;
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

const SinkOps kafka_sink_ops = {
        .type = "kafka",
        .open = kafka_sink_open,
        .last_position = kafka_sink_last_position,
        .begin = kafka_sink_begin,
        .apply = kafka_sink_apply,
        .commit = kafka_sink_commit,
        .poll_durable = kafka_sink_poll_durable,
        .rollback = kafka_sink_rollback,
        .check = kafka_sink_check,
        .free = kafka_sink_free,
        .copy_records = false,
        .copied_tables = kafka_sink_copied_tables,
        .locate = kafka_rules_locate,
};
