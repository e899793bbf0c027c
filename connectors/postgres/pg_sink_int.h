/* What the files of the PostgreSQL sink share (pg_sink.c, pg_pipe.c, pg_target.c, pg_held.c,
 * pg_sink_copy.c, pg_sink_defer.c, pg_origin.c, pg_sink_check.c, pg_map.c): the Sink and its parts; private to
 * connectors/postgres. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cdcsync/connector.h"
#include "cdcsync/deadline.h"

#define PENDING_MAX 1000 /* unread results before we stop and read: bounds client memory */
#define GROUPS_MAX 8     /* runs held per table (insert, delete, UPDATE column sets) */
#define HOT_MAX 8        /* tables sink_apply finds without looking them up (Sink.hot) */

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

typedef enum {
        PENDING_QUERY = 0, /* one result, then NULL */
        PENDING_SYNC,      /* PGRES_PIPELINE_SYNC */
} PendingKind;

/* The rows of a multi-row UPDATE / DELETE, kept to name the one it missed: described only then,
 * not each row of every statement. */
typedef struct {
        int n;
        Value **vals;        /* owned: n rows of table->ncols values (the key columns at least) */
        Table *table;        /* one reference */
        const char *op;      /* "update", "delete" */
        char *schema, *name; /* owned: the sink table */
} PendingRows;

/* A statement sent whose result is not read yet. */
typedef struct {
        PendingKind kind;
        bool expect_one;   /* UPDATE / DELETE: must affect exactly one row */
        bool capture;      /* keep the result in Sink.captured */
        char *what;        /* owned: "update of shop.orders key (id)=(42)", for error messages */
        int expect_n;      /* multi-row UPDATE / DELETE: rows it must return (one per row touched) */
        PendingRows *rows; /* owned with expect_n */
} Pending;

/* Changes of a run held back to go as one multi-row statement (see sink_apply). */
typedef struct {
        ChangeOp op;
        uint8_t *mask; /* owned, ncols: PG_SQL_SET columns of an UPDATE run */
        int nrows, cap;
        Value **rows;  /* owned: per row ncols values, the new image (insert, update) or old key */
        bool copyable; /* an insert run whose every row may go by COPY (pg_sink_copy_fits) */
} Group;

/* A multi-row statement prepared for one table's runs, found by its shape (pg_held.c). */
typedef struct {
        ChangeOp op;
        int nrows;
        uint8_t *mask;    /* owned, ncols: an UPDATE's PG_SQL_SET columns; NULL otherwise */
        const char *name; /* the prepared statement's, owned by Sink.stmts (forgotten with it) */
} Shape;

#define SHAPES_MAX 32 /* shapes remembered per table: (insert, update sets, delete) x sizes */

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
        bool appendable; /* a table without key whose inserts may be reordered: held as one run */
        bool cols_ok;    /* the target has every column of table (see ensure_columns) */
        bool copy_ok;    /* a run of snapshot inserts may go by COPY (see pg_target_table_state) */
        bool deferred;   /* its indexes wait in cdcsync.deferred_indexes for the copy's end (pg_sink_defer.c) */
        bool rel_known;  /* rel_id is the source relation recorded for it (see check_relation) */
        uint32_t rel_id;
        bool rel_prev_known; /* rel_prev: the one before, a dropped table's */
        uint32_t rel_prev;
        Group groups[GROUPS_MAX];
        int ngroups, nheld;
        KeyEntry *keys; /* owned, open addressing, kcap a power of two or 0 */
        size_t kcap, nkeys;
        Shape shapes[SHAPES_MAX]; /* statements of its runs, without building their text again */
        int nshapes, next_shape;
} TState;

