/* Tests of the Kafka message builder: every type class, every op, keys, topics, against the
 * exact expected JSON text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kafka/envelope.h"

/* One column's JSON for text (NULL: SQL NULL). */
static void expect_json(TypeClass cls, const char *type_name, const char *text, const char *want) {
        Column col = {.name = "c", .type_name = (char *)type_name, .cls = cls};
        Value v = {0};
        if (text)
                assert_int_equal(value_set(&v, text, strlen(text)), 0);
        char *got = NULL;
        assert_int_equal(envelope_value_json(&col, &v, &got), 0);
        if (strcmp(got, want) != 0)
                fail_msg("%s '%s': got %s, want %s", type_class_name(cls), text ? text : "NULL", got, want);
        /* Whatever comes out must be valid JSON on its own. */
        json_error_t jerr;
        json_t *j = json_loads(got, JSON_DECODE_ANY, &jerr);
        if (!j)
                fail_msg("not JSON: %s (%s)", got, jerr.text);
        json_decref(j);
        free(got);
        free(v.data);
}

static void test_scalars(void **state) {
        (void)state;
        expect_json(TYPE_INTEGER, "bigint", "42", "42");
        expect_json(TYPE_INTEGER, "bigint", "-9223372036854775808", "-9223372036854775808");
        /* MySQL bigint unsigned past int64: a string, so no consumer silently rounds it */
        expect_json(TYPE_INTEGER, "bigint unsigned", "18446744073709551615", "\"18446744073709551615\"");
        expect_json(TYPE_INTEGER, "integer", NULL, "null");
        expect_json(TYPE_NUMERIC, "numeric(12,2)", "12.50", "12.50");
        expect_json(TYPE_NUMERIC, "numeric(12,2)", "12345678.91", "12345678.91");
        expect_json(TYPE_NUMERIC, "numeric(12,2)", "-0.01", "-0.01");
        expect_json(TYPE_NUMERIC, "numeric", "0.1", "0.1");
        /* 20 significant digits do not survive a double: kept as a string */
        expect_json(TYPE_NUMERIC, "numeric", "12345678901234567.891", "\"12345678901234567.891\"");
        expect_json(TYPE_NUMERIC, "numeric", "NaN", "\"NaN\"");
        expect_json(TYPE_FLOAT, "double precision", "0.3333333333333333", "0.3333333333333333");
        expect_json(TYPE_FLOAT, "double precision", "1e+300", "1e+300");
        expect_json(TYPE_FLOAT, "double precision", "-Infinity", "\"-Infinity\"");
        expect_json(TYPE_BOOLEAN, "boolean", "t", "true");
        expect_json(TYPE_BOOLEAN, "boolean", "f", "false");
        expect_json(TYPE_TEXT, "text", "tab\there \"q\" \\ ünï ✓\n", "\"tab\\there \\\"q\\\" \\\\ ünï ✓\\n\"");
        expect_json(TYPE_TEXT, "text", "bad \xff utf8", "\"bad \\ufffd utf8\"");
        expect_json(TYPE_TEXT, "text", "ctl \x01", "\"ctl \\u0001\"");
        expect_json(TYPE_BYTES, "bytea", "\\x00ff10", "\"AP8Q\"");
        expect_json(TYPE_BYTES, "bytea", "\\x", "\"\"");
        expect_json(TYPE_BYTES, "bytea", "\\x4869", "\"SGk=\"");
        expect_json(TYPE_DATE, "date", "2024-02-29", "\"2024-02-29\"");
        expect_json(TYPE_TIME, "time", "12:34:56.5", "\"12:34:56.5\"");
        expect_json(TYPE_TIMESTAMP, "timestamp", "2024-01-01 00:00:00", "\"2024-01-01T00:00:00\"");
        expect_json(TYPE_TIMESTAMPTZ, "timestamptz", "2024-01-01 00:00:00+00", "\"2024-01-01T00:00:00Z\"");
        expect_json(TYPE_TIMESTAMPTZ, "timestamptz", "1999-12-31 23:59:59.999999+05",
                    "\"1999-12-31T23:59:59.999999+05:00\"");
        expect_json(TYPE_TIMESTAMPTZ, "timestamptz", "2000-01-01 00:00:00+05:30", "\"2000-01-01T00:00:00+05:30\"");
        expect_json(TYPE_TIMESTAMPTZ, "timestamptz", "infinity", "\"infinity\"");
        expect_json(TYPE_TIMESTAMP, "timestamp", "0044-03-15 00:00:00 BC", "\"0044-03-15 00:00:00 BC\"");
        expect_json(TYPE_JSON, "jsonb", "{\"deep\": {\"a\": [1, 2.10, null]}}", "{\"deep\": {\"a\": [1, 2.10, null]}}");
        expect_json(TYPE_JSON, "json", "not json", "\"not json\"");
        expect_json(TYPE_UUID, "uuid", "c4ca4238-a0b9-3382-8dcc-509a6f75849b",
                    "\"c4ca4238-a0b9-3382-8dcc-509a6f75849b\"");
        expect_json(TYPE_OTHER, "mood", "happy", "\"happy\"");
}

