/* The PostgreSQL sink's index builds after an initial copy (snapshot_indexes = after, the
 * default): a table that is empty when its copy starts loses its indexes for the copy, and gets
 * them back, each built once from the copied rows, in the transaction of its last chunk.
 *
 * Why: COPY into a table with indexes inserts every row into every index (a b-tree descent, page
 * splits, a WAL record per row and index); building an index from the rows sorts them once. On
 * pgbench's accounts table (3,000,000 rows, its primary key only) the server's COPY took 5.6-5.8 s
 * with the key in place and 2.8-3.0 s without it, plus 1.4-1.5 s to build it after; with random
 * keys (UUIDs) or several indexes the difference grows. Two chunks COPYing into one table at once
 * (apply_workers) no longer contend on the same index pages either. pg_restore does the same.
 *
 * When (pg_defer_indexes, at the copy's TRUNCATE_CHECK_EMPTY once the table was found empty):
 * the table takes COPY (TState.copy_ok: no triggers, rules, foreign keys, other unique indexes,
 * row-level security), is no partition or inheritance parent or child, the sink's user owns it,
 * and every index can be made again exactly as it was from its definition: valid, in the default
 * tablespace, not the replica identity or the CLUSTER index, without a comment, unique only as the
 * primary key (not deferrable, named as its index). Otherwise every index stays.
 *
 * Crash safety: each index's definition (pg_get_indexdef; for the primary key also the ALTER
 * TABLE that makes it the constraint again) is written to cdcsync.deferred_indexes in the same
 * transaction that drops it, so a kill at any moment leaves either the index or its record. The
 * record goes, and the index comes back, in the transaction of the change that needs it:
 * - the registry's final record of the table ("copied", or "converging" for a resumed copy),
 *   written with its last chunk (pg_defer_rebuild_copied): no table is recorded as copied
 *   without its indexes;
 * - any change of the table that is not an insert COPY may take (pg_defer_rebuild): a resumed
 *   copy's upserts need the primary key for ON CONFLICT, and a stream change finds its row by it.
 * A session learns that a table's indexes are deferred when it first meets the table
 * (pg_defer_known), so a restarted service rebuilds them before such a change.
 *
 * Waits: an index build is one statement that answers only at its end; the sink's guard then
 * allows timeout_s plus one second per MB of the table (a build slower than 1 MB/s is taken for
 * a server that stopped answering). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/copies.h"
#include "cdcsync/log.h"
#include "cdcsync/now.h"
#include "postgres/pg_sink_int.h"

#define DEFERRED "cdcsync.deferred_indexes"

void pg_defer_setup(Sink *k) {
        CdcError e;
        PGresult *res = NULL;

        k->defer_ok = false;
        if (pg_pipe_exec_params(k, "SELECT to_regclass('" DEFERRED "') IS NOT NULL", 0, NULL, "looking up " DEFERRED,
                                &res, &e) < 0) {
                log_warn(k->ctx, "%s", e.message);
                return;
        }
        k->defer_ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (k->defer_ok)
                return;
        int r = pg_pipe_exec_params(k,
                                    "CREATE TABLE IF NOT EXISTS " DEFERRED " (pipeline text, source_table text, "
                                    "target text NOT NULL, ord int, ddl text NOT NULL, "
                                    "PRIMARY KEY (pipeline, source_table, ord))",
                                    0, NULL, "creating table " DEFERRED, NULL, &e);
        k->defer_ok = r == 0 || pg_pipe_sqlstate_is(&e, "42P07") || pg_pipe_sqlstate_is(&e, "23505") ||
                      pg_pipe_sqlstate_is(&e, "42710");
        if (!k->defer_ok && k->pipe->snapshot_indexes == SNAPSHOT_INDEXES_AFTER)
                log_warn(k->ctx,
                         "%s — an initial copy keeps the sink tables' indexes and updates them row by row "
                         "(slower): grant CREATE on schema cdcsync",
                         e.message);
}

/* Runs one captured query to its end; its result stays in k->captured. */
static int query(Sink *k, const char *sql, int n, const char *const *vals, const char *what, CdcError *err) {
        int r = pg_pipe_send_query(k, sql, n, vals, what, true, err);
        return r < 0 ? r : pg_pipe_drain(k, 0, err);
}

