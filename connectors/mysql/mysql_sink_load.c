/* The MySQL/MariaDB sink's LOAD DATA path: a run of a snapshot's inserts into one table sent as one
 * LOAD DATA LOCAL INFILE statement whose "file" is the run's rows, streamed from memory by a
 * handler of the client library, instead of a multi-row INSERT ... ON DUPLICATE KEY UPDATE.
 *
 * Why: the target server is what limits an initial load, and it spends less on LOAD DATA than on
 * INSERTs (bench/mysql_snapshot.sh, sysbench's 2,000,000 rows: 15.6-17.4 s of its CPU by LOAD
 * DATA, 21.7-25.0 s by our multi-row upserts, 18.5-23.9 s by mariadb-dump's INSERTs; README):
 * LOAD DATA reads fields straight into the table's columns, with no statement to parse and no
 * parameter per value.
 *
 * When: a change of a snapshot (TxnInfo.snapshot), an insert, not CHANGE_IDEMPOTENT, into a table
 * whose changes go as multi-row statements (TargetTable.reorder: the primary key is the source's,
 * no other unique index, no foreign key, no trigger), in a run of at least LOAD_MIN_ROWS rows.
 *
 * Exactly what the upserts store, or not at all:
 * - each field is the parameter the upsert would bind (mysql_sink_make_param: the same text, so
 *   the server's conversion of it into the column is the same), escaped for LOAD DATA's text
 *   format, NULL as \N; utf8mb4 as the session's NAMES; bit strings through CONV as there;
 * - with LOCAL the server turns errors about values into warnings and skips a row whose key is
 *   there already (it cannot stop the client's stream), so the statement runs after a savepoint,
 *   and anything but every row stored without a warning or a skip rolls back to it: the run then
 *   goes as the upserts, whose outcome (a row there already overwritten, a value refused and
 *   named) stays the one behaviour. A snapshot's inserts find no row as a rule (snapshot =
 *   initial copies into empty tables, replace empties them first, merge and resumed copies are
 *   CHANGE_IDEMPOTENT), so the fallback is for what no rule foresaw.
 *
 * Security: the session is opened with CLIENT_LOCAL_FILES, and its handler refuses every file
 * request (mysql_conn_infile_refuse) except during this statement, when it sends only the run's
 * rows whatever file name the server asks for. Servers with local_infile = OFF: the runs go as
 * upserts (logged once).
 *
 * Memory: nothing beyond the run: the library asks for one packet at a time, which the handler
 * fills from the run's parameters, a long value across several packets. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "cdcsync/log.h"
#include "mysql/mysql_sink_int.h"

/* Where the handler is in the run: row, column, byte of the value; term: the value is written,
 * its terminator (tab or newline) is not. */
typedef struct {
        const Run *u;
        int row, col;
        size_t off;
        bool term;
} Feed;

static int feed_init(void **ptr, const char *name, void *userdata) {
        (void)name; /* the rows go whatever the server names */
        *ptr = userdata;
        return 0;
}

/* The byte that follows the escape for c, 0 when c goes as it is. */
static char escaped(unsigned char c) {
        switch (c) {
        case '\\': return '\\';
        case '\t': return 't';
        case '\n': return 'n';
        case '\0': return '0';
        default: return 0;
        }
}

static int feed_read(void *ptr, char *buf, unsigned int len) {
        Feed *f = ptr;
        const Run *u = f->u;
        unsigned int out = 0;
        while (f->row < u->nrows) {
                const Param *p = &u->params[(size_t)f->row * u->nparams + f->col];
                if (!f->term && p->null) {
                        if (len - out < 2)
                                break;
                        buf[out++] = '\\';
                        buf[out++] = 'N';
                        f->term = true;
                }
                while (!f->term) {
                        if (f->off == p->len) {
                                f->term = true;
                                break;
                        }
                        unsigned char c = (unsigned char)p->data[f->off];
                        char e = escaped(c);
                        if (e) {
                                if (len - out < 2)
                                        return (int)out;
                                buf[out++] = '\\';
                                buf[out++] = e;
                                f->off++;
                                continue;
                        }
                        /* a stretch without a byte to escape, as much as fits */
                        size_t n = 1;
                        while (f->off + n < p->len && n < len - out && !escaped((unsigned char)p->data[f->off + n]))
                                n++;
                        if (n > len - out)
                                n = len - out;
                        if (n == 0)
                                return (int)out;
                        memcpy(buf + out, p->data + f->off, n);
                        out += (unsigned int)n;
                        f->off += n;
                }
                if (out == len)
                        break;
                buf[out++] = f->col + 1 < u->nparams ? '\t' : '\n';
                f->term = false;
                f->off = 0;
                if (++f->col == u->nparams) {
                        f->col = 0;
                        f->row++;
                }
        }
        return (int)out;
}

