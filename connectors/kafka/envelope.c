/* Builds Kafka message keys and Debezium-envelope values from changes: pure, no I/O.
 *
 * The JSON text is written here rather than dumped from a jansson tree because jansson holds
 * numbers as doubles and prints them with 17 digits: 12345678.91 would come out as
 * 12345678.910000000 or as 12345678.909999999. Numbers are written as the source's own digits
 * instead, and only when a consumer that reads them as a double (the common case) gets the same
 * value back; otherwise as a string. jansson validates json/jsonb values, which are then
 * embedded verbatim (again so that their numbers keep their digits). */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdcsync/strbuf.h"
#include "kafka/envelope.h"

#define ARRAY_MAX_DEPTH 6 /* PostgreSQL allows 6 dimensions */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
        unsigned c = s[0];
        size_t need;
        unsigned min;
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                need = 2, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
                need = 3, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
                need = 4, min = 0x10000;
        else
                return 0;
        if (n < need)
                return 0;
        unsigned cp = c & (0x7f >> need);
        for (size_t i = 1; i < need; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return need;
}

/* A JSON string. Bytes that are not UTF-8 (a SQL_ASCII database can send them) become U+FFFD so
 * the message stays valid JSON. */
static void buf_str(StrBuf *b, const char *s, size_t n) {
        const unsigned char *u = (const unsigned char *)s;
        strbuf_put(b, "\"", 1);
        size_t i = 0;
        while (i < n) {
                /* Plain ASCII needs no escape and no UTF-8 check: copied a run at a time (most
                 * text is; the per-character path below was the sink's hottest spot). */
                size_t run = i;
                while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
                        run++;
                if (run > i) {
                        strbuf_put(b, s + i, run - i);
                        i = run;
                        continue;
                }
                unsigned char c = u[i];
                if (c == '"' || c == '\\') {
                        char esc[2] = {'\\', (char)c};
                        strbuf_put(b, esc, 2);
                        i++;
                } else if (c < 0x20) {
                        char esc[8];
                        switch (c) {
                        case '\n': strbuf_put(b, "\\n", 2); break;
                        case '\r': strbuf_put(b, "\\r", 2); break;
                        case '\t': strbuf_put(b, "\\t", 2); break;
                        case '\b': strbuf_put(b, "\\b", 2); break;
                        case '\f': strbuf_put(b, "\\f", 2); break;
                        default: snprintf(esc, sizeof(esc), "\\u%04x", c); strbuf_put(b, esc, 6);
                        }
                        i++;
                } else {
                        size_t l = utf8_len(u + i, n - i);
                        if (l == 0) {
                                strbuf_put(b, "\\ufffd", 6);
                                i++;
                        } else {
                                strbuf_put(b, s + i, l);
                                i += l;
                        }
                }
        }
        strbuf_put(b, "\"", 1);
}

static void buf_cstr(StrBuf *b, const char *s) {
        buf_str(b, s, strlen(s));
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_syntax(const char *s) {
        const char *p = s;
        if (*p == '-')
                p++;
        if (*p == '0')
                p++;
        else if (*p >= '1' && *p <= '9')
                while (*p >= '0' && *p <= '9')
                        p++;
        else
                return false;
        if (*p == '.') {
                p++;
                if (!(*p >= '0' && *p <= '9'))
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!(*p >= '0' && *p <= '9'))
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        return *p == '\0';
}

/* The significant digits and decimal exponent of a decimal text, so two texts can be compared by
 * value: "12.50" and "1.25e1" both give digits "125", exp -1. Returns false when too long. */
static bool decimal_normal(const char *s, char *digits, size_t dlen, long *exp, bool *neg) {
        size_t nd = 0;
        long e = 0;
        bool seen_point = false;
        *neg = false;
        if (*s == '-') {
                *neg = true;
                s++;
        }
        for (; *s && *s != 'e' && *s != 'E'; s++) {
                if (*s == '.') {
                        seen_point = true;
                        continue;
                }
                if (nd == 0 && *s == '0') { /* leading zeros */
                        if (seen_point)
                                e--;
                        continue;
                }
                if (nd + 1 >= dlen)
                        return false;
                digits[nd++] = *s;
                if (seen_point)
                        e--;
        }
        if (*s == 'e' || *s == 'E') {
                char *end;
                errno = 0;
                long x = strtol(s + 1, &end, 10);
                if (errno || *end || x > 100000 || x < -100000)
                        return false;
                e += x;
        }
        while (nd > 0 && digits[nd - 1] == '0') {
                nd--;
                e++;
        }
        digits[nd] = '\0';
        if (nd == 0) {
                e = 0;
                *neg = false; /* -0 == 0 */
        }
        *exp = e;
        return true;
}

static bool decimal_equal(const char *a, const char *b) {
        char da[64], db[64];
        long ea, eb;
        bool na, nb;
        if (!decimal_normal(a, da, sizeof(da), &ea, &na) || !decimal_normal(b, db, sizeof(db), &eb, &nb))
                return false;
        return na == nb && ea == eb && strcmp(da, db) == 0;
}

/* Whether a reader that parses the number as a double gets exactly this decimal value back when
 * it prints it shortest (what "exact" means for a JSON consumer). */
static bool number_exact_as_double(const char *s) {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (*end || !isfinite(d) || errno == ERANGE)
                return false;
        char out[40];
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(out, sizeof(out), "%.*g", prec, d);
                if (strtod(out, NULL) == d)
                        return decimal_equal(out, s);
        }
        return false;
}

