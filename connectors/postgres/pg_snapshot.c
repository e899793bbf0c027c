/* The PostgreSQL source's copies: the initial snapshot, and tables added to `tables` later. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
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

/* Copies one table: the catalogue is read on s->sql, the rows on `data` (inside the transaction
 * that holds the copy's snapshot). */
static int snapshot_table(Source *s, PGconn *data, const char *schema, const char *name, uint64_t *ret_rows,
                          CdcError *err) {
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
        const char *p1[] = {relid};
        res = pg_source_query(
                s, s->sql,
                "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 "
                "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
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
        if (r < 0)
                goto out;

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
            asprintf(&sql, "DECLARE cdcsync_snap NO SCROLL CURSOR FOR SELECT %s FROM ONLY %s.%s", t->ncols ? cols : "",
                     qs, qn) < 0)
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

/* Creates the slot with an exported snapshot and copies every published table as of that
 * snapshot, as one transaction ending at the slot's consistent point: streaming then starts
 * exactly there, with no gap and no duplicate. A crash during the copy leaves no checkpoint in
 * the sink (the copy is one sink transaction), so the next start drops the unused slot and
 * copies again from a new snapshot. */
int pg_snapshot_initial(Source *s, Position *ret_start, CdcError *err) {
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
        char *qslot = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
        char *sql = NULL;
        if (!qslot || asprintf(&sql, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export')", qslot) < 0)
                sql = NULL;
        PQfreemem(qslot);
        if (!sql)
                return cdc_oom(err);
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
                return err->code;
        }
        s->slot_created = true;
        Position start = {0};
        pg_source_parse_position(PQgetvalue(res, 0, 1), &start);
        char snapname[128];
        snprintf(snapname, sizeof(snapname), "%s", PQgetvalue(res, 0, 2));
        PQclear(res);
        char startpos[32];
        pg_source_format_position(start, startpos, sizeof(startpos));
        log_info(s->ctx, "created replication slot \"%s\" at %s; copying existing rows", s->slot, startpos);

        PGresult *b = pg_source_query(s, s->sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err);
        if (!b)
                return err->code;
        PQclear(b);
        char *setsnap = NULL;
        char *lit = PQescapeLiteral(s->sql, snapname, strlen(snapname));
        if (!lit || asprintf(&setsnap, "SET TRANSACTION SNAPSHOT %s", lit) < 0)
                setsnap = NULL;
        PQfreemem(lit);
        if (!setsnap)
                return cdc_oom(err);
        b = pg_source_query(s, s->sql, setsnap, 0, NULL, err);
        free(setsnap);
        if (!b)
                return err->code;
        PQclear(b);

        const char *pp[] = {s->publication};
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        PGresult *tabs = pg_source_query(s, s->sql,
                                         "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 "
                                         "ORDER BY (schemaname, tablename) = ('cdcsync', 'versions') DESC, 1, 2",
                                         1, pp, err);
        if (!tabs)
                return err->code;
        pipeline_io_streaming(s->io, true);
        s->txn = (TxnInfo){.xid = 0, .commit_pos = start, .commit_ts = pg_source_now_usec(), .snapshot = true};
        s->begin_sent = false;
        r = pg_source_send_begin(s, err);
        for (int i = 0; r == 0 && i < PQntuples(tabs); i++) {
                uint64_t rows = 0;
                const char *sch = PQgetvalue(tabs, i, 0), *tab = PQgetvalue(tabs, i, 1);
                if (strcmp(sch, "cdcsync") == 0 && strcmp(tab, "versions") != 0)
                        continue; /* another pipeline's bookkeeping (FOR ALL TABLES): never copied */
                r = snapshot_table(s, s->sql, sch, tab, &rows, err);
                if (r == 0)
                        log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows", sch, tab, rows);
                if (r == 0 && strcmp(sch, "cdcsync") != 0)
                        r = emit_record(s, sch, tab, start, rows, err);
        }
        int ntabs = PQntuples(tabs);
        PQclear(tabs);
        if (r < 0)
                return r;
        b = pg_source_query(s, s->sql, "COMMIT", 0, NULL, err);
        if (!b)
                return err->code;
        PQclear(b);
        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
        if ((r = pg_source_emit(s, &ev, err)) < 0)
                return r;
        char pos[32];
        pg_source_format_position(start, pos, sizeof(pos));
        log_info(s->ctx, "snapshot of %d tables read; streaming from %s", ntabs, pos);
        *ret_start = start;
        return 0;
}
