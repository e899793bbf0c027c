/* Re-snapshot requests and the merge of a chunk with the stream between its watermarks. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/resnapshot.h"
#include "cdcsync/strbuf.h"

/* ---- requests ---- */

void resnap_requests_init(ResnapRequests *q) {
        memset(q, 0, sizeof(*q));
        pthread_mutex_init(&q->lock, NULL);
}

static void list_free(char **v, int n) {
        for (int i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void resnap_requests_destroy(ResnapRequests *q) {
        list_free(q->tables, q->ntables);
        pthread_mutex_destroy(&q->lock);
}

static int list_add(char ***v, int *n, const char *t) {
        for (int i = 0; i < *n; i++)
                if (strcmp((*v)[i], t) == 0)
                        return 0;
        char **g = realloc(*v, sizeof(*g) * (size_t)(*n + 1));
        if (!g)
                return -ENOMEM;
        *v = g;
        if (!(g[*n] = strdup(t)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

int resnap_requests_push(ResnapRequests *q, const char *const *tables, int n) {
        int r = 0;
        pthread_mutex_lock(&q->lock);
        if (n == 0)
                r = list_add(&q->tables, &q->ntables, "*");
        for (int i = 0; r == 0 && i < n; i++)
                r = list_add(&q->tables, &q->ntables, tables[i]);
        q->pending = q->ntables > 0;
        pthread_mutex_unlock(&q->lock);
        return r;
}

void resnap_requests_take(ResnapRequests *q, char ***ret, int *ret_n) {
        pthread_mutex_lock(&q->lock);
        *ret = q->tables;
        *ret_n = q->ntables;
        q->tables = NULL;
        q->ntables = 0;
        q->pending = false;
        pthread_mutex_unlock(&q->lock);
}

bool resnap_table_name_ok(const char *text) {
        const char *dot = strchr(text, '.');
        if (!dot || dot == text || !dot[1] || strchr(dot + 1, '.') || strlen(text) >= 512)
                return false;
        for (const char *c = text; *c; c++)
                if ((unsigned char)*c <= ' ' || *c == '"' || *c == '\\')
                        return false;
        return true;
}

/* ---- a chunk ---- */

struct ResnapChunk {
        Table *t; /* one reference */
        int key_col;
        bool has_lo, has_hi;
        int64_t lo, hi;
        Value **rows;  /* owned after images, ascending keys; NULL once dropped */
        int64_t *keys; /* rows' keys */
        int nrows, cap;
        int64_t *kept; /* keys a change in the window wrote (not sorted) */
        int nkept, capkept;
};

int resnap_key_column(const Table *t, char *buf, size_t len) {
        int key = -1, nkeys = 0;
        for (int i = 0; i < t->ncols; i++)
                if (t->cols[i].key) {
                        key = i;
                        nkeys++;
                }
        if (nkeys == 0 || t->replident == 'f') {
                snprintf(buf, len, "table %s.%s has no primary key: it cannot be copied again in key ranges", t->schema,
                         t->name);
                return -1;
        }
        if (nkeys > 1) {
                snprintf(buf, len,
                         "table %s.%s has a primary key of %d columns: re-snapshot chunks by a key of one integer "
                         "column only (not built yet for others)",
                         t->schema, t->name, nkeys);
                return -1;
        }
        if (t->cols[key].cls != TYPE_INTEGER) {
                snprintf(buf, len,
                         "table %s.%s: its key column %s is of type %s: re-snapshot chunks by an integer key only "
                         "(key order is the same on every sink for integers; not built yet for others)",
                         t->schema, t->name, t->cols[key].name,
                         t->cols[key].type_name ? t->cols[key].type_name : type_class_name(t->cols[key].cls));
                return -1;
        }
        return key;
}

int resnap_parse_key(const char *text, int64_t *ret) {
        if (!text || !*text)
                return -EINVAL;
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int resnap_chunk_new(Table *t, int key_col, bool has_lo, int64_t lo, ResnapChunk **ret) {
        ResnapChunk *ch = calloc(1, sizeof(*ch));
        if (!ch)
                return -ENOMEM;
        ch->t = table_ref(t);
        ch->key_col = key_col;
        ch->has_lo = has_lo;
        ch->lo = lo;
        ch->has_hi = true; /* until read: nothing above lo is taken as covered */
        ch->hi = lo;
        *ret = ch;
        return 0;
}

ResnapChunk *resnap_chunk_free(ResnapChunk *ch) {
        if (!ch)
                return NULL;
        for (int i = 0; i < ch->nrows; i++)
                values_free(ch->rows[i], ch->t->ncols);
        free(ch->rows);
        free(ch->keys);
        free(ch->kept);
        table_unref(ch->t);
        free(ch);
        return NULL;
}

int resnap_chunk_add_row(ResnapChunk *ch, Value *after) {
        const Value *kv = &after[ch->key_col];
        int64_t k;
        if (kv->kind != VALUE_TEXT || resnap_parse_key(kv->data, &k) < 0)
                return -EINVAL;
        if ((ch->nrows > 0 && k <= ch->keys[ch->nrows - 1]) || (ch->has_lo && k <= ch->lo))
                return -EINVAL;
        if (ch->nrows == ch->cap) {
                int nc = ch->cap ? ch->cap * 2 : 256;
                Value **g = realloc(ch->rows, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                ch->rows = g;
                int64_t *gk = realloc(ch->keys, sizeof(*gk) * (size_t)nc);
                if (!gk)
                        return -ENOMEM;
                ch->keys = gk;
                ch->cap = nc;
        }
        ch->rows[ch->nrows] = after;
        ch->keys[ch->nrows++] = k;
        return 0;
}

void resnap_chunk_read(ResnapChunk *ch, bool full) {
        ch->has_hi = full && ch->nrows > 0;
        if (ch->has_hi)
                ch->hi = ch->keys[ch->nrows - 1];
}

int resnap_chunk_rows(const ResnapChunk *ch) {
        return ch->nrows;
}

bool resnap_chunk_hi(const ResnapChunk *ch, int64_t *ret_hi) {
        if (ch->has_hi)
                *ret_hi = ch->hi;
        return ch->has_hi;
}

bool resnap_chunk_covers(const ResnapChunk *ch, int64_t k) {
        return (!ch->has_lo || k > ch->lo) && (!ch->has_hi || k <= ch->hi);
}

/* The row index of key k, or -1. */
static int find_row(const ResnapChunk *ch, int64_t k) {
        int a = 0, b = ch->nrows;
        while (a < b) {
                int m = a + (b - a) / 2;
                if (ch->keys[m] < k)
                        a = m + 1;
                else
                        b = m;
        }
        return a < ch->nrows && ch->keys[a] == k ? a : -1;
}

static void drop_row(ResnapChunk *ch, int64_t k) {
        int i = find_row(ch, k);
        if (i >= 0 && ch->rows[i]) {
                values_free(ch->rows[i], ch->t->ncols);
                ch->rows[i] = NULL;
        }
}

static int keep_key(ResnapChunk *ch, int64_t k) {
        if (find_row(ch, k) >= 0)
                return 0; /* every key the chunk read is kept anyway */
        if (ch->nkept == ch->capkept) {
                int nc = ch->capkept ? ch->capkept * 2 : 64;
                int64_t *g = realloc(ch->kept, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                ch->kept = g;
                ch->capkept = nc;
        }
        ch->kept[ch->nkept++] = k;
        return 0;
}

/* The key value of image img, when it is an integer. */
static bool image_key(const ResnapChunk *ch, const Value *img, int64_t *ret) {
        if (!img || img[ch->key_col].kind != VALUE_TEXT)
                return false;
        return resnap_parse_key(img[ch->key_col].data, ret) == 0;
}

int resnap_chunk_event(ResnapChunk *ch, const Change *c) {
        int64_t k;
        if (c->op == CHANGE_TRUNCATE) {
                /* the sink table is emptied: nothing the chunk read is there any more */
                for (int i = 0; i < ch->nrows; i++) {
                        values_free(ch->rows[i], ch->t->ncols);
                        ch->rows[i] = NULL;
                }
                ch->nkept = 0;
                return 0;
        }
        if (image_key(ch, c->before, &k) && resnap_chunk_covers(ch, k))
                drop_row(ch, k);
        if (c->op != CHANGE_DELETE && image_key(ch, c->after, &k) && resnap_chunk_covers(ch, k)) {
                drop_row(ch, k);
                return keep_key(ch, k);
        }
        return 0;
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static int bound_values(const ResnapChunk *ch, bool has, int64_t v, Value **ret) {
        Value *vals = values_new(ch->t->ncols);
        if (!vals)
                return -ENOMEM;
        if (has) {
                char buf[24];
                snprintf(buf, sizeof(buf), "%" PRId64, v);
                if (value_set(&vals[ch->key_col], buf, strlen(buf)) < 0) {
                        values_free(vals, ch->t->ncols);
                        return -ENOMEM;
                }
        }
        *ret = vals;
        return 0;
}

int resnap_chunk_finish(ResnapChunk *ch, Change *ret_delete, Change **ret_rows, int *ret_n) {
        Change del = {.op = CHANGE_DELETE, .flags = CHANGE_RANGE | CHANGE_IDEMPOTENT, .table = table_ref(ch->t)};
        Change *rows = NULL;
        int n = 0;
        if (ch->nkept > 0) /* qsort of NULL is undefined even for 0 elements */
                qsort(ch->kept, (size_t)ch->nkept, sizeof(*ch->kept), cmp_i64);
        /* the keys kept, ascending: the chunk's merged with the window's */
        StrBuf b = {0};
        int i = 0, j = 0;
        bool first = true;
        int64_t last = 0;
        while (i < ch->nrows || j < ch->nkept) {
                int64_t k =
                        j >= ch->nkept || (i < ch->nrows && ch->keys[i] <= ch->kept[j]) ? ch->keys[i++] : ch->kept[j++];
                if (!first && k == last)
                        continue;
                if (!first)
                        strbuf_put(&b, ",", 1);
                strbuf_int(&b, k);
                first = false;
                last = k;
        }
        int r = strbuf_finish(&b, &del.keep);
        if (r == 0)
                r = bound_values(ch, ch->has_lo, ch->lo, &del.before);
        if (r == 0)
                r = bound_values(ch, ch->has_hi, ch->hi, &del.after);
        int left = 0;
        for (int k = 0; k < ch->nrows; k++)
                left += ch->rows[k] != NULL;
        if (r == 0 && left > 0 && !(rows = calloc((size_t)left, sizeof(*rows))))
                r = -ENOMEM;
        for (int k = 0; r == 0 && k < ch->nrows; k++) {
                if (!ch->rows[k])
                        continue;
                rows[n++] = (Change){.op = CHANGE_INSERT,
                                     .flags = CHANGE_IDEMPOTENT,
                                     .table = table_ref(ch->t),
                                     .after = ch->rows[k]};
                ch->rows[k] = NULL;
        }
        if (r < 0) {
                change_clear(&del);
                for (int k = 0; k < n; k++)
                        change_clear(&rows[k]);
                free(rows);
                return r;
        }
        *ret_delete = del;
        *ret_rows = rows;
        *ret_n = n;
        return 0;
}
