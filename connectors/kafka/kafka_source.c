/* The Kafka source: a consumer-group member that turns change messages into source transactions,
 * and commits the group's offsets only as far as the sink has durably applied.
 *
 * DESIGN. Everything here runs in the pipeline's source thread: rd_kafka_consumer_poll, and inside
 * it the rebalance callback. Nothing is shared with the engine but PipelineIO.
 *
 * Positions. Kafka offsets are per partition, the engine wants one increasing position. Each
 * message with a change becomes one source transaction (BEGIN, CHANGE, COMMIT) at position
 * {0, n}, n = base + k, k counting the attempt's messages and base = max(now in usec, sink
 * checkpoint + 1): positions keep increasing across restarts (the engine skips what is <= the
 * checkpoint) and stay below 2^63, so the row versions' counter (position_counter, hi = 0) is
 * monotonic too — an epoch in `hi` would be shifted out of that counter. Messages of one source
 * transaction are not grouped: they may sit in different partitions, and holding one back for
 * another would couple partitions that different instances read.
 *
 * Offsets. A bounded FIFO maps each handed-on position to (topic, partition, offset + 1); a
 * message that carries no change (tombstone, heartbeat, another table) maps to the last position
 * handed on before it. Offsets are committed to the group (enable.auto.commit = false,
 * enable.auto.offset.store = false, rd_kafka_commit with explicit offsets) only for entries at or
 * below pipeline_io_durable(): about once a second, on stop, and on a revoke. The engine applies
 * transactions in the order they were handed on, so a durable position covers every entry before
 * it.
 *
 * Repeats. After a crash (or a failed attempt) the messages after the last committed offset are
 * read again, some of them already applied. They are made harmless by the sink, not by row
 * versions: a repeat gets a new, higher position, so the engine's versions see a newer write and
 * let it through. Every change is therefore flagged CHANGE_IDEMPOTENT (change.h): the sink applies
 * inserts and whole-row updates as upserts and ignores updates and deletes that find no row. Per
 * key this converges: a key's messages live in one partition, are read again as a suffix in their
 * order, and each sets the row to its after image (or removes it). A sink without key columns
 * cannot do this (a repeat there may duplicate a row): such tables need a primary key.
 *
 * Rebalances (eager protocol by default; cooperative works too). On a revoke this instance stops
 * reading (it is inside poll, so nothing more is handed on), waits until everything it handed on
 * is durable in the sink, commits those offsets, and only then gives the partitions up: the next
 * owner starts exactly after what was applied here, and no late batch from here can overwrite its
 * newer writes. If the sink cannot catch up in time the attempt ends with a retriable error and
 * the partitions are given up anyway (the group would evict us past max.poll.interval.ms): the
 * pipeline restarts from the committed offsets. The consumer (and its membership) is kept across
 * rebalances, so two instances do not make each other rebalance forever.
 *
 * ha = on (lease.h): only the holder of the pipeline's lease (kept in its sink) runs the source,
 * so it joins no group: it assigns itself every partition of the matching topics, from the
 * group's committed offsets, the moment it holds the lease, and looks for new topics and
 * partitions every ASSIGN_REFRESH_MS. Through a group it would get them only once the group had
 * waited out the dead leader's session. Without a membership no generation fences its offset
 * commits, so they are made only while pipeline_io_lease_current() (a leader resumed after a
 * freeze finds its lease too old by its own clock and commits nothing); its sink commits are
 * fenced by the lease itself.
 *
 * Instances that share a group are distinct pipelines (a database sink keeps one checkpoint and
 * replication origin per pipeline) with the same `group`. Where to read comes from the group's
 * offsets, never from the sink's checkpoint: that only keeps positions increasing.
 *
 * Bad messages. A message that is no change event this source can use (not JSON, no op, an empty
 * value, a schema with a null payload, ...) stops the pipeline with an error naming its topic,
 * partition and offset, unless on_bad_message says to skip it (counted, logged) or to produce it
 * to the dead-letter topic first (a producer of its own, made at the first one; the offset is
 * passed only once the dead letter is delivered). Tombstones, Debezium heartbeats and logical
 * decoding messages carry no change and are passed without a word, like the messages of tables
 * the pipeline does not sync. */
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cdcsync/log.h"
#include "kafka/envelope.h"
#include "kafka/kafka_dead_letter.h"
#include "kafka/kafka_decode.h"
#include "kafka/kafka_rules.h"
#include "kafka/kafka_source.h"

#define DEFAULT_TOPIC "cdc.{connector}.{schema}.{table}"
#define OFFSET_MAP_MAX 65536 /* handed-on messages whose offsets wait for the sink */
#define TOPICS_MAX 4096      /* distinct topics one source reads */
#define COMMIT_EVERY_MS 1000
#define REVOKE_WAIT_MS 60000 /* how long a revoke waits for the sink to commit */
#define POLL_MS 200
#define METADATA_TIMEOUT_MS 10000
#define ASSIGN_REFRESH_MS 5000 /* ha = on: how often new topics and partitions are looked for */
#define STATS_INTERVAL_MS 1000

