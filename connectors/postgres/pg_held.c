/* The PostgreSQL sink's held runs: changes held back and sent as multi-row statements. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

#define HELD_MAX 2048     /* rows held per table before they are sent */
#define STMT_ROWS_MAX 512 /* rows of one multi-row statement (powers of two below) */

/* ---- held runs: multi-row statements ----
 * A change to a table with a key is held back in a run of its table and op (UPDATE: and column
 * set) and sent with others as one multi-row statement, which the server executes far faster
 * than one statement per row. That reorders changes to distinct keys, so it is done only for
 * tables where such changes commute: on the sink, a plain table whose only unique index is the
 * primary key on exactly the source's key columns, without triggers (foreign keys are triggers),
 * rules, exclusion constraints, or defaults on columns the source does not send (a sequence would
 * number rows in another order; a generated column is computed from its own row, so it may). Changes to one key keep
 * their order: a change to a held key is merged into it (an UPDATE into the held INSERT or UPDATE, when that sets every
 * column it sets), or else sends the table's held runs first. Any other change (other tables, key changes, truncate,
 * rows without a plain key) sends every held run first. */

static void group_clear(Group *g, int ncols) {
        for (int r = 0; r < g->nrows; r++)
                values_free(g->rows[r], ncols);
        free(g->rows);
        free(g->mask);
        memset(g, 0, sizeof(*g));
}

void pg_held_ts_clear_held(TState *ts) {
        for (int i = 0; i < ts->ngroups; i++)
                group_clear(&ts->groups[i], ts->table->ncols);
        ts->ngroups = 0;
        ts->nheld = 0;
        for (size_t i = 0; i < ts->kcap; i++) {
                free(ts->keys[i].key);
                ts->keys[i].key = NULL;
        }
        ts->nkeys = 0;
}

void pg_held_forget_shapes(TState *ts) {
        for (int i = 0; i < ts->nshapes; i++)
                free(ts->shapes[i].mask);
        memset(ts->shapes, 0, sizeof(ts->shapes));
        ts->nshapes = ts->next_shape = 0;
}

/* The key of kv as one string, "<len>:<text>" per key column; NULL when a key value is not text
 * (such a change goes alone, through the one-row path) or on ENOMEM. */
static char *key_text(const Table *t, const Value *kv) {
        size_t len = 1, off = 0;
        char *s;

        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                if (kv[i].kind != VALUE_TEXT)
                        return NULL;
                len += kv[i].len + 12;
        }
        s = malloc(len);
        if (!s)
                return NULL;
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                char digits[12]; /* the length in decimal, without printf on this per-row path */
                size_t nd = 0;
                for (uint32_t v = kv[i].len; nd == 0 || v > 0; v /= 10)
                        digits[nd++] = (char)('0' + v % 10);
                while (nd > 0)
                        s[off++] = digits[--nd];
                s[off++] = ':';
                memcpy(s + off, kv[i].data, kv[i].len);
                off += kv[i].len;
        }
        s[off] = '\0';
        return s;
}

static KeyEntry *key_find(const TState *ts, const char *key) {
        if (ts->kcap == 0)
                return NULL;
        for (size_t i = pg_map_hash_str(key) & (ts->kcap - 1);; i = (i + 1) & (ts->kcap - 1)) {
                if (!ts->keys[i].key)
                        return NULL;
                if (strcmp(ts->keys[i].key, key) == 0)
                        return &ts->keys[i];
        }
}

/* Takes ownership of key (also on failure). */
static int key_add(TState *ts, char *key, int g, int row) {
        size_t j;
        if ((ts->nkeys + 1) * 2 > ts->kcap) {
                size_t cap = ts->kcap ? ts->kcap * 2 : 256;
                KeyEntry *e = calloc(cap, sizeof(*e));
                if (!e) {
                        free(key);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < ts->kcap; i++) {
                        if (!ts->keys[i].key)
                                continue;
                        for (j = pg_map_hash_str(ts->keys[i].key) & (cap - 1); e[j].key; j = (j + 1) & (cap - 1))
                                ;
                        e[j] = ts->keys[i];
                }
                free(ts->keys);
                ts->keys = e;
                ts->kcap = cap;
        }
        for (j = pg_map_hash_str(key) & (ts->kcap - 1); ts->keys[j].key; j = (j + 1) & (ts->kcap - 1))
                ;
        ts->keys[j] = (KeyEntry){.key = key, .g = g, .row = row};
        ts->nkeys++;
        return 0;
}

/* A copy of the n values v as one allocation (values_pack), kinds kept: a held row costs one
 * malloc, not one per value. A value set later on it (a merged update) is allocated alone. */
