/* The MySQL/MariaDB sink: statements for changes, value conversion, the checkpoint table.
 *
 * How a MariaDB source tells cdcsync's writes from the application's: the sink runs
 * `SET SESSION server_id = <its connector's server_id>` (needs BINLOG REPLAY or SUPER), so every
 * binlog event it causes carries that id, and the binlog source reports the writer's server_id as
 * TxnInfo.origin. The engine compares origin with the sink connector's server_id to recognise an
 * echo. skip_replication would hide our writes from our own binlog source (and from every real
 * replica), so it is not used. The connector's server_id must therefore be unique in the
 * replication topology, like any replica's. A sink without server_id (allowed only when no pipeline
 * reads its writes back) writes unmarked. */
#include <errno.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include "mysql/mysql_conn.h"
#include "mysql/mysql_sink.h"

#define STMT_CACHE_MAX 64
#define ROW_COLS_SHOWN 3   /* columns of a keyless row quoted in an error message... */
#define ROW_VALUE_SHOWN 24 /* ...and bytes of each */

typedef struct CachedStmt {
        struct CachedStmt *next;
        char *sql; /* owned */
        MYSQL_STMT *st;
} CachedStmt;

/* Prepared statements by text, bounded: when full it is emptied (tables are few and statements
 * re-prepare fast). */
typedef struct {
        CachedStmt *head;
        int n;
} StmtCache;

/* Param of a statement, see make_param. */
typedef struct {
        char *data; /* owned */
        size_t len;
        bool null;
        bool binary;
} Param;

/* A run of consecutive changes with the same statement text, held back and sent as one
 * array-bound execution (MariaDB's COM_STMT_BULK_EXECUTE): one round trip for the whole run
 * instead of one per row, and the server applies the rows in order, so the result is that of
 * executing them one by one. Any other statement, the checkpoint, and commit flush it first. */
#define RUN_MAX_ROWS 1000
#define RUN_MAX_BYTES ((size_t)4 << 20) /* well under max_allowed_packet (16 MB by default) */

typedef struct {
        CachedStmt *stmt; /* NULL: nothing pending; one of Sink.stmts */
        char what[600];   /* for error messages: "insert on `db`.`t`" */
        int nparams;      /* per row */
        bool expect;      /* every row must find exactly one target row (update, delete) */
        int nrows, cap;   /* rows held; rows keys[] has room for */
        size_t pcap;      /* Params params[] has room for (the statement, so nparams, varies) */
        Param *params;    /* nrows * nparams, owned */
        char **keys;      /* per row, owned: "(id)=(42)", so an error names the row */
        size_t bytes;
        /* The multi-row form of the run (see multi_send): mkind MULTI_NONE, or the kind every row
         * qualifies for; mt (one reference) and the sink-side names give the statement its text. */
        int mkind;
        Table *mt;
        char mschema[256], mname[256];
} Run;

/* Multi-row statements: the server runs an array-bound execution as one statement per row (open
 * and lock the table, plan, write a table map to the binlog: most of its time in a catch-up); one
 * INSERT ... VALUES (...),(...) or DELETE ... WHERE key IN (...) does that once for many rows.
 * Only for tables whose changes may be reordered (TargetTable.reorder: the primary key is the
 * source's key, integers or UUIDs, no other unique index, foreign key or trigger) with a one-column
 * key, so a row is found by its key alone and at most one row has it. */
enum {
        MULTI_NONE,
        MULTI_INSERT, /* params: every column, in table order */
        MULTI_DELETE, /* params: the key */
        MULTI_UPDATE, /* whole-row update keeping its key; params: every column, then the key */
};
#define MULTI_MIN 2
#define MULTI_MAX_ROWS 4000    /* rows of a multi-row run; and at most MULTI_MAX_PARAMS placeholders */
#define MULTI_MAX_PARAMS 60000 /* the protocol's limit is 65535 */
#define MULTI_CACHE_ROWS 64    /* statements of up to this many rows are kept prepared (sizes recur) */
#define MULTI_STMT_MAX 64

/* Several runs may be pending at once, one per statement: a batch of small transactions
 * (update, insert, delete, hot-row update, again and again) then costs a few round trips, not
 * one per row. That reorders changes across runs, which is only sound when no two pending
 * changes touch the same row and rows cannot affect each other: the target's primary key is the
 * source key, of integers or UUIDs, with no other unique index, no foreign key and no trigger
 * (TargetTable.reorder).
 * A change that would touch a row of another pending run flushes them all first. */
#define RUNS_MAX 8

typedef struct {
        uint64_t hash;
        int run;   /* -1: empty slot */
        char *key; /* owned: "schema.table" NUL, then per key column its length and bytes */
        size_t len;
} KeySlot;

typedef struct {
        KeySlot *slots;
        size_t cap, n; /* cap: a power of two */
} KeySet;

/* The source relation a source table had when last seen (see check_relation); prev: the one
 * before it, whose changes are those of a dropped table. */
typedef struct RelSeen {
        struct RelSeen *next;
        char *schema, *name; /* owned: source-side names */
        uint32_t rel_id, prev;
        bool has_prev, ready; /* ready: the target is the new relation's (see check_relation) */
} RelSeen;

typedef struct TargetTable {
        struct TargetTable *next;
        char *schema, *name;         /* owned: sink-side names */
        Table *shape;                /* one reference: the source shape last checked against the target */
        bool reorder_known, reorder; /* for shape: may its changes be reordered (see RUNS_MAX) */
} TargetTable;

struct Sink {
        const ConnectorConf *conn;
        const PipelineConf *pipe;
        MYSQL *m;
        StmtCache stmts;
        StmtCache mstmts;   /* multi-row statements, a cache of their own: used only while sent */
        TargetTable *known; /* tables seen to exist */
        bool rels;          /* `cdcsync`.`relations` is kept (a PostgreSQL source): see check_relation */
        RelSeen *seen;      /* what it says, for the source tables seen since the last rollback */
        MYSQL *aux;         /* owned or NULL: reads `cdcsync`.`relations` outside the batch */
        Run runs[RUNS_MAX]; /* pending, in the order they were started; nruns used */
        int nruns;
        bool ordered; /* the pending run holds a change that nothing may overtake */
        KeySet keys;  /* row keys of the pending runs → run, for reordering */
        bool bulk;    /* the server takes array-bound executions (MariaDB 10.2+) */
        bool in_txn;
        char ctx[160];
        char *qbuf; /* owned: the text buffer sink_apply builds each change's statement in, kept */
        size_t qcap;
        uint64_t txn_xid; /* the source transaction of the last change applied... */
        Position txn_pos; /* ...its commit position (as its changes carry it) */
        uint32_t txn_row; /* ...and that change's place in it, from 1: names a keyless row */
};

/* ---- SQL text with quoted identifiers ---- */

typedef struct {
        char *s;
        size_t len, cap;
        bool oom;
} Sql;

static void sql_put(Sql *q, const char *s, size_t n) {
        if (q->oom)
                return;
        if (q->len + n + 1 > q->cap) {
                size_t cap = q->cap ? q->cap : 256;
                while (cap < q->len + n + 1)
                        cap *= 2;
                char *p = realloc(q->s, cap);
                if (!p) {
                        q->oom = true;
                        return;
                }
                q->s = p;
                q->cap = cap;
        }
        memcpy(q->s + q->len, s, n);
        q->len += n;
        q->s[q->len] = '\0';
}

static void sql_add(Sql *q, const char *s) {
        sql_put(q, s, strlen(s));
}

/* `name` with backticks doubled: identifiers are never pasted raw. */
static void sql_ident(Sql *q, const char *name) {
        sql_put(q, "`", 1);
        for (const char *p = name; *p;) {
                size_t n = strcspn(p, "`"); /* whole stretches: every change's statement passes here */
                sql_put(q, p, n);
                p += n;
                if (*p == '`') {
                        sql_put(q, "``", 2);
                        p++;
                }
        }
        sql_put(q, "`", 1);
}

static void sql_table(Sql *q, const char *schema, const char *name) {
        sql_ident(q, schema);
        sql_add(q, ".");
        sql_ident(q, name);
}

/* ---- value conversion ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned)(y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **pp, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if ((*pp)[i] < '0' || (*pp)[i] > '9')
                        return -EINVAL;
                v = v * 10 + ((*pp)[i] - '0');
        }
        *pp += n;
        *ret = v;
        return 0;
}

/* "YYYY-MM-DD HH:MM:SS[.f][+HH[:MM[:SS]]]" → UTC "YYYY-MM-DD HH:MM:SS[.f]" for DATETIME. */
static int convert_timestamptz(const char *t, char *out, size_t cap) {
        int Y, M, D, h, mi, s, oh = 0, om = 0, os = 0;
        const char *p = t;
        if (digits(&p, 4, &Y) < 0 || *p++ != '-' || digits(&p, 2, &M) < 0 || *p++ != '-' || digits(&p, 2, &D) < 0 ||
            (*p != ' ' && *p != 'T'))
                return -EINVAL;
        p++;
        if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0 || *p++ != ':' || digits(&p, 2, &s) < 0)
                return -EINVAL;
        char frac[8] = "";
        if (*p == '.') {
                size_t n = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                        if (n < 6)
                                frac[n++] = *p;
                        p++;
                }
                frac[n] = '\0';
        }
        int sign = 0;
        if (*p == '+' || *p == '-') {
                sign = *p == '-' ? -1 : 1;
                p++;
                if (digits(&p, 2, &oh) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (*p >= '0' && *p <= '9' && digits(&p, 2, &om) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (*p >= '0' && *p <= '9' && digits(&p, 2, &os) < 0)
                        return -EINVAL;
        } else if (*p == 'Z') {
                p++;
        }
        if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || s > 60)
                return -EINVAL;
        int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + mi * 60 + s -
                       sign * (oh * 3600 + om * 60 + os);
        time_t tt = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&tt, &tm))
                return -ERANGE;
        if (tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999)
                return -ERANGE;
        snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d%s%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac[0] ? "." : "", frac);
        return 0;
}

