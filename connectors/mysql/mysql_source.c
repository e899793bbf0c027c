/* The MySQL/MariaDB binlog source: preflight checks, the replica connection through
 * libmariadb's replication API, and the translation of binlog events into Events.
 *
 * Transport only comes from mariadb_rpl_fetch(); every event is decoded from its raw bytes by
 * binlog.c, so what is tested with captured bytes is what runs. Column names, keys, signedness,
 * charsets and ENUM/SET members come from information_schema, cached per table and dropped on
 * every DDL QUERY event (the next TABLE_MAP reloads it). information_schema shows the schema of
 * now, not of the stream position: a TABLE_MAP with fewer columns whose types match the first
 * ones of information_schema is the table before columns were added at its end (read with those
 * columns); any other disagreement is refused as a "schema" error rather than guessed.
 * The initial snapshot reads every table in one InnoDB consistent snapshot whose binlog position
 * MariaDB reports, and streaming starts there. */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

#include <mariadb_rpl.h>

#include "cdcsync/copies.h"
#include "cdcsync/log.h"
#include "mysql/binlog.h"
#include "mysql/mysql_conn.h"
#include "mysql/mysql_source.h"

#define HEARTBEAT_NS "1000000000" /* idle servers send a heartbeat every second */

typedef struct SchemaEntry {
        struct SchemaEntry *next;
        char *schema, *name;    /* owned */
        bool wanted;            /* covered by the pipeline's tables */
        Table *table;           /* one reference, NULL until a TABLE_MAP built it */
        BinlogColumnInfo *info; /* owned, ncols */
        char **elem_store;      /* owned: every ENUM/SET name string, nelem_store entries */
        int nelem_store;
        int ncols;
        /* loaded from information_schema */
        char **col_names, **col_types, **col_charsets;
        bool *col_key;
} SchemaEntry;

typedef struct TableMapEntry {
        struct TableMapEntry *next;
        BinlogTableMap *tm; /* owned */
        SchemaEntry *se;    /* borrowed from the schema cache */
} TableMapEntry;

/* A transaction's GTID and where it ends, kept until that position is durable in the sink. */
typedef struct {
        Position pos;
        MysqlGtid gtid;
} GtidMark;

#define GTID_HIST_MAX ((size_t)1 << 20) /* 32 MiB of marks at most; see gtid_note() */

struct Source {
        const ConnectorConf *conn;
        const PipelineConf *pipe;
        MYSQL *sql;  /* queries: information_schema, SHOW BINARY LOGS */
        MYSQL *repl; /* the replica connection */
        MARIADB_RPL *rpl;
        char ctx[160];
        SchemaEntry *schemas;
        TableMapEntry *maps;
        /* stream state */
        char file[512];
        uint64_t file_seq;
        bool checksum;
        bool in_txn, standalone, begun;
        TxnInfo txn;
        unsigned zero_dates;
        /* GTID tracking. The source thread writes; format_checkpoint() reads from the sink's
         * thread: everything below up to `cur` is guarded by gtid_lock. */
        pthread_mutex_t gtid_lock;
        bool gtid_known;           /* base_state is complete: checkpoint texts carry it */
        char base[256];            /* the binlog base name ("mariadb-bin") */
        MysqlGtidState base_state; /* the state at base_pos: every transaction up to it */
        Position base_pos;
        GtidMark *hist;            /* owned ring: the transactions after base_pos, in binlog order */
        MysqlGtidState head_state; /* the state after the newest mark: texts of the newest
                                    * position (every COMMIT emitted) need no walk of the ring */
        bool head_ok;
        size_t hist_head, hist_len, hist_cap;
        MysqlGtid cur; /* the open transaction's GTID (source thread only) */
        bool have_cur;
        bool mariadb; /* MariaDB GTIDs (MySQL's differ: its checkpoints carry file:pos only) */
        bool by_gtid; /* the dump was started from a GTID state */
        char connect_state[MYSQL_SOURCE_GTID_MAX * 48];
        Position start_pos; /* the checkpoint's Position: a GTID start must land after it */
        bool start_checked;
        /* Tables copied as of a binlog position the stream has not passed: their row events at or
         * before it are in the copy and dropped (copies.h). Owned. */
        CopiedTable *filters;
        int nfilters;
        /* A copy of tables added to `tables` (and the records of removed ones), made as of
         * copy_pos and handed on when the stream reaches it. */
        bool copy_pending;
        Position copy_pos;
        MYSQL *copy;                  /* holds the copy's consistent snapshot */
        char **copy_new, **copy_gone; /* owned "schema.table" entries */
        int ncopy_new, ncopy_gone;
};

/* ---- positions ---- */

static int parse_u64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;
        if (n == 0 || n > 19)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* The sequence number of a binlog file name "base.000042". */
static int file_seq(const char *name, uint64_t *ret) {
        const char *dot = strrchr(name, '.');
        if (!dot)
                return -EINVAL;
        return parse_u64(dot + 1, strlen(dot + 1), ret);
}

void mysql_source_format_position(Position p, char *buf, size_t len) {
        mysql_source_format_checkpoint(NULL, p, NULL, buf, len);
}