int pg_defer_known(Sink *k, const char *qname, bool *ret, CdcError *err) {
        *ret = false;
        if (!k->defer_ok)
                return 0;
        const char *vals[1] = {qname};
        int r = query(k, "SELECT count(*) FROM " DEFERRED " WHERE target = $1", 1, vals,
                      "looking up the target table's deferred indexes", err);
        if (r < 0)
                return r;
        *ret = k->captured && strcmp(PQgetvalue(k->captured, 0, 0), "0") != 0;
        PQclear(k->captured);
        k->captured = NULL;
        return 0;
}

/* "schema.table" of the source table t: the records' source_table. */
static void source_name(const Table *t, char *buf, size_t len) {
        snprintf(buf, len, "%s.%s", t->schema, t->name);
}

/* Sends the record of one statement (vals: pipeline, source table, target, ord, ddl). */
static int record(Sink *k, const char *const *vals, CdcError *err) {
        return pg_pipe_send_query(k, "INSERT INTO " DEFERRED " VALUES ($1, $2, $3, $4, $5)", 5, vals,
                                  "recording an index to build after the copy", false, err);
}

/* Every index of the table, when all of them can be deferred (see the top), as rows (the
 * schema-qualified index name, its definition, 1 for the primary key, the quoted index name). */
static const char list_sql[] =
        "WITH ix AS ("
        " SELECT i.indexrelid, i.indisprimary, ic.relname AS iname, ns.nspname,"
        "  (i.indisvalid AND i.indisready AND i.indislive AND NOT i.indisreplident AND NOT i.indisclustered"
        "   AND ic.reltablespace = 0 AND (NOT i.indisunique OR i.indisprimary)"
        "   AND NOT EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = i.indexrelid"
        "    AND d.classoid = 'pg_class'::regclass)"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.conrelid = i.indrelid AND f.conindid = i.indexrelid"
        "    AND (f.contype <> 'p' OR f.condeferrable OR f.conname <> ic.relname"
        "         OR EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = f.oid"
        "                    AND d.classoid = 'pg_constraint'::regclass)))"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = i.indrelid)) AS ok"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " JOIN pg_namespace ns ON ns.oid = ic.relnamespace"
        " WHERE i.indrelid = $1::regclass) "
        "SELECT format('%I.%I', nspname, iname), pg_get_indexdef(indexrelid), indisprimary::int,"
        " quote_ident(iname) FROM ix "
        "WHERE (SELECT bool_and(ok) FROM ix)"
        " AND (SELECT pg_has_role(c.relowner, 'USAGE') AND NOT c.relispartition AND c.relkind = 'r'"
        "      AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid)"
        "      AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid)"
        "      FROM pg_class c WHERE c.oid = $1::regclass) "
        "ORDER BY indisprimary DESC, iname";

int pg_defer_indexes(Sink *k, TState *ts, const Table *t, CdcError *err) {
        char source[600], ord[16], *sql = NULL;
        const char *vals[5] = {k->pipe->name, source, ts->qname, ord, NULL};
        PGresult *res;
        int r, n, next = 0;

        if (!k->defer_ok || k->pipe->snapshot_indexes != SNAPSHOT_INDEXES_AFTER || !ts->copy_ok || ts->deferred)
                return 0;
        source_name(t, source, sizeof(source));
        r = query(k, list_sql, 1, (const char *const *)&ts->qname, "listing the target table's indexes", err);
        if (r < 0)
                return r;
        res = k->captured;
        k->captured = NULL;
        n = res ? PQntuples(res) : 0;
        for (int i = 0; r == 0 && i < n; i++) {
                bool pk = PQgetvalue(res, i, 2)[0] == '1';
                const char *iname = PQgetvalue(res, i, 3);
                snprintf(ord, sizeof(ord), "%d", next++);
                vals[4] = PQgetvalue(res, i, 1);
                r = record(k, vals, err);
                if (r == 0 && pk) {
                        snprintf(ord, sizeof(ord), "%d", next++);
                        free(sql);
                        if (asprintf(&sql, "ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY USING INDEX %s", ts->qname,
                                     iname, iname) < 0)
                                sql = NULL;
                        vals[4] = sql;
                        r = sql ? record(k, vals, err) : pg_pipe_fail(k, cdc_oom(err), err);
                }
                free(sql);
                sql = NULL;
                if (r == 0 && (pk ? asprintf(&sql, "ALTER TABLE %s DROP CONSTRAINT %s", ts->qname, iname)
                                  : asprintf(&sql, "DROP INDEX %s", PQgetvalue(res, i, 0))) < 0) {
                        sql = NULL;
                        r = pg_pipe_fail(k, cdc_oom(err), err);
                }
                if (r == 0)
                        r = pg_pipe_send_query(k, sql, 0, NULL, "dropping an index until the copy's end", false, err);
        }
        free(sql);
        PQclear(res);
        if (r == 0 && n > 0)
                r = pg_pipe_drain(k, 0, err);
        if (r == 0 && n > 0) {
                ts->deferred = true;
                log_info(k->ctx, "initial copy of %s into %s: its %d index(es) are built after the copy", source,
                         ts->qname, n);
        }
        return r;
}

