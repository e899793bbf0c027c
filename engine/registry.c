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
#include "postgres/pg_sequences.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_source.h"

static const ConnectorType types[] = {
        {
                .type = "postgres",
                .source = &pg_source_ops,
                .sink = &pg_sink_ops,
                .holds_tables = true,
                .sink_versions_in_messages = false,
                .write_mark = pg_sink_write_mark,
                .conf_shared_source = pg_rules_shared_source,
                .conf_source = pg_rules_conf_source,
                .conf_place = pg_rules_conf_place,
                .shares_stream = pg_rules_shares_stream,
                .source_slot_and_publication = true,
                .source_passes_bad_messages = false,
                .sink_database_is_schema = false,
                .source_dialect = CONNECTOR_DIALECT_POSTGRES,
                .source_relation_ids = true,
                .source_lsn_is_position = true,
                .debezium_name = "postgresql",
                .conf_database = pg_rules_conf_database,
                .sync_sequences = pg_sequences_sync,
        },
        {
                .type = "mysql",
                .source = &mysql_source_ops,
                .sink = &mysql_sink_ops,
                .holds_tables = true,
                .sink_versions_in_messages = false,
                .write_mark = mysql_sink_write_mark,
                .conf_shared_source = mysql_rules_shared_source,
                .conf_source = mysql_rules_conf_source,
                .conf_place = mysql_rules_conf_place,
                .shares_stream = mysql_rules_shares_stream,
                .source_slot_and_publication = false,
                .source_passes_bad_messages = false,
                .sink_database_is_schema = true,
                .source_dialect = CONNECTOR_DIALECT_MYSQL,
                .source_relation_ids = false,
                .source_lsn_is_position = false,
                .debezium_name = "mysql",
                .conf_database = mysql_rules_conf_database,
        },
        {
                .type = "kafka",
                .source = &kafka_source_ops,
                .sink = &kafka_sink_ops,
                .holds_tables = false,
                .sink_versions_in_messages = true,
                .write_mark = kafka_rules_write_mark,
                .conf_shared_source = kafka_rules_shared_source,
                .conf_source = kafka_rules_conf_source,
                .conf_place = kafka_rules_conf_place,
                .shares_stream = kafka_rules_shares_stream,
                .source_slot_and_publication = false,
                .source_passes_bad_messages = true,
                .sink_database_is_schema = false,
                .source_dialect = CONNECTOR_DIALECT_NONE,
                .source_relation_ids = false,
                .source_lsn_is_position = false,
                .debezium_name = "kafka",
                .conf_database = kafka_rules_conf_database,
        },
};

const ConnectorType *connector_type(const char *type) {
        for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
                if (strcmp(types[i].type, type) == 0)
                        return &types[i];
        return NULL;
}
