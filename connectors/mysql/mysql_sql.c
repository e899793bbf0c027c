/* Statement texts for the MySQL/MariaDB sink, built from a table's shape: pure, no I/O, no values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql/mysql_sql.h"

/* `name` with backticks doubled: identifiers are never pasted raw. */
void mysql_sql_ident(StrBuf *q, const char *name) {
        strbuf_put(q, "`", 1);
        for (const char *p = name; *p;) {
                size_t n = strcspn(p, "`"); /* whole stretches: every change's statement passes here */
                strbuf_put(q, p, n);
                p += n;
                if (*p == '`') {
                        strbuf_put(q, "``", 2);
                        p++;
                }
        }
        strbuf_put(q, "`", 1);
}

void mysql_sql_table(StrBuf *q, const char *schema, const char *name) {
        mysql_sql_ident(q, schema);
        strbuf_puts(q, ".");
        mysql_sql_ident(q, name);
}

/* The placeholder of a value of column c. A BIT value comes as a bit string ("0101", from a
 * MySQL source): bound as a string it would be stored as its characters' bytes, so it goes
 * through CONV to the number it spells. */
bool mysql_sql_is_bit_text(const Column *c) {
        return c->type_name && strncmp(c->type_name, "bit(", 4) == 0 && c->cls == TYPE_TEXT;
}

void mysql_sql_placeholder(StrBuf *q, const Column *c) {
        if (mysql_sql_is_bit_text(c))
                strbuf_puts(q, "CAST(CONV(?, 2, 10) AS UNSIGNED)");
        else
                strbuf_puts(q, "?");
}

/* ---- multi-row statements ---- */

/* The name of t's first key column, NULL without one. */
static const char *first_key(const Table *t) {
        const char *kname = NULL;
        for (int i = 0; i < t->ncols && !kname; i++)
                if (t->cols[i].key)
                        kname = t->cols[i].name;
        return kname;
}

static char *sql_done(StrBuf *q) {
        if (q->oom) {
                free(q->data);
                return NULL;
        }
        return q->data;
}

char *mysql_sql_multi_by_key(const char *schema, const char *name, const Table *t, int m, bool check) {
        const char *kname = first_key(t);
        StrBuf q = {0};
        if (!kname)
                return NULL;
        strbuf_puts(&q, check ? "SELECT COUNT(*) FROM " : "DELETE FROM ");
        mysql_sql_table(&q, schema, name);
        strbuf_puts(&q, " WHERE ");
        mysql_sql_ident(&q, kname);
        strbuf_puts(&q, " IN (");
        for (int i = 0; i < m; i++)
                strbuf_puts(&q, i ? ", ?" : "?");
        strbuf_puts(&q, check ? ") FOR UPDATE" : ")");
        return sql_done(&q);
}

char *mysql_sql_multi_upsert(const char *schema, const char *name, const Table *t, int m) {
        StrBuf q = {0};
        if (!first_key(t))
                return NULL;
        strbuf_puts(&q, "INSERT INTO ");
        mysql_sql_table(&q, schema, name);
        strbuf_puts(&q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&q, ", ");
                mysql_sql_ident(&q, t->cols[i].name);
        }
        strbuf_puts(&q, ") VALUES ");
        for (int r = 0; r < m; r++) {
                strbuf_puts(&q, r ? ", (" : "(");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                strbuf_puts(&q, ", ");
                        mysql_sql_placeholder(&q, &t->cols[i]);
                }
                strbuf_puts(&q, ")");
        }
        strbuf_puts(&q, " ON DUPLICATE KEY UPDATE ");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(&q, ", ");
                mysql_sql_ident(&q, t->cols[i].name);
                strbuf_puts(&q, " = VALUES(");
                mysql_sql_ident(&q, t->cols[i].name);
                strbuf_puts(&q, ")");
        }
        return sql_done(&q);
}

char *mysql_sql_load(const char *schema, const char *name, const Table *t) {
        StrBuf q = {0};
        bool set = false;
        strbuf_puts(&q, "LOAD DATA LOCAL INFILE 'cdcsync' INTO TABLE ");
        mysql_sql_table(&q, schema, name);
        strbuf_puts(&q, " CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
                        "LINES TERMINATED BY '\\n' (");
        for (int i = 0; i < t->ncols; i++) {
                char var[32];
                if (i)
                        strbuf_puts(&q, ", ");
                if (mysql_sql_is_bit_text(&t->cols[i])) {
                        snprintf(var, sizeof(var), "@cdcsync_%d", i);
                        strbuf_puts(&q, var);
                        set = true;
                } else {
                        mysql_sql_ident(&q, t->cols[i].name);
                }
        }
        strbuf_puts(&q, ")");
        for (int i = 0, n = 0; set && i < t->ncols; i++) {
                char var[64];
                if (!mysql_sql_is_bit_text(&t->cols[i]))
                        continue;
                strbuf_puts(&q, n++ ? ", " : " SET ");
                mysql_sql_ident(&q, t->cols[i].name);
                snprintf(var, sizeof(var), " = CAST(CONV(@cdcsync_%d, 2, 10) AS UNSIGNED)", i);
                strbuf_puts(&q, var);
        }
        return sql_done(&q);
}

/* ---- one change's statements ---- */

void mysql_sql_upsert(StrBuf *q, const char *schema, const char *name, const Table *t) {
        strbuf_puts(q, "INSERT INTO ");
        mysql_sql_table(q, schema, name);
        strbuf_puts(q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(q, ", ");
                mysql_sql_ident(q, t->cols[i].name);
        }
        strbuf_puts(q, ") VALUES (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(q, ", ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        strbuf_puts(q, ") ON DUPLICATE KEY UPDATE ");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        strbuf_puts(q, ", ");
                mysql_sql_ident(q, t->cols[i].name);
                strbuf_puts(q, " = VALUES(");
                mysql_sql_ident(q, t->cols[i].name);
                strbuf_puts(q, ")");
        }
}

void mysql_sql_where(StrBuf *q, const Table *t, const Value *img) {
        bool keyed = table_nkeys(t) > 0, first = true;
        strbuf_puts(q, " WHERE ");
        for (int i = 0; i < t->ncols; i++) {
                if ((keyed && !t->cols[i].key) || img[i].kind == VALUE_UNCHANGED)
                        continue;
                if (!first)
                        strbuf_puts(q, " AND ");
                first = false;
                mysql_sql_ident(q, t->cols[i].name);
                strbuf_puts(q, " <=> ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        if (!keyed)
                strbuf_puts(q, " LIMIT 1");
}

void mysql_sql_update(StrBuf *q, const char *schema, const char *name, const Table *t, const Value *after,
                      const Value *img) {
        strbuf_puts(q, "UPDATE ");
        mysql_sql_table(q, schema, name);
        strbuf_puts(q, " SET ");
        bool first = true;
        for (int i = 0; i < t->ncols; i++) {
                if (after[i].kind == VALUE_UNCHANGED)
                        continue;
                if (!first)
                        strbuf_puts(q, ", ");
                first = false;
                mysql_sql_ident(q, t->cols[i].name);
                strbuf_puts(q, " = ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        mysql_sql_where(q, t, img);
}

void mysql_sql_delete(StrBuf *q, const char *schema, const char *name, const Table *t, const Value *img) {
        strbuf_puts(q, "DELETE FROM ");
        mysql_sql_table(q, schema, name);
        mysql_sql_where(q, t, img);
}

void mysql_sql_delete_all(StrBuf *q, const char *schema, const char *name) {
        strbuf_puts(q, "DELETE FROM ");
        mysql_sql_table(q, schema, name);
}
