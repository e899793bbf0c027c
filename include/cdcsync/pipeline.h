/* One source → engine → sink pipeline: its threads, its retries, its stats. */
#pragma once

#include <jansson.h>

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
/* pipeline_start, paused from the start when `paused` (an operator's pause kept in the state
 * store): no attempt runs until pipeline_resume(). */
int pipeline_start_paused(const PipelineConf *conf, State *state, const char *state_dir, const BidiPeers *peers,
                          bool paused, Pipeline **ret);
/* Operator requests (admin API); all return at once, the supervisor carries them out.
 * pause: the open batch is committed at a transaction boundary, the position acknowledged, the
 * source connection closed (the slot and the position stay); the state reads "paused" until
 * pipeline_resume(). restart: the current attempt ends as on pause and a new one starts at once
 * (also after a fatal error: the pipeline tries again). */
void pipeline_pause(Pipeline *p);
void pipeline_resume(Pipeline *p);
void pipeline_restart(Pipeline *p);
bool pipeline_paused(Pipeline *p);
/* resnapshot (admin API): body {"tables": [...]} (NULL or no list: every table) checked against
 * the pipeline's conf and connectors, and queued for its source, which copies them again while it
 * streams. Returns 0, -EINVAL with why in msg, -ENOMEM. */
int pipeline_resnapshot_ask(Pipeline *p, json_t *body, char *msg, size_t len);
/* sync_sequences = yes: carry the sequence values now (SIGHUP); returns at once. */
void pipeline_sync_sequences(Pipeline *p);
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
