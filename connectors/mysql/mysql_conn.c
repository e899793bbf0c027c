/* Connection helpers shared by the MySQL source and sink. */
#include <errno.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/deadline.h"
#include "mysql/mysql_conn.h"

bool mysql_conn_lost(unsigned int errnum) {
        return errnum == CR_SERVER_GONE_ERROR || errnum == CR_SERVER_LOST || errnum == CR_CONN_HOST_ERROR ||
               errnum == CR_CONNECTION_ERROR || errnum == ER_SERVER_SHUTDOWN || errnum == CR_SERVER_LOST_EXTENDED ||
               errnum == ER_CONNECTION_KILLED || errnum == ER_QUERY_INTERRUPTED;
}

bool mysql_conn_retry_helps(unsigned int errnum) {
        return mysql_conn_lost(errnum) || errnum == ER_LOCK_DEADLOCK || errnum == ER_LOCK_WAIT_TIMEOUT ||
               errnum == ER_TABLE_DEF_CHANGED;
}

/* Every session setting that changes a value as it is read or written, set after the handshake
 * (and after the server's init_connect), whatever the server's, the user's or a proxy's defaults:
 * - NAMES utf8mb4: the text of queries, results and metadata; a server started with
 *   skip-character-set-client-handshake ignores the charset the handshake asks for;
 * - time_zone: TIMESTAMP values are read and written in the session's zone;
 * - sql_mode: PAD_CHAR_TO_FULL_LENGTH pads CHAR values read, NO_BACKSLASH_ESCAPES and ANSI_QUOTES
 *   change how our SQL is read, EMPTY_STRING_IS_NULL and the Oracle modes change values written;
 *   strict, so a value the sink cannot hold is an error, never truncated or converted;
 * - sql_select_limit: a session default below the table's size silently cuts every SELECT (the
 *   snapshot, information_schema's columns), and group_concat_max_len cuts a GROUP_CONCAT;
 * - explicit_defaults_for_timestamp (MariaDB; MySQL 8 has it on and restricts setting it): when
 *   off, a TIMESTAMP column created by create_tables becomes NOT NULL with an automatic
 *   current-time default and update, so a NULL would be stored as the time of the write. */
static int pin_session(const ConnectorConf *conn, MYSQL *m, CdcError *err) {
        static const char pin[] = "SET NAMES utf8mb4, time_zone = '+00:00', "
                                  "sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', "
                                  "sql_select_limit = 18446744073709551615, group_concat_max_len = 4294967295";
        static const char pin_mariadb[] = ", explicit_defaults_for_timestamp = 1";
        char sql[sizeof(pin) + sizeof(pin_mariadb)];
        bool mariadb = strstr(mysql_get_server_info(m), "MariaDB") != NULL;

        snprintf(sql, sizeof(sql), "%s%s", pin, mariadb ? pin_mariadb : "");
        if (mysql_query(m, sql) == 0)
                return 0;
        unsigned int e = mysql_errno(m);
        return cdc_error(err, -EIO, mysql_conn_lost(e), mysql_conn_lost(e) ? CDC_ERR_CONNECTION : CDC_ERR_CONF,
                         "mysql connector '%s': cannot pin the session settings values depend on (%s): %s (error "
                         "%u) — cdcsync reads and writes values only with them",
                         conn->name, sql, mysql_error(m), e);
}

/* The LOCAL INFILE handler of a session opened with CLIENT_LOCAL_FILES between statements that
 * load: it answers any file request with an error, so the server can never read a file of
 * cdcsync's host (the library's default handler opens the file the server names). */
static int refuse_init(void **ptr, const char *name, void *userdata) {
        (void)name;
        (void)userdata;
        *ptr = NULL;
        return 1;
}

static int refuse_read(void *ptr, char *buf, unsigned int len) {
        (void)ptr;
        (void)buf;
        (void)len;
        return -1;
}

static void refuse_end(void *ptr) {
        (void)ptr;
}

static int refuse_error(void *ptr, char *msg, unsigned int len) {
        (void)ptr;
        snprintf(msg, len, "cdcsync sends no file: LOAD DATA LOCAL only with the rows it is sending");
        return CR_UNKNOWN_ERROR;
}

void mysql_conn_infile_refuse(MYSQL *m) {
        mysql_set_local_infile_handler(m, refuse_init, refuse_read, refuse_end, refuse_error, NULL);
}

int mysql_conn_open(const ConnectorConf *conn, const char *database, MYSQL **ret, CdcError *err) {
        return mysql_conn_open_flags(conn, database, 0, ret, err);
}

