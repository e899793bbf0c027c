/* The MySQL/MariaDB source's part of the chunked, parallel copy (chunk_copy.h): tables cut into
 * primary-key ranges (mysql_chunks.h), a chunk read row by row (mysql_use_result) on a reader
 * connection in the copy's consistent snapshot. Running the readers, the transactions and the
 * records are chunk_copy's. */
#include "mysql/mysql_copy.h"

struct MysqlCopy {
        Source *s;
        ChunkCopy *cc;
        uint64_t chunk_rows;
        unsigned zero_dates; /* zero dates read as NULL (atomic: the readers add theirs) */
};

/* A table as its chunks are read. */
typedef struct {
        SnapTable *st;         /* owned */
        uint32_t change_flags; /* of its rows: CHANGE_IDEMPOTENT or 0 */
} MysqlCopyTab;

static void tab_free(void *tab) {
        MysqlCopyTab *mt = tab;
        mysql_snapshot_table_free(mt->st);
        free(mt);
}

static int chunk_key(const void *tab, const char *key, ChunkRange r, char *buf, size_t len) {
        const MysqlCopyTab *mt = tab;
        return mysql_chunks_key(key, r, mt->st->key_signed, buf, len);
}

static int reader_error(const Source *s, MYSQL *conn, const SnapTable *st, CdcError *err) {
        unsigned e = mysql_errno(conn);
        return cdc_error(err, -EIO, mysql_conn_retry_helps(e), mysql_conn_lost(e) ? CDC_ERR_CONNECTION : CDC_ERR_QUERY,
                         "%s snapshot of %s.%s: %s (error %u)", s->ctx, st->t->schema, st->t->name, mysql_error(conn),
                         e);
}

/* Reads chunk r of a table on a reader's connection, its rows to chunk_copy_row(). */
static int read_chunk(void *ud, void *reader, void *tab, ChunkRange r, ChunkCopyReader *rd, CdcError *err) {
        MysqlCopy *cp = ud;
        MYSQL *conn = reader;
        const MysqlCopyTab *mt = tab;
        const SnapTable *st = mt->st;
        char where[160] = "", *sql = NULL;
        unsigned zero_dates = 0;
        int rc = 0;
        if (st->key_col >= 0)
                mysql_chunks_where(r, st->key_signed, st->qkey, where, sizeof(where));
        if (asprintf(&sql, "%s%s", st->select, where) < 0)
                return cdc_oom(err);
        MYSQL_RES *res = NULL;
        if (mysql_real_query(conn, sql, strlen(sql)) || !(res = mysql_use_result(conn))) {
                free(sql);
                return reader_error(cp->s, conn, st, err);
        }
        free(sql);
        MYSQL_ROW row;
        size_t per_row = sizeof(Change) + sizeof(Value) * (size_t)st->t->ncols;
        while ((row = mysql_fetch_row(res))) {
                unsigned long *lens = mysql_fetch_lengths(res);
                Change c;
                rc = mysql_snapshot_row(cp->s, st, row, lens, mt->change_flags, &zero_dates, &c, err);
                if (rc < 0)
                        break;
                size_t bytes = per_row;
                for (int i = 0; i < st->t->ncols; i++)
                        bytes += lens[i];
                rc = chunk_copy_row(rd, &c, bytes, err);
                if (rc < 0)
                        break;
        }
        if (rc == 0 && mysql_errno(conn))
                rc = reader_error(cp->s, conn, st, err);
        if (rc < 0)
                res->handle = NULL; /* rows left unread: the caller closes the connection rather than drain it */
        mysql_free_result(res);
        __atomic_fetch_add(&cp->zero_dates, zero_dates, __ATOMIC_RELAXED);
        return rc;
}

static const ChunkCopyOps mysql_copy_ops = {
        .read_chunk = read_chunk,
        .chunk_key = chunk_key,
        .format_position = mysql_source_format_position,
        .table_free = tab_free,
};

int mysql_copy_new(Source *s, PipelineIO *io, Position pos, const char *ckpt_text, bool chunked, MysqlCopy **ret,
                   CdcError *err) {
        MysqlCopy *cp = calloc(1, sizeof(*cp));
        if (!cp)
                return cdc_oom(err);
        cp->s = s;
        cp->chunk_rows = s->pipe && s->pipe->snapshot_chunk_rows > 0 ? (uint64_t)s->pipe->snapshot_chunk_rows : 100000;
        ChunkCopyOptions o = {.ops = &mysql_copy_ops,
                              .ud = cp,
                              .io = io,
                              .ctx = s->ctx,
                              .pipeline = s->pipe ? s->pipe->name : NULL,
                              .pos = pos,
                              .ckpt_text = ckpt_text ? ckpt_text : "",
                              .chunked = chunked};
        int r = chunk_copy_new(&o, &cp->cc, err);
        if (r < 0) {
                free(cp);
                return r;
        }
        *ret = cp;
        return 0;
}

