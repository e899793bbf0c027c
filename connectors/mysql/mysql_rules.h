/* A MySQL/MariaDB connector's conf rules: what conf_load and guard.h ask of its type
 * (ConnectorType in connector.h). */
#pragma once

#include "cdcsync/connector.h"

/* Two pipelines reading one connector would read the binlog with one server_id. */
int mysql_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len);
/* A connector read as a source needs a server_id. */
int mysql_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                            size_t len);
/* The place its conf text tells: the same host and port is the same server, whose tables name
 * their database. */
int mysql_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret);
/* Never: each pipeline reads the binlog as its own replica, which is sent every change. */
bool mysql_rules_shares_stream(const PipelineConf *a, const PipelineConf *b);
/* The `database` key (tables name their database; the key names the one a sink writes into). */
int mysql_rules_conf_database(const ConnectorConf *conn, char **ret);
