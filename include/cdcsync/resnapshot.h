/* Re-snapshot of tables while their pipeline streams (README "Re-snapshot on demand"): the
 * operator's requests, and the merge of one chunk's rows with the stream's changes between the
 * chunk's watermarks (DBLog's method). Pure but for the requests' lock: no I/O.
 *
 * A chunk is the rows of one table with an integer key above `lo` (none: from the start), read
 * in key order, at most a chunk's size of them; `hi` is the last key read, or none when fewer rows
 * came (the table's end). The source writes a low watermark into its log, reads the chunk, writes
 * a high watermark. Between the two in the stream, each change of the table is applied as it comes
 * and passed here (resnap_chunk_event): it is newer than, or as new as, what the chunk read for its
 * keys, so those rows of the chunk are dropped. At the high watermark the chunk ends
 * (resnap_chunk_finish) with a delete of every sink row in (lo, hi] whose key is neither one the
 * chunk read nor one a change in the window wrote (what the source deleted while the table was not
 * synced, or rows made on the sink behind cdcsync's back), then the chunk's rows left, as upserts. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cdcsync/change.h"

/* ---- requests ---- */

/* The tables an operator asked to copy again, until the source takes them. Thread-safe. */
typedef struct {
        pthread_mutex_t lock;
        char **tables; /* owned "schema.table" entries; "*" alone: every table the pipeline streams */
        int ntables;
        atomic_bool pending; /* tables wait: read without the lock, as a hint */
} ResnapRequests;

void resnap_requests_init(ResnapRequests *q);
void resnap_requests_destroy(ResnapRequests *q);
/* Adds tables (copied; a table already asked for is not added twice); n 0: every table. Returns 0
 * or -ENOMEM. */
int resnap_requests_push(ResnapRequests *q, const char *const *tables, int n);
/* Takes what was asked (*ret owned by the caller: free each and the array), *ret_n 0 and *ret NULL
 * when nothing is. */
void resnap_requests_take(ResnapRequests *q, char ***ret, int *ret_n);

/* Whether text is "schema.table" as a request names a table (no quoting, one dot, no blanks). */
bool resnap_table_name_ok(const char *text);

/* ---- one chunk and its window ---- */

typedef struct ResnapChunk ResnapChunk;

/* The key column of t a re-snapshot can chunk by: its only key column, of an integer type.
 * Returns its index, or -1 with why (for the operator) in buf. */
int resnap_key_column(const Table *t, char *buf, size_t len);
/* Parses an integer key value; 0 or -EINVAL. */
int resnap_parse_key(const char *text, int64_t *ret);

/* A chunk of t (one reference taken) keyed by column key_col, above lo when has_lo. */
int resnap_chunk_new(Table *t, int key_col, bool has_lo, int64_t lo, ResnapChunk **ret);
ResnapChunk *resnap_chunk_free(ResnapChunk *ch);
/* Adds a row the chunk read (the after image: t's ncols values, taken over; in ascending key order
 * as the source reads them). Returns 0, -EINVAL for a key that is not an integer or not above the
 * last one, -ENOMEM. */
int resnap_chunk_add_row(ResnapChunk *ch, Value *after);
/* The chunk's reading is done: full (as many rows as asked: hi is the last key read) or not (the
 * table's end: no upper bound). */
void resnap_chunk_read(ResnapChunk *ch, bool full);
/* Rows read, and whether the chunk has an upper bound (*ret_hi, the last key read). */
int resnap_chunk_rows(const ResnapChunk *ch);
bool resnap_chunk_hi(const ResnapChunk *ch, int64_t *ret_hi);
/* Whether key k is in the chunk's range (lo, hi]. */
bool resnap_chunk_covers(const ResnapChunk *ch, int64_t k);
/* A change of the chunk's table between its watermarks (applied to the sink as it comes): the
 * rows of the keys it touches are dropped from the chunk, the keys it writes kept. Returns 0 or
 * -ENOMEM. */
int resnap_chunk_event(ResnapChunk *ch, const Change *c);
/* At the high watermark: *ret_delete the range delete (CHANGE_RANGE), then *ret_rows (*ret_n
 * changes, the array owned by the caller: change_clear each, free it) the rows left as idempotent
 * inserts. The chunk keeps nothing of them. Returns 0 or -ENOMEM. */
int resnap_chunk_finish(ResnapChunk *ch, Change *ret_delete, Change **ret_rows, int *ret_n);
