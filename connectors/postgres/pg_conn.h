/* Opening a libpq connection for a [connector.NAME] of type postgres (shared by source and sink). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "cdcsync/connector.h"

/* Connects to conf->dsn. conf->password (when set) travels only in PQconnectdbParams' "password"
 * keyword, never inside a conninfo string that could end up in a log line. The session gets
 * client_encoding UTF8 (values cross systems as UTF-8 text), application_name "cdcsync" unless the
 * dsn names one, and connect_timeout 10 unless the dsn says otherwise. replication: open a
 * walsender connection (replication=database) for a source.
 * On success *ret owns the connection (PQfinish it). On failure fills err: kind "conf" (not
 * retriable) for an unparsable dsn, otherwise kind "connection" (retriable); the message names
 * the connector and carries libpq's text with any occurrence of the password masked. */
int pg_conn_open(const ConnectorConf *conf, bool replication, PGconn **ret, CdcError *err);

/* Copies PQerrorMessage(conn) (or a result's message when res != NULL) into buf without the
 * trailing newline, masking conf->password if it occurs. Returns buf. */
const char *pg_conn_error_text(const ConnectorConf *conf, const PGconn *conn, const PGresult *res, char *buf,
                               size_t len);
