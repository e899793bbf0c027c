/* The PostgreSQL source: publication and slot set-up, the initial snapshot, and streaming of
 * pgoutput (proto 2, streaming of in-progress transactions) into the pipeline's events. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cdcsync/guard.h"
#include "cdcsync/deadline.h"
#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_source.h"
#include "postgres/pgoutput.h"
#include "postgres/pgtypes.h"
#include "postgres/pg_typedef.h"

#define STATUS_INTERVAL_USEC (1 * 1000000LL) /* standby status at least this often */
#define HEARTBEAT_IDLE_USEC (10 * 1000000LL) /* idle this long: emit a WAL heartbeat */
#define SNAPSHOT_FETCH_ROWS 2000
#define MAX_STREAMED_XACTS 1024 /* concurrent in-progress streamed transactions we track */

typedef struct {
        uint32_t rel_id;
        Table *table; /* one reference */
} RelEntry;

typedef struct {
        uint32_t xid;
        FILE *f; /* spill file of its streamed changes (raw pgoutput messages) */
        char path[512];
} StreamXact;

struct Source {
        const ConnectorConf *conn;
        const PipelineConf *pipe;
        PGconn *sql;  /* catalogue queries, snapshot copy, heartbeats */
        PGconn *repl; /* walsender */
        char slot[64];
        char publication[64];
        RelEntry *rels;
        size_t nrels, caprels;
        StreamXact streams[MAX_STREAMED_XACTS];
        size_t nstreams;
        uint32_t stream_xid; /* xid of the current Stream Start block, 0 outside */
        /* The transaction being read; BEGIN is held back until the Origin message (if any). */
        bool in_txn, begin_sent;
        TxnInfo txn;
        uint64_t received_lsn; /* last WAL position read */
        uint64_t commit_end;   /* end of the last transaction's commit record, until acknowledged; 0: none */
        int64_t last_status, last_data;
        int64_t last_recv;      /* usec: last message from the walsender, or when we were ready for one */
        int64_t reply_asked_at; /* usec: silent stream, a keepalive was requested; 0: not */
        bool heartbeat_failed;
        bool slot_created; /* this run's snapshot created the slot: dropped again if the copy never commits */
        /* Tables copied as of a position the stream has not passed: their changes in transactions
         * committed at or before it are in the copy and dropped (copies.h). Owned. */
        CopiedTable *filters;
        int nfilters;
        /* A copy of tables added to `tables` (and the records of removed ones), made as of
         * copy_pos and handed on when the stream reaches it. */
        bool copy_pending;
        Position copy_pos;
        PGconn *copy;    /* holds the copy's snapshot in an open transaction */
        char **copy_new; /* owned "schema.table" entries */
        int ncopy_new;
        char **copy_gone;
        int ncopy_gone;
        Deadline *guard_sql, *guard_repl; /* owned: bound every wait for the server (timeout_s) */
        PipelineIO *io;
        const char *ctx;
        char open_ctx[200]; /* ctx before run() hands over the pipeline's own */
        char spill_dir[400];
};

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void pg_source_format_position(Position p, char *buf, size_t len) {
        snprintf(buf, len, "%X/%X", (uint32_t)(p.lo >> 32), (uint32_t)p.lo);
}

static int pg_source_parse_position(const char *text, Position *ret) {
        unsigned hi, lo;
        int n = 0;
        if (sscanf(text, "%X/%X%n", &hi, &lo, &n) != 2 || text[n] != '\0')
                return -EINVAL;
        ret->hi = 0;
        ret->lo = (uint64_t)hi << 32 | lo;
        return 0;
}

/* Slot and publication names default to cdcsync_<pipeline>, lower-cased, [a-z0-9_] only (guard.c
 * refuses pipelines whose names give the same one). */
static void default_name(const char *pipeline, char *buf, size_t len) {
        guard_default_pg_name(pipeline, buf, len);
}

static const char *errtext(Source *s, PGconn *c, const PGresult *res, char *buf, size_t len) {
        return pg_conn_error_text(s->conn, c, res, buf, len);
}

/* libpq waits for an answer without a bound: a frozen path or a paused server (no FIN, no RST)
 * would hold the source forever. Waits on either connection are bounded by timeout_s
 * (engine/deadline.c shuts the socket down); the stream itself by its silence (stream()). */
static Deadline *guard_of(Source *s, PGconn *c) {
        return c == s->repl ? s->guard_repl : c == s->sql ? s->guard_sql : NULL;
}

static int timeout_error(Source *s, CdcError *err) {
        return cdc_error(err, -ETIMEDOUT, true, "connection",
                         "connector %s: the source server did not answer within %d s (timeout_s): the network path "
                         "or the server is not responding",
                         s->conn->name, conf_timeout_ms(s->conn) / 1000);
}

/* Runs a query with text parameters; returns the result (caller clears) or NULL with err set. */
static PGresult *query(Source *s, PGconn *c, const char *sql, int n, const char *const *params, CdcError *err) {
        Deadline *g = guard_of(s, c);
        deadline_arm(g, conf_timeout_ms(s->conn));
        PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        bool fired = deadline_disarm(g);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                return res;
        char buf[512];
        bool lost = PQstatus(c) != CONNECTION_OK;
        if (fired)
                timeout_error(s, err);
        else
                cdc_error(err, -EIO, lost, lost ? "connection" : "source", "connector %s: %s", s->conn->name,
                          errtext(s, c, res, buf, sizeof(buf)));
        PQclear(res);
        return NULL;
}

/* ---- checks ---- */

static int check_server(Source *s, CdcError *err) {
        PGresult *res = query(s, s->sql,
                              "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper, "
                              "current_setting('server_version_num')::int, r.rolname, quote_ident(r.rolname) "
                              "FROM pg_roles r WHERE r.rolname = current_user",
                              0, NULL, err);
        if (!res)
                return err->code;
        int r = 0;
        if (PQntuples(res) != 1) {
                r = cdc_error(err, -EPERM, false, "source", "connector %s: cannot read the current role",
                              s->conn->name);
        } else if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
                r = cdc_error(err, -EINVAL, false, "source",
                              "connector %s: wal_level is '%s', logical decoding needs 'logical' — set wal_level = "
                              "logical in postgresql.conf and restart PostgreSQL",
                              s->conn->name, PQgetvalue(res, 0, 0));
        } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
                r = cdc_error(err, -EPERM, false, "privilege",
                              "connector %s: role \"%s\" lacks the REPLICATION attribute — ALTER ROLE %s "
                              "REPLICATION (or use a role that has it)",
                              s->conn->name, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
        }
        PQclear(res);
        return r;
}

/* 1: the slot exists (for pgoutput), 0: absent; negative with err for another plugin. */
static int slot_state(Source *s, bool *ret_invalid, CdcError *err) {
        const char *params[] = {s->slot};
        PGresult *res = query(s, s->sql,
                              "SELECT plugin, database = current_database(), coalesce(wal_status = 'lost', false) "
                              "FROM pg_replication_slots WHERE slot_name = $1",
                              1, params, err);
        if (!res)
                return err->code;
        int r = 0;
        if (PQntuples(res) == 1) {
                if (strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0)
                        r = cdc_error(err, -EEXIST, false, "slot",
                                      "connector %s: replication slot \"%s\" exists but uses plugin \"%s\", not "
                                      "pgoutput — drop it or set slot = another name",
                                      s->conn->name, s->slot, PQgetvalue(res, 0, 0));
                else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
                        r = cdc_error(err, -EEXIST, false, "slot",
                                      "connector %s: replication slot \"%s\" belongs to another database — set slot = "
                                      "another name",
                                      s->conn->name, s->slot);
                else {
                        *ret_invalid = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
                        r = 1;
                }
        }
        PQclear(res);
        return r;
}

/* Bidirectional sync: the reverse pipeline's sink writes version tags into cdcsync.versions just
 * before each row (engine/rowstate.c); this pipeline reads them back, so the table must exist
 * here and be published (the reverse sink creates it too; whichever comes first). */