typedef struct {
        uint64_t pos;   /* position lo handed on (or the one before a skipped message) */
        uint32_t topic; /* index into Source.topics */
        int32_t partition;
        int64_t next; /* offset to commit: the message's offset + 1 */
} OffsetEntry;

struct Source {
        const ConnectorConf *conn; /* borrowed, outlives the source */
        const PipelineConf *pipe;  /* borrowed */
        char ctx[256];
        char group[256];
        rd_kafka_t *rk;  /* consumer, owned */
        rd_kafka_t *dlq; /* producer of dead letters, owned; made at the first one */
        PipelineIO *io;  /* during run() */
        char **topics;   /* owned: interned topic names, ntopics entries */
        uint32_t ntopics;
        OffsetEntry *map; /* owned ring, OFFSET_MAP_MAX entries */
        size_t head, count;
        uint64_t next_pos; /* lo of the next transaction */
        uint64_t last_pos; /* lo of the last one handed on (or the durable start) */
        int64_t last_commit_ms;
        int64_t broker_up_ms; /* mono ms: a broker last answered (statistics) */
        uint64_t broker_rx;   /* responses received from all brokers, as of broker_up_ms */
        bool unresponsive;    /* the attempt ended for brokers that stopped answering */
        int64_t rx_ms;        /* mono ms: a broker last answered in this attempt; 0: none yet */
        bool revoke_failed;
        int nassigned;
        bool ha;                /* ha = on: partitions assigned here, no group membership */
        int64_t assigned_ms;    /* ha = on: mono ms of the last look for topics and partitions */
        bool lease_lost_logged; /* an offset commit was left out: the lease may have moved on */
};

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        const Source *s = rd_kafka_opaque(rk);
        LogLevel l = level <= 3 ? LOG_LEVEL_ERROR : level == 4 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG;
        log_msg(l, s ? s->ctx : NULL, "kafka %s: %s", fac, buf);
}

/* ---- topics ---- */

/* Appends to re the topic template with every character escaped for a POSIX ERE, placeholders
 * replaced: {connector} by "any name", {schema}/{table} by the given names or "any name". */
static int template_regex(const char *tmpl, const char *schema, const char *table, char *re, size_t len) {
        size_t n = 0;
        const char *any = "[^.]+";
        if (n + 1 >= len)
                return -ENAMETOOLONG;
        re[n++] = '^';
        for (const char *p = tmpl; *p;) {
                const char *piece = NULL;
                bool literal = false;
                if (strncmp(p, "{connector}", 11) == 0) {
                        piece = any;
                        p += 11;
                } else if (strncmp(p, "{schema}", 8) == 0) {
                        piece = schema ? schema : any;
                        literal = schema != NULL;
                        p += 8;
                } else if (strncmp(p, "{table}", 7) == 0) {
                        piece = table ? table : any;
                        literal = table != NULL;
                        p += 7;
                }
                if (piece && !literal) {
                        size_t pl = strlen(piece);
                        if (n + pl >= len)
                                return -ENAMETOOLONG;
                        memcpy(re + n, piece, pl);
                        n += pl;
                        continue;
                }
                const char *q = piece ? piece : p;
                size_t qn = piece ? strlen(piece) : 1;
                for (size_t i = 0; i < qn; i++) {
                        char c = q[i];
                        /* The sink replaced what a topic cannot hold by '_'. */
                        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                              c == '_' || c == '-'))
                                c = '_';
                        if (n + 3 >= len)
                                return -ENAMETOOLONG;
                        if (c == '.')
                                re[n++] = '\\';
                        re[n++] = c;
                }
                if (!piece)
                        p++;
        }
        if (n + 2 >= len)
                return -ENAMETOOLONG;
        re[n++] = '$';
        re[n] = '\0';
        return 0;
}

/* The subscription: one regex per table (all tables: one regex for the template). */
static int make_subscription(const Source *s, rd_kafka_topic_partition_list_t **ret, CdcError *err) {
        const char *tmpl = s->conn->topic ? s->conn->topic : DEFAULT_TOPIC;
        int n = s->pipe->all_tables ? 1 : s->pipe->ntables;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++) {
                char schema[256] = "", table[256] = "", re[1024];
                if (!s->pipe->all_tables) {
                        const char *t = s->pipe->tables[i], *dot = strchr(t, '.');
                        size_t sl = dot ? (size_t)(dot - t) : 0;
                        if (!dot || sl >= sizeof(schema) || strlen(dot + 1) >= sizeof(table)) {
                                rd_kafka_topic_partition_list_destroy(l);
                                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "table %s is not schema.table", t);
                        }
                        memcpy(schema, t, sl);
                        schema[sl] = '\0';
                        snprintf(table, sizeof(table), "%s", dot + 1);
                }
                if (template_regex(tmpl, s->pipe->all_tables ? NULL : schema, s->pipe->all_tables ? NULL : table, re,
                                   sizeof(re)) < 0) {
                        rd_kafka_topic_partition_list_destroy(l);
                        return cdc_error(err, -ENAMETOOLONG, false, CDC_ERR_CONF,
                                         "connector %s: topic template too long", s->conn->name);
                }
                rd_kafka_topic_partition_list_add(l, re, RD_KAFKA_PARTITION_UA);
        }
        *ret = l;
        return 0;
}

