/* The MySQL/MariaDB sink's target tables: names, creation and new columns, and what the sink may
 * assume about them (reordering, emptiness, the source relation they hold). */
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

/* ---- table names and creation ---- */

int mysql_sink_map_table(Sink *k, const Table *t, char *schema, size_t sl, char *name, size_t nl) {
        const char *def = k->conn->database ? k->conn->database : t->schema;
        if (strcmp(t->schema, "cdcsync") == 0) { /* our own bookkeeping keeps its place */
                snprintf(schema, sl, "%s", t->schema);
                snprintf(name, nl, "%s", t->name);
                return 0;
        }
        char full[512];
        if (k->pipe && k->pipe->nmaps > 0)
                snprintf(full, sizeof(full), "%s.%s", t->schema, t->name);
        if (k->pipe && k->pipe->nmaps > 0)
                for (int i = 0; i < k->pipe->nmaps; i++) {
                        const TableMap *m = &k->pipe->maps[i];
                        const char *dot = strchr(m->to, '.');
                        if (!dot)
                                continue;
                        if (strcmp(m->from, full) == 0) {
                                snprintf(schema, sl, "%.*s", (int)(dot - m->to), m->to);
                                snprintf(name, nl, "%s", dot + 1);
                                return 0;
                        }
                        size_t fl = strlen(m->from);
                        if (fl > 2 && strcmp(m->from + fl - 2, ".*") == 0 && strncmp(m->from, t->schema, fl - 2) == 0 &&
                            t->schema[fl - 2] == '\0') {
                                snprintf(schema, sl, "%.*s", (int)(dot - m->to), m->to);
                                snprintf(name, nl, "%s", t->name);
                                return 0;
                        }
                }
        /* every change comes here: copied without printf */
        size_t dl = strlen(def), tl = strlen(t->name);
        if (dl >= sl || tl >= nl)
                return -ENAMETOOLONG;
        memcpy(schema, def, dl + 1);
        memcpy(name, t->name, tl + 1);
        return 0;
}

/* A PostgreSQL char(n) (bpchar) column: its values arrive padded with blanks to n, which
 * PostgreSQL ignores in comparisons; MySQL's CHAR drops them, and the sink drops them for every
 * target type, so a value is the same in a key, a WHERE and a row whatever the target column. */
bool mysql_sink_blank_padded(const Column *c) {
        const char *tn = c->type_name ? c->type_name : "";
        return c->cls == TYPE_TEXT && (strncmp(tn, "character(", 10) == 0 || strcmp(tn, "bpchar") == 0);
}

