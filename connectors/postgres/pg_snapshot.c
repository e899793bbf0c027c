/* The PostgreSQL source's copies: the initial snapshot, and tables added to `tables` later. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_source_int.h"
#include "postgres/pgtypes.h"

#define SNAPSHOT_FETCH_ROWS 2000

/* ---- per-table copies (copies.h) ---- */

/* Whether a change of t in the current transaction is part of a copy already (dropped). */
bool pg_snapshot_copied_later(Source *s, const Table *t) {
        const CopiedTable *f = copies_find(s->filters, s->nfilters, t->schema, t->name);
        return f && position_cmp(s->txn.commit_pos, f->pos) <= 0;
}

/* The sink records that schema.name was copied as of pos, with the copy. */
static int emit_record(Source *s, const char *schema, const char *name, Position pos, uint64_t rows, CdcError *err) {
        char table[COPIES_NAME_MAX], text[32];
        snprintf(table, sizeof(table), "%s.%s", schema, name);
        pg_source_format_position(pos, text, sizeof(text));
        Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
        if (copies_record(s->pipe->name, table, pos, text, rows, &ev.change) < 0)
                return cdc_oom(err);
        return pg_source_emit(s, &ev, err);
}

static int snapshot_table(Source *s, PGconn *data, const char *schema, const char *name, uint64_t *ret_rows,
                          CdcError *err);

/* Hands on the pending copy as one transaction at copy_pos: the records of removed tables
 * dropped, then each added table's rows (as snapshot = says) with its record. Called when the
 * stream reaches copy_pos, so it lands between the transactions it precedes and follows. */
int pg_snapshot_emit_copy(Source *s, CdcError *err) {
        TxnInfo saved = s->txn;
        bool saved_begin = s->begin_sent;
        int r;
        s->copy_pending = false;
        s->txn = (TxnInfo){.commit_pos = s->copy_pos, .commit_ts = pg_source_now_usec(), .snapshot = true};
        s->begin_sent = false;
        r = pg_source_send_begin(s, err);
        for (int i = 0; r == 0 && i < s->ncopy_gone; i++) {
                Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
                if (copies_forget(s->pipe->name, s->copy_gone[i], &ev.change) < 0)
                        r = cdc_oom(err);
                else
                        r = pg_source_emit(s, &ev, err);
        }
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                char sch[256], tab[256];
                const char *dot = strchr(s->copy_new[i], '.');
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - s->copy_new[i]), s->copy_new[i]);
                snprintf(tab, sizeof(tab), "%s", dot + 1);
                uint64_t rows = 0;
                /* snapshot = never: the sink holds the rows already; the table streams from here */
                r = s->pipe->snapshot_mode == SNAPSHOT_NEVER ? 0 : snapshot_table(s, s->copy, sch, tab, &rows, err);
                if (r == 0)
                        r = emit_record(s, sch, tab, s->copy_pos, rows, err);
                if (r == 0)
                        log_info(s->ctx, "%s %s.%s (%" PRIu64 " rows); it streams from here on",
                                 s->pipe->snapshot_mode == SNAPSHOT_NEVER ? "snapshot = never: did not copy" : "copied",
                                 sch, tab, rows);
        }
        if (r == 0) {
                Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
                r = pg_source_emit(s, &ev, err);
        }
        deadline_set_fd(s->guard_copy, -1);
        PQfinish(s->copy); /* ends the read-only transaction that held the snapshot */
        s->copy = NULL;
        s->txn = saved;
        s->begin_sent = saved_begin;
        return r;
}

/* ---- initial snapshot ---- */

