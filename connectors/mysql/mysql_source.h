/* The MySQL/MariaDB binlog source: connects as a replica and turns ROW events into Events. */
#pragma once

#include "cdcsync/connector.h"

extern const SourceOps mysql_source_ops;

/* Position text: "binlog.NNNNNN:OFFSET" (the name part before the sequence suffix is not kept in
 * a Position; only the suffix and the offset count). */
void mysql_source_format_position(Position p, char *buf, size_t len);
/* Parses "ANYNAME.NNNNNN:OFFSET" (e.g. "mariadb-bin.000002:344"). GTIDs are not accepted (yet):
 * returns -EINVAL for them. */
int mysql_source_parse_position(const char *text, Position *ret);