/* Parses a decimal number of n bytes with an upper bound. */
static int parse_num(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v;
        if (n == 0 || n > 20)
                return -EINVAL;
        v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                unsigned d = (unsigned)(s[i] - '0');
                if (v > (max - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int mysql_source_gtid_update(MysqlGtidState *st, MysqlGtid g) {
        int i = 0;
        while (i < st->n && st->g[i].domain < g.domain)
                i++;
        if (i < st->n && st->g[i].domain == g.domain) {
                st->g[i] = g;
                return 0;
        }
        if (st->n == MYSQL_SOURCE_GTID_MAX)
                return -ENOSPC;
        memmove(&st->g[i + 1], &st->g[i], sizeof(st->g[0]) * (size_t)(st->n - i));
        st->g[i] = g;
        st->n++;
        return 0;
}

static const MysqlGtid *gtid_find(const MysqlGtidState *st, uint32_t domain) {
        for (int i = 0; i < st->n; i++)
                if (st->g[i].domain == domain)
                        return &st->g[i];
        return NULL;
}

int mysql_source_gtid_parse(const char *text, size_t len, MysqlGtidState *ret) {
        MysqlGtidState st = {0};
        size_t i = 0;
        while (i < len) {
                uint64_t part[3];
                for (int k = 0; k < 3; k++) {
                        size_t j = i;
                        while (j < len && text[j] >= '0' && text[j] <= '9')
                                j++;
                        if (parse_num(text + i, j - i, k < 2 ? UINT32_MAX : UINT64_MAX, &part[k]) < 0)
                                return -EINVAL;
                        i = j;
                        if (k < 2) {
                                if (i >= len || text[i] != '-')
                                        return -EINVAL;
                                i++;
                        }
                }
                if (gtid_find(&st, (uint32_t)part[0]))
                        return -EINVAL;
                int r = mysql_source_gtid_update(
                        &st, (MysqlGtid){.domain = (uint32_t)part[0], .server_id = (uint32_t)part[1], .seq = part[2]});
                if (r < 0)
                        return r;
                if (i < len) {
                        if (text[i] != ',' || i + 1 == len)
                                return -EINVAL;
                        i++;
                }
        }
        *ret = st;
        return 0;
}

int mysql_source_gtid_format(const MysqlGtidState *st, char *buf, size_t len) {
        size_t used = 0;
        if (len == 0)
                return -ENOSPC;
        buf[0] = '\0';
        for (int i = 0; i < st->n; i++) {
                int n = snprintf(buf + used, len - used, "%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, i ? "," : "",
                                 st->g[i].domain, st->g[i].server_id, st->g[i].seq);
                if (n < 0 || (size_t)n >= len - used) {
                        buf[0] = '\0';
                        return -ENOSPC;
                }
                used += (size_t)n;
        }
        return 0;
}

void mysql_source_format_checkpoint(const char *base, Position p, const MysqlGtidState *gtid, char *buf, size_t len) {
        char g[MYSQL_SOURCE_GTID_MAX * 48];
        int n = snprintf(buf, len, "%s.%06" PRIu64 ":%" PRIu64, base && base[0] ? base : "binlog", p.hi, p.lo);
        if (!gtid || n < 0 || (size_t)n >= len || mysql_source_gtid_format(gtid, g, sizeof(g)) < 0)
                return;
        /* all or nothing: a cut GTID state would be a wrong one */
        if ((size_t)n + strlen(" gtid=") + strlen(g) < len)
                snprintf(buf + n, len - (size_t)n, " gtid=%s", g);
}

int mysql_source_parse_checkpoint(const char *text, Position *ret_pos, bool *ret_have_pos, MysqlGtidState *ret_gtid,
                                  bool *ret_have_gtid) {
        Position pos = {0};
        MysqlGtidState st = {0};
        bool have_pos = false, have_gtid = false;
        const char *g = NULL;
        size_t tlen = strlen(text);

        if (strncmp(text, "gtid=", 5) == 0) {
                g = text + 5;
        } else if (tlen && !memchr(text, ':', tlen) && !memchr(text, '.', tlen)) {
                g = text; /* a bare GTID list */
        } else {
                const char *sp = strchr(text, ' ');
                size_t flen = sp ? (size_t)(sp - text) : tlen;
                const char *colon = memrchr(text, ':', flen);
                uint64_t seq, off;
                if (!colon || colon == text)
                        return -EINVAL;
                const char *dot = memrchr(text, '.', (size_t)(colon - text));
                if (!dot || dot == text || parse_num(dot + 1, (size_t)(colon - dot - 1), UINT64_MAX, &seq) < 0 ||
                    parse_num(colon + 1, flen - (size_t)(colon + 1 - text), UINT64_MAX, &off) < 0 || off < 4)
                        return -EINVAL;
                pos = (Position){.hi = seq, .lo = off};
                have_pos = true;
                if (sp) {
                        if (strncmp(sp, " gtid=", 6) != 0)
                                return -EINVAL;
                        g = sp + 6;
                }
        }
        if (g) {
                if (mysql_source_gtid_parse(g, strlen(g), &st) < 0)
                        return -EINVAL;
                have_gtid = true;
        }
        *ret_pos = pos;
        *ret_have_pos = have_pos;
        *ret_gtid = st;
        *ret_have_gtid = have_gtid;
        return 0;
}

int mysql_source_parse_position(const char *text, Position *ret) {
        Position p;
        MysqlGtidState st;
        bool hp, hg;
        int r = mysql_source_parse_checkpoint(text, &p, &hp, &st, &hg);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

/* ---- schema cache ---- */

static bool pipeline_wants(const PipelineConf *p, const char *schema, const char *table) {
        if (!p || p->all_tables)
                return true;
        size_t sl = strlen(schema);
        for (int i = 0; i < p->ntables; i++) {
                const char *t = p->tables[i];
                if (strncmp(t, schema, sl) != 0 || t[sl] != '.')
                        continue;
                if (strcmp(t + sl + 1, "*") == 0 || strcmp(t + sl + 1, table) == 0)
                        return true;
        }
        return false;
}

static void schema_entry_free(SchemaEntry *e) {
        if (!e)
                return;
        for (int i = 0; i < e->ncols; i++) {
                if (e->col_names)
                        free(e->col_names[i]);
                if (e->col_types)
                        free(e->col_types[i]);
                if (e->col_charsets)
                        free(e->col_charsets[i]);
                if (e->info)
                        free(e->info[i].elems);
        }
        for (int i = 0; i < e->nelem_store; i++)
                free(e->elem_store[i]);
        free(e->elem_store);
        free(e->col_names);
        free(e->col_types);
        free(e->col_charsets);
        free(e->col_key);
        free(e->info);
        table_unref(e->table);
        free(e->schema);
        free(e->name);
        free(e);
}

static void schema_cache_clear(Source *s) {
        /* table maps point into the schema cache: they go too (a TABLE_MAP precedes every
         * statement's rows, so nothing is lost) */
        while (s->maps) {
                TableMapEntry *m = s->maps;
                s->maps = m->next;
                binlog_table_map_free(m->tm);
                free(m);
        }
        while (s->schemas) {
                SchemaEntry *e = s->schemas;
                s->schemas = e->next;
                schema_entry_free(e);
        }
}

typedef struct {
        SchemaEntry *e;
        int cap;
        int err;
} ColLoad;

static int col_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ColLoad *l = ud;
        SchemaEntry *e = l->e;
        (void)lens;
        if (ncols < 4)
                return -EBADMSG;
        if (e->ncols == l->cap) {
                int cap = l->cap ? l->cap * 2 : 16;
                char **n = realloc(e->col_names, sizeof(char *) * (size_t)cap);
                if (n)
                        e->col_names = n;
                char **t = realloc(e->col_types, sizeof(char *) * (size_t)cap);
                if (t)
                        e->col_types = t;
                char **c = realloc(e->col_charsets, sizeof(char *) * (size_t)cap);
                if (c)
                        e->col_charsets = c;
                bool *k = realloc(e->col_key, sizeof(bool) * (size_t)cap);
                if (k)
                        e->col_key = k;
                if (!n || !t || !c || !k)
                        return -ENOMEM;
                l->cap = cap;
        }
        int i = e->ncols;
        e->col_names[i] = strdup(cells[0] ? cells[0] : "");
        e->col_types[i] = strdup(cells[1] ? cells[1] : "");
        e->col_charsets[i] = cells[2] ? strdup(cells[2]) : NULL;
        e->col_key[i] = cells[3] && strcmp(cells[3], "PRI") == 0;
        e->ncols++;
        if (!e->col_names[i] || !e->col_types[i] || (cells[2] && !e->col_charsets[i]))
                return -ENOMEM;
        return 0;
}

typedef struct {
        SchemaEntry *e;
} CheckLoad;

static int check_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        SchemaEntry *e = ((CheckLoad *)ud)->e;
        (void)lens;
        if (ncols < 1 || !cells[0])
                return 0;
        /* MariaDB's JSON is LONGTEXT with CHECK (json_valid(`col`)) */
        for (int i = 0; i < e->ncols; i++) {
                char want[300];
                snprintf(want, sizeof(want), "json_valid(`%s`)", e->col_names[i]);
                if (strcmp(cells[0], want) == 0)
                        e->info[i].json = true;
        }
        return 0;
}

/* Parses "enum('a','b''c')" / "set(...)" member names into info. */
static int parse_elems(SchemaEntry *e, BinlogColumnInfo *info, const char *type) {
        const char *p = strchr(type, '(');
        if (!p)
                return 0;
        p++;
        while (*p == '\'') {
                size_t cap = strlen(p) + 1, n = 0;
                char *name = malloc(cap);
                if (!name)
                        return -ENOMEM;
                p++;
                for (;;) {
                        if (*p == '\0') {
                                free(name);
                                return -EBADMSG;
                        }
                        if (*p == '\'' && p[1] == '\'') {
                                name[n++] = '\'';
                                p += 2;
                        } else if (*p == '\'') {
                                p++;
                                break;
                        } else {
                                name[n++] = *p++;
                        }
                }
                name[n] = '\0';
                char **st = realloc(e->elem_store, sizeof(char *) * (size_t)(e->nelem_store + 1));
                char **el = realloc(info->elems, sizeof(char *) * (size_t)(info->nelems + 1));
                if (st)
                        e->elem_store = st;
                if (el)
                        info->elems = el;
                if (!st || !el) {
                        free(name);
                        return -ENOMEM;
                }
                e->elem_store[e->nelem_store++] = name;
                info->elems[info->nelems++] = name;
                if (*p == ',')
                        p++;
        }
        return 0;
}

static int schema_load(Source *s, const char *schema, const char *name, SchemaEntry **ret, CdcError *err) {
        SchemaEntry *e = calloc(1, sizeof(*e));
        int r;
        if (!e)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        e->schema = strdup(schema);
        e->name = strdup(name);
        if (!e->schema || !e->name) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        /* bidirectional sync also reads the reverse sink's version tags (engine/rowstate.c) */
        e->wanted =
                pipeline_wants(s->pipe, schema, name) ||
                (s->pipe && s->pipe->bidirectional && strcmp(schema, "cdcsync") == 0 && strcmp(name, "versions") == 0);
        if (!e->wanted) {
                *ret = e;
                return 0;
        }
        const char *params[2] = {schema, name};
        ColLoad cl = {.e = e};
        r = mysql_conn_query(s->sql,
                             "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY "
                             "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "
                             "ORDER BY ORDINAL_POSITION",
                             params, 2, col_row, &cl, err);
        if (r < 0)
                goto out;
        e->info = calloc((size_t)(e->ncols > 0 ? e->ncols : 1), sizeof(BinlogColumnInfo));
        if (!e->info) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        for (int i = 0; i < e->ncols; i++) {
                BinlogColumnInfo *info = &e->info[i];
                const char *cs = e->col_charsets[i], *t = e->col_types[i];
                info->is_unsigned = strstr(t, "unsigned") != NULL;
                if (!cs || strcmp(cs, "binary") == 0)
                        info->charset = BINLOG_CS_BINARY;
                else if (strcmp(cs, "latin1") == 0)
                        info->charset = BINLOG_CS_LATIN1;
                else
                        info->charset = BINLOG_CS_UTF8;
                if (strncmp(t, "enum(", 5) == 0 || strncmp(t, "set(", 4) == 0) {
                        r = parse_elems(e, info, t);
                        if (r < 0) {
                                r = cdc_error(err, r, false, "schema", "cannot read the members of %s.%s.%s", schema,
                                              name, e->col_names[i]);
                                goto out;
                        }
                }
                if (strcmp(t, "json") == 0)
                        info->json = true;
        }
        CheckLoad ck = {.e = e};
        r = mysql_conn_query(s->sql,
                             "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                             "WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                             params, 2, check_row, &ck, err);
        if (r < 0)
                goto out;
        *ret = e;
        e = NULL;
        r = 0;
out:
        schema_entry_free(e);
        return r;
}

/* A column's class as sinks should see it: a BIGINT UNSIGNED goes up to 2^64-1, past every
 * other system's 64-bit integer, so it is a NUMERIC (an integer text all the same). */
static TypeClass column_class(const BinlogColumn *col, const BinlogColumnInfo *info) {
        TypeClass cls = binlog_type_class(col, info);
        if (cls == TYPE_INTEGER && col->type == BINLOG_T_LONGLONG && info && info->is_unsigned)
                return TYPE_NUMERIC;
        return cls;
}

static uint8_t type_code_of(const char *column_type);

/* One family per binlog type that information_schema's name can stand for. */
static uint8_t type_family(uint8_t t) {
        switch (t) {
        case BINLOG_T_TIME: return BINLOG_T_TIME2;
        case BINLOG_T_DATETIME: return BINLOG_T_DATETIME2;
        case BINLOG_T_TIMESTAMP: return BINLOG_T_TIMESTAMP2;
        case BINLOG_T_NEWDATE: return BINLOG_T_DATE;
        case BINLOG_T_DECIMAL: return BINLOG_T_NEWDECIMAL;
        case BINLOG_T_VAR_STRING:
        case BINLOG_T_STRING: return BINLOG_T_VARCHAR;
        case BINLOG_T_TINY_BLOB:
        case BINLOG_T_MEDIUM_BLOB:
        case BINLOG_T_LONG_BLOB: return BINLOG_T_BLOB;
        default: return t;
        }
}

/* Whether a TABLE_MAP with fewer columns than information_schema shows now is the table as it was
 * before columns were added at its end: the stream reads rows logged before an ALTER TABLE ADD
 * COLUMN that information_schema already shows (a source catching up). Every logged column must
 * then have the type information_schema gives the column at its place. */
static bool columns_added_at_end(const SchemaEntry *e, const BinlogTableMap *tm) {
        if (tm->ncols == 0 || (uint32_t)e->ncols <= tm->ncols)
                return false;
        for (uint32_t i = 0; i < tm->ncols; i++)
                if (type_family(tm->cols[i].type) != type_family(type_code_of(e->col_types[i])))
                        return false;
        return true;
}

/* Builds the Table of e against a TABLE_MAP's column types. */
static int schema_build_table(Source *s, SchemaEntry *e, const BinlogTableMap *tm, CdcError *err) {
        int ncols = e->ncols;
        if ((uint32_t)e->ncols != tm->ncols && columns_added_at_end(e, tm)) {
                log_info(s->ctx,
                         "%s.%s: %u columns in the binlog at %s, %d in information_schema: reading the "
                         "rows logged before the columns were added",
                         e->schema, e->name, tm->ncols, s->file, e->ncols);
                ncols = (int)tm->ncols;
        } else if ((uint32_t)e->ncols != tm->ncols)
                return cdc_error(err, -EPROTO, false, "schema",
                                 "%s table %s.%s has %u columns in the binlog but %d in information_schema now: "
                                 "its schema changed after this binlog position; restart the pipeline from a "
                                 "snapshot (delete its checkpoint) or from a position after the change",
                                 s->ctx, e->schema, e->name, tm->ncols, e->ncols);
        Table *t = table_new(e->schema, e->name, ncols);
        if (!t)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        for (int i = 0; i < ncols; i++) {
                Column *c = &t->cols[i];
                c->name = strdup(e->col_names[i]);
                c->type_name = strdup(e->col_types[i]);
                if (!c->name || !c->type_name) {
                        table_unref(t);
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                }
                c->type_oid = tm->cols[i].type;
                c->typmod = (int32_t)tm->cols[i].meta;
                c->cls = column_class(&tm->cols[i], &e->info[i]);
                if (c->cls == TYPE_INTEGER && strcmp(e->col_types[i], "tinyint(1)") == 0)
                        c->cls = TYPE_INTEGER; /* MySQL's BOOLEAN: kept as 0/1, type_name says it */
                c->key = e->col_key[i];
        }
        t->replident = table_nkeys(t) > 0 ? 'd' : 'f';
        t->rel_id = (uint32_t)tm->table_id;
        table_unref(e->table);
        e->table = t;
        return 0;
}

static int on_table_map(Source *s, const BinlogHeader *h, CdcError *err) {
        BinlogTableMap *tm;
        int r = binlog_read_table_map(h, &tm);
        if (r < 0)
                return cdc_error(err, r, false, "data", "%s malformed TABLE_MAP event in %s before %u", s->ctx, s->file,
                                 h->next_pos);
        SchemaEntry *e = s->schemas;
        while (e && (strcmp(e->schema, tm->schema) != 0 || strcmp(e->name, tm->table) != 0))
                e = e->next;
        if (!e) {
                r = schema_load(s, tm->schema, tm->table, &e, err);
                if (r < 0) {
                        binlog_table_map_free(tm);
                        return r;
                }
                e->next = s->schemas;
                s->schemas = e;
        }
        if (e->wanted &&
            (!e->table || e->table->rel_id != (uint32_t)tm->table_id || (uint32_t)e->table->ncols != tm->ncols)) {
                r = schema_build_table(s, e, tm, err);
                if (r < 0) {
                        binlog_table_map_free(tm);
                        return r;
                }
        }
        TableMapEntry *m = s->maps;
        while (m && m->tm->table_id != tm->table_id)
                m = m->next;
        if (!m) {
                m = calloc(1, sizeof(*m));
                if (!m) {
                        binlog_table_map_free(tm);
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                }
                m->next = s->maps;
                s->maps = m;
        }
        binlog_table_map_free(m->tm);
        m->tm = tm;
        m->se = e;
        return 0;
}

/* ---- GTID state per position ---- */

/* The base name of a binlog file name ("mariadb-bin.000003" → "mariadb-bin"). */
static void set_base(Source *s, const char *file) {
        const char *dot = strrchr(file, '.');
        size_t n = dot ? (size_t)(dot - file) : strlen(file);
        if (n >= sizeof(s->base))
                n = sizeof(s->base) - 1;
        pthread_mutex_lock(&s->gtid_lock);
        memcpy(s->base, file, n);
        s->base[n] = '\0';
        pthread_mutex_unlock(&s->gtid_lock);
}

/* Folds marks at or before `upto` into base_state; gtid_lock held. */
static void gtid_fold(Source *s, Position upto) {
        while (s->hist_len && position_cmp(s->hist[s->hist_head].pos, upto) <= 0) {
                GtidMark *m = &s->hist[s->hist_head];
                if (mysql_source_gtid_update(&s->base_state, m->gtid) < 0)
                        s->gtid_known = false; /* more domains than a checkpoint holds */
                s->base_pos = m->pos;
                s->hist_head = (s->hist_head + 1) % s->hist_cap;
                s->hist_len--;
        }
}

/* Remembers that the transaction `g` ends at pos. The marks live until the sink made pos
 * durable (gtid_prune). Past GTID_HIST_MAX unacknowledged transactions the oldest is folded
 * into base_state: texts of positions before it then carry file:pos only, never a wrong state. */
static int gtid_note(Source *s, Position pos, MysqlGtid g) {
        int r = 0;
        pthread_mutex_lock(&s->gtid_lock);
        if (s->hist_len == s->hist_cap) {
                if (s->hist_cap < GTID_HIST_MAX) {
                        size_t cap = s->hist_cap ? s->hist_cap * 2 : 1024;
                        GtidMark *n = malloc(sizeof(*n) * cap);
                        if (!n) {
                                r = -ENOMEM;
                                goto out;
                        }
                        for (size_t i = 0; i < s->hist_len; i++)
                                n[i] = s->hist[(s->hist_head + i) % s->hist_cap];
                        free(s->hist);
                        s->hist = n;
                        s->hist_cap = cap;
                        s->hist_head = 0;
                } else {
                        gtid_fold(s, s->hist[s->hist_head].pos);
                }
        }
        s->hist[(s->hist_head + s->hist_len) % s->hist_cap] = (GtidMark){.pos = pos, .gtid = g};
        s->hist_len++;
        if (mysql_source_gtid_update(&s->head_state, g) < 0)
                s->head_ok = false;
out:
        pthread_mutex_unlock(&s->gtid_lock);
        return r;
}

/* Positions up to the durable one are never asked for again: their marks become the base. */
static void gtid_prune(Source *s, Position durable) {
        pthread_mutex_lock(&s->gtid_lock);
        gtid_fold(s, durable);
        pthread_mutex_unlock(&s->gtid_lock);
}

static void source_format_checkpoint(Source *s, Position p, char *buf, size_t len) {
        pthread_mutex_lock(&s->gtid_lock);
        const GtidMark *newest = s->hist_len ? &s->hist[(s->hist_head + s->hist_len - 1) % s->hist_cap] : NULL;
        if (!s->gtid_known || position_cmp(p, s->base_pos) < 0) {
                mysql_source_format_checkpoint(s->base, p, NULL, buf, len);
        } else if (!newest || position_cmp(p, newest->pos) >= 0) {
                mysql_source_format_checkpoint(s->base, p, s->head_ok ? &s->head_state : NULL, buf, len);
        } else {
                MysqlGtidState st = s->base_state;
                bool ok = true;
                for (size_t i = 0; i < s->hist_len; i++) {
                        const GtidMark *m = &s->hist[(s->hist_head + i) % s->hist_cap];
                        if (position_cmp(m->pos, p) > 0)
                                break;
                        if (mysql_source_gtid_update(&st, m->gtid) < 0)
                                ok = false;
                }
                mysql_source_format_checkpoint(s->base, p, ok ? &st : NULL, buf, len);
        }
        pthread_mutex_unlock(&s->gtid_lock);
}

/* ---- events out ---- */

static Position pos_at(Source *s, uint32_t off) {
        return (Position){.hi = s->file_seq, .lo = off};
}

static int emit_begin(Source *s, PipelineIO *io) {
        if (s->begun)
                return 0;
        Event ev = {.kind = EVENT_BEGIN, .txn = s->txn};
        s->begun = true;
        return pipeline_io_emit(io, &ev);
}

/* A rows event, compressed or not, decoded by binlog_read_rows(): its changes. */
static int emit_rows(Source *s, const BinlogHeader *h, BinlogRows rows, PipelineIO *io, CdcError *err) {
        int r;
        TableMapEntry *m = s->maps;
        while (m && m->tm->table_id != rows.table_id)
                m = m->next;
        if (!m)
                return cdc_error(err, -EPROTO, false, "data", "%s rows event for unknown table id %" PRIu64 " in %s",
                                 s->ctx, rows.table_id, s->file);
        if (!m->se->wanted)
                return 0;
        if (rows.ncols != m->tm->ncols)
                return cdc_error(err, -EPROTO, false, "data", "%s rows event of %s.%s has %u columns, its map %u",
                                 s->ctx, m->tm->schema, m->tm->table, rows.ncols, m->tm->ncols);
        Table *t = m->se->table;
        /* A table copied as of a later position: this transaction is in the copy. */
        const CopiedTable *f = copies_find(s->filters, s->nfilters, t->schema, t->name);
        if (f && position_cmp(pos_at(s, h->next_pos), f->pos) <= 0)
                return 0;
        size_t off = 0;
        while (off < rows.rows_len) {
                Event ev = {.kind = EVENT_CHANGE};
                Value *img[2] = {NULL, NULL};
                int nimg = rows.op == CHANGE_UPDATE ? 2 : 1;
                for (int i = 0; i < nimg; i++) {
                        size_t used;
                        img[i] = values_new(t->ncols);
                        if (!img[i]) {
                                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                                goto fail;
                        }
                        r = binlog_decode_row(m->tm, m->se->info, i == 0 ? rows.present : rows.present_after,
                                              rows.rows + off, rows.rows_len - off, img[i], &used, &s->zero_dates);
                        if (r < 0) {
                                r = cdc_error(err, r, false, "data",
                                              "%s cannot decode a row of %s.%s in %s before %u (%s)", s->ctx, t->schema,
                                              t->name, s->file, h->next_pos, strerror(-r));
                                goto fail;
                        }
                        off += used;
                }
                ev.change.op = rows.op;
                ev.change.table = table_ref(t);
                ev.change.lsn = position_counter(pos_at(s, h->next_pos));
                if (rows.op == CHANGE_INSERT) {
                        ev.change.after = img[0];
                } else if (rows.op == CHANGE_DELETE) {
                        ev.change.before = img[0];
                } else {
                        ev.change.before = img[0];
                        ev.change.after = img[1];
                }
                r = emit_begin(s, io);
                if (r < 0) {
                        event_clear(&ev);
                        return r;
                }
                r = pipeline_io_emit(io, &ev);
                if (r < 0)
                        return r;
                continue;
        fail:
                values_free(img[0], t->ncols);
                values_free(img[1], t->ncols);
                return r;
        }
        return 0;
}

static int on_rows(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        BinlogRows rows;
        int r = binlog_read_rows(h, &rows);
        if (r == -EMSGSIZE)
                return cdc_error(err, r, false, "data",
                                 "%s compressed rows event in %s before %u announces an impossible uncompressed size "
                                 "(above 1 GiB or 1032 times its compressed size): the binlog is corrupt",
                                 s->ctx, s->file, h->next_pos);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, "internal", "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, "data",
                                 "%s malformed rows event (type %u%s) in %s before %u: the binlog is corrupt", s->ctx,
                                 h->type, h->type >= BINLOG_WRITE_ROWS_COMPRESSED_V1 ? ", compressed" : "", s->file,
                                 h->next_pos);
        r = emit_rows(s, h, rows, io, err);
        binlog_rows_clear(&rows);
        return r;
}

static int end_txn(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        Position at = pos_at(s, h->next_pos);
        int r;
        s->in_txn = false;
        if (s->by_gtid && !s->start_checked) {
                /* The engine skips what is at or before the checkpoint's Position as replayed:
                 * a server whose binlog numbering restarted (RESET MASTER, another log_bin name or
                 * another server) would have its transactions dropped silently. */
                s->start_checked = true;
                if (position_cmp(at, s->start_pos) <= 0) {
                        char cp[64];
                        mysql_source_format_position(s->start_pos, cp, sizeof(cp));
                        return cdc_error(err, -ERANGE, false, "source",
                                         "%s the server found GTID state %s in %s, but %s:%u is not after the "
                                         "checkpoint's binlog position (%s): its binlog numbering restarted (RESET "
                                         "MASTER, a new log_bin name or another server), which cdcsync cannot order; "
                                         "delete the pipeline's checkpoint in the sink and restart with start_position "
                                         "= gtid=%s and snapshot = never",
                                         s->ctx, s->connect_state, s->file, s->file, h->next_pos, cp, s->connect_state);
                }
        }
        if (s->have_cur) {
                s->have_cur = false;
                if (gtid_note(s, at, s->cur) < 0)
                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        }
        gtid_prune(s, pipeline_io_durable(io));
        if (s->zero_dates) {
                log_warn(s->ctx, "%u zero date(s) ('0000-00-00') in the transaction ending at %s:%u became NULL",
                         s->zero_dates, s->file, h->next_pos);
                s->zero_dates = 0;
        }
        if (!s->begun) {
                /* nothing of ours inside: let the position advance all the same */
                Event ev = {.kind = EVENT_KEEPALIVE, .pos = at, .server_ts = (int64_t)h->timestamp * 1000000};
                return pipeline_io_emit(io, &ev);
        }
        s->begun = false;
        s->txn.commit_pos = at;
        s->txn.commit_ts = (int64_t)h->timestamp * 1000000;
        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
        r = pipeline_io_emit(io, &ev);
        return r;
}

static void start_txn(Source *s, const BinlogHeader *h, uint64_t seq_no, bool standalone) {
        s->in_txn = true;
        s->begun = false;
        s->standalone = standalone;
        memset(&s->txn, 0, sizeof(s->txn));
        s->txn.xid = seq_no;
        /* Known at BEGIN: where the transaction starts. Its end (the position to acknowledge) is
         * only known when XID/COMMIT arrives: COMMIT carries the real commit_pos. */
        s->txn.commit_pos = pos_at(s, h->next_pos);
        s->txn.commit_ts = (int64_t)h->timestamp * 1000000;
        snprintf(s->txn.origin, sizeof(s->txn.origin), "%u", h->server_id);
}

/* Skips spaces and C-style comments (DDL from clients often starts with them). */
static const char *skip_ws(const char *p) {
        for (;;) {
                while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                        p++;
                if (p[0] == '/' && p[1] == '*') {
                        const char *e = strstr(p + 2, "*/");
                        if (!e)
                                return p + strlen(p);
                        p = e + 2;
                        continue;
                }
                return p;
        }
}

static bool word(const char **pp, const char *w) {
        const char *p = skip_ws(*pp);
        size_t n = strlen(w);
        if (strncasecmp(p, w, n) != 0 || (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != '\n' && p[n] != '`'))
                return false;
        *pp = p + n;
        return true;
}

/* Reads an identifier, `quoted` (doubled backticks) or plain. */
static bool ident(const char **pp, char *out, size_t cap) {
        const char *p = skip_ws(*pp);
        size_t n = 0;
        if (*p == '`') {
                p++;
                for (;;) {
                        if (!*p)
                                return false;
                        if (*p == '`' && p[1] == '`')
                                p++;
                        else if (*p == '`')
                                break;
                        if (n + 1 >= cap)
                                return false;
                        out[n++] = *p++;
                }
                p++;
        } else {
                while (*p && (((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                              *p == '$' || (unsigned char)*p >= 0x80)) {
                        if (n + 1 >= cap)
                                return false;
                        out[n++] = *p++;
                }
        }
        out[n] = '\0';
        *pp = p;
        return n > 0;
}

/* QUERY and QUERY_COMPRESSED, both decoded by binlog_read_query(): libmariadb leaves a compressed
 * statement compressed unless MARIADB_RPL_UNCOMPRESS is set, and then allocates whatever length
 * the event announces. */
static int on_query(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        char stmt[4096], db[256];
        BinlogQuery q;
        int r = binlog_read_query(h, &q);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, "internal", "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, "data", "%s malformed %sQUERY event in %s before %u%s", s->ctx,
                                 h->type == BINLOG_QUERY_COMPRESSED ? "compressed " : "", s->file, h->next_pos,
                                 r == -EMSGSIZE ? " (its uncompressed size is impossible: corrupt binlog)" : "");
        size_t n = q.statement_len < sizeof(stmt) - 1 ? q.statement_len : sizeof(stmt) - 1;
        if (n)
                memcpy(stmt, q.statement, n);
        stmt[n] = '\0';
        n = q.db_len < sizeof(db) - 1 ? q.db_len : sizeof(db) - 1;
        if (n)
                memcpy(db, q.db, n);
        db[n] = '\0';
        binlog_query_clear(&q);
        const char *p = stmt;
        if (word(&p, "BEGIN") || word(&p, "XA")) {
                if (!s->in_txn)
                        start_txn(s, h, 0, false);
                return 0;
        }
        p = stmt;
        if (word(&p, "COMMIT"))
                return s->in_txn ? end_txn(s, h, io, err) : 0;
        p = stmt;
        if (word(&p, "ROLLBACK")) {
                /* only non-transactional work is logged with a ROLLBACK: nothing of ours to undo */
                return s->in_txn ? end_txn(s, h, io, err) : 0;
        }
        /* DDL: information_schema is read again at the next TABLE_MAP */
        schema_cache_clear(s);
        p = stmt;
        if (word(&p, "TRUNCATE")) {
                char a[256], b[256];
                const char *schema = db, *name = a;
                word(&p, "TABLE");
                if (ident(&p, a, sizeof(a))) {
                        if (*p == '.' && (p++, ident(&p, b, sizeof(b)))) {
                                schema = a;
                                name = b;
                        }
                        if (pipeline_wants(s->pipe, schema, name)) {
                                SchemaEntry *e;
                                r = schema_load(s, schema, name, &e, err);
                                if (r < 0)
                                        return r;
                                e->next = s->schemas;
                                s->schemas = e;
                                Table *t = table_new(schema, name, e->ncols);
                                if (!t)
                                        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                                for (int i = 0; i < e->ncols; i++) {
                                        t->cols[i].name = strdup(e->col_names[i]);
                                        t->cols[i].type_name = strdup(e->col_types[i]);
                                        t->cols[i].key = e->col_key[i];
                                        if (!t->cols[i].name || !t->cols[i].type_name) {
                                                table_unref(t);
                                                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                                        }
                                }
                                if (!s->in_txn)
                                        start_txn(s, h, 0, true);
                                Event tev = {.kind = EVENT_CHANGE,
                                             .change = {.op = CHANGE_TRUNCATE,
                                                        .table = t,
                                                        .lsn = position_counter(pos_at(s, h->next_pos))}};
                                r = emit_begin(s, io);
                                if (r < 0) {
                                        event_clear(&tev);
                                        return r;
                                }
                                r = pipeline_io_emit(io, &tev);
                                if (r < 0)
                                        return r;
                        }
                }
        }
        /* a DDL is its own transaction: its GTID event says standalone, no XID follows */
        if (s->in_txn && s->standalone)
                return end_txn(s, h, io, err);
        return 0;
}

/* ---- preflight ---- */

typedef struct {
        char vals[8][128];
        int n;
} VarRow;

static int var_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        VarRow *v = ud;
        (void)lens;
        for (int i = 0; i < ncols && i < 8; i++)
                snprintf(v->vals[i], sizeof(v->vals[i]), "%s", cells[i] ? cells[i] : "");
        v->n = ncols;
        return 0;
}

typedef struct {
        bool repl_slave, repl_client;
} GrantRow;

static int grant_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        GrantRow *g = ud;
        (void)lens;
        if (ncols < 1 || !cells[0])
                return 0;
        const char *c = cells[0];
        if (!strstr(c, " ON *.* "))
                return 0;
        if (strstr(c, "ALL PRIVILEGES"))
                g->repl_slave = g->repl_client = true;
        if (strstr(c, "REPLICATION SLAVE"))
                g->repl_slave = true;
        if (strstr(c, "REPLICATION CLIENT") || strstr(c, "BINLOG MONITOR") || strstr(c, "SUPER"))
                g->repl_client = true;
        return 0;
}