/* The table schema.name as the catalogue on s->sql describes it (*ret: one reference). */
int pg_snapshot_describe(Source *s, const char *schema, const char *name, Table **ret, CdcError *err) {
        const char *params[] = {schema, name};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relname = $2",
                2, params, err);
        if (!res)
                return err->code;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return cdc_error(err, -ENOENT, false, CDC_ERR_SCHEMA, "table %s.%s does not exist on the source",
                                 schema, name);
        }
        uint32_t oid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        char replident = PQgetvalue(res, 0, 1)[0];
        PQclear(res);

        char relid[16];
        snprintf(relid, sizeof(relid), "%u", oid);
        const char *p1[] = {relid, s->publication};
        /* only the columns the publication sends (a column list, PostgreSQL 15+): the copy reads
         * no value the stream would not carry */
        res = PQserverVersion(s->sql) >= 150000
                      ? pg_source_query(
                                s, s->sql,
                                "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = $1::oid "
                                "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' AND "
                                "coalesce(attnum = ANY (CAST((SELECT pr.prattrs::pg_catalog.int2[] FROM "
                                "pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid "
                                "= pr.prpubid WHERE p.pubname = $2 AND pr.prrelid = $1::oid) AS "
                                "pg_catalog.int2[])), true) "
                                "ORDER BY attnum",
                                2, p1, err)
                      : pg_source_query(
                                s, s->sql,
                                "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = $1::oid "
                                "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                                1, p1, err);
        if (!res)
                return err->code;
        Table *t = table_new(schema, name, PQntuples(res));
        if (!t) {
                PQclear(res);
                return cdc_oom(err);
        }
        t->rel_id = oid;
        t->replident = replident;
        for (int i = 0; i < t->ncols; i++) {
                t->cols[i].name = strdup(PQgetvalue(res, i, 0));
                t->cols[i].type_oid = (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10);
                t->cols[i].typmod = (int32_t)strtol(PQgetvalue(res, i, 2), NULL, 10);
                t->cols[i].cls = pgtypes_class(t->cols[i].type_oid);
        }
        PQclear(res);
        int r = pg_rel_describe_table(s, t, err);
        if (r < 0) {
                table_unref(t);
                return r;
        }
        *ret = t;
        return 0;
}

/* Copies one table: the catalogue is read on s->sql, the rows on `data` (inside the transaction
 * that holds the copy's snapshot). */
static int snapshot_table(Source *s, PGconn *data, const char *schema, const char *name, uint64_t *ret_rows,
                          CdcError *err) {
        Table *t = NULL;
        PGresult *res;
        int r = pg_snapshot_describe(s, schema, name, &t, err);
        if (r < 0)
                return r;

        /* What the sink already holds (conf_pipeline_copy_mode): initial copies into an empty
         * table (the sink checks it), replace empties it first, merge keeps it (rows upserted). */
        SnapshotMode mode = conf_pipeline_copy_mode(s->pipe);
        if (mode == SNAPSHOT_MERGE && (table_nkeys(t) == 0 || t->replident == 'f')) {
                log_warn(s->ctx,
                         "snapshot of %s.%s: a table without primary key cannot be merged: copied only if the "
                         "sink table is empty",
                         schema, name);
                mode = SNAPSHOT_INITIAL;
        }
        if (mode == SNAPSHOT_REPLACE)
                log_info(s->ctx, "snapshot of %s.%s: snapshot = replace: the sink table is emptied first", schema,
                         name);
        if (mode != SNAPSHOT_MERGE) {
                Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
                ev.change.op = CHANGE_TRUNCATE;
                ev.change.flags = mode == SNAPSHOT_REPLACE ? 0 : TRUNCATE_CHECK_EMPTY;
                ev.change.table = table_ref(t);
                if ((r = pg_source_emit(s, &ev, err)) < 0)
                        goto out;
        }

        PgRelSize z; /* a partitioned table is read through its root, from every leaf */
        if ((r = pg_partitions_describe(s, t->rel_id, &z, err)) < 0)
                goto out;
        char *cols = NULL;
        size_t clen = 0;
        FILE *f = open_memstream(&cols, &clen);
        for (int i = 0; f && i < t->ncols; i++) {
                char *q = PQescapeIdentifier(s->sql, t->cols[i].name, strlen(t->cols[i].name));
                fprintf(f, "%s%s", i ? ", " : "", q ? q : "\"\"");
                PQfreemem(q);
        }
        if (f)
                fclose(f);
        char *qs = PQescapeIdentifier(s->sql, schema, strlen(schema));
        char *qn = PQescapeIdentifier(s->sql, name, strlen(name));
        char *sql = NULL;
        if (cols && qs && qn &&
            asprintf(&sql, "DECLARE cdcsync_snap NO SCROLL CURSOR FOR SELECT %s FROM %s%s.%s", t->ncols ? cols : "",
                     pg_partitions_only(&z), qs, qn) < 0)
                sql = NULL;
        free(cols);
        PQfreemem(qs);
        PQfreemem(qn);
        if (!sql) {
                r = cdc_oom(err);
                goto out;
        }
        res = pg_source_query(s, data, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                r = err->code;
                goto out;
        }
        PQclear(res);
        uint64_t rows = 0;
        for (;;) {
                res = pg_source_query(s, data, "FETCH 2000 FROM cdcsync_snap", 0, NULL, err);
                if (!res) {
                        r = err->code;
                        goto out;
                }
                int n = PQntuples(res);
                for (int row = 0; row < n && r == 0; row++) {
                        Event e = {.kind = EVENT_CHANGE, .txn = s->txn};
                        e.change.op = CHANGE_INSERT;
                        e.change.flags = mode == SNAPSHOT_MERGE ? CHANGE_IDEMPOTENT : 0;
                        e.change.table = table_ref(t);
                        e.change.after = values_new(t->ncols);
                        if (!e.change.after) {
                                change_clear(&e.change);
                                r = cdc_oom(err);
                                break;
                        }
                        for (int c = 0; c < t->ncols && r == 0; c++)
                                if (!PQgetisnull(res, row, c) && value_set(&e.change.after[c], PQgetvalue(res, row, c),
                                                                           (size_t)PQgetlength(res, row, c)) < 0)
                                        r = cdc_oom(err);
                        if (r == 0)
                                r = pg_source_emit(s, &e, err);
                        else
                                change_clear(&e.change);
                }
                PQclear(res);
                if (r < 0)
                        goto out;
                rows += (uint64_t)n;
                if (n < SNAPSHOT_FETCH_ROWS)
                        break;
                if (rows % 100000 < (uint64_t)n)
                        log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows copied so far", schema, name, rows);
        }
        res = pg_source_query(s, data, "CLOSE cdcsync_snap", 0, NULL, err);
        if (!res) {
                r = err->code;
                goto out;
        }
        PQclear(res);
        *ret_rows = rows;
out:
        table_unref(t);
        return r;
}

