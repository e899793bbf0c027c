/* Private declarations shared by the files of the MySQL/MariaDB binlog source (not part of include/). */
#pragma once

#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include <mariadb_rpl.h>

#include "cdcsync/copies.h"
#include "cdcsync/log.h"
#include "mysql/binlog.h"
#include "mysql/mysql_conn.h"
#include "mysql/mysql_source.h"

#define HEARTBEAT_NS "1000000000" /* idle servers send a heartbeat every second */

typedef struct SchemaEntry {
        struct SchemaEntry *next;
        char *schema, *name;    /* owned */
        bool wanted;            /* covered by the pipeline's tables */
        Table *table;           /* one reference, NULL until a TABLE_MAP built it */
        BinlogColumnInfo *info; /* owned, ncols */
        char **elem_store;      /* owned: every ENUM/SET name string, nelem_store entries */
        int nelem_store;
        int ncols;
        /* loaded from information_schema */
        char **col_names, **col_types, **col_charsets;
        bool *col_key;
} SchemaEntry;

typedef struct TableMapEntry {
        struct TableMapEntry *next;
        BinlogTableMap *tm; /* owned */
        SchemaEntry *se;    /* borrowed from the schema cache */
} TableMapEntry;

struct Source {
        const ConnectorConf *conn;
        const PipelineConf *pipe;
        MYSQL *sql;  /* queries: information_schema, SHOW BINARY LOGS */
        MYSQL *repl; /* the replica connection */
        MARIADB_RPL *rpl;
        char ctx[160];
        SchemaEntry *schemas;
        TableMapEntry *maps;
        /* stream state */
        char file[512];
        uint64_t file_seq;
        bool checksum;
        bool in_txn, standalone, begun;
        TxnInfo txn;
        unsigned zero_dates;
        /* A row image as binlog_decode_row() writes it (a malloc per value, freed by this thread
         * at once); what goes on is values_pack()ed from it, one allocation per image. */
        Value *decoded;
        int ndecoded;
        /* GTID tracking, for the checkpoint text of each COMMIT and KEEPALIVE emitted (source
         * thread only). */
        bool gtid_known;      /* the state at gtid_from came from the server: texts carry it */
        char base[256];       /* the binlog base name ("mariadb-bin") */
        Position gtid_from;   /* where the stream started: positions before it carry file:pos only */
        MysqlGtidState state; /* every transaction read so far: the state after the newest one */
        bool state_ok;        /* false once a transaction's domain did not fit in the state */
        MysqlGtid cur;        /* the open transaction's GTID */
        bool have_cur;
        bool mariadb; /* MariaDB GTIDs (MySQL's differ: its checkpoints carry file:pos only) */
        bool by_gtid; /* the dump was started from a GTID state */
        char connect_state[MYSQL_SOURCE_GTID_MAX * 48];
        Position start_pos; /* the checkpoint's Position: a GTID start must land after it */
        bool start_checked;
        /* Tables copied as of a binlog position the stream has not passed: their row events at or
         * before it are in the copy and dropped (copies.h). Owned. */
        CopiedTable *filters;
        int nfilters;
        /* Tables whose initial copy was resumed under a later snapshot (COPY_STATE_CONVERGING):
         * their row events at or before its position are applied idempotently
         * (mysql_source_converge). Owned. */
        CopiedTable *converging;
        int nconverging;
        /* A copy of tables added to `tables` (and the records of removed ones), made as of
         * copy_pos and handed on when the stream reaches it. */
        bool copy_pending;
        Position copy_pos;
        MYSQL *copy;                  /* holds the copy's consistent snapshot */
        char **copy_new, **copy_gone; /* owned "schema.table" entries */
        int ncopy_new, ncopy_gone;
};

/* One row of SHOW VARIABLES / SHOW STATUS style queries, filled by mysql_source_var_row. */
typedef struct {
        char vals[8][128];
        int n;
} VarRow;

