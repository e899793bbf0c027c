/* Publication column lists (PostgreSQL 15+): the columns of a table the publication sends, made
 * from the pipeline's columns / exclude_columns, so the values left out never leave the source.
 *
 * A table gets no list (it is published whole, and cdcsync drops the columns itself) on a server
 * before 15, with REPLICA IDENTITY FULL (a list would have to hold every column), and in a
 * FOR ALL TABLES publication (which cannot have lists). A list always holds the replica identity's
 * columns — otherwise PostgreSQL would refuse the source's own UPDATEs and DELETEs — and the
 * columns a `where` condition of the table reads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/rowfilter.h"
#include "cdcsync/shape.h"
#include "pg_source_int.h"

static bool listed(char *const *cols, int n, const char *name) {
        for (int i = 0; i < n; i++)
                if (strcmp(cols[i], name) == 0)
                        return true;
        return false;
}

int pg_pubcols_list(Source *s, const char *table, char **ret, CdcError *err) {
        *ret = NULL;
        const char *dot = strchr(table, '.');
        if (!dot || s->pipe->all_tables || PQserverVersion(s->sql) < 150000)
                return (*ret = strdup("")) ? 0 : cdc_oom(err);
        char schema[256], msg[1024];
        snprintf(schema, sizeof(schema), "%.*s", (int)(dot - table), table);
        const char *name = dot + 1;
        Shape *sh = NULL;
        if (shape_new(s->pipe, &sh, msg, sizeof(msg)) < 0) /* check refused it already: keep the table whole */
                sh = NULL;
        char *const *cols = NULL;
        int ncols = 0;
        bool exclude = false;
        if (!shape_column_rule(sh, schema, name, &cols, &ncols, &exclude)) {
                shape_free(sh);
                return (*ret = strdup("")) ? 0 : cdc_oom(err);
        }
        const char *params[] = {schema, name};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT a.attname, quote_ident(a.attname), a.attgenerated <> '', "
                "coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]), false), c.relreplident "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND "
                "  CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END "
                "WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum",
                2, params, err);
        if (!res) {
                shape_free(sh);
                return err->code;
        }
        int n = PQntuples(res), r = 0;
        /* a table not there yet, or REPLICA IDENTITY FULL: published whole */
        if (n == 0 || PQgetvalue(res, 0, 4)[0] == 'f') {
                PQclear(res);
                shape_free(sh);
                return (*ret = strdup("")) ? 0 : cdc_oom(err);
        }
        for (int i = 0; i < ncols && r == 0; i++) {
                bool found = false;
                for (int j = 0; j < n && !found; j++)
                        found = strcmp(PQgetvalue(res, j, 0), cols[i]) == 0 && PQgetvalue(res, j, 2)[0] != 't';
                if (!found)
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                      "%s names column %s of %s, which the source table does not have (or it is a "
                                      "generated column, which is never sent) — fix the name in the conf",
                                      exclude ? "exclude_columns" : "columns", cols[i], table);
        }
        char *list = NULL;
        size_t len = 0;
        FILE *f = r == 0 ? open_memstream(&list, &len) : NULL;
        if (r == 0 && !f)
                r = cdc_oom(err);
        int kept = 0;
        for (int j = 0; j < n && r == 0; j++) {
                const char *col = PQgetvalue(res, j, 0);
                if (PQgetvalue(res, j, 2)[0] == 't')
                        continue; /* generated: never sent, and no list may name it */
                bool keep = listed(cols, ncols, col) != exclude || shape_where_uses(sh, schema, name, col);
                if (!keep && PQgetvalue(res, j, 3)[0] == 't') {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                      "%s leaves out %s of %s, a key column: the sink could not find the rows "
                                      "again — keep it (mask it with sha256 to hide its values)",
                                      exclude ? "exclude_columns" : "columns", col, table);
                        break;
                }
                if (keep)
                        fprintf(f, "%s%s", kept++ ? ", " : " (", PQgetvalue(res, j, 1));
        }
        if (f) {
                if (kept)
                        fputc(')', f);
                fclose(f);
        }
        PQclear(res);
        shape_free(sh);
        if (r < 0) {
                free(list);
                return r;
        }
        if (!list)
                return cdc_oom(err);
        *ret = list;
        return 0;
}

/* Whether schema.name has column col (nocase: regardless of case, as an unquoted name in a
 * condition is found): 1, 0, or a CdcError code. */
static int has_column(Source *s, const char *schema, const char *name, const char *col, bool nocase, CdcError *err) {
        const char *params[] = {schema, name, col};
        PGresult *res = pg_source_query(
                s, s->sql,
                nocase ? "SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
                         "c.relname = $2 AND lower(a.attname) = lower($3) AND a.attnum > 0 AND NOT a.attisdropped"
                       : "SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
                         "c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped",
                3, params, err);
        if (!res)
                return err->code;
        int n = PQntuples(res);
        PQclear(res);
        return n > 0;
}

/* check --connect: every column columns / exclude_columns / where / mask_columns names exists in its table (the
 * list is made as for the publication, which refuses a missing one), so a typo shows before the
 * first change does. */
int pg_pubcols_check(Source *s, CdcError *err) {
        char msg[1024];
        Shape *sh = NULL;
        if (s->pipe->all_tables || shape_new(s->pipe, &sh, msg, sizeof(msg)) < 0 || !sh)
                return 0; /* nothing named, or refused by check already */
        int r = 0;
        for (int i = 0; r == 0 && i < s->pipe->ntables; i++) {
                const char *t = s->pipe->tables[i], *dot = strchr(t, '.');
                char *list = NULL;
                if ((r = pg_pubcols_list(s, t, &list, err)) < 0 || !dot)
                        break;
                free(list);
                char schema[256];
                snprintf(schema, sizeof(schema), "%.*s", (int)(dot - t), t);
                const RowFilter *f = shape_where_filter(sh, schema, dot + 1);
                for (int j = 0; f && r == 0 && j < rowfilter_ncolumns(f); j++) {
                        if ((r = has_column(s, schema, dot + 1, rowfilter_column(f, j), true, err)) == 0)
                                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                              "where on %s: column %s is not in %s — fix the condition in the conf", t,
                                              rowfilter_column(f, j), t);
                        r = r < 0 ? r : 0;
                }
                const char *mt, *mc;
                for (int j = 0; r == 0 && shape_mask_rule(sh, j, &mt, &mc); j++) {
                        if (strcmp(mt, t) != 0)
                                continue;
                        if ((r = has_column(s, schema, dot + 1, mc, false, err)) == 0)
                                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                              "mask_columns names column %s of %s, which the source table does not "
                                              "have — fix the name in the conf",
                                              mc, t);
                        r = r < 0 ? r : 0;
                }
        }
        shape_free(sh);
        return r;
}
