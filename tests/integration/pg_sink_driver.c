/* Drives the PostgreSQL sink against a real server and checks the target's contents exactly.
 *   pg_sink_driver test DSN        the scenario (exit 0 when every check passed)
 *   pg_sink_driver bench DSN [N]   N (100000) single-row inserts in batches of 5000: rows/s */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdcsync/connector.h"
#include "postgres/pg_sink.h"

/* The default mapping (same schema.table, all this driver needs), weak so that the driver links
 * whether or not the conf module is in the tree: with it, the linker still picks this definition
 * unless conf.o is pulled in for another symbol, in which case the real one wins. Either way the
 * result is the same for a pipeline without `map`. */
__attribute__((weak)) int conf_map_table(const PipelineConf *p, const char *schema, const char *table, char *ret_schema,
                                         size_t schema_len, char *ret_table, size_t table_len) {
        (void)p;
        if ((size_t)snprintf(ret_schema, schema_len, "%s", schema) >= schema_len ||
            (size_t)snprintf(ret_table, table_len, "%s", table) >= table_len)
                return -ENAMETOOLONG;
        return 0;
}

static int failures;
static PGconn *admin;

#define CHECK(cond, ...)                                                                                               \
        do {                                                                                                           \
                if (!(cond)) {                                                                                         \
                        failures++;                                                                                    \
                        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                           \
                        fprintf(stderr, __VA_ARGS__);                                                                  \
                        fputc('\n', stderr);                                                                           \
                }                                                                                                      \
        } while (0)

static void die(const char *what, const char *msg) {
        fprintf(stderr, "FATAL %s: %s\n", what, msg);
        exit(1);
}

static void admin_exec(const char *sql) {
        PGresult *res = PQexec(admin, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                die(sql, PQerrorMessage(admin));
        PQclear(res);
}

/* The rows of a query as one text: fields joined by '|', rows by '\n', NULL as "∅". */
static char *admin_rows(const char *sql) {
        PGresult *res = PQexec(admin, sql);
        size_t cap = 1024, len = 0;
        char *out = malloc(cap);

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                die(sql, PQerrorMessage(admin));
        out[0] = '\0';
        for (int r = 0; r < PQntuples(res); r++) {
                for (int c = 0; c < PQnfields(res); c++) {
                        const char *v = PQgetisnull(res, r, c) ? "∅" : PQgetvalue(res, r, c);
                        size_t need = len + strlen(v) + 3;
                        if (need > cap) {
                                while (cap < need)
                                        cap *= 2;
                                out = realloc(out, cap);
                        }
                        len += (size_t)snprintf(out + len, cap - len, "%s%s", c ? "|" : "", v);
                }
                out[len++] = '\n';
                out[len] = '\0';
        }
        PQclear(res);
        return out;
}

static void expect_rows(const char *sql, const char *want, const char *label) {
        char *got = admin_rows(sql);
        CHECK(strcmp(got, want) == 0, "%s:\n--- want\n%s--- got\n%s", label, want, got);
        free(got);
}

/* ---- building tables and changes by hand ---- */

typedef struct {
        const char *name, *type;
        TypeClass cls;
        bool key;
} ColDef;

static Table *mk_table(const char *schema, const char *name, const ColDef *defs, int n, char replident) {
        Table *t = table_new(schema, name, n);
        for (int i = 0; i < n; i++) {
                t->cols[i].name = strdup(defs[i].name);
                t->cols[i].type_name = strdup(defs[i].type);
                t->cols[i].cls = defs[i].cls;
                t->cols[i].key = defs[i].key;
        }
        t->replident = replident;
        return t;
}

static const char UNCH[] = "<unchanged>";

/* v[i]: text, NULL for SQL NULL, UNCH for an unchanged TOAST value. */
static Value *mk_values(const Table *t, const char *const *v) {
        Value *vals = values_new(t->ncols);
        for (int i = 0; i < t->ncols; i++) {
                if (v[i] == UNCH)
                        vals[i].kind = VALUE_UNCHANGED;
                else if (v[i])
                        value_set(&vals[i], v[i], strlen(v[i]));
        }
        return vals;
}

static const SinkOps *ops = &pg_sink_ops;

/* Applies one change; returns the sink's result (error text in err). */
static int apply(Sink *k, TxnInfo *txn, ChangeOp op, Table *t, const char *const *before, const char *const *after,
                 uint32_t flags, CdcError *err) {
        Change c = {.op = op, .table = table_ref(t), .flags = flags};
        int r;
        if (before)
                c.before = mk_values(t, before);
        if (after)
                c.after = mk_values(t, after);
        r = ops->apply(k, txn, &c, err);
        change_clear(&c);
        return r;
}

#define ROW(...) ((const char *const[]){__VA_ARGS__})

static void must(int r, const CdcError *err, const char *what) {
        if (r < 0)
                die(what, err->message);
}

static TxnInfo txn_at(uint64_t lsn, int64_t ts) {
        TxnInfo t = {.xid = lsn, .commit_pos = {0, lsn}, .commit_ts = ts};
        return t;
}

static const ColDef items_cols[] = {
        {"id", "integer", TYPE_INTEGER, true},
        {"name", "text", TYPE_TEXT, false},
        {"price", "numeric(10,2)", TYPE_NUMERIC, false},
        {"ts", "timestamp with time zone", TYPE_TIMESTAMPTZ, false},
        {"data", "bytea", TYPE_BYTES, false},
        {"doc", "jsonb", TYPE_JSON, false},
        {"tags", "integer[]", TYPE_ARRAY, false},
        {"u", "uuid", TYPE_UUID, false},
        {"big", "text", TYPE_TEXT, false},
};

#define ITEMS_Q                                                                                                        \
        "SELECT id, name, price, ts, data, doc, tags, u, length(big), left(big, 3) FROM "                              \
        "\"Shop\".\"order items\" ORDER BY id"

static const char *items_after_batch2 =
        "1|renamed ✓|12.50|2024-01-02 03:04:05.123456+00|\\x00ff10|{\"a\": [1, \"two\"]}|{1,2,3}|"
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|100000|xxx\n"
        "4|∅|∅|∅|∅|∅|∅|∅|∅|∅\n"
        "5|Ünïcødé 日本語 \"quoted\" 'single'|-0.01|1999-12-31 23:59:59+00|\\x|null|{}|∅|1|y\n"
        "20|moved|3.00|∅|∅|∅|{NULL,7}|∅|∅|∅\n";

static const char *nokey_after_batch2 = "1|x\n1|y\n";

#define WIDE_COLS 14 /* a key and 13 columns: 8,191 column sets an UPDATE can have */

/* Rows 1 and 2 of t, every column set to v: held as one run, sent as one two-row UPDATE. */
static void two_rows(Sink *k, Table *t, const TxnInfo *txn, const char *v) {
        const char *row[WIDE_COLS];
        CdcError err = {0};
        for (int i = 1; i < WIDE_COLS; i++)
                row[i] = v;
        for (int id = 1; id <= 2; id++) {
                row[0] = id == 1 ? "1" : "2";
                must(apply(k, (TxnInfo *)txn, CHANGE_UPDATE, t, NULL, row, 0, &err), &err, "update rows 1 and 2");
        }
}

/* More distinct statements than a session keeps prepared (STMT_CACHE_MAX in pg_sink.c, 4,096):
 * the next batch deallocates them all, and a held run of a shape the table had already prepared
 * (two rows, every column) is prepared again rather than named from what was deallocated. */
static void stmt_cache_overflow(Sink *k) {
        ColDef defs[WIDE_COLS] = {{"id", "integer", TYPE_INTEGER, true}};
        char names[WIDE_COLS][8],
                sql[512] = "DROP TABLE IF EXISTS \"Shop\".wide; CREATE TABLE \"Shop\".wide (id int PRIMARY KEY";
        const char *row[WIDE_COLS];
        CdcError err = {0};
        for (int i = 1; i < WIDE_COLS; i++) {
                snprintf(names[i], sizeof(names[i]), "c%d", i);
                defs[i] = (ColDef){names[i], "integer", TYPE_INTEGER, false};
                snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), ", %s int", names[i]);
        }
        snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql),
                 "); INSERT INTO \"Shop\".wide (id) VALUES (1), (2), (3)");
        admin_exec(sql);
        Table *wide = mk_table("Shop", "wide", defs, WIDE_COLS, 'd');
        TxnInfo t = txn_at(500, 1700000004000000); /* the checkpoint stays at 500 */
        Checkpoint ck = {.pos = {0, 500}, .text = "0/1F4"};
        char v[16] = "0";
        /* 5,000 updates of row 3, each setting another set of columns (the others unchanged), 100
         * per batch: each ends the held run of the one before, so each is a statement of its
         * own, and the session's cache fills and is emptied on the way. Every batch starts and
         * ends with the two-row run of rows 1 and 2, so that its shape is always one of the last
         * the table prepared when a batch starts by deallocating. */
        for (int m = 1; m <= 5000; m++) {
                if (m % 100 == 1) {
                        must(ops->begin(k, &err), &err, "begin column sets");
                        snprintf(v, sizeof(v), "%d", m / 100);
                        two_rows(k, wide, &t, v);
                }
                row[0] = "3";
                for (int i = 1; i < WIDE_COLS; i++)
                        row[i] = (m >> (i - 1)) & 1 ? "2" : UNCH;
                must(apply(k, &t, CHANGE_UPDATE, wide, NULL, row, 0, &err), &err, "update a column set");
                if (m % 100 == 0) {
                        two_rows(k, wide, &t, v);
                        must(ops->commit(k, &ck, &t, &err), &err, "commit column sets");
                }
        }
        expect_rows("SELECT id, c1, c7, c13 FROM \"Shop\".wide ORDER BY id", "1|49|49|49\n2|49|49|49\n3|2|2|2\n",
                    "rows after more statements than the session keeps");
        table_unref(wide);
}