int mysql_sink_convert(TypeClass cls, const char *text, size_t len, char **ret, size_t *ret_len) {
        char buf[64];
        const char *src = text;
        size_t n = len;
        char *bytes = NULL;

        switch (cls) {
        case TYPE_BOOLEAN:
                if (len == 1 && (text[0] == 't' || text[0] == 'f'))
                        src = text[0] == 't' ? "1" : "0", n = 1;
                else if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
                        src = text[0] == 't' ? "1" : "0", n = 1;
                break;
        case TYPE_NUMERIC:
        case TYPE_FLOAT: {
                if (strcasestr(text, "nan") || strcasestr(text, "inf"))
                        return -ERANGE;
                if (cls == TYPE_NUMERIC) {
                        /* DECIMAL(65,30): at most 35 integer and 30 fractional digits */
                        const char *p = text + (text[0] == '-' || text[0] == '+');
                        size_t ip = strspn(p, "0123456789");
                        const char *dot = p[ip] == '.' ? p + ip + 1 : NULL;
                        size_t fp = dot ? strspn(dot, "0123456789") : 0;
                        while (ip > 1 && *p == '0')
                                p++, ip--;
                        if (strpbrk(text, "eE") || ip > 35 || fp > 30)
                                return -ERANGE;
                }
                break;
        }
        case TYPE_BYTES:
                if (len >= 2 && text[0] == '\\' && text[1] == 'x') {
                        if ((len - 2) % 2)
                                return -EINVAL;
                        bytes = malloc((len - 2) / 2 + 1);
                        if (!bytes)
                                return -ENOMEM;
                        for (size_t i = 0; i < (len - 2) / 2; i++) {
                                unsigned v;
                                char hx[3] = {text[2 + 2 * i], text[3 + 2 * i], 0};
                                char *end;
                                v = (unsigned)strtoul(hx, &end, 16);
                                if (*end || !hx[0] || !hx[1]) {
                                        free(bytes);
                                        return -EINVAL;
                                }
                                bytes[i] = (char)v;
                        }
                        bytes[(len - 2) / 2] = '\0';
                        *ret = bytes;
                        *ret_len = (len - 2) / 2;
                        return 0;
                }
                break;
        case TYPE_TIMESTAMPTZ: {
                int r = convert_timestamptz(text, buf, sizeof(buf));
                if (r < 0)
                        return r;
                src = buf;
                n = strlen(buf);
                break;
        }
        case TYPE_TIMESTAMP:
        case TYPE_DATE:
                if (strstr(text, "infinity") || strstr(text, "BC"))
                        return -ERANGE;
                if (len >= 4 && (text[0] == '0' || (len > 4 && text[4] != '-')))
                        return -ERANGE; /* years before 1000 or past 9999 */
                break;
        default: break;
        }
        char *p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, src, n);
        p[n] = '\0';
        *ret = p;
        *ret_len = n;
        return 0;
}

/* ---- statements ---- */

static void params_free(Param *p, int n) {
        for (int i = 0; i < n; i++)
                free(p[i].data);
}

static int sink_error(Sink *k, MYSQL_STMT *st, const char *what, CdcError *err) {
        unsigned int e = st ? mysql_stmt_errno(st) : mysql_errno(k->m);
        const char *msg = st ? mysql_stmt_error(st) : mysql_error(k->m);
        bool lost = mysql_conn_lost(e);
        bool data = e == ER_WARN_DATA_OUT_OF_RANGE || e == ER_TRUNCATED_WRONG_VALUE ||
                    e == ER_TRUNCATED_WRONG_VALUE_FOR_FIELD || e == ER_DATA_TOO_LONG || e == ER_BAD_NULL_ERROR ||
                    e == ER_DUP_ENTRY || e == ER_NO_REFERENCED_ROW_2 || e == ER_ROW_IS_REFERENCED_2;
        bool retry = lost || e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT || e == ER_NO_SUCH_TABLE ||
                     e == ER_BAD_FIELD_ERROR;
        return cdc_error(err, -EIO, retry && !data,
                         lost                                               ? "connection"
                         : data                                             ? "data"
                         : e == ER_NO_SUCH_TABLE || e == ER_BAD_FIELD_ERROR ? "schema"
                                                                            : "query",
                         "%s %s: %s (error %u)", k->ctx, what, msg, e);
}

static void cache_free(StmtCache *cache) {
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
                cache_free(cache);
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
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        mysql_stmt_prepare(t, sql, strlen(sql));
        r = sink_error(k, t, what, err);
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
                return sink_error(k, st, what, err);
        if (ret_rows)
                *ret_rows = mysql_stmt_affected_rows(st);
        mysql_stmt_free_result(st);
        return 0;
}

/* Runs sql with params; *ret_rows: affected rows. */
static int exec(Sink *k, const char *sql, Param *p, int n, const char *what, uint64_t *ret_rows, CdcError *err) {
        CachedStmt *c = stmt_cached(k, sql);
        if (!c)
                return prepare_error(k, sql, what, err);
        return exec_row(k, c->st, p, n, what, ret_rows, err);
}

static void run_clear(Run *u) {
        for (int i = 0; i < u->nrows; i++) {
                for (int j = 0; j < u->nparams; j++)
                        free(u->params[(size_t)i * u->nparams + j].data);
                free(u->keys[i]);
        }
        u->nrows = 0;
        u->bytes = 0;
        u->stmt = NULL;
        u->mkind = MULTI_NONE;
        u->mt = table_unref(u->mt);
}

static void run_free(Run *u) {
        run_clear(u);
        free(u->params);
        free(u->keys);
        *u = (Run){0};
}

/* An update or delete that found no row (or several): the target lacks a row the source had, so
 * applying on would make the divergence permanent. Not retriable: an operator must look. */
static int diverged(Sink *k, const Run *u, int i, uint64_t rows, CdcError *err) {
        char n[24];
        snprintf(n, sizeof(n), "%" PRIu64, rows);
        return cdc_error(err, -ENOENT, false, "data",
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

static void sql_placeholder(Sql *q, const Column *c);

/* The text of u's multi-row statement for m rows; check: the locking read an update's rows are
 * counted with first. */
static char *multi_sql(const Run *u, int m, bool check) {
        const Table *t = u->mt;
        const char *kname = NULL;
        Sql q = {0};
        for (int i = 0; i < t->ncols && !kname; i++)
                if (t->cols[i].key)
                        kname = t->cols[i].name;
        if (!kname)
                return NULL;
        if (u->mkind == MULTI_DELETE || check) {
                sql_add(&q, check ? "SELECT COUNT(*) FROM " : "DELETE FROM ");
                sql_table(&q, u->mschema, u->mname);
                sql_add(&q, " WHERE ");
                sql_ident(&q, kname);
                sql_add(&q, " IN (");
                for (int i = 0; i < m; i++)
                        sql_add(&q, i ? ", ?" : "?");
                sql_add(&q, check ? ") FOR UPDATE" : ")");
        } else {
                sql_add(&q, "INSERT INTO ");
                sql_table(&q, u->mschema, u->mname);
                sql_add(&q, " (");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                sql_add(&q, ", ");
                        sql_ident(&q, t->cols[i].name);
                }
                sql_add(&q, ") VALUES ");
                for (int r = 0; r < m; r++) {
                        sql_add(&q, r ? ", (" : "(");
                        for (int i = 0; i < t->ncols; i++) {
                                if (i)
                                        sql_add(&q, ", ");
                                sql_placeholder(&q, &t->cols[i]);
                        }
                        sql_add(&q, ")");
                }
                sql_add(&q, " ON DUPLICATE KEY UPDATE ");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                sql_add(&q, ", ");
                        sql_ident(&q, t->cols[i].name);
                        sql_add(&q, " = VALUES(");
                        sql_ident(&q, t->cols[i].name);
                        sql_add(&q, ")");
                }
        }
        if (q.oom) {
                free(q.s);
                return NULL;
        }
        return q.s;
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
                r = sink_error(k, one.st, u->what, err);
                goto out;
        }
        if (!c || !c->st) {
                r = c ? cdc_error(err, -ENOMEM, true, "internal", "out of memory")
                      : prepare_error(k, sql, u->what, err);
                goto out;
        }
        b = calloc((size_t)nb, sizeof(*b));
        if (!b) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
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
                r = sink_error(k, c->st, u->what, err);
                goto out;
        }
        if (ret_count) {
                long long n = 0;
                my_bool isnull = 0;
                MYSQL_BIND o = {.buffer_type = MYSQL_TYPE_LONGLONG, .buffer = &n, .is_null = &isnull};
                if (mysql_stmt_bind_result(c->st, &o) || mysql_stmt_fetch(c->st) != 0) {
                        r = sink_error(k, c->st, u->what, err);
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

/* Rows [from, from + m) of u as multi-row statements. An update first counts its rows with a
 * locking read (they then stay until the commit): all there, the upsert of the after images does
 * what the updates one by one would (same key, whole row, later rows of a key last); some missing,
 * the rows go one by one, so the one that finds nothing is named. A delete that falls short is
 * rolled back to a savepoint and redone one by one for the same reason. */
static int multi_send(Sink *k, Run *u, int from, int m, CdcError *err) {
        int r, nt = u->mt->ncols;
        bool saved = false;
        uint64_t rows = 0, found = 0;
        char *sql = NULL, *check = NULL;
        if (u->mkind == MULTI_UPDATE && u->expect) {
                check = multi_sql(u, m, true);
                if (!check) {
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        goto out;
                }
                r = multi_exec(k, u, check, from, m, nt, 1, &rows, &found, err);
                if (r < 0)
                        goto out;
                /* distinct keys of the chunk: what the count must be */
                const Param **ks = malloc((size_t)m * sizeof(*ks));
                uint64_t distinct = 0;
                if (!ks) {
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        goto out;
                }
                for (int i = 0; i < m; i++)
                        ks[i] = &u->params[(size_t)(from + i) * u->nparams + nt];
                qsort(ks, (size_t)m, sizeof(*ks), param_cmp);
                for (int i = 0; i < m; i++)
                        distinct += i == 0 || param_cmp(&ks[i - 1], &ks[i]) != 0;
                free(ks);
                if (found != distinct) {
                        r = run_rows_range(k, u, from, from + m, err);
                        goto out;
                }
        }
        sql = multi_sql(u, m, false);
        if (!sql) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        if (u->mkind == MULTI_DELETE && u->expect) {
                if (mysql_query(k->m, "SAVEPOINT cdcsync_multi")) {
                        r = sink_error(k, NULL, "savepoint", err);
                        goto out;
                }
                saved = true;
        }
        r = multi_exec(k, u, sql, from, m, 0, u->mkind == MULTI_DELETE ? 1 : nt, &rows, NULL, err);
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
        if (saved && rows != (uint64_t)m) {
                if (mysql_query(k->m, "ROLLBACK TO SAVEPOINT cdcsync_multi")) {
                        r = sink_error(k, NULL, "rollback to savepoint", err);
                        goto out;
                }
                r = run_rows_range(k, u, from, from + m, err);
        }
out:
        free(check);
        free(sql);
        return r;
}

/* Sends the pending run, if any, and empties it (also on failure: the caller rolls back). */
static int run_send(Sink *k, Run *u, CdcError *err) {
        int r = 0, np = u->nparams, n = u->nrows;
        if (!u->stmt || n == 0)
                goto out;
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
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
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
                        r = sink_error(k, NULL, "savepoint", err);
                        goto bulk_out;
                }
                saved = true;
        }
        if (mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size) || (np > 0 && mysql_stmt_bind_param(st, b)) ||
            mysql_stmt_execute(st)) {
                r = sink_error(k, st, u->what, err);
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
                        r = sink_error(k, NULL, "rollback to savepoint", err);
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
        run_clear(u);
        return r;
}

