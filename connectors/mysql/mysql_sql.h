/* Statement texts for the MySQL/MariaDB sink, built from a table's shape: pure, no I/O, no values
 * (values always travel as parameters, "?"; identifiers are backquoted with backticks doubled). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cdcsync/change.h"
#include "cdcsync/strbuf.h"

/* Builders append to a StrBuf (strbuf.h): {0} is the empty text; a kept buffer may be reused
 * by setting len to 0. */

/* Appends `name` with backticks doubled: identifiers are never pasted raw. */
void mysql_sql_ident(StrBuf *q, const char *name);
/* Appends `schema`.`name`. */
void mysql_sql_table(StrBuf *q, const char *schema, const char *name);
/* Appends the placeholder of a value of column c: "?", or for a BIT column whose value comes as a
 * bit string, "CAST(CONV(?, 2, 10) AS UNSIGNED)". */
void mysql_sql_placeholder(StrBuf *q, const Column *c);
/* Whether column c's values are bit strings bound through CONV (see mysql_sql_placeholder). */
bool mysql_sql_is_bit_text(const Column *c);

/* The statements of one change, appended to q; sink-side names schema.name, columns of t.
 * Parameters, in order, are named after each builder. */

/* INSERT of every column ... ON DUPLICATE KEY UPDATE every column = VALUES(column): the insert
 * (an upsert, so a replayed insert overwrites the row with the same values). Parameters: every
 * column, in column order. */
void mysql_sql_upsert(StrBuf *q, const char *schema, const char *name, const Table *t);
/* " WHERE" on the key columns of img (every column when t has no key), each "<=> ?" so NULL
 * matches NULL, skipping the VALUE_UNCHANGED ones; " LIMIT 1" when t has no key. Parameters: the
 * compared columns of img, in column order. */
void mysql_sql_where(StrBuf *q, const Table *t, const Value *img);
/* UPDATE ... SET each column whose after value is not VALUE_UNCHANGED, then mysql_sql_where on
 * img (the old key, so key updates work). Parameters: the set columns, then the WHERE's. */
void mysql_sql_update(StrBuf *q, const char *schema, const char *name, const Table *t, const Value *after,
                      const Value *img);
/* DELETE FROM ... then mysql_sql_where on img. */
void mysql_sql_delete(StrBuf *q, const char *schema, const char *name, const Table *t, const Value *img);
/* DELETE FROM every row: a truncate (TRUNCATE TABLE is DDL in MySQL and would commit the open
 * transaction implicitly). No parameter. */
void mysql_sql_delete_all(StrBuf *q, const char *schema, const char *name);

/* Multi-row statements for m rows of a table with a one-column key; malloc'd text the caller
 * frees, or NULL when out of memory or t has no key column. */

/* INSERT of every column, m rows of VALUES, ON DUPLICATE KEY UPDATE every column. Parameters:
 * per row every column, in column order. */
char *mysql_sql_multi_upsert(const char *schema, const char *name, const Table *t, int m);
/* DELETE FROM ... WHERE key IN (m placeholders); check: instead "SELECT COUNT(*) FROM ... WHERE
 * key IN (...) FOR UPDATE", the locking read that counts the rows an update will touch.
 * Parameters: the m keys. */
/* LOAD DATA LOCAL INFILE 'cdcsync' INTO TABLE of every column, in table order (a bit-string column
 * through a variable and SET ... CONV, as mysql_sql_placeholder does): utf8mb4 text, fields ended
 * by tab, rows by newline, backslash escapes (\t \n \\ \0), \N for NULL. A row whose key is there
 * already is skipped with a warning (LOCAL implies IGNORE). NULL when out of memory. */
char *mysql_sql_load(const char *schema, const char *name, const Table *t);
char *mysql_sql_multi_by_key(const char *schema, const char *name, const Table *t, int m, bool check);