static int intern_topic(Source *s, const char *name, uint32_t *ret) {
        for (uint32_t i = 0; i < s->ntopics; i++)
                if (strcmp(s->topics[i], name) == 0) {
                        *ret = i;
                        return 0;
                }
        if (s->ntopics >= TOPICS_MAX)
                return -E2BIG;
        char **t = realloc(s->topics, (s->ntopics + 1) * sizeof(*t));
        if (!t)
                return -ENOMEM;
        s->topics = t;
        if (!(t[s->ntopics] = strdup(name)))
                return -ENOMEM;
        *ret = s->ntopics++;
        return 0;
}

/* ---- offsets ---- */

static void map_push(Source *s, uint64_t pos, uint32_t topic, int32_t partition, int64_t next) {
        s->map[(s->head + s->count) % OFFSET_MAP_MAX] = (OffsetEntry){pos, topic, partition, next};
        s->count++;
}

/* Commits the offsets of the durable entries. async: from the poll loop, where a later commit
 * supersedes a lost one; sync on a revoke and at the end, where it is the last word. A failed
 * commit is not retried: the next owner then reads a few applied messages again, which the
 * idempotent apply makes harmless (and retrying a commit of a stale generation would keep the
 * consumer rejoining). */
static int commit_durable(Source *s, bool async) {
        Position durable = pipeline_io_durable(s->io);
        rd_kafka_topic_partition_list_t *l = NULL;
        int r = 0;
        s->last_commit_ms = mono_ms();
        /* ha = on: no group generation fences these commits (no member joins), so they are made
         * only while the lease is ours by this instance's clock. A leader resumed after a freeze
         * would otherwise move the group's offsets back behind the new leader's. */
        if (!pipeline_io_lease_current(s->io)) {
                if (!s->lease_lost_logged)
                        log_info(s->ctx, "not committing offsets to group %s: this instance's lease may have moved on",
                                 s->group);
                s->lease_lost_logged = true;
                s->head = s->count = 0;
                return 0;
        }
        while (s->count && durable.hi == 0 && s->map[s->head].pos <= durable.lo) {
                const OffsetEntry *e = &s->map[s->head];
                if (!l && !(l = rd_kafka_topic_partition_list_new(16)))
                        return -ENOMEM;
                rd_kafka_topic_partition_t *tp =
                        rd_kafka_topic_partition_list_find(l, s->topics[e->topic], e->partition);
                if (!tp)
                        tp = rd_kafka_topic_partition_list_add(l, s->topics[e->topic], e->partition);
                if (e->next > tp->offset)
                        tp->offset = e->next;
                s->head = (s->head + 1) % OFFSET_MAP_MAX;
                s->count--;
        }
        if (!l)
                return 0;
        rd_kafka_resp_err_t ke = rd_kafka_commit(s->rk, l, async);
        if (ke && ke != RD_KAFKA_RESP_ERR__NO_OFFSET) {
                log_warn(s->ctx, "cannot commit offsets of group %s: %s (some messages will be read again)", s->group,
                         rd_kafka_err2str(ke));
                r = -EIO;
        }
        rd_kafka_topic_partition_list_destroy(l);
        return r;
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *offsets, void *opaque) {
        (void)rk;
        (void)offsets;
        Source *s = opaque;
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
                log_debug(s->ctx, "offset commit of group %s failed: %s", s->group, rd_kafka_err2str(e));
}

/* ---- lag ---- */

