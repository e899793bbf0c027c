/* One pipeline's row versions in the state store: which change is new, which is a replay. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/log.h"
#include "cdcsync/rowstate.h"
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
};

int rowstate_new(State *st, const PipelineConf *conf, RowState **ret) {
        RowState *rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        rs->st = st;
        rs->conf = conf;
        rs->node = conf->source->name;
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

int rowstate_check(RowState *rs, const TxnInfo *txn, const Change *c, uint32_t seq, bool *ret_apply, CdcError *err) {
        char table[STATE_TABLE_MAX];
        char key[KEY_MAX];
        *ret_apply = true;
        if (c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0 || !rs->batch)
                return 0;
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
