/* A MySQL/MariaDB connector's conf rules (see mysql_rules.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/guard.h"
#include "mysql/mysql_rules.h"

int mysql_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len) {
        const ConnectorConf *k = later->source;
        snprintf(msg, len,
                 "pipelines %s and %s both read %s with server_id %u — the server drops one of them: give each "
                 "pipeline its own [connector.*] with its own server_id",
                 earlier->name, later->name, k->name, k->server_id);
        return 1;
}

/* server_id is the connector's id as a replica of the server, and also the mark on the writes of
 * a sink whose writes a reverse pipeline reads back (the sink of a bidirectional pipeline is the
 * source of its reverse, so this covers it). The sink of one-way pipelines may go without: it
 * writes unmarked. A server_id that is set but not valid was reported where it is set. */
int mysql_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                            size_t len) {
        for (; *set; set++)
                if (strcmp(*set, "server_id") == 0)
                        return 0;
        snprintf(msg, len,
                 "[connector.%s] has no server_id — add server_id = 1..4294967295: pipeline %s reads the server's "
                 "binlog as a replica with that id",
                 conn->name, reader->name);
        return 1;
}

int mysql_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, GuardPlace *ret) {
        snprintf(buf, len, "mysql %s:%d", conn->host ? conn->host : "localhost", conn->port);
        *ret = (GuardPlace){buf, NULL, "the same host and port", "the same host and port"};
        return 0;
}

bool mysql_rules_shares_stream(const PipelineConf *a, const PipelineConf *b) {
        (void)a, (void)b;
        return false;
}

int mysql_rules_conf_database(const ConnectorConf *conn, char **ret) {
        *ret = conn->database ? strdup(conn->database) : NULL;
        return conn->database && !*ret ? -ENOMEM : 0;
}