static void test_arrays(void **state) {
        (void)state;
        expect_json(TYPE_ARRAY, "text[]", "{a1,b,\"c d\",\"q\\\"x\",NULL}", "[\"a1\",\"b\",\"c d\",\"q\\\"x\",null]");
        expect_json(TYPE_ARRAY, "integer[]", "{{1,2},{3,NULL}}", "[[1,2],[3,null]]");
        expect_json(TYPE_ARRAY, "_int4", "{}", "[]");
        expect_json(TYPE_ARRAY, "numeric(5,2)[]", "{1.50,NaN}", "[1.50,\"NaN\"]");
        expect_json(TYPE_ARRAY, "boolean[]", "{t,f}", "[true,false]");
        expect_json(TYPE_ARRAY, "text[]", "{\"NULL\"}", "[\"NULL\"]"); /* quoted: the text NULL */
        /* explicit bounds and broken text: the text as a string */
        expect_json(TYPE_ARRAY, "integer[]", "[0:1]={1,2}", "\"[0:1]={1,2}\"");
        expect_json(TYPE_ARRAY, "integer[]", "{1,2", "\"{1,2\"");
}

static void test_unchanged_toast(void **state) {
        (void)state;
        Column col = {.name = "big", .type_name = "text", .cls = TYPE_TEXT};
        Value v = {.kind = VALUE_UNCHANGED};
        char *got = NULL;
        assert_int_equal(envelope_value_json(&col, &v, &got), 0);
        assert_string_equal(got, "\"__debezium_unavailable_value\"");
        free(got);
}

/* public.t (id bigint key, name text, amount numeric) */
static Table *make_table(void) {
        Table *t = table_new("public", "t", 3);
        assert_non_null(t);
        const char *names[] = {"id", "name", "amount"}, *types[] = {"bigint", "text", "numeric"};
        TypeClass cls[] = {TYPE_INTEGER, TYPE_TEXT, TYPE_NUMERIC};
        for (int i = 0; i < 3; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(types[i]);
                t->cols[i].cls = cls[i];
                t->cols[i].key = i == 0;
        }
        return t;
}

static Value *row(const char *id, const char *name, const char *amount) {
        Value *v = values_new(3);
        const char *in[] = {id, name, amount};
        for (int i = 0; i < 3; i++)
                if (in[i])
                        assert_int_equal(value_set(&v[i], in[i], strlen(in[i])), 0);
        return v;
}

static const EnvelopeSource pg_src = {
        .connector = "postgresql",
        .name = "pg_main",
        .db = "shop",
        .pos_text = "0/16B3748",
        .sequence = "[\"0/16B3800\",\"2\"]",
};
static const TxnInfo txn = {.xid = 771, .commit_pos = {0, 0x16B3800}, .commit_ts = 1700000000123456};

#define SOURCE_PG                                                                                                      \
        "\"source\":{\"version\":\"cdcsync-" CDCSYNC_VERSION "\",\"connector\":\"postgresql\",\"name\":\"pg_main\","   \
        "\"ts_ms\":1700000000123,\"snapshot\":\"false\",\"db\":\"shop\",\"sequence\":\"[\\\"0/"                        \
        "16B3800\\\",\\\"2\\\"]\","                                                                                    \
        "\"schema\":\"public\",\"table\":\"t\",\"txId\":771,\"lsn\":\"0/16B3748\"}"

/* The Kafka sink's way: one buffer for every message, emptied but not freed between them, so a
 * short message after a long one must not keep any of the long one's text. */
static StrBuf reused;

static void expect_change(const Change *c, const TxnInfo *tx, const EnvelopeSource *src, const char *want_key,
                          const char *want_value) {
        char *key = NULL, *value = NULL;
        assert_int_equal(envelope_key(c, &key), 0);
        if (want_key)
                assert_string_equal(key, want_key);
        else
                assert_null(key);
        assert_int_equal(envelope_value(c, tx, src, 1700000001000, &value), 0);
        if (strcmp(value, want_value) != 0)
                fail_msg("got  %s\nwant %s", value, want_value);
        json_error_t jerr;
        json_t *j = json_loads(value, 0, &jerr);
        if (!j)
                fail_msg("not JSON: %s", jerr.text);
        json_decref(j);
        reused = (StrBuf){.data = reused.data, .cap = reused.cap};
        assert_int_equal(envelope_value_buf(&reused, c, tx, src, 1700000001000), 0);
        assert_int_equal(reused.len, strlen(want_value));
        assert_string_equal(reused.data, want_value);
        free(key);
        free(value);
}

