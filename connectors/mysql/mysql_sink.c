/* The MySQL/MariaDB sink: its session, the apply of each change, and the checkpoint table.
 *
 * How a MariaDB source tells cdcsync's writes from the application's: the sink runs
 * `SET SESSION server_id = <its connector's server_id>` (needs BINLOG REPLAY or SUPER), so every
 * binlog event it causes carries that id, and the binlog source reports the writer's server_id as
 * TxnInfo.origin. The engine compares origin with the sink connector's server_id to recognise an
 * echo. skip_replication would hide our writes from our own binlog source (and from every real
 * replica), so it is not used. The connector's server_id must therefore be unique in the
 * replication topology, like any replica's. A sink without server_id (allowed only when no pipeline
 * reads its writes back) writes unmarked. */
#include <errno.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include "mysql/mysql_sink_int.h"

/* ---- apply ---- */

int mysql_sink_make_param(Sink *k, const Table *t, int i, const Value *v, Param *p, CdcError *err) {
        *p = (Param){0};
        if (v->kind != VALUE_TEXT) {
                p->null = true;
                return 0;
        }
        int r = mysql_sink_convert(t->cols[i].cls, v->data, v->len, &p->data, &p->len);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_DATA,
                                 "%s value '%.64s' of %s.%s column %s (%s) cannot be stored in MySQL%s", k->ctx,
                                 v->data, t->schema, t->name, t->cols[i].name, type_class_name(t->cols[i].cls),
                                 r == -ERANGE ? ": out of range (NaN, Infinity, beyond DECIMAL(65,30) or years "
                                                "1000..9999)"
                                              : "");
        p->binary = t->cols[i].cls == TYPE_BYTES;
        if (mysql_sink_blank_padded(&t->cols[i]))
                while (p->len > 0 && p->data[p->len - 1] == ' ')
                        p->data[--p->len] = '\0';
        return 0;
}

/* Appends n bytes of s to out (used of cap, one byte kept for the NUL); false when they do not fit. */
static bool text_put(char *out, size_t cap, size_t *used, const char *s, size_t n) {
        if (*used + n + 1 > cap)
                return false;
        memcpy(out + *used, s, n);
        *used += n;
        out[*used] = '\0';
        return true;
}

/* How many of the first max bytes of v to quote: cut before a UTF-8 continuation byte. */
static size_t text_cut(const char *v, size_t max) {
        size_t n = strnlen(v, max);
        if (v[n] != '\0')
                while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
                        n--;
        return n;
}

/* A value the sink cannot store stops the pipeline: the operator needs the row, so the message
 * names it as the source has it: "row key (id)=(42)". A table without key would have its whole
 * row as key (about a kilobyte in a message): its place in the source transaction (row, from 1)
 * and its first columns find it, "row 3 of its source transaction, no key: a=1, b=one, c=abc…,
 * and 9 more columns". Built for every change (an error later names its row), so by hand rather
 * than with printf. */
static void key_text(const Table *t, const Value *img, uint32_t row, char *out, size_t cap) {
        char names[256] = "", vals[256] = "";
        size_t nl = 0, vl = 0, ol = 0;
        bool keyed = table_nkeys(t) > 0;
        out[0] = '\0';
        if (!img)
                return;
        if (!keyed) {
                char num[64];
                int shown = 0, more = 0;
                snprintf(num, sizeof(num), "row %" PRIu32 " of its source transaction, no key:", row);
                text_put(out, cap, &ol, num, strlen(num));
                for (int i = 0; i < t->ncols; i++) {
                        if (img[i].kind == VALUE_UNCHANGED)
                                continue;
                        if (shown == ROW_COLS_SHOWN) {
                                more++;
                                continue;
                        }
                        const char *v = img[i].kind == VALUE_TEXT ? img[i].data : "NULL";
                        size_t vn = text_cut(v, ROW_VALUE_SHOWN);
                        if (!text_put(out, cap, &ol, shown ? ", " : " ", shown ? 2 : 1) ||
                            !text_put(out, cap, &ol, t->cols[i].name, strlen(t->cols[i].name)) ||
                            !text_put(out, cap, &ol, "=", 1) || !text_put(out, cap, &ol, v, vn) ||
                            (v[vn] && !text_put(out, cap, &ol, "…", strlen("…"))))
                                return;
                        shown++;
                }
                if (more) {
                        snprintf(num, sizeof(num), ", and %d more column%s", more, more > 1 ? "s" : "");
                        text_put(out, cap, &ol, num, strlen(num));
                }
                return;
        }
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                const char *v = img[i].kind == VALUE_TEXT ? img[i].data : "NULL";
                size_t n = strlen(t->cols[i].name), vn = strnlen(v, 40);
                size_t nl0 = nl, vl0 = vl;
                if ((nl && !text_put(names, sizeof(names), &nl, ",", 1)) ||
                    !text_put(names, sizeof(names), &nl, t->cols[i].name, n) ||
                    (vl && !text_put(vals, sizeof(vals), &vl, ",", 1)) || !text_put(vals, sizeof(vals), &vl, v, vn)) {
                        names[nl0] = '\0';
                        vals[vl0] = '\0';
                        nl = nl0, vl = vl0;
                        break;
                }
        }
        if (!text_put(out, cap, &ol, "row key (", 9) || !text_put(out, cap, &ol, names, nl) ||
            !text_put(out, cap, &ol, ")=(", 3) || !text_put(out, cap, &ol, vals, vl) ||
            !text_put(out, cap, &ol, ")", 1))
                out[cap - 1] = '\0';
}

