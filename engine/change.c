/* The change model's helpers: tables by reference count, values, positions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/change.h"

const char *type_class_name(TypeClass c) {
        static const char *const names[] = {
                [TYPE_TEXT] = "text",           [TYPE_INTEGER] = "integer",
                [TYPE_NUMERIC] = "numeric",     [TYPE_FLOAT] = "float",
                [TYPE_BOOLEAN] = "boolean",     [TYPE_BYTES] = "bytes",
                [TYPE_DATE] = "date",           [TYPE_TIME] = "time",
                [TYPE_TIMESTAMP] = "timestamp", [TYPE_TIMESTAMPTZ] = "timestamptz",
                [TYPE_JSON] = "json",           [TYPE_UUID] = "uuid",
                [TYPE_ARRAY] = "array",         [TYPE_OTHER] = "other",
        };
        if ((unsigned)c >= sizeof(names) / sizeof(names[0]))
                return "other";
        return names[c];
}

Table *table_new(const char *schema, const char *name, int ncols) {
        Table *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        atomic_init(&t->refs, 1);
        t->schema = strdup(schema);
        t->name = strdup(name);
        t->ncols = ncols;
        t->cols = ncols > 0 ? calloc((size_t)ncols, sizeof(Column)) : NULL;
        if (!t->schema || !t->name || (ncols > 0 && !t->cols)) {
                t->ncols = ncols > 0 && t->cols ? ncols : 0;
                atomic_store(&t->refs, 1);
                return table_unref(t);
        }
        for (int i = 0; i < ncols; i++)
                t->cols[i].typmod = -1;
        return t;
}

Table *table_ref(Table *t) {
        if (t)
                atomic_fetch_add(&t->refs, 1);
        return t;
}

Table *table_unref(Table *t) {
        if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
                return NULL;
        for (int i = 0; i < t->ncols; i++) {
                free(t->cols[i].name);
                free(t->cols[i].type_name);
                free(t->cols[i].base_type);
        }
        free(t->cols);
        for (int i = 0; i < t->ntypes; i++) {
                free(t->types[i].schema);
                free(t->types[i].name);
                free(t->types[i].column);
                free(t->types[i].ddl);
                free(t->types[i].why);
        }
        free(t->types);
        for (int i = 0; i < t->ngen; i++) {
                free(t->gen[i].name);
                free(t->gen[i].type_name);
                free(t->gen[i].expr);
        }
        free(t->gen);
        free(t->schema);
        free(t->name);
        free(t);
        return NULL;
}

int table_nkeys(const Table *t) {
        int n = 0;
        for (int i = 0; i < t->ncols; i++)
                n += t->cols[i].key;
        return n;
}

Value *values_new(int n) {
        return calloc(n > 0 ? (size_t)n : 1, sizeof(Value));
}

Value *values_pack(int n, const char *const *data, const size_t *lens) {
        size_t m = n > 0 ? (size_t)n : 1;
        size_t bytes = m * sizeof(Value);
        for (int i = 0; i < n; i++)
                if (data[i]) {
                        if (lens[i] >= UINT32_MAX || lens[i] + 1 > SIZE_MAX - bytes)
                                return NULL;
                        bytes += lens[i] + 1;
                }
        Value *v = malloc(bytes);
        if (!v)
                return NULL;
        char *p = (char *)(v + m);
        for (int i = 0; i < n; i++) {
                if (!data[i]) {
                        v[i] = (Value){.kind = VALUE_NULL};
                        continue;
                }
                memcpy(p, data[i], lens[i]);
                p[lens[i]] = '\0';
                v[i] = (Value){.kind = VALUE_TEXT, .packed = true, .len = (uint32_t)lens[i], .data = p};
                p += lens[i] + 1;
        }
        if (n <= 0)
                v[0] = (Value){0};
        return v;
}

void value_clear(Value *v) {
        if (!v->packed)
                free(v->data);
        *v = (Value){0};
}

void values_free(Value *v, int n) {
        if (!v)
                return;
        for (int i = 0; i < n; i++)
                if (!v[i].packed)
                        free(v[i].data);
        free(v);
}

int value_set(Value *v, const char *data, size_t len) {
        char *p = malloc(len + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, data, len);
        p[len] = '\0';
        if (!v->packed)
                free(v->data);
        v->kind = VALUE_TEXT;
        v->packed = false;
        v->data = p;
        v->len = (uint32_t)len;
        return 0;
}

int64_t change_clamp_ts(int64_t usec) {
        return usec < 0 ? 0 : usec > CHANGE_TS_MAX ? CHANGE_TS_MAX : usec;
}

void change_clear(Change *c) {
        int n = c->table ? c->table->ncols : 0;
        values_free(c->before, n);
        values_free(c->after, n);
        table_unref(c->table);
        free(c->version);
        free(c->keep);
        free(c->copy_text); /* libpq's buffer (PQgetCopyData): PQfreemem is free() but on Windows */
        memset(c, 0, sizeof(*c));
}

void change_drop_text(Change *c) {
        free(c->copy_text);
        c->copy_text = NULL;
        c->copy_len = 0;
}

bool change_whole_row_same_key(const Change *c) {
        if (!c->after)
                return false;
        for (int i = 0; i < c->table->ncols; i++) {
                if (c->after[i].kind == VALUE_UNCHANGED)
                        return false;
                if (!c->before || !c->table->cols[i].key)
                        continue;
                const Value *a = &c->before[i], *b = &c->after[i];
                if (a->kind != b->kind ||
                    (a->kind == VALUE_TEXT && (a->len != b->len || memcmp(a->data, b->data, a->len))))
                        return false;
        }
        return true;
}

int change_set_version(Change *c, const VClock *vv, int64_t ts, const char *origin) {
        if (!c->version) {
                c->version = malloc(sizeof(*c->version));
                if (!c->version)
                        return -ENOMEM;
        }
        c->version->vv = *vv;
        c->version->ts = ts;
        snprintf(c->version->origin, sizeof(c->version->origin), "%s", origin ? origin : "");
        return 0;
}

int position_cmp(Position a, Position b) {
        if (a.hi != b.hi)
                return a.hi < b.hi ? -1 : 1;
        if (a.lo != b.lo)
                return a.lo < b.lo ? -1 : 1;
        return 0;
}

bool position_is_zero(Position p) {
        return p.hi == 0 && p.lo == 0;
}

uint64_t position_counter(Position p) {
        if (p.hi == 0)
                return p.lo;
        return p.hi << 40 | (p.lo & ((UINT64_C(1) << 40) - 1));
}