int mysql_conn_open_flags(const ConnectorConf *conn, const char *database, unsigned long client_flags, MYSQL **ret,
                          CdcError *err) {
        MYSQL *m = mysql_init(NULL);
        /* A server that stops answering (a frozen path or server: no FIN, no RST) fails a read or
         * a write after timeout_s instead of holding the thread forever; on the binlog stream the
         * server's heartbeat (mysql_source.c) keeps a live idle server from looking dead. */
        unsigned int io_timeout = (unsigned)(conf_timeout_ms(conn) / 1000);
        unsigned int timeout = io_timeout < 10 ? io_timeout : 10;
        int r;
        if (!m)
                return cdc_oom(err);
        mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
        mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
        mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
        mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
        if (client_flags & CLIENT_LOCAL_FILES) {
                unsigned int on = 1;
                mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &on);
                mysql_conn_infile_refuse(m);
        }
        const char *ssl = conn->ssl_mode ? conn->ssl_mode : "preferred";
        if (strcmp(ssl, "disabled") != 0) {
                my_bool on = 1, verify = strcmp(ssl, "verify_ca") == 0 || strcmp(ssl, "verify_identity") == 0;
                if (conn->ssl_ca)
                        mysql_options(m, MYSQL_OPT_SSL_CA, conn->ssl_ca);
                if (strcmp(ssl, "preferred") != 0)
                        mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &on);
                mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
        }
        if (!mysql_real_connect(m, conn->host ? conn->host : "127.0.0.1", conn->user, conn->password, database,
                                conn->port > 0 ? (unsigned)conn->port : 3306, NULL, client_flags)) {
                unsigned int e = mysql_errno(m);
                bool auth = e == ER_ACCESS_DENIED_ERROR || e == ER_DBACCESS_DENIED_ERROR;
                r = cdc_error(err, -ECONNREFUSED, !auth, auth ? CDC_ERR_CONF : CDC_ERR_CONNECTION,
                              "mysql connector '%s': cannot connect to %s:%d as '%s': %s%s", conn->name,
                              conn->host ? conn->host : "127.0.0.1", conn->port > 0 ? conn->port : 3306,
                              conn->user ? conn->user : "", mysql_error(m),
                              auth ? " — check user, password_file and grants" : "");
                mysql_close(m);
                return r;
        }
        /* A peer gone without FIN/RST while nothing is being read (a dead host). */
        deadline_tcp_keepalive((int)mysql_get_socket(m), (int)io_timeout);
        r = pin_session(conn, m, err);
        if (r < 0) {
                mysql_close(m);
                return r;
        }
        *ret = m;
        return 0;
}

int mysql_conn_query(MYSQL *m, const char *sql, const char *const *params, int nparams, MysqlRowFn fn, void *userdata,
                     CdcError *err) {
        MYSQL_STMT *st = mysql_stmt_init(m);
        MYSQL_BIND *pb = NULL, *rb = NULL;
        MYSQL_RES *meta = NULL;
        char **cells = NULL;
        unsigned long *lens = NULL;
        my_bool *nulls = NULL;
        int ncols = 0, rows = 0, r;

        if (!st)
                return cdc_oom(err);
        if (mysql_stmt_prepare(st, sql, strlen(sql)))
                goto fail;
        if (nparams > 0) {
                pb = calloc((size_t)nparams, sizeof(*pb));
                if (!pb)
                        goto oom;
                for (int i = 0; i < nparams; i++) {
                        pb[i].buffer_type = params[i] ? MYSQL_TYPE_STRING : MYSQL_TYPE_NULL;
                        pb[i].buffer = (void *)params[i];
                        pb[i].buffer_length = params[i] ? strlen(params[i]) : 0;
                }
                if (mysql_stmt_bind_param(st, pb))
                        goto fail;
        }
        if (mysql_stmt_execute(st))
                goto fail;
        meta = mysql_stmt_result_metadata(st);
        if (!meta) {
                r = 0;
                goto out;
        }
        my_bool on = 1;
        mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
        if (mysql_stmt_store_result(st))
                goto fail;
        ncols = (int)mysql_num_fields(meta);
        MYSQL_FIELD *fields = mysql_fetch_fields(meta);
        rb = calloc((size_t)ncols, sizeof(*rb));
        cells = calloc((size_t)ncols, sizeof(*cells));
        lens = calloc((size_t)ncols, sizeof(*lens));
        nulls = calloc((size_t)ncols, sizeof(*nulls));
        if (!rb || !cells || !lens || !nulls)
                goto oom;
        for (int i = 0; i < ncols; i++) {
                size_t cap = fields[i].max_length + 1;
                cells[i] = malloc(cap);
                if (!cells[i])
                        goto oom;
                rb[i].buffer_type = MYSQL_TYPE_STRING;
                rb[i].buffer = cells[i];
                rb[i].buffer_length = cap;
                rb[i].length = &lens[i];
                rb[i].is_null = &nulls[i];
        }
        if (mysql_stmt_bind_result(st, rb))
                goto fail;
        for (;;) {
                int f = mysql_stmt_fetch(st);
                if (f == MYSQL_NO_DATA)
                        break;
                if (f == 1)
                        goto fail;
                /* MYSQL_DATA_TRUNCATED cannot happen: buffers are sized from max_length */
                char *row[ncols > 0 ? ncols : 1];
                for (int i = 0; i < ncols; i++) {
                        row[i] = nulls[i] ? NULL : cells[i];
                        if (!nulls[i])
                                cells[i][lens[i] < rb[i].buffer_length ? lens[i] : rb[i].buffer_length - 1] = '\0';
                }
                if (fn) {
                        r = fn(userdata, row, lens, ncols);
                        if (r < 0)
                                goto out;
                }
                rows++;
        }
        r = rows;
        goto out;
oom:
        r = cdc_oom(err);
        goto out;
fail : {
        unsigned int e = mysql_stmt_errno(st);
        r = cdc_error(err, -EIO, mysql_conn_lost(e), CDC_ERR_QUERY, "query failed: %s (error %u)", mysql_stmt_error(st),
                      e);
}
out:
        if (cells)
                for (int i = 0; i < ncols; i++)
                        free(cells[i]);
        free(cells);
        free(lens);
        free(nulls);
        free(rb);
        free(pb);
        if (meta)
                mysql_free_result(meta);
        mysql_stmt_close(st);
        return r;
}

