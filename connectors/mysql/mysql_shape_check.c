/* check --connect for a MySQL/MariaDB source: every column that columns, exclude_columns,
 * mask_columns or where names exists in its source table, and no key column is left out, so a
 * typo shows before the first change does (at run time the engine stops on it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cdcsync/rowfilter.h"
#include "cdcsync/shape.h"
#include "mysql_conn.h"
#include "mysql_source_int.h"

typedef struct {
        char **names;
        bool *key;
        int n, cap;
        bool oom;
} ColumnList;

static int column_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        ColumnList *l = ud;
        (void)lens;
        if (ncols < 2 || !cells[0])
                return 0;
        if (l->n == l->cap) {
                int cap = l->cap ? l->cap * 2 : 16;
                char **names = realloc(l->names, (size_t)cap * sizeof(*names));
                if (names)
                        l->names = names;
                bool *key = names ? realloc(l->key, (size_t)cap * sizeof(*key)) : NULL;
                if (!names || !key) {
                        l->oom = true;
                        return -ENOMEM;
                }
                l->key = key;
                l->cap = cap;
        }
        if (!(l->names[l->n] = strdup(cells[0]))) {
                l->oom = true;
                return -ENOMEM;
        }
        l->key[l->n++] = cells[1] && strcmp(cells[1], "1") == 0;
        return 0;
}

static void column_list_free(ColumnList *l) {
        for (int i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
        free(l->key);
        *l = (ColumnList){0};
}

/* The index of col in l: exact, else (nocase) regardless of case; -1 when absent. */
static int column_find(const ColumnList *l, const char *col, bool nocase) {
        for (int i = 0; i < l->n; i++)
                if (strcmp(l->names[i], col) == 0)
                        return i;
        for (int i = 0; nocase && i < l->n; i++)
                if (strcasecmp(l->names[i], col) == 0)
                        return i;
        return -1;
}

/* A column a key names that the table lacks: the message says which key, and the name as the
 * server spells it when only the case differs (the lists are matched exactly). */
static int missing(CdcError *err, const char *key, const char *col, const char *table, const ColumnList *l) {
        int i = column_find(l, col, true);
        if (i >= 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "%s names column %s of %s, which the source table spells %s — write it so in the conf",
                                 key, col, table, l->names[i]);
        return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                         "%s names column %s of %s, which the source table does not have — fix the name in the conf",
                         key, col, table);
}

static int check_table(const Shape *sh, const char *table, const ColumnList *l, CdcError *err) {
        const char *dot = strchr(table, '.');
        char schema[256];
        snprintf(schema, sizeof(schema), "%.*s", (int)(dot - table), table);
        const char *name = dot + 1;
        char *const *cols = NULL;
        int ncols = 0;
        bool exclude = false;
        if (shape_column_rule(sh, schema, name, &cols, &ncols, &exclude)) {
                const char *key = exclude ? "exclude_columns" : "columns";
                for (int i = 0; i < ncols; i++)
                        if (column_find(l, cols[i], false) < 0)
                                return missing(err, key, cols[i], table, l);
                for (int j = 0; j < l->n; j++) {
                        bool listed = false;
                        for (int i = 0; i < ncols && !listed; i++)
                                listed = strcmp(cols[i], l->names[j]) == 0;
                        if (l->key[j] && listed == exclude)
                                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                                 "%s leaves out %s of %s, a primary key column: the sink could not "
                                                 "find the rows again — keep it (mask it with sha256 to hide its "
                                                 "values)",
                                                 key, l->names[j], table);
                }
        }
        const RowFilter *f = shape_where_filter(sh, schema, name);
        for (int j = 0; f && j < rowfilter_ncolumns(f); j++)
                if (column_find(l, rowfilter_column(f, j), true) < 0)
                        return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                         "where on %s: column %s is not in %s — fix the condition in the conf", table,
                                         rowfilter_column(f, j), table);
        const char *mt, *mc;
        for (int i = 0; shape_mask_rule(sh, i, &mt, &mc); i++)
                if (strcmp(mt, table) == 0 && column_find(l, mc, false) < 0)
                        return missing(err, "mask_columns", mc, table, l);
        return 0;
}

int mysql_source_shape_check(MYSQL *m, const PipelineConf *pipe, CdcError *err) {
        char msg[1024];
        Shape *sh = NULL;
        if (!pipe || pipe->all_tables || shape_new(pipe, &sh, msg, sizeof(msg)) < 0 || !sh)
                return 0; /* nothing named, or refused by check already */
        int r = 0;
        for (int i = 0; r == 0 && i < pipe->ntables; i++) {
                const char *t = pipe->tables[i], *dot = strchr(t, '.');
                if (!dot || (size_t)(dot - t) >= 256)
                        continue;
                char schema[256];
                snprintf(schema, sizeof(schema), "%.*s", (int)(dot - t), t);
                const char *params[] = {schema, dot + 1};
                ColumnList l = {0};
                r = mysql_conn_query(m,
                                     "SELECT COLUMN_NAME, COLUMN_KEY = 'PRI' FROM information_schema.COLUMNS "
                                     "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                                     params, 2, column_row, &l, err);
                if (l.oom)
                        r = cdc_oom(err);
                else if (r > 0) /* no rows: a missing table, which the tables check names */
                        r = check_table(sh, t, &l, err);
                column_list_free(&l);
        }
        shape_free(sh);
        return r;
}