/* ---- the chunked initial copy (pg_copy.c) ---- */

static void readers_close(PGconn **rd, int n) {
        for (int i = 0; rd && i < n; i++)
                if (rd[i])
                        PQfinish(rd[i]);
        free(rd);
}

/* The copy's reader connections (snapshot_workers; one for a bidirectional pipeline, whose version
 * tags must be copied before every other table), each in a read-only REPEATABLE READ transaction
 * that imports the snapshot later (readers_import). */
static int readers_open(Source *s, PGconn ***ret, int *ret_n, CdcError *err) {
        int n = s->pipe->bidirectional || s->pipe->snapshot_workers < 1 ? 1 : s->pipe->snapshot_workers;
        PGconn **rd = calloc((size_t)n, sizeof(*rd));
        if (!rd)
                return cdc_oom(err);
        for (int i = 0; i < n; i++) {
                int r = pg_conn_open(s->conn, PG_CONN_SOURCE, &rd[i], err);
                if (r < 0) {
                        readers_close(rd, n);
                        return r;
                }
        }
        *ret = rd;
        *ret_n = n;
        return 0;
}

/* Takes over the exported snapshot snapname in a read-only REPEATABLE READ transaction on c. */
static int import_snapshot(Source *s, PGconn *c, const char *snapname, CdcError *err) {
        char *lit = PQescapeLiteral(c, snapname, strlen(snapname)), *sql = NULL;
        if (!lit || asprintf(&sql, "SET TRANSACTION SNAPSHOT %s", lit) < 0)
                sql = NULL;
        PQfreemem(lit);
        if (!sql)
                return cdc_oom(err);
        const char *steps[] = {"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", sql};
        int r = 0;
        for (int i = 0; r == 0 && i < 2; i++) {
                PGresult *res = c == s->sql ? pg_source_query(s, c, steps[i], 0, NULL, err) : PQexec(c, steps[i]);
                if (c == s->sql && !res) {
                        r = err->code;
                } else if (c != s->sql && PQresultStatus(res) != PGRES_COMMAND_OK) {
                        char buf[512];
                        r = cdc_error(err, -EIO, true, CDC_ERR_SOURCE,
                                      "connector %s: a snapshot reader cannot take over the snapshot: %s",
                                      s->conn->name, pg_source_errtext(s, c, res, buf, sizeof(buf)));
                        PQclear(res);
                } else {
                        PQclear(res);
                }
        }
        free(sql);
        return r;
}