/* librdkafka's statistics (about once a second, served by the poll of the source thread) say
 * what the consumer knows without another request: per partition the high watermark, what was
 * handed to us and what is committed, and per broker whether a connection is up. A broker that
 * stops answering (a frozen path: no FIN, no RST) has its requests time out after
 * socket.timeout.ms and its connection closed; the consumer itself only retries, so a cluster
 * from which no response came for timeout_s ends the attempt. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)rk;
        Source *s = opaque;
        json_error_t jerr;
        json_t *root = json_loadb(json, len, 0, &jerr);
        if (!root)
                return 0;
        /* Responses received, all brokers together: a live consumer gets one at least every
         * fetch.wait.max.ms, even from an idle cluster. */
        const char *bname;
        json_t *b;
        uint64_t rx = 0;
        json_object_foreach(json_object_get(root, "brokers"), bname, b) {
                json_int_t n = json_integer_value(json_object_get(b, "rx"));
                rx += n > 0 ? (uint64_t)n : 0;
        }
        if (rx != s->broker_rx) {
                s->broker_rx = rx;
                s->broker_up_ms = s->rx_ms = mono_ms();
        }
        uint64_t unread = 0, behind = 0;
        const char *tname, *pname;
        json_t *t, *p;
        json_object_foreach(json_object_get(root, "topics"), tname, t) {
                json_object_foreach(json_object_get(t, "partitions"), pname, p) {
                        if (json_integer_value(json_object_get(p, "partition")) < 0 ||
                            !json_is_true(json_object_get(p, "assigned")))
                                continue;
                        json_int_t hi = json_integer_value(json_object_get(p, "hi_offset"));
                        json_int_t app = json_integer_value(json_object_get(p, "app_offset"));
                        json_int_t lag = json_integer_value(json_object_get(p, "consumer_lag"));
                        if (hi >= 0 && app >= 0 && hi > app)
                                unread += (uint64_t)(hi - app);
                        else if (hi >= 0 && app < 0 && lag > 0)
                                unread += (uint64_t)lag; /* nothing handed to us yet */
                        if (lag > 0)
                                behind += (uint64_t)lag;
                }
        }
        json_decref(root);
        /* The figures are the consumer's own: they speak for the source only while its brokers
         * answer (lag then counts from the last time they did). */
        if (s->io && s->rx_ms && mono_ms() - s->rx_ms <= 2 * STATS_INTERVAL_MS + 500)
                pipeline_io_report_backlog(s->io, unread, behind > unread ? behind : unread);
        return 0; /* librdkafka frees json */
}

static int check_brokers(Source *s, CdcError *err) {
        if (mono_ms() - s->broker_up_ms <= conf_timeout_ms(s->conn) + STATS_INTERVAL_MS)
                return 0;
        s->unresponsive = true;
        return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                         "kafka connector %s: no broker has answered for %d s (timeout_s): the network path or the "
                         "brokers are not responding",
                         s->conn->name, conf_timeout_ms(s->conn) / 1000);
}

/* ---- rebalances ---- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts, void *opaque) {
        Source *s = opaque;
        bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                log_info(s->ctx, "group %s assigned %d partition(s) here", s->group, parts->cnt);
                if (cooperative)
                        rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
                else
                        rd_kafka_assign(rk, parts);
                s->nassigned += parts->cnt;
                return;
        }
        /* Revoked (or lost): what was handed on must be durable before the next owner starts. */
        int64_t deadline = mono_ms() + REVOKE_WAIT_MS;
        bool lost = e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && rd_kafka_assignment_lost(rk);
        while (s->io && !pipeline_io_stopping(s->io) && !lost) {
                Position d = pipeline_io_durable(s->io);
                if (d.hi == 0 && d.lo >= s->last_pos)
                        break;
                if (mono_ms() > deadline) {
                        s->revoke_failed = true;
                        break;
                }
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
        }
        /* A lost assignment (our session timed out) cannot be committed for any more: the
         * commit would only wait for a coordinator that may not answer. */
        if (s->io && !lost)
                commit_durable(s, false);
        /* Whatever is left (lost partitions, or a sink that did not catch up) must never be
         * committed later, over the next owner's progress. */
        s->head = s->count = 0;
        log_info(s->ctx, "group %s revoked %d partition(s) here%s%s", s->group, parts->cnt,
                 s->revoke_failed ? " before the sink committed what was read from them" : "",
                 lost ? " (lost: this member's session had ended; nothing committed)" : "");
        if (cooperative)
                rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else
                rd_kafka_assign(rk, NULL);
        s->nassigned = cooperative ? s->nassigned - parts->cnt : 0;
}

/* ---- ha = on: assigned partitions ---- */

/* Assigns here every partition of the topics that match the subscription's patterns and is not
 * assigned yet, each from the offset the group has committed (auto.offset.reset where none).
 * Only the lease holder runs the source, so no group protocol has to make it the partitions'
 * only reader: it reads them the moment it holds the lease, rather than after the group has
 * waited out the dead leader's session (and, for a group that emptied, its initial rebalance
 * delay). Returns the number of partitions added, or a negative error. */
