/* What the endpoint answers: Prometheus /metrics text, JSON /status, /healthz, and the sampler
 * that measures events_per_second; all read from the attached pipelines' stats. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/now.h"
#include "metrics_int.h"

int64_t metrics_mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t events_total(PipelineStats *s) {
        uint64_t n = 0;
        for (int i = 0; i < 4; i++)
                n += atomic_load_explicit(&s->events[i], memory_order_relaxed);
        return n;
}

static double lag_seconds(PipelineStats *s, int64_t now);

/* Called with m->lock held. */
void metrics_entry_sample(Metrics *m, Entry *e, int64_t now) {
        e->t[e->next] = now;
        e->events[e->next] = events_total(e->s);
        e->next = (e->next + 1) % RATE_SAMPLES;
        if (e->nsamples < RATE_SAMPLES)
                e->nsamples++;
        if (e->nlag == 0 || now - e->lag_at >= (int64_t)m->lag_interval_ms * 1000) {
                e->lag[e->lag_next] = (float)lag_seconds(e->s, now_usec());
                e->lag_next = (e->lag_next + 1) % LAG_POINTS;
                if (e->nlag < LAG_POINTS)
                        e->nlag++;
                e->lag_at = now;
        }
}

/* Called with m->lock held. */
static double entry_rate(Entry *e, int64_t now) {
        if (e->nsamples == 0)
                return 0;
        int oldest = e->nsamples < RATE_SAMPLES ? 0 : e->next;
        int64_t dt = now - e->t[oldest];
        uint64_t cur = events_total(e->s);
        if (dt <= 0 || cur < e->events[oldest])
                return 0;
        return (double)(cur - e->events[oldest]) * 1e6 / (double)dt;
}