/* A MySQL column type for a source column. From a MySQL source the declared type is kept. */
static void mysql_type(const Sink *k, const Column *c, StrBuf *q) {
        /* a PostgreSQL domain maps as its base type */
        const char *tn = c->base_type ? c->base_type : c->type_name ? c->type_name : "";
        unsigned n = 0;
        const ConnectorType *st =
                k->pipe && k->pipe->source && k->pipe->source->type ? connector_type(k->pipe->source->type) : NULL;
        if (st && st->source_dialect == CONNECTOR_DIALECT_MYSQL && tn[0]) {
                strbuf_puts(q, tn); /* from information_schema COLUMN_TYPE: a type, not data */
                return;
        }
        if (mysql_sink_blank_padded(c)) {
                /* PostgreSQL char(n): MySQL's CHAR(n) drops the padding too, and compares with it
                 * ignored; past CHAR's 255 the values are stored without it (make_param) */
                char b[32];
                if (sscanf(tn, "character(%u)", &n) == 1 && n >= 1 && n <= 255) {
                        snprintf(b, sizeof(b), "CHAR(%u)", n);
                        strbuf_puts(q, b);
                } else {
                        strbuf_puts(q, c->key ? "VARCHAR(768)" : "LONGTEXT");
                }
                return;
        }
        if (c->cls == TYPE_TIME && strstr(tn, "with time zone")) {
                /* PostgreSQL timetz: MySQL has no time with an offset; its text is kept whole
                 * ("04:05:06.789+02", at most 24 characters) rather than shifted to UTC, which
                 * would lose the offset and wrap past midnight */
                strbuf_puts(q, "VARCHAR(32)");
                return;
        }
        switch (c->cls) {
        case TYPE_INTEGER:
                strbuf_puts(q, strncmp(tn, "smallint", 8) == 0  ? "SMALLINT"
                               : strncmp(tn, "integer", 7) == 0 ? "INT"
                                                                : "BIGINT");
                break;
        case TYPE_NUMERIC: {
                /* PostgreSQL's scale may be negative (numeric(3,-6): multiples of 10^6 below 10^9)
                 * or above the precision (numeric(3,5): below 10^-2): DECIMAL(p - s, 0) and
                 * DECIMAL(s, s) hold those exactly */
                int p = 0, s = 0, n = 0;
                if (sscanf(tn, "numeric(%d,%d)%n", &p, &s, &n) == 2 && tn[n] == '\0' && p >= 1 && p <= 1000) {
                        int mp = s < 0 ? p - s : s > p ? s : p, ms = s < 0 ? 0 : s;
                        if (mp <= 65 && ms <= 30) {
                                char b[32];
                                snprintf(b, sizeof(b), "DECIMAL(%d,%d)", mp, ms);
                                strbuf_puts(q, b);
                                break;
                        }
                }
                strbuf_puts(q, "DECIMAL(65,30)");
                break;
        }
        case TYPE_FLOAT: strbuf_puts(q, strcmp(tn, "real") == 0 ? "FLOAT" : "DOUBLE"); break;
        case TYPE_BOOLEAN: strbuf_puts(q, "TINYINT(1)"); break;
        case TYPE_BYTES: strbuf_puts(q, c->key ? "VARBINARY(3072)" : "LONGBLOB"); break;
        case TYPE_DATE: strbuf_puts(q, "DATE"); break;
        case TYPE_TIME: strbuf_puts(q, "TIME(6)"); break;
        case TYPE_TIMESTAMP:
        case TYPE_TIMESTAMPTZ: /* stored as UTC */ strbuf_puts(q, "DATETIME(6)"); break;
        case TYPE_JSON: strbuf_puts(q, "JSON"); break;
        case TYPE_UUID: strbuf_puts(q, "CHAR(36)"); break;
        default: strbuf_puts(q, c->key ? "VARCHAR(768)" : "LONGTEXT"); break;
        }
}

typedef struct {
        const Table *t;
        bool *present; /* t->ncols: the target has the column */
} ColCheck;

static int colcheck_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ColCheck *c = ud;
        (void)lens;
        if (ncols < 1 || !cells[0])
                return 0;
        for (int i = 0; i < c->t->ncols; i++)
                if (strcasecmp(c->t->cols[i].name, cells[0]) == 0) /* MySQL column names ignore case */
                        c->present[i] = true;
        return 0;
}

/* A source table that gained columns (ALTER TABLE ADD COLUMN while streaming) against the target.
 * With create_tables the sink adds them, as it creates tables. MySQL's DDL commits implicitly and
 * waits for the open batch's locks, so the batch is rolled back first, the columns added on a
 * connection of their own, and a retriable error replays the batch from the checkpoint, now
 * against the wider table. Without create_tables the pipeline stops with the columns to add. */