static int assign_matching(Source *s, const rd_kafka_topic_partition_list_t *sub, CdcError *err) {
        const rd_kafka_metadata_t *md = NULL;
        int timeout = conf_timeout_ms(s->conn) < METADATA_TIMEOUT_MS ? conf_timeout_ms(s->conn) : METADATA_TIMEOUT_MS;
        s->assigned_ms = mono_ms();
        rd_kafka_resp_err_t ke = rd_kafka_metadata(s->rk, 1, NULL, &md, timeout);
        if (ke)
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                                 "kafka connector %s: cannot read the cluster's topics: %s", s->conn->name,
                                 rd_kafka_err2str(ke));
        rd_kafka_topic_partition_list_t *have = NULL, *add = rd_kafka_topic_partition_list_new(16);
        regex_t *res = calloc((size_t)sub->cnt, sizeof(*res));
        int nres = 0, r = 0;
        if (!add || !res) {
                r = cdc_oom(err);
                goto out;
        }
        for (; nres < sub->cnt; nres++)
                if (regcomp(&res[nres], sub->elems[nres].topic, REG_EXTENDED | REG_NOSUB) != 0) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: topic pattern %s is no regex",
                                      s->conn->name, sub->elems[nres].topic);
                        goto out;
                }
        ke = rd_kafka_assignment(s->rk, &have);
        if (ke) {
                r = cdc_error(err, -EIO, true, CDC_ERR_INTERNAL, "kafka consumer: cannot read its assignment: %s",
                              rd_kafka_err2str(ke));
                goto out;
        }
        for (int t = 0; t < md->topic_cnt; t++) {
                const rd_kafka_metadata_topic_t *mt = &md->topics[t];
                bool match = false;
                if (mt->err)
                        continue;
                for (int i = 0; i < nres && !match; i++)
                        match = regexec(&res[i], mt->topic, 0, NULL, 0) == 0;
                for (int i = 0; match && i < mt->partition_cnt; i++)
                        if (!rd_kafka_topic_partition_list_find(have, mt->topic, mt->partitions[i].id))
                                rd_kafka_topic_partition_list_add(add, mt->topic, mt->partitions[i].id)->offset =
                                        RD_KAFKA_OFFSET_INVALID; /* the group's committed offset */
        }
        if (add->cnt) {
                rd_kafka_error_t *e = rd_kafka_incremental_assign(s->rk, add);
                if (e) {
                        r = cdc_error(err, -EIO, true, CDC_ERR_INTERNAL, "kafka consumer: cannot assign partitions: %s",
                                      rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        goto out;
                }
                s->nassigned += add->cnt;
                log_info(s->ctx,
                         "reading %d more partition(s) here (%d in all) as the lease holder, from the offsets "
                         "of group %s",
                         add->cnt, s->nassigned, s->group);
        }
        r = add->cnt;
out:
        for (int i = 0; i < nres; i++)
                regfree(&res[i]);
        free(res);
        if (add)
                rd_kafka_topic_partition_list_destroy(add);
        if (have)
                rd_kafka_topic_partition_list_destroy(have);
        rd_kafka_metadata_destroy(md);
        return r;
}

/* ---- lifecycle ---- */

/* Leaves the group now rather than after session.timeout.ms (the revoke commits what is durable
 * when a run() is still attached), but for at most timeout_s: rd_kafka_consumer_close() waits
 * for the group coordinator without a bound, and a frozen one would hold the pipeline forever.
 * A consumer that could not leave is destroyed all the same; the group evicts it later. */
