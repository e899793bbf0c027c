/* Statement texts for the PostgreSQL sink, built from a table's shape: pure, no I/O, no values
 * (values always travel as parameters; identifiers are double-quoted with quotes doubled). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cdcsync/change.h"

/* Per-column role in an UPDATE / DELETE, as bit flags in a mask array of t->ncols entries. */
enum {
        PG_SQL_SET = 1,        /* written by the UPDATE's SET list */
        PG_SQL_WHERE = 2,      /* compared in WHERE with "= $n" */
        PG_SQL_WHERE_NULL = 4, /* compared in WHERE with "IS NULL" (no parameter) */
};

/* Every function returns 0 and sets *ret to a malloc'd NUL-terminated text the caller frees, or
 * -ENOMEM / -EINVAL (*ret untouched). schema/name are the sink-side names. */

/* "name" with embedded double quotes doubled. */
int pg_sql_quote_ident(const char *ident, char **ret);
/* INSERT of every column, $1..$ncols in column order (DEFAULT VALUES for a table of no column). */
int pg_sql_insert(const char *schema, const char *name, const Table *t, char **ret);
/* INSERT like pg_sql_insert, then ON CONFLICT on the key columns DO UPDATE SET every other column
 * (DO NOTHING when all columns are key): the upsert of a CHANGE_IDEMPOTENT change. -EINVAL when
 * the table has no key column. */
int pg_sql_upsert(const char *schema, const char *name, const Table *t, char **ret);
/* UPDATE: parameters are first the PG_SQL_SET columns, then the PG_SQL_WHERE columns, each in
 * column order. by_ctid: the table has no key, so the WHERE picks one matching row through a
 * "ctid = (SELECT ctid ... LIMIT 1)" subquery. -EINVAL when nothing is set or nothing compared. */
int pg_sql_update(const char *schema, const char *name, const Table *t, const uint8_t *mask, bool by_ctid, char **ret);
/* DELETE with the PG_SQL_WHERE / PG_SQL_WHERE_NULL columns of mask, parameters in column order.
 * A table of no column (by_ctid) deletes any one row. */
int pg_sql_delete(const char *schema, const char *name, const Table *t, const uint8_t *mask, bool by_ctid, char **ret);
/* Parameters of one statement: the protocol counts them in 16 bits. */
#define PG_SQL_MAX_PARAMS 65535

/* Multi-row statements for a run of changes of one table with a key (distinct keys). Parameters
 * go row after row. INSERT: every column of each row. UPDATE / DELETE: per row, each column that
 * is PG_SQL_SET in mask (UPDATE) or a key column, in column order; they return one row "n" per
 * row touched, n the 1-based row number in the statement, so a missing row can be named.
 * -EINVAL with no rows, no key, nothing set, or too many parameters. */
int pg_sql_insert_rows(const char *schema, const char *name, const Table *t, int nrows, char **ret);
int pg_sql_update_rows(const char *schema, const char *name, const Table *t, const uint8_t *mask, int nrows,
                       char **ret);
int pg_sql_delete_rows(const char *schema, const char *name, const Table *t, int nrows, char **ret);
/* COPY "schema"."name" (every column of t, in order) FROM STDIN, text format: a run of a
 * snapshot's inserts sent as one COPY (pg_sink_copy.c). -EINVAL for a table of no column. */
int pg_sql_copy(const char *schema, const char *name, const Table *t, char **ret);
/* One field of COPY's text format: in[0..len) with backslash, tab, newline and carriage return
 * written as \\, \t, \n and \r, every other byte as it is (the server reads it back byte for
 * byte); out must have room for 2 * len bytes. Returns the bytes written. A NULL is the field \N,
 * which no escaped value can be (its backslash would be doubled). */
size_t pg_sql_copy_escape(const char *in, size_t len, char *out);
/* TRUNCATE with flags TRUNCATE_RESTART_IDENTITY / TRUNCATE_CASCADE. */
int pg_sql_truncate(const char *schema, const char *name, uint32_t flags, char **ret);
/* CREATE TABLE IF NOT EXISTS with each column's type and the key columns as primary key (no
 * column at all is fine). native: the source is PostgreSQL, so Column.type_name is used as it is
 * (after a check that it is a plain type expression), and the generated columns (Table.gen) are
 * created as generated, with the source's expression, in their place; otherwise the type follows
 * the column's TypeClass. -EINVAL when a type name holds characters that cannot belong to a type
 * expression. */
int pg_sql_create_table(const char *schema, const char *name, const Table *t, bool native, char **ret);
/* ALTER TABLE ... ADD COLUMN IF NOT EXISTS for each column i of t with add[i], typed as
 * pg_sql_create_table types it (nullable, no default: rows already there get NULL). -EINVAL when
 * no column is to be added or a native type name is not a plain type expression. */
int pg_sql_add_columns(const char *schema, const char *name, const Table *t, const bool *add, bool native, char **ret);
/* The PostgreSQL type used for a column created from a non-PostgreSQL source. */
const char *pg_sql_type_for_class(TypeClass cls);
/* Whether s is a safe type expression: letters, digits, '_', ' ', '(', ')', ',', '.', '[', ']',
 * '-' before a digit (numeric(3,-6)), and '"' around identifiers; nothing that could end or
 * comment a statement. */
bool pg_sql_type_name_ok(const char *s);
