/* Pure decoding of binlog events and row images into the change model's text Values. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "cdcsync/strbuf.h"
#include "mysql/binlog.h"

/* ---- little readers, every one bounded by the caller ---- */

static uint64_t le(const uint8_t *p, size_t n) {
        uint64_t v = 0;
        for (size_t i = n; i > 0; i--)
                v = v << 8 | p[i - 1];
        return v;
}

static uint64_t be(const uint8_t *p, size_t n) {
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

/* MySQL's length-encoded integer. Returns bytes used, 0 when truncated or NULL marker. */
static size_t read_packed(const uint8_t *p, size_t len, uint64_t *ret) {
        if (len < 1)
                return 0;
        if (p[0] < 251) {
                *ret = p[0];
                return 1;
        }
        size_t n = p[0] == 252 ? 2 : p[0] == 253 ? 3 : p[0] == 254 ? 8 : 0;
        if (n == 0 || len < n + 1)
                return 0;
        *ret = le(p + 1, n);
        return n + 1;
}

int binlog_read_header(const uint8_t *buf, size_t len, bool checksum, BinlogHeader *ret) {
        if (len < BINLOG_HEADER_LEN)
                return -EBADMSG;
        BinlogHeader h = {
                .timestamp = (uint32_t)le(buf, 4),
                .type = buf[4],
                .server_id = (uint32_t)le(buf + 5, 4),
                .event_len = (uint32_t)le(buf + 9, 4),
                .next_pos = (uint32_t)le(buf + 13, 4),
                .flags = (uint16_t)le(buf + 17, 2),
        };
        size_t tail = checksum ? BINLOG_CHECKSUM_LEN : 0;
        if (h.event_len < BINLOG_HEADER_LEN + tail || h.event_len > len)
                return -EBADMSG;
        h.body = buf + BINLOG_HEADER_LEN;
        h.body_len = h.event_len - BINLOG_HEADER_LEN - tail;
        *ret = h;
        return 0;
}

int binlog_read_fde_checksum(const uint8_t *buf, size_t len, bool *ret_checksum) {
        /* body: binlog version (2), server version (50), created (4), header length (1),
         * post-header lengths, then the checksum algorithm (1) and the CRC (4) of servers that
         * know checksums (every MariaDB since 5.3 and MySQL since 5.6.1). */
        BinlogHeader h;
        int r = binlog_read_header(buf, len, false, &h);
        if (r < 0)
                return r;
        if (h.type != BINLOG_FORMAT_DESCRIPTION || h.body_len < 57 + 5 || h.body[56] != BINLOG_HEADER_LEN)
                return -EBADMSG;
        uint8_t alg = h.body[h.body_len - 5];
        *ret_checksum = alg == 1;
        return 0;
}

int binlog_read_rotate(const BinlogHeader *h, uint64_t *ret_pos, const char **ret_name, size_t *ret_len) {
        if (h->type != BINLOG_ROTATE || h->body_len < 8 + 1 || h->body_len - 8 > 511)
                return -EBADMSG;
        *ret_pos = le(h->body, 8);
        *ret_name = (const char *)h->body + 8;
        *ret_len = h->body_len - 8;
        return 0;
}

/* ---- TABLE_MAP ---- */

BinlogTableMap *binlog_table_map_free(BinlogTableMap *tm) {
        if (!tm)
                return NULL;
        free(tm->schema);
        free(tm->table);
        free(tm->cols);
        free(tm);
        return NULL;
}

/* Bytes of TABLE_MAP metadata per column type. */
static int meta_len(uint8_t type) {
        switch (type) {
        case BINLOG_T_FLOAT:
        case BINLOG_T_DOUBLE:
        case BINLOG_T_BLOB:
        case BINLOG_T_GEOMETRY:
        case BINLOG_T_JSON:
        case BINLOG_T_TIMESTAMP2:
        case BINLOG_T_DATETIME2:
        case BINLOG_T_TIME2: return 1;
        case BINLOG_T_VARCHAR:
        case BINLOG_T_VAR_STRING:
        case BINLOG_T_STRING:
        case BINLOG_T_ENUM:
        case BINLOG_T_SET:
        case BINLOG_T_NEWDECIMAL:
        case BINLOG_T_BIT:
        case BINLOG_T_DECIMAL: return 2;
        default: return 0;
        }
}

int binlog_read_table_map(const BinlogHeader *h, BinlogTableMap **ret) {
        const uint8_t *p = h->body, *end = h->body + h->body_len;
        BinlogTableMap *tm = NULL;
        int r = -EBADMSG;
        uint64_t n, mlen;
        size_t used;

        /* post-header: table id (6), flags (2) */
        if (end - p < 8 + 1)
                goto out;
        tm = calloc(1, sizeof(*tm));
        if (!tm) {
                r = -ENOMEM;
                goto out;
        }
        tm->table_id = le(p, 6);
        p += 8;
        /* schema and table: length byte, name, NUL */
        for (int i = 0; i < 2; i++) {
                if (end - p < 1 || (size_t)(end - p) < (size_t)p[0] + 2u || p[1 + p[0]] != 0)
                        goto out;
                char *s = strndup((const char *)p + 1, p[0]);
                if (!s) {
                        r = -ENOMEM;
                        goto out;
                }
                if (i == 0)
                        tm->schema = s;
                else
                        tm->table = s;
                p += (size_t)p[0] + 2;
        }
        used = read_packed(p, (size_t)(end - p), &n);
        if (used == 0 || n == 0 || n > 4096 || (size_t)(end - p - used) < n)
                goto out;
        p += used;
        tm->ncols = (uint32_t)n;
        tm->cols = calloc(n, sizeof(BinlogColumn));
        if (!tm->cols) {
                r = -ENOMEM;
                goto out;
        }
        for (uint32_t i = 0; i < n; i++)
                tm->cols[i].type = p[i];
        p += n;
        used = read_packed(p, (size_t)(end - p), &mlen);
        if (used == 0 || (size_t)(end - p - used) < mlen)
                goto out;
        p += used;
        const uint8_t *m = p, *mend = p + mlen;
        for (uint32_t i = 0; i < n; i++) {
                BinlogColumn *c = &tm->cols[i];
                int ml = meta_len(c->type);
                if (mend - m < ml)
                        goto out;
                switch (c->type) {
                case BINLOG_T_VARCHAR:
                case BINLOG_T_VAR_STRING: c->meta = (uint32_t)le(m, 2); break;
                case BINLOG_T_STRING:
                case BINLOG_T_ENUM:
                case BINLOG_T_SET: {
                        /* byte 0: real type, its bits 4-5 inverted carry bits 8-9 of the max length */
                        uint8_t b0 = m[0], b1 = m[1];
                        if ((b0 & 0x30) != 0x30) {
                                c->meta = (uint32_t)(((b0 & 0x30) ^ 0x30) << 4) | b1;
                                c->type = b0 | 0x30;
                        } else {
                                c->type = b0;
                                c->meta = b1;
                        }
                        break;
                }
                case BINLOG_T_NEWDECIMAL:
                case BINLOG_T_BIT:
                case BINLOG_T_DECIMAL: c->meta = (uint32_t)m[0] << 8 | m[1]; break;
                default: c->meta = ml == 1 ? m[0] : 0; break;
                }
                m += ml;
        }
        p = mend;
        if ((size_t)(end - p) < (n + 7) / 8)
                goto out;
        for (uint32_t i = 0; i < n; i++)
                tm->cols[i].nullable = p[i / 8] >> (i % 8) & 1;
        /* Optional metadata (binlog_row_metadata) follows; names come from information_schema. */
        *ret = tm;
        tm = NULL;
        r = 0;
out:
        binlog_table_map_free(tm);
        return r;
}

/* ---- compressed events (MariaDB log_bin_compress) ---- */

/* Deflate cannot expand a stream by more than this factor (RFC 1951: a 258-byte match costs at
 * least 2 bits), so a longer announced length is a lie told before any byte is allocated. */
#define ZLIB_MAX_RATIO 1032u

int binlog_uncompress(const uint8_t *buf, size_t len, uint8_t **ret, size_t *ret_len) {
        if (len < 1 || (buf[0] & 0x80) == 0 || (buf[0] & 0x70) != 0)
                return -EBADMSG;
        size_t nlen = buf[0] & 0x07;
        if (nlen < 1 || nlen > 4 || len < 1 + nlen)
                return -EBADMSG;
        uint64_t want = be(buf + 1, nlen);
        const uint8_t *z = buf + 1 + nlen;
        size_t zlen = len - 1 - nlen;
        if (want > BINLOG_UNCOMPRESSED_MAX || want > (uint64_t)zlen * ZLIB_MAX_RATIO)
                return -EMSGSIZE;
        /* one spare byte: an empty payload still gets a buffer, and a longer stream shows */
        uint8_t *out = malloc((size_t)want + 1);
        if (!out)
                return -ENOMEM;
        uLongf got = (uLongf)want + 1;
        uLong used = (uLong)zlen;
        int zr = uncompress2(out, &got, z, &used);
        if (zr != Z_OK || got != want) {
                free(out);
                return zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
        }
        *ret = out;
        *ret_len = (size_t)want;
        return 0;
}

/* ---- QUERY ---- */

void binlog_query_clear(BinlogQuery *q) {
        free(q->owned);
        *q = (BinlogQuery){0};
}

int binlog_read_query(const BinlogHeader *h, BinlogQuery *ret) {
        const uint8_t *p = h->body, *end = h->body + h->body_len;
        BinlogQuery q = {0};

        if (h->type != BINLOG_QUERY && h->type != BINLOG_QUERY_COMPRESSED)
                return -EBADMSG;
        /* post-header: thread id (4), exec time (4), db length (1), error code (2), status
         * variables length (2); then the status variables, the db and its NUL, the statement */
        if (end - p < 13)
                return -EBADMSG;
        q.thread_id = (uint32_t)le(p, 4);
        q.db_len = p[8];
        q.error_code = (uint16_t)le(p + 9, 2);
        size_t status_len = (size_t)le(p + 11, 2);
        p += 13;
        if ((size_t)(end - p) < status_len + q.db_len + 1 || p[status_len + q.db_len] != 0)
                return -EBADMSG;
        p += status_len;
        q.db = (const char *)p;
        p += q.db_len + 1;
        if (h->type == BINLOG_QUERY) {
                q.statement = (const char *)p;
                q.statement_len = (size_t)(end - p);
        } else {
                int r = binlog_uncompress(p, (size_t)(end - p), &q.owned, &q.statement_len);
                if (r < 0)
                        return r;
                q.statement = (const char *)q.owned;
        }
        *ret = q;
        return 0;
}

/* ---- ROWS ---- */

void binlog_rows_clear(BinlogRows *rows) {
        free(rows->owned);
        *rows = (BinlogRows){0};
}

static bool any_bit(const uint8_t *bm, uint32_t n) {
        for (uint32_t i = 0; i < n; i++)
                if (bm[i / 8] >> (i % 8) & 1)
                        return true;
        return false;
}

int binlog_read_rows(const BinlogHeader *h, BinlogRows *ret) {
        const uint8_t *p = h->body, *end = h->body + h->body_len;
        BinlogRows rows = {0};
        bool v2 = false, compressed = false;
        uint64_t n;
        size_t used, bm;

        switch (h->type) {
        case BINLOG_WRITE_ROWS_COMPRESSED:
                compressed = true;
                /* fall through */
        case BINLOG_WRITE_ROWS:
                v2 = true;
                rows.op = CHANGE_INSERT;
                break;
        case BINLOG_UPDATE_ROWS_COMPRESSED:
                compressed = true;
                /* fall through */
        case BINLOG_UPDATE_ROWS:
                v2 = true;
                rows.op = CHANGE_UPDATE;
                break;
        case BINLOG_DELETE_ROWS_COMPRESSED:
                compressed = true;
                /* fall through */
        case BINLOG_DELETE_ROWS:
                v2 = true;
                rows.op = CHANGE_DELETE;
                break;
        case BINLOG_WRITE_ROWS_COMPRESSED_V1:
                compressed = true;
                /* fall through */
        case BINLOG_WRITE_ROWS_V1: rows.op = CHANGE_INSERT; break;
        case BINLOG_UPDATE_ROWS_COMPRESSED_V1:
                compressed = true;
                /* fall through */
        case BINLOG_UPDATE_ROWS_V1: rows.op = CHANGE_UPDATE; break;
        case BINLOG_DELETE_ROWS_COMPRESSED_V1:
                compressed = true;
                /* fall through */
        case BINLOG_DELETE_ROWS_V1: rows.op = CHANGE_DELETE; break;
        default: return -EBADMSG;
        }
        if (end - p < 8)
                return -EBADMSG;
        rows.table_id = le(p, 6);
        rows.flags = (uint16_t)le(p + 6, 2);
        p += 8;
        if (v2) {
                /* extra data: its length counts the two length bytes themselves */
                if (end - p < 2)
                        return -EBADMSG;
                size_t extra = (size_t)le(p, 2);
                if (extra < 2 || (size_t)(end - p) < extra)
                        return -EBADMSG;
                p += extra;
        }
        used = read_packed(p, (size_t)(end - p), &n);
        if (used == 0 || n == 0 || n > 4096)
                return -EBADMSG;
        p += used;
        rows.ncols = (uint32_t)n;
        bm = (n + 7) / 8;
        if ((size_t)(end - p) < bm)
                return -EBADMSG;
        rows.present = p;
        p += bm;
        /* A row image without a column is 0 bytes long (not even a null bitmap): rows would be
         * read forever without consuming a byte. No server logs one (the before image holds at
         * least the key, an insert at least one column). */
        if (!any_bit(rows.present, rows.ncols))
                return -EBADMSG;
        if (rows.op == CHANGE_UPDATE) {
                if ((size_t)(end - p) < bm)
                        return -EBADMSG;
                rows.present_after = p;
                p += bm;
        }
        if (compressed) {
                int r = binlog_uncompress(p, (size_t)(end - p), &rows.owned, &rows.rows_len);
                if (r < 0)
                        return r;
                rows.rows = rows.owned;
        } else {
                rows.rows = p;
                rows.rows_len = (size_t)(end - p);
        }
        *ret = rows;
        return 0;
}

/* ---- values ---- */

TypeClass binlog_type_class(const BinlogColumn *col, const BinlogColumnInfo *info) {
        switch (col->type) {
        case BINLOG_T_TINY:
        case BINLOG_T_SHORT:
        case BINLOG_T_INT24:
        case BINLOG_T_LONG:
        case BINLOG_T_LONGLONG:
        case BINLOG_T_YEAR: return TYPE_INTEGER;
        case BINLOG_T_NEWDECIMAL:
        case BINLOG_T_DECIMAL: return TYPE_NUMERIC;
        case BINLOG_T_FLOAT:
        case BINLOG_T_DOUBLE: return TYPE_FLOAT;
        case BINLOG_T_DATE:
        case BINLOG_T_NEWDATE: return TYPE_DATE;
        case BINLOG_T_TIME:
        case BINLOG_T_TIME2: return TYPE_TIME;
        case BINLOG_T_DATETIME:
        case BINLOG_T_DATETIME2: return TYPE_TIMESTAMP;
        case BINLOG_T_TIMESTAMP:
        case BINLOG_T_TIMESTAMP2: return TYPE_TIMESTAMPTZ;
        case BINLOG_T_BIT:
        case BINLOG_T_ENUM:
        case BINLOG_T_SET: return TYPE_TEXT;
        case BINLOG_T_JSON: return TYPE_JSON;
        case BINLOG_T_GEOMETRY: return TYPE_BYTES;
        case BINLOG_T_VARCHAR:
        case BINLOG_T_VAR_STRING:
        case BINLOG_T_STRING:
        case BINLOG_T_BLOB:
        case BINLOG_T_TINY_BLOB:
        case BINLOG_T_MEDIUM_BLOB:
        case BINLOG_T_LONG_BLOB:
                if (info && info->json)
                        return TYPE_JSON;
                if (info && info->charset == BINLOG_CS_BINARY)
                        return TYPE_BYTES;
                return TYPE_TEXT;
        default: return TYPE_OTHER;
        }
}

/* "YYYY-MM-DD hh:mm:ss" (the width-padded fields of "%04u-%02u-%02u %02u:%02u:%02u") */
static void buf_datetime(StrBuf *b, unsigned y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned sec) {
        strbuf_uint(b, y, 4);
        strbuf_put(b, "-", 1);
        strbuf_uint(b, mo, 2);
        strbuf_put(b, "-", 1);
        strbuf_uint(b, d, 2);
        strbuf_put(b, " ", 1);
        strbuf_uint(b, h, 2);
        strbuf_put(b, ":", 1);
        strbuf_uint(b, mi, 2);
        strbuf_put(b, ":", 1);
        strbuf_uint(b, sec, 2);
}

static void put_hex(StrBuf *b, const uint8_t *p, size_t n) {
        static const char hex[] = "0123456789abcdef";
        strbuf_put(b, "\\x", 2);
        for (size_t i = 0; i < n; i++) {
                char c[2] = {hex[p[i] >> 4], hex[p[i] & 15]};
                strbuf_put(b, c, 2);
        }
}

static void put_string(StrBuf *b, const uint8_t *p, size_t n, const BinlogColumnInfo *info) {
        BinlogCharset cs = info ? info->charset : BINLOG_CS_UTF8;
        if (cs == BINLOG_CS_BINARY) {
                put_hex(b, p, n);
        } else if (cs == BINLOG_CS_LATIN1) {
                /* ISO-8859-1 to UTF-8; MySQL's latin1 is really cp1252, whose 0x80-0x9f
                 * printable characters land here as C1 controls (kept, not lost). */
                for (size_t i = 0; i < n; i++) {
                        if (p[i] < 0x80) {
                                strbuf_put(b, (const char *)p + i, 1);
                        } else {
                                char u[2] = {(char)(0xc0 | p[i] >> 6), (char)(0x80 | (p[i] & 0x3f))};
                                strbuf_put(b, u, 2);
                        }
                }
        } else {
                strbuf_put(b, (const char *)p, n);
        }
}

static void put_frac(StrBuf *b, uint32_t usec, unsigned fsp) {
        if (fsp == 0)
                return;
        if (fsp > 6)
                fsp = 6;
        uint32_t div = 1;
        for (unsigned i = fsp; i < 6; i++)
                div *= 10;
        strbuf_put(b, ".", 1);
        strbuf_uint(b, usec / div, fsp);
}

/* Bytes of the fractional part of TIME2/DATETIME2/TIMESTAMP2 for fsp digits. */
static size_t frac_bytes(unsigned fsp) {
        return (fsp + 1) / 2;
}

/* Reads the fraction (fbytes big-endian) as microseconds. */
static uint32_t frac_usec(const uint8_t *p, unsigned fsp) {
        switch (frac_bytes(fsp)) {
        case 1: return (uint32_t)p[0] * 10000;
        case 2: return (uint32_t)be(p, 2) * 100;
        case 3: return (uint32_t)be(p, 3);
        default: return 0;
        }
}

static const int dig2bytes[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

static size_t decimal_size(unsigned prec, unsigned scale) {
        unsigned intg = prec - scale;
        return (size_t)(intg / 9 * 4 + dig2bytes[intg % 9] + scale / 9 * 4 + dig2bytes[scale % 9]);
}

/* MySQL's binary DECIMAL: groups of 9 digits in 4 big-endian bytes, a shorter leading and
 * trailing group, the sign in the top bit (inverted), negatives stored with every bit flipped. */
static int put_decimal(StrBuf *b, const uint8_t *src, unsigned prec, unsigned scale) {
        uint8_t d[40];
        size_t size = decimal_size(prec, scale);
        if (size > sizeof(d) || prec == 0 || scale > prec)
                return -EBADMSG;
        memcpy(d, src, size);
        bool neg = !(d[0] & 0x80);
        d[0] ^= 0x80;
        if (neg)
                for (size_t i = 0; i < size; i++)
                        d[i] = (uint8_t)~d[i];
        unsigned intg = prec - scale, intg0 = intg / 9, intg0x = intg % 9;
        unsigned frac0 = scale / 9, frac0x = scale % 9;
        const uint8_t *p = d;
        char digits[100];
        size_t nd = 0;
        if (intg0x) {
                int n = dig2bytes[intg0x];
                nd += (size_t)snprintf(digits + nd, sizeof(digits) - nd, "%0*" PRIu64, (int)intg0x, be(p, (size_t)n));
                p += n;
        }
        for (unsigned i = 0; i < intg0; i++) {
                nd += (size_t)snprintf(digits + nd, sizeof(digits) - nd, "%09" PRIu64, be(p, 4));
                p += 4;
        }
        /* strip leading zeros of the integer part, keep one */
        size_t lead = 0;
        while (lead + 1 < nd && digits[lead] == '0')
                lead++;
        if (neg)
                strbuf_put(b, "-", 1);
        if (nd == 0)
                strbuf_put(b, "0", 1);
        else
                strbuf_put(b, digits + lead, nd - lead);
        if (scale) {
                nd = 0;
                for (unsigned i = 0; i < frac0; i++) {
                        nd += (size_t)snprintf(digits + nd, sizeof(digits) - nd, "%09" PRIu64, be(p, 4));
                        p += 4;
                }
                if (frac0x) {
                        int n = dig2bytes[frac0x];
                        nd += (size_t)snprintf(digits + nd, sizeof(digits) - nd, "%0*" PRIu64, (int)frac0x,
                                               be(p, (size_t)n));
                }
                strbuf_put(b, ".", 1);
                strbuf_put(b, digits, nd);
        }
        return 0;
}

/* Shortest text that reads back as the same float / double. */
static void put_float(StrBuf *b, double v, bool single) {
        char tmp[40];
        for (int prec = single ? 6 : 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
                        break;
        }
        strbuf_put(b, tmp, strlen(tmp));
}

void binlog_format_float(double v, bool single, char *buf, size_t len) {
        StrBuf b = {0};
        put_float(&b, v, single);
        snprintf(buf, len, "%s", b.data ? b.data : "");
        free(b.data);
}

static bool bit_set(const uint8_t *bm, uint32_t i) {
        return bm[i / 8] >> (i % 8) & 1;
}

/* Decodes one column value at p (len bytes left). Returns bytes used, or negative. A zero date
 * sets *zero (the caller stores NULL). */
static long decode_value(const BinlogColumn *c, const BinlogColumnInfo *info, const uint8_t *p, size_t len, StrBuf *b,
                         bool *zero) {
        bool uns = info && info->is_unsigned;
        size_t need;
        switch (c->type) {
        case BINLOG_T_TINY:
        case BINLOG_T_SHORT:
        case BINLOG_T_INT24:
        case BINLOG_T_LONG:
        case BINLOG_T_LONGLONG: {
                need = c->type == BINLOG_T_TINY    ? 1
                       : c->type == BINLOG_T_SHORT ? 2
                       : c->type == BINLOG_T_INT24 ? 3
                       : c->type == BINLOG_T_LONG  ? 4
                                                   : 8;
                if (len < need)
                        return -EBADMSG;
                uint64_t u = le(p, need);
                if (uns) {
                        strbuf_uint(b, u, 0);
                } else {
                        unsigned shift = (unsigned)(64 - need * 8);
                        int64_t s = shift ? (int64_t)(u << shift) >> shift : (int64_t)u;
                        strbuf_int(b, s);
                }
                return (long)need;
        }
        case BINLOG_T_YEAR:
                if (len < 1)
                        return -EBADMSG;
                strbuf_printf(b, "%04u", p[0] ? 1900u + p[0] : 0u);
                return 1;
        case BINLOG_T_FLOAT: {
                if (len < 4)
                        return -EBADMSG;
                uint32_t u = (uint32_t)le(p, 4);
                float f;
                memcpy(&f, &u, 4);
                put_float(b, f, true);
                return 4;
        }
        case BINLOG_T_DOUBLE: {
                if (len < 8)
                        return -EBADMSG;
                uint64_t u = le(p, 8);
                double d;
                memcpy(&d, &u, 8);
                put_float(b, d, false);
                return 8;
        }
        case BINLOG_T_NEWDECIMAL: {
                unsigned prec = c->meta >> 8, scale = c->meta & 0xff;
                if (prec == 0 || prec > 65 || scale > 30 || scale > prec)
                        return -EBADMSG;
                need = decimal_size(prec, scale);
                if (len < need)
                        return -EBADMSG;
                int r = put_decimal(b, p, prec, scale);
                return r < 0 ? r : (long)need;
        }
        case BINLOG_T_DATE:
        case BINLOG_T_NEWDATE: {
                if (len < 3)
                        return -EBADMSG;
                uint32_t v = (uint32_t)le(p, 3);
                unsigned day = v & 31, mon = v >> 5 & 15, year = v >> 9;
                if (mon == 0 || day == 0)
                        *zero = true;
                else
                        strbuf_printf(b, "%04u-%02u-%02u", year, mon, day);
                return 3;
        }
        case BINLOG_T_TIME: {
                if (len < 3)
                        return -EBADMSG;
                int32_t v = (int32_t)(le(p, 3) << 8) >> 8; /* HHMMSS as a signed number */
                uint32_t a = (uint32_t)(v < 0 ? -v : v);
                strbuf_printf(b, "%s%02u:%02u:%02u", v < 0 ? "-" : "", a / 10000, a / 100 % 100, a % 100);
                return 3;
        }
        case BINLOG_T_TIME2: {
                unsigned fsp = c->meta;
                if (fsp > 6)
                        return -EBADMSG;
                need = 3 + frac_bytes(fsp);
                if (len < need)
                        return -EBADMSG;
                /* one big-endian number offset by 0x80.. : int part << frac bits | fraction */
                int64_t x = (int64_t)be(p, need) - ((int64_t)1 << (need * 8 - 1));
                bool neg = x < 0;
                uint64_t a = (uint64_t)(neg ? -x : x);
                unsigned fbits = (unsigned)frac_bytes(fsp) * 8;
                uint64_t hms = a >> fbits, frac = a & (((uint64_t)1 << fbits) - 1);
                uint32_t usec = fbits == 8    ? (uint32_t)frac * 10000
                                : fbits == 16 ? (uint32_t)frac * 100
                                              : (uint32_t)frac;
                strbuf_printf(b, "%s%02u:%02u:%02u", neg ? "-" : "", (unsigned)(hms >> 12 & 0x3ff),
                              (unsigned)(hms >> 6 & 63), (unsigned)(hms & 63));
                put_frac(b, usec, fsp);
                return (long)need;
        }
        case BINLOG_T_DATETIME: {
                if (len < 8)
                        return -EBADMSG;
                uint64_t v = le(p, 8); /* YYYYMMDDhhmmss as a number */
                unsigned d = (unsigned)(v / 1000000), t = (unsigned)(v % 1000000);
                if (d / 100 % 100 == 0 || d % 100 == 0)
                        *zero = true;
                else
                        buf_datetime(b, d / 10000, d / 100 % 100, d % 100, t / 10000, t / 100 % 100, t % 100);
                return 8;
        }
        case BINLOG_T_DATETIME2: {
                unsigned fsp = c->meta;
                if (fsp > 6)
                        return -EBADMSG;
                need = 5 + frac_bytes(fsp);
                if (len < need)
                        return -EBADMSG;
                uint64_t v = be(p, 5) - UINT64_C(0x8000000000);
                uint64_t ymd = v >> 17, ym = ymd >> 5, hms = v & 0x1ffff;
                unsigned day = (unsigned)(ymd & 31), mon = (unsigned)(ym % 13), year = (unsigned)(ym / 13);
                if (mon == 0 || day == 0) {
                        *zero = true;
                } else {
                        buf_datetime(b, year, mon, day, (unsigned)(hms >> 12), (unsigned)(hms >> 6 & 63),
                                     (unsigned)(hms & 63));
                        put_frac(b, frac_usec(p + 5, fsp), fsp);
                }
                return (long)need;
        }
        case BINLOG_T_TIMESTAMP:
        case BINLOG_T_TIMESTAMP2: {
                unsigned fsp = c->type == BINLOG_T_TIMESTAMP2 ? c->meta : 0;
                if (fsp > 6)
                        return -EBADMSG;
                need = 4 + (c->type == BINLOG_T_TIMESTAMP2 ? frac_bytes(fsp) : 0);
                if (len < need)
                        return -EBADMSG;
                /* v1 is little-endian, TIMESTAMP2 big-endian; both seconds since the epoch, UTC */
                time_t sec = (time_t)(c->type == BINLOG_T_TIMESTAMP ? le(p, 4) : be(p, 4));
                uint32_t usec = c->type == BINLOG_T_TIMESTAMP2 ? frac_usec(p + 4, fsp) : 0;
                struct tm tm;
                if (sec == 0 && usec == 0) {
                        *zero = true;
                } else if (!gmtime_r(&sec, &tm)) {
                        return -EBADMSG;
                } else {
                        if (tm.tm_year + 1900 < 0)
                                return -EBADMSG; /* TIMESTAMP is 1970..2106: never, but %04d would differ */
                        buf_datetime(b, (unsigned)(tm.tm_year + 1900), (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday,
                                     (unsigned)tm.tm_hour, (unsigned)tm.tm_min, (unsigned)tm.tm_sec);
                        put_frac(b, usec, fsp);
                        strbuf_put(b, "+00", 3);
                }
                return (long)need;
        }
        case BINLOG_T_BIT: {
                unsigned nbytes = c->meta & 0xff, rem = c->meta >> 8 & 0xff;
                unsigned nbits = nbytes * 8 + rem;
                need = nbytes + (rem ? 1 : 0);
                if (nbits == 0 || nbits > 64 || len < need)
                        return -EBADMSG;
                uint64_t v = be(p, need);
                for (unsigned i = nbits; i > 0; i--)
                        strbuf_put(b, v >> (i - 1) & 1 ? "1" : "0", 1);
                return (long)need;
        }
        case BINLOG_T_ENUM: {
                need = c->meta;
                if ((need != 1 && need != 2) || len < need)
                        return -EBADMSG;
                uint64_t idx = le(p, need);
                if (idx == 0)
                        ; /* MySQL's "invalid value" '' */
                else if (info && info->elems && idx <= (uint64_t)info->nelems)
                        strbuf_put(b, info->elems[idx - 1], strlen(info->elems[idx - 1]));
                else
                        strbuf_printf(b, "%" PRIu64, idx);
                if (!b->data)
                        strbuf_put(b, "", 0);
                return (long)need;
        }
        case BINLOG_T_SET: {
                need = c->meta;
                if (need < 1 || need > 8 || len < need)
                        return -EBADMSG;
                uint64_t bits = le(p, need);
                bool first = true;
                strbuf_put(b, "", 0);
                for (unsigned i = 0; i < 64; i++) {
                        if (!(bits >> i & 1))
                                continue;
                        if (!first)
                                strbuf_put(b, ",", 1);
                        first = false;
                        if (info && info->elems && i < (unsigned)info->nelems)
                                strbuf_put(b, info->elems[i], strlen(info->elems[i]));
                        else
                                strbuf_printf(b, "%u", i + 1);
                }
                return (long)need;
        }
        case BINLOG_T_VARCHAR:
        case BINLOG_T_VAR_STRING:
        case BINLOG_T_STRING: {
                /* the length prefix is 1 byte when the column's maximum byte length fits */
                size_t pl = c->meta < 256 ? 1 : 2;
                if (len < pl)
                        return -EBADMSG;
                size_t n = (size_t)le(p, pl);
                if (len - pl < n || n > c->meta)
                        return -EBADMSG;
                if (c->type == BINLOG_T_STRING && info && info->charset == BINLOG_CS_BINARY && n < c->meta) {
                        /* BINARY(n) is logged without its trailing zero bytes: put them back */
                        uint8_t *tmp = calloc(1, c->meta);
                        if (!tmp)
                                return -ENOMEM;
                        memcpy(tmp, p + pl, n);
                        put_hex(b, tmp, c->meta);
                        free(tmp);
                } else {
                        put_string(b, p + pl, n, info);
                }
                strbuf_put(b, "", 0);
                return (long)(pl + n);
        }
        case BINLOG_T_BLOB:
        case BINLOG_T_GEOMETRY: {
                size_t pl = c->meta;
                if (pl < 1 || pl > 4 || len < pl)
                        return -EBADMSG;
                size_t n = (size_t)le(p, pl);
                if (len - pl < n)
                        return -EBADMSG;
                if (c->type == BINLOG_T_GEOMETRY)
                        put_hex(b, p + pl, n);
                else
                        put_string(b, p + pl, n, info);
                strbuf_put(b, "", 0);
                return (long)(pl + n);
        }
        default:
                /* MySQL's binary JSON (245), pre-5.0 DECIMAL: not produced by MariaDB */
                return -ENOTSUP;
        }
}

int binlog_decode_row(const BinlogTableMap *tm, const BinlogColumnInfo *info, const uint8_t *present,
                      const uint8_t *buf, size_t len, Value *out, size_t *ret_used, unsigned *zero_dates) {
        uint32_t npresent = 0;
        for (uint32_t i = 0; i < tm->ncols; i++)
                npresent += bit_set(present, i);
        size_t nb = (npresent + 7) / 8, off = nb;
        if (len < nb)
                return -EBADMSG;
        const uint8_t *nulls = buf;
        uint32_t k = 0; /* index among present columns: the null bitmap only counts those */
        unsigned zeros = 0;
        for (uint32_t i = 0; i < tm->ncols; i++) {
                Value *v = &out[i];
                value_clear(v);
                if (!bit_set(present, i)) {
                        v->kind = VALUE_UNCHANGED;
                        continue;
                }
                bool isnull = bit_set(nulls, k++);
                if (isnull)
                        continue;
                StrBuf b = {0};
                bool zero = false;
                long used = decode_value(&tm->cols[i], info ? &info[i] : NULL, buf + off, len - off, &b, &zero);
                if (used < 0 || b.oom) {
                        free(b.data);
                        return used < 0 ? (int)used : -ENOMEM;
                }
                off += (size_t)used;
                if (zero) {
                        zeros++;
                        free(b.data);
                        continue;
                }
                if (!b.data) {
                        free(b.data);
                        return -EBADMSG;
                }
                v->kind = VALUE_TEXT;
                v->data = b.data;
                v->len = (uint32_t)b.len;
        }
        *ret_used = off;
        if (zero_dates)
                *zero_dates += zeros;
        return 0;
}
