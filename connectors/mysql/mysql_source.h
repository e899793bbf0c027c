/* The MySQL/MariaDB binlog source: connects as a replica and turns ROW events into Events. */
#pragma once

#include <stdint.h>

#include "cdcsync/connector.h"

extern const SourceOps mysql_source_ops;

/* Position text without a running source: "binlog.NNNNNN:OFFSET" (a Position keeps only the
 * file's sequence suffix and the offset; the running source prints the server's real name and
 * the GTID state, see mysql_source_format_checkpoint). */
void mysql_source_format_position(Position p, char *buf, size_t len);
/* Parses any checkpoint text of mysql_source_parse_checkpoint(); a GTID-only text gives the zero
 * Position. Returns 0 or -EINVAL. */
int mysql_source_parse_position(const char *text, Position *ret);

/* ---- MariaDB GTID positions ---- */

#define MYSQL_SOURCE_GTID_MAX 16 /* replication domains one checkpoint carries */

/* One MariaDB GTID "domain-server_id-seq". */
typedef struct {
        uint32_t domain;
        uint32_t server_id;
        uint64_t seq;
} MysqlGtid;

/* A GTID state: the last GTID of each domain, sorted by domain (what @@gtid_binlog_pos and
 * @slave_connect_state hold). */
typedef struct {
        int n;
        MysqlGtid g[MYSQL_SOURCE_GTID_MAX];
} MysqlGtidState;

/* Parses "0-1-57,1-2-9" (len bytes of text; "" is the empty state). Returns 0, or -EINVAL for a
 * malformed list or a domain given twice, -ENOSPC past MYSQL_SOURCE_GTID_MAX domains; *ret is
 * untouched on failure. */
int mysql_source_gtid_parse(const char *text, size_t len, MysqlGtidState *ret);
/* Formats a state as "0-1-57,1-2-9". Returns 0, or -ENOSPC when it does not fit (buf then "") */
int mysql_source_gtid_format(const MysqlGtidState *st, char *buf, size_t len);
/* Makes g the last GTID of its domain. Returns 0, or -ENOSPC for a domain past the limit. */
int mysql_source_gtid_update(MysqlGtidState *st, MysqlGtid g);

/* Checkpoint text: "mariadb-bin.000003:1234 gtid=0-1-57,1-2-9", or without " gtid=..." when the
 * GTID state is unknown. Also read: "gtid=0-1-57" and a bare "0-1-57,1-2-9" (a GTID-only
 * start_position). *ret_have_pos / *ret_have_gtid say which parts the text had; *ret_gtid is the
 * empty state when it had none. Returns 0 or -EINVAL (nothing written). */
int mysql_source_parse_checkpoint(const char *text, Position *ret_pos, bool *ret_have_pos, MysqlGtidState *ret_gtid,
                                  bool *ret_have_gtid);
/* Formats "BASE.NNNNNN:OFFSET gtid=STATE" (base: the binlog base name, e.g. "mariadb-bin";
 * NULL or "" → "binlog"; gtid NULL → no GTID part). A GTID part that does not fit in len is left
 * out (the file:pos part still says where). */
void mysql_source_format_checkpoint(const char *base, Position p, const MysqlGtidState *gtid, char *buf, size_t len);
