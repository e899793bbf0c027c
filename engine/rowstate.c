/* One pipeline's row versions in the state store: which change is new, which is a replay, and,
 * in bidirectional sync, which side wins a conflict.
 *
 * DESIGN (which pipelines keep versions). Only bidirectional ones. A one-way pipeline's sink stores
 * the pipeline's position with the data (a database sink in the same transaction, a Kafka sink in
 * its checkpoint record after the batch's messages); on start the engine skips every transaction
 * at or below that position, and a source sends each transaction once and in position order after
 * it (PostgreSQL, MySQL/MariaDB). So a change whose row version is not newer than the stored one
 * never reaches the engine: the versions (and their undo log, written and synced before every sink
 * commit) never skip anything and are pure cost. The Kafka source hands every message on at a new,
 * higher position (a repeat after a crash included: kafka_source.c) and relies on idempotent apply,
 * so versions would not skip its repeats either. What a one-way pipeline into Kafka publishes as
 * source.cdcsync_vclock is the row's vector {source: commit position}, exactly what the kept
 * versions held (positional_version). Bidirectional sync needs them: what each side holds, echoes
 * and conflicts are decided on versions, below.
 *
 * DESIGN (bidirectional sync). Pipeline P reads connector S and writes connector K; its reverse
 * pipeline Q reads K and writes S. Each pipeline writes only rows of its own name space in the
 * state store and reads the reverse pipeline's (state_get_other, inside its own LMDB write
 * transaction, so what it reads cannot change under it):
 *
 *   P "S/t"   what S holds now, as P reads S's log in order: an application write is versioned by
 *             version_next on top of it; an echo (Q's write) sets it to exactly the version Q wrote
 *   P "K/t"   P's last write into K, its vector carrying the entry "w.P" (our write is an event on K
 *             of its own: what Q reads from K after it is versioned on top of it, what K held
 *             before it does not follow it)
 *
 * What K holds now, as well as P knows it (belief): Q's "K/t" (exact up to Q's read point in K's
 * log), unless P's "K/t" is later, which shows as Q's row not following it causally. Every event
 * P reads from S (application write or echo) leaves S holding some version; P sends it to K when
 * it wins over the belief (version_decide: causally newer, or the conflict policy's winner). K may
 * hold an application write P has not heard of yet, so the sink applies what P sends
 * idempotently (CHANGE_IDEMPOTENT: the row is made equal to the image, a missing row is no error).
 * When that overwrote a later write, Q reads our echo after it and sends S's winner back; the
 * decisions only use versions both sides agree on, so both settle on the same row.
 *
 * Version tags make echoes exact. With each row it applies, the sink writes, in the same
 * transaction and just before the row, the row's version into cdcsync.versions (rowstate_tag;
 * k = SHA-256 of the row's name, v = name, key and version). Q reads the tag in the echo
 * transaction (rowstate_echo_tag) and so knows which version each echoed row is, even when the
 * row change itself is not in the log (a delete of a row that was not there; MariaDB does not log
 * an update that changes nothing): a delete is decided from its tag alone. Without the tag (a
 * sink of an older cdcsync) the reverse pipeline's latest write is taken instead.
 *
 * tests/unit/test_bidi_sim.c drives this code through thousands of random interleavings of
 * application writes, lagging reads, batches and crashes on two nodes; both end equal in all.
 *
 * Crash consistency. The undo log (state.h) is per pipeline batch and covers only the pipeline's
 * own rows: recovering P (against K's checkpoint) restores them and never touches Q's rows. The
 * tags travel inside the sink's own transaction, so they are exactly as durable as the rows.
 * Conflict records are at least once: a batch redone after a crash records its conflicts again. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdcsync/connector.h"
#include "cdcsync/log.h"
#include "cdcsync/rowstate.h"
#include "cdcsync/stats.h"
#include "cdcsync/state.h"
#include "cdcsync/version.h"
#include "rowstate_int.h"

/* A failure of the state store or of a file under state_dir. Counted as "disk" when the file
 * system failed (full, out of quota, I/O error, read-only, a file or directory removed), as
 * "state" when the store itself is corrupt or of an incompatible version. Both are retried with
 * backoff: freeing space, or moving a damaged store aside, is enough for the pipeline to resume. */