static int preflight(MYSQL *m, const ConnectorConf *conn, const char *ctx, CdcError *err) {
        VarRow v = {0};
        int r = mysql_conn_query(m, "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id", NULL, 0,
                                 var_row, &v, err);
        if (r < 0)
                return r;
        if (strcmp(v.vals[0], "1") != 0)
                return cdc_error(err, -EINVAL, false, "conf",
                                 "%s mysql connector '%s': the binary log is off: start the server with log_bin "
                                 "(and binlog_format = ROW)",
                                 ctx, conn->name);
        if (strcasecmp(v.vals[1], "ROW") != 0)
                return cdc_error(err, -EINVAL, false, "conf",
                                 "%s mysql connector '%s': binlog_format is %s: set binlog_format = ROW", ctx,
                                 conn->name, v.vals[1]);
        if (strcasecmp(v.vals[2], "FULL") != 0)
                return cdc_error(err, -EINVAL, false, "conf",
                                 "%s mysql connector '%s': binlog_row_image is %s: set binlog_row_image = FULL", ctx,
                                 conn->name, v.vals[2]);
        char sid[16];
        snprintf(sid, sizeof(sid), "%u", conn->server_id);
        if (conn->server_id == 0 || strcmp(sid, v.vals[3]) == 0)
                return cdc_error(err, -EINVAL, false, "conf",
                                 "%s mysql connector '%s': server_id = %u must be set and differ from the server's "
                                 "own server_id (%s) and from every replica's",
                                 ctx, conn->name, conn->server_id, v.vals[3]);
        GrantRow g = {0};
        r = mysql_conn_query(m, "SHOW GRANTS", NULL, 0, grant_row, &g, err);
        if (r < 0)
                return r;
        if (!g.repl_slave || !g.repl_client)
                return cdc_error(err, -EPERM, false, "conf",
                                 "%s mysql connector '%s': user '%s' lacks %s%s%s on *.*: GRANT REPLICATION SLAVE, "
                                 "REPLICATION CLIENT ON *.* TO it",
                                 ctx, conn->name, conn->user ? conn->user : "", g.repl_slave ? "" : "REPLICATION SLAVE",
                                 !g.repl_slave && !g.repl_client ? " and " : "",
                                 g.repl_client ? "" : "REPLICATION CLIENT (BINLOG MONITOR)");
        return 0;
}