static void add_key_to_message(const Table *t, const Value *img, uint32_t row, CdcError *err) {
        char key[600];
        if (!img)
                return;
        key_text(t, img, row, key, sizeof(key));
        size_t ml = strlen(err->message);
        snprintf(err->message + ml, sizeof(err->message) - ml, " (%s)", key);
}

/* The parameters of mysql_sql_where on img: the compared columns, in column order. */
static int add_where(Sink *k, const Table *t, const Value *img, Param *p, int *np, CdcError *err) {
        bool keyed = table_nkeys(t) > 0;
        for (int i = 0; i < t->ncols; i++) {
                if ((keyed && !t->cols[i].key) || img[i].kind == VALUE_UNCHANGED)
                        continue;
                int r = mysql_sink_make_param(k, t, i, &img[i], &p[(*np)++], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int sink_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        const Table *t = c->table;
        char schema[256], name[256];
        StrBuf q = {.data = k->qbuf, .cap = k->qcap};
        int np = 0, r;
        /* CHANGE_IDEMPOTENT (change.h): at-least-once source, a repeat of this change must be
         * harmless, so a missing row is not an error and a whole-row update is an upsert. */
        bool idem = (c->flags & CHANGE_IDEMPOTENT) && c->op != CHANGE_TRUNCATE;
        bool upsert = c->op == CHANGE_INSERT || (idem && c->op == CHANGE_UPDATE && c->after && table_nkeys(t) > 0 &&
                                                 change_whole_row_same_key(c));
        bool expect = !idem && (c->op == CHANGE_UPDATE || c->op == CHANGE_DELETE);
        char *rk[2] = {NULL, NULL};
        size_t rkl[2] = {0, 0};
        int nrk = 0;
        /* a source transaction's changes all carry the same xid and commit position */
        if (txn->xid != k->txn_xid || position_cmp(txn->commit_pos, k->txn_pos) != 0 || k->txn_row == 0) {
                k->txn_xid = txn->xid;
                k->txn_pos = txn->commit_pos;
                k->txn_row = 0;
        }
        k->txn_row++;
        Param *p = calloc((size_t)t->ncols * 2 + 1, sizeof(Param));
        if (!p)
                return cdc_oom(err);
        if ((c->op == CHANGE_INSERT || c->op == CHANGE_UPDATE) && !c->after) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "%s malformed change of %s.%s: no new row", k->ctx,
                              t->schema, t->name);
                goto out_sent; /* not a value error: no key to add */
        }
        if ((c->op == CHANGE_DELETE || (c->op == CHANGE_UPDATE && !upsert)) && !c->before && !c->after) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "%s malformed change of %s.%s: no key", k->ctx,
                              t->schema, t->name);
                goto out_sent; /* not a value error: no key to add */
        }
        if (mysql_sink_map_table(k, t, schema, sizeof(schema), name, sizeof(name)) < 0) {
                r = cdc_error(err, -ENAMETOOLONG, false, CDC_ERR_CONF, "%s table name %s.%s too long", k->ctx,
                              t->schema, t->name);
                goto out;
        }
        if (t->ncols == 0) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                              "%s source table %s.%s has no column, and a MySQL/MariaDB table cannot be without one "
                              "— leave it out of tables of pipeline %s (name the tables instead of *), or give it a "
                              "column at the source",
                              k->ctx, t->schema, t->name, k->pipe ? k->pipe->name : "-");
                goto out_sent;
        }
        /* what sends anything of its own waits for the sender's job (mysql_sink_sender.c) */
        if (k->tx && !mysql_sink_quiet(k, t, c, schema, name)) {
                r = mysql_sink_ready(k, err);
                if (r < 0)
                        goto out_sent; /* an earlier batch's error, which names its own row */
        }
        if (k->rels && strcmp(t->schema, "cdcsync") != 0) {
                bool skip = false;
                r = mysql_sink_check_relation(k, t, txn, schema, name, &skip, err);
                if (r < 0 || skip)
                        goto out_sent;
        }
        /* the checks and DDL of ensure_table run after what is pending (DDL commits implicitly) */
        if (!mysql_sink_table_ready(k, t, schema, name)) {
                r = mysql_sink_pending_flush(k, err);
                if (r < 0)
                        goto out;
        }
        r = mysql_sink_ensure_table(k, t, schema, name, err);
        if (r < 0)
                goto out;
        if (c->op == CHANGE_DELETE && (c->flags & CHANGE_RANGE)) {
                r = mysql_sink_range_delete(k, t, c, schema, name, err);
                goto out_sent;
        }
        TargetTable *tt = k->known;
        while (tt && (strcmp(tt->schema, schema) != 0 || strcmp(tt->name, name) != 0))
                tt = tt->next;
        if (tt && tt->shape == t && !tt->reorder_known) {
                r = mysql_sink_check_reorder(k, tt, t, err);
                if (r < 0)
                        goto out;
        }
        /* the rows this change touches, when it may be reordered */
        if (tt && tt->shape == t && tt->reorder && c->op != CHANGE_TRUNCATE) {
                if (c->op != CHANGE_INSERT)
                        rk[nrk] = mysql_sink_row_key(schema, name, t, c->before ? c->before : c->after, &rkl[nrk]),
                        nrk++;
                if (c->op != CHANGE_DELETE)
                        rk[nrk] = mysql_sink_row_key(schema, name, t, c->after, &rkl[nrk]), nrk++;
        }
        /* a delete of this row pending before it: the two become one update (see
         * mysql_sink_cancel_delete) */
        bool replaces = c->op == CHANGE_INSERT && !idem && nrk == 1 && rk[0] && table_nkeys(t) == 1 &&
                        mysql_sink_cancel_delete(k, rk[0], rkl[0]);
        if (replaces) {
                expect = true;
                upsert = false;
        }
        if (c->op == CHANGE_TRUNCATE && (c->flags & TRUNCATE_CHECK_EMPTY)) {
                r = mysql_sink_pending_flush(k, err);
                if (r == 0)
                        r = mysql_sink_check_empty(k, schema, name, err);
                goto out;
        }
        switch (replaces ? CHANGE_UPDATE : upsert ? CHANGE_INSERT : c->op) {
        case CHANGE_INSERT: {
                /* idempotent: a replayed insert overwrites the row with the same values (so is an
                 * update of an at-least-once source that carries the whole row) */
                mysql_sql_upsert(&q, schema, name, t);
                for (int i = 0; i < t->ncols; i++) {
                        r = mysql_sink_make_param(k, t, i, &c->after[i], &p[np++], err);
                        if (r < 0)
                                goto out;
                }
                break;
        }
        case CHANGE_UPDATE: {
                /* the old key finds the row, so key updates work */
                const Value *img = c->before ? c->before : c->after;
                mysql_sql_update(&q, schema, name, t, c->after, img);
                for (int i = 0; i < t->ncols; i++) {
                        if (c->after[i].kind == VALUE_UNCHANGED)
                                continue;
                        r = mysql_sink_make_param(k, t, i, &c->after[i], &p[np++], err);
                        if (r < 0)
                                goto out;
                }
                r = add_where(k, t, img, p, &np, err);
                if (r < 0)
                        goto out;
                break;
        }
        case CHANGE_DELETE:
                mysql_sql_delete(&q, schema, name, t, c->before);
                r = add_where(k, t, c->before, p, &np, err);
                if (r < 0)
                        goto out;
                break;
        case CHANGE_TRUNCATE:
                /* Not TRUNCATE TABLE: it is DDL in MySQL and commits the open transaction
                 * implicitly, which would break "a batch is one transaction with its checkpoint". */
                mysql_sql_delete_all(&q, schema, name);
                break;
        }
        if (q.oom) {
                r = cdc_oom(err);
                goto out;
        }
        const char *opname = replaces                 ? "update"
                             : c->op == CHANGE_INSERT ? "insert"
                             : c->op == CHANGE_UPDATE ? "update"
                                                      : "delete";
        char key[600];
        key_text(t, c->before ? c->before : c->after, k->txn_row, key, sizeof(key));
        /* the multi-row form this change qualifies for (see MULTI_NONE) */
        int mkind = MULTI_NONE;
        if (tt && tt->shape == t && tt->reorder && table_nkeys(t) == 1) {
                if (replaces)
                        mkind = np == t->ncols + 1 && !p[t->ncols].null ? MULTI_UPDATE : MULTI_NONE;
                else if (c->op == CHANGE_INSERT && txn->snapshot && !idem)
                        mkind = MULTI_LOAD;
                else if (upsert || c->op == CHANGE_INSERT)
                        mkind = MULTI_INSERT;
                else if (c->op == CHANGE_DELETE && np == 1 && !p[0].null)
                        mkind = MULTI_DELETE;
                else if (c->op == CHANGE_UPDATE && expect && np == t->ncols + 1 && !p[t->ncols].null &&
                         change_whole_row_same_key(c))
                        mkind = MULTI_UPDATE;
        }
        r = mysql_sink_run_add(k, q.data, p, np, expect, opname, strdup(key), rk, rkl, nrk, t, schema, name, mkind,
                               err);
        nrk = 0; /* run_add took them */
        if (r < 0)
                goto out_sent; /* a flushed run's error: its message names its own row */
