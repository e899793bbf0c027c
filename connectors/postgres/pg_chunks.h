/* The chunked copy's pure parts: splitting a table into block ranges (CTID chunks) and reading
 * the rows of COPY ... TO STDOUT in text format. No I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cdcsync/chunk_range.h"

/* Blocks [lo, hi) of a table's heap; hi = UINT64_MAX: to the table's end, whatever it is then. */
typedef ChunkRange PgBlockRange;

/* Blocks per chunk for about target_rows rows a chunk, from the table's size in blocks and the
 * planner's row estimate (reltuples; < 0 or 0: unknown, taken as 60 rows a block). At least 1. */
uint64_t pg_chunks_blocks_per_chunk(uint64_t blocks, double reltuples, uint64_t target_rows);

/* The chunks left to copy: [0, end of table) less the done ranges (ndone, any order, may overlap),
 * each gap cut into chunks of `per` blocks below `blocks` (the table's size now), and the part at
 * or past `blocks` as one open range [x,) so rows in blocks the table grows into are read too.
 * *ret is the caller's (free()), *ret_n may be 0. Returns 0 or -ENOMEM. */
int pg_chunks_plan(uint64_t blocks, uint64_t per, const PgBlockRange *done, int ndone, PgBlockRange **ret, int *ret_n);

/* One row of COPY's text format (line: len bytes, without its newline), split in place into
 * exactly ncols fields, each unescaped: fields[i] points into line (NUL-terminated, lens[i]
 * bytes), NULL for \N. line[len] must be writable (COPY's row buffer holds the newline there). Returns 0, or -EBADMSG
 * when the line has another number of fields. */
int pg_chunks_copy_fields(char *line, size_t len, int ncols, char **fields, size_t *lens);