void *metrics_sampler_main(void *arg) {
        Metrics *m = arg;
        pthread_mutex_lock(&m->lock);
        while (!m->stopping) {
                struct timespec until = now_after_ms(CLOCK_MONOTONIC, m->interval_ms);
                int r = 0;
                while (!m->stopping && r != ETIMEDOUT)
                        r = pthread_cond_timedwait(&m->wake, &m->lock, &until);
                if (m->stopping)
                        break;
                int64_t now = metrics_mono_usec();
                for (size_t i = 0; i < m->nentries; i++)
                        metrics_entry_sample(m, &m->entries[i], now);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* A source heard of less recently than this no longer vouches for "caught up" (about ten of the
 * pipeline's probes, or its stream's keepalives, missed). */
#define LAG_STALE_USEC (10 * 1000000LL)

/* lag_seconds, against the source's own view (README "Reliability"): from the source commit time
 * of the oldest change read but not applied, or else from the time the source was first seen
 * holding a change the sink lacks (its log end past the sink's position); with neither, 0 while
 * the pipeline streams and the source answers, otherwise (source unreachable, pipeline down or
 * failed) from the last time the sink was known to hold everything the source had. */
static double lag_seconds(PipelineStats *s, int64_t now) {
        int64_t from = atomic_load(&s->oldest_pending_ts);
        int64_t behind = atomic_load(&s->behind_since_ts);
        if (behind && (!from || behind < from))
                from = behind;
        if (!from) {
                int64_t contact = atomic_load(&s->contact_ts);
                bool fresh = contact == 0 || now - contact <= LAG_STALE_USEC;
                if (atomic_load(&s->state) == PIPELINE_STREAMING && fresh)
                        return 0;
                from = atomic_load(&s->synced_ts);
        }
        /* Sources clamp the times they read (change_clamp_ts); with 0 < from < now the difference
         * cannot overflow. */
        if (from <= 0 || now <= from)
                return 0;
        return (double)(now - from) / 1e6;
}

/* lag_bytes: source log bytes from what the sink committed to where the source's log ends now,
 * as last observed. 0 when the source's end is not past the sink's position; across MySQL binlog
 * files, the server's own count of the files' sizes. */
static uint64_t lag_bytes(PipelineStats *s) {
        return atomic_load(&s->lag_bytes);
}

/* Label value escaping of the text exposition format: backslash, double quote, newline. */
static void put_label(FILE *f, const char *v) {
        for (; *v; v++) {
                if (*v == '\\')
                        fputs("\\\\", f);
                else if (*v == '"')
                        fputs("\\\"", f);
                else if (*v == '\n')
                        fputs("\\n", f);
                else
                        fputc(*v, f);
        }
}

static void put_family(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "name{pipeline="X"" — the caller adds more labels and the closing brace. */
static void put_series(FILE *f, const char *name, PipelineStats *s) {
        fprintf(f, "%s{pipeline=\"", name);
        put_label(f, s->name);
        fputc('"', f);
}

/* open_memstream only updates *buf on fflush/fclose: read it after. */
static char *finish_memstream(FILE *f, char **buf) {
        if (fclose(f) != 0) {
                free(*buf);
                return NULL;
        }
        return *buf;
}

char *metrics_render_prometheus(Metrics *m) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        int64_t now = now_usec();

        pthread_mutex_lock(&m->lock);
        put_family(f, "cdcsync_build_info", "gauge", "cdcsync version; always 1.");
        fputs("cdcsync_build_info{version=\"", f);
        put_label(f, CDCSYNC_VERSION);
        fputs("\"} 1\n", f);

        put_family(f, "cdcsync_pipeline_up", "gauge", "1 when the pipeline is streaming, 0 otherwise.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_pipeline_up", s);
                fprintf(f, "} %d\n", atomic_load(&s->state) == PIPELINE_STREAMING);
        }

        put_family(f, "cdcsync_pipeline_leader", "gauge",
                   "1 when this instance runs the pipeline (ha = off: always), 0 on a standby (ha = on).");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_pipeline_leader", s);
                fprintf(f, "} %d\n", atomic_load(&s->leader) != 0);
        }

        put_family(f, "cdcsync_pipeline_lag_seconds", "gauge",
                   "Seconds the sink is behind the source: from the oldest change it lacks (its commit time, or when "
                   "the source was seen holding it) to now; 0 when caught up.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_pipeline_lag_seconds", s);
                fprintf(f, "} %.6f\n", lag_seconds(s, now));
        }

        put_family(f, "cdcsync_pipeline_lag_bytes", "gauge",
                   "Source log bytes from the sink's position to the source's current log end.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_pipeline_lag_bytes", s);
                fprintf(f, "} %" PRIu64 "\n", lag_bytes(s));
        }

        put_family(f, "cdcsync_events_total", "counter", "Row changes read from the source, by operation.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                for (int op = 0; op < 4; op++) {
                        put_series(f, "cdcsync_events_total", s);
                        fprintf(f, ",op=\"%s\"} %" PRIu64 "\n", stats_event_op_labels[op],
                                (uint64_t)atomic_load_explicit(&s->events[op], memory_order_relaxed));
                }
        }

        put_family(f, "cdcsync_transactions_total", "counter", "Source transactions read.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_transactions_total", s);
                fprintf(f, "} %" PRIu64 "\n", (uint64_t)atomic_load(&s->transactions));
        }

        put_family(f, "cdcsync_bad_messages_total", "counter",
                   "Kafka messages that were no usable change event, passed on by on_bad_message.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                for (int k = 0; k < 2; k++) {
                        put_series(f, "cdcsync_bad_messages_total", s);
                        fprintf(f, ",action=\"%s\"} %" PRIu64 "\n", k ? "dead_letter" : "skip",
                                (uint64_t)atomic_load_explicit(&s->bad_messages[k], memory_order_relaxed));
                }
        }

        put_family(f, "cdcsync_conflicts_total", "counter", "Conflicting row versions, by how they were settled.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                for (int k = 0; k < STATS_CONFLICT_KINDS; k++) {
                        if (!s->conflict_kinds[k][0])
                                continue;
                        put_series(f, "cdcsync_conflicts_total", s);
                        fputs(",resolution=\"", f);
                        put_label(f, s->conflict_kinds[k]);
                        fprintf(f, "\"} %" PRIu64 "\n", (uint64_t)atomic_load(&s->conflicts[k]));
                }
        }

        put_family(f, "cdcsync_errors_total", "counter", "Errors, by kind.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                for (int k = 0; k < STATS_ERROR_KINDS; k++) {
                        if (!s->error_kinds[k][0])
                                continue;
                        put_series(f, "cdcsync_errors_total", s);
                        fputs(",kind=\"", f);
                        put_label(f, s->error_kinds[k]);
                        fprintf(f, "\"} %" PRIu64 "\n", (uint64_t)atomic_load(&s->errors[k]));
                }
        }

        put_family(f, "cdcsync_sink_batch_seconds", "histogram", "Time to apply and commit one sink batch.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                /* _count is the +Inf bucket, computed from the same reads as the buckets, so a
                 * scrape racing an observation still shows a consistent histogram. */
                uint64_t cum = 0;
                for (int b = 0; b <= STATS_BATCH_BUCKETS; b++) {
                        cum += atomic_load_explicit(&s->batch_buckets[b], memory_order_relaxed);
                        put_series(f, "cdcsync_sink_batch_seconds_bucket", s);
                        if (b < STATS_BATCH_BUCKETS)
                                fprintf(f, ",le=\"%g\"} %" PRIu64 "\n", stats_batch_bounds[b], cum);
                        else
                                fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
                }
                put_series(f, "cdcsync_sink_batch_seconds_sum", s);
                fprintf(f, "} %.9g\n", atomic_load(&s->batch_sum));
                put_series(f, "cdcsync_sink_batch_seconds_count", s);
                fprintf(f, "} %" PRIu64 "\n", cum);
        }

        put_family(f, "cdcsync_source_retained_bytes", "gauge",
                   "Source log bytes the source's server keeps for the pipeline: WAL its replication slot holds, "
                   "binlog from its position to the server's end.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                int64_t v = atomic_load(&s->retained_bytes);
                if (v < 0)
                        continue;
                put_series(f, "cdcsync_source_retained_bytes", s);
                fprintf(f, "} %" PRId64 "\n", v);
        }

        put_family(f, "cdcsync_source_slot_active", "gauge",
                   "1 when the pipeline's replication slot (MariaDB: a binlog dump of its user) is in use, else 0.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                int v = atomic_load(&s->slot_active);
                if (v < 0)
                        continue;
                put_series(f, "cdcsync_source_slot_active", s);
                fprintf(f, "} %d\n", v);
        }

        put_family(f, "cdcsync_queue_depth", "gauge", "Events waiting between the source and the sink.");
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                put_series(f, "cdcsync_queue_depth", s);
                fprintf(f, "} %" PRId64 "\n", (int64_t)atomic_load(&s->queue_depth));
        }

        /* The initial copy (#14): per table rows, per pipeline chunks left. */
        put_family(f, "cdcsync_snapshot_rows_total", "counter",
                   "Rows copied by the initial load, per source table (chunks kept from earlier attempts included).");
        for (size_t i = 0; i < m->nentries; i++) {
                StatsSnapshotTable *v = NULL;
                int n = 0;
                stats_copy_snapshot(m->entries[i].s, &v, &n);
                for (int t = 0; t < n; t++) {
                        put_series(f, "cdcsync_snapshot_rows_total", m->entries[i].s);
                        fputs(",table=\"", f);
                        put_label(f, v[t].table);
                        fprintf(f, "\"} %" PRIu64 "\n", v[t].rows);
                }
                free(v);
        }
        put_family(f, "cdcsync_snapshot_chunks_remaining", "gauge", "Chunks of the initial load not copied yet.");
        for (size_t i = 0; i < m->nentries; i++) {
                StatsSnapshotTable *v = NULL;
                int n = 0;
                int64_t left = 0;
                stats_copy_snapshot(m->entries[i].s, &v, &n);
                for (int t = 0; t < n; t++)
                        left += v[t].chunks_total - v[t].chunks_done;
                free(v);
                put_series(f, "cdcsync_snapshot_chunks_remaining", m->entries[i].s);
                fprintf(f, "} %" PRId64 "\n", left);
        }
        pthread_mutex_unlock(&m->lock);
        return finish_memstream(f, &buf);
}