out:
        if (r < 0 && strcmp(err->kind, "data") == 0)
                add_key_to_message(t, c->before ? c->before : c->after, k->txn_row, err);
out_sent:
        for (int i = 0; i < nrk; i++)
                free(rk[i]);
        mysql_sink_params_free(p, t->ncols * 2 + 1);
        free(p);
        k->qbuf = q.data; /* kept for the next change */
        k->qcap = q.cap;
        return r;
}

/* ---- SinkOps ---- */

static Sink *sink_free(Sink *k) {
        if (!k)
                return NULL;
        mysql_sink_sender_close(k);
        mysql_sink_pending_clear(k);
        mysql_sink_seen_clear(k);
        for (int i = 0; i < RUNS_MAX; i++)
                mysql_sink_run_free(&k->runs[i]);
        mysql_sink_keys_free(&k->keys);
        mysql_sink_cache_free(&k->mstmts);
        free(k->qbuf);
        mysql_sink_cache_free(&k->stmts);
        while (k->known) {
                TargetTable *t = k->known;
                k->known = t->next;
                table_unref(t->shape);
                free(t->schema);
                free(t->name);
                free(t);
        }
        if (k->m)
                mysql_close(k->m);
        if (k->aux)
                mysql_close(k->aux);
        free(k);
        return NULL;
}

