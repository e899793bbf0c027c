/* The PostgreSQL sink: its session, and batches of source transactions applied in pipeline mode with their
 * checkpoint (see pg_sink.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/copies.h"
#include "cdcsync/deadline.h"
#include "cdcsync/lease.h"
#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

#define STMT_CACHE_MAX 4096 /* distinct prepared statements before DEALLOCATE ALL */
#define KEY_VALUE_SHOWN 64  /* bytes of a key value quoted in an error message */
#define ROW_COLS_SHOWN 3    /* columns of a keyless row quoted in an error message... */
#define ROW_VALUE_SHOWN 24  /* ...and bytes of each */

/* ---- session set-up ---- */

/* Bidirectional sync: the table of version tags (engine/rowstate.c), written in the batch's
 * transaction just before each row, read back by the reverse pipeline from our log. */
static int ensure_versions_table(Sink *k, CdcError *err) {
        if (!k->pipe || !k->pipe->bidirectional)
                return 0;
        int r = pg_pipe_exec_params(
                k, "CREATE TABLE IF NOT EXISTS cdcsync.versions (k bytea PRIMARY KEY, v bytea NOT NULL)", 0, NULL,
                "creating table cdcsync.versions", NULL, err);
        if (r < 0 && pg_pipe_sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                 "sink %s: cannot create table cdcsync.versions (bidirectional sync): permission "
                                 "denied — run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !pg_pipe_sqlstate_is(err, "42P07") && !pg_pipe_sqlstate_is(err, "23505") &&
            !pg_pipe_sqlstate_is(err, "42710"))
                return r;
        return 0;
}

/* The copy records (copies.h): which source tables were copied, as of which position. */
static int ensure_copies_table(Sink *k, CdcError *err) {
        PGresult *res = NULL;
        int r = pg_pipe_exec_params(k, "SELECT to_regclass('cdcsync.tables') IS NOT NULL", 0, NULL,
                                    "looking up cdcsync.tables", &res, err);
        if (r < 0)
                return r;
        bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (have)
                return 0;
        r = pg_pipe_exec_params(
                k,
                "CREATE TABLE IF NOT EXISTS cdcsync.tables (pipeline text, source_table text, state text NOT "
                "NULL, pos_hi numeric(20,0), pos_lo numeric(20,0), pos_text text, copied_rows bigint, "
                "copied_at timestamptz DEFAULT now(), PRIMARY KEY (pipeline, source_table))",
                0, NULL, "creating table cdcsync.tables", NULL, err);
        if (r < 0 && pg_pipe_sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                 "sink %s: cannot create table cdcsync.tables: permission denied "
                                 "— run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !pg_pipe_sqlstate_is(err, "42P07") && !pg_pipe_sqlstate_is(err, "23505") &&
            !pg_pipe_sqlstate_is(err, "42710"))
                return r;
        return 0;
}

static int ensure_checkpoint_table(Sink *k, CdcError *err) {
        PGresult *res = NULL;
        bool have_schema, have_table;
        int r;

        r = pg_pipe_exec_params(k,
                                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync'), "
                                "to_regclass('cdcsync.checkpoints') IS NOT NULL",
                                0, NULL, "looking up cdcsync.checkpoints", &res, err);
        if (r < 0)
                return r;
        have_schema = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        have_table = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        PQclear(res);
        if (have_table) {
                r = ensure_versions_table(k, err);
                return r < 0 ? r : ensure_copies_table(k, err);
        }
        /* CREATE SCHEMA IF NOT EXISTS checks the database privilege even when the schema exists,
         * hence the look-up first. 42P06/42P07/23505/42710: another pipeline created it just now
         * (IF NOT EXISTS does not cover a concurrent creation: the loser fails on the catalogue's
         * unique index, or on the table's row type "already exists", 42710). */
        if (!have_schema) {
                r = pg_pipe_exec_params(k, "CREATE SCHEMA IF NOT EXISTS cdcsync", 0, NULL, "creating schema cdcsync",
                                        NULL, err);
                if (r < 0 && pg_pipe_sqlstate_is(err, "42501"))
                        return cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                         "sink %s: cannot create schema cdcsync: permission denied — "
                                         "run GRANT CREATE ON DATABASE <db> TO <user>, or create "
                                         "schema cdcsync owned by the sink's user",
                                         k->conf->name);
                if (r < 0 && !pg_pipe_sqlstate_is(err, "42P06") && !pg_pipe_sqlstate_is(err, "23505"))
                        return r;
        }
        r = pg_pipe_exec_params(k,
                                "CREATE TABLE IF NOT EXISTS cdcsync.checkpoints ("
                                "pipeline text PRIMARY KEY, pos_hi numeric, pos_lo numeric, pos_text text, "
                                "source_commit_ts timestamptz, updated_at timestamptz)",
                                0, NULL, "creating table cdcsync.checkpoints", NULL, err);
        if (r < 0 && pg_pipe_sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                 "sink %s: cannot create table cdcsync.checkpoints: permission denied "
                                 "— run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !pg_pipe_sqlstate_is(err, "42P07") && !pg_pipe_sqlstate_is(err, "23505") &&
            !pg_pipe_sqlstate_is(err, "42710"))
                return r;
        r = ensure_versions_table(k, err);
        return r < 0 ? r : ensure_copies_table(k, err);
}

const ConnectorType *pg_sink_source_type(const Sink *k) {
        return k->pipe->source && k->pipe->source->type ? connector_type(k->pipe->source->type) : NULL;
}

bool pg_sink_native(const Sink *k) {
        const ConnectorType *t = pg_sink_source_type(k);
        return t && t->source_dialect == CONNECTOR_DIALECT_POSTGRES;
}