static int run_test(const char *dsn) {
        ConnectorConf src = {.name = "pg_src", .type = "postgres"};
        ConnectorConf conn = {.name = "pg_target", .type = "postgres", .dsn = (char *)dsn};
        PipelineConf pipe = {.name = "t1", .source = &src, .sink = &conn, .batch_max_rows = 5000};
        Table *items = mk_table("Shop", "order items", items_cols, 9, 'd');
        static const ColDef nokey_cols[] = {{"a", "integer", TYPE_INTEGER, false}, {"b", "text", TYPE_TEXT, false}};
        Table *nokey = mk_table("Shop", "nokey", nokey_cols, 2, 'd');
        static const ColDef seq_cols[] = {{"id", "integer", TYPE_INTEGER, true}, {"v", "text", TYPE_TEXT, false}};
        Table *seqt = mk_table("Shop", "seq", seq_cols, 2, 'd');
        static const ColDef new_cols[] = {{"k", "bigint", TYPE_INTEGER, true},
                                          {"amount", "numeric(10,2)", TYPE_NUMERIC, false},
                                          {"tags", "text[]", TYPE_ARRAY, false},
                                          {"at", "timestamp with time zone", TYPE_TIMESTAMPTZ, false}};
        Table *newt = mk_table("fresh", "Made \"by\" cdcsync", new_cols, 4, 'd');
        char *big = malloc(100001);
        Sink *k = NULL;
        CdcError err = {0};
        Checkpoint ckpt;
        bool found = true;
        TxnInfo t1, t2;
        int r;

        memset(big, 'x', 100000);
        big[100000] = '\0';
        admin_exec("DROP SCHEMA IF EXISTS \"Shop\" CASCADE; DROP SCHEMA IF EXISTS fresh CASCADE; "
                   "DROP SCHEMA IF EXISTS cdcsync CASCADE; CREATE SCHEMA \"Shop\";"
                   "CREATE TABLE \"Shop\".\"order items\" (id int PRIMARY KEY, name text, price "
                   "numeric(10,2), ts timestamptz, data bytea, doc jsonb, tags int[], u uuid, big text);"
                   "CREATE TABLE \"Shop\".nokey (a int, b text);"
                   "CREATE TABLE \"Shop\".seq (id serial PRIMARY KEY, v text);"
                   "INSERT INTO \"Shop\".seq (v) VALUES ('old1'), ('old2');"
                   "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE "
                   "roname IN ('cdcsync_t1', 'cdcsync_held')");

        must(ops->open(&conn, &pipe, &k, &err), &err, "open");
        must(ops->last_position(k, &ckpt, &found, &err), &err, "last_position");
        CHECK(!found, "a new pipeline has no checkpoint");

        /* Batch 1: two source transactions of inserts. */
        t1 = txn_at(100, 1700000000000000);
        t2 = txn_at(150, 1700000000500000);
        must(ops->begin(k, &err), &err, "begin 1");
        must(apply(k, &t1, CHANGE_INSERT, items, NULL,
                   ROW("1", "first", "12.5", "2024-01-02 04:04:05.123456+01", "\\x00ff10", "{\"a\": [1, \"two\"]}",
                       "{1,2,3}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", big),
                   0, &err),
             &err, "insert 1");
        must(apply(k, &t1, CHANGE_INSERT, items, NULL,
                   ROW("2", "to move", "3", NULL, NULL, NULL, "{NULL,7}", NULL, NULL), 0, &err),
             &err, "insert 2");
        must(apply(k, &t1, CHANGE_INSERT, items, NULL, ROW("3", "to delete", "1", NULL, NULL, NULL, NULL, NULL, NULL),
                   0, &err),
             &err, "insert 3");
        must(apply(k, &t2, CHANGE_INSERT, items, NULL, ROW("4", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0,
                   &err),
             &err, "insert 4");
        must(apply(k, &t2, CHANGE_INSERT, items, NULL,
                   ROW("5", "Ünïcødé 日本語 \"quoted\" 'single'", "-0.01", "1999-12-31 23:59:59Z", "\\x", "null", "{}",
                       NULL, "y"),
                   0, &err),
             &err, "insert 5");
        must(apply(k, &t2, CHANGE_INSERT, nokey, NULL, ROW("1", "x"), 0, &err), &err, "nokey 1");
        must(apply(k, &t2, CHANGE_INSERT, nokey, NULL, ROW("1", "x"), 0, &err), &err, "nokey 2");
        must(apply(k, &t2, CHANGE_INSERT, nokey, NULL, ROW("2", NULL), 0, &err), &err, "nokey 3");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 150}, .text = "0/96"}, &t2, &err), &err, "commit 1");

        /* Batch 2: updates (a renamed row keeping its unchanged TOAST value, a key change), a
         * delete, and key-less rows addressed by their whole old row (one of two duplicates). */
        t1 = txn_at(200, 1700000001000000);
        must(ops->begin(k, &err), &err, "begin 2");
        must(apply(k, &t1, CHANGE_UPDATE, items, NULL,
                   ROW("1", "renamed ✓", "12.50", "2024-01-02 03:04:05.123456Z", "\\x00ff10", "{\"a\": [1, \"two\"]}",
                       "{1,2,3}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", UNCH),
                   0, &err),
             &err, "update 1");
        must(apply(k, &t1, CHANGE_UPDATE, items, ROW("2", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                   ROW("20", "moved", "3", NULL, NULL, NULL, "{NULL,7}", NULL, NULL), 0, &err),
             &err, "update key 2->20");
        must(apply(k, &t1, CHANGE_DELETE, items, ROW("3", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL, 0,
                   &err),
             &err, "delete 3");
        must(apply(k, &t1, CHANGE_UPDATE, nokey, ROW("1", "x"), ROW("1", "y"), 0, &err), &err, "nokey update");
        must(apply(k, &t1, CHANGE_DELETE, nokey, ROW("2", NULL), NULL, 0, &err), &err, "nokey delete");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 200}, .text = "0/C8"}, &t1, &err), &err, "commit 2");
        expect_rows(ITEMS_Q, items_after_batch2, "items after batch 2");
        expect_rows("SELECT a, b FROM \"Shop\".nokey ORDER BY a, b", nokey_after_batch2, "nokey after batch 2");

        /* Batch 3: truncate with restart identity, then rows in the same batch. */
        t1 = txn_at(300, 1700000002000000);
        must(ops->begin(k, &err), &err, "begin 3");
        must(apply(k, &t1, CHANGE_TRUNCATE, seqt, NULL, NULL, TRUNCATE_RESTART_IDENTITY, &err), &err, "truncate");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 300}, .text = "0/12C"}, &t1, &err), &err, "commit 3");
        admin_exec("INSERT INTO \"Shop\".seq (v) VALUES ('after')");
        expect_rows("SELECT id, v FROM \"Shop\".seq", "1|after\n", "truncate restarted the sequence");

        /* The checkpoint and the origin's progress. */
        expect_rows("SELECT pos_hi, pos_lo, pos_text, source_commit_ts FROM cdcsync.checkpoints",
                    "0|300|0/12C|2023-11-14 22:13:22+00\n", "checkpoint row");
        expect_rows("SELECT remote_lsn FROM pg_replication_origin_status WHERE external_id = 'cdcsync_t1'", "0/12C\n",
                    "origin progress");
        must(ops->last_position(k, &ckpt, &found, &err), &err, "last_position");
        CHECK(found && ckpt.pos.hi == 0 && ckpt.pos.lo == 300, "last_position %d %llu", found,
              (unsigned long long)ckpt.pos.lo);

        /* A batch rolled back leaves no trace. */
        t1 = txn_at(400, 1700000003000000);
        must(ops->begin(k, &err), &err, "begin 4");
        must(apply(k, &t1, CHANGE_INSERT, items, NULL, ROW("100", "ghost", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0,
                   &err),
             &err, "insert ghost");
        must(apply(k, &t1, CHANGE_DELETE, items, ROW("1", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL, 0,
                   &err),
             &err, "delete 1");
        CHECK(ops->rollback(k) == 0, "rollback");
        expect_rows(ITEMS_Q, items_after_batch2, "items after rollback");

        /* An update of a row the sink lacks: a data error naming the table and key. */
        must(ops->begin(k, &err), &err, "begin 5");
        must(apply(k, &t1, CHANGE_INSERT, items, NULL, ROW("101", "ghost", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0,
                   &err),
             &err, "insert ghost 2");
        r = apply(k, &t1, CHANGE_UPDATE, items, NULL, ROW("999", "nobody", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0,
                  &err);
        if (r == 0)
                r = ops->commit(k, &(Checkpoint){.pos = {0, 400}, .text = "0/190"}, &t1, &err);
        CHECK(r < 0 && strcmp(err.kind, "data") == 0 && !err.retriable && strstr(err.message, "Shop.order items") &&
                      strstr(err.message, "(id)=(999)"),
              "missing row: r=%d kind=%s msg=%s", r, err.kind, err.message);
        CHECK(ops->rollback(k) == 0, "rollback after error");
        expect_rows(ITEMS_Q, items_after_batch2, "items after failed batch");

        /* Deletes held as multi-row statements (2 rows, then 1), the second of a row the sink lacks: that
         * row is named (described only once the statement missed it). */
        must(ops->begin(k, &err), &err, "begin 5b");
        const char *ids[] = {"4", "998", "5"};
        r = 0;
        for (int i = 0; i < 3 && r == 0; i++)
                r = apply(k, &t1, CHANGE_DELETE, items, ROW(ids[i], NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                          NULL, 0, &err);
        if (r == 0)
                r = ops->commit(k, &(Checkpoint){.pos = {0, 400}, .text = "0/190"}, &t1, &err);
        CHECK(r < 0 && strcmp(err.kind, "data") == 0 && !err.retriable &&
                      strstr(err.message, "delete of Shop.order items key (id)=(998) affected no rows instead of 1 "
                                          "(1 of 2 rows of one statement found)"),
              "missing row among held deletes: r=%d kind=%s msg=%s", r, err.kind, err.message);
        CHECK(ops->rollback(k) == 0, "rollback after error");
        expect_rows(ITEMS_Q, items_after_batch2, "items after failed batch");

        /* A duplicate key: the server's message, attributed to the insert and its key. */
        must(ops->begin(k, &err), &err, "begin 6");
        r = apply(k, &t1, CHANGE_INSERT, items, NULL, ROW("5", "dup", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0,
                  &err);
        if (r == 0)
                r = ops->commit(k, &(Checkpoint){.pos = {0, 400}, .text = "0/190"}, &t1, &err);
        CHECK(r < 0 && strcmp(err.kind, "data") == 0 &&
                      strstr(err.message, "insert of Shop.order items key (id)=(5)") && strstr(err.message, "23505"),
              "duplicate: r=%d kind=%s msg=%s", r, err.kind, err.message);
        CHECK(ops->rollback(k) == 0, "rollback after duplicate");

        /* A table without key: a missing row is named by its place in the source transaction and
         * its first columns, not by its whole image (here 12 columns of 100 bytes). */
        {
                static const ColDef wide_cols[] = {
                        {"c1", "text", TYPE_TEXT, false},  {"c2", "text", TYPE_TEXT, false},
                        {"c3", "text", TYPE_TEXT, false},  {"c4", "text", TYPE_TEXT, false},
                        {"c5", "text", TYPE_TEXT, false},  {"c6", "text", TYPE_TEXT, false},
                        {"c7", "text", TYPE_TEXT, false},  {"c8", "text", TYPE_TEXT, false},
                        {"c9", "text", TYPE_TEXT, false},  {"c10", "text", TYPE_TEXT, false},
                        {"c11", "text", TYPE_TEXT, false}, {"c12", "text", TYPE_TEXT, false}};
                Table *wide = mk_table("Shop", "wide", wide_cols, 12, 'f');
                char v[101], a[101], want[400];
                memset(v, 'b', 100);
                v[100] = '\0';
                memset(a, 'a', 100);
                a[100] = '\0';
                const char *old_row[12] = {v, v, v, v, v, v, v, v, v, v, v, v};
                const char *new_row[12] = {a, a, a, a, a, a, a, a, a, a, a, a};
                admin_exec("CREATE TABLE \"Shop\".wide (c1 text, c2 text, c3 text, c4 text, c5 text, c6 text, c7 "
                           "text, c8 text, c9 text, c10 text, c11 text, c12 text)");
                snprintf(want, sizeof(want),
                         "update of Shop.wide (row 2 of its source transaction, no key: c1=%.24s…, c2=%.24s…, "
                         "c3=%.24s…, and 9 more columns) affected 0 rows instead of 1",
                         v, v, v);
                t2 = txn_at(450, 1700000003500000);
                must(ops->begin(k, &err), &err, "begin keyless");
                r = apply(k, &t2, CHANGE_INSERT, wide, NULL, new_row, 0, &err);
                if (r == 0)
                        r = apply(k, &t2, CHANGE_UPDATE, wide, old_row, new_row, 0, &err);
                if (r == 0)
                        r = ops->commit(k, &(Checkpoint){.pos = {0, 450}, .text = "0/1C2"}, &t2, &err);
                CHECK(r < 0 && strcmp(err.kind, "data") == 0 && strstr(err.message, want) && strlen(err.message) < 400,
                      "keyless missing row: r=%d kind=%s msg=%s", r, err.kind, err.message);
                CHECK(ops->rollback(k) == 0, "rollback after keyless");
                table_unref(wide);
        }

        /* A missing target table without create_tables: retriable schema error, nothing applied. */
        must(ops->begin(k, &err), &err, "begin 7");
        r = apply(k, &t1, CHANGE_INSERT, newt, NULL, ROW("1", "2.5", "{a,\"b c\"}", NULL), 0, &err);
        CHECK(r < 0 && strcmp(err.kind, "schema") == 0 && err.retriable &&
                      strstr(err.message, "fresh.Made \"by\" cdcsync does not exist on sink pg_target"),
              "missing table: r=%d kind=%s msg=%s", r, err.kind, err.message);
        CHECK(ops->rollback(k) == 0, "rollback after missing table");

        /* The sink is usable after all these errors: a key update and the checkpoint. */
        t1 = txn_at(500, 1700000004000000);
        must(ops->begin(k, &err), &err, "begin 8");
        must(apply(k, &t1, CHANGE_UPDATE, items, ROW("20", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                   ROW("21", "moved again", "3", NULL, NULL, NULL, "{NULL,7}", NULL, UNCH), 0, &err),
             &err, "update key 20->21");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 500}, .text = "0/1F4"}, &t1, &err), &err, "commit 8");
        expect_rows("SELECT id, name FROM \"Shop\".\"order items\" WHERE id > 5", "21|moved again\n",
                    "key update after errors");
        expect_rows("SELECT pos_lo FROM cdcsync.checkpoints WHERE pipeline = 't1'", "500\n", "checkpoint 500");
        stmt_cache_overflow(k);
        k = ops->free(k);

        /* create_tables: the table is made from the source's types, quoted names and all. */
        conn.create_tables = true;
        must(ops->open(&conn, &pipe, &k, &err), &err, "open with create_tables");
        must(ops->last_position(k, &ckpt, &found, &err), &err, "last_position after reopen");
        CHECK(found && ckpt.pos.lo == 500, "checkpoint survives a reconnect");
        t1 = txn_at(600, 1700000005000000);
        must(ops->begin(k, &err), &err, "begin 9");
        must(apply(k, &t1, CHANGE_INSERT, newt, NULL, ROW("1", "2.5", "{a,\"b c\"}", "2020-02-29 12:00:00Z"), 0, &err),
             &err, "insert into created table");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 500}, .text = "0/1F4"}, &t1, &err), &err, "commit 9");
        expect_rows("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                    "'fresh.\"Made \"\"by\"\" cdcsync\"'::regclass AND attnum > 0 ORDER BY attnum",
                    "k|bigint\namount|numeric(10,2)\ntags|text[]\nat|timestamp with time zone\n",
                    "created table's columns");
        expect_rows("SELECT k, amount, tags, at FROM fresh.\"Made \"\"by\"\" cdcsync\"",
                    "1|2.50|{a,\"b c\"}|2020-02-29 12:00:00+00\n", "created table's row");
        expect_rows("SELECT count(*) FROM pg_index WHERE indisprimary AND indrelid = "
                    "'fresh.\"Made \"\"by\"\" cdcsync\"'::regclass",
                    "1\n", "created table's primary key");

        /* The server drops the connection mid-batch: a retriable connection error, and the next
         * begin() reconnects (the old backend may still hold the origin for a moment). */
        admin_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                   "'cdcsync' AND pid <> pg_backend_pid()");
        t1 = txn_at(700, 1700000006000000);
        r = ops->begin(k, &err);
        if (r == 0)
                r = apply(k, &t1, CHANGE_INSERT, newt, NULL, ROW("2", "1", NULL, NULL), 0, &err);
        if (r == 0)
                r = ops->commit(k, &(Checkpoint){.pos = {0, 700}, .text = "0/2BC"}, &t1, &err);
        CHECK(r < 0 && strcmp(err.kind, "connection") == 0 && err.retriable, "connection loss: r=%d kind=%s msg=%s", r,
              err.kind, err.message);
        ops->rollback(k);
        for (int i = 0; i < 50 && (r = ops->begin(k, &err)) < 0 && err.retriable; i++)
                nanosleep(&(struct timespec){0, 100000000}, NULL);
        CHECK(r == 0, "begin after connection loss: %s", err.message);
        if (r == 0) {
                must(apply(k, &t1, CHANGE_INSERT, newt, NULL, ROW("2", "1", NULL, NULL), 0, &err), &err,
                     "insert after reconnect");
                must(ops->commit(k, &(Checkpoint){.pos = {0, 700}, .text = "0/2BC"}, &t1, &err), &err,
                     "commit after reconnect");
        }
        expect_rows("SELECT k FROM fresh.\"Made \"\"by\"\" cdcsync\" ORDER BY k", "1\n2\n", "rows after reconnect");
        expect_rows("SELECT pos_lo FROM cdcsync.checkpoints WHERE pipeline = 't1'", "700\n", "checkpoint 700");
        k = ops->free(k);

        /* The origin held by another session: a backend releases it as it exits, after its client
         * has gone, so a sink reopened right after free (a pipeline restarting) can find it still
         * held by its own old session. Open waits for it, bounded; held for good (a second cdcsync
         * on the same pipeline), a retriable error. Pipeline "held": no sink session of ours ever
         * held its origin. */
        {
                PipelineConf hpipe = pipe;
                hpipe.name = "held";
                admin_exec("SELECT pg_replication_origin_create('cdcsync_held'); "
                           "SELECT pg_replication_origin_session_setup('cdcsync_held')");
                CHECK(PQsendQuery(admin, "SELECT pg_sleep(0.3); SELECT pg_replication_origin_session_reset()"),
                      "send: %s", PQerrorMessage(admin));
                r = ops->open(&conn, &hpipe, &k, &err);
                CHECK(r == 0, "open while a closing session still holds the origin: %s", err.message);
                k = ops->free(k);
                for (PGresult *res; (res = PQgetResult(admin));) {
                        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "release: %s", PQresultErrorMessage(res));
                        PQclear(res);
                }
                /* The sink's own session may still hold it for a moment: wait until it is free. */
                for (int i = 0; i < 100; i++) {
                        PGresult *res = PQexec(admin, "SELECT pg_replication_origin_session_setup('cdcsync_held')");
                        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
                        PQclear(res);
                        if (ok)
                                break;
                        nanosleep(&(struct timespec){0, 50000000}, NULL);
                }
                r = ops->open(&conn, &hpipe, &k, &err);
                CHECK(r < 0 && err.retriable && strcmp(err.kind, "connection") == 0 &&
                              strstr(err.message, "already active") && strstr(err.message, "another cdcsync"),
                      "open while another session holds the origin: r=%d %s", r, err.message);
                k = ops->free(k);
                admin_exec("SELECT pg_replication_origin_session_reset()");
        }

        /* A user without the origin functions: an error saying what to grant; with
         * conflict = none (one-way) only a warning. */
        admin_exec("DROP ROLE IF EXISTS cdc_plain; CREATE ROLE cdc_plain LOGIN; "
                   "GRANT USAGE ON SCHEMA cdcsync TO cdc_plain; "
                   "GRANT ALL ON cdcsync.checkpoints TO cdc_plain");
        {
                char pdsn[512];
                ConnectorConf plain = conn;
                PipelineConf ppipe = pipe;
                snprintf(pdsn, sizeof(pdsn), "%s user=cdc_plain", dsn);
                plain.dsn = pdsn;
                ppipe.name = "plain";
                r = ops->open(&plain, &ppipe, &k, &err);
                CHECK(r < 0 && strcmp(err.kind, "privilege") == 0 && strstr(err.message, "GRANT EXECUTE ON FUNCTION") &&
                              strstr(err.message, "conflict = none"),
                      "no origin privilege: r=%d kind=%s msg=%s", r, err.kind, err.message);
                r = ops->check(&plain, &ppipe, &err);
                CHECK(r < 0 && strcmp(err.kind, "privilege") == 0, "check without origin privilege: %s", err.message);
                ppipe.conflict = CONFLICT_NONE;
                r = ops->open(&plain, &ppipe, &k, &err);
                CHECK(r == 0, "one-way without origin privilege: %s", err.message);
                k = ops->free(k);
        }

        table_unref(items);
        table_unref(nokey);
        table_unref(seqt);
        table_unref(newt);
        free(big);
        return failures;
}