static int ensure_columns(Sink *k, TargetTable *tt, const Table *t, CdcError *err) {
        ColCheck c = {.t = t, .present = calloc((size_t)(t->ncols > 0 ? t->ncols : 1), sizeof(bool))};
        const char *params[2] = {tt->schema, tt->name};
        StrBuf q = {0};
        char missing[512] = "";
        size_t ml = 0;
        int r, nadd = 0;
        if (!c.present)
                return cdc_oom(err);
        r = mysql_conn_query(k->m,
                             "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND "
                             "TABLE_NAME = ?",
                             params, 2, colcheck_row, &c, err);
        if (r < 0)
                goto out;
        strbuf_puts(&q, "ALTER TABLE ");
        mysql_sql_table(&q, tt->schema, tt->name);
        for (int i = 0; i < t->ncols; i++) {
                if (c.present[i])
                        continue;
                int n = snprintf(missing + ml, sizeof(missing) - ml, "%s%s", ml ? ", " : "", t->cols[i].name);
                if (n > 0 && ml + (size_t)n < sizeof(missing))
                        ml += (size_t)n;
                strbuf_puts(&q, nadd++ ? ", ADD COLUMN " : " ADD COLUMN ");
                mysql_sql_ident(&q, t->cols[i].name);
                strbuf_puts(&q, " ");
                mysql_type(k, &t->cols[i], &q);
        }
        if (!nadd) {
                table_unref(tt->shape);
                tt->shape = table_ref((Table *)t);
                tt->reorder_known = false;
                r = 0;
                goto out;
        }
        if (!k->conn->create_tables) {
                r = cdc_error(err, -EPROTO, false, CDC_ERR_SCHEMA,
                              "%s source table %s.%s has column(s) %s that sink table `%s`.`%s` lacks: add them "
                              "(ALTER TABLE ... ADD COLUMN) and restart, or set create_tables = yes on connector '%s'",
                              k->ctx, t->schema, t->name, missing, tt->schema, tt->name, k->conn->name);
                goto out;
        }
        if (q.oom) {
                r = cdc_oom(err);
                goto out;
        }
        if (k->in_txn) {
                mysql_rollback(k->m);
                k->in_txn = false;
        }
        MYSQL *ddl = NULL;
        r = mysql_sink_conn_open(k->conn, k->ctx, 0, &ddl, err);
        if (r >= 0 && (mysql_query(ddl, "SET SESSION lock_wait_timeout = 30") || mysql_query(ddl, q.data)))
                r = cdc_error(err, -EIO, false, CDC_ERR_SCHEMA, "%s cannot add column(s) %s to `%s`.`%s`: %s", k->ctx,
                              missing, tt->schema, tt->name, mysql_error(ddl));
        if (ddl)
                mysql_close(ddl);
        if (r < 0)
                goto out;
        log_info(k->ctx, "added column(s) %s to `%s`.`%s` (new in source table %s.%s)", missing, tt->schema, tt->name,
                 t->schema, t->name);
        r = cdc_error(err, -EAGAIN, true, CDC_ERR_SCHEMA,
                      "%s added column(s) %s to `%s`.`%s`: the batch is applied again against the new columns", k->ctx,
                      missing, tt->schema, tt->name);
out:
        free(c.present);
        free(q.data);
        return r;
}

/* CREATE TABLE for source shape t. DDL commits implicitly in MySQL: it runs on a connection of
 * its own, so the open batch stays one transaction. A PostgreSQL source's generated columns are
 * left out (their expressions are PostgreSQL's; the source does not send their values), with a
 * warning naming them. */
static int create_target(Sink *k, const Table *t, const char *schema, const char *name, CdcError *err) {
        StrBuf q = {0};
        int r;
        strbuf_puts(&q, "CREATE TABLE IF NOT EXISTS ");
        mysql_sql_table(&q, schema, name);
        strbuf_puts(&q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&q, ", ");
                mysql_sql_ident(&q, t->cols[i].name);
                strbuf_puts(&q, " ");
                mysql_type(k, &t->cols[i], &q);
                if (t->cols[i].key)
                        strbuf_puts(&q, " NOT NULL");
        }
        if (table_nkeys(t) > 0) {
                strbuf_puts(&q, ", PRIMARY KEY (");
                bool first = true;
                for (int i = 0; i < t->ncols; i++)
                        if (t->cols[i].key) {
                                if (!first)
                                        strbuf_puts(&q, ", ");
                                first = false;
                                mysql_sql_ident(&q, t->cols[i].name);
                        }
                strbuf_puts(&q, ")");
        }
        strbuf_puts(&q, ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        if (q.oom) {
                free(q.data);
                return cdc_oom(err);
        }
        MYSQL *ddl = NULL;
        r = mysql_sink_conn_open(k->conn, k->ctx, 0, &ddl, err);
        if (r >= 0 && mysql_query(ddl, q.data))
                r = cdc_error(err, -EIO, false, CDC_ERR_SCHEMA, "%s cannot create `%s`.`%s`: %s", k->ctx, schema, name,
                              mysql_error(ddl));
        if (ddl)
                mysql_close(ddl);
        free(q.data);
        if (r < 0)
                return r;
        for (int g = 0; g < t->ngen; g++)
                log_warn(k->ctx,
                         "created `%s`.`%s` without generated column %s of source table %s.%s (GENERATED ALWAYS AS "
                         "(%s) STORED in PostgreSQL): MySQL cannot compute that expression, and the source does not "
                         "send its values — add it by hand as a MySQL generated column if you need it",
                         schema, name, t->gen[g].name, t->schema, t->name, t->gen[g].expr);
        return 0;
}

