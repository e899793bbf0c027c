/* Decodes Kafka change messages (cdcsync's envelope, Debezium's with or without schemas) into
 * changes: pure, no I/O.
 *
 * jansson validates the message and reads its small fields (op, source, schema), but the row
 * images are read by a raw scanner over the validated text: jansson holds numbers as doubles, so
 * 12345678.91 or a jsonb value's 2.10 would not come back with the digits the source sent. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdcsync/text.h"
#include "kafka/envelope.h"
#include "kafka/kafka_decode.h"

#define SCAN_MAX_DEPTH 256

typedef struct {
        const char *p; /* borrowed, into the message */
        size_t n;
} Span;

static int bad(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *errbuf, size_t errlen, const char *fmt, ...) {
        if (errbuf && errlen) {
                char raw[1024];
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(raw, sizeof(raw), fmt, ap);
                va_end(ap);
                /* Reasons quote the message (an op, jansson's "near '...'"): escaped for the log. */
                text_escape(raw, errbuf, errlen);
        }
        return -EBADMSG;
}

/* Whether the number text at s (n bytes, NUL at s[n] allowed to be written) is one jansson
 * refuses: an integer beyond 64 bits, or a real beyond a double. */
static bool number_too_big(char *s, size_t n, bool real) {
        char keep = s[n], *end;
        s[n] = '\0';
        errno = 0;
        if (real) {
                double d = strtod(s, &end);
                s[n] = keep;
                return errno == ERANGE && isinf(d);
        }
        (void)strtoll(s, &end, 10);
        s[n] = keep;
        return errno == ERANGE;
}

/* json_loadb, also for text holding numbers jansson refuses ("too big integer", "real number
 * overflow"): the row images are read from the raw text with their exact digits anyway, so for
 * jansson such numbers become 0 padded with blanks (the text keeps its length and its other
 * members). NULL with jerr from the first attempt when the text is not JSON. */
static json_t *load_json(const char *text, size_t len, size_t flags, json_error_t *jerr) {
        json_t *j = json_loadb(text, len, flags, jerr);
        if (j)
                return j;
        char *copy = malloc(len + 1);
        bool changed = false;
        if (!copy)
                return NULL;
        memcpy(copy, text, len);
        copy[len] = '\0';
        for (size_t i = 0; i < len;) {
                char c = copy[i];
                if (c == '"') {
                        for (i++; i < len && copy[i] != '"'; i++)
                                if (copy[i] == '\\')
                                        i++;
                        i++;
                        continue;
                }
                if (c != '-' && !(c >= '0' && c <= '9')) {
                        i++;
                        continue;
                }
                size_t s = i;
                bool real = false;
                for (; i < len && (copy[i] == '-' || copy[i] == '+' || copy[i] == '.' || copy[i] == 'e' ||
                                   copy[i] == 'E' || (copy[i] >= '0' && copy[i] <= '9'));
                     i++)
                        real |= copy[i] == '.' || copy[i] == 'e' || copy[i] == 'E';
                if (number_too_big(copy + s, i - s, real)) {
                        copy[s] = '0';
                        memset(copy + s + 1, ' ', i - s - 1);
                        changed = true;
                }
        }
        json_error_t again;
        if (changed)
                j = json_loadb(copy, len, flags, &again);
        free(copy);
        return j;
}

/* ---- raw scanner over text jansson already accepted as JSON ---- */

