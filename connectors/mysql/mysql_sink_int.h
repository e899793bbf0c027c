/* Private declarations shared by the files of the MySQL/MariaDB sink (not part of include/). */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include "mysql/mysql_conn.h"
#include "mysql/mysql_sink.h"
#include "mysql/mysql_sql.h"

#define STMT_CACHE_MAX 64
#define ROW_COLS_SHOWN 3   /* columns of a keyless row quoted in an error message... */
#define ROW_VALUE_SHOWN 24 /* ...and bytes of each */

typedef struct CachedStmt {
        struct CachedStmt *next;
        char *sql; /* owned */
        MYSQL_STMT *st;
} CachedStmt;

/* Prepared statements by text, bounded: when full it is emptied (tables are few and statements
 * re-prepare fast). */
typedef struct {
        CachedStmt *head;
        int n;
} StmtCache;

/* Param of a statement, see make_param. */
typedef struct {
        char *data; /* owned */
        size_t len;
        bool null;
        bool binary;
} Param;

/* A run of consecutive changes with the same statement text, held back and sent as one
 * array-bound execution (MariaDB's COM_STMT_BULK_EXECUTE): one round trip for the whole run
 * instead of one per row, and the server applies the rows in order, so the result is that of
 * executing them one by one. Any other statement, the checkpoint, and commit flush it first. */
#define RUN_MAX_ROWS 1000
#define RUN_MAX_BYTES ((size_t)4 << 20) /* well under max_allowed_packet (16 MB by default) */

typedef struct {
        CachedStmt *stmt; /* NULL: nothing pending; one of Sink.stmts */
        char what[600];   /* for error messages: "insert on `db`.`t`" */
        int nparams;      /* per row */
        bool expect;      /* every row must find exactly one target row (update, delete) */
        int nrows, cap;   /* rows held; rows keys[] has room for */
        size_t pcap;      /* Params params[] has room for (the statement, so nparams, varies) */
        Param *params;    /* nrows * nparams, owned */
        char **keys;      /* per row, owned: "(id)=(42)", so an error names the row */
        bool *dead;       /* per row: cancelled (mysql_sink_cancel_delete), never sent */
        int ndead;
        bool is_delete; /* its statement deletes a row */
        size_t bytes;
        /* The multi-row form of the run (see multi_send): mkind MULTI_NONE, or the kind every row
         * qualifies for; mt (one reference) and the sink-side names give the statement its text. */
        int mkind;
        Table *mt;
        char mschema[256], mname[256];
} Run;

/* Multi-row statements: the server runs an array-bound execution as one statement per row (open
 * and lock the table, plan, write a table map to the binlog: most of its time in a catch-up); one
 * INSERT ... VALUES (...),(...) or DELETE ... WHERE key IN (...) does that once for many rows.
 * Only for tables whose changes may be reordered (TargetTable.reorder: the primary key is the
 * source's key, integers or UUIDs, no other unique index, foreign key or trigger) with a one-column
 * key, so a row is found by its key alone and at most one row has it. */
enum {
        MULTI_NONE,
        MULTI_INSERT, /* params: every column, in table order */
        MULTI_DELETE, /* params: the key */
        MULTI_UPDATE, /* whole-row update keeping its key; params: every column, then the key */
        MULTI_LOAD,   /* a snapshot's insert, as MULTI_INSERT, which may go by LOAD DATA (mysql_sink_load.c) */
};
#define MULTI_MIN 2
#define MULTI_MAX_ROWS 4000    /* rows of a multi-row run; and at most MULTI_MAX_PARAMS placeholders */
#define MULTI_MAX_PARAMS 60000 /* the protocol's limit is 65535 */
#define MULTI_CACHE_ROWS 64    /* statements of up to this many rows are kept prepared (sizes recur) */
#define MULTI_STMT_MAX 64

/* Several runs may be pending at once, one per statement: a batch of small transactions
 * (update, insert, delete, hot-row update, again and again) then costs a few round trips, not
 * one per row. That reorders changes across runs, which is only sound when no two pending
 * changes touch the same row and rows cannot affect each other: the target's primary key is the
 * source key, of integers or UUIDs, with no other unique index, no foreign key and no trigger
 * (TargetTable.reorder).
 * Runs are sent in the order they were started, so a change of a row may join any run from the
 * one holding the row's latest pending change on (a delete after an update of the row, in a run
 * started later); where the run of its statement is earlier, it starts a new one. */
#define RUNS_MAX 16

#define KEY_EMPTY (-1)
#define KEY_RELEASED (-2) /* no pending change of the row orders the next one: it may go to any run */

typedef struct {
        uint64_t hash;
        int run;   /* the pending run of the row's latest change, or KEY_EMPTY, KEY_RELEASED */
        int row;   /* that change's row in the run; -1 when run is only a floor (see cancel_delete) */
        int prev;  /* the run of the change before it, or KEY_RELEASED */
        char *key; /* owned: "schema.table" NUL, then per key column its length and bytes */
        size_t len;
} KeySlot;

