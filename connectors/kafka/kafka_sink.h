/* The Kafka sink: publishes each change as a Debezium-envelope message, one topic per table. */
#pragma once

#include "cdcsync/connector.h"

/* DESIGN: one Sink is one idempotent librdkafka producer, used only by its pipeline's sink thread
 * (delivery reports run in that thread too, inside rd_kafka_poll/flush, so the batch counters
 * need no locking).
 * - apply() produces without waiting: key = primary key as JSON, value = the envelope, headers
 *   cdcsync.position (commit position of the source transaction), cdcsync.sequence (index of the
 *   change in it) and cdcsync.source. A delete is followed by a tombstone; an update that changes
 *   the key becomes a delete of the old key, its tombstone and a create of the new key (as in
 *   Debezium). A full local queue is waited out by polling, never forever.
 * - commit() closes the batch and returns at once, so the next batch is produced while this
 *   one's delivery reports come in. Each batch (a ring slot, the opaque of its messages) counts
 *   its messages and their reports. Once a batch and every earlier one have all their reports,
 *   and all were successful, the checkpoint {pipeline: position} of the newest such batch goes to
 *   the compacted topic cdcsync.checkpoints (one partition, key = pipeline name; one checkpoint
 *   in flight at a time). poll_durable() reports the batch of the newest delivered checkpoint:
 *   only then is it (and everything before it) durable. A failed report fails every later poll:
 *   the attempt ends and re-reads from the last durable position.
 * - last_position() reads that topic's partition back from its end (the position, not its text).
 * - Each table's topic is worked out once (a TopicEntry, also every message's opaque, so a failed
 *   delivery names its table); the topics of the tables the conf lists get a handle at open, so
 *   their metadata is fetched before the first batch. The row's version (Change.version) goes
 *   into the envelope as source.cdcsync_vclock.
 * - A topic that does not exist and cannot be created fails the batch with a retriable error
 *   naming topic and table: the pipeline retries with backoff and, once the topic exists,
 *   resumes from the last checkpoint (nothing past it was acknowledged).
 * Guarantee: at-least-once. Kafka has no transaction here that could hold the data and the
 * checkpoint together, so a crash between a batch's delivery and its checkpoint sends the batch
 * again: a consumer may see repeats (same cdcsync.position + cdcsync.sequence), never a gap, and
 * each key's messages stay in order (idempotent producer, one partition per key). */
extern const SinkOps kafka_sink_ops;

/* The topic holding every pipeline's checkpoint. */
#define KAFKA_SINK_CHECKPOINT_TOPIC "cdcsync.checkpoints"