static void feed_end(void *ptr) {
        (void)ptr;
}

static int feed_error(void *ptr, char *msg, unsigned int len) {
        (void)ptr;
        snprintf(msg, len, "cdcsync could not send the rows of its LOAD DATA");
        return CR_UNKNOWN_ERROR;
}

/* Whether the server takes LOAD DATA LOCAL (asked once per session). */
static int load_allowed(Sink *k, CdcError *err) {
        if (k->load != 0)
                return 0;
        if (mysql_query(k->m, "SELECT @@local_infile"))
                return mysql_sink_error(k, NULL, "SELECT @@local_infile", err);
        MYSQL_RES *res = mysql_store_result(k->m);
        MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
        k->load = row && row[0] && strcmp(row[0], "1") == 0 ? 1 : -1;
        if (res)
                mysql_free_result(res);
        if (k->load < 0)
                log_info(k->ctx, "the server has local_infile = OFF: a snapshot's rows go as multi-row INSERTs "
                                 "(SET GLOBAL local_infile = ON loads them faster, by LOAD DATA LOCAL)");
        return 0;
}

static int undo(Sink *k, CdcError *err) {
        if (mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_load"))
                return mysql_sink_error(k, NULL, "rollback to savepoint", err);
        return 0;
}

int mysql_sink_load_send(Sink *k, Run *u, bool *ret_done, CdcError *err) {
        *ret_done = false;
        int r = load_allowed(k, err);
        if (r < 0 || k->load < 0)
                return r;
        char *sql = mysql_sql_load(u->mschema, u->mname, u->mt);
        if (!sql)
                return cdc_oom(err);
        if (mysql_query(k->m, "SAVEPOINT cdcsync_load")) {
                r = mysql_sink_error(k, NULL, "savepoint", err);
                goto out;
        }
        Feed f = {.u = u};
        mysql_set_local_infile_handler(k->m, feed_init, feed_read, feed_end, feed_error, &f);
        int q = mysql_real_query(k->m, sql, strlen(sql));
        mysql_conn_infile_refuse(k->m);
        if (q) {
                unsigned int e = mysql_errno(k->m);
                if (e == ER_NOT_ALLOWED_COMMAND || e == ER_LOAD_INFILE_CAPABILITY_DISABLED) {
                        /* local_infile turned off since it was asked */
                        k->load = -1;
                        log_info(k->ctx,
                                 "the server refuses LOAD DATA LOCAL (%s): a snapshot's rows go as "
                                 "multi-row INSERTs",
                                 mysql_error(k->m));
                        r = 0;
                        goto out;
                }
                r = mysql_sink_error(k, NULL, u->what, err);
                /* a value refused: the upserts name the row */
                if (strcmp(err->kind, "data") == 0)
                        r = undo(k, err);
                goto out;
        }
        unsigned long records = 0, deleted = 0, skipped = 0, warnings = 0;
        const char *info = mysql_info(k->m);
        if (!info ||
            sscanf(info, "Records: %lu Deleted: %lu Skipped: %lu Warnings: %lu", &records, &deleted, &skipped,
                   &warnings) != 4 ||
            records != (unsigned long)u->nrows || skipped != 0 || warnings != 0 || mysql_warning_count(k->m) != 0) {
                log_debug(k->ctx, "LOAD DATA of %d rows into `%s`.`%s` answered '%s': sent again as INSERTs", u->nrows,
                          u->mschema, u->mname, info ? info : "");
                r = undo(k, err);
                goto out;
        }
        *ret_done = true;
out:
        free(sql);
        return r;
}
