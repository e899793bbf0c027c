/* The change model every part shares: values, tables, changes, transactions, positions. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/vclock.h"

/* Portable class of a column's type, so a sink of another system can convert the text form. */
typedef enum {
        TYPE_TEXT = 0,
        TYPE_INTEGER,
        TYPE_NUMERIC,
        TYPE_FLOAT,
        TYPE_BOOLEAN,
        TYPE_BYTES, /* text form: PostgreSQL hex, "\x0a1b..." */
        TYPE_DATE,
        TYPE_TIME,
        TYPE_TIMESTAMP,
        TYPE_TIMESTAMPTZ,
        TYPE_JSON,
        TYPE_UUID,
        TYPE_ARRAY,
        TYPE_OTHER,
} TypeClass;

const char *type_class_name(TypeClass c);

typedef struct {
        char *name;        /* owned */
        char *type_name;   /* owned: the source's declared type, e.g. "numeric(10,2)", "text[]" */
        char *base_type;   /* owned or NULL: a PostgreSQL domain's base type, e.g. "numeric(10,2)", which
                            * a sink of another system maps (cls is the base type's class too) */
        uint32_t type_oid; /* source-native type id (PostgreSQL oid, MySQL type code) */
        int32_t typmod;    /* source-native modifier, -1 when none */
        TypeClass cls;
        bool key; /* part of the primary key / replica identity */
} Column;

/* A user-defined type that a column of a PostgreSQL source table needs (also through a domain,
 * composite, range or array), so that a PostgreSQL sink creating the table can create it first. */
typedef struct {
        char *schema; /* owned: its schema's name */
        char *name;   /* owned: schema-qualified, quoted where SQL needs it: public.mood */
        char *column; /* owned: the first column of the table that needs it */
        char *ddl;    /* owned: CREATE TYPE / CREATE DOMAIN made from the source's catalogue, or NULL */
        char *why;    /* owned, when ddl is NULL: why it cannot be created so, and what to do */
} TypeDef;

/* A generated column (PostgreSQL GENERATED ALWAYS AS (...) STORED). The source never sends its
 * values (pgoutput leaves it out): it is described only so that a sink can create it. */
typedef struct {
        char *name;      /* owned */
        char *type_name; /* owned: the source's declared type */
        char *expr;      /* owned: the expression as the source's catalogue prints it */
        int pos;         /* how many of the table's cols come before it */
} GenColumn;

/* A table's shape as the source describes it. Immutable once built and shared by reference
 * count between the source's catalogue and every change that points to it. */
typedef struct {
        atomic_int refs;
        char *schema;    /* owned */
        char *name;      /* owned */
        uint32_t rel_id; /* source's id for the relation (pgoutput relation oid) */
        char replident;  /* PostgreSQL replica identity: 'd' default, 'f' full, 'i' index, 'n' nothing */
        int ncols;
        Column *cols;   /* owned, ncols entries */
        TypeDef *types; /* owned, ntypes entries, each after the types it uses (PostgreSQL source) */
        int ntypes;
        GenColumn *gen; /* owned, ngen entries, in column order (PostgreSQL source) */
        int ngen;
        /* The source sends only some of the table's columns (a PostgreSQL publication column list
         * made from columns / exclude_columns): a column left out is not missing by mistake. */
        bool col_list;
} Table;

/* Allocates a table with ncols zeroed columns and one reference. Returns NULL on ENOMEM. */
Table *table_new(const char *schema, const char *name, int ncols);
Table *table_ref(Table *t);
/* Drops one reference; frees on the last. Accepts NULL, returns NULL. */
Table *table_unref(Table *t);
/* Number of key columns (0: the table has no primary key / replica identity). */
int table_nkeys(const Table *t);

typedef enum {
        VALUE_NULL = 0,
        VALUE_TEXT,      /* data holds the text form */
        VALUE_UNCHANGED, /* PostgreSQL unchanged TOAST column: the update did not send it */
} ValueKind;

typedef struct {
        ValueKind kind : 8;
        /* data lies in the allocation of the array it is in (values_pack): it goes with the
         * array, never alone. value_set and value_clear know; nothing else frees data. */
        bool packed : 1;
        uint32_t len; /* bytes in data, not counting the NUL */
        char *data;   /* owned (or packed), NUL-terminated; NULL unless kind == VALUE_TEXT */
} Value;

typedef enum {
        CHANGE_INSERT = 'I',
        CHANGE_UPDATE = 'U',
        CHANGE_DELETE = 'D',
        CHANGE_TRUNCATE = 'T',
} ChangeOp;

enum {
        TRUNCATE_CASCADE = 1,
        TRUNCATE_RESTART_IDENTITY = 2,
        /* The first copy of a table (snapshot = initial): nothing is emptied; the sink checks that
         * the table holds no row and otherwise stops the copy with a "conf" error
         * (conf_copy_refusal). */
        TRUNCATE_CHECK_EMPTY = 4,
        /* Any op: the source delivers at least once (Kafka: what follows the last committed
         * offset is read again after a crash or a rebalance), so the sink applies the change so
         * that applying it again is harmless: an insert, or an update that keeps the key and
         * carries the whole row, becomes an upsert of the after image (ON CONFLICT on the key), and
         * an update or delete that finds no row is not an error. Needs key columns. */
        CHANGE_IDEMPOTENT = 1u << 16,
        /* A delete of a key range (a re-snapshot's chunk, resnapshot.h): every row of the sink
         * table whose key (one integer column) is above before's key value (NULL: no bound) and
         * at most after's (NULL: no bound), and not in Change.keep, is deleted. */
        CHANGE_RANGE = 1u << 17,
};

