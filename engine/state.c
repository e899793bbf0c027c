/* The state store: row versions per pipeline in LMDB, with the undo log that keeps them in step
 * with the sink (see state.h for the protocol). */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cdcsync/hash.h"
#include "cdcsync/state.h"

#define MAP_SIZE (UINT64_C(64) << 30) /* sparse: only what is used takes disk space */
#define UNDO_ABSENT 0
#define UNDO_PRESENT 1
#define FORMAT_KEY "format"

struct State {
        char *dir;            /* owned */
        pthread_mutex_t lock; /* guards env (open/close), users and the dbi handles' setting */
        int users;            /* state_acquire calls not yet released */
        bool broken;          /* an operation met a corrupt store or LMDB gave up: reopen when unused */
        MDB_env *env;         /* NULL while closed */
        MDB_dbi rows;         /* row key -> encoded Version */
        MDB_dbi undo;         /* [pipeline][batch_no][table][key] -> UNDO_ABSENT | UNDO_PRESENT + Version */
        MDB_dbi batches;      /* [pipeline][batch_no] -> end position (hi, lo big-endian) */
        MDB_dbi meta;         /* "format" -> STATE_FORMAT (u32 big-endian) */
};

struct StateBatch {
        State *s;
        MDB_txn *txn;
        uint8_t prefix[1 + STATE_NAME_MAX]; /* [len][pipeline] */
        size_t prefix_len;
        uint64_t batch_no;
};

/* Maximum key sizes: both stay within LMDB's 511 bytes. */
#define ROWPART_MAX (2 + STATE_TABLE_MAX + 1 + STATE_KEY_INLINE_MAX)
#define KEY_MAX (1 + STATE_NAME_MAX + 8 + ROWPART_MAX)
_Static_assert(KEY_MAX <= 511, "state keys must fit LMDB's key size");

static int mdb_errno(int r) {
        if (r == 0)
                return 0;
        if (r > 0)
                return -r; /* LMDB passes errno values through */
        switch (r) {
        case MDB_NOTFOUND: return -ENOENT;
        case MDB_KEYEXIST: return -EEXIST;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL: return -ENOSPC;
        case MDB_READERS_FULL: return -EAGAIN;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID: return -EUCLEAN;
        case MDB_VERSION_MISMATCH: return -EPROTO;
        default: return -EIO;
        }
}

/* mdb_errno for an operation on s: a store found corrupt, or an environment LMDB gave up on
 * (MDB_PANIC, after a failed write of its meta page: -EIO), is reopened once no pipeline uses it
 * (state_acquire). */
static int serr(State *s, int r) {
        bool broken = r == MDB_PANIC;
        r = mdb_errno(r);
        if (broken || r == -EUCLEAN)
                __atomic_store_n(&s->broken, true, __ATOMIC_RELEASE);
        return r;
}

const char *state_strerror(int r) {
        switch (r) {
        case -EUCLEAN: return "the state store is corrupt";
        case -EPROTO: return "the state store was written by an incompatible version of cdcsync or LMDB";
        case -ESTALE: return "the state store failed and is opened again once no pipeline uses it";
        default: return strerror(-r);
        }
}

/* --- key encoding --- */

static int encode_prefix(const char *pipeline, uint8_t *buf, size_t *ret_len) {
        size_t n = pipeline ? strlen(pipeline) : 0;
        if (n == 0)
                return -EINVAL;
        if (n > STATE_NAME_MAX)
                return -ENAMETOOLONG;
        buf[0] = (uint8_t)n;
        memcpy(buf + 1, pipeline, n);
        *ret_len = 1 + n;
        return 0;
}

static size_t put_u64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (56 - 8 * i));
        return 8;
}

static uint64_t get_u64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* [u16 len][table][u8 kind][key or its SHA-256] */
static int encode_rowpart(const char *table, const void *key, size_t keylen, uint8_t *buf, size_t *ret_len) {
        size_t tl = table ? strlen(table) : 0, o = 0;
        if (tl == 0 || (!key && keylen))
                return -EINVAL;
        if (tl > STATE_TABLE_MAX)
                return -ENAMETOOLONG;
        buf[o++] = (uint8_t)(tl >> 8);
        buf[o++] = (uint8_t)tl;
        memcpy(buf + o, table, tl);
        o += tl;
        if (keylen <= STATE_KEY_INLINE_MAX) {
                buf[o++] = 0;
                if (keylen)
                        memcpy(buf + o, key, keylen);
                o += keylen;
        } else {
                buf[o++] = 1;
                hash_sha256(key, keylen, buf + o);
                o += 32;
        }
        *ret_len = o;
        return 0;
}

