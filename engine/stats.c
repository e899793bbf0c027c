/* Per-pipeline counters and gauges: lock-free counting for the pipeline threads, fixed label tables. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/connector.h"
#include "cdcsync/now.h"
#include "cdcsync/stats.h"

/* Prometheus' usual latency buckets, stretched to 30 s: a sink batch of a few rows commits in a
 * millisecond, a 5000-row batch over a slow link can take seconds. */
const double stats_batch_bounds[STATS_BATCH_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
};

/* The kinds of CdcError (connector.h's CdcErrorKind, in its order: test_metrics checks they are
 * cdc_error_kind_names), then "other", the catch-all slot for a kind not listed, which stays last. */
const char *const stats_error_kind_labels[STATS_ERROR_KINDS] = {
        "connection", "slot", "schema",   "data",  "conf",  "privilege", "source",
        "state",      "disk", "internal", "query", "lease", "other",
};
_Static_assert(STATS_ERROR_KINDS == CDC_ERR_KINDS + 1, "one label per CdcErrorKind, and other");

/* How a conflict was settled: by commit timestamp, by connector priority, or not at all
 * (conflict = none: the incoming change was applied as it came); "copy": a key both sides of a
 * bidirectional pair held when their first copies ran (README, first sync). */
const char *const stats_conflict_labels[STATS_CONFLICT_KINDS] = {
        "timestamp", "priority", "none", "copy", "other",
};

const char *const stats_event_op_labels[4] = {"insert", "update", "delete", "truncate"};

const char *pipeline_state_name(PipelineState s) {
        switch (s) {
        case PIPELINE_STARTING: return "starting";
        case PIPELINE_SNAPSHOT: return "snapshot";
        case PIPELINE_STREAMING: return "streaming";
        case PIPELINE_RETRYING: return "retrying";
        case PIPELINE_FAILED: return "failed";
        case PIPELINE_STOPPED: return "stopped";
        case PIPELINE_PAUSED: return "paused";
        case PIPELINE_STANDBY: return "standby";
        }
        return "unknown";
}

