/* PostgreSQL → PostgreSQL sequence values: the sequences a pipeline's source tables use are read
 * on the source and set on the sink's sequence of the same column where that one is behind, so
 * that writes on the sink after a cut-over draw keys past every key the source handed out.
 *
 * Which sequences: every one a column of a table of `tables` takes its values from — a serial or
 * identity column's own (owned, pg_depend 'a' / 'i') and any other named in a column default's
 * nextval() (pg_attrdef's dependency). The sink's sequence is the one its (mapped) table's column
 * uses the same way, else a sequence of the source sequence's name in the sink table's schema.
 * Values are the source's last_value (pg_sequence_last_value(): with CACHE, the end of what
 * sessions took, so at least every value handed out). Setting is never backwards: setval only
 * where the sink's last value is behind in the sequence's direction (or was never used). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/deadline.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_sequences.h"

/* (table oid, column number, sequence oid) for every column that draws from a sequence. */
#define USES_CTE                                                                                                       \
        "WITH uses AS (SELECT d.refobjid AS tab, d.refobjsubid AS col, d.objid AS seq FROM pg_depend d "               \
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "  \
        "AND d.refobjsubid > 0 UNION SELECT ad.adrelid, ad.adnum, d.refobjid FROM pg_attrdef ad JOIN pg_depend d ON "  \
        "d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass) "

typedef struct {
        const ConnectorConf *conf;
        PGconn *c;
        Deadline *guard;
} Side;

static void side_close(Side *d) {
        deadline_set_fd(d->guard, -1);
        d->guard = deadline_free(d->guard);
        if (d->c)
                PQfinish(d->c);
        d->c = NULL;
}

static int side_open(Side *d, const ConnectorConf *conf, unsigned flags, CdcError *err) {
        d->conf = conf;
        if (deadline_new(&d->guard) < 0)
                return cdc_oom(err);
        int r = pg_conn_open(conf, flags, &d->c, err);
        if (r < 0)
                return r;
        deadline_set_fd(d->guard, PQsocket(d->c));
        return 0;
}

/* Runs sql on d; NULL with the server's text in buf on failure (a lost or silent server: *ret_lost). */
static PGresult *side_query(Side *d, const char *sql, int n, const char *const *params, char *buf, size_t len,
                            bool *ret_lost) {
        deadline_arm(d->guard, conf_timeout_ms(d->conf));
        PGresult *res = PQexecParams(d->c, sql, n, NULL, params, NULL, NULL, 0);
        bool fired = deadline_disarm(d->guard);
        if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
                return res;
        if (fired)
                snprintf(buf, len, "the server did not answer within %d s (timeout_s)",
                         conf_timeout_ms(d->conf) / 1000);
        else
                pg_conn_error_text(d->conf, d->c, res, buf, len);
        *ret_lost = fired || PQstatus(d->c) != CONNECTION_OK;
        PQclear(res);
        return NULL;
}

static int query_error(const Side *d, const char *what, const char *text, CdcError *err) {
        return cdc_error(err, -EIO, true, CDC_ERR_QUERY, "connector %s: %s: %s", d->conf->name, what, text);
}

/* The sink's sequence for column ts.tn.col (its default's or its own), else one named sname in
 * schema ts, as a qualified and quoted name (a regclass literal); "" in ret when none. */