typedef struct {
        uint64_t want_seq;
        char found[512];
        uint64_t size;
        char last[512];
        char first[512];
} LogsRow;

static int logs_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        LogsRow *l = ud;
        uint64_t seq, size;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1])
                return 0;
        if (!l->first[0])
                snprintf(l->first, sizeof(l->first), "%s", cells[0]);
        snprintf(l->last, sizeof(l->last), "%s", cells[0]);
        if (file_seq(cells[0], &seq) == 0 && seq == l->want_seq && parse_u64(cells[1], strlen(cells[1]), &size) == 0) {
                snprintf(l->found, sizeof(l->found), "%s", cells[0]);
                l->size = size;
        }
        return 0;
}

/* Finds the binlog file of a position (by its sequence suffix) among the server's binlogs;
 * without one (have false), the end of the newest binlog. */
static int resolve_start(Source *s, bool have, Position p, char *file, size_t flen, uint64_t *ret_off, CdcError *err) {
        LogsRow l = {.want_seq = p.hi};
        int r = mysql_conn_query(s->sql, "SHOW BINARY LOGS", NULL, 0, logs_row, &l, err);
        if (r < 0)
                return r;
        if (!have) {
                /* default: now, the end of the newest binlog */
                VarRow v = {0};
                r = mysql_conn_query(s->sql, "SHOW MASTER STATUS", NULL, 0, var_row, &v, err);
                if (r < 0)
                        return r;
                if (v.n < 2 || file_seq(v.vals[0], &p.hi) < 0 || parse_u64(v.vals[1], strlen(v.vals[1]), &p.lo) < 0)
                        return cdc_error(err, -EPROTO, true, "connection", "%s SHOW MASTER STATUS answered nothing",
                                         s->ctx);
                snprintf(file, flen, "%s", v.vals[0]);
                *ret_off = p.lo;
                return 0;
        }
        if (!l.found[0]) {
                /* the file's name: the server's binlog base name with the position's number */
                const char *any = l.last[0] ? l.last : "binlog.0";
                const char *dot = strrchr(any, '.');
                int blen = dot ? (int)(dot - any) : (int)strlen(any);
                return cdc_error(
                        err, -ENOENT, false, "source",
                        "%s binlog file %.*s.%06" PRIu64 " (position %" PRIu64
                        ") is no longer on the server (it has %s .. %s): it was purged before cdcsync read "
                        "it, so changes were lost for this pipeline: delete its checkpoint in the sink "
                        "(pipeline '%s' in cdcsync.checkpoints) and restart with snapshot = replace (merge for "
                        "a bidirectional pair; or start_position), and keep binlogs longer "
                        "(binlog_expire_logs_seconds)",
                        s->ctx, blen, any, p.hi, p.lo, l.first[0] ? l.first : "none", l.last[0] ? l.last : "none",
                        s->pipe && s->pipe->name ? s->pipe->name : "-");
        }
        if (p.lo > l.size)
                return cdc_error(err, -ERANGE, false, "source",
                                 "%s position %" PRIu64 " is past the end of %s (%" PRIu64 " bytes)", s->ctx, p.lo,
                                 l.found, l.size);
        snprintf(file, flen, "%s", l.found);
        *ret_off = p.lo;
        return 0;
}

