/* The conflict log of bidirectional sync: each true conflict counted, logged and appended to
 * state_dir/conflicts.jsonl, synced before the batch it belongs to commits. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdcsync/log.h"
#include "rowstate_int.h"

static void version_text(const Version *v, char *buf, size_t size) {
        char vv[VCLOCK_TEXT_MAX];
        if (vclock_format(&v->vv, vv, sizeof(vv)) < 0)
                snprintf(vv, sizeof(vv), "{?}");
        snprintf(buf, size, "%s origin=%s ts=%lld%s", vv, v->origin, (long long)v->ts, v->deleted ? " deleted" : "");
}

static json_t *version_json(const Version *v) {
        char vv[VCLOCK_TEXT_MAX];
        if (vclock_format(&v->vv, vv, sizeof(vv)) < 0)
                vv[0] = '\0';
        return json_pack("{s:s, s:s, s:I, s:b}", "vv", vv, "origin", v->origin, "ts", (json_int_t)v->ts, "deleted",
                         v->deleted);
}

/* Appends one line to the conflict log, whole or not at all: other pipelines append to the same
 * file (flock orders them), and a write cut short (disk full) is cut off again, so a reader never
 * meets half a line. Returns 0 or -errno. */
static int append_line(const char *path, const char *line, size_t len) {
        int r = 0, fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        struct stat st;
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
                r = -errno;
        } else {
                ssize_t w = write(fd, line, len);
                if (w != (ssize_t)len) {
                        r = w < 0 ? -errno : -ENOSPC;
                        if (w > 0 && ftruncate(fd, st.st_size) < 0)
                                r = -errno;
                }
        }
        close(fd); /* drops the lock */
        return r;
}

/* Counts, logs and records one conflict (records are appended at least once: a batch redone
 * after a crash records its conflicts again). A record that cannot be written fails the change:
 * the batch is redone once the disk takes it, so no conflict goes unrecorded. */
int rowstate_report_conflict(RowState *rs, const char *table, const char *key, const Version *held,
                             const Version *incoming, int verdict, const char *resolution, CdcError *err) {
        char hv[VCLOCK_TEXT_MAX + 128], iv[VCLOCK_TEXT_MAX + 128];
        bool incoming_won = verdict == VERSION_CONFLICT_APPLY;
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s}", "ts_us", (json_int_t)incoming->ts,
                              "pipeline", rs->conf->name, "source", rs->conf->source->name, "sink",
                              rs->conf->sink->name, "table", table, "key", key, "sink_version", version_json(held),
                              "incoming_version", version_json(incoming), "winner", incoming_won ? "incoming" : "sink",
                              "resolution", resolution ? resolution : "");
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!line)
                return cdc_oom(err);
        size_t len = strlen(line);
        line[len] = '\n'; /* json_dumps' NUL becomes the line end; write exactly len + 1 */
        int r = append_line(rs->conflicts_path, line, len + 1);
        free(line);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot append a conflict record to %s", rs->conflicts_path);
        rs->conflicts_dirty = true;
        if (rs->stats)
                stats_count_conflict(rs->stats, resolution ? resolution : "other");
        version_text(held, hv, sizeof(hv));
        version_text(incoming, iv, sizeof(iv));
        log_info(rs->ctx, "conflict on %s (%s): sink holds %s, incoming %s; winner: %s (resolve=%s)", table, key, hv,
                 iv, incoming_won ? "incoming" : "sink", resolution ? resolution : "?");
        return 0;
}

/* Conflict records of the batch reach the disk before the batch does: a record is then never
 * missing for a batch the sink committed (a crash after this may record it twice). */
int rowstate_sync_conflicts(RowState *rs, CdcError *err) {
        if (!rs->conflicts_dirty)
                return 0;
        int r = 0, fd = open(rs->conflicts_path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0 || fdatasync(fd) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot sync %s", rs->conflicts_path);
        rs->conflicts_dirty = false;
        return 0;
}
