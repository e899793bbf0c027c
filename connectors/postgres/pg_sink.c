/* The PostgreSQL sink: batches of source transactions applied in pipeline mode (see pg_sink.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/deadline.h"
#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_sink.h"
#include "postgres/pg_sql.h"
#include "postgres/pg_typedef.h"

#define PENDING_MAX 1000    /* unread results before we stop and read: bounds client memory */
#define STMT_CACHE_MAX 4096 /* distinct prepared statements before DEALLOCATE ALL */
#define KEY_VALUE_SHOWN 64  /* bytes of a key value quoted in an error message */
#define ROW_COLS_SHOWN 3    /* columns of a keyless row quoted in an error message... */
#define ROW_VALUE_SHOWN 24  /* ...and bytes of each */
#define GROUPS_MAX 8        /* runs held per table (insert, delete, UPDATE column sets) */
#define HELD_MAX 2048       /* rows held per table before they are sent */
#define STMT_ROWS_MAX 512   /* rows of one multi-row statement (powers of two below) */

/* A string-keyed hash map (open addressing, linear probing): the statement cache and the set of
 * target tables known to exist. */
typedef struct {
        char *key;  /* owned */
        char *name; /* owned: prepared statement name; NULL in the table set */
} MapEntry;

typedef struct {
        MapEntry *e;
        size_t cap, n; /* cap: power of two or 0 */
} Map;

static uint64_t hash_str(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
        return h;
}

static MapEntry *map_find(const Map *m, const char *key) {
        if (m->cap == 0)
                return NULL;
        for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                if (!m->e[i].key)
                        return NULL;
                if (strcmp(m->e[i].key, key) == 0)
                        return &m->e[i];
        }
}

static void map_clear(Map *m) {
        for (size_t i = 0; i < m->cap; i++) {
                free(m->e[i].key);
                free(m->e[i].name);
        }
        free(m->e);
        memset(m, 0, sizeof(*m));
}

/* Takes ownership of key and name (also on failure). */
static int map_add(Map *m, char *key, char *name) {
        if ((m->n + 1) * 2 > m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 64;
                MapEntry *e = calloc(cap, sizeof(*e));
                if (!e) {
                        free(key);
                        free(name);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < m->cap; i++) {
                        size_t j;
                        if (!m->e[i].key)
                                continue;
                        for (j = hash_str(m->e[i].key) & (cap - 1); e[j].key; j = (j + 1) & (cap - 1))
                                ;
                        e[j] = m->e[i];
                }
                free(m->e);
                m->e = e;
                m->cap = cap;
        }
        size_t j;
        for (j = hash_str(key) & (m->cap - 1); m->e[j].key; j = (j + 1) & (m->cap - 1))
                ;
        m->e[j].key = key;
        m->e[j].name = name;
        m->n++;
        return 0;
}

typedef enum {
        PENDING_QUERY = 0, /* one result, then NULL */
        PENDING_SYNC,      /* PGRES_PIPELINE_SYNC */
} PendingKind;

/* A statement sent whose result is not read yet. */
typedef struct {
        PendingKind kind;
        bool expect_one; /* UPDATE / DELETE: must affect exactly one row */
        bool capture;    /* keep the result in Sink.captured */
        char *what;      /* owned: "update of shop.orders key (id)=(42)", for error messages */
        int expect_n;    /* multi-row UPDATE / DELETE: rows it must return (one per row touched) */
        char *rows;      /* owned with expect_n: each row's description, NUL-separated */
} Pending;

/* Changes of a run held back to go as one multi-row statement (see sink_apply). */
typedef struct {
        ChangeOp op;
        uint8_t *mask; /* owned, ncols: PG_SQL_SET columns of an UPDATE run */
        int nrows, cap;
        Value **rows; /* owned: per row ncols values, the new image (insert, update) or old key */
} Group;

/* A key -> (group, row) index of the rows held for one table. */
typedef struct {
        char *key; /* owned */
        int g, row;
} KeyEntry;

/* What the sink knows of one target table in this session. */
typedef struct {
        char *qname; /* owned: "schema"."name", the identity */
        char schema[256], name[256];
        Table *table;    /* one reference: the shape of the held rows */
        bool commutable; /* changes to distinct keys may be reordered (see table_info) */
        bool cols_ok;    /* the target has every column of table (see ensure_columns) */
        bool rel_known;  /* rel_id is the source relation recorded for it (see check_relation) */
        uint32_t rel_id;
        bool rel_prev_known; /* rel_prev: the one before, a dropped table's */
        uint32_t rel_prev;
        Group groups[GROUPS_MAX];
        int ngroups, nheld;
        KeyEntry *keys; /* owned, open addressing, kcap a power of two or 0 */
        size_t kcap, nkeys;
} TState;

struct Sink {
        const ConnectorConf *conf;        /* borrowed, outlives the sink */
        const PipelineConf *pipe;         /* borrowed */
        PGconn *conn;                     /* owned */
        char ctx[256];                    /* log context */
        char origin[600];                 /* "cdcsync_<pipeline>" */
        bool origin_ok;                   /* the session is marked with the origin */
        bool rels_ok;                     /* cdcsync.relations is there: re-created tables are detected */
        bool in_txn;                      /* BEGIN sent, neither COMMIT nor ROLLBACK done */
        bool failed;                      /* an error was seen in this transaction: only rollback helps */
        CdcError first_err;               /* that error, returned again by apply/commit */
        Pending pending[PENDING_MAX + 8]; /* ring */
        int phead, npending;
        int nexpect;        /* pending entries with expect_one */
        PGresult *captured; /* owned: result of the last capture entry */
        Map stmts;          /* SQL text -> prepared statement name */
        Map tables;         /* quoted "schema"."name" of sink tables known to exist */
        unsigned next_stmt;
        const char **params; /* reused parameter array */
        int nparams_cap;
        uint8_t *mask; /* reused column mask */
        int mask_cap;
        TState **ts; /* owned: tables seen this session (cleared with `tables`) */
        int nts, ts_cap;
        uint64_t txn_xid; /* the source transaction of the last change applied... */
        Position txn_pos; /* ...its commit position (as its changes carry it) */
        uint32_t txn_row; /* ...and that change's place in it, from 1: names a keyless row */
        Deadline *guard;  /* owned: bounds every wait for the server (timeout_s without an answer) */
        bool guarded;     /* inside a guarded call: each result read pushes the deadline back */
};

static void ts_drop_all(Sink *k);

/* ---- errors ---- */