static bool integer_in_range(const char *s) {
        char *end;
        errno = 0;
        if (*s == '\0')
                return false;
        (void)strtoll(s, &end, 10);
        return errno == 0 && *end == '\0';
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* bytea in PostgreSQL's hex form "\x0aff" → base64 of the bytes (Debezium's binary handling
 * "bytes"); any other text is taken as the bytes themselves. */
static void buf_bytes(StrBuf *b, const char *s, size_t n) {
        const unsigned char *raw = (const unsigned char *)s;
        unsigned char *dec = NULL;
        size_t rn = n;
        if (n >= 2 && s[0] == '\\' && s[1] == 'x' && (n - 2) % 2 == 0) {
                dec = malloc((n - 2) / 2 + 1);
                if (!dec) {
                        b->oom = true;
                        return;
                }
                size_t i;
                for (i = 0; i < (n - 2) / 2; i++) {
                        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
                        if (hi < 0 || lo < 0)
                                break;
                        dec[i] = (unsigned char)(hi << 4 | lo);
                }
                if (i == (n - 2) / 2) {
                        raw = dec;
                        rn = i;
                }
        }
        strbuf_put(b, "\"", 1);
        char q[4];
        for (size_t i = 0; i < rn; i += 3) {
                uint32_t v = (uint32_t)raw[i] << 16;
                if (i + 1 < rn)
                        v |= (uint32_t)raw[i + 1] << 8;
                if (i + 2 < rn)
                        v |= raw[i + 2];
                q[0] = b64[v >> 18 & 63];
                q[1] = b64[v >> 12 & 63];
                q[2] = i + 1 < rn ? b64[v >> 6 & 63] : '=';
                q[3] = i + 2 < rn ? b64[v & 63] : '=';
                strbuf_put(b, q, 4);
        }
        strbuf_put(b, "\"", 1);
        free(dec);
}

/* PostgreSQL timestamp(tz) text → ISO 8601: "2024-01-01 10:00:00+05:30" → "2024-01-01T10:00:00+05:30",
 * "+00" → "Z", "+05" → "+05:00". Text in another shape (infinity, BC dates) is kept as it is. */
static void buf_timestamp(StrBuf *b, const char *s, size_t n, bool tz) {
        char out[64];
        if (n < 19 || n >= sizeof(out) - 4 || s[10] != ' ' || s[4] != '-' || s[13] != ':' || memmem(s, n, " BC", 3)) {
                buf_str(b, s, n);
                return;
        }
        memcpy(out, s, n);
        out[n] = '\0';
        out[10] = 'T';
        if (tz) {
                char *sign = strpbrk(out + 19, "+-");
                if (sign) {
                        size_t off = strlen(sign);
                        if (strcmp(sign, "+00") == 0 || strcmp(sign, "+00:00") == 0) {
                                sign[0] = 'Z';
                                sign[1] = '\0';
                        } else if (off == 3) {
                                sign[3] = ':';
                                sign[4] = '0';
                                sign[5] = '0';
                                sign[6] = '\0';
                        }
                }
        }
        buf_cstr(b, out);
}

static void buf_scalar(StrBuf *b, TypeClass cls, const char *s, size_t n);