struct Sink {
        const ConnectorConf *conf; /* borrowed, outlives the sink */
        const PipelineConf *pipe;  /* borrowed */
        PGconn *conn;              /* owned */
        char ctx[256];             /* log context */
        char origin[600];          /* "cdcsync_<pipeline>" */
        bool origin_ok;            /* the session is marked with the origin */
        int worker;                /* apply worker (SinkOps.open_worker); only worker 0 holds the origin, which one
                                    * session at a time can: the others' writes are unmarked (one-way pipelines only) */
        bool rels_ok;              /* cdcsync.relations is there: re-created tables are detected */
        bool defer_ok;             /* cdcsync.deferred_indexes is there: a copy may build indexes after */
        bool in_txn;               /* BEGIN sent, neither COMMIT nor ROLLBACK done */
        bool have_durable;         /* a batch was committed in this session: ... */
        Position durable;          /* ...its checkpoint's position, what poll_durable() reports */
        bool failed;               /* an error was seen in this transaction: only rollback helps */
        CdcError first_err;        /* that error, returned again by apply/commit */
        Pending pending[PENDING_MAX + 8]; /* ring */
        int phead, npending;
        int nexpect;        /* pending entries with expect_one */
        PGresult *captured; /* owned: result of the last capture entry */
        Map stmts;          /* SQL text -> prepared statement name */
        Map tables;         /* quoted "schema"."name" of sink tables known to exist */
        unsigned next_stmt;
        const char **params; /* reused parameter array */
        char *range_keep;    /* owned: the kept keys of the last range delete, a parameter until sent */
        int nparams_cap;
        uint8_t *mask; /* reused column mask */
        int mask_cap;
        TState **ts; /* owned: tables seen this session (cleared with `tables`) */
        int nts, ts_cap;
        /* Tables whose last change was looked up the whole way to a held run, and their state:
         * the next change of such a table goes straight to its run (sink_apply). Cleared with
         * ts. A few: OLTP transactions interleave a few tables. */
        struct {
                const Table *t;
                TState *ts;
        } hot[HOT_MAX];
        int next_hot;
        uint64_t txn_xid; /* the source transaction of the last change applied... */
        Position txn_pos; /* ...its commit position (as its changes carry it) */
        uint32_t txn_row; /* ...and that change's place in it, from 1: names a keyless row */
        Deadline *guard;  /* owned: bounds every wait for the server (timeout_s without an answer) */
        bool guarded;     /* inside a guarded call: each result read pushes the deadline back */
        int64_t fence;    /* ha = on: lease generation each commit checks (lease.h); 0: none */
        /* A COPY ... FROM STDIN in progress (pg_sink_copy.c): while active the connection is out
         * of pipeline mode, nothing is held and no result is pending. */
        struct {
                bool active;
                TState *ts; /* the table copied into; its rows have the shape ts->table */
                char *buf;  /* owned: COPY text not sent yet, cap bytes (allocated on first use) */
                size_t len, cap;
                uint64_t rows; /* rows of this COPY */
        } copy;
};

/* Entries of the ring Sink.pending. */
#define RING ((int)(sizeof(((Sink *)0)->pending) / sizeof(((Sink *)0)->pending[0])))

/* Rows counted in a target table that a first copy (snapshot = initial) refuses, at most. */
#define CHECK_EMPTY_COUNT_MAX 1000000

/* The remedy that errors about the replication origin privileges name (pg_origin.c, pg_sink_check.c). */
#define ORIGIN_GRANT                                                                                                   \
        "run GRANT EXECUTE ON FUNCTION pg_replication_origin_oid(text), "                                              \
        "pg_replication_origin_create(text), pg_replication_origin_session_setup(text), "                              \
        "pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO <user> (or use a superuser)"

/* The functions each file lends the others; each is described where it is defined. */

/* pg_map.c */
uint64_t pg_map_hash_str(const char *s);
MapEntry *pg_map_find(const Map *m, const char *key);
void pg_map_clear(Map *m);
int pg_map_add(Map *m, char *key, char *name);

/* pg_pipe.c: the connection, its pipeline and pending-result ring */
void pg_pipe_guard_on(Sink *k);
void pg_pipe_guard_progress(Sink *k);
int pg_pipe_result_error(Sink *k, const PGresult *res, const char *what, CdcError *err);
int pg_pipe_guard_off(Sink *k, int r, CdcError *err);
void pg_pipe_conn_close(Sink *k);
int pg_pipe_conn_error(Sink *k, const char *what, CdcError *err);
int pg_pipe_fail(Sink *k, int r, CdcError *err);
int pg_pipe_exec_params(Sink *k, const char *sql, int n, const char *const *vals, const char *what, PGresult **ret,
                        CdcError *err);