/* Classifies a server error by SQLSTATE: what the pipeline can do about it. */
static int result_error(Sink *k, const PGresult *res, const char *what, CdcError *err) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        char msg[600];
        const char *kind = "data";
        bool retriable = false;
        int code = -EIO;

        if (!state)
                state = "";
        if (primary)
                snprintf(msg, sizeof(msg), "%s%s%s", primary, detail ? " — " : "", detail ? detail : "");
        else
                pg_conn_error_text(k->conf, k->conn, res, msg, sizeof(msg));
        if (PQstatus(k->conn) == CONNECTION_BAD || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
                kind = "connection", retriable = true, code = -ECONNRESET;
        } else if (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0 || strcmp(state, "3F000") == 0 ||
                   strcmp(state, "42704") == 0) {
                /* A table, column, schema or type missing: the operator fixes the schema, the
                 * pipeline waits. */
                kind = "schema", retriable = true, code = -ENOENT;
        } else if (strcmp(state, "42501") == 0) {
                kind = "privilege", code = -EACCES;
        } else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strncmp(state, "53", 2) == 0 ||
                   strcmp(state, "55P03") == 0) {
                kind = "data", retriable = true, code = -EAGAIN; /* deadlock, lock timeout, disk full */
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

static void guard_on(Sink *k) {
        k->guarded = true;
        deadline_arm(k->guard, conf_timeout_ms(k->conf));
}

static void guard_progress(Sink *k) {
        if (k->guarded)
                deadline_arm(k->guard, conf_timeout_ms(k->conf));
}

/* Ends a guarded call; a failure after the deadline fired is reported as the timeout it is. */
static int guard_off(Sink *k, int r, CdcError *err) {
        k->guarded = false;
        if (deadline_disarm(k->guard) && r < 0 && err)
                r = cdc_error(err, -ETIMEDOUT, true, "connection",
                              "sink %s: the server did not answer within %d s (timeout_s): the network path or the "
                              "server is not responding",
                              k->conf->name, conf_timeout_ms(k->conf) / 1000);
        return r;
}

static void conn_close(Sink *k) {
        deadline_set_fd(k->guard, -1);
        PQfinish(k->conn);
        k->conn = NULL;
}

static int conn_error(Sink *k, const char *what, CdcError *err) {
        char msg[600];
        pg_conn_error_text(k->conf, k->conn, NULL, msg, sizeof(msg));
        return cdc_error(err, -ECONNRESET, true, "connection", "sink %s: %s: %s", k->conf->name, what, msg);
}

/* Remembers the first error of the transaction; later calls return it until rollback(). */
static int fail(Sink *k, int r, CdcError *err) {
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
static int exec_params(Sink *k, const char *sql, int n, const char *const *vals, const char *what, PGresult **ret,
                       CdcError *err) {
        PGresult *res = PQexecParams(k->conn, sql, n, NULL, vals, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        int r;

        if (!res)
                return conn_error(k, what, err);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                r = result_error(k, res, what, err);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

static bool sqlstate_is(const CdcError *err, const char *state) {
        char pat[32];
        snprintf(pat, sizeof(pat), "(sqlstate %s)", state);
        return strstr(err->message, pat) != NULL;
}

/* ---- session set-up ---- */

/* Bidirectional sync: the table of version tags (engine/rowstate.c), written in the batch's
 * transaction just before each row, read back by the reverse pipeline from our log. */
static int ensure_versions_table(Sink *k, CdcError *err) {
        if (!k->pipe || !k->pipe->bidirectional)
                return 0;
        int r = exec_params(k, "CREATE TABLE IF NOT EXISTS cdcsync.versions (k bytea PRIMARY KEY, v bytea NOT NULL)", 0,
                            NULL, "creating table cdcsync.versions", NULL, err);
        if (r < 0 && sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, "privilege",
                                 "sink %s: cannot create table cdcsync.versions (bidirectional sync): permission "
                                 "denied — run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !sqlstate_is(err, "42P07") && !sqlstate_is(err, "23505") && !sqlstate_is(err, "42710"))
                return r;
        return 0;
}

/* The copy records (copies.h): which source tables were copied, as of which position. */
static int ensure_copies_table(Sink *k, CdcError *err) {
        PGresult *res = NULL;
        int r = exec_params(k, "SELECT to_regclass('cdcsync.tables') IS NOT NULL", 0, NULL, "looking up cdcsync.tables",
                            &res, err);
        if (r < 0)
                return r;
        bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (have)
                return 0;
        r = exec_params(k,
                        "CREATE TABLE IF NOT EXISTS cdcsync.tables (pipeline text, source_table text, state text NOT "
                        "NULL, pos_hi numeric(20,0), pos_lo numeric(20,0), pos_text text, copied_rows bigint, "
                        "copied_at timestamptz DEFAULT now(), PRIMARY KEY (pipeline, source_table))",
                        0, NULL, "creating table cdcsync.tables", NULL, err);
        if (r < 0 && sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, "privilege",
                                 "sink %s: cannot create table cdcsync.tables: permission denied "
                                 "— run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !sqlstate_is(err, "42P07") && !sqlstate_is(err, "23505") && !sqlstate_is(err, "42710"))
                return r;
        return 0;
}

static int ensure_checkpoint_table(Sink *k, CdcError *err) {
        PGresult *res = NULL;
        bool have_schema, have_table;
        int r;

        r = exec_params(k,
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
                r = exec_params(k, "CREATE SCHEMA IF NOT EXISTS cdcsync", 0, NULL, "creating schema cdcsync", NULL,
                                err);
                if (r < 0 && sqlstate_is(err, "42501"))
                        return cdc_error(err, -EACCES, false, "privilege",
                                         "sink %s: cannot create schema cdcsync: permission denied — "
                                         "run GRANT CREATE ON DATABASE <db> TO <user>, or create "
                                         "schema cdcsync owned by the sink's user",
                                         k->conf->name);
                if (r < 0 && !sqlstate_is(err, "42P06") && !sqlstate_is(err, "23505"))
                        return r;
        }
        r = exec_params(k,
                        "CREATE TABLE IF NOT EXISTS cdcsync.checkpoints ("
                        "pipeline text PRIMARY KEY, pos_hi numeric, pos_lo numeric, pos_text text, "
                        "source_commit_ts timestamptz, updated_at timestamptz)",
                        0, NULL, "creating table cdcsync.checkpoints", NULL, err);
        if (r < 0 && sqlstate_is(err, "42501"))
                return cdc_error(err, -EACCES, false, "privilege",
                                 "sink %s: cannot create table cdcsync.checkpoints: permission denied "
                                 "— run GRANT USAGE, CREATE ON SCHEMA cdcsync TO <user>",
                                 k->conf->name);
        if (r < 0 && !sqlstate_is(err, "42P07") && !sqlstate_is(err, "23505") && !sqlstate_is(err, "42710"))
                return r;
        r = ensure_versions_table(k, err);
        return r < 0 ? r : ensure_copies_table(k, err);
}

static bool source_is_postgres(const Sink *k) {
        return k->pipe->source && k->pipe->source->type && strcmp(k->pipe->source->type, "postgres") == 0;
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
        if (!source_is_postgres(k))
                return;
        if (exec_params(k, "SELECT to_regclass('cdcsync.relations') IS NOT NULL", 0, NULL,
                        "looking up cdcsync.relations", &res, &e) < 0) {
                log_warn(k->ctx, "%s", e.message);
                return;
        }
        k->rels_ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (k->rels_ok)
                return;
        int r = exec_params(k,
                            "CREATE TABLE IF NOT EXISTS cdcsync.relations (pipeline text, src_schema text, src_name "
                            "text, rel_id bigint NOT NULL, prev_rel_id bigint, ready boolean NOT NULL, updated_at "
                            "timestamptz, PRIMARY KEY (pipeline, src_schema, src_name))",
                            0, NULL, "creating table cdcsync.relations", NULL, &e);
        k->rels_ok = r == 0 || sqlstate_is(&e, "42P07") || sqlstate_is(&e, "23505") || sqlstate_is(&e, "42710");
        if (!k->rels_ok)
                log_warn(k->ctx,
                         "%s — a source table dropped and created again will not be detected (its new rows "
                         "would be merged into the old table's): grant CREATE on schema cdcsync",
                         e.message);
}

#define ORIGIN_GRANT                                                                                                   \
        "run GRANT EXECUTE ON FUNCTION pg_replication_origin_oid(text), "                                              \
        "pg_replication_origin_create(text), pg_replication_origin_session_setup(text), "                              \
        "pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO <user> (or use a superuser)"

/* The replication origins "cdcsync_*" of the sink's server that no pipeline of this conf uses:
 * left by pipelines removed or renamed (origins are never dropped by cdcsync: a pipeline
 * commented out by mistake, or run by another cdcsync instance against the same server, must not
 * lose its checkpoint's origin). Each one that has recorded progress holds one of the server's
 * max_replication_slots origin slots. Sets *ret_names ("cdcsync_a, cdcsync_b") and *ret_sql (the
 * statements dropping them and their pipelines' checkpoints), NULL when there is none; -ENOMEM or
 * -EIO. */
static int stale_origins(PGconn *c, const PipelineConf *pipe, char **ret_names, char **ret_sql) {
        PGresult *res = PQexec(c, "SELECT roname FROM pg_catalog.pg_replication_origin "
                                  "WHERE pg_catalog.left(roname, 8) = 'cdcsync_' ORDER BY 1");
        char *names = NULL, *sql = NULL;
        size_t nl = 0, sl = 0;
        FILE *fn = NULL, *fs = NULL;
        int n = 0;

        *ret_names = *ret_sql = NULL;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                PQclear(res);
                return -EIO;
        }
        fn = open_memstream(&names, &nl);
        fs = open_memstream(&sql, &sl);
        for (int i = 0; fn && fs && i < PQntuples(res); i++) {
                const char *o = PQgetvalue(res, i, 0);
                bool used = false;
                for (int j = 0; pipe->conf && j < pipe->conf->npipelines && !used; j++)
                        used = strcmp(o + 8, pipe->conf->pipelines[j].name) == 0;
                if (!pipe->conf)
                        used = strcmp(o + 8, pipe->name) == 0;
                if (used)
                        continue;
                char *lit = PQescapeLiteral(c, o, strlen(o)), *plit = PQescapeLiteral(c, o + 8, strlen(o + 8));
                fprintf(fn, "%s%s", n ? ", " : "", o);
                fprintf(fs,
                        "%sSELECT pg_replication_origin_drop(%s); DELETE FROM cdcsync.checkpoints WHERE pipeline = %s;",
                        n ? " " : "", lit ? lit : "''", plit ? plit : "''");
                PQfreemem(lit);
                PQfreemem(plit);
                n++;
        }
        PQclear(res);
        if (fn)
                fclose(fn);
        if (fs)
                fclose(fs);
        if (!fn || !fs || !names || !sql) {
                free(names);
                free(sql);
                return -ENOMEM;
        }
        if (n == 0) {
                free(names);
                free(sql);
                return 0;
        }
        *ret_names = names;
        *ret_sql = sql;
        return 0;
}

/* Marks this session's writes with the origin "cdcsync_<pipeline>", creating it if absent. */
static int setup_origin(Sink *k, CdcError *err) {
        const char *vals[1] = {k->origin};
        PGresult *res = NULL;
        bool exists;
        int r;

        k->origin_ok = false;
        r = exec_params(k, "SELECT pg_replication_origin_oid($1) IS NOT NULL", 1, vals,
                        "looking up the replication origin", &res, err);
        if (r < 0)
                goto out;
        exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!exists) {
                r = exec_params(k, "SELECT pg_replication_origin_create($1)", 1, vals,
                                "creating the replication origin", NULL, err);
                if (r < 0 && !sqlstate_is(err, "23505"))
                        goto out;
        }
        r = exec_params(k, "SELECT pg_replication_origin_session_setup($1)", 1, vals,
                        "setting up the replication origin", NULL, err);
        if (r < 0 && sqlstate_is(err, "55006")) {
                /* Another session holds the origin: an old connection of ours not yet gone, or a
                 * second cdcsync running the same pipeline. Waiting may help. */
                char m[sizeof(err->message)];
                snprintf(m, sizeof(m), "%s", err->message);
                return cdc_error(err, -EBUSY, true, "connection",
                                 "%s — is another cdcsync running pipeline %s against this sink?", m, k->pipe->name);
        }
        if (r < 0 && sqlstate_is(err, "53400")) {
                /* Every origin slot is held: by origins of removed pipelines, most likely. */
                char m[sizeof(err->message)], *names = NULL, *sql = NULL;
                snprintf(m, sizeof(m), "%s", err->message);
                stale_origins(k->conn, k->pipe, &names, &sql);
                if (names)
                        cdc_error(err, -ENOSPC, true, "slot",
                                  "%s — replication origins of pipelines that are not in this conf hold origin slots: "
                                  "%s; if those pipelines are gone for good (and no other cdcsync runs them against "
                                  "this server), drop them with their checkpoints (the DELETE in the database each "
                                  "wrote to): %s — or raise max_replication_slots; the pipeline retries",
                                  m, names, sql);
                else
                        cdc_error(err, -ENOSPC, true, "slot",
                                  "%s — every origin slot is in use (max_replication_slots): raise it, or drop origins "
                                  "no longer used (SELECT * FROM pg_replication_origin_status); the pipeline retries",
                                  m);
                free(names);
                free(sql);
                return err->code;
        }
out:
        if (r < 0 && sqlstate_is(err, "42501")) {
                if (k->pipe->conflict == CONFLICT_NONE) {
                        log_warn(k->ctx,
                                 "cannot use replication origin %s (permission denied): writes are "
                                 "not marked, fine for one-way sync only; to mark them " ORIGIN_GRANT,
                                 k->origin);
                        return 0;
                }
                return cdc_error(err, -EACCES, false, "privilege",
                                 "sink %s: cannot use replication origin %s, which marks cdcsync's "
                                 "writes so they are not synced back: permission denied — " ORIGIN_GRANT
                                 "; or set conflict = none in [pipeline.%s] for one-way sync",
                                 k->conf->name, k->origin, k->pipe->name);
        }
        if (r == 0)
                k->origin_ok = true;
        return r;
}

static void reset_session_state(Sink *k) {
        for (; k->npending > 0; k->npending--) {
                free(k->pending[k->phead].what);
                k->pending[k->phead].what = NULL;
                free(k->pending[k->phead].rows);
                k->pending[k->phead].rows = NULL;
                k->phead = (k->phead + 1) % (int)(sizeof(k->pending) / sizeof(k->pending[0]));
        }
        k->phead = 0;
        k->nexpect = 0;
        PQclear(k->captured);
        k->captured = NULL;
        map_clear(&k->stmts);
        map_clear(&k->tables);
        ts_drop_all(k);
        k->in_txn = false;
        k->failed = false;
}

static int session_open(Sink *k, CdcError *err) {
        int r;

        reset_session_state(k);
        conn_close(k);
        r = pg_conn_open(k->conf, PG_CONN_SQL, &k->conn, err);
        if (r < 0)
                return r;
        deadline_set_fd(k->guard, PQsocket(k->conn));
        /* Every statement of ours finds its row by key, as PostgreSQL's own apply worker does
         * through the replica identity index. A prepared statement's generic plan, made while a
         * table was a page or two, keeps scanning it whole after updates have grown it (a
         * hot-row table under a pgbench-like load: a quarter of the sink server's time was that
         * scan). Without an index the planner still scans (keyless tables). */
        r = exec_params(k, "SET enable_seqscan = off", 0, NULL, "setting enable_seqscan", NULL, err);
        if (r < 0)
                return r;
        r = ensure_checkpoint_table(k, err);
        if (r < 0)
                return r;
        ensure_relations_table(k);
        return setup_origin(k, err);
}

static Sink *sink_free(Sink *k);

static int sink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        Sink *k = calloc(1, sizeof(*k));
        int r;

        if (!k)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        k->conf = conn;
        k->pipe = pipe;
        snprintf(k->ctx, sizeof(k->ctx), "[pipeline=%s sink=%s]", pipe->name, conn->name);
        snprintf(k->origin, sizeof(k->origin), "cdcsync_%s", pipe->name);
        r = deadline_new(&k->guard);
        if (r < 0) {
                free(k);
                return cdc_error(err, r, false, "internal", "out of memory");
        }
        guard_on(k);
        r = guard_off(k, session_open(k, err), err);
        if (r < 0) {
                sink_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int sink_rollback(Sink *k);

static Sink *sink_free(Sink *k) {
        if (!k)
                return NULL;
        if (k->in_txn)
                sink_rollback(k);
        reset_session_state(k);
        conn_close(k);
        deadline_free(k->guard);
        free(k->params);
        free(k->mask);
        free(k->ts);
        free(k);
        return NULL;
}

static int sink_last_position(Sink *k, Position *ret, bool *found, CdcError *err) {
        const char *vals[1] = {k->pipe->name};
        PGresult *res = NULL;
        Position p = {0};
        int r;

        if (k->in_txn)
                return cdc_error(err, -EBUSY, false, "internal", "sink %s: last_position inside a batch",
                                 k->conf->name);
        r = exec_params(k, "SELECT pos_hi::text, pos_lo::text FROM cdcsync.checkpoints WHERE pipeline = $1", 1, vals,
                        "reading the checkpoint", &res, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                PQclear(res);
                *found = false;
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
                        return cdc_error(err, -EBADMSG, false, "internal",
                                         "sink %s: checkpoint of pipeline %s holds a bad position "
                                         "\"%.40s\" in cdcsync.checkpoints",
                                         k->conf->name, k->pipe->name, s);
                }
                if (i == 0)
                        p.hi = v;
                else
                        p.lo = v;
        }
        PQclear(res);
        *ret = p;
        *found = true;
        return 0;
}

/* The text commit() stored with the checkpoint (a MySQL source's GTID state lives there). */
static int sink_last_position_text(Sink *k, char *buf, size_t len, bool *found, CdcError *err) {
        const char *vals[1] = {k->pipe->name};
        PGresult *res = NULL;
        int r = exec_params(k, "SELECT pos_text FROM cdcsync.checkpoints WHERE pipeline = $1", 1, vals,
                            "reading the checkpoint", &res, err);
        if (r < 0)
                return r;
        *found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) && (size_t)PQgetlength(res, 0, 0) < len;
        if (*found)
                snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return 0;
}

static int sink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        const char *vals[1] = {k->pipe->name};
        PGresult *res = NULL;
        int r = exec_params(k,
                            "SELECT source_table, pos_hi::text, pos_lo::text FROM cdcsync.tables WHERE pipeline = $1 "
                            "AND state = 'copied'",
                            1, vals, "reading the copy records", &res, err);
        if (r < 0)
                return r;
        int n = PQntuples(res);
        CopiedTable *v = calloc((size_t)n + 1, sizeof(*v));
        if (!v) {
                PQclear(res);
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        }
        for (int i = 0; i < n; i++) {
                snprintf(v[i].table, sizeof(v[i].table), "%s", PQgetvalue(res, i, 0));
                v[i].pos.hi = strtoull(PQgetvalue(res, i, 1), NULL, 10);
                v[i].pos.lo = strtoull(PQgetvalue(res, i, 2), NULL, 10);
        }
        PQclear(res);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- the pipeline ---- */

#define RING ((int)(sizeof(((Sink *)0)->pending) / sizeof(((Sink *)0)->pending[0])))

static int push_pending(Sink *k, PendingKind kind, bool expect_one, bool capture, char *what) {
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

/* A multi-row UPDATE / DELETE touched fewer rows than it held: names the first row it missed
 * (its result holds the numbers of the rows it touched). */
static int missing_row(Sink *k, const PGresult *res, const Pending *p, CdcError *err) {
        bool *seen = calloc((size_t)p->expect_n + 1, sizeof(*seen));
        const char *d = p->rows;
        int ntup = PQntuples(res), r;

        if (!seen)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        for (int i = 0; i < ntup; i++) {
                char *end = NULL;
                long n;
                errno = 0;
                n = strtol(PQgetvalue(res, i, 0), &end, 10);
                if (!errno && end && !*end && n >= 1 && n <= p->expect_n)
                        seen[n] = true;
        }
        for (int i = 1; i <= p->expect_n; i++) {
                if (!seen[i])
                        break;
                d += strlen(d) + 1;
        }
        r = cdc_error(err, -ENOENT, false, "data",
                      "sink %s: %s affected no rows instead of 1 (%d of %d rows of one statement "
                      "found): the sink's data diverged from the source's",
                      k->conf->name, d, ntup, p->expect_n);
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
        guard_progress(k);
        if (!res) {
                r = conn_error(k, p.what ? p.what : "reading a result", err);
                goto out;
        }
        st = PQresultStatus(res);
        if (p.kind == PENDING_SYNC) {
                if (st != PGRES_PIPELINE_SYNC)
                        r = cdc_error(err, -EPROTO, true, "connection", "sink %s: expected a pipeline sync, got %s",
                                      k->conf->name, PQresStatus(st));
                PQclear(res);
                goto out;
        }
        if (st == PGRES_PIPELINE_ABORTED) {
                /* Skipped after an earlier failure, which was already reported. */
                r = k->failed
                            ? 0
                            : cdc_error(err, -EIO, false, "internal", "sink %s: %s was aborted", k->conf->name, p.what);
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                r = result_error(k, res, p.what, err);
        } else if (p.expect_one) {
                const char *n = PQcmdTuples(res);
                if (strcmp(n, "1") != 0)
                        r = cdc_error(err, -ENOENT, false, "data",
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
                        r = cdc_error(err, -EPROTO, false, "internal", "sink %s: more than one result for %s",
                                      k->conf->name, p.what);
        } else if (PQstatus(k->conn) == CONNECTION_BAD && r == 0) {
                r = conn_error(k, "reading results", err);
        }
out:
        free(p.what);
        free(p.rows);
        if (r < 0)
                return fail(k, r, err);
        return 0;
}

/* Makes the server send what it has and reads results until at most `keep` are pending. */
static int drain(Sink *k, int keep, CdcError *err) {
        int r, first = 0;

        if (k->npending <= keep)
                return 0;
        if (k->pending[(k->phead + k->npending - 1) % RING].kind != PENDING_SYNC && PQsendFlushRequest(k->conn) != 1)
                return fail(k, conn_error(k, "sending a flush request", err), err);
        if (PQflush(k->conn) != 0)
                return fail(k, conn_error(k, "sending to the server", err), err);
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

static int send_sync(Sink *k, CdcError *err) {
        if (PQpipelineSync(k->conn) != 1)
                return fail(k, conn_error(k, "sending a pipeline sync", err), err);
        return push_pending(k, PENDING_SYNC, false, false, NULL);
}

static int send_query(Sink *k, const char *sql, int n, const char *const *vals, const char *what, bool capture,
                      CdcError *err) {
        char *w = strdup(what);
        if (!w)
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        if (PQsendQueryParams(k->conn, sql, n, NULL, vals, NULL, NULL, 0) != 1) {
                free(w);
                return fail(k, conn_error(k, what, err), err);
        }
        return push_pending(k, PENDING_QUERY, false, capture, w);
}

static int sink_begin(Sink *k, CdcError *err) {
        int r;

        if (k->in_txn)
                return cdc_error(err, -EBUSY, false, "internal", "sink %s: begin inside a batch", k->conf->name);
        k->txn_row = 0; /* a batch starts with a source transaction */
        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
                r = session_open(k, err);
                if (r < 0)
                        return r;
        }
        if (k->stmts.n >= STMT_CACHE_MAX) {
                r = exec_params(k, "DEALLOCATE ALL", 0, NULL, "dropping prepared statements", NULL, err);
                if (r < 0)
                        return r;
                map_clear(&k->stmts);
        }
        if (PQenterPipelineMode(k->conn) != 1)
                return conn_error(k, "entering pipeline mode", err);
        k->in_txn = true;
        k->failed = false;
        return send_query(k, "BEGIN", 0, NULL, "begin", false, err);
}

/* "shop.orders key (id)=(42)": the change's table and key for error messages; values are cut to
 * KEY_VALUE_SHOWN bytes and control characters shown as '?'. A table without key (row > 0):
 * the whole row would be its key, about a kilobyte in a message; its place in the source
 * transaction and its first columns find it: "shop.log (row 3 of its source transaction, no
 * key: a=1, b=one, c=abc…, and 9 more columns)". */
static char *describe(const char *op, const char *schema, const char *name, const Table *t, const Value *kv,
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

/* Sets search_path to pg_catalog, as the source's sessions have it, until path_restore() (or the
 * end of the batch's transaction), so that the server prints names as the source printed them
 * (see pg_typedef.h) and the source's DDL, whose names are qualified but pg_catalog's, means the
 * same here. *ret_saved: to restore. */
static int path_clear(Sink *k, char **ret_saved, CdcError *err) {
        int r = send_query(k,
                           "SELECT pg_catalog.current_setting('search_path'), "
                           "pg_catalog.set_config('search_path', 'pg_catalog', true)",
                           0, NULL, "setting search_path", true, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                return r;
        *ret_saved = k->captured ? strdup(PQgetvalue(k->captured, 0, 0)) : NULL;
        PQclear(k->captured);
        k->captured = NULL;
        if (!*ret_saved)
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        return 0;
}

static int path_restore(Sink *k, const char *saved, CdcError *err) {
        const char *vals[1] = {saved};
        int r = send_query(k, "SELECT pg_catalog.set_config('search_path', $1, true)", 1, vals, "restoring search_path",
                           false, err);
        return r == 0 ? drain(k, 0, err) : r;
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
        cdc_error(err, err->code, retriable, "schema", "%s: %s", what, server);
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
                int r = send_query(k, pg_typedef_ddl_sql, 1, vals, "looking up a type the table needs", true, err);
                if (r == 0)
                        r = drain(k, 0, err);
                if (r < 0)
                        return r;
                res = k->captured;
                k->captured = NULL;
                if (res && PQntuples(res) == 1) {
                        const char *here = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
                        if (td->ddl && (!here || strcmp(here, td->ddl) != 0))
                                r = fail(k,
                                         cdc_error(err, -EEXIST, true, "schema",
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
                        return fail(k,
                                    cdc_error(err, -ENOENT, true, "schema",
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
                        return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
                r = send_query(k, sql, 0, NULL, "creating a type's schema", false, err);
                free(sql);
                if (r == 0)
                        r = send_query(k, td->ddl, 0, NULL, "creating a type", false, err);
                if (r == 0)
                        r = drain(k, 0, err);
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
        bool native = source_is_postgres(k);
        bool clear = native && (t->ntypes > 0 || t->ngen > 0);
        char *sql = NULL, *qs = NULL, *create_schema = NULL, *saved = NULL;
        int r = pg_sql_create_table(schema, name, t, native, &sql);

        if (r == -EINVAL)
                return fail(k,
                            cdc_error(err, -EINVAL, false, "schema",
                                      "sink %s: cannot create table %s.%s: a column type of the source is not a "
                                      "plain type name — create the table by hand",
                                      k->conf->name, schema, name),
                            err);
        if (r == 0)
                r = pg_sql_quote_ident(schema, &qs);
        if (r == 0 && asprintf(&create_schema, "CREATE SCHEMA IF NOT EXISTS %s", qs) < 0)
                r = -ENOMEM, create_schema = NULL;
        if (r < 0) {
                r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
                goto out;
        }
        if (clear)
                r = path_clear(k, &saved, err);
        if (r == 0 && native)
                r = ensure_types(k, t, err);
        if (r == 0) {
                r = send_query(k, create_schema, 0, NULL, "creating the target schema", false, err);
                if (r == 0)
                        r = send_query(k, sql, 0, NULL, "creating the target table", false, err);
                if (r == 0)
                        r = drain(k, 0, err);
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
static int ensure_table(Sink *k, const char *schema, const char *name, const Table *t, CdcError *err) {
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
        if (map_find(&k->tables, key)) {
                r = 0;
                goto out;
        }
        r = send_query(k,
                       "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = "
                       "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN "
                       "('r', 'p', 'f', 'v'))",
                       2, vals, "looking up the target table", true, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                goto out;
        exists = k->captured && strcmp(PQgetvalue(k->captured, 0, 0), "t") == 0;
        if (!exists && !k->conf->create_tables) {
                r = fail(k,
                         cdc_error(err, -ENOENT, true, "schema",
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
        r = map_add(&k->tables, key, NULL);
        key = NULL;
        if (r < 0)
                goto oom;
        goto out;
oom:
        r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
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
static int ensure_columns(Sink *k, TState *ts, const Table *t, CdcError *err) {
        const char *vals[2] = {ts->schema, ts->name};
        bool *add = calloc((size_t)t->ncols + 1, sizeof(*add));
        char *sql = NULL, missing[512] = "";
        size_t ml = 0;
        int r, nadd = 0;

        if (!add)
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        r = send_query(k,
                       "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                       2, vals, "looking up the target table's columns", true, err);
        if (r == 0)
                r = drain(k, 0, err);
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
                r = fail(k,
                         cdc_error(err, -ENOENT, true, "schema",
                                   "sink %s: table %s.%s lacks column(s) %s of source table %s.%s — add them "
                                   "(ALTER TABLE ... ADD COLUMN) or set create_tables = yes in [connector.%s]",
                                   k->conf->name, ts->schema, ts->name, missing, t->schema, t->name, k->conf->name),
                         err);
                goto out;
        }
        bool native = source_is_postgres(k);
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
                r = fail(k,
                         cdc_error(err, -EINVAL, false, "schema",
                                   "sink %s: cannot add column(s) %s to %s.%s: a column type of the source is not "
                                   "a plain type name — add them by hand",
                                   k->conf->name, missing, ts->schema, ts->name),
                         err);
                goto out;
        }
        if (r < 0) {
                r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
                goto out;
        }
        r = send_query(k, sql, 0, NULL, "adding the source's new columns to the target table", false, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                goto out;
        log_info(k->ctx, "added column(s) %s to %s.%s (new in source table %s.%s), in the batch's transaction", missing,
                 ts->schema, ts->name, t->schema, t->name);
out:
        free(add);
        free(sql);
        return r;
}

/* Returns the prepared statement name for sql, preparing it (in the pipeline) when new. */
static int statement(Sink *k, const char *sql, int nparams, const char **ret, CdcError *err) {
        MapEntry *e = map_find(&k->stmts, sql);
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
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        }
        snprintf(name, 24, "cdcsync_%u", k->next_stmt++);
        if (PQsendPrepare(k->conn, name, sql, nparams, NULL) != 1) {
                free(key), free(name), free(what);
                return fail(k, conn_error(k, "preparing a statement", err), err);
        }
        push_pending(k, PENDING_QUERY, false, false, what);
        r = map_add(&k->stmts, key, name);
        if (r < 0)
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        *ret = map_find(&k->stmts, sql)->name;
        return 0;
}

static int grow(Sink *k, int ncols) {
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

/* ---- held runs: multi-row statements ----
 * A change to a table with a key is held back in a run of its table and op (UPDATE: and column
 * set) and sent with others as one multi-row statement, which the server executes far faster
 * than one statement per row. That reorders changes to distinct keys, so it is done only for
 * tables where such changes commute: on the sink, a plain table whose only unique index is the
 * primary key on exactly the source's key columns, without triggers (foreign keys are triggers),
 * rules, exclusion constraints, or defaults on columns the source does not send (a sequence would
 * number rows in another order; a generated column is computed from its own row, so it may). Changes to one key keep
 * their order: a change to a held key is merged into it (an UPDATE into the held INSERT or UPDATE, when that sets every
 * column it sets), or else sends the table's held runs first. Any other change (other tables, key changes, truncate,
 * rows without a plain key) sends every held run first. */

static void group_clear(Group *g, int ncols) {
        for (int r = 0; r < g->nrows; r++)
                values_free(g->rows[r], ncols);
        free(g->rows);
        free(g->mask);
        memset(g, 0, sizeof(*g));
}

static void ts_clear_held(TState *ts) {
        for (int i = 0; i < ts->ngroups; i++)
                group_clear(&ts->groups[i], ts->table->ncols);
        ts->ngroups = 0;
        ts->nheld = 0;
        for (size_t i = 0; i < ts->kcap; i++) {
                free(ts->keys[i].key);
                ts->keys[i].key = NULL;
        }
        ts->nkeys = 0;
}

static TState *ts_free(TState *ts) {
        if (!ts)
                return NULL;
        if (ts->table)
                ts_clear_held(ts);
        free(ts->keys);
        free(ts->qname);
        table_unref(ts->table);
        free(ts);
        return NULL;
}

static void ts_drop_all(Sink *k) {
        for (int i = 0; i < k->nts; i++)
                ts_free(k->ts[i]);
        free(k->ts);
        k->ts = NULL;
        k->nts = k->ts_cap = 0;
}

/* The key of kv as one string, "<len>:<text>" per key column; NULL when a key value is not text
 * (such a change goes alone, through the one-row path) or on ENOMEM. */
static char *key_text(const Table *t, const Value *kv) {
        size_t len = 1, off = 0;
        char *s;

        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                if (kv[i].kind != VALUE_TEXT)
                        return NULL;
                len += kv[i].len + 12;
        }
        s = malloc(len);
        if (!s)
                return NULL;
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                off += (size_t)snprintf(s + off, len - off, "%" PRIu32 ":", kv[i].len);
                memcpy(s + off, kv[i].data, kv[i].len);
                off += kv[i].len;
        }
        s[off] = '\0';
        return s;
}

static KeyEntry *key_find(const TState *ts, const char *key) {
        if (ts->kcap == 0)
                return NULL;
        for (size_t i = hash_str(key) & (ts->kcap - 1);; i = (i + 1) & (ts->kcap - 1)) {
                if (!ts->keys[i].key)
                        return NULL;
                if (strcmp(ts->keys[i].key, key) == 0)
                        return &ts->keys[i];
        }
}

/* Takes ownership of key (also on failure). */
static int key_add(TState *ts, char *key, int g, int row) {
        size_t j;
        if ((ts->nkeys + 1) * 2 > ts->kcap) {
                size_t cap = ts->kcap ? ts->kcap * 2 : 256;
                KeyEntry *e = calloc(cap, sizeof(*e));
                if (!e) {
                        free(key);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < ts->kcap; i++) {
                        if (!ts->keys[i].key)
                                continue;
                        for (j = hash_str(ts->keys[i].key) & (cap - 1); e[j].key; j = (j + 1) & (cap - 1))
                                ;
                        e[j] = ts->keys[i];
                }
                free(ts->keys);
                ts->keys = e;
                ts->kcap = cap;
        }
        for (j = hash_str(key) & (ts->kcap - 1); ts->keys[j].key; j = (j + 1) & (ts->kcap - 1))
                ;
        ts->keys[j] = (KeyEntry){.key = key, .g = g, .row = row};
        ts->nkeys++;
        return 0;
}

static Value *values_copy(const Value *v, int n) {
        Value *c = values_new(n);
        if (!c)
                return NULL;
        for (int i = 0; i < n; i++) {
                c[i].kind = v[i].kind;
                if (v[i].kind == VALUE_TEXT && value_set(&c[i], v[i].data, v[i].len) < 0) {
                        values_free(c, n);
                        return NULL;
                }
        }
        return c;
}

/* Looks up (or learns, one round-trip per table and session) what the sink knows of a table. */
static int table_state(Sink *k, const char *schema, const char *name, const char *qname, const Table *t, TState **ret,
                       CdcError *err) {
        const char *vals[2] = {schema, name};
        TState *ts;
        PGresult *res;
        int r, npk = 0;

        for (int i = 0; i < k->nts; i++)
                if (strcmp(k->ts[i]->qname, qname) == 0) {
                        *ret = k->ts[i];
                        return 0;
                }
        r = send_query(k,
                       "SELECT a.attname, ((a.atthasdef AND a.attgenerated = '') OR a.attidentity <> '')::int, "
                       "coalesce(a.attnum = ANY (i.indkey), false)::int, "
                       "(c.relkind = 'r' "
                       " AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = c.oid) "
                       " AND NOT EXISTS (SELECT 1 FROM pg_rewrite WHERE ev_class = c.oid) "
                       " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype = 'x') "
                       " AND NOT EXISTS (SELECT 1 FROM pg_index u WHERE u.indrelid = c.oid AND u.indisunique "
                       "                 AND NOT u.indisprimary))::int "
                       "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                       "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                       "WHERE n.nspname = $1 AND c.relname = $2",
                       2, vals, "looking up the target table's constraints", true, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                return r;
        ts = calloc(1, sizeof(*ts));
        if (!ts || !(ts->qname = strdup(qname)))
                goto oom;
        snprintf(ts->schema, sizeof(ts->schema), "%s", schema);
        snprintf(ts->name, sizeof(ts->name), "%s", name);
        ts->table = table_ref((Table *)t);
        res = k->captured;
        ts->commutable = res && PQntuples(res) > 0 && table_nkeys(t) > 0 && t->replident != 'f';
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
        if (npk != table_nkeys(t))
                ts->commutable = false;
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
        if (!ts->commutable)
                log_debug(k->ctx,
                          "table %s.%s: changes go one by one in source order (triggers, "
                          "foreign keys, other unique indexes, or another primary key on the sink)",
                          schema, name);
        *ret = ts;
        return 0;
oom:
        ts_free(ts);
        return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
}

/* Sends one held run as multi-row statements of at most STMT_ROWS_MAX rows (sizes powers of two,
 * so that a table has few prepared statements). */
static int send_group(Sink *k, TState *ts, Group *g, CdcError *err) {
        const Table *t = ts->table;
        const char *opname = g->op == CHANGE_INSERT ? "insert" : g->op == CHANGE_UPDATE ? "update" : "delete";
        uint8_t *keymask = calloc((size_t)t->ncols, 1);
        int per_row = 0, maxrows = STMT_ROWS_MAX, done = 0, r = 0;

        if (!keymask)
                goto oom;
        for (int i = 0; i < t->ncols; i++) {
                keymask[i] = t->cols[i].key ? PG_SQL_WHERE : 0;
                if (g->op == CHANGE_INSERT || t->cols[i].key || (g->mask && (g->mask[i] & PG_SQL_SET)))
                        per_row++;
        }
        while (maxrows > 1 && (long)maxrows * per_row > PG_SQL_MAX_PARAMS)
                maxrows /= 2;
        while (done < g->nrows) {
                int n = maxrows, np = 0;
                char *sql = NULL, *what = NULL, *rows = NULL;
                const char *stmt;

                while (n > g->nrows - done)
                        n /= 2;
                if (g->op == CHANGE_INSERT)
                        r = pg_sql_insert_rows(ts->schema, ts->name, t, n, &sql);
                else if (g->op == CHANGE_UPDATE)
                        r = pg_sql_update_rows(ts->schema, ts->name, t, g->mask, n, &sql);
                else
                        r = pg_sql_delete_rows(ts->schema, ts->name, t, n, &sql);
                if (r < 0 || grow(k, n * per_row) < 0) {
                        free(sql);
                        goto oom;
                }
                for (int row = done; row < done + n; row++) {
                        const Value *v = g->rows[row];
                        for (int i = 0; i < t->ncols; i++)
                                if (g->op == CHANGE_INSERT || t->cols[i].key || (g->mask && (g->mask[i] & PG_SQL_SET)))
                                        k->params[np++] = v[i].kind == VALUE_TEXT ? v[i].data : NULL;
                }
                if (g->op == CHANGE_INSERT) {
                        if (n == 1) {
                                what = describe(opname, ts->schema, ts->name, t, g->rows[done], keymask, 0);
                        } else {
                                char buf[600];
                                snprintf(buf, sizeof(buf), "insert of %d rows into %s.%s", n, ts->schema, ts->name);
                                what = strdup(buf);
                        }
                } else {
                        /* Each row's description, for naming a row the sink lacks. */
                        size_t len = 0, cap = 0;
                        for (int row = done; row < done + n; row++) {
                                char *d = describe(opname, ts->schema, ts->name, t, g->rows[row], keymask, 0);
                                size_t dl = d ? strlen(d) + 1 : 0;
                                if (d && len + dl > cap) {
                                        char *p;
                                        cap = (len + dl) * 2;
                                        p = realloc(rows, cap);
                                        if (!p) {
                                                free(d);
                                                d = NULL;
                                        } else {
                                                rows = p;
                                        }
                                }
                                if (!d) {
                                        free(rows);
                                        rows = NULL;
                                        break;
                                }
                                memcpy(rows + len, d, dl);
                                len += dl;
                                free(d);
                        }
                        what = rows ? strdup(rows) : NULL; /* the first row: shown on a server error */
                }
                if (!what || (g->op != CHANGE_INSERT && !rows)) {
                        free(sql), free(what), free(rows);
                        goto oom;
                }
                r = statement(k, sql, np, &stmt, err);
                free(sql);
                if (r == 0 && PQsendQueryPrepared(k->conn, stmt, np, k->params, NULL, NULL, 0) != 1)
                        r = fail(k, conn_error(k, what, err), err);
                if (r < 0) {
                        free(what), free(rows);
                        goto out;
                }
                push_pending(k, PENDING_QUERY, false, false, what);
                if (g->op != CHANGE_INSERT) {
                        Pending *p = &k->pending[(k->phead + k->npending - 1) % RING];
                        p->expect_n = n;
                        p->rows = rows;
                        k->nexpect++;
                }
                done += n;
                if (k->npending >= PENDING_MAX) {
                        r = drain(k, PENDING_MAX / 2, err);
                        if (r < 0)
                                goto out;
                }
        }
        r = 0;
        goto out;
oom:
        r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
out:
        free(keymask);
        return r;
}

/* Sends the held runs of one table, in the order they were opened (they hold distinct keys). */
static int flush_table(Sink *k, TState *ts, CdcError *err) {
        int r = 0;
        for (int i = 0; i < ts->ngroups && r == 0; i++)
                r = send_group(k, ts, &ts->groups[i], err);
        ts_clear_held(ts);
        return r;
}

static int flush_all(Sink *k, CdcError *err) {
        int r = 0;
        for (int i = 0; i < k->nts && r == 0; i++)
                if (k->ts[i]->nheld > 0)
                        r = flush_table(k, k->ts[i], err);
        return r;
}

/* Holds c in a run of its table. Returns 1 when held, 0 when c must go alone through the
 * one-row path (after every held run), negative on error. */
static int hold_run(Sink *k, TState *ts, const Change *c, const Value *img, uint8_t **setp, CdcError *err);

static int hold(Sink *k, TState *ts, const Change *c, CdcError *err) {
        const Value *img = c->op == CHANGE_DELETE ? c->before : c->after;
        uint8_t *set = NULL; /* the columns an UPDATE sets */
        int r = hold_run(k, ts, c, img, &set, err);
        free(set);
        return r;
}

static int hold_run(Sink *k, TState *ts, const Change *c, const Value *img, uint8_t **setp, CdcError *err) {
        const Table *t = ts->table;
        uint8_t *set;
        KeyEntry *e;
        Group *g = NULL;
        Value *copy;
        char *key;
        int gi, r;

        if (!img)
                return 0;
        set = *setp = calloc((size_t)t->ncols, 1);
        if (!set)
                goto oom;
        for (int i = 0; i < t->ncols; i++) {
                if (img[i].kind != VALUE_UNCHANGED) {
                        set[i] = PG_SQL_SET;
                } else if (c->op == CHANGE_INSERT) {
                        return 0;
                }
        }
        key = key_text(t, img);
        if (!key)
                return 0;
        if (c->op == CHANGE_UPDATE && c->before) {
                /* A key change goes alone: the old and the new key are two rows' keys. */
                char *old = key_text(t, c->before);
                bool same = old && strcmp(old, key) == 0;
                free(old);
                if (!same) {
                        free(key);
                        return 0;
                }
        }
        e = key_find(ts, key);
        if (e) {
                Group *h = &ts->groups[e->g];
                bool subset = true;
                for (int i = 0; i < t->ncols; i++)
                        if (set[i] && h->op == CHANGE_UPDATE && !(h->mask[i] & PG_SQL_SET))
                                subset = false;
                if (c->op == CHANGE_UPDATE && (h->op == CHANGE_INSERT || (h->op == CHANGE_UPDATE && subset))) {
                        /* Same row, nothing in between touched it: the later image wins. */
                        Value *row = h->rows[e->row];
                        free(key);
                        for (int i = 0; i < t->ncols; i++) {
                                if (img[i].kind == VALUE_UNCHANGED)
                                        continue;
                                free(row[i].data);
                                row[i] = (Value){.kind = img[i].kind};
                                if (img[i].kind == VALUE_TEXT && value_set(&row[i], img[i].data, img[i].len) < 0)
                                        goto oom;
                        }
                        return 1;
                }
                r = flush_table(k, ts, err);
                if (r < 0) {
                        free(key);
                        return r;
                }
        }
        for (gi = 0; gi < ts->ngroups; gi++) {
                g = &ts->groups[gi];
                if (g->op == c->op && (c->op != CHANGE_UPDATE || memcmp(g->mask, set, (size_t)t->ncols) == 0))
                        break;
        }
        if (gi == ts->ngroups) {
                if (ts->ngroups == GROUPS_MAX) {
                        r = flush_table(k, ts, err);
                        if (r < 0) {
                                free(key);
                                return r;
                        }
                        gi = 0;
                }
                g = &ts->groups[gi];
                memset(g, 0, sizeof(*g));
                g->op = c->op;
                if (c->op == CHANGE_UPDATE && !(g->mask = malloc((size_t)t->ncols))) {
                        free(key);
                        goto oom;
                }
                if (g->mask)
                        memcpy(g->mask, set, (size_t)t->ncols);
                ts->ngroups = gi + 1;
        }
        if (g->nrows == g->cap) {
                int cap = g->cap ? g->cap * 2 : 64;
                Value **p = realloc(g->rows, (size_t)cap * sizeof(*p));
                if (!p) {
                        free(key);
                        goto oom;
                }
                g->rows = p;
                g->cap = cap;
        }
        copy = values_copy(img, t->ncols);
        if (!copy) {
                free(key);
                goto oom;
        }
        g->rows[g->nrows] = copy;
        if (key_add(ts, key, gi, g->nrows) < 0) {
                values_free(copy, t->ncols);
                goto oom;
        }
        g->nrows++;
        ts->nheld++;
        if (ts->nheld >= HELD_MAX) {
                r = flush_table(k, ts, err);
                if (r < 0)
                        return r;
        }
        return 1;
oom:
        return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
}

/* The first copy of a table under snapshot = initial (TRUNCATE_CHECK_EMPTY): the copy goes only
 * into an empty table; rows there stop it (counted up to a bound, so a huge table costs little). */
#define CHECK_EMPTY_COUNT_MAX 1000000
static int check_empty(Sink *k, const char *schema, const char *name, CdcError *err) {
        char *qs = NULL, *qn = NULL, *sql = NULL;
        int r = pg_sql_quote_ident(schema, &qs);
        if (r == 0)
                r = pg_sql_quote_ident(name, &qn);
        if (r == 0 && asprintf(&sql, "SELECT count(*) FROM (SELECT FROM %s.%s LIMIT %d) t", qs, qn,
                               CHECK_EMPTY_COUNT_MAX + 1) < 0)
                sql = NULL;
        if (!sql) {
                r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
                goto out;
        }
        r = send_query(k, sql, 0, NULL, "counting the rows of the target table", true, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                goto out;
        unsigned long long n = k->captured ? strtoull(PQgetvalue(k->captured, 0, 0), NULL, 10) : 0;
        if (n > 0) {
                char table[600], msg[1024];
                snprintf(table, sizeof(table), "%s.%s", schema, name);
                conf_copy_refusal(k->pipe, table, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                r = fail(k, cdc_error(err, -EEXIST, false, "conf", "sink %s: %s", k->conf->name, msg), err);
        }
out:
        free(qs);
        free(qn);
        free(sql);
        return r;
}

/* Forgets what the session knew of a target table (it was dropped). */
static void ts_forget(Sink *k, TState *ts) {
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
static int check_relation(Sink *k, TState *ts, const char *schema, const char *name, const Table *t, const TxnInfo *txn,
                          bool *ret_recreated, bool *ret_skip, CdcError *err) {
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
        r = flush_table(k, ts, err); /* rows held in an older shape go first */
        if (r == 0)
                r = send_query(k,
                               "SELECT rel_id, prev_rel_id, ready FROM cdcsync.relations WHERE pipeline = $1 AND "
                               "src_schema = $2 AND src_name = $3",
                               3, vals, "looking up the source table's relation", true, err);
        if (r == 0)
                r = drain(k, 0, err);
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
                r = send_query(k, record, 6, vals, "recording the source table's relation", false, err);
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
                r = send_query(k, sql, 0, NULL, "dropping the target table", false, err);
                if (r == 0)
                        r = drain(k, 0, err);
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
                r = send_query(k, sql, 0, NULL, "looking for rows in the target table", true, err);
                if (r == 0)
                        r = drain(k, 0, err);
                if (r < 0)
                        goto out;
                bool rows = k->captured && strcmp(PQgetvalue(k->captured, 0, 0), "t") == 0;
                PQclear(k->captured);
                k->captured = NULL;
                if (rows) {
                        CdcError e;
                        cdc_error(err, -EEXIST, true, "schema",
                                  "sink %s: source table %s.%s was dropped and created again (relation %u, before %u): "
                                  "its rows would be merged into target table %s.%s, which holds the old table's rows "
                                  "— empty %s.%s (TRUNCATE) and give it the new table's columns, or set create_tables "
                                  "= yes in [connector.%s] to have it re-created; the pipeline retries",
                                  k->conf->name, t->schema, t->name, t->rel_id, before, schema, name, schema, name,
                                  k->conf->name);
                        if (cur != t->rel_id) {
                                /* recorded now, outside the batch (rolled back here: it may hold the row) */
                                vals[5] = "f";
                                sink_rollback(k);
                                if (exec_params(k, record, 6, vals, "recording the source table's relation", NULL, &e) <
                                    0)
                                        log_warn(k->ctx, "%s", e.message);
                        }
                        r = fail(k, err->code, err);
                        goto out;
                }
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): target table "
                         "%s.%s is empty and takes the new table's rows",
                         t->schema, t->name, t->rel_id, before, schema, name);
        }
        r = send_query(k, record, 6, vals, "recording the source table's relation", false, err);
        if (r < 0)
                goto out;
        ts->rel_prev_known = true, ts->rel_prev = before;
        if (!*ret_recreated)
                ts->rel_known = true, ts->rel_id = t->rel_id;
        r = 0;
        goto out;
oom:
        r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
out:
        free(sql);
        free(qs);
        free(qn);
        return r;
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
                return cdc_error(err, -EINVAL, false, "internal", "sink %s: apply outside a batch", k->conf->name);
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
        r = conf_map_table(k->pipe, t->schema, t->name, schema, sizeof(schema), name, sizeof(name));
        if (r < 0)
                return fail(k,
                            cdc_error(err, r, false, "conf", "sink %s: cannot map table %s.%s: name too long",
                                      k->conf->name, t->schema, t->name),
                            err);
        if (grow(k, t->ncols > 0 ? t->ncols : 1) < 0)
                return fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
        r = ensure_table(k, schema, name, t, err);
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
        r = table_state(k, schema, name, what, t, &ts, err);
        if (r == 0 && k->rels_ok && !(ts->rel_known && ts->rel_id == t->rel_id)) {
                bool recreated = false, skip = false;
                uint32_t prev = ts->rel_prev;
                r = check_relation(k, ts, schema, name, t, txn, &recreated, &skip, err);
                if (r == 0 && skip) { /* a change of a table dropped since */
                        free(what);
                        return 0;
                }
                if (r == 0 && recreated) { /* a new target table: learn it anew */
                        prev = ts->rel_prev;
                        ts_forget(k, ts);
                        r = table_state(k, schema, name, what, t, &ts, err);
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
                r = flush_table(k, ts, err);
                if (r < 0)
                        goto out;
                table_unref(ts->table);
                ts->table = table_ref((Table *)t);
                ts->cols_ok = false;
        }
        if (!ts->cols_ok) {
                r = ensure_columns(k, ts, t, err);
                if (r < 0)
                        goto out;
                ts->cols_ok = true;
        }
        /* Idempotent changes (at-least-once sources) take the one-row path: it upserts and
         * tolerates missing rows, which grouped statements do not. */
        if (!keyless && !upsert && ts->commutable &&
            (c->op == CHANGE_INSERT || c->op == CHANGE_UPDATE || c->op == CHANGE_DELETE)) {
                r = hold(k, ts, c, err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = flush_all(k, err);
        if (r < 0)
                goto out;
        memset(k->mask, 0, (size_t)t->ncols);

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
                        r = fail(k,
                                 cdc_error(err, -EINVAL, false, "schema",
                                           "sink %s: update of %s.%s, a table without primary key, "
                                           "came without the old row — set REPLICA IDENTITY FULL "
                                           "(or a primary key) on the source table",
                                           k->conf->name, t->schema, t->name),
                                 err);
                        return r;
                }
                for (int i = 0; i < t->ncols; i++)
                        if (c->after[i].kind != VALUE_UNCHANGED) {
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
                        r = fail(k,
                                 cdc_error(err, -EINVAL, false, "schema",
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
                        r = check_empty(k, schema, name, err);
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
        what = describe(opname, schema, name, t, kv, kv ? k->mask : NULL, keyless ? k->txn_row : 0);
        if (!what)
                goto oom;
        r = statement(k, sql, np, &stmt, err);
        if (r < 0)
                goto out;
        if (PQsendQueryPrepared(k->conn, stmt, np, k->params, NULL, NULL, 0) != 1) {
                r = fail(k, conn_error(k, what, err), err);
                goto out;
        }
        push_pending(k, PENDING_QUERY, expect_one, false, what);
        what = NULL;
        r = 0;
        if (k->npending >= PENDING_MAX)
                r = drain(k, PENDING_MAX / 2, err);
        goto out;
bad_change:
        r = fail(k,
                 cdc_error(err, -EINVAL, false, "internal",
                           "sink %s: malformed %s of %s.%s (missing row image or key value)", k->conf->name, opname,
                           t->schema, t->name),
                 err);
        goto out;
oom:
        r = fail(k, cdc_error(err, -ENOMEM, false, "internal", "out of memory"), err);
out:
        free(sql);
        free(what);
        return r;
}

static int sink_commit(Sink *k, Position pos, const char *pos_text, const TxnInfo *last, CdcError *err) {
        char hi[24], lo[24], ts[24], lsn[40];
        const char *vals[5];
        PGresult *res;
        int r;

        if (!k->in_txn)
                return cdc_error(err, -EINVAL, false, "internal", "sink %s: commit outside a batch", k->conf->name);
        if (k->failed) {
                *err = k->first_err;
                return k->first_err.code;
        }
        r = flush_all(k, err);
        if (r < 0)
                return r;
        snprintf(hi, sizeof(hi), "%" PRIu64, pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, pos.lo);
        snprintf(ts, sizeof(ts), "%" PRId64, last ? last->commit_ts : 0);
        if (k->origin_ok && last) {
                /* The origin's progress: a pg_lsn for PostgreSQL sources, the position's
                 * monotonic counter otherwise; with the source's commit time. */
                uint64_t c = position_counter(last->commit_pos);
                snprintf(lsn, sizeof(lsn), "%X/%X", (unsigned)(c >> 32), (unsigned)c);
                vals[0] = lsn;
                vals[1] = ts;
                r = send_query(k,
                               "SELECT pg_replication_origin_xact_setup($1::pg_lsn, "
                               "timestamptz 'epoch' + $2::bigint * interval '1 microsecond')",
                               2, vals, "recording the origin's progress", false, err);
                if (r < 0)
                        return r;
        }
        vals[0] = k->pipe->name;
        vals[1] = hi;
        vals[2] = lo;
        vals[3] = pos_text;
        vals[4] = last && last->commit_ts ? ts : NULL;
        r = send_query(k,
                       "INSERT INTO cdcsync.checkpoints AS c (pipeline, pos_hi, pos_lo, pos_text, "
                       "source_commit_ts, updated_at) VALUES ($1, $2, $3, $4, timestamptz 'epoch' + "
                       "$5::bigint * interval '1 microsecond', now()) ON CONFLICT (pipeline) DO UPDATE "
                       "SET pos_hi = EXCLUDED.pos_hi, pos_lo = EXCLUDED.pos_lo, pos_text = "
                       "EXCLUDED.pos_text, source_commit_ts = EXCLUDED.source_commit_ts, updated_at = "
                       "EXCLUDED.updated_at",
                       5, vals, "writing the checkpoint", false, err);
        if (r < 0)
                return r;
        /* An UPDATE or DELETE that matched no row is no server error: read those results before
         * sending COMMIT, or the divergence would be committed (one more round-trip). */
        if (k->nexpect > 0) {
                r = send_sync(k, err);
                if (r == 0)
                        r = drain(k, 0, err);
                if (r < 0)
                        return r;
        }
        r = send_query(k, "COMMIT", 0, NULL, "commit", true, err);
        if (r == 0)
                r = send_sync(k, err);
        if (r == 0)
                r = drain(k, 0, err);
        if (r < 0)
                return r;
        res = k->captured;
        if (!res || strcmp(PQcmdStatus(res), "COMMIT") != 0)
                return fail(k,
                            cdc_error(err, -EIO, true, "internal", "sink %s: commit ended as \"%s\"", k->conf->name,
                                      res ? PQcmdStatus(res) : "?"),
                            err);
        PQclear(k->captured);
        k->captured = NULL;
        if (PQexitPipelineMode(k->conn) != 1)
                log_warn(k->ctx, "cannot leave pipeline mode: %s", PQerrorMessage(k->conn));
        k->in_txn = false;
        return 0;
}

static int sink_rollback_unguarded(Sink *k);

/* Guarded itself: it also runs from free() and after another thread's failure, and must not
 * hang on a frozen sink. */
static int sink_rollback(Sink *k) {
        guard_on(k);
        return guard_off(k, sink_rollback_unguarded(k), NULL);
}

static int sink_rollback_unguarded(Sink *k) {
        CdcError e;
        /* After a failure, or with results unread, statements prepared in this pipeline may not
         * exist on the server although the cache has them. */
        bool failed = k->failed || k->npending > 0;
        int r = 0;

        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
                reset_session_state(k); /* begin() reconnects */
                return 0;
        }
        if (PQpipelineStatus(k->conn) != PQ_PIPELINE_OFF) {
                /* Everything sent is skipped or finished once the sync is processed. */
                k->failed = true;
                if (send_sync(k, &e) == 0)
                        drain(k, 0, &e);
                if (PQstatus(k->conn) != CONNECTION_OK || PQexitPipelineMode(k->conn) != 1) {
                        reset_session_state(k);
                        conn_close(k);
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
                map_clear(&k->stmts);
        }
        /* Tables created in the rolled-back transaction are gone again; held rows with them. */
        map_clear(&k->tables);
        ts_drop_all(k);
        PQclear(k->captured);
        k->captured = NULL;
        k->in_txn = false;
        k->failed = false;
        return r;
}

/* `check --connect`: a new pipeline whose first copy is snapshot = initial refuses target tables
 * that hold rows (the copy itself refuses them too: check_empty); one with a checkpoint copies
 * nothing. */
static int check_targets_empty(const ConnectorConf *conn, const PipelineConf *pipe, PGconn *c, CdcError *err) {
        const char *vals[1] = {pipe->name};
        int r = 0;
        if (conf_pipeline_copy_mode(pipe) != SNAPSHOT_INITIAL)
                return 0;
        if (pipe->all_tables) {
                printf("note: sink %s: pipeline %s copies into empty tables only (snapshot = initial); with tables = * "
                       "that is checked when the copy starts\n",
                       conn->name, pipe->name);
                return 0;
        }
        PGresult *res = PQexecParams(c,
                                     "SELECT CASE WHEN to_regclass('cdcsync.checkpoints') IS NULL THEN 0 ELSE "
                                     "(SELECT count(*) FROM cdcsync.checkpoints WHERE pipeline = $1) END",
                                     1, NULL, vals, NULL, NULL, 0);
        bool started = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") != 0;
        PQclear(res);
        for (int i = 0; !started && r == 0 && i < pipe->ntables; i++) {
                const char *t = pipe->tables[i], *dot = strchr(t, '.');
                char sch[256], tab[256], *qs = NULL, *qn = NULL, *sql = NULL;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || conf_map_table(pipe, sch, dot + 1, sch, sizeof(sch), tab, sizeof(tab)) < 0)
                        continue;
                if (pg_sql_quote_ident(sch, &qs) == 0 && pg_sql_quote_ident(tab, &qn) == 0 &&
                    asprintf(&sql, "SELECT count(*) FROM (SELECT FROM %s.%s LIMIT %d) t", qs, qn,
                             CHECK_EMPTY_COUNT_MAX + 1) < 0)
                        sql = NULL;
                char qual[600];
                snprintf(qual, sizeof(qual), "%s.%s", qs ? qs : "", qn ? qn : "");
                const char *p1[1] = {qual};
                res = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p1, NULL, NULL, 0);
                bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
                PQclear(res);
                res = sql && exists ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : NULL;
                if (sql && !exists) {
                        free(qs);
                        free(qn);
                        free(sql);
                        continue;
                }
                if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                        unsigned long long n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
                        if (n > 0) {
                                char name[600], msg[1024];
                                snprintf(name, sizeof(name), "%s.%s", sch, tab);
                                conf_copy_refusal(pipe, name, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                                r = cdc_error(err, -EEXIST, false, "conf", "%s", msg);
                        }
                } else if (sql) {
                        char msg[600];
                        pg_conn_error_text(conn, c, res, msg, sizeof(msg));
                        r = cdc_error(err, -EIO, true, "connection", "sink %s: counting the rows of %s.%s: %s",
                                      conn->name, sch, tab, msg);
                } else {
                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                }
                PQclear(res);
                free(qs);
                free(qn);
                free(sql);
        }
        return r;
}

/* The host and port a dsn names ("" when it names none: libpq's defaults). */
static void dsn_server(const char *dsn, char *buf, size_t len) {
        PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, NULL) : NULL;
        const char *host = "", *port = "";
        for (PQconninfoOption *o = opts; o && o->keyword; o++) {
                if (o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0))
                        host = o->val;
                if (o->val && strcmp(o->keyword, "port") == 0)
                        port = o->val;
        }
        snprintf(buf, len, "%s:%s", host, port);
        PQconninfoFree(opts);
}

static bool same_server(const ConnectorConf *a, const ConnectorConf *b) {
        char sa[300], sb[300];
        if (a == b)
                return true;
        dsn_server(a->dsn, sa, sizeof(sa));
        dsn_server(b->dsn, sb, sizeof(sb));
        return strcmp(sa, sb) == 0;
}

static int sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        PGconn *c = NULL;
        PGresult *res;
        int r;

        r = pg_conn_open(conn, PG_CONN_SQL, &c, err);
        if (r < 0)
                return r;
        res = PQexec(c, "SELECT current_user, current_database(), "
                        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                        "has_database_privilege(current_database(), 'CREATE'), "
                        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync'), "
                        "COALESCE((SELECT has_schema_privilege('cdcsync', 'USAGE,CREATE') WHERE EXISTS "
                        "(SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync')), false), "
                        "has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_create(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_oid(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_xact_setup(pg_lsn, timestamptz)', "
                        "'EXECUTE')");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                char msg[600];
                pg_conn_error_text(conn, c, res, msg, sizeof(msg));
                r = cdc_error(err, -EIO, true, "connection", "sink %s: checking privileges: %s", conn->name, msg);
                goto out;
        }
        {
                const char *user = PQgetvalue(res, 0, 0), *db = PQgetvalue(res, 0, 1);
                bool super = PQgetvalue(res, 0, 2)[0] == 't';
                bool dbcreate = PQgetvalue(res, 0, 3)[0] == 't';
                bool schema = PQgetvalue(res, 0, 4)[0] == 't';
                bool schemapriv = PQgetvalue(res, 0, 5)[0] == 't';
                bool origin = PQgetvalue(res, 0, 6)[0] == 't';

                if (!super && !(schema ? schemapriv : dbcreate)) {
                        r = cdc_error(err, -EACCES, false, "privilege",
                                      schema ? "sink %s: user %s cannot use schema cdcsync in database "
                                               "%s — run GRANT USAGE, CREATE ON SCHEMA cdcsync TO %s"
                                             : "sink %s: user %s cannot create schema cdcsync in "
                                               "database %s — run GRANT CREATE ON DATABASE ... TO %s",
                                      conn->name, user, db, user);
                        goto out;
                }
                if (!super && !origin) {
                        if (pipe->conflict != CONFLICT_NONE) {
                                r = cdc_error(err, -EACCES, false, "privilege",
                                              "sink %s: user %s cannot use replication origins, "
                                              "which mark cdcsync's writes — " ORIGIN_GRANT
                                              "; or set conflict = none in [pipeline.%s]",
                                              conn->name, user, pipe->name);
                                goto out;
                        }
                        printf("warning: sink %s: user %s cannot use replication origins: writes of "
                               "pipeline %s will not be marked (fine for one-way sync)\n",
                               conn->name, user, pipe->name);
                }
                if (!conn->create_tables)
                        printf("note: sink %s: create_tables = no: every target table of pipeline "
                               "%s must exist\n",
                               conn->name, pipe->name);
        }
        /* Origins are the server's: once per server, for the first pipeline of the conf writing
         * to it. */
        for (int i = 0; pipe->conf && i < pipe->conf->npipelines; i++) {
                const PipelineConf *o = &pipe->conf->pipelines[i];
                if (!o->sink || !o->sink->type || strcmp(o->sink->type, "postgres") != 0 || !same_server(o->sink, conn))
                        continue;
                char *names = NULL, *sql = NULL;
                if (o == pipe && stale_origins(c, pipe, &names, &sql) == 0 && names)
                        printf("note: sink %s: replication origins of pipelines that are not in this conf: %s — each "
                               "holds an origin slot (max_replication_slots), and its pipeline's checkpoint stays in "
                               "cdcsync.checkpoints; if those pipelines are gone for good (and no other cdcsync runs "
                               "them against this server), drop them with their checkpoints (the DELETE in the "
                               "database each wrote to): %s\n",
                               conn->name, names, sql);
                free(names);
                free(sql);
                break;
        }
        r = check_targets_empty(conn, pipe, c, err);
out:
        PQclear(res);
        PQfinish(c);
        return r;
}

/* The calls the engine makes, each bounded (see "bounded waits"). */
static int guarded_last_position(Sink *k, Position *ret, bool *found, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_last_position(k, ret, found, err), err);
}

static int guarded_last_position_text(Sink *k, char *buf, size_t len, bool *found, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_last_position_text(k, buf, len, found, err), err);
}

static int guarded_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_copied_tables(k, ret, ret_n, err), err);
}

static int guarded_begin(Sink *k, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_begin(k, err), err);
}

static int guarded_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_apply(k, txn, c, err), err);
}

static int guarded_commit(Sink *k, Position pos, const char *pos_text, const TxnInfo *last, CdcError *err) {
        guard_on(k);
        return guard_off(k, sink_commit(k, pos, pos_text, last, err), err);
}

const SinkOps pg_sink_ops = {
        .type = "postgres",
        .open = sink_open,
        .last_position = guarded_last_position,
        .begin = guarded_begin,
        .apply = guarded_apply,
        .commit = guarded_commit,
        .rollback = sink_rollback,
        .check = sink_check,
        .free = sink_free,
        .last_position_text = guarded_last_position_text,
        .copied_tables = guarded_copied_tables,
        .locate = pg_conn_locate,
};

int pg_sink_write_mark(const PipelineConf *writer, char *buf, size_t len) {
        return snprintf(buf, len, "cdcsync_%s", writer->name);
}
