/* One pipeline's row versions in the state store: which change is new, which is a replay, and,
 * in bidirectional sync, which side wins a conflict.
 *
 * DESIGN (bidirectional sync). Pipeline P reads connector S and writes connector K; its reverse
 * pipeline Q reads K and writes S. The version a connector holds for (table, key) is known from
 * two writers: the applications (seen by the pipeline reading that connector) and cdcsync (the
 * pipeline writing it). Each pipeline writes only rows of its own name space in the state store:
 *
 *   P: "S/schema.table" → the last application write to the row on S that P read (its version)
 *   P: "K/schema.table" → the version P made K hold (applied, or merged by a skipped conflict)
 *   Q: "K/..." (application writes on K)   Q: "S/..." (what Q made S hold)
 *
 * and reads the reverse pipeline's rows inside its own LMDB write transaction (state_get_other).
 * What S holds = the later of P:"S/" and Q:"S/" (causally; if concurrent, by the resolver); same
 * for K. A change read from S gets version_next(what S holds, S, counter, commit ts, seq), is
 * decided with version_decide against what K holds, and P stores both rows.
 *
 * Crash consistency. P's undo log (state.h) covers only P's rows, and P's rows describe exactly
 * P's progress: "S/" rows are facts about S's log up to P's source position and "K/" rows are
 * P's writes into K, both of which the sink's checkpoint of P bounds. Recovery of P (against K's
 * checkpoint) restores P's rows to that checkpoint and cannot touch Q's rows, so one pipeline's
 * recovery never undoes the other's writes. Q may have read P's rows of a batch that P later
 * rolls back (P commits state before its sink): a "S/" row is still a true fact about S's log,
 * and a "K/" row of a write that never reached K only makes a later application write on K
 * claim to follow it; when P redoes that write it is decided against that application write,
 * which dominates it, so it is skipped: K and S still agree.
 *
 * Limit. The decision is made in the engine, against what the engine knows K holds: an
 * application write on K that Q has not read yet is unknown to P. An update or delete that
 * meets a missing row is turned into the right operation (an update that won → an insert of its
 * full image; a delete → nothing); an insert that meets a live row → an update. When the
 * knowledge was stale, the sink reports "affected 0 rows" or a unique violation; the pipeline
 * retries (bidirectional pipelines' data errors are retriable) and, with Q having caught up, the
 * change is decided again. An update over an unseen concurrent update is not detected (no sink
 * error): the row may differ until the next write to it. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdcsync/log.h"
#include "cdcsync/rowstate.h"
#include "cdcsync/stats.h"
#include "cdcsync/state.h"
#include "cdcsync/version.h"

/* An LMDB write transaction keeps its dirty pages in memory until it commits: a batch holding a
 * 1,000,000-row source transaction is written in slices of this many rows, all under the same
 * batch number, so memory stays bounded (recovery treats the slices as one batch). */
#define ROWS_PER_SLICE 20000
#define KEY_MAX 8192

struct RowState {
        State *st;                 /* borrowed */
        const PipelineConf *conf;  /* borrowed */
        const char *node;          /* the source connector: this pipeline's origin in vectors */
        StateBatch *batch;         /* open batch, or NULL */
        uint64_t batch_no;
        size_t slice_rows;
        uint64_t done_upto;        /* batches up to this number were committed by the sink */
        uint64_t dropped_upto;     /* undo dropped for batches up to this number */
        /* bidirectional sync */
        char reverse[STATE_NAME_MAX + 1]; /* the reverse pipeline, "" for a one-way pipeline */
        PipelineStats *stats;             /* borrowed, may be NULL */
        char conflicts_path[600];         /* state_dir/conflicts.jsonl */
        char ctx[256];
};