int mysql_sink_conn_open(const ConnectorConf *conn, const char *ctx, unsigned long flags, MYSQL **ret, CdcError *err) {
        int r = mysql_conn_open_flags(conn, NULL, flags, ret, err);
        if (r < 0 || !conn->skip_binlog)
                return r;
        if (mysql_query(*ret, "SET SESSION sql_log_bin = 0") == 0)
                return 0;
        unsigned int e = mysql_errno(*ret);
        /* A privilege granted meanwhile lets the retry through. */
        bool denied = e == ER_SPECIFIC_ACCESS_DENIED_ERROR;
        r = cdc_error(err, -EPERM, denied, denied ? CDC_ERR_PRIVILEGE : CDC_ERR_CONF,
                      "%s connector '%s': binlog = off, but the session cannot leave the binlog (SET SESSION "
                      "sql_log_bin = 0: %s) — GRANT BINLOG ADMIN (MariaDB 10.5+) or SUPER ON *.* to the user "
                      "(MySQL 8: SESSION_VARIABLES_ADMIN), or set binlog = on",
                      ctx, conn->name, mysql_error(*ret));
        mysql_close(*ret);
        *ret = NULL;
        return r;
}

static int sink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        Sink *k = calloc(1, sizeof(*k));
        char sql[128];
        int r;
        if (!k)
                return cdc_oom(err);
        k->conn = conn;
        k->pipe = pipe;
        snprintf(k->ctx, sizeof(k->ctx), "[pipeline=%s sink=%s]", pipe && pipe->name ? pipe->name : "-",
                 conn->name ? conn->name : "-");
        /* CLIENT_FOUND_ROWS: an UPDATE reports the rows it found, not the rows it changed, so an
         * update that writes the values a row already has still shows that the row is there;
         * CLIENT_LOCAL_FILES: a snapshot's rows may go by LOAD DATA LOCAL (mysql_sink_load.c) */
        r = mysql_sink_conn_open(conn, k->ctx, CLIENT_FOUND_ROWS | CLIENT_LOCAL_FILES, &k->m, err);
        if (r < 0)
                goto out;
        /* Without a server_id (one-way pipelines only: conf_load demands it for a bidirectional
         * sink) the writes are unmarked: they carry the server's own server_id, like an
         * application's, and any binlog reader of this server takes them for one. */
        if (conn->server_id == 0 && pipe && pipe->bidirectional) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                              "%s connector '%s': set server_id: the sink marks its writes with it", k->ctx,
                              conn->name);
                goto out;
        }
        {
                /* what MARIADB_STMT_BULK_SUPPORTED tests: a MariaDB server announcing bulk operations */
                unsigned long caps = 0, ext = 0;
                k->bulk = mariadb_get_infov(k->m, MARIADB_CONNECTION_SERVER_CAPABILITIES, &caps) == 0 &&
                          mariadb_get_infov(k->m, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &ext) == 0 &&
                          !(caps & CLIENT_MYSQL) && (ext & (MARIADB_CLIENT_STMT_BULK_OPERATIONS >> 32));
        }
        snprintf(sql, sizeof(sql), "SET SESSION server_id = %" PRIu32, conn->server_id);
        if (conn->server_id != 0 && mysql_query(k->m, sql)) {
                r = cdc_error(err, -EPERM, false, CDC_ERR_CONF,
                              "%s connector '%s': cannot set the session server_id (%s): GRANT BINLOG REPLAY ON *.* "
                              "TO the user; cdcsync marks its own writes with it",
                              k->ctx, conn->name, mysql_error(k->m));
                goto out;
        }
        /* time_zone, sql_mode and the rest are pinned by mysql_conn_open */
        r = mysql_sink_simple(k, "SET SESSION autocommit = 0", err);
        if (r < 0)
                goto out;
        r = mysql_sink_simple(k, "CREATE DATABASE IF NOT EXISTS `cdcsync`", err);
        if (r >= 0)
                r = mysql_sink_simple(
                        k,
                        "CREATE TABLE IF NOT EXISTS `cdcsync`.`checkpoints` ("
                        "pipeline VARCHAR(255) NOT NULL PRIMARY KEY, pos_hi BIGINT UNSIGNED NOT NULL, "
                        "pos_lo BIGINT UNSIGNED NOT NULL, pos_text VARCHAR(255) NOT NULL, "
                        "source_commit_ts DATETIME(6) NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB",
                        err);
        /* The copy records (copies.h): which source tables were copied, as of which position. */
        if (r >= 0)
                r = mysql_sink_simple(
                        k,
                        "CREATE TABLE IF NOT EXISTS `cdcsync`.`tables` (pipeline VARCHAR(191) NOT NULL, "
                        "source_table VARCHAR(576) NOT NULL, state VARCHAR(16) NOT NULL, pos_hi DECIMAL(20,0), "
                        "pos_lo DECIMAL(20,0), pos_text VARCHAR(255), copied_rows BIGINT, copied_at TIMESTAMP "
                        "NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (pipeline, source_table)) ENGINE=InnoDB "
                        "DEFAULT CHARSET=utf8mb4",
                        err);
        const ConnectorType *st =
                pipe && pipe->source && pipe->source->type ? connector_type(pipe->source->type) : NULL;
        k->rels = st && st->source_relation_ids;
        if (r >= 0 && k->rels)
                r = mysql_sink_simple(
                        k,
                        "CREATE TABLE IF NOT EXISTS `cdcsync`.`relations` (pipeline VARCHAR(128) NOT NULL, "
                        "src_schema VARCHAR(128) NOT NULL, src_name VARCHAR(128) NOT NULL, rel_id BIGINT UNSIGNED "
                        "NOT NULL, prev_rel_id BIGINT UNSIGNED NULL, ready BOOL NOT NULL, updated_at DATETIME(6) "
                        "NOT NULL, "
                        "PRIMARY KEY (pipeline, src_schema, src_name)) ENGINE=InnoDB",
                        err);
        /* Bidirectional sync: the version tags (engine/rowstate.c), written in the batch's
         * transaction just before each row and read back by the reverse pipeline from our binlog. */
        if (r >= 0 && pipe && pipe->bidirectional)
                r = mysql_sink_simple(
                        k,
                        "CREATE TABLE IF NOT EXISTS `cdcsync`.`versions` (k VARBINARY(32) NOT NULL PRIMARY KEY, "
                        "v BLOB NOT NULL) ENGINE=InnoDB",
                        err);
        /* One session: its statements go from the sender thread. Parallel apply's sessions each
         * commit durably before their turn passes on (open_worker), so they send themselves. */
        if (r >= 0 && (!pipe || pipe->apply_workers <= 1))
                r = mysql_sink_sender_open(k, err);
        if (r < 0)
                goto out;
        *ret = k;
        k = NULL;
        r = 0;
