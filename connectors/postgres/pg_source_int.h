/* What the files of the PostgreSQL source share (pg_source.c, pg_slot.c, pg_snapshot.c, pg_rel.c):
 * the Source and its helpers; private to connectors/postgres. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "cdcsync/connector.h"
#include "cdcsync/deadline.h"
#include "postgres/pg_chunks.h"
#include "postgres/pgoutput.h"

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
        int64_t end_reported;   /* usec (last_recv's clock): the source's end last passed on */
        bool data_seen;         /* the message being handled is XLogData */
        int64_t reply_asked_at; /* usec: silent stream, a keepalive was requested; 0: not */
        bool heartbeat_failed;
        bool slot_created; /* this run's snapshot created the slot: dropped again if the copy never commits */
        /* Tables copied as of a position the stream has not passed: their changes in transactions
         * committed at or before it are in the copy and dropped (copies.h). Owned. */
        CopiedTable *filters;
        int nfilters;
        /* Tables whose copy was resumed under a later snapshot (COPY_STATE_CONVERGING): their
         * changes in transactions committed at or before pos are applied idempotently. Owned. */
        CopiedTable *converging;
        int nconverging;
        /* A copy of tables added to `tables` (and the records of removed ones), made as of
         * copy_pos and handed on when the stream reaches it. */
        bool copy_pending;
        Position copy_pos;
        PGconn *copy;    /* holds the copy's snapshot in an open transaction; guarded by guard_copy */
        char **copy_new; /* owned "schema.table" entries */
        int ncopy_new;
        char **copy_gone;
        int ncopy_gone;
        Deadline *guard_sql, *guard_repl; /* owned: bound every wait for the server (timeout_s) */
        Deadline *guard_copy;             /* owned: the same for copy (and the walsender making its slot) */
        struct PgResnap *resnap;          /* owned: tables being copied again while streaming (pg_resnapshot.c) */
        PipelineIO *io;
        const char *ctx;
        char open_ctx[200]; /* ctx before run() hands over the pipeline's own */
        char spill_dir[400];
};

/* The functions each file lends the others; each is described where it is defined. */

/* pg_source.c: helpers, streaming */
int64_t pg_source_now_usec(void);
void pg_source_format_position(Position p, char *buf, size_t len);
int pg_source_parse_position(const char *text, Position *ret);
void pg_source_default_name(const char *pipeline, char *buf, size_t len);
const char *pg_source_errtext(Source *s, PGconn *c, const PGresult *res, char *buf, size_t len);
PGresult *pg_source_query(Source *s, PGconn *c, const char *sql, int n, const char *const *params, CdcError *err);
int pg_source_timeout_error(Source *s, CdcError *err);
PGresult *pg_source_exec_slot(Source *s, PGconn *c, Deadline *g, const char *sql, bool *ret_timeout);
int pg_source_emit(Source *s, Event *ev, CdcError *err);
int pg_source_send_begin(Source *s, CdcError *err);
Source *pg_source_free(Source *s);

/* pg_slot.c: slot and publication */
int pg_slot_check_server(Source *s, CdcError *err);
int pg_slot_state(Source *s, bool *ret_invalid, CdcError *err);
int pg_slot_ensure_publication(Source *s, CdcError *err);
void pg_slot_list_free(char ***list, int *n);
int pg_source_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err);
int pg_slot_follow_tables(Source *s, const SourceStart *start, CdcError *err);
int pg_slot_resolve_start(Source *s, const SourceStart *start, CdcError *err);
void pg_slot_drop_unused(Source *s);
int pg_source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err);

/* pg_pubcols.c: publication column lists */
int pg_pubcols_list(Source *s, const char *table, char **ret, CdcError *err);
int pg_pubcols_check(Source *s, CdcError *err);
/* pg_pubwhere.c: publication row filters. *ret: " WHERE (expr)" for table's where condition where
 * the publication can filter exactly as cdcsync does without refusing the source's own writes,
 * else "" (malloc'd). Returns 0 or a CdcError code. */
int pg_pubwhere(Source *s, const char *table, char **ret, CdcError *err);

/* pg_rel.c: relations */
Table *pg_rel_lookup(Source *s, uint32_t rel_id);
int pg_rel_describe_table(Source *s, Table *t, CdcError *err);
int pg_rel_on_relation(Source *s, const PgoutputMsg *m, CdcError *err);