int rowstate_new(State *st, const PipelineConf *conf, const RowStateBidi *bidi, RowState **ret) {
        RowState *rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        rs->st = st;
        rs->conf = conf;
        rs->node = conf->source->name;
        if (bidi && bidi->reverse && bidi->reverse[0]) {
                if (strlen(bidi->reverse) >= sizeof(rs->reverse) || !bidi->state_dir) {
                        free(rs);
                        return -EINVAL;
                }
                memcpy(rs->reverse, bidi->reverse, strlen(bidi->reverse) + 1);
                rs->stats = bidi->stats;
                snprintf(rs->conflicts_path, sizeof(rs->conflicts_path), "%s/conflicts.jsonl", bidi->state_dir);
                snprintf(rs->ctx, sizeof(rs->ctx), "[pipeline=%s source=%s sink=%s]", conf->name, conf->source->name,
                         conf->sink->name);
        }
        *ret = rs;
        return 0;
}

RowState *rowstate_free(RowState *rs) {
        if (!rs)
                return NULL;
        state_batch_abort(rs->batch);
        free(rs);
        return NULL;
}

int rowstate_recover(RowState *rs, Position sink_pos, bool sink_found, CdcError *err) {
        rs->batch = state_batch_abort(rs->batch);
        int r = state_recover(rs->st, rs->conf->name, sink_found ? sink_pos : (Position){0, 0});
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: cannot recover pipeline %s: %s", rs->conf->name,
                                 strerror(-r));
        if (r > 0)
                log_info(NULL, "pipeline %s: rolled back %d state batches the sink never committed", rs->conf->name, r);
        rs->done_upto = rs->dropped_upto = rs->batch_no = 0;
        return 0;
}

/* Undo records of batches the sink committed are dropped here, in the engine thread, between
 * batches: the sink thread must never wait for the store's single write lock, which the engine
 * may hold while it waits for room in the sink's queue. */
static void drop_done(RowState *rs) {
        uint64_t upto = __atomic_load_n(&rs->done_upto, __ATOMIC_ACQUIRE);
        for (uint64_t b = rs->dropped_upto + 1; b <= upto; b++)
                state_batch_done(rs->st, rs->conf->name, b);
        if (upto > rs->dropped_upto)
                rs->dropped_upto = upto;
}

int rowstate_batch_begin(RowState *rs, uint64_t batch_no, CdcError *err) {
        drop_done(rs);
        /* The end is known only when the batch ends: until state_batch_set_end, recovery treats
         * the batch as never committed by the sink. */
        int r = state_batch_begin(rs->st, rs->conf->name, batch_no, (Position){UINT64_MAX, UINT64_MAX}, &rs->batch);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: cannot begin batch %llu: %s",
                                 (unsigned long long)batch_no, strerror(-r));
        rs->batch_no = batch_no;
        rs->slice_rows = 0;
        return 0;
}

/* The row's key as length-prefixed values of its key columns (NULL: length 0xFFFFFFFF).
 * Returns the length, 0 when the table has no key, -E2BIG when too long. */
static int encode_key(const Table *t, const Value *vals, char *buf, size_t size) {
        size_t n = 0;
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                uint32_t len = vals[i].kind == VALUE_TEXT ? vals[i].len : UINT32_MAX;
                size_t need = 4 + (len == UINT32_MAX ? 0 : len);
                if (n + need > size)
                        return -E2BIG;
                memcpy(buf + n, &len, 4);
                n += 4;
                if (len != UINT32_MAX) {
                        memcpy(buf + n, vals[i].data, len);
                        n += len;
                }
        }
        return (int)n;
}

static int put_version(RowState *rs, const char *table, const char *key, size_t keylen, const TxnInfo *txn,
                       uint32_t seq, bool deleted, bool *ret_apply, CdcError *err) {
        Version stored, next;
        bool found = false;
        int r = state_get(rs->batch, table, key, keylen, &stored, &found);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: read of %s failed: %s", table, strerror(-r));
        uint64_t counter = position_counter(txn->commit_pos);
        uint64_t have = found ? vclock_get(&stored.vv, rs->node) : 0;
        /* Older, or this very change again: a replay. */
        if (found && (have > counter || (have == counter && stored.seq >= seq))) {
                *ret_apply = false;
                return 0;
        }
        if (found && have == counter) {
                /* A later change of the same source transaction to the same row. */
                next = stored;
                next.seq = seq;
                next.deleted = deleted;
                next.wvv = next.vv;
        } else {
                r = version_next(found ? &stored : NULL, rs->node, counter, txn->commit_ts, seq, deleted, &next);
                if (r < 0)
                        return cdc_error(err, r, false, "state", "cannot version a change of %s: %s", table, strerror(-r));
        }
        r = state_put(rs->batch, table, key, keylen, &next);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", table, strerror(-r));
        *ret_apply = true;
        return 0;
}