/* Copies a NUL-terminated string, truncating; dst always ends up terminated. */
static void copy_str(char *dst, size_t len, const char *src) {
        if (len == 0)
                return;
        size_t n = strnlen(src, len - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

void stats_init(PipelineStats *s, const char *name) {
        memset(s, 0, sizeof(*s));
        copy_str(s->name, sizeof(s->name), name);
        atomic_init(&s->state, PIPELINE_STARTING);
        atomic_init(&s->retained_bytes, -1);
        atomic_init(&s->slot_active, -1);
        atomic_init(&s->leader, 1);
        for (int i = 0; i < STATS_ERROR_KINDS; i++)
                copy_str(s->error_kinds[i], sizeof(s->error_kinds[i]), stats_error_kind_labels[i]);
        for (int i = 0; i < STATS_CONFLICT_KINDS; i++)
                copy_str(s->conflict_kinds[i], sizeof(s->conflict_kinds[i]), stats_conflict_labels[i]);
        atomic_init(&s->batch_sum, 0.0);
        pthread_mutex_init(&s->lock, NULL);
}

void stats_set_lease(PipelineStats *s, bool leader, const char *holder) {
        pthread_mutex_lock(&s->lock);
        copy_str(s->lease_holder, sizeof(s->lease_holder), holder ? holder : "");
        atomic_store(&s->leader, leader ? 1 : 0);
        pthread_mutex_unlock(&s->lock);
}

bool stats_copy_lease(PipelineStats *s, char *holder, size_t len) {
        pthread_mutex_lock(&s->lock);
        copy_str(holder, len, s->lease_holder);
        bool leader = atomic_load(&s->leader) != 0;
        pthread_mutex_unlock(&s->lock);
        return leader;
}

void stats_destroy(PipelineStats *s) {
        if (!s)
                return;
        free(s->snapshot);
        s->snapshot = NULL;
        s->nsnapshot = 0;
        pthread_mutex_destroy(&s->lock);
}

void stats_snapshot_table(PipelineStats *s, const char *table, bool begin, uint64_t rows, uint64_t rows_est,
                          int chunks_done, int chunks_total) {
        int64_t now = now_usec();
        pthread_mutex_lock(&s->lock);
        StatsSnapshotTable *e = NULL;
        for (int i = 0; i < s->nsnapshot && !e; i++)
                if (strcmp(s->snapshot[i].table, table) == 0)
                        e = &s->snapshot[i];
        if (!e) {
                StatsSnapshotTable *g = realloc(s->snapshot, sizeof(*g) * (size_t)(s->nsnapshot + 1));
                if (g) {
                        s->snapshot = g;
                        e = &g[s->nsnapshot++];
                        memset(e, 0, sizeof(*e));
                        snprintf(e->table, sizeof(e->table), "%s", table);
                }
        }
        if (e) {
                if (begin || e->started_ts == 0) { /* an attempt begins: the rate counts from here */
                        e->started_ts = now;
                        e->rows_at_start = rows;
                }
                e->rows = rows;
                e->rows_est = rows_est > rows ? rows_est : rows;
                e->chunks_done = chunks_done;
                e->chunks_total = chunks_total;
                e->updated_ts = now;
        }
        pthread_mutex_unlock(&s->lock);
}

int stats_copy_snapshot(PipelineStats *s, StatsSnapshotTable **ret, int *ret_n) {
        pthread_mutex_lock(&s->lock);
        StatsSnapshotTable *v = NULL;
        int n = s->nsnapshot;
        if (n > 0 && (v = malloc(sizeof(*v) * (size_t)n)))
                memcpy(v, s->snapshot, sizeof(*v) * (size_t)n);
        pthread_mutex_unlock(&s->lock);
        if (n > 0 && !v)
                return -ENOMEM;
        *ret = v;
        *ret_n = v ? n : 0;
        return 0;
}

void stats_count_event(PipelineStats *s, ChangeOp op) {
        int i;
        switch (op) {
        case CHANGE_INSERT: i = 0; break;
        case CHANGE_UPDATE: i = 1; break;
        case CHANGE_DELETE: i = 2; break;
        case CHANGE_TRUNCATE: i = 3; break;
        default: return;
        }
        atomic_fetch_add_explicit(&s->events[i], 1, memory_order_relaxed);
}

void stats_count_transaction(PipelineStats *s) {
        atomic_fetch_add_explicit(&s->transactions, 1, memory_order_relaxed);
}

void stats_count_bad_message(PipelineStats *s, bool dead_letter) {
        atomic_fetch_add_explicit(&s->bad_messages[dead_letter], 1, memory_order_relaxed);
}

/* Index of label in table, or of the last slot ("other") when it is not there. */
static int label_slot(char table[][32], int n, const char *label) {
        if (label)
                for (int i = 0; i < n - 1; i++)
                        if (strcmp(table[i], label) == 0)
                                return i;
        return n - 1;
}

void stats_set_error(PipelineStats *s, const char *message) {
        int64_t ts = now_usec();
        pthread_mutex_lock(&s->lock);
        copy_str(s->last_error, sizeof(s->last_error), message ? message : "");
        s->last_error_ts = message ? ts : 0;
        pthread_mutex_unlock(&s->lock);
}

void stats_count_error(PipelineStats *s, const char *kind, const char *message) {
        int i = label_slot(s->error_kinds, STATS_ERROR_KINDS, kind);
        atomic_fetch_add_explicit(&s->errors[i], 1, memory_order_relaxed);
        if (message)
                stats_set_error(s, message);
}

void stats_count_conflict(PipelineStats *s, const char *resolution) {
        int i = label_slot(s->conflict_kinds, STATS_CONFLICT_KINDS, resolution);
        atomic_fetch_add_explicit(&s->conflicts[i], 1, memory_order_relaxed);
}

void stats_observe_batch(PipelineStats *s, double seconds) {
        if (!(seconds >= 0)) /* also NaN */
                seconds = 0;
        int i = 0;
        while (i < STATS_BATCH_BUCKETS && seconds > stats_batch_bounds[i])
                i++;
        /* Buckets are kept per interval (not cumulative) and summed by the exporter. */
        atomic_fetch_add_explicit(&s->batch_buckets[i], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->batch_count, 1, memory_order_relaxed);
        /* C11 has no atomic add for double: compare-and-swap until no other thread raced us. */
        double old = atomic_load_explicit(&s->batch_sum, memory_order_relaxed);
        while (!atomic_compare_exchange_weak(&s->batch_sum, &old, old + seconds))
                ;
}

void stats_set_state(PipelineStats *s, PipelineState state) {
        atomic_store(&s->state, (int)state);
        atomic_store_explicit(&s->last_progress_ts, now_usec(), memory_order_relaxed);
}

void stats_set_positions_text(PipelineStats *s, const char *source_pos, const char *applied_pos) {
        pthread_mutex_lock(&s->lock);
        if (source_pos)
                copy_str(s->source_pos_text, sizeof(s->source_pos_text), source_pos);
        if (applied_pos)
                copy_str(s->applied_pos_text, sizeof(s->applied_pos_text), applied_pos);
        pthread_mutex_unlock(&s->lock);
}

int64_t stats_copy_last_error(PipelineStats *s, char *buf, size_t len) {
        pthread_mutex_lock(&s->lock);
        copy_str(buf, len, s->last_error);
        int64_t ts = s->last_error[0] ? s->last_error_ts : 0;
        pthread_mutex_unlock(&s->lock);
        return ts;
}

void stats_copy_positions_text(PipelineStats *s, char *source_pos, size_t source_len, char *applied_pos,
                               size_t applied_len) {
        pthread_mutex_lock(&s->lock);
        copy_str(source_pos, source_len, s->source_pos_text);
        copy_str(applied_pos, applied_len, s->applied_pos_text);
        pthread_mutex_unlock(&s->lock);
}