/* ---- a snapshot's inserts by COPY (pg_sink_copy.c) ---- */

#define AWK_ROWS 1500
#define COPY_FREEZE_AFTER 300 /* rows: past COPY_MIN_ROWS, a COPY is in progress */

/* Row i of copyt.awk, with the awkward values a COPY text must carry: tabs, newlines, CRs,
 * backslashes, the NULL marker and the end-of-data line as text, NULL next to '', unicode, bytea
 * with every special byte, arrays with quotes and backslashes, JSON escapes, and now and then a
 * value far longer than COPY's buffer pieces. v[] points into buf. */
static void awk_row(int i, char bufs[7][160], char *big, const char *v[7]) {
        static const char *texts[] = {"tab\there",
                                      "new\nline",
                                      "cr\rlf\r\n",
                                      "back\\slash\\",
                                      "\\N",
                                      "\\.",
                                      "",
                                      "ünïcødé 日本語 ✓ 🎉",
                                      "quote\"s 'x'",
                                      "mix\t\\n\n\\",
                                      "trailing space ",
                                      "\\x41 not bytea"};
        snprintf(bufs[0], 160, "%d", i);
        snprintf(bufs[1], 160, "%s#%d", texts[i % 12], i);
        snprintf(bufs[2], 160, "\\x5c090a0d00ff%04x", i & 0xffff);
        snprintf(bufs[3], 160, "{\"a\\\\b%d\",\"t\tx\",NULL,\"\",\"q\\\"x\",\"{}\"}", i);
        snprintf(bufs[4], 160, "{\"k\": \"v\\\\t\\n%d\", \"u\": \"\\u00e9\", \"n\": null}", i);
        snprintf(bufs[5], 160, "%d.%03d", i * 7, i % 1000);
        v[0] = bufs[0];
        v[1] = i % 11 == 0 ? NULL : i % 11 == 1 ? "" : bufs[1];
        v[2] = i % 13 == 0 ? NULL : i % 13 == 1 ? "\\x" : bufs[2];
        v[3] = i % 17 == 0 ? NULL : i % 17 == 1 ? "{}" : bufs[3];
        v[4] = i % 19 == 0 ? NULL : bufs[4];
        v[5] = i % 23 == 0 ? NULL : bufs[5];
        v[6] = i % 100 == 7 ? big : i % 5 == 0 ? "" : NULL;
}

