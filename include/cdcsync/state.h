/* The embedded state store: per pipeline, the last applied Version of every (table, key), kept in
 * agreement with the sink across crashes by an undo log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/change.h"
#include "cdcsync/version.h"

/* How it stays consistent with the sink (the sink stores the pipeline's position in its own
 * transaction):
 *   1. state_batch_begin(pipeline, batch_no, end_pos) opens one LMDB write transaction and records
 *      the batch and the source position the batch ends at.
 *   2. state_put saves, before the first overwrite of a row in the batch, the row's previous
 *      version (or "absent") in an undo table keyed by (pipeline, batch_no, table, key).
 *   3. state_batch_commit commits durably, BEFORE the sink commits the batch.
 *   4. after the sink committed: state_batch_done drops the batch's undo entries.
 *   5. on start, state_recover(pipeline, sink_pos): batches with end_pos <= sink_pos were
 *      committed by the sink, their undo is dropped; the others never reached the sink, so their
 *      undo is played back, newest batch first, restoring what the sink holds.
 *
 * Keys: (pipeline, table, key) are stored length-prefixed ([u8 len][pipeline][u16 len][table]
 * [u8 kind][key]), so no separator can be ambiguous. LMDB keys are at most 511 bytes: a row key
 * longer than STATE_KEY_INLINE_MAX bytes is stored as its SHA-256 (kind 1) instead of inline
 * (kind 0); a collision would need a SHA-256 collision.
 *
 * Threads: one State per process (LMDB allows one environment per file per process), shared by
 * every pipeline thread (MDB_NOTLS). LMDB has one writer at a time: a batch holds the write lock
 * from begin to commit/abort, so other pipelines' batches wait meanwhile; a batch is used by the
 * thread that began it only. Never begin a second batch on a thread that holds one (deadlock).
 * Only bidirectional pipelines keep row versions (rowstate.c says why), so the store is opened
 * when the first of them needs it (state_acquire), not when the service starts.
 *
 * Faults. Errors are negative errnos: what the file system said (-ENOSPC, -EIO, ...), -EUCLEAN
 * when the store is corrupt (LMDB's own checks of its meta pages and pages, a record that does not
 * decode), -EPROTO when it was written by an incompatible version (its "format" record, or
 * LMDB's). A store found corrupt (or that LMDB gave up on after a failed write) is closed and
 * opened again by the first state_acquire once every user released it (until then state_acquire
 * says -ESTALE), so moving a damaged store aside is enough. Not detected: a data file cut short
 * (LMDB maps it and would fault reading past its end; its last pages may legitimately be unwritten,
 * so its size alone cannot tell). */

#define STATE_NAME_MAX 64        /* bytes of a pipeline name */
#define STATE_TABLE_MAX 256      /* bytes of a table name ("schema.table") */
#define STATE_KEY_INLINE_MAX 160 /* row keys above this are stored hashed */

typedef struct State State;
typedef struct StateBatch StateBatch;

#define STATE_FORMAT 1 /* the layout of the records below; a store of another format is refused */

/* A handle on the store under dir (copied), not opened yet. Returns 0 or -ENOMEM. */
int state_new(const char *dir, State **ret);
/* Opens the store if it is not open (creating dir with mode 0700 and the files), checking its
 * format and size, and counts one user; reopens it first when it was found corrupt and nobody
 * uses it. Every other call needs the store acquired. Returns 0 or -errno (see Faults). */
int state_acquire(State *s);
void state_release(State *s);
/* The text of an error of this module: "the state store is corrupt", ..., else strerror. */
const char *state_strerror(int r);
/* state_new + state_acquire. Returns 0 or -errno. */
int state_open(const char *dir, State **ret);
/* Closes the store; every batch must be finished. Accepts NULL, returns NULL. */
State *state_free(State *s);

/* Begins the write transaction of one batch. pipeline is copied. -EEXIST when this batch number
 * is still recorded (not recovered nor done), -ENAMETOOLONG / -EINVAL for a bad name. */
int state_batch_begin(State *s, const char *pipeline, uint64_t batch_no, Position end_pos, StateBatch **ret);
/* Records where the batch ends, once known (state_batch_begin may have been given an unknown
 * end, {UINT64_MAX, UINT64_MAX}, which recovery treats as never committed by the sink). */
int state_batch_set_end(StateBatch *b, Position end_pos);
/* Opens another write transaction for a batch already begun and committed in part (a large
 * batch is written in slices to bound LMDB's dirty pages in memory); recovery treats every
 * slice as the one batch. */
int state_batch_continue(State *s, const char *pipeline, uint64_t batch_no, StateBatch **ret);
/* Reads a row's version inside the batch (its own writes included). *ret_found false when the
 * row has none (then *ret untouched). */
int state_get(StateBatch *b, const char *table, const void *key, size_t keylen, Version *ret, bool *ret_found);
/* Reads another pipeline's committed version of a row inside the batch's transaction (LMDB has
 * one writer, so what it reads cannot change until the batch commits). Bidirectional sync: a
 * pipeline reads its reverse pipeline's rows, never writes them. */
int state_get_other(StateBatch *b, const char *pipeline, const char *table, const void *key, size_t keylen,
                    Version *ret, bool *ret_found);
/* Stores a row's version (undo saved on the first overwrite of the row in this batch). */
int state_put(StateBatch *b, const char *table, const void *key, size_t keylen, const Version *v);
/* Stores a row's version without undo: recovery leaves it as it is. For facts that stay true
 * whatever the sink committed (bidirectional sync: what a source's log holds). */
int state_put_noundo(StateBatch *b, const char *table, const void *key, size_t keylen, const Version *v);
/* Drops the undo entries of batch_no, which the sink committed, inside this batch's transaction
 * (state_batch_done without a write transaction of its own). */
int state_batch_drop(StateBatch *b, uint64_t batch_no);
/* Commits durably (fsync) and frees the batch, also on failure. Returns 0 or -errno. */
int state_batch_commit(StateBatch *b);
/* Drops the batch's writes and frees it. Accepts NULL, returns NULL. */
StateBatch *state_batch_abort(StateBatch *b);

/* Reads a row's committed version outside any batch (its own read transaction). */
int state_lookup(State *s, const char *pipeline, const char *table, const void *key, size_t keylen, Version *ret,
                 bool *ret_found);
/* The sink committed batch_no: drops its undo. Returns 0 or -errno (0 when already dropped). */
int state_batch_done(State *s, const char *pipeline, uint64_t batch_no);
/* Brings the pipeline's state back to what the sink committed (sink_pos: the position the sink
 * says it holds; zero when it holds nothing). Returns the number of batches rolled back, or
 * -errno. */
int state_recover(State *s, const char *pipeline, Position sink_pos);
/* Deletes the pipeline's tombstones with ts < older_than (usec since epoch). Returns how many,
 * or -errno. */
int state_prune_tombstones(State *s, const char *pipeline, int64_t older_than);

/* Whether an operator paused the pipeline (admin API): kept in the store until resumed, so a
 * pause outlives a restart of the service. Both acquire the store for the call themselves.
 * state_set_paused commits durably. Return 0 or -errno (see Faults). */
int state_set_paused(State *s, const char *pipeline, bool paused);
int state_get_paused(State *s, const char *pipeline, bool *ret);