static int slice(RowState *rs, CdcError *err) {
        if (++rs->slice_rows < ROWS_PER_SLICE)
                return 0;
        int r = state_batch_commit(rs->batch);
        rs->batch = NULL;
        if (r == 0)
                r = state_batch_continue(rs->st, rs->conf->name, rs->batch_no, &rs->batch);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: cannot commit a slice of batch %llu: %s",
                                 (unsigned long long)rs->batch_no, strerror(-r));
        rs->slice_rows = 0;
        return 0;
}

/* ---- bidirectional sync ---- */

/* The later of two versions of one connector's row (see DESIGN): the causally newer one, or the
 * resolver's winner; its vector is the join of both, so a write built on it follows both. */
static int pick(RowState *rs, const Version *a, bool fa, const Version *b, bool fb, Version *ret, bool *ret_found) {
        if (!fa || !fb) {
                if (fa || fb)
                        *ret = fa ? *a : *b;
                *ret_found = fa || fb;
                return 0;
        }
        Version m;
        int r = version_decide(a, b, rs->conf->conflict, rs->conf->resolve, (const char *const *)rs->conf->priority,
                               rs->conf->npriority, &m, NULL);
        if (r < 0)
                return r;
        *ret = m;
        *ret_found = true;
        return 0;
}

/* "schema.table" of connector node, as a row name space: "node/schema.table". */
static void space(char *buf, size_t size, const char *node, const char *schema, const char *table) {
        snprintf(buf, size, "%s/%s.%s", node, schema, table);
}

static void key_text(const Table *t, const Value *vals, char *buf, size_t size) {
        size_t n = 0;
        buf[0] = '\0';
        for (int i = 0; i < t->ncols && n + 1 < size; i++) {
                if (!t->cols[i].key)
                        continue;
                int w = snprintf(buf + n, size - n, "%s%s=%s", n ? "," : "", t->cols[i].name,
                                 vals[i].kind == VALUE_TEXT ? vals[i].data : "NULL");
                if (w < 0)
                        break;
                n += (size_t)w < size - n ? (size_t)w : size - n - 1;
        }
}

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

/* Counts, logs and records one conflict (records are appended at least once: a batch redone
 * after a crash records its conflicts again). */
static void report_conflict(RowState *rs, const char *table, const char *key, const Version *held,
                            const Version *incoming, int verdict, const char *resolution) {
        char hv[VCLOCK_TEXT_MAX + 128], iv[VCLOCK_TEXT_MAX + 128];
        bool incoming_won = verdict == VERSION_CONFLICT_APPLY;
        if (rs->stats)
                stats_count_conflict(rs->stats, resolution ? resolution : "other");
        version_text(held, hv, sizeof(hv));
        version_text(incoming, iv, sizeof(iv));
        log_info(rs->ctx, "conflict on %s (%s): sink holds %s, incoming %s; winner: %s (resolve=%s)", table, key, hv, iv,
                 incoming_won ? "incoming" : "sink", resolution ? resolution : "?");
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s}", "ts_us", (json_int_t)incoming->ts,
                              "pipeline", rs->conf->name, "source", rs->conf->source->name, "sink",
                              rs->conf->sink->name, "table", table, "key", key, "sink_version", version_json(held),
                              "incoming_version", version_json(incoming), "winner", incoming_won ? "incoming" : "sink",
                              "resolution", resolution ? resolution : "");
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!line)
                return;
        int fd = open(rs->conflicts_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
                size_t len = strlen(line);
                line[len] = '\n'; /* json_dumps' NUL becomes the line end; write exactly len + 1 */
                if (write(fd, line, len + 1) != (ssize_t)(len + 1))
                        log_warn(rs->ctx, "cannot append to %s: %s", rs->conflicts_path, strerror(errno));
                close(fd);
        } else {
                log_warn(rs->ctx, "cannot open %s: %s", rs->conflicts_path, strerror(errno));
        }
        free(line);
}

