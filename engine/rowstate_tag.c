/* Version tags of bidirectional sync: the row cdcsync.versions a sink writes with each row it
 * applies, and how the reverse pipeline reads them back to know exactly which version an echoed
 * row is (the design is in rowstate.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/conf.h"
#include "cdcsync/hash.h"
#include "rowstate_int.h"

#define TAG_V_MAX (2 + STATE_TABLE_MAX + 4 + KEY_MAX + VERSION_ENCODED_MAX)

int rowstate_tag_table_init(Table *t) {
        const char *names[2] = {"k", "v"};
        for (int i = 0; i < 2; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup("bytea");
                if (!t->cols[i].name || !t->cols[i].type_name)
                        return -ENOMEM;
                t->cols[i].type_oid = 17; /* PostgreSQL's bytea */
                t->cols[i].typmod = -1;
                t->cols[i].cls = TYPE_BYTES;
                t->cols[i].key = i == 0;
        }
        return 0;
}

bool rowstate_is_tag_table(const Table *t) {
        return t && strcmp(t->schema, ROWSTATE_TAG_SCHEMA) == 0 && strcmp(t->name, ROWSTATE_TAG_TABLE) == 0;
}

/* The tag's primary key: SHA-256 of the row's name space and key. */
void rowstate_tag_key(const char *space, const char *key, size_t n, uint8_t out[32]) {
        static __thread uint8_t buf[STATE_TABLE_MAX + 1 + KEY_MAX];
        size_t sl = strlen(space);
        memcpy(buf, space, sl + 1);
        memcpy(buf + sl + 1, key, n);
        hash_sha256(buf, sl + 1 + n, out);
}

void rowstate_note_tag(RowState *rs, const char *kspace, const char *key, size_t n, const Version *v) {
        snprintf(rs->last_space, sizeof(rs->last_space), "%s", kspace);
        memcpy(rs->last_key, key, n);
        rs->last_keylen = n;
        rs->last_v = *v;
        rs->have_last = true;
}

/* bytes as PostgreSQL's hex text form "\x0a1b..." (TYPE_BYTES) */
static int hex_value(Value *v, const uint8_t *b, size_t n) {
        static const char digits[] = "0123456789abcdef";
        char *t = malloc(2 + 2 * n + 1);
        if (!t)
                return -ENOMEM;
        t[0] = '\\';
        t[1] = 'x';
        for (size_t i = 0; i < n; i++) {
                t[2 + 2 * i] = digits[b[i] >> 4];
                t[3 + 2 * i] = digits[b[i] & 15];
        }
        t[2 + 2 * n] = '\0';
        v->kind = VALUE_TEXT;
        v->data = t;
        v->len = (uint32_t)(2 + 2 * n);
        return 0;
}

static int unhex(const Value *v, uint8_t *out, size_t size, size_t *ret_len) {
        if (v->kind != VALUE_TEXT || v->len < 2 || v->data[0] != '\\' || v->data[1] != 'x' || (v->len - 2) % 2 ||
            (v->len - 2) / 2 > size)
                return -EBADMSG;
        for (size_t i = 0; i < (v->len - 2) / 2; i++) {
                int x = 0;
                for (int j = 0; j < 2; j++) {
                        char c = v->data[2 + 2 * i + (size_t)j];
                        int d = c >= '0' && c <= '9'   ? c - '0'
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                       : -1;
                        if (d < 0)
                                return -EBADMSG;
                        x = x * 16 + d;
                }
                out[i] = (uint8_t)x;
        }
        *ret_len = (v->len - 2) / 2;
        return 0;
}

/* The key columns' values from encode_key's bytes, as a row with the other columns NULL. */
static int key_values(const Table *t, const char *key, size_t n, Value **ret) {
        Value *vals = values_new(t->ncols);
        size_t o = 0;
        if (!vals)
                return -ENOMEM;
        for (int i = 0; i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                uint32_t len;
                if (o + 4 > n)
                        goto bad;
                memcpy(&len, key + o, 4);
                o += 4;
                if (len == UINT32_MAX)
                        continue;
                if (len > n - o || value_set(&vals[i], key + o, len) < 0)
                        goto bad;
                o += len;
        }
        if (o != n)
                goto bad;
        *ret = vals;
        return 0;
bad:
        values_free(vals, t->ncols);
        return -EBADMSG;
}

