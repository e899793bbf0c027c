/* The shaping keys (shape.h): their parsing, and the shaped table and images of each change.
 *
 * A source table shape (a Table, immutable and shared by reference) maps to one shaped Table,
 * built the first time a change of it comes and kept while the source shape lives (a new source
 * shape is a new Table pointer: the cache holds a reference to the source one, so a pointer is
 * never reused while it is cached). The cache is small and bounded: past SHAPE_CACHE_MAX entries
 * it is emptied and rebuilt on demand. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cdcsync/hash.h"
#include "cdcsync/rowfilter.h"
#include "cdcsync/shape.h"

#define SHAPE_CACHE_MAX 1024

typedef enum { MASK_NONE = 0, MASK_SHA256, MASK_REDACT } MaskKind;

typedef struct {
        char *table; /* "schema.table" */
        char **cols; /* the columns named for it */
        int ncols;
        bool exclude; /* exclude_columns, else columns */
} ColumnRule;

typedef struct {
        char *table; /* "schema.table" */
        char *col;
        MaskKind kind;
} MaskRule;

typedef struct {
        char *table; /* "schema.table" */
        RowFilter *filter;
} WhereRule;

typedef struct {
        Table *src;             /* one reference: keeps the pointer's identity */
        Table *out;             /* one reference: the shaped table, or NULL when the table is not shaped */
        int *from;              /* per out column: its source column, -1: the soft_delete column */
        MaskKind *mask;         /* per out column */
        const WhereRule *where; /* the table's row filter, or NULL */
        int *widx;              /* its columns' indexes in src */
        bool where_keys;        /* every column of the filter is a key column */
} CacheEntry;

struct Shape {
        ColumnRule *rules;
        int nrules;
        MaskRule *masks;
        int nmasks;
        WhereRule *wheres;
        int nwheres;
        bool skip[4]; /* insert, update, delete, truncate */
        char *soft_delete;
        bool mysql_types; /* the source declares MySQL types (a shaped column is declared as one) */
        CacheEntry *cache;
        int ncache;
};

static int op_index(ChangeOp op) {
        return op == CHANGE_INSERT ? 0 : op == CHANGE_UPDATE ? 1 : op == CHANGE_DELETE ? 2 : 3;
}

/* ---- parsing ---- */

static char *trim(char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = '\0';
        return s;
}

static bool plain_name(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s == '.' || *s == ',' || *s == ':' || *s == ';' || *s == ' ' || *s == '\t')
                        return false;
        return true;
}

/* "schema.table": exactly one dot, plain names on both sides. */
static bool table_name_ok(const char *s) {
        const char *dot = strchr(s, '.');
        if (!dot || strchr(dot + 1, '.') || dot == s || !dot[1])
                return false;
        char buf[512];
        if (strlen(s) >= sizeof(buf))
                return false;
        memcpy(buf, s, (size_t)(dot - s));
        buf[dot - s] = '\0';
        return plain_name(buf) && plain_name(dot + 1);
}

static bool synced(const PipelineConf *p, const char *table) {
        if (p->all_tables)
                return true;
        for (int i = 0; i < p->ntables; i++)
                if (strcmp(p->tables[i], table) == 0)
                        return true;
        return false;
}

