/* Statement texts for the PostgreSQL sink, built from a table's shape (pure). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/strbuf.h"
#include "postgres/pg_sql.h"

static void buf_ident(StrBuf *b, const char *ident) {
        strbuf_put(b, "\"", 1);
        for (const char *p = ident; *p; p++) {
                const char *q = strchr(p, '"');
                if (!q) {
                        strbuf_puts(b, p);
                        break;
                }
                strbuf_put(b, p, (size_t)(q - p));
                strbuf_put(b, "\"\"", 2);
                p = q;
        }
        strbuf_put(b, "\"", 1);
}

static void buf_qualified(StrBuf *b, const char *schema, const char *name) {
        buf_ident(b, schema);
        strbuf_put(b, ".", 1);
        buf_ident(b, name);
}

int pg_sql_quote_ident(const char *ident, char **ret) {
        StrBuf b = {0};
        buf_ident(&b, ident);
        return strbuf_finish(&b, ret);
}

int pg_sql_insert(const char *schema, const char *name, const Table *t, char **ret) {
        StrBuf b = {0};

        if (t->ncols < 0)
                return -EINVAL;
        strbuf_puts(&b, "INSERT INTO ");
        buf_qualified(&b, schema, name);
        if (t->ncols == 0) {
                strbuf_puts(&b, " DEFAULT VALUES");
                return strbuf_finish(&b, ret);
        }
        strbuf_puts(&b, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&b, ", ");
                buf_ident(&b, t->cols[i].name);
        }
        /* The source's value goes into an identity column too, also a GENERATED ALWAYS one (as
         * pg_dump --schema-only carries the source's); without one the clause changes nothing. */
        strbuf_puts(&b, ") OVERRIDING SYSTEM VALUE VALUES (");
        for (int i = 0; i < t->ncols; i++)
                strbuf_printf(&b, i ? ", $%d" : "$%d", i + 1);
        strbuf_puts(&b, ")");
        return strbuf_finish(&b, ret);
}

int pg_sql_upsert(const char *schema, const char *name, const Table *t, char **ret) {
        StrBuf b = {0};
        char *ins = NULL;
        int r, nset = 0;

        if (table_nkeys(t) == 0)
                return -EINVAL;
        r = pg_sql_insert(schema, name, t, &ins);
        if (r < 0)
                return r;
        strbuf_puts(&b, ins);
        free(ins);
        strbuf_puts(&b, " ON CONFLICT (");
        for (int i = 0, n = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                strbuf_puts(&b, n++ ? ", " : "");
                buf_ident(&b, t->cols[i].name);
        }
        strbuf_puts(&b, ") DO ");
        for (int i = 0; i < t->ncols; i++) {
                if (t->cols[i].key)
                        continue;
                strbuf_puts(&b, nset++ ? ", " : "UPDATE SET ");
                buf_ident(&b, t->cols[i].name);
                strbuf_puts(&b, " = EXCLUDED.");
                buf_ident(&b, t->cols[i].name);
        }
        if (nset == 0)
                strbuf_puts(&b, "NOTHING");
        return strbuf_finish(&b, ret);
}

/* Appends the WHERE conditions of mask, numbering parameters from *param. Returns how many
 * conditions were written. */
static int where_list(StrBuf *b, const Table *t, const uint8_t *mask, int *param) {
        int n = 0;
        for (int i = 0; i < t->ncols; i++) {
                if (!(mask[i] & (PG_SQL_WHERE | PG_SQL_WHERE_NULL)))
                        continue;
                strbuf_puts(b, n++ ? " AND " : "");
                buf_ident(b, t->cols[i].name);
                if (mask[i] & PG_SQL_WHERE_NULL)
                        strbuf_puts(b, " IS NULL");
                else
                        strbuf_printf(b, " = $%d", (*param)++);
        }
        return n;
}

/* " WHERE <conds>" or, without a key, " WHERE ctid = (SELECT ctid FROM t WHERE <conds> LIMIT 1)":
 * a key-less table may hold duplicate rows, and a change stands for exactly one of them. */
