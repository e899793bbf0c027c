/* A Kafka connector's conf rules: what guard.h asks of its type (ConnectorType in connector.h). */
#pragma once

#include "cdcsync/connector.h"

/* Two pipelines reading Kafka as members of one consumer group of one cluster share its
 * partitions: each change is read once, by one of them. */
bool kafka_rules_shares_stream(const PipelineConf *a, const PipelineConf *b);
