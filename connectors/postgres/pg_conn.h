/* Opening a libpq connection for a [connector.NAME] of type postgres (shared by source and sink). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "cdcsync/connector.h"

/* What a connection is for, which decides the settings it pins (flags, or'ed). */
enum {
        PG_CONN_SQL = 0,              /* a sink's or the checker's SQL session */
        PG_CONN_SOURCE = 1 << 0,      /* reads values for a source (snapshot, catalogue, walsender) */
        PG_CONN_REPLICATION = 1 << 1, /* a walsender connection (replication=database) */
};

/* Connects to conf->dsn. conf->password (when set) travels only in PQconnectdbParams' "password"
 * keyword, never inside a conninfo string that could end up in a log line. The session gets
 * client_encoding UTF8 (values cross systems as UTF-8 text), application_name "cdcsync" unless the
 * dsn names one, and, unless the dsn says otherwise, connect_timeout min(timeout_s, 10) (at least 2)
 * and TCP keepalives and tcp_user_timeout that notice a vanished peer within about timeout_s.
 * Every setting that changes the text form of a value (output and input functions run with the
 * session's settings, in the walsender too) is pinned through the startup "options", after the
 * dsn's own (or PGOPTIONS), so no server, database or role default can change a value on its way:
 * DateStyle ISO, IntervalStyle postgres, extra_float_digits 3, TimeZone UTC, bytea_output hex,
 * lc_monetary C, standard_conforming_strings on, xmloption content, array_nulls on; a source's
 * connections also search_path pg_catalog (regclass and other reg* values print qualified; a
 * sink keeps its search_path for the users' triggers). The pinned values are then read back: a
 * server or pooler that dropped them fails the connection (kind "conf", not retriable) rather
 * than let values be read or written in another form.
 * flags: PG_CONN_*; PG_CONN_REPLICATION opens a walsender connection for a source.
 * On success *ret owns the connection (PQfinish it). On failure fills err: kind "conf" (not
 * retriable) for an unparsable dsn or settings that did not hold, otherwise kind "connection"
 * (retriable); the message names the connector and carries libpq's text with any occurrence of
 * the password masked. */
int pg_conn_open(const ConnectorConf *conf, unsigned flags, PGconn **ret, CdcError *err);

/* Copies PQerrorMessage(conn) (or a result's message when res != NULL) into buf without the
 * trailing newline, masking conf->password if it occurs. Returns buf. */
const char *pg_conn_error_text(const ConnectorConf *conf, const PGconn *conn, const PGresult *res, char *buf,
                               size_t len);

/* SourceOps/SinkOps.locate: the cluster's system identifier and the database, over a connection
 * of its own. */
int pg_conn_locate(const ConnectorConf *conf, ConnectorPlace *ret, CdcError *err);
/* SourceOps.list_tables: the ordinary and partitioned tables outside the system schemas and
 * cdcsync's own, as "schema.table". */
int pg_conn_list_tables(const ConnectorConf *conf, char ***ret, int *ret_n, CdcError *err);