int rowstate_store_error(RowState *rs, CdcError *err, int r, const char *fmt, ...) {
        char what[300];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        const char *dir = rs->state_dir ? rs->state_dir : "state_dir";
        switch (r) {
        case -ENOSPC:
        case -EDQUOT:
        case -EIO:
        case -EROFS:
        case -EFBIG:
        case -ENOENT:
        case -EACCES:
        case -EPERM:
                return cdc_error(err, r, true, CDC_ERR_DISK,
                                 "state store in %s: %s: %s — free space or fix %s; the pipeline "
                                 "retries by itself",
                                 dir, what, state_strerror(r), dir);
        case -EUCLEAN:
                return cdc_error(err, r, true, CDC_ERR_STATE,
                                 "state store %s/data.mdb: %s: %s — move data.mdb and lock.mdb out of %s (or restore "
                                 "them from a backup); the pipeline retries by itself and starts with no row versions",
                                 dir, what, state_strerror(r), dir);
        case -EPROTO:
                return cdc_error(
                        err, r, true, CDC_ERR_STATE,
                        "state store %s/data.mdb: %s: %s — run the cdcsync that wrote it, or move data.mdb and "
                        "lock.mdb out of %s; the pipeline retries by itself",
                        dir, what, state_strerror(r), dir);
        case -ENOMEM: return cdc_error(err, r, true, CDC_ERR_INTERNAL, "state store: %s: out of memory", what);
        default:
                return cdc_error(err, r, r != -EINVAL && r != -ENAMETOOLONG, CDC_ERR_STATE, "state store in %s: %s: %s",
                                 dir, what, state_strerror(r));
        }
}

