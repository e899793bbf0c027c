/* The MySQL/MariaDB source's schema cache: table shapes from information_schema, matched to TABLE_MAP events. */
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

#include "mysql/mysql_source_int.h"

/* ---- schema cache ---- */

bool mysql_source_pipeline_wants(const PipelineConf *p, const char *schema, const char *table) {
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

void mysql_source_schema_entry_free(SchemaEntry *e) {
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

void mysql_source_schema_cache_clear(Source *s) {
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
                mysql_source_schema_entry_free(e);
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

int mysql_source_schema_load(Source *s, const char *schema, const char *name, SchemaEntry **ret, CdcError *err) {
        SchemaEntry *e = calloc(1, sizeof(*e));
        int r;
        if (!e)
                return cdc_oom(err);
        e->schema = strdup(schema);
        e->name = strdup(name);
        if (!e->schema || !e->name) {
                r = cdc_oom(err);
                goto out;
        }
        /* bidirectional sync also reads the reverse sink's version tags (engine/rowstate.c) */
        e->wanted =
                mysql_source_pipeline_wants(s->pipe, schema, name) ||
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
                r = cdc_oom(err);
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
                                r = cdc_error(err, r, false, CDC_ERR_SCHEMA, "cannot read the members of %s.%s.%s",
                                              schema, name, e->col_names[i]);
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
        mysql_source_schema_entry_free(e);
        return r;
}

/* A column's class as sinks should see it: a BIGINT UNSIGNED goes up to 2^64-1, past every
 * other system's 64-bit integer, so it is a NUMERIC (an integer text all the same). */
TypeClass mysql_source_column_class(const BinlogColumn *col, const BinlogColumnInfo *info) {
        TypeClass cls = binlog_type_class(col, info);
        if (cls == TYPE_INTEGER && col->type == BINLOG_T_LONGLONG && info && info->is_unsigned)
                return TYPE_NUMERIC;
        return cls;
}

/* The binlog type a column of information_schema's COLUMN_TYPE is logged as, so the snapshot's
 * columns get the class (and the text form) that the stream gives the same column. */
uint8_t mysql_source_type_code_of(const char *ct) {
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
                if (type_family(tm->cols[i].type) != type_family(mysql_source_type_code_of(e->col_types[i])))
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
                return cdc_error(err, -EPROTO, false, CDC_ERR_SCHEMA,
                                 "%s table %s.%s has %u columns in the binlog but %d in information_schema now: "
                                 "its schema changed after this binlog position; restart the pipeline from a "
                                 "snapshot (delete its checkpoint) or from a position after the change",
                                 s->ctx, e->schema, e->name, tm->ncols, e->ncols);
        Table *t = table_new(e->schema, e->name, ncols);
        if (!t)
                return cdc_oom(err);
        for (int i = 0; i < ncols; i++) {
                Column *c = &t->cols[i];
                c->name = strdup(e->col_names[i]);
                c->type_name = strdup(e->col_types[i]);
                if (!c->name || !c->type_name) {
                        table_unref(t);
                        return cdc_oom(err);
                }
                c->type_oid = tm->cols[i].type;
                c->typmod = (int32_t)tm->cols[i].meta;
                c->cls = mysql_source_column_class(&tm->cols[i], &e->info[i]);
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

int mysql_source_on_table_map(Source *s, const BinlogHeader *h, CdcError *err) {
        BinlogTableMap *tm;
        int r = binlog_read_table_map(h, &tm);
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_DATA, "%s malformed TABLE_MAP event in %s before %u", s->ctx,
                                 s->file, h->next_pos);
        SchemaEntry *e = s->schemas;
        while (e && (strcmp(e->schema, tm->schema) != 0 || strcmp(e->name, tm->table) != 0))
                e = e->next;
        if (!e) {
                r = mysql_source_schema_load(s, tm->schema, tm->table, &e, err);
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
                        return cdc_oom(err);
                }
                m->next = s->maps;
                s->maps = m;
        }
        binlog_table_map_free(m->tm);
        m->tm = tm;
        m->se = e;
        return 0;
}