static void test_ops(void **state) {
        (void)state;
        Table *t = make_table();
        Change c = {.op = CHANGE_INSERT, .table = t, .after = row("42", "ann", "12.50")};
        expect_change(&c, &txn, &pg_src, "{\"id\":42}",
                      "{\"before\":null,\"after\":{\"id\":42,\"name\":\"ann\",\"amount\":12.50}," SOURCE_PG
                      ",\"op\":\"c\",\"ts_ms\":1700000001000}");
        assert_false(envelope_key_changed(&c));

        /* snapshot rows are reads */
        TxnInfo snap = txn;
        snap.snapshot = true;
        char *value = NULL;
        assert_int_equal(envelope_value(&c, &snap, &pg_src, 1, &value), 0);
        assert_non_null(strstr(value, "\"snapshot\":\"true\""));
        assert_non_null(strstr(value, "\"op\":\"r\""));
        free(value);

        /* update without key change (before not sent), NULL column */
        values_free(c.after, 3);
        c.op = CHANGE_UPDATE;
        c.after = row("42", NULL, "-0.01");
        expect_change(&c, &txn, &pg_src, "{\"id\":42}",
                      "{\"before\":null,\"after\":{\"id\":42,\"name\":null,\"amount\":-0.01}," SOURCE_PG
                      ",\"op\":\"u\",\"ts_ms\":1700000001000}");
        assert_false(envelope_key_changed(&c));

        /* update with key change: before holds the old key only */
        c.before = row("41", NULL, NULL);
        assert_true(envelope_key_changed(&c));
        expect_change(&c, &txn, &pg_src, "{\"id\":42}",
                      "{\"before\":{\"id\":41,\"name\":null,\"amount\":null},\"after\":{\"id\":42,\"name\":null,"
                      "\"amount\":-0.01}," SOURCE_PG ",\"op\":\"u\",\"ts_ms\":1700000001000}");

        /* delete: key from before */
        values_free(c.after, 3);
        c.after = NULL;
        c.op = CHANGE_DELETE;
        expect_change(&c, &txn, &pg_src, "{\"id\":41}",
                      "{\"before\":{\"id\":41,\"name\":null,\"amount\":null},\"after\":null," SOURCE_PG
                      ",\"op\":\"d\",\"ts_ms\":1700000001000}");
        /* a delete without its before image cannot have a key */
        Change bad = {.op = CHANGE_DELETE, .table = t};
        char *key = (char *)"untouched";
        assert_int_equal(envelope_key(&bad, &key), -EINVAL);
        assert_string_equal(key, "untouched");

        /* truncate: no key, no images */
        values_free(c.before, 3);
        c.before = NULL;
        c.op = CHANGE_TRUNCATE;
        expect_change(&c, &txn, &pg_src, NULL,
                      "{\"before\":null,\"after\":null," SOURCE_PG ",\"op\":\"t\",\"ts_ms\":1700000001000}");
        table_unref(t);
}

static void test_mysql_source_and_vclock(void **state) {
        (void)state;
        Table *t = make_table();
        free(t->schema);
        t->schema = strdup("shop");
        VClock vc = {0};
        assert_int_equal(vclock_set(&vc, "pg_main", 7), 0);
        assert_int_equal(vclock_set(&vc, "my_shop", 12), 0);
        EnvelopeSource src = {.connector = "mysql",
                              .name = "my_shop",
                              .db = "conn_default_db",
                              .pos_text = "mariadb-bin.000002:344",
                              .vclock = &vc};
        Change c = {.op = CHANGE_INSERT, .table = t, .after = row("1", "x", "1")};
        char *value = NULL;
        assert_int_equal(envelope_value(&c, &txn, &src, 5, &value), 0);
        assert_string_equal(
                value, "{\"before\":null,\"after\":{\"id\":1,\"name\":\"x\",\"amount\":1},\"source\":{"
                       "\"version\":\"cdcsync-" CDCSYNC_VERSION "\",\"connector\":\"mysql\",\"name\":"
                       "\"my_shop\",\"ts_ms\":1700000000123,\"snapshot\":\"false\",\"db\":\"shop\","
                       "\"table\":\"t\",\"file\":\"mariadb-bin.000002\",\"pos\":344,\"txId\":771,\"cdcsync_vclock\":{"
                       "\"my_shop\":12,\"pg_main\":7}},\"op\":\"c\",\"ts_ms\":5}");
        free(value);
        values_free(c.after, 3);
        table_unref(t);
}