/* Positions are opaque per source and compare lexicographically on (hi, lo).
 * PostgreSQL: hi = 0, lo = LSN. MySQL: hi = binlog file sequence number, lo = offset. */
typedef struct {
        uint64_t hi;
        uint64_t lo;
} Position;

int position_cmp(Position a, Position b);
bool position_is_zero(Position p);
/* One monotonic 64-bit counter for version vectors (lo when hi == 0, else hi << 40 | lo). */
uint64_t position_counter(Position p);

/* Bytes of a checkpoint's text with its NUL: what every sink's checkpoint column holds. */
#define CHECKPOINT_TEXT_MAX 256

/* A position as a sink stores it for a pipeline: the Position, which orders and is acknowledged,
 * and its text as the source writes it, which can hold what a Position cannot (MySQL: the
 * server's binlog name and the GTID state there). A plain value: copied, never shared. */
typedef struct {
        Position pos;
        char text[CHECKPOINT_TEXT_MAX]; /* NUL-terminated; "" when unknown */
} Checkpoint;

/* The row's version as the engine decided it for a change it hands on, so a sink can publish it
 * (Kafka: under the envelope's source block). A plain value. */
typedef struct {
        VClock vv;                    /* the row's version vector after this change */
        int64_t ts;                   /* usec since epoch: the version's time (source commit time) */
        char origin[VCLOCK_NODE_MAX]; /* connector that wrote this version */
} ChangeVersion;

typedef struct {
        ChangeOp op;
        Table *table;   /* one reference held */
        Value *before;  /* owned, table->ncols values, or NULL: the old key (or old row) of an update
                         * or delete; NULL for an update that did not change the key */
        Value *after;   /* owned, table->ncols values, or NULL for delete and truncate */
        uint32_t flags; /* TRUNCATE_* for a truncate; CHANGE_IDEMPOTENT */
        uint64_t lsn;   /* the change's own position in the source log, 0 if unknown */
        char *keep;     /* owned, CHANGE_RANGE only: the keys kept, "1,5,7" (ascending), "" none */
        /* Owned or NULL: an insert of a PostgreSQL copy for a PostgreSQL sink, the row as the
         * source's COPY printed it (text format, escaped, fields in table order, no newline;
         * copy_len bytes), which the sink's COPY sends as it is instead of escaping `after` again.
         * `after` holds the same values. Whoever changes the images drops it (change_drop_text). */
        char *copy_text;
        size_t copy_len;

        /* Owned, or NULL when the pipeline tracks no row versions (no state store, a table
         * without key): set by the engine (rowstate), read by sinks, freed by change_clear. */
        ChangeVersion *version;
} Change;

/* An update that keeps its key and carries every column (no unchanged TOAST value): it may be
 * applied as an upsert of its after image (CHANGE_IDEMPOTENT). */
bool change_whole_row_same_key(const Change *c);
/* Frees what a change owns (not the struct itself) and zeroes it. */
void change_clear(Change *c);
/* Frees c->copy_text: for who changes c's images. */
void change_drop_text(Change *c);
/* Sets (allocating on first use) the version a change carries to the sink. origin is copied
 * (truncated to VCLOCK_NODE_MAX - 1 bytes). Returns 0 or -ENOMEM (c untouched then). */
int change_set_version(Change *c, const VClock *vv, int64_t ts, const char *origin);
/* Allocates an array of n NULL values. */
Value *values_new(int n);
/* An array of n values and their text in one allocation (one malloc per row image instead of
 * one per value): value i is TEXT, a copy of lens[i] bytes of data[i], or NULL where data[i] is
 * NULL. Its values may be set, cleared and freed like any. Returns NULL on ENOMEM. */
Value *values_pack(int n, const char *const *data, const size_t *lens);
void values_free(Value *v, int n);
/* Sets v to a copy of len bytes of data as TEXT. Returns 0 or -ENOMEM. */
int value_set(Value *v, const char *data, size_t len);
/* Frees what v holds and makes it NULL. */
void value_clear(Value *v);

/* Latest source time cdcsync takes as given: 9999-12-31 23:59:59.999999 UTC, usec since the Unix
 * epoch. Far enough below INT64_MAX that lag and version-time arithmetic cannot overflow. */
#define CHANGE_TS_MAX INT64_C(253402300799999999)

/* A time a peer sent (commit time, server clock; usec since the Unix epoch) clamped to
 * [0, CHANGE_TS_MAX], where it enters: 0 (unknown) for anything before the epoch. */
int64_t change_clamp_ts(int64_t usec);

/* What is known of a source transaction when it is handed on. */
typedef struct {
        uint64_t xid;        /* source transaction id */
        Position commit_pos; /* acknowledge this once the transaction is durable in the sink */
        int64_t commit_ts;   /* usec since the Unix epoch, source commit time, in [0, CHANGE_TS_MAX] */
        char origin[64];     /* writer's mark: PostgreSQL replication origin name, MySQL server_id; "" none */
        bool snapshot;       /* rows of the initial snapshot, not of the log */
        /* With snapshot: one chunk of a chunked copy (chunk_copy.h). No other chunk of the copy
         * holds any of its rows, so chunks may apply side by side (pipeline_apply.c). */
        bool chunk;
} TxnInfo;