static int readers_import(Source *s, PGconn **rd, int n, const char *snapname, CdcError *err) {
        int r = import_snapshot(s, s->sql, snapname, err);
        for (int i = 0; r == 0 && i < n; i++)
                r = import_snapshot(s, rd[i], snapname, err);
        return r;
}

/* Ends the copy's transactions: s->sql's (which stays open for the stream), the readers'. */
static int readers_end(Source *s, PGconn **rd, int n, CdcError *err) {
        readers_close(rd, n);
        PGresult *b = pg_source_query(s, s->sql, "COMMIT", 0, NULL, err);
        if (!b)
                return err->code;
        PQclear(b);
        return 0;
}

/* What the first copy of t does with the sink's rows (conf_pipeline_copy_mode): initial copies
 * into an empty table (the sink checks it), replace empties it first, merge upserts. */
static void copy_mode(Source *s, const Table *t, uint32_t *ret_flags, bool *ret_truncate, uint32_t *ret_tflags) {
        SnapshotMode mode = conf_pipeline_copy_mode(s->pipe);
        if (mode == SNAPSHOT_MERGE && (table_nkeys(t) == 0 || t->replident == 'f')) {
                log_warn(s->ctx,
                         "snapshot of %s.%s: a table without primary key cannot be merged: copied only if the "
                         "sink table is empty",
                         t->schema, t->name);
                mode = SNAPSHOT_INITIAL;
        }
        if (mode == SNAPSHOT_REPLACE)
                log_info(s->ctx, "snapshot of %s.%s: snapshot = replace: the sink table is emptied first", t->schema,
                         t->name);
        *ret_flags = mode == SNAPSHOT_MERGE ? CHANGE_IDEMPOTENT : 0;
        *ret_truncate = mode != SNAPSHOT_MERGE;
        *ret_tflags = mode == SNAPSHOT_REPLACE ? 0 : TRUNCATE_CHECK_EMPTY;
}

/* Creates the slot with an exported snapshot and copies every published table as of that
 * snapshot at the slot's consistent point START, where streaming then starts: no gap, no
 * duplicate. The snapshot is taken over by snapshot_workers reader connections before the
 * walsender runs another command (which would end the export); they read the tables' chunks with
 * COPY (pg_copy.c). Into a sink that keeps copy records each chunk is one sink transaction with
 * its record, and the first one records every table as "copying", so a crash keeps the chunks
 * done and the next start resumes (pg_snapshot_resume); into another (Kafka) the copy is one
 * transaction, and a crash leaves no checkpoint: the next start drops the unused slot and copies
 * again from a new snapshot. */