static int row_key(const uint8_t *prefix, size_t plen, const char *table, const void *key, size_t keylen, uint8_t *buf,
                   size_t *ret_len) {
        size_t rl;
        int r = encode_rowpart(table, key, keylen, buf + plen, &rl);
        if (r < 0)
                return r;
        memcpy(buf, prefix, plen);
        *ret_len = plen + rl;
        return 0;
}

static bool has_prefix(const MDB_val *k, const uint8_t *prefix, size_t plen) {
        return k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0;
}

/* --- open / close --- */

int state_new(const char *dir, State **ret) {
        State *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dir = strdup(dir);
        if (!s->dir) {
                free(s);
                return -ENOMEM;
        }
        pthread_mutex_init(&s->lock, NULL);
        *ret = s;
        return 0;
}

/* Opens the environment and its tables, checks the store's format (s->lock held). */
static int env_open(State *s) {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        int r, dead;

        if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        r = mdb_errno(mdb_env_create(&env));
        if (r < 0)
                return r;
        r = mdb_errno(mdb_env_set_maxdbs(env, 8));
        if (r == 0)
                r = mdb_errno(mdb_env_set_mapsize(env, (size_t)MAP_SIZE));
        /* MDB_NOMETASYNC: a commit syncs its data pages, and state_batch_commit syncs the meta page
         * after the write lock is released, so pipelines do not wait for each other's second sync
         * (LMDB keeps its integrity either way). */
        if (r == 0)
                r = mdb_errno(mdb_env_open(env, s->dir, MDB_NOTLS | MDB_NOMETASYNC, 0600));
        /* a killed process leaves its reader slots behind; free them */
        if (r == 0)
                r = mdb_errno(mdb_reader_check(env, &dead));
        if (r == 0)
                r = mdb_errno(mdb_txn_begin(env, NULL, 0, &txn));
        if (r < 0)
                goto out;
        r = mdb_errno(mdb_dbi_open(txn, "rows", MDB_CREATE, &s->rows));
        if (r == 0)
                r = mdb_errno(mdb_dbi_open(txn, "undo", MDB_CREATE, &s->undo));
        if (r == 0)
                r = mdb_errno(mdb_dbi_open(txn, "batches", MDB_CREATE, &s->batches));
        if (r == 0)
                r = mdb_errno(mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta));
        if (r < 0)
                goto out;
        /* The format: stores of earlier versions have no record and are format 1. */
        MDB_val k = {strlen(FORMAT_KEY), FORMAT_KEY}, v;
        r = mdb_get(txn, s->meta, &k, &v);
        if (r == MDB_NOTFOUND) {
                uint8_t f[4] = {STATE_FORMAT >> 24, STATE_FORMAT >> 16 & 255, STATE_FORMAT >> 8 & 255,
                                STATE_FORMAT & 255};
                v = (MDB_val){sizeof(f), f};
                r = mdb_errno(mdb_put(txn, s->meta, &k, &v, 0));
        } else if (r == 0) {
                const uint8_t *f = v.mv_data;
                if (v.mv_size != 4)
                        r = -EUCLEAN;
                else if (((uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3]) != STATE_FORMAT)
                        r = -EPROTO;
        } else {
                r = mdb_errno(r);
        }
        if (r < 0)
                goto out;
        r = mdb_errno(mdb_txn_commit(txn));
        txn = NULL;
        if (r == 0)
                r = mdb_errno(mdb_env_sync(env, 1));
out:
        if (txn)
                mdb_txn_abort(txn);
        if (r < 0) {
                mdb_env_close(env);
                return r;
        }
        s->env = env;
        __atomic_store_n(&s->broken, false, __ATOMIC_RELEASE);
        return 0;
}