int rowstate_tag(RowState *rs, Change *ret) {
        if (!rs->have_last || !rs->tag_table)
                return 0;
        rs->have_last = false;
        static __thread uint8_t v[TAG_V_MAX];
        uint8_t k[32];
        uint16_t sl = (uint16_t)strlen(rs->last_space);
        uint32_t kl = (uint32_t)rs->last_keylen;
        size_t o = 0;
        memcpy(v + o, &sl, 2);
        o += 2;
        memcpy(v + o, rs->last_space, sl);
        o += sl;
        memcpy(v + o, &kl, 4);
        o += 4;
        memcpy(v + o, rs->last_key, kl);
        o += kl;
        int n = version_encode(&rs->last_v, v + o, sizeof(v) - o);
        if (n < 0)
                return n;
        o += (size_t)n;
        rowstate_tag_key(rs->last_space, rs->last_key, kl, k);
        Change c = {.op = CHANGE_INSERT, .flags = CHANGE_IDEMPOTENT};
        c.after = values_new(2);
        if (!c.after || hex_value(&c.after[0], k, sizeof(k)) < 0 || hex_value(&c.after[1], v, o) < 0) {
                values_free(c.after, 2);
                return -ENOMEM;
        }
        c.table = table_ref(rs->tag_table);
        *ret = c;
        return 1;
}

/* Reads a row of cdcsync.versions: the row's name space (sspace), its key (*ret_key, kl bytes, in
 * a thread-local buffer valid until the next call) and version. Returns 1, 0 for a tag of
 * another connector's rows, or a negative errno. */
static int parse_tag(RowState *rs, const Change *c, char *sspace, TagEntry *e, const char **ret_key, uint32_t *ret_kl,
                     CdcError *err) {
        static __thread uint8_t v[TAG_V_MAX];
        uint8_t k[32];
        size_t kn = 0, vn = 0;
        if (unhex(&c->after[0], k, sizeof(k), &kn) < 0 || kn != sizeof(k) || unhex(&c->after[1], v, sizeof(v), &vn) < 0)
                return cdc_error(err, -EBADMSG, false, CDC_ERR_DATA, "%s malformed row in %s.%s", rs->ctx,
                                 ROWSTATE_TAG_SCHEMA, ROWSTATE_TAG_TABLE);
        uint16_t sl;
        uint32_t kl;
        memcpy(e->k, k, sizeof(k));
        if (vn < 6 || (memcpy(&sl, v, 2), sl >= STATE_TABLE_MAX) || vn < 2u + sl + 4 ||
            (memcpy(&kl, v + 2 + sl, 4), kl > KEY_MAX) || vn < 2u + sl + 4 + kl ||
            version_decode(v + 2 + sl + 4 + kl, vn - (2 + sl + 4 + kl), &e->v) < 0)
                return cdc_error(err, -EBADMSG, false, CDC_ERR_DATA, "%s malformed version in %s.%s", rs->ctx,
                                 ROWSTATE_TAG_SCHEMA, ROWSTATE_TAG_TABLE);
        memcpy(sspace, v + 2, sl);
        sspace[sl] = '\0';
        size_t nl = strlen(rs->node);
        if (strncmp(sspace, rs->node, nl) != 0 || sspace[nl] != '/')
                return 0; /* a tag of another connector's rows */
        *ret_key = (const char *)v + 2 + sl + 4;
        *ret_kl = kl;
        return 1;
}

int rowstate_copy_tag(RowState *rs, const Change *c, CdcError *err) {
        char sspace[STATE_TABLE_MAX];
        TagEntry e = {.handled = false};
        const char *key = NULL;
        uint32_t kl = 0;
        rs->have_last = false;
        if (!rs->reverse[0] || !rs->batch || !c->after)
                return 0;
        int r = parse_tag(rs, c, sspace, &e, &key, &kl, err);
        if (r <= 0)
                return r;
        /* The copied row (if any) is this write or one made on top of it: it is versioned after it. */
        r = state_put(rs->batch, sspace, key, kl, &e.v);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "write of %s failed", sspace);
        return rowstate_slice(rs, err);
}

