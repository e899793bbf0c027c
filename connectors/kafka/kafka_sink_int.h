/* What the files of the Kafka sink share (kafka_sink.c, kafka_sink_client.c,
 * kafka_sink_delivery.c, kafka_sink_checkpoint.c): the Sink and its parts; private to
 * connectors/kafka. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdcsync/connector.h"
#include "kafka/envelope.h"
#include "kafka/kafka_sink.h"

#define DEFAULT_TOPIC "cdc.{connector}.{schema}.{table}"
#define METADATA_TIMEOUT_MS 10000
#define CHECKPOINT_WINDOW 500     /* checkpoint records read per step, backwards from the end */
#define CHECKPOINT_VALUE_MAX 4096 /* a checkpoint record is small: anything bigger is not ours */
#define DELIVERY_SLACK_MS 30000   /* past message.timeout.ms, how long a flush may still take */
#define TOPICS_MAX 100000         /* tables one sink publishes: past this, the cache is not grown */
#define BATCHES_MAX 32            /* batches between begin() and delivery: past this, begin() waits */
#define VALUE_BUF_KEEP (1 << 20)  /* a message value buffer larger than this is not kept for the next */

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
        /* The value of the message being built, its allocation kept for the next one (librdkafka
         * copies it): one buffer per sink instead of a malloc and ~5 reallocs per message. */
        StrBuf value;
};

static inline int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- kafka_sink_client.c: librdkafka clients from the conf ---- */

/* The producer's (or, producer false, a reader's) conf in *ret (the caller's): our defaults, then
 * the kafka.* keys of the conf file. */
int kafka_sink_make_conf(const ConnectorConf *conn, const char *client_id, bool producer, rd_kafka_conf_t **ret,
                         CdcError *err);
/* librdkafka's log lines, with the sink's context when the client's opaque is a Sink. */
void kafka_sink_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
/* Metadata of every topic in *ret (rd_kafka_metadata_destroy() it); name: the connector, for
 * errors. */
int kafka_sink_metadata(rd_kafka_t *rk, const rd_kafka_metadata_t **ret, const char *name, CdcError *err);
/* The topic named topic in md (borrowed from md), NULL when there is none. */
const rd_kafka_metadata_topic_t *kafka_sink_find_topic(const rd_kafka_metadata_t *md, const char *topic);
bool kafka_sink_err_retriable(rd_kafka_resp_err_t e);
CdcErrorKind kafka_sink_err_kind(rd_kafka_resp_err_t e);
bool kafka_sink_err_unknown_topic(rd_kafka_resp_err_t e);
/* SinkOps.check */
int kafka_sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err);

/* ---- kafka_sink_delivery.c: batches until delivered, and their checkpoint ---- */

/* The producer's delivery report callback (its opaque is the Sink). */
void kafka_sink_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
/* Queues one message of batch b (NULL: a checkpoint); see kafka_sink_delivery.c. */
int kafka_sink_produce(Sink *k, const char *topic, const char *key, const char *value, rd_kafka_headers_t *hdrs,
                       const Change *c, Batch *b, CdcError *err);
/* SinkOps.begin, commit, poll_durable, rollback */
int kafka_sink_begin(Sink *k, CdcError *err);
int kafka_sink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err);
int kafka_sink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err);
int kafka_sink_rollback(Sink *k);

/* ---- kafka_sink_checkpoint.c: the topic cdcsync.checkpoints ---- */

/* Creates the topic (compacted, one partition) when it does not exist; a refusal is a warning. */
int kafka_sink_ensure_checkpoint_topic(Sink *k, CdcError *err);
/* The checkpoint record's value (JSON, malloc'ed; NULL when out of memory). */
char *kafka_sink_checkpoint_value(const PipelineConf *pipe, const Checkpoint *ckpt);
/* SinkOps.last_position */
int kafka_sink_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err);