int state_acquire(State *s) {
        int r = 0;
        pthread_mutex_lock(&s->lock);
        if (s->env && s->users == 0 && __atomic_load_n(&s->broken, __ATOMIC_ACQUIRE)) {
                mdb_env_close(s->env);
                s->env = NULL;
        }
        if (!s->env)
                r = env_open(s);
        else if (__atomic_load_n(&s->broken, __ATOMIC_ACQUIRE))
                r = -ESTALE; /* still in use by another pipeline: reopened when that one lets go */
        if (r == 0)
                s->users++;
        pthread_mutex_unlock(&s->lock);
        return r;
}

void state_release(State *s) {
        pthread_mutex_lock(&s->lock);
        if (s->users > 0)
                s->users--;
        pthread_mutex_unlock(&s->lock);
}

int state_open(const char *dir, State **ret) {
        State *s;
        int r = state_new(dir, &s);
        if (r < 0)
                return r;
        r = state_acquire(s);
        if (r < 0) {
                state_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

State *state_free(State *s) {
        if (!s)
                return NULL;
        if (s->env)
                mdb_env_close(s->env);
        pthread_mutex_destroy(&s->lock);
        free(s->dir);
        free(s);
        return NULL;
}

/* --- batches --- */

/* Writes the batch's record: its number and the position it ends at. */
static int put_batch_record(StateBatch *b, Position end_pos, unsigned flags) {
        uint8_t key[1 + STATE_NAME_MAX + 8], val[16];
        memcpy(key, b->prefix, b->prefix_len);
        put_u64(key + b->prefix_len, b->batch_no);
        put_u64(val, end_pos.hi);
        put_u64(val + 8, end_pos.lo);
        MDB_val k = {b->prefix_len + 8, key}, v = {sizeof(val), val};
        return serr(b->s, mdb_put(b->txn, b->s->batches, &k, &v, flags));
}

int state_batch_continue(State *s, const char *pipeline, uint64_t batch_no, StateBatch **ret) {
        StateBatch *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        int r = encode_prefix(pipeline, b->prefix, &b->prefix_len);
        if (r == 0 && !s->env)
                r = -ENXIO; /* not acquired */
        if (r == 0) {
                b->s = s;
                b->batch_no = batch_no;
                r = serr(s, mdb_txn_begin(s->env, NULL, 0, &b->txn));
                if (r < 0)
                        b->txn = NULL;
        }
        if (r < 0) {
                state_batch_abort(b);
                return r;
        }
        *ret = b;
        return 0;
}

int state_batch_begin(State *s, const char *pipeline, uint64_t batch_no, Position end_pos, StateBatch **ret) {
        StateBatch *b;
        int r = state_batch_continue(s, pipeline, batch_no, &b);
        if (r < 0)
                return r;
        /* a recorded batch still has undo entries that a reused number would mix with */
        r = put_batch_record(b, end_pos, MDB_NOOVERWRITE);
        if (r < 0) {
                state_batch_abort(b);
                return r;
        }
        *ret = b;
        return 0;
}

int state_batch_set_end(StateBatch *b, Position end_pos) {
        return put_batch_record(b, end_pos, 0);
}

static int get_in(State *s, MDB_txn *txn, MDB_dbi dbi, const uint8_t *key, size_t keylen, Version *ret,
                  bool *ret_found) {
        MDB_val k = {keylen, (void *)key}, v;
        Version ver;
        int r = mdb_get(txn, dbi, &k, &v);
        if (r == MDB_NOTFOUND) {
                *ret_found = false;
                return 0;
        }
        if (r != 0)
                return serr(s, r);
        if (version_decode(v.mv_data, v.mv_size, &ver) < 0)
                return serr(s, MDB_CORRUPTED);
        *ret = ver;
        *ret_found = true;
        return 0;
}

int state_get(StateBatch *b, const char *table, const void *key, size_t keylen, Version *ret, bool *ret_found) {
        uint8_t rk[KEY_MAX];
        size_t rl;
        int r = row_key(b->prefix, b->prefix_len, table, key, keylen, rk, &rl);
        if (r < 0)
                return r;
        return get_in(b->s, b->txn, b->s->rows, rk, rl, ret, ret_found);
}

int state_get_other(StateBatch *b, const char *pipeline, const char *table, const void *key, size_t keylen,
                    Version *ret, bool *ret_found) {
        uint8_t prefix[1 + STATE_NAME_MAX], rk[KEY_MAX];
        size_t pl, rl;
        int r = encode_prefix(pipeline, prefix, &pl);
        if (r == 0)
                r = row_key(prefix, pl, table, key, keylen, rk, &rl);
        if (r < 0)
                return r;
        return get_in(b->s, b->txn, b->s->rows, rk, rl, ret, ret_found);
}

int state_put(StateBatch *b, const char *table, const void *key, size_t keylen, const Version *ver) {
        uint8_t rk[KEY_MAX], uk[KEY_MAX], val[1 + VERSION_ENCODED_MAX];
        size_t rl, ul;
        MDB_val k, v, old;
        int r, n;

        r = row_key(b->prefix, b->prefix_len, table, key, keylen, rk, &rl);
        if (r < 0)
                return r;
        /* undo key: the row key with the batch number after the pipeline */
        memcpy(uk, b->prefix, b->prefix_len);
        put_u64(uk + b->prefix_len, b->batch_no);
        memcpy(uk + b->prefix_len + 8, rk + b->prefix_len, rl - b->prefix_len);
        ul = rl + 8;

        k = (MDB_val){ul, uk};
        r = mdb_get(b->txn, b->s->undo, &k, &v);
        if (r == MDB_NOTFOUND) { /* first write of this row in the batch: remember what it was */
                MDB_val rkv = {rl, rk};
                r = mdb_get(b->txn, b->s->rows, &rkv, &old);
                if (r == MDB_NOTFOUND) {
                        val[0] = UNDO_ABSENT;
                        v = (MDB_val){1, val};
                } else if (r == 0) {
                        if (old.mv_size > VERSION_ENCODED_MAX)
                                return serr(b->s, MDB_CORRUPTED);
                        val[0] = UNDO_PRESENT;
                        memcpy(val + 1, old.mv_data, old.mv_size);
                        v = (MDB_val){1 + old.mv_size, val};
                } else {
                        return serr(b->s, r);
                }
                r = serr(b->s, mdb_put(b->txn, b->s->undo, &k, &v, 0));
                if (r < 0)
                        return r;
        } else if (r != 0) {
                return serr(b->s, r);
        }
        n = version_encode(ver, val, sizeof(val));
        if (n < 0)
                return n;
        k = (MDB_val){rl, rk};
        v = (MDB_val){(size_t)n, val};
        return serr(b->s, mdb_put(b->txn, b->s->rows, &k, &v, 0));
}

int state_put_noundo(StateBatch *b, const char *table, const void *key, size_t keylen, const Version *ver) {
        uint8_t rk[KEY_MAX], val[VERSION_ENCODED_MAX];
        size_t rl;
        int r = row_key(b->prefix, b->prefix_len, table, key, keylen, rk, &rl);
        if (r < 0)
                return r;
        int n = version_encode(ver, val, sizeof(val));
        if (n < 0)
                return n;
        MDB_val k = {rl, rk}, v = {(size_t)n, val};
        return serr(b->s, mdb_put(b->txn, b->s->rows, &k, &v, 0));
}

int state_batch_commit(StateBatch *b) {
        /* The commit syncs the data pages; the meta page that makes them current is synced here,
         * after the write lock was released (MDB_NOMETASYNC), so another pipeline's batch can
         * begin meanwhile. Durable once both are done. */
        int r = serr(b->s, mdb_txn_commit(b->txn));
        if (r == 0)
                r = serr(b->s, mdb_env_sync(b->s->env, 1));
        b->txn = NULL;
        free(b);
        return r;
}

StateBatch *state_batch_abort(StateBatch *b) {
        if (!b)
                return NULL;
        if (b->txn)
                mdb_txn_abort(b->txn);
        free(b);
        return NULL;
}

int state_lookup(State *s, const char *pipeline, const char *table, const void *key, size_t keylen, Version *ret,
                 bool *ret_found) {
        uint8_t prefix[1 + STATE_NAME_MAX], rk[KEY_MAX];
        size_t pl, rl;
        MDB_txn *txn;
        int r = encode_prefix(pipeline, prefix, &pl);
        if (r == 0)
                r = row_key(prefix, pl, table, key, keylen, rk, &rl);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
        if (r < 0)
                return r;
        r = get_in(s, txn, s->rows, rk, rl, ret, ret_found);
        mdb_txn_abort(txn);
        return r;
}

/* Drops (restore=false) or plays back then drops (restore=true) one batch's undo entries, and
 * its batch record. */
static int finish_batch(State *s, MDB_txn *txn, const uint8_t *prefix, size_t pl, uint64_t batch_no, bool restore) {
        uint8_t bp[1 + STATE_NAME_MAX + 8], rk[KEY_MAX];
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int r;

        memcpy(bp, prefix, pl);
        put_u64(bp + pl, batch_no);
        r = serr(s, mdb_cursor_open(txn, s->undo, &cur));
        if (r < 0)
                return r;
        k = (MDB_val){pl + 8, bp};
        r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (r == 0 && has_prefix(&k, bp, pl + 8)) {
                if (restore) {
                        size_t rl = k.mv_size - 8;
                        memcpy(rk, prefix, pl);
                        memcpy(rk + pl, (const uint8_t *)k.mv_data + pl + 8, rl - pl);
                        MDB_val rkv = {rl, rk};
                        const uint8_t *u = v.mv_data;
                        if (v.mv_size == 1 && u[0] == UNDO_ABSENT) {
                                r = mdb_del(txn, s->rows, &rkv, NULL);
                                if (r == MDB_NOTFOUND)
                                        r = 0;
                        } else if (v.mv_size > 1 && u[0] == UNDO_PRESENT) {
                                MDB_val old = {v.mv_size - 1, (void *)(u + 1)};
                                r = mdb_put(txn, s->rows, &rkv, &old, 0);
                        } else {
                                r = MDB_CORRUPTED;
                        }
                        if (r != 0)
                                goto out;
                }
                r = mdb_cursor_del(cur, 0);
                if (r != 0)
                        goto out;
                /* after a delete the cursor already stands on the next entry: MDB_NEXT knows */
                r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (r != 0 && r != MDB_NOTFOUND)
                goto out;
        k = (MDB_val){pl + 8, bp};
        r = mdb_del(txn, s->batches, &k, NULL);
        if (r == MDB_NOTFOUND)
                r = 0;
out:
        mdb_cursor_close(cur);
        return serr(s, r);
}

int state_batch_done(State *s, const char *pipeline, uint64_t batch_no) {
        uint8_t prefix[1 + STATE_NAME_MAX];
        size_t pl;
        MDB_txn *txn;
        int r = encode_prefix(pipeline, prefix, &pl);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, 0, &txn));
        if (r < 0)
                return r;
        r = finish_batch(s, txn, prefix, pl, batch_no, false);
        if (r < 0) {
                mdb_txn_abort(txn);
                return r;
        }
        return serr(s, mdb_txn_commit(txn));
}

int state_batch_drop(StateBatch *b, uint64_t batch_no) {
        return finish_batch(b->s, b->txn, b->prefix, b->prefix_len, batch_no, false);
}

typedef struct {
        uint64_t no;
        Position end;
} BatchRec;

int state_recover(State *s, const char *pipeline, Position sink_pos) {
        uint8_t prefix[1 + STATE_NAME_MAX];
        size_t pl, n = 0, cap = 0;
        BatchRec *recs = NULL;
        MDB_txn *txn = NULL;
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int r, rolled = 0;

        r = encode_prefix(pipeline, prefix, &pl);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, 0, &txn));
        if (r < 0)
                return r;
        r = serr(s, mdb_cursor_open(txn, s->batches, &cur));
        if (r < 0)
                goto out;
        k = (MDB_val){pl, prefix};
        for (int g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); g == 0 && has_prefix(&k, prefix, pl);
             g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                if (k.mv_size != pl + 8 || v.mv_size != 16) {
                        r = serr(s, MDB_CORRUPTED);
                        goto out;
                }
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        BatchRec *nr = realloc(recs, nc * sizeof(*recs));
                        if (!nr) {
                                r = -ENOMEM;
                                goto out;
                        }
                        recs = nr, cap = nc;
                }
                const uint8_t *kb = k.mv_data, *vb = v.mv_data;
                recs[n++] = (BatchRec){get_u64(kb + pl), {get_u64(vb), get_u64(vb + 8)}};
        }
        mdb_cursor_close(cur);
        cur = NULL;
        /* keys sort by batch number (big-endian): walk newest first so that older undo entries,
         * which hold older values, are played back last */
        for (size_t i = n; i-- > 0;) {
                bool rollback = position_cmp(recs[i].end, sink_pos) > 0;
                r = finish_batch(s, txn, prefix, pl, recs[i].no, rollback);
                if (r < 0)
                        goto out;
                rolled += rollback;
        }
        r = serr(s, mdb_txn_commit(txn));
        txn = NULL;
        if (r == 0)
                r = rolled;
