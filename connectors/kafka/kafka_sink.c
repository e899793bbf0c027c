/* The Kafka sink (see kafka_sink.h for its design): its life, and each change as messages to its
 * table's topic. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/envelope.h"
#include "kafka/kafka_rules.h"
#include "kafka/kafka_sink.h"
#include "kafka/kafka_sink_int.h"

/* The envelope's ts_ms (when cdcsync processed the change), once per message: the coarse clock
 * (a few ms of resolution) costs no clock read. */
static int64_t coarse_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
        strbuf_free(&k->value);
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
        r = kafka_sink_make_conf(conn, client_id, true, &conf, err);
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
        rd_kafka_conf_set_dr_msg_cb(conf, kafka_sink_on_delivery);
        rd_kafka_conf_set_log_cb(conf, kafka_sink_on_log);
        rd_kafka_conf_set_opaque(conf, k);
        k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!k->rk) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: cannot create the kafka producer: %s",
                              conn->name, errstr);
                goto out;
        }
        conf = NULL; /* owned by rk now */
        r = kafka_sink_ensure_checkpoint_topic(k, err);
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
        char *key = NULL;
        StrBuf *value = &k->value;
        *value = (StrBuf){.data = value->data, .cap = value->cap}; /* empty, its allocation kept */
        int r = envelope_key(c, &key);
        if (r == 0)
                r = envelope_value_buf(value, c, txn, src, coarse_now_ms());
        if (r < 0) {
                r = cdc_error(err, r, false, r == -ENOMEM ? CDC_ERR_INTERNAL : CDC_ERR_DATA,
                              "cannot build the message of a change of %s.%s: %s", c->table->schema, c->table->name,
                              strerror(-r));
                goto out;
        }
        r = kafka_sink_produce(k, te->topic, key, value->data, make_headers(k), c, k->cur, err);
        if (r == 0 && c->op == CHANGE_DELETE && key)
                r = kafka_sink_produce(k, te->topic, key, NULL, make_headers(k), c, k->cur, err);
out:
        free(key);
        if (r < 0 || value->cap > VALUE_BUF_KEEP) /* one huge row does not pin its size */
                strbuf_free(value);
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