int mysql_sink_ensure_table(Sink *k, const Table *t, const char *schema, const char *name, CdcError *err) {
        for (TargetTable *tt = k->known; tt; tt = tt->next)
                if (strcmp(tt->schema, schema) == 0 && strcmp(tt->name, name) == 0)
                        return tt->shape == t ? 0 : ensure_columns(k, tt, t, err);
        const char *params[2] = {schema, name};
        int r = mysql_conn_query(k->m,
                                 "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                                 params, 2, NULL, NULL, err);
        if (r < 0)
                return r;
        if (r == 0) {
                if (!k->conn->create_tables)
                        return cdc_error(err, -ENOENT, true, CDC_ERR_SCHEMA,
                                         "%s table `%s`.`%s` does not exist in the sink: create it, or set "
                                         "create_tables = yes on connector '%s'",
                                         k->ctx, schema, name, k->conn->name);
                r = create_target(k, t, schema, name, err);
                if (r < 0)
                        return r;
        }
        TargetTable *tt = calloc(1, sizeof(*tt));
        if (!tt)
                return cdc_oom(err);
        tt->schema = strdup(schema);
        tt->name = strdup(name);
        tt->next = k->known;
        k->known = tt;
        if (!tt->schema || !tt->name)
                return cdc_oom(err);
        return ensure_columns(k, tt, t, err);
}

/* True when t's target is known with this very shape: ensure_table will send nothing. */
bool mysql_sink_table_ready(const Sink *k, const Table *t, const char *schema, const char *name) {
        for (const TargetTable *tt = k->known; tt; tt = tt->next)
                if (strcmp(tt->schema, schema) == 0 && strcmp(tt->name, name) == 0)
                        return tt->shape == t;
        return false;
}

bool mysql_sink_quiet(const Sink *k, const Table *t, const Change *c, const char *schema, const char *name) {
        if (c->op == CHANGE_TRUNCATE || (c->flags & CHANGE_RANGE))
                return false;
        const TargetTable *tt = k->known;
        while (tt && (strcmp(tt->schema, schema) != 0 || strcmp(tt->name, name) != 0))
                tt = tt->next;
        if (!tt || tt->shape != t || !tt->reorder_known)
                return false;
        if (!k->rels || strcmp(t->schema, "cdcsync") == 0)
                return true;
        const RelSeen *rs = k->seen;
        while (rs && (strcmp(rs->schema, t->schema) != 0 || strcmp(rs->name, t->name) != 0))
                rs = rs->next;
        return rs && rs->rel_id == t->rel_id && rs->ready;
}

typedef struct {
        long other; /* unique indexes besides the primary key, foreign keys, triggers */
        char *pk;   /* owned: primary key columns, '\n'-separated */
        bool got;
} ReorderRow;

static int reorder_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ReorderRow *x = ud;
        char *end;
        (void)lens;
        if (ncols < 2 || !cells[0] || x->got)
                return -EBADMSG;
        errno = 0;
        x->other = strtol(cells[0], &end, 10);
        if (errno || *end)
                return -EBADMSG;
        x->pk = strdup(cells[1] ? cells[1] : "");
        if (!x->pk)
                return -ENOMEM;
        x->got = true;
        return 0;
}

/* May changes of t into tt be reordered (see RUNS_MAX)? One look at the target's indexes,
 * foreign keys and triggers per shape. */