static void consumer_close(Source *s) {
        /* Brokers known not to answer would only make the pipeline wait timeout_s more. */
        rd_kafka_queue_t *q = s->unresponsive ? NULL : rd_kafka_queue_new(s->rk);
        rd_kafka_error_t *e = q ? rd_kafka_consumer_close_queue(s->rk, q) : NULL;
        if (!q || e) {
                if (e)
                        rd_kafka_error_destroy(e);
        } else {
                int64_t deadline = mono_ms() + conf_timeout_ms(s->conn);
                while (!rd_kafka_consumer_closed(s->rk) && mono_ms() < deadline) {
                        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
                        if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                                on_rebalance(s->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev),
                                             s);
                        if (ev)
                                rd_kafka_event_destroy(ev);
                }
        }
        bool closed = rd_kafka_consumer_closed(s->rk);
        if (!closed && s->unresponsive)
                log_warn(s->ctx,
                         "left consumer group %s without telling its coordinator, which does not answer: the group "
                         "evicts this member once its session times out",
                         s->group);
        else if (!closed)
                log_warn(s->ctx,
                         "could not leave consumer group %s within %d s (timeout_s): the group will evict "
                         "this member once its session times out",
                         s->group, conf_timeout_ms(s->conn) / 1000);
        if (q)
                rd_kafka_queue_destroy(q);
        rd_kafka_destroy_flags(s->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static Source *kafka_source_free(Source *s) {
        if (!s)
                return NULL;
        if (s->rk)
                consumer_close(s);
        if (s->dlq)
                rd_kafka_destroy(s->dlq);
        for (uint32_t i = 0; i < s->ntopics; i++)
                free(s->topics[i]);
        free(s->topics);
        free(s->map);
        free(s);
        return NULL;
}

static int make_consumer(Source *s, bool check, CdcError *err) {
        const ConnectorConf *conn = s->conn;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[512], client_id[256];
        int r = 0;
        if (!conn->brokers) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s:%d: connector %s has no brokers", conn->file,
                              conn->line, conn->name);
                goto out;
        }
        snprintf(client_id, sizeof(client_id), "cdcsync-%s%s", s->pipe->name, check ? "-check" : "");
        char socket_timeout[16];
        snprintf(socket_timeout, sizeof(socket_timeout), "%d", conf_timeout_ms(conn));
        const char *defaults[][2] = {
                {"bootstrap.servers", conn->brokers},
                {"client.id", client_id},
                {"group.id", s->group},
                {"enable.auto.commit", "false"},
                {"enable.auto.offset.store", "false"},
                {"auto.offset.reset", "earliest"},
                /* Bounded memory: prefetch per partition. */
                {"queued.max.messages.kbytes", "8192"},
                {"fetch.message.max.bytes", "1048576"},
                /* A broker that stops answering (no FIN, no RST) is given up on after timeout_s. */
                {"socket.timeout.ms", socket_timeout},
                {"socket.keepalive.enable", "true"},
                /* what lag and the brokers' liveness are read from (on_stats) */
                {"statistics.interval.ms", "1000"},
        };
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && r == 0; i++)
                r = kafka_conf_set(conf, conn, defaults[i][0], defaults[i][1], err);
        if (r == 0 && conn->password)
                r = kafka_conf_set(conf, conn, "sasl.password", conn->password, err);
        for (int i = 0; i < conn->nkafka_props && r == 0; i++) {
                const KeyValue *kv = &conn->kafka_props[i];
                if ((strcmp(kv->key, "enable.auto.commit") == 0 || strcmp(kv->key, "enable.auto.offset.store") == 0) &&
                    strcmp(kv->value, "false") != 0) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                      "%s:%d: connector %s: kafka.%s cannot be turned on: offsets are committed only "
                                      "once the sink holds the changes",
                                      conn->file, conn->line, conn->name, kv->key);
                        break;
                }
                /* The producer's keys (used when this connector is also a sink) are not ours. */
                if (strcmp(kv->key, "enable.idempotence") == 0 || strcmp(kv->key, "compression.type") == 0 ||
                    strcmp(kv->key, "linger.ms") == 0 || strcmp(kv->key, "acks") == 0 ||
                    strcmp(kv->key, "message.timeout.ms") == 0)
                        continue;
                r = kafka_conf_set(conf, conn, kv->key, kv->value, err);
        }
        if (r < 0)
                goto out;
        rd_kafka_conf_set_opaque(conf, s);
        rd_kafka_conf_set_log_cb(conf, on_log);
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
        rd_kafka_conf_set_stats_cb(conf, on_stats);
        s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!s->rk) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: %s", conn->name, errstr);
                goto out;
        }
        conf = NULL;
        rd_kafka_poll_set_consumer(s->rk);
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        return r;
}

/* A dead-letter topic the pipeline itself reads would send its dead letters round forever. */
static int check_dead_letter_topic(const Source *s, CdcError *err) {
        rd_kafka_topic_partition_list_t *sub = NULL;
        if (s->pipe->on_bad_message != BAD_MESSAGE_DEAD_LETTER || !s->pipe->dead_letter_topic)
                return 0;
        int r = make_subscription(s, &sub, err);
        for (int i = 0; r == 0 && i < sub->cnt; i++) {
                regex_t re;
                if (regcomp(&re, sub->elems[i].topic, REG_EXTENDED | REG_NOSUB) != 0)
                        continue;
                if (regexec(&re, s->pipe->dead_letter_topic, 0, NULL, 0) == 0)
                        r = cdc_error(err, -ELOOP, false, CDC_ERR_CONF,
                                      "dead_letter_topic %s of pipeline %s is one of the topics the pipeline reads "
                                      "(topic template of connector %s) — it would read its own dead letters back: "
                                      "set dead_letter_topic to a name outside the template",
                                      s->pipe->dead_letter_topic, s->pipe->name, s->conn->name);
                regfree(&re);
        }
        if (sub)
                rd_kafka_topic_partition_list_destroy(sub);
        return r;
}

static int source_new(const ConnectorConf *conn, const PipelineConf *pipe, bool check, Source **ret, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        int r;
        if (!s)
                return cdc_oom(err);
        s->conn = conn;
        s->pipe = pipe;
        s->ha = pipe->conf && pipe->conf->ha;
        snprintf(s->ctx, sizeof(s->ctx), "[pipeline=%s source=%s]", pipe->name, conn->name);
        if (conn->group)
                snprintf(s->group, sizeof(s->group), "%s", conn->group);
        else
                snprintf(s->group, sizeof(s->group), "cdcsync_%s", pipe->name);
        s->map = calloc(OFFSET_MAP_MAX, sizeof(*s->map));
        if (!s->map) {
                r = cdc_oom(err);
                goto fail;
        }
        r = check_dead_letter_topic(s, err);
        if (r < 0)
                goto fail;
        r = make_consumer(s, check, err);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        kafka_source_free(s);
        return r;
}

static int kafka_source_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        return source_new(conn, pipe, false, ret, err);
}

/* ---- streaming ---- */

