/* The Kafka message of a change: its key (the primary key as JSON) and its value (Debezium's JSON
 * envelope with schemas disabled), built by pure functions from the change model. */
#pragma once

#include <stdint.h>

#include "cdcsync/change.h"
#include "cdcsync/strbuf.h"
#include "cdcsync/vclock.h"

/* Debezium's placeholder for a PostgreSQL TOAST column that an update did not send (its value is
 * unknown to the source, so it cannot be in the message). */
#define ENVELOPE_UNAVAILABLE "__debezium_unavailable_value"

/* Upper bound of a topic name (Kafka's limit). */
#define ENVELOPE_TOPIC_MAX 249

/* What the "source" block of every value says. All strings are borrowed. */
typedef struct {
        const char *connector; /* "postgresql" or "mysql" (Debezium's names) */
        const char *name;      /* the source connector's name in the conf */
        const char *db;        /* database name; NULL: null. MySQL: ignored, the table's schema is its db */
        const char *pos_text;  /* the change's own position ("0/16B3748", "mysql-bin.000002:344": MySQL
                                * sends it as "file" and "pos" fields),
                                * or the commit position when the change's is unknown */
        const char *sequence;  /* "[\"<commit position>\",\"<index in txn>\"]" as Debezium's
                                * "sequence"; NULL: omitted */
        const VClock *vclock;  /* the row's version vector, as "cdcsync_vclock":{"node":counter,...}
                                * (prefixed so it cannot meet a future Debezium field); NULL: omitted */
} EnvelopeSource;

/* The message key: the key columns of the row as a JSON object, e.g. {"id":42}, taken from the
 * after image (insert, update) or the before image (delete). *ret = NULL (no key: the message is
 * partitioned at random) for a truncate and for a table without key columns. *ret is malloc'd,
 * owned by the caller. Returns 0, -ENOMEM, or -EINVAL when the image that holds the key is
 * missing. */
int envelope_key(const Change *c, char **ret);

/* The message value: {"before":…,"after":…,"source":{…},"op":"c|u|d|t|r","ts_ms":now_ms}.
 * A change of a snapshot transaction (txn->snapshot) is a read, op "r". *ret is malloc'd, owned
 * by the caller. Returns 0 or -ENOMEM. */
int envelope_value(const Change *c, const TxnInfo *txn, const EnvelopeSource *src, int64_t now_ms, char **ret);

/* envelope_value() appended to b, the caller's: a sink reuses one buffer from message to message
 * instead of growing a new one for each. Returns 0 or -ENOMEM (b->oom). */
int envelope_value_buf(StrBuf *b, const Change *c, const TxnInfo *txn, const EnvelopeSource *src, int64_t now_ms);

/* Whether an update changes the row's key: the sink then sends, like Debezium, a delete of the
 * old key (with its tombstone) and a create of the new one, so each key's history stays in one
 * partition. */
bool envelope_key_changed(const Change *c);

/* One column value as JSON text (what before/after hold for it), for tests and diagnostics.
 * *ret malloc'd. Returns 0 or -ENOMEM. */
int envelope_value_json(const Column *col, const Value *v, char **ret);

/* Expands a topic template ("cdc.{connector}.{schema}.{table}") into ret (len bytes). Characters
 * Kafka does not allow in a topic name ([A-Za-z0-9._-] only) are replaced by '_'. Returns 0,
 * -EINVAL for an unknown {placeholder} or an empty result, -ENAMETOOLONG past
 * ENVELOPE_TOPIC_MAX. */
int envelope_topic(const char *tmpl, const char *connector, const char *schema, const char *table, char *ret,
                   size_t len);