static void keys_clear(KeySet *ks) {
        for (size_t i = 0; i < ks->cap; i++) {
                free(ks->slots[i].key);
                ks->slots[i] = (KeySlot){.run = -1};
        }
        ks->n = 0;
}

static uint64_t key_hash(const char *key, size_t len) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (size_t i = 0; i < len; i++)
                h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
        return h;
}

/* The slot of key: its own, or the empty one where it would go. */
static KeySlot *keys_find(KeySet *ks, const char *key, size_t len, uint64_t h) {
        for (size_t i = h & (ks->cap - 1);; i = (i + 1) & (ks->cap - 1)) {
                KeySlot *e = &ks->slots[i];
                if (e->run < 0 || (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0))
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
                n[i] = (KeySlot){.run = -1};
        ks->slots = n;
        ks->cap = cap;
        for (size_t i = 0; i < oldcap; i++)
                if (old[i].run >= 0)
                        *keys_find(ks, old[i].key, old[i].len, old[i].hash) = old[i];
        free(old);
        return 0;
}

static void keys_free(KeySet *ks) {
        keys_clear(ks);
        free(ks->slots);
        *ks = (KeySet){0};
}

/* Sends every pending run, in the order they were started, and forgets their keys. */
static int pending_flush(Sink *k, CdcError *err) {
        int r = 0;
        for (int i = 0; i < k->nruns; i++) {
                if (r == 0)
                        r = run_send(k, &k->runs[i], err);
                else
                        run_clear(&k->runs[i]);
        }
        k->nruns = 0;
        k->ordered = false;
        if (k->keys.n)
                keys_clear(&k->keys);
        return r;
}

static void pending_clear(Sink *k) {
        for (int i = 0; i < k->nruns; i++)
                run_clear(&k->runs[i]);
        k->nruns = 0;
        k->ordered = false;
        if (k->keys.n)
                keys_clear(&k->keys);
}

/* The identity of a row: sink table and the source key values (every column without a key). */
static char *row_key(const char *schema, const char *name, const Table *t, const Value *img, size_t *ret_len) {
        Sql q = {0};
        bool keyed = table_nkeys(t) > 0;
        sql_add(&q, schema);
        sql_put(&q, ".", 1);
        sql_add(&q, name);
        sql_put(&q, "", 1); /* the NUL ends the name */
        for (int i = 0; i < t->ncols; i++) {
                if (keyed && !t->cols[i].key)
                        continue;
                uint32_t n = img[i].kind == VALUE_TEXT ? (uint32_t)img[i].len : UINT32_MAX;
                sql_put(&q, (const char *)&n, sizeof(n));
                if (img[i].kind == VALUE_TEXT)
                        sql_put(&q, img[i].data, img[i].len);
        }
        if (q.oom) {
                free(q.s);
                return NULL;
        }
        *ret_len = q.len;
        return q.s;
}

/* Adds one execution of sql to the pending runs (expect: it must find exactly one row); takes the params' data
 * (p[i].data is NULL on return) and the message key (freed either way). rk: the row keys the change touches (nrk of
 * them; before and after key of an update), each taken, NULL when the change may not be
 * reordered (then everything pending goes first and nothing overtakes it). */
static int run_add(Sink *k, const char *sql, Param *p, int np, bool expect, const char *opname, char *key, char **rk,
                   const size_t *rkl, int nrk, const Table *t, const char *schema, const char *name, int mkind,
                   CdcError *err) {
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
                        r = pending_flush(k, err);
                        ri = -1;
                }
        } else {
                for (int i = 0; i < nrk && ri >= -1; i++) {
                        if (!k->keys.cap)
                                break;
                        KeySlot *e = keys_find(&k->keys, rk[i], rkl[i], key_hash(rk[i], rkl[i]));
                        if (e->run >= 0 && e->run != ri)
                                ri = -2; /* another pending run touches this row */
                }
                if (ri == -2 || (ri == -1 && k->nruns == RUNS_MAX)) {
                        r = pending_flush(k, err);
                        ri = -1;
                }
        }
        if (r < 0)
                goto out;
        if (ri < 0 && k->nruns > 0 && k->stmts.n >= STMT_CACHE_MAX) {
                if (!cache_has(&k->stmts, sql)) { /* preparing it empties the cache: the pending runs go first */
                        r = pending_flush(k, err);
                        if (r < 0)
                                goto out;
                }
        }
        if (ri < 0) {
                char what[600];
                snprintf(what, sizeof(what), "%s on `%s`.`%s`", opname, schema, name);
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
                snprintf(u->what, sizeof(u->what), "%s", what);
                u->mkind = mkind;
                u->mt = mkind != MULTI_NONE ? table_ref((Table *)t) : NULL;
                snprintf(u->mschema, sizeof(u->mschema), "%s", schema);
                snprintf(u->mname, sizeof(u->mname), "%s", name);
        }
        Run *u = &k->runs[ri];
        if (u->mkind != mkind) /* one row that does not qualify: the run goes the general way */
                u->mkind = MULTI_NONE;
        if (u->nrows == u->cap) {
                int cap = u->cap ? u->cap * 2 : 16;
                char **nk = realloc(u->keys, (size_t)cap * sizeof(*nk));
                if (!nk) {
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        goto out;
                }
                u->keys = nk;
                u->cap = cap;
        }
        if ((size_t)(u->nrows + 1) * np > u->pcap) {
                size_t pcap = u->pcap ? u->pcap * 2 : 256;
                while (pcap < (size_t)(u->nrows + 1) * np)
                        pcap *= 2;
                Param *np2 = realloc(u->params, pcap * sizeof(*np2));
                if (!np2) {
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
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
                                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                                goto out;
                        }
                        uint64_t h = key_hash(rk[i], rkl[i]);
                        KeySlot *e = keys_find(&k->keys, rk[i], rkl[i], h);
                        if (e->run < 0) {
                                *e = (KeySlot){.hash = h, .run = ri, .key = rk[i], .len = rkl[i]};
                                rk[i] = NULL;
                                k->keys.n++;
                        }
                }
        }
        int max = RUN_MAX_ROWS;
        if (u->mkind != MULTI_NONE)
                max = np > 0 && MULTI_MAX_PARAMS / np < MULTI_MAX_ROWS ? MULTI_MAX_PARAMS / np : MULTI_MAX_ROWS;
        if (u->nrows >= max || u->bytes >= RUN_MAX_BYTES)
                r = pending_flush(k, err);
out:
        free(key);
        for (int i = 0; i < nrk; i++)
                free(rk[i]);
        return r;
}

static int simple(Sink *k, const char *sql, CdcError *err) {
        if (mysql_query(k->m, sql))
                return sink_error(k, NULL, sql, err);
        return 0;
}

/* ---- table names and creation ---- */

static int map_table(Sink *k, const Table *t, char *schema, size_t sl, char *name, size_t nl) {
        const char *def = k->conn->database ? k->conn->database : t->schema;
        if (strcmp(t->schema, "cdcsync") == 0) { /* our own bookkeeping keeps its place */
                snprintf(schema, sl, "%s", t->schema);
                snprintf(name, nl, "%s", t->name);
                return 0;
        }
        char full[512];
        if (k->pipe && k->pipe->nmaps > 0)
                snprintf(full, sizeof(full), "%s.%s", t->schema, t->name);
        if (k->pipe && k->pipe->nmaps > 0)
                for (int i = 0; i < k->pipe->nmaps; i++) {
                        const TableMap *m = &k->pipe->maps[i];
                        const char *dot = strchr(m->to, '.');
                        if (!dot)
                                continue;
                        if (strcmp(m->from, full) == 0) {
                                snprintf(schema, sl, "%.*s", (int)(dot - m->to), m->to);
                                snprintf(name, nl, "%s", dot + 1);
                                return 0;
                        }
                        size_t fl = strlen(m->from);
                        if (fl > 2 && strcmp(m->from + fl - 2, ".*") == 0 && strncmp(m->from, t->schema, fl - 2) == 0 &&
                            t->schema[fl - 2] == '\0') {
                                snprintf(schema, sl, "%.*s", (int)(dot - m->to), m->to);
                                snprintf(name, nl, "%s", t->name);
                                return 0;
                        }
                }
        /* every change comes here: copied without printf */
        size_t dl = strlen(def), tl = strlen(t->name);
        if (dl >= sl || tl >= nl)
                return -ENAMETOOLONG;
        memcpy(schema, def, dl + 1);
        memcpy(name, t->name, tl + 1);
        return 0;
}

/* A PostgreSQL char(n) (bpchar) column: its values arrive padded with blanks to n, which
 * PostgreSQL ignores in comparisons; MySQL's CHAR drops them, and the sink drops them for every
 * target type, so a value is the same in a key, a WHERE and a row whatever the target column. */
static bool blank_padded(const Column *c) {
        const char *tn = c->type_name ? c->type_name : "";
        return c->cls == TYPE_TEXT && (strncmp(tn, "character(", 10) == 0 || strcmp(tn, "bpchar") == 0);
}

