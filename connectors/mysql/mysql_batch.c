/* The MySQL/MariaDB sink's statement execution: prepared statements, and the pending runs of changes
 * sent as array-bound or multi-row executions. */
#include <errno.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include "cdcsync/hash.h"
#include "mysql/mysql_sink_int.h"

/* ---- statements ---- */

void mysql_sink_params_free(Param *p, int n) {
        for (int i = 0; i < n; i++)
                free(p[i].data);
}

int mysql_sink_error(Sink *k, MYSQL_STMT *st, const char *what, CdcError *err) {
        unsigned int e = st ? mysql_stmt_errno(st) : mysql_errno(k->m);
        const char *msg = st ? mysql_stmt_error(st) : mysql_error(k->m);
        bool lost = mysql_conn_lost(e);
        bool data = e == ER_WARN_DATA_OUT_OF_RANGE || e == ER_TRUNCATED_WRONG_VALUE ||
                    e == ER_TRUNCATED_WRONG_VALUE_FOR_FIELD || e == ER_DATA_TOO_LONG || e == ER_BAD_NULL_ERROR ||
                    e == ER_DUP_ENTRY || e == ER_NO_REFERENCED_ROW_2 || e == ER_ROW_IS_REFERENCED_2;
        bool retry = lost || e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT || e == ER_NO_SUCH_TABLE ||
                     e == ER_BAD_FIELD_ERROR;
        return cdc_error(err, -EIO, retry && !data,
                         lost                                               ? CDC_ERR_CONNECTION
                         : data                                             ? CDC_ERR_DATA
                         : e == ER_NO_SUCH_TABLE || e == ER_BAD_FIELD_ERROR ? CDC_ERR_SCHEMA
                                                                            : CDC_ERR_QUERY,
                         "%s %s: %s (error %u)", k->ctx, what, msg, e);
}

void mysql_sink_cache_free(StmtCache *cache) {
        while (cache->head) {
                CachedStmt *c = cache->head;
                cache->head = c->next;
                mysql_stmt_close(c->st);
                free(c->sql);
                free(c);
        }
        cache->n = 0;
}

static bool cache_has(const StmtCache *cache, const char *sql) {
        for (const CachedStmt *c = cache->head; c; c = c->next)
                if (strcmp(c->sql, sql) == 0)
                        return true;
        return false;
}

/* The statement sql from cache, prepared on first use (NULL: see prepare_error); a full cache
 * (max) is emptied first, closing its statements. */
static CachedStmt *cache_get(Sink *k, StmtCache *cache, int max, const char *sql) {
        for (CachedStmt *c = cache->head; c; c = c->next)
                if (strcmp(c->sql, sql) == 0)
                        return c;
        if (cache->n >= max)
                mysql_sink_cache_free(cache);
        CachedStmt *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->sql = strdup(sql);
        c->st = mysql_stmt_init(k->m);
        if (!c->sql || !c->st || mysql_stmt_prepare(c->st, sql, strlen(sql))) {
                /* the caller reports mysql_error(k->m) via a fresh statement (prepare_error) */
                if (c->st)
                        mysql_stmt_close(c->st);
                free(c->sql);
                free(c);
                return NULL;
        }
        c->next = cache->head;
        cache->head = c;
        cache->n++;
        return c;
}

/* The cached statement for sql. Never called with a run pending on another statement (see
 * run_add): emptying the cache would close the run's statement. */
static CachedStmt *stmt_cached(Sink *k, const char *sql) {
        return cache_get(k, &k->stmts, STMT_CACHE_MAX, sql);
}

/* The message of a failed prepare, through a throwaway statement. */
static int prepare_error(Sink *k, const char *sql, const char *what, CdcError *err) {
        MYSQL_STMT *t = mysql_stmt_init(k->m);
        int r;
        if (!t)
                return cdc_oom(err);
        mysql_stmt_prepare(t, sql, strlen(sql));
        r = mysql_sink_error(k, t, what, err);
        mysql_stmt_close(t);
        return r;
}

