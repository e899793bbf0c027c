/* The PostgreSQL sink's target tables: looked up, created, given new columns, checked for which
 * changes commute, and followed through a source table dropped and created again. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"
#include "postgres/pg_typedef.h"

/* Sets search_path to pg_catalog, as the source's sessions have it, until path_restore() (or the
 * end of the batch's transaction), so that the server prints names as the source printed them
 * (see pg_typedef.h) and the source's DDL, whose names are qualified but pg_catalog's, means the
 * same here. *ret_saved: to restore. */
static int path_clear(Sink *k, char **ret_saved, CdcError *err) {
        int r = pg_pipe_send_query(k,
                                   "SELECT pg_catalog.current_setting('search_path'), "
                                   "pg_catalog.set_config('search_path', 'pg_catalog', true)",
                                   0, NULL, "setting search_path", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        *ret_saved = k->captured ? strdup(PQgetvalue(k->captured, 0, 0)) : NULL;
        PQclear(k->captured);
        k->captured = NULL;
        if (!*ret_saved)
                return pg_pipe_fail(k, cdc_oom(err), err);
        return 0;
}

static int path_restore(Sink *k, const char *saved, CdcError *err) {
        const char *vals[1] = {saved};
        int r = pg_pipe_send_query(k, "SELECT pg_catalog.set_config('search_path', $1, true)", 1, vals,
                                   "restoring search_path", false, err);
        return r == 0 ? pg_pipe_drain(k, 0, err) : r;
}

/* After a failed statement of ours: err (and the transaction's first error) says what we were
 * doing, with the server's message, as a "schema" error. */
static int schema_failure(Sink *k, CdcError *err, bool retriable, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int schema_failure(Sink *k, CdcError *err, bool retriable, const char *fmt, ...) {
        char what[600], server[sizeof(err->message)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(server, sizeof(server), "%s", err->message);
        cdc_error(err, err->code, retriable, CDC_ERR_SCHEMA, "%s: %s", what, server);
        k->first_err = *err;
        return err->code;
}

/* Creates, in the sink database, the user-defined types that the source table's columns need
 * (Table.types, dependencies first), each in its schema: a type that exists already must be
 * the same as the source's (compared as the statements that would create them), else the
 * pipeline stops naming it. Runs with search_path = pg_catalog (path_clear). */
static int ensure_types(Sink *k, const Table *t, CdcError *err) {
        for (int i = 0; i < t->ntypes; i++) {
                const TypeDef *td = &t->types[i];
                const char *vals[1] = {td->name};
                PGresult *res;
                char *qs = NULL, *sql = NULL;
                int r = pg_pipe_send_query(k, pg_typedef_ddl_sql, 1, vals, "looking up a type the table needs", true,
                                           err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0)
                        return r;
                res = k->captured;
                k->captured = NULL;
                if (res && PQntuples(res) == 1) {
                        const char *here = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
                        if (td->ddl && (!here || strcmp(here, td->ddl) != 0))
                                r = pg_pipe_fail(
                                        k,
                                        cdc_error(err, -EEXIST, true, CDC_ERR_SCHEMA,
                                                  "sink %s: type %s, which column %s of source table %s.%s needs, "
                                                  "exists in the sink database but differs from the source's — "
                                                  "source: %s; sink: %s — make the sink's type the same (or drop "
                                                  "it, and cdcsync creates it); the pipeline retries",
                                                  k->conf->name, td->name, td->column, t->schema, t->name, td->ddl,
                                                  here ? here : "(a type cdcsync cannot describe)"),
                                        err);
                        PQclear(res);
                        if (r < 0)
                                return r;
                        continue;
                }
                PQclear(res);
                if (!td->ddl)
                        return pg_pipe_fail(k,
                                            cdc_error(err, -ENOENT, true, CDC_ERR_SCHEMA,
                                                      "sink %s: column %s of source table %s.%s has type %s, which the "
                                                      "sink database lacks and cdcsync cannot create: %s; the pipeline "
                                                      "retries",
                                                      k->conf->name, td->column, t->schema, t->name, td->name, td->why),
                                            err);
                r = pg_sql_quote_ident(td->schema, &qs);
                if (r == 0 && asprintf(&sql, "CREATE SCHEMA IF NOT EXISTS %s", qs) < 0)
                        r = -ENOMEM, sql = NULL;
                free(qs);
                if (r < 0)
                        return pg_pipe_fail(k, cdc_oom(err), err);
                r = pg_pipe_send_query(k, sql, 0, NULL, "creating a type's schema", false, err);
                free(sql);
                if (r == 0)
                        r = pg_pipe_send_query(k, td->ddl, 0, NULL, "creating a type", false, err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0 && strcmp(err->kind, "data") == 0)
                        return schema_failure(k, err, false,
                                              "sink %s: cannot create type %s, which column %s of source table "
                                              "%s.%s needs (%s) — create it by hand",
                                              k->conf->name, td->name, td->column, t->schema, t->name, td->ddl);
                if (r < 0)
                        return r;
                log_info(k->ctx, "created type %s, which column %s of source table %s.%s needs", td->name, td->column,
                         t->schema, t->name);
        }
        return 0;
}

/* Creates the sink table from the source's shape t (create_tables), with the types it needs and
 * its generated columns when the source is PostgreSQL. */
static int create_table(Sink *k, const char *schema, const char *name, const Table *t, CdcError *err) {
        bool native = pg_sink_native(k);
        bool clear = native && (t->ntypes > 0 || t->ngen > 0);
        char *sql = NULL, *qs = NULL, *create_schema = NULL, *saved = NULL;
        int r = pg_sql_create_table(schema, name, t, native, &sql);

        if (r == -EINVAL)
                return pg_pipe_fail(
                        k,
                        cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                  "sink %s: cannot create table %s.%s: a column type of the source is not a "
                                  "plain type name — create the table by hand",
                                  k->conf->name, schema, name),
                        err);
        if (r == 0)
                r = pg_sql_quote_ident(schema, &qs);
        if (r == 0 && asprintf(&create_schema, "CREATE SCHEMA IF NOT EXISTS %s", qs) < 0)
                r = -ENOMEM, create_schema = NULL;
        if (r < 0) {
                r = pg_pipe_fail(k, cdc_oom(err), err);
                goto out;
        }
        if (clear)
                r = path_clear(k, &saved, err);
        if (r == 0 && native)
                r = ensure_types(k, t, err);
        if (r == 0) {
                r = pg_pipe_send_query(k, create_schema, 0, NULL, "creating the target schema", false, err);
                if (r == 0)
                        r = pg_pipe_send_query(k, sql, 0, NULL, "creating the target table", false, err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0 && strcmp(err->kind, "data") == 0) /* refused by the server, not for lack of rights */
                        r = schema_failure(k, err, false, "sink %s: cannot create table %s.%s", k->conf->name, schema,
                                           name);
        }
        if (r == 0 && clear)
                r = path_restore(k, saved, err);
        if (r < 0)
                goto out;
        log_info(k->ctx, "created table %s.%s from the source's columns%s", schema, name,
                 native && t->ngen > 0 ? " (its generated columns as generated)" : "");
out:
        free(sql);
        free(qs);
        free(create_schema);
        free(saved);
        return r;
}

/* Makes sure the sink table exists, creating it with create_tables. Only the first change of a
 * table per session pays this (one round-trip). */
int pg_target_ensure_table(Sink *k, const char *schema, const char *name, const Table *t, CdcError *err) {
        const char *vals[2] = {schema, name};
        char *qs = NULL, *qn = NULL, *key = NULL, *sql = NULL;
        size_t klen;
        bool exists;
        int r;

        r = pg_sql_quote_ident(schema, &qs);
        if (r == 0)
                r = pg_sql_quote_ident(name, &qn);
        if (r < 0)
                goto oom;
        klen = strlen(qs) + strlen(qn) + 2;
        key = malloc(klen);
        if (!key)
                goto oom;
        snprintf(key, klen, "%s.%s", qs, qn);
        if (pg_map_find(&k->tables, key)) {
                r = 0;
                goto out;
        }
        r = pg_pipe_send_query(k,
                               "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = "
                               "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN "
                               "('r', 'p', 'f', 'v'))",
                               2, vals, "looking up the target table", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                goto out;
        exists = k->captured && strcmp(PQgetvalue(k->captured, 0, 0), "t") == 0;
        if (!exists && !k->conf->create_tables) {
                r = pg_pipe_fail(k,
                                 cdc_error(err, -ENOENT, true, CDC_ERR_SCHEMA,
                                           "table %s.%s does not exist on sink %s — create it or set "
                                           "create_tables = yes in [connector.%s]",
                                           schema, name, k->conf->name, k->conf->name),
                                 err);
                goto out;
        }
        if (!exists) {
                r = create_table(k, schema, name, t, err);
                if (r < 0)
                        goto out;
        }
        r = pg_map_add(&k->tables, key, NULL);
        key = NULL;
        if (r < 0)
                goto oom;
        goto out;
oom:
        r = pg_pipe_fail(k, cdc_oom(err), err);
out:
        free(qs);
        free(qn);
        free(key);
        free(sql);
        return r;
}

/* Makes sure the target has every column of the source's shape t: a column added at the source
 * while streaming (MySQL ALTER TABLE ... ADD COLUMN, a new pgoutput relation) is added to the
 * target with create_tables, typed as CREATE TABLE would type it, in the batch's transaction (so
 * it is rolled back with it); without create_tables it is an error naming the columns, retried
 * until the operator adds them. One round-trip per table and shape. */
int pg_target_ensure_columns(Sink *k, TState *ts, const Table *t, CdcError *err) {
        const char *vals[2] = {ts->schema, ts->name};
        bool *add = calloc((size_t)t->ncols + 1, sizeof(*add));
        char *sql = NULL, missing[512] = "";
        size_t ml = 0;
        int r, nadd = 0;

        if (!add)
                return pg_pipe_fail(k, cdc_oom(err), err);
        r = pg_pipe_send_query(k,
                               "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                               2, vals, "looking up the target table's columns", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                goto out;
        for (int i = 0; i < t->ncols; i++) {
                add[i] = true;
                for (int row = 0; k->captured && row < PQntuples(k->captured) && add[i]; row++)
                        add[i] = strcmp(PQgetvalue(k->captured, row, 0), t->cols[i].name) != 0;
                if (!add[i])
                        continue;
                nadd++;
                int n = snprintf(missing + ml, sizeof(missing) - ml, "%s\"%s\"", ml ? ", " : "", t->cols[i].name);
                if (n > 0 && ml + (size_t)n < sizeof(missing))
                        ml += (size_t)n;
        }
        PQclear(k->captured);
        k->captured = NULL;
        if (nadd == 0) {
                r = 0;
                goto out;
        }
        if (!k->conf->create_tables) {
                r = pg_pipe_fail(k,
                                 cdc_error(err, -ENOENT, true, CDC_ERR_SCHEMA,
                                           "sink %s: table %s.%s lacks column(s) %s of source table %s.%s — add them "
                                           "(ALTER TABLE ... ADD COLUMN) or set create_tables = yes in [connector.%s]",
                                           k->conf->name, ts->schema, ts->name, missing, t->schema, t->name,
                                           k->conf->name),
                                 err);
                goto out;
        }
        bool native = pg_sink_native(k);
        if (native && t->ntypes > 0) { /* the new columns' types */
                char *saved = NULL;
                r = path_clear(k, &saved, err);
                if (r == 0)
                        r = ensure_types(k, t, err);
                if (r == 0)
                        r = path_restore(k, saved, err);
                free(saved);
                if (r < 0)
                        goto out;
        }
        r = pg_sql_add_columns(ts->schema, ts->name, t, add, native, &sql);
        if (r == -EINVAL) {
                r = pg_pipe_fail(
                        k,
                        cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                  "sink %s: cannot add column(s) %s to %s.%s: a column type of the source is not "
                                  "a plain type name — add them by hand",
                                  k->conf->name, missing, ts->schema, ts->name),
                        err);
                goto out;
        }
        if (r < 0) {
                r = pg_pipe_fail(k, cdc_oom(err), err);
                goto out;
        }
        r = pg_pipe_send_query(k, sql, 0, NULL, "adding the source's new columns to the target table", false, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                goto out;
        log_info(k->ctx, "added column(s) %s to %s.%s (new in source table %s.%s), in the batch's transaction", missing,
                 ts->schema, ts->name, t->schema, t->name);
out:
        free(add);
        free(sql);
        return r;
}

static TState *ts_free(TState *ts) {
        if (!ts)
                return NULL;
        if (ts->table)
                pg_held_ts_clear_held(ts);
        pg_held_forget_shapes(ts);
        free(ts->keys);
        free(ts->qname);
        table_unref(ts->table);
        free(ts);
        return NULL;
}

void pg_target_ts_drop_all(Sink *k) {
        memset(k->hot, 0, sizeof(k->hot));
        for (int i = 0; i < k->nts; i++)
                ts_free(k->ts[i]);
        free(k->ts);
        k->ts = NULL;
        k->nts = k->ts_cap = 0;
}

/* Looks up (or learns, one round-trip per table and session) what the sink knows of a table. */
int pg_target_table_state(Sink *k, const char *schema, const char *name, const char *qname, const Table *t,
                          TState **ret, CdcError *err) {
        const char *vals[2] = {schema, name};
        TState *ts;
        PGresult *res;
        int r, npk = 0;

        bool deferred;

        for (int i = 0; i < k->nts; i++)
                if (strcmp(k->ts[i]->qname, qname) == 0) {
                        *ret = k->ts[i];
                        return 0;
                }
        r = pg_defer_known(k, qname, &deferred, err);
        if (r < 0)
                return r;
        r = pg_pipe_send_query(k,
                               "SELECT a.attname, ((a.atthasdef AND a.attgenerated = '') OR a.attidentity <> '')::int, "
                               "coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]), false)::int, "
                               "(c.relkind = 'r' "
                               " AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = c.oid) "
                               " AND NOT EXISTS (SELECT 1 FROM pg_rewrite WHERE ev_class = c.oid) "
                               " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype = 'x') "
                               " AND NOT EXISTS (SELECT 1 FROM pg_index u WHERE u.indrelid = c.oid AND u.indisunique "
                               "                 AND NOT u.indisprimary))::int, "
                               "(a.attidentity = 'a')::int, c.relrowsecurity::int "
                               "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                               "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                               "WHERE n.nspname = $1 AND c.relname = $2",
                               2, vals, "looking up the target table's constraints", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        ts = calloc(1, sizeof(*ts));
        if (!ts || !(ts->qname = strdup(qname)))
                goto oom;
        snprintf(ts->schema, sizeof(ts->schema), "%s", schema);
        snprintf(ts->name, sizeof(ts->name), "%s", name);
        ts->table = table_ref((Table *)t);
        ts->deferred = deferred;
        res = k->captured;
        bool keyless = table_nkeys(t) == 0 || t->replident == 'f';
        /* Where changes commute at all: a plain table, no triggers, rules, exclusion constraints
         * or other unique indexes, and no default on a column the source does not send. With a
         * key, the sink's primary key is exactly the source's: changes to distinct keys commute.
         * Without one (a log, a history table), inserts commute with each other when the sink has
         * no primary key either: nothing can tell rows apart or refuse one; updates and deletes,
         * which find rows by their whole image, still go one by one after them. */
        bool plain = res && PQntuples(res) > 0;
        for (int row = 0; plain && row < PQntuples(res); row++) {
                const char *col = PQgetvalue(res, row, 0);
                int src = -1;
                for (int i = 0; i < t->ncols; i++)
                        if (strcmp(t->cols[i].name, col) == 0)
                                src = i;
                plain = PQgetvalue(res, row, 3)[0] == '1' && !(PQgetvalue(res, row, 1)[0] == '1' && src < 0);
        }
        ts->commutable = plain && !keyless;
        for (int row = 0; ts->commutable && row < PQntuples(res); row++) {
                const char *col = PQgetvalue(res, row, 0);
                int src = -1;
                for (int i = 0; i < t->ncols; i++)
                        if (strcmp(t->cols[i].name, col) == 0)
                                src = i;
                if (PQgetvalue(res, row, 3)[0] != '1')
                        ts->commutable = false;
                if (PQgetvalue(res, row, 2)[0] == '1') {
                        npk++;
                        if (src < 0 || !t->cols[src].key)
                                ts->commutable = false;
                }
                if (PQgetvalue(res, row, 1)[0] == '1' && src < 0)
                        ts->commutable = false;
        }
        /* An initial copy holds the primary key back (pg_sink_defer.c): it was the source's */
        if (npk != table_nkeys(t) && !(deferred && npk == 0))
                ts->commutable = false;
        for (int row = 0; plain && keyless && row < PQntuples(res); row++)
                npk += PQgetvalue(res, row, 2)[0] == '1';
        ts->appendable = plain && keyless && npk == 0;
        /* A run of a snapshot's inserts may go by COPY (pg_sink_copy.c says why only here): where
         * a multi-row INSERT goes, without row-level security (COPY FROM is refused under a
         * policy) and without a source column that is an identity GENERATED ALWAYS on the sink
         * (COPY would store the value INSERT refuses). */
        ts->copy_ok = (ts->commutable || ts->appendable) && t->ncols > 0;
        for (int row = 0; ts->copy_ok && row < PQntuples(res); row++) {
                const char *col = PQgetvalue(res, row, 0);
                bool sent = false;
                for (int i = 0; i < t->ncols && !sent; i++)
                        sent = strcmp(t->cols[i].name, col) == 0;
                if (PQgetvalue(res, row, 5)[0] == '1' || (sent && PQgetvalue(res, row, 4)[0] == '1'))
                        ts->copy_ok = false;
        }
        PQclear(k->captured);
        k->captured = NULL;
        if (k->nts == k->ts_cap) {
                int cap = k->ts_cap ? k->ts_cap * 2 : 8;
                TState **p = realloc(k->ts, (size_t)cap * sizeof(*p));
                if (!p)
                        goto oom;
                k->ts = p;
                k->ts_cap = cap;
        }
        k->ts[k->nts++] = ts;
        if (!ts->commutable && !ts->appendable)
                log_debug(k->ctx,
                          "table %s.%s: changes go one by one in source order (triggers, "
                          "foreign keys, other unique indexes, or another primary key on the sink)",
                          schema, name);
        *ret = ts;
        return 0;
oom:
        ts_free(ts);
        return pg_pipe_fail(k, cdc_oom(err), err);
}

/* The first copy of a table under snapshot = initial (TRUNCATE_CHECK_EMPTY): the copy goes only
 * into an empty table; rows there stop it (counted up to a bound, so a huge table costs little). */

int pg_target_check_empty(Sink *k, const char *schema, const char *name, CdcError *err) {
        char *qs = NULL, *qn = NULL, *sql = NULL;
        int r = pg_sql_quote_ident(schema, &qs);
        if (r == 0)
                r = pg_sql_quote_ident(name, &qn);
        if (r == 0 && asprintf(&sql, "SELECT count(*) FROM (SELECT FROM %s.%s LIMIT %d) t", qs, qn,
                               CHECK_EMPTY_COUNT_MAX + 1) < 0)
                sql = NULL;
        if (!sql) {
                r = pg_pipe_fail(k, cdc_oom(err), err);
                goto out;
        }
        r = pg_pipe_send_query(k, sql, 0, NULL, "counting the rows of the target table", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                goto out;
        unsigned long long n = k->captured ? strtoull(PQgetvalue(k->captured, 0, 0), NULL, 10) : 0;
        if (n > 0) {
                char table[600], msg[1024];
                snprintf(table, sizeof(table), "%s.%s", schema, name);
                conf_copy_refusal(k->pipe, table, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                r = pg_pipe_fail(k, cdc_error(err, -EEXIST, false, CDC_ERR_CONF, "sink %s: %s", k->conf->name, msg),
                                 err);
        }
out:
        free(qs);
        free(qn);
        free(sql);
        return r;
}

/* Forgets what the session knew of a target table (it was dropped). */
void pg_target_ts_forget(Sink *k, TState *ts) {
        for (int i = 0; i < HOT_MAX; i++)
                if (k->hot[i].ts == ts)
                        k->hot[i].t = NULL, k->hot[i].ts = NULL;
        for (int i = 0; i < k->nts; i++)
                if (k->ts[i] == ts) {
                        k->ts[i] = k->ts[--k->nts];
                        break;
                }
        ts_free(ts);
}

/* Whether source table t is still the relation this pipeline last saw under its name, as
 * cdcsync.relations records it: a table dropped and created again at the source is a new
 * relation, a new table, and its rows are never merged into the old one's.
 * - With create_tables the target table is dropped (with the old table's rows) and created anew
 *   from the new table's columns, in the batch's transaction: *ret_recreated.
 * - Without, a target that is empty takes the new relation; one that holds rows stops the
 *   pipeline until the operator empties it. The new relation is then recorded at once, as not
 *   ready (the batch is rolled back for that), so that the retries know the old relation for
 *   what it is.
 * - In the initial copy the new relation is just recorded: the copy's snapshot mode (initial,
 *   merge, replace) decides what becomes of the rows the target holds, as for any table.
 * Changes of the relation before the current one (*ret_skip) are those of a dropped table: a
 * batch read again after the new one was recorded holds them, and they no longer matter. */
int pg_target_check_relation(Sink *k, TState *ts, const char *schema, const char *name, const Table *t,
                             const TxnInfo *txn, bool *ret_recreated, bool *ret_skip, CdcError *err) {
        char relid[16], prev[16], *sql = NULL, *qs = NULL, *qn = NULL;
        const char *vals[6] = {k->pipe->name, t->schema, t->name, relid, prev, "t"};
        static const char record[] =
                "INSERT INTO cdcsync.relations AS r (pipeline, src_schema, src_name, rel_id, prev_rel_id, ready, "
                "updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (pipeline, src_schema, src_name) DO "
                "UPDATE SET rel_id = EXCLUDED.rel_id, prev_rel_id = EXCLUDED.prev_rel_id, ready = EXCLUDED.ready, "
                "updated_at = EXCLUDED.updated_at";
        uint32_t cur = 0, before = 0;
        bool known, has_prev = false, ready = true;
        int r;

        if (strcmp(t->schema, "cdcsync") == 0) { /* version tags: ours, not the source's */
                ts->rel_known = true, ts->rel_id = t->rel_id;
                return 0;
        }
        if (ts->rel_prev_known && ts->rel_prev == t->rel_id) {
                *ret_skip = true;
                return 0;
        }
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        r = pg_held_flush_table(k, ts, err); /* rows held in an older shape go first */
        if (r == 0)
                r = pg_pipe_send_query(
                        k,
                        "SELECT rel_id, prev_rel_id, ready FROM cdcsync.relations WHERE pipeline = $1 AND "
                        "src_schema = $2 AND src_name = $3",
                        3, vals, "looking up the source table's relation", true, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        known = k->captured && PQntuples(k->captured) == 1;
        if (known) {
                cur = (uint32_t)strtoul(PQgetvalue(k->captured, 0, 0), NULL, 10);
                has_prev = !PQgetisnull(k->captured, 0, 1);
                before = has_prev ? (uint32_t)strtoul(PQgetvalue(k->captured, 0, 1), NULL, 10) : 0;
                ready = strcmp(PQgetvalue(k->captured, 0, 2), "t") == 0;
        }
        PQclear(k->captured);
        k->captured = NULL;
        if (known && has_prev) {
                ts->rel_prev_known = true;
                ts->rel_prev = before;
        }
        if (known && cur == t->rel_id && ready) {
                ts->rel_known = true, ts->rel_id = t->rel_id;
                return 0;
        }
        if (known && has_prev && before == t->rel_id && cur != t->rel_id) {
                *ret_skip = true;
                return 0;
        }
        if (!known) { /* first seen */
                vals[4] = NULL;
                r = pg_pipe_send_query(k, record, 6, vals, "recording the source table's relation", false, err);
                if (r == 0)
                        ts->rel_known = true, ts->rel_id = t->rel_id;
                return r;
        }
        /* A new relation: the source table was dropped and created again. */
        if (cur != t->rel_id)
                before = cur;
        snprintf(prev, sizeof(prev), "%u", before);
        r = pg_sql_quote_ident(schema, &qs);
        if (r == 0)
                r = pg_sql_quote_ident(name, &qn);
        if (r < 0)
                goto oom;
        if (txn->snapshot) {
                /* the initial copy: its snapshot mode says what becomes of the rows there */
        } else if (k->conf->create_tables) {
                if (asprintf(&sql, "DROP TABLE IF EXISTS %s.%s", qs, qn) < 0) {
                        sql = NULL;
                        goto oom;
                }
                r = pg_pipe_send_query(k, sql, 0, NULL, "dropping the target table", false, err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0 && strcmp(err->kind, "data") == 0)
                        r = schema_failure(k, err, true,
                                           "sink %s: source table %s.%s was dropped and created again (relation %u, "
                                           "before %u), and target table %s.%s cannot be dropped to be created anew "
                                           "— drop it, or what depends on it",
                                           k->conf->name, t->schema, t->name, t->rel_id, before, schema, name);
                if (r == 0)
                        r = create_table(k, schema, name, t, err);
                if (r < 0)
                        goto out;
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): dropped target "
                         "table %s.%s with the old table's rows and created it anew from the new table's columns",
                         t->schema, t->name, t->rel_id, before, schema, name);
                *ret_recreated = true;
        } else {
                if (asprintf(&sql, "SELECT EXISTS (SELECT 1 FROM %s.%s)", qs, qn) < 0) {
                        sql = NULL;
                        goto oom;
                }
                r = pg_pipe_send_query(k, sql, 0, NULL, "looking for rows in the target table", true, err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0)
                        goto out;
                bool rows = k->captured && strcmp(PQgetvalue(k->captured, 0, 0), "t") == 0;
                PQclear(k->captured);
                k->captured = NULL;
                if (rows) {
                        CdcError e;
                        cdc_error(err, -EEXIST, true, CDC_ERR_SCHEMA,
                                  "sink %s: source table %s.%s was dropped and created again (relation %u, before %u): "
                                  "its rows would be merged into target table %s.%s, which holds the old table's rows "
                                  "— empty %s.%s (TRUNCATE) and give it the new table's columns, or set create_tables "
                                  "= yes in [connector.%s] to have it re-created; the pipeline retries",
                                  k->conf->name, t->schema, t->name, t->rel_id, before, schema, name, schema, name,
                                  k->conf->name);
                        if (cur != t->rel_id) {
                                /* recorded now, outside the batch (rolled back here: it may hold the row) */
                                vals[5] = "f";
                                pg_sink_rollback(k);
                                if (pg_pipe_exec_params(k, record, 6, vals, "recording the source table's relation",
                                                        NULL, &e) < 0)
                                        log_warn(k->ctx, "%s", e.message);
                        }
                        r = pg_pipe_fail(k, err->code, err);
                        goto out;
                }
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): target table "
                         "%s.%s is empty and takes the new table's rows",
                         t->schema, t->name, t->rel_id, before, schema, name);
        }
        r = pg_pipe_send_query(k, record, 6, vals, "recording the source table's relation", false, err);
        if (r < 0)
                goto out;
        ts->rel_prev_known = true, ts->rel_prev = before;
        if (!*ret_recreated)
                ts->rel_known = true, ts->rel_id = t->rel_id;
        r = 0;
        goto out;
oom:
        r = pg_pipe_fail(k, cdc_oom(err), err);
out:
        free(sql);
        free(qs);
        free(qn);
        return r;
}
