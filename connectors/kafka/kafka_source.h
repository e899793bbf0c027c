/* The Kafka source: reads change topics as a member of a consumer group and hands each message on
 * as one source transaction (see the DESIGN comment in kafka_source.c). */
#pragma once

#include "cdcsync/connector.h"

extern const SourceOps kafka_source_ops;