/* The source relation (pgoutput relation id, which is the table's oid) that each source table of
 * a PostgreSQL source last had, per pipeline: a source table dropped and created again under the
 * same name is a new relation, whose rows must not be merged into the old one's (see
 * check_relation). Written in the batches' transactions. Without it (no right to create it in
 * schema cdcsync) the pipeline runs, with a warning that such tables go undetected. */
static void ensure_relations_table(Sink *k) {
        CdcError e;
        PGresult *res = NULL;

        k->rels_ok = false;
        if (!pg_sink_source_type(k) || !pg_sink_source_type(k)->source_relation_ids)
                return;
        if (pg_pipe_exec_params(k, "SELECT to_regclass('cdcsync.relations') IS NOT NULL", 0, NULL,
                                "looking up cdcsync.relations", &res, &e) < 0) {
                log_warn(k->ctx, "%s", e.message);
                return;
        }
        k->rels_ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (k->rels_ok)
                return;
        int r = pg_pipe_exec_params(
                k,
                "CREATE TABLE IF NOT EXISTS cdcsync.relations (pipeline text, src_schema text, src_name "
                "text, rel_id bigint NOT NULL, prev_rel_id bigint, ready boolean NOT NULL, updated_at "
                "timestamptz, PRIMARY KEY (pipeline, src_schema, src_name))",
                0, NULL, "creating table cdcsync.relations", NULL, &e);
        k->rels_ok = r == 0 || pg_pipe_sqlstate_is(&e, "42P07") || pg_pipe_sqlstate_is(&e, "23505") ||
                     pg_pipe_sqlstate_is(&e, "42710");
        if (!k->rels_ok)
                log_warn(k->ctx,
                         "%s — a source table dropped and created again will not be detected (its new rows "
                         "would be merged into the old table's): grant CREATE on schema cdcsync",
                         e.message);
}

static void reset_session_state(Sink *k) {
        for (; k->npending > 0; k->npending--) {
                free(k->pending[k->phead].what);
                k->pending[k->phead].what = NULL;
                pg_pipe_rows_free(k->pending[k->phead].rows);
                k->pending[k->phead].rows = NULL;
                k->phead = (k->phead + 1) % (int)(sizeof(k->pending) / sizeof(k->pending[0]));
        }
        k->phead = 0;
        k->nexpect = 0;
        PQclear(k->captured);
        k->captured = NULL;
        pg_pipe_forget_statements(k);
        pg_map_clear(&k->tables);
        pg_target_ts_drop_all(k);
        pg_sink_copy_reset(k);
        k->in_txn = false;
        k->failed = false;
}

static int session_open(Sink *k, CdcError *err) {
        int r;

        reset_session_state(k);
        pg_pipe_conn_close(k);
        r = pg_conn_open(k->conf, PG_CONN_SQL, &k->conn, err);
        if (r < 0)
                return r;
        deadline_set_fd(k->guard, PQsocket(k->conn));
        /* Every statement of ours finds its row by key, as PostgreSQL's own apply worker does
         * through the replica identity index. A prepared statement's generic plan, made while a
         * table was a page or two, keeps scanning it whole after updates have grown it (a
         * hot-row table under a pgbench-like load: a quarter of the sink server's time was that
         * scan). Without an index the planner still scans (keyless tables). That scan's cost
         * then carries the planner's penalty for a disabled plan (1e10), far above jit_above_cost:
         * with jit on (the default where the server has LLVM, as Debian's has) every statement
         * that scans (a keyless table's update, the catalogue look-ups) was compiled first,
         * ~25-250 ms each in the server's log. Our statements touch a row or a few: no JIT. */
        r = pg_pipe_exec_params(k, "SET enable_seqscan = off", 0, NULL, "setting enable_seqscan", NULL, err);
        if (r == 0)
                r = pg_pipe_exec_params(k, "SET jit = off", 0, NULL, "setting jit", NULL, err);
        if (r < 0)
                return r;
        r = ensure_checkpoint_table(k, err);
        if (r < 0)
                return r;
        ensure_relations_table(k);
        pg_defer_setup(k);
        return k->worker > 0 ? 0 : pg_origin_setup(k, err);
}

static Sink *sink_free(Sink *k);

