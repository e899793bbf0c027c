/* The PostgreSQL sink's COPY path: a run of a snapshot's inserts into one table streamed with
 * COPY ... FROM STDIN (text format) in the batch's own transaction, instead of multi-row INSERTs.
 *
 * Why: the server parses and plans a multi-row INSERT with one parameter per value; COPY hands
 * each row to the table's input functions directly (heap multi-insert), which is what
 * PostgreSQL's own subscription and pg_restore use for an initial copy.
 *
 * When (pg_sink_copy_fits, pg_target_table_state): a change of a snapshot (TxnInfo.snapshot), an
 * insert of every column, not CHANGE_IDEMPOTENT, into a table whose held insert run has grown to
 * COPY_MIN_ROWS rows. Everything else keeps the INSERT path, because COPY cannot do it or would
 * do it differently:
 * - CHANGE_IDEMPOTENT rows (snapshot = merge, a re-snapshot's chunks, a converging copy): the row
 *   may be there already and needs ON CONFLICT, which COPY has not;
 * - a table whose changes do not commute (ts->commutable / ts->appendable false: triggers,
 *   rules, foreign keys, other unique indexes, defaults on columns the source does not send,
 *   not a plain table): COPY skips rules (INSERT runs them) and runs row triggers at its end,
 *   so only tables where a multi-row INSERT already goes are copied, and COPY keeps its meaning;
 * - row-level security on the table: COPY FROM is refused where a policy applies;
 * - an identity column GENERATED ALWAYS among the source's columns: COPY would write the
 *   source's value where INSERT refuses it (the INSERT path's error stays the one behaviour);
 * - a short run (< COPY_MIN_ROWS rows, e.g. a small table, or a bidirectional pipeline whose
 *   version tags come between the rows): starting a COPY costs a round-trip (the pipeline's
 *   results are read and pipeline mode is left: libpq has no COPY in pipeline mode), which a
 *   multi-row INSERT does not.
 * Generated columns need nothing: the source sends none (they are not in t->cols), COPY's column
 * list leaves them to the server, as the INSERT's does.
 *
 * Values go as the INSERT path sends them (its parameters are C strings: up to a first NUL
 * byte), escaped for the text format (pg_sql_copy_escape), NULL as \N; the server's input
 * functions read them exactly as they read the parameters (bytea as its \x text, arrays as
 * literals). A row of a PostgreSQL copy goes as the source's COPY printed it (Change.copy_text:
 * the same values, fields and escapes, both sessions with the same pinned settings), which saves
 * escaping every value again (~9 % of cdcsync's CPU in an initial load, perf).
 *
 * Memory: rows are escaped into one buffer of COPY_BUF_MAX bytes (plus a piece) and sent when it
 * fills; a long value is escaped COPY_PIECE bytes at a time. Waits: the connection stays in
 * blocking mode, so a frozen server blocks in PQputCopyData or PQgetResult; the calls run inside
 * the sink's guard (pg_pipe_guard_on), which every send or result read pushes back, so the guard
 * shuts the socket down after timeout_s without progress and the call fails as a timeout. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

#define COPY_BUF_MAX (256u << 10) /* bytes of COPY text gathered before they are sent */
#define COPY_PIECE (64u << 10)    /* bytes of one value escaped at a time */

bool pg_sink_copy_fits(const TState *ts, const TxnInfo *txn, const Change *c) {
        const Table *t = c->table;
        if (!ts->copy_ok || !txn->snapshot || c->op != CHANGE_INSERT || (c->flags & CHANGE_IDEMPOTENT) || !c->after ||
            t->ncols <= 0)
                return false;
        for (int i = 0; i < t->ncols; i++)
                if (c->after[i].kind != VALUE_TEXT && c->after[i].kind != VALUE_NULL)
                        return false;
        return true;
}

/* "copy of 123 rows into s.t", for messages. */
static void copy_what(const Sink *k, char *buf, size_t len) {
        snprintf(buf, len, "copy of %" PRIu64 " rows into %s.%s", k->copy.rows, k->copy.ts->schema, k->copy.ts->name);
}

/* A COPY call failed: the server's error when it sent one (it ends the COPY on a bad row),
 * otherwise the connection's. The connection is left out of pipeline mode, the transaction
 * failed: rollback() ends it. */