/* The version the engine hands on with a change (change_set_version) is what the envelope
 * publishes under source.cdcsync_vclock; a change without one has no such field. */
static void test_change_version(void **state) {
        (void)state;
        Table *t = make_table();
        Change c = {.op = CHANGE_UPDATE, .table = t, .after = row("1", "x", "2")};
        EnvelopeSource src = pg_src;
        char *value = NULL;
        assert_int_equal(envelope_value(&c, &txn, &src, 5, &value), 0);
        assert_null(strstr(value, "cdcsync_vclock"));
        free(value);

        VClock vc = {0};
        assert_int_equal(vclock_set(&vc, "pg_main", 0x16B3800), 0);
        assert_int_equal(change_set_version(&c, &vc, 1700000000123456, "pg_main"), 0);
        assert_int_equal(vclock_set(&vc, "pg_other", 3), 0);
        /* Set again (a later decision of the same change): replaced, not leaked (ASan). */
        assert_int_equal(change_set_version(&c, &vc, 1700000000123457, "pg_other"), 0);
        assert_non_null(c.version);
        assert_string_equal(c.version->origin, "pg_other");
        assert_int_equal(c.version->ts, 1700000000123457);
        src.vclock = &c.version->vv;
        assert_int_equal(envelope_value(&c, &txn, &src, 5, &value), 0);
        json_error_t jerr;
        json_t *j = json_loads(value, 0, &jerr);
        if (!j)
                fail_msg("not JSON: %s (%s)", value, jerr.text);
        json_t *v = json_object_get(json_object_get(j, "source"), "cdcsync_vclock");
        assert_true(json_is_object(v));
        assert_int_equal(json_object_size(v), 2);
        assert_int_equal(json_integer_value(json_object_get(v, "pg_main")), 0x16B3800);
        assert_int_equal(json_integer_value(json_object_get(v, "pg_other")), 3);
        /* The rest of the source block is unchanged by it. */
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "source"), "lsn")), "0/16B3748");
        json_decref(j);
        free(value);

        /* An empty vector is published as an empty object. */
        VClock empty = {0};
        src.vclock = &empty;
        assert_int_equal(envelope_value(&c, &txn, &src, 5, &value), 0);
        assert_non_null(strstr(value, "\"cdcsync_vclock\":{}}"));
        free(value);

        change_clear(&c); /* frees the version with the images and the table reference */
        assert_null(c.version);
        assert_null(c.table);
}

static void test_no_key_table(void **state) {
        (void)state;
        Table *t = make_table();
        t->cols[0].key = false;
        Change c = {.op = CHANGE_INSERT, .table = t, .after = row("1", "x", "1")};
        char *key = (char *)"untouched";
        assert_int_equal(envelope_key(&c, &key), 0);
        assert_null(key);
        values_free(c.after, 3);
        table_unref(t);
}

static void test_topic(void **state) {
        (void)state;
        char buf[ENVELOPE_TOPIC_MAX + 1];
        assert_int_equal(
                envelope_topic("cdc.{connector}.{schema}.{table}", "pg_main", "public", "orders", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "cdc.pg_main.public.orders");
        assert_int_equal(envelope_topic("x-{table}", "c", "s", "Mixed Case/ü", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "x-Mixed_Case___"); /* ü is two bytes */
        assert_int_equal(envelope_topic("cdc.{nope}", "c", "s", "t", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(envelope_topic("cdc.{table", "c", "s", "t", buf, sizeof(buf)), -EINVAL);
        char longname[300];
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(envelope_topic("{table}", "c", "s", longname, buf, sizeof(buf)), -ENAMETOOLONG);
        char small[8];
        assert_int_equal(envelope_topic("{table}", "c", "s", "orders_long", small, sizeof(small)), -ENAMETOOLONG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scalars),
                cmocka_unit_test(test_arrays),
                cmocka_unit_test(test_unchanged_toast),
                cmocka_unit_test(test_ops),
                cmocka_unit_test(test_mysql_source_and_vclock),
                cmocka_unit_test(test_change_version),
                cmocka_unit_test(test_no_key_table),
                cmocka_unit_test(test_topic),
        };
        int failed = cmocka_run_group_tests(tests, NULL, NULL);
        strbuf_free(&reused);
        return failed;
}
