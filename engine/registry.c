/* Which connector types exist, and their source and sink implementations. */
#include <string.h>

#include "cdcsync/connector.h"
#include "kafka/kafka_sink.h"
#include "kafka/kafka_source.h"
#include "mysql/mysql_sink.h"
#include "mysql/mysql_source.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_source.h"

static const struct {
        const char *type;
        const SourceOps *source;
        const SinkOps *sink;
} connectors[] = {
        {"postgres", &pg_source_ops, &pg_sink_ops},
        {"mysql", &mysql_source_ops, &mysql_sink_ops},
        {"kafka", &kafka_source_ops, &kafka_sink_ops},
};

const SourceOps *connector_source(const char *type) {
        for (size_t i = 0; i < sizeof(connectors) / sizeof(connectors[0]); i++)
                if (strcmp(connectors[i].type, type) == 0)
                        return connectors[i].source;
        return NULL;
}

const SinkOps *connector_sink(const char *type) {
        for (size_t i = 0; i < sizeof(connectors) / sizeof(connectors[0]); i++)
                if (strcmp(connectors[i].type, type) == 0)
                        return connectors[i].sink;
        return NULL;
}