typedef struct {
        KeySlot *slots;
        size_t cap, n; /* cap: a power of two */
} KeySet;

/* The source relation a source table had when last seen (see check_relation); prev: the one
 * before it, whose changes are those of a dropped table. */
typedef struct RelSeen {
        struct RelSeen *next;
        char *schema, *name; /* owned: source-side names */
        uint32_t rel_id, prev;
        bool has_prev, ready; /* ready: the target is the new relation's (see check_relation) */
} RelSeen;

typedef struct SinkSender SinkSender;

typedef struct TargetTable {
        struct TargetTable *next;
        char *schema, *name;         /* owned: sink-side names */
        Table *shape;                /* one reference: the source shape last checked against the target */
        bool reorder_known, reorder; /* for shape: may its changes be reordered (see RUNS_MAX) */
} TargetTable;

struct Sink {
        const ConnectorConf *conn;
        const PipelineConf *pipe;
        MYSQL *m;
        StmtCache stmts;
        StmtCache mstmts;   /* multi-row statements, a cache of their own: used only while sent */
        TargetTable *known; /* tables seen to exist */
        bool rels;          /* `cdcsync`.`relations` is kept (a PostgreSQL source): see check_relation */
        RelSeen *seen;      /* what it says, for the source tables seen since the last rollback */
        MYSQL *aux;         /* owned or NULL: reads `cdcsync`.`relations` outside the batch */
        Run runs[RUNS_MAX]; /* pending, in the order they were started; nruns used */
        int nruns;
        bool ordered; /* the pending run holds a change that nothing may overtake */
        KeySet keys;  /* row keys of the pending runs → run, for reordering */
        bool bulk;    /* the server takes array-bound executions (MariaDB 10.2+) */
        bool in_txn;
        bool have_durable; /* a batch was committed in this session: ... */
        Position durable;  /* ...its checkpoint's position, what poll_durable() reports */
        char ctx[160];
        char *qbuf; /* owned: the text buffer sink_apply builds each change's statement in, kept */
        size_t qcap;
        uint64_t txn_xid; /* the source transaction of the last change applied... */
        Position txn_pos; /* ...its commit position (as its changes carry it) */
        uint32_t txn_row; /* ...and that change's place in it, from 1: names a keyless row */
        int64_t fence;    /* ha = on: lease generation each commit checks (lease.h); 0: none */
        SinkSender *tx;   /* owned: the sender thread (mysql_sink_sender.c); NULL: statements go from the caller */
        bool begin_due;   /* with tx: begin() came, START TRANSACTION is not sent yet */
        int load;         /* LOAD DATA LOCAL (mysql_sink_load.c): 0 not tried yet, 1 the server takes it, -1 not */
};

/* mysql_batch.c */
char *mysql_sink_row_key(const char *schema, const char *name, const Table *t, const Value *img, size_t *ret_len);
/* A session of the sink's server (the sink's own, a DDL one) as the connector says: with
 * binlog = off, out of the binlog (sql_log_bin = 0), else a clear error. ctx: for that error. */
int mysql_sink_conn_open(const ConnectorConf *conn, const char *ctx, unsigned long flags, MYSQL **ret, CdcError *err);
int mysql_sink_exec(Sink *k, const char *sql, Param *p, int n, const char *what, uint64_t *ret_rows, CdcError *err);
/* Sends every pending run and waits for the answers (and for the sender's job first). */
int mysql_sink_pending_flush(Sink *k, CdcError *err);
/* One run: sent, its rows checked, and emptied (also on failure). */
int mysql_sink_run_send(Sink *k, Run *u, CdcError *err);
/* The same without emptying it, so that the thread that filled it frees it (see
 * mysql_sink_sender.c); its cancelled rows are dropped first unless run_compact did. */
int mysql_sink_run_exec(Sink *k, Run *u, CdcError *err);
void mysql_sink_run_compact(Run *u);
void mysql_sink_run_clear(Run *u);
/* Forgets the pending runs' row keys (their runs went to the sender). */
void mysql_sink_keys_reset(Sink *k);
/* The n statements sqls prepared in the statement cache together, so that the sender finds each
 * there and never prepares (see mysql_sink_sender.c). */
int mysql_sink_warm(Sink *k, const char *const *sqls, int n, CdcError *err);
/* A delete and then an insert of one row (sysbench's and many applications' way to replace a
 * row) may become one whole-row update: when the row's pending change is a delete that must find
 * its row, in a run that may be reordered, that delete is cancelled (never sent) and true is
 * returned; the caller then sends the insert as an update that must find the row, which keeps
 * the delete's check that the row was there and lets it join the runs of updates instead of
 * flushing everything pending. rk: the row key (mysql_sink_row_key), borrowed. */