int mysql_sink_check_reorder(Sink *k, TargetTable *tt, const Table *t, CdcError *err) {
        const char *ps[10] = {tt->schema, tt->name,   tt->schema, tt->name,   tt->schema,
                              tt->name,   tt->schema, tt->name,   tt->schema, tt->name};
        ReorderRow x = {0};
        int r = mysql_conn_query(
                k->m,
                "SELECT (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "
                "AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY') + (SELECT COUNT(*) FROM "
                "information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND ((TABLE_SCHEMA = ? "
                "AND TABLE_NAME = ?) OR (REFERENCED_TABLE_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?))) + (SELECT "
                "COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?), "
                "(SELECT GROUP_CONCAT(COLUMN_NAME SEPARATOR '\\n') FROM information_schema.STATISTICS WHERE "
                "TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY')",
                ps, 10, reorder_row, &x, err);
        if (r < 0)
                goto out;
        /* the primary key must be exactly the source's key (MySQL column names ignore case) */
        bool ok = x.got && x.other == 0 && table_nkeys(t) > 0;
        int npk = 0;
        for (char *name = x.pk, *next; ok && name && *name; name = next) {
                next = strchr(name, '\n');
                if (next)
                        *next++ = '\0';
                bool found = false;
                for (int i = 0; i < t->ncols && !found; i++)
                        found = t->cols[i].key && strcasecmp(t->cols[i].name, name) == 0;
                ok = found;
                npk++;
        }
        /* Keys are compared by their source text: only types whose text is canonical qualify (a
         * case-insensitive collation makes 'A' and 'a' one row; DECIMAL makes 1.0 and 1.00 one). */
        for (int i = 0; i < t->ncols && ok; i++)
                if (t->cols[i].key)
                        ok = t->cols[i].cls == TYPE_INTEGER || t->cols[i].cls == TYPE_UUID;
        tt->reorder = ok && npk == table_nkeys(t);
        tt->reorder_known = true;
        r = 0;
out:
        free(x.pk);
        return r;
}

static int count_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)lens;
        if (ncols >= 1 && cells[0])
                *(unsigned long long *)ud = strtoull(cells[0], NULL, 10);
        return 0;
}

/* The first copy of a table under snapshot = initial (TRUNCATE_CHECK_EMPTY): the copy goes only
 * into an empty table; rows there stop it (counted up to a bound, so a huge table costs little). */
#define CHECK_EMPTY_COUNT_MAX 1000000ULL
int mysql_sink_check_empty(Sink *k, const char *schema, const char *name, CdcError *err) {
        StrBuf q = {0};
        unsigned long long n = 0;
        char lim[32];
        strbuf_puts(&q, "SELECT COUNT(*) FROM (SELECT 1 FROM ");
        mysql_sql_table(&q, schema, name);
        snprintf(lim, sizeof(lim), " LIMIT %llu) t", CHECK_EMPTY_COUNT_MAX + 1);
        strbuf_puts(&q, lim);
        if (q.oom) {
                free(q.data);
                return cdc_oom(err);
        }
        /* On a connection of its own: the batch's read view may be older than a table that
         * create_tables just made (on another connection), which InnoDB refuses to read (1412). */
        MYSQL *c = NULL;
        int r = mysql_conn_open(k->conn, NULL, &c, err);
        if (r >= 0)
                r = mysql_conn_query(c, q.data, NULL, 0, count_row, &n, err);
        if (c)
                mysql_close(c);
        free(q.data);
        if (r < 0)
                return r;
        if (n > 0) {
                char table[600], msg[1024];
                snprintf(table, sizeof(table), "%s.%s", schema, name);
                conf_copy_refusal(k->pipe, table, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                return cdc_error(err, -EEXIST, false, CDC_ERR_CONF, "%s %s", k->ctx, msg);
        }
        return 0;
}

void mysql_sink_seen_clear(Sink *k) {
        while (k->seen) {
                RelSeen *r = k->seen;
                k->seen = r->next;
                free(r->schema);
                free(r->name);
                free(r);
        }
}

typedef struct {
        RelSeen *seen;
        bool found;
} RelRow;

static int rel_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        RelRow *rr = ud;
        (void)lens;
        if (ncols < 3 || !cells[0] || !cells[2])
                return -EBADMSG;
        rr->seen->rel_id = (uint32_t)strtoul(cells[0], NULL, 10);
        rr->seen->has_prev = cells[1] != NULL;
        rr->seen->prev = cells[1] ? (uint32_t)strtoul(cells[1], NULL, 10) : 0;
        rr->seen->ready = strcmp(cells[2], "0") != 0;
        rr->found = true;
        return 0;
}