out:
        sink_free(k);
        return r;
}

/* A MySQL session marks its writes with the session's server_id, which every worker sets: all
 * of them are the pipeline's. The tables exist once worker 0 opened. */
static int sink_open_worker(const ConnectorConf *conn, const PipelineConf *pipe, int worker, Sink **ret,
                            CdcError *err) {
        (void)worker;
        return sink_open(conn, pipe, ret, err);
}

typedef struct {
        Checkpoint ckpt;
        bool found;
} CkRow;

static int ck_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        CkRow *c = ud;
        if (ncols < 3 || !cells[0] || !cells[1])
                return -EBADMSG;
        char *e1, *e2;
        errno = 0;
        c->ckpt.pos.hi = strtoull(cells[0], &e1, 10);
        c->ckpt.pos.lo = strtoull(cells[1], &e2, 10);
        if (errno || *e1 || *e2)
                return -EBADMSG;
        /* the text commit() stored (a MySQL source's GTID state lives there); "" if it does not fit */
        if (cells[2] && lens[2] < sizeof(c->ckpt.text)) {
                memcpy(c->ckpt.text, cells[2], lens[2]);
                c->ckpt.text[lens[2]] = '\0';
        }
        c->found = true;
        return 0;
}

static int sink_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err) {
        CkRow c = {0};
        const char *params[1] = {k->pipe && k->pipe->name ? k->pipe->name : ""};
        int r = mysql_sink_idle(k, err);
        if (r < 0)
                return r;
        r = mysql_conn_query(k->m, "SELECT pos_hi, pos_lo, pos_text FROM `cdcsync`.`checkpoints` WHERE pipeline = ?",
                             params, 1, ck_row, &c, err);
        if (r < 0)
                return r;
        mysql_commit(k->m); /* end the read's snapshot so the next batch sees fresh data */
        *ret_found = c.found;
        if (c.found)
                *ret = c.ckpt;
        return 0;
}

