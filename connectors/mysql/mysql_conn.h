/* Connection helpers shared by the MySQL source and sink: connect from the conf, and run a
 * parameterised query whose rows come back as text. */
#pragma once

#include <mysql.h>

#include "cdcsync/connector.h"

/* Connects to conn's host:port as its user with its password (never logged), the conf's
 * ssl_mode, read and write timeouts of timeout_s (connect: at most 10 s) and TCP keepalives;
 * database may be NULL. The session's settings that change values are then pinned
 * (see pin_session in mysql_conn.c): utf8mb4, time_zone +00:00, a strict sql_mode without any
 * mode that changes values or our SQL, no sql_select_limit, explicit_defaults_for_timestamp on
 * MariaDB. *ret untouched on failure. Returns 0 or a CdcError code ("connection", retriable;
 * "conf" for refused credentials or settings the server refuses). */
int mysql_conn_open(const ConnectorConf *conn, const char *database, MYSQL **ret, CdcError *err);
/* mysql_conn_open with client capability flags for the handshake (e.g. CLIENT_FOUND_ROWS). With
 * CLIENT_LOCAL_FILES the session may run LOAD DATA LOCAL, and its file requests are refused
 * (mysql_conn_infile_refuse) except while a caller's own handler is set for one statement. */
int mysql_conn_open_flags(const ConnectorConf *conn, const char *database, unsigned long client_flags, MYSQL **ret,
                          CdcError *err);

/* Sets m's LOCAL INFILE handler to the one that refuses every file request. */
void mysql_conn_infile_refuse(MYSQL *m);

/* One result row: ncols text cells, NULL for SQL NULL; lens[i] is the byte length. */
typedef int (*MysqlRowFn)(void *userdata, char **cells, const unsigned long *lens, int ncols);

/* Runs sql with nparams string parameters (NULL entries bind SQL NULL) as a prepared statement
 * and calls fn for every row (fn may be NULL). Returns the number of rows, or -EIO with the
 * server's message in err (kind "query", retriable when the connection was lost). */
int mysql_conn_query(MYSQL *m, const char *sql, const char *const *params, int nparams, MysqlRowFn fn, void *userdata,
                     CdcError *err);

/* Whether a client error number means the connection is gone (reconnect can help). */
bool mysql_conn_lost(unsigned int errnum);
/* Whether a statement that failed with errnum can succeed when its transaction runs again: the
 * connection was lost, a deadlock or lock wait timeout, or (in a consistent snapshot) a table was
 * created or altered after the snapshot began (ER_TABLE_DEF_CHANGED, error 1412). */
bool mysql_conn_retry_helps(unsigned int errnum);

/* SourceOps/SinkOps.locate: MySQL's server UUID, or MariaDB's host name, port, datadir and
 * server_id (it has no UUID); database "" (tables name theirs). */
int mysql_conn_locate(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err);
/* SourceOps.list_tables: the base tables outside the system databases and cdcsync's own, as
 * "database.table". */
int mysql_conn_list_tables(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err);
