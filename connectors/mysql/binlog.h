/* The MariaDB/MySQL binlog event format as code: event headers, FORMAT_DESCRIPTION, TABLE_MAP,
 * ROWS events and the row image decoder. Pure: bytes in, structs and text Values out, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/change.h"

#define BINLOG_HEADER_LEN 19
#define BINLOG_CHECKSUM_LEN 4
#define BINLOG_MAGIC                                                                                                   \
        "\xfe"                                                                                                         \
        "bin"

/* The most a compressed event may announce as its uncompressed size: the largest packet MariaDB
 * sends or reads back (max_allowed_packet's maximum, 1 GiB). Above it the event is corrupt. */
#define BINLOG_UNCOMPRESSED_MAX ((size_t)1 << 30)

/* Event type codes as they are on the wire (sql/log_event.h). */
typedef enum {
        BINLOG_QUERY = 2,
        BINLOG_STOP = 3,
        BINLOG_ROTATE = 4,
        BINLOG_FORMAT_DESCRIPTION = 15,
        BINLOG_XID = 16,
        BINLOG_TABLE_MAP = 19,
        BINLOG_WRITE_ROWS_V1 = 23,
        BINLOG_UPDATE_ROWS_V1 = 24,
        BINLOG_DELETE_ROWS_V1 = 25,
        BINLOG_HEARTBEAT = 27,
        BINLOG_WRITE_ROWS = 30,
        BINLOG_UPDATE_ROWS = 31,
        BINLOG_DELETE_ROWS = 32,
        BINLOG_ANNOTATE_ROWS = 160,
        BINLOG_CHECKPOINT = 161,
        BINLOG_GTID = 162,
        BINLOG_GTID_LIST = 163,
        BINLOG_QUERY_COMPRESSED = 165,
        BINLOG_WRITE_ROWS_COMPRESSED_V1 = 166,
        BINLOG_UPDATE_ROWS_COMPRESSED_V1 = 167,
        BINLOG_DELETE_ROWS_COMPRESSED_V1 = 168,
        BINLOG_WRITE_ROWS_COMPRESSED = 169,
        BINLOG_UPDATE_ROWS_COMPRESSED = 170,
        BINLOG_DELETE_ROWS_COMPRESSED = 171,
} BinlogEventType;

/* Column type codes of TABLE_MAP (enum_field_types). */
typedef enum {
        BINLOG_T_DECIMAL = 0,
        BINLOG_T_TINY = 1,
        BINLOG_T_SHORT = 2,
        BINLOG_T_LONG = 3,
        BINLOG_T_FLOAT = 4,
        BINLOG_T_DOUBLE = 5,
        BINLOG_T_NULL = 6,
        BINLOG_T_TIMESTAMP = 7,
        BINLOG_T_LONGLONG = 8,
        BINLOG_T_INT24 = 9,
        BINLOG_T_DATE = 10,
        BINLOG_T_TIME = 11,
        BINLOG_T_DATETIME = 12,
        BINLOG_T_YEAR = 13,
        BINLOG_T_NEWDATE = 14,
        BINLOG_T_VARCHAR = 15,
        BINLOG_T_BIT = 16,
        BINLOG_T_TIMESTAMP2 = 17,
        BINLOG_T_DATETIME2 = 18,
        BINLOG_T_TIME2 = 19,
        BINLOG_T_JSON = 245,
        BINLOG_T_NEWDECIMAL = 246,
        BINLOG_T_ENUM = 247,
        BINLOG_T_SET = 248,
        BINLOG_T_TINY_BLOB = 249,
        BINLOG_T_MEDIUM_BLOB = 250,
        BINLOG_T_LONG_BLOB = 251,
        BINLOG_T_BLOB = 252,
        BINLOG_T_VAR_STRING = 253,
        BINLOG_T_STRING = 254,
        BINLOG_T_GEOMETRY = 255,
} BinlogColType;

/* The common event header; body excludes the header and the trailing checksum. */
typedef struct {
        uint32_t timestamp; /* seconds since the Unix epoch */
        uint8_t type;       /* BinlogEventType */
        uint32_t server_id; /* the server that wrote the event (a sink's session server_id) */
        uint32_t event_len;
        uint32_t next_pos; /* offset in the binlog file after this event */
        uint16_t flags;
        const uint8_t *body; /* points into the input buffer */
        size_t body_len;
} BinlogHeader;

/* Reads an event of len bytes starting with the 19-byte header; checksum: a CRC32 trails it.
 * Returns 0 or -EBADMSG. */
int binlog_read_header(const uint8_t *buf, size_t len, bool checksum, BinlogHeader *ret);
/* Whether a FORMAT_DESCRIPTION event (whole event, header included) announces CRC32 checksums
 * for the events that follow. Returns 0 or -EBADMSG. */
int binlog_read_fde_checksum(const uint8_t *buf, size_t len, bool *ret_checksum);

/* ROTATE: the next binlog file and the offset to read it from. name points into the buffer
 * (not NUL-terminated). Returns 0 or -EBADMSG. */
int binlog_read_rotate(const BinlogHeader *h, uint64_t *ret_pos, const char **ret_name, size_t *ret_len);

typedef struct {
        uint8_t type;  /* BinlogColType as logged; for STRING: the real type (STRING/ENUM/SET) */
        uint32_t meta; /* per type: max bytes, pack length, precision<<8|scale, fsp, bits */
        bool nullable;
} BinlogColumn;

typedef struct {
        uint64_t table_id;
        char *schema; /* owned */
        char *table;  /* owned */
        uint32_t ncols;
        BinlogColumn *cols; /* owned, ncols entries */
} BinlogTableMap;