/* Hands one decoded change on as a transaction. Returns 0, -ECANCELED when stopping. */
static int emit_txn(Source *s, KafkaDecoded *d, const rd_kafka_message_t *m) {
        Position pos = {0, s->next_pos++};
        TxnInfo txn = {.xid = pos.lo, .commit_pos = pos, .snapshot = d->snapshot};
        rd_kafka_timestamp_type_t tstype;
        int64_t mts = rd_kafka_message_timestamp(m, &tstype);
        /* the message timestamp is the producer's word: clamped like any time a peer sends */
        if (mts > CHANGE_TS_MAX / 1000)
                mts = CHANGE_TS_MAX / 1000;
        txn.commit_ts = d->ts_usec ? d->ts_usec : mts > 0 ? mts * 1000 : now_usec();
        Event ev = {.kind = EVENT_BEGIN, .txn = txn};
        int r = pipeline_io_emit(s->io, &ev);
        if (r < 0) {
                kafka_decoded_clear(d);
                return r;
        }
        ev = (Event){.kind = EVENT_CHANGE, .txn = txn, .change = d->change};
        ev.change.flags |= CHANGE_IDEMPOTENT;
        memset(&d->change, 0, sizeof(d->change));
        r = pipeline_io_emit(s->io, &ev);
        if (r < 0)
                return r;
        ev = (Event){.kind = EVENT_COMMIT, .txn = txn};
        r = pipeline_io_emit(s->io, &ev);
        if (r < 0)
                return r;
        s->last_pos = pos.lo;
        return 0;
}

static int handle_message(Source *s, const rd_kafka_message_t *m, CdcError *err) {
        const char *topic = rd_kafka_topic_name(m->rkt);
        KafkaDecoded d = {0};
        char why[512] = "";
        uint32_t ti;
        int r = intern_topic(s, topic, &ti);
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_INTERNAL, "cannot track topic %s: %s", topic, strerror(-r));
        r = kafka_decode_message(topic, m->key, m->key_len, m->payload, m->len, &d, why, sizeof(why));
        if (r == -ENOMEM)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "out of memory");
        if (r < 0 && s->pipe->on_bad_message == BAD_MESSAGE_ERROR)
                return cdc_error(err, r, false, CDC_ERR_DATA,
                                 "message at %s[%" PRId32 "] offset %" PRId64 " is no change event cdcsync can use: %s "
                                 "— fix it at its producer, then set on_bad_message = skip or dead_letter in "
                                 "[pipeline.%s] to pass such messages, or move group %s past it "
                                 "(kafka-consumer-groups --reset-offsets)",
                                 topic, m->partition, m->offset, why, s->pipe->name, s->group);
        if (r < 0) {
                bool dl = s->pipe->on_bad_message == BAD_MESSAGE_DEAD_LETTER;
                if (dl && (r = kafka_dead_letter(&s->dlq, s->conn, s->pipe, s->ctx, m, topic, why, err)) < 0)
                        return r;
                pipeline_io_count_bad_message(s->io, dl);
                log_warn(s->ctx,
                         "message at %s[%" PRId32 "] offset %" PRId64 " is no change event cdcsync can use: %s — %s%s",
                         topic, m->partition, m->offset, why,
                         dl ? "sent to dead-letter topic " : "skipped (on_bad_message = skip)",
                         dl ? s->pipe->dead_letter_topic : "");
                r = 0;
        }
        if (r == 1 && !conf_pipeline_has_table(s->pipe, d.change.table->schema, d.change.table->name)) {
                kafka_decoded_clear(&d);
                r = 0;
        }
        if (r == 1) {
                r = emit_txn(s, &d, m);
                if (r < 0)
                        return r;
        }
        /* A message without a change is committed along with the transaction before it. */
        map_push(s, s->last_pos, ti, m->partition, m->offset + 1);
        return 0;
}

