/* Publication row filters (PostgreSQL 15+): a table's `where` condition given to the publication
 * too, so the rows it leaves out never leave the source, where that is safe.
 *
 * cdcsync still evaluates the condition itself on every change (engine/shape.c); the publication
 * only filters first. Two limits keep that exact:
 * - Every column the condition reads is a column of the table's replica identity (its primary key,
 *   or the REPLICA IDENTITY index). PostgreSQL refuses a source UPDATE or DELETE on a table whose
 *   publication filters on other columns (unless REPLICA IDENTITY FULL, which a later ALTER TABLE
 *   could take away): a filter must never make the application's own writes fail.
 * - The server decides exactly as rowfilter_eval does (rowfilter_sql): integer columns with any
 *   comparison, text and varchar of a deterministic collation and booleans with = / <> / IN,
 *   IS [NOT] NULL. Otherwise (a text ordering depends on the collation; numeric has NaN) the
 *   server could drop a row cdcsync keeps.
 * A condition outside these limits is left to cdcsync alone, as on servers before 15. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cdcsync/rowfilter.h"
#include "cdcsync/shape.h"
#include "pg_source_int.h"

typedef struct {
        Source *s;
        PGresult *res; /* attname, quote_ident(attname), in replica identity, class */
        const RowFilter *f;
        bool outside; /* a column is not in the replica identity */
} Cols;

/* The table's column matching filter column i as rowfilter_bind finds it: exact, else regardless
 * of case. */
static int find(const Cols *c, int i) {
        const char *name = rowfilter_column(c->f, i);
        for (int j = 0; j < PQntuples(c->res); j++)
                if (strcmp(PQgetvalue(c->res, j, 0), name) == 0)
                        return j;
        for (int j = 0; j < PQntuples(c->res); j++)
                if (strcasecmp(PQgetvalue(c->res, j, 0), name) == 0)
                        return j;
        return -1;
}

static const char *column(void *ud, int i, RowFilterColClass *cls) {
        Cols *c = ud;
        int j = find(c, i);
        if (j < 0)
                return NULL;
        if (PQgetvalue(c->res, j, 2)[0] != 't')
                c->outside = true;
        *cls = (RowFilterColClass)atoi(PQgetvalue(c->res, j, 3));
        return PQgetvalue(c->res, j, 1);
}

static char *literal(void *ud, const char *text) {
        Cols *c = ud;
        char *q = PQescapeLiteral(c->s->sql, text, strlen(text));
        char *r = q ? strdup(q) : NULL;
        PQfreemem(q);
        return r;
}

int pg_pubwhere(Source *s, const char *table, char **ret, CdcError *err) {
        *ret = NULL;
        const char *dot = strchr(table, '.');
        char msg[1024];
        Shape *sh = NULL;
        const RowFilter *f = NULL;
        if (dot && (size_t)(dot - table) < 256 && !s->pipe->all_tables && PQserverVersion(s->sql) >= 150000 &&
            shape_new(s->pipe, &sh, msg, sizeof(msg)) == 0 && sh) {
                char schema[256];
                snprintf(schema, sizeof(schema), "%.*s", (int)(dot - table), table);
                f = shape_where_filter(sh, schema, dot + 1);
        }
        if (!f) {
                shape_free(sh);
                return (*ret = strdup("")) ? 0 : cdc_oom(err);
        }
        char schema[256];
        snprintf(schema, sizeof(schema), "%.*s", (int)(dot - table), table);
        const char *params[] = {schema, dot + 1};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT a.attname, quote_ident(a.attname), coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts "
                "- 1]), false), "
                "CASE WHEN a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN 1 "
                "  WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype) AND coalesce((SELECT "
                "    co.collisdeterministic FROM pg_catalog.pg_collation co WHERE co.oid = a.attcollation), "
                "    true) THEN 2 "
                "  WHEN a.atttypid = 'bool'::regtype THEN 3 ELSE 0 END "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND "
                "  CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END "
                "WHERE n.nspname = $1 AND c.relname = $2 AND a.attgenerated = '' ORDER BY a.attnum",
                2, params, err);
        if (!res) {
                shape_free(sh);
                return err->code;
        }
        Cols c = {.s = s, .res = res, .f = f};
        RowFilterSqlOps ops = {.column = column, .literal = literal, .ud = &c};
        char *expr = NULL;
        int r = PQntuples(res) > 0 ? rowfilter_sql(f, &ops, &expr) : 0;
        PQclear(res);
        shape_free(sh);
        if (r < 0)
                return cdc_oom(err);
        if (r == 0 || c.outside) {
                free(expr);
                return (*ret = strdup("")) ? 0 : cdc_oom(err);
        }
        int n = asprintf(ret, " WHERE %s", expr);
        free(expr);
        if (n < 0) {
                *ret = NULL;
                return cdc_oom(err);
        }
        return 0;
}