static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* Returns the end of the value starting at p, NULL on malformed input. */
static const char *skip_value(const char *p, const char *end, int depth) {
        if (p >= end || depth > SCAN_MAX_DEPTH)
                return NULL;
        if (*p == '"') {
                for (p++; p < end; p++) {
                        if (*p == '\\')
                                p++;
                        else if (*p == '"')
                                return p + 1;
                }
                return NULL;
        }
        if (*p == '{' || *p == '[') {
                char close = *p == '{' ? '}' : ']';
                p = skip_ws(p + 1, end);
                if (p < end && *p == close)
                        return p + 1;
                for (;;) {
                        if (close == '}') {
                                p = skip_value(p, end, depth + 1); /* the member's name */
                                if (!p)
                                        return NULL;
                                p = skip_ws(p, end);
                                if (p >= end || *p != ':')
                                        return NULL;
                                p = skip_ws(p + 1, end);
                        }
                        p = skip_value(p, end, depth + 1);
                        if (!p)
                                return NULL;
                        p = skip_ws(p, end);
                        if (p >= end)
                                return NULL;
                        if (*p == close)
                                return p + 1;
                        if (*p != ',')
                                return NULL;
                        p = skip_ws(p + 1, end);
                }
        }
        const char *s = p;
        while (p < end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
                p++;
        return p > s ? p : NULL;
}

/* Iterates an object's members: *pos starts at the object's '{'. Returns 1 with name and value
 * spans (name with its quotes), 0 at the end, -EBADMSG. */
static int obj_next(Span obj, const char **pos, Span *name, Span *val) {
        const char *end = obj.p + obj.n, *p = *pos;
        if (p == obj.p) {
                if (p >= end || *p != '{')
                        return -EBADMSG;
                p = skip_ws(p + 1, end);
        } else {
                p = skip_ws(p, end);
                if (p < end && *p == ',')
                        p = skip_ws(p + 1, end);
        }
        if (p >= end)
                return -EBADMSG;
        if (*p == '}')
                return 0;
        const char *ne = skip_value(p, end, 1);
        if (!ne || *p != '"')
                return -EBADMSG;
        *name = (Span){p, (size_t)(ne - p)};
        p = skip_ws(ne, end);
        if (p >= end || *p != ':')
                return -EBADMSG;
        p = skip_ws(p + 1, end);
        const char *ve = skip_value(p, end, 1);
        if (!ve)
                return -EBADMSG;
        *val = (Span){p, (size_t)(ve - p)};
        *pos = ve;
        return 1;
}

/* The raw value of member `name` of object obj (a name without escapes). 1 found, 0 not, <0. */
static int obj_get(Span obj, const char *name, Span *ret) {
        const char *pos = obj.p;
        Span n, v;
        size_t len = strlen(name);
        int r;
        while ((r = obj_next(obj, &pos, &n, &v)) > 0)
                if (n.n == len + 2 && memcmp(n.p + 1, name, len) == 0) {
                        *ret = v;
                        return 1;
                }
        return r;
}

/* A JSON string's text, unescaped, malloc'd (NUL-terminated, *ret_len bytes). */
static int string_text(Span s, char **ret, size_t *ret_len) {
        json_error_t jerr;
        json_t *j = json_loadb(s.p, s.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j || !json_is_string(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        size_t n = json_string_length(j);
        char *t = malloc(n + 1);
        if (!t) {
                json_decref(j);
                return -ENOMEM;
        }
        memcpy(t, json_string_value(j), n);
        t[n] = '\0';
        json_decref(j);
        *ret = t;
        *ret_len = n;
        return 0;
}

/* ---- Debezium schemas ---- */

/* What the schema (when the message has one) says of a column. */
typedef struct {
        const char *type; /* "int32", "string", "bytes", ...; NULL unknown */
        const char *name; /* logical type, e.g. "org.apache.kafka.connect.data.Decimal"; NULL none */
        int scale;        /* Decimal's scale parameter */
} FieldType;

/* The struct schema of envelope field `image` ("after"/"before"), NULL when absent. */
static json_t *image_schema(json_t *schema, const char *image) {
        json_t *fields = json_object_get(schema, "fields");
        size_t i;
        json_t *f;
        json_array_foreach(fields, i, f) {
                const char *name = json_string_value(json_object_get(f, "field"));
                if (name && strcmp(name, image) == 0)
                        return f;
        }
        return NULL;
}

/* The fields of an image's struct schema by name (the first of a name wins), in *ret (NULL when
 * there is no schema): looked up once per column, so the work stays linear in the message
 * (a schema of thousands of fields against a row of thousands of columns was quadratic). */
static int schema_fields(json_t *image, const char *which, const char *schema, const char *name, json_t **ret,
                         char *errbuf, size_t errlen) {
        *ret = NULL;
        json_t *fields = json_object_get(image, "fields");
        if (!image || !fields)
                return 0;
        if (json_array_size(fields) > KAFKA_DECODE_COLS_MAX)
                return bad(errbuf, errlen, "schema of the %s image of %s.%s has more than %d fields", which, schema,
                           name, KAFKA_DECODE_COLS_MAX);
        json_t *by_name = json_object();
        if (!by_name)
                return -ENOMEM;
        size_t i;
        json_t *f;
        json_array_foreach(fields, i, f) {
                const char *col = json_string_value(json_object_get(f, "field"));
                if (col && !json_object_get(by_name, col) && json_object_set(by_name, col, f) < 0) {
                        json_decref(by_name);
                        return -ENOMEM;
                }
        }
        *ret = by_name;
        return 0;
}

static FieldType field_type(json_t *fields, const char *col) {
        FieldType ft = {0};
        json_t *f = json_object_get(fields, col);
        if (!f)
                return ft;
        ft.type = json_string_value(json_object_get(f, "type"));
        ft.name = json_string_value(json_object_get(f, "name"));
        json_t *sc = json_object_get(json_object_get(f, "parameters"), "scale");
        if (json_is_string(sc)) {
                char *e;
                long v = strtol(json_string_value(sc), &e, 10);
                if (*e == '\0' && v >= 0 && v <= 1000)
                        ft.scale = (int)v;
        }
        return ft;
}

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

/* base64 → bytes (malloc'd). Padding optional. */
static int base64_decode(const char *s, size_t n, unsigned char **ret, size_t *ret_len) {
        unsigned char *out = malloc(n / 4 * 3 + 3);
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '=')
                        break;
                int v = b64val(s[i]);
                if (v < 0) {
                        free(out);
                        return -EBADMSG;
                }
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)(acc >> bits);
                }
        }
        *ret = out;
        *ret_len = o;
        return 0;
}

