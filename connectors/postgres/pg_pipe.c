/* The PostgreSQL sink's connection: SQL sent in libpq pipeline mode, the ring of results not read yet,
 * prepared statements, bounded waits and error classification. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/deadline.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

/* ---- errors ---- */

/* Classifies a server error by SQLSTATE: what the pipeline can do about it. */
int pg_pipe_result_error(Sink *k, const PGresult *res, const char *what, CdcError *err) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        char msg[600];
        CdcErrorKind kind = CDC_ERR_DATA;
        bool retriable = false;
        int code = -EIO;

        if (!state)
                state = "";
        if (primary)
                snprintf(msg, sizeof(msg), "%s%s%s", primary, detail ? " — " : "", detail ? detail : "");
        else
                pg_conn_error_text(k->conf, k->conn, res, msg, sizeof(msg));
        if (PQstatus(k->conn) == CONNECTION_BAD || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
                kind = CDC_ERR_CONNECTION, retriable = true, code = -ECONNRESET;
        } else if (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0 || strcmp(state, "3F000") == 0 ||
                   strcmp(state, "42704") == 0) {
                /* A table, column, schema or type missing: the operator fixes the schema, the
                 * pipeline waits. */
                kind = CDC_ERR_SCHEMA, retriable = true, code = -ENOENT;
        } else if (strcmp(state, "42501") == 0) {
                kind = CDC_ERR_PRIVILEGE, code = -EACCES;
        } else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strncmp(state, "53", 2) == 0 ||
                   strcmp(state, "55P03") == 0) {
                kind = CDC_ERR_DATA, retriable = true, code = -EAGAIN; /* deadlock, lock timeout, disk full */
        }
        return cdc_error(err, code, retriable, kind, "sink %s: %s failed: %s (sqlstate %s)", k->conf->name,
                         what ? what : "statement", msg, state);
}

/* ---- bounded waits ----
 *
 * libpq waits for the server without a bound, and a frozen network path or a paused server
 * answers nothing, without FIN or RST: each call that waits (open, begin, apply, commit,
 * rollback, reading the checkpoint) arms the guard, and every result read pushes it back, so a
 * call fails only after timeout_s without any answer (the socket is shut down, the pipeline
 * reconnects). */

void pg_pipe_guard_on(Sink *k) {
        k->guarded = true;
        deadline_arm(k->guard, conf_timeout_ms(k->conf));
}

/* A result read, or data the server took (COPY): the server answers, the deadline moves on. */
void pg_pipe_guard_progress(Sink *k) {
        if (k->guarded)
                deadline_arm(k->guard, conf_timeout_ms(k->conf));
}

/* Ends a guarded call; a failure after the deadline fired is reported as the timeout it is. */
int pg_pipe_guard_off(Sink *k, int r, CdcError *err) {
        k->guarded = false;
        if (deadline_disarm(k->guard) && r < 0 && err)
                r = cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                              "sink %s: the server did not answer within %d s (timeout_s): the network path or the "
                              "server is not responding",
                              k->conf->name, conf_timeout_ms(k->conf) / 1000);
        return r;
}

void pg_pipe_conn_close(Sink *k) {
        deadline_set_fd(k->guard, -1);
        PQfinish(k->conn);
        k->conn = NULL;
}

int pg_pipe_conn_error(Sink *k, const char *what, CdcError *err) {
        char msg[600];
        pg_conn_error_text(k->conf, k->conn, NULL, msg, sizeof(msg));
        return cdc_error(err, -ECONNRESET, true, CDC_ERR_CONNECTION, "sink %s: %s: %s", k->conf->name, what, msg);
}

/* Remembers the first error of the transaction; later calls return it until rollback(). */
int pg_pipe_fail(Sink *k, int r, CdcError *err) {
        if (!k->failed) {
                k->failed = true;
                if (err)
                        k->first_err = *err;
        } else if (err) {
                *err = k->first_err;
        }
        return r;
}

/* ---- synchronous helpers (outside pipeline mode) ---- */