typedef struct {
        char text[MYSQL_SOURCE_GTID_MAX * 48];
        bool null, toolong;
} GtidRow;

static int gtid_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        GtidRow *g = ud;
        g->null = ncols < 1 || !cells[0];
        g->toolong = !g->null && lens[0] >= sizeof(g->text);
        if (!g->null && !g->toolong) {
                memcpy(g->text, cells[0], lens[0]);
                g->text[lens[0]] = '\0';
        }
        return 0;
}

/* The GTID state at a transaction boundary of a binlog file (MariaDB's BINLOG_GTID_POS: at
 * offset 4, the state the file starts with). Returns 0, -ENOENT when the server does not know
 * it (not a boundary, file gone), -ENOSPC when it does not fit a checkpoint, or a CdcError code. */
static int gtid_at(Source *s, const char *file, uint64_t off, MysqlGtidState *ret, CdcError *err) {
        char offs[24];
        GtidRow g = {0};
        snprintf(offs, sizeof(offs), "%" PRIu64, off);
        const char *params[2] = {file, offs};
        int r = mysql_conn_query(s->sql, "SELECT BINLOG_GTID_POS(?, ?)", params, 2, gtid_row, &g, err);
        if (r < 0)
                return r;
        if (r == 0 || g.null)
                return -ENOENT;
        if (g.toolong)
                return -ENOSPC;
        r = mysql_source_gtid_parse(g.text, strlen(g.text), ret);
        return r == -EINVAL ? -ENOENT : r;
}

/* A file:pos start: the GTID state there comes from the server, so that the first checkpoint
 * already carries every domain (not only those the stream happens to show). */
static int seed_gtid(Source *s, const char *file, uint64_t off, CdcError *err) {
        MysqlGtidState st;
        int r = s->mariadb ? gtid_at(s, file, off, &st, err) : -ENOTSUP;
        if (r < 0 && r != -ENOENT && r != -ENOSPC && r != -ENOTSUP)
                return r;
        uint64_t seq = 0;
        file_seq(file, &seq);
        pthread_mutex_lock(&s->gtid_lock);
        s->gtid_known = r == 0;
        if (r == 0) {
                s->base_state = st;
                s->head_state = st;
                s->head_ok = true;
        }
        s->base_pos = (Position){.hi = seq, .lo = off};
        pthread_mutex_unlock(&s->gtid_lock);
        if (r < 0)
                log_warn(s->ctx,
                         "the server gives no GTID state for %s:%" PRIu64 " (%s): checkpoints carry the file:pos only",
                         file, off,
                         r == -ENOSPC    ? "too many domains"
                         : r == -ENOTSUP ? "not MariaDB"
                                         : "not a transaction boundary");
        return 0;
}

/* A GTID start: refuses when the oldest binlog the server kept begins after the state, i.e. the
 * transactions that follow it were purged. The checkpoint's file may be gone (rotated and purged
 * while the server still holds every transaction after the state): GTID finds the spot. */
static int resolve_gtid_start(Source *s, bool have_pos, Position p, const MysqlGtidState *want, CdcError *err) {
        LogsRow l = {.want_seq = p.hi};
        MysqlGtidState oldest = {0};
        char cp[1800] = "";
        int r = mysql_conn_query(s->sql, "SHOW BINARY LOGS", NULL, 0, logs_row, &l, err);
        if (r < 0)
                return r;
        if (mysql_source_gtid_format(want, s->connect_state, sizeof(s->connect_state)) < 0)
                return cdc_error(err, -ENOSPC, false, "internal", "%s GTID state too long", s->ctx);
        if (have_pos && !l.found[0]) {
                const char *any = l.last[0] ? l.last : "binlog.0";
                const char *dot = strrchr(any, '.');
                int blen = dot ? (int)(dot - any) : (int)strlen(any);
                snprintf(cp, sizeof(cp),
                         "binlog file %.*s.%06" PRIu64 " (position %" PRIu64
                         ") is no longer on the server (it has %s .. %s) and ",
                         blen, any, p.hi, p.lo, l.first[0] ? l.first : "none", l.last[0] ? l.last : "none");
        }
        if (l.first[0]) {
                r = gtid_at(s, l.first, 4, &oldest, err);
                if (r < 0 && r != -ENOENT && r != -ENOSPC)
                        return r;
        }
        for (int i = 0; i < oldest.n; i++) {
                const MysqlGtid *o = &oldest.g[i];
                const MysqlGtid *w = gtid_find(want, o->domain);
                if (w ? w->seq >= o->seq : o->seq == 0)
                        continue;
                char os[sizeof(s->connect_state)], ws[48] = "nothing";
                mysql_source_gtid_format(&oldest, os, sizeof(os));
                if (w)
                        snprintf(ws, sizeof(ws), "%" PRIu64, w->seq);
                return cdc_error(
                        err, -ENOENT, false, "source",
                        "%s %sthe transactions after GTID %s are no longer on the server: its oldest binlog %s "
                        "starts after %s (domain %" PRIu32 " at %" PRIu64 ", the checkpoint at %s); they were "
                        "purged before cdcsync read them, so changes were lost for this pipeline: delete its "
                        "checkpoint in the sink (pipeline '%s' in cdcsync.checkpoints) and restart with "
                        "snapshot = replace (merge for a bidirectional pair; or start_position), and keep "
                        "binlogs longer "
                        "(binlog_expire_logs_seconds)",
                        s->ctx, cp, s->connect_state[0] ? s->connect_state : "(none)", l.first, os, o->domain, o->seq,
                        ws, s->pipe && s->pipe->name ? s->pipe->name : "-");
        }
        if (cp[0])
                log_info(s->ctx,
                         "the checkpoint's %sthe server still holds every transaction after GTID %s: resuming by GTID",
                         cp, s->connect_state);
        /* the real file and offset come with the stream's first ROTATE */
        snprintf(s->file, sizeof(s->file), "%s", l.found[0] ? l.found : l.last);
        set_base(s, s->file);
        pthread_mutex_lock(&s->gtid_lock);
        s->base_state = *want;
        s->head_state = *want;
        s->head_ok = true;
        s->base_pos = p;
        s->gtid_known = true;
        pthread_mutex_unlock(&s->gtid_lock);
        s->by_gtid = true;
        s->start_pos = p;
        return 0;
}

static int snapshot(Source *s, PipelineIO *io, char *file, size_t flen, uint64_t *ret_off, CdcError *err);

/* Where streaming starts: the checkpoint's GTID state when its text has one (MariaDB GTID), else
 * its file:pos, else start_position, else a snapshot or now. */
static int choose_start(Source *s, const SourceStart *start, PipelineIO *io, uint64_t *ret_off, CdcError *err) {
        const char *text = start ? start->position_text : NULL;
        Position p = {0}, tp = {0};
        MysqlGtidState st = {0};
        bool have = start && start->have_position, thp = false, thg = false;
        int r;

        if (have)
                p = start->position;
        if (!text && !have && s->pipe && s->pipe->start_position)
                text = s->pipe->start_position;
        if (text && mysql_source_parse_checkpoint(text, &tp, &thp, &st, &thg) < 0) {
                if (!have)
                        return cdc_error(err, -EINVAL, false, "conf",
                                         "%s:%d: start_position '%s' is neither FILE:POS (e.g. mariadb-bin.000002:344) "
                                         "nor a MariaDB GTID state (e.g. gtid=0-1-57)",
                                         s->pipe && s->pipe->file ? s->pipe->file : "conf", s->pipe ? s->pipe->line : 0,
                                         text);
                log_warn(s->ctx, "checkpoint text '%s' is not a position of this source: using its file:pos", text);
                thg = false;
        }
        if (!have && thp) {
                p = tp;
                have = true;
        }
        if (thg && !s->mariadb) {
                if (!have)
                        return cdc_error(err, -EINVAL, false, "conf",
                                         "%s start position '%s' is a MariaDB GTID state, but the server is not "
                                         "MariaDB: give FILE:POS",
                                         s->ctx, text);
                thg = false;
        }
        if (thg) {
                r = resolve_gtid_start(s, have, p, &st, err);
                if (r < 0)
                        return r;
                *ret_off = 4;
                log_info(s->ctx, "streaming binlog from GTID state %s (checkpoint %s)",
                         s->connect_state[0] ? s->connect_state : "(empty: the oldest binlog)", text);
                return 0;
        }
        if (start && start->snapshot && !have)
                r = snapshot(s, io, s->file, sizeof(s->file), ret_off, err);
        else
                r = resolve_start(s, have, p, s->file, sizeof(s->file), ret_off, err);
        if (r < 0)
                return r;
        set_base(s, s->file);
        r = seed_gtid(s, s->file, *ret_off, err);
        if (r < 0)
                return r;
        log_info(s->ctx, "streaming binlog from %s:%" PRIu64, s->file, *ret_off);
        return 0;
}

/* ---- initial snapshot ---- */

/* The binlog type a column of information_schema's COLUMN_TYPE is logged as, so the snapshot's
 * columns get the class (and the text form) that the stream gives the same column. */
static uint8_t type_code_of(const char *ct) {
        static const struct {
                const char *name;
                uint8_t code;
        } map[] = {
                {"tinyint", BINLOG_T_TINY},
                {"smallint", BINLOG_T_SHORT},
                {"mediumint", BINLOG_T_INT24},
                {"int", BINLOG_T_LONG},
                {"bigint", BINLOG_T_LONGLONG},
                {"year", BINLOG_T_YEAR},
                {"decimal", BINLOG_T_NEWDECIMAL},
                {"float", BINLOG_T_FLOAT},
                {"double", BINLOG_T_DOUBLE},
                {"date", BINLOG_T_DATE},
                {"time", BINLOG_T_TIME2},
                {"datetime", BINLOG_T_DATETIME2},
                {"timestamp", BINLOG_T_TIMESTAMP2},
                {"bit", BINLOG_T_BIT},
                {"enum", BINLOG_T_ENUM},
                {"set", BINLOG_T_SET},
                {"json", BINLOG_T_JSON},
                {"char", BINLOG_T_STRING},
                {"binary", BINLOG_T_STRING},
                {"varchar", BINLOG_T_VARCHAR},
                {"varbinary", BINLOG_T_VARCHAR},
                {"tinytext", BINLOG_T_BLOB},
                {"text", BINLOG_T_BLOB},
                {"mediumtext", BINLOG_T_BLOB},
                {"longtext", BINLOG_T_BLOB},
                {"tinyblob", BINLOG_T_BLOB},
                {"blob", BINLOG_T_BLOB},
                {"mediumblob", BINLOG_T_BLOB},
                {"longblob", BINLOG_T_BLOB},
                {"geometry", BINLOG_T_GEOMETRY},
                {"point", BINLOG_T_GEOMETRY},
                {"linestring", BINLOG_T_GEOMETRY},
                {"polygon", BINLOG_T_GEOMETRY},
        };
        size_t n = strcspn(ct, "( ");
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (strlen(map[i].name) == n && strncmp(ct, map[i].name, n) == 0)
                        return map[i].code;
        return 0xff; /* unknown: TYPE_OTHER, passed on as the server prints it */
}