int rowstate_new(State *st, const PipelineConf *conf, const RowStateBidi *bidi, RowState **ret) {
        RowState *rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        rs->st = st;
        rs->conf = conf;
        rs->node = conf->source->name;
        rs->state_dir = bidi ? bidi->state_dir : NULL;
        const ConnectorType *kt = conf->sink->type ? connector_type(conf->sink->type) : NULL;
        rs->versions_out = kt && kt->sink_versions_in_messages;
        if (bidi && bidi->reverse && bidi->reverse[0]) {
                if (strlen(bidi->reverse) >= sizeof(rs->reverse) || !bidi->state_dir || !st) {
                        free(rs);
                        return -EINVAL;
                }
                memcpy(rs->reverse, bidi->reverse, strlen(bidi->reverse) + 1);
                snprintf(rs->wnode, sizeof(rs->wnode), "w.%s", conf->name);
                /* tags go beside the rows, unless the sink's messages carry their versions (Kafka) */
                bool db_sink = !rs->versions_out;
                rs->tag_table = db_sink ? table_new(ROWSTATE_TAG_SCHEMA, ROWSTATE_TAG_TABLE, 2) : NULL;
                if (db_sink && (!rs->tag_table || rowstate_tag_table_init(rs->tag_table) < 0)) {
                        table_unref(rs->tag_table);
                        free(rs);
                        return -ENOMEM;
                }
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
        rowstate_detach(rs);
        table_unref(rs->tag_table);
        for (int i = 0; i < rs->ntables; i++)
                table_unref(rs->tables[i].t);
        free(rs);
        return NULL;
}

bool rowstate_uses_store(const RowState *rs) {
        return rs->reverse[0] != '\0';
}

int rowstate_recover(RowState *rs, Position sink_pos, bool sink_found, CdcError *err) {
        rs->batch = state_batch_abort(rs->batch);
        rs->done_upto = rs->dropped_upto = rs->batch_no = 0;
        rs->conflicts_dirty = false;
        if (!rowstate_uses_store(rs))
                return 0;
        int r = rs->acquired ? 0 : state_acquire(rs->st);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot open the store for pipeline %s", rs->conf->name);
        rs->acquired = true;
        r = state_recover(rs->st, rs->conf->name, sink_found ? sink_pos : (Position){0, 0});
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot recover pipeline %s", rs->conf->name);
        if (r > 0)
                log_info(NULL, "pipeline %s: rolled back %d state batches the sink never committed", rs->conf->name, r);
        rs->recovered = true;
        return 0;
}

void rowstate_detach(RowState *rs) {
        rs->batch = state_batch_abort(rs->batch);
        if (rs->acquired)
                state_release(rs->st);
        rs->acquired = false;
}

int rowstate_batch_begin(RowState *rs, uint64_t batch_no, CdcError *err) {
        if (!rowstate_uses_store(rs))
                return 0;
        if (!rs->acquired)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "pipeline %s: batch begun before recovery",
                                 rs->conf->name);
        /* The end is known only when the batch ends: until state_batch_set_end, recovery treats
         * the batch as never committed by the sink. */
        int r = state_batch_begin(rs->st, rs->conf->name, batch_no, (Position){UINT64_MAX, UINT64_MAX}, &rs->batch);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot begin batch %llu", (unsigned long long)batch_no);
        if (rs->recovered) /* recovery finished every batch before this one */
                rs->dropped_upto = batch_no - 1;
        rs->recovered = false;
        /* Undo records of batches the sink committed go in this batch's own transaction: no
         * write transaction (and sync) of their own, and the sink thread never waits for the
         * store's single write lock, which the engine may hold while it waits for room in the
         * sink's queue. */
        uint64_t upto = __atomic_load_n(&rs->done_upto, __ATOMIC_ACQUIRE);
        for (uint64_t b = rs->dropped_upto + 1; b <= upto && r == 0; b++)
                r = state_batch_drop(rs->batch, b);
        if (r < 0) {
                rs->batch = state_batch_abort(rs->batch);
                return rowstate_store_error(rs, err, r, "cannot drop the undo of committed batches");
        }
        if (upto > rs->dropped_upto)
                rs->dropped_upto = upto;
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

int rowstate_slice(RowState *rs, CdcError *err) {
        if (++rs->slice_rows < ROWS_PER_SLICE)
                return 0;
        int r = state_batch_commit(rs->batch);
        rs->batch = NULL;
        if (r == 0)
                r = state_batch_continue(rs->st, rs->conf->name, rs->batch_no, &rs->batch);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot commit a slice of batch %llu",
                                            (unsigned long long)rs->batch_no);
        rs->slice_rows = 0;
        return 0;
}

/* ---- bidirectional sync ---- */

/* "schema.table" of connector node, as a row name space: "node/schema.table". */
int rowstate_space(char *buf, size_t size, const char *node, const char *schema, const char *table) {
        int n = snprintf(buf, size, "%s/%s.%s", node, schema, table);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
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
        if (fkh && kh->deleted) { /* the row is gone on K, as far as we know */
                /* A delete still goes (the sink applies it idempotently): K may hold an
                 * application write we have not read yet, and its tag tells the reverse pipeline
                 * what K holds either way. */
                if (c->op == CHANGE_UPDATE && !c->before)
                        as_insert(c);
        } else if (fkh && !kh->deleted && c->op == CHANGE_INSERT) {
                c->op = CHANGE_UPDATE; /* both sides inserted the key: the winner's image replaces K's row */
        }
        return true;
}

static void remember_table(RowState *rs, const char *space, Table *t) {
        int i = 0;
        while (i < rs->ntables && strcmp(rs->tables[i].space, space) != 0)
                i++;
        if (i < rs->ntables && rs->tables[i].t == t)
                return;
        if (i == rs->ntables) {
                if (rs->ntables == TABLE_CACHE)
                        return;
                rs->ntables++;
                snprintf(rs->tables[i].space, sizeof(rs->tables[i].space), "%s", space);
        }
        table_unref(rs->tables[i].t);
        rs->tables[i].t = table_ref(t);
}