/* ISO-8601 UTC with milliseconds: "2024-05-01T12:00:00.123Z". */
static void format_iso(int64_t usec, char *buf, size_t len) {
        time_t sec = (time_t)(usec / 1000000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char base[32];
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, len, "%s.%03dZ", base, (int)((usec % 1000000) / 1000));
}

/* A JSON string even when s is not valid UTF-8 (a server's error message in latin1, say):
 * jansson refuses those, so non-ASCII bytes become '?' rather than losing the whole field. */
static json_t *json_str_lossy(const char *s) {
        json_t *j = json_string(s);
        if (j)
                return j;
        char *copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *c = copy; *c; c++)
                if ((unsigned char)*c >= 0x80)
                        *c = '?';
        j = json_string(copy);
        free(copy);
        return j;
}

static json_t *json_str_or_null(const char *s) {
        return s && s[0] ? json_str_lossy(s) : json_null();
}

/* The initial copy's tables (#14): rows copied and estimated, chunks, rate and ETA of this attempt. */
static json_t *snapshot_json(PipelineStats *s, int64_t now) {
        StatsSnapshotTable *v = NULL;
        int n = 0;
        json_t *arr = json_array();
        if (!arr || stats_copy_snapshot(s, &v, &n) < 0)
                return arr ? arr : json_null();
        for (int i = 0; i < n; i++) {
                double secs = (double)(now - v[i].started_ts) / 1e6;
                double rate = secs > 0 ? (double)(v[i].rows - v[i].rows_at_start) / secs : 0;
                bool done = v[i].chunks_done >= v[i].chunks_total;
                json_t *eta = done       ? json_integer(0)
                              : rate > 0 ? json_real((double)(v[i].rows_est - v[i].rows) / rate)
                                         : json_null();
                json_array_append_new(arr, json_pack("{s:o, s:I, s:I, s:i, s:i, s:f, s:o}", "table",
                                                     json_str_lossy(v[i].table), "rows_copied", (json_int_t)v[i].rows,
                                                     "rows_estimated", (json_int_t)v[i].rows_est, "chunks_done",
                                                     v[i].chunks_done, "chunks_total", v[i].chunks_total,
                                                     "rows_per_second", done ? 0.0 : rate, "eta_seconds", eta));
        }
        free(v);
        return arr;
}

