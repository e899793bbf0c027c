/* What of a table flows to the sink: the pipeline keys columns, exclude_columns, mask_columns,
 * skip and soft_delete, parsed once and applied by the engine thread to every change. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/conf.h"
#include "cdcsync/connector.h"

typedef struct Shape Shape;

/* Parses p's shaping keys into *ret (NULL when p sets none). On a bad value returns -EINVAL with
 * the message in err (naming the key and what to write instead; the caller adds file:line);
 * -ENOMEM. Checks what needs no server: tables named must be synced, a table may not have both
 * columns and exclude_columns, the methods and operations must be known. */
int shape_new(const PipelineConf *p, Shape **ret, char *err, size_t errlen);
Shape *shape_free(Shape *s);

enum { SHAPE_KEEP = 0, SHAPE_DROP = 1 };

/* Shapes change c of a transaction committed at commit_ts (usec since epoch) in place: its table
 * becomes the shaped table (kept columns, masked ones as text, the soft_delete column), its
 * images follow, a delete under soft_delete becomes an update setting that column. Returns
 * SHAPE_KEEP, SHAPE_DROP (an operation skipped), or a negative error in err: a named column the
 * table lacks, a key column left out or redacted (non-retriable "conf" errors: the conf must
 * change). snapshot: c belongs to a copy (its TRUNCATE is how the copy starts: never skipped).
 * Not thread-safe: the engine thread only. */
int shape_apply(Shape *s, Change *c, int64_t commit_ts, bool snapshot, CdcError *err);

/* The columns / exclude_columns rule of table schema.name: returns 1 with *cols (ncols names,
 * owned by s) and *exclude, or 0 when none names the table. */
int shape_column_rule(const Shape *s, const char *schema, const char *name, char *const **cols, int *ncols,
                      bool *exclude);

/* The where condition of table schema.name, or NULL. */
const struct RowFilter *shape_where_filter(const Shape *s, const char *schema, const char *name);

/* Whether a where condition of table schema.name reads column col. */
bool shape_where_uses(const Shape *s, const char *schema, const char *name, const char *col);

/* The i-th mask_columns entry (0-based): returns 1 with *table ("schema.table") and *col (owned
 * by s), 0 past the last. */
int shape_mask_rule(const Shape *s, int i, const char **table, const char **col);

/* The SHA-256 mask of text[0..len): 64 lowercase hex digits and a NUL into out. */
void shape_sha256_hex(const char *text, size_t len, char out[65]);
