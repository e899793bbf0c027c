/* Which tables of a pipeline were copied, and as of which source position: a record per table in
 * the sink (database sinks: cdcsync.tables), written in the same sink transaction as the copy. */
#pragma once

#include <stdbool.h>

#include "cdcsync/change.h"

/* The registry table in the sink's cdcsync schema (one row per pipeline and source table).
 * Columns: pipeline, source_table ("schema.table"; the key), state ("copied"), pos_hi, pos_lo
 * (the source position the copy is as of: the stream's changes of the table at or before it are
 * in the copy), pos_text, copied_rows. A later chunked copy adds its progress in rows of its own
 * (state "copying", one row per chunk in a sibling table) without changing these. */
#define COPIES_SCHEMA "cdcsync"
#define COPIES_TABLE "tables"
#define COPIES_NAME_MAX 512

typedef struct {
        char table[COPIES_NAME_MAX]; /* source "schema.table" */
        Position pos;                /* the copy is as of this source position */
} CopiedTable;

/* Whether t is the registry table (its changes are bookkeeping, not rows to sync). */
bool copies_is_registry(const Table *t);
/* The change that records, in the sink, that source_table was copied as of pos (copied_rows
 * rows): an idempotent upsert of its registry row. *ret owned by the caller. Returns 0 or -ENOMEM. */
int copies_record(const char *pipeline, const char *source_table, Position pos, const char *pos_text,
                  uint64_t copied_rows, Change *ret);
/* The change that forgets source_table (it left `tables`): an idempotent delete. */
int copies_forget(const char *pipeline, const char *source_table, Change *ret);
/* The entry of list (n entries) for schema.table, or NULL. */
const CopiedTable *copies_find(const CopiedTable *list, int n, const char *schema, const char *table);