/* What the sink's session is running now, as the server says ("" when idle). */
static char *sink_query(void) {
        return admin_rows("SELECT left(query, 40) FROM pg_stat_activity WHERE application_name = 'cdcsync' "
                          "AND state = 'active'");
}

static int run_copy_test(const char *dsn) {
        ConnectorConf src = {.name = "pg_src", .type = "postgres"};
        ConnectorConf conn = {.name = "pg_target", .type = "postgres", .dsn = (char *)dsn, .timeout_s = 3};
        PipelineConf pipe = {
                .name = "copy", .source = &src, .sink = &conn, .batch_max_rows = 5000, .conflict = CONFLICT_NONE};
        static const ColDef awk_cols[] = {
                {"id", "integer", TYPE_INTEGER, true}, {"t", "text", TYPE_TEXT, false},
                {"b", "bytea", TYPE_BYTES, false},     {"a", "text[]", TYPE_ARRAY, false},
                {"j", "jsonb", TYPE_JSON, false},      {"n", "numeric", TYPE_NUMERIC, false},
                {"e", "text", TYPE_TEXT, false},
        };
        static const ColDef log_cols[] = {{"a", "integer", TYPE_INTEGER, false}, {"t", "text", TYPE_TEXT, false}};
        Table *awk = mk_table("copyt", "awk", awk_cols, 7, 'd');
        Table *logt = mk_table("copyt", "log", log_cols, 2, 'd');
        TxnInfo snap = {.xid = 1, .commit_pos = {0, 1000}, .commit_ts = 1700000000000000, .snapshot = true};
        TxnInfo stream = txn_at(2000, 1700000001000000);
        size_t biglen = 300000; /* more than COPY's pieces (64 kB) and buffer (256 kB), escaped */
        char *big = malloc(biglen + 1), bufs[7][160], *got;
        const char *v[7];
        CdcError err = {0};
        Sink *k = NULL;
        int r;

        for (size_t i = 0; i < biglen; i++)
                big[i] = "a\\\t\nb\r"[i % 6];
        big[biglen] = '\0';
        admin_exec("DROP SCHEMA IF EXISTS copyt CASCADE; CREATE SCHEMA copyt;"
                   "CREATE TABLE copyt.awk (id int PRIMARY KEY, t text, b bytea, a text[], j jsonb, n numeric, e text);"
                   "CREATE TABLE copyt.ref (LIKE copyt.awk); CREATE TABLE copyt.log (a int, t text);"
                   "CREATE TABLE copyt.logref (LIKE copyt.log)");
        /* The reference: the same texts through INSERT parameters, as the INSERT path sends them. */
        for (int i = 1; i <= AWK_ROWS; i++) {
                awk_row(i, bufs, big, v);
                PGresult *res = PQexecParams(admin, "INSERT INTO copyt.ref VALUES ($1, $2, $3, $4, $5, $6, $7)", 7,
                                             NULL, v, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        die("reference row", PQerrorMessage(admin));
                PQclear(res);
        }
        admin_exec("INSERT INTO copyt.logref SELECT g % 7, E'l\\t' || g FROM generate_series(1, 400) g");
        admin_exec("INSERT INTO copyt.ref VALUES (100000, E'streamed\\n', NULL, NULL, NULL, NULL, NULL)");

        must(ops->open(&conn, &pipe, &k, &err), &err, "open (copy)");
        /* One batch: a snapshot chunk of awk (COPY once COPY_MIN_ROWS are held), one of a table
         * without key (COPY too), then a streamed insert (INSERT path) into awk. */
        must(ops->begin(k, &err), &err, "begin copy");
        for (int i = 1; i <= AWK_ROWS; i++) {
                awk_row(i, bufs, big, v);
                must(apply(k, &snap, CHANGE_INSERT, awk, NULL, v, 0, &err), &err, "snapshot insert");
                if (i == 1000) {
                        got = sink_query();
                        CHECK(strncmp(got, "COPY \"copyt\".\"awk\"", 18) == 0,
                              "a snapshot run of %d rows goes by COPY; the sink runs: %s", i, got);
                        free(got);
                }
        }
        for (int g = 1; g <= 400; g++) {
                char a[16], t[32];
                snprintf(a, sizeof(a), "%d", g % 7);
                snprintf(t, sizeof(t), "l\t%d", g);
                must(apply(k, &snap, CHANGE_INSERT, logt, NULL, ROW(a, t), 0, &err), &err, "snapshot insert (no key)");
        }
        got = sink_query();
        CHECK(strncmp(got, "COPY \"copyt\".\"log\"", 18) == 0, "keyless snapshot run by COPY; the sink runs: %s", got);
        free(got);
        must(apply(k, &stream, CHANGE_INSERT, awk, NULL, ROW("100000", "streamed\n", NULL, NULL, NULL, NULL, NULL), 0,
                   &err),
             &err, "streamed insert");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 2000}, .text = "0/7D0"}, &stream, &err), &err, "commit copy");
        expect_rows("SELECT count(*) FROM copyt.awk", "1501\n", "rows copied");
        expect_rows("SELECT count(*) FROM ((TABLE copyt.awk EXCEPT ALL TABLE copyt.ref) UNION ALL "
                    "(TABLE copyt.ref EXCEPT ALL TABLE copyt.awk)) d",
                    "0\n", "COPY stored exactly what INSERT stores");
        expect_rows("SELECT count(*) FILTER (WHERE t IS NULL), count(*) FILTER (WHERE t = ''), "
                    "count(*) FILTER (WHERE e IS NULL), count(*) FILTER (WHERE length(e) = 300000) FROM copyt.awk",
                    "136|137|1186|15\n", "NULL and '' kept apart, long values whole");
        expect_rows("SELECT count(*) FROM ((TABLE copyt.log EXCEPT ALL TABLE copyt.logref) UNION ALL "
                    "(TABLE copyt.logref EXCEPT ALL TABLE copyt.log)) d",
                    "0\n", "keyless table copied exactly");
        expect_rows("SELECT pos_text FROM cdcsync.checkpoints WHERE pipeline = 'copy'", "0/7D0\n",
                    "checkpoint written with the copy");

        /* A row the COPY cannot store (its key is there already): the batch fails naming the COPY
         * and the server's reason, rolls back whole, and the session goes on. */
        must(ops->begin(k, &err), &err, "begin dup");
        r = 0;
        for (int i = AWK_ROWS + 1; i <= AWK_ROWS + 400 && r == 0; i++) {
                awk_row(i == AWK_ROWS + 300 ? 5 : i, bufs, big, v);
                r = apply(k, &snap, CHANGE_INSERT, awk, NULL, v, 0, &err);
        }
        if (r == 0)
                r = ops->commit(k, &(Checkpoint){.pos = {0, 3000}, .text = "0/BB8"}, &snap, &err);
        CHECK(r < 0 && strcmp(err.kind, "data") == 0 && strstr(err.message, "copy of") &&
                      strstr(err.message, "into copyt.awk") && strstr(err.message, "23505"),
              "duplicate key in a COPY: r=%d kind=%s %s", r, err.kind, err.message);
        ops->rollback(k);
        expect_rows("SELECT count(*) FROM copyt.awk", "1501\n", "the failed COPY left nothing");
        must(ops->begin(k, &err), &err, "begin after dup");
        must(apply(k, &stream, CHANGE_INSERT, awk, NULL, ROW("100001", "after", NULL, NULL, NULL, NULL, NULL), 0, &err),
             &err, "insert after dup");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 3001}, .text = "0/BB9"}, &stream, &err), &err, "commit after dup");
        expect_rows("SELECT count(*) FROM copyt.awk", "1502\n", "the session works after a failed COPY");

        /* A server that stops answering in the middle of a COPY (its backend stopped): the
         * sink's guard ends the wait after timeout_s without progress, as a timeout. */
        must(ops->begin(k, &err), &err, "begin frozen");
        r = 0;
        int i = 200000;
        for (; i < 200000 + COPY_FREEZE_AFTER && r == 0; i++) {
                awk_row(i, bufs, big, v);
                r = apply(k, &snap, CHANGE_INSERT, awk, NULL, v, 0, &err);
        }
        char *pid = admin_rows("SELECT pid FROM pg_stat_activity WHERE application_name = 'cdcsync' AND "
                               "query LIKE 'COPY %'");
        long bpid = strtol(pid, NULL, 10);
        free(pid);
        CHECK(r == 0 && bpid > 0, "a COPY in progress before the freeze: r=%d %s", r, err.message);
        if (bpid > 0 && kill((pid_t)bpid, SIGSTOP) == 0) {
                /* ~1 GB at most: far more than socket buffers hold, so a send must block. */
                for (int n = 0; n < 4000 && r == 0; n++, i++) {
                        awk_row(i, bufs, big, v);
                        v[6] = big;
                        r = apply(k, &snap, CHANGE_INSERT, awk, NULL, v, 0, &err);
                }
                if (r == 0)
                        r = ops->commit(k, &(Checkpoint){.pos = {0, 4000}, .text = "0/FA0"}, &snap, &err);
                kill((pid_t)bpid, SIGCONT);
                CHECK(r < 0 && err.retriable && strcmp(err.kind, "connection") == 0 &&
                              strstr(err.message, "did not answer within 3 s"),
                      "frozen server during COPY: r=%d kind=%s %s", r, err.kind, err.message);
        } else {
                CHECK(false, "cannot stop the sink's backend %ld", bpid);
        }
        ops->rollback(k);
        k = ops->free(k);
        /* A new session finds the table as it was: the frozen batch never committed. */
        must(ops->open(&conn, &pipe, &k, &err), &err, "open after freeze");
        must(ops->begin(k, &err), &err, "begin after freeze");
        must(apply(k, &stream, CHANGE_INSERT, awk, NULL, ROW("100002", "again", NULL, NULL, NULL, NULL, NULL), 0, &err),
             &err, "insert after freeze");
        must(ops->commit(k, &(Checkpoint){.pos = {0, 4001}, .text = "0/FA1"}, &stream, &err), &err,
             "commit after freeze");
        k = ops->free(k);
        expect_rows("SELECT count(*) FROM copyt.awk", "1503\n", "nothing of the frozen COPY stayed");

        table_unref(awk);
        table_unref(logt);
        free(big);
        return failures;
}