/* SQL text that appends `name` quoted with backticks. */
static int sql_ident(FILE *f, const char *name) {
        fputc('`', f);
        for (const char *p = name; *p; p++) {
                if (*p == '`')
                        fputc('`', f);
                fputc(*p, f);
        }
        return fputc('`', f) == EOF ? -EIO : 0;
}

/* Copies one table inside the snapshot transaction on `snap`: a TRUNCATE, then one INSERT per
 * row, read with mysql_use_result so only one row is in memory at a time. */
static int snapshot_table(Source *s, MYSQL *snap, const char *schema, const char *name, PipelineIO *io,
                          uint64_t *ret_rows, CdcError *err) {
        SchemaEntry *e = NULL;
        Table *t = NULL;
        uint8_t *codes = NULL;
        char *sql = NULL;
        size_t sqllen = 0;
        MYSQL_RES *res = NULL;
        uint64_t rows = 0;
        int r = schema_load(s, schema, name, &e, err);
        if (r < 0)
                return r;
        t = table_new(schema, name, e->ncols);
        codes = calloc((size_t)(e->ncols > 0 ? e->ncols : 1), 1);
        if (!t || !codes) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        FILE *f = open_memstream(&sql, &sqllen);
        if (!f) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        fputs("SELECT ", f);
        for (int i = 0; i < e->ncols; i++) {
                Column *c = &t->cols[i];
                BinlogColumn bc = {.type = type_code_of(e->col_types[i])};
                codes[i] = bc.type;
                c->name = strdup(e->col_names[i]);
                c->type_name = strdup(e->col_types[i]);
                c->type_oid = bc.type;
                c->typmod = -1;
                c->cls = column_class(&bc, &e->info[i]);
                c->key = e->col_key[i];
                if (!c->name || !c->type_name) {
                        fclose(f);
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        goto out;
                }
                if (i)
                        fputs(", ", f);
                /* the text forms binlog.c gives the same values */
                if (c->cls == TYPE_BYTES) {
                        fputs("CONCAT('\\\\x', LOWER(HEX(", f);
                        sql_ident(f, c->name);
                        fputs(")))", f);
                } else if (bc.type == BINLOG_T_BIT) {
                        unsigned width = 1;
                        const char *par = strchr(c->type_name, '(');
                        uint64_t w;
                        if (par && parse_u64(par + 1, strcspn(par + 1, ")"), &w) == 0 && w >= 1 && w <= 64)
                                width = (unsigned)w;
                        fputs("LPAD(BIN(", f);
                        sql_ident(f, c->name);
                        fprintf(f, "), %u, '0')", width);
                } else if (bc.type == BINLOG_T_TIMESTAMP2) {
                        fputs("CONCAT(", f);
                        sql_ident(f, c->name);
                        fputs(", '+00')", f);
                } else if (bc.type == BINLOG_T_FLOAT) {
                        /* as a double: the server prints a FLOAT rounded to 6 digits */
                        fputs("(", f);
                        sql_ident(f, c->name);
                        fputs(" + 0e0)", f);
                } else {
                        sql_ident(f, c->name);
                }
        }
        fputs(" FROM ", f);
        sql_ident(f, schema);
        fputc('.', f);
        sql_ident(f, name);
        if (fclose(f) != 0 || !sql) {
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                goto out;
        }
        t->replident = table_nkeys(t) > 0 ? 'd' : 'f';

        /* What the sink already holds (conf_pipeline_copy_mode): initial copies into an empty
         * table (the sink checks it), replace empties it first, merge keeps it (rows upserted). */
        SnapshotMode mode = s->pipe ? conf_pipeline_copy_mode(s->pipe) : SNAPSHOT_INITIAL;
        if (mode == SNAPSHOT_MERGE && table_nkeys(t) == 0) {
                log_warn(s->ctx,
                         "snapshot of %s.%s: a table without primary key cannot be merged: copied only if the "
                         "sink table is empty",
                         schema, name);
                mode = SNAPSHOT_INITIAL;
        }
        if (mode == SNAPSHOT_REPLACE)
                log_info(s->ctx, "snapshot of %s.%s: snapshot = replace: the sink table is emptied first", schema,
                         name);
        if (mode != SNAPSHOT_MERGE) {
                Event tev = {.kind = EVENT_CHANGE,
                             .change = {.op = CHANGE_TRUNCATE,
                                        .flags = mode == SNAPSHOT_REPLACE ? 0 : TRUNCATE_CHECK_EMPTY,
                                        .table = table_ref(t)}};
                if ((r = pipeline_io_emit(io, &tev)) < 0)
                        goto out;
        }
        if (mysql_real_query(snap, sql, sqllen) || !(res = mysql_use_result(snap))) {
                r = cdc_error(err, -EIO, mysql_conn_lost(mysql_errno(snap)), "query",
                              "%s snapshot of %s.%s: %s (error %u)", s->ctx, schema, name, mysql_error(snap),
                              mysql_errno(snap));
                goto out;
        }
        MYSQL_ROW row;
        while ((row = mysql_fetch_row(res))) {
                unsigned long *lens = mysql_fetch_lengths(res);
                Event ev = {.kind = EVENT_CHANGE,
                            .change = {.op = CHANGE_INSERT,
                                       .flags = mode == SNAPSHOT_MERGE ? CHANGE_IDEMPOTENT : 0,
                                       .table = table_ref(t)}};
                ev.change.after = values_new(t->ncols);
                if (!ev.change.after || !lens) {
                        change_clear(&ev.change);
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        goto out;
                }
                for (int i = 0; i < t->ncols && r == 0; i++) {
                        const char *v = row[i];
                        size_t n = lens[i];
                        char fb[40];
                        if (!v)
                                continue;
                        TypeClass cls = t->cols[i].cls;
                        if ((cls == TYPE_DATE || cls == TYPE_TIMESTAMP || cls == TYPE_TIMESTAMPTZ) && n >= 10 &&
                            (memcmp(v + 5, "00", 2) == 0 || memcmp(v + 8, "00", 2) == 0)) {
                                s->zero_dates++; /* as the stream does: no date is NULL */
                                continue;
                        }
                        if (codes[i] == BINLOG_T_FLOAT || codes[i] == BINLOG_T_DOUBLE) {
                                char *end;
                                errno = 0;
                                double d = strtod(v, &end);
                                if (errno || *end) {
                                        r = cdc_error(err, -EBADMSG, false, "data",
                                                      "%s snapshot of %s.%s: column %s: '%.40s' is not a number",
                                                      s->ctx, schema, name, t->cols[i].name, v);
                                        break;
                                }
                                binlog_format_float(d, codes[i] == BINLOG_T_FLOAT, fb, sizeof(fb));
                                v = fb;
                                n = strlen(fb);
                        }
                        if (value_set(&ev.change.after[i], v, n) < 0)
                                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                }
                if (r < 0) {
                        change_clear(&ev.change);
                        goto out;
                }
                if ((r = pipeline_io_emit(io, &ev)) < 0)
                        goto out;
                if (++rows % 100000 == 0)
                        log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows copied so far", schema, name, rows);
        }
        if (mysql_errno(snap)) {
                r = cdc_error(err, -EIO, mysql_conn_lost(mysql_errno(snap)), "query",
                              "%s snapshot of %s.%s: %s (error %u)", s->ctx, schema, name, mysql_error(snap),
                              mysql_errno(snap));
                goto out;
        }
        *ret_rows = rows;
        r = 0;
out:
        /* a stopped copy leaves rows unread: the caller closes the connection rather than
         * draining them */
        if (res && r == 0)
                mysql_free_result(res);
        else if (res)
                res->handle = NULL, mysql_free_result(res);
        free(sql);
        free(codes);
        table_unref(t);
        schema_entry_free(e);
        return r;
}

typedef struct {
        char **names; /* schema, name, schema, name, ... owned */
        int n;
        const PipelineConf *pipe;
} TableList;

static int table_list_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        TableList *l = ud;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1] ||
            (!pipeline_wants(l->pipe, cells[0], cells[1]) &&
             !(strcmp(cells[0], "cdcsync") == 0 && strcmp(cells[1], "versions") == 0)))
                return 0;
        char **n = realloc(l->names, sizeof(char *) * (size_t)(l->n + 2));
        if (!n)
                return -ENOMEM;
        l->names = n;
        l->names[l->n] = strdup(cells[0]);
        l->names[l->n + 1] = strdup(cells[1]);
        l->n += 2;
        return l->names[l->n - 2] && l->names[l->n - 1] ? 0 : -ENOMEM;
}

/* The initial snapshot: one transaction (TxnInfo.snapshot) holding a truncate and the rows of
 * every table of the pipeline, as of one InnoDB consistent snapshot; MariaDB reports the binlog
 * position that snapshot corresponds to (binlog_snapshot_file/_position), which becomes the
 * transaction's commit position and where streaming starts. No lock is taken. */
/* Opens a connection holding one InnoDB consistent snapshot; *ret_pos, sfile: the binlog position
 * it corresponds to (MariaDB's binlog_snapshot_file/_position). */
static int open_snapshot(Source *s, MYSQL **ret, Position *ret_pos, char *sfile, size_t sflen, CdcError *err) {
        MYSQL *snap = NULL;
        int r = mysql_conn_open(s->conn, NULL, &snap, err);
        if (r < 0)
                return r;
        /* mysql_conn_open pinned time_zone UTC (TIMESTAMP columns print as the stream decodes
         * them) and the sql_mode (CHAR values unpadded); a long net_write_timeout: the server
         * waits while a full queue holds the reader back */
        static const char *const setup[] = {
                "SET SESSION net_write_timeout = 86400",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        };
        for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
                if (mysql_query(snap, setup[i])) {
                        r = cdc_error(err, -EIO, mysql_conn_lost(mysql_errno(snap)), "query",
                                      "%s snapshot: %s: %s (error %u)", s->ctx, setup[i], mysql_error(snap),
                                      mysql_errno(snap));
                        mysql_close(snap);
                        return r;
                }
        if (mysql_query(snap, "SHOW STATUS LIKE 'binlog_snapshot_%'")) {
                r = cdc_error(err, -EIO, true, "query", "%s snapshot: SHOW STATUS: %s", s->ctx, mysql_error(snap));
                mysql_close(snap);
                return r;
        }
        MYSQL_RES *res = mysql_store_result(snap);
        MYSQL_ROW row;
        char spos[32] = "";
        sfile[0] = '\0';
        while (res && (row = mysql_fetch_row(res))) {
                if (row[0] && row[1] && strcmp(row[0], "Binlog_snapshot_file") == 0)
                        snprintf(sfile, sflen, "%s", row[1]);
                else if (row[0] && row[1] && strcmp(row[0], "Binlog_snapshot_position") == 0)
                        snprintf(spos, sizeof(spos), "%s", row[1]);
        }
        if (res)
                mysql_free_result(res);
        if (!sfile[0] || file_seq(sfile, &ret_pos->hi) < 0 || parse_u64(spos, strlen(spos), &ret_pos->lo) < 0) {
                mysql_close(snap);
                return cdc_error(err, -EPROTO, false, "conf",
                                 "%s snapshot: the server reports no binlog_snapshot_file/_position (is this "
                                 "MariaDB with log_bin?): set snapshot = never and start_position",
                                 s->ctx);
        }
        *ret = snap;
        return 0;
}