/* One "schema.table: col, col" of columns / exclude_columns. */
static int parse_rule(Shape *s, const PipelineConf *p, const char *key, char *item, bool exclude, char *err,
                      size_t errlen) {
        char *colon = strchr(item, ':');
        if (!colon) {
                snprintf(err, errlen, "%s: '%s' has no ':' — write SCHEMA.TABLE: column, column; ...", key, trim(item));
                return -EINVAL;
        }
        *colon = '\0';
        char *table = trim(item);
        if (!table_name_ok(table)) {
                snprintf(err, errlen, "%s: '%s' is not SCHEMA.TABLE — write SCHEMA.TABLE: column, column; ...", key,
                         table);
                return -EINVAL;
        }
        if (!synced(p, table)) {
                snprintf(err, errlen, "%s names %s, which is not in tables — add it to tables or fix the name", key,
                         table);
                return -EINVAL;
        }
        for (int i = 0; i < s->nrules; i++)
                if (strcmp(s->rules[i].table, table) == 0) {
                        snprintf(err, errlen,
                                 "%s names %s%s — give one list of the columns to keep (columns) or to drop "
                                 "(exclude_columns) per table",
                                 key, table,
                                 s->rules[i].exclude != exclude ? ", which the other of columns and exclude_columns "
                                                                  "names too"
                                                                : " twice");
                        return -EINVAL;
                }
        ColumnRule *r = realloc(s->rules, (size_t)(s->nrules + 1) * sizeof(*r));
        if (!r)
                return -ENOMEM;
        s->rules = r;
        r = &s->rules[s->nrules++];
        *r = (ColumnRule){.table = strdup(table), .exclude = exclude};
        if (!r->table)
                return -ENOMEM;
        char *save = NULL;
        for (char *c = strtok_r(colon + 1, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
                char *name = trim(c);
                if (!plain_name(name)) {
                        snprintf(err, errlen, "%s: '%s' of %s is not a column name", key, name, table);
                        return -EINVAL;
                }
                for (int i = 0; i < r->ncols; i++)
                        if (strcmp(r->cols[i], name) == 0) {
                                snprintf(err, errlen, "%s lists %s.%s twice — keep one", key, table, name);
                                return -EINVAL;
                        }
                char **cols = realloc(r->cols, (size_t)(r->ncols + 1) * sizeof(*cols));
                if (!cols)
                        return -ENOMEM;
                r->cols = cols;
                if (!(r->cols[r->ncols] = strdup(name)))
                        return -ENOMEM;
                r->ncols++;
        }
        if (r->ncols == 0) {
                snprintf(err, errlen, "%s: no column given for %s", key, table);
                return -EINVAL;
        }
        return 0;
}

static int parse_rules(Shape *s, const PipelineConf *p, const char *key, const char *value, bool exclude, char *err,
                       size_t errlen) {
        if (!value)
                return 0;
        char *copy = strdup(value), *save = NULL;
        int r = copy ? 0 : -ENOMEM;
        for (char *item = copy ? strtok_r(copy, ";", &save) : NULL; item && r == 0; item = strtok_r(NULL, ";", &save))
                if (*trim(item))
                        r = parse_rule(s, p, key, item, exclude, err, errlen);
        free(copy);
        return r;
}

/* "schema.table.column: sha256 | redact, ..." */
static int parse_masks(Shape *s, const PipelineConf *p, const char *value, char *err, size_t errlen) {
        if (!value)
                return 0;
        char *copy = strdup(value), *save = NULL;
        int r = copy ? 0 : -ENOMEM;
        for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item && r == 0; item = strtok_r(NULL, ",", &save)) {
                char *colon = strchr(item, ':');
                if (!colon) {
                        snprintf(err, errlen,
                                 "mask_columns: '%s' has no ':' — write SCHEMA.TABLE.COLUMN: sha256 | redact, ...",
                                 trim(item));
                        r = -EINVAL;
                        break;
                }
                *colon = '\0';
                char *name = trim(item), *method = trim(colon + 1);
                char *dot = strrchr(name, '.');
                if (!dot) {
                        snprintf(err, errlen, "mask_columns: '%s' is not SCHEMA.TABLE.COLUMN", name);
                        r = -EINVAL;
                        break;
                }
                *dot = '\0';
                const char *col = dot + 1;
                if (!table_name_ok(name) || !plain_name(col)) {
                        snprintf(err, errlen, "mask_columns: '%s.%s' is not SCHEMA.TABLE.COLUMN", name, col);
                        r = -EINVAL;
                        break;
                }
                MaskKind kind = strcmp(method, "sha256") == 0   ? MASK_SHA256
                                : strcmp(method, "redact") == 0 ? MASK_REDACT
                                                                : MASK_NONE;
                if (kind == MASK_NONE) {
                        snprintf(err, errlen, "mask_columns: %s.%s: '%s' is no mask — write sha256 or redact", name,
                                 col, method);
                        r = -EINVAL;
                        break;
                }
                if (!synced(p, name)) {
                        snprintf(err, errlen,
                                 "mask_columns names %s, which is not in tables — add it to tables or fix the name",
                                 name);
                        r = -EINVAL;
                        break;
                }
                for (int i = 0; i < s->nmasks; i++)
                        if (strcmp(s->masks[i].table, name) == 0 && strcmp(s->masks[i].col, col) == 0) {
                                snprintf(err, errlen, "mask_columns names %s.%s twice — keep one", name, col);
                                r = -EINVAL;
                        }
                if (r < 0)
                        break;
                MaskRule *m = realloc(s->masks, (size_t)(s->nmasks + 1) * sizeof(*m));
                if (!m) {
                        r = -ENOMEM;
                        break;
                }
                s->masks = m;
                m = &s->masks[s->nmasks++];
                *m = (MaskRule){.table = strdup(name), .col = strdup(col), .kind = kind};
                if (!m->table || !m->col)
                        r = -ENOMEM;
        }
        free(copy);
        return r;
}