/* A MySQL column type for a source column. From a MySQL source the declared type is kept. */
static void mysql_type(const Sink *k, const Column *c, Sql *q) {
        /* a PostgreSQL domain maps as its base type */
        const char *tn = c->base_type ? c->base_type : c->type_name ? c->type_name : "";
        unsigned n = 0;
        if (k->pipe && k->pipe->source && k->pipe->source->type && strcmp(k->pipe->source->type, "mysql") == 0 &&
            tn[0]) {
                sql_add(q, tn); /* from information_schema COLUMN_TYPE: a type, not data */
                return;
        }
        if (blank_padded(c)) {
                /* PostgreSQL char(n): MySQL's CHAR(n) drops the padding too, and compares with it
                 * ignored; past CHAR's 255 the values are stored without it (make_param) */
                char b[32];
                if (sscanf(tn, "character(%u)", &n) == 1 && n >= 1 && n <= 255) {
                        snprintf(b, sizeof(b), "CHAR(%u)", n);
                        sql_add(q, b);
                } else {
                        sql_add(q, c->key ? "VARCHAR(768)" : "LONGTEXT");
                }
                return;
        }
        if (c->cls == TYPE_TIME && strstr(tn, "with time zone")) {
                /* PostgreSQL timetz: MySQL has no time with an offset; its text is kept whole
                 * ("04:05:06.789+02", at most 24 characters) rather than shifted to UTC, which
                 * would lose the offset and wrap past midnight */
                sql_add(q, "VARCHAR(32)");
                return;
        }
        switch (c->cls) {
        case TYPE_INTEGER:
                sql_add(q, strncmp(tn, "smallint", 8) == 0  ? "SMALLINT"
                           : strncmp(tn, "integer", 7) == 0 ? "INT"
                                                            : "BIGINT");
                break;
        case TYPE_NUMERIC: {
                /* PostgreSQL's scale may be negative (numeric(3,-6): multiples of 10^6 below 10^9)
                 * or above the precision (numeric(3,5): below 10^-2): DECIMAL(p - s, 0) and
                 * DECIMAL(s, s) hold those exactly */
                int p = 0, s = 0, n = 0;
                if (sscanf(tn, "numeric(%d,%d)%n", &p, &s, &n) == 2 && tn[n] == '\0' && p >= 1 && p <= 1000) {
                        int mp = s < 0 ? p - s : s > p ? s : p, ms = s < 0 ? 0 : s;
                        if (mp <= 65 && ms <= 30) {
                                char b[32];
                                snprintf(b, sizeof(b), "DECIMAL(%d,%d)", mp, ms);
                                sql_add(q, b);
                                break;
                        }
                }
                sql_add(q, "DECIMAL(65,30)");
                break;
        }
        case TYPE_FLOAT: sql_add(q, strcmp(tn, "real") == 0 ? "FLOAT" : "DOUBLE"); break;
        case TYPE_BOOLEAN: sql_add(q, "TINYINT(1)"); break;
        case TYPE_BYTES: sql_add(q, c->key ? "VARBINARY(3072)" : "LONGBLOB"); break;
        case TYPE_DATE: sql_add(q, "DATE"); break;
        case TYPE_TIME: sql_add(q, "TIME(6)"); break;
        case TYPE_TIMESTAMP:
        case TYPE_TIMESTAMPTZ: /* stored as UTC */ sql_add(q, "DATETIME(6)"); break;
        case TYPE_JSON: sql_add(q, "JSON"); break;
        case TYPE_UUID: sql_add(q, "CHAR(36)"); break;
        default: sql_add(q, c->key ? "VARCHAR(768)" : "LONGTEXT"); break;
        }
}

typedef struct {
        const Table *t;
        bool *present; /* t->ncols: the target has the column */
} ColCheck;

static int colcheck_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ColCheck *c = ud;
        (void)lens;
        if (ncols < 1 || !cells[0])
                return 0;
        for (int i = 0; i < c->t->ncols; i++)
                if (strcasecmp(c->t->cols[i].name, cells[0]) == 0) /* MySQL column names ignore case */
                        c->present[i] = true;
        return 0;
}

/* A source table that gained columns (ALTER TABLE ADD COLUMN while streaming) against the target.
 * With create_tables the sink adds them, as it creates tables. MySQL's DDL commits implicitly and
 * waits for the open batch's locks, so the batch is rolled back first, the columns added on a
 * connection of their own, and a retriable error replays the batch from the checkpoint, now
 * against the wider table. Without create_tables the pipeline stops with the columns to add. */
static int ensure_columns(Sink *k, TargetTable *tt, const Table *t, CdcError *err) {
        ColCheck c = {.t = t, .present = calloc((size_t)(t->ncols > 0 ? t->ncols : 1), sizeof(bool))};
        const char *params[2] = {tt->schema, tt->name};
        Sql q = {0};
        char missing[512] = "";
        size_t ml = 0;
        int r, nadd = 0;
        if (!c.present)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        r = mysql_conn_query(k->m,
                             "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND "
                             "TABLE_NAME = ?",
                             params, 2, colcheck_row, &c, err);
        if (r < 0)
                goto out;
        sql_add(&q, "ALTER TABLE ");
        sql_table(&q, tt->schema, tt->name);
        for (int i = 0; i < t->ncols; i++) {
                if (c.present[i])
                        continue;
                int n = snprintf(missing + ml, sizeof(missing) - ml, "%s%s", ml ? ", " : "", t->cols[i].name);
                if (n > 0 && ml + (size_t)n < sizeof(missing))
                        ml += (size_t)n;
                sql_add(&q, nadd++ ? ", ADD COLUMN " : " ADD COLUMN ");
                sql_ident(&q, t->cols[i].name);
                sql_add(&q, " ");
                mysql_type(k, &t->cols[i], &q);
        }
        if (!nadd) {
                table_unref(tt->shape);
                tt->shape = table_ref((Table *)t);
                tt->reorder_known = false;
                r = 0;
                goto out;
        }
        if (!k->conn->create_tables) {
                r = cdc_error(err, -EPROTO, false, "schema",
                              "%s source table %s.%s has column(s) %s that sink table `%s`.`%s` lacks: add them "
                              "(ALTER TABLE ... ADD COLUMN) and restart, or set create_tables = yes on connector '%s'",
                              k->ctx, t->schema, t->name, missing, tt->schema, tt->name, k->conn->name);
                goto out;
        }
        if (q.oom) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        if (k->in_txn) {
                mysql_rollback(k->m);
                k->in_txn = false;
        }
        MYSQL *ddl = NULL;
        r = mysql_conn_open(k->conn, NULL, &ddl, err);
        if (r >= 0 && (mysql_query(ddl, "SET SESSION lock_wait_timeout = 30") || mysql_query(ddl, q.s)))
                r = cdc_error(err, -EIO, false, "schema", "%s cannot add column(s) %s to `%s`.`%s`: %s", k->ctx,
                              missing, tt->schema, tt->name, mysql_error(ddl));
        if (ddl)
                mysql_close(ddl);
        if (r < 0)
                goto out;
        log_info(k->ctx, "added column(s) %s to `%s`.`%s` (new in source table %s.%s)", missing, tt->schema, tt->name,
                 t->schema, t->name);
        r = cdc_error(err, -EAGAIN, true, "schema",
                      "%s added column(s) %s to `%s`.`%s`: the batch is applied again against the new columns", k->ctx,
                      missing, tt->schema, tt->name);
out:
        free(c.present);
        free(q.s);
        return r;
}

/* CREATE TABLE for source shape t. DDL commits implicitly in MySQL: it runs on a connection of
 * its own, so the open batch stays one transaction. A PostgreSQL source's generated columns are
 * left out (their expressions are PostgreSQL's; the source does not send their values), with a
 * warning naming them. */