/* The sink records that schema.name was copied as of pos, with the copy. */
static int emit_record(Source *s, PipelineIO *io, const char *schema, const char *name, Position pos, uint64_t rows,
                       CdcError *err) {
        char table[COPIES_NAME_MAX], text[600];
        snprintf(table, sizeof(table), "%s.%s", schema, name);
        mysql_source_format_position(pos, text, sizeof(text));
        Event ev = {.kind = EVENT_CHANGE};
        if (!s->pipe || copies_record(s->pipe->name, table, pos, text, rows, &ev.change) < 0)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        return pipeline_io_emit(io, &ev);
}

static int snapshot(Source *s, PipelineIO *io, char *file, size_t flen, uint64_t *ret_off, CdcError *err) {
        MYSQL *snap = NULL;
        TableList tl = {.pipe = s->pipe};
        char sfile[512];
        Position at = {0};
        int r = open_snapshot(s, &snap, &at, sfile, sizeof(sfile), err);
        if (r < 0)
                return r;
        uint64_t seq = at.hi, off = at.lo;
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        if (s->pipe && s->pipe->bidirectional)
                r = mysql_conn_query(
                        snap,
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                        "'cdcsync' AND TABLE_NAME = 'versions'",
                        NULL, 0, table_list_row, &tl, err);
        if (r >= 0)
                r = mysql_conn_query(
                        snap,
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = "
                        "'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', "
                        "'performance_schema', 'sys', 'cdcsync') ORDER BY 1, 2",
                        NULL, 0, table_list_row, &tl, err);
        if (r == -ENOMEM)
                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        if (r < 0)
                goto out;
        log_info(s->ctx, "initial snapshot of %d tables at %s:%" PRIu64, tl.n / 2, sfile, off);
        pipeline_io_streaming(io, true);
        memset(&s->txn, 0, sizeof(s->txn));
        s->txn.commit_pos = (Position){.hi = seq, .lo = off};
        s->txn.commit_ts = (int64_t)time(NULL) * 1000000;
        s->txn.snapshot = true;
        Event bev = {.kind = EVENT_BEGIN, .txn = s->txn};
        if ((r = pipeline_io_emit(io, &bev)) < 0)
                goto out;
        for (int i = 0; i < tl.n; i += 2) {
                uint64_t rows = 0;
                r = snapshot_table(s, snap, tl.names[i], tl.names[i + 1], io, &rows, err);
                if (r == 0 && strcmp(tl.names[i], "cdcsync") != 0)
                        r = emit_record(s, io, tl.names[i], tl.names[i + 1], at, rows, err);
                if (r < 0)
                        goto out;
                log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows", tl.names[i], tl.names[i + 1], rows);
        }
        if (s->zero_dates) {
                log_warn(s->ctx, "%u zero date(s) ('0000-00-00') in the snapshot became NULL", s->zero_dates);
                s->zero_dates = 0;
        }
        Event cev = {.kind = EVENT_COMMIT, .txn = s->txn};
        if ((r = pipeline_io_emit(io, &cev)) < 0)
                goto out;
        snprintf(file, flen, "%s", sfile);
        *ret_off = off;
        r = 0;
out:
        for (int i = 0; i < tl.n; i++)
                free(tl.names[i]);
        free(tl.names);
        mysql_close(snap); /* ends the read-only transaction */
        return r;
}

/* ---- tables added to a streaming pipeline (copies.h) ---- */

static int names_add(char ***list, int *n, const char *v) {
        char **a = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
        if (!a)
                return -ENOMEM;
        *list = a;
        if (!(a[*n] = strdup(v)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

static void names_free(char ***list, int *n) {
        for (int i = 0; i < *n; i++)
                free((*list)[i]);
        free(*list);
        *list = NULL;
        *n = 0;
}

static int filter_add(Source *s, const char *table, Position pos) {
        CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
        if (!f)
                return -ENOMEM;
        s->filters = f;
        snprintf(f[s->nfilters].table, sizeof(f[s->nfilters].table), "%s", table);
        f[s->nfilters++].pos = pos;
        return 0;
}

/* `tables` is the truth (a pipeline with a checkpoint; the binlog filter is `tables` itself): a
 * listed table without a copy record is copied as of a new consistent snapshot before it streams
 * (emit_copy), the record of a table no longer listed is dropped. */
static int follow_tables(Source *s, const SourceStart *start, CdcError *err) {
        int r = 0;
        if (!s->pipe || s->pipe->all_tables || !start->registry)
                return 0;
        for (int i = 0; r == 0 && i < s->pipe->ntables; i++) {
                const char *t = s->pipe->tables[i], *dot = strchr(t, '.');
                char sch[256];
                int exists = 0;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || copies_find(start->copied, start->ncopied, sch, dot + 1))
                        continue;
                const char *params[2] = {sch, dot + 1};
                VarRow v = {0};
                int q = mysql_conn_query(
                        s->sql, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        params, 2, var_row, &v, err);
                if (q < 0) {
                        r = q;
                        break;
                }
                exists = q > 0;
                if (!exists)
                        log_warn(s->ctx,
                                 "table %s of tables does not exist: it is copied once it exists (restart or "
                                 "reload)",
                                 t);
                if (exists && names_add(&s->copy_new, &s->ncopy_new, t) < 0)
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        }
        for (int i = 0; r >= 0 && i < start->ncopied; i++) {
                const char *t = start->copied[i].table, *dot = strchr(t, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || !pipeline_wants(s->pipe, sch, dot + 1)) {
                        if (names_add(&s->copy_gone, &s->ncopy_gone, t) < 0)
                                r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                        else
                                log_info(s->ctx, "table %s left tables: no longer streamed, its copy record is dropped",
                                         t);
                } else if (position_cmp(start->copied[i].pos, start->position) > 0 &&
                           filter_add(s, t, start->copied[i].pos) < 0) {
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                }
        }
        if (r < 0)
                return r;
        if (s->ncopy_new == 0 && s->ncopy_gone == 0)
                return 0;
        char sfile[512];
        r = open_snapshot(s, &s->copy, &s->copy_pos, sfile, sizeof(sfile), err);
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                if (filter_add(s, s->copy_new[i], s->copy_pos) < 0)
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                else
                        log_info(s->ctx,
                                 "table %s has no copy in the sink: copying it as of %s:%" PRIu64
                                 " once the stream reaches there",
                                 s->copy_new[i], sfile, s->copy_pos.lo);
        }
        if (r == 0)
                s->copy_pending = true;
        return r;
}

/* Hands on the pending copy as one transaction at copy_pos: the records of removed tables
 * dropped, then each added table's rows (as snapshot = says) with its record. Called when the
 * stream reaches copy_pos, between the transactions it precedes and follows. */
static int emit_copy(Source *s, PipelineIO *io, CdcError *err) {
        TxnInfo saved = s->txn;
        int r;
        s->copy_pending = false;
        s->txn = (TxnInfo){.commit_pos = s->copy_pos, .commit_ts = (int64_t)time(NULL) * 1000000, .snapshot = true};
        Event bev = {.kind = EVENT_BEGIN, .txn = s->txn};
        r = pipeline_io_emit(io, &bev);
        for (int i = 0; r == 0 && i < s->ncopy_gone; i++) {
                Event ev = {.kind = EVENT_CHANGE};
                if (copies_forget(s->pipe->name, s->copy_gone[i], &ev.change) < 0)
                        r = cdc_error(err, -ENOMEM, true, "internal", "out of memory");
                else
                        r = pipeline_io_emit(io, &ev);
        }
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                char sch[256], tab[256];
                const char *dot = strchr(s->copy_new[i], '.');
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - s->copy_new[i]), s->copy_new[i]);
                snprintf(tab, sizeof(tab), "%s", dot + 1);
                uint64_t rows = 0;
                /* snapshot = never: the sink holds the rows already; the table streams from here */
                r = s->pipe->snapshot_mode == SNAPSHOT_NEVER ? 0 : snapshot_table(s, s->copy, sch, tab, io, &rows, err);
                if (r == 0)
                        r = emit_record(s, io, sch, tab, s->copy_pos, rows, err);
                if (r == 0)
                        log_info(s->ctx, "%s %s.%s (%" PRIu64 " rows); it streams from here on",
                                 s->pipe->snapshot_mode == SNAPSHOT_NEVER ? "snapshot = never: did not copy" : "copied",
                                 sch, tab, rows);
        }
        if (r == 0) {
                Event cev = {.kind = EVENT_COMMIT, .txn = s->txn};
                r = pipeline_io_emit(io, &cev);
        }
        mysql_close(s->copy); /* ends the read-only transaction */
        s->copy = NULL;
        s->txn = saved;
        return r;
}

/* ---- SourceOps ---- */

static Source *source_free(Source *s) {
        if (!s)
                return NULL;
        schema_cache_clear(s);
        free(s->filters);
        names_free(&s->copy_new, &s->ncopy_new);
        names_free(&s->copy_gone, &s->ncopy_gone);
        if (s->copy)
                mysql_close(s->copy);
        if (s->rpl)
                mariadb_rpl_close(s->rpl);
        if (s->repl)
                mysql_close(s->repl);
        if (s->sql)
                mysql_close(s->sql);
        pthread_mutex_destroy(&s->gtid_lock);
        free(s->hist);
        free(s);
        return NULL;
}

static int source_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        int r;
        if (!s)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        s->conn = conn;
        s->pipe = pipe;
        pthread_mutex_init(&s->gtid_lock, NULL);
        snprintf(s->ctx, sizeof(s->ctx), "[pipeline=%s source=%s]", pipe && pipe->name ? pipe->name : "-",
                 conn->name ? conn->name : "-");
        r = mysql_conn_open(conn, NULL, &s->sql, err);
        if (r < 0)
                goto out;
        r = preflight(s->sql, conn, s->ctx, err);
        if (r < 0)
                goto out;
        s->mariadb = strstr(mysql_get_server_info(s->sql), "MariaDB") != NULL;
        *ret = s;
        s = NULL;
out:
        source_free(s);
        return r;
}

static int source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Source *s;
        int r = source_open(conn, pipe, &s, err);
        if (r < 0)
                return r;
        source_free(s);
        return 0;
}

