/* A PostgreSQL connector's conf rules: what conf_load and guard.h ask of its type
 * (ConnectorType in connector.h). */
#pragma once

#include "cdcsync/connector.h"

/* Two pipelines reading one connector that names its slot would share that slot. */
int pg_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len);
/* Nothing more is needed to read one as a source: slot and publication are per pipeline. */
int pg_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                         size_t len);
/* The place its conf text tells: the same dsn is the same database. */
int pg_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret);
/* The database its dsn names (dbname, else user, as libpq defaults it); *ret NULL when it names
 * neither or does not parse. */
int pg_rules_conf_database(const ConnectorConf *conn, char **ret);
/* Never: each pipeline reads its own slot, which sends it every change. */
bool pg_rules_shares_stream(const PipelineConf *a, const PipelineConf *b);