/* A password travels in ConnectorConf.password and never appears in an error message. */
static int run_password_test(const char *host, const char *port) {
        char dsn[256];
        ConnectorConf conn = {.name = "pw", .type = "postgres", .dsn = dsn, .password = "s3cret-pw"};
        PipelineConf pipe = {.name = "pw_test", .conflict = CONFLICT_NONE};
        CdcError err = {0};
        Sink *k = NULL;
        int r;

        snprintf(dsn, sizeof(dsn), "host=%s port=%s user=cdc_pw dbname=postgres", host, port);
        r = ops->open(&conn, &pipe, &k, &err);
        CHECK(r == 0, "open with password: %s", err.message);
        k = ops->free(k);
        conn.password = "wrong-pw-s3cret";
        r = ops->open(&conn, &pipe, &k, &err);
        CHECK(r < 0 && strcmp(err.kind, "connection") == 0 && err.retriable && !strstr(err.message, "wrong-pw-s3cret"),
              "wrong password: r=%d %s", r, err.message);
        CHECK(ops->check(&(ConnectorConf){.name = "pw", .dsn = dsn, .password = "s3cret-pw"}, &pipe, &err) == 0,
              "check: %s", err.message);
        return failures;
}

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_bench(const char *dsn, long n) {
        ConnectorConf src = {.name = "pg_src", .type = "postgres"};
        ConnectorConf conn = {.name = "pg_target", .type = "postgres", .dsn = (char *)dsn};
        PipelineConf pipe = {.name = "bench", .source = &src, .sink = &conn, .batch_max_rows = 5000};
        static const ColDef cols[] = {{"id", "integer", TYPE_INTEGER, true},
                                      {"v", "text", TYPE_TEXT, false},
                                      {"n", "integer", TYPE_INTEGER, false}};
        Table *t = mk_table("bench", "t", cols, 3, 'd');
        CdcError err = {0};
        Sink *k = NULL;
        double t0, dt;
        char id[24], v[64], num[24];

        admin_exec("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;"
                   "CREATE TABLE bench.t (id int PRIMARY KEY, v text, n int)");
        must(ops->open(&conn, &pipe, &k, &err), &err, "open");
        t0 = now_sec();
        for (long i = 0; i < n; i += 5000) {
                TxnInfo txn = txn_at((uint64_t)i + 1, 1700000000000000 + i);
                must(ops->begin(k, &err), &err, "begin");
                for (long j = i; j < i + 5000 && j < n; j++) {
                        /* One source transaction per row: the batch groups 5000 of them. */
                        txn = txn_at((uint64_t)j + 1, 1700000000000000 + j);
                        snprintf(id, sizeof(id), "%ld", j);
                        snprintf(v, sizeof(v), "row number %ld with some text", j);
                        snprintf(num, sizeof(num), "%ld", j * 7);
                        must(apply(k, &txn, CHANGE_INSERT, t, NULL, ROW(id, v, num), 0, &err), &err, "insert");
                }
                must(ops->commit(k, &(Checkpoint){.pos = txn.commit_pos, .text = "bench"}, &txn, &err), &err, "commit");
        }
        dt = now_sec() - t0;
        printf("pg_sink bench: %ld single-row inserts in batches of 5000: %.2f s, %.0f rows/s\n", n, dt,
               (double)n / dt);
        k = ops->free(k);
        snprintf(v, sizeof(v), "%ld|%ld\n", n, 7 * n * (n - 1) / 2);
        expect_rows("SELECT count(*), sum(n) FROM bench.t", v, "bench rows");
        table_unref(t);
        return 0;
}

