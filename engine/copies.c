/* The per-table copy records: the changes that write them into a sink, and look-ups. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/copies.h"

static const struct {
        const char *name;
        TypeClass cls;
        bool key;
} columns[] = {
        {"pipeline", TYPE_TEXT, true},        {"source_table", TYPE_TEXT, true}, {"state", TYPE_TEXT, false},
        {"pos_hi", TYPE_NUMERIC, false},      {"pos_lo", TYPE_NUMERIC, false},   {"pos_text", TYPE_TEXT, false},
        {"copied_rows", TYPE_INTEGER, false},
};
#define NCOLS ((int)(sizeof(columns) / sizeof(columns[0])))

bool copies_is_registry(const Table *t) {
        return t && strcmp(t->schema, COPIES_SCHEMA) == 0 && strcmp(t->name, COPIES_TABLE) == 0;
}

static Table *registry_table(void) {
        Table *t = table_new(COPIES_SCHEMA, COPIES_TABLE, NCOLS);
        for (int i = 0; t && i < NCOLS; i++) {
                t->cols[i].name = strdup(columns[i].name);
                t->cols[i].type_name = strdup(columns[i].cls == TYPE_NUMERIC   ? "numeric(20,0)"
                                              : columns[i].cls == TYPE_INTEGER ? "bigint"
                                                                               : "text");
                t->cols[i].cls = columns[i].cls;
                t->cols[i].key = columns[i].key;
                if (!t->cols[i].name || !t->cols[i].type_name)
                        t = table_unref(t);
        }
        if (t)
                t->replident = 'd';
        return t;
}

static const char *const state_names[] = {"copied", "copying", "converging", "chunk", "resnapshot"};

const char *copies_state_name(CopyState st) {
        return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

int copies_state_parse(const char *text, CopyState *ret) {
        for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
                if (strcmp(text, state_names[i]) == 0) {
                        *ret = (CopyState)i;
                        return 0;
                }
        return -EINVAL;
}

int copies_chunk_key(const char *source_table, uint64_t lo, uint64_t hi, char *buf, size_t len) {
        if (hi == UINT64_MAX)
                return snprintf(buf, len, "%s [%" PRIu64 ",)", source_table, lo);
        return snprintf(buf, len, "%s [%" PRIu64 ",%" PRIu64 ")", source_table, lo, hi);
}

bool copies_chunk_parse(const char *key, const char *source_table, uint64_t *ret_lo, uint64_t *ret_hi) {
        size_t tl = strlen(source_table);
        if (strncmp(key, source_table, tl) != 0 || strncmp(key + tl, " [", 2) != 0)
                return false;
        const char *p = key + tl + 2;
        char *end;
        errno = 0;
        unsigned long long lo = strtoull(p, &end, 10);
        if (errno || end == p || *end != ',')
                return false;
        p = end + 1;
        unsigned long long hi = UINT64_MAX;
        if (*p != ')') {
                hi = strtoull(p, &end, 10);
                if (errno || end == p || *end != ')')
                        return false;
                p = end;
        }
        if (p[1] != '\0' || hi <= lo)
                return false;
        *ret_lo = lo;
        *ret_hi = hi;
        return true;
}

int copies_record(const char *pipeline, const char *source_table, Position pos, const char *pos_text,
                  uint64_t copied_rows, Change *ret) {
        return copies_record_state(pipeline, source_table, COPY_STATE_COPIED, pos, pos_text, copied_rows, ret);
}

int copies_record_state(const char *pipeline, const char *source_table, CopyState st, Position pos,
                        const char *pos_text, uint64_t copied_rows, Change *ret) {
        char hi[24], lo[24], rows[24];
        snprintf(hi, sizeof(hi), "%" PRIu64, pos.hi);
        snprintf(lo, sizeof(lo), "%" PRIu64, pos.lo);
        snprintf(rows, sizeof(rows), "%" PRIu64, copied_rows);
        const char *vals[NCOLS] = {pipeline, source_table, copies_state_name(st), hi, lo, pos_text, rows};
        Change c = {.op = CHANGE_INSERT, .flags = CHANGE_IDEMPOTENT, .table = registry_table()};
        c.after = c.table ? values_new(NCOLS) : NULL;
        for (int i = 0; c.after && i < NCOLS; i++)
                if (vals[i] && value_set(&c.after[i], vals[i], strlen(vals[i])) < 0) {
                        change_clear(&c);
                        return -ENOMEM;
                }
        if (!c.after) {
                change_clear(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int copies_forget(const char *pipeline, const char *source_table, Change *ret) {
        Change c = {.op = CHANGE_DELETE, .flags = CHANGE_IDEMPOTENT, .table = registry_table()};
        c.before = c.table ? values_new(NCOLS) : NULL;
        if (!c.before || value_set(&c.before[0], pipeline, strlen(pipeline)) < 0 ||
            value_set(&c.before[1], source_table, strlen(source_table)) < 0) {
                change_clear(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

const CopiedTable *copies_find(const CopiedTable *list, int n, const char *schema, const char *table) {
        size_t sl = strlen(schema);
        for (int i = 0; i < n; i++)
                if (list[i].state != COPY_STATE_CHUNK && strncmp(list[i].table, schema, sl) == 0 &&
                    list[i].table[sl] == '.' && strcmp(list[i].table + sl + 1, table) == 0)
                        return &list[i];
        return NULL;
}