/* Runs sql with text parameters; on success *ret (may be NULL) gets the result. */
int pg_pipe_exec_params(Sink *k, const char *sql, int n, const char *const *vals, const char *what, PGresult **ret,
                        CdcError *err) {
        PGresult *res = PQexecParams(k->conn, sql, n, NULL, vals, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        int r;

        if (!res)
                return pg_pipe_conn_error(k, what, err);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                r = pg_pipe_result_error(k, res, what, err);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

bool pg_pipe_sqlstate_is(const CdcError *err, const char *state) {
        char pat[32];
        snprintf(pat, sizeof(pat), "(sqlstate %s)", state);
        return strstr(err->message, pat) != NULL;
}

/* ---- the pipeline ---- */

int pg_pipe_push_pending(Sink *k, PendingKind kind, bool expect_one, bool capture, char *what) {
        Pending *p = &k->pending[(k->phead + k->npending) % RING];
        p->kind = kind;
        p->expect_one = expect_one;
        p->capture = capture;
        p->what = what;
        p->expect_n = 0;
        p->rows = NULL;
        k->npending++;
        k->nexpect += expect_one;
        return 0;
}

void pg_pipe_rows_free(PendingRows *rows) {
        if (!rows)
                return;
        for (int i = 0; i < rows->n; i++)
                values_free(rows->vals[i], rows->table->ncols);
        free(rows->vals);
        table_unref(rows->table);
        free(rows->schema);
        free(rows->name);
        free(rows);
}

/* A multi-row UPDATE / DELETE touched fewer rows than it held: names the first row it missed
 * (its result holds the numbers of the rows it touched). */
static int missing_row(Sink *k, const PGresult *res, const Pending *p, CdcError *err) {
        bool *seen = calloc((size_t)p->expect_n + 1, sizeof(*seen));
        const PendingRows *rows = p->rows;
        uint8_t *keymask = rows ? calloc((size_t)rows->table->ncols + 1, 1) : NULL;
        char *d = NULL;
        int ntup = PQntuples(res), r, miss = 1;

        if (!seen || (rows && !keymask)) {
                free(seen);
                free(keymask);
                return cdc_oom(err);
        }
        for (int i = 0; i < ntup; i++) {
                char *end = NULL;
                long n;
                errno = 0;
                n = strtol(PQgetvalue(res, i, 0), &end, 10);
                if (!errno && end && !*end && n >= 1 && n <= p->expect_n)
                        seen[n] = true;
        }
        while (miss < p->expect_n && seen[miss])
                miss++;
        if (rows && miss <= rows->n) {
                for (int i = 0; i < rows->table->ncols; i++)
                        keymask[i] = rows->table->cols[i].key ? PG_SQL_WHERE : 0;
                d = pg_sink_describe(rows->op, rows->schema, rows->name, rows->table, rows->vals[miss - 1], keymask, 0);
        }
        r = cdc_error(err, -ENOENT, false, CDC_ERR_DATA,
                      "sink %s: %s affected no rows instead of 1 (%d of %d rows of one statement "
                      "found): the sink's data diverged from the source's",
                      k->conf->name, d ? d : p->what, ntup, p->expect_n);
        free(d);
        free(keymask);
        free(seen);
        return r;
}

/* Reads the result of the oldest pending entry. Returns 0, or negative with err filled (the
 * first failure of the transaction; aborted followers are not errors of their own). */
static int read_one(Sink *k, CdcError *err) {
        Pending p = k->pending[k->phead];
        PGresult *res;
        ExecStatusType st;
        int r = 0;

        k->pending[k->phead].what = NULL;
        k->pending[k->phead].rows = NULL;
        k->phead = (k->phead + 1) % RING;
        k->npending--;
        k->nexpect -= p.expect_one || p.expect_n > 0;

        res = PQgetResult(k->conn);
        pg_pipe_guard_progress(k);
        if (!res) {
                r = pg_pipe_conn_error(k, p.what ? p.what : "reading a result", err);
                goto out;
        }
        st = PQresultStatus(res);
        if (p.kind == PENDING_SYNC) {
                if (st != PGRES_PIPELINE_SYNC)
                        r = cdc_error(err, -EPROTO, true, CDC_ERR_CONNECTION,
                                      "sink %s: expected a pipeline sync, got %s", k->conf->name, PQresStatus(st));
                PQclear(res);
                goto out;
        }
        if (st == PGRES_PIPELINE_ABORTED) {
                /* Skipped after an earlier failure, which was already reported. */
                r = k->failed ? 0
                              : cdc_error(err, -EIO, false, CDC_ERR_INTERNAL, "sink %s: %s was aborted", k->conf->name,
                                          p.what);
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                r = pg_pipe_result_error(k, res, p.what, err);
        } else if (p.expect_one) {
                const char *n = PQcmdTuples(res);
                if (strcmp(n, "1") != 0)
                        r = cdc_error(err, -ENOENT, false, CDC_ERR_DATA,
                                      "sink %s: %s affected %s rows instead of 1: the sink's data "
                                      "diverged from the source's",
                                      k->conf->name, p.what, *n ? n : "no");
        } else if (p.expect_n > 0 && PQntuples(res) != p.expect_n) {
                r = missing_row(k, res, &p, err);
        }
        if (p.capture && r == 0) {
                PQclear(k->captured);
                k->captured = res;
                res = NULL;
        }
        PQclear(res);
        /* Each query's results end with NULL. */
        res = PQgetResult(k->conn);
        if (res) {
                PQclear(res);
                if (r == 0)
                        r = cdc_error(err, -EPROTO, false, CDC_ERR_INTERNAL, "sink %s: more than one result for %s",
                                      k->conf->name, p.what);
        } else if (PQstatus(k->conn) == CONNECTION_BAD && r == 0) {
                r = pg_pipe_conn_error(k, "reading results", err);
        }
out:
        free(p.what);
        pg_pipe_rows_free(p.rows);
        if (r < 0)
                return pg_pipe_fail(k, r, err);
        return 0;
}

/* Makes the server send what it has and reads results until at most `keep` are pending. */
int pg_pipe_drain(Sink *k, int keep, CdcError *err) {
        int r, first = 0;

        if (k->npending <= keep)
                return 0;
        if (k->pending[(k->phead + k->npending - 1) % RING].kind != PENDING_SYNC && PQsendFlushRequest(k->conn) != 1)
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "sending a flush request", err), err);
        if (PQflush(k->conn) != 0)
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "sending to the server", err), err);
        while (k->npending > keep) {
                r = read_one(k, err);
                if (r < 0 && first == 0)
                        first = r;
                if (r < 0 && PQstatus(k->conn) == CONNECTION_BAD)
                        break;
        }
        if (first < 0 && err)
                *err = k->first_err;
        return first;
}