static int create_target(Sink *k, const Table *t, const char *schema, const char *name, CdcError *err) {
        Sql q = {0};
        int r;
        sql_add(&q, "CREATE TABLE IF NOT EXISTS ");
        sql_table(&q, schema, name);
        sql_add(&q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        sql_add(&q, ", ");
                sql_ident(&q, t->cols[i].name);
                sql_add(&q, " ");
                mysql_type(k, &t->cols[i], &q);
                if (t->cols[i].key)
                        sql_add(&q, " NOT NULL");
        }
        if (table_nkeys(t) > 0) {
                sql_add(&q, ", PRIMARY KEY (");
                bool first = true;
                for (int i = 0; i < t->ncols; i++)
                        if (t->cols[i].key) {
                                if (!first)
                                        sql_add(&q, ", ");
                                first = false;
                                sql_ident(&q, t->cols[i].name);
                        }
                sql_add(&q, ")");
        }
        sql_add(&q, ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        if (q.oom) {
                free(q.s);
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        }
        MYSQL *ddl = NULL;
        r = mysql_conn_open(k->conn, NULL, &ddl, err);
        if (r >= 0 && mysql_query(ddl, q.s))
                r = cdc_error(err, -EIO, false, "schema", "%s cannot create `%s`.`%s`: %s", k->ctx, schema, name,
                              mysql_error(ddl));
        if (ddl)
                mysql_close(ddl);
        free(q.s);
        if (r < 0)
                return r;
        for (int g = 0; g < t->ngen; g++)
                log_warn(k->ctx,
                         "created `%s`.`%s` without generated column %s of source table %s.%s (GENERATED ALWAYS AS "
                         "(%s) STORED in PostgreSQL): MySQL cannot compute that expression, and the source does not "
                         "send its values — add it by hand as a MySQL generated column if you need it",
                         schema, name, t->gen[g].name, t->schema, t->name, t->gen[g].expr);
        return 0;
}

static int ensure_table(Sink *k, const Table *t, const char *schema, const char *name, CdcError *err) {
        for (TargetTable *tt = k->known; tt; tt = tt->next)
                if (strcmp(tt->schema, schema) == 0 && strcmp(tt->name, name) == 0)
                        return tt->shape == t ? 0 : ensure_columns(k, tt, t, err);
        const char *params[2] = {schema, name};
        int r = mysql_conn_query(k->m,
                                 "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                                 params, 2, NULL, NULL, err);
        if (r < 0)
                return r;
        if (r == 0) {
                if (!k->conn->create_tables)
                        return cdc_error(err, -ENOENT, true, "schema",
                                         "%s table `%s`.`%s` does not exist in the sink: create it, or set "
                                         "create_tables = yes on connector '%s'",
                                         k->ctx, schema, name, k->conn->name);
                r = create_target(k, t, schema, name, err);
                if (r < 0)
                        return r;
        }
        TargetTable *tt = calloc(1, sizeof(*tt));
        if (!tt)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        tt->schema = strdup(schema);
        tt->name = strdup(name);
        tt->next = k->known;
        k->known = tt;
        if (!tt->schema || !tt->name)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        return ensure_columns(k, tt, t, err);
}

/* ---- apply ---- */

static int make_param(Sink *k, const Table *t, int i, const Value *v, Param *p, CdcError *err) {
        *p = (Param){0};
        if (v->kind != VALUE_TEXT) {
                p->null = true;
                return 0;
        }
        int r = mysql_sink_convert(t->cols[i].cls, v->data, v->len, &p->data, &p->len);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, "internal", "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, "data",
                                 "%s value '%.64s' of %s.%s column %s (%s) cannot be stored in MySQL%s", k->ctx,
                                 v->data, t->schema, t->name, t->cols[i].name, type_class_name(t->cols[i].cls),
                                 r == -ERANGE ? ": out of range (NaN, Infinity, beyond DECIMAL(65,30) or years "
                                                "1000..9999)"
                                              : "");
        p->binary = t->cols[i].cls == TYPE_BYTES;
        if (blank_padded(&t->cols[i]))
                while (p->len > 0 && p->data[p->len - 1] == ' ')
                        p->data[--p->len] = '\0';
        return 0;
}

/* The placeholder of a value of column c. A BIT value comes as a bit string ("0101", from a
 * MySQL source): bound as a string it would be stored as its characters' bytes, so it goes
 * through CONV to the number it spells. */
static void sql_placeholder(Sql *q, const Column *c) {
        if (c->type_name && strncmp(c->type_name, "bit(", 4) == 0 && c->cls == TYPE_TEXT)
                sql_add(q, "CAST(CONV(?, 2, 10) AS UNSIGNED)");
        else
                sql_add(q, "?");
}

/* WHERE on the key (all columns when the table has none; NULL-safe either way). */
static int add_where(Sink *k, const Table *t, const Value *img, Sql *q, Param *p, int *np, CdcError *err) {
        bool keyed = table_nkeys(t) > 0, first = true;
        sql_add(q, " WHERE ");
        for (int i = 0; i < t->ncols; i++) {
                if ((keyed && !t->cols[i].key) || img[i].kind == VALUE_UNCHANGED)
                        continue;
                if (!first)
                        sql_add(q, " AND ");
                first = false;
                sql_ident(q, t->cols[i].name);
                sql_add(q, " <=> ");
                sql_placeholder(q, &t->cols[i]);
                int r = make_param(k, t, i, &img[i], &p[(*np)++], err);
                if (r < 0)
                        return r;
        }
        if (!keyed)
                sql_add(q, " LIMIT 1");
        return 0;
}

/* Appends n bytes of s to out (used of cap, one byte kept for the NUL); false when they do not fit. */
static bool text_put(char *out, size_t cap, size_t *used, const char *s, size_t n) {
        if (*used + n + 1 > cap)
                return false;
        memcpy(out + *used, s, n);
        *used += n;
        out[*used] = '\0';
        return true;
}

/* How many of the first max bytes of v to quote: cut before a UTF-8 continuation byte. */
static size_t text_cut(const char *v, size_t max) {
        size_t n = strnlen(v, max);
        if (v[n] != '\0')
                while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
                        n--;
        return n;
}

/* A value the sink cannot store stops the pipeline: the operator needs the row, so the message
 * names it as the source has it: "row key (id)=(42)". A table without key would have its whole
 * row as key (about a kilobyte in a message): its place in the source transaction (row, from 1)
 * and its first columns find it, "row 3 of its source transaction, no key: a=1, b=one, c=abc…,
 * and 9 more columns". Built for every change (an error later names its row), so by hand rather
 * than with printf. */
static void key_text(const Table *t, const Value *img, uint32_t row, char *out, size_t cap) {
        char names[256] = "", vals[256] = "";
        size_t nl = 0, vl = 0, ol = 0;
        bool keyed = table_nkeys(t) > 0;
        out[0] = '\0';
        if (!img)
                return;
        if (!keyed) {
                char num[64];
                int shown = 0, more = 0;
                snprintf(num, sizeof(num), "row %" PRIu32 " of its source transaction, no key:", row);
                text_put(out, cap, &ol, num, strlen(num));
                for (int i = 0; i < t->ncols; i++) {
                        if (img[i].kind == VALUE_UNCHANGED)
                                continue;
                        if (shown == ROW_COLS_SHOWN) {
                                more++;
                                continue;
                        }
                        const char *v = img[i].kind == VALUE_TEXT ? img[i].data : "NULL";
                        size_t vn = text_cut(v, ROW_VALUE_SHOWN);
                        if (!text_put(out, cap, &ol, shown ? ", " : " ", shown ? 2 : 1) ||
                            !text_put(out, cap, &ol, t->cols[i].name, strlen(t->cols[i].name)) ||
                            !text_put(out, cap, &ol, "=", 1) || !text_put(out, cap, &ol, v, vn) ||
                            (v[vn] && !text_put(out, cap, &ol, "…", strlen("…"))))
                                return;
                        shown++;
                }
                if (more) {
                        snprintf(num, sizeof(num), ", and %d more column%s", more, more > 1 ? "s" : "");
                        text_put(out, cap, &ol, num, strlen(num));
                }
                return;
        }
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                const char *v = img[i].kind == VALUE_TEXT ? img[i].data : "NULL";
                size_t n = strlen(t->cols[i].name), vn = strnlen(v, 40);
                size_t nl0 = nl, vl0 = vl;
                if ((nl && !text_put(names, sizeof(names), &nl, ",", 1)) ||
                    !text_put(names, sizeof(names), &nl, t->cols[i].name, n) ||
                    (vl && !text_put(vals, sizeof(vals), &vl, ",", 1)) || !text_put(vals, sizeof(vals), &vl, v, vn)) {
                        names[nl0] = '\0';
                        vals[vl0] = '\0';
                        nl = nl0, vl = vl0;
                        break;
                }
        }
        if (!text_put(out, cap, &ol, "row key (", 9) || !text_put(out, cap, &ol, names, nl) ||
            !text_put(out, cap, &ol, ")=(", 3) || !text_put(out, cap, &ol, vals, vl) ||
            !text_put(out, cap, &ol, ")", 1))
                out[cap - 1] = '\0';
}

static void add_key_to_message(const Table *t, const Value *img, uint32_t row, CdcError *err) {
        char key[600];
        if (!img)
                return;
        key_text(t, img, row, key, sizeof(key));
        size_t ml = strlen(err->message);
        snprintf(err->message + ml, sizeof(err->message) - ml, " (%s)", key);
}

/* True when t's target is known with this very shape: ensure_table will send nothing. */
static bool table_ready(const Sink *k, const Table *t, const char *schema, const char *name) {
        for (const TargetTable *tt = k->known; tt; tt = tt->next)
                if (strcmp(tt->schema, schema) == 0 && strcmp(tt->name, name) == 0)
                        return tt->shape == t;
        return false;
}

typedef struct {
        long other; /* unique indexes besides the primary key, foreign keys, triggers */
        char *pk;   /* owned: primary key columns, '\n'-separated */
        bool got;
} ReorderRow;

static int reorder_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ReorderRow *x = ud;
        char *end;
        (void)lens;
        if (ncols < 2 || !cells[0] || x->got)
                return -EBADMSG;
        errno = 0;
        x->other = strtol(cells[0], &end, 10);
        if (errno || *end)
                return -EBADMSG;
        x->pk = strdup(cells[1] ? cells[1] : "");
        if (!x->pk)
                return -ENOMEM;
        x->got = true;
        return 0;
}

/* May changes of t into tt be reordered (see RUNS_MAX)? One look at the target's indexes,
 * foreign keys and triggers per shape. */
static int check_reorder(Sink *k, TargetTable *tt, const Table *t, CdcError *err) {
        const char *ps[10] = {tt->schema, tt->name,   tt->schema, tt->name,   tt->schema,
                              tt->name,   tt->schema, tt->name,   tt->schema, tt->name};
        ReorderRow x = {0};
        int r = mysql_conn_query(
                k->m,
                "SELECT (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "
                "AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY') + (SELECT COUNT(*) FROM "
                "information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND ((TABLE_SCHEMA = ? "
                "AND TABLE_NAME = ?) OR (REFERENCED_TABLE_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?))) + (SELECT "
                "COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?), "
                "(SELECT GROUP_CONCAT(COLUMN_NAME SEPARATOR '\\n') FROM information_schema.STATISTICS WHERE "
                "TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY')",
                ps, 10, reorder_row, &x, err);
        if (r < 0)
                goto out;
        /* the primary key must be exactly the source's key (MySQL column names ignore case) */
        bool ok = x.got && x.other == 0 && table_nkeys(t) > 0;
        int npk = 0;
        for (char *name = x.pk, *next; ok && name && *name; name = next) {
                next = strchr(name, '\n');
                if (next)
                        *next++ = '\0';
                bool found = false;
                for (int i = 0; i < t->ncols && !found; i++)
                        found = t->cols[i].key && strcasecmp(t->cols[i].name, name) == 0;
                ok = found;
                npk++;
        }
        /* Keys are compared by their source text: only types whose text is canonical qualify (a
         * case-insensitive collation makes 'A' and 'a' one row; DECIMAL makes 1.0 and 1.00 one). */
        for (int i = 0; i < t->ncols && ok; i++)
                if (t->cols[i].key)
                        ok = t->cols[i].cls == TYPE_INTEGER || t->cols[i].cls == TYPE_UUID;
        tt->reorder = ok && npk == table_nkeys(t);
        tt->reorder_known = true;
        r = 0;
out:
        free(x.pk);
        return r;
}

static int count_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)lens;
        if (ncols >= 1 && cells[0])
                *(unsigned long long *)ud = strtoull(cells[0], NULL, 10);
        return 0;
}

/* The first copy of a table under snapshot = initial (TRUNCATE_CHECK_EMPTY): the copy goes only
 * into an empty table; rows there stop it (counted up to a bound, so a huge table costs little). */