MysqlCopy *mysql_copy_free(MysqlCopy *cp) {
        if (!cp)
                return NULL;
        chunk_copy_free(cp->cc);
        free(cp);
        return NULL;
}

/* The key's MIN and MAX in key space (*ret_empty: no row) on conn. */
typedef struct {
        bool is_signed, empty, bad;
        uint64_t min, max;
} Bounds;

static int bounds_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        Bounds *b = ud;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1]) {
                b->empty = true;
                return 0;
        }
        uint64_t v[2];
        for (int i = 0; i < 2; i++) {
                char *end;
                errno = 0;
                if (b->is_signed) {
                        long long x = strtoll(cells[i], &end, 10);
                        v[i] = mysql_chunks_from_signed((int64_t)x);
                } else {
                        v[i] = (uint64_t)strtoull(cells[i], &end, 10);
                }
                if (errno || end == cells[i] || *end)
                        b->bad = true;
        }
        b->min = v[0];
        b->max = v[1];
        return 0;
}

int mysql_copy_add_table(MysqlCopy *cp, MYSQL *conn, SnapTable *st, uint32_t change_flags, bool truncate,
                         uint32_t truncate_flags, const MysqlKeyRange *done, int ndone, uint64_t done_rows,
                         CopyState final_state, Position final_pos, CdcError *err) {
        Source *s = cp->s;
        MysqlCopyTab *mt = calloc(1, sizeof(*mt));
        if (!mt) {
                mysql_snapshot_table_free(st);
                return cdc_oom(err);
        }
        mt->st = st;
        mt->change_flags = change_flags;
        char key[COPIES_NAME_MAX];
        snprintf(key, sizeof(key), "%s.%s", st->t->schema, st->t->name);

        /* the server's estimate (InnoDB: sampled, may be far off or 0 before statistics exist) */
        const char *params[2] = {st->t->schema, st->t->name};
        VarRow v = {0};
        int q = mysql_conn_query(s->sql,
                                 "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND "
                                 "TABLE_NAME = ?",
                                 params, 2, mysql_source_var_row, &v, err);
        if (q < 0)
                goto fail;
        uint64_t est = 0;
        if (q > 0 && v.vals[0][0])
                mysql_source_parse_u64(v.vals[0], strlen(v.vals[0]), &est);

        Bounds b = {.is_signed = st->key_signed, .empty = true};
        if (st->key_col >= 0) {
                char *sql = NULL;
                if (asprintf(&sql, "SELECT MIN(%s), MAX(%s) FROM %s", st->qkey, st->qkey, st->qtable) < 0) {
                        q = cdc_oom(err);
                        goto fail;
                }
                b.empty = false;
                q = mysql_conn_query(conn, sql, NULL, 0, bounds_row, &b, err);
                free(sql);
                if (q < 0)
                        goto fail;
                if (b.bad) {
                        q = cdc_error(err, -EPROTO, false, CDC_ERR_SOURCE,
                                      "%s snapshot of %s: the bounds of its key %s are not integers", s->ctx, key,
                                      st->t->cols[st->key_col].name);
                        goto fail;
                }
        }
        /* No integer key to range over: one chunk (the whole table). */
        uint64_t width =
                st->key_col >= 0 && !b.empty ? mysql_chunks_width(b.min, b.max, est, cp->chunk_rows) : UINT64_MAX;
        MysqlKeyRange *plan = NULL;
        int nplan = 0;
        if (mysql_chunks_plan(st->key_col < 0 || b.empty, b.min, b.max, width, done, ndone, &plan, &nplan) < 0) {
                q = cdc_oom(err);
                goto fail;
        }
        ChunkCopyTable tab = {.key = key,
                              .t = st->t,
                              .truncate = truncate,
                              .truncate_flags = truncate_flags,
                              .final_state = final_state,
                              .final_pos = final_pos,
                              .rows_est = est,
                              .ud = mt};
        q = chunk_copy_add_table(cp->cc, &tab, done, ndone, done_rows, plan, nplan, err);
        free(plan);
        return q;
fail:
        tab_free(mt);
        return q;
}

int mysql_copy_run(MysqlCopy *cp, MYSQL **readers, int nreaders, CdcError *err) {
        void **conns = calloc((size_t)(nreaders > 0 ? nreaders : 1), sizeof(*conns));
        if (!conns)
                return cdc_oom(err);
        for (int i = 0; i < nreaders; i++)
                conns[i] = readers[i];
        int r = chunk_copy_run(cp->cc, conns, nreaders, err);
        free(conns);
        unsigned zero_dates = __atomic_exchange_n(&cp->zero_dates, 0, __ATOMIC_RELAXED);
        if (zero_dates)
                log_warn(cp->s->ctx, "%u zero date(s) ('0000-00-00') in the snapshot became NULL", zero_dates);
        return r;
}