int main(int argc, char **argv) {
        const char *mode = argc > 1 ? argv[1] : "", *dsn = argc > 2 ? argv[2] : "";
        int r;

        if (argc < 3 || (strcmp(mode, "test") && strcmp(mode, "bench"))) {
                fprintf(stderr, "usage: pg_sink_driver test|bench DSN [ROWS]\n");
                return 2;
        }
        admin = PQconnectdb(dsn);
        if (PQstatus(admin) != CONNECTION_OK)
                die("admin connection", PQerrorMessage(admin));
        admin_exec("SET TimeZone = 'UTC'; SET client_min_messages = warning");
        if (strcmp(mode, "bench") == 0) {
                char *end;
                long n = argc > 3 ? strtol(argv[3], &end, 10) : 100000;
                if (argc > 3 && (*end || n <= 0))
                        die("rows", "not a positive number");
                r = run_bench(dsn, n);
        } else {
                r = run_test(dsn);
                r += run_copy_test(dsn);
                r += run_password_test(PQhost(admin), PQport(admin));
        }
        PQfinish(admin);
        if (failures)
                fprintf(stderr, "%d check(s) failed\n", failures);
        else if (strcmp(mode, "test") == 0)
                printf("pg_sink_driver: all checks passed\n");
        return r || failures ? 1 : 0;
}