int rowstate_echo_tag(RowState *rs, const TxnInfo *txn, const Change *c, Change *ret_forward, CdcError *err) {
        memset(ret_forward, 0, sizeof(*ret_forward));
        rs->have_last = false;
        if (!rs->reverse[0] || !rs->batch || !c->after)
                return 0;
        char sspace[STATE_TABLE_MAX];
        TagEntry e = {.handled = false};
        const char *key = NULL;
        uint32_t kl = 0;
        int pr = parse_tag(rs, c, sspace, &e, &key, &kl, err);
        if (pr <= 0)
                return pr;
        if (position_cmp(rs->stash_txn, txn->commit_pos) != 0) {
                rs->nstash = 0;
                rs->stash_txn = txn->commit_pos;
        }
        for (int i = 0; i < rs->nstash; i++)
                if (memcmp(rs->stash[i].k, e.k, sizeof(e.k)) == 0) { /* a later write of the same row */
                        memmove(rs->stash + i, rs->stash + i + 1, (size_t)(rs->nstash - i - 1) * sizeof(rs->stash[0]));
                        rs->nstash--;
                        break;
                }
        if (rs->nstash == TAG_STASH) {
                memmove(rs->stash, rs->stash + 1, (TAG_STASH - 1) * sizeof(rs->stash[0]));
                rs->nstash--;
        }
        /* S holds this write now, also when its row change is not in the log (a MySQL update that
         * changed nothing, a delete of a row that was not there). */
        int r = state_put(rs->batch, sspace, key, kl, &e.v);
        if (r < 0)
                return rowstate_store_error(rs, err, r, "write of %s failed", sspace);
        /* A delete needs no image: it is decided now, so that it is decided even when the log
         * holds no row change for it (the row was not there). */
        Table *t = NULL;
        for (int i = 0; i < rs->ntables && !t; i++)
                if (strcmp(rs->tables[i].space, sspace) == 0)
                        t = rs->tables[i].t;
        if (e.v.deleted && t) {
                Change d = {.op = CHANGE_DELETE, .table = table_ref(t)};
                char kspace[STATE_TABLE_MAX], kschema[STATE_TABLE_MAX], ktable[STATE_TABLE_MAX];
                bool go = false;
                r = key_values(t, key, kl, &d.before);
                if (r == 0)
                        r = conf_map_table(rs->conf, t->schema, t->name, kschema, sizeof(kschema), ktable,
                                           sizeof(ktable));
                if (r == 0)
                        r = rowstate_space(kspace, sizeof(kspace), rs->conf->sink->name, kschema, ktable);
                if (r == 0)
                        r = rowstate_echo_row(rs, txn, &d, sspace, kspace, key, kl, &e.v, &go, err);
                else
                        r = cdc_error(err, r, false, CDC_ERR_STATE, "%s cannot rebuild a delete of %s", rs->ctx,
                                      sspace);
                if (r < 0 || !go) {
                        change_clear(&d);
                        d.table = NULL;
                } else {
                        *ret_forward = d;
                }
                if (r < 0)
                        return r;
                e.handled = true;
        }
        rs->stash[rs->nstash++] = e;
        return rowstate_slice(rs, err) < 0 ? err->code : (ret_forward->table ? 1 : 0);
}

/* The exact version of an echoed row change: its tag, read just before it in the transaction. */
bool rowstate_stash_take(RowState *rs, const TxnInfo *txn, const char *space, const char *key, size_t n, Version *ret,
                         bool *ret_handled) {
        uint8_t k[32];
        *ret_handled = false;
        if (rs->nstash == 0 || position_cmp(rs->stash_txn, txn->commit_pos) != 0)
                return false;
        rowstate_tag_key(space, key, n, k);
        for (int i = 0; i < rs->nstash; i++)
                if (memcmp(rs->stash[i].k, k, sizeof(k)) == 0) {
                        *ret = rs->stash[i].v;
                        *ret_handled = rs->stash[i].handled;
                        memmove(rs->stash + i, rs->stash + i + 1, (size_t)(rs->nstash - i - 1) * sizeof(rs->stash[0]));
                        rs->nstash--;
                        return true;
                }
        return false;
}