/* Executes st once with one row of params. */
static int exec_row(Sink *k, MYSQL_STMT *st, const Param *p, int n, const char *what, uint64_t *ret_rows,
                    CdcError *err) {
        unsigned int one = 0; /* 0: not an array execution (the attribute stays set otherwise) */
        MYSQL_BIND b[n > 0 ? n : 1];
        memset(b, 0, sizeof(b));
        for (int i = 0; i < n; i++) {
                b[i].buffer_type = p[i].null ? MYSQL_TYPE_NULL : p[i].binary ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
                b[i].buffer = p[i].data;
                b[i].buffer_length = p[i].len;
        }
        if ((k->bulk && mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &one)) ||
            (n > 0 && mysql_stmt_bind_param(st, b)) || mysql_stmt_execute(st))
                return mysql_sink_error(k, st, what, err);
        if (ret_rows)
                *ret_rows = mysql_stmt_affected_rows(st);
        mysql_stmt_free_result(st);
        return 0;
}

/* Runs sql with params; *ret_rows: affected rows. */
int mysql_sink_exec(Sink *k, const char *sql, Param *p, int n, const char *what, uint64_t *ret_rows, CdcError *err) {
        CachedStmt *c = stmt_cached(k, sql);
        if (!c)
                return prepare_error(k, sql, what, err);
        return exec_row(k, c->st, p, n, what, ret_rows, err);
}

void mysql_sink_run_clear(Run *u) {
        for (int i = 0; i < u->nrows; i++) {
                for (int j = 0; j < u->nparams; j++)
                        free(u->params[(size_t)i * u->nparams + j].data);
                free(u->keys[i]);
                u->dead[i] = false;
        }
        u->nrows = 0;
        u->ndead = 0;
        u->bytes = 0;
        u->stmt = NULL;
        u->mkind = MULTI_NONE;
        u->mt = table_unref(u->mt);
}

void mysql_sink_run_free(Run *u) {
        mysql_sink_run_clear(u);
        free(u->params);
        free(u->keys);
        free(u->dead);
        *u = (Run){0};
}

/* An update or delete that found no row (or several): the target lacks a row the source had, so
 * applying on would make the divergence permanent. Not retriable: an operator must look. */
static int diverged(Sink *k, const Run *u, int i, uint64_t rows, CdcError *err) {
        char n[24];
        snprintf(n, sizeof(n), "%" PRIu64, rows);
        return cdc_error(err, -ENOENT, false, CDC_ERR_DATA,
                         "%s %s (%s) matched %s rows instead of 1: the sink diverged from the source (a row "
                         "was changed or deleted on the sink, or the sink was not in sync when the pipeline started)",
                         k->ctx, u->what, i >= 0 && u->keys[i] ? u->keys[i] : "unknown", rows ? n : "no");
}

/* Row by row: without bulk support, and after a failed or short array execution to find the row
 * at fault (the caller rolled the array execution back to its savepoint first when its rows must
 * each find one row; inserts are upserts, so rows a failed execution applied may run again). */
static int run_rows_range(Sink *k, Run *u, int from, int to, CdcError *err) {
        for (int i = from; i < to; i++) {
                uint64_t rows = 0;
                int r = exec_row(k, u->stmt->st, &u->params[(size_t)i * u->nparams], u->nparams, u->what, &rows, err);
                if (r == 0 && u->expect && rows != 1)
                        return diverged(k, u, i, rows, err);
                if (r < 0) {
                        if (strcmp(err->kind, "data") == 0 && u->keys[i]) {
                                size_t ml = strlen(err->message);
                                snprintf(err->message + ml, sizeof(err->message) - ml, " (%s)", u->keys[i]);
                        }
                        return r;
                }
        }
        return 0;
}

static int run_rows(Sink *k, Run *u, CdcError *err) {
        return run_rows_range(k, u, 0, u->nrows, err);
}

/* The multi-row statement sql, prepared on first use (NULL: see prepare_error). Its cache is only
 * ever used inside one multi_send call, so emptying it when full closes nothing in use. */
