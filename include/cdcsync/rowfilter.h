/* Row filters: the expression of the pipeline key `where` (a small SQL subset), parsed once and
 * evaluated on a change's row images.
 *
 * Grammar (case-insensitive keywords):
 *   expr    := or
 *   or      := and { OR and }
 *   and     := not { AND not }
 *   not     := NOT not | primary
 *   primary := '(' expr ')' | operand IS [NOT] NULL | operand [NOT] IN '(' literal {, literal} ')'
 *            | operand cmp operand            cmp := = | <> | != | < | <= | > | >=
 *   operand := column | literal              column := name | "quoted name"
 *   literal := 'text' ('' is a quote) | number | TRUE | FALSE | NULL
 *
 * Values are compared as SQL does for their column's type class: numbers as exact decimals (or
 * as doubles when one has an exponent), booleans by truth, everything else as text, byte by byte
 * (so case-sensitive, whatever a MySQL collation says). A comparison with NULL is unknown, and a
 * row matches only when the whole expression is true (as PostgreSQL's publication row filters). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cdcsync/change.h"

typedef struct RowFilter RowFilter;

/* Parses expr into *ret. On a syntax error returns -EINVAL with a message in err that quotes
 * where it stopped and what it expected; -ENOMEM. */
int rowfilter_parse(const char *expr, RowFilter **ret, char *err, size_t errlen);
RowFilter *rowfilter_free(RowFilter *f);

/* The columns the expression names, each once, in order of first use. */
int rowfilter_ncolumns(const RowFilter *f);
const char *rowfilter_column(const RowFilter *f, int i);

/* Finds the expression's columns in t: idx[i] (rowfilter_ncolumns entries) becomes the index in
 * t->cols of rowfilter_column(f, i) (exact name, else case-insensitive for a name written
 * unquoted). -EINVAL with err naming the column when t lacks one, or when a comparison cannot
 * be made for the column's type (a number compared with a text literal that is no number). */
int rowfilter_bind(const RowFilter *f, const Table *t, int *idx, char *err, size_t errlen);

enum {
        ROWFILTER_NO = 0,      /* the row does not match (false or unknown, as SQL's WHERE) */
        ROWFILTER_YES = 1,     /* the row matches */
        ROWFILTER_MISSING = 2, /* the image lacks a value the expression needs (NULL image, or an
                                * unchanged TOAST value): it cannot be decided */
};

/* Evaluates f on row img of table t (ncols values, or NULL) with idx from rowfilter_bind. */
int rowfilter_eval(const RowFilter *f, const Table *t, const int *idx, const Value *img);

/* What a server knows of a filter column, for rowfilter_sql. */
typedef enum {
        ROWFILTER_COL_OTHER = 0, /* a type whose comparisons may differ from rowfilter_eval's */
        ROWFILTER_COL_NUMBER,    /* an integer type: every comparison agrees (numeric has NaN) */
        ROWFILTER_COL_TEXT,      /* text/varchar with a deterministic collation: = and <> agree */
        ROWFILTER_COL_BOOL,      /* boolean: = and <> agree */
} RowFilterColClass;

typedef struct {
        /* Column i of the filter (rowfilter_column): its class, and the quoted identifier to write
         * (owned by the callee, valid until the call returns), or NULL when the server table has
         * no such column. */
        const char *(*column)(void *ud, int i, RowFilterColClass *cls);
        /* A text literal quoted for the server: malloc'd, or NULL when out of memory. */
        char *(*literal)(void *ud, const char *text);
        void *ud;
} RowFilterSqlOps;

/* The filter as a server's SQL expression (a PostgreSQL publication row filter) that selects
 * exactly the rows rowfilter_eval selects: returns 1 with *ret (malloc'd), 0 when some part of it
 * could select otherwise on the server (a text ordering, which depends on the collation; a type
 * compared other than as rowfilter_eval does; a literal with an exponent), -ENOMEM. */
int rowfilter_sql(const RowFilter *f, const RowFilterSqlOps *ops, char **ret);