static int parse_skip(Shape *s, const char *value, char *err, size_t errlen) {
        if (!value)
                return 0;
        char *copy = strdup(value), *save = NULL;
        if (!copy)
                return -ENOMEM;
        int r = 0;
        for (char *item = strtok_r(copy, ",", &save); item && r == 0; item = strtok_r(NULL, ",", &save)) {
                const char *op = trim(item);
                int i = strcmp(op, "update") == 0     ? 1
                        : strcmp(op, "delete") == 0   ? 2
                        : strcmp(op, "truncate") == 0 ? 3
                                                      : -1;
                if (i < 0) {
                        snprintf(err, errlen,
                                 "skip: '%s' is no operation that can be skipped — write delete, update or "
                                 "truncate (a list)",
                                 op);
                        r = -EINVAL;
                } else if (s->skip[i]) {
                        snprintf(err, errlen, "skip lists %s twice — keep one", op);
                        r = -EINVAL;
                } else {
                        s->skip[i] = true;
                }
        }
        free(copy);
        return r;
}

/* "schema.table: expression; schema.table: expression": a ';' inside a quoted literal or
 * name does not end an item. */
static int parse_wheres(Shape *s, const PipelineConf *p, const char *value, char *err, size_t errlen) {
        if (!value)
                return 0;
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        int r = 0;
        char *item = copy;
        while (r == 0 && item) {
                char *q = item, quote = 0;
                for (; *q && (quote || *q != ';'); q++)
                        if (quote && *q == quote)
                                quote = 0;
                        else if (!quote && (*q == '\'' || *q == '"'))
                                quote = *q;
                char *rest = *q ? q + 1 : NULL;
                *q = '\0';
                char *colon = strchr(item, ':');
                if (!*trim(item)) {
                        item = rest;
                        continue;
                }
                if (!colon) {
                        snprintf(err, errlen, "where: '%s' has no ':' — write SCHEMA.TABLE: EXPRESSION; ...",
                                 trim(item));
                        r = -EINVAL;
                        break;
                }
                *colon = '\0';
                char *table = trim(item);
                if (!table_name_ok(table)) {
                        snprintf(err, errlen, "where: '%s' is not SCHEMA.TABLE — write SCHEMA.TABLE: EXPRESSION; ...",
                                 table);
                        r = -EINVAL;
                        break;
                }
                if (!synced(p, table)) {
                        snprintf(err, errlen,
                                 "where names %s, which is not in tables — add it to tables or fix the name", table);
                        r = -EINVAL;
                        break;
                }
                for (int i = 0; i < s->nwheres && r == 0; i++)
                        if (strcmp(s->wheres[i].table, table) == 0) {
                                snprintf(err, errlen,
                                         "where names %s twice — join the two conditions with AND (or OR) in one",
                                         table);
                                r = -EINVAL;
                        }
                if (r < 0)
                        break;
                WhereRule *w = realloc(s->wheres, (size_t)(s->nwheres + 1) * sizeof(*w));
                if (!w) {
                        r = -ENOMEM;
                        break;
                }
                s->wheres = w;
                w = &s->wheres[s->nwheres++];
                *w = (WhereRule){.table = strdup(table)};
                if (!w->table) {
                        r = -ENOMEM;
                        break;
                }
                char msg[512];
                r = rowfilter_parse(trim(colon + 1), &w->filter, msg, sizeof(msg));
                if (r == -EINVAL)
                        snprintf(err, errlen,
                                 "where: the condition of %s cannot be read: %s — write comparisons (=, <>, <, <=, "
                                 ">, >=), IN (...), IS [NOT] NULL of columns and literals, joined by AND, OR, NOT",
                                 table, msg);
                item = rest;
        }
        free(copy);
        return r;
}

