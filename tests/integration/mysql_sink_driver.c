/* Applies fixed batches through the MySQL sink, as a PostgreSQL source would send them, and
 * prints what the sink answered: the sink's half of test_mysql_sink.sh.
 *   mysql_sink_driver PORT SERVER_ID CREATE_TABLES(0|1)    password: env MYSQL_PW */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/connector.h"
#include "mysql/mysql_conn.h"
#include "mysql/mysql_sink.h"

static Table *orders(void) {
        static const struct {
                const char *name, *type;
                TypeClass cls;
                bool key;
        } cols[] = {
                {"id", "integer", TYPE_INTEGER, true},
                {"flag", "boolean", TYPE_BOOLEAN, false},
                {"data", "bytea", TYPE_BYTES, false},
                {"ts", "timestamptz", TYPE_TIMESTAMPTZ, false},
                {"amount", "numeric(12,2)", TYPE_NUMERIC, false},
                {"we`ird", "text", TYPE_TEXT, false},
        };
        Table *t = table_new("public", "orders", 6);
        for (int i = 0; i < 6; i++) {
                t->cols[i].name = strdup(cols[i].name);
                t->cols[i].type_name = strdup(cols[i].type);
                t->cols[i].cls = cols[i].cls;
                t->cols[i].key = cols[i].key;
        }
        return t;
}

static Value *row(const char *v[6]) {
        Value *r = values_new(6);
        for (int i = 0; i < 6; i++)
                if (v[i])
                        value_set(&r[i], v[i], strlen(v[i]));
        return r;
}

static int apply_flags(const SinkOps *ops, Sink *k, Table *t, ChangeOp op, uint32_t flags, Value *before, Value *after,
                       CdcError *err) {
        Change c = {.op = op, .table = table_ref(t), .before = before, .after = after, .flags = flags};
        TxnInfo txn = {.commit_ts = 1700000000000000, .origin = "pg"};
        int r = ops->apply(k, &txn, &c, err);
        change_clear(&c);
        return r;
}

static int apply(const SinkOps *ops, Sink *k, Table *t, ChangeOp op, Value *before, Value *after, CdcError *err) {
        return apply_flags(ops, k, t, op, 0, before, after, err);
}

static Value *key(const char *id) {
        return row((const char *[]){id, NULL, NULL, NULL, NULL, NULL});
}

/* commit(), then poll_durable() until the batch is durable or failed: the sink's sender may
 * apply the batch after commit() returned (see mysql_sink_sender.c). */
static int commit(const SinkOps *ops, Sink *k, const Checkpoint *ck, CdcError *err) {
        Position pos = {0};
        bool found = false;
        int r = ops->commit(k, ck, NULL, err);
        while (r == 0 && !(found && position_cmp(pos, ck->pos) >= 0))
                r = ops->poll_durable(k, 100, &pos, &found, err);
        return r;
}

/* Prints how a batch that must fail on a row the sink lacks ended: the error may come from the
 * apply that flushes the pending rows or from the commit; it must be a non-retriable "data" error
 * naming the table and the missing key, and nothing of the batch may be committed. */
static void diverged(const SinkOps *ops, Sink *k, const char *label, const char *want_key, int r, CdcError *err) {
        if (r == 0)
                r = commit(ops, k, &(Checkpoint){.pos = {0, 999}, .text = "0/3E7"}, err);
        bool named = strstr(err->message, "`test_sink`.`orders`") && strstr(err->message, want_key) &&
                     strstr(err->message, "the sink diverged from the source");
        printf("%s: r=%d %s retriable=%d %s\n", label, r < 0, r < 0 ? err->kind : "-", r < 0 ? err->retriable : -1,
               r < 0 && named ? "named"
               : r < 0        ? err->message
                              : "committed");
        ops->rollback(k);
}

#define CHECK(x)                                                                                                       \
        do {                                                                                                           \
                if ((x) < 0) {                                                                                         \
                        fprintf(stderr, "line %d: %s [%s retriable=%d]\n", __LINE__, err.message, err.kind,            \
                                err.retriable);                                                                        \
                        return 1;                                                                                      \
                }                                                                                                      \
        } while (0)