static int copy_failed(Sink *k, CdcError *err) {
        char what[600];
        PGresult *res;
        int r = 0;

        copy_what(k, what, sizeof(what));
        k->copy.active = false;
        k->copy.len = 0;
        /* (bounded: a connection that keeps answering COPY_IN is not read forever) */
        for (int n = 0; n < 8 && PQstatus(k->conn) == CONNECTION_OK; n++) {
                if (!(res = PQgetResult(k->conn)))
                        break;
                {
                        pg_pipe_guard_progress(k);
                        ExecStatusType st = PQresultStatus(res);
                        if (r == 0 && st == PGRES_FATAL_ERROR)
                                r = pg_pipe_result_error(k, res, what, err);
                        PQclear(res);
                        if (st == PGRES_COPY_IN) /* still copying: end it, its error follows */
                                PQputCopyEnd(k->conn, "cdcsync: the copy failed");
                }
        }
        if (r == 0)
                r = pg_pipe_conn_error(k, what, err);
        return pg_pipe_fail(k, r, err);
}

static int copy_send(Sink *k, CdcError *err) {
        if (k->copy.len == 0)
                return 0;
        if (PQputCopyData(k->conn, k->copy.buf, (int)k->copy.len) != 1)
                return copy_failed(k, err);
        pg_pipe_guard_progress(k);
        k->copy.len = 0;
        return 0;
}

/* Room for need more bytes (need <= 2 * COPY_PIECE + 4), sending what is gathered when full. */
static int copy_room(Sink *k, size_t need, CdcError *err) {
        if (!k->copy.buf) {
                k->copy.cap = COPY_BUF_MAX + 2 * COPY_PIECE + 16;
                k->copy.buf = malloc(k->copy.cap);
                if (!k->copy.buf) {
                        k->copy.cap = 0;
                        return pg_pipe_fail(k, cdc_oom(err), err);
                }
        }
        if (k->copy.len + need > k->copy.cap || k->copy.len >= COPY_BUF_MAX)
                return copy_send(k, err);
        return 0;
}

/* Ends a row: its newline, counted, sent once the buffer is full. */
static int copy_row_end(Sink *k, CdcError *err) {
        int r = copy_room(k, 1, err);
        if (r < 0)
                return r;
        k->copy.buf[k->copy.len++] = '\n';
        k->copy.rows++;
        return k->copy.len >= COPY_BUF_MAX ? copy_send(k, err) : 0;
}

int pg_sink_copy_row(Sink *k, const Value *v, CdcError *err) {
        const Table *t = k->copy.ts->table;
        int r;

        for (int i = 0; i < t->ncols; i++) {
                r = copy_room(k, 4, err);
                if (r < 0)
                        return r;
                if (i)
                        k->copy.buf[k->copy.len++] = '\t';
                if (v[i].kind != VALUE_TEXT) {
                        memcpy(k->copy.buf + k->copy.len, "\\N", 2);
                        k->copy.len += 2;
                        continue;
                }
                /* What the INSERT path sends: its parameters are C strings. */
                size_t len = strnlen(v[i].data, v[i].len);
                for (size_t off = 0; off < len;) {
                        size_t piece = len - off < COPY_PIECE ? len - off : COPY_PIECE;
                        r = copy_room(k, 2 * piece, err);
                        if (r < 0)
                                return r;
                        k->copy.len += pg_sql_copy_escape(v[i].data + off, piece, k->copy.buf + k->copy.len);
                        off += piece;
                }
        }
        return copy_row_end(k, err);
}

int pg_sink_copy_text(Sink *k, const char *text, size_t len, CdcError *err) {
        int r;
        for (size_t off = 0; off < len;) {
                size_t piece = len - off < COPY_PIECE ? len - off : COPY_PIECE;
                r = copy_room(k, piece, err);
                if (r < 0)
                        return r;
                memcpy(k->copy.buf + k->copy.len, text + off, piece);
                k->copy.len += piece;
                off += piece;
        }
        return copy_row_end(k, err);
}