static int sink_sequence(Side *k, const char *ts, const char *tn, const char *col, const char *sname, char *ret,
                         size_t len, CdcError *err) {
        char buf[512];
        bool lost = false;
        const char *p1[] = {ts, tn, col};
        PGresult *res = side_query(
                k,
                USES_CTE
                "SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) FROM uses u JOIN pg_class s ON "
                "s.oid = u.seq AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = "
                "s.relnamespace JOIN pg_class t ON t.oid = u.tab JOIN pg_namespace tn ON "
                "tn.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = u.tab AND "
                "a.attnum = u.col WHERE tn.nspname = $1 AND t.relname = $2 AND a.attname "
                "= $3 ORDER BY 1 LIMIT 1",
                3, p1, buf, sizeof(buf), &lost);
        if (!res)
                return query_error(k, "looking up the sink's sequences", buf, err);
        if (PQntuples(res) == 1) {
                snprintf(ret, len, "%s", PQgetvalue(res, 0, 0));
                PQclear(res);
                return 0;
        }
        PQclear(res);
        const char *p2[] = {ts, sname};
        res = side_query(k,
                         "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname) FROM pg_class s JOIN "
                         "pg_namespace n ON n.oid = "
                         "s.relnamespace WHERE s.relkind = 'S' AND n.nspname = $1 AND s.relname = $2",
                         2, p2, buf, sizeof(buf), &lost);
        if (!res)
                return query_error(k, "looking up the sink's sequences", buf, err);
        ret[0] = '\0';
        if (PQntuples(res) == 1)
                snprintf(ret, len, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return 0;
}

int pg_sequences_sync(const PipelineConf *pipe, SeqNoteFn note, void *userdata, CdcError *err) {
        Side src = {0}, snk = {0};
        PGresult *uses = NULL;
        char buf[512];
        bool lost = false;
        int r = side_open(&src, pipe->source, PG_CONN_SOURCE, err);
        if (r == 0)
                r = side_open(&snk, pipe->sink, PG_CONN_SQL, err);
        if (r < 0)
                goto out;
        /* last_value needs SELECT or USAGE on the sequence: without it the note says so */
        uses = side_query(&src,
                          USES_CTE "SELECT tn.nspname, t.relname, a.attname, sn.nspname, s.relname, "
                                   "CASE WHEN has_sequence_privilege(s.oid, 'SELECT,USAGE') THEN "
                                   "pg_sequence_last_value(s.oid)::text END, has_sequence_privilege(s.oid, "
                                   "'SELECT,USAGE'), t.relispartition FROM uses u JOIN pg_class s ON s.oid = u.seq "
                                   "AND s.relkind = 'S' AND s.relpersistence <> 't' JOIN pg_namespace sn ON sn.oid = "
                                   "s.relnamespace JOIN pg_class t ON t.oid = u.tab JOIN pg_namespace tn ON tn.oid = "
                                   "t.relnamespace JOIN pg_attribute a ON a.attrelid = u.tab AND a.attnum = u.col "
                                   "AND NOT a.attisdropped WHERE tn.nspname NOT IN ('pg_catalog', "
                                   "'information_schema', 'cdcsync') ORDER BY 1, 2, 3",
                          0, NULL, buf, sizeof(buf), &lost);
        if (!uses) {
                r = query_error(&src, "reading the sequences of the source's tables", buf, err);
                goto out;
        }
        for (int i = 0; i < PQntuples(uses); i++) {
                const char *schema = PQgetvalue(uses, i, 0), *table = PQgetvalue(uses, i, 1);
                /* tables = * streams a partition through its root: the root's column says it */
                if (!conf_pipeline_has_table(pipe, schema, table) ||
                    (pipe->all_tables && strcmp(PQgetvalue(uses, i, 7), "t") == 0))
                        continue;
                char column[400], source_seq[300], sink_seq[300] = "", ts[128], tn[128], why[1200] = "";
                snprintf(column, sizeof(column), "%s.%s.%s", schema, table, PQgetvalue(uses, i, 2));
                snprintf(source_seq, sizeof(source_seq), "%s.%s", PQgetvalue(uses, i, 3), PQgetvalue(uses, i, 4));
                const char *value = PQgetisnull(uses, i, 5) ? NULL : PQgetvalue(uses, i, 5);
                SeqNote n = {.column = column, .source_seq = source_seq, .sink_seq = sink_seq, .value = value};
                if (conf_map_table(pipe, schema, table, ts, sizeof(ts), tn, sizeof(tn)) < 0) {
                        n.action = SEQ_FAILED;
                        n.why = "the sink table's name is too long";
                } else if ((r = sink_sequence(&snk, ts, tn, PQgetvalue(uses, i, 2), PQgetvalue(uses, i, 4), sink_seq,
                                              sizeof(sink_seq), err)) < 0) {
                        goto out;
                } else if (strcmp(PQgetvalue(uses, i, 6), "t") != 0) {
                        n.action = SEQ_FAILED;
                        snprintf(why, sizeof(why),
                                 "the source's user may not read sequence %s — GRANT SELECT ON SEQUENCE %s to it",
                                 source_seq, source_seq);
                        n.why = why;
                } else if (!value) {
                        n.action = SEQ_UNUSED;
                } else if (!sink_seq[0]) {
                        n.action = SEQ_MISSING;
                        snprintf(why, sizeof(why),
                                 "sink table %s.%s has no sequence for column %s (no serial, identity or nextval() "
                                 "default) and no sequence %s.%s exists — create the sink's table with its sequence "
                                 "(pg_dump --schema-only of the source), then sync again",
                                 ts, tn, PQgetvalue(uses, i, 2), ts, PQgetvalue(uses, i, 4));
                        n.why = why;
                } else {
                        /* set only when behind in the sequence's direction, or never used */
                        const char *sp[] = {sink_seq, value};
                        PGresult *res = side_query(
                                &snk,
                                "SELECT r.before, CASE WHEN r.behind THEN setval(r.oid, $2::bigint, true) END IS NOT "
                                "NULL FROM (SELECT s.oid, pg_sequence_last_value(s.oid)::text AS before, CASE WHEN "
                                "q.seqincrement > 0 THEN coalesce(pg_sequence_last_value(s.oid) < $2::bigint, true) "
                                "ELSE coalesce(pg_sequence_last_value(s.oid) > $2::bigint, true) END AS behind FROM "
                                "pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid WHERE s.oid = $1::regclass) r",
                                2, sp, buf, sizeof(buf), &lost);
                        if (!res && lost) {
                                r = query_error(&snk, "setting a sequence", buf, err);
                                goto out;
                        }
                        if (res && PQntuples(res) != 1) { /* dropped since it was looked up */
                                PQclear(res);
                                n.action = SEQ_FAILED;
                                snprintf(why, sizeof(why), "sequence %s was dropped from the sink while it was synced",
                                         sink_seq);
                                n.why = why;
                        } else if (!res) {
                                n.action = SEQ_FAILED;
                                snprintf(why, sizeof(why),
                                         "%s — the sink's user needs USAGE, SELECT and UPDATE on sequence %s, whose "
                                         "range must hold the value",
                                         buf, sink_seq);
                                n.why = why;
                        } else {
                                n.before = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
                                n.action = strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? SEQ_SET : SEQ_AHEAD;
                                if (note)
                                        note(userdata, &n);
                                PQclear(res);
                                continue;
                        }
                }
                if (note)
                        note(userdata, &n);
        }
out:
        PQclear(uses);
        side_close(&src);
        side_close(&snk);
        return r;
}
