/* What the threads of one pipeline share (pipeline.c, pipeline_engine.c, pipeline_sink.c): the
 * Pipeline itself and the few helpers more than one thread calls. Private to the pipeline module. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cdcsync/bidi.h"
#include "cdcsync/connector.h"
#include "cdcsync/lag.h"
#include "cdcsync/pipeline.h"
#include "cdcsync/queue.h"
#include "cdcsync/resnapshot.h"
#include "cdcsync/rowstate.h"
#include "cdcsync/seqsync.h"
#include "cdcsync/shape.h"

#define QUEUE_CAPACITY 4096
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
/* An attempt that streamed this long ended an incident: the next one starts from BACKOFF_MIN_MS. */
#define BACKOFF_RESET_USEC (10 * 1000000LL)
#define PROBE_INTERVAL_MS 1000

/* Commit timestamps of transactions read but not yet committed in the sink, oldest first: the
 * head is what lag_seconds measures from. Bounded: when full, later transactions are not
 * recorded, which can only make lag read older (the head stays), never younger. */
typedef struct {
        pthread_mutex_t lock;
        int64_t *ts; /* owned, cap entries */
        size_t cap, head, count;
} PendingTs;

struct PipelineIO {
        Pipeline *p;
};

struct Pipeline {
        const PipelineConf *conf;
        const SourceOps *source_ops;
        const SinkOps *sink_ops;
        State *state;     /* shared store, borrowed; may be NULL */
        RowState *rows;   /* this pipeline's view of state, NULL when state is NULL */
        Shape *shape;     /* what of each table flows (shape.h), NULL: everything; engine thread only */
        time_t pruned_at; /* monotonic seconds of the last tombstone pruning, engine thread only */
        PipelineStats stats;
        BidiPeers peers;     /* echo marks of reverse pipelines (bidirectional sync) */
        uint64_t echoes;     /* echo transactions dropped, engine thread only */
        char ctx[256];       /* "[pipeline=X source=Y sink=Z]" */
        char spill_dir[512]; /* state_dir/spill/<pipeline> */
        pthread_t supervisor;
        atomic_bool stop;   /* the service asked this pipeline to stop */
        atomic_bool paused; /* an operator paused it (pipeline_pause) */
        /* The current attempt is to end as on stop, the pipeline staying (pause, restart). */
        atomic_bool attempt_stop;
        atomic_uint requests;  /* operator requests so far: wakes the supervisor's waits */
        atomic_bool settled;   /* streaming or failed once */
        ResnapRequests resnap; /* tables an operator asked to copy again (pipeline_resnap.c) */
        /* Per attempt. */
        Queue *q_src, *q_sink;
        atomic_bool attempt_end; /* a thread failed, or stop: engine and sink wind down */
        atomic_bool source_stop; /* sink done: the source may acknowledge and return */
        pthread_mutex_t err_lock;
        CdcError err; /* first error of the attempt, guarded by err_lock */
        bool have_err;
        pthread_mutex_t pos_lock;
        Position durable;   /* guarded by pos_lock */
        Position start_pos; /* sink checkpoint at attempt start */
        bool have_start;
        uint64_t batch_no;
        PendingTs pending;
        PipelineIO io;
        Source *source;
        Sink *sink;
        pthread_mutex_t stop_lock; /* with stop_cond: wakes the supervisor's backoff sleep and the monitor */
        pthread_cond_t stop_cond;
        atomic_int_fast64_t streaming_since; /* usec: this attempt streams since; 0: not yet */
        /* apply_workers > 1: batches still to apply one at a time, after an attempt that failed
         * with several in flight (pipeline_apply.c) */
        atomic_int serial_batches;
        pthread_mutex_t lag_lock; /* guards lag */
        LagTracker lag;
        pthread_t monitor;
        bool monitor_started;
        SeqSync *seqsync; /* owned: sync_sequences = yes, else NULL (seqsync.h) */
        /* ha = on (lease.h): the lease thread holds the pipeline's lease in its sink */
        bool ha; /* conf's ha = on */
        pthread_t leaser;
        bool leaser_started;
        int64_t fence; /* the lease generation this attempt's sink sessions fence on (set_fence), 0: none */
        atomic_int_fast64_t lease_gen;        /* generation held, 0: standby; written by the lease thread */
        atomic_int_fast64_t lease_renewed_ms; /* mono ms of the last confirmed renewal (or take) */
        atomic_bool supervisor_done;          /* the last attempt committed and ended: the lease may go */
};

/* The attempt is to wind down at the next transaction boundary: the service stops, or an
 * operator paused or restarted the pipeline. */
static inline bool pipeline_ending(Pipeline *p) {
        return atomic_load(&p->stop) || atomic_load(&p->attempt_stop);
}

/* Drops n entries (transactions committed or skipped); returns the new oldest, 0 if none. */
int64_t pipeline_pending_pop(PendingTs *pt, size_t n);
/* Records the attempt's first error (later ones are consequences) and ends the attempt. */
void pipeline_fail_attempt(Pipeline *p, const CdcError *err);
/* Refreshes cdcsync_queue_depth. */
void pipeline_note_depth(Pipeline *p);
/* Publishes ckpt as durable in the sink: what the source may acknowledge, lag, and the applied
 * position's text. */
void pipeline_set_durable(Pipeline *p, const Checkpoint *ckpt);

/* A batch a sink session is applying (the sink thread, or a worker of pipeline_apply.c). */
typedef struct {
        bool open;          /* begin() was called */
        uint64_t counts[4]; /* changes applied: inserts, updates, deletes, truncates */
        size_t txns;        /* source transactions ended in it */
        struct timespec t0; /* when it began */
} SinkBatch;

/* Applies a BEGIN, CHANGE or COMMIT event to session k's batch b (other kinds: nothing). */
int pipeline_batch_event(Pipeline *p, Sink *k, SinkBatch *b, const Event *ev, CdcError *err);
/* Counts b, committed, in the pipeline's statistics, and empties it for the next batch. */
void pipeline_batch_counted(Pipeline *p, SinkBatch *b);

/* The engine thread: from q_src, drops what the sink holds and echoes, decides row versions,
 * groups whole transactions into batches towards q_sink. arg: the Pipeline. */
void *pipeline_engine_main(void *arg);
/* The sink thread: applies batches from q_sink and makes them durable. arg: the Pipeline. */
void *pipeline_sink_main(void *arg);
/* The sink thread with apply_workers > 1: dispatches batches to that many sink sessions, which
 * apply them concurrently and commit them in order (pipeline_apply.c). arg: the Pipeline. */
void *pipeline_apply_main(void *arg);