/* The row names of one change: the source's and the sink's spaces and the encoded key.
 * Returns the key's length, 0 when the change has no key to track, or a negative errno. */
static int names(RowState *rs, const Change *c, char *sspace, char *kspace, char *key, CdcError *err) {
        char ktable[STATE_TABLE_MAX], kschema[STATE_TABLE_MAX];
        const Value *kv = c->op == CHANGE_DELETE ? c->before : c->after;
        int n;
        if (c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0 || !kv ||
            (n = encode_key(c->table, kv, key, KEY_MAX)) <= 0)
                return 0; /* no key to track: applied by position alone */
        int r = conf_map_table(rs->conf, c->table->schema, c->table->name, kschema, sizeof(kschema), ktable,
                               sizeof(ktable));
        if (r == 0 && (rowstate_space(sspace, STATE_TABLE_MAX, rs->node, c->table->schema, c->table->name) < 0 ||
                       rowstate_space(kspace, STATE_TABLE_MAX, rs->conf->sink->name, kschema, ktable) < 0))
                r = -ENAMETOOLONG;
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_STATE, "table name of %s.%s too long for the state store",
                                 c->table->schema, c->table->name);
        remember_table(rs, sspace, c->table);
        return n;
}

/* What K holds now, as well as we know it (see DESIGN): the reverse pipeline's reading of K's
 * log (qk), unless our own last write to K (kp) is later than what it has read, which shows as qk
 * not following kp causally (a write read from K after kp was versioned on top of it). */
static int belief(RowState *rs, const char *kspace, const char *key, size_t n, Version *kp, bool *fkp, Version *ret,
                  bool *ret_found) {
        Version qk;
        bool fqk = false;
        int r = state_get(rs->batch, kspace, key, n, kp, fkp);
        if (r == 0)
                r = state_get_other(rs->batch, rs->reverse, kspace, key, n, &qk, &fqk);
        if (r < 0)
                return r;
        VClockOrder o = fqk && *fkp ? vclock_compare(&qk.vv, &kp->vv) : VCLOCK_EQUAL;
        *ret_found = fqk || *fkp;
        if (fqk && (!*fkp || o == VCLOCK_AFTER || o == VCLOCK_EQUAL))
                *ret = qk;
        else if (*fkp)
                *ret = *kp;
        return 0;
}

/* Whether two versions are the same write (a merged vector aside). */
static bool same_write(const Version *a, const Version *b) {
        return vclock_equal(&a->wvv, &b->wvv) && strcmp(a->origin, b->origin) == 0 && a->seq == b->seq &&
               a->deleted == b->deleted;
}

/* v without the entries of pipelines' writes ("w.P": connector names hold no '.'). A write of ours
 * copies a version from S to K and adds nothing to the row's content, so it orders nothing
 * between application writes: S's next write of a row it alone writes follows the version we
 * copied, not just the one S held, and an echo of an older copy is older, not concurrent. Those
 * entries order only what the reverse pipeline has read of K (belief). */
static VClock content_clock(const VClock *v) {
        VClock c = {0};
        for (uint32_t i = 0; i < v->n; i++)
                if (strncmp(v->e[i].node, "w.", 2) != 0)
                        c.e[c.n++] = v->e[i];
        return c;
}

/* Decides whether S's row version in (an application write, or what an echo left) goes to K,
 * which holds kh as far as we know; records the write in our "K/" row when it goes. Causality is
 * decided on the rows' content clocks (content_clock); what is recorded keeps every entry. */
