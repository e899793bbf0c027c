/* The pgoutput logical replication protocol (proto_version 2) as code: one enum whose values are
 * the wire bytes, one struct per message, pure decoders (bytes in, struct out, no I/O). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds between the Unix epoch and the PostgreSQL epoch (2000-01-01). */
#define PG_EPOCH_OFFSET_USEC INT64_C(946684800000000)

/* CopyData payloads of the streaming replication protocol. */
typedef enum {
        PGWIRE_XLOGDATA = 'w',
        PGWIRE_KEEPALIVE = 'k',
        PGWIRE_STANDBY_STATUS = 'r',
} PgwireMsgType;

typedef struct {
        uint64_t wal_start;  /* LSN of the message's data */
        uint64_t wal_end;    /* current end of WAL on the server */
        int64_t send_time;   /* usec since the Unix epoch, in [0, CHANGE_TS_MAX] */
        const uint8_t *data; /* points into the input buffer: the pgoutput message */
        size_t len;
} PgwireXLogData;

typedef struct {
        uint64_t wal_end;
        int64_t send_time; /* usec since the Unix epoch, in [0, CHANGE_TS_MAX] */
        bool reply_requested;
} PgwireKeepalive;

/* Return 0, or -EBADMSG when buf is truncated or of another type. */
int pgwire_read_xlogdata(const uint8_t *buf, size_t len, PgwireXLogData *ret);
int pgwire_read_keepalive(const uint8_t *buf, size_t len, PgwireKeepalive *ret);
/* Writes a standby status update ('r', 34 bytes) into out; now in usec since the Unix epoch. */
size_t pgwire_write_standby_status(uint8_t out[34], uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
                                   int64_t now, bool reply_requested);

typedef enum {
        PGOUTPUT_BEGIN = 'B',
        PGOUTPUT_COMMIT = 'C',
        PGOUTPUT_ORIGIN = 'O',
        PGOUTPUT_RELATION = 'R',
        PGOUTPUT_TYPE = 'Y',
        PGOUTPUT_INSERT = 'I',
        PGOUTPUT_UPDATE = 'U',
        PGOUTPUT_DELETE = 'D',
        PGOUTPUT_TRUNCATE = 'T',
        PGOUTPUT_MESSAGE = 'M',
        PGOUTPUT_STREAM_START = 'S',
        PGOUTPUT_STREAM_STOP = 'E',
        PGOUTPUT_STREAM_COMMIT = 'c',
        PGOUTPUT_STREAM_ABORT = 'A',
} PgoutputMsgType;

typedef struct {
        char kind;        /* 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary */
        uint32_t len;     /* for 't' and 'b' */
        const char *data; /* points into the input buffer (not NUL-terminated) */
} PgoutputColumn;

typedef struct {
        int ncols;
        PgoutputColumn *cols; /* owned (freed by pgoutput_msg_clear) */
} PgoutputTuple;

typedef struct {
        uint8_t flags;    /* 1: part of the key */
        const char *name; /* NUL-terminated, points into the input buffer */
        uint32_t type_oid;
        int32_t typmod;
} PgoutputAttr;

typedef struct {
        PgoutputMsgType type;
        uint32_t xid; /* set for messages inside a streamed block (and Begin, Stream *); inside a
                       * block a change carries the xid of the subtransaction that made it,
                       * which Stream Abort's subxid names when that subtransaction rolls back */
        union {
                struct {
                        uint64_t final_lsn;
                        int64_t commit_ts; /* usec since the Unix epoch, in [0, CHANGE_TS_MAX] */
                } begin;
                struct { /* Commit and Stream Commit */
                        uint8_t flags;
                        uint64_t commit_lsn;
                        uint64_t end_lsn;
                        int64_t commit_ts; /* usec since the Unix epoch, in [0, CHANGE_TS_MAX] */
                } commit;
                struct {
                        uint64_t commit_lsn;
                        const char *name;
                } origin;
                struct {
                        uint32_t rel_id;
                        const char *nspname;
                        const char *relname;
                        char replident;
                        int natts;
                        PgoutputAttr *attrs; /* owned */
                } relation;
                struct {
                        uint32_t type_oid;
                        const char *nspname;
                        const char *typname;
                } type;
                struct { /* Insert, Update, Delete */
                        uint32_t rel_id;
                        char old_kind; /* 'K' old key, 'O' old tuple, 0 none */
                        PgoutputTuple old_tuple;
                        PgoutputTuple new_tuple; /* empty for Delete */
                } row;
                struct {
                        uint8_t options; /* 1 cascade, 2 restart identity */
                        int nrels;
                        uint32_t *rel_ids; /* owned */
                } truncate;
                struct {
                        uint8_t flags; /* 1: transactional */
                        uint64_t lsn;
                        const char *prefix;
                        const char *content; /* not NUL-terminated */
                        uint32_t len;
                } message;
                struct {
                        bool first_segment;
                } stream_start;
                struct {
                        uint32_t subxid;
                } stream_abort;
        } u;
} PgoutputMsg;

/* Decodes one pgoutput message. in_stream: between Stream Start and Stream Stop (the messages
 * then carry an xid). Strings and column data point into buf, which must outlive *ret.
 * Returns 0, -EBADMSG for a malformed or truncated message (the message says why, in err),
 * -EPROTONOSUPPORT for an unknown message type, -ENOMEM. */
int pgoutput_decode(const uint8_t *buf, size_t len, bool in_stream, PgoutputMsg *ret, char *err, size_t errlen);
/* Frees the arrays a decoded message owns. */
void pgoutput_msg_clear(PgoutputMsg *m);