static int source_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        uint64_t off = 0;
        MARIADB_RPL_EVENT *ev = NULL;
        int r;

        r = choose_start(s, start, io, &off, err);
        if (r < 0)
                return r == -ECANCELED ? 0 : r;
        if (start && !start->snapshot && start->have_position) {
                r = follow_tables(s, start, err);
                if (r < 0)
                        return r;
        }
        r = file_seq(s->file, &s->file_seq);
        if (r < 0)
                return cdc_error(err, r, false, "source", "%s binlog file name '%s' has no number", s->ctx, s->file);

        r = mysql_conn_open(s->conn, NULL, &s->repl, err);
        if (r < 0)
                return r;
        /* Checksums: ask for them as the server writes them (the FDE then says which); the
         * heartbeat lets an idle stream come back to look at pipeline_io_stopping(). */
        r = mysql_conn_query(s->repl, "SET @master_binlog_checksum = @@global.binlog_checksum", NULL, 0, NULL, NULL,
                             err);
        if (r >= 0)
                r = mysql_conn_query(s->repl, "SET @master_heartbeat_period = " HEARTBEAT_NS, NULL, 0, NULL, NULL, err);
        if (r >= 0)
                r = mysql_conn_query(s->repl, "SET @mariadb_slave_capability = 4", NULL, 0, NULL, NULL, err);
        if (r >= 0 && s->by_gtid) {
                /* MariaDB GTID: with @slave_connect_state set, the dump starts after that state and
                 * ignores the (empty) file name; strict mode makes a state the server's binlog does
                 * not hold an error instead of a silent start elsewhere. */
                const char *params[1] = {s->connect_state};
                r = mysql_conn_query(s->repl, "SET @slave_connect_state = ?", params, 1, NULL, NULL, err);
                if (r >= 0)
                        r = mysql_conn_query(s->repl, "SET @slave_gtid_strict_mode = 1", NULL, 0, NULL, NULL, err);
        }
        if (r < 0)
                return r;
        VarRow v = {0};
        r = mysql_conn_query(s->repl, "SELECT @@global.binlog_checksum", NULL, 0, var_row, &v, err);
        if (r < 0)
                return r;
        s->checksum = strcasecmp(v.vals[0], "NONE") != 0;

        s->rpl = mariadb_rpl_init(s->repl);
        if (!s->rpl)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        unsigned int sid = s->conn->server_id;
        if (s->by_gtid)
                mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FILENAME, "", (size_t)0);
        else
                mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FILENAME, s->file, strlen(s->file));
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_START, (unsigned long)off);
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_SERVER_ID, sid);
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FLAGS, (unsigned int)MARIADB_RPL_BINLOG_SEND_ANNOTATE_ROWS);
        if (mariadb_rpl_open(s->rpl))
                return cdc_error(err, -EIO, true, "connection", "%s cannot start the binlog dump at %s:%" PRIu64 ": %s",
                                 s->ctx, s->file, off, mysql_error(s->repl));
        pipeline_io_streaming(io, false);

        while (!pipeline_io_stopping(io)) {
                ev = mariadb_rpl_fetch(s->rpl, ev);
                if (!ev) {
                        unsigned int e = mysql_errno(s->repl);
                        r = cdc_error(err, -EIO, e == 0 || mysql_conn_lost(e) || e == CR_BINLOG_ERROR, "connection",
                                      "%s binlog stream at %s ended: %s (error %u)", s->ctx, s->file,
                                      e ? mysql_error(s->repl) : "connection closed", e);
                        if (e == 1236 && s->by_gtid)
                                r = cdc_error(
                                        err, -EIO, false, "source",
                                        "%s the server cannot stream from GTID state %s: %s: its binlog does not "
                                        "hold the transactions after that state (purged, reset, or not the server "
                                        "the checkpoint came from); if they are lost, delete the pipeline's "
                                        "checkpoint in the sink (pipeline '%s' in cdcsync.checkpoints) and "
                                        "restart with snapshot = replace (merge for a bidirectional pair); after a "
                                        "failover, let this server "
                                        "catch up with them first",
                                        s->ctx, s->connect_state[0] ? s->connect_state : "(empty)",
                                        mysql_error(s->repl), s->pipe && s->pipe->name ? s->pipe->name : "-");
                        if (e == 1236) /* ER_MASTER_FATAL_ERROR_READING_BINLOG: purged, bad position */
                                err->retriable = false;
                        goto out;
                }
                /* raw_data: the network packet, the OK byte first, then the event */
                if (!ev->raw_data || ev->raw_data_size < BINLOG_HEADER_LEN)
                        continue;
                const uint8_t *raw = ev->raw_data;
                size_t rlen = ev->raw_data_size;
                if (rlen > ev->event_length && ev->event_length >= BINLOG_HEADER_LEN) {
                        raw += rlen - ev->event_length;
                        rlen = ev->event_length;
                }
                if (raw[4] == BINLOG_FORMAT_DESCRIPTION) {
                        bool cs;
                        if (binlog_read_fde_checksum(raw, rlen, &cs) == 0)
                                s->checksum = cs;
                }
                BinlogHeader h;
                r = binlog_read_header(raw, rlen, s->checksum && raw[4] != BINLOG_FORMAT_DESCRIPTION, &h);
                if (r < 0) {
                        r = cdc_error(err, r, false, "data", "%s malformed event in %s", s->ctx, s->file);
                        goto out;
                }
                r = 0;
                /* A pending copy goes before the first transaction after its position (or once an
                 * idle stream's heartbeat shows the position reached). */
                if (s->copy_pending && !s->in_txn &&
                    ((h.type == BINLOG_GTID && h.next_pos >= h.event_len &&
                      position_cmp(pos_at(s, h.next_pos - h.event_len), s->copy_pos) >= 0) ||
                     (h.type == BINLOG_HEARTBEAT && position_cmp(pos_at(s, h.next_pos), s->copy_pos) >= 0))) {
                        r = emit_copy(s, io, err);
                        if (r < 0)
                                goto out;
                }
                switch (h.type) {
                case BINLOG_ROTATE: {
                        uint64_t rpos;
                        const char *name;
                        size_t n;
                        if (binlog_read_rotate(&h, &rpos, &name, &n) < 0 || n >= sizeof(s->file)) {
                                r = cdc_error(err, -EBADMSG, false, "data", "%s malformed ROTATE event in %s", s->ctx,
                                              s->file);
                                goto out;
                        }
                        memcpy(s->file, name, n);
                        s->file[n] = '\0';
                        set_base(s, s->file);
                        if (file_seq(s->file, &s->file_seq) < 0) {
                                r = cdc_error(err, -EPROTO, false, "source", "%s binlog file name '%s' has no number",
                                              s->ctx, s->file);
                                goto out;
                        }
                        break;
                }
                case BINLOG_GTID:
                        s->cur = (MysqlGtid){.domain = ev->event.gtid.domain_id,
                                             .server_id = h.server_id,
                                             .seq = ev->event.gtid.sequence_nr};
                        s->have_cur = true;
                        start_txn(s, &h, ev->event.gtid.sequence_nr, (ev->event.gtid.flags & FL_STANDALONE) != 0);
                        break;
                case BINLOG_QUERY:
                case BINLOG_QUERY_COMPRESSED: r = on_query(s, &h, io, err); break;
                case BINLOG_XID:
                        if (s->in_txn)
                                r = end_txn(s, &h, io, err);
                        break;
                case BINLOG_TABLE_MAP: r = on_table_map(s, &h, err); break;
                case BINLOG_WRITE_ROWS_V1:
                case BINLOG_UPDATE_ROWS_V1:
                case BINLOG_DELETE_ROWS_V1:
                case BINLOG_WRITE_ROWS:
                case BINLOG_UPDATE_ROWS:
                case BINLOG_DELETE_ROWS:
                case BINLOG_WRITE_ROWS_COMPRESSED_V1:
                case BINLOG_UPDATE_ROWS_COMPRESSED_V1:
                case BINLOG_DELETE_ROWS_COMPRESSED_V1:
                case BINLOG_WRITE_ROWS_COMPRESSED:
                case BINLOG_UPDATE_ROWS_COMPRESSED:
                case BINLOG_DELETE_ROWS_COMPRESSED: r = on_rows(s, &h, io, err); break;
                case BINLOG_HEARTBEAT: {
                        Position end = pos_at(s, h.next_pos);
                        pipeline_io_report_source_end(io, end, (int64_t)h.timestamp * 1000000);
                        gtid_prune(s, pipeline_io_durable(io));
                        if (!s->in_txn) {
                                Event kev = {.kind = EVENT_KEEPALIVE, .pos = end};
                                r = pipeline_io_emit(io, &kev);
                        }
                        break;
                }
                default: break;
                }
                if (r == -ECANCELED) {
                        r = 0;
                        goto out;
                }
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        if (ev)
                mariadb_free_rpl_event(ev);
        return r;
}

/* ---- probe: where the binlog ends now (connector.h) ---- */

struct SourceProbe {
        const ConnectorConf *conn;
        MYSQL *m; /* read and write timeouts of timeout_s (mysql_conn.c) */
};

static SourceProbe *probe_free(SourceProbe *pr) {
        if (!pr)
                return NULL;
        if (pr->m)
                mysql_close(pr->m);
        free(pr);
        return NULL;
}

static int probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        (void)pipe;
        SourceProbe *pr = calloc(1, sizeof(*pr));
        if (!pr)
                return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
        pr->conn = conn;
        int r = mysql_conn_open(conn, NULL, &pr->m, err);
        if (r < 0) {
                probe_free(pr);
                return r;
        }
        *ret = pr;
        return 0;
}

/* Bytes of the binlogs from `from` (a position in an older file) to the end of the file of `to`'s
 * sequence number, by the sizes SHOW BINARY LOGS lists. */
typedef struct {
        Position from, to;
        uint64_t bytes;
} SpanRow;

static int span_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        SpanRow *sp = ud;
        uint64_t seq, size;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1] || file_seq(cells[0], &seq) < 0 ||
            parse_u64(cells[1], strlen(cells[1]), &size) < 0)
                return 0;
        if (seq < sp->from.hi || seq >= sp->to.hi)
                return 0;
        sp->bytes += seq == sp->from.hi ? (size > sp->from.lo ? size - sp->from.lo : 0) : size;
        return 0;
}

static int probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        VarRow v = {0};
        Position end;
        int r = mysql_conn_query(pr->m, "SHOW MASTER STATUS", NULL, 0, var_row, &v, err);
        if (r < 0)
                return r;
        if (v.n < 2 || file_seq(v.vals[0], &end.hi) < 0 || parse_u64(v.vals[1], strlen(v.vals[1]), &end.lo) < 0)
                return cdc_error(err, -EPROTO, true, "connection",
                                 "mysql connector '%s': SHOW MASTER STATUS answered nothing", pr->conn->name);
        *ret_end = end;
        /* In another file (a rotation, a server restart) positions cannot be subtracted. */
        if (!position_is_zero(applied) && applied.hi < end.hi) {
                SpanRow sp = {.from = applied, .to = end};
                if (mysql_conn_query(pr->m, "SHOW BINARY LOGS", NULL, 0, span_row, &sp, err) >= 0)
                        *ret_bytes = sp.bytes + end.lo;
        }
        return 0;
}

const SourceOps mysql_source_ops = {
        .type = "mysql",
        .open = source_open,
        .run = source_run,
        .format_position = mysql_source_format_position,
        .parse_position = mysql_source_parse_position,
        .check = source_check,
        .free = source_free,
        .format_checkpoint = source_format_checkpoint,
        .locate = mysql_conn_locate,
        .list_tables = mysql_conn_list_tables,
        .probe_open = probe_open,
        .probe = probe,
        .probe_free = probe_free,
};