static int forward(RowState *rs, Change *c, const char *sspace, const char *kspace, const char *key, size_t n,
                   const Version *kh, bool fkh, const Version *in, uint64_t wcounter, bool *ret_apply, CdcError *err) {
        Version merged;
        const char *resolution = NULL;
        int r;
        if (fkh && vclock_equal(&kh->wvv, &in->wvv) && strcmp(kh->origin, in->origin) == 0) {
                /* K holds another change of the very source transaction this one comes from:
                 * the later change (by seq) is the newer, whatever else the vectors absorbed. */
                merged = *in;
                r = vclock_merge(&kh->vv, &in->vv, &merged.vv);
                if (r == 0)
                        r = in->seq > kh->seq ? VERSION_APPLY : VERSION_SKIP;
        } else {
                Version khc = fkh ? *kh : (Version){0}, inc = *in;
                khc.vv = content_clock(&khc.vv);
                inc.vv = content_clock(&in->vv);
                r = version_decide(fkh ? &khc : NULL, &inc, rs->conf->conflict, rs->conf->resolve,
                                   (const char *const *)rs->conf->priority, rs->conf->npriority, &merged, &resolution);
                if (r >= 0 && fkh) {
                        int m = vclock_merge(&kh->vv, &in->vv, &merged.vv);
                        r = m < 0 ? m : r;
                } else if (r >= 0) {
                        merged.vv = in->vv;
                }
        }
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_STATE, "cannot decide a change of %s: %s", sspace,
                                 strerror(-r));
        int verdict = r;
        if ((verdict == VERSION_CONFLICT_APPLY || verdict == VERSION_CONFLICT_SKIP) && fkh &&
            kh->ts == ROWSTATE_COPY_TS && in->ts == ROWSTATE_COPY_TS) {
                /* Both sides held the key when the pair's first copies ran (mostly equal rows):
                 * counted apart, not logged one by one. */
                if (rs->stats)
                        stats_count_conflict(rs->stats, "copy");
                log_debug(rs->ctx, "%s: key held by both sides at the first copy; winner: %s",
                          sspace + strlen(rs->node) + 1, verdict == VERSION_CONFLICT_APPLY ? "incoming" : "sink");
        } else if (verdict == VERSION_CONFLICT_APPLY || verdict == VERSION_CONFLICT_SKIP) {
                char kt[512];
                key_text(c->table, c->op == CHANGE_DELETE ? c->before : c->after, kt, sizeof(kt));
                r = rowstate_report_conflict(rs, sspace + strlen(rs->node) + 1, kt, kh, in, verdict, resolution, err);
                if (r < 0)
                        return r;
        }
        /* A delete of a row K no longer holds sends nothing: then nothing is recorded either (a
         * write recorded without reaching K's log would never be seen by the reverse pipeline). */
        bool apply = (verdict == VERSION_APPLY || verdict == VERSION_CONFLICT_APPLY) && fit(c, kh, fkh);
        if (apply) {
                /* Our write is a new event on K: it gets its own counter, so that what the
                 * reverse pipeline reads from K after it (and versions on top of it) follows it,
                 * and what K held before it does not. */
                r = vclock_set(&merged.vv, rs->wnode, wcounter);
                if (r == 0)
                        r = state_put(rs->batch, kspace, key, n, &merged);
                if (r == 0)
                        rowstate_note_tag(rs, kspace, key, n, &merged);
                if (r == 0 && change_set_version(c, &merged.vv, merged.ts, merged.origin) < 0) /* sinks publish it */
                        r = -ENOMEM;
                if (r < 0)
                        return rowstate_store_error(rs, err, r, "write of %s failed", kspace);
                /* K may hold anything by now (an application write we have not read yet): the
                 * sink makes the row equal to this image whatever it finds. */
                c->flags |= CHANGE_IDEMPOTENT;
        }
        *ret_apply = apply;
        return 0;
}

