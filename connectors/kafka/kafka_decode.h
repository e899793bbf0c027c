/* Decoding of change messages read from Kafka (cdcsync's own envelope and Debezium's, with or
 * without schemas) into the change model: pure, no I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cdcsync/change.h"

/* Bounds on what a peer may send: a message past them is refused as malformed. */
#define KAFKA_DECODE_VALUE_MAX (64u << 20) /* bytes of a message value */
#define KAFKA_DECODE_KEY_MAX (1u << 20)    /* bytes of a message key */
#define KAFKA_DECODE_COLS_MAX 1600         /* columns of a row image (PostgreSQL's limit) */

typedef struct {
        Change change;   /* owned: op, table (one reference), before/after in text form */
        int64_t ts_usec; /* source commit time (source.ts_ms, else the envelope's ts_ms), usec since
                          * the Unix epoch, at most CHANGE_TS_MAX; 0 when the message has neither */
        bool snapshot;   /* op "r": a row of the source's initial snapshot */
} KafkaDecoded;

/* Decodes one message. topic is where it was read (the table's names are taken from its last two
 * dot-separated parts when the value has no source.schema/table). key/value may be NULL.
 * Returns 1 with *ret filled (the caller owns ret->change: change_clear it), 0 when the message
 * carries no change (a tombstone, a Debezium heartbeat or logical message), or -EBADMSG with a
 * reason in errbuf when it is not a change event this decoder understands, -ENOMEM.
 *
 * Values: JSON strings become their text (Debezium's "__debezium_unavailable_value" becomes
 * VALUE_UNCHANGED), numbers keep their exact digits, booleans become "t"/"f", objects and arrays
 * their JSON text as sent, null NULL. Columns are the keys of the row image (after, or before for
 * a delete) in message order; key columns are the fields of the message key; each column's
 * TypeClass comes from its JSON type (or from the Debezium schema when the value carries one:
 * there a "bytes" field is decoded from base64 to PostgreSQL's hex form). */
int kafka_decode_message(const char *topic, const void *key, size_t key_len, const void *value, size_t value_len,
                         KafkaDecoded *ret, char *errbuf, size_t errlen);

/* Frees what d owns and zeroes it. */
void kafka_decoded_clear(KafkaDecoded *d);