bool pg_pipe_sqlstate_is(const CdcError *err, const char *state);
int pg_pipe_push_pending(Sink *k, PendingKind kind, bool expect_one, bool capture, char *what);
void pg_pipe_rows_free(PendingRows *rows);
int pg_pipe_drain(Sink *k, int keep, CdcError *err);
int pg_pipe_send_sync(Sink *k, CdcError *err);
int pg_pipe_send_query(Sink *k, const char *sql, int n, const char *const *vals, const char *what, bool capture,
                       CdcError *err);
int pg_pipe_statement(Sink *k, const char *sql, int nparams, const char **ret, CdcError *err);
void pg_pipe_forget_statements(Sink *k);

/* pg_target.c: target tables */
int pg_target_ensure_table(Sink *k, const char *schema, const char *name, const Table *t, CdcError *err);
int pg_target_ensure_columns(Sink *k, TState *ts, const Table *t, CdcError *err);
void pg_target_ts_drop_all(Sink *k);
int pg_target_table_state(Sink *k, const char *schema, const char *name, const char *qname, const Table *t,
                          TState **ret, CdcError *err);
int pg_target_check_empty(Sink *k, const char *schema, const char *name, CdcError *err);
void pg_target_ts_forget(Sink *k, TState *ts);
int pg_target_check_relation(Sink *k, TState *ts, const char *schema, const char *name, const Table *t,
                             const TxnInfo *txn, bool *ret_recreated, bool *ret_skip, CdcError *err);

/* pg_held.c: held runs */
void pg_held_ts_clear_held(TState *ts);
void pg_held_forget_shapes(TState *ts);
int pg_held_flush_table(Sink *k, TState *ts, CdcError *err);
int pg_held_flush_all(Sink *k, CdcError *err);
int pg_held_hold(Sink *k, TState *ts, const Change *c, bool copyable, CdcError *err);

/* pg_sink_defer.c: index builds after an initial copy */
void pg_defer_setup(Sink *k);
int pg_defer_known(Sink *k, const char *qname, bool *ret, CdcError *err);
int pg_defer_indexes(Sink *k, TState *ts, const Table *t, CdcError *err);
int pg_defer_rebuild(Sink *k, TState *ts, CdcError *err);
int pg_defer_rebuild_copied(Sink *k, const Change *c, CdcError *err);

/* pg_sink_copy.c: runs of snapshot inserts sent with COPY */
#define COPY_MIN_ROWS 256 /* rows of a held insert run before it turns into a COPY */
bool pg_sink_copy_fits(const TState *ts, const TxnInfo *txn, const Change *c);
int pg_sink_copy_start(Sink *k, TState *ts, CdcError *err);
int pg_sink_copy_row(Sink *k, const Value *v, CdcError *err);
/* The same for a row already in COPY's text format (Change.copy_text: len bytes, no newline). */
int pg_sink_copy_text(Sink *k, const char *text, size_t len, CdcError *err);
int pg_sink_copy_end(Sink *k, CdcError *err);
void pg_sink_copy_abort(Sink *k);
void pg_sink_copy_reset(Sink *k);

/* pg_origin.c: the replication origin */
int pg_origin_stale(PGconn *c, const PipelineConf *pipe, char **ret_names, char **ret_sql);
int pg_origin_setup(Sink *k, CdcError *err);

/* pg_sink_check.c: SinkOps.check */
int pg_sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err);

/* pg_sink.c */
/* The pipeline's source type (its facts, connector.h), NULL when it has none. */
const ConnectorType *pg_sink_source_type(const Sink *k);
/* The source's tables are described in PostgreSQL's terms (ConnectorType.source_dialect): their
 * declared types, the types they need and their generated columns are kept. */
bool pg_sink_native(const Sink *k);
char *pg_sink_describe(const char *op, const char *schema, const char *name, const Table *t, const Value *kv,
                       const uint8_t *mask, uint32_t row);
int pg_sink_grow(Sink *k, int ncols);
/* pg_sink_range.c: the statement of a CHANGE_RANGE delete of t (mapped to schema.name), its
 * parameters set in k->params (*ret_np of them). */
int pg_sink_range_statement(Sink *k, const Table *t, const Change *c, const char *schema, const char *name,
                            char **ret_sql, int *ret_np, CdcError *err);
int pg_sink_rollback(Sink *k);