static int check_bidi(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        char sspace[STATE_TABLE_MAX], kspace[STATE_TABLE_MAX], key[KEY_MAX];
        const char *S = rs->node;
        bool deleted = c->op == CHANGE_DELETE;
        Version sp, kp, kh, next;
        bool fsp = false, fkp = false, fkh = false;
        int n = names(rs, c, sspace, kspace, key, err);
        if (n <= 0)
                return n;
        int r = state_get(rs->batch, sspace, key, (size_t)n, &sp, &fsp);
        if (r == 0)
                r = belief(rs, kspace, key, (size_t)n, &kp, &fkp, &kh, &fkh);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "read of %s failed", sspace);

        uint64_t counter = position_counter(txn->commit_pos);
        uint64_t have = fsp ? vclock_get(&sp.vv, S) : 0;
        /* Older than, or this very change: a replay. */
        if (fsp && (have > counter || (have == counter && (strcmp(sp.origin, S) != 0 || sp.seq >= seq)))) {
                *ret_apply = false;
                return 0;
        }
        if (fsp && have == counter) {
                /* A later change of the same source transaction to the same row: it follows the
                 * transaction's first change to that row, decided already. K holds this
                 * transaction's write exactly when that change won; then this one goes too. */
                bool won = fkp && strcmp(kp.origin, S) == 0 && vclock_get(&kp.wvv, S) == counter;
                sp.seq = seq;
                sp.deleted = deleted;
                r = state_put(rs->batch, sspace, key, (size_t)n, &sp);
                if (r == 0 && won) {
                        Version held = kp; /* what K held before this change, for fit() */
                        kp.seq = seq;
                        kp.deleted = deleted;
                        kp.wvv = sp.wvv;
                        r = state_put(rs->batch, kspace, key, (size_t)n, &kp);
                        if (r == 0)
                                rowstate_note_tag(rs, kspace, key, (size_t)n, &kp);
                        if (r == 0 && change_set_version(c, &kp.vv, kp.ts, kp.origin) < 0)
                                r = -ENOMEM;
                        kp = held;
                }
                if (r < 0)
                        return rowstate_store_error(rs, err, r, "write of %s failed", sspace);
                if (won)
                        c->flags |= CHANGE_IDEMPOTENT;
                *ret_apply = won && fit(c, &kp, true);
                return rowstate_slice(rs, err);
        }
        /* S held what our own "S/" row says just before this write: we read S's log in order,
         * application writes and echoes alike. */
        /* A row of a first copy (snapshot) was written at some unknown time before the copy: it
         * is versioned as written at the oldest time (ROWSTATE_COPY_TS), so any application write
         * concurrent with it wins, and two copies of one key (both sides held it) are settled by
         * priority and connector name alone, the same on both sides. */
        r = version_next(fsp ? &sp : NULL, S, counter, txn->snapshot ? ROWSTATE_COPY_TS : txn->commit_ts, seq, deleted,
                         &next);
        if (r == 0)
                r = state_put(rs->batch, sspace, key, (size_t)n, &next);
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_STATE, "cannot version a change of %s: %s", sspace,
                                 strerror(-r));
        r = forward(rs, c, sspace, kspace, key, (size_t)n, &kh, fkh, &next, counter, ret_apply, err);
        return r < 0 ? r : rowstate_slice(rs, err);
}

/* S now holds sq, the reverse pipeline's write read back from S's log (c: its row change, with
 * the row's key): records it, and decides whether K must get it too. */
int rowstate_echo_row(RowState *rs, const TxnInfo *txn, Change *c, const char *sspace, const char *kspace,
                      const char *key, size_t n, const Version *sq, bool *ret_forward, CdcError *err) {
        Version kp, kh;
        bool fkp = false, fkh = false;
        int r = belief(rs, kspace, key, n, &kp, &fkp, &kh, &fkh);
        if (r == 0)
                r = state_put(rs->batch, sspace, key, n, sq);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "access to %s failed", sspace);
        /* Usually K holds that very write (it came from K). It goes back only when K was left with
         * a write that loses to it: ours, made before we read this echo. */
        if (fkh && same_write(&kh, sq))
                return 0;
        r = forward(rs, c, sspace, kspace, key, n, &kh, fkh, sq, position_counter(txn->commit_pos), ret_forward, err);
        if (r < 0)
                return r;
        if (*ret_forward) {
                char kt[512];
                key_text(c->table, c->op == CHANGE_DELETE ? c->before : c->after, kt, sizeof(kt));
                log_info(rs->ctx,
                         "%s (%s): the sink was left with an older write than the source holds; sending it "
                         "the source's row",
                         sspace + strlen(rs->node) + 1, kt);
        }
        return 0;
}

