/* The Kafka source's dead letters: a message it cannot use, produced as it was to the pipeline's
 * dead_letter_topic with headers saying where it was read and why, its delivery waited for. */
#pragma once

#include <librdkafka/rdkafka.h>

#include "cdcsync/connector.h"

/* Sets key of a librdkafka conf (the source's consumer's, the dead-letter producer's); a value
 * librdkafka refuses is a conf error naming the conf file's line and the kafka.KEY. */
int kafka_conf_set(rd_kafka_conf_t *conf, const ConnectorConf *conn, const char *key, const char *value, CdcError *err);

/* Produces m (read from topic, unusable for reason why) to pipe->dead_letter_topic and waits
 * until it is delivered. *producer is made at the first call (the connector's cluster and
 * properties, the consumer's own left out; log lines carry ctx, which must outlive it) and kept
 * for the next; dropped (NULL) after a delivery that timed out. Returns 0, or a retriable
 * connection error: the message is read again once that topic takes it. */
int kafka_dead_letter(rd_kafka_t **producer, const ConnectorConf *conn, const PipelineConf *pipe, const char *ctx,
                      const rd_kafka_message_t *m, const char *topic, const char *why, CdcError *err);