static int kafka_source_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        rd_kafka_topic_partition_list_t *sub = NULL;
        int r;

        s->io = io;
        s->broker_up_ms = mono_ms();
        s->rx_ms = 0;
        uint64_t ckpt = start->have_position && start->checkpoint.pos.hi == 0 ? start->checkpoint.pos.lo : 0;
        uint64_t now = (uint64_t)now_usec();
        s->next_pos = now > ckpt ? now : ckpt + 1;
        s->last_pos = ckpt;
        s->head = s->count = 0;
        s->revoke_failed = false;
        s->lease_lost_logged = false;
        s->nassigned = 0;
        r = make_subscription(s, &sub, err);
        if (r < 0)
                goto out;
        if (s->ha) {
                log_info(s->ctx, "consuming %d topic pattern(s) with the offsets of group %s, first: %s", sub->cnt,
                         s->group, sub->elems[0].topic);
                if ((r = assign_matching(s, sub, err)) < 0)
                        goto out;
        } else {
                rd_kafka_resp_err_t ke = rd_kafka_subscribe(s->rk, sub);
                if (ke) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: cannot subscribe: %s",
                                      s->conn->name, rd_kafka_err2str(ke));
                        goto out;
                }
                log_info(s->ctx, "consuming %d topic pattern(s) as group %s, first: %s", sub->cnt, s->group,
                         sub->elems[0].topic);
        }
        pipeline_io_streaming(io, false);

        while (!pipeline_io_stopping(io)) {
                if (s->revoke_failed) {
                        r = cdc_error(err, -ETIMEDOUT, true, CDC_ERR_SOURCE,
                                      "a rebalance took partitions away before the sink committed what was read "
                                      "from them; restarting from the committed offsets");
                        goto out;
                }
                if (mono_ms() - s->last_commit_ms >= COMMIT_EVERY_MS || s->count >= OFFSET_MAP_MAX) {
                        commit_durable(s, true);
                        if ((r = check_brokers(s, err)) < 0)
                                goto out;
                }
                /* Topics made (and partitions added) since: a failed look is tried again later;
                 * brokers that stopped answering end the attempt through check_brokers. */
                if (s->ha && mono_ms() - s->assigned_ms >= ASSIGN_REFRESH_MS) {
                        CdcError e = {0};
                        if (assign_matching(s, sub, &e) < 0)
                                log_debug(s->ctx, "%s", e.message);
                }
                if (s->count >= OFFSET_MAP_MAX) {
                        /* The sink is behind by more than the map holds: wait for it. */
                        struct timespec ts = {0, 20 * 1000000L};
                        nanosleep(&ts, NULL);
                        continue;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, POLL_MS);
                if (!m)
                        continue;
                if (m->err) {
                        rd_kafka_resp_err_t me = m->err;
                        char text[512];
                        snprintf(text, sizeof(text), "%s", rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        if (me == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                continue;
                        if (me == RD_KAFKA_RESP_ERR__FATAL || me == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                            me == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
                                r = cdc_error(err, -EIO, me != RD_KAFKA_RESP_ERR__FATAL, CDC_ERR_CONNECTION,
                                              "kafka consumer of group %s: %s", s->group, text);
                                goto out;
                        }
                        log_debug(s->ctx, "kafka consumer: %s", text);
                        continue;
                }
                r = handle_message(s, m, err);
                rd_kafka_message_destroy(m);
                if (r == -ECANCELED)
                        break;
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        /* Whatever the sink committed is committed to the group; nothing more (the pipeline
         * only asks a source to stop after the sink is done). */
        commit_durable(s, false);
        if (sub)
                rd_kafka_topic_partition_list_destroy(sub);
        if (s->ha)
                rd_kafka_assign(s->rk, NULL);
        else
                rd_kafka_unsubscribe(s->rk);
        s->nassigned = 0;
        s->io = NULL;
        return r;
}

static void kafka_source_format_position(Position p, char *buf, size_t len) {
        if (p.hi)
                snprintf(buf, len, "%" PRIu64 "/%" PRIu64, p.hi, p.lo);
        else
                snprintf(buf, len, "%" PRIu64, p.lo);
}

static int kafka_source_parse_position(const char *text, Position *ret) {
        char *end;
        errno = 0;
        if (!text || *text < '0' || *text > '9')
                return -EINVAL;
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = (Position){0, v};
        return 0;
}

static int kafka_source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Source *s = NULL;
        const rd_kafka_metadata_t *md = NULL;
        int r = source_new(conn, pipe, true, &s, err);
        if (r < 0)
                return r;
        rd_kafka_resp_err_t ke = rd_kafka_metadata(s->rk, 1, NULL, &md, METADATA_TIMEOUT_MS);
        if (ke) {
                r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                              "kafka connector %s: cannot read cluster metadata: %s", conn->name, rd_kafka_err2str(ke));
                goto out;
        }
        printf("kafka %s: %d broker(s), %d topic(s); consumer group %s\n", conn->name, md->broker_cnt, md->topic_cnt,
               s->group);
        if (pipe->on_bad_message == BAD_MESSAGE_DEAD_LETTER)
                printf("pipeline %s: messages that are no usable change event go to topic %s\n", pipe->name,
                       pipe->dead_letter_topic);
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        kafka_source_free(s);
        return r;
}

/* The topics read are those of `tables`. */
static int kafka_source_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        return conf_pipeline_tables_copy(s->pipe, ret, ret_n) < 0 ? cdc_oom(err) : 0;
}

const SourceOps kafka_source_ops = {
        .type = "kafka",
        .open = kafka_source_open,
        .run = kafka_source_run,
        .format_position = kafka_source_format_position,
        .parse_position = kafka_source_parse_position,
        .check = kafka_source_check,
        .free = kafka_source_free,
        .streamed_tables = kafka_source_streamed_tables,
        .locate = kafka_rules_locate,
        .list_tables = kafka_rules_list_tables,
        .probe_open = kafka_rules_probe_open,
        .probe = kafka_rules_probe,
        .probe_free = kafka_rules_probe_free,
};