static Value *values_copy(const Value *v, int n) {
        const char *data[n > 0 ? n : 1];
        size_t lens[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) {
                data[i] = v[i].kind == VALUE_TEXT ? v[i].data : NULL;
                lens[i] = v[i].kind == VALUE_TEXT ? v[i].len : 0;
        }
        Value *c = values_pack(n, data, lens);
        if (!c)
                return NULL;
        for (int i = 0; i < n; i++)
                c[i].kind = v[i].kind;
        return c;
}

/* The prepared statement of n rows of run g of ts: its shape's when the session has it, else
 * its text is built and prepared (or found by that text), and the shape remembered. */
static int group_statement(Sink *k, TState *ts, const Group *g, int n, const char **ret, CdcError *err) {
        const Table *t = ts->table;
        int np = 0;
        for (int i = 0; i < ts->nshapes; i++) {
                const Shape *sh = &ts->shapes[i];
                if (sh->op == g->op && sh->nrows == n &&
                    (g->op != CHANGE_UPDATE || memcmp(sh->mask, g->mask, (size_t)t->ncols) == 0)) {
                        *ret = sh->name;
                        return 0;
                }
        }
        char *sql = NULL;
        int r;
        if (g->op == CHANGE_INSERT)
                r = pg_sql_insert_rows(ts->schema, ts->name, t, n, &sql);
        else if (g->op == CHANGE_UPDATE)
                r = pg_sql_update_rows(ts->schema, ts->name, t, g->mask, n, &sql);
        else
                r = pg_sql_delete_rows(ts->schema, ts->name, t, n, &sql);
        if (r < 0)
                return pg_pipe_fail(k, cdc_oom(err), err);
        for (int i = 0; i < t->ncols; i++)
                if (g->op == CHANGE_INSERT || t->cols[i].key || (g->mask && (g->mask[i] & PG_SQL_SET)))
                        np++;
        r = pg_pipe_statement(k, sql, np * n, ret, err);
        free(sql);
        if (r < 0)
                return r;
        uint8_t *mask = NULL;
        if (g->op == CHANGE_UPDATE) {
                mask = malloc((size_t)t->ncols);
                if (!mask)
                        return 0; /* not remembered: the next run builds the text again */
                memcpy(mask, g->mask, (size_t)t->ncols);
        }
        int at = ts->nshapes < SHAPES_MAX ? ts->nshapes++ : ts->next_shape++ % SHAPES_MAX;
        free(ts->shapes[at].mask);
        ts->shapes[at] = (Shape){.op = g->op, .nrows = n, .mask = mask, .name = *ret};
        return 0;
}

/* Sends one held run as multi-row statements of at most STMT_ROWS_MAX rows (sizes powers of two,
 * so that a table has few prepared statements). */
/* Rows [from, from + n) of g, moved into a PendingRows (g keeps NULL in their place). NULL when
 * out of memory (g then still holds them). */
static PendingRows *take_rows(Group *g, int from, int n, const Table *t, const char *op, const char *schema,
                              const char *name) {
        PendingRows *rows = calloc(1, sizeof(*rows));
        if (!rows || !(rows->vals = malloc((size_t)n * sizeof(*rows->vals))) || !(rows->schema = strdup(schema)) ||
            !(rows->name = strdup(name))) {
                if (rows) {
                        free(rows->vals);
                        free(rows->schema);
                        free(rows);
                }
                return NULL;
        }
        rows->table = table_ref((Table *)t);
        rows->op = op;
        rows->n = n;
        for (int i = 0; i < n; i++) {
                rows->vals[i] = g->rows[from + i];
                g->rows[from + i] = NULL;
        }
        return rows;
}