static CachedStmt *mstmt_cached(Sink *k, const char *sql) {
        return cache_get(k, &k->mstmts, MULTI_STMT_MAX, sql);
}

/* The text of u's multi-row statement for m rows; check: the locking read an update's rows are
 * counted with first. */
static char *multi_sql(const Run *u, int m, bool check) {
        if (u->mkind == MULTI_DELETE || check)
                return mysql_sql_multi_by_key(u->mschema, u->mname, u->mt, m, check);
        return mysql_sql_multi_upsert(u->mschema, u->mname, u->mt, m);
}

static int param_cmp(const void *a, const void *b) {
        const Param *x = *(const Param *const *)a, *y = *(const Param *const *)b;
        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        return memcmp(x->data, y->data, x->len);
}

/* Executes a prepared multi-row statement over rows [from, from + m) of u: per row the params
 * [first, first + count) of it. *ret_rows: affected rows; *ret_count: the first column of the
 * result's one row, when there is a result (the update check). */
static int multi_exec(Sink *k, Run *u, const char *sql, int from, int m, int first, int count, uint64_t *ret_rows,
                      uint64_t *ret_count, CdcError *err) {
        /* a long statement of a size that may not come again is prepared for this once */
        CachedStmt one = {0}, *c = &one;
        int r = 0, nb = m * count;
        unsigned int zero = 0;
        MYSQL_BIND *b = NULL;
        if (m <= MULTI_CACHE_ROWS)
                c = mstmt_cached(k, sql);
        else if ((one.st = mysql_stmt_init(k->m)) && mysql_stmt_prepare(one.st, sql, strlen(sql))) {
                r = mysql_sink_error(k, one.st, u->what, err);
                goto out;
        }
        if (!c || !c->st) {
                r = c ? cdc_oom(err) : prepare_error(k, sql, u->what, err);
                goto out;
        }
        b = calloc((size_t)nb, sizeof(*b));
        if (!b) {
                r = cdc_oom(err);
                goto out;
        }
        for (int i = 0; i < m; i++)
                for (int j = 0; j < count; j++) {
                        Param *p = &u->params[(size_t)(from + i) * u->nparams + first + j];
                        MYSQL_BIND *x = &b[i * count + j];
                        x->buffer_type = p->null ? MYSQL_TYPE_NULL : p->binary ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
                        x->buffer = p->data;
                        x->buffer_length = p->len;
                }
        if ((k->bulk && mysql_stmt_attr_set(c->st, STMT_ATTR_ARRAY_SIZE, &zero)) || mysql_stmt_bind_param(c->st, b) ||
            mysql_stmt_execute(c->st)) {
                r = mysql_sink_error(k, c->st, u->what, err);
                goto out;
        }
        if (ret_count) {
                long long n = 0;
                my_bool isnull = 0;
                MYSQL_BIND o = {.buffer_type = MYSQL_TYPE_LONGLONG, .buffer = &n, .is_null = &isnull};
                if (mysql_stmt_bind_result(c->st, &o) || mysql_stmt_fetch(c->st) != 0) {
                        r = mysql_sink_error(k, c->st, u->what, err);
                        mysql_stmt_free_result(c->st);
                        goto out;
                }
                *ret_count = isnull || n < 0 ? 0 : (uint64_t)n;
                while (mysql_stmt_fetch(c->st) == 0)
                        ;
        }
        *ret_rows = mysql_stmt_affected_rows(c->st);
        mysql_stmt_free_result(c->st);
out:
        if (one.st)
                mysql_stmt_close(one.st);
        free(b);
        return r;
}

/* Rows [from, from + m) of u as multi-row updates the old way, after the fast way fell short: a
 * locking read counts the rows first (they then stay until the commit); all there, the upsert of
 * the after images does what the updates one by one would; some missing, the rows go one by one,
 * so the one that finds nothing is named. */