static int sink_open_worker(const ConnectorConf *conn, const PipelineConf *pipe, int worker, Sink **ret,
                            CdcError *err) {
        Sink *k = calloc(1, sizeof(*k));
        int r;

        if (!k)
                return cdc_oom(err);
        k->worker = worker;
        k->conf = conn;
        k->pipe = pipe;
        snprintf(k->ctx, sizeof(k->ctx), "[pipeline=%s sink=%s]", pipe->name, conn->name);
        pg_sink_write_mark(pipe, k->origin, sizeof(k->origin));
        r = deadline_new(&k->guard);
        if (r < 0) {
                free(k);
                return cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory");
        }
        pg_pipe_guard_on(k);
        r = pg_pipe_guard_off(k, session_open(k, err), err);
        if (r < 0) {
                sink_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int sink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        return sink_open_worker(conn, pipe, 0, ret, err);
}

static Sink *sink_free(Sink *k) {
        if (!k)
                return NULL;
        if (k->in_txn)
                pg_sink_rollback(k);
        reset_session_state(k);
        pg_pipe_conn_close(k);
        deadline_free(k->guard);
        free(k->params);
        free(k->copy.buf);
        free(k->range_keep);
        free(k->mask);
        free(k->ts);
        free(k);
        return NULL;
}

static int sink_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err) {
        const char *vals[1] = {k->pipe->name};
        PGresult *res = NULL;
        Checkpoint c = {0};
        int r;

        if (k->in_txn)
                return cdc_error(err, -EBUSY, false, CDC_ERR_INTERNAL, "sink %s: last_position inside a batch",
                                 k->conf->name);
        r = pg_pipe_exec_params(
                k, "SELECT pos_hi::text, pos_lo::text, pos_text FROM cdcsync.checkpoints WHERE pipeline = $1", 1, vals,
                "reading the checkpoint", &res, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                PQclear(res);
                *ret_found = false;
                return 0;
        }
        for (int i = 0; i < 2; i++) {
                const char *s = PQgetvalue(res, 0, i);
                char *end = NULL;
                unsigned long long v;
                errno = 0;
                v = strtoull(s, &end, 10);
                if (errno || end == s || *end || *s == '-') {
                        PQclear(res);
                        return cdc_error(err, -EBADMSG, false, CDC_ERR_INTERNAL,
                                         "sink %s: checkpoint of pipeline %s holds a bad position "
                                         "\"%.40s\" in cdcsync.checkpoints",
                                         k->conf->name, k->pipe->name, s);
                }
                if (i == 0)
                        c.pos.hi = v;
                else
                        c.pos.lo = v;
        }
        /* the text commit() stored (a MySQL source's GTID state lives there); "" if it does not fit */
        if (!PQgetisnull(res, 0, 2) && (size_t)PQgetlength(res, 0, 2) < sizeof(c.text))
                snprintf(c.text, sizeof(c.text), "%s", PQgetvalue(res, 0, 2));
        PQclear(res);
        *ret = c;
        *ret_found = true;
        return 0;
}

static int sink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        const char *vals[1] = {k->pipe->name};
        PGresult *res = NULL;
        int r = pg_pipe_exec_params(
                k,
                "SELECT source_table, pos_hi::text, pos_lo::text, state, coalesce(copied_rows, 0)::text, "
                "coalesce(pos_text, '') FROM "
                "cdcsync.tables WHERE pipeline = $1",
                1, vals, "reading the copy records", &res, err);
        if (r < 0)
                return r;
        int n = PQntuples(res);
        CopiedTable *v = calloc((size_t)n + 1, sizeof(*v));
        if (!v) {
                PQclear(res);
                return cdc_oom(err);
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
                if (copies_state_parse(PQgetvalue(res, i, 3), &v[m].state) < 0)
                        continue; /* a state of a later build: not this build's to act on */
                snprintf(v[m].table, sizeof(v[m].table), "%s", PQgetvalue(res, i, 0));
                v[m].pos.hi = strtoull(PQgetvalue(res, i, 1), NULL, 10);
                v[m].pos.lo = strtoull(PQgetvalue(res, i, 2), NULL, 10);
                v[m].rows = strtoull(PQgetvalue(res, i, 4), NULL, 10);
                if ((size_t)PQgetlength(res, i, 5) < sizeof(v[m].text))
                        snprintf(v[m].text, sizeof(v[m].text), "%s", PQgetvalue(res, i, 5));
                m++;
        }
        PQclear(res);
        *ret = v;
        *ret_n = m;
        return 0;
}

static int sink_begin(Sink *k, CdcError *err) {
        int r;

        if (k->in_txn)
                return cdc_error(err, -EBUSY, false, CDC_ERR_INTERNAL, "sink %s: begin inside a batch", k->conf->name);
        k->txn_row = 0; /* a batch starts with a source transaction */
        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
                r = session_open(k, err);
                if (r < 0)
                        return r;
        }
        if (k->stmts.n >= STMT_CACHE_MAX) {
                r = pg_pipe_exec_params(k, "DEALLOCATE ALL", 0, NULL, "dropping prepared statements", NULL, err);
                if (r < 0)
                        return r;
                pg_pipe_forget_statements(k);
        }
        if (PQenterPipelineMode(k->conn) != 1)
                return pg_pipe_conn_error(k, "entering pipeline mode", err);
        k->in_txn = true;
        k->failed = false;
        return pg_pipe_send_query(k, "BEGIN", 0, NULL, "begin", false, err);
}

/* "shop.orders key (id)=(42)": the change's table and key for error messages; values are cut to
 * KEY_VALUE_SHOWN bytes and control characters shown as '?'. A table without key (row > 0):
 * the whole row would be its key, about a kilobyte in a message; its place in the source
 * transaction and its first columns find it: "shop.log (row 3 of its source transaction, no
 * key: a=1, b=one, c=abc…, and 9 more columns)". */