static int send_group(Sink *k, TState *ts, Group *g, CdcError *err) {
        const Table *t = ts->table;
        const char *opname = g->op == CHANGE_INSERT ? "insert" : g->op == CHANGE_UPDATE ? "update" : "delete";
        uint8_t *keymask = calloc((size_t)t->ncols, 1);
        int per_row = 0, maxrows = STMT_ROWS_MAX, done = 0, r = 0;

        if (!keymask)
                goto oom;
        for (int i = 0; i < t->ncols; i++) {
                keymask[i] = t->cols[i].key ? PG_SQL_WHERE : 0;
                if (g->op == CHANGE_INSERT || t->cols[i].key || (g->mask && (g->mask[i] & PG_SQL_SET)))
                        per_row++;
        }
        while (maxrows > 1 && (long)maxrows * per_row > PG_SQL_MAX_PARAMS)
                maxrows /= 2;
        while (done < g->nrows) {
                int n = maxrows, np = 0;
                char *what = NULL;
                PendingRows *rows = NULL;
                const char *stmt;

                while (n > g->nrows - done)
                        n /= 2;
                if (pg_sink_grow(k, n * per_row) < 0)
                        goto oom;
                for (int row = done; row < done + n; row++) {
                        const Value *v = g->rows[row];
                        for (int i = 0; i < t->ncols; i++)
                                if (g->op == CHANGE_INSERT || t->cols[i].key || (g->mask && (g->mask[i] & PG_SQL_SET)))
                                        k->params[np++] = v[i].kind == VALUE_TEXT ? v[i].data : NULL;
                }
                if (g->op == CHANGE_INSERT) {
                        if (n == 1) {
                                what = pg_sink_describe(opname, ts->schema, ts->name, t, g->rows[done], keymask, 0);
                        } else {
                                char buf[600];
                                snprintf(buf, sizeof(buf), "insert of %d rows into %s.%s", n, ts->schema, ts->name);
                                what = strdup(buf);
                        }
                } else {
                        /* The first row names the statement on a server error; the rows are kept
                         * (moved, not copied) to name the one it missed, should it miss one. */
                        what = pg_sink_describe(opname, ts->schema, ts->name, t, g->rows[done], keymask, 0);
                        rows = take_rows(g, done, n, t, opname, ts->schema, ts->name);
                }
                if (!what || (g->op != CHANGE_INSERT && !rows)) {
                        free(what), pg_pipe_rows_free(rows);
                        goto oom;
                }
                r = group_statement(k, ts, g, n, &stmt, err);
                if (r == 0 && PQsendQueryPrepared(k->conn, stmt, np, k->params, NULL, NULL, 0) != 1)
                        r = pg_pipe_fail(k, pg_pipe_conn_error(k, what, err), err);
                if (r < 0) {
                        free(what), pg_pipe_rows_free(rows);
                        goto out;
                }
                pg_pipe_push_pending(k, PENDING_QUERY, false, false, what);
                if (g->op != CHANGE_INSERT) {
                        Pending *p = &k->pending[(k->phead + k->npending - 1) % RING];
                        p->expect_n = n;
                        p->rows = rows;
                        k->nexpect++;
                }
                done += n;
                if (k->npending >= PENDING_MAX) {
                        r = pg_pipe_drain(k, PENDING_MAX / 2, err);
                        if (r < 0)
                                goto out;
                }
        }
        r = 0;
        goto out;
oom:
        r = pg_pipe_fail(k, cdc_oom(err), err);
out:
        free(keymask);
        return r;
}

/* Sends the held runs of one table, in the order they were opened (they hold distinct keys). */
int pg_held_flush_table(Sink *k, TState *ts, CdcError *err) {
        int r = 0;
        for (int i = 0; i < ts->ngroups && r == 0; i++)
                r = send_group(k, ts, &ts->groups[i], err);
        pg_held_ts_clear_held(ts);
        return r;
}

int pg_held_flush_all(Sink *k, CdcError *err) {
        int r = 0;
        for (int i = 0; i < k->nts && r == 0; i++)
                if (k->ts[i]->nheld > 0)
                        r = pg_held_flush_table(k, k->ts[i], err);
        return r;
}

/* Holds c in a run of its table. Returns 1 when held, 0 when c must go alone through the
 * one-row path (after every held run), negative on error. */
static int hold_run(Sink *k, TState *ts, const Change *c, const Value *img, uint8_t *set, bool copyable, CdcError *err);
static int hold_row(Sink *k, TState *ts, const Change *c, const Value *img, const uint8_t *set, char *key,
                    bool copyable, CdcError *err);

/* copyable: c may go by COPY (pg_sink_copy_fits); a run of such inserts that grows to
 * COPY_MIN_ROWS becomes a COPY (pg_sink_copy.c). */
int pg_held_hold(Sink *k, TState *ts, const Change *c, bool copyable, CdcError *err) {
        const Value *img = c->op == CHANGE_DELETE ? c->before : c->after;
        int n = ts->table->ncols > 0 ? ts->table->ncols : 1;
        uint8_t set[n]; /* the columns an UPDATE sets (a table has at most a few thousand) */
        memset(set, 0, (size_t)n);
        return hold_run(k, ts, c, img, set, copyable, err);
}