static int where_clause(StrBuf *b, const char *schema, const char *name, const Table *t, const uint8_t *mask,
                        bool by_ctid, int *param) {
        int n;
        if (by_ctid && t->ncols == 0) {
                /* rows of a table of no column are all alike */
                strbuf_puts(b, " WHERE ctid = (SELECT ctid FROM ");
                buf_qualified(b, schema, name);
                strbuf_puts(b, " LIMIT 1)");
                n = 1;
        } else if (by_ctid) {
                strbuf_puts(b, " WHERE ctid = (SELECT ctid FROM ");
                buf_qualified(b, schema, name);
                strbuf_puts(b, " WHERE ");
                n = where_list(b, t, mask, param);
                strbuf_puts(b, " LIMIT 1)");
        } else {
                strbuf_puts(b, " WHERE ");
                n = where_list(b, t, mask, param);
        }
        return n;
}

int pg_sql_update(const char *schema, const char *name, const Table *t, const uint8_t *mask, bool by_ctid, char **ret) {
        StrBuf b = {0};
        int param = 1, nset = 0;

        strbuf_puts(&b, "UPDATE ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " SET ");
        for (int i = 0; i < t->ncols; i++) {
                if (!(mask[i] & PG_SQL_SET))
                        continue;
                strbuf_puts(&b, nset++ ? ", " : "");
                buf_ident(&b, t->cols[i].name);
                strbuf_printf(&b, " = $%d", param++);
        }
        if (nset == 0 || where_clause(&b, schema, name, t, mask, by_ctid, &param) == 0) {
                free(b.data);
                return -EINVAL;
        }
        return strbuf_finish(&b, ret);
}

int pg_sql_delete(const char *schema, const char *name, const Table *t, const uint8_t *mask, bool by_ctid, char **ret) {
        StrBuf b = {0};
        int param = 1;

        strbuf_puts(&b, "DELETE FROM ");
        buf_qualified(&b, schema, name);
        if (where_clause(&b, schema, name, t, mask, by_ctid, &param) == 0) {
                free(b.data);
                return -EINVAL;
        }
        return strbuf_finish(&b, ret);
}

int pg_sql_truncate(const char *schema, const char *name, uint32_t flags, char **ret) {
        StrBuf b = {0};

        strbuf_puts(&b, "TRUNCATE ");
        buf_qualified(&b, schema, name);
        if (flags & TRUNCATE_RESTART_IDENTITY)
                strbuf_puts(&b, " RESTART IDENTITY");
        if (flags & TRUNCATE_CASCADE)
                strbuf_puts(&b, " CASCADE");
        return strbuf_finish(&b, ret);
}

const char *pg_sql_type_for_class(TypeClass cls) {
        switch (cls) {
        case TYPE_INTEGER: return "bigint";
        case TYPE_NUMERIC: return "numeric";
        case TYPE_FLOAT: return "double precision";
        case TYPE_BOOLEAN: return "boolean";
        case TYPE_BYTES: return "bytea";
        case TYPE_DATE: return "date";
        case TYPE_TIME: return "time";
        case TYPE_TIMESTAMP: return "timestamp";
        case TYPE_TIMESTAMPTZ: return "timestamptz";
        case TYPE_JSON: return "jsonb";
        case TYPE_UUID: return "uuid";
        case TYPE_ARRAY: /* element type unknown across systems: keep the text form */
        case TYPE_TEXT:
        case TYPE_OTHER:
        default: return "text";
        }
}

bool pg_sql_type_name_ok(const char *s) {
        bool quoted = false;

        if (!s || !*s || strlen(s) > 256)
                return false;
        for (const char *p = s; *p; p++) {
                char c = *p;
                if (c == '"') {
                        quoted = !quoted;
                        continue;
                }
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ' ')
                        continue;
                /* Inside a quoted identifier only name characters; outside, type punctuation. */
                if (!quoted && strchr("(),.[]", c))
                        continue;
                if (!quoted && c == '-' && p[1] >= '0' && p[1] <= '9') /* a negative scale */
                        continue;
                return false;
        }
        return !quoted;
}