/* Debezium bytes (base64) → PostgreSQL's hex text "\x0aff". */
static int bytes_text(const char *b64, size_t n, Value *v) {
        unsigned char *raw;
        size_t rn;
        int r = base64_decode(b64, n, &raw, &rn);
        if (r < 0)
                return r;
        char *hex = malloc(2 + 2 * rn + 1);
        if (!hex) {
                free(raw);
                return -ENOMEM;
        }
        hex[0] = '\\';
        hex[1] = 'x';
        for (size_t i = 0; i < rn; i++) {
                hex[2 + 2 * i] = "0123456789abcdef"[raw[i] >> 4];
                hex[3 + 2 * i] = "0123456789abcdef"[raw[i] & 15];
        }
        r = value_set(v, hex, 2 + 2 * rn);
        free(hex);
        free(raw);
        return r;
}

/* Kafka Connect Decimal (base64 of a big-endian two's complement unscaled integer) → text.
 * Up to 16 bytes (38 digits: PostgreSQL numeric(38) and MySQL DECIMAL(38) fit). */
static int decimal_text(const char *b64, size_t n, int scale, Value *v) {
        unsigned char *raw;
        size_t rn;
        int r = base64_decode(b64, n, &raw, &rn);
        if (r < 0)
                return r;
        if (rn == 0 || rn > 16) {
                free(raw);
                return -EBADMSG;
        }
        unsigned __int128 u = (raw[0] & 0x80) ? ~(unsigned __int128)0 : 0;
        for (size_t i = 0; i < rn; i++)
                u = u << 8 | raw[i];
        free(raw);
        bool neg = (__int128)u < 0;
        if (neg)
                u = -u;
        char digits[64], out[1100];
        int nd = 0;
        do {
                digits[nd++] = (char)('0' + (int)(u % 10));
                u /= 10;
        } while (u);
        while (nd <= scale && nd < (int)sizeof(digits))
                digits[nd++] = '0';
        if (scale >= nd)
                return -EBADMSG;
        size_t o = 0;
        if (neg)
                out[o++] = '-';
        for (int i = nd - 1; i >= 0; i--) {
                out[o++] = digits[i];
                if (i == scale && scale > 0)
                        out[o++] = '.';
        }
        return value_set(v, out, o);
}

/* ---- row images ---- */