static int hold_run(Sink *k, TState *ts, const Change *c, const Value *img, uint8_t *set, bool copyable,
                    CdcError *err) {
        const Table *t = ts->table;
        KeyEntry *e;
        char *key;
        int r;

        if (!img)
                return 0;
        for (int i = 0; i < t->ncols; i++) {
                if (img[i].kind != VALUE_UNCHANGED) {
                        set[i] = PG_SQL_SET;
                } else if (c->op == CHANGE_INSERT) {
                        return 0;
                }
        }
        if (ts->appendable) /* inserts into a table without key: one run, no key to follow */
                return hold_row(k, ts, c, img, set, NULL, copyable, err);
        key = key_text(t, img);
        if (!key)
                return 0;
        if (c->op == CHANGE_UPDATE && c->before) {
                /* A key change goes alone: the old and the new key are two rows' keys. */
                char *old = key_text(t, c->before);
                bool same = old && strcmp(old, key) == 0;
                free(old);
                if (!same) {
                        free(key);
                        return 0;
                }
        }
        e = key_find(ts, key);
        if (e) {
                Group *h = &ts->groups[e->g];
                bool subset = true;
                for (int i = 0; i < t->ncols; i++)
                        if (set[i] && h->op == CHANGE_UPDATE && !(h->mask[i] & PG_SQL_SET))
                                subset = false;
                if (c->op == CHANGE_UPDATE && (h->op == CHANGE_INSERT || (h->op == CHANGE_UPDATE && subset))) {
                        /* Same row, nothing in between touched it: the later image wins. */
                        Value *row = h->rows[e->row];
                        free(key);
                        for (int i = 0; i < t->ncols; i++) {
                                if (img[i].kind == VALUE_UNCHANGED)
                                        continue;
                                value_clear(&row[i]);
                                row[i].kind = img[i].kind;
                                if (img[i].kind == VALUE_TEXT && value_set(&row[i], img[i].data, img[i].len) < 0)
                                        goto oom;
                        }
                        return 1;
                }
                r = pg_held_flush_table(k, ts, err);
                if (r < 0) {
                        free(key);
                        return r;
                }
        }
        return hold_row(k, ts, c, img, set, key, copyable, err);
oom:
        return pg_pipe_fail(k, cdc_oom(err), err);
}

/* Adds img to the run of c's op (and, for an UPDATE, column set) of its table, opening one when
 * there is none; key (owned, NULL for a table without key) finds it again. Returns 1. */
static int hold_row(Sink *k, TState *ts, const Change *c, const Value *img, const uint8_t *set, char *key,
                    bool copyable, CdcError *err) {
        const Table *t = ts->table;
        Group *g = NULL;
        Value *copy;
        int gi, r;
        for (gi = 0; gi < ts->ngroups; gi++) {
                g = &ts->groups[gi];
                if (g->op == c->op && (c->op != CHANGE_UPDATE || memcmp(g->mask, set, (size_t)t->ncols) == 0))
                        break;
        }
        if (gi == ts->ngroups) {
                if (ts->ngroups == GROUPS_MAX) {
                        r = pg_held_flush_table(k, ts, err);
                        if (r < 0) {
                                free(key);
                                return r;
                        }
                        gi = 0;
                }
                g = &ts->groups[gi];
                memset(g, 0, sizeof(*g));
                g->op = c->op;
                g->copyable = true;
                if (c->op == CHANGE_UPDATE && !(g->mask = malloc((size_t)t->ncols))) {
                        free(key);
                        goto oom;
                }
                if (g->mask)
                        memcpy(g->mask, set, (size_t)t->ncols);
                ts->ngroups = gi + 1;
        }
        if (g->nrows == g->cap) {
                int cap = g->cap ? g->cap * 2 : 64;
                Value **p = realloc(g->rows, (size_t)cap * sizeof(*p));
                if (!p) {
                        free(key);
                        goto oom;
                }
                g->rows = p;
                g->cap = cap;
        }
        copy = values_copy(img, t->ncols);
        if (!copy) {
                free(key);
                goto oom;
        }
        g->rows[g->nrows] = copy;
        if (key && key_add(ts, key, gi, g->nrows) < 0) {
                values_free(copy, t->ncols);
                goto oom;
        }
        g->nrows++;
        ts->nheld++;
        g->copyable = g->copyable && copyable;
        /* A long run of a snapshot's inserts, alone in its table: on by COPY (pg_sink_copy.c). */
        if (g->op == CHANGE_INSERT && g->copyable && ts->copy_ok && ts->ngroups == 1 && g->nrows >= COPY_MIN_ROWS) {
                r = pg_sink_copy_start(k, ts, err);
                return r < 0 ? r : 1;
        }
        if (ts->nheld >= HELD_MAX) {
                r = pg_held_flush_table(k, ts, err);
                if (r < 0)
                        return r;
        }
        return 1;
oom:
        return pg_pipe_fail(k, cdc_oom(err), err);
}