out:
        if (cur)
                mdb_cursor_close(cur);
        if (txn)
                mdb_txn_abort(txn);
        free(recs);
        return r;
}

int state_prune_tombstones(State *s, const char *pipeline, int64_t older_than) {
        uint8_t prefix[1 + STATE_NAME_MAX];
        size_t pl;
        MDB_txn *txn = NULL;
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int r, g, pruned = 0;

        r = encode_prefix(pipeline, prefix, &pl);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, 0, &txn));
        if (r < 0)
                return r;
        r = serr(s, mdb_cursor_open(txn, s->rows, &cur));
        if (r < 0)
                goto out;
        k = (MDB_val){pl, prefix};
        g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (g == 0 && has_prefix(&k, prefix, pl)) {
                Version ver;
                if (version_decode(v.mv_data, v.mv_size, &ver) < 0) {
                        r = serr(s, MDB_CORRUPTED);
                        goto out;
                }
                if (ver.deleted && ver.ts < older_than) {
                        r = serr(s, mdb_cursor_del(cur, 0));
                        if (r < 0)
                                goto out;
                        pruned++;
                }
                g = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (g != 0 && g != MDB_NOTFOUND) {
                r = serr(s, g);
                goto out;
        }
        mdb_cursor_close(cur);
        cur = NULL;
        r = serr(s, mdb_txn_commit(txn));
        txn = NULL;
        if (r == 0)
                r = pruned;
out:
        if (cur)
                mdb_cursor_close(cur);
        if (txn)
                mdb_txn_abort(txn);
        return r;
}

