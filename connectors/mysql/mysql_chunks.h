/* The MySQL/MariaDB chunked copy's pure parts: a table's primary-key ranges (chunks), their
 * records' keys and the WHERE clause that reads one. No I/O.
 *
 * Keys live in one unsigned "key space" that keeps their order: an unsigned column's value is
 * itself, a signed column's value v is (uint64_t)v ^ 2^63. A range [lo, hi) of that space with lo
 * 0 has no lower bound and hi UINT64_MAX no upper one, so a plan always covers every value a
 * table can hold, whatever rows come and go. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/chunk_range.h"

/* [lo, hi) in key space; lo 0: unbounded below, hi UINT64_MAX: above */
typedef ChunkRange MysqlKeyRange;

#define MYSQL_CHUNKS_MAX 100000 /* chunks a table is cut into at most (records, plan memory) */

/* The key-space value of a signed column's value, and back. */
uint64_t mysql_chunks_from_signed(int64_t v);
int64_t mysql_chunks_to_signed(uint64_t k);

/* The width in key units of a chunk of about target_rows rows, for keys spanning [min, max] (key
 * space) with about rows_est rows (0: unknown, taken as one row per key value, as an
 * auto-increment key has), so that the span is cut into at most MYSQL_CHUNKS_MAX chunks. At
 * least 1. */
uint64_t mysql_chunks_width(uint64_t min, uint64_t max, uint64_t rows_est, uint64_t target_rows);

/* The chunks left to copy: the whole key space less the done ranges (ndone, any order, may
 * overlap), each gap cut at min + k * width (the keys the table holds now, min <= max; empty:
 * each gap whole), so the part of a gap below min joins its first chunk and the part above max
 * its last. *ret is the caller's (free()), *ret_n may be 0 (everything done). Returns 0 or
 * -ENOMEM. */
int mysql_chunks_plan(bool empty, uint64_t min, uint64_t max, uint64_t width, const MysqlKeyRange *done, int ndone,
                      MysqlKeyRange **ret, int *ret_n);

/* The registry key of chunk r of source_table, values as the column holds them:
 * "schema.table [lo,hi)", "[,hi)" unbounded below, "[lo,)" unbounded above, "[,)" the whole
 * table. Returns what snprintf returns. */
int mysql_chunks_key(const char *source_table, MysqlKeyRange r, bool is_signed, char *buf, size_t len);
/* Whether key is a chunk key of source_table (mysql_chunks_key); then *ret is its range. */
bool mysql_chunks_parse(const char *key, const char *source_table, bool is_signed, MysqlKeyRange *ret);

/* " WHERE col >= lo AND col < hi" (only the bounds r has; "" for the whole table) for the quoted
 * column name qcol. The numbers are ours (key space), never text from elsewhere. Returns what
 * snprintf returns. */
int mysql_chunks_where(MysqlKeyRange r, bool is_signed, const char *qcol, char *buf, size_t len);
