/* A pipeline's sequence values carried from source to sink (seqsync.h).
 *
 * DESIGN. One thread per pipeline with sync_sequences = yes, apart from the stream's threads: it
 * reads and sets sequences over short connections of its own (the connector type's
 * sync_sequences), so a slow or failing sync never holds the stream, and the stream never holds
 * it. It sleeps on its condition variable between syncs; seqsync_request() and seqsync_free() wake
 * it through `asked` and `stop` (under lock). A sync that fails is said once and tried again at the
 * next interval; a sequence that cannot be carried is warned about at the first and the last sync
 * (and when their number changes), in between at debug level. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/log.h"
#include "cdcsync/seqsync.h"

struct SeqSync {
        const PipelineConf *pipe;
        char ctx[200];
        pthread_t thread;
        pthread_mutex_t lock; /* asked, stop */
        pthread_cond_t cond;  /* CLOCK_MONOTONIC */
        bool asked, stop;
        int rounds;                                      /* syncs done */
        int last_bad;                                    /* sequences the last sync could not carry */
        char last_err[sizeof(((CdcError *)0)->message)]; /* the last failed sync's, said once */
};

const char *seqsync_action_name(SeqAction a) {
        static const char *const names[] = {"set", "ahead", "unused", "missing", "failed"};
        return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

int seqsync_run(const PipelineConf *pipe, SeqNoteFn note, void *userdata, CdcError *err) {
        const ConnectorType *st = pipe->source ? connector_type(pipe->source->type) : NULL;
        if (!st || !st->sync_sequences || !pipe->sink || strcmp(pipe->source->type, pipe->sink->type) != 0)
                return cdc_error(err, -EOPNOTSUPP, false, CDC_ERR_CONF,
                                 "pipeline %s: sequences are carried from a PostgreSQL source into a PostgreSQL sink "
                                 "only (it reads %s and writes %s)",
                                 pipe->name, pipe->source ? pipe->source->type : "?",
                                 pipe->sink ? pipe->sink->type : "?");
        return st->sync_sequences(pipe, note, userdata, err);
}

typedef struct {
        SeqSync *q;
        int counts[SEQ_FAILED + 1];
        bool loud;           /* problems said as warnings (the first and the last sync), else at debug */
        char first_set[300]; /* "schema.seq to N" of the first one set */
} Round;

static void on_note(void *userdata, const SeqNote *n) {
        Round *rd = userdata;
        rd->counts[n->action]++;
        switch (n->action) {
        case SEQ_SET:
                log_debug(rd->q->ctx, "sequence %s set to %s on the sink as %s (was %s)", n->source_seq, n->value,
                          n->sink_seq, n->before ? n->before : "unused");
                if (!rd->first_set[0])
                        snprintf(rd->first_set, sizeof(rd->first_set), "%s to %s", n->sink_seq, n->value);
                break;
        case SEQ_MISSING:
        case SEQ_FAILED:
                log_msg(rd->loud ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, rd->q->ctx,
                        "sequence %s (column %s) not carried to the sink: %s", n->source_seq, n->column, n->why);
                break;
        default: break;
        }
}

/* One sync; `final`: the last one, said whatever it did. */
static void sync_once(SeqSync *q, bool final) {
        Round rd = {.q = q, .loud = final || q->rounds == 0};
        CdcError err = {0};
        int r = seqsync_run(q->pipe, on_note, &rd, &err);
        if (r < 0) {
                if (final || strcmp(err.message, q->last_err) != 0)
                        log_warn(q->ctx, "cannot sync sequence values%s: %s%s", final ? " at stop" : "", err.message,
                                 final ? "" : " — tried again at the next interval");
                snprintf(q->last_err, sizeof(q->last_err), "%s", err.message);
                return;
        }
        q->last_err[0] = '\0';
        int bad = rd.counts[SEQ_MISSING] + rd.counts[SEQ_FAILED];
        if (final || rd.counts[SEQ_SET] > 0 || bad != q->last_bad || q->rounds == 0)
                log_info(q->ctx,
                         "sequence values synced%s: %d set on the sink%s%s%s, %d already at or past the source, %d "
                         "unused, %d not carried",
                         final ? " at stop" : "", rd.counts[SEQ_SET], rd.first_set[0] ? " (" : "", rd.first_set,
                         rd.counts[SEQ_SET] > 1 ? ", ...)"
                         : rd.first_set[0]      ? ")"
                                                : "",
                         rd.counts[SEQ_AHEAD], rd.counts[SEQ_UNUSED], bad);
        q->last_bad = bad;
        q->rounds++;
}

static void *seqsync_main(void *arg) {
        SeqSync *q = arg;
        for (;;) {
                pthread_mutex_lock(&q->lock);
                bool stop = q->stop;
                q->asked = false;
                pthread_mutex_unlock(&q->lock);
                if (stop)
                        break;
                sync_once(q, false);
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += q->pipe->sync_sequences_interval_s > 0 ? q->pipe->sync_sequences_interval_s : 60;
                pthread_mutex_lock(&q->lock);
                while (!q->stop && !q->asked && pthread_cond_timedwait(&q->cond, &q->lock, &until) != ETIMEDOUT)
                        ;
                pthread_mutex_unlock(&q->lock);
        }
        sync_once(q, true);
        return NULL;
}

int seqsync_start(const PipelineConf *pipe, const char *ctx, SeqSync **ret) {
        *ret = NULL;
        if (!pipe->sync_sequences)
                return 0;
        SeqSync *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->pipe = pipe;
        snprintf(q->ctx, sizeof(q->ctx), "%s", ctx ? ctx : "");
        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        int r = pthread_create(&q->thread, NULL, seqsync_main, q);
        if (r != 0) {
                pthread_mutex_destroy(&q->lock);
                pthread_cond_destroy(&q->cond);
                free(q);
                return -r;
        }
        *ret = q;
        return 0;
}

void seqsync_request(SeqSync *q) {
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        q->asked = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

SeqSync *seqsync_free(SeqSync *q) {
        if (!q)
                return NULL;
        pthread_mutex_lock(&q->lock);
        q->stop = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
        pthread_join(q->thread, NULL);
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
        free(q);
        return NULL;
}