typedef struct {
        CopiedTable *v;
        int n;
        bool oom;
} CopyList;

static int copy_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        CopyList *l = ud;
        CopyState st;
        if (ncols < 5 || !cells[0] || !cells[1] || !cells[2] || !cells[3] || copies_state_parse(cells[3], &st) < 0)
                return 0; /* a state of a later build: not this build's to act on */
        CopiedTable *v = realloc(l->v, sizeof(*v) * (size_t)(l->n + 1));
        if (!v) {
                l->oom = true;
                return 0;
        }
        l->v = v;
        snprintf(v[l->n].table, sizeof(v[l->n].table), "%s", cells[0]);
        v[l->n].pos.hi = strtoull(cells[1], NULL, 10);
        v[l->n].pos.lo = strtoull(cells[2], NULL, 10);
        v[l->n].state = st;
        v[l->n].rows = cells[4] ? strtoull(cells[4], NULL, 10) : 0;
        v[l->n].text[0] = '\0';
        if (ncols > 5 && cells[5] && lens[5] < sizeof(v[l->n].text))
                snprintf(v[l->n].text, sizeof(v[l->n].text), "%s", cells[5]);
        l->n++;
        return 0;
}

static int sink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        CopyList l = {0};
        const char *params[1] = {k->pipe && k->pipe->name ? k->pipe->name : ""};
        int r = mysql_sink_idle(k, err);
        if (r < 0)
                return r;
        r = mysql_conn_query(
                k->m,
                "SELECT source_table, pos_hi, pos_lo, state, copied_rows, pos_text FROM `cdcsync`.`tables` "
                "WHERE pipeline = ?",
                params, 1, copy_row, &l, err);
        mysql_commit(k->m); /* end the read's snapshot so the next batch sees fresh data */
        if (r >= 0 && l.oom)
                r = cdc_oom(err);
        if (r < 0) {
                free(l.v);
                return r;
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

static int sink_begin(Sink *k, CdcError *err) {
        mysql_sink_pending_clear(k);
        k->txn_row = 0; /* a batch starts with a source transaction */
        if (k->tx) {    /* sent with the batch's first statement, after the sender's job */
                k->begin_due = true;
                k->in_txn = true;
                return 0;
        }
        int r = mysql_sink_simple(k, "START TRANSACTION", err);
        if (r == 0)
                k->in_txn = true;
        return r;
}

const char mysql_sink_checkpoint_sql[] =
        "INSERT INTO `cdcsync`.`checkpoints` (pipeline, pos_hi, pos_lo, pos_text, source_commit_ts, updated_at) "
        "VALUES (?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE pos_hi = VALUES(pos_hi), pos_lo = VALUES(pos_lo), "
        "pos_text = VALUES(pos_text), source_commit_ts = VALUES(source_commit_ts), updated_at = VALUES(updated_at)";

int mysql_sink_commit_batch(Sink *k, const Checkpoint *ckpt, const char *ts, CdcError *err) {
        char hi[24], lo[24];
        snprintf(hi, sizeof(hi), "%" PRIu64, ckpt->pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, ckpt->pos.lo);
        Param p[5] = {
                {.data = k->pipe && k->pipe->name ? k->pipe->name : ""},
                {.data = hi},
                {.data = lo},
                {.data = (char *)ckpt->text},
                {.data = (char *)ts, .null = ts[0] == '\0'},
        };
        for (int i = 0; i < 5; i++)
                p[i].len = strlen(p[i].data);
        int r = mysql_sink_exec(k, mysql_sink_checkpoint_sql, p, 5, "checkpoint", NULL, err);
        if (r == 0 && k->fence > 0)
                r = mysql_sink_fence_check(k, err);
        if (r == 0 && mysql_commit(k->m))
                r = mysql_sink_error(k, NULL, "commit", err);
        return r;
}

static int sink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        char ts[96] = "";
        int r;
        if (last && last->commit_ts > 0) {
                time_t s = (time_t)(last->commit_ts / 1000000);
                struct tm tm;
                if (gmtime_r(&s, &tm))
                        snprintf(ts, sizeof(ts), "%04d-%02d-%02d %02d:%02d:%02d.%06u", tm.tm_year + 1900, tm.tm_mon + 1,
                                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(last->commit_ts % 1000000));
        }
        if (k->tx) {
                /* the sender commits it while the next batch is built; poll_durable() tells */
                const char *sqls[2] = {mysql_sink_checkpoint_sql, mysql_sink_fence_sql};
                r = mysql_sink_warm(k, sqls, k->fence > 0 ? 2 : 1, err);
                if (r == 0)
                        r = mysql_sink_hand_over(k, ckpt, ts, err);
                if (r == 0)
                        k->in_txn = false;
                return r;
        }
        r = mysql_sink_pending_flush(k, err);
        if (r == 0)
                r = mysql_sink_commit_batch(k, ckpt, ts, err);
        if (r < 0)
                return r;
        k->in_txn = false;
        k->have_durable = true;
        k->durable = ckpt->pos;
        return 0;
}

