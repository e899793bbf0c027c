/* Which connector types exist: their source and sink implementations and the facts the engine
 * asks them (connector.h's ConnectorType). The only engine file that names a type. */
#include <string.h>

#include "cdcsync/connector.h"
#include "kafka/kafka_rules.h"
#include "kafka/kafka_sink.h"
#include "kafka/kafka_source.h"
#include "mysql/mysql_rules.h"
#include "mysql/mysql_sink.h"
#include "mysql/mysql_source.h"
#include "postgres/pg_rules.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_source.h"

static const ConnectorType types[] = {
        {
                .type = "postgres",
                .source = &pg_source_ops,
                .sink = &pg_sink_ops,
                .holds_tables = true,
                .write_mark = pg_sink_write_mark,
                .conf_shared_source = pg_rules_shared_source,
                .conf_place = pg_rules_conf_place,
                .source_slot_and_publication = true,
                .source_dialect = CONNECTOR_DIALECT_POSTGRES,
                .source_relation_ids = true,
                .source_lsn_is_position = true,
                .debezium_name = "postgresql",
                .conf_database = pg_rules_conf_database,
        },
        {
                .type = "mysql",
                .source = &mysql_source_ops,
                .sink = &mysql_sink_ops,
                .holds_tables = true,
                .write_mark = mysql_sink_write_mark,
                .conf_shared_source = mysql_rules_shared_source,
                .conf_source = mysql_rules_conf_source,
                .conf_place = mysql_rules_conf_place,
                .sink_database_is_schema = true,
                .source_dialect = CONNECTOR_DIALECT_MYSQL,
                .debezium_name = "mysql",
        },
        {
                .type = "kafka",
                .source = &kafka_source_ops,
                .sink = &kafka_sink_ops,
                .sink_versions_in_messages = true,
                .shares_stream = kafka_rules_shares_stream,
                .source_passes_bad_messages = true,
        },
};

const ConnectorType *connector_type(const char *type) {
        for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
                if (strcmp(types[i].type, type) == 0)
                        return &types[i];
        return NULL;
}