int pg_sql_create_table(const char *schema, const char *name, const Table *t, bool native, char **ret) {
        StrBuf b = {0};
        int nkeys = 0, ngen = native ? t->ngen : 0, n = 0;

        if (t->ncols < 0)
                return -EINVAL;
        for (int i = 0; i < t->ncols; i++)
                if (native && !pg_sql_type_name_ok(t->cols[i].type_name))
                        return -EINVAL;
        for (int g = 0; g < ngen; g++)
                if (!pg_sql_type_name_ok(t->gen[g].type_name) || !t->gen[g].expr)
                        return -EINVAL;
        strbuf_puts(&b, "CREATE TABLE IF NOT EXISTS ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " (");
        for (int i = 0, g = 0; i <= t->ncols; i++) {
                /* The generated columns in their place: before column i. The expression is the
                 * source catalogue's own printing (pg_get_expr), one parenthesised expression. */
                for (; g < ngen && t->gen[g].pos <= i; g++) {
                        strbuf_puts(&b, n++ ? ", " : "");
                        buf_ident(&b, t->gen[g].name);
                        strbuf_puts(&b, " ");
                        strbuf_puts(&b, t->gen[g].type_name);
                        strbuf_puts(&b, " GENERATED ALWAYS AS (");
                        strbuf_puts(&b, t->gen[g].expr);
                        strbuf_puts(&b, ") STORED");
                }
                if (i == t->ncols)
                        break;
                strbuf_puts(&b, n++ ? ", " : "");
                buf_ident(&b, t->cols[i].name);
                strbuf_puts(&b, " ");
                strbuf_puts(&b, native ? t->cols[i].type_name : pg_sql_type_for_class(t->cols[i].cls));
        }
        /* REPLICA IDENTITY FULL flags every column as key: that is no primary key (NULLs). */
        for (int i = 0; i < t->ncols && t->replident != 'f'; i++) {
                if (!t->cols[i].key)
                        continue;
                strbuf_puts(&b, nkeys++ ? ", " : ", PRIMARY KEY (");
                buf_ident(&b, t->cols[i].name);
        }
        if (nkeys)
                strbuf_puts(&b, ")");
        strbuf_puts(&b, ")");
        return strbuf_finish(&b, ret);
}

int pg_sql_add_columns(const char *schema, const char *name, const Table *t, const bool *add, bool native, char **ret) {
        StrBuf b = {0};
        int n = 0;

        for (int i = 0; i < t->ncols; i++)
                if (add[i] && native && !pg_sql_type_name_ok(t->cols[i].type_name))
                        return -EINVAL;
        strbuf_puts(&b, "ALTER TABLE ");
        buf_qualified(&b, schema, name);
        for (int i = 0; i < t->ncols; i++) {
                if (!add[i])
                        continue;
                /* IF NOT EXISTS: a column added meanwhile by hand is no reason to stop */
                strbuf_puts(&b, n++ ? ", ADD COLUMN IF NOT EXISTS " : " ADD COLUMN IF NOT EXISTS ");
                buf_ident(&b, t->cols[i].name);
                strbuf_puts(&b, " ");
                strbuf_puts(&b, native ? t->cols[i].type_name : pg_sql_type_for_class(t->cols[i].cls));
        }
        if (n == 0) {
                free(b.data);
                return -EINVAL;
        }
        return strbuf_finish(&b, ret);
}

/* ---- multi-row statements ---- */

/* Whether column i travels in a multi-row UPDATE / DELETE row: set by it, or part of the key. */
static bool row_col(const Table *t, const uint8_t *mask, int i) {
        return t->cols[i].key || (mask && (mask[i] & PG_SQL_SET));
}

int pg_sql_insert_rows(const char *schema, const char *name, const Table *t, int nrows, char **ret) {
        StrBuf b = {0};
        int param = 1;

        if (t->ncols <= 0 || nrows <= 0 || (long)nrows * t->ncols > PG_SQL_MAX_PARAMS)
                return -EINVAL;
        strbuf_puts(&b, "INSERT INTO ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&b, ", ");
                buf_ident(&b, t->cols[i].name);
        }
        strbuf_puts(&b, ") OVERRIDING SYSTEM VALUE VALUES "); /* as in pg_sql_insert */
        for (int r = 0; r < nrows; r++) {
                strbuf_puts(&b, r ? ", (" : "(");
                for (int i = 0; i < t->ncols; i++)
                        strbuf_printf(&b, i ? ", $%d" : "$%d", param++);
                strbuf_puts(&b, ")");
        }
        return strbuf_finish(&b, ret);
}

int pg_sql_copy(const char *schema, const char *name, const Table *t, char **ret) {
        StrBuf b = {0};

        if (t->ncols <= 0)
                return -EINVAL;
        strbuf_puts(&b, "COPY ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&b, ", ");
                buf_ident(&b, t->cols[i].name);
        }
        strbuf_puts(&b, ") FROM STDIN");
        return strbuf_finish(&b, ret);
}

size_t pg_sql_copy_escape(const char *in, size_t len, char *out) {
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                char c = in[i], e;
                switch (c) {
                case '\\': e = '\\'; break;
                case '\t': e = 't'; break;
                case '\n': e = 'n'; break;
                case '\r': e = 'r'; break;
                default: out[o++] = c; continue;
                }
                out[o++] = '\\';
                out[o++] = e;
        }
        return o;
}

/* " FROM|USING (VALUES (NULL::int, (NULL::s.t).c, ...), (1, $1, ...), ...) AS v(n, c<i>, ...)":
 * the first row never matches (NULL key) and only gives each VALUES column the type of its table
 * column, to which the untyped parameters are then coerced as in a one-row statement. */
static int values_rows(StrBuf *b, const char *schema, const char *name, const Table *t, const uint8_t *mask,
                       int nrows) {
        int ncols = 0, param = 1;

        strbuf_puts(b, " (VALUES (NULL::int");
        for (int i = 0; i < t->ncols; i++) {
                if (!row_col(t, mask, i))
                        continue;
                strbuf_puts(b, ", (NULL::");
                buf_qualified(b, schema, name);
                strbuf_puts(b, ").");
                buf_ident(b, t->cols[i].name);
                ncols++;
        }
        strbuf_puts(b, ")");
        if (ncols == 0 || (long)nrows * ncols > PG_SQL_MAX_PARAMS)
                return -EINVAL;
        for (int r = 0; r < nrows; r++) {
                strbuf_printf(b, ", (%d", r + 1);
                for (int i = 0; i < ncols; i++)
                        strbuf_printf(b, ", $%d", param++);
                strbuf_puts(b, ")");
        }
        strbuf_puts(b, ") AS v(n");
        for (int i = 0; i < t->ncols; i++)
                if (row_col(t, mask, i))
                        strbuf_printf(b, ", c%d", i);
        strbuf_puts(b, ") WHERE ");
        return 0;
}

static void key_join(StrBuf *b, const char *schema, const char *name, const Table *t) {
        int n = 0;
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                strbuf_puts(b, n++ ? " AND " : "");
                buf_qualified(b, schema, name);
                strbuf_put(b, ".", 1);
                buf_ident(b, t->cols[i].name);
                strbuf_printf(b, " = v.c%d", i);
        }
        strbuf_puts(b, " RETURNING v.n");
}