int pg_pipe_send_sync(Sink *k, CdcError *err) {
        if (PQpipelineSync(k->conn) != 1)
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "sending a pipeline sync", err), err);
        return pg_pipe_push_pending(k, PENDING_SYNC, false, false, NULL);
}

int pg_pipe_send_query(Sink *k, const char *sql, int n, const char *const *vals, const char *what, bool capture,
                       CdcError *err) {
        char *w = strdup(what);
        if (!w)
                return pg_pipe_fail(k, cdc_oom(err), err);
        if (PQsendQueryParams(k->conn, sql, n, NULL, vals, NULL, NULL, 0) != 1) {
                free(w);
                return pg_pipe_fail(k, pg_pipe_conn_error(k, what, err), err);
        }
        return pg_pipe_push_pending(k, PENDING_QUERY, false, capture, w);
}

/* Forgets every prepared statement of the session (they were deallocated, or may have been):
 * the text cache, and the tables' shapes that name them. */
void pg_pipe_forget_statements(Sink *k) {
        pg_map_clear(&k->stmts);
        for (int i = 0; i < k->nts; i++)
                pg_held_forget_shapes(k->ts[i]);
}

/* Returns the prepared statement name for sql, preparing it (in the pipeline) when new. */
int pg_pipe_statement(Sink *k, const char *sql, int nparams, const char **ret, CdcError *err) {
        MapEntry *e = pg_map_find(&k->stmts, sql);
        char *key, *name, *what;
        int r;

        if (e) {
                *ret = e->name;
                return 0;
        }
        key = strdup(sql);
        name = malloc(24);
        what = strdup("preparing a statement");
        if (!key || !name || !what) {
                free(key), free(name), free(what);
                return pg_pipe_fail(k, cdc_oom(err), err);
        }
        snprintf(name, 24, "cdcsync_%u", k->next_stmt++);
        if (PQsendPrepare(k->conn, name, sql, nparams, NULL) != 1) {
                free(key), free(name), free(what);
                return pg_pipe_fail(k, pg_pipe_conn_error(k, "preparing a statement", err), err);
        }
        pg_pipe_push_pending(k, PENDING_QUERY, false, false, what);
        r = pg_map_add(&k->stmts, key, name);
        if (r < 0)
                return pg_pipe_fail(k, cdc_oom(err), err);
        *ret = pg_map_find(&k->stmts, sql)->name;
        return 0;
}
