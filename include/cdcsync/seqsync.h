/* The sequence values of one pipeline (sync_sequences = yes): carried from the source to the sink
 * (ConnectorType.sync_sequences) by a thread of their own at start, every
 * sync_sequences_interval_s, when asked (SIGHUP), and once more when it stops — after the
 * pipeline's last batch, when the service stops or a reload restarts the pipeline. */
#pragma once

#include "cdcsync/connector.h"

typedef struct SeqSync SeqSync;

/* Starts the thread for pipe (borrowed, outlives it); ctx: the log context (copied). *ret NULL
 * (and 0) when pipe does not sync sequences. Returns 0 or -errno. */
int seqsync_start(const PipelineConf *pipe, const char *ctx, SeqSync **ret);
/* Asks for a sync now; returns at once. Accepts NULL. */
void seqsync_request(SeqSync *q);
/* Syncs once more, then stops the thread and frees. Accepts NULL, returns NULL. */
SeqSync *seqsync_free(SeqSync *q);
/* One sync on the caller's thread (cdcsync sync-sequences): note hears of every sequence.
 * Returns 0, -EOPNOTSUPP (err filled) when the pipeline's types cannot, or negative with err. */
int seqsync_run(const PipelineConf *pipe, SeqNoteFn note, void *userdata, CdcError *err);
/* "set", "ahead", "unused", "missing", "failed". */
const char *seqsync_action_name(SeqAction a);
