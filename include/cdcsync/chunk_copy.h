/* A source's chunked, parallel initial copy, whatever the source system: tables cut into chunks
 * (chunk_range.h), read by reader threads on connections that share one snapshot, each chunk
 * handed on as one source transaction with the record that it is done (copies.h). The connector
 * plans each table's chunks and reads one chunk (ChunkCopyOps); this module runs the readers,
 * keeps one chunk's events together, writes the records and logs progress. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/change.h"
#include "cdcsync/chunk_range.h"
#include "cdcsync/connector.h"
#include "cdcsync/copies.h"

typedef struct ChunkCopy ChunkCopy;
/* A reader thread reading one chunk: what ChunkCopyOps.read_chunk hands the rows to. */
typedef struct ChunkCopyReader ChunkCopyReader;

typedef struct {
        /* Reads chunk r of a table (tab: its ChunkCopyTable.ud) on a reader connection (conn: one
         * of chunk_copy_run's), in a reader thread, handing on every row with chunk_copy_row()
         * and stopping at the first row it refuses. Returns 0, or negative with err set. */
        int (*read_chunk)(void *ud, void *conn, void *tab, ChunkRange r, ChunkCopyReader *rd, CdcError *err);
        /* The registry key of chunk r of a table (tab) whose records are keyed key ("schema.table").
         * Returns what snprintf returns. */
        int (*chunk_key)(const void *tab, const char *key, ChunkRange r, char *buf, size_t len);
        /* A position as the records' pos_text. */
        void (*format_position)(Position pos, char *buf, size_t len);
        /* Frees a table's ud (never called with NULL). */
        void (*table_free)(void *tab);
} ChunkCopyOps;

typedef struct {
        const ChunkCopyOps *ops; /* borrowed, for the copy's life */
        void *ud;                /* handed to read_chunk */
        PipelineIO *io;          /* where the events go (borrowed) */
        const char *ctx;         /* the log lines' context (borrowed) */
        const char *pipeline;    /* the records' pipeline name (borrowed); NULL: no records */
        Position pos;            /* the transactions' commit position */
        const char *ckpt_text;   /* NULL: a COMMIT carries no checkpoint; else pos with this text (copied) */
        bool chunked;            /* a transaction and a record per chunk (the sink keeps records); else
                                  * the whole copy is one transaction and only final records are written */
} ChunkCopyOptions;

typedef struct {
        const char *key; /* "schema.table", the registry key (copied) */
        Table *t;        /* its TRUNCATE's table (a reference is taken) */
        bool truncate;   /* a TRUNCATE (truncate_flags) goes with its first chunk */
        uint32_t truncate_flags;
        const char *copying_note; /* added to the "copying" record's pos_text ("filenode=N"), or NULL */
        CopyState final_state;    /* its record once every chunk is done, as of final_pos */
        Position final_pos;
        uint64_t rows_est; /* the server's estimate of its rows */
        void *ud;          /* the connector's (ops->table_free): taken, also on failure */
} ChunkCopyTable;

int chunk_copy_new(const ChunkCopyOptions *opts, ChunkCopy **ret, CdcError *err);
/* Accepts NULL, returns NULL. */
ChunkCopy *chunk_copy_free(ChunkCopy *cp);

/* Adds a table with ndone chunks done before (done_rows rows; done borrowed) and nplan chunks to
 * read (plan borrowed). */
int chunk_copy_add_table(ChunkCopy *cp, const ChunkCopyTable *tab, const ChunkRange *done, int ndone,
                         uint64_t done_rows, const ChunkRange *plan, int nplan, CdcError *err);
/* A chunk record of an earlier attempt of the table added last, forgotten with its final record. */
int chunk_copy_forget_chunk(ChunkCopy *cp, ChunkRange r, CdcError *err);

/* From read_chunk: one row of the chunk (c taken, also on failure) of about `bytes` bytes in
 * memory. Rows are held up to a bound, then the chunk streams. Returns 0, or negative with err set
 * (read_chunk then stops and returns it). */
int chunk_copy_row(ChunkCopyReader *rd, Change *c, size_t bytes, CdcError *err);

/* Reads every chunk planned with the readers (n connections in one snapshot, borrowed), one
 * thread each, logging progress, and hands them on in order of completion; then the transactions
 * of tables with no chunk left to read. Returns 0, or the first reader's error (-ECANCELED when
 * the pipeline stops). */
int chunk_copy_run(ChunkCopy *cp, void **readers, int n, CdcError *err);