static TypeClass element_class(const char *type_name) {
        static const struct {
                const char *name;
                TypeClass cls;
        } names[] = {
                {"smallint", TYPE_INTEGER},
                {"integer", TYPE_INTEGER},
                {"bigint", TYPE_INTEGER},
                {"int2", TYPE_INTEGER},
                {"int4", TYPE_INTEGER},
                {"int8", TYPE_INTEGER},
                {"numeric", TYPE_NUMERIC},
                {"decimal", TYPE_NUMERIC},
                {"real", TYPE_FLOAT},
                {"double precision", TYPE_FLOAT},
                {"float4", TYPE_FLOAT},
                {"float8", TYPE_FLOAT},
                {"boolean", TYPE_BOOLEAN},
                {"bool", TYPE_BOOLEAN},
                {"json", TYPE_JSON},
                {"jsonb", TYPE_JSON},
                {"bytea", TYPE_BYTES},
                {"date", TYPE_DATE},
                {"timestamp without time zone", TYPE_TIMESTAMP},
                {"timestamp", TYPE_TIMESTAMP},
                {"timestamp with time zone", TYPE_TIMESTAMPTZ},
                {"timestamptz", TYPE_TIMESTAMPTZ},
        };
        if (!type_name)
                return TYPE_TEXT;
        size_t n = strcspn(type_name, "[(");
        if (type_name[0] == '_') { /* PostgreSQL's internal array type names: _int4 */
                type_name++;
                n = strcspn(type_name, "[(");
        }
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strlen(names[i].name) == n && strncmp(names[i].name, type_name, n) == 0)
                        return names[i].cls;
        /* "numeric(10,2)[]", "timestamp(3) with time zone[]" */
        if (strncmp(type_name, "timestamp", 9) == 0)
                return strstr(type_name, "with time zone") ? TYPE_TIMESTAMPTZ : TYPE_TIMESTAMP;
        return TYPE_TEXT;
}

/* Parses one level of PostgreSQL's array text form ("{1,NULL,\"a b\",{2,3}}") at *p into b.
 * Returns false on anything unexpected (the caller then falls back to the text as a string). */
static bool parse_array(StrBuf *b, const char **p, TypeClass cls, int depth) {
        const char *s = *p;
        if (*s != '{' || depth > ARRAY_MAX_DEPTH)
                return false;
        s++;
        strbuf_put(b, "[", 1);
        if (*s == '}') {
                strbuf_put(b, "]", 1);
                *p = s + 1;
                return true;
        }
        for (bool first = true;; first = false) {
                if (!first)
                        strbuf_put(b, ",", 1);
                if (*s == '{') {
                        if (!parse_array(b, &s, cls, depth + 1))
                                return false;
                } else if (*s == '"') {
                        StrBuf el = {0};
                        s++;
                        while (*s && *s != '"') {
                                if (*s == '\\' && s[1])
                                        s++;
                                strbuf_put(&el, s, 1);
                                s++;
                        }
                        if (*s != '"') {
                                free(el.data);
                                return false;
                        }
                        s++;
                        buf_scalar(b, cls, el.data ? el.data : "", el.len);
                        if (el.oom)
                                b->oom = true;
                        free(el.data);
                } else {
                        size_t n = strcspn(s, ",}");
                        if (n == 0 || s[n] == '\0')
                                return false;
                        if (n == 4 && strncmp(s, "NULL", 4) == 0)
                                strbuf_put(b, "null", 4);
                        else {
                                char *el = strndup(s, n);
                                if (!el) {
                                        b->oom = true;
                                        return false;
                                }
                                buf_scalar(b, cls, el, n);
                                free(el);
                        }
                        s += n;
                }
                if (*s == ',') {
                        s++;
                        continue;
                }
                if (*s == '}') {
                        s++;
                        break;
                }
                return false;
        }
        strbuf_put(b, "]", 1);
        *p = s;
        return true;
}

