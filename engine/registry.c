/* Which connector types exist: their source and sink implementations and the facts the engine
 * asks them (connector.h's ConnectorType). The only engine file that names a type. */
#include <string.h>

#include "cdcsync/connector.h"
#include "kafka/kafka_sink.h"
#include "kafka/kafka_source.h"
#include "mysql/mysql_sink.h"
#include "mysql/mysql_source.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_source.h"

static const ConnectorType types[] = {
        {
                .type = "postgres",
                .source = &pg_source_ops,
                .sink = &pg_sink_ops,
                .holds_tables = true,
                .write_mark = pg_sink_write_mark,
        },
        {
                .type = "mysql",
                .source = &mysql_source_ops,
                .sink = &mysql_sink_ops,
                .holds_tables = true,
                .write_mark = mysql_sink_write_mark,
        },
        {
                .type = "kafka",
                .source = &kafka_source_ops,
                .sink = &kafka_sink_ops,
                .sink_versions_in_messages = true,
        },
};

const ConnectorType *connector_type(const char *type) {
        for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
                if (strcmp(types[i].type, type) == 0)
                        return &types[i];
        return NULL;
}