int pg_snapshot_initial(Source *s, const SourceStart *start, Position *ret_start, CdcError *err) {
        char buf[512];
        bool invalid = false;
        int r = pg_slot_state(s, &invalid, err);
        if (r < 0)
                return r;
        if (r == 1) {
                const char *params[] = {s->slot};
                PGresult *res = pg_source_query(s, s->sql, "SELECT pg_drop_replication_slot($1)", 1, params, err);
                if (!res && strstr(err->message, "is active")) {
                        /* The walsender of an attempt cut short (a frozen path, a timeout) has not
                         * noticed yet that its client is gone: it lets go of the slot when it does. */
                        err->retriable = true;
                        return err->code;
                }
                if (!res)
                        return err->code;
                PQclear(res);
                log_info(s->ctx, "dropped replication slot \"%s\" left by an unfinished snapshot", s->slot);
        }
        PGconn **rd = NULL;
        int nrd = 0;
        r = readers_open(s, &rd, &nrd, err);
        if (r < 0)
                return r;
        char *qslot = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
        char *sql = NULL;
        if (!qslot || asprintf(&sql, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export')", qslot) < 0)
                sql = NULL;
        PQfreemem(qslot);
        if (!sql) {
                readers_close(rd, nrd);
                return cdc_oom(err);
        }
        bool timeout;
        PGresult *res = pg_source_exec_slot(s, s->repl, s->guard_repl, sql, &timeout);
        free(sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                if (timeout)
                        pg_source_timeout_error(s, err);
                else
                        cdc_error(err, -EIO, PQstatus(s->repl) != CONNECTION_OK, CDC_ERR_SLOT,
                                  "connector %s: cannot create replication slot \"%s\": %s", s->conn->name, s->slot,
                                  pg_source_errtext(s, s->repl, res, buf, sizeof(buf)));
                PQclear(res);
                readers_close(rd, nrd);
                return err->code;
        }
        s->slot_created = true;
        Position pos = {0};
        pg_source_parse_position(PQgetvalue(res, 0, 1), &pos);
        char snapname[128];
        snprintf(snapname, sizeof(snapname), "%s", PQgetvalue(res, 0, 2));
        PQclear(res);
        char startpos[32];
        pg_source_format_position(pos, startpos, sizeof(startpos));
        log_info(s->ctx, "created replication slot \"%s\" at %s; copying existing rows", s->slot, startpos);

        r = readers_import(s, rd, nrd, snapname, err);
        const char *pp[] = {s->publication};
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        PGresult *tabs = r < 0 ? NULL
                               : pg_source_query(s, s->sql,
                                                 "SELECT schemaname, tablename FROM pg_publication_tables WHERE "
                                                 "pubname = $1 ORDER BY (schemaname, tablename) = ('cdcsync', "
                                                 "'versions') DESC, 1, 2",
                                                 1, pp, err);
        if (!tabs) {
                readers_close(rd, nrd);
                return r < 0 ? r : err->code;
        }
        PgCopy *cp = NULL;
        r = pg_copy_new(s, pos, start->registry, &cp, err);
        int ntabs = 0;
        for (int i = 0; r == 0 && i < PQntuples(tabs); i++) {
                const char *sch = PQgetvalue(tabs, i, 0), *tab = PQgetvalue(tabs, i, 1);
                if (strcmp(sch, "cdcsync") == 0 && strcmp(tab, "versions") != 0)
                        continue; /* another pipeline's bookkeeping (FOR ALL TABLES): never copied */
                Table *t = NULL;
                r = pg_snapshot_describe(s, sch, tab, &t, err);
                if (r < 0)
                        break;
                uint32_t flags, tflags;
                bool truncate;
                copy_mode(s, t, &flags, &truncate, &tflags);
                r = pg_copy_add_table(cp, t, flags, truncate, tflags, NULL, 0, 0, COPY_STATE_COPIED, pos, err);
                table_unref(t);
                ntabs++;
        }
        PQclear(tabs);
        if (r == 0) {
                pipeline_io_streaming(s->io, true);
                r = pg_copy_run(cp, rd, nrd, err);
        }
        pg_copy_free(cp);
        if (r < 0) {
                readers_close(rd, nrd);
                return r;
        }
        r = readers_end(s, rd, nrd, err);
        if (r < 0)
                return r;
        log_info(s->ctx, "snapshot of %d tables read; streaming from %s", ntabs, startpos);
        *ret_start = pos;
        return 0;
}

/* A chunked initial copy cut short (records "copying"): resumed under a new snapshot S2 (a
 * temporary slot's, at its consistent point C), keeping the chunks done. The stream then starts
 * at the checkpoint START, where the copy began, and every change of a resumed table up to C is
 * applied idempotently (COPY_STATE_CONVERGING, pg_snapshot_converge): rows read as of START or
 * as of S2 then converge to the source's, whatever moved between. A table without key cannot be
 * upserted: it is emptied and copied whole as of S2, and its changes up to C dropped (they are in
 * that copy). Also takes up the converging windows recorded by an earlier attempt. */
int pg_snapshot_resume(Source *s, const SourceStart *start, CdcError *err) {
        int r = 0, ncopying = 0;
        Position from = start->checkpoint.pos;
        for (int i = 0; i < start->ncopied; i++) {
                const CopiedTable *e = &start->copied[i];
                const char *dot = strchr(e->table, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
                bool listed = dot && conf_pipeline_has_table(s->pipe, sch, dot + 1);
                if (e->state == COPY_STATE_CONVERGING && listed && position_cmp(e->pos, from) > 0) {
                        CopiedTable *g = realloc(s->converging, sizeof(*g) * (size_t)(s->nconverging + 1));
                        if (!g)
                                return cdc_oom(err);
                        (s->converging = g)[s->nconverging++] = *e;
                }
                if (e->state == COPY_STATE_COPYING && listed)
                        ncopying++;
        }
        if (ncopying == 0)
                return 0;

        PGconn **rd = NULL, *rc = NULL;
        int nrd = 0;
        char tmp[64], *sql = NULL, snapname[128] = "";
        Position c = {0};
        r = readers_open(s, &rd, &nrd, err);
        if (r == 0)
                r = pg_conn_open(s->conn, PG_CONN_SOURCE | PG_CONN_REPLICATION, &rc, err);
        if (r == 0) {
                snprintf(tmp, sizeof(tmp), "%.50s_resume", s->slot);
                deadline_set_fd(s->guard_copy, PQsocket(rc));
                char *q = PQescapeIdentifier(rc, tmp, strlen(tmp));
                if (!q || asprintf(&sql, "CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
                                   q) < 0) {
                        sql = NULL;
                        r = cdc_oom(err);
                }
                PQfreemem(q);
        }
        if (r == 0) {
                bool timeout;
                PGresult *res = pg_source_exec_slot(s, rc, s->guard_copy, sql, &timeout);
                if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                        char buf[512];
                        r = timeout ? pg_source_timeout_error(s, err)
                                    : cdc_error(err, -EIO, true, CDC_ERR_SLOT,
                                                "connector %s: cannot create replication slot \"%s\": %s",
                                                s->conn->name, tmp, pg_source_errtext(s, rc, res, buf, sizeof(buf)));
                } else {
                        pg_source_parse_position(PQgetvalue(res, 0, 1), &c);
                        snprintf(snapname, sizeof(snapname), "%s", PQgetvalue(res, 0, 2));
                }
                PQclear(res);
        }
        free(sql);
        deadline_set_fd(s->guard_copy, -1);
        if (r == 0)
                r = readers_import(s, rd, nrd, snapname, err);
        if (rc)
                PQfinish(rc); /* drops the temporary slot; the snapshot lives on in the readers */
        char cpos[32], fpos[32];
        pg_source_format_position(c, cpos, sizeof(cpos));
        pg_source_format_position(from, fpos, sizeof(fpos));
        if (r == 0)
                log_info(s->ctx,
                         "resuming the initial copy of %d tables: chunks not done are read as of %s; changes from %s "
                         "to %s are applied idempotently",
                         ncopying, cpos, fpos, cpos);

        PgCopy *cp = NULL;
        if (r == 0)
                r = pg_copy_new(s, from, true, &cp, err);
        for (int i = 0; r == 0 && i < start->ncopied; i++) {
                const CopiedTable *e = &start->copied[i];
                const char *dot = strchr(e->table, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
                if (e->state != COPY_STATE_COPYING || !dot || !conf_pipeline_has_table(s->pipe, sch, dot + 1))
                        continue;
                Table *t = NULL;
                r = pg_snapshot_describe(s, sch, dot + 1, &t, err);
                if (r < 0)
                        break;
                PgBlockRange *done = NULL;
                int ndone = 0;
                uint64_t rows = 0;
                bool rewritten = false;
                for (int j = 0; r == 0 && j < start->ncopied; j++) {
                        PgBlockRange b;
                        if (start->copied[j].state != COPY_STATE_CHUNK ||
                            !copies_chunk_parse(start->copied[j].table, e->table, &b.lo, &b.hi))
                                continue;
                        PgBlockRange *g = realloc(done, sizeof(*g) * (size_t)(ndone + 1));
                        if (!g) {
                                r = cdc_oom(err);
                                break;
                        }
                        (done = g)[ndone++] = b;
                        rows += start->copied[j].rows;
                }
                /* A rewrite since the copy began (VACUUM FULL, CLUSTER, TRUNCATE, a type change)
                 * moved rows into blocks whose chunks are done: every chunk is read again. */
                const char *was = strstr(e->text, " filenode=");
                PgRelSize z;
                if (r == 0 && was && ndone > 0 && (r = pg_partitions_describe(s, t->rel_id, &z, err)) == 0 &&
                    strcmp(z.storage, was + strlen(" filenode=")) != 0) {
                        log_warn(s->ctx,
                                 "snapshot of %s: the table was rewritten since its copy began (VACUUM FULL, CLUSTER, "
                                 "TRUNCATE, ...; of a partitioned table: a partition rewritten, attached or "
                                 "detached), so rows may have moved into chunks already done: every chunk is read "
                                 "again",
                                 e->table);
                        rewritten = true;
                }
                uint32_t flags, tflags;
                bool truncate;
                copy_mode(s, t, &flags, &truncate, &tflags);
                bool keyless = table_nkeys(t) == 0 || t->replident == 'f';
                if (r == 0 && keyless) {
                        /* Emptied and copied whole as of S2: the chunks done before are forgotten
                         * with its last chunk (kept as done ranges that are read again). */
                        if (ndone > 0)
                                log_info(s->ctx,
                                         "snapshot of %s: a table without primary key cannot be upserted: emptied "
                                         "and copied again whole as of %s",
                                         e->table, cpos);
                        r = pg_copy_add_table(cp, t, 0, true, ndone > 0 ? 0 : tflags, NULL, 0, 0, COPY_STATE_COPIED, c,
                                              err);
                        /* the chunk records of the earlier attempt go with the table's final record */
                        for (int j = 0; r == 0 && j < ndone; j++)
                                r = pg_copy_forget_chunk(cp, done[j], err);
                        CopiedTable *g = r == 0 ? realloc(s->filters, sizeof(*g) * (size_t)(s->nfilters + 1)) : NULL;
                        if (r == 0 && !g)
                                r = cdc_oom(err);
                        if (r == 0) {
                                s->filters = g;
                                g[s->nfilters] = *e;
                                g[s->nfilters].state = COPY_STATE_COPIED;
                                g[s->nfilters++].pos = c;
                        }
                } else if (r == 0) {
                        /* rows read as of S2 may have been copied as of START too (moved since) */
                        r = pg_copy_add_table(cp, t, CHANGE_IDEMPOTENT, ndone == 0 && truncate, tflags,
                                              rewritten ? NULL : done, rewritten ? 0 : ndone, rewritten ? 0 : rows,
                                              COPY_STATE_CONVERGING, c, err);
                        for (int j = 0; r == 0 && rewritten && j < ndone; j++)
                                r = pg_copy_forget_chunk(cp, done[j], err);
                        CopiedTable *g =
                                r == 0 ? realloc(s->converging, sizeof(*g) * (size_t)(s->nconverging + 1)) : NULL;
                        if (r == 0 && !g)
                                r = cdc_oom(err);
                        if (r == 0) {
                                s->converging = g;
                                g[s->nconverging] = *e;
                                g[s->nconverging].state = COPY_STATE_CONVERGING;
                                g[s->nconverging++].pos = c;
                        }
                }
                free(done);
                table_unref(t);
        }
        if (r == 0) {
                pipeline_io_streaming(s->io, true);
                r = pg_copy_run(cp, rd, nrd, err);
        }
        pg_copy_free(cp);
        if (r < 0) {
                readers_close(rd, nrd);
                return r;
        }
        return readers_end(s, rd, nrd, err);
}

/* The idempotent form of a change of a converging table (pg_snapshot_resume) in a transaction
 * committed at or before its position; emits it (ev's change is taken). An update that changes
 * the key becomes a delete of the old key and an upsert of the new row (the old row may be
 * missing, the new one too: it may have moved into a chunk read before it existed); an update
 * whose TOAST columns were not sent takes their values from the source's row as it is now (a
 * later change of them follows in the stream), so an upsert never writes a partial row. */
int pg_snapshot_converge(Source *s, Event *ev, CdcError *err) {
        Change *c = &ev->change;
        const Table *t = c->table;
        int r = 0;
        c->flags |= CHANGE_IDEMPOTENT;
        if (c->op != CHANGE_UPDATE || !c->after)
                return pg_source_emit(s, ev, err);
        int nunchanged = 0;
        for (int i = 0; i < t->ncols; i++)
                if (c->after[i].kind == VALUE_UNCHANGED)
                        nunchanged++;
        if (nunchanged > 0) {
                /* SELECT the unchanged columns by the row's key, as of now */
                char *sql = NULL, *cols = NULL, *where = NULL;
                size_t cl = 0, wl = 0;
                FILE *fc = open_memstream(&cols, &cl), *fw = open_memstream(&where, &wl);
                const char *params[t->ncols > 0 ? t->ncols : 1];
                int np = 0, nc = 0;
                for (int i = 0; fc && fw && i < t->ncols; i++) {
                        char *q = PQescapeIdentifier(s->sql, t->cols[i].name, strlen(t->cols[i].name));
                        if (c->after[i].kind == VALUE_UNCHANGED)
                                fprintf(fc, "%s%s", nc++ ? ", " : "", q ? q : "\"\"");
                        if (t->cols[i].key) {
                                if (c->after[i].kind != VALUE_TEXT)
                                        r = -EINVAL;
                                else {
                                        params[np] = c->after[i].data;
                                        fprintf(fw, "%s%s = $%d", np ? " AND " : "", q ? q : "\"\"", np + 1);
                                        np++;
                                }
                        }
                        PQfreemem(q);
                }
                if (fc)
                        fclose(fc);
                if (fw)
                        fclose(fw);
                PgRelSize z = {0}; /* a partitioned table: its row is in one of its leaves */
                CdcError zerr = {0};
                if (r == 0 && np > 0 && pg_partitions_describe(s, t->rel_id, &z, &zerr) < 0) {
                        free(cols);
                        free(where);
                        change_clear(c);
                        *err = zerr;
                        return zerr.code;
                }
                char *qs = PQescapeIdentifier(s->sql, t->schema, strlen(t->schema));
                char *qn = PQescapeIdentifier(s->sql, t->name, strlen(t->name));
                if (r == 0 && np > 0 && cols && where && qs && qn &&
                    asprintf(&sql, "SELECT %s FROM %s%s.%s WHERE %s", cols, pg_partitions_only(&z), qs, qn, where) < 0)
                        sql = NULL;
                free(cols);
                free(where);
                PQfreemem(qs);
                PQfreemem(qn);
                if (!sql) {
                        change_clear(c);
                        return r < 0 || np == 0
                                       ? cdc_error(err, -EINVAL, false, CDC_ERR_DATA,
                                                   "table %s.%s: an update whose TOAST values were not sent, of a row "
                                                   "whose copy was resumed, cannot be completed: its key is not a "
                                                   "plain value — copy the table again (snapshot = replace)",
                                                   t->schema, t->name)
                                       : cdc_oom(err);
                }
                /* The values must be those the source holds now: a text-format result of s->sql,
                 * which pins the same settings as the stream (pg_conn.c). */
                PGresult *res = pg_source_query(s, s->sql, sql, np, params, err);
                free(sql);
                if (!res) {
                        change_clear(c);
                        return err->code;
                }
                if (PQntuples(res) == 1) {
                        for (int i = 0, k = 0; r == 0 && i < t->ncols; i++) {
                                if (c->after[i].kind != VALUE_UNCHANGED)
                                        continue;
                                c->after[i].kind = VALUE_NULL;
                                if (!PQgetisnull(res, 0, k) &&
                                    value_set(&c->after[i], PQgetvalue(res, 0, k), (size_t)PQgetlength(res, 0, k)) < 0)
                                        r = cdc_oom(err);
                                k++;
                        }
                }
                /* no row now: it is deleted (or its key changed) later in the stream; the update
                 * stays as it is (an idempotent update of a missing row does nothing) */
                PQclear(res);
                if (r < 0) {
                        change_clear(c);
                        return r;
                }
        }
        if (c->before && table_nkeys(t) > 0 && t->replident != 'f') {
                /* the key changed: delete the old one (if there), upsert the new row */
                Event d = {.kind = EVENT_CHANGE, .txn = ev->txn};
                d.change.op = CHANGE_DELETE;
                d.change.flags = CHANGE_IDEMPOTENT;
                d.change.table = table_ref(c->table);
                d.change.before = c->before;
                c->before = NULL;
                r = pg_source_emit(s, &d, err);
                if (r < 0) {
                        change_clear(c);
                        return r;
                }
                c->op = CHANGE_INSERT;
        }
        return pg_source_emit(s, ev, err);
}
