/* The engine's per-row versions for one pipeline: replay/echo detection and conflict decisions,
 * kept crash-consistent with the sink in the state store. */
#pragma once

#include "cdcsync/conf.h"
#include "cdcsync/connector.h"
#include "cdcsync/stats.h"

typedef struct RowState RowState;
typedef struct State State;

/* Bidirectional sync (see rowstate.c's DESIGN): what a pipeline with a reverse pipeline needs. */
typedef struct {
        const char *reverse;   /* the reverse pipeline's name; NULL or "": one-way (no conflicts) */
        const char *state_dir; /* conflicts.jsonl is written here */
        PipelineStats *stats;  /* borrowed, may be NULL: conflicts are counted there */
} RowStateBidi;

/* One pipeline's view of the shared state store. st, conf and what bidi points to are borrowed
 * (copied where needed); bidi may be NULL. */
int rowstate_new(State *st, const PipelineConf *conf, const RowStateBidi *bidi, RowState **ret);
RowState *rowstate_free(RowState *rs);
/* Whether the pipeline keeps row versions in the state store: only bidirectional pipelines do
 * (rowstate.c's DESIGN says why); the others' calls below touch no store. */
bool rowstate_uses_store(const RowState *rs);
/* On attempt start: acquires the store (state_acquire) and makes the versions agree with the
 * sink's committed position. Errors of the store are counted as "disk" or "state" and retriable. */
int rowstate_recover(RowState *rs, Position sink_pos, bool sink_found, CdcError *err);
/* On attempt end: drops an open batch and releases the store, so a store found corrupt can be
 * reopened. */
void rowstate_detach(RowState *rs);
int rowstate_batch_begin(RowState *rs, uint64_t batch_no, CdcError *err);
/* Decides whether change c, the seq-th change of source transaction txn, is applied (*ret_apply)
 * and records its version in the open batch. In bidirectional sync c may be rewritten so that it
 * fits what the sink holds: an update of a row the sink deleted → insert, an insert of a key the
 * sink holds → update (a delete of a deleted row is not applied). */
int rowstate_check(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err);
/* Bidirectional sync: change c of an echo transaction (the reverse pipeline's own write read back
 * from our source) updates what we know our source holds; *ret_forward true when it must still
 * go to the sink (c possibly rewritten as in rowstate_check): the reverse pipeline overwrote an
 * application write it had not seen, so the sink must get the image the source was left with. */
int rowstate_echo(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_forward, CdcError *err);
/* Version tags (bidirectional sync): the sink writes, in the same transaction and just before
 * each row it applies, the row's version into the table cdcsync.versions (k: SHA-256 of the row's
 * name, v: the name and the version). The reverse pipeline reads them back from the sink's log in
 * the echo transaction and so knows exactly which version each echoed row change is. */
#define ROWSTATE_TAG_SCHEMA "cdcsync"
#define ROWSTATE_TAG_TABLE "versions"
bool rowstate_is_tag_table(const Table *t);
/* After rowstate_check/rowstate_echo applied a change: the tag change to send to the sink just
 * before it (*ret owned by the caller). Returns 1, 0 when there is none, or -ENOMEM. */
int rowstate_tag(RowState *rs, Change *ret);
/* A change of cdcsync.versions read in an echo transaction: records that the source now holds
 * that version, and keeps it for the row change that follows. A delete is decided here (its row
 * change may be missing from the log): returns 1 with *ret_forward set (owned by the caller) when
 * it must go to the sink, 0 otherwise, or a negative errno. */
int rowstate_echo_tag(RowState *rs, const TxnInfo *txn, const Change *c, Change *ret_forward, CdcError *err);
/* A row of cdcsync.versions read by a first copy (a snapshot transaction): the reverse pipeline
 * wrote that version of the row into our source before the copy's snapshot, so the copied row is
 * that write or one made on top of it, and is versioned after it. Returns 0 or a negative errno. */
int rowstate_copy_tag(RowState *rs, const Change *c, CdcError *err);
/* Drops tombstones (versions of deleted rows) older than the pipeline's tombstone_days; only
 * between batches. Returns how many, or a negative errno. */
int rowstate_prune(RowState *rs, int64_t now_us);
/* Durably records the batch (ending at end) BEFORE the sink commits it. */
int rowstate_batch_commit(RowState *rs, Position end, CdcError *err);
void rowstate_batch_abort(RowState *rs);
/* The sink committed batch_no: its undo information is no longer needed. */
void rowstate_batch_done(RowState *rs, uint64_t batch_no);