typedef struct {
        char **v; /* owned strings */
        int n;
        char cells[4][256];
} Rows;

static int keep_row(void *userdata, char **cells, const unsigned long *lens, int ncols) {
        Rows *rows = userdata;
        (void)lens;
        if (rows->n == 0)
                for (int i = 0; i < ncols && i < 4; i++)
                        snprintf(rows->cells[i], sizeof(rows->cells[i]), "%s", cells[i] ? cells[i] : "");
        char **v = reallocarray(rows->v, (size_t)rows->n + 2, sizeof(*v));
        if (!v)
                return -ENOMEM;
        rows->v = v;
        if (!(v[rows->n] = strdup(cells[0] ? cells[0] : "")))
                return -ENOMEM;
        v[++rows->n] = NULL;
        return 0;
}

static void rows_free(Rows *rows) {
        for (int i = 0; i < rows->n; i++)
                free(rows->v[i]);
        free(rows->v);
        rows->v = NULL;
        rows->n = 0;
}

int mysql_conn_locate(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err) {
        MYSQL *m;
        Rows rows = {0};
        int r = mysql_conn_open(conn, NULL, &m, err);
        if (r < 0)
                return r;
        bool mariadb = strstr(mysql_get_server_info(m), "MariaDB") != NULL;
        ret->database[0] = '\0'; /* tables name their database */
        /* MySQL has a server UUID; MariaDB has none, so where it listens and keeps its files. */
        if (!mariadb && (r = mysql_conn_query(m, "SELECT @@server_uuid", NULL, 0, keep_row, &rows, err)) >= 0) {
                snprintf(ret->server, sizeof(ret->server), "MySQL server %.64s", rows.cells[0]);
        } else if ((r = mysql_conn_query(m, "SELECT @@hostname, @@port, @@datadir, @@server_id", NULL, 0, keep_row,
                                         &rows, err)) >= 0) {
                snprintf(ret->server, sizeof(ret->server), "%s server %.64s:%.8s (datadir %.120s, server_id %.12s)",
                         mariadb ? "MariaDB" : "MySQL", rows.cells[0], rows.cells[1], rows.cells[2], rows.cells[3]);
        }
        if (r >= 0)
                r = 0;
        rows_free(&rows);
        mysql_close(m);
        return r == -ENOMEM ? cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory") : r;
}

int mysql_conn_list_tables(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err) {
        MYSQL *m;
        Rows rows = {0};
        int r = mysql_conn_open(conn, NULL, &m, err);
        if (r < 0)
                return r;
        r = mysql_conn_query(m,
                             "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables WHERE "
                             "table_type = 'BASE TABLE' AND table_schema NOT IN ('mysql', 'information_schema', "
                             "'performance_schema', 'sys', 'cdcsync') ORDER BY 1",
                             NULL, 0, keep_row, &rows, err);
        mysql_close(m);
        if (r < 0) {
                rows_free(&rows);
                return r == -ENOMEM ? cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory") : r;
        }
        if (!rows.v && !(rows.v = calloc(1, sizeof(*rows.v))))
                return cdc_oom(err);
        *ret = rows.v;
        *ret_n = rows.n;
        return 0;
}