int pg_sql_update_rows(const char *schema, const char *name, const Table *t, const uint8_t *mask, int nrows,
                       char **ret) {
        StrBuf b = {0};
        int nset = 0;

        if (nrows <= 0 || table_nkeys(t) == 0)
                return -EINVAL;
        strbuf_puts(&b, "UPDATE ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " SET ");
        /* The rows are joined on their key, so setting a key column changes nothing (and a
         * GENERATED ALWAYS identity key may only be set to DEFAULT): set the others, the key
         * only when nothing else is set. */
        bool others = false;
        for (int i = 0; i < t->ncols; i++)
                others |= (mask[i] & PG_SQL_SET) && !t->cols[i].key;
        for (int i = 0; i < t->ncols; i++) {
                if (!(mask[i] & PG_SQL_SET) || (others && t->cols[i].key))
                        continue;
                strbuf_puts(&b, nset++ ? ", " : "");
                buf_ident(&b, t->cols[i].name);
                strbuf_printf(&b, " = v.c%d", i);
        }
        strbuf_puts(&b, " FROM");
        if (nset == 0 || values_rows(&b, schema, name, t, mask, nrows) < 0) {
                free(b.data);
                return -EINVAL;
        }
        key_join(&b, schema, name, t);
        return strbuf_finish(&b, ret);
}

int pg_sql_delete_rows(const char *schema, const char *name, const Table *t, int nrows, char **ret) {
        StrBuf b = {0};

        if (nrows <= 0 || table_nkeys(t) == 0)
                return -EINVAL;
        strbuf_puts(&b, "DELETE FROM ");
        buf_qualified(&b, schema, name);
        strbuf_puts(&b, " USING");
        if (values_rows(&b, schema, name, t, NULL, nrows) < 0) {
                free(b.data);
                return -EINVAL;
        }
        key_join(&b, schema, name, t);
        return strbuf_finish(&b, ret);
}