/* Parallel apply: every run held back is sent, so that commit() has only the checkpoint and
 * COMMIT left while earlier batches commit. */
static int sink_prepare(Sink *k, CdcError *err) {
        return k->in_txn ? mysql_sink_pending_flush(k, err) : 0;
}

/* Without the sender a committed batch is durable at once: nothing is outstanding. */
static int sink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        if (k->tx)
                return mysql_sink_sender_poll(k, timeout_ms, ret, ret_found, err);
        (void)timeout_ms;
        (void)err;
        *ret_found = k->have_durable;
        *ret = k->have_durable ? k->durable : (Position){0};
        return 0;
}

static int sink_set_fence(Sink *k, int64_t generation, CdcError *err) {
        int r = mysql_sink_idle(k, err); /* the sender reads k->fence */
        if (r < 0)
                return r;
        k->fence = generation;
        if (generation <= 0)
                return 0;
        if (k->in_txn)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "%s the lease was set inside a transaction",
                                 k->ctx);
        return mysql_sink_fence_register(k, err);
}

static int sink_rollback(Sink *k) {
        mysql_sink_sender_reset(k); /* its job (rolled back if it failed) ends first */
        mysql_sink_pending_clear(k);
        mysql_sink_seen_clear(k); /* what the rolled-back transaction recorded is gone */
        k->in_txn = false;
        return mysql_rollback(k->m) ? -EIO : 0;
}

