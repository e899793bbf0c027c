/* Pure decoders of the pgoutput logical replication protocol (proto_version 2) and of the
 * streaming replication CopyData frames around it: bytes in, typed struct out, no I/O. */
#include "postgres/pgoutput.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/change.h"

/* MaxTupleAttributeNumber: no relation or tuple the server sends has more columns. */
#define PGOUTPUT_MAX_ATTS 1664

/* A bounds-checked cursor over one message; the first error sticks and later reads fail too, so a
 * decoder can read a whole message and check once (but each read still says what it was). */
typedef struct {
        const uint8_t *p;
        size_t left;
        const char *msg; /* "Insert", for error texts */
        char *err;
        size_t errlen;
        int r;
} Reader;

static void rd_fail(Reader *rd, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void rd_fail(Reader *rd, int r, const char *fmt, ...) {
        va_list ap;

        if (rd->r < 0)
                return;
        rd->r = r;
        if (!rd->err || rd->errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(rd->err, rd->errlen, fmt, ap);
        va_end(ap);
}

static bool rd_need(Reader *rd, size_t n, const char *field) {
        if (rd->r < 0)
                return false;
        if (rd->left < n) {
                rd_fail(rd, -EBADMSG, "truncated %s message: %s needs %zu bytes, %zu remain", rd->msg, field, n,
                        rd->left);
                return false;
        }
        return true;
}

static uint64_t be_get(const uint8_t *p, size_t n) {
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static uint64_t rd_uint(Reader *rd, size_t n, const char *field) {
        uint64_t v;

        if (!rd_need(rd, n, field))
                return 0;
        v = be_get(rd->p, n);
        rd->p += n;
        rd->left -= n;
        return v;
}

static uint8_t rd_u8(Reader *rd, const char *field) {
        return (uint8_t)rd_uint(rd, 1, field);
}

static uint32_t rd_u32(Reader *rd, const char *field) {
        return (uint32_t)rd_uint(rd, 4, field);
}

static uint64_t rd_u64(Reader *rd, const char *field) {
        return rd_uint(rd, 8, field);
}

/* PostgreSQL timestamps count from 2000-01-01; garbage input is clamped to what the engine
 * takes (change_clamp_ts), never an overflow. */
static int64_t ts_from_pg(int64_t pg) {
        if (pg > CHANGE_TS_MAX - PG_EPOCH_OFFSET_USEC)
                return CHANGE_TS_MAX;
        return change_clamp_ts(pg + PG_EPOCH_OFFSET_USEC);
}

static int64_t ts_to_pg(int64_t unix_usec) {
        if (unix_usec < INT64_MIN + PG_EPOCH_OFFSET_USEC)
                return INT64_MIN;
        return unix_usec - PG_EPOCH_OFFSET_USEC;
}

static int64_t rd_ts(Reader *rd, const char *field) {
        return ts_from_pg((int64_t)rd_u64(rd, field));
}

/* A NUL-terminated string inside the buffer; returns a pointer into it. */
static const char *rd_str(Reader *rd, const char *field) {
        const uint8_t *nul;
        const char *s;

        if (rd->r < 0)
                return NULL;
        nul = memchr(rd->p, '\0', rd->left);
        if (!nul) {
                rd_fail(rd, -EBADMSG,
                        "truncated %s message: %s has no NUL terminator in the "
                        "remaining %zu bytes",
                        rd->msg, field, rd->left);
                return NULL;
        }
        s = (const char *)rd->p;
        rd->left -= (size_t)(nul - rd->p) + 1;
        rd->p = nul + 1;
        return s;
}

/* rd_uint for a field of a tuple (column col, or 0: of the tuple): its name, "new tuple column 3
 * length", is only built for the error, not for every column of every row. */
static uint64_t rd_tuple_uint(Reader *rd, size_t n, const char *which, int col, const char *what) {
        if (rd->r == 0 && rd->left < n) {
                char field[64];
                if (col > 0)
                        snprintf(field, sizeof(field), "%s column %d %s", which, col, what);
                else
                        snprintf(field, sizeof(field), "%s %s", which, what);
                rd_need(rd, n, field);
        }
        return rd_uint(rd, n, what);
}

static void rd_tuple(Reader *rd, const char *which, PgoutputTuple *t) {
        int16_t ncols;

        ncols = (int16_t)rd_tuple_uint(rd, 2, which, 0, "column count");
        if (rd->r < 0)
                return;
        /* every column takes at least its kind byte */
        if (ncols < 0 || ncols > PGOUTPUT_MAX_ATTS || (size_t)ncols > rd->left) {
                rd_fail(rd, -EBADMSG,
                        "malformed %s message: %s has %d columns (at most %d, and "
                        "%zu bytes remain)",
                        rd->msg, which, ncols, PGOUTPUT_MAX_ATTS, rd->left);
                return;
        }
        if (ncols > 0) {
                t->cols = calloc((size_t)ncols, sizeof(*t->cols));
                if (!t->cols) {
                        rd_fail(rd, -ENOMEM, "out of memory decoding %s message", rd->msg);
                        return;
                }
        }
        t->ncols = ncols;
        for (int i = 0; i < ncols && rd->r == 0; i++) {
                PgoutputColumn *c = &t->cols[i];

                c->kind = (char)rd_tuple_uint(rd, 1, which, i + 1, "kind");
                if (rd->r < 0)
                        break;
                switch (c->kind) {
                case 'n':
                case 'u': break;
                case 't':
                case 'b':
                        c->len = (uint32_t)rd_tuple_uint(rd, 4, which, i + 1, "length");
                        if (rd->r < 0)
                                break;
                        if (c->len > rd->left) {
                                rd_fail(rd, -EBADMSG,
                                        "truncated %s message: %s column %d "
                                        "length %" PRIu32 " exceeds remaining %zu bytes",
                                        rd->msg, which, i + 1, c->len, rd->left);
                                break;
                        }
                        c->data = (const char *)rd->p;
                        rd->p += c->len;
                        rd->left -= c->len;
                        break;
                default:
                        rd_fail(rd, -EBADMSG,
                                "malformed %s message: %s column %d has unknown "
                                "kind 0x%02x",
                                rd->msg, which, i + 1, (uint8_t)c->kind);
                        break;
                }
        }
}

static void rd_xid_if(Reader *rd, bool in_stream, PgoutputMsg *m) {
        if (in_stream)
                m->xid = rd_u32(rd, "xid");
}

static void dec_relation(Reader *rd, PgoutputMsg *m) {
        int16_t natts;

        m->u.relation.rel_id = rd_u32(rd, "relation id");
        m->u.relation.nspname = rd_str(rd, "namespace");
        m->u.relation.relname = rd_str(rd, "relation name");
        m->u.relation.replident = (char)rd_u8(rd, "replica identity");
        natts = (int16_t)rd_uint(rd, 2, "column count");
        if (rd->r < 0)
                return;
        /* an attribute is at least flags, an empty name, type oid and typmod: 10 bytes */
        if (natts < 0 || natts > PGOUTPUT_MAX_ATTS || (size_t)natts * 10 > rd->left) {
                rd_fail(rd, -EBADMSG,
                        "malformed Relation message: %d columns (at most %d, and "
                        "%zu bytes remain)",
                        natts, PGOUTPUT_MAX_ATTS, rd->left);
                return;
        }
        if (natts > 0) {
                m->u.relation.attrs = calloc((size_t)natts, sizeof(*m->u.relation.attrs));
                if (!m->u.relation.attrs) {
                        rd_fail(rd, -ENOMEM, "out of memory decoding Relation message");
                        return;
                }
        }
        m->u.relation.natts = natts;
        for (int i = 0; i < natts && rd->r == 0; i++) {
                PgoutputAttr *a = &m->u.relation.attrs[i];
                char field[48];

                snprintf(field, sizeof(field), "column %d flags", i + 1);
                a->flags = rd_u8(rd, field);
                snprintf(field, sizeof(field), "column %d name", i + 1);
                a->name = rd_str(rd, field);
                snprintf(field, sizeof(field), "column %d type oid", i + 1);
                a->type_oid = rd_u32(rd, field);
                snprintf(field, sizeof(field), "column %d typmod", i + 1);
                a->typmod = (int32_t)rd_u32(rd, field);
        }
}

/* 'K' / 'O' / 'N' marker before a tuple; returns the byte or 0 after an error. */
static char rd_marker(Reader *rd, const char *field) {
        return (char)rd_u8(rd, field);
}

static void dec_insert(Reader *rd, PgoutputMsg *m) {
        char k;

        m->u.row.rel_id = rd_u32(rd, "relation id");
        k = rd_marker(rd, "new tuple marker");
        if (rd->r < 0)
                return;
        if (k != 'N') {
                rd_fail(rd, -EBADMSG,
                        "malformed Insert message: expected 'N' before the new "
                        "tuple, got 0x%02x",
                        (uint8_t)k);
                return;
        }
        rd_tuple(rd, "new tuple", &m->u.row.new_tuple);
}

static void dec_update(Reader *rd, PgoutputMsg *m) {
        char k;

        m->u.row.rel_id = rd_u32(rd, "relation id");
        k = rd_marker(rd, "tuple marker");
        if (rd->r < 0)
                return;
        if (k == 'K' || k == 'O') {
                m->u.row.old_kind = k;
                rd_tuple(rd, k == 'K' ? "old key" : "old tuple", &m->u.row.old_tuple);
                k = rd_marker(rd, "new tuple marker");
                if (rd->r < 0)
                        return;
        }
        if (k != 'N') {
                rd_fail(rd, -EBADMSG,
                        "malformed Update message: expected 'K', 'O' or 'N' before "
                        "a tuple, got 0x%02x",
                        (uint8_t)k);
                return;
        }
        rd_tuple(rd, "new tuple", &m->u.row.new_tuple);
}

static void dec_delete(Reader *rd, PgoutputMsg *m) {
        char k;

        m->u.row.rel_id = rd_u32(rd, "relation id");
        k = rd_marker(rd, "old tuple marker");
        if (rd->r < 0)
                return;
        if (k != 'K' && k != 'O') {
                rd_fail(rd, -EBADMSG,
                        "malformed Delete message: expected 'K' or 'O' before the "
                        "old tuple, got 0x%02x",
                        (uint8_t)k);
                return;
        }
        m->u.row.old_kind = k;
        rd_tuple(rd, k == 'K' ? "old key" : "old tuple", &m->u.row.old_tuple);
}

static void dec_truncate(Reader *rd, PgoutputMsg *m) {
        uint32_t nrels = rd_u32(rd, "relation count");

        m->u.truncate.options = rd_u8(rd, "options");
        if (rd->r < 0)
                return;
        if (nrels > rd->left / 4) {
                rd_fail(rd, -EBADMSG,
                        "truncated Truncate message: %" PRIu32 " relation ids need "
                        "%" PRIu64 " bytes, %zu remain",
                        nrels, (uint64_t)nrels * 4, rd->left);
                return;
        }
        if (nrels > 0) {
                m->u.truncate.rel_ids = calloc(nrels, sizeof(*m->u.truncate.rel_ids));
                if (!m->u.truncate.rel_ids) {
                        rd_fail(rd, -ENOMEM, "out of memory decoding Truncate message");
                        return;
                }
        }
        m->u.truncate.nrels = (int)nrels;
        for (uint32_t i = 0; i < nrels; i++)
                m->u.truncate.rel_ids[i] = rd_u32(rd, "relation id");
}

static void dec_message(Reader *rd, PgoutputMsg *m) {
        m->u.message.flags = rd_u8(rd, "flags");
        m->u.message.lsn = rd_u64(rd, "lsn");
        m->u.message.prefix = rd_str(rd, "prefix");
        m->u.message.len = rd_u32(rd, "content length");
        if (rd->r < 0)
                return;
        if (m->u.message.len > rd->left) {
                rd_fail(rd, -EBADMSG,
                        "truncated Message message: content length %" PRIu32 " exceeds remaining %zu bytes",
                        m->u.message.len, rd->left);
                return;
        }
        m->u.message.content = (const char *)rd->p;
        rd->p += m->u.message.len;
        rd->left -= m->u.message.len;
}

static const char *msg_name(uint8_t t) {
        switch (t) {
        case PGOUTPUT_BEGIN: return "Begin";
        case PGOUTPUT_COMMIT: return "Commit";
        case PGOUTPUT_ORIGIN: return "Origin";
        case PGOUTPUT_RELATION: return "Relation";
        case PGOUTPUT_TYPE: return "Type";
        case PGOUTPUT_INSERT: return "Insert";
        case PGOUTPUT_UPDATE: return "Update";
        case PGOUTPUT_DELETE: return "Delete";
        case PGOUTPUT_TRUNCATE: return "Truncate";
        case PGOUTPUT_MESSAGE: return "Message";
        case PGOUTPUT_STREAM_START: return "Stream Start";
        case PGOUTPUT_STREAM_STOP: return "Stream Stop";
        case PGOUTPUT_STREAM_COMMIT: return "Stream Commit";
        case PGOUTPUT_STREAM_ABORT: return "Stream Abort";
        default: return NULL;
        }
}

void pgoutput_msg_clear(PgoutputMsg *m) {
        if (!m)
                return;
        switch (m->type) {
        case PGOUTPUT_RELATION: free(m->u.relation.attrs); break;
        case PGOUTPUT_INSERT:
        case PGOUTPUT_UPDATE:
        case PGOUTPUT_DELETE:
                free(m->u.row.old_tuple.cols);
                free(m->u.row.new_tuple.cols);
                break;
        case PGOUTPUT_TRUNCATE: free(m->u.truncate.rel_ids); break;
        default: break;
        }
        memset(m, 0, sizeof(*m));
}

int pgoutput_decode(const uint8_t *buf, size_t len, bool in_stream, PgoutputMsg *ret, char *err, size_t errlen) {
        Reader rd = {.err = err, .errlen = errlen};
        PgoutputMsg m = {0};
        uint8_t t;

        if (err && errlen > 0)
                err[0] = '\0';
        if (!buf || len == 0) {
                rd_fail(&rd, -EBADMSG, "empty pgoutput message");
                return rd.r;
        }
        t = buf[0];
        rd.msg = msg_name(t);
        if (!rd.msg) {
                if (t >= 0x20 && t < 0x7f)
                        rd_fail(&rd, -EPROTONOSUPPORT, "unknown pgoutput message type '%c' (0x%02x)", t, t);
                else
                        rd_fail(&rd, -EPROTONOSUPPORT, "unknown pgoutput message type 0x%02x", t);
                return rd.r;
        }
        rd.p = buf + 1;
        rd.left = len - 1;
        m.type = (PgoutputMsgType)t;

        switch (m.type) {
        case PGOUTPUT_BEGIN:
                m.u.begin.final_lsn = rd_u64(&rd, "final lsn");
                m.u.begin.commit_ts = rd_ts(&rd, "commit timestamp");
                m.xid = rd_u32(&rd, "xid");
                break;
        case PGOUTPUT_COMMIT:
                m.u.commit.flags = rd_u8(&rd, "flags");
                m.u.commit.commit_lsn = rd_u64(&rd, "commit lsn");
                m.u.commit.end_lsn = rd_u64(&rd, "end lsn");
                m.u.commit.commit_ts = rd_ts(&rd, "commit timestamp");
                break;
        case PGOUTPUT_ORIGIN:
                m.u.origin.commit_lsn = rd_u64(&rd, "commit lsn");
                m.u.origin.name = rd_str(&rd, "origin name");
                break;
        case PGOUTPUT_RELATION:
                rd_xid_if(&rd, in_stream, &m);
                dec_relation(&rd, &m);
                break;
        case PGOUTPUT_TYPE:
                rd_xid_if(&rd, in_stream, &m);
                m.u.type.type_oid = rd_u32(&rd, "type oid");
                m.u.type.nspname = rd_str(&rd, "namespace");
                m.u.type.typname = rd_str(&rd, "type name");
                break;
        case PGOUTPUT_INSERT:
                rd_xid_if(&rd, in_stream, &m);
                dec_insert(&rd, &m);
                break;
        case PGOUTPUT_UPDATE:
                rd_xid_if(&rd, in_stream, &m);
                dec_update(&rd, &m);
                break;
        case PGOUTPUT_DELETE:
                rd_xid_if(&rd, in_stream, &m);
                dec_delete(&rd, &m);
                break;
        case PGOUTPUT_TRUNCATE:
                rd_xid_if(&rd, in_stream, &m);
                dec_truncate(&rd, &m);
                break;
        case PGOUTPUT_MESSAGE:
                rd_xid_if(&rd, in_stream, &m);
                dec_message(&rd, &m);
                break;
        case PGOUTPUT_STREAM_START:
                m.xid = rd_u32(&rd, "xid");
                m.u.stream_start.first_segment = rd_u8(&rd, "first segment") != 0;
                break;
        case PGOUTPUT_STREAM_STOP: break;
        case PGOUTPUT_STREAM_COMMIT:
                m.xid = rd_u32(&rd, "xid");
                m.u.commit.flags = rd_u8(&rd, "flags");
                m.u.commit.commit_lsn = rd_u64(&rd, "commit lsn");
                m.u.commit.end_lsn = rd_u64(&rd, "end lsn");
                m.u.commit.commit_ts = rd_ts(&rd, "commit timestamp");
                break;
        case PGOUTPUT_STREAM_ABORT:
                m.xid = rd_u32(&rd, "xid");
                m.u.stream_abort.subxid = rd_u32(&rd, "subxid");
                break;
        }
        /* proto_version is negotiated, so extra bytes mean we lost the framing, not a new field */
        if (rd.r == 0 && rd.left > 0)
                rd_fail(&rd, -EBADMSG, "malformed %s message: %zu trailing bytes", rd.msg, rd.left);
        if (rd.r < 0) {
                pgoutput_msg_clear(&m);
                return rd.r;
        }
        *ret = m;
        return 0;
}

int pgwire_read_xlogdata(const uint8_t *buf, size_t len, PgwireXLogData *ret) {
        if (!buf || len < 25 || buf[0] != PGWIRE_XLOGDATA)
                return -EBADMSG;
        ret->wal_start = be_get(buf + 1, 8);
        ret->wal_end = be_get(buf + 9, 8);
        ret->send_time = ts_from_pg((int64_t)be_get(buf + 17, 8));
        ret->data = buf + 25;
        ret->len = len - 25;
        return 0;
}

int pgwire_read_keepalive(const uint8_t *buf, size_t len, PgwireKeepalive *ret) {
        /* exactly 18 bytes: a longer frame means the framing is off, not a newer server */
        if (!buf || len != 18 || buf[0] != PGWIRE_KEEPALIVE)
                return -EBADMSG;
        ret->wal_end = be_get(buf + 1, 8);
        ret->send_time = ts_from_pg((int64_t)be_get(buf + 9, 8));
        ret->reply_requested = buf[17] != 0;
        return 0;
}

static void be_put(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--) {
                p[i] = (uint8_t)v;
                v >>= 8;
        }
}

size_t pgwire_write_standby_status(uint8_t out[34], uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
                                   int64_t now, bool reply_requested) {
        out[0] = PGWIRE_STANDBY_STATUS;
        be_put(out + 1, write_lsn);
        be_put(out + 9, flush_lsn);
        be_put(out + 17, apply_lsn);
        be_put(out + 25, (uint64_t)ts_to_pg(now));
        out[33] = reply_requested ? 1 : 0;
        return 34;
}