#define CHECK_EMPTY_COUNT_MAX 1000000ULL
static int check_empty(Sink *k, const char *schema, const char *name, CdcError *err) {
        Sql q = {0};
        unsigned long long n = 0;
        char lim[32];
        sql_add(&q, "SELECT COUNT(*) FROM (SELECT 1 FROM ");
        sql_table(&q, schema, name);
        snprintf(lim, sizeof(lim), " LIMIT %llu) t", CHECK_EMPTY_COUNT_MAX + 1);
        sql_add(&q, lim);
        if (q.oom) {
                free(q.s);
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        }
        /* On a connection of its own: the batch's read view may be older than a table that
         * create_tables just made (on another connection), which InnoDB refuses to read (1412). */
        MYSQL *c = NULL;
        int r = mysql_conn_open(k->conn, NULL, &c, err);
        if (r >= 0)
                r = mysql_conn_query(c, q.s, NULL, 0, count_row, &n, err);
        if (c)
                mysql_close(c);
        free(q.s);
        if (r < 0)
                return r;
        if (n > 0) {
                char table[600], msg[1024];
                snprintf(table, sizeof(table), "%s.%s", schema, name);
                conf_copy_refusal(k->pipe, table, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                return cdc_error(err, -EEXIST, false, "conf", "%s %s", k->ctx, msg);
        }
        return 0;
}

static void seen_clear(Sink *k) {
        while (k->seen) {
                RelSeen *r = k->seen;
                k->seen = r->next;
                free(r->schema);
                free(r->name);
                free(r);
        }
}

typedef struct {
        RelSeen *seen;
        bool found;
} RelRow;

static int rel_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        RelRow *rr = ud;
        (void)lens;
        if (ncols < 3 || !cells[0] || !cells[2])
                return -EBADMSG;
        rr->seen->rel_id = (uint32_t)strtoul(cells[0], NULL, 10);
        rr->seen->has_prev = cells[1] != NULL;
        rr->seen->prev = cells[1] ? (uint32_t)strtoul(cells[1], NULL, 10) : 0;
        rr->seen->ready = strcmp(cells[2], "0") != 0;
        rr->found = true;
        return 0;
}

/* Whether source table t is still the relation this pipeline last saw under its name, as
 * `cdcsync`.`relations` records it: a PostgreSQL table dropped and created again is a new table,
 * whose rows are never merged into the old one's.
 * - With create_tables the target is dropped and created anew from the new table's columns. That
 *   is DDL (it commits), so the batch is rolled back first, the new relation recorded with the
 *   DDL, and a retriable error applies the batch again.
 * - Without, a target that is empty takes the new relation; one that holds rows stops the
 *   pipeline until the operator empties it (the new relation is recorded at once, as not ready,
 *   the batch rolled back for that).
 * - In the initial copy the new relation is just recorded: the copy's snapshot mode decides what
 *   becomes of the rows the target holds, as for any table.
 * Changes of the relation before the current one (*ret_skip) are those of a dropped table: a
 * batch applied again after the new one was recorded holds them, and they no longer matter. */
static int check_relation(Sink *k, const Table *t, const TxnInfo *txn, const char *schema, const char *name,
                          bool *ret_skip, CdcError *err) {
        char relid[16], prev[16];
        const char *params[6] = {k->pipe->name, t->schema, t->name, relid, NULL, "1"};
        static const char record[] = "INSERT INTO `cdcsync`.`relations` (pipeline, src_schema, src_name, rel_id, "
                                     "prev_rel_id, ready, updated_at) VALUES (?, ?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE "
                                     "KEY UPDATE rel_id = VALUES(rel_id), prev_rel_id = VALUES(prev_rel_id), "
                                     "ready = VALUES(ready), updated_at = VALUES(updated_at)";
        RelSeen *rs = k->seen;
        int r;

        while (rs && (strcmp(rs->schema, t->schema) != 0 || strcmp(rs->name, t->name) != 0))
                rs = rs->next;
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        if (!rs) {
                rs = calloc(1, sizeof(*rs));
                if (!rs || !(rs->schema = strdup(t->schema)) || !(rs->name = strdup(t->name))) {
                        if (rs)
                                free(rs->schema);
                        free(rs);
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                }
                rs->next = k->seen;
                k->seen = rs;
                RelRow rr = {.seen = rs};
                /* Read on a connection of its own: a read in the batch's transaction would open its
                 * read view, and a table created after it (create_tables) could not be written in
                 * it (error 1412); a locking read would take gap locks that deadlock pipelines
                 * inserting their first rows. Only this pipeline writes its rows, and what this
                 * transaction wrote is in k->seen. */
                if (!k->aux && (r = mysql_conn_open(k->conn, NULL, &k->aux, err)) < 0)
                        return r;
                r = mysql_conn_query(k->aux,
                                     "SELECT rel_id, prev_rel_id, ready FROM `cdcsync`.`relations` WHERE pipeline = ? "
                                     "AND src_schema = ? AND src_name = ?",
                                     params, 3, rel_row, &rr, err);
                if (r < 0) {
                        mysql_close(k->aux);
                        k->aux = NULL;
                        return r;
                }
                if (!rr.found) { /* first seen */
                        r = mysql_conn_query(k->m, record, params, 6, NULL, NULL, err);
                        if (r < 0)
                                return r;
                        rs->rel_id = t->rel_id;
                        rs->ready = true;
                        return 0;
                }
        }
        if (rs->rel_id == t->rel_id && rs->ready)
                return 0;
        if (rs->has_prev && rs->prev == t->rel_id && rs->rel_id != t->rel_id) {
                *ret_skip = true;
                return 0;
        }
        /* A new relation: the source table was dropped and created again. */
        uint32_t before = rs->rel_id != t->rel_id ? rs->rel_id : rs->prev;
        snprintf(prev, sizeof(prev), "%u", before);
        params[4] = prev;
        Sql q = {0};
        if (k->conn->create_tables && !txn->snapshot) {
                pending_clear(k);
                mysql_rollback(k->m);
                k->in_txn = false;
                MYSQL *ddl = NULL;
                sql_add(&q, "DROP TABLE IF EXISTS ");
                sql_table(&q, schema, name);
                if (q.oom)
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                r = mysql_conn_open(k->conn, NULL, &ddl, err);
                if (r >= 0 && (mysql_query(ddl, "SET SESSION lock_wait_timeout = 30") || mysql_query(ddl, q.s)))
                        r = cdc_error(err, -EIO, true, "schema",
                                      "%s source table %s.%s was dropped and created again (relation %u, before %u), "
                                      "and target table `%s`.`%s` cannot be dropped to be created anew: %s",
                                      k->ctx, t->schema, t->name, t->rel_id, before, schema, name, mysql_error(ddl));
                free(q.s);
                for (TargetTable **pp = &k->known; r >= 0 && *pp; pp = &(*pp)->next)
                        if (strcmp((*pp)->schema, schema) == 0 && strcmp((*pp)->name, name) == 0) {
                                TargetTable *tt = *pp;
                                *pp = tt->next;
                                table_unref(tt->shape);
                                free(tt->schema);
                                free(tt->name);
                                free(tt);
                                break;
                        }
                if (r >= 0)
                        r = create_target(k, t, schema, name, err);
                if (r >= 0 && (r = mysql_conn_query(ddl, record, params, 6, NULL, NULL, err)) >= 0)
                        mysql_commit(ddl);
                if (ddl)
                        mysql_close(ddl);
                seen_clear(k);
                if (r < 0)
                        return r;
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): dropped "
                         "target table `%s`.`%s` with the old table's rows and created it anew from the new "
                         "table's columns",
                         t->schema, t->name, t->rel_id, before, schema, name);
                return cdc_error(err, -EAGAIN, true, "schema",
                                 "%s re-created `%s`.`%s` for the new source table %s.%s: the batch is applied "
                                 "again",
                                 k->ctx, schema, name, t->schema, t->name);
        }
        if (!txn->snapshot) {
                r = pending_flush(k, err); /* rows held for it count */
                if (r < 0)
                        return r;
                sql_add(&q, "SELECT 1 FROM ");
                sql_table(&q, schema, name);
                sql_add(&q, " LIMIT 1 LOCK IN SHARE MODE"); /* locking: no read view (see above) */
                if (q.oom)
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                r = mysql_conn_query(k->m, q.s, NULL, 0, NULL, NULL, err);
                free(q.s);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (rs->rel_id != t->rel_id) {
                                /* recorded now, outside the batch: rolled back for that (it may hold the row) */
                                CdcError e;
                                pending_clear(k);
                                mysql_rollback(k->m);
                                k->in_txn = false;
                                params[5] = "0";
                                if (mysql_conn_query(k->m, record, params, 6, NULL, NULL, &e) < 0 || mysql_commit(k->m))
                                        log_warn(k->ctx, "cannot record the new relation of %s.%s: %s", t->schema,
                                                 t->name, mysql_error(k->m));
                                seen_clear(k);
                        }
                        return cdc_error(err, -EEXIST, true, "schema",
                                         "%s source table %s.%s was dropped and created again (relation %u, before "
                                         "%u): its rows would be merged into target table `%s`.`%s`, which holds "
                                         "the old table's rows — empty it (DELETE, TRUNCATE) and give it the new "
                                         "table's columns, or set create_tables = yes on connector '%s' to have it "
                                         "re-created; the pipeline retries",
                                         k->ctx, t->schema, t->name, t->rel_id, before, schema, name, k->conn->name);
                }
                log_warn(k->ctx,
                         "source table %s.%s was dropped and created again (relation %u, before %u): target table "
                         "`%s`.`%s` is empty and takes the new table's rows",
                         t->schema, t->name, t->rel_id, before, schema, name);
        }
        r = mysql_conn_query(k->m, record, params, 6, NULL, NULL, err);
        if (r < 0)
                return r;
        rs->prev = before;
        rs->has_prev = true;
        rs->rel_id = t->rel_id;
        rs->ready = true;
        return 0;
}