/* Parses a TABLE_MAP event's body. *ret is allocated (free with binlog_table_map_free).
 * Returns 0, -EBADMSG or -ENOMEM. */
int binlog_read_table_map(const BinlogHeader *h, BinlogTableMap **ret);
BinlogTableMap *binlog_table_map_free(BinlogTableMap *tm);

typedef struct {
        ChangeOp op; /* INSERT, UPDATE or DELETE */
        uint64_t table_id;
        uint16_t flags; /* STMT_END_F = 1: last rows event of the statement */
        uint32_t ncols;
        const uint8_t *present;       /* bitmap of columns in the (before) image; into the buffer */
        const uint8_t *present_after; /* UPDATE: bitmap of the after image, else NULL */
        const uint8_t *rows;          /* row images, into the buffer (or into owned) */
        size_t rows_len;
        uint8_t *owned; /* compressed variants: the uncompressed row images, owned */
} BinlogRows;

/* Parses a WRITE/UPDATE/DELETE_ROWS v1/v2 body, compressed variants included (MariaDB's
 * log_bin_compress: only the row images are compressed, the post-header, column count and
 * bitmaps are not). For a compressed event rows points into memory owned by *ret: release it with
 * binlog_rows_clear() (harmless for the others). Every row then takes at least one byte: an
 * event whose (before) image names no column is refused. Returns 0, -EBADMSG (malformed, a
 * corrupt compressed body, or a first image without a column), -EMSGSIZE (a compressed body announcing an absurd size,
 * see binlog_uncompress) or -ENOMEM. */
int binlog_read_rows(const BinlogHeader *h, BinlogRows *ret);
/* Frees what binlog_read_rows allocated for a compressed event; rows is then empty. */
void binlog_rows_clear(BinlogRows *rows);

typedef struct {
        uint32_t thread_id;
        uint16_t error_code;
        const char *db; /* into the buffer, db_len bytes, not NUL-terminated */
        size_t db_len;
        const char *statement; /* into the buffer, or into owned; not NUL-terminated */
        size_t statement_len;
        uint8_t *owned; /* QUERY_COMPRESSED: the uncompressed statement, owned */
} BinlogQuery;

/* Parses a QUERY or QUERY_COMPRESSED body (the compressed variant compresses the statement
 * only). Release with binlog_query_clear(). Returns 0, -EBADMSG, -EMSGSIZE or -ENOMEM. */
int binlog_read_query(const BinlogHeader *h, BinlogQuery *ret);
void binlog_query_clear(BinlogQuery *q);

/* Uncompresses the payload of a MariaDB compressed event: one header byte (bit 7 set, bits 4-6
 * the algorithm, 0 = zlib, the only one MariaDB has; bits 0-2 the count n, 1 to 4, of length
 * bytes), the uncompressed length in n bytes, big-endian, then a zlib stream. *ret is malloc'ed
 * (free()), *ret_len its length. Returns 0; -EBADMSG when the header is malformed, the stream
 * corrupt or truncated, or its length not the announced one; -EMSGSIZE when the announced length
 * exceeds BINLOG_UNCOMPRESSED_MAX or what zlib can expand the stream to (at most 1032 times its
 * size), so nothing absurd is allocated; -ENOMEM. */
int binlog_uncompress(const uint8_t *buf, size_t len, uint8_t **ret, size_t *ret_len);

/* What the binlog does not say about a column, taken from information_schema. */
typedef enum {
        BINLOG_CS_UTF8 = 0, /* utf8mb3 / utf8mb4 / ascii: passed on as they are */
        BINLOG_CS_LATIN1,   /* converted to UTF-8 */
        BINLOG_CS_BINARY,   /* binary strings and blobs: TYPE_BYTES, "\x..." */
} BinlogCharset;

typedef struct {
        bool is_unsigned;
        bool json; /* MariaDB's JSON: LONGTEXT with a json_valid() check */
        BinlogCharset charset;
        char **elems; /* ENUM / SET member names in order, borrowed; NULL: the number is shown */
        int nelems;
} BinlogColumnInfo;

/* The text form the decoder gives a FLOAT (single) or DOUBLE: the shortest that reads back as
 * the same value. The initial snapshot formats what it SELECTs with it, so a row copied and a row
 * streamed carry the same text. */
void binlog_format_float(double v, bool single, char *buf, size_t len);

/* The portable class of a column. */
TypeClass binlog_type_class(const BinlogColumn *col, const BinlogColumnInfo *info);

/* Decodes one row image at buf (len bytes left in the event) for table map tm and column
 * infos info (tm->ncols entries; NULL: all signed, UTF-8, no names). present: the image's column
 * bitmap; columns not in it are VALUE_UNCHANGED. out: tm->ncols values, filled (any previous
 * contents freed). *ret_used: bytes consumed. *zero_dates is incremented per zero date or
 * datetime: MySQL's '0000-00-00' has no equivalent in any other system (PostgreSQL, Kafka
 * consumers) and MariaDB itself documents it as "no date", so it becomes NULL; the source logs a
 * warning with the count. Returns 0, -EBADMSG (truncated or malformed) or -ENOTSUP (a type
 * cdcsync cannot decode: MySQL's binary JSON, old pre-5.0 DECIMAL), -ENOMEM. */
int binlog_decode_row(const BinlogTableMap *tm, const BinlogColumnInfo *info, const uint8_t *present,
                      const uint8_t *buf, size_t len, Value *out, size_t *ret_used, unsigned *zero_dates);
