/* The PostgreSQL source's relations: the shapes of source tables, read from the catalogue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "postgres/pg_source_int.h"
#include "postgres/pg_typedef.h"
#include "postgres/pgtypes.h"

/* ---- relations ---- */

Table *pg_rel_lookup(Source *s, uint32_t rel_id) {
        for (size_t i = 0; i < s->nrels; i++)
                if (s->rels[i].rel_id == rel_id)
                        return s->rels[i].table;
        return NULL;
}

static int rel_store(Source *s, Table *t) {
        for (size_t i = 0; i < s->nrels; i++)
                if (s->rels[i].rel_id == t->rel_id) {
                        table_unref(s->rels[i].table);
                        s->rels[i].table = t;
                        return 0;
                }
        if (s->nrels == s->caprels) {
                size_t cap = s->caprels ? s->caprels * 2 : 16;
                RelEntry *n = realloc(s->rels, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                s->rels = n;
                s->caprels = cap;
        }
        s->rels[s->nrels++] = (RelEntry){t->rel_id, t};
        return 0;
}

/* The user-defined types the table's columns need (Table.types), for a PostgreSQL sink that
 * creates the table. */
static int describe_types(Source *s, Table *t, const char *relid, CdcError *err) {
        const char *params[] = {relid};
        PGresult *res = pg_source_query(s, s->sql, pg_typedef_needed_sql, 1, params, err);
        if (!res)
                return err->code;
        int n = PQntuples(res);
        t->types = calloc((size_t)n + 1, sizeof(*t->types));
        bool oom = !t->types;
        for (int r = 0; !oom && r < n; r++) {
                TypeDef *td = &t->types[t->ntypes++];
                td->schema = strdup(PQgetvalue(res, r, 0));
                td->name = strdup(PQgetvalue(res, r, 1));
                td->column = strdup(PQgetvalue(res, r, 2));
                td->ddl = PQgetisnull(res, r, 3) ? NULL : strdup(PQgetvalue(res, r, 3));
                td->why = PQgetisnull(res, r, 4) ? NULL : strdup(PQgetvalue(res, r, 4));
                oom = !td->schema || !td->name || !td->column || (!td->ddl && !td->why);
        }
        PQclear(res);
        return oom ? cdc_oom(err) : 0;
}

/* Names every column's declared type from its (oid, typmod) as the Relation message (or the
 * snapshot's catalogue read) gave them: format_type(1700, 655366) is numeric(10,2) whether or not
 * the table still exists, so a Relation message decoded after its table was dropped, or after a
 * column's type was altered, still names the type the rows were written with. A type gone since
 * ("???") is left unnamed for the catalogue or the built-in names. */
static int name_types(Source *s, Table *t, CdcError *err) {
        if (t->ncols == 0)
                return 0;
        size_t cap = (size_t)t->ncols * 12 + 3;
        char *oids = malloc(cap), *mods = malloc(cap);
        if (!oids || !mods) {
                free(oids);
                free(mods);
                return cdc_oom(err);
        }
        size_t no = 0, nm = 0;
        oids[no++] = '{';
        mods[nm++] = '{';
        for (int c = 0; c < t->ncols; c++) {
                no += (size_t)snprintf(oids + no, cap - no, "%s%u", c ? "," : "", t->cols[c].type_oid);
                nm += (size_t)snprintf(mods + nm, cap - nm, "%s%d", c ? "," : "", (int)t->cols[c].typmod);
        }
        snprintf(oids + no, cap - no, "}");
        snprintf(mods + nm, cap - nm, "}");
        const char *params[] = {oids, mods};
        PGresult *res = pg_source_query(s, s->sql,
                                        "SELECT pg_catalog.format_type(o, m) FROM "
                                        "unnest($1::pg_catalog.oid[], $2::int[]) WITH ORDINALITY AS u(o, m, n) "
                                        "ORDER BY n",
                                        2, params, err);
        free(oids);
        free(mods);
        if (!res)
                return err->code;
        bool oom = false;
        for (int c = 0; c < t->ncols && c < PQntuples(res); c++) {
                if (PQgetisnull(res, c, 0) || strstr(PQgetvalue(res, c, 0), "???"))
                        continue;
                free(t->cols[c].type_name);
                oom |= !(t->cols[c].type_name = strdup(PQgetvalue(res, c, 0)));
        }
        PQclear(res);
        return oom ? cdc_oom(err) : 0;
}

/* Fills the declared type names (name_types), the primary key, the generated columns and the
 * user-defined types from the catalogue (the Relation message has only OIDs and the replica
 * identity). The key is found by column name, falling back to the replica identity. A column of a
 * domain gets its base type's name and class (what another system maps), an array of a
 * user-defined type the array class. */
int pg_rel_describe_table(Source *s, Table *t, CdcError *err) {
        int tr = name_types(s, t, err);
        if (tr < 0)
                return tr;
        char relid[16];
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        const char *params[] = {relid};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
                "coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]), false), a.attgenerated <> '', "
                "pg_catalog.pg_get_expr(d.adbin, d.adrelid), "
                "CASE WHEN b.oid <> a.atttypid THEN pg_catalog.format_type(b.oid, b.typmod) END, b.oid, "
                "bt.typtype = 'b' AND bt.typelem <> 0 AND bt.typlen = -1, "
                "tn.nspname NOT IN ('pg_catalog', 'information_schema'), a.atttypid "
                "FROM pg_catalog.pg_attribute a "
                "JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
                "JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace "
                "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
                "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "  AND a.attgenerated <> '' "
                /* a domain's base type, through domains of domains */
                "CROSS JOIN LATERAL (WITH RECURSIVE b(oid, typmod, lvl) AS (SELECT a.atttypid, a.atttypmod, 0 "
                "  UNION ALL SELECT t.typbasetype, t.typtypmod, b.lvl + 1 FROM b JOIN pg_catalog.pg_type t "
                "  ON t.oid = b.oid WHERE t.typtype = 'd' AND b.lvl < 32) "
                "  SELECT oid, typmod FROM b ORDER BY lvl DESC LIMIT 1) b "
                "JOIN pg_catalog.pg_type bt ON bt.oid = b.oid "
                "WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                1, params, err);
        if (!res)
                return err->code;
        int nrows = PQntuples(res), nreg = 0;
        bool have_pk = false, user_types = false, oom = false;
        for (int r = 0; r < nrows; r++) {
                have_pk |= strcmp(PQgetvalue(res, r, 2), "t") == 0;
                user_types |= strcmp(PQgetvalue(res, r, 8), "t") == 0;
                t->ngen += strcmp(PQgetvalue(res, r, 3), "t") == 0;
        }
        if (t->ngen > 0) {
                t->gen = calloc((size_t)t->ngen, sizeof(*t->gen));
                if (!t->gen) {
                        t->ngen = 0;
                        oom = true;
                }
        }
        for (int r = 0, g = 0; !oom && r < nrows; r++) {
                if (strcmp(PQgetvalue(res, r, 3), "t") != 0) {
                        nreg++;
                        continue;
                }
                GenColumn *gc = &t->gen[g++];
                gc->name = strdup(PQgetvalue(res, r, 0));
                gc->type_name = strdup(PQgetvalue(res, r, 1));
                gc->expr = strdup(PQgetvalue(res, r, 4));
                gc->pos = nreg;
                oom = !gc->name || !gc->type_name || !gc->expr;
        }
        /* fewer columns than the catalogue has: the publication's column list left some out (or,
         * for a moment, a column was added since the relation was described) */
        t->col_list = t->ncols < nreg;
        for (int c = 0; !oom && c < t->ncols; c++) {
                Column *col = &t->cols[c];
                for (int r = 0; r < nrows; r++) {
                        if (strcmp(PQgetvalue(res, r, 0), col->name) != 0 || strcmp(PQgetvalue(res, r, 3), "t") == 0)
                                continue;
                        if (!col->type_name)
                                col->type_name = strdup(PQgetvalue(res, r, 1));
                        if (have_pk)
                                col->key = strcmp(PQgetvalue(res, r, 2), "t") == 0;
                        /* The catalogue's type facts hold only for the type the rows carry (not
                         * for a column altered since). */
                        bool same_type = strtoul(PQgetvalue(res, r, 9), NULL, 10) == col->type_oid;
                        if (same_type && col->cls == TYPE_OTHER && strcmp(PQgetvalue(res, r, 8), "t") == 0) {
                                uint32_t base = (uint32_t)strtoul(PQgetvalue(res, r, 6), NULL, 10);
                                col->cls = strcmp(PQgetvalue(res, r, 7), "t") == 0 ? TYPE_ARRAY : pgtypes_class(base);
                                if (!PQgetisnull(res, r, 5) && !(col->base_type = strdup(PQgetvalue(res, r, 5))))
                                        oom = true;
                        }
                }
                if (!col->type_name) {
                        const char *bi = pgtypes_name(col->type_oid);
                        col->type_name = strdup(bi ? bi : "text");
                }
                oom |= !col->type_name;
        }
        PQclear(res);
        if (oom)
                return cdc_oom(err);
        return user_types ? describe_types(s, t, relid, err) : 0;
}

int pg_rel_on_relation(Source *s, const PgoutputMsg *m, CdcError *err) {
        Table *t = table_new(m->u.relation.nspname, m->u.relation.relname, m->u.relation.natts);
        if (!t)
                return cdc_oom(err);
        t->rel_id = m->u.relation.rel_id;
        t->replident = m->u.relation.replident;
        for (int i = 0; i < t->ncols; i++) {
                const PgoutputAttr *a = &m->u.relation.attrs[i];
                t->cols[i].name = strdup(a->name);
                t->cols[i].type_oid = a->type_oid;
                t->cols[i].typmod = a->typmod;
                t->cols[i].cls = pgtypes_class(a->type_oid);
                /* With REPLICA IDENTITY FULL every column carries the identity flag. */
                t->cols[i].key = (a->flags & 1) && t->replident != 'f';
                if (!t->cols[i].name) {
                        table_unref(t);
                        return cdc_oom(err);
                }
        }
        int r = pg_rel_describe_table(s, t, err);
        if (r == 0 && (r = rel_store(s, t)) < 0)
                cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory");
        if (r < 0)
                table_unref(t);
        return r;
}