/* One non-NULL value of class cls, text s of n bytes (NUL-terminated at n). */
static void buf_scalar(StrBuf *b, TypeClass cls, const char *s, size_t n) {
        switch (cls) {
        case TYPE_INTEGER:
                if (json_number_syntax(s) && integer_in_range(s))
                        strbuf_put(b, s, n);
                else
                        buf_str(b, s, n);
                return;
        case TYPE_NUMERIC:
        case TYPE_FLOAT:
                if (json_number_syntax(s) && number_exact_as_double(s))
                        strbuf_put(b, s, n);
                else
                        buf_str(b, s, n);
                return;
        case TYPE_BOOLEAN:
                if (strcmp(s, "t") == 0 || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
                        strbuf_put(b, "true", 4);
                else if (strcmp(s, "f") == 0 || strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
                        strbuf_put(b, "false", 5);
                else
                        buf_str(b, s, n);
                return;
        case TYPE_BYTES: buf_bytes(b, s, n); return;
        case TYPE_TIMESTAMP:
        case TYPE_TIMESTAMPTZ: buf_timestamp(b, s, n, cls == TYPE_TIMESTAMPTZ); return;
        case TYPE_JSON: {
                json_error_t jerr;
                json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
                if (j) {
                        json_decref(j);
                        strbuf_put(b, s, n);
                } else {
                        buf_str(b, s, n);
                }
                return;
        }
        default: buf_str(b, s, n); return;
        }
}

static void buf_value(StrBuf *b, const Column *col, const Value *v) {
        if (!v || v->kind == VALUE_NULL || !v->data) {
                if (v && v->kind == VALUE_UNCHANGED)
                        buf_cstr(b, ENVELOPE_UNAVAILABLE);
                else
                        strbuf_put(b, "null", 4);
                return;
        }
        if (col->cls == TYPE_ARRAY) {
                StrBuf arr = {0};
                const char *p = v->data;
                if (parse_array(&arr, &p, element_class(col->type_name), 1) && *p == '\0' && !arr.oom)
                        strbuf_put(b, arr.data, arr.len);
                else
                        buf_str(b, v->data, v->len);
                if (arr.oom)
                        b->oom = true;
                free(arr.data);
                return;
        }
        buf_scalar(b, col->cls, v->data, v->len);
}

int envelope_value_json(const Column *col, const Value *v, char **ret) {
        StrBuf b = {0};
        buf_value(&b, col, v);
        return strbuf_finish(&b, ret);
}

/* A row image as an object of every column; keys_only: only the key columns. */
static void buf_row(StrBuf *b, const Table *t, const Value *vals, bool keys_only) {
        strbuf_put(b, "{", 1);
        bool first = true;
        for (int i = 0; i < t->ncols; i++) {
                if (keys_only && !t->cols[i].key)
                        continue;
                if (!first)
                        strbuf_put(b, ",", 1);
                first = false;
                buf_cstr(b, t->cols[i].name);
                strbuf_put(b, ":", 1);
                buf_value(b, &t->cols[i], &vals[i]);
        }
        strbuf_put(b, "}", 1);
}

int envelope_key(const Change *c, char **ret) {
        if (c->op == CHANGE_TRUNCATE || table_nkeys(c->table) == 0) {
                *ret = NULL;
                return 0;
        }
        const Value *img = c->op == CHANGE_DELETE ? c->before : c->after;
        if (!img)
                return -EINVAL;
        StrBuf b = {0};
        buf_row(&b, c->table, img, true);
        return strbuf_finish(&b, ret);
}

static bool value_equal(const Value *a, const Value *b) {
        if (a->kind != b->kind)
                return false;
        if (a->kind != VALUE_TEXT)
                return true;
        return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

bool envelope_key_changed(const Change *c) {
        if (c->op != CHANGE_UPDATE || !c->before || !c->after || table_nkeys(c->table) == 0)
                return false;
        for (int i = 0; i < c->table->ncols; i++)
                if (c->table->cols[i].key && !value_equal(&c->before[i], &c->after[i]))
                        return true;
        return false;
}

static void buf_source(StrBuf *b, const Change *c, const TxnInfo *txn, const EnvelopeSource *src) {
        bool mysql = strcmp(src->connector, "mysql") == 0;
        strbuf_puts(b, "{\"version\":");
        buf_cstr(b, "cdcsync-" CDCSYNC_VERSION);
        strbuf_puts(b, ",\"connector\":");
        buf_cstr(b, src->connector);
        strbuf_puts(b, ",\"name\":");
        buf_cstr(b, src->name);
        strbuf_puts(b, ",\"ts_ms\":");
        strbuf_int(b, txn->commit_ts / 1000);
        strbuf_puts(b, ",\"snapshot\":");
        buf_cstr(b, txn->snapshot ? "true" : "false");
        strbuf_puts(b, ",\"db\":");
        if (mysql) /* a MySQL table's database is its schema, whatever the connector's default */
                buf_cstr(b, c->table->schema);
        else if (src->db)
                buf_cstr(b, src->db);
        else
                strbuf_puts(b, "null");
        if (src->sequence) {
                strbuf_puts(b, ",\"sequence\":");
                buf_cstr(b, src->sequence);
        }
        if (!mysql) {
                strbuf_puts(b, ",\"schema\":");
                buf_cstr(b, c->table->schema);
        }
        strbuf_puts(b, ",\"table\":");
        buf_cstr(b, c->table->name);
        if (mysql) {
                /* Debezium's MySQL form: the binlog file and the offset in it, as two fields. */
                const char *pt = src->pos_text ? src->pos_text : "";
                const char *colon = strrchr(pt, ':');
                char *end = NULL;
                errno = 0;
                unsigned long long off = colon ? strtoull(colon + 1, &end, 10) : 0;
                strbuf_puts(b, ",\"file\":");
                if (colon && end != colon + 1 && *end == '\0' && !errno) {
                        buf_str(b, pt, (size_t)(colon - pt));
                        strbuf_puts(b, ",\"pos\":");
                        char num[32];
                        snprintf(num, sizeof(num), "%llu", off);
                        strbuf_puts(b, num);
                } else {
                        buf_cstr(b, pt);
                        strbuf_puts(b, ",\"pos\":null");
                }
                strbuf_puts(b, ",\"txId\":");
                strbuf_int(b, (int64_t)txn->xid);
        } else {
                strbuf_puts(b, ",\"txId\":");
                strbuf_int(b, (int64_t)txn->xid);
                strbuf_puts(b, ",\"lsn\":");
                buf_cstr(b, src->pos_text ? src->pos_text : "");
        }
        if (src->vclock) {
                strbuf_puts(b, ",\"cdcsync_vclock\":{");
                for (uint32_t i = 0; i < src->vclock->n; i++) {
                        if (i)
                                strbuf_put(b, ",", 1);
                        buf_cstr(b, src->vclock->e[i].node);
                        strbuf_put(b, ":", 1);
                        char num[32];
                        snprintf(num, sizeof(num), "%" PRIu64, src->vclock->e[i].counter);
                        strbuf_puts(b, num);
                }
                strbuf_put(b, "}", 1);
        }
        strbuf_put(b, "}", 1);
}

int envelope_value_buf(StrBuf *b, const Change *c, const TxnInfo *txn, const EnvelopeSource *src, int64_t now_ms) {
        const char *op;
        switch (c->op) {
        case CHANGE_INSERT: op = txn->snapshot ? "r" : "c"; break;
        case CHANGE_UPDATE: op = "u"; break;
        case CHANGE_DELETE: op = "d"; break;
        default: op = "t"; break;
        }
        strbuf_puts(b, "{\"before\":");
        /* A delete's or key update's before image may hold only the key (replica identity
         * default): the other columns are then null, as in Debezium. */
        if (c->before && c->op != CHANGE_TRUNCATE)
                buf_row(b, c->table, c->before, false);
        else
                strbuf_puts(b, "null");
        strbuf_puts(b, ",\"after\":");
        if (c->after && (c->op == CHANGE_INSERT || c->op == CHANGE_UPDATE))
                buf_row(b, c->table, c->after, false);
        else
                strbuf_puts(b, "null");
        strbuf_puts(b, ",\"source\":");
        buf_source(b, c, txn, src);
        strbuf_puts(b, ",\"op\":");
        buf_cstr(b, op);
        strbuf_puts(b, ",\"ts_ms\":");
        strbuf_int(b, now_ms);
        strbuf_put(b, "}", 1);
        return b->oom ? -ENOMEM : 0;
}

int envelope_value(const Change *c, const TxnInfo *txn, const EnvelopeSource *src, int64_t now_ms, char **ret) {
        StrBuf b = {0};
        envelope_value_buf(&b, c, txn, src, now_ms);
        return strbuf_finish(&b, ret);
}

static bool topic_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
}

int envelope_topic(const char *tmpl, const char *connector, const char *schema, const char *table, char *ret,
                   size_t len) {
        char out[ENVELOPE_TOPIC_MAX + 1];
        size_t n = 0;
        for (const char *p = tmpl; *p;) {
                const char *piece;
                size_t plen;
                if (*p == '{') {
                        const char *close = strchr(p, '}');
                        if (!close)
                                return -EINVAL;
                        size_t k = (size_t)(close - p - 1);
                        if (k == 9 && strncmp(p + 1, "connector", 9) == 0)
                                piece = connector;
                        else if (k == 6 && strncmp(p + 1, "schema", 6) == 0)
                                piece = schema;
                        else if (k == 5 && strncmp(p + 1, "table", 5) == 0)
                                piece = table;
                        else
                                return -EINVAL;
                        plen = strlen(piece);
                        p = close + 1;
                } else {
                        piece = p;
                        plen = 1;
                        p++;
                }
                for (size_t i = 0; i < plen; i++) {
                        if (n >= ENVELOPE_TOPIC_MAX)
                                return -ENAMETOOLONG;
                        out[n++] = topic_char(piece[i]) ? piece[i] : '_';
                }
        }
        if (n == 0)
                return -EINVAL;
        if (n + 1 > len)
                return -ENAMETOOLONG;
        memcpy(ret, out, n);
        ret[n] = '\0';
        return 0;
}