char *pg_sink_describe(const char *op, const char *schema, const char *name, const Table *t, const Value *kv,
                       const uint8_t *mask, uint32_t row) {
        char buf[768];
        size_t len = 0;
        int n;

#define PUT(...)                                                                                                       \
        do {                                                                                                           \
                n = snprintf(buf + len, sizeof(buf) - len, __VA_ARGS__);                                               \
                if (n > 0)                                                                                             \
                        len = (size_t)n < sizeof(buf) - len ? len + (size_t)n : sizeof(buf) - 1;                       \
        } while (0)
        PUT("%s of %s.%s", op, schema, name);
        if (kv && mask && row > 0) {
                int shown = 0, more = 0;
                PUT(" (row %" PRIu32 " of its source transaction, no key:", row);
                for (int i = 0; i < t->ncols; i++) {
                        if (!(mask[i] & (PG_SQL_WHERE | PG_SQL_WHERE_NULL)))
                                continue;
                        if (shown == ROW_COLS_SHOWN) {
                                more++;
                                continue;
                        }
                        if (kv[i].kind != VALUE_TEXT) {
                                PUT("%s %s=null", shown ? "," : "", t->cols[i].name);
                        } else {
                                /* cut before a UTF-8 continuation byte */
                                int cut = kv[i].len > ROW_VALUE_SHOWN ? ROW_VALUE_SHOWN : (int)kv[i].len;
                                while (cut > 0 && cut < (int)kv[i].len &&
                                       ((unsigned char)kv[i].data[cut] & 0xC0) == 0x80)
                                        cut--;
                                PUT("%s %s=%.*s%s", shown ? "," : "", t->cols[i].name, cut, kv[i].data,
                                    (uint32_t)cut < kv[i].len ? "…" : "");
                        }
                        shown++;
                }
                /* (%.0d prints nothing for 0) */
                PUT("%s%.0d%s)", more ? ", and " : "", more, more ? (more > 1 ? " more columns" : " more column") : "");
        } else if (kv && mask) {
                bool first = true;
                PUT(" key (");
                for (int i = 0; i < t->ncols; i++) {
                        if (!(mask[i] & (PG_SQL_WHERE | PG_SQL_WHERE_NULL)))
                                continue;
                        PUT("%s%s", first ? "" : ", ", t->cols[i].name);
                        first = false;
                }
                PUT(")=(");
                first = true;
                for (int i = 0; i < t->ncols; i++) {
                        if (!(mask[i] & (PG_SQL_WHERE | PG_SQL_WHERE_NULL)))
                                continue;
                        if (kv[i].kind != VALUE_TEXT)
                                PUT("%snull", first ? "" : ", ");
                        else
                                PUT("%s%.*s%s", first ? "" : ", ", KEY_VALUE_SHOWN, kv[i].data,
                                    kv[i].len > KEY_VALUE_SHOWN ? "…" : "");
                        first = false;
                }
                PUT(")");
        }
#undef PUT
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
                        buf[i] = '?';
        return strdup(buf);
}

int pg_sink_grow(Sink *k, int ncols) {
        if (ncols > k->nparams_cap) {
                const char **p = realloc(k->params, (size_t)ncols * 2 * sizeof(*p));
                uint8_t *m;
                if (!p)
                        return -ENOMEM;
                k->params = p;
                m = realloc(k->mask, (size_t)ncols * 2);
                if (!m)
                        return -ENOMEM;
                k->mask = m;
                k->nparams_cap = ncols * 2;
        }
        return 0;
}

/* ha = on: the batch commits only while this instance still holds the pipeline's lease. The row
 * is updated in the batch's own transaction (recording this session): a taker's UPDATE waits for this COMMIT
 * (or terminates this session past its lock_timeout), so no batch commits after a takeover.
 * Results are read here, before COMMIT is sent (one more round-trip per batch). */
static int fence_check(Sink *k, CdcError *err) {
        char gen[32], held[32];
        snprintf(held, sizeof(held), "%" PRId64, k->fence);
        const char *vals[2] = {k->pipe->name, held};
        int r = pg_pipe_send_query(k, LEASE_SQL_FENCE, 2, vals, "checking the pipeline's lease", true, err);
        if (r == 0)
                r = pg_pipe_send_sync(k, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        PGresult *res = k->captured;
        bool found = res && PQntuples(res) == 1;
        int64_t now_gen = 0;
        if (found) {
                char *end;
                errno = 0;
                long long v = strtoll(PQgetvalue(res, 0, 0), &end, 10);
                found = errno == 0 && *end == '\0';
                now_gen = v;
        }
        PQclear(k->captured);
        k->captured = NULL;
        if (lease_fence_ok(k->fence, found, now_gen))
                return 0;
        (void)gen;
        return pg_pipe_fail(k,
                            cdc_error(err, -ESTALE, true, CDC_ERR_LEASE,
                                      "sink %s: pipeline %s: the lease no longer has generation %" PRId64
                                      ", the one this instance held: another instance runs the pipeline now; the "
                                      "batch is rolled back and this instance stands by",
                                      k->conf->name, k->pipe->name, k->fence),
                            err);
}

static int sink_set_fence(Sink *k, int64_t generation, CdcError *err) {
        k->fence = generation;
        if (generation <= 0)
                return 0;
        if (k->in_txn)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL,
                                 "sink %s: pipeline %s: the lease was set inside a transaction", k->conf->name,
                                 k->pipe->name);
        /* Lists this session with the lease before any batch holds a row lock, so that a taker
         * ends it (apply workers included) even when this instance freezes in its first batch;
         * drops the sessions that ended. Then records it as the holder's session too, which
         * every batch's fence does again. */
        char held[32];
        PGresult *res = NULL;
        snprintf(held, sizeof(held), "%" PRId64, generation);
        const char *vals[2] = {k->pipe->name, held};
        int r = pg_pipe_exec_params(k, LEASE_SQL_SESSIONS_PRUNE, 1, vals, "forgetting the lease's ended sessions", NULL,
                                    err);
        if (r < 0)
                return r;
        r = pg_pipe_exec_params(k, LEASE_SQL_SESSION_REGISTER, 2, vals, "listing the sink session with the lease", &res,
                                err);
        if (r < 0)
                return r;
        bool ours = PQntuples(res) == 1;
        PQclear(res);
        res = NULL;
        if (!ours)
                return cdc_error(err, -ESTALE, true, CDC_ERR_LEASE,
                                 "sink %s: pipeline %s: the lease no longer has generation %" PRId64
                                 ", the one this instance held: another instance runs the pipeline now; this "
                                 "instance stands by",
                                 k->conf->name, k->pipe->name, generation);
        /* The taker ends the deposed leader's sessions; should it have failed to after its take,
         * they end here, before this session applies anything. */
        r = pg_pipe_exec_params(k, LEASE_SQL_SESSIONS_END, 2, vals, "ending the deposed leader's sink sessions", NULL,
                                err);
        if (r < 0)
                return r;
        return pg_pipe_exec_params(k, LEASE_SQL_FENCE, 2, vals, "recording the sink session in the lease", NULL, err);
}