/* pg_copy.c: the chunked, parallel copy */
typedef struct PgCopy PgCopy;
/* A copy whose transactions commit at pos; chunked: one transaction and record per chunk (a sink
 * that keeps records), else the whole copy is one transaction. */
int pg_copy_new(Source *s, Position pos, bool chunked, PgCopy **ret, CdcError *err);
/* Adds table t (a reference taken): its rows with change_flags, a TRUNCATE (truncate_flags) with
 * its first chunk when truncate, its chunks planned around the done ones (ndone, kept from an
 * earlier attempt, done_rows rows), and its record once every chunk is done: final_state at
 * final_pos. Reads the table's size on s->sql. */
int pg_copy_add_table(PgCopy *cp, Table *t, uint32_t change_flags, bool truncate, uint32_t truncate_flags,
                      const PgBlockRange *done, int ndone, uint64_t done_rows, CopyState final_state,
                      Position final_pos, CdcError *err);
/* The chunk record of blocks r of the table added last, from an earlier attempt: dropped with the
 * table's final record (its rows are read again). */
int pg_copy_forget_chunk(PgCopy *cp, PgBlockRange r, CdcError *err);
/* Copies every chunk over the readers (each in a transaction holding the copy's snapshot). */
int pg_copy_run(PgCopy *cp, PGconn **readers, int nreaders, CdcError *err);
PgCopy *pg_copy_free(PgCopy *cp);

/* pg_partitions.c: partitioned tables */
/* What a copy needs of a relation's storage. */
typedef struct {
        bool partitioned; /* relkind 'p': no rows of its own, they are its leaf partitions' */
        uint64_t blocks;  /* its heap's size in blocks; partitioned: the largest leaf's */
        double reltuples; /* the planner's row estimate (<= 0: unknown); partitioned: the leaves' sum */
        char storage[48]; /* its filenode; partitioned: an md5 of its leaves and their filenodes */
} PgRelSize;
/* The WITH clause of CREATE PUBLICATION ("" before PostgreSQL 13): partitions publish through
 * their root. */
const char *pg_partitions_publication_with(const Source *s);
/* The storage of relation relid (on s->sql). */
int pg_partitions_describe(Source *s, uint32_t relid, PgRelSize *ret, CdcError *err);
/* "ONLY " for a table read from its own heap, "" for a partitioned one (read through its root). */
const char *pg_partitions_only(const PgRelSize *z);
/* Refuses (kind conf) a table of `tables` that is a partition of another table of `tables`. */
int pg_partitions_check_tables(Source *s, CdcError *err);
/* Warns when the (existing) publication publishes partitions under their own names. */
void pg_partitions_check_publication(Source *s);

/* pg_snapshot.c: copies */
bool pg_snapshot_copied_later(Source *s, const Table *t);
int pg_snapshot_emit_copy(Source *s, CdcError *err);
int pg_snapshot_initial(Source *s, const SourceStart *start, Position *ret_start, CdcError *err);
int pg_snapshot_resume(Source *s, const SourceStart *start, CdcError *err);
int pg_snapshot_converge(Source *s, Event *ev, CdcError *err);
/* Table schema.name as the catalogue on s->sql describes it (*ret: one reference); -ENOENT when
 * there is none. */
int pg_snapshot_describe(Source *s, const char *schema, const char *name, Table **ret, CdcError *err);

/* pg_resnapshot.c: re-snapshot while streaming. open() takes up the re-snapshots the registry
 * says are under way; step() runs between the stream's transactions (requests, next chunk);
 * on_message() sees the watermarks; a change of a table owns() says is being copied again goes
 * through on_row() (which emits it), a truncate of one is told to on_truncate(). */
typedef struct PgResnap PgResnap;
int pg_resnap_open(Source *s, const SourceStart *start, CdcError *err);
void pg_resnap_free(Source *s);
int pg_resnap_step(Source *s, CdcError *err);
int pg_resnap_on_message(Source *s, const PgoutputMsg *m, CdcError *err);
bool pg_resnap_owns(Source *s, const Table *t);
int pg_resnap_on_row(Source *s, Event *ev, CdcError *err);
int pg_resnap_on_truncate(Source *s, const Table *t, CdcError *err);
