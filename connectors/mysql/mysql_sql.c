/* Statement texts for the MySQL/MariaDB sink, built from a table's shape: pure, no I/O, no values. */
#include <stdlib.h>
#include <string.h>

#include "mysql/mysql_sql.h"

void mysql_sql_put(MysqlSql *q, const char *s, size_t n) {
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

void mysql_sql_add(MysqlSql *q, const char *s) {
        mysql_sql_put(q, s, strlen(s));
}

/* `name` with backticks doubled: identifiers are never pasted raw. */
void mysql_sql_ident(MysqlSql *q, const char *name) {
        mysql_sql_put(q, "`", 1);
        for (const char *p = name; *p;) {
                size_t n = strcspn(p, "`"); /* whole stretches: every change's statement passes here */
                mysql_sql_put(q, p, n);
                p += n;
                if (*p == '`') {
                        mysql_sql_put(q, "``", 2);
                        p++;
                }
        }
        mysql_sql_put(q, "`", 1);
}

void mysql_sql_table(MysqlSql *q, const char *schema, const char *name) {
        mysql_sql_ident(q, schema);
        mysql_sql_add(q, ".");
        mysql_sql_ident(q, name);
}

/* The placeholder of a value of column c. A BIT value comes as a bit string ("0101", from a
 * MySQL source): bound as a string it would be stored as its characters' bytes, so it goes
 * through CONV to the number it spells. */
void mysql_sql_placeholder(MysqlSql *q, const Column *c) {
        if (c->type_name && strncmp(c->type_name, "bit(", 4) == 0 && c->cls == TYPE_TEXT)
                mysql_sql_add(q, "CAST(CONV(?, 2, 10) AS UNSIGNED)");
        else
                mysql_sql_add(q, "?");
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

static char *sql_done(MysqlSql *q) {
        if (q->oom) {
                free(q->s);
                return NULL;
        }
        return q->s;
}

char *mysql_sql_multi_by_key(const char *schema, const char *name, const Table *t, int m, bool check) {
        const char *kname = first_key(t);
        MysqlSql q = {0};
        if (!kname)
                return NULL;
        mysql_sql_add(&q, check ? "SELECT COUNT(*) FROM " : "DELETE FROM ");
        mysql_sql_table(&q, schema, name);
        mysql_sql_add(&q, " WHERE ");
        mysql_sql_ident(&q, kname);
        mysql_sql_add(&q, " IN (");
        for (int i = 0; i < m; i++)
                mysql_sql_add(&q, i ? ", ?" : "?");
        mysql_sql_add(&q, check ? ") FOR UPDATE" : ")");
        return sql_done(&q);
}

char *mysql_sql_multi_upsert(const char *schema, const char *name, const Table *t, int m) {
        MysqlSql q = {0};
        if (!first_key(t))
                return NULL;
        mysql_sql_add(&q, "INSERT INTO ");
        mysql_sql_table(&q, schema, name);
        mysql_sql_add(&q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        mysql_sql_add(&q, ", ");
                mysql_sql_ident(&q, t->cols[i].name);
        }
        mysql_sql_add(&q, ") VALUES ");
        for (int r = 0; r < m; r++) {
                mysql_sql_add(&q, r ? ", (" : "(");
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                mysql_sql_add(&q, ", ");
                        mysql_sql_placeholder(&q, &t->cols[i]);
                }
                mysql_sql_add(&q, ")");
        }
        mysql_sql_add(&q, " ON DUPLICATE KEY UPDATE ");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        mysql_sql_add(&q, ", ");
                mysql_sql_ident(&q, t->cols[i].name);
                mysql_sql_add(&q, " = VALUES(");
                mysql_sql_ident(&q, t->cols[i].name);
                mysql_sql_add(&q, ")");
        }
        return sql_done(&q);
}

/* ---- one change's statements ---- */

void mysql_sql_upsert(MysqlSql *q, const char *schema, const char *name, const Table *t) {
        mysql_sql_add(q, "INSERT INTO ");
        mysql_sql_table(q, schema, name);
        mysql_sql_add(q, " (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        mysql_sql_add(q, ", ");
                mysql_sql_ident(q, t->cols[i].name);
        }
        mysql_sql_add(q, ") VALUES (");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        mysql_sql_add(q, ", ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        mysql_sql_add(q, ") ON DUPLICATE KEY UPDATE ");
        for (int i = 0; i < t->ncols; i++) {
                if (i)
                        mysql_sql_add(q, ", ");
                mysql_sql_ident(q, t->cols[i].name);
                mysql_sql_add(q, " = VALUES(");
                mysql_sql_ident(q, t->cols[i].name);
                mysql_sql_add(q, ")");
        }
}

void mysql_sql_where(MysqlSql *q, const Table *t, const Value *img) {
        bool keyed = table_nkeys(t) > 0, first = true;
        mysql_sql_add(q, " WHERE ");
        for (int i = 0; i < t->ncols; i++) {
                if ((keyed && !t->cols[i].key) || img[i].kind == VALUE_UNCHANGED)
                        continue;
                if (!first)
                        mysql_sql_add(q, " AND ");
                first = false;
                mysql_sql_ident(q, t->cols[i].name);
                mysql_sql_add(q, " <=> ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        if (!keyed)
                mysql_sql_add(q, " LIMIT 1");
}

void mysql_sql_update(MysqlSql *q, const char *schema, const char *name, const Table *t, const Value *after,
                      const Value *img) {
        mysql_sql_add(q, "UPDATE ");
        mysql_sql_table(q, schema, name);
        mysql_sql_add(q, " SET ");
        bool first = true;
        for (int i = 0; i < t->ncols; i++) {
                if (after[i].kind == VALUE_UNCHANGED)
                        continue;
                if (!first)
                        mysql_sql_add(q, ", ");
                first = false;
                mysql_sql_ident(q, t->cols[i].name);
                mysql_sql_add(q, " = ");
                mysql_sql_placeholder(q, &t->cols[i]);
        }
        mysql_sql_where(q, t, img);
}

void mysql_sql_delete(MysqlSql *q, const char *schema, const char *name, const Table *t, const Value *img) {
        mysql_sql_add(q, "DELETE FROM ");
        mysql_sql_table(q, schema, name);
        mysql_sql_where(q, t, img);
}

void mysql_sql_delete_all(MysqlSql *q, const char *schema, const char *name) {
        mysql_sql_add(q, "DELETE FROM ");
        mysql_sql_table(q, schema, name);
}