/* Called with m->lock held: the console's chart points, oldest first. */
static json_t *lag_history(Metrics *m, Entry *e) {
        json_t *vals = json_array();
        for (int k = 0; vals && k < e->nlag; k++) {
                int at = (e->lag_next - e->nlag + k + LAG_POINTS) % LAG_POINTS;
                json_array_append_new(vals, json_real(e->lag[at]));
        }
        return json_pack("{s:f, s:o}", "interval_s", m->lag_interval_ms / 1000.0, "seconds", vals);
}

/* /status, and with the lag history /api/pipelines: one builder, so what /status gains (snapshot
 * progress, ...) the API has too. */
static char *render_status(Metrics *m, bool history) {
        char *out = NULL;
        json_t *root = json_object(), *arr = json_array();
        if (!root || !arr) {
                json_decref(arr);
                goto out;
        }
        json_object_set_new(root, "version", json_string(CDCSYNC_VERSION));
        json_object_set_new(root, "pipelines", arr);

        int64_t now = now_usec(), mono = metrics_mono_usec();
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                char src[sizeof(s->source_pos_text)], app[sizeof(s->applied_pos_text)];
                char err[sizeof(s->last_error)];
                stats_copy_positions_text(s, src, sizeof(src), app, sizeof(app));
                int64_t err_ts = stats_copy_last_error(s, err, sizeof(err));
                json_t *last_error = NULL;
                if (err_ts != 0) {
                        char when[40];
                        format_iso(err_ts, when, sizeof(when));
                        last_error = json_pack("{s:o, s:s}", "message", json_str_lossy(err), "time", when);
                }
                json_t *p = json_pack(
                        "{s:o, s:s, s:o, s:o, s:f, s:I, s:f, s:I, s:I, s:o}", "name", json_str_lossy(s->name), "state",
                        pipeline_state_name((PipelineState)atomic_load(&s->state)), "source_position",
                        json_str_or_null(src), "applied_position", json_str_or_null(app), "lag_seconds",
                        lag_seconds(s, now), "lag_bytes", (json_int_t)lag_bytes(s), "events_per_second",
                        entry_rate(&m->entries[i], mono), "transactions", (json_int_t)atomic_load(&s->transactions),
                        "queue_depth", (json_int_t)atomic_load(&s->queue_depth), "last_error",
                        last_error ? last_error : json_null());
                if (p && history)
                        json_object_set_new(p, "lag_history", lag_history(m, &m->entries[i]));
                if (p)
                        json_object_set_new(p, "snapshot", snapshot_json(s, now));
                if (p) { /* ha = on: who runs it; lease_holder null with ha = off */
                        char holder[sizeof(s->lease_holder)];
                        json_object_set_new(p, "leader", json_boolean(stats_copy_lease(s, holder, sizeof(holder))));
                        json_object_set_new(p, "lease_holder", holder[0] ? json_str_lossy(holder) : json_null());
                }
                if (!p || json_array_append_new(arr, p) < 0) {
                        pthread_mutex_unlock(&m->lock);
                        goto out;
                }
        }
        pthread_mutex_unlock(&m->lock);
        out = json_dumps(root, JSON_COMPACT);