int shape_new(const PipelineConf *p, Shape **ret, char *err, size_t errlen) {
        *ret = NULL;
        if (!p->columns && !p->exclude_columns && !p->mask_columns && !p->skip && !p->soft_delete && !p->where)
                return 0;
        if (p->bidirectional) {
                snprintf(err, errlen,
                         "columns, exclude_columns, mask_columns, where, skip and soft_delete shape a one-way copy: "
                         "pipeline "
                         "%s has a reverse pipeline, which would write the shaped rows back — remove them or the "
                         "reverse pipeline",
                         p->name);
                return -EINVAL;
        }
        Shape *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        int r = parse_rules(s, p, "columns", p->columns, false, err, errlen);
        if (r == 0)
                r = parse_rules(s, p, "exclude_columns", p->exclude_columns, true, err, errlen);
        if (r == 0)
                r = parse_masks(s, p, p->mask_columns, err, errlen);
        if (r == 0)
                r = parse_wheres(s, p, p->where, err, errlen);
        if (r == 0)
                r = parse_skip(s, p->skip, err, errlen);
        if (r == 0 && p->soft_delete) {
                if (!plain_name(p->soft_delete)) {
                        snprintf(err, errlen, "soft_delete: '%s' is not a column name", p->soft_delete);
                        r = -EINVAL;
                } else if (s->skip[2]) {
                        snprintf(err, errlen,
                                 "soft_delete and skip = delete are both set — keep one: a delete "
                                 "either sets the column or is not applied");
                        r = -EINVAL;
                } else if (!(s->soft_delete = strdup(p->soft_delete))) {
                        r = -ENOMEM;
                }
        }
        s->mysql_types = p->source && p->source->type && strcmp(p->source->type, "mysql") == 0;
        if (r < 0) {
                if (r == -ENOMEM)
                        snprintf(err, errlen, "out of memory");
                shape_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

static void cache_clear(Shape *s) {
        for (int i = 0; i < s->ncache; i++) {
                table_unref(s->cache[i].src);
                table_unref(s->cache[i].out);
                free(s->cache[i].from);
                free(s->cache[i].mask);
                free(s->cache[i].widx);
        }
        free(s->cache);
        s->cache = NULL;
        s->ncache = 0;
}

Shape *shape_free(Shape *s) {
        if (!s)
                return NULL;
        for (int i = 0; i < s->nrules; i++) {
                free(s->rules[i].table);
                for (int j = 0; j < s->rules[i].ncols; j++)
                        free(s->rules[i].cols[j]);
                free(s->rules[i].cols);
        }
        free(s->rules);
        for (int i = 0; i < s->nmasks; i++) {
                free(s->masks[i].table);
                free(s->masks[i].col);
        }
        free(s->masks);
        for (int i = 0; i < s->nwheres; i++) {
                free(s->wheres[i].table);
                rowfilter_free(s->wheres[i].filter);
        }
        free(s->wheres);
        free(s->soft_delete);
        cache_clear(s);
        free(s);
        return NULL;
}

int shape_column_rule(const Shape *s, const char *schema, const char *name, char *const **cols, int *ncols,
                      bool *exclude) {
        size_t sl = strlen(schema);
        for (int i = 0; s && i < s->nrules; i++) {
                const char *t = s->rules[i].table;
                if (strncmp(t, schema, sl) == 0 && t[sl] == '.' && strcmp(t + sl + 1, name) == 0) {
                        *cols = s->rules[i].cols;
                        *ncols = s->rules[i].ncols;
                        *exclude = s->rules[i].exclude;
                        return 1;
                }
        }
        return 0;
}

const RowFilter *shape_where_filter(const Shape *s, const char *schema, const char *name) {
        size_t sl = strlen(schema);
        for (int i = 0; s && i < s->nwheres; i++) {
                const char *t = s->wheres[i].table;
                if (strncmp(t, schema, sl) == 0 && t[sl] == '.' && strcmp(t + sl + 1, name) == 0)
                        return s->wheres[i].filter;
        }
        return NULL;
}

int shape_mask_rule(const Shape *s, int i, const char **table, const char **col) {
        if (!s || i < 0 || i >= s->nmasks)
                return 0;
        *table = s->masks[i].table;
        *col = s->masks[i].col;
        return 1;
}

bool shape_where_uses(const Shape *s, const char *schema, const char *name, const char *col) {
        size_t sl = strlen(schema);
        for (int i = 0; s && i < s->nwheres; i++) {
                const char *t = s->wheres[i].table;
                if (strncmp(t, schema, sl) != 0 || t[sl] != '.' || strcmp(t + sl + 1, name) != 0)
                        continue;
                /* as rowfilter_bind finds them: exact, or regardless of case when written unquoted */
                for (int j = 0; j < rowfilter_ncolumns(s->wheres[i].filter); j++)
                        if (strcasecmp(rowfilter_column(s->wheres[i].filter, j), col) == 0)
                                return true;
        }
        return false;
}

/* ---- the shaped table ---- */

void shape_sha256_hex(const char *text, size_t len, char out[65]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t d[32];
        hash_sha256(text, len, d);
        for (int i = 0; i < 32; i++) {
                out[2 * i] = hex[d[i] >> 4];
                out[2 * i + 1] = hex[d[i] & 15];
        }
        out[64] = '\0';
}

static bool is_table(const char *full, const Table *t) {
        size_t sl = strlen(t->schema);
        return strncmp(full, t->schema, sl) == 0 && full[sl] == '.' && strcmp(full + sl + 1, t->name) == 0;
}

static int find_col(const Table *t, const char *name) {
        for (int i = 0; i < t->ncols; i++)
                if (strcmp(t->cols[i].name, name) == 0)
                        return i;
        return -1;
}

static int conf_error(CdcError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int conf_error(CdcError *err, const char *fmt, ...) {
        char msg[sizeof(err->message)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "%s", msg);
}

static int set_column(Column *dst, const Column *src, const char *name, const char *type_name, TypeClass cls) {
        *dst = (Column){.typmod = -1, .cls = cls, .key = src ? src->key : false};
        dst->name = strdup(name);
        dst->type_name = strdup(type_name);
        if (src && src->base_type && !(dst->base_type = strdup(src->base_type)))
                return -ENOMEM;
        if (src && strcmp(type_name, src->type_name ? src->type_name : "") == 0) {
                dst->type_oid = src->type_oid;
                dst->typmod = src->typmod;
        }
        return dst->name && dst->type_name ? 0 : -ENOMEM;
}

/* Builds the cache entry of source table t (e->out NULL: nothing shapes it). */
static int build_entry(Shape *s, Table *t, CacheEntry *e, CdcError *err) {
        char full[600];
        snprintf(full, sizeof(full), "%s.%s", t->schema, t->name);
        const ColumnRule *rule = NULL;
        for (int i = 0; i < s->nrules; i++)
                if (is_table(s->rules[i].table, t))
                        rule = &s->rules[i];
        bool masked = false;
        for (int i = 0; i < s->nmasks; i++)
                masked |= is_table(s->masks[i].table, t);
        *e = (CacheEntry){.src = table_ref(t)};
        for (int i = 0; i < s->nwheres; i++)
                if (is_table(s->wheres[i].table, t)) {
                        const RowFilter *f = s->wheres[i].filter;
                        int n = rowfilter_ncolumns(f);
                        e->widx = calloc((size_t)n + 1, sizeof(*e->widx));
                        if (!e->widx)
                                return cdc_oom(err);
                        char msg[512];
                        if (rowfilter_bind(f, t, e->widx, msg, sizeof(msg)) < 0) {
                                free(e->widx);
                                e->widx = NULL;
                                return conf_error(err, "where on %s: %s — fix the condition in the conf", full, msg);
                        }
                        e->where = &s->wheres[i];
                        e->where_keys = true;
                        for (int j = 0; j < n; j++)
                                e->where_keys &= t->cols[e->widx[j]].key;
                }
        if (!rule && !masked && !s->soft_delete)
                return 0;
        /* every column named must exist: a typo must not leave data in (or out) silently */
        for (int i = 0; rule && i < rule->ncols; i++)
                if (find_col(t, rule->cols[i]) < 0 && !(rule->exclude && t->col_list))
                        return conf_error(err,
                                          "%s names column %s of %s, which the source table does not have — fix the "
                                          "name in the conf",
                                          rule->exclude ? "exclude_columns" : "columns", rule->cols[i], full);
        for (int i = 0; i < s->nmasks; i++)
                if (is_table(s->masks[i].table, t) && find_col(t, s->masks[i].col) < 0)
                        return conf_error(err,
                                          "mask_columns names column %s of %s, which the source table does not "
                                          "have — fix the name in the conf",
                                          s->masks[i].col, full);
        if (s->soft_delete && find_col(t, s->soft_delete) >= 0)
                return conf_error(err,
                                  "soft_delete = %s: the source table %s has a column of that name — choose "
                                  "another name for the column that marks deleted rows",
                                  s->soft_delete, full);
        bool *keep = calloc((size_t)t->ncols + 1, sizeof(*keep));
        if (!keep)
                return -ENOMEM;
        int nout = 0;
        for (int i = 0; i < t->ncols; i++) {
                bool listed = false;
                for (int j = 0; rule && j < rule->ncols; j++)
                        listed |= strcmp(rule->cols[j], t->cols[i].name) == 0;
                keep[i] = !rule || listed != rule->exclude;
                if (!keep[i] && t->cols[i].key) {
                        free(keep);
                        return conf_error(err,
                                          "%s leaves out %s of %s, a key column: the sink could not find the rows "
                                          "again — keep it (mask it with sha256 to hide its values)",
                                          rule->exclude ? "exclude_columns" : "columns", t->cols[i].name, full);
                }
                nout += keep[i];
        }
        int total = nout + (s->soft_delete ? 1 : 0);
        Table *out = table_new(t->schema, t->name, total);
        e->from = calloc((size_t)total, sizeof(*e->from));
        e->mask = calloc((size_t)total, sizeof(*e->mask));
        int r = out && e->from && e->mask ? 0 : -ENOMEM;
        if (out) {
                out->rel_id = t->rel_id;
                out->replident = t->replident;
        }
        int o = 0;
        for (int i = 0; r == 0 && i < t->ncols; i++) {
                if (!keep[i])
                        continue;
                MaskKind m = MASK_NONE;
                for (int j = 0; j < s->nmasks; j++)
                        if (is_table(s->masks[j].table, t) && strcmp(s->masks[j].col, t->cols[i].name) == 0)
                                m = s->masks[j].kind;
                if (m == MASK_REDACT && t->cols[i].key) {
                        r = conf_error(err,
                                       "mask_columns: %s of %s is a key column: redacted, every row would have the "
                                       "same key — mask it with sha256",
                                       t->cols[i].name, full);
                        break;
                }
                /* a hash is 64 characters of text whatever the column held */
                r = m == MASK_SHA256 ? set_column(&out->cols[o], &t->cols[i], t->cols[i].name, "varchar(64)", TYPE_TEXT)
                                     : set_column(&out->cols[o], &t->cols[i], t->cols[i].name,
                                                  t->cols[i].type_name ? t->cols[i].type_name : "text", t->cols[i].cls);
                e->from[o] = i;
                e->mask[o] = m;
                o++;
        }
        if (r == 0 && s->soft_delete) {
                r = set_column(&out->cols[o], NULL, s->soft_delete, s->mysql_types ? "datetime(6)" : "timestamptz",
                               s->mysql_types ? TYPE_TIMESTAMP : TYPE_TIMESTAMPTZ);
                e->from[o] = -1;
        }
        free(keep);
        /* The source's type definitions and generated columns describe columns that may be gone:
         * a shaped table is created from its columns alone. */
        if (r < 0) {
                table_unref(out);
                free(e->from);
                free(e->mask);
                e->from = NULL;
                e->mask = NULL;
                return r == -ENOMEM ? cdc_oom(err) : r;
        }
        e->out = out;
        return 0;
}

static int entry_for(Shape *s, Table *t, CacheEntry **ret, CdcError *err) {
        for (int i = 0; i < s->ncache; i++)
                if (s->cache[i].src == t) {
                        *ret = &s->cache[i];
                        return 0;
                }
        if (s->ncache >= SHAPE_CACHE_MAX)
                cache_clear(s);
        CacheEntry *c = realloc(s->cache, (size_t)(s->ncache + 1) * sizeof(*c));
        if (!c)
                return cdc_oom(err);
        s->cache = c;
        CacheEntry e = {0};
        int r = build_entry(s, t, &e, err);
        if (r < 0) {
                table_unref(e.src);
                free(e.widx);
                return r;
        }
        s->cache[s->ncache] = e;
        *ret = &s->cache[s->ncache++];
        return 0;
}

/* The shaped image of img (NULL stays NULL). */
static int shape_image(const CacheEntry *e, const Value *img, Value **ret) {
        *ret = NULL;
        if (!img)
                return 0;
        Value *v = values_new(e->out->ncols);
        if (!v)
                return -ENOMEM;
        for (int o = 0; o < e->out->ncols; o++) {
                if (e->from[o] < 0)
                        continue; /* the soft_delete column: NULL while the row lives */
                const Value *x = &img[e->from[o]];
                if (x->kind == VALUE_UNCHANGED) {
                        v[o].kind = VALUE_UNCHANGED;
                } else if (x->kind == VALUE_TEXT && e->mask[o] == MASK_SHA256) {
                        char hex[65];
                        shape_sha256_hex(x->data, x->len, hex);
                        if (value_set(&v[o], hex, 64) < 0)
                                goto oom;
                } else if (x->kind == VALUE_TEXT && e->mask[o] == MASK_NONE) {
                        if (value_set(&v[o], x->data, x->len) < 0)
                                goto oom;
                }
        }
        *ret = v;
        return 0;
oom:
        values_free(v, e->out->ncols);
        return -ENOMEM;
}

/* commit_ts as the soft_delete column's text: UTC, with the offset for timestamptz. */
static void ts_text(int64_t usec, bool offset, char *out, size_t len) {
        time_t sec = (time_t)(usec / 1000000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char day[24];
        if (strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                day[0] = '\0';
        snprintf(out, len, "%s.%06d%s", day, (int)(usec % 1000000), offset ? "+00" : "");
}

/* ---- the row filter ---- */

static int undecidable(CacheEntry *e, const Change *c, CdcError *err) {
        const RowFilter *f = e->where->filter;
        const char *col = "?";
        for (int i = 0; i < rowfilter_ncolumns(f); i++)
                if (c->after && c->after[e->widx[i]].kind == VALUE_UNCHANGED)
                        col = rowfilter_column(f, i);
        return conf_error(err,
                          "where on %s.%s: an update did not carry what the condition needs (column %s, or the "
                          "row before it) — so it cannot be told whether the row enters or leaves the filter; "
                          "on PostgreSQL set ALTER TABLE %s.%s REPLICA IDENTITY FULL, so updates carry the old row",
                          c->table->schema, c->table->name, col, c->table->schema, c->table->name);
}

/* An update's new row for the condition: its unchanged (TOAST) values taken from the old row
 * where that has them. Shallow copies into tmp; returns tmp, or c->after when nothing is taken. */
static const Value *new_row(const Change *c, Value *tmp) {
        bool any = false;
        for (int i = 0; i < c->table->ncols; i++) {
                tmp[i] = c->after[i];
                if (tmp[i].kind == VALUE_UNCHANGED && c->before && c->before[i].kind != VALUE_UNCHANGED) {
                        tmp[i] = c->before[i];
                        any = true;
                }
        }
        return any ? tmp : c->after;
}

/* Fills the after image's unchanged values from the old row (deep copies). -1: one stays
 * unchanged; -ENOMEM. */
static int complete_after(Change *c) {
        for (int i = 0; i < c->table->ncols; i++) {
                if (c->after[i].kind != VALUE_UNCHANGED)
                        continue;
                const Value *b = c->before ? &c->before[i] : NULL;
                if (!b || b->kind == VALUE_UNCHANGED)
                        return -1;
                c->after[i].kind = VALUE_NULL;
                if (b->kind == VALUE_TEXT && value_set(&c->after[i], b->data, b->len) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The row filter, as PostgreSQL's publication row filters do it: an insert or delete passes when
 * its row matches; an update whose old and new rows both match stays an update, one whose old row
 * matched and new row does not becomes a delete, the other way an insert. When the old row is not
 * known (PostgreSQL's default replica identity sends only the key), an update whose new row
 * matches becomes an upsert of it, one that does not a delete of its key if the sink has it, and
 * a delete deletes the key if the sink has it: the sink ends the same either way. */
static int filter_change(CacheEntry *e, Change *c, bool full_before, CdcError *err) {
        const RowFilter *f = e->where->filter;
        const Table *t = c->table;
        /* an old image that is only the key has NULL in the other columns: only a condition on key
         * columns may be asked of it */
        bool old_known = full_before || e->where_keys;
        switch (c->op) {
        case CHANGE_INSERT: {
                int v = rowfilter_eval(f, t, e->widx, c->after);
                return v == ROWFILTER_YES ? SHAPE_KEEP : v == ROWFILTER_NO ? SHAPE_DROP : undecidable(e, c, err);
        }
        case CHANGE_DELETE: {
                int v = old_known ? rowfilter_eval(f, t, e->widx, c->before) : ROWFILTER_MISSING;
                if (v == ROWFILTER_MISSING)
                        c->flags |= CHANGE_IDEMPOTENT;
                return v == ROWFILTER_NO ? SHAPE_DROP : SHAPE_KEEP;
        }
        case CHANGE_UPDATE: break;
        default: return SHAPE_KEEP;
        }
        Value *tmp = malloc((size_t)t->ncols * sizeof(*tmp) + 1);
        if (!tmp)
                return cdc_oom(err);
        int now = rowfilter_eval(f, t, e->widx, new_row(c, tmp));
        free(tmp);
        /* no old row: a key that did not change is its own old value */
        int was = c->before && old_known ? rowfilter_eval(f, t, e->widx, c->before)
                  : e->where_keys        ? now
                                         : ROWFILTER_MISSING;
        if (now == ROWFILTER_MISSING)
                return undecidable(e, c, err);
        if (was == ROWFILTER_NO && now == ROWFILTER_NO)
                return SHAPE_DROP;
        if (was == ROWFILTER_YES && now == ROWFILTER_YES)
                return SHAPE_KEEP;
        if (now == ROWFILTER_NO) {
                /* it leaves the filter (or may have been in it): a delete of its old key */
                if (!c->before) {
                        c->before = values_new(t->ncols);
                        for (int i = 0; c->before && i < t->ncols; i++)
                                if (t->cols[i].key && c->after[i].kind == VALUE_TEXT &&
                                    value_set(&c->before[i], c->after[i].data, c->after[i].len) < 0)
                                        return cdc_oom(err);
                        if (!c->before)
                                return cdc_oom(err);
                }
                values_free(c->after, t->ncols);
                c->after = NULL;
                c->op = CHANGE_DELETE;
                if (was == ROWFILTER_MISSING)
                        c->flags |= CHANGE_IDEMPOTENT;
                return SHAPE_KEEP;
        }
        if (was == ROWFILTER_NO) {
                /* it enters the filter: an insert of the whole new row */
                int r = complete_after(c);
                if (r == -ENOMEM)
                        return cdc_oom(err);
                if (r < 0)
                        return undecidable(e, c, err);
                values_free(c->before, t->ncols);
                c->before = NULL;
                c->op = CHANGE_INSERT;
                return SHAPE_KEEP;
        }
        /* the old row is not known and the new one matches: an upsert of the whole row */
        if (!change_whole_row_same_key(c))
                return undecidable(e, c, err);
        c->flags |= CHANGE_IDEMPOTENT;
        return SHAPE_KEEP;
}

int shape_apply(Shape *s, Change *c, int64_t commit_ts, bool snapshot, CdcError *err) {
        if (!s)
                return SHAPE_KEEP;
        if (s->nwheres && c->op != CHANGE_TRUNCATE) {
                /* the filter first: an update leaving it is a delete (for skip and soft_delete too) */
                CacheEntry *w = NULL;
                int r = entry_for(s, c->table, &w, err);
                if (r < 0)
                        return r;
                /* MySQL's row images are whole (binlog_row_image = FULL), PostgreSQL's old one only
                 * with REPLICA IDENTITY FULL */
                bool full = s->mysql_types || c->table->replident == 'f';
                if (w->where && (r = filter_change(w, c, full, err)) != SHAPE_KEEP)
                        return r;
        }
        if (s->skip[op_index(c->op)] && !(snapshot && c->op == CHANGE_TRUNCATE))
                return SHAPE_DROP;
        /* a row kept after the source deleted it (skip = delete, soft_delete) may see its key come
         * back: the insert then replaces it */
        if (c->op == CHANGE_INSERT && (s->skip[2] || s->soft_delete))
                c->flags |= CHANGE_IDEMPOTENT;
        CacheEntry *e = NULL;
        int r = entry_for(s, c->table, &e, err);
        if (r < 0)
                return r;
        if (!e->out)
                return SHAPE_KEEP;
        Value *before = NULL, *after = NULL;
        if (shape_image(e, c->before, &before) < 0 || shape_image(e, c->after, &after) < 0) {
                values_free(before, e->out->ncols);
                return cdc_oom(err);
        }
        int sd = s->soft_delete ? e->out->ncols - 1 : -1;
        if (sd >= 0 && c->op == CHANGE_DELETE) {
                /* the row stays, marked: an update of the mark and of what the old image holds */
                after = before ? values_new(e->out->ncols) : NULL;
                for (int o = 0; after && o < e->out->ncols; o++) {
                        if (o == sd) {
                                char t[48];
                                ts_text(commit_ts, !s->mysql_types, t, sizeof(t));
                                if (value_set(&after[o], t, strlen(t)) < 0)
                                        goto oom;
                        } else if (before[o].kind == VALUE_TEXT) {
                                /* the key, and what a full old image (MySQL, REPLICA IDENTITY FULL) holds */
                                if (value_set(&after[o], before[o].data, before[o].len) < 0)
                                        goto oom;
                        } else if (e->mask[o] != MASK_REDACT) {
                                /* not in the old image (or NULL there): left as the sink has it */
                                after[o].kind = VALUE_UNCHANGED;
                        }
                }
                if (before && !after)
                        goto oom;
                c->op = CHANGE_UPDATE;
        }
        int ncols = c->table->ncols;
        values_free(c->before, ncols);
        values_free(c->after, ncols);
        c->before = before;
        c->after = after;
        table_unref(c->table);
        c->table = table_ref(e->out);
        return SHAPE_KEEP;
oom:
        values_free(before, e->out->ncols);
        values_free(after, e->out->ncols);
        return cdc_oom(err);
}