static int ensure_versions(Source *s, bool pub_exists, CdcError *err) {
        static const char *const ddl[] = {
                "CREATE SCHEMA IF NOT EXISTS cdcsync",
                "CREATE TABLE IF NOT EXISTS cdcsync.versions (k bytea PRIMARY KEY, v bytea NOT NULL)",
        };
        PGresult *res = query(s, s->sql, "SELECT to_regclass('cdcsync.versions') IS NOT NULL", 0, NULL, err);
        if (!res)
                return err->code;
        bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]) && !have; i++) {
                res = query(s, s->sql, ddl[i], 0, NULL, err);
                if (!res) {
                        /* retried: the reverse pipeline's sink may be creating it this very moment
                         * (IF NOT EXISTS does not cover a concurrent creation), or the grant may come */
                        size_t n = strlen(err->message);
                        snprintf(err->message + n, sizeof(err->message) - n,
                                 " — bidirectional sync needs table cdcsync.versions in the source database: create "
                                 "it (k bytea PRIMARY KEY, v bytea NOT NULL) or grant CREATE to the source's user");
                        err->retriable = true;
                        return err->code;
                }
                PQclear(res);
        }
        if (!pub_exists || s->pipe->all_tables)
                return 0;
        const char *params[] = {s->publication};
        res = query(s, s->sql,
                    "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'cdcsync' "
                    "AND tablename = 'versions'",
                    1, params, err);
        if (!res)
                return err->code;
        bool member = PQntuples(res) == 1;
        PQclear(res);
        if (member)
                return 0;
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        char sql[256];
        snprintf(sql, sizeof(sql), "ALTER PUBLICATION %s ADD TABLE cdcsync.versions", pub ? pub : "\"\"");
        PQfreemem(pub);
        res = query(s, s->sql, sql, 0, NULL, err);
        if (!res)
                return err->code;
        PQclear(res);
        log_info(s->ctx, "added cdcsync.versions to publication \"%s\" (bidirectional sync)", s->publication);
        return 0;
}

/* Creates the publication from the pipeline's tables when it does not exist. */
static int ensure_publication(Source *s, CdcError *err) {
        const char *params[] = {s->publication};
        PGresult *res = query(s, s->sql, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, params, err);
        if (!res)
                return err->code;
        bool exists = PQntuples(res) == 1;
        PQclear(res);
        if (s->pipe->bidirectional) {
                int r = ensure_versions(s, exists, err);
                if (r < 0)
                        return r;
        }
        if (exists)
                return 0;

        /* Identifiers are quoted by the server (quote_ident), never pasted. */
        char *sql = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&sql, &len);
        if (!f)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        fprintf(f, "CREATE PUBLICATION %s ", pub ? pub : "\"\"");
        PQfreemem(pub);
        if (s->pipe->all_tables) {
                fputs("FOR ALL TABLES", f);
        } else {
                fputs("FOR TABLE ", f);
                for (int i = 0; i < s->pipe->ntables; i++) {
                        const char *t = s->pipe->tables[i];
                        const char *dot = strchr(t, '.');
                        char *sch = dot ? PQescapeIdentifier(s->sql, t, (size_t)(dot - t))
                                        : PQescapeIdentifier(s->sql, "public", 6);
                        const char *nm = dot ? dot + 1 : t;
                        char *tab = PQescapeIdentifier(s->sql, nm, strlen(nm));
                        fprintf(f, "%s%s.%s", i ? ", " : "", sch ? sch : "\"\"", tab ? tab : "\"\"");
                        PQfreemem(sch);
                        PQfreemem(tab);
                }
                if (s->pipe->bidirectional)
                        fputs(", cdcsync.versions", f);
        }
        fclose(f);
        res = query(s, s->sql, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                size_t n = strlen(err->message);
                snprintf(err->message + n, sizeof(err->message) - n,
                         " — while creating publication \"%s\" (the tables must exist; FOR ALL TABLES needs a "
                         "superuser)",
                         s->publication);
                err->retriable = false;
                return err->code;
        }
        PQclear(res);
        log_info(s->ctx, "created publication \"%s\"", s->publication);
        return 0;
}

/* ---- relations ---- */

static Table *rel_lookup(Source *s, uint32_t rel_id) {
        for (size_t i = 0; i < s->nrels; i++)
                if (s->rels[i].rel_id == rel_id)
                        return s->rels[i].table;
        return NULL;
}