/* Turns an update that won into an insert of its full image (the row is gone on the sink);
 * false when the image is not full (an unchanged TOAST column was not sent). */
static bool as_insert(Change *c) {
        for (int i = 0; i < c->table->ncols; i++)
                if (c->after[i].kind == VALUE_UNCHANGED)
                        return false;
        values_free(c->before, c->table->ncols);
        c->before = NULL;
        c->op = CHANGE_INSERT;
        return true;
}

static int check_bidi(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        char sspace[STATE_TABLE_MAX], kspace[STATE_TABLE_MAX], ktable[STATE_TABLE_MAX], kschema[STATE_TABLE_MAX];
        char key[KEY_MAX];
        const char *S = rs->node, *K = rs->conf->sink->name;
        /* A delete has only the old key; an update that moves a row is tracked by its new key. */
        const Value *kv = c->op == CHANGE_DELETE ? c->before : c->after;
        bool deleted = c->op == CHANGE_DELETE;
        Version sp, sq, sh, kp, kq, kh, next, merged;
        bool fsp = false, fsq = false, fsh = false, fkp = false, fkq = false, fkh = false;
        const char *resolution = NULL;
        int r, n;

        if (!kv || (n = encode_key(c->table, kv, key, sizeof(key))) <= 0)
                return 0; /* no key to track: applied by position alone */
        r = conf_map_table(rs->conf, c->table->schema, c->table->name, kschema, sizeof(kschema), ktable, sizeof(ktable));
        if (r < 0)
                return cdc_error(err, r, false, "state", "table name of %s.%s too long", c->table->schema, c->table->name);
        space(sspace, sizeof(sspace), S, c->table->schema, c->table->name);
        space(kspace, sizeof(kspace), K, kschema, ktable);

        r = state_get(rs->batch, sspace, key, (size_t)n, &sp, &fsp);
        if (r == 0)
                r = state_get_other(rs->batch, rs->reverse, sspace, key, (size_t)n, &sq, &fsq);
        if (r == 0)
                r = state_get(rs->batch, kspace, key, (size_t)n, &kp, &fkp);
        if (r == 0)
                r = state_get_other(rs->batch, rs->reverse, kspace, key, (size_t)n, &kq, &fkq);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: read of %s failed: %s", sspace, strerror(-r));

        uint64_t counter = position_counter(txn->commit_pos);
        uint64_t have = fsp ? vclock_get(&sp.vv, S) : 0;
        /* Older than, or this very change: a replay. */
        if (fsp && (have > counter || (have == counter && (strcmp(sp.origin, S) != 0 || sp.seq >= seq)))) {
                *ret_apply = false;
                return 0;
        }
        r = pick(rs, &sp, fsp, &sq, fsq, &sh, &fsh);
        if (r == 0)
                r = pick(rs, &kp, fkp, &kq, fkq, &kh, &fkh);
        if (r == 0) {
                r = version_next(fsh ? &sh : NULL, S, counter, txn->commit_ts, seq, deleted, &next);
                /* The reverse pipeline already knew this write (it read our rows of a batch that
                 * recovery rolled back): build on our own rows only. */
                if (r == -EINVAL)
                        r = version_next(fsp ? &sp : NULL, S, counter, txn->commit_ts, seq, deleted, &next);
        }
        if (r < 0)
                return cdc_error(err, r, false, "state", "cannot version a change of %s: %s", sspace, strerror(-r));
        r = version_decide(fkh ? &kh : NULL, &next, rs->conf->conflict, rs->conf->resolve,
                           (const char *const *)rs->conf->priority, rs->conf->npriority, &merged, &resolution);
        if (r < 0)
                return cdc_error(err, r, false, "state", "cannot decide a change of %s: %s", sspace, strerror(-r));
        int verdict = r;
        if (verdict == VERSION_CONFLICT_APPLY || verdict == VERSION_CONFLICT_SKIP) {
                char kt[512];
                key_text(c->table, kv, kt, sizeof(kt));
                report_conflict(rs, sspace + strlen(S) + 1, kt, &kh, &next, verdict, resolution);
        }
        bool apply = verdict == VERSION_APPLY || verdict == VERSION_CONFLICT_APPLY;
        /* S holds this write whatever K does; K holds the winner (with a vector covering both). */
        r = state_put(rs->batch, sspace, key, (size_t)n, &next);
        if (r == 0 && (apply || !fkh || !version_equal(&merged, &kh)))
                r = state_put(rs->batch, kspace, key, (size_t)n, &merged);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", sspace, strerror(-r));
        if (apply && fkh && kh.deleted) { /* the row is gone on K */
                if (c->op == CHANGE_DELETE)
                        apply = false;
                else if (c->op == CHANGE_UPDATE && !c->before)
                        as_insert(c);
        } else if (apply && fkh && !kh.deleted && c->op == CHANGE_INSERT) {
                c->op = CHANGE_UPDATE; /* both sides inserted the key: the winner's image replaces K's row */
        }
        *ret_apply = apply;
        return slice(rs, err);
}