int main(int argc, char **argv) {
        if (argc != 4)
                return 2;
        ConnectorConf sink = {.name = "mysink",
                              .type = "mysql",
                              .host = "127.0.0.1",
                              .port = (int)strtol(argv[1], NULL, 10),
                              .user = "cdc",
                              .password = getenv("MYSQL_PW"),
                              .database = "test_sink",
                              .server_id = (uint32_t)strtoul(argv[2], NULL, 10),
                              .ssl_mode = "disabled",
                              .create_tables = strcmp(argv[3], "1") == 0};
        ConnectorConf src = {.name = "pg", .type = "postgres"};
        PipelineConf pipe = {.name = "p1", .source = &src, .sink = &sink};
        const SinkOps *ops = &mysql_sink_ops;
        CdcError err = {0};
        Sink *k;
        Checkpoint ckpt;
        bool found;
        CHECK(ops->open(&sink, &pipe, &k, &err));
        CHECK(ops->last_position(k, &ckpt, &found, &err));
        printf("start found=%d\n", found);
        Table *t = orders();

        /* a missing table without create_tables: retriable "schema" error naming it */
        CHECK(ops->begin(k, &err));
        int r = apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"1", "t", NULL, NULL, NULL, NULL}), &err);
        if (r < 0) {
                printf("missing: %s retriable=%d %s\n", err.kind, err.retriable,
                       strstr(err.message, "`test_sink`.`orders` does not exist") ? "named" : err.message);
                ops->rollback(k);
                if (!sink.create_tables)
                        goto out;
        } else {
                ops->rollback(k);
        }
        /* batch 1 */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL,
                    row((const char *[]){"1", "t", "\\x00ff", "2024-01-01 12:00:00.25+02", "10.50", "a"}), &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL,
                    row((const char *[]){"2", "f", NULL, "2024-01-01 00:00:00-05:30", "-0.01", "b`q"}), &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"3", NULL, NULL, NULL, NULL, "c"}), &err));
        /* key update: 2 → 20, found by the old key */
        CHECK(apply(ops, k, t, CHANGE_UPDATE, row((const char *[]){"2", NULL, NULL, NULL, NULL, NULL}),
                    row((const char *[]){"20", "t", "\\x", "2024-01-01 00:00:00-05:30", "99", "b2"}), &err));
        CHECK(apply(ops, k, t, CHANGE_DELETE, row((const char *[]){"3", NULL, NULL, NULL, NULL, NULL}), NULL, &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 100}, .text = "0/64"}, &err));
        /* batch 2: a replayed insert (idempotent), a truncate inside the transaction, then a row */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL,
                    row((const char *[]){"1", "t", "\\x00ff", "2024-01-01 12:00:00.25+02", "10.50", "a"}), &err));
        CHECK(apply(ops, k, t, CHANGE_TRUNCATE, NULL, NULL, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL,
                    row((const char *[]){"5", "t", "\\xdeadbeef", "2000-02-29 23:59:59.999999+00", "1", "after"}),
                    &err));
        CHECK(ops->rollback(k));
        /* the rolled-back batch left nothing; apply it for real */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"4", "f", NULL, NULL, "12345678.9", "kept"}),
                    &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 200}, .text = "0/C8"}, &err));
        /* batch 3: values MySQL cannot hold: non-retriable "data" errors naming table and column */
        const char *bad[][6] = {
                {"6", NULL, NULL, NULL, "NaN", NULL},
                {"6", NULL, NULL, "infinity", NULL, NULL},
                {"6", NULL, NULL, NULL, "1234567890123456789012345678901234567", NULL},
        };
        for (int i = 0; i < 3; i++) {
                CHECK(ops->begin(k, &err));
                r = apply(ops, k, t, CHANGE_INSERT, NULL, row(bad[i]), &err);
                printf("bad%d: r=%d %s retriable=%d %s\n", i, r < 0, err.kind, err.retriable,
                       strstr(err.message, "public.orders column") ? "named" : err.message);
                ops->rollback(k);
        }
        /* batch 3b: a run of three inserts (one multi-row statement) whose last row the server
         * refuses: the row-by-row retry names the bad value's column, not a duplicate of a row
         * the statement's other rows would have inserted */
        CHECK(ops->begin(k, &err));
        r = apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"8", "t", NULL, NULL, "8", "ok8"}), &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"9", "t", NULL, NULL, "9", "ok9"}),
                          &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_INSERT, NULL, row(bad[0]), &err);
        if (r == 0)
                r = commit(ops, k, &(Checkpoint){.pos = {0, 999}, .text = "0/3E7"}, &err);
        printf("bad-tail: r=%d %s retriable=%d %s\n", r < 0, err.kind, err.retriable,
               strstr(err.message, "public.orders column") ? "named" : err.message);
        ops->rollback(k);
        /* batch 4b: a run of three updates (one multi-row upsert), the row the sink lacks last */
        CHECK(ops->begin(k, &err));
        const char *upd3[] = {"1", "20", "96"};
        r = 0;
        for (int i = 0; i < 3 && r == 0; i++)
                r = apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){upd3[i], "f", NULL, NULL, "1", "u"}),
                          &err);
        diverged(ops, k, "missing-tail", "(id)=(96)", r, &err);
        /* batch 4: updates found as one array execution, one of them of a row the sink lacks */
        CHECK(ops->begin(k, &err));
        r = apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"7", "t", NULL, NULL, "7", "new"}), &err);
        const char *upd[] = {"1", "20", "99", "4"};
        for (int i = 0; i < 4 && r == 0; i++)
                r = apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){upd[i], "f", NULL, NULL, "1", "u"}),
                          &err);
        diverged(ops, k, "missing-update", "(id)=(99)", r, &err);
        /* batch 5: deletes, one of a missing row, after an update of an existing one */
        CHECK(ops->begin(k, &err));
        r = apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"4", "t", NULL, NULL, "2", "x"}), &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_DELETE, key("20"), NULL, &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_DELETE, key("98"), NULL, &err);
        diverged(ops, k, "missing-delete", "(id)=(98)", r, &err);
        /* batch 6: a single missing-row update (not an array execution) */
        CHECK(ops->begin(k, &err));
        r = apply(ops, k, t, CHANGE_UPDATE, key("97"), row((const char *[]){"97", "f", NULL, NULL, NULL, "z"}), &err);
        diverged(ops, k, "missing-single", "(id)=(97)", r, &err);
        /* batch 7: an at-least-once source (Kafka): a whole-row update of a missing row is an
         * upsert, a delete of a missing row is no error, a replayed delete neither */
        CHECK(ops->begin(k, &err));
        CHECK(apply_flags(ops, k, t, CHANGE_UPDATE, CHANGE_IDEMPOTENT, NULL,
                          row((const char *[]){"50", "t", NULL, NULL, "5.5", "upserted"}), &err));
        CHECK(apply_flags(ops, k, t, CHANGE_DELETE, CHANGE_IDEMPOTENT, key("51"), NULL, &err));
        CHECK(apply_flags(ops, k, t, CHANGE_INSERT, CHANGE_IDEMPOTENT, NULL,
                          row((const char *[]){"52", "f", NULL, NULL, NULL, "gone"}), &err));
        CHECK(apply_flags(ops, k, t, CHANGE_DELETE, CHANGE_IDEMPOTENT, key("52"), NULL, &err));
        CHECK(apply_flags(ops, k, t, CHANGE_DELETE, CHANGE_IDEMPOTENT, key("52"), NULL, &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 300}, .text = "0/12C"}, &err));
        printf("idempotent: ok\n");
        /* batch 8: a table without key: an update of a row the sink lacks is named by its place in
         * the source transaction and its first columns, not by its whole image (12 x 100 bytes) */
        {
                Table *w = table_new("public", "wide", 12);
                char v[101], a[101], name[8], want[400];
                memset(v, 'b', 100);
                v[100] = '\0';
                memset(a, 'a', 100);
                a[100] = '\0';
                Value *before = values_new(12), *after = values_new(12), *ins = values_new(12);
                for (int i = 0; i < 12; i++) {
                        snprintf(name, sizeof(name), "c%d", i + 1);
                        w->cols[i].name = strdup(name);
                        w->cols[i].type_name = strdup("text");
                        w->cols[i].cls = TYPE_TEXT;
                        value_set(&before[i], v, 100);
                        value_set(&after[i], a, 100);
                        value_set(&ins[i], a, 100);
                }
                snprintf(want, sizeof(want),
                         "(row 2 of its source transaction, no key: c1=%.24s…, c2=%.24s…, c3=%.24s…, and 9 more "
                         "columns) matched no rows instead of 1",
                         v, v, v);
                CHECK(ops->begin(k, &err));
                r = apply(ops, k, w, CHANGE_INSERT, NULL, ins, &err);
                if (r == 0)
                        r = apply(ops, k, w, CHANGE_UPDATE, before, after, &err);
                else
                        values_free(before, 12), values_free(after, 12);
                if (r == 0)
                        r = commit(ops, k, &(Checkpoint){.pos = {0, 999}, .text = "0/3E7"}, &err);
                printf("keyless: r=%d %s %s\n", r < 0, r < 0 ? err.kind : "-",
                       r < 0 && strstr(err.message, want) && strlen(err.message) < 400 ? "brief" : err.message);
                ops->rollback(k);
                table_unref(w);
        }
        /* batch 9: rows replaced by a delete and an insert (sysbench's oltp_write_only does this
         * in every transaction), among updates; the pairs become updates (mysql_sink_cancel_delete),
         * a row replaced twice and updated after its replacement ends as the source has it */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"50", "t", NULL, NULL, "5.5", "u50"}), &err));
        CHECK(apply(ops, k, t, CHANGE_DELETE, key("1"), NULL, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"1", "f", NULL, NULL, "3", "re1"}), &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"1", "f", NULL, NULL, "3", "re1b"}), &err));
        CHECK(apply(ops, k, t, CHANGE_DELETE, key("20"), NULL, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"20", "t", NULL, NULL, "2", "re20"}), &err));
        CHECK(apply(ops, k, t, CHANGE_DELETE, key("20"), NULL, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"20", "t", NULL, NULL, "2", "re20b"}), &err));
        CHECK(apply(ops, k, t, CHANGE_DELETE, key("4"), NULL, &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 400}, .text = "0/190"}, &err));
        printf("replaced: ok\n");
        /* batch 10: a row the sink lacks, deleted and inserted again: still a divergence */
        CHECK(ops->begin(k, &err));
        r = apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"50", "t", NULL, NULL, "6", "lost"}), &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_DELETE, key("60"), NULL, &err);
        if (r == 0)
                r = apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"60", "t", NULL, NULL, "6", "x"}), &err);
        diverged(ops, k, "missing-replaced", "(id)=(60)", r, &err);
        /* batch 11: whole-row updates, two of them to the values the rows already have: the
         * multi-row upsert's affected rows fall short of "every row changed", which is no error */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"1", "f", NULL, NULL, "3", "re1b"}), &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"20", "t", NULL, NULL, "2", "re20c"}), &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"50", "t", NULL, NULL, "5.5", "u50"}), &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 500}, .text = "0/1F4"}, &err));
        printf("unchanged: ok\n");
        /* batch 12: a row changed by a statement of its own (a partial update: TOASTed columns
         * unchanged), then deleted and inserted again. The replacement goes as a whole-row update,
         * whose run (row 20's) was started before the partial update's: it must still come after
         * it, so it starts a run of its own (runs are sent in the order they were started) */
        CHECK(ops->begin(k, &err));
        CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"20", "t", NULL, NULL, "2", "u20"}), &err));
        {
                Value *part = row((const char *[]){"50", NULL, NULL, NULL, "7", NULL});
                for (int i = 0; i < 6; i++)
                        if (i != 0 && i != 4)
                                part[i].kind = VALUE_UNCHANGED;
                CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, part, &err));
        }
        CHECK(apply(ops, k, t, CHANGE_DELETE, key("50"), NULL, &err));
        CHECK(apply(ops, k, t, CHANGE_INSERT, NULL, row((const char *[]){"50", "f", NULL, NULL, "8", "re50"}), &err));
        CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 600}, .text = "0/258"}, &err));
        printf("replaced-after-partial: ok\n");
        /* batches 13 and 14: commit() hands the batch to the sink's sender and returns while the
         * server applies it (here: waits for a row another session holds); the next batch is
         * built meanwhile, and both become durable once the row is released */
        {
                MYSQL *lk = NULL;
                Position pos = {0};
                CHECK(mysql_conn_open(&sink, "test_sink", &lk, &err));
                if (mysql_query(lk, "START TRANSACTION") ||
                    mysql_query(lk, "SELECT * FROM orders WHERE id = 1 FOR UPDATE"))
                        return fprintf(stderr, "locker: %s\n", mysql_error(lk)), 1;
                mysql_free_result(mysql_store_result(lk));
                CHECK(ops->begin(k, &err));
                CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"1", "t", NULL, NULL, "13", "b13"}),
                            &err));
                CHECK(ops->commit(k, &(Checkpoint){.pos = {0, 700}, .text = "0/2BC"}, NULL, &err));
                CHECK(ops->poll_durable(k, 0, &pos, &found, &err));
                printf("held: durable=%llu\n", (unsigned long long)pos.lo);
                CHECK(ops->begin(k, &err));
                CHECK(apply(ops, k, t, CHANGE_UPDATE, NULL, row((const char *[]){"20", "t", NULL, NULL, "14", "b14"}),
                            &err));
                printf("built while held: ok\n");
                mysql_commit(lk);
                mysql_close(lk);
                CHECK(commit(ops, k, &(Checkpoint){.pos = {0, 800}, .text = "0/320"}, &err));
        }
        CHECK(ops->last_position(k, &ckpt, &found, &err));
        printf("last found=%d %llu/%llu\n", found, (unsigned long long)ckpt.pos.hi, (unsigned long long)ckpt.pos.lo);
out:
        table_unref(t);
        ops->free(k);
        return 0;
}