/* Whether source table t is still the relation this pipeline last saw under its name, as
 * `cdcsync`.`relations` records it: a PostgreSQL table dropped and created again is a new table,
 * whose rows are never merged into the old one's.
 * - With create_tables the target is dropped and created anew from the new table's columns. That
 *   is DDL (it commits), so the batch is rolled back first, the new relation recorded with the
 *   DDL, and a retriable error applies the batch again.
 * - Without, a target that is empty takes the new relation; one that holds rows stops the
 *   pipeline until the operator empties it (the new relation is recorded at once, as not ready,
 *   the batch rolled back for that).
 * - In the initial copy the new relation is just recorded: the copy's snapshot mode decides what
 *   becomes of the rows the target holds, as for any table.
 * Changes of the relation before the current one (*ret_skip) are those of a dropped table: a
 * batch applied again after the new one was recorded holds them, and they no longer matter. */
int mysql_sink_check_relation(Sink *k, const Table *t, const TxnInfo *txn, const char *schema, const char *name,
                              bool *ret_skip, CdcError *err) {
        char relid[16], prev[16];
        const char *params[6] = {k->pipe->name, t->schema, t->name, relid, NULL, "1"};
        static const char record[] = "INSERT INTO `cdcsync`.`relations` (pipeline, src_schema, src_name, rel_id, "
                                     "prev_rel_id, ready, updated_at) VALUES (?, ?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE "
                                     "KEY UPDATE rel_id = VALUES(rel_id), prev_rel_id = VALUES(prev_rel_id), "
                                     "ready = VALUES(ready), updated_at = VALUES(updated_at)";
        RelSeen *rs = k->seen;
        int r;

        while (rs && (strcmp(rs->schema, t->schema) != 0 || strcmp(rs->name, t->name) != 0))
                rs = rs->next;
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        if (!rs) {
                rs = calloc(1, sizeof(*rs));
                if (!rs || !(rs->schema = strdup(t->schema)) || !(rs->name = strdup(t->name))) {
                        if (rs)
                                free(rs->schema);
                        free(rs);
                        return cdc_oom(err);
                }
                rs->next = k->seen;
                k->seen = rs;
                RelRow rr = {.seen = rs};
                /* Read on a connection of its own: a read in the batch's transaction would open its
                 * read view, and a table created after it (create_tables) could not be written in
                 * it (error 1412); a locking read would take gap locks that deadlock pipelines
                 * inserting their first rows. Only this pipeline writes its rows, and what this
                 * transaction wrote is in k->seen. */
                if (!k->aux && (r = mysql_conn_open(k->conn, NULL, &k->aux, err)) < 0)
                        return r;
                r = mysql_conn_query(k->aux,
                                     "SELECT rel_id, prev_rel_id, ready FROM `cdcsync`.`relations` WHERE pipeline = ? "
                                     "AND src_schema = ? AND src_name = ?",
                                     params, 3, rel_row, &rr, err);
                if (r < 0) {
                        mysql_close(k->aux);
                        k->aux = NULL;
                        return r;
                }
                if (!rr.found) { /* first seen */
                        r = mysql_conn_query(k->m, record, params, 6, NULL, NULL, err);
                        if (r < 0)
                                return r;
                        rs->rel_id = t->rel_id;
                        rs->ready = true;
                        return 0;
                }
        }
        if (rs->rel_id == t->rel_id && rs->ready)
                return 0;
        if (rs->has_prev && rs->prev == t->rel_id && rs->rel_id != t->rel_id) {
                *ret_skip = true;
                return 0;
        }
        /* A new relation: the source table was dropped and created again. */
        uint32_t before = rs->rel_id != t->rel_id ? rs->rel_id : rs->prev;
        snprintf(prev, sizeof(prev), "%u", before);
        params[4] = prev;
        StrBuf q = {0};
        if (k->conn->create_tables && !txn->snapshot) {
                mysql_sink_pending_clear(k);
                mysql_rollback(k->m);
                k->in_txn = false;
                MYSQL *ddl = NULL;
                strbuf_puts(&q, "DROP TABLE IF EXISTS ");
                mysql_sql_table(&q, schema, name);
                if (q.oom)
                        return cdc_oom(err);
                r = mysql_sink_conn_open(k->conn, k->ctx, 0, &ddl, err);
                if (r >= 0 && (mysql_query(ddl, "SET SESSION lock_wait_timeout = 30") || mysql_query(ddl, q.data)))
                        r = cdc_error(err, -EIO, true, CDC_ERR_SCHEMA,
                                      "%s source table %s.%s was dropped and created again (relation %u, before %u), "
                                      "and target table `%s`.`%s` cannot be dropped to be created anew: %s",
                                      k->ctx, t->schema, t->name, t->rel_id, before, schema, name, mysql_error(ddl));
                free(q.data);
                for (TargetTable **pp = &k->known; r >= 0 && *pp; pp = &(*pp)->next)
                        if (strcmp((*pp)->schema, schema) == 0 && strcmp((*pp)->name, name) == 0) {
                                TargetTable *tt = *pp;
                                *pp = tt->next;
                                table_unref(tt->shape);
                                free(tt->schema);
                                free(tt->name);
                                free(tt);
                                break;
                        }
                if (r >= 0)
                        r = create_target(k, t, schema, name, err);
                if (r >= 0 && (r = mysql_conn_query(ddl, record, params, 6, NULL, NULL, err)) >= 0)
                        mysql_commit(ddl);
                if (ddl)
                        mysql_close(ddl);
                mysql_sink_seen_clear(k);
                if (r < 0)
                        return r;
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): dropped "
                         "target table `%s`.`%s` with the old table's rows and created it anew from the new "
                         "table's columns",
                         t->schema, t->name, t->rel_id, before, schema, name);
                return cdc_error(err, -EAGAIN, true, CDC_ERR_SCHEMA,
                                 "%s re-created `%s`.`%s` for the new source table %s.%s: the batch is applied "
                                 "again",
                                 k->ctx, schema, name, t->schema, t->name);
        }
        if (!txn->snapshot) {
                r = mysql_sink_pending_flush(k, err); /* rows held for it count */
                if (r < 0)
                        return r;
                strbuf_puts(&q, "SELECT 1 FROM ");
                mysql_sql_table(&q, schema, name);
                strbuf_puts(&q, " LIMIT 1 LOCK IN SHARE MODE"); /* locking: no read view (see above) */
                if (q.oom)
                        return cdc_oom(err);
                r = mysql_conn_query(k->m, q.data, NULL, 0, NULL, NULL, err);
                free(q.data);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (rs->rel_id != t->rel_id) {
                                /* recorded now, outside the batch: rolled back for that (it may hold the row) */
                                CdcError e;
                                mysql_sink_pending_clear(k);
                                mysql_rollback(k->m);
                                k->in_txn = false;
                                params[5] = "0";
                                if (mysql_conn_query(k->m, record, params, 6, NULL, NULL, &e) < 0 || mysql_commit(k->m))
                                        log_warn(k->ctx, "cannot record the new relation of %s.%s: %s", t->schema,
                                                 t->name, mysql_error(k->m));
                                mysql_sink_seen_clear(k);
                        }
                        return cdc_error(err, -EEXIST, true, CDC_ERR_SCHEMA,
                                         "%s source table %s.%s was dropped and created again (relation %u, before "
                                         "%u): its rows would be merged into target table `%s`.`%s`, which holds "
                                         "the old table's rows — empty it (DELETE, TRUNCATE) and give it the new "
                                         "table's columns, or set create_tables = yes on connector '%s' to have it "
                                         "re-created; the pipeline retries",
                                         k->ctx, t->schema, t->name, t->rel_id, before, schema, name, k->conn->name);
                }
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): target table "
                         "`%s`.`%s` is empty and takes the new table's rows",
                         t->schema, t->name, t->rel_id, before, schema, name);
        }
        r = mysql_conn_query(k->m, record, params, 6, NULL, NULL, err);
        if (r < 0)
                return r;
        rs->prev = before;
        rs->has_prev = true;
        rs->rel_id = t->rel_id;
        rs->ready = true;
        return 0;
}