out:
        json_decref(root);
        return out;
}

char *metrics_render_status(Metrics *m) {
        return render_status(m, false);
}

char *metrics_render_pipelines(Metrics *m) {
        return render_status(m, true);
}

char *metrics_render_health(Metrics *m, bool *ret_ok) {
        char *buf = NULL;
        size_t len = 0;
        bool ok = true;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                PipelineState st = (PipelineState)atomic_load(&s->state);
                if (st == PIPELINE_STREAMING || st == PIPELINE_STANDBY) /* standby: healthy (ha = on) */
                        continue;
                ok = false;
                char err[sizeof(s->last_error)];
                int64_t ts = stats_copy_last_error(s, err, sizeof(err));
                /* One line per pipeline: a message with a newline would break the shape. A
                 * newline and the indentation after it (libpq's "\n\tIs the server running")
                 * become one space, as in the log. */
                size_t n = 0;
                for (const char *c = err; *c; c++) {
                        bool blank = *c == '\n' || *c == '\r' || *c == '\t';
                        if (blank && n > 0 && err[n - 1] == ' ')
                                continue;
                        err[n++] = blank ? ' ' : *c;
                }
                err[n] = '\0';
                fprintf(f, "pipeline %s: %s", s->name, pipeline_state_name(st));
                if (ts != 0) {
                        char when[40];
                        format_iso(ts, when, sizeof(when));
                        fprintf(f, " (last error at %s: %s)", when, err);
                }
                fputc('\n', f);
        }
        /* A warning, not a failure: the pipeline may be catching up; the status stays as the
         * states make it. */
        for (size_t i = 0; i < m->nentries; i++) {
                PipelineStats *s = m->entries[i].s;
                int64_t kept = atomic_load(&s->retained_bytes), limit = atomic_load(&s->retained_warn_bytes);
                if (limit > 0 && kept > limit)
                        fprintf(f,
                                "warning: pipeline %s: the source keeps %" PRId64
                                " bytes of log for it, more than retained_warn_bytes (%" PRId64 ")\n",
                                s->name, kept, limit);
        }
        pthread_mutex_unlock(&m->lock);
        if (ok)
                fputs("ok\n", f);
        char *out = finish_memstream(f, &buf);
        if (out)
                *ret_ok = ok;
        return out;
}