/* Whether an integer's text fits in 64 bits (beyond: a numeric, exact digits). */
static bool fits_int64(Span v) {
        char buf[32], *end;
        if (v.n >= sizeof(buf))
                return false;
        memcpy(buf, v.p, v.n);
        buf[v.n] = '\0';
        errno = 0;
        (void)strtoll(buf, &end, 10);
        return errno == 0 && *end == '\0';
}

static TypeClass class_of_span(Span v) {
        switch (v.p[0]) {
        case '"': return TYPE_TEXT;
        case '{':
        case '[': return TYPE_JSON;
        case 't':
        case 'f': return TYPE_BOOLEAN;
        case 'n': return TYPE_TEXT; /* unknown: the other image may tell */
        default:
                return memchr(v.p, '.', v.n) || memchr(v.p, 'e', v.n) || memchr(v.p, 'E', v.n) || !fits_int64(v)
                               ? TYPE_NUMERIC
                               : TYPE_INTEGER;
        }
}

static TypeClass class_of_field(FieldType ft, TypeClass guess) {
        if (!ft.type)
                return guess;
        if (ft.name && strcmp(ft.name, "org.apache.kafka.connect.data.Decimal") == 0)
                return TYPE_NUMERIC;
        if (ft.name && strcmp(ft.name, "io.debezium.data.Json") == 0)
                return TYPE_JSON;
        if (ft.name && strcmp(ft.name, "io.debezium.data.Uuid") == 0)
                return TYPE_UUID;
        if (strncmp(ft.type, "int", 3) == 0)
                return TYPE_INTEGER;
        if (strncmp(ft.type, "float", 5) == 0 || strcmp(ft.type, "double") == 0)
                return TYPE_FLOAT;
        if (strcmp(ft.type, "boolean") == 0)
                return TYPE_BOOLEAN;
        if (strcmp(ft.type, "bytes") == 0)
                return TYPE_BYTES;
        if (strcmp(ft.type, "array") == 0)
                return TYPE_ARRAY;
        return guess;
}

static const char *type_name_of(TypeClass c) {
        switch (c) {
        case TYPE_INTEGER: return "bigint";
        case TYPE_NUMERIC: return "numeric";
        case TYPE_FLOAT: return "double precision";
        case TYPE_BOOLEAN: return "boolean";
        case TYPE_BYTES: return "bytea";
        case TYPE_JSON: return "jsonb";
        case TYPE_UUID: return "uuid";
        default: return "text";
        }
}

/* One value's text form into v. */
static int span_value(Span s, FieldType ft, Value *v) {
        int r;
        switch (s.p[0]) {
        case 'n': v->kind = VALUE_NULL; return 0;
        case 't': return value_set(v, "t", 1);
        case 'f': return value_set(v, "f", 1);
        case '"': {
                char *t;
                size_t n;
                r = string_text(s, &t, &n);
                if (r < 0)
                        return r;
                if (strcmp(t, ENVELOPE_UNAVAILABLE) == 0) {
                        v->kind = VALUE_UNCHANGED;
                        r = 0;
                } else if (ft.name && strcmp(ft.name, "org.apache.kafka.connect.data.Decimal") == 0) {
                        r = decimal_text(t, n, ft.scale, v);
                } else if (ft.type && strcmp(ft.type, "bytes") == 0) {
                        r = bytes_text(t, n, v);
                } else {
                        r = value_set(v, t, n);
                }
                free(t);
                return r;
        }
        default: return value_set(v, s.p, s.n); /* number, object, array: the text as sent */
        }
}

/* Index of column name in cols (a name -> index object built with the table), -1 if none. */
static int find_col(json_t *cols, const char *name) {
        json_t *i = json_object_get(cols, name);
        return i ? (int)json_integer_value(i) : -1;
}

/* Columns of the table from the members of image (names unescaped, types guessed); *ret_cols:
 * their index by name. */