static int multi_update_checked(Sink *k, Run *u, const char *sql, int from, int m, CdcError *err) {
        int nt = u->mt->ncols;
        uint64_t rows = 0, found = 0;
        char *check = multi_sql(u, m, true);
        if (!check)
                return cdc_oom(err);
        int r = multi_exec(k, u, check, from, m, nt, 1, &rows, &found, err);
        free(check);
        if (r < 0)
                return r;
        /* distinct keys of the chunk: what the count must be */
        const Param **ks = malloc((size_t)m * sizeof(*ks));
        uint64_t distinct = 0;
        if (!ks)
                return cdc_oom(err);
        for (int i = 0; i < m; i++)
                ks[i] = &u->params[(size_t)(from + i) * u->nparams + nt];
        qsort(ks, (size_t)m, sizeof(*ks), param_cmp);
        for (int i = 0; i < m; i++)
                distinct += i == 0 || param_cmp(&ks[i - 1], &ks[i]) != 0;
        free(ks);
        if (found != distinct)
                return run_rows_range(k, u, from, from + m, err);
        return multi_exec(k, u, sql, from, m, 0, nt, &rows, NULL, err);
}

/* Rows [from, from + m) of u as one multi-row statement. Updates and deletes must each find their
 * row, which the statement's affected rows show without a read first: a delete counts 1 per row
 * it removed; an update goes as the upsert of its after images (same key, whole row, later rows of
 * a key last), where with CLIENT_FOUND_ROWS a row counts 2 when it changed an existing row and 1
 * when it was inserted or already equal, so 2 per row means every row was there. Short of that,
 * the statement is rolled back to a savepoint taken before it, and the rows go the checked way
 * (updates: multi_update_checked; deletes: one by one), which names the row that is missing. */
