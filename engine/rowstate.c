/* One pipeline's row versions in the state store: which change is new, which is a replay, and,
 * in bidirectional sync, which side wins a conflict.
 *
 * DESIGN (bidirectional sync). Pipeline P reads connector S and writes connector K; its reverse
 * pipeline Q reads K and writes S. Each pipeline writes only rows of its own name space in the
 * state store and reads the reverse pipeline's (state_get_other, inside its own LMDB write
 * transaction, so what it reads cannot change under it):
 *
 *   P "S/t"   what S holds, as P learns it reading S's log in order: application writes (versioned
 *             by version_next on top of the previous "S/t") and echoes (Q's writes: Q's "S/t")
 *   P "K/t"   what P made K hold (applied, or the merged version of a skipped conflict)
 *   P "S!/t"  facts: the last application write read from S's log, never rolled back
 *
 * What K holds, for deciding a change from S = the later (causally, else by the resolver) of
 * P "K/t" and Q "K!/t". A change is applied (APPLY / CONFLICT_APPLY) or not, and rewritten to fit
 * K: an update of a row K deleted → insert of its full image, a delete of it → nothing, an insert
 * of a key K holds → update.
 *
 * Crash consistency. The undo log (state.h) is per pipeline batch and covers only the pipeline's
 * own rows; "S/" and "K/" rows describe exactly P's progress, which K's checkpoint of P bounds, so
 * recovering P (against K's checkpoint) restores them to it and never touches Q's rows: one
 * pipeline's recovery cannot undo the other's writes. Facts ("S!/") are not undone: they say
 * what S's log holds, true whatever K committed; they are written monotonically (a redone older
 * change never replaces a later fact). Q reads only P's "K/" (for echoes) and "S!/": a "K/" row of
 * a P batch that is later rolled back describes a write P redoes (decided again, against at least
 * as much knowledge); without facts, two pipelines failing on each other's unseen writes (an
 * insert of a key the other side inserted) would each roll back what the other needs to know,
 * forever.
 *
 * Echoes. An echo transaction (the reverse pipeline's write, by its origin mark) is never sent
 * back as such; rowstate_echo records that S now holds Q's version. When Q's version does not
 * cover P's "S/t" (Q overwrote an application write on S it had not read yet), S holds the
 * echo's image whatever the resolver said, so it is sent to K as a new write of S at the echo's
 * position, on top of everything known (it supersedes it), unless K already holds a later write.
 *
 * Limits. Decisions are made in the engine against what it knows K holds; the knowledge of
 * application writes on K lags by the reverse pipeline's read latency. Inserts/updates/deletes
 * that meet a row state the engine did not expect make the sink fail ("affected 0 rows", unique
 * violation); bidirectional pipelines retry data errors, and the change is decided again with
 * fresher knowledge. The conflict integration test (test_pg_bidi_conflict.sh) still ends with a
 * few rows different under heavy same-row contention: the mending of echoes does not yet settle
 * every interleaving (see the report of issue #5). Conflict records are at least once: a batch
 * redone after a crash records its conflicts again. */
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
        State *st;                /* borrowed */
        const PipelineConf *conf; /* borrowed */
        const char *node;         /* the source connector: this pipeline's origin in vectors */
        StateBatch *batch;        /* open batch, or NULL */
        uint64_t batch_no;
        size_t slice_rows;
        uint64_t done_upto;    /* batches up to this number were committed by the sink */
        uint64_t dropped_upto; /* undo dropped for batches up to this number */
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
                       uint32_t seq, bool deleted, Change *c, bool *ret_apply, CdcError *err) {
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
                        return cdc_error(err, r, false, "state", "cannot version a change of %s: %s", table,
                                         strerror(-r));
        }
        r = state_put(rs->batch, table, key, keylen, &next);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", table, strerror(-r));
        if (c && change_set_version(c, &next.vv, next.ts, next.origin) < 0) /* the sink publishes it */
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
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
static int space(char *buf, size_t size, const char *node, const char *schema, const char *table) {
        int n = snprintf(buf, size, "%s/%s.%s", node, schema, table);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The "facts" name space "node!/schema.table": the last application write read from node's log,
 * never rolled back (it stays true whatever the sink committed), so the reverse pipeline learns
 * what its sink holds even while this pipeline fails and retries. */
static int fact_space(char *buf, size_t size, const char *node, const char *schema, const char *table) {
        int n = snprintf(buf, size, "%s!/%s.%s", node, schema, table);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Records an application write of node as a fact, unless a later one is recorded already. */
static int put_fact(RowState *rs, const char *fspace, const char *key, size_t keylen, const Version *v) {
        Version old;
        bool found = false;
        int r = state_get(rs->batch, fspace, key, keylen, &old, &found);
        if (r < 0)
                return r;
        if (found && (vclock_get(&old.vv, rs->node) > vclock_get(&v->vv, rs->node) ||
                      (vclock_get(&old.vv, rs->node) == vclock_get(&v->vv, rs->node) && old.seq >= v->seq)))
                return 0;
        return state_put_noundo(rs->batch, fspace, key, keylen, v);
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
        log_info(rs->ctx, "conflict on %s (%s): sink holds %s, incoming %s; winner: %s (resolve=%s)", table, key, hv,
                 iv, incoming_won ? "incoming" : "sink", resolution ? resolution : "?");
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

/* Makes an applied change fit what K holds (kh); false when nothing is left to apply. */
static bool fit(Change *c, const Version *kh, bool fkh) {
        if (fkh && kh->deleted) { /* the row is gone on K */
                if (c->op == CHANGE_DELETE)
                        return false;
                if (c->op == CHANGE_UPDATE && !c->before)
                        as_insert(c);
        } else if (fkh && !kh->deleted && c->op == CHANGE_INSERT) {
                c->op = CHANGE_UPDATE; /* both sides inserted the key: the winner's image replaces K's row */
        }
        return true;
}

static int check_bidi(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        char sspace[STATE_TABLE_MAX], kspace[STATE_TABLE_MAX], ktable[STATE_TABLE_MAX], kschema[STATE_TABLE_MAX];
        char key[KEY_MAX];
        const char *S = rs->node, *K = rs->conf->sink->name;
        /* A delete has only the old key; an update that moves a row is tracked by its new key. */
        const Value *kv = c->op == CHANGE_DELETE ? c->before : c->after;
        bool deleted = c->op == CHANGE_DELETE;
        Version sp, kp, kq, kh, next, merged;
        bool fsp = false, fkp = false, fkq = false, fkh = false;
        const char *resolution = NULL;
        int r, n;

        if (!kv || (n = encode_key(c->table, kv, key, sizeof(key))) <= 0)
                return 0; /* no key to track: applied by position alone */
        r = conf_map_table(rs->conf, c->table->schema, c->table->name, kschema, sizeof(kschema), ktable,
                           sizeof(ktable));
        if (r < 0)
                return cdc_error(err, r, false, "state", "table name of %s.%s too long", c->table->schema,
                                 c->table->name);
        char sfacts[STATE_TABLE_MAX], kfacts[STATE_TABLE_MAX];
        if (space(sspace, sizeof(sspace), S, c->table->schema, c->table->name) < 0 ||
            space(kspace, sizeof(kspace), K, kschema, ktable) < 0 ||
            fact_space(sfacts, sizeof(sfacts), S, c->table->schema, c->table->name) < 0 ||
            fact_space(kfacts, sizeof(kfacts), K, kschema, ktable) < 0)
                return cdc_error(err, -ENAMETOOLONG, false, "state", "table name of %s.%s too long for the state store",
                                 c->table->schema, c->table->name);

        r = state_get(rs->batch, sspace, key, (size_t)n, &sp, &fsp);
        if (r == 0)
                r = state_get(rs->batch, kspace, key, (size_t)n, &kp, &fkp);
        if (r == 0)
                r = state_get_other(rs->batch, rs->reverse, kfacts, key, (size_t)n, &kq, &fkq);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: read of %s failed: %s", sspace, strerror(-r));

        uint64_t counter = position_counter(txn->commit_pos);
        uint64_t have = fsp ? vclock_get(&sp.vv, S) : 0;
        /* Older than, or this very change: a replay. */
        if (fsp && (have > counter || (have == counter && (strcmp(sp.origin, S) != 0 || sp.seq >= seq)))) {
                *ret_apply = false;
                return 0;
        }
        /* What S held just before this write is what our own "S/" row says: we read S's log in
         * order, application writes and echoes (rowstate_echo) alike. The reverse pipeline's rows
         * may already hold writes that reach S only after this one. */
        r = pick(rs, &kp, fkp, &kq, fkq, &kh, &fkh);
        if (r == 0)
                r = version_next(fsp ? &sp : NULL, S, counter, txn->commit_ts, seq, deleted, &next);
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
        if (r == 0)
                r = put_fact(rs, sfacts, key, (size_t)n, &next);
        if (r == 0 && (apply || !fkh || !version_equal(&merged, &kh)))
                r = state_put(rs->batch, kspace, key, (size_t)n, &merged);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", sspace, strerror(-r));
        if (apply && change_set_version(c, &merged.vv, merged.ts, merged.origin) < 0) /* the sink publishes it */
                return cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        *ret_apply = apply && fit(c, &kh, fkh);
        return slice(rs, err);
}

int rowstate_echo(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_forward, CdcError *err) {
        char sspace[STATE_TABLE_MAX], kspace[STATE_TABLE_MAX], ktable[STATE_TABLE_MAX], kschema[STATE_TABLE_MAX];
        char key[KEY_MAX];
        const char *S = rs->node, *K = rs->conf->sink->name;
        const Value *kv = c->op == CHANGE_DELETE ? c->before : c->after;
        Version sp, sq, kp, kq, kh, in, merged;
        bool fsp = false, fsq = false, fkp = false, fkq = false, fkh = false;
        const char *resolution = NULL;
        int r, n;

        *ret_forward = false;
        if (!rs->reverse[0] || !rs->batch || c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0 || !kv ||
            (n = encode_key(c->table, kv, key, sizeof(key))) <= 0)
                return 0;
        r = conf_map_table(rs->conf, c->table->schema, c->table->name, kschema, sizeof(kschema), ktable,
                           sizeof(ktable));
        if (r < 0)
                return cdc_error(err, r, false, "state", "table name of %s.%s too long", c->table->schema,
                                 c->table->name);
        if (space(sspace, sizeof(sspace), S, c->table->schema, c->table->name) < 0 ||
            space(kspace, sizeof(kspace), K, kschema, ktable) < 0)
                return cdc_error(err, -ENAMETOOLONG, false, "state", "table name of %s.%s too long for the state store",
                                 c->table->schema, c->table->name);
        r = state_get(rs->batch, sspace, key, (size_t)n, &sp, &fsp);
        if (r == 0)
                r = state_get_other(rs->batch, rs->reverse, sspace, key, (size_t)n, &sq, &fsq);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: read of %s failed: %s", sspace, strerror(-r));
        if (!fsq)
                return 0; /* the reverse pipeline's rows were rolled back: it writes this again */
        VClockOrder o = fsp ? vclock_compare(&sp.vv, &sq.vv) : VCLOCK_BEFORE;
        if (o == VCLOCK_BEFORE || o == VCLOCK_EQUAL) {
                /* The reverse pipeline decided this write knowing all S held: S holds it now. */
                r = state_put(rs->batch, sspace, key, (size_t)n, &sq);
                if (r < 0)
                        return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", sspace,
                                         strerror(-r));
                return slice(rs, err);
        }
        /* The reverse pipeline overwrote an application write on S that it had not read yet (sp):
         * S now holds the echo's image, whatever the resolver had said, and K (which may hold sp
         * or a write the reverse pipeline judged against stale knowledge) must get it too, or the
         * two sides stay apart. The overwrite is a real write on S at the echo's position: it is
         * versioned as such, on top of everything known, so it supersedes all of it. */
        Version base = sq;
        r = vclock_merge(&sq.vv, &sp.vv, &base.vv);
        if (r == 0)
                r = state_get(rs->batch, kspace, key, (size_t)n, &kp, &fkp);
        if (r == 0) {
                char kfacts[STATE_TABLE_MAX];
                r = fact_space(kfacts, sizeof(kfacts), K, kschema, ktable);
                if (r == 0)
                        r = state_get_other(rs->batch, rs->reverse, kfacts, key, (size_t)n, &kq, &fkq);
        }
        if (r == 0)
                r = pick(rs, &kp, fkp, &kq, fkq, &kh, &fkh);
        if (r == 0 && fkh) {
                r = vclock_merge(&base.vv, &kh.vv, &base.vv);
                if (kh.ts > base.ts)
                        base.ts = kh.ts;
        }
        if (r == 0 && sp.ts > base.ts)
                base.ts = sp.ts;
        if (r == 0) {
                r = version_next(&base, S, position_counter(txn->commit_pos), txn->commit_ts, seq,
                                 c->op == CHANGE_DELETE, &in);
                if (r == -EINVAL) { /* our facts run ahead of this echo (a batch redone): nothing to mend */
                        log_debug(rs->ctx, "echo of %s older than what is known: not mended", sspace);
                        r = state_put(rs->batch, sspace, key, (size_t)n, &sq);
                        return r < 0 ? cdc_error(err, r, false, "state", "state store: write failed: %s", strerror(-r))
                                     : slice(rs, err);
                }
        }
        if (r == 0)
                r = version_decide(fkh ? &kh : NULL, &in, rs->conf->conflict, rs->conf->resolve,
                                   (const char *const *)rs->conf->priority, rs->conf->npriority, &merged, &resolution);
        if (r < 0)
                return cdc_error(err, r, false, "state", "cannot decide an echo of %s: %s", sspace, strerror(-r));
        int verdict = r;
        bool apply = verdict == VERSION_APPLY || verdict == VERSION_CONFLICT_APPLY;
        char kt[512];
        key_text(c->table, kv, kt, sizeof(kt));
        log_info(rs->ctx, "%s (%s): the reverse pipeline overwrote a write it had not seen; %s", sspace + strlen(S) + 1,
                 kt, apply ? "sending the sink the image it left" : "the sink already holds a later write");
        if (verdict == VERSION_CONFLICT_APPLY || verdict == VERSION_CONFLICT_SKIP)
                report_conflict(rs, sspace + strlen(S) + 1, kt, &kh, &in, verdict, resolution);
        r = state_put(rs->batch, sspace, key, (size_t)n, &in);
        if (r == 0 && (apply || !fkh || !version_equal(&merged, &kh)))
                r = state_put(rs->batch, kspace, key, (size_t)n, &merged);
        if (r < 0)
                return cdc_error(err, r, false, "state", "state store: write of %s failed: %s", sspace, strerror(-r));
        *ret_forward = apply && fit(c, &kh, fkh);
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
                r = put_version(rs, table, key, (size_t)n, txn, seq, false, c, ret_apply, err);
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
                        r = put_version(rs, table, key, (size_t)n, txn, seq, true, newv ? NULL : c, ret_apply, err);
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