/* Takes the records of (pipeline, source) and runs their statements in order. */
static int rebuild(Sink *k, const char *pipeline, const char *source, CdcError *err) {
        const char *vals[2] = {pipeline, source};
        int r = query(k,
                      "DELETE FROM " DEFERRED " WHERE pipeline = $1 AND source_table = $2 "
                      "RETURNING ord, ddl, target, (pg_relation_size(target::regclass) >> 20)::bigint",
                      2, vals, "taking the records of indexes to build", err);
        if (r < 0)
                return r;
        PGresult *res = k->captured;
        k->captured = NULL;
        int n = res ? PQntuples(res) : 0;
        if (n == 0) {
                PQclear(res);
                return 0;
        }
        int *order = malloc(sizeof(*order) * (size_t)n);
        if (!order) {
                PQclear(res);
                return pg_pipe_fail(k, cdc_oom(err), err);
        }
        /* ord is 0..n-1: the statements in the order they were recorded */
        for (int i = 0; i < n; i++)
                order[i] = -1;
        for (int i = 0; i < n; i++) {
                int o = atoi(PQgetvalue(res, i, 0));
                if (o >= 0 && o < n)
                        order[o] = i;
        }
        long long mb = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        long long bound = conf_timeout_ms(k->conf) + mb * 1000;
        int64_t t0 = now_usec();
        for (int o = 0; r == 0 && o < n; o++) {
                if (order[o] < 0) {
                        r = pg_pipe_fail(k,
                                         cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL,
                                                   "sink %s: " DEFERRED " of %s: statement %d of %d is missing",
                                                   k->conf->name, source, o, n),
                                         err);
                        break;
                }
                const char *ddl = PQgetvalue(res, order[o], 1);
                char what[300];
                snprintf(what, sizeof(what), "building an index of %s after its copy", PQgetvalue(res, 0, 2));
                r = pg_pipe_send_query(k, ddl, 0, NULL, what, false, err);
                if (r == 0) {
                        deadline_arm(k->guard, bound > 0x7fffffff ? 0x7fffffff : (int)bound);
                        r = pg_pipe_drain(k, 0, err);
                }
        }
        if (r == 0)
                log_info(k->ctx, "initial copy of %s: built the indexes of %s in %.1f s (%d statements)", source,
                         PQgetvalue(res, 0, 2), (double)(now_usec() - t0) / 1e6, n);
        free(order);
        PQclear(res);
        return r;
}

int pg_defer_rebuild(Sink *k, TState *ts, CdcError *err) {
        char source[600];
        if (!ts->deferred)
                return 0;
        source_name(ts->table, source, sizeof(source));
        int r = rebuild(k, k->pipe->name, source, err);
        if (r == 0)
                ts->deferred = false;
        return r;
}

int pg_defer_rebuild_copied(Sink *k, const Change *c, CdcError *err) {
        CopyState st;
        if (!k->defer_ok || c->op != CHANGE_INSERT || !c->after || !copies_is_registry(c->table) ||
            c->table->ncols < 3 || c->after[0].kind != VALUE_TEXT || c->after[1].kind != VALUE_TEXT ||
            c->after[2].kind != VALUE_TEXT || copies_state_parse(c->after[2].data, &st) < 0 ||
            (st != COPY_STATE_COPIED && st != COPY_STATE_CONVERGING))
                return 0;
        int r = rebuild(k, c->after[0].data, c->after[1].data, err);
        /* this session's view of the table: its indexes are back */
        for (int i = 0; r == 0 && i < k->nts; i++) {
                char source[600];
                source_name(k->ts[i]->table, source, sizeof(source));
                if (strcmp(source, c->after[1].data) == 0)
                        k->ts[i]->deferred = false;
        }
        return r;
}