/* --- operator flags: "paused:" + pipeline in the meta table, present while paused --- */

#define PAUSED_PREFIX "paused:"

static int paused_key(const char *pipeline, char *buf, size_t len, MDB_val *ret) {
        size_t n = pipeline ? strlen(pipeline) : 0;
        if (n == 0)
                return -EINVAL;
        if (n > STATE_NAME_MAX || sizeof(PAUSED_PREFIX) + n > len)
                return -ENAMETOOLONG;
        memcpy(buf, PAUSED_PREFIX, sizeof(PAUSED_PREFIX) - 1);
        memcpy(buf + sizeof(PAUSED_PREFIX) - 1, pipeline, n);
        *ret = (MDB_val){sizeof(PAUSED_PREFIX) - 1 + n, buf};
        return 0;
}

int state_set_paused(State *s, const char *pipeline, bool paused) {
        char buf[sizeof(PAUSED_PREFIX) + STATE_NAME_MAX];
        MDB_val k, v = {1, "1"};
        MDB_txn *txn = NULL;
        int r = paused_key(pipeline, buf, sizeof(buf), &k);
        if (r < 0)
                return r;
        r = state_acquire(s);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, 0, &txn));
        if (r == 0) {
                int x = paused ? mdb_put(txn, s->meta, &k, &v, 0) : mdb_del(txn, s->meta, &k, NULL);
                r = x == MDB_NOTFOUND ? 0 : serr(s, x);
        }
        if (r == 0) {
                r = serr(s, mdb_txn_commit(txn));
                txn = NULL;
        }
        if (txn)
                mdb_txn_abort(txn);
        /* The environment syncs meta pages lazily (MDB_NOMETASYNC): a pause must survive a crash. */
        if (r == 0)
                r = serr(s, mdb_env_sync(s->env, 1));
        state_release(s);
        return r;
}

int state_get_paused(State *s, const char *pipeline, bool *ret) {
        char buf[sizeof(PAUSED_PREFIX) + STATE_NAME_MAX];
        MDB_val k, v;
        MDB_txn *txn = NULL;
        int r = paused_key(pipeline, buf, sizeof(buf), &k);
        if (r < 0)
                return r;
        r = state_acquire(s);
        if (r < 0)
                return r;
        r = serr(s, mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
        if (r == 0) {
                int x = mdb_get(txn, s->meta, &k, &v);
                if (x == 0 || x == MDB_NOTFOUND)
                        *ret = x == 0;
                else
                        r = serr(s, x);
                mdb_txn_abort(txn);
        }
        state_release(s);
        return r;
}