/* The held insert run of ts (its only run) becomes a COPY that stays open for the rows that
 * follow. What was sent before is read first: its errors surface here, and pipeline mode can
 * only be left with nothing pending. */
int pg_sink_copy_start(Sink *k, TState *ts, CdcError *err) {
        Group *g = &ts->groups[0];
        char *sql = NULL;
        PGresult *res;
        int r = 0;

        /* Runs held for other tables were held before these rows: they go first. */
        for (int i = 0; i < k->nts && r == 0; i++)
                if (k->ts[i] != ts && k->ts[i]->nheld > 0)
                        r = pg_held_flush_table(k, k->ts[i], err);
        if (r == 0)
                r = pg_pipe_send_sync(k, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        if (PQexitPipelineMode(k->conn) != 1)
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "leaving pipeline mode for COPY", err), err);
        if (pg_sql_copy(ts->schema, ts->name, ts->table, &sql) < 0)
                return pg_pipe_fail(k, cdc_oom(err), err);
        k->copy.active = true;
        k->copy.ts = ts;
        k->copy.rows = 0;
        k->copy.len = 0;
        r = PQsendQuery(k->conn, sql);
        free(sql);
        if (r != 1)
                return copy_failed(k, err);
        res = PQgetResult(k->conn);
        pg_pipe_guard_progress(k);
        if (PQresultStatus(res) != PGRES_COPY_IN) {
                char what[600];
                copy_what(k, what, sizeof(what));
                r = res ? pg_pipe_result_error(k, res, what, err) : pg_pipe_conn_error(k, what, err);
                PQclear(res);
                k->copy.active = false;
                while ((res = PQgetResult(k->conn)))
                        PQclear(res);
                return pg_pipe_fail(k, r, err);
        }
        PQclear(res);
        for (int i = 0; i < g->nrows; i++) {
                r = pg_sink_copy_row(k, g->rows[i], err);
                if (r < 0)
                        return r;
        }
        pg_held_ts_clear_held(ts);
        return 0;
}

/* Ends the COPY and checks that it stored every row sent; back in pipeline mode after it. */
int pg_sink_copy_end(Sink *k, CdcError *err) {
        char what[600];
        PGresult *res;
        int r = 0;

        if (!k->copy.active)
                return 0;
        r = copy_send(k, err);
        if (r < 0)
                return r;
        if (PQputCopyEnd(k->conn, NULL) != 1)
                return copy_failed(k, err);
        copy_what(k, what, sizeof(what));
        res = PQgetResult(k->conn);
        pg_pipe_guard_progress(k);
        if (!res) {
                r = pg_pipe_conn_error(k, what, err);
        } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                r = pg_pipe_result_error(k, res, what, err);
        } else {
                char *end = NULL;
                unsigned long long n = strtoull(PQcmdTuples(res), &end, 10);
                if (!end || *end || n != k->copy.rows)
                        r = cdc_error(err, -EIO, false, CDC_ERR_INTERNAL, "sink %s: %s stored \"%s\" rows",
                                      k->conf->name, what, PQcmdTuples(res));
        }
        PQclear(res);
        while ((res = PQgetResult(k->conn)))
                PQclear(res);
        k->copy.active = false;
        if (r < 0)
                return pg_pipe_fail(k, r, err);
        if (PQenterPipelineMode(k->conn) != 1)
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "entering pipeline mode after COPY", err), err);
        log_debug(k->ctx, "%s: done with COPY", what);
        return 0;
}

/* rollback(): a COPY still open is ended with an error, so the server drops its rows; the
 * caller then rolls the transaction back. */
void pg_sink_copy_abort(Sink *k) {
        PGresult *res;

        if (!k->copy.active)
                return;
        k->copy.active = false;
        k->copy.len = 0;
        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK)
                return;
        if (PQputCopyEnd(k->conn, "cdcsync: the batch is rolled back") == 1) {
                while ((res = PQgetResult(k->conn))) {
                        pg_pipe_guard_progress(k);
                        PQclear(res);
                }
        }
}

/* The session is reset or closed: nothing of a COPY survives it. */
void pg_sink_copy_reset(Sink *k) {
        k->copy.active = false;
        k->copy.len = 0;
        k->copy.rows = 0;
        k->copy.ts = NULL;
}