static int rel_store(Source *s, Table *t) {
        for (size_t i = 0; i < s->nrels; i++)
                if (s->rels[i].rel_id == t->rel_id) {
                        table_unref(s->rels[i].table);
                        s->rels[i].table = t;
                        return 0;
                }
        if (s->nrels == s->caprels) {
                size_t cap = s->caprels ? s->caprels * 2 : 16;
                RelEntry *n = realloc(s->rels, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                s->rels = n;
                s->caprels = cap;
        }
        s->rels[s->nrels++] = (RelEntry){t->rel_id, t};
        return 0;
}

/* The user-defined types the table's columns need (Table.types), for a PostgreSQL sink that
 * creates the table. */
static int describe_types(Source *s, Table *t, const char *relid, CdcError *err) {
        const char *params[] = {relid};
        PGresult *res = query(s, s->sql, pg_typedef_needed_sql, 1, params, err);
        if (!res)
                return err->code;
        int n = PQntuples(res);
        t->types = calloc((size_t)n + 1, sizeof(*t->types));
        bool oom = !t->types;
        for (int r = 0; !oom && r < n; r++) {
                TypeDef *td = &t->types[t->ntypes++];
                td->schema = strdup(PQgetvalue(res, r, 0));
                td->name = strdup(PQgetvalue(res, r, 1));
                td->column = strdup(PQgetvalue(res, r, 2));
                td->ddl = PQgetisnull(res, r, 3) ? NULL : strdup(PQgetvalue(res, r, 3));
                td->why = PQgetisnull(res, r, 4) ? NULL : strdup(PQgetvalue(res, r, 4));
                oom = !td->schema || !td->name || !td->column || (!td->ddl && !td->why);
        }
        PQclear(res);
        return oom ? cdc_error(err, -ENOMEM, false, "internal", "out of memory") : 0;
}

/* Fills the declared type names, the primary key, the generated columns and the user-defined
 * types from the catalogue (the Relation message has only OIDs and the replica identity). Types
 * are looked up by (oid, typmod), which does not change over time; the key by column name,
 * falling back to the replica identity. A column of a domain gets its base type's name and class
 * (what another system maps), an array of a user-defined type the array class. */
static int describe_table(Source *s, Table *t, CdcError *err) {
        char relid[16];
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        const char *params[] = {relid};
        PGresult *res =
                query(s, s->sql,
                      "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
                      "coalesce(a.attnum = ANY(i.indkey), false), a.attgenerated <> '', "
                      "pg_catalog.pg_get_expr(d.adbin, d.adrelid), "
                      "CASE WHEN b.oid <> a.atttypid THEN pg_catalog.format_type(b.oid, b.typmod) END, b.oid, "
                      "bt.typtype = 'b' AND bt.typelem <> 0 AND bt.typlen = -1, "
                      "tn.nspname NOT IN ('pg_catalog', 'information_schema') "
                      "FROM pg_catalog.pg_attribute a "
                      "JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
                      "JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace "
                      "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
                      "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                      "  AND a.attgenerated <> '' "
                      /* a domain's base type, through domains of domains */
                      "CROSS JOIN LATERAL (WITH RECURSIVE b(oid, typmod, lvl) AS (SELECT a.atttypid, a.atttypmod, 0 "
                      "  UNION ALL SELECT t.typbasetype, t.typtypmod, b.lvl + 1 FROM b JOIN pg_catalog.pg_type t "
                      "  ON t.oid = b.oid WHERE t.typtype = 'd' AND b.lvl < 32) "
                      "  SELECT oid, typmod FROM b ORDER BY lvl DESC LIMIT 1) b "
                      "JOIN pg_catalog.pg_type bt ON bt.oid = b.oid "
                      "WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                      1, params, err);
        if (!res)
                return err->code;
        int nrows = PQntuples(res), nreg = 0;
        bool have_pk = false, user_types = false, oom = false;
        for (int r = 0; r < nrows; r++) {
                have_pk |= strcmp(PQgetvalue(res, r, 2), "t") == 0;
                user_types |= strcmp(PQgetvalue(res, r, 8), "t") == 0;
                t->ngen += strcmp(PQgetvalue(res, r, 3), "t") == 0;
        }
        if (t->ngen > 0) {
                t->gen = calloc((size_t)t->ngen, sizeof(*t->gen));
                if (!t->gen) {
                        t->ngen = 0;
                        oom = true;
                }
        }
        for (int r = 0, g = 0; !oom && r < nrows; r++) {
                if (strcmp(PQgetvalue(res, r, 3), "t") != 0) {
                        nreg++;
                        continue;
                }
                GenColumn *gc = &t->gen[g++];
                gc->name = strdup(PQgetvalue(res, r, 0));
                gc->type_name = strdup(PQgetvalue(res, r, 1));
                gc->expr = strdup(PQgetvalue(res, r, 4));
                gc->pos = nreg;
                oom = !gc->name || !gc->type_name || !gc->expr;
        }
        for (int c = 0; !oom && c < t->ncols; c++) {
                Column *col = &t->cols[c];
                for (int r = 0; r < nrows; r++) {
                        if (strcmp(PQgetvalue(res, r, 0), col->name) != 0 || strcmp(PQgetvalue(res, r, 3), "t") == 0)
                                continue;
                        if (!col->type_name)
                                col->type_name = strdup(PQgetvalue(res, r, 1));
                        if (have_pk)
                                col->key = strcmp(PQgetvalue(res, r, 2), "t") == 0;
                        if (col->cls == TYPE_OTHER && strcmp(PQgetvalue(res, r, 8), "t") == 0) {
                                uint32_t base = (uint32_t)strtoul(PQgetvalue(res, r, 6), NULL, 10);
                                col->cls = strcmp(PQgetvalue(res, r, 7), "t") == 0 ? TYPE_ARRAY : pgtypes_class(base);
                                if (!PQgetisnull(res, r, 5) && !(col->base_type = strdup(PQgetvalue(res, r, 5))))
                                        oom = true;
                        }
                }
                if (!col->type_name) {
                        const char *bi = pgtypes_name(col->type_oid);
                        col->type_name = strdup(bi ? bi : "text");
                }
                oom |= !col->type_name;
        }
        PQclear(res);
        if (oom)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        return user_types ? describe_types(s, t, relid, err) : 0;
}

static int on_relation(Source *s, const PgoutputMsg *m, CdcError *err) {
        Table *t = table_new(m->u.relation.nspname, m->u.relation.relname, m->u.relation.natts);
        if (!t)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        t->rel_id = m->u.relation.rel_id;
        t->replident = m->u.relation.replident;
        for (int i = 0; i < t->ncols; i++) {
                const PgoutputAttr *a = &m->u.relation.attrs[i];
                t->cols[i].name = strdup(a->name);
                t->cols[i].type_oid = a->type_oid;
                t->cols[i].typmod = a->typmod;
                t->cols[i].cls = pgtypes_class(a->type_oid);
                /* With REPLICA IDENTITY FULL every column carries the identity flag. */
                t->cols[i].key = (a->flags & 1) && t->replident != 'f';
                if (!t->cols[i].name) {
                        table_unref(t);
                        return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                }
        }
        int r = describe_table(s, t, err);
        if (r == 0 && (r = rel_store(s, t)) < 0)
                cdc_error(err, r, false, "internal", "out of memory");
        if (r < 0)
                table_unref(t);
        return r;
}

/* ---- events ---- */

static int emit(Source *s, Event *ev, CdcError *err) {
        int r = pipeline_io_emit(s->io, ev);
        if (r < 0)
                return cdc_error(err, r, true, "internal", "pipeline stopping");
        return 0;
}

static int send_begin(Source *s, CdcError *err) {
        if (s->begin_sent)
                return 0;
        Event ev = {.kind = EVENT_BEGIN, .txn = s->txn};
        s->begin_sent = true;
        return emit(s, &ev, err);
}

static int tuple_values(const Table *t, const PgoutputTuple *tup, Value **ret, CdcError *err) {
        if (tup->ncols != t->ncols)
                return cdc_error(err, -EBADMSG, false, "data",
                                 "table %s.%s: a row with %d columns arrived for a relation of %d columns", t->schema,
                                 t->name, tup->ncols, t->ncols);
        Value *v = values_new(t->ncols);
        if (!v)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        for (int i = 0; i < t->ncols; i++) {
                const PgoutputColumn *c = &tup->cols[i];
                if (c->kind == 'u') {
                        v[i].kind = VALUE_UNCHANGED;
                } else if (c->kind == 't') {
                        if (value_set(&v[i], c->data, c->len) < 0) {
                                values_free(v, t->ncols);
                                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        }
                } else if (c->kind == 'b') {
                        values_free(v, t->ncols);
                        return cdc_error(err, -EPROTO, false, "data",
                                         "table %s.%s column %s: binary format value, but text format was requested",
                                         t->schema, t->name, t->cols[i].name);
                }
        }
        *ret = v;
        return 0;
}

static bool copied_later(Source *s, const Table *t);
static int emit_copy(Source *s, CdcError *err);

static int on_row(Source *s, const PgoutputMsg *m, CdcError *err) {
        Table *t = rel_lookup(s, m->u.row.rel_id);
        if (!t)
                return cdc_error(err, -EPROTO, false, "source",
                                 "a row for relation %u arrived before its Relation message", m->u.row.rel_id);
        if (copied_later(s, t))
                return 0;
        Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
        Change *c = &ev.change;
        c->op = m->type == PGOUTPUT_INSERT ? CHANGE_INSERT : m->type == PGOUTPUT_UPDATE ? CHANGE_UPDATE : CHANGE_DELETE;
        c->table = table_ref(t);
        int r = 0;
        if (m->u.row.old_kind)
                r = tuple_values(t, &m->u.row.old_tuple, &c->before, err);
        if (r == 0 && m->type != PGOUTPUT_DELETE)
                r = tuple_values(t, &m->u.row.new_tuple, &c->after, err);
        if (r == 0 && c->op == CHANGE_DELETE && !c->before)
                r = cdc_error(err, -EPROTO, false, "data", "table %s.%s: a delete without its old key", t->schema,
                              t->name);
        if (r == 0)
                r = send_begin(s, err);
        if (r == 0)
                return emit(s, &ev, err);
        change_clear(c);
        return r;
}

static int on_truncate(Source *s, const PgoutputMsg *m, CdcError *err) {
        int r = send_begin(s, err);
        for (int i = 0; r == 0 && i < m->u.truncate.nrels; i++) {
                Table *t = rel_lookup(s, m->u.truncate.rel_ids[i]);
                if (!t)
                        return cdc_error(err, -EPROTO, false, "source", "truncate of unknown relation %u",
                                         m->u.truncate.rel_ids[i]);
                if (copied_later(s, t))
                        continue;
                Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
                ev.change.op = CHANGE_TRUNCATE;
                ev.change.table = table_ref(t);
                ev.change.flags = m->u.truncate.options;
                r = emit(s, &ev, err);
        }
        return r;
}

/* ---- streamed (in-progress) transactions: spilled to disk until their commit ---- */

static StreamXact *stream_find(Source *s, uint32_t xid, bool create, CdcError *err) {
        for (size_t i = 0; i < s->nstreams; i++)
                if (s->streams[i].xid == xid)
                        return &s->streams[i];
        if (!create)
                return NULL;
        if (s->nstreams == MAX_STREAMED_XACTS) {
                cdc_error(err, -ENOSPC, false, "source", "more than %d streamed transactions in progress",
                          MAX_STREAMED_XACTS);
                return NULL;
        }
        StreamXact *x = &s->streams[s->nstreams];
        snprintf(x->path, sizeof(x->path), "%s/xact-%u.spill", s->spill_dir, xid);
        int fd = open(x->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || !(x->f = fdopen(fd, "w+"))) {
                int e = errno;
                if (e == ENOENT)
                        cdc_error(err, -e, true, "disk",
                                  "cannot create spill file %s: the spill directory was removed while the pipeline "
                                  "ran — it is created again when the pipeline retries",
                                  x->path);
                else
                        cdc_error(err, -e, true, "disk",
                                  "cannot create spill file %s: %s — free space in %s; the "
                                  "pipeline retries by itself",
                                  x->path, strerror(e), s->spill_dir);
                if (fd >= 0)
                        close(fd);
                return NULL;
        }
        x->xid = xid;
        s->nstreams++;
        return x;
}

static void stream_drop(Source *s, StreamXact *x) {
        fclose(x->f);
        unlink(x->path);
        *x = s->streams[--s->nstreams];
}

static void streams_drop_all(Source *s) {
        while (s->nstreams)
                stream_drop(s, &s->streams[0]);
}

/* A spill file that cannot be written or read back (disk full, I/O error, the file changed under
 * us): counted as "disk" and retried; the retry streams the transaction again from the slot. */
static int spill_error(const StreamXact *x, int e, const char *what, CdcError *err) {
        if (e <= 0)
                e = EIO;
        const char *slash = strrchr(x->path, '/');
        int dirlen = slash ? (int)(slash - x->path) : (int)strlen(x->path);
        return cdc_error(err, -e, true, "disk",
                         "cannot %s spill file %s: %s — free space in %.*s; the pipeline retries by itself", what,
                         x->path, strerror(e), dirlen, x->path);
}

static int spill(StreamXact *x, const uint8_t *buf, size_t len, CdcError *err) {
        uint32_t n = (uint32_t)len;
        errno = 0;
        if (fwrite(&n, sizeof(n), 1, x->f) != 1 || fwrite(buf, 1, len, x->f) != len)
                return spill_error(x, errno, "write", err);
        return 0;
}

static int handle_message(Source *s, const uint8_t *buf, size_t len, bool replay, CdcError *err);

/* Replays a committed streamed transaction: aborted subtransactions first collected, then every
 * other change handed on as one transaction. */
static int stream_commit(Source *s, const PgoutputMsg *m, CdcError *err) {
        StreamXact *x = stream_find(s, m->xid, false, err);
        s->txn =
                (TxnInfo){.xid = m->xid, .commit_pos = {0, m->u.commit.commit_lsn}, .commit_ts = m->u.commit.commit_ts};
        s->in_txn = true;
        s->begin_sent = false;
        int r = 0;
        /* Buffered writes that fail only now (disk full) must not pass for the end of the file. */
        errno = 0;
        if (x && fflush(x->f) != 0)
                r = spill_error(x, errno, "write", err);
        if (x && r == 0) {
                uint32_t *aborted = NULL;
                size_t naborted = 0, cap = 0;
                uint8_t *buf = NULL;
                size_t bufcap = 0;
                for (int pass = 0; pass < 2 && r == 0; pass++) {
                        rewind(x->f);
                        uint32_t n;
                        size_t got = 0;
                        while (r == 0 && (got = fread(&n, 1, sizeof(n), x->f)) == sizeof(n)) {
                                if (n > bufcap) {
                                        uint8_t *nb = realloc(buf, n);
                                        if (!nb) {
                                                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                                                break;
                                        }
                                        buf = nb;
                                        bufcap = n;
                                }
                                if (fread(buf, 1, n, x->f) != n) {
                                        r = spill_error(x, ferror(x->f) ? errno : EIO, "read back", err);
                                        break;
                                }
                                if (buf[0] == 'a') { /* our marker: subtransaction aborted */
                                        if (pass == 0 && n == 5) {
                                                if (naborted == cap) {
                                                        cap = cap ? cap * 2 : 16;
                                                        uint32_t *na = realloc(aborted, cap * sizeof(*na));
                                                        if (!na) {
                                                                r = cdc_error(err, -ENOMEM, false, "internal",
                                                                              "out of memory");
                                                                break;
                                                        }
                                                        aborted = na;
                                                }
                                                memcpy(&aborted[naborted++], buf + 1, 4);
                                        }
                                        continue;
                                }
                                if (pass == 0)
                                        continue;
                                /* Changes carry their (sub)transaction's xid right after the type. */
                                if (n >= 5 && buf[0] != PGOUTPUT_RELATION && buf[0] != PGOUTPUT_TYPE) {
                                        uint32_t sub = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
                                                       (uint32_t)buf[3] << 8 | buf[4];
                                        bool skip = false;
                                        for (size_t i = 0; i < naborted; i++)
                                                skip |= aborted[i] == sub;
                                        if (skip)
                                                continue;
                                }
                                r = handle_message(s, buf, n, true, err);
                        }
                        /* the end of the file only where a record ends */
                        if (r == 0 && (got != 0 || ferror(x->f)))
                                r = spill_error(x, ferror(x->f) ? errno : EIO, "read back", err);
                }
                free(aborted);
                free(buf);
                stream_drop(s, x);
        }
        if (r == 0 && s->begin_sent) {
                Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
                r = emit(s, &ev, err);
                s->commit_end = m->u.commit.end_lsn;
        }
        s->in_txn = false;
        return r;
}

static int stream_abort(Source *s, const PgoutputMsg *m, CdcError *err) {
        StreamXact *x = stream_find(s, m->xid, false, err);
        if (!x)
                return 0;
        if (m->u.stream_abort.subxid == m->xid) {
                stream_drop(s, x);
                return 0;
        }
        uint8_t mark[5] = {'a'};
        memcpy(mark + 1, &m->u.stream_abort.subxid, 4);
        return spill(x, mark, sizeof(mark), err);
}

/* Handles one pgoutput message. replay: from a spill file (in-stream format). */
static int handle_message(Source *s, const uint8_t *buf, size_t len, bool replay, CdcError *err) {
        PgoutputMsg m;
        char why[256];
        bool in_stream = replay || s->stream_xid != 0;
        int r = pgoutput_decode(buf, len, in_stream, &m, why, sizeof(why));
        if (r < 0)
                return cdc_error(err, r, false, "source", "undecodable pgoutput message at %X/%X: %s",
                                 (uint32_t)(s->received_lsn >> 32), (uint32_t)s->received_lsn, why);
        /* Inside a Stream Start block, everything but the relation cache goes to the spill file. */
        if (!replay && s->stream_xid != 0 && m.type != PGOUTPUT_STREAM_STOP) {
                StreamXact *x = stream_find(s, s->stream_xid, true, err);
                r = x ? spill(x, buf, len, err) : err->code;
                if (r == 0 && m.type == PGOUTPUT_RELATION)
                        r = on_relation(s, &m, err);
                pgoutput_msg_clear(&m);
                return r;
        }
        /* A pending copy goes before the first transaction committed after its position. */
        if (s->copy_pending && !replay &&
            ((m.type == PGOUTPUT_BEGIN && m.u.begin.final_lsn > s->copy_pos.lo) ||
             (m.type == PGOUTPUT_STREAM_COMMIT && m.u.commit.commit_lsn > s->copy_pos.lo)) &&
            (r = emit_copy(s, err)) < 0) {
                pgoutput_msg_clear(&m);
                return r;
        }
        switch (m.type) {
        case PGOUTPUT_BEGIN:
                s->in_txn = true;
                s->begin_sent = false;
                s->txn = (TxnInfo){
                        .xid = m.xid, .commit_pos = {0, m.u.begin.final_lsn}, .commit_ts = m.u.begin.commit_ts};
                break;
        case PGOUTPUT_ORIGIN: snprintf(s->txn.origin, sizeof(s->txn.origin), "%s", m.u.origin.name); break;
        case PGOUTPUT_RELATION: r = on_relation(s, &m, err); break;
        case PGOUTPUT_INSERT:
        case PGOUTPUT_UPDATE:
        case PGOUTPUT_DELETE: r = on_row(s, &m, err); break;
        case PGOUTPUT_TRUNCATE: r = on_truncate(s, &m, err); break;
        case PGOUTPUT_COMMIT:
                /* A transaction with no change for our tables still moves the position. */
                if (s->begin_sent) {
                        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
                        r = emit(s, &ev, err);
                        /* The checkpoint is the commit record's start; once the stream pauses,
                         * its end is acknowledged too (stream()), or the position would stay a
                         * record short of the server's WAL end, which lag counts as behind. */
                        s->commit_end = m.u.commit.end_lsn;
                } else {
                        Event ev = {.kind = EVENT_KEEPALIVE, .pos = {0, m.u.commit.end_lsn}};
                        r = emit(s, &ev, err);
                }
                s->in_txn = false;
                break;
        case PGOUTPUT_STREAM_START: s->stream_xid = m.xid; break;
        case PGOUTPUT_STREAM_STOP: s->stream_xid = 0; break;
        case PGOUTPUT_STREAM_COMMIT: r = stream_commit(s, &m, err); break;
        case PGOUTPUT_STREAM_ABORT: r = stream_abort(s, &m, err); break;
        case PGOUTPUT_TYPE:
        case PGOUTPUT_MESSAGE: break;
        }
        pgoutput_msg_clear(&m);
        return r;
}

/* ---- per-table copies (copies.h) ---- */

/* Whether a change of t in the current transaction is part of a copy already (dropped). */
static bool copied_later(Source *s, const Table *t) {
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
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        return emit(s, &ev, err);
}

static int snapshot_table(Source *s, PGconn *data, const char *schema, const char *name, uint64_t *ret_rows,
                          CdcError *err);

/* Hands on the pending copy as one transaction at copy_pos: the records of removed tables
 * dropped, then each added table's rows (as snapshot = says) with its record. Called when the
 * stream reaches copy_pos, so it lands between the transactions it precedes and follows. */
static int emit_copy(Source *s, CdcError *err) {
        TxnInfo saved = s->txn;
        bool saved_begin = s->begin_sent;
        int r;
        s->copy_pending = false;
        s->txn = (TxnInfo){.commit_pos = s->copy_pos, .commit_ts = now_usec(), .snapshot = true};
        s->begin_sent = false;
        r = send_begin(s, err);
        for (int i = 0; r == 0 && i < s->ncopy_gone; i++) {
                Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
                if (copies_forget(s->pipe->name, s->copy_gone[i], &ev.change) < 0)
                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                else
                        r = emit(s, &ev, err);
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
                r = emit(s, &ev, err);
        }
        PQfinish(s->copy); /* ends the read-only transaction that held the snapshot */
        s->copy = NULL;
        s->txn = saved;
        s->begin_sent = saved_begin;
        return r;
}

static bool in_list(char **list, int n, const char *v) {
        for (int i = 0; i < n; i++)
                if (strcmp(list[i], v) == 0)
                        return true;
        return false;
}

static int list_add(char ***list, int *n, const char *v) {
        char **a = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
        if (!a)
                return -ENOMEM;
        *list = a;
        if (!(a[*n] = strdup(v)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

static void list_free(char ***list, int *n) {
        for (int i = 0; i < *n; i++)
                free((*list)[i]);
        free(*list);
        *list = NULL;
        *n = 0;
}

/* The publication's tables ("schema.table"), cdcsync.versions aside. */
static int publication_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        const char *params[] = {s->publication};
        PGresult *res = query(s, s->sql,
                              "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 "
                              "AND (schemaname, tablename) <> ('cdcsync', 'versions') ORDER BY 1",
                              1, params, err);
        if (!res)
                return err->code;
        char **list = NULL;
        int n = 0, r = 0;
        for (int i = 0; r == 0 && i < PQntuples(res); i++)
                r = list_add(&list, &n, PQgetvalue(res, i, 0));
        PQclear(res);
        if (r < 0) {
                list_free(&list, &n);
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

static int pg_source_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        return publication_tables(s, ret, ret_n, err);
}

/* ALTER PUBLICATION name ADD|DROP TABLE schema.table */
static int alter_publication(Source *s, const char *verb, const char *table, CdcError *err) {
        const char *dot = strchr(table, '.');
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        char *sch = dot ? PQescapeIdentifier(s->sql, table, (size_t)(dot - table)) : NULL;
        char *tab = dot ? PQescapeIdentifier(s->sql, dot + 1, strlen(dot + 1)) : NULL;
        char *sql = NULL;
        if (!pub || !sch || !tab || asprintf(&sql, "ALTER PUBLICATION %s %s TABLE %s.%s", pub, verb, sch, tab) < 0)
                sql = NULL;
        PQfreemem(pub);
        PQfreemem(sch);
        PQfreemem(tab);
        if (!sql)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        PGresult *res = query(s, s->sql, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                size_t n = strlen(err->message);
                snprintf(err->message + n, sizeof(err->message) - n,
                         " — while changing publication \"%s\" to follow tables (%s %s)", s->publication, verb, table);
                err->retriable = true; /* a table not created yet: created later, the pipeline goes on */
                return err->code;
        }
        PQclear(res);
        return 0;
}

/* `tables` is the truth (a pipeline with a checkpoint): the publication is made to hold exactly
 * the tables listed; a table without a copy record is copied as of a new snapshot before it
 * streams (emit_copy), the record of a table no longer listed is dropped. */
static int follow_tables(Source *s, const SourceStart *start, CdcError *err) {
        char **members = NULL, *snapname = NULL;
        int nmembers = 0, r;
        const char *params[] = {s->publication};
        PGresult *res = query(s, s->sql, "SELECT puballtables FROM pg_publication WHERE pubname = $1", 1, params, err);
        if (!res)
                return err->code;
        bool all = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (all != s->pipe->all_tables)
                return cdc_error(err, -EINVAL, false, "conf",
                                 "connector %s: tables of pipeline %s changed between * and a list, but publication "
                                 "\"%s\" is %s: a running pipeline cannot switch — create a new pipeline (new name) "
                                 "for the new tables",
                                 s->conn->name, s->pipe->name, s->publication,
                                 all ? "FOR ALL TABLES" : "a list of tables");
        if (all)
                return 0;
        r = publication_tables(s, &members, &nmembers, err);
        if (r < 0)
                return r;
        for (int i = 0; r == 0 && i < s->pipe->ntables; i++) {
                const char *t = s->pipe->tables[i];
                if (!in_list(members, nmembers, t)) {
                        r = alter_publication(s, "ADD", t, err);
                        if (r == 0)
                                log_info(s->ctx, "table %s added to tables: added to publication \"%s\"", t,
                                         s->publication);
                }
                const char *dot = strchr(t, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - t), t);
                bool have = start->registry ? copies_find(start->copied, start->ncopied, sch, dot + 1) != NULL
                                            : in_list(members, nmembers, t);
                if (r == 0 && !have && list_add(&s->copy_new, &s->ncopy_new, t) < 0)
                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        }
        for (int i = 0; r == 0 && i < nmembers; i++) {
                const char *dot = strchr(members[i], '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - members[i]) : 0, members[i]);
                if (dot && conf_pipeline_has_table(s->pipe, sch, dot + 1))
                        continue;
                r = alter_publication(s, "DROP", members[i], err);
                if (r == 0)
                        log_info(s->ctx, "table %s left tables: dropped from publication \"%s\", no longer streamed",
                                 members[i], s->publication);
        }
        list_free(&members, &nmembers);
        for (int i = 0; r == 0 && i < start->ncopied; i++) {
                const char *t = start->copied[i].table, *dot = strchr(t, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || !conf_pipeline_has_table(s->pipe, sch, dot + 1)) {
                        if (list_add(&s->copy_gone, &s->ncopy_gone, t) < 0)
                                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                } else if (position_cmp(start->copied[i].pos, start->position) > 0) {
                        /* copied as of a position the checkpoint has not reached: still filtered */
                        CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
                        if (!f)
                                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        else
                                (s->filters = f)[s->nfilters++] = start->copied[i];
                }
        }
        if (r < 0 || (s->ncopy_new == 0 && s->ncopy_gone == 0))
                return r;

        /* The copy's snapshot: a temporary slot's, on a walsender of its own; a transaction on
         * another connection takes it over and holds it until the stream reaches its position. */
        PGconn *rc = NULL;
        char tmp[64], *sql = NULL;
        snprintf(tmp, sizeof(tmp), "%.50s_copy", s->slot);
        r = pg_conn_open(s->conn, PG_CONN_SOURCE | PG_CONN_REPLICATION, &rc, err);
        char *q = r == 0 ? PQescapeIdentifier(rc, tmp, strlen(tmp)) : NULL;
        if (r == 0 && (!q || asprintf(&sql, "CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
                                      q) < 0)) {
                sql = NULL;
                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        }
        PQfreemem(q);
        if (r == 0) {
                res = PQexec(rc, sql);
                if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                        char buf[512];
                        r = cdc_error(err, -EIO, true, "slot",
                                      "connector %s: cannot create replication slot \"%s\": %s", s->conn->name, tmp,
                                      errtext(s, rc, res, buf, sizeof(buf)));
                } else {
                        pg_source_parse_position(PQgetvalue(res, 0, 1), &s->copy_pos);
                        snapname = PQescapeLiteral(rc, PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)));
                }
                PQclear(res);
        }
        free(sql);
        sql = NULL;
        if (r == 0)
                r = pg_conn_open(s->conn, PG_CONN_SOURCE, &s->copy, err);
        if (r == 0 && (res = query(s, s->copy, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)))
                PQclear(res);
        else if (r == 0)
                r = err->code;
        if (r == 0 && (!snapname || asprintf(&sql, "SET TRANSACTION SNAPSHOT %s", snapname) < 0)) {
                sql = NULL;
                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        }
        if (r == 0 && (res = query(s, s->copy, sql, 0, NULL, err)))
                PQclear(res);
        else if (r == 0)
                r = err->code;
        free(sql);
        PQfreemem(snapname);
        if (rc)
                PQfinish(rc); /* drops the temporary slot; the snapshot lives on in s->copy */
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                const char *t = s->copy_new[i], *dot = strchr(t, '.');
                CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
                if (!f) {
                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        break;
                }
                s->filters = f;
                snprintf(f[s->nfilters].table, sizeof(f[s->nfilters].table), "%.*s.%s", (int)(dot - t), t, dot + 1);
                f[s->nfilters++].pos = s->copy_pos;
        }
        if (r < 0)
                return r;
        s->copy_pending = true;
        char pos[32];
        pg_source_format_position(s->copy_pos, pos, sizeof(pos));
        for (int i = 0; i < s->ncopy_new; i++)
                log_info(s->ctx, "table %s has no copy in the sink: copying it as of %s once the stream reaches there",
                         s->copy_new[i], pos);
        for (int i = 0; i < s->ncopy_gone; i++)
                log_info(s->ctx, "table %s left tables: its copy record is dropped", s->copy_gone[i]);
        return 0;
}

/* ---- initial snapshot ---- */

/* Copies one table: the catalogue is read on s->sql, the rows on `data` (inside the transaction
 * that holds the copy's snapshot). */
static int snapshot_table(Source *s, PGconn *data, const char *schema, const char *name, uint64_t *ret_rows,
                          CdcError *err) {
        const char *params[] = {schema, name};
        PGresult *res =
                query(s, s->sql,
                      "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = $1 AND c.relname = $2",
                      2, params, err);
        if (!res)
                return err->code;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return cdc_error(err, -ENOENT, false, "schema", "table %s.%s does not exist on the source", schema,
                                 name);
        }
        uint32_t oid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        char replident = PQgetvalue(res, 0, 1)[0];
        PQclear(res);

        char relid[16];
        snprintf(relid, sizeof(relid), "%u", oid);
        const char *p1[] = {relid};
        res = query(s, s->sql,
                    "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 "
                    "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                    1, p1, err);
        if (!res)
                return err->code;
        Table *t = table_new(schema, name, PQntuples(res));
        if (!t) {
                PQclear(res);
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
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
        int r = describe_table(s, t, err);
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
                if ((r = emit(s, &ev, err)) < 0)
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
                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                goto out;
        }
        res = query(s, data, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                r = err->code;
                goto out;
        }
        PQclear(res);
        uint64_t rows = 0;
        for (;;) {
                res = query(s, data, "FETCH 2000 FROM cdcsync_snap", 0, NULL, err);
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
                                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                                break;
                        }
                        for (int c = 0; c < t->ncols && r == 0; c++)
                                if (!PQgetisnull(res, row, c) && value_set(&e.change.after[c], PQgetvalue(res, row, c),
                                                                           (size_t)PQgetlength(res, row, c)) < 0)
                                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        if (r == 0)
                                r = emit(s, &e, err);
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
        res = query(s, data, "CLOSE cdcsync_snap", 0, NULL, err);
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
static int snapshot(Source *s, Position *ret_start, CdcError *err) {
        char buf[512];
        bool invalid = false;
        int r = slot_state(s, &invalid, err);
        if (r < 0)
                return r;
        if (r == 1) {
                const char *params[] = {s->slot};
                PGresult *res = query(s, s->sql, "SELECT pg_drop_replication_slot($1)", 1, params, err);
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
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        PGresult *res = PQexec(s->repl, sql);
        free(sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                cdc_error(err, -EIO, PQstatus(s->repl) != CONNECTION_OK, "slot",
                          "connector %s: cannot create replication slot \"%s\": %s", s->conn->name, s->slot,
                          errtext(s, s->repl, res, buf, sizeof(buf)));
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

        PGresult *b = query(s, s->sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err);
        if (!b)
                return err->code;
        PQclear(b);
        char *setsnap = NULL;
        char *lit = PQescapeLiteral(s->sql, snapname, strlen(snapname));
        if (!lit || asprintf(&setsnap, "SET TRANSACTION SNAPSHOT %s", lit) < 0)
                setsnap = NULL;
        PQfreemem(lit);
        if (!setsnap)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        b = query(s, s->sql, setsnap, 0, NULL, err);
        free(setsnap);
        if (!b)
                return err->code;
        PQclear(b);

        const char *pp[] = {s->publication};
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        PGresult *tabs = query(s, s->sql,
                               "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 "
                               "ORDER BY (schemaname, tablename) = ('cdcsync', 'versions') DESC, 1, 2",
                               1, pp, err);
        if (!tabs)
                return err->code;
        pipeline_io_streaming(s->io, true);
        s->txn = (TxnInfo){.xid = 0, .commit_pos = start, .commit_ts = now_usec(), .snapshot = true};
        s->begin_sent = false;
        r = send_begin(s, err);
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
        b = query(s, s->sql, "COMMIT", 0, NULL, err);
        if (!b)
                return err->code;
        PQclear(b);
        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
        if ((r = emit(s, &ev, err)) < 0)
                return r;
        char pos[32];
        pg_source_format_position(start, pos, sizeof(pos));
        log_info(s->ctx, "snapshot of %d tables read; streaming from %s", ntabs, pos);
        *ret_start = start;
        return 0;
}

/* A slot whose copy never reached the sink (refused, failed, stopped) would hold WAL until the
 * next start: it is dropped now (the next start makes a new one either way). */
static void drop_unused_slot(Source *s) {
        PGresult *res = PQexec(s->sql, "ROLLBACK");
        PQclear(res);
        if (s->repl) { /* a streaming walsender holds the slot until it exits */
                PQfinish(s->repl);
                s->repl = NULL;
        }
        const char *params[] = {s->slot};
        char buf[512] = "";
        for (int i = 0; i < 50; i++) {
                res = PQexecParams(s->sql, "SELECT pg_drop_replication_slot($1)", 1, NULL, params, NULL, NULL, 0);
                bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
                if (!ok)
                        errtext(s, s->sql, res, buf, sizeof(buf));
                PQclear(res);
                if (ok) {
                        log_info(s->ctx, "dropped replication slot \"%s\": its copy was not committed", s->slot);
                        return;
                }
                if (!strstr(buf, "is active"))
                        break;
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
        log_warn(s->ctx,
                 "cannot drop replication slot \"%s\" whose copy was not committed (%s); the next start drops it",
                 s->slot, buf);
}

/* ---- streaming ---- */

static int send_status(Source *s, bool reply, CdcError *err) {
        uint8_t msg[34];
        Position durable = pipeline_io_durable(s->io);
        uint64_t flush = durable.lo;
        size_t n = pgwire_write_standby_status(msg, s->received_lsn, flush, flush, now_usec(), reply);
        deadline_arm(s->guard_repl, conf_timeout_ms(s->conn));
        bool ok = PQputCopyData(s->repl, (const char *)msg, (int)n) > 0 && PQflush(s->repl) == 0;
        if (deadline_disarm(s->guard_repl))
                return timeout_error(s, err);
        if (!ok) {
                char buf[512];
                return cdc_error(err, -EIO, true, "connection", "connector %s: cannot send standby status: %s",
                                 s->conn->name, errtext(s, s->repl, NULL, buf, sizeof(buf)));
        }
        s->last_status = now_usec();
        return 0;
}

/* On an idle database nothing is written, and the slot would hold WAL forever: a tiny
 * non-transactional message moves the WAL end so keepalives let the slot advance. A server
 * that does not answer it ends the attempt; one that refuses it disables it. */
static int heartbeat(Source *s, CdcError *err) {
        if (s->heartbeat_failed)
                return 0;
        /* Within what is left of the stream's own silence budget: a frozen server is reported
         * timeout_s after the stream last heard of it, not timeout_s after the heartbeat began. */
        int64_t left_ms = (s->last_recv + (int64_t)conf_timeout_ms(s->conn) * 1000 - now_usec()) / 1000;
        deadline_arm(s->guard_sql, left_ms > 1000 ? (int)left_ms : 1000);
        PGresult *res = PQexec(s->sql, "SELECT pg_logical_emit_message(false, 'cdcsync_heartbeat', '')");
        bool fired = deadline_disarm(s->guard_sql);
        int r = 0;
        if (fired || PQstatus(s->sql) != CONNECTION_OK) {
                char buf[512];
                r = fired ? timeout_error(s, err)
                          : cdc_error(err, -EIO, true, "connection", "connector %s: %s", s->conn->name,
                                      errtext(s, s->sql, res, buf, sizeof(buf)));
        } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                char buf[512];
                log_warn(s->ctx, "heartbeat disabled (%s); on an idle database the slot advances only with other WAL",
                         errtext(s, s->sql, res, buf, sizeof(buf)));
                s->heartbeat_failed = true;
        }
        PQclear(res);
        return r;
}

static int classify_stream_error(Source *s, const PGresult *res, CdcError *err) {
        char buf[512];
        errtext(s, s->repl, res, buf, sizeof(buf));
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        bool gone = strstr(buf, "does not exist") || strstr(buf, "can no longer get changes") ||
                    strstr(buf, "invalidated") || (state && strcmp(state, "42704") == 0);
        if (gone)
                return cdc_error(
                        err, -ENOENT, false, "slot",
                        "connector %s: replication slot \"%s\" is gone or invalidated (%s) — changes since the "
                        "last checkpoint cannot be read any more; re-create the pipeline with a new snapshot "
                        "(delete its row from cdcsync.checkpoints on the sink and restart with snapshot = "
                        "replace, or merge for a bidirectional pair)",
                        s->conn->name, s->slot, buf);
        return cdc_error(err, -EIO, true, "connection", "connector %s: replication stream ended: %s", s->conn->name,
                         buf);
}

static int start_replication(Source *s, Position start, CdcError *err) {
        char *qslot = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
        char *pub = PQescapeIdentifier(s->repl, s->publication, strlen(s->publication));
        char *publit = pub ? PQescapeLiteral(s->repl, pub, strlen(pub)) : NULL;
        char *sql = NULL;
        if (!qslot || !publit ||
            asprintf(&sql,
                     "START_REPLICATION SLOT %s LOGICAL %X/%X (proto_version '2', streaming 'on', "
                     "publication_names %s)",
                     qslot, (uint32_t)(start.lo >> 32), (uint32_t)start.lo, publit) < 0)
                sql = NULL;
        PQfreemem(qslot);
        PQfreemem(pub);
        PQfreemem(publit);
        if (!sql)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        deadline_arm(s->guard_repl, conf_timeout_ms(s->conn));
        PGresult *res = PQexec(s->repl, sql);
        bool fired = deadline_disarm(s->guard_repl);
        free(sql);
        if (PQresultStatus(res) != PGRES_COPY_BOTH) {
                int r = fired ? timeout_error(s, err) : classify_stream_error(s, res, err);
                PQclear(res);
                return r;
        }
        PQclear(res);
        return 0;
}

/* The walsender sends nothing on an idle server whose changes we confirmed, and a frozen path
 * or a paused server sends nothing either: after half of timeout_s of silence a keepalive is
 * requested (the reply-requested flag of our standby status), which a live walsender answers
 * at once; nothing within the other half means the stream is dead. Silence counts only while
 * we wait for the socket, not while the pipeline's queue held us. */
static int check_silence(Source *s, int64_t now, CdcError *err) {
        int64_t half = (int64_t)conf_timeout_ms(s->conn) * 500;
        if (!s->reply_asked_at) {
                if (now - s->last_recv < half)
                        return 0;
                s->reply_asked_at = now;
                return send_status(s, true, err);
        }
        if (now - s->reply_asked_at < half)
                return 0;
        return cdc_error(err, -ETIMEDOUT, true, "connection",
                         "connector %s: the replication stream sent nothing for %d s (timeout_s), not even the "
                         "keepalive asked for: the network path or the source server is not responding",
                         s->conn->name, conf_timeout_ms(s->conn) / 1000);
}

static int stream(Source *s, CdcError *err) {
        int r = 0;
        s->last_data = s->last_status = s->last_recv = now_usec();
        s->reply_asked_at = 0;
        pipeline_io_streaming(s->io, false);
        while (!pipeline_io_stopping(s->io)) {
                char *copybuf = NULL;
                int n = PQgetCopyData(s->repl, &copybuf, 1);
                if (n == 0) {
                        int64_t now = now_usec();
                        if (s->commit_end && !s->in_txn && s->nstreams == 0) {
                                /* Nothing more right now: the engine ends its batch anyway, and the
                                 * position may move past the last commit record. */
                                Event ev = {.kind = EVENT_KEEPALIVE, .pos = {0, s->commit_end}};
                                if (s->commit_end > s->received_lsn)
                                        s->received_lsn = s->commit_end;
                                s->commit_end = 0;
                                if ((r = emit(s, &ev, err)) < 0)
                                        return r;
                        }
                        if (now - s->last_status >= STATUS_INTERVAL_USEC && (r = send_status(s, false, err)) < 0)
                                return r;
                        if (now - s->last_data >= HEARTBEAT_IDLE_USEC && !s->in_txn) {
                                if ((r = heartbeat(s, err)) < 0)
                                        return r;
                                s->last_data = now;
                        }
                        struct pollfd pfd = {.fd = PQsocket(s->repl), .events = POLLIN};
                        int ready = poll(&pfd, 1, 200);
                        if (ready < 0 && errno != EINTR)
                                return cdc_error(err, -errno, true, "connection", "poll: %s", strerror(errno));
                        if (PQconsumeInput(s->repl) == 0)
                                return classify_stream_error(s, NULL, err);
                        if (ready == 0 && (r = check_silence(s, now_usec(), err)) < 0)
                                return r;
                        continue;
                }
                s->reply_asked_at = 0;
                if (n == -1) {
                        PGresult *res = PQgetResult(s->repl);
                        r = classify_stream_error(s, res, err);
                        PQclear(res);
                        return r;
                }
                if (n < 0)
                        return classify_stream_error(s, NULL, err);
                const uint8_t *buf = (const uint8_t *)copybuf;
                if (buf[0] == PGWIRE_KEEPALIVE) {
                        PgwireKeepalive k;
                        if (pgwire_read_keepalive(buf, (size_t)n, &k) == 0) {
                                pipeline_io_report_source_end(s->io, (Position){0, k.wal_end}, k.send_time);
                                /* Between transactions nothing is pending up to the WAL end.
                                 * A keepalive asking for a reply is passed on even at the same
                                 * position: the sink ignores one that arrives while a batch is
                                 * still open, and a shutting-down server waits (pg_ctl stop
                                 * hangs) until the flush we report reaches its WAL end. */
                                /* Every transaction committed before the WAL end was sent: a
                                 * pending copy as of a position before it goes now. */
                                if (s->copy_pending && !s->in_txn && k.wal_end >= s->copy_pos.lo)
                                        r = emit_copy(s, err);
                                if (r == 0 && !s->in_txn && s->nstreams == 0 &&
                                    (k.wal_end > s->received_lsn || (k.reply_requested && k.wal_end > 0))) {
                                        s->received_lsn = k.wal_end;
                                        Event ev = {.kind = EVENT_KEEPALIVE,
                                                    .pos = {0, k.wal_end},
                                                    .server_ts = k.send_time};
                                        r = emit(s, &ev, err);
                                }
                                if (r == 0 && k.reply_requested)
                                        r = send_status(s, false, err);
                        }
                } else if (buf[0] == PGWIRE_XLOGDATA) {
                        PgwireXLogData x;
                        r = pgwire_read_xlogdata(buf, (size_t)n, &x);
                        if (r < 0) {
                                r = cdc_error(err, r, false, "source", "malformed XLogData message");
                        } else {
                                if (x.wal_start > s->received_lsn)
                                        s->received_lsn = x.wal_start;
                                pipeline_io_report_source_end(s->io, (Position){0, x.wal_end}, x.send_time);
                                s->last_data = now_usec();
                                r = handle_message(s, x.data, x.len, false, err);
                        }
                }
                PQfreemem(copybuf);
                if (r < 0)
                        return r;
                /* Ready for the next message: silence counts from here (emit may have waited). */
                s->last_recv = now_usec();
        }
        /* Stopping: acknowledge what the sink committed before going. */
        send_status(s, false, err);
        return 0;
}

static int pg_source_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        s->io = io;
        s->ctx = pipeline_io_context(io);
        int r;
        snprintf(s->spill_dir, sizeof(s->spill_dir), "%s", start->spill_dir ? start->spill_dir : "/tmp");
        if (mkdir(s->spill_dir, 0700) < 0 && errno != EEXIST)
                return cdc_error(err, -errno, true, "disk",
                                 "cannot create the spill directory %s: %s — fix state_dir; "
                                 "the pipeline retries by itself",
                                 s->spill_dir, strerror(errno));

        Position from = start->position;
        if (start->snapshot) {
                r = snapshot(s, &from, err);
                if (r < 0) {
                        if (s->slot_created)
                                drop_unused_slot(s);
                        return r;
                }
        } else {
                bool invalid = false;
                r = slot_state(s, &invalid, err);
                if (r < 0)
                        return r;
                if (r == 1 && invalid)
                        return cdc_error(
                                err, -ENOENT, false, "slot",
                                "connector %s: replication slot \"%s\" was invalidated (its WAL was removed, "
                                "max_slot_wal_keep_size) — changes were lost; re-create the pipeline with a "
                                "new snapshot (delete its row from cdcsync.checkpoints on the sink and restart "
                                "with snapshot = replace, or merge for a bidirectional pair)",
                                s->conn->name, s->slot);
                if (r == 0 && start->have_position) {
                        char pos[32];
                        pg_source_format_position(start->position, pos, sizeof(pos));
                        return cdc_error(
                                err, -ENOENT, false, "slot",
                                "connector %s: replication slot \"%s\" does not exist, but the sink holds a "
                                "checkpoint at %s — the slot was dropped and changes since then are lost; "
                                "re-create the pipeline with a new snapshot (delete its row from "
                                "cdcsync.checkpoints on the sink and restart with snapshot = replace, or merge for "
                                "a bidirectional pair)",
                                s->conn->name, s->slot, pos);
                }
                if (r == 0) {
                        char *q = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
                        char *sql = NULL;
                        if (!q ||
                            asprintf(&sql, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'nothing')", q) < 0)
                                sql = NULL;
                        PQfreemem(q);
                        if (!sql)
                                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        PGresult *res = PQexec(s->repl, sql);
                        free(sql);
                        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                                char buf[512];
                                cdc_error(err, -EIO, false, "slot",
                                          "connector %s: cannot create replication slot \"%s\": %s", s->conn->name,
                                          s->slot, errtext(s, s->repl, res, buf, sizeof(buf)));
                                PQclear(res);
                                return err->code;
                        }
                        PQclear(res);
                        log_info(s->ctx, "created replication slot \"%s\"", s->slot);
                }
        }
        if (!start->snapshot && start->have_position) {
                r = follow_tables(s, start, err);
                if (r < 0)
                        return r;
        }
        s->received_lsn = from.lo;
        r = start_replication(s, start->have_position || start->snapshot ? from : (Position){0, 0}, err);
        if (r == 0)
                r = stream(s, err);
        streams_drop_all(s);
        if (s->slot_created && position_cmp(pipeline_io_durable(io), from) < 0)
                drop_unused_slot(s);
        return r;
}

static Source *pg_source_free(Source *s) {
        if (!s)
                return NULL;
        streams_drop_all(s);
        for (size_t i = 0; i < s->nrels; i++)
                table_unref(s->rels[i].table);
        free(s->rels);
        free(s->filters);
        list_free(&s->copy_new, &s->ncopy_new);
        list_free(&s->copy_gone, &s->ncopy_gone);
        if (s->copy)
                PQfinish(s->copy);
        deadline_set_fd(s->guard_repl, -1);
        deadline_set_fd(s->guard_sql, -1);
        if (s->repl)
                PQfinish(s->repl);
        if (s->sql)
                PQfinish(s->sql);
        deadline_free(s->guard_repl);
        deadline_free(s->guard_sql);
        free(s);
        return NULL;
}

static int pg_source_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        if (!s)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        s->conn = conn;
        s->pipe = pipe;
        /* open() logs (a created publication) before run() gives the pipeline's context. */
        snprintf(s->open_ctx, sizeof(s->open_ctx), "[pipeline=%s source=%s]", pipe->name, conn->name);
        s->ctx = s->open_ctx;
        if (conn->slot)
                snprintf(s->slot, sizeof(s->slot), "%s", conn->slot);
        else
                default_name(pipe->name, s->slot, sizeof(s->slot));
        if (conn->publication)
                snprintf(s->publication, sizeof(s->publication), "%s", conn->publication);
        else
                default_name(pipe->name, s->publication, sizeof(s->publication));
        /* The settings and the role are checked before the walsender connection: without
         * REPLICATION that connection fails with a bare "must be superuser or replication role"
         * that would be retried forever as a connection error. */
        int r = deadline_new(&s->guard_sql);
        if (r == 0)
                r = deadline_new(&s->guard_repl);
        if (r < 0) {
                pg_source_free(s);
                return cdc_error(err, r, false, "internal", "out of memory");
        }
        r = pg_conn_open(conn, PG_CONN_SOURCE, &s->sql, err);
        if (r == 0) {
                deadline_set_fd(s->guard_sql, PQsocket(s->sql));
                r = check_server(s, err);
        }
        if (r == 0) {
                r = pg_conn_open(conn, PG_CONN_SOURCE | PG_CONN_REPLICATION, &s->repl, err);
                if (r == 0)
                        deadline_set_fd(s->guard_repl, PQsocket(s->repl));
        }
        if (r == 0)
                r = ensure_publication(s, err);
        if (r < 0) {
                pg_source_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* `cdcsync check --connect`: settings, privileges, slot, and tables PostgreSQL will refuse to
 * update or delete in (no primary key and no replica identity). */
static int pg_source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        if (!s)
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        s->conn = conn;
        s->pipe = pipe;
        if (conn->slot)
                snprintf(s->slot, sizeof(s->slot), "%s", conn->slot);
        else
                default_name(pipe->name, s->slot, sizeof(s->slot));
        int r = pg_conn_open(conn, PG_CONN_SOURCE, &s->sql, err);
        if (r == 0)
                r = check_server(s, err);
        bool invalid = false;
        if (r == 0 && (r = slot_state(s, &invalid, err)) >= 0) {
                if (r == 1 && invalid)
                        r = cdc_error(err, -ENOENT, false, "slot", "replication slot \"%s\" is invalidated", s->slot);
                else
                        r = 0;
        }
        if (r == 0) {
                PGresult *res =
                        query(s, s->sql,
                              "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                              "c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN "
                              "('pg_catalog','information_schema','cdcsync') AND n.nspname NOT LIKE 'pg_toast%' "
                              "AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND "
                              "(i.indisprimary OR i.indisreplident)) AND c.relreplident <> 'f' ORDER BY 1, 2",
                              0, NULL, err);
                if (!res) {
                        r = err->code;
                } else {
                        for (int i = 0; i < PQntuples(res); i++)
                                if (conf_pipeline_has_table(pipe, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)))
                                        printf("warning: pipeline %s: table %s.%s has no primary key or replica "
                                               "identity: its inserts sync, but PostgreSQL itself rejects UPDATE and "
                                               "DELETE on it while it is published — add a primary key or ALTER TABLE "
                                               "... REPLICA IDENTITY FULL\n",
                                               pipe->name, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
                        PQclear(res);
                }
        }
        pg_source_free(s);
        return r;
}

/* ---- probe: where the WAL ends now (connector.h) ---- */

struct SourceProbe {
        const ConnectorConf *conn;
        PGconn *c;
        Deadline *guard; /* bounds the query: a frozen server or path does not hold the monitor */
};

static SourceProbe *pg_source_probe_free(SourceProbe *pr) {
        if (!pr)
                return NULL;
        deadline_set_fd(pr->guard, -1);
        deadline_free(pr->guard);
        PQfinish(pr->c);
        free(pr);
        return NULL;
}

static int pg_source_probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        (void)pipe;
        SourceProbe *pr = calloc(1, sizeof(*pr));
        if (!pr || deadline_new(&pr->guard) < 0) {
                free(pr);
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        }
        pr->conn = conn;
        int r = pg_conn_open(conn, PG_CONN_SQL, &pr->c, err);
        if (r < 0) {
                pg_source_probe_free(pr);
                return r;
        }
        deadline_set_fd(pr->guard, PQsocket(pr->c));
        *ret = pr;
        return 0;
}

/* The flush position: what a walsender can send, and where its keepalives end up once the
 * stream has caught up. */
static int pg_source_probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        (void)applied;
        (void)ret_bytes;
        deadline_arm(pr->guard, conf_timeout_ms(pr->conn));
        PGresult *res = PQexec(pr->c, "SELECT pg_current_wal_flush_lsn()");
        bool fired = deadline_disarm(pr->guard);
        Position end = {0};
        int r = 0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
            pg_source_parse_position(PQgetvalue(res, 0, 0), &end) < 0) {
                char buf[512];
                if (fired)
                        r = cdc_error(err, -ETIMEDOUT, true, "connection",
                                      "connector %s: no answer within %d s (timeout_s)", pr->conn->name,
                                      conf_timeout_ms(pr->conn) / 1000);
                else
                        r = cdc_error(err, -EIO, true, "connection", "connector %s: %s", pr->conn->name,
                                      pg_conn_error_text(pr->conn, pr->c, res, buf, sizeof(buf)));
        } else {
                *ret_end = end;
        }
        PQclear(res);
        return r;
}

const SourceOps pg_source_ops = {
        .type = "postgres",
        .open = pg_source_open,
        .run = pg_source_run,
        .format_position = pg_source_format_position,
        .parse_position = pg_source_parse_position,
        .check = pg_source_check,
        .free = pg_source_free,
        .streamed_tables = pg_source_streamed_tables,
        .locate = pg_conn_locate,
        .list_tables = pg_conn_list_tables,
        .probe_open = pg_source_probe_open,
        .probe = pg_source_probe,
        .probe_free = pg_source_probe_free,
};