static int sink_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        const Table *t = c->table;
        char schema[256], name[256];
        Sql q = {.s = k->qbuf, .cap = k->qcap};
        int np = 0, r;
        /* CHANGE_IDEMPOTENT (change.h): at-least-once source, a repeat of this change must be
         * harmless, so a missing row is not an error and a whole-row update is an upsert. */
        bool idem = (c->flags & CHANGE_IDEMPOTENT) && c->op != CHANGE_TRUNCATE;
        bool upsert = c->op == CHANGE_INSERT || (idem && c->op == CHANGE_UPDATE && c->after && table_nkeys(t) > 0 &&
                                                 change_whole_row_same_key(c));
        bool expect = !idem && (c->op == CHANGE_UPDATE || c->op == CHANGE_DELETE);
        char *rk[2] = {NULL, NULL};
        size_t rkl[2] = {0, 0};
        int nrk = 0;
        /* a source transaction's changes all carry the same xid and commit position */
        if (txn->xid != k->txn_xid || position_cmp(txn->commit_pos, k->txn_pos) != 0 || k->txn_row == 0) {
                k->txn_xid = txn->xid;
                k->txn_pos = txn->commit_pos;
                k->txn_row = 0;
        }
        k->txn_row++;
        Param *p = calloc((size_t)t->ncols * 2 + 1, sizeof(Param));
        if (!p)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        if ((c->op == CHANGE_INSERT || c->op == CHANGE_UPDATE) && !c->after) {
                r = cdc_error(err, -EINVAL, false, "internal", "%s malformed change of %s.%s: no new row", k->ctx,
                              t->schema, t->name);
                goto out_sent; /* not a value error: no key to add */
        }
        if ((c->op == CHANGE_DELETE || (c->op == CHANGE_UPDATE && !upsert)) && !c->before && !c->after) {
                r = cdc_error(err, -EINVAL, false, "internal", "%s malformed change of %s.%s: no key", k->ctx,
                              t->schema, t->name);
                goto out_sent; /* not a value error: no key to add */
        }
        if (map_table(k, t, schema, sizeof(schema), name, sizeof(name)) < 0) {
                r = cdc_error(err, -ENAMETOOLONG, false, "conf", "%s table name %s.%s too long", k->ctx, t->schema,
                              t->name);
                goto out;
        }
        if (t->ncols == 0) {
                r = cdc_error(err, -EINVAL, false, "schema",
                              "%s source table %s.%s has no column, and a MySQL/MariaDB table cannot be without one "
                              "— leave it out of tables of pipeline %s (name the tables instead of *), or give it a "
                              "column at the source",
                              k->ctx, t->schema, t->name, k->pipe ? k->pipe->name : "-");
                goto out_sent;
        }
        if (k->rels && strcmp(t->schema, "cdcsync") != 0) {
                bool skip = false;
                r = check_relation(k, t, txn, schema, name, &skip, err);
                if (r < 0 || skip)
                        goto out_sent;
        }
        /* the checks and DDL of ensure_table run after what is pending (DDL commits implicitly) */
        if (!table_ready(k, t, schema, name)) {
                r = pending_flush(k, err);
                if (r < 0)
                        goto out;
        }
        r = ensure_table(k, t, schema, name, err);
        if (r < 0)
                goto out;
        TargetTable *tt = k->known;
        while (tt && (strcmp(tt->schema, schema) != 0 || strcmp(tt->name, name) != 0))
                tt = tt->next;
        if (tt && tt->shape == t && !tt->reorder_known) {
                r = check_reorder(k, tt, t, err);
                if (r < 0)
                        goto out;
        }
        /* the rows this change touches, when it may be reordered */
        if (tt && tt->shape == t && tt->reorder && c->op != CHANGE_TRUNCATE) {
                if (c->op != CHANGE_INSERT)
                        rk[nrk] = row_key(schema, name, t, c->before ? c->before : c->after, &rkl[nrk]), nrk++;
                if (c->op != CHANGE_DELETE)
                        rk[nrk] = row_key(schema, name, t, c->after, &rkl[nrk]), nrk++;
        }
        if (c->op == CHANGE_TRUNCATE && (c->flags & TRUNCATE_CHECK_EMPTY)) {
                r = pending_flush(k, err);
                if (r == 0)
                        r = check_empty(k, schema, name, err);
                goto out;
        }
        switch (upsert ? CHANGE_INSERT : c->op) {
        case CHANGE_INSERT: {
                /* idempotent: a replayed insert overwrites the row with the same values (so is an
                 * update of an at-least-once source that carries the whole row) */
                sql_add(&q, "INSERT INTO ");
                sql_table(&q, schema, name);
                sql_add(&q, " (");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                sql_add(&q, ", ");
                        sql_ident(&q, t->cols[i].name);
                }
                sql_add(&q, ") VALUES (");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                sql_add(&q, ", ");
                        sql_placeholder(&q, &t->cols[i]);
                        r = make_param(k, t, i, &c->after[i], &p[np++], err);
                        if (r < 0)
                                goto out;
                }
                sql_add(&q, ") ON DUPLICATE KEY UPDATE ");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                sql_add(&q, ", ");
                        sql_ident(&q, t->cols[i].name);
                        sql_add(&q, " = VALUES(");
                        sql_ident(&q, t->cols[i].name);
                        sql_add(&q, ")");
                }
                break;
        }
        case CHANGE_UPDATE: {
                sql_add(&q, "UPDATE ");
                sql_table(&q, schema, name);
                sql_add(&q, " SET ");
                bool first = true;
                for (int i = 0; i < t->ncols; i++) {
                        if (c->after[i].kind == VALUE_UNCHANGED)
                                continue;
                        if (!first)
                                sql_add(&q, ", ");
                        first = false;
                        sql_ident(&q, t->cols[i].name);
                        sql_add(&q, " = ");
                        sql_placeholder(&q, &t->cols[i]);
                        r = make_param(k, t, i, &c->after[i], &p[np++], err);
                        if (r < 0)
                                goto out;
                }
                /* the old key finds the row, so key updates work */
                r = add_where(k, t, c->before ? c->before : c->after, &q, p, &np, err);
                if (r < 0)
                        goto out;
                break;
        }
        case CHANGE_DELETE:
                sql_add(&q, "DELETE FROM ");
                sql_table(&q, schema, name);
                r = add_where(k, t, c->before, &q, p, &np, err);
                if (r < 0)
                        goto out;
                break;
        case CHANGE_TRUNCATE:
                /* Not TRUNCATE TABLE: it is DDL in MySQL and commits the open transaction
                 * implicitly, which would break "a batch is one transaction with its checkpoint". */
                sql_add(&q, "DELETE FROM ");
                sql_table(&q, schema, name);
                break;
        }
        if (q.oom) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        const char *opname = c->op == CHANGE_INSERT ? "insert" : c->op == CHANGE_UPDATE ? "update" : "delete";
        char key[600];
        key_text(t, c->before ? c->before : c->after, k->txn_row, key, sizeof(key));
        /* the multi-row form this change qualifies for (see MULTI_NONE) */
        int mkind = MULTI_NONE;
        if (tt && tt->shape == t && tt->reorder && table_nkeys(t) == 1) {
                if (upsert || c->op == CHANGE_INSERT)
                        mkind = MULTI_INSERT;
                else if (c->op == CHANGE_DELETE && np == 1 && !p[0].null)
                        mkind = MULTI_DELETE;
                else if (c->op == CHANGE_UPDATE && expect && np == t->ncols + 1 && !p[t->ncols].null &&
                         change_whole_row_same_key(c))
                        mkind = MULTI_UPDATE;
        }
        r = run_add(k, q.s, p, np, expect, opname, strdup(key), rk, rkl, nrk, t, schema, name, mkind, err);
        nrk = 0; /* run_add took them */
        if (r < 0)
                goto out_sent; /* a flushed run's error: its message names its own row */
out:
        if (r < 0 && strcmp(err->kind, "data") == 0)
                add_key_to_message(t, c->before ? c->before : c->after, k->txn_row, err);
out_sent:
        for (int i = 0; i < nrk; i++)
                free(rk[i]);
        params_free(p, t->ncols * 2 + 1);
        free(p);
        k->qbuf = q.s; /* kept for the next change */
        k->qcap = q.cap;
        return r;
}

/* ---- SinkOps ---- */

static Sink *sink_free(Sink *k) {
        if (!k)
                return NULL;
        pending_clear(k);
        seen_clear(k);
        for (int i = 0; i < RUNS_MAX; i++)
                run_free(&k->runs[i]);
        keys_free(&k->keys);
        cache_free(&k->mstmts);
        free(k->qbuf);
        cache_free(&k->stmts);
        while (k->known) {
                TargetTable *t = k->known;
                k->known = t->next;
                table_unref(t->shape);
                free(t->schema);
                free(t->name);
                free(t);
        }
        if (k->m)
                mysql_close(k->m);
        if (k->aux)
                mysql_close(k->aux);
        free(k);
        return NULL;
}