static int build_columns(Span image, json_t *fields, const char *schema, const char *name, Table **ret,
                         json_t **ret_cols, char *errbuf, size_t errlen) {
        const char *pos = image.p;
        Span n, v;
        int ncols = 0, r;
        while ((r = obj_next(image, &pos, &n, &v)) > 0)
                if (++ncols > KAFKA_DECODE_COLS_MAX)
                        return bad(errbuf, errlen, "row image of %s.%s has more than %d columns", schema, name,
                                   KAFKA_DECODE_COLS_MAX);
        if (r < 0)
                return bad(errbuf, errlen, "row image of %s.%s is not a JSON object", schema, name);
        Table *t = table_new(schema, name, ncols);
        json_t *cols = json_object();
        if (!t || !cols) {
                r = -ENOMEM;
                goto fail;
        }
        pos = image.p;
        for (int i = 0; i < ncols; i++) {
                size_t len;
                obj_next(image, &pos, &n, &v);
                r = string_text(n, &t->cols[i].name, &len);
                if (r < 0)
                        goto fail;
                if (find_col(cols, t->cols[i].name) >= 0) {
                        r = bad(errbuf, errlen, "row image of %s.%s names column %s twice", schema, name,
                                t->cols[i].name);
                        goto fail;
                }
                if (json_object_set_new(cols, t->cols[i].name, json_integer(i)) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                TypeClass cls = class_of_field(field_type(fields, t->cols[i].name), class_of_span(v));
                t->cols[i].cls = cls;
                t->cols[i].type_name = strdup(type_name_of(cls));
                t->cols[i].typmod = -1;
                if (!t->cols[i].type_name) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        *ret = t;
        *ret_cols = cols;
        return 0;
fail:
        json_decref(cols);
        table_unref(t);
        return r;
}

/* A row image's values in the table's column order; columns it does not hold stay NULL. */
static int read_image(Span image, json_t *fields, Table *t, json_t *cols, Value **ret, char *errbuf, size_t errlen) {
        Value *vals = values_new(t->ncols);
        const char *pos = image.p;
        Span n, v;
        int r, nmembers = 0;
        if (!vals)
                return -ENOMEM;
        while ((r = obj_next(image, &pos, &n, &v)) > 0) {
                char *name;
                size_t len;
                if (++nmembers > KAFKA_DECODE_COLS_MAX) {
                        values_free(vals, t->ncols);
                        return bad(errbuf, errlen, "row image of %s.%s has more than %d columns", t->schema, t->name,
                                   KAFKA_DECODE_COLS_MAX);
                }
                r = string_text(n, &name, &len);
                if (r < 0)
                        break;
                int i = find_col(cols, name);
                if (i >= 0) {
                        FieldType ft = field_type(fields, name);
                        r = span_value(v, ft, &vals[i]);
                        /* A null in the main image says nothing of the type; the other may. */
                        if (r == 0 && t->cols[i].cls == TYPE_TEXT && !ft.type && v.p[0] != 'n' && v.p[0] != '"') {
                                t->cols[i].cls = class_of_span(v);
                                free(t->cols[i].type_name);
                                t->cols[i].type_name = strdup(type_name_of(t->cols[i].cls));
                                if (!t->cols[i].type_name)
                                        r = -ENOMEM;
                        }
                }
                free(name);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                values_free(vals, t->ncols);
                return r == -EBADMSG ? bad(errbuf, errlen, "a value of %s.%s is malformed", t->schema, t->name) : r;
        }
        *ret = vals;
        return 0;
}

/* Marks the key columns: the fields of the message key (Debezium's schema form: its payload). */
static int mark_key(Table *t, json_t *cols, const void *key, size_t key_len, char *errbuf, size_t errlen) {
        if (!key || key_len == 0)
                return 0;
        if (key_len > KAFKA_DECODE_KEY_MAX)
                return bad(errbuf, errlen, "message key of %zu bytes is too large", key_len);
        json_error_t jerr;
        json_t *k = load_json(key, key_len, JSON_DECODE_ANY, &jerr);
        if (!k)
                return bad(errbuf, errlen, "message key is not JSON: %s", jerr.text);
        json_t *obj = k;
        if (json_is_object(json_object_get(k, "payload")) && json_object_get(k, "schema"))
                obj = json_object_get(k, "payload");
        int r = 0;
        if (json_is_object(obj)) {
                const char *name;
                json_t *v;
                json_object_foreach(obj, name, v) {
                        int i = find_col(cols, name);
                        if (i < 0) {
                                r = bad(errbuf, errlen, "message key field %s is not a column of %s.%s", name,
                                        t->schema, t->name);
                                break;
                        }
                        t->cols[i].key = true;
                }
        }
        json_decref(k);
        return r;
}

/* Table names from source.{schema|db, table}, else from the topic's last two parts. */
static int table_names(json_t *source, const char *topic, char *schema, size_t slen, char *name, size_t nlen,
                       char *errbuf, size_t errlen) {
        const char *s = json_string_value(json_object_get(source, "schema"));
        const char *t = json_string_value(json_object_get(source, "table"));
        if (!s)
                s = json_string_value(json_object_get(source, "db"));
        if (s && t && *s && *t) {
                if ((size_t)snprintf(schema, slen, "%s", s) >= slen || (size_t)snprintf(name, nlen, "%s", t) >= nlen)
                        return bad(errbuf, errlen, "table name too long");
                return 0;
        }
        const char *dot = topic ? strrchr(topic, '.') : NULL;
        if (!dot || dot == topic || !dot[1])
                return bad(errbuf, errlen, "message has no source.table and topic %s is not <...>.schema.table",
                           topic ? topic : "?");
        const char *sdot = dot - 1;
        while (sdot > topic && *sdot != '.')
                sdot--;
        if (*sdot == '.')
                sdot++;
        if ((size_t)(dot - sdot) >= slen || strlen(dot + 1) >= nlen || dot == sdot)
                return bad(errbuf, errlen, "topic %s does not name a table", topic);
        memcpy(schema, sdot, (size_t)(dot - sdot));
        schema[dot - sdot] = '\0';
        snprintf(name, nlen, "%s", dot + 1);
        return 0;
}

void kafka_decoded_clear(KafkaDecoded *d) {
        if (!d)
                return;
        change_clear(&d->change);
        memset(d, 0, sizeof(*d));
}

int kafka_decode_message(const char *topic, const void *key, size_t key_len, const void *value, size_t value_len,
                         KafkaDecoded *ret, char *errbuf, size_t errlen) {
        json_t *root = NULL, *cols = NULL, *sb = NULL, *sa = NULL;
        json_error_t jerr;
        KafkaDecoded d = {0};
        Table *t = NULL;
        int r;

        /* A tombstone (null value) follows a delete so that compaction can drop the key: it
         * carries no change. An empty value is no tombstone: nothing can be read from it. */
        if (!value)
                return key && key_len ? 0 : bad(errbuf, errlen, "message has neither a key nor a value");
        if (value_len == 0)
                return bad(errbuf, errlen, "message value is empty (a tombstone's value is null, not empty)");
        if (value_len > KAFKA_DECODE_VALUE_MAX)
                return bad(errbuf, errlen, "message value of %zu bytes is too large", value_len);
        root = load_json(value, value_len, 0, &jerr);
        if (!root)
                return bad(errbuf, errlen, "message value is not a JSON object: %s", jerr.text);

        Span raw = {value, value_len}, payload = raw;
        raw.p = skip_ws(raw.p, raw.p + raw.n);
        raw.n = value_len - (size_t)(raw.p - (const char *)value);
        payload = raw;
        json_t *env = root, *schema = NULL;
        json_t *pl = json_object_get(root, "payload");
        if (pl && json_object_get(root, "schema") && json_object_size(root) == 2) {
                /* Debezium with schemas enabled: {"schema":…,"payload":…}. Kafka Connect's
                 * JsonConverter before 2.0 wrote a tombstone as {"schema":null,"payload":null}. */
                if (json_is_null(pl)) {
                        r = json_is_null(json_object_get(root, "schema")) && key && key_len
                                    ? 0
                                    : bad(errbuf, errlen, "message has a schema but a null payload: no change in it");
                        goto out;
                }
                schema = json_object_get(root, "schema");
                env = pl;
                if (obj_get(raw, "payload", &payload) != 1) {
                        r = bad(errbuf, errlen, "schema+payload message without a payload object");
                        goto out;
                }
        }
        const char *op = json_string_value(json_object_get(env, "op"));
        if (!op) {
                /* A Debezium heartbeat ({"ts_ms": N} and nothing else) carries no change; any
                 * other message without op cannot be applied. */
                r = json_object_size(env) == 1 && json_is_integer(json_object_get(env, "ts_ms"))
                            ? 0
                            : bad(errbuf, errlen, "message has no op: it is no change event");
                goto out;
        }
        switch (op[0] && !op[1] ? op[0] : '?') {
        case 'c': d.change.op = CHANGE_INSERT; break;
        case 'r':
                d.change.op = CHANGE_INSERT;
                d.snapshot = true;
                break;
        case 'u': d.change.op = CHANGE_UPDATE; break;
        case 'd': d.change.op = CHANGE_DELETE; break;
        case 't': d.change.op = CHANGE_TRUNCATE; break;
        case 'm': r = 0; goto out; /* a logical decoding message, not a row */
        default: r = bad(errbuf, errlen, "unknown op \"%s\"", op); goto out;
        }
        json_t *source = json_object_get(env, "source");
        int64_t ts_ms = 0;
        if (json_is_integer(json_object_get(source, "ts_ms")))
                ts_ms = json_integer_value(json_object_get(source, "ts_ms"));
        else if (json_is_integer(json_object_get(env, "ts_ms")))
                ts_ms = json_integer_value(json_object_get(env, "ts_ms"));
        if (ts_ms > 0)
                d.ts_usec = ts_ms > CHANGE_TS_MAX / 1000 ? CHANGE_TS_MAX : ts_ms * 1000;

        char sname[256], tname[256];
        r = table_names(source, topic, sname, sizeof(sname), tname, sizeof(tname), errbuf, errlen);
        if (r < 0)
                goto out;

        Span before = {0}, after = {0};
        bool has_before = obj_get(payload, "before", &before) == 1 && before.p[0] == '{';
        bool has_after = obj_get(payload, "after", &after) == 1 && after.p[0] == '{';
        r = schema_fields(schema ? image_schema(schema, "before") : NULL, "before", sname, tname, &sb, errbuf, errlen);
        if (r < 0)
                goto out;
        r = schema_fields(schema ? image_schema(schema, "after") : NULL, "after", sname, tname, &sa, errbuf, errlen);
        if (r < 0)
                goto out;

        if (d.change.op == CHANGE_TRUNCATE) {
                t = table_new(sname, tname, 0);
                if (!t) {
                        r = -ENOMEM;
                        goto out;
                }
        } else {
                Span main = d.change.op == CHANGE_DELETE ? before : after;
                if (d.change.op == CHANGE_DELETE ? !has_before : !has_after) {
                        r = bad(errbuf, errlen, "op \"%s\" of %s.%s without its %s image", op, sname, tname,
                                d.change.op == CHANGE_DELETE ? "before" : "after");
                        goto out;
                }
                r = build_columns(main, d.change.op == CHANGE_DELETE ? sb : sa, sname, tname, &t, &cols, errbuf,
                                  errlen);
                if (r < 0)
                        goto out;
                /* d owns the table from here, so a failure below frees the images read (a before
                 * image leaked when the after image was malformed) */
                d.change.table = t;
                t = NULL;
                r = mark_key(d.change.table, cols, key, key_len, errbuf, errlen);
                if (r < 0)
                        goto out;
                if (has_before) {
                        r = read_image(before, sb, d.change.table, cols, &d.change.before, errbuf, errlen);
                        if (r < 0)
                                goto out;
                }
                if (has_after && d.change.op != CHANGE_DELETE) {
                        r = read_image(after, sa, d.change.table, cols, &d.change.after, errbuf, errlen);
                        if (r < 0)
                                goto out;
                }
        }
        if (t) {
                d.change.table = t;
                t = NULL;
        }
        *ret = d;
        memset(&d, 0, sizeof(d));
        r = 1;
out:
        table_unref(t);
        kafka_decoded_clear(&d);
        json_decref(cols);
        json_decref(sb);
        json_decref(sa);
        json_decref(root);
        return r;
}
