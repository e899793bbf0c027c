/* Per-pipeline counters and gauges: written by the pipeline threads, read by the metrics endpoint. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cdcsync/change.h"

typedef enum {
        PIPELINE_STARTING = 0,
        PIPELINE_SNAPSHOT,
        PIPELINE_STREAMING,
        PIPELINE_RETRYING, /* a retriable error: reconnecting with backoff */
        PIPELINE_FAILED,   /* a fatal error: stopped until the conf or the systems are fixed */
        PIPELINE_STOPPED,
        PIPELINE_PAUSED,  /* paused by an operator (admin API): no attempt runs until resumed */
        PIPELINE_STANDBY, /* ha = on: another instance holds the lease and runs it */
} PipelineState;

const char *pipeline_state_name(PipelineState s);

#define STATS_ERROR_KINDS 13 /* CDC_ERR_KINDS and "other" */
#define STATS_CONFLICT_KINDS 5
#define STATS_BATCH_BUCKETS 12 /* cdcsync_sink_batch_seconds buckets, see stats_batch_bounds */

extern const double stats_batch_bounds[STATS_BATCH_BUCKETS]; /* seconds, ascending */

/* One table of an initial copy in progress or done (stats_snapshot_table). */
typedef struct {
        char table[256];         /* source "schema.table" */
        uint64_t rows, rows_est; /* rows copied (chunks kept from earlier attempts included), estimated */
        int chunks_done, chunks_total;
        uint64_t rows_at_start; /* rows when this attempt began copying it: the rate counts the rest */
        int64_t started_ts;     /* usec: when this attempt began copying it */
        int64_t updated_ts;     /* usec: last report */
} StatsSnapshotTable;

typedef struct {
        char name[128];                 /* pipeline name */
        atomic_int state;               /* PipelineState */
        atomic_uint_fast64_t events[4]; /* insert, update, delete, truncate */
        atomic_uint_fast64_t transactions;
        atomic_uint_fast64_t bad_messages[2]; /* Kafka source: messages passed on by on_bad_message,
                                               * [0] skip, [1] dead_letter */
        atomic_uint_fast64_t errors[STATS_ERROR_KINDS];
        char error_kinds[STATS_ERROR_KINDS][32]; /* label of each errors[] slot, "" unused */
        atomic_uint_fast64_t conflicts[STATS_CONFLICT_KINDS];
        char conflict_kinds[STATS_CONFLICT_KINDS][32];
        atomic_uint_fast64_t batch_buckets[STATS_BATCH_BUCKETS + 1]; /* last: +Inf */
        atomic_uint_fast64_t batch_count;
        _Atomic double batch_sum; /* seconds */
        atomic_int_fast64_t queue_depth;
        atomic_uint_fast64_t apply_waits; /* apply_workers > 1: batches that waited for another
                                           * worker's uncommitted batch touching their rows */
        /* Positions as (hi, lo) of the change stream. */
        atomic_uint_fast64_t source_end_hi, source_end_lo; /* log end as the source last saw it */
        atomic_uint_fast64_t received_hi, received_lo;     /* last position read from the source */
        atomic_uint_fast64_t applied_hi, applied_lo;       /* last position committed in the sink */
        atomic_int_fast64_t oldest_pending_ts;             /* usec: commit ts of the oldest change read but not
                                                            * committed in the sink; 0 = nothing pending */
        /* The source's own view (lag.h), published by the pipeline for lag_seconds / lag_bytes. */
        atomic_int_fast64_t behind_since_ts;  /* usec: the source had a change the sink lacks since; 0: none */
        atomic_int_fast64_t synced_ts;        /* usec: the sink held all the source had then; 0: unknown */
        atomic_int_fast64_t contact_ts;       /* usec: the source last answered (probe or stream); 0: never */
        atomic_uint_fast64_t lag_bytes;       /* source log bytes the sink lacks */
        atomic_int_fast64_t last_progress_ts; /* usec, wall clock the pipeline last proved alive */
        /* Source-side health, sampled by the pipeline's monitor (SourceOps.probe_health): log bytes
         * the source keeps for this pipeline (WAL its slot holds, binlog behind the server's end)
         * and whether its slot is in use; -1: not known (no sample yet, or the source has none). */
        atomic_int_fast64_t retained_bytes;
        atomic_int slot_active;
        atomic_int_fast64_t retained_warn_bytes; /* the pipeline's retained_warn_bytes; 0: off */
        pthread_mutex_t lock;                    /* guards last_error and the label arrays */
        char last_error[1024];
        int64_t last_error_ts;                      /* usec */
        char source_pos_text[CHECKPOINT_TEXT_MAX];  /* guarded by lock: the last COMMIT or KEEPALIVE read */
        char applied_pos_text[CHECKPOINT_TEXT_MAX]; /* guarded by lock: the durable checkpoint */
        StatsSnapshotTable *snapshot;               /* guarded by lock, owned: the initial copy's tables */
        int nsnapshot;
        /* Leadership (ha = on, issue #16): 1 while this instance runs the pipeline (always with
         * ha = off), 0 on a standby; lease_holder (guarded by lock) names the instance that held
         * the lease when last read, "" with ha = off or before the first read. */
        atomic_int leader;
        char lease_holder[128];
} PipelineStats;