bool mysql_sink_cancel_delete(Sink *k, const char *rk, size_t len);
int mysql_sink_run_add(Sink *k, const char *sql, Param *p, int np, bool expect, const char *opname, char *key,
                       char **rk, const size_t *rkl, int nrk, const Table *t, const char *schema, const char *name,
                       int mkind, CdcError *err);
int mysql_sink_simple(Sink *k, const char *sql, CdcError *err);
int mysql_sink_error(Sink *k, MYSQL_STMT *st, const char *what, CdcError *err);
void mysql_sink_cache_free(StmtCache *cache);
void mysql_sink_keys_free(KeySet *ks);
void mysql_sink_params_free(Param *p, int n);
void mysql_sink_pending_clear(Sink *k);
void mysql_sink_run_free(Run *u);

/* mysql_sink_load.c: a MULTI_LOAD run of at least LOAD_MIN_ROWS rows as one LOAD DATA LOCAL
 * statement. *ret_done false (and 0 returned): nothing of it was applied, the caller sends it as
 * multi-row upserts (the server refuses LOAD DATA LOCAL, or it would not store exactly what the
 * upserts store: a warning, a skipped row). */
#define LOAD_MIN_ROWS 256
int mysql_sink_load_send(Sink *k, Run *u, bool *ret_done, CdcError *err);

/* mysql_sink_range.c: a CHANGE_RANGE delete of t (mapped to schema.name), sent at once. */
int mysql_sink_range_delete(Sink *k, const Table *t, const Change *c, const char *schema, const char *name,
                            CdcError *err);

/* mysql_sink_sender.c: see there. Without a sender (k->tx NULL) idle and ready return 0 at once. */
int mysql_sink_sender_open(Sink *k, CdcError *err);
void mysql_sink_sender_close(Sink *k);
/* Waits for the sender's job; a failed job's error. */
int mysql_sink_idle(Sink *k, CdcError *err);
/* idle, then a due START TRANSACTION: the session is the caller's to send on. */
int mysql_sink_ready(Sink *k, CdcError *err);
/* Gives the pending runs to the sender (after its job under way), with the checkpoint and
 * COMMIT when ckpt is set (ts: its source commit time, "" when unknown). */
int mysql_sink_hand_over(Sink *k, const Checkpoint *ckpt, const char *ts, CdcError *err);
int mysql_sink_sender_poll(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err);
/* After a rollback: the job under way ended, its failure forgotten. */
void mysql_sink_sender_reset(Sink *k);

/* mysql_sink.c */
/* The checkpoint, the lease's fence when set, and COMMIT (ts: source commit time or ""). */
int mysql_sink_commit_batch(Sink *k, const Checkpoint *ckpt, const char *ts, CdcError *err);
extern const char mysql_sink_checkpoint_sql[];
int mysql_sink_make_param(Sink *k, const Table *t, int i, const Value *v, Param *p, CdcError *err);

/* mysql_lease.c: SinkOps.lease_* (the pipeline's row in `cdcsync`.`leases`, on a session of its
 * own) and the fence commit() checks in the batch's transaction when k->fence is set. */
int mysql_sink_lease_open(const ConnectorConf *conn, const PipelineConf *pipe, int takeover_s, SinkLease **ret,
                          CdcError *err);
int mysql_sink_lease_step(SinkLease *l, const char *instance, int64_t held, int64_t *ret_held, LeaseSeen *ret_seen,
                          CdcError *err);
int mysql_sink_lease_release(SinkLease *l, int64_t held, CdcError *err);
SinkLease *mysql_sink_lease_free(SinkLease *l);
int mysql_sink_fence_check(Sink *k, CdcError *err);
extern const char mysql_sink_fence_sql[];
/* Lists the sink session with the lease and records it in the lease row, before it applies
 * anything (transactions of their own); CDC_ERR_LEASE when the generation moved on. */
int mysql_sink_fence_register(Sink *k, CdcError *err);

/* mysql_target.c */
bool mysql_sink_blank_padded(const Column *c);
bool mysql_sink_table_ready(const Sink *k, const Table *t, const char *schema, const char *name);
/* True when applying c sends nothing before its run is added (table known with this shape, its
 * relation seen, not a truncate or range delete): then the sender's job may still run. */
bool mysql_sink_quiet(const Sink *k, const Table *t, const Change *c, const char *schema, const char *name);
int mysql_sink_check_empty(Sink *k, const char *schema, const char *name, CdcError *err);
int mysql_sink_check_relation(Sink *k, const Table *t, const TxnInfo *txn, const char *schema, const char *name,
                              bool *ret_skip, CdcError *err);
int mysql_sink_check_reorder(Sink *k, TargetTable *tt, const Table *t, CdcError *err);
int mysql_sink_ensure_table(Sink *k, const Table *t, const char *schema, const char *name, CdcError *err);
int mysql_sink_map_table(Sink *k, const Table *t, char *schema, size_t sl, char *name, size_t nl);
void mysql_sink_seen_clear(Sink *k);