int rowstate_check(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        char table[STATE_TABLE_MAX];
        char key[KEY_MAX];
        *ret_apply = true;
        if (c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0 || !rs->batch)
                return 0;
        if (rs->reverse[0])
                return check_bidi(rs, txn, c, seq, ret_apply, err);
        snprintf(table, sizeof(table), "%s.%s", c->table->schema, c->table->name);

        const Value *oldv = c->before ? c->before : NULL;
        const Value *newv = c->op == CHANGE_DELETE ? NULL : c->after;
        int r;
        if (newv) {
                int n = encode_key(c->table, newv, key, sizeof(key));
                if (n <= 0)
                        return 0; /* a key too long to track is applied by position alone */
                r = put_version(rs, table, key, (size_t)n, txn, seq, false, ret_apply, err);
                if (r < 0 || !*ret_apply)
                        return r;
        }
        if (oldv) {
                char newkey[KEY_MAX];
                int nn = newv ? encode_key(c->table, newv, newkey, sizeof(newkey)) : -1;
                int n = encode_key(c->table, oldv, key, sizeof(key));
                /* A delete, or an update that moved the row to another key: the old key gets a
                 * tombstone, so a stale change of it cannot bring the row back. */
                if (n > 0 && (nn != n || memcmp(key, newkey, (size_t)n) != 0)) {
                        r = put_version(rs, table, key, (size_t)n, txn, seq, true, ret_apply, err);
                        if (r < 0)
                                return r;
                        if (!newv && !*ret_apply)
                                return 0;
                        *ret_apply = true;
                }
        }
        return slice(rs, err);
}

int rowstate_batch_commit(RowState *rs, Position end, CdcError *err) {
        if (!rs->batch)
                return 0;
        int r = state_batch_set_end(rs->batch, end);
        if (r == 0)
                r = state_batch_commit(rs->batch);
        else
                state_batch_abort(rs->batch);
        rs->batch = NULL;
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: cannot commit batch %llu: %s",
                                 (unsigned long long)rs->batch_no, strerror(-r));
        return 0;
}

void rowstate_batch_abort(RowState *rs) {
        rs->batch = state_batch_abort(rs->batch);
}

void rowstate_batch_done(RowState *rs, uint64_t batch_no) {
        __atomic_store_n(&rs->done_upto, batch_no, __ATOMIC_RELEASE);
}