void stats_init(PipelineStats *s, const char *name);
void stats_destroy(PipelineStats *s);
void stats_count_event(PipelineStats *s, ChangeOp op);
void stats_count_error(PipelineStats *s, const char *kind, const char *message);
void stats_count_conflict(PipelineStats *s, const char *resolution);
void stats_observe_batch(PipelineStats *s, double seconds);
void stats_set_error(PipelineStats *s, const char *message);
/* The initial copy's progress of one table (thread-safe), an entry per table; begin: an attempt
 * begins to copy it (rows: what earlier attempts kept; the rate counts from here). */
void stats_snapshot_table(PipelineStats *s, const char *table, bool begin, uint64_t rows, uint64_t rows_est,
                          int chunks_done, int chunks_total);
/* A copy of the snapshot entries: *ret owned by the caller (free()), NULL when there are none. */
int stats_copy_snapshot(PipelineStats *s, StatsSnapshotTable **ret, int *ret_n);

/* Added for the metrics endpoint and the pipeline (all thread-safe). */

/* Fixed label tables: stats_init fills error_kinds / conflict_kinds from these, so every label
 * value is exported from the start (with 0) and the arrays never change afterwards: readers need
 * no lock for them. A kind or resolution not in the table is counted under "other". */
extern const char *const stats_error_kind_labels[STATS_ERROR_KINDS];
extern const char *const stats_conflict_labels[STATS_CONFLICT_KINDS];
/* Label of events[i]: "insert", "update", "delete", "truncate". */
extern const char *const stats_event_op_labels[4];

void stats_set_state(PipelineStats *s, PipelineState state);
void stats_count_transaction(PipelineStats *s);
/* A message the source could not use and passed on (on_bad_message = skip or dead_letter). */
void stats_count_bad_message(PipelineStats *s, bool dead_letter);
/* Sets the text forms of the positions shown by /status; NULL leaves one unchanged. */
void stats_set_positions_text(PipelineStats *s, const char *source_pos, const char *applied_pos);
/* Leadership as the lease thread last saw it (thread-safe); holder NULL or "": not known. */
void stats_set_lease(PipelineStats *s, bool leader, const char *holder);
/* Copies lease_holder under the lock; returns leader. */
bool stats_copy_lease(PipelineStats *s, char *holder, size_t len);
/* Copies the last error under the lock; returns its time (usec since epoch), 0 when none. */
int64_t stats_copy_last_error(PipelineStats *s, char *buf, size_t len);
/* Copies the position texts under the lock. */
void stats_copy_positions_text(PipelineStats *s, char *source_pos, size_t source_len, char *applied_pos,
                               size_t applied_len);