/* Fills the WHERE part of k->mask from the old key (or, without a key, the whole old row). */
static int where_mask(Sink *k, const Table *t, const Value *kv, bool keyless) {
        int n = 0;
        for (int i = 0; i < t->ncols; i++) {
                if (!keyless && !t->cols[i].key)
                        continue;
                if (kv[i].kind == VALUE_UNCHANGED) {
                        if (!keyless)
                                return -EINVAL; /* a key value the source did not send */
                        continue;
                }
                k->mask[i] |= kv[i].kind == VALUE_NULL ? PG_SQL_WHERE_NULL : PG_SQL_WHERE;
                n++;
        }
        return n > 0 || t->ncols == 0 ? 0 : -EINVAL; /* a table of no column: any row is the row */
}

/* Whether column i is a key column whose new value (after) is the row's old one (kv). */
static bool same_key_value(const Table *t, const Value *after, const Value *kv, int i) {
        if (!t->cols[i].key)
                return false;
        if (after == kv)
                return true;
        return after[i].kind == kv[i].kind &&
               (after[i].kind != VALUE_TEXT ||
                (after[i].len == kv[i].len && memcmp(after[i].data, kv[i].data, after[i].len) == 0));
}

/* Whether c may be held in a run of its table (pg_held.c): a change to a key of a table whose
 * changes to distinct keys commute, or an insert into a keyless table whose inserts do. */
static bool held_lane(const TState *ts, const Change *c) {
        const Table *t = c->table;
        bool keyless = table_nkeys(t) == 0 || t->replident == 'f';
        if (keyless)
                return ts->appendable && c->op == CHANGE_INSERT;
        return ts->commutable && (c->op == CHANGE_INSERT || c->op == CHANGE_UPDATE || c->op == CHANGE_DELETE);
}