static int count_tables(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)cells, (void)lens, (void)ncols;
        (*(int *)ud)++;
        return 0;
}

static int sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Sink *k;
        int r = sink_open(conn, pipe, &k, err);
        if (r < 0)
                return r;
        /* A new pipeline whose first copy is snapshot = initial refuses target tables that hold
         * rows (the copy itself refuses them too: check_empty); one with a checkpoint copies none. */
        bool found = false;
        Checkpoint ckpt;
        if (conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL && pipe->all_tables)
                printf("note: sink %s: pipeline %s copies into empty tables only (snapshot = initial); with tables = * "
                       "that is checked when the copy starts\n",
                       conn->name, pipe->name);
        else if (conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL)
                r = sink_last_position(k, &ckpt, &found, err);
        for (int i = 0; r == 0 && !found && conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL && !pipe->all_tables &&
                        i < pipe->ntables;
             i++) {
                const char *t = pipe->tables[i], *dot = strchr(t, '.');
                char sch[256], tab[256];
                int exists = 0;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                Table *shape = dot ? table_new(sch, dot + 1, 0) : NULL;
                if (!shape || mysql_sink_map_table(k, shape, sch, sizeof(sch), tab, sizeof(tab)) < 0) {
                        table_unref(shape);
                        continue;
                }
                table_unref(shape);
                const char *params[2] = {sch, tab};
                r = mysql_conn_query(
                        k->m, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        params, 2, count_tables, &exists, err);
                if (r >= 0 && exists)
                        r = mysql_sink_check_empty(k, sch, tab, err);
                if (r > 0)
                        r = 0;
        }
        sink_free(k);
        return r < 0 ? r : 0;
}

int mysql_sink_write_mark(const PipelineConf *writer, char *buf, size_t len) {
        return snprintf(buf, len, "%u", writer->sink->server_id);
}

const SinkOps mysql_sink_ops = {
        .type = "mysql",
        .open = sink_open,
        .last_position = sink_last_position,
        .begin = sink_begin,
        .apply = sink_apply,
        .commit = sink_commit,
        .poll_durable = sink_poll_durable,
        .rollback = sink_rollback,
        .check = sink_check,
        .free = sink_free,
        .open_worker = sink_open_worker,
        .prepare = sink_prepare,
        .copy_records = true,
        .range_delete = true,
        .copied_tables = sink_copied_tables,
        .locate = mysql_conn_locate,
        .set_fence = sink_set_fence,
        .lease_open = mysql_sink_lease_open,
        .lease_step = mysql_sink_lease_step,
        .lease_release = mysql_sink_lease_release,
        .lease_free = mysql_sink_lease_free,
};