int rowstate_echo(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_forward, CdcError *err) {
        char sspace[STATE_TABLE_MAX], kspace[STATE_TABLE_MAX], key[KEY_MAX];
        Version sq;
        bool fsq = false, handled = false;
        (void)seq;
        *ret_forward = false;
        rs->have_last = false;
        if (!rs->reverse[0] || !rs->batch)
                return 0;
        int n = names(rs, c, sspace, kspace, key, err);
        if (n <= 0)
                return n;
        int r = 0;
        fsq = rowstate_stash_take(rs, txn, sspace, key, (size_t)n, &sq, &handled);
        if (handled)
                return 0; /* a delete, decided when its tag was read */
        if (!fsq)         /* no tag (a sink of an older cdcsync): the reverse pipeline's latest write */
                r = state_get_other(rs->batch, rs->reverse, sspace, key, (size_t)n, &sq, &fsq);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "read of %s failed", sspace);
        if (!fsq)
                return 0; /* the reverse pipeline's rows were rolled back: it writes this again */
        r = rowstate_echo_row(rs, txn, c, sspace, kspace, key, (size_t)n, &sq, ret_forward, err);
        return r < 0 ? r : rowstate_slice(rs, err);
}

/* A one-way pipeline keeps no row versions (see DESIGN): the version a Kafka sink publishes is
 * the source position of the change's transaction, {source: position}, which is what the row's
 * versions held when they were kept. Absent where it was absent then: a truncate, a table without
 * key, a key too long to track. */
static int positional_version(RowState *rs, const TxnInfo *txn, Change *c, CdcError *err) {
        const Value *kv = c->op == CHANGE_DELETE ? c->before : c->after;
        uint64_t counter = position_counter(txn->commit_pos);
        if (!rs->versions_out || !kv || counter == 0)
                return 0;
        size_t n = 0;
        for (int i = 0; i < c->table->ncols; i++)
                if (c->table->cols[i].key)
                        n += 4 + (kv[i].kind == VALUE_TEXT ? kv[i].len : 0);
        if (n == 0 || n > KEY_MAX)
                return 0;
        VClock vv;
        vv.n = 0;
        if (vclock_set(&vv, rs->node, counter) < 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "connector name %s is no version vector node",
                                 rs->node);
        if (change_set_version(c, &vv, txn->commit_ts, rs->node) < 0)
                return cdc_oom(err);
        return 0;
}

int rowstate_check(RowState *rs, const TxnInfo *txn, Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        *ret_apply = true;
        rs->have_last = false;
        if (c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0)
                return 0;
        if (!rowstate_uses_store(rs))
                return positional_version(rs, txn, c, err);
        if (!rs->batch)
                return 0;
        return check_bidi(rs, txn, c, seq, ret_apply, err);
}

int rowstate_batch_commit(RowState *rs, Position end, CdcError *err) {
        if (!rs->batch)
                return 0;
        int r = rowstate_sync_conflicts(rs, err);
        if (r < 0) {
                rs->batch = state_batch_abort(rs->batch);
                return r;
        }
        r = state_batch_set_end(rs->batch, end);
        if (r == 0)
                r = state_batch_commit(rs->batch);
        else
                state_batch_abort(rs->batch);
        rs->batch = NULL;
        if (r < 0)
                return rowstate_store_error(rs, err, r, "cannot commit batch %llu", (unsigned long long)rs->batch_no);
        return 0;
}

void rowstate_batch_abort(RowState *rs) {
        rs->batch = state_batch_abort(rs->batch);
}

void rowstate_batch_done(RowState *rs, uint64_t batch_no) {
        __atomic_store_n(&rs->done_upto, batch_no, __ATOMIC_RELEASE);
}

int rowstate_prune(RowState *rs, int64_t now_us) {
        if (!rs->acquired)
                return 0; /* no versions kept (one-way), or no attempt running */
        if (rs->batch)
                return -EBUSY; /* the batch holds the store's single write lock */
        return state_prune_tombstones(rs->st, rs->conf->name,
                                      now_us - (int64_t)rs->conf->tombstone_days * 86400000000LL);
}
