/* Which tables of a pipeline were copied, and as of which source position: a record per table in
 * the sink (database sinks: cdcsync.tables), written in the same sink transaction as the copy. */
#pragma once

#include <stdbool.h>

#include "cdcsync/change.h"

/* The registry table in the sink's cdcsync schema (one row per pipeline and source table).
 * Columns: pipeline, source_table ("schema.table"; the key), state, pos_hi, pos_lo, pos_text,
 * copied_rows. States (CopyState):
 * - "copied": the table's copy is complete, as of pos: the stream's changes of the table at or
 *   before pos are in the copy (dropped), the later ones applied.
 * - "copying": a chunked initial copy of the table is in progress, as of pos (the slot's
 *   consistent point, where the stream starts): its done chunks are rows of their own. Written for
 *   every table of the copy with the copy's first chunk, so no restart takes the copy for done.
 * - "converging": the table's chunks were copied, some as of later snapshots than the copy's
 *   start (a resumed copy); the stream's changes of the table up to pos are applied idempotently
 *   (CHANGE_IDEMPOTENT), so the rows read at different moments converge to the source's.
 * - "chunk": one done chunk of a "copying" table, keyed "schema.table [lo,hi)" (copies_chunk_key).
 * - "resnapshot": the table is being copied again while it streams (resnapshot.h), as of pos, the
 *   last chunk applied; pos_text "key=K": the chunks up to key K are done ("key=": none yet).
 * A source that does not chunk writes only "copied". */
#define COPIES_SCHEMA "cdcsync"
#define COPIES_TABLE "tables"
#define COPIES_NAME_MAX 512

typedef enum {
        COPY_STATE_COPIED = 0,
        COPY_STATE_COPYING,
        COPY_STATE_CONVERGING,
        COPY_STATE_CHUNK,
        COPY_STATE_RESNAPSHOT,
} CopyState;

typedef struct {
        char table[COPIES_NAME_MAX]; /* source "schema.table"; a chunk's key for COPY_STATE_CHUNK */
        Position pos;                /* the copy is as of this source position (see the states) */
        CopyState state;
        uint64_t rows; /* copied_rows */
        char text[96]; /* pos_text ("" when longer); a "copying" record adds " filenode=N" (the
                        * table's storage when the copy began: a rewrite since moved its rows) */
} CopiedTable;

/* The state's name in the registry ("copied", ...). */
const char *copies_state_name(CopyState st);
/* Parses a registry state; -EINVAL for one this build does not know (its row is then ignored). */
int copies_state_parse(const char *text, CopyState *ret);
/* The key of the chunk of blocks [lo, hi) of source_table (hi UINT64_MAX: to the table's end),
 * "schema.table [lo,hi)" / "schema.table [lo,)". Returns what snprintf returns. */
int copies_chunk_key(const char *source_table, uint64_t lo, uint64_t hi, char *buf, size_t len);
/* Whether key is a chunk key of source_table; then *ret_lo, *ret_hi are its blocks. */
bool copies_chunk_parse(const char *key, const char *source_table, uint64_t *ret_lo, uint64_t *ret_hi);

/* Whether t is the registry table (its changes are bookkeeping, not rows to sync). */
bool copies_is_registry(const Table *t);
/* The change that records, in the sink, that source_table was copied as of pos (copied_rows
 * rows): an idempotent upsert of its registry row. *ret owned by the caller. Returns 0 or -ENOMEM. */
int copies_record(const char *pipeline, const char *source_table, Position pos, const char *pos_text,
                  uint64_t copied_rows, Change *ret);
/* The same for any state and registry key (a chunk's key for COPY_STATE_CHUNK). */
int copies_record_state(const char *pipeline, const char *key, CopyState st, Position pos, const char *pos_text,
                        uint64_t copied_rows, Change *ret);
/* The change that forgets source_table (it left `tables`): an idempotent delete. */
int copies_forget(const char *pipeline, const char *source_table, Change *ret);
/* The table entry (not a chunk) of list (n entries) for schema.table, or NULL. */
const CopiedTable *copies_find(const CopiedTable *list, int n, const char *schema, const char *table);