static int sink_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        const Table *t = c->table;
        char schema[256], name[256];
        const char *stmt = NULL, *opname;
        const Value *kv = NULL;
        char *sql = NULL, *what = NULL;
        TState *ts = NULL;
        bool keyless, expect_one = false;
        /* CHANGE_IDEMPOTENT (change.h): a repeat of this change must be harmless. */
        bool upsert = (c->flags & CHANGE_IDEMPOTENT) && c->op != CHANGE_TRUNCATE;
        int r, np = 0;

        if (!k->in_txn)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "sink %s: apply outside a batch",
                                 k->conf->name);
        /* a source transaction's changes all carry the same xid and commit position */
        if (txn->xid != k->txn_xid || position_cmp(txn->commit_pos, k->txn_pos) != 0 || k->txn_row == 0) {
                k->txn_xid = txn->xid;
                k->txn_pos = txn->commit_pos;
                k->txn_row = 0;
        }
        k->txn_row++;
        if (k->failed) {
                *err = k->first_err;
                return k->first_err.code;
        }
        if (k->copy.active) {
                /* The next row of the COPY in progress: its table and shape were checked with the
                 * run's first row. Anything else ends the COPY first (it keeps source order). */
                if (c->table == k->copy.ts->table && pg_sink_copy_fits(k->copy.ts, txn, c))
                        return c->copy_text ? pg_sink_copy_text(k, c->copy_text, c->copy_len, err)
                                            : pg_sink_copy_row(k, c->after, err);
                r = pg_sink_copy_end(k, err);
                if (r < 0)
                        return r;
        }
        /* The held lane's shortcut: a change of a table whose last change was held, whose target
         * state is known and still holds (same shape, columns there, relation checked, no index
         * build due), goes straight to its run; the lookups below would find the same TState at
         * several times the cost of holding the row. A change the run does not take (0) goes
         * the whole way, which asks the run again and sends it alone. */
        TState *hot = NULL;
        for (int i = 0; i < HOT_MAX && !hot; i++)
                if (k->hot[i].t == t)
                        hot = k->hot[i].ts;
        if (hot && hot->table == t && hot->cols_ok && !hot->deferred &&
            (!k->rels_ok || (hot->rel_known && hot->rel_id == t->rel_id)) && !upsert && held_lane(hot, c)) {
                r = pg_held_hold(k, hot, c, pg_sink_copy_fits(hot, txn, c), err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = conf_map_table(k->pipe, t->schema, t->name, schema, sizeof(schema), name, sizeof(name));
        if (r < 0)
                return pg_pipe_fail(k,
                                    cdc_error(err, r, false, CDC_ERR_CONF,
                                              "sink %s: cannot map table %s.%s: name too long", k->conf->name,
                                              t->schema, t->name),
                                    err);
        if (pg_sink_grow(k, t->ncols > 0 ? t->ncols : 1) < 0)
                return pg_pipe_fail(k, cdc_oom(err), err);
        r = pg_target_ensure_table(k, schema, name, t, err);
        if (r < 0)
                return r;
        /* Without a key, or with REPLICA IDENTITY FULL (every column flagged key), a change
         * stands for one of possibly several equal rows: match the whole old row, touch one. */
        keyless = table_nkeys(t) == 0 || t->replident == 'f';
        r = pg_sql_quote_ident(schema, &sql);
        if (r == 0) {
                char *qn = NULL;
                r = pg_sql_quote_ident(name, &qn);
                if (r == 0) {
                        size_t len = strlen(sql) + strlen(qn) + 2;
                        what = malloc(len);
                        if (what)
                                snprintf(what, len, "%s.%s", sql, qn);
                }
                free(qn);
        }
        free(sql);
        sql = NULL;
        if (r < 0 || !what)
                goto oom;
        r = pg_target_table_state(k, schema, name, what, t, &ts, err);
        if (r == 0 && k->rels_ok && !(ts->rel_known && ts->rel_id == t->rel_id)) {
                bool recreated = false, skip = false;
                uint32_t prev = ts->rel_prev;
                r = pg_target_check_relation(k, ts, schema, name, t, txn, &recreated, &skip, err);
                if (r == 0 && skip) { /* a change of a table dropped since */
                        free(what);
                        return 0;
                }
                if (r == 0 && recreated) { /* a new target table: learn it anew */
                        prev = ts->rel_prev;
                        pg_target_ts_forget(k, ts);
                        r = pg_target_table_state(k, schema, name, what, t, &ts, err);
                        if (r == 0)
                                ts->rel_known = true, ts->rel_id = t->rel_id, ts->rel_prev_known = true,
                                ts->rel_prev = prev;
                }
        }
        free(what);
        what = NULL;
        if (r < 0)
                goto out;
        if (ts->table != t) {
                /* The source's shape of the table changed: rows held in the old one go first. */
                r = pg_held_flush_table(k, ts, err);
                if (r < 0)
                        goto out;
                table_unref(ts->table);
                ts->table = table_ref((Table *)t);
                pg_held_forget_shapes(ts); /* statements of the old shape's columns */
                ts->cols_ok = false;
        }
        if (!ts->cols_ok) {
                r = pg_target_ensure_columns(k, ts, t, err);
                if (r < 0)
                        goto out;
                ts->cols_ok = true;
        }
        /* Indexes deferred by an initial copy come back before any change but the copy's own
         * inserts, and with the table's final registry record below (pg_sink_defer.c). */
        if (ts->deferred && c->op != CHANGE_TRUNCATE && !pg_sink_copy_fits(ts, txn, c)) {
                r = pg_defer_rebuild(k, ts, err);
                if (r < 0)
                        goto out;
        }
        /* Idempotent changes (at-least-once sources) take the one-row path: it upserts and
         * tolerates missing rows, which grouped statements do not. */
        if (!upsert && held_lane(ts, c)) {
                if (!hot) {
                        int h = k->next_hot++ % HOT_MAX;
                        k->hot[h].t = t;
                        k->hot[h].ts = ts;
                }
                r = pg_held_hold(k, ts, c, pg_sink_copy_fits(ts, txn, c), err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = pg_held_flush_all(k, err);
        if (r == 0 && copies_is_registry(t))
                r = pg_defer_rebuild_copied(k, c, err);
        if (r < 0)
                goto out;
        memset(k->mask, 0, (size_t)t->ncols);

        if (c->op == CHANGE_DELETE && (c->flags & CHANGE_RANGE)) {
                /* a re-snapshot's chunk: its rows are in the sink now, the rest of its range goes */
                opname = "range delete";
                r = pg_sink_range_statement(k, t, c, schema, name, &sql, &np, err);
                if (r < 0) {
                        r = pg_pipe_fail(k, r, err);
                        goto out;
                }
                what = pg_sink_describe(opname, schema, name, t, NULL, NULL, 0);
                if (!what)
                        goto oom;
                r = pg_pipe_statement(k, sql, np, &stmt, err);
                if (r < 0)
                        goto out;
                if (PQsendQueryPrepared(k->conn, stmt, np, k->params, NULL, NULL, 0) != 1) {
                        r = pg_pipe_fail(k, pg_pipe_conn_error(k, what, err), err);
                        goto out;
                }
                pg_pipe_push_pending(k, PENDING_QUERY, false, false, what);
                what = NULL;
                r = k->npending >= PENDING_MAX ? pg_pipe_drain(k, PENDING_MAX / 2, err) : 0;
                goto out;
        }
        switch (c->op) {
        case CHANGE_INSERT:
                opname = "insert";
                if (!c->after)
                        goto bad_change;
                for (int i = 0; i < t->ncols; i++) {
                        if (c->after[i].kind == VALUE_UNCHANGED)
                                goto bad_change;
                        k->params[np++] = c->after[i].kind == VALUE_TEXT ? c->after[i].data : NULL;
                }
                /* Only for the error message: which key the failing insert had. */
                kv = c->after;
                (void)where_mask(k, t, kv, keyless);
                r = upsert && !keyless ? pg_sql_upsert(schema, name, t, &sql) : pg_sql_insert(schema, name, t, &sql);
                break;
        case CHANGE_UPDATE:
                opname = "update";
                if (!c->after)
                        goto bad_change;
                if (upsert && !keyless && change_whole_row_same_key(c)) {
                        /* At-least-once source: the row may be gone or not yet there. */
                        opname = "upsert";
                        for (int i = 0; i < t->ncols; i++)
                                k->params[np++] = c->after[i].kind == VALUE_TEXT ? c->after[i].data : NULL;
                        kv = c->after;
                        (void)where_mask(k, t, kv, keyless);
                        r = pg_sql_upsert(schema, name, t, &sql);
                        break;
                }
                kv = c->before ? c->before : c->after;
                if (keyless && !c->before) {
                        r = pg_pipe_fail(k,
                                         cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                                   "sink %s: update of %s.%s, a table without primary key, "
                                                   "came without the old row — set REPLICA IDENTITY FULL "
                                                   "(or a primary key) on the source table",
                                                   k->conf->name, t->schema, t->name),
                                         err);
                        return r;
                }
                /* A key column keeping its value is not set (a GENERATED ALWAYS identity key may
                 * only be set to DEFAULT), unless nothing else is. */
                bool others = false;
                for (int i = 0; i < t->ncols; i++)
                        others |= c->after[i].kind != VALUE_UNCHANGED && !same_key_value(t, c->after, kv, i);
                for (int i = 0; i < t->ncols; i++)
                        if (c->after[i].kind != VALUE_UNCHANGED && !(others && same_key_value(t, c->after, kv, i))) {
                                k->mask[i] |= PG_SQL_SET;
                                k->params[np++] = c->after[i].kind == VALUE_TEXT ? c->after[i].data : NULL;
                        }
                if (where_mask(k, t, kv, keyless) < 0)
                        goto bad_change;
                for (int i = 0; i < t->ncols; i++)
                        if (k->mask[i] & PG_SQL_WHERE)
                                k->params[np++] = kv[i].data;
                r = pg_sql_update(schema, name, t, k->mask, keyless, &sql);
                expect_one = !upsert;
                break;
        case CHANGE_DELETE:
                opname = "delete";
                kv = c->before;
                if (!kv) {
                        r = pg_pipe_fail(k,
                                         cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                                   "sink %s: delete of %s.%s came without the old key — "
                                                   "set a primary key or REPLICA IDENTITY FULL on the source table",
                                                   k->conf->name, t->schema, t->name),
                                         err);
                        return r;
                }
                if (where_mask(k, t, kv, keyless) < 0)
                        goto bad_change;
                for (int i = 0; i < t->ncols; i++)
                        if (k->mask[i] & PG_SQL_WHERE)
                                k->params[np++] = kv[i].data;
                r = pg_sql_delete(schema, name, t, k->mask, keyless, &sql);
                expect_one = !upsert;
                break;
        case CHANGE_TRUNCATE:
                if (c->flags & TRUNCATE_CHECK_EMPTY) {
                        r = pg_target_check_empty(k, schema, name, err);
                        if (r == 0 && txn->snapshot)
                                r = pg_defer_indexes(k, ts, t, err);
                        goto out;
                }
                opname = "truncate";
                r = pg_sql_truncate(schema, name, c->flags, &sql);
                break;
        default: opname = "change"; goto bad_change;
        }
        if (r == -EINVAL)
                goto bad_change;
        if (r < 0)
                goto oom;
        what = pg_sink_describe(opname, schema, name, t, kv, kv ? k->mask : NULL, keyless ? k->txn_row : 0);
        if (!what)
                goto oom;
        r = pg_pipe_statement(k, sql, np, &stmt, err);
        if (r < 0)
                goto out;
        if (PQsendQueryPrepared(k->conn, stmt, np, k->params, NULL, NULL, 0) != 1) {
                r = pg_pipe_fail(k, pg_pipe_conn_error(k, what, err), err);
                goto out;
        }
        pg_pipe_push_pending(k, PENDING_QUERY, expect_one, false, what);
        what = NULL;
        r = 0;
        if (k->npending >= PENDING_MAX)
                r = pg_pipe_drain(k, PENDING_MAX / 2, err);
        goto out;
bad_change:
        r = pg_pipe_fail(k,
                         cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL,
                                   "sink %s: malformed %s of %s.%s (missing row image or key value)", k->conf->name,
                                   opname, t->schema, t->name),
                         err);
        goto out;
oom:
        r = pg_pipe_fail(k, cdc_oom(err), err);
out:
        free(sql);
        free(what);
        return r;
}