/* mysql_position.c */
const MysqlGtid *mysql_source_gtid_find(const MysqlGtidState *st, uint32_t domain);
int mysql_source_file_seq(const char *name, uint64_t *ret);
int mysql_source_parse_u64(const char *s, size_t n, uint64_t *ret);

/* mysql_preflight.c */
/* The GTID state at file:off from the server (a file:pos start, the initial snapshot's position):
 * what the checkpoint texts start from. */
int mysql_source_seed_gtid(Source *s, const char *file, uint64_t off, CdcError *err);
int mysql_source_choose_start(Source *s, const SourceStart *start, PipelineIO *io, uint64_t *ret_off, CdcError *err);
int mysql_source_preflight(MYSQL *m, const ConnectorConf *conn, const char *ctx, CdcError *err);
int mysql_source_var_row(void *ud, char **cells, const unsigned long *lens, int ncols);

/* mysql_shape_check.c */
/* check --connect: the columns that pipe's columns, exclude_columns, mask_columns and where name
 * exist in its source tables (a missing table is skipped: the tables check names it), and no
 * primary key column is left out. Returns 0 or a "conf" CdcError code naming key, table and
 * column. */
int mysql_source_shape_check(MYSQL *m, const PipelineConf *pipe, CdcError *err);

/* mysql_schema.c */
TypeClass mysql_source_column_class(const BinlogColumn *col, const BinlogColumnInfo *info);
bool mysql_source_pipeline_wants(const PipelineConf *p, const char *schema, const char *table);
int mysql_source_on_table_map(Source *s, const BinlogHeader *h, CdcError *err);
int mysql_source_schema_load(Source *s, const char *schema, const char *name, SchemaEntry **ret, CdcError *err);
uint8_t mysql_source_type_code_of(const char *ct);
void mysql_source_schema_cache_clear(Source *s);
void mysql_source_schema_entry_free(SchemaEntry *e);

/* mysql_snapshot.c */
/* A table as the copies read it. */
typedef struct {
        Table *t;       /* one reference */
        uint8_t *codes; /* owned: each column's binlog type code */
        char *select;   /* owned: "SELECT <each column in the stream's text form> FROM `schema`.`name`" */
        char *qtable;   /* owned: "`schema`.`name`" */
        int key_col;    /* the primary key's first column when it is an integer (chunks are its ranges), else -1 */
        bool key_signed;
        char *qkey; /* owned: key_col's name quoted, NULL without key_col */
} SnapTable;
/* Describes schema.name from information_schema (on s->sql). *ret is the caller's. */
int mysql_snapshot_describe(Source *s, const char *schema, const char *name, SnapTable **ret, CdcError *err);
/* Accepts NULL, returns NULL. */
SnapTable *mysql_snapshot_table_free(SnapTable *st);
/* One row of st->select as an insert with flags (*ret owned by the caller); a zero date becomes
 * NULL and counts in *zero_dates. */
int mysql_snapshot_row(const Source *s, const SnapTable *st, MYSQL_ROW row, const unsigned long *lens, uint32_t flags,
                       unsigned *zero_dates, Change *ret, CdcError *err);
int mysql_source_emit_copy(Source *s, PipelineIO *io, CdcError *err);
int mysql_source_follow_tables(Source *s, const SourceStart *start, CdcError *err);
/* The initial snapshot (chunked: a sink transaction and a record per chunk). */
int mysql_source_snapshot(Source *s, PipelineIO *io, bool chunked, char *file, size_t flen, uint64_t *ret_off,
                          CdcError *err);
/* Resumes a chunked initial copy cut short (records "copying"), before the stream starts. */
int mysql_source_resume(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err);
/* Emits a converging table's change in its idempotent form (ev's change taken); returns what
 * pipeline_io_emit returns. */
int mysql_source_converge(Source *s, PipelineIO *io, Event *ev);
void mysql_source_names_free(char ***list, int *n);

/* mysql_source.c */
void mysql_source_set_base(Source *s, const char *file);
/* The checkpoint text of position p, read up to it: file:pos and the GTID state. */
void mysql_source_checkpoint_text(const Source *s, Position p, char *buf, size_t len);
