/* One source → engine → sink pipeline: its threads, its retries, its stats. */
#pragma once

#include "cdcsync/bidi.h"
#include "cdcsync/conf.h"
#include "cdcsync/stats.h"

typedef struct Pipeline Pipeline;
typedef struct State State;

/* Starts the pipeline's supervisor thread, which connects, streams, and retries retriable
 * failures with backoff. conf must outlive the pipeline. state may be NULL (no row versions).
 * peers (copied; NULL: none) names the reverse pipelines' echo marks (bidi_peers).
 * Returns 0 or -errno. */
int pipeline_start(const PipelineConf *conf, State *state, const char *state_dir, const BidiPeers *peers,
                   Pipeline **ret);
/* Asks the pipeline to stop: the open batch is committed at a transaction boundary or rolled
 * back, the position acknowledged. Returns at once. */
void pipeline_stop(Pipeline *p);
/* Stops, joins every thread, frees. Accepts NULL, returns NULL. */
Pipeline *pipeline_free(Pipeline *p);
PipelineStats *pipeline_stats(Pipeline *p);
const PipelineConf *pipeline_conf(const Pipeline *p);
/* True once the pipeline streams, or has failed: what READY=1 waits for. */
bool pipeline_settled(Pipeline *p);
/* Wall clock (usec) when the pipeline's threads last proved alive (watchdog). */
int64_t pipeline_alive_ts(Pipeline *p);