static int sink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        char hi[24], lo[24], ts[24], lsn[40];
        const char *vals[5];
        PGresult *res;
        int r;

        if (!k->in_txn)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "sink %s: commit outside a batch",
                                 k->conf->name);
        if (k->failed) {
                *err = k->first_err;
                return k->first_err.code;
        }
        r = pg_sink_copy_end(k, err);
        if (r == 0)
                r = pg_held_flush_all(k, err);
        if (r < 0)
                return r;
        snprintf(hi, sizeof(hi), "%" PRIu64, ckpt->pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, ckpt->pos.lo);
        snprintf(ts, sizeof(ts), "%" PRId64, last ? last->commit_ts : 0);
        if (k->origin_ok && last) {
                /* The origin's progress: a pg_lsn for PostgreSQL sources, the position's
                 * monotonic counter otherwise; with the source's commit time. */
                uint64_t c = position_counter(last->commit_pos);
                snprintf(lsn, sizeof(lsn), "%X/%X", (unsigned)(c >> 32), (unsigned)c);
                vals[0] = lsn;
                vals[1] = ts;
                r = pg_pipe_send_query(k,
                                       "SELECT pg_replication_origin_xact_setup($1::pg_lsn, "
                                       "timestamptz 'epoch' + $2::bigint * interval '1 microsecond')",
                                       2, vals, "recording the origin's progress", false, err);
                if (r < 0)
                        return r;
        }
        vals[0] = k->pipe->name;
        vals[1] = hi;
        vals[2] = lo;
        vals[3] = ckpt->text;
        vals[4] = last && last->commit_ts ? ts : NULL;
        r = pg_pipe_send_query(k,
                               "INSERT INTO cdcsync.checkpoints AS c (pipeline, pos_hi, pos_lo, pos_text, "
                               "source_commit_ts, updated_at) VALUES ($1, $2, $3, $4, timestamptz 'epoch' + "
                               "$5::bigint * interval '1 microsecond', now()) ON CONFLICT (pipeline) DO UPDATE "
                               "SET pos_hi = EXCLUDED.pos_hi, pos_lo = EXCLUDED.pos_lo, pos_text = "
                               "EXCLUDED.pos_text, source_commit_ts = EXCLUDED.source_commit_ts, updated_at = "
                               "EXCLUDED.updated_at",
                               5, vals, "writing the checkpoint", false, err);
        if (r < 0)
                return r;
        if (k->fence > 0) {
                r = fence_check(k, err);
                if (r < 0)
                        return r;
        }
        /* An UPDATE or DELETE that matched no row is no server error: read those results before
         * sending COMMIT, or the divergence would be committed (one more round-trip). */
        if (k->nexpect > 0) {
                r = pg_pipe_send_sync(k, err);
                if (r == 0)
                        r = pg_pipe_drain(k, 0, err);
                if (r < 0)
                        return r;
        }
        r = pg_pipe_send_query(k, "COMMIT", 0, NULL, "commit", true, err);
        if (r == 0)
                r = pg_pipe_send_sync(k, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        if (r < 0)
                return r;
        res = k->captured;
        if (!res || strcmp(PQcmdStatus(res), "COMMIT") != 0)
                return pg_pipe_fail(k,
                                    cdc_error(err, -EIO, true, CDC_ERR_INTERNAL, "sink %s: commit ended as \"%s\"",
                                              k->conf->name, res ? PQcmdStatus(res) : "?"),
                                    err);
        PQclear(k->captured);
        k->captured = NULL;
        if (PQexitPipelineMode(k->conn) != 1)
                log_warn(k->ctx, "cannot leave pipeline mode: %s", PQerrorMessage(k->conn));
        k->in_txn = false;
        k->have_durable = true;
        k->durable = ckpt->pos;
        return 0;
}