static int multi_send(Sink *k, Run *u, int from, int m, CdcError *err) {
        int r;
        bool saved = false, update = u->mkind == MULTI_UPDATE;
        uint64_t rows = 0;
        char *sql = multi_sql(u, m, false);
        if (!sql) {
                r = cdc_oom(err);
                goto out;
        }
        if (u->expect) {
                if (mysql_query(k->m, "SAVEPOINT cdcsync_multi")) {
                        r = mysql_sink_error(k, NULL, "savepoint", err);
                        goto out;
                }
                saved = true;
        }
        r = multi_exec(k, u, sql, from, m, 0, u->mkind == MULTI_DELETE ? 1 : u->mt->ncols, &rows, NULL, err);
        if (r < 0) {
                /* a value the server refuses: name the row (the first that fails on its own); an
                 * insert that failed changed nothing (statements are atomic in InnoDB) */
                if (strcmp(err->kind, "data") == 0 &&
                    (!saved || !mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_multi"))) {
                        CdcError e2 = {0};
                        if (run_rows_range(k, u, from, from + m, &e2) < 0 && strcmp(e2.kind, "data") == 0)
                                *err = e2;
                }
                goto out;
        }
        if (saved && rows != (uint64_t)m * (update ? 2 : 1)) {
                if (mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_multi")) {
                        r = mysql_sink_error(k, NULL, "rollback to savepoint", err);
                        goto out;
                }
                r = update ? multi_update_checked(k, u, sql, from, m, err) : run_rows_range(k, u, from, from + m, err);
        }
out:
        free(sql);
        return r;
}

/* Drops the cancelled rows of u, keeping the others in order. */
void mysql_sink_run_compact(Run *u) {
        int to = 0;
        for (int i = 0; i < u->nrows; i++) {
                Param *p = &u->params[(size_t)i * u->nparams];
                if (u->dead[i]) {
                        for (int j = 0; j < u->nparams; j++)
                                free(p[j].data);
                        free(u->keys[i]);
                        u->dead[i] = false;
                        continue;
                }
                if (to != i) {
                        memcpy(&u->params[(size_t)to * u->nparams], p, (size_t)u->nparams * sizeof(*p));
                        u->keys[to] = u->keys[i];
                }
                to++;
        }
        u->nrows = to;
        u->ndead = 0;
}

/* Sends the pending run, if any, and empties it (also on failure: the caller rolls back). */
int mysql_sink_run_send(Sink *k, Run *u, CdcError *err) {
        int r = mysql_sink_run_exec(k, u, err);
        mysql_sink_run_clear(u);
        return r;
}

int mysql_sink_run_exec(Sink *k, Run *u, CdcError *err) {
        int r = 0, np, n;
        if (u->ndead > 0)
                mysql_sink_run_compact(u);
        np = u->nparams;
        n = u->nrows;
        if (!u->stmt || n == 0)
                goto out;
        if (u->mkind == MULTI_LOAD && n >= LOAD_MIN_ROWS) {
                bool done = false;
                r = mysql_sink_load_send(k, u, &done, err);
                if (r < 0 || done)
                        goto out;
        }
        if (u->mkind != MULTI_NONE && n >= MULTI_MIN) {
                r = multi_send(k, u, 0, n, err); /* run_add kept it within the statement limits */
                goto out;
        }
        if (!k->bulk || n == 1 || np == 0) {
                r = run_rows(k, u, err);
                goto out;
        }
        /* column-wise array binding: per parameter, arrays of pointers, lengths, indicators */
        MYSQL_STMT *st = u->stmt->st;
        unsigned int size = (unsigned int)n;
        MYSQL_BIND *b = calloc((size_t)(np > 0 ? np : 1), sizeof(*b));
        char **ptrs = calloc((size_t)n * (np > 0 ? np : 1), sizeof(*ptrs));
        unsigned long *lens = calloc((size_t)n * (np > 0 ? np : 1), sizeof(*lens));
        char *ind = calloc((size_t)n * (np > 0 ? np : 1), 1);
        if (!b || !ptrs || !lens || !ind) {
                r = cdc_oom(err);
                goto bulk_out;
        }
        for (int j = 0; j < np; j++) {
                bool binary = false;
                for (int i = 0; i < n; i++) {
                        const Param *p = &u->params[(size_t)i * np + j];
                        size_t at = (size_t)j * n + i;
                        ptrs[at] = p->data ? p->data : "";
                        lens[at] = p->len;
                        ind[at] = p->null ? STMT_INDICATOR_NULL : STMT_INDICATOR_NONE;
                        binary |= p->binary;
                }
                b[j].buffer_type = binary ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
                b[j].buffer = &ptrs[(size_t)j * n];
                b[j].length = &lens[(size_t)j * n];
                b[j].u.indicator = &ind[(size_t)j * n];
        }
        /* Updates and deletes must each find one row. The array execution only reports the total
         * (with CLIENT_FOUND_ROWS: rows found, not rows changed), so when it falls short the rows
         * are redone one by one from a savepoint taken here to name the one that found nothing. */
        bool saved = false;
        if (u->expect) {
                if (mysql_query(k->m, "SAVEPOINT cdcsync_run")) {
                        r = mysql_sink_error(k, NULL, "savepoint", err);
                        goto bulk_out;
                }
                saved = true;
        }
        if (mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size) || (np > 0 && mysql_stmt_bind_param(st, b)) ||
            mysql_stmt_execute(st)) {
                r = mysql_sink_error(k, st, u->what, err);
                /* a value the server refuses: name the row (the first that fails on its own) */
                if (strcmp(err->kind, "data") == 0 &&
                    (!saved || !mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_run"))) {
                        CdcError e2 = {0};
                        if (run_rows(k, u, &e2) < 0 && strcmp(e2.kind, "data") == 0)
                                *err = e2;
                }
                goto bulk_out;
        }
        uint64_t rows = mysql_stmt_affected_rows(st);
        mysql_stmt_free_result(st);
        if (u->expect && rows != (uint64_t)n) {
                if (mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_run")) {
                        r = mysql_sink_error(k, NULL, "rollback to savepoint", err);
                        goto bulk_out;
                }
                r = run_rows(k, u, err);
                if (r == 0) /* one by one every row found its own: still not what was sent together */
                        r = diverged(k, u, -1, rows, err);
        }
bulk_out:
        free(b);
        free(ptrs);
        free(lens);
        free(ind);
out:
        return r;
}

static void keys_clear(KeySet *ks) {
        for (size_t i = 0; i < ks->cap; i++) {
                free(ks->slots[i].key);
                ks->slots[i] = (KeySlot){.run = KEY_EMPTY};
        }
        ks->n = 0;
}

static uint64_t key_hash(const char *key, size_t len) {
        return hash_fnv1a(HASH_FNV1A_INIT, key, len);
}

/* The slot of key: its own, or the empty one where it would go. */
static KeySlot *keys_find(KeySet *ks, const char *key, size_t len, uint64_t h) {
        for (size_t i = h & (ks->cap - 1);; i = (i + 1) & (ks->cap - 1)) {
                KeySlot *e = &ks->slots[i];
                if (e->run == KEY_EMPTY || (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0))
                        return e;
        }
}

static int keys_grow(KeySet *ks) {
        size_t cap = ks->cap ? ks->cap * 2 : 1024;
        KeySlot *old = ks->slots, *n = malloc(cap * sizeof(*n));
        size_t oldcap = ks->cap;
        if (!n)
                return -ENOMEM;
        for (size_t i = 0; i < cap; i++)
                n[i] = (KeySlot){.run = KEY_EMPTY};
        ks->slots = n;
        ks->cap = cap;
        for (size_t i = 0; i < oldcap; i++)
                if (old[i].run != KEY_EMPTY)
                        *keys_find(ks, old[i].key, old[i].len, old[i].hash) = old[i];
        free(old);
        return 0;
}

void mysql_sink_keys_free(KeySet *ks) {
        keys_clear(ks);
        free(ks->slots);
        *ks = (KeySet){0};
}

bool mysql_sink_cancel_delete(Sink *k, const char *rk, size_t len) {
        if (!k->keys.cap || k->ordered)
                return false;
        KeySlot *e = keys_find(&k->keys, rk, len, key_hash(rk, len));
        if (e->run < 0 || e->row < 0)
                return false;
        Run *u = &k->runs[e->run];
        if (!u->is_delete || !u->expect || e->row >= u->nrows || u->dead[e->row])
                return false;
        u->dead[e->row] = true;
        u->ndead++;
        /* the row's change before the delete, if one is pending, still comes first */
        e->run = e->prev;
        e->row = -1;
        e->prev = KEY_RELEASED;
        return true;
}

void mysql_sink_keys_reset(Sink *k) {
        k->ordered = false;
        if (k->keys.n)
                keys_clear(&k->keys);
}

/* Sends every pending run, in the order they were started, and forgets their keys. */
int mysql_sink_pending_flush(Sink *k, CdcError *err) {
        int r = k->nruns > 0 ? mysql_sink_ready(k, err) : 0;
        for (int i = 0; i < k->nruns; i++) {
                if (r == 0)
                        r = mysql_sink_run_send(k, &k->runs[i], err);
                else
                        mysql_sink_run_clear(&k->runs[i]);
        }
        k->nruns = 0;
        mysql_sink_keys_reset(k);
        return r;
}

/* The pending runs on their way: to the sender, which sends them while the caller goes on, or
 * sent here. */
static int pending_send(Sink *k, CdcError *err) {
        if (!k->tx || k->nruns == 0)
                return mysql_sink_pending_flush(k, err);
        int r = mysql_sink_hand_over(k, NULL, NULL, err);
        if (r < 0)
                mysql_sink_pending_clear(k);
        return r;
}

int mysql_sink_warm(Sink *k, const char *const *sqls, int n, CdcError *err) {
        int missing = 0, r = 0;
        for (int i = 0; i < n; i++)
                missing += !cache_has(&k->stmts, sqls[i]);
        if (missing == 0)
                return 0;
        r = mysql_sink_idle(k, err); /* preparing is a statement of its own */
        /* Preparing into a full cache empties it, closing the pending runs' statements and any
         * warmed just before: the runs go first, and the cache is emptied once here. */
        if (r == 0 && k->stmts.n + missing > STMT_CACHE_MAX) {
                r = mysql_sink_pending_flush(k, err);
                mysql_sink_cache_free(&k->stmts);
        }
        for (int i = 0; r == 0 && i < n; i++)
                if (!cache_has(&k->stmts, sqls[i]) && !stmt_cached(k, sqls[i]))
                        r = prepare_error(k, sqls[i], "preparing a statement", err);
        return r;
}

void mysql_sink_pending_clear(Sink *k) {
        for (int i = 0; i < k->nruns; i++)
                mysql_sink_run_clear(&k->runs[i]);
        k->nruns = 0;
        k->ordered = false;
        if (k->keys.n)
                keys_clear(&k->keys);
}

/* The identity of a row: sink table and the source key values (every column without a key). */
char *mysql_sink_row_key(const char *schema, const char *name, const Table *t, const Value *img, size_t *ret_len) {
        StrBuf q = {0};
        bool keyed = table_nkeys(t) > 0;
        strbuf_puts(&q, schema);
        strbuf_put(&q, ".", 1);
        strbuf_puts(&q, name);
        strbuf_put(&q, "", 1); /* the NUL ends the name */
        for (int i = 0; i < t->ncols; i++) {
                if (keyed && !t->cols[i].key)
                        continue;
                uint32_t n = img[i].kind == VALUE_TEXT ? (uint32_t)img[i].len : UINT32_MAX;
                strbuf_put(&q, (const char *)&n, sizeof(n));
                if (img[i].kind == VALUE_TEXT)
                        strbuf_put(&q, img[i].data, img[i].len);
        }
        if (q.oom) {
                free(q.data);
                return NULL;
        }
        *ret_len = q.len;
        return q.data;
}

/* Adds one execution of sql to the pending runs (expect: it must find exactly one row); takes the params' data
 * (p[i].data is NULL on return) and the message key (freed either way). rk: the row keys the change touches (nrk of
 * them; before and after key of an update), each taken, NULL when the change may not be
 * reordered (then everything pending goes first and nothing overtakes it). */
int mysql_sink_run_add(Sink *k, const char *sql, Param *p, int np, bool expect, const char *opname, char *key,
                       char **rk, const size_t *rkl, int nrk, const Table *t, const char *schema, const char *name,
                       int mkind, CdcError *err) {
        int r = 0, ri = -1;
        size_t bytes = 0;
        bool reorder = nrk > 0;
        for (int i = 0; i < nrk; i++)
                reorder &= rk[i] != NULL;
        for (int i = 0; i < k->nruns; i++)
                if (k->runs[i].nparams == np && k->runs[i].expect == expect && strcmp(k->runs[i].stmt->sql, sql) == 0)
                        ri = i;
        if (!reorder || k->ordered) {
                /* keep source order: only the run just before may take it */
                if (k->nruns > 0 && (ri != k->nruns - 1 || k->nruns > 1)) {
                        r = pending_send(k, err);
                        ri = -1;
                }
        } else {
                for (int i = 0; i < nrk && ri >= -1; i++) {
                        if (!k->keys.cap)
                                break;
                        KeySlot *e = keys_find(&k->keys, rk[i], rkl[i], key_hash(rk[i], rkl[i]));
                        /* a later pending run changes this row: a new run, after every pending one */
                        if (e->run >= 0 && ri >= 0 && e->run > ri)
                                ri = -1;
                }
                if (ri == -2 || (ri == -1 && k->nruns == RUNS_MAX)) {
                        r = pending_send(k, err);
                        ri = -1;
                }
        }
        if (r < 0)
                goto out;
        if (ri < 0 && k->nruns > 0 && k->stmts.n >= STMT_CACHE_MAX) {
                if (!cache_has(&k->stmts, sql)) { /* preparing it empties the cache: the pending runs go first */
                        r = mysql_sink_pending_flush(k, err);
                        if (r < 0)
                                goto out;
                }
        }
        if (ri < 0) {
                char what[600];
                snprintf(what, sizeof(what), "%s on `%s`.`%s`", opname, schema, name);
                /* preparing it is a statement of its own: after the sender's job */
                if (!cache_has(&k->stmts, sql) && (r = mysql_sink_idle(k, err)) < 0)
                        goto out;
                CachedStmt *c = stmt_cached(k, sql);
                if (!c) {
                        r = prepare_error(k, sql, what, err);
                        goto out;
                }
                ri = k->nruns++;
                Run *u = &k->runs[ri];
                u->stmt = c;
                u->nparams = np;
                u->expect = expect;
                u->is_delete = strcmp(opname, "delete") == 0;
                snprintf(u->what, sizeof(u->what), "%s", what);
                u->mkind = mkind;
                u->mt = mkind != MULTI_NONE ? table_ref((Table *)t) : NULL;
                snprintf(u->mschema, sizeof(u->mschema), "%s", schema);
                snprintf(u->mname, sizeof(u->mname), "%s", name);
        }
        Run *u = &k->runs[ri];
        if (u->mkind != mkind) {
                /* inserts of a snapshot and others: upserts; one row that does not qualify: the
                 * run goes the general way */
                bool inserts = (u->mkind == MULTI_INSERT || u->mkind == MULTI_LOAD) &&
                               (mkind == MULTI_INSERT || mkind == MULTI_LOAD);
                u->mkind = inserts ? MULTI_INSERT : MULTI_NONE;
        }
        if (u->nrows == u->cap) {
                int cap = u->cap ? u->cap * 2 : 16;
                char **nk = realloc(u->keys, (size_t)cap * sizeof(*nk));
                if (nk)
                        u->keys = nk;
                bool *nd = nk ? realloc(u->dead, (size_t)cap * sizeof(*nd)) : NULL;
                if (!nd) {
                        r = cdc_oom(err);
                        goto out;
                }
                memset(nd + u->cap, 0, (size_t)(cap - u->cap) * sizeof(*nd));
                u->dead = nd;
                u->cap = cap;
        }
        if ((size_t)(u->nrows + 1) * np > u->pcap) {
                size_t pcap = u->pcap ? u->pcap * 2 : 256;
                while (pcap < (size_t)(u->nrows + 1) * np)
                        pcap *= 2;
                Param *np2 = realloc(u->params, pcap * sizeof(*np2));
                if (!np2) {
                        r = cdc_oom(err);
                        goto out;
                }
                u->params = np2;
                u->pcap = pcap;
        }
        for (int j = 0; j < np; j++) {
                u->params[(size_t)u->nrows * np + j] = p[j];
                bytes += p[j].len + 8;
                p[j].data = NULL;
        }
        u->keys[u->nrows++] = key;
        key = NULL;
        u->bytes += bytes;
        if (!reorder) {
                k->ordered = true;
        } else {
                for (int i = 0; i < nrk; i++) {
                        if ((k->keys.n + 1) * 2 > k->keys.cap && keys_grow(&k->keys) < 0) {
                                r = cdc_oom(err);
                                goto out;
                        }
                        uint64_t h = key_hash(rk[i], rkl[i]);
                        KeySlot *e = keys_find(&k->keys, rk[i], rkl[i], h);
                        if (e->run == KEY_EMPTY) {
                                *e = (KeySlot){.hash = h,
                                               .run = ri,
                                               .row = u->nrows - 1,
                                               .prev = KEY_RELEASED,
                                               .key = rk[i],
                                               .len = rkl[i]};
                                rk[i] = NULL;
                                k->keys.n++;
                        } else {
                                e->prev = e->run;
                                e->run = ri;
                                e->row = u->nrows - 1;
                        }
                }
        }
        int max = RUN_MAX_ROWS;
        if (u->mkind != MULTI_NONE)
                max = np > 0 && MULTI_MAX_PARAMS / np < MULTI_MAX_ROWS ? MULTI_MAX_PARAMS / np : MULTI_MAX_ROWS;
        if (u->nrows >= max || u->bytes >= RUN_MAX_BYTES)
                r = pending_send(k, err);
out:
        free(key);
        for (int i = 0; i < nrk; i++)
                free(rk[i]);
        return r;
}

int mysql_sink_simple(Sink *k, const char *sql, CdcError *err) {
        if (mysql_query(k->m, sql))
                return mysql_sink_error(k, NULL, sql, err);
        return 0;
}