static int sink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        Sink *k = calloc(1, sizeof(*k));
        char sql[128];
        int r;
        if (!k)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        k->conn = conn;
        k->pipe = pipe;
        snprintf(k->ctx, sizeof(k->ctx), "[pipeline=%s sink=%s]", pipe && pipe->name ? pipe->name : "-",
                 conn->name ? conn->name : "-");
        /* CLIENT_FOUND_ROWS: an UPDATE reports the rows it found, not the rows it changed, so an
         * update that writes the values a row already has still shows that the row is there */
        r = mysql_conn_open_flags(conn, NULL, CLIENT_FOUND_ROWS, &k->m, err);
        if (r < 0)
                goto out;
        /* Without a server_id (one-way pipelines only: conf_load demands it for a bidirectional
         * sink) the writes are unmarked: they carry the server's own server_id, like an
         * application's, and any binlog reader of this server takes them for one. */
        if (conn->server_id == 0 && pipe && pipe->bidirectional) {
                r = cdc_error(err, -EINVAL, false, "conf",
                              "%s connector '%s': set server_id: the sink marks its writes with it", k->ctx,
                              conn->name);
                goto out;
        }
        {
                /* what MARIADB_STMT_BULK_SUPPORTED tests: a MariaDB server announcing bulk operations */
                unsigned long caps = 0, ext = 0;
                k->bulk = mariadb_get_infov(k->m, MARIADB_CONNECTION_SERVER_CAPABILITIES, &caps) == 0 &&
                          mariadb_get_infov(k->m, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &ext) == 0 &&
                          !(caps & CLIENT_MYSQL) && (ext & (MARIADB_CLIENT_STMT_BULK_OPERATIONS >> 32));
        }
        snprintf(sql, sizeof(sql), "SET SESSION server_id = %" PRIu32, conn->server_id);
        if (conn->server_id != 0 && mysql_query(k->m, sql)) {
                r = cdc_error(err, -EPERM, false, "conf",
                              "%s connector '%s': cannot set the session server_id (%s): GRANT BINLOG REPLAY ON *.* "
                              "TO the user; cdcsync marks its own writes with it",
                              k->ctx, conn->name, mysql_error(k->m));
                goto out;
        }
        /* time_zone, sql_mode and the rest are pinned by mysql_conn_open */
        r = simple(k, "SET SESSION autocommit = 0", err);
        if (r < 0)
                goto out;
        r = simple(k, "CREATE DATABASE IF NOT EXISTS `cdcsync`", err);
        if (r >= 0)
                r = simple(k,
                           "CREATE TABLE IF NOT EXISTS `cdcsync`.`checkpoints` ("
                           "pipeline VARCHAR(255) NOT NULL PRIMARY KEY, pos_hi BIGINT UNSIGNED NOT NULL, "
                           "pos_lo BIGINT UNSIGNED NOT NULL, pos_text VARCHAR(255) NOT NULL, "
                           "source_commit_ts DATETIME(6) NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB",
                           err);
        /* The copy records (copies.h): which source tables were copied, as of which position. */
        if (r >= 0)
                r = simple(k,
                           "CREATE TABLE IF NOT EXISTS `cdcsync`.`tables` (pipeline VARCHAR(191) NOT NULL, "
                           "source_table VARCHAR(576) NOT NULL, state VARCHAR(16) NOT NULL, pos_hi DECIMAL(20,0), "
                           "pos_lo DECIMAL(20,0), pos_text VARCHAR(255), copied_rows BIGINT, copied_at TIMESTAMP "
                           "NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (pipeline, source_table)) ENGINE=InnoDB "
                           "DEFAULT CHARSET=utf8mb4",
                           err);
        k->rels = pipe && pipe->source && pipe->source->type && strcmp(pipe->source->type, "postgres") == 0;
        if (r >= 0 && k->rels)
                r = simple(k,
                           "CREATE TABLE IF NOT EXISTS `cdcsync`.`relations` (pipeline VARCHAR(128) NOT NULL, "
                           "src_schema VARCHAR(128) NOT NULL, src_name VARCHAR(128) NOT NULL, rel_id BIGINT UNSIGNED "
                           "NOT NULL, prev_rel_id BIGINT UNSIGNED NULL, ready BOOL NOT NULL, updated_at DATETIME(6) "
                           "NOT NULL, "
                           "PRIMARY KEY (pipeline, src_schema, src_name)) ENGINE=InnoDB",
                           err);
        /* Bidirectional sync: the version tags (engine/rowstate.c), written in the batch's
         * transaction just before each row and read back by the reverse pipeline from our binlog. */
        if (r >= 0 && pipe && pipe->bidirectional)
                r = simple(k,
                           "CREATE TABLE IF NOT EXISTS `cdcsync`.`versions` (k VARBINARY(32) NOT NULL PRIMARY KEY, "
                           "v BLOB NOT NULL) ENGINE=InnoDB",
                           err);
        if (r < 0)
                goto out;
        *ret = k;
        k = NULL;
        r = 0;
out:
        sink_free(k);
        return r;
}

typedef struct {
        Position pos;
        bool found;
} CkRow;

static int ck_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        CkRow *c = ud;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1])
                return -EBADMSG;
        char *e1, *e2;
        errno = 0;
        c->pos.hi = strtoull(cells[0], &e1, 10);
        c->pos.lo = strtoull(cells[1], &e2, 10);
        if (errno || *e1 || *e2)
                return -EBADMSG;
        c->found = true;
        return 0;
}

static int sink_last_position(Sink *k, Position *ret, bool *found, CdcError *err) {
        CkRow c = {0};
        const char *params[1] = {k->pipe && k->pipe->name ? k->pipe->name : ""};
        int r = mysql_conn_query(k->m, "SELECT pos_hi, pos_lo FROM `cdcsync`.`checkpoints` WHERE pipeline = ?", params,
                                 1, ck_row, &c, err);
        if (r < 0)
                return r;
        mysql_commit(k->m); /* end the read's snapshot so the next batch sees fresh data */
        *found = c.found;
        if (c.found)
                *ret = c.pos;
        return 0;
}

typedef struct {
        char *buf;
        size_t len;
        bool found;
} CkText;

static int ck_text_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        CkText *t = ud;
        if (ncols < 1 || !cells[0] || lens[0] >= t->len)
                return 0;
        memcpy(t->buf, cells[0], lens[0]);
        t->buf[lens[0]] = '\0';
        t->found = true;
        return 0;
}

/* The text commit() stored with the checkpoint (a MySQL source's GTID state lives there). */
static int sink_last_position_text(Sink *k, char *buf, size_t len, bool *found, CdcError *err) {
        CkText t = {.buf = buf, .len = len};
        const char *params[1] = {k->pipe && k->pipe->name ? k->pipe->name : ""};
        int r = mysql_conn_query(k->m, "SELECT pos_text FROM `cdcsync`.`checkpoints` WHERE pipeline = ?", params, 1,
                                 ck_text_row, &t, err);
        if (r < 0)
                return r;
        mysql_commit(k->m); /* end the read's snapshot so the next batch sees fresh data */
        *found = t.found;
        return 0;
}

typedef struct {
        CopiedTable *v;
        int n;
        bool oom;
} CopyList;

static int copy_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        CopyList *l = ud;
        (void)lens;
        if (ncols < 3 || !cells[0] || !cells[1] || !cells[2])
                return 0;
        CopiedTable *v = realloc(l->v, sizeof(*v) * (size_t)(l->n + 1));
        if (!v) {
                l->oom = true;
                return 0;
        }
        l->v = v;
        snprintf(v[l->n].table, sizeof(v[l->n].table), "%s", cells[0]);
        v[l->n].pos.hi = strtoull(cells[1], NULL, 10);
        v[l->n].pos.lo = strtoull(cells[2], NULL, 10);
        l->n++;
        return 0;
}

static int sink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        CopyList l = {0};
        const char *params[1] = {k->pipe && k->pipe->name ? k->pipe->name : ""};
        int r = mysql_conn_query(k->m,
                                 "SELECT source_table, pos_hi, pos_lo FROM `cdcsync`.`tables` WHERE pipeline = ? AND "
                                 "state = 'copied'",
                                 params, 1, copy_row, &l, err);
        mysql_commit(k->m); /* end the read's snapshot so the next batch sees fresh data */
        if (r >= 0 && l.oom)
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        if (r < 0) {
                free(l.v);
                return r;
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

static int sink_begin(Sink *k, CdcError *err) {
        pending_clear(k);
        k->txn_row = 0; /* a batch starts with a source transaction */
        int r = simple(k, "START TRANSACTION", err);
        if (r == 0)
                k->in_txn = true;
        return r;
}

static int sink_commit(Sink *k, Position pos, const char *pos_text, const TxnInfo *last, CdcError *err) {
        char hi[24], lo[24], ts[96] = "";
        snprintf(hi, sizeof(hi), "%" PRIu64, pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, pos.lo);
        if (last && last->commit_ts > 0) {
                time_t s = (time_t)(last->commit_ts / 1000000);
                struct tm tm;
                if (gmtime_r(&s, &tm))
                        snprintf(ts, sizeof(ts), "%04d-%02d-%02d %02d:%02d:%02d.%06u", tm.tm_year + 1900, tm.tm_mon + 1,
                                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(last->commit_ts % 1000000));
        }
        Param p[5] = {
                {.data = k->pipe && k->pipe->name ? k->pipe->name : ""},
                {.data = hi},
                {.data = lo},
                {.data = (char *)(pos_text ? pos_text : "")},
                {.data = ts, .null = ts[0] == '\0'},
        };
        for (int i = 0; i < 5; i++)
                p[i].len = strlen(p[i].data);
        int r = pending_flush(k, err);
        if (r < 0)
                return r;
        r = exec(k,
                 "INSERT INTO `cdcsync`.`checkpoints` (pipeline, pos_hi, pos_lo, pos_text, source_commit_ts, "
                 "updated_at) VALUES (?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE pos_hi = VALUES(pos_hi), "
                 "pos_lo = VALUES(pos_lo), pos_text = VALUES(pos_text), source_commit_ts = "
                 "VALUES(source_commit_ts), updated_at = VALUES(updated_at)",
                 p, 5, "checkpoint", NULL, err);
        if (r < 0)
                return r;
        if (mysql_commit(k->m))
                return sink_error(k, NULL, "commit", err);
        k->in_txn = false;
        return 0;
}

static int sink_rollback(Sink *k) {
        pending_clear(k);
        seen_clear(k); /* what the rolled-back transaction recorded is gone */
        k->in_txn = false;
        return mysql_rollback(k->m) ? -EIO : 0;
}

static int count_tables(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)cells, (void)lens, (void)ncols;
        (*(int *)ud)++;
        return 0;
}

static int sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Sink *k;
        int r = sink_open(conn, pipe, &k, err);
        if (r < 0)
                return r;
        /* A new pipeline whose first copy is snapshot = initial refuses target tables that hold
         * rows (the copy itself refuses them too: check_empty); one with a checkpoint copies none. */
        bool found = false;
        Position pos;
        if (conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL && pipe->all_tables)
                printf("note: sink %s: pipeline %s copies into empty tables only (snapshot = initial); with tables = * "
                       "that is checked when the copy starts\n",
                       conn->name, pipe->name);
        else if (conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL)
                r = sink_last_position(k, &pos, &found, err);
        for (int i = 0; r == 0 && !found && conf_pipeline_copy_mode(pipe) == SNAPSHOT_INITIAL && !pipe->all_tables &&
                        i < pipe->ntables;
             i++) {
                const char *t = pipe->tables[i], *dot = strchr(t, '.');
                char sch[256], tab[256];
                int exists = 0;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                Table *shape = dot ? table_new(sch, dot + 1, 0) : NULL;
                if (!shape || map_table(k, shape, sch, sizeof(sch), tab, sizeof(tab)) < 0) {
                        table_unref(shape);
                        continue;
                }
                table_unref(shape);
                const char *params[2] = {sch, tab};
                r = mysql_conn_query(
                        k->m, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        params, 2, count_tables, &exists, err);
                if (r >= 0 && exists)
                        r = check_empty(k, sch, tab, err);
                if (r > 0)
                        r = 0;
        }
        sink_free(k);
        return r < 0 ? r : 0;
}

const SinkOps mysql_sink_ops = {
        .type = "mysql",
        .open = sink_open,
        .last_position = sink_last_position,
        .begin = sink_begin,
        .apply = sink_apply,
        .commit = sink_commit,
        .rollback = sink_rollback,
        .check = sink_check,
        .free = sink_free,
        .last_position_text = sink_last_position_text,
        .copied_tables = sink_copied_tables,
        .locate = mysql_conn_locate,
};