/* Parallel apply: everything held back is sent and its results read (an UPDATE or DELETE that
 * matched no row shows here), so that commit() has only the checkpoint and COMMIT left while
 * earlier batches commit. */
static int sink_prepare(Sink *k, CdcError *err) {
        if (!k->in_txn)
                return 0;
        if (k->failed) {
                *err = k->first_err;
                return k->first_err.code;
        }
        int r = pg_sink_copy_end(k, err);
        if (r == 0)
                r = pg_held_flush_all(k, err);
        if (r == 0)
                r = pg_pipe_send_sync(k, err);
        if (r == 0)
                r = pg_pipe_drain(k, 0, err);
        return r;
}

/* A committed batch is durable at once: nothing is outstanding. */
static int sink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        (void)timeout_ms;
        (void)err;
        *ret_found = k->have_durable;
        *ret = k->have_durable ? k->durable : (Position){0};
        return 0;
}

static int sink_rollback_unguarded(Sink *k);

/* Guarded itself: it also runs from free() and after another thread's failure, and must not
 * hang on a frozen sink. */
int pg_sink_rollback(Sink *k) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_rollback_unguarded(k), NULL);
}

static int sink_rollback_unguarded(Sink *k) {
        CdcError e;
        /* After a failure, or with results unread, statements prepared in this pipeline may not
         * exist on the server although the cache has them. */
        bool failed = k->failed || k->npending > 0 || k->copy.active;
        int r = 0;

        pg_sink_copy_abort(k);

        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
                reset_session_state(k); /* begin() reconnects */
                return 0;
        }
        if (PQpipelineStatus(k->conn) != PQ_PIPELINE_OFF) {
                /* Everything sent is skipped or finished once the sync is processed. */
                k->failed = true;
                if (pg_pipe_send_sync(k, &e) == 0)
                        pg_pipe_drain(k, 0, &e);
                if (PQstatus(k->conn) != CONNECTION_OK || PQexitPipelineMode(k->conn) != 1) {
                        reset_session_state(k);
                        pg_pipe_conn_close(k);
                        return -ECONNRESET;
                }
        }
        if (k->in_txn || failed) {
                PGresult *res = PQexec(k->conn, "ROLLBACK");
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        r = -EIO;
                PQclear(res);
        }
        if (failed) {
                /* Statements sent in a failed pipeline may or may not exist: start afresh. */
                PGresult *res = PQexec(k->conn, "DEALLOCATE ALL");
                PQclear(res);
                pg_pipe_forget_statements(k);
        }
        /* Tables created in the rolled-back transaction are gone again; held rows with them. */
        pg_map_clear(&k->tables);
        pg_target_ts_drop_all(k);
        PQclear(k->captured);
        k->captured = NULL;
        k->in_txn = false;
        k->failed = false;
        return r;
}

/* The calls the engine makes, each bounded (see "bounded waits"). */
static int guarded_last_position(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_last_position(k, ret, ret_found, err), err);
}

static int guarded_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_copied_tables(k, ret, ret_n, err), err);
}

static int guarded_begin(Sink *k, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_begin(k, err), err);
}

static int guarded_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_apply(k, txn, c, err), err);
}

static int guarded_prepare(Sink *k, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_prepare(k, err), err);
}

static int guarded_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        pg_pipe_guard_on(k);
        return pg_pipe_guard_off(k, sink_commit(k, ckpt, last, err), err);
}

const SinkOps pg_sink_ops = {
        .type = "postgres",
        .open = sink_open,
        .last_position = guarded_last_position,
        .begin = guarded_begin,
        .apply = guarded_apply,
        .commit = guarded_commit,
        .poll_durable = sink_poll_durable,
        .rollback = pg_sink_rollback,
        .check = pg_sink_check,
        .free = sink_free,
        .open_worker = sink_open_worker,
        .prepare = guarded_prepare,
        .copy_records = true,
        .range_delete = true,
        .copied_tables = guarded_copied_tables,
        .locate = pg_conn_locate,
        .set_fence = sink_set_fence,
        .lease_open = pg_sink_lease_open,
        .lease_step = pg_sink_lease_step,
        .lease_release = pg_sink_lease_release,
        .lease_free = pg_sink_lease_free,
};
