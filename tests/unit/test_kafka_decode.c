/* Tests of the Kafka change decoder: messages built by our own sink's envelope code, and Debezium's
 * (schemas disabled, and schema+payload), decoded back into changes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kafka/envelope.h"
#include "kafka/kafka_decode.h"

static int decode(const char *topic, const char *key, const char *value, KafkaDecoded *d) {
        char why[256] = "";
        int r = kafka_decode_message(topic, key, key ? strlen(key) : 0, value, value ? strlen(value) : 0, d, why,
                                     sizeof(why));
        if (r < 0)
                print_message("decode: %s\n", why);
        return r;
}

static const Value *col(const KafkaDecoded *d, const Value *img, const char *name) {
        for (int i = 0; i < d->change.table->ncols; i++)
                if (strcmp(d->change.table->cols[i].name, name) == 0)
                        return &img[i];
        fail_msg("no column %s", name);
        return NULL;
}

static void expect_text(const KafkaDecoded *d, const Value *img, const char *name, const char *want) {
        const Value *v = col(d, img, name);
        if (!want) {
                assert_int_equal(v->kind, VALUE_NULL);
                return;
        }
        assert_int_equal(v->kind, VALUE_TEXT);
        assert_string_equal(v->data, want);
}

/* A change → our sink's key and value → decoded back: same op, table, key and text values. */
static void test_own_envelope_roundtrip(void **state) {
        (void)state;
        Table *t = table_new("public", "orders", 6);
        const char *names[] = {"id", "customer", "amount", "meta", "flag", "big"};
        TypeClass cls[] = {TYPE_INTEGER, TYPE_TEXT, TYPE_NUMERIC, TYPE_JSON, TYPE_BOOLEAN, TYPE_TEXT};
        const char *types[] = {"bigint", "text", "numeric(12,2)", "jsonb", "boolean", "text"};
        for (int i = 0; i < 6; i++) {
                t->cols[i].name = strdup(names[i]);
                t->cols[i].type_name = strdup(types[i]);
                t->cols[i].cls = cls[i];
        }
        t->cols[0].key = true;
        Change c = {.op = CHANGE_UPDATE, .table = t, .after = values_new(6)};
        const char *vals[] = {"42", "tab\tq\"uote ✓", "12345678.91", "{\"deep\": {\"a\": [1, 2.10, null]}}", "t", NULL};
        for (int i = 0; i < 5; i++)
                assert_int_equal(value_set(&c.after[i], vals[i], strlen(vals[i])), 0);
        c.after[5].kind = VALUE_UNCHANGED;
        TxnInfo txn = {.xid = 7, .commit_pos = {0, 0x16B3748}, .commit_ts = 1700000000123000};
        EnvelopeSource src = {.connector = "postgresql", .name = "src", .db = "postgres", .pos_text = "0/16B3748"};
        char *key = NULL, *value = NULL;
        assert_int_equal(envelope_key(&c, &key), 0);
        assert_int_equal(envelope_value(&c, &txn, &src, 1700000000999, &value), 0);

        KafkaDecoded d = {0};
        assert_int_equal(decode("cdc.src.public.orders", key, value, &d), 1);
        assert_int_equal(d.change.op, CHANGE_UPDATE);
        assert_string_equal(d.change.table->schema, "public");
        assert_string_equal(d.change.table->name, "orders");
        assert_int_equal(d.change.table->ncols, 6);
        assert_int_equal(table_nkeys(d.change.table), 1);
        assert_true(d.change.table->cols[0].key);
        assert_int_equal(d.change.table->cols[0].cls, TYPE_INTEGER);
        assert_int_equal(d.change.table->cols[2].cls, TYPE_NUMERIC);
        assert_int_equal(d.change.table->cols[3].cls, TYPE_JSON);
        assert_int_equal(d.change.table->cols[4].cls, TYPE_BOOLEAN);
        assert_null(d.change.before);
        for (int i = 0; i < 5; i++)
                expect_text(&d, d.change.after, names[i], vals[i]);
        assert_int_equal(d.change.after[5].kind, VALUE_UNCHANGED);
        assert_int_equal(d.ts_usec, 1700000000123000);
        assert_false(d.snapshot);
        kafka_decoded_clear(&d);

        /* The delete and its tombstone. */
        Change del = {.op = CHANGE_DELETE, .table = t, .before = c.after};
        free(value);
        assert_int_equal(envelope_value(&del, &txn, &src, 1, &value), 0);
        assert_int_equal(decode("cdc.src.public.orders", key, value, &d), 1);
        assert_int_equal(d.change.op, CHANGE_DELETE);
        assert_null(d.change.after);
        expect_text(&d, d.change.before, "id", "42");
        kafka_decoded_clear(&d);
        assert_int_equal(decode("cdc.src.public.orders", key, NULL, &d), 0);

        /* A snapshot row is op "r". */
        Change ins = {.op = CHANGE_INSERT, .table = t, .after = c.after};
        txn.snapshot = true;
        free(value);
        assert_int_equal(envelope_value(&ins, &txn, &src, 1, &value), 0);
        assert_int_equal(decode("cdc.src.public.orders", key, value, &d), 1);
        assert_int_equal(d.change.op, CHANGE_INSERT);
        assert_true(d.snapshot);
        kafka_decoded_clear(&d);

        free(key);
        free(value);
        values_free(c.after, 6);
        table_unref(t);
}

/* Debezium's PostgreSQL connector, schemas disabled (from its tutorial). */
static void test_debezium_plain(void **state) {
        (void)state;
        const char *key = "{\"id\":1004}";
        const char *value =
                "{\"before\":{\"id\":1004,\"first_name\":\"Anne\",\"last_name\":\"Kretchmar\",\"email\":"
                "\"annek@noanswer.org\"},\"after\":{\"id\":1004,\"first_name\":\"Anne Marie\",\"last_name\":"
                "\"Kretchmar\",\"email\":\"annek@noanswer.org\"},\"source\":{\"version\":\"2.5.0.Final\",\"connector\":"
                "\"postgresql\",\"name\":\"dbserver1\",\"ts_ms\":1559033904863,\"snapshot\":\"false\",\"db\":"
                "\"postgres\","
                "\"schema\":\"inventory\",\"table\":\"customers\",\"txId\":556,\"lsn\":24023128},\"op\":\"u\",\"ts_"
                "ms\":"
                "1559033904863}";
        KafkaDecoded d = {0};
        assert_int_equal(decode("dbserver1.inventory.customers", key, value, &d), 1);
        assert_int_equal(d.change.op, CHANGE_UPDATE);
        assert_string_equal(d.change.table->schema, "inventory");
        assert_string_equal(d.change.table->name, "customers");
        expect_text(&d, d.change.before, "first_name", "Anne");
        expect_text(&d, d.change.after, "first_name", "Anne Marie");
        assert_int_equal(d.ts_usec, 1559033904863000);
        kafka_decoded_clear(&d);

        /* MySQL: no source.schema, the db is the schema; a truncate; a heartbeat. */
        const char *my =
                "{\"before\":null,\"after\":{\"id\":1,\"ok\":false,\"price\":1.5e3,\"tags\":[\"a\",1]},"
                "\"source\":{\"connector\":\"mysql\",\"db\":\"shop\",\"table\":\"t\",\"ts_ms\":1},\"op\":\"c\"}";
        assert_int_equal(decode("x.shop.t", "{\"id\":1}", my, &d), 1);
        assert_string_equal(d.change.table->schema, "shop");
        expect_text(&d, d.change.after, "ok", "f");
        expect_text(&d, d.change.after, "price", "1.5e3");
        expect_text(&d, d.change.after, "tags", "[\"a\",1]");
        assert_int_equal(d.change.table->cols[3].cls, TYPE_JSON);
        kafka_decoded_clear(&d);
        assert_int_equal(
                decode("dbserver1.inventory.customers", NULL,
                       "{\"before\":null,\"after\":null,\"source\":{\"schema\":\"s\",\"table\":\"t\"},\"op\":\"t\"}",
                       &d),
                1);
        assert_int_equal(d.change.op, CHANGE_TRUNCATE);
        kafka_decoded_clear(&d);
        assert_int_equal(decode("__debezium-heartbeat.dbserver1", NULL, "{\"ts_ms\":1}", &d), 0);

        /* No source block: the table comes from the topic. */
        assert_int_equal(decode("a.b.s1.t1", "{\"k\":\"x\"}", "{\"after\":{\"k\":\"x\"},\"op\":\"c\"}", &d), 1);
        assert_string_equal(d.change.table->schema, "s1");
        assert_string_equal(d.change.table->name, "t1");
        kafka_decoded_clear(&d);
}

/* Debezium with schemas: Decimal and bytes decoded, keys from the key's payload. */
static void test_debezium_schema(void **state) {
        (void)state;
        const char *key =
                "{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":"
                "\"id\"}]},\"payload\":{\"id\":7}}";
        const char *value =
                "{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\","
                "\"field\":\"id\"},{\"type\":\"bytes\",\"name\":\"org.apache.kafka.connect.data.Decimal\","
                "\"parameters\":{\"scale\":\"2\"},\"field\":\"amount\"},{\"type\":\"bytes\",\"field\":\"blob\"},"
                "{\"type\":\"double\",\"field\":\"r\"}],\"field\":\"after\"}]},\"payload\":{\"before\":null,\"after\":"
                "{\"id\":7,\"amount\":\"/"
                "zc=\",\"blob\":\"AP8Q\",\"r\":0.5},\"source\":{\"schema\":\"public\",\"table\":"
                "\"t\",\"ts_ms\":5},\"op\":\"c\",\"ts_ms\":6}}";
        KafkaDecoded d = {0};
        assert_int_equal(decode("s.public.t", key, value, &d), 1);
        assert_true(d.change.table->cols[0].key);
        expect_text(&d, d.change.after, "amount", "-2.01");
        expect_text(&d, d.change.after, "blob", "\\x00ff10");
        expect_text(&d, d.change.after, "r", "0.5");
        assert_int_equal(d.change.table->cols[1].cls, TYPE_NUMERIC);
        assert_int_equal(d.change.table->cols[2].cls, TYPE_BYTES);
        assert_int_equal(d.change.table->cols[3].cls, TYPE_FLOAT);
        kafka_decoded_clear(&d);
        /* The tombstone of the schema form. */
        assert_int_equal(decode("s.public.t", key, "{\"schema\":null,\"payload\":null}", &d), 0);
}

static void test_malformed(void **state) {
        (void)state;
        KafkaDecoded d = {0};
        assert_int_equal(decode("a.s.t", NULL, "not json", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", NULL, "{\"op\":\"x\",\"after\":{}}", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", NULL, "{\"op\":\"c\",\"after\":null}", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", "{\"nope\":1}", "{\"op\":\"c\",\"after\":{\"id\":1}}", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", NULL, "{\"op\":\"c\",\"after\":{\"id\":1,\"id\":2}}", &d), -EBADMSG);
        assert_int_equal(decode("notopic", NULL, "{\"op\":\"c\",\"after\":{\"id\":1}}", &d), -EBADMSG);
}

/* A crafted message of tests/fixtures/crafted/kafka/: "key\0value", or only a value. */
static int decode_fixture(const char *name, KafkaDecoded *d, char *why, size_t whylen) {
        const char *dir = getenv("FIXTURES");
        char path[1024];
        snprintf(path, sizeof(path), "%s/crafted/kafka/%s", dir ? dir : "tests/fixtures", name);
        FILE *f = fopen(path, "rbe");
        assert_non_null(f);
        static char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_true(len > 0 && len < sizeof(buf));
        const char *nul = memchr(buf, '\0', len);
        const char *key = nul ? buf : NULL, *value = nul ? nul + 1 : buf;
        size_t key_len = nul ? (size_t)(nul - buf) : 0, value_len = len - (size_t)(value - buf);
        return kafka_decode_message("cdc.src.public.t", key, key_len, value, value_len, d, why, whylen);
}

/* An update whose before image decodes and whose after image holds a Decimal that is not base64:
 * refused, and the before image already read is freed (it leaked: LeakSanitizer, ASan build). */
static void test_malformed_after_frees_before(void **state) {
        (void)state;
        KafkaDecoded d = {0};
        char why[256] = "";
        assert_int_equal(decode_fixture("before_leak.bin", &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "a value of public.t is malformed");
        assert_null(d.change.table);
}

/* Work per message is bounded, not only its size: the schema of an image may not name more
 * fields, nor the other image more members, than a table has columns (both were looked up by a
 * linear scan per column: a message under the size limit took quadratic time). */
static void test_bounded_work(void **state) {
        (void)state;
        KafkaDecoded d = {0};
        char why[256] = "";
        assert_int_equal(decode_fixture("schema_1601_fields.bin", &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "schema of the after image of public.t has more than 1600 fields");
        assert_int_equal(decode_fixture("before_1601_members.bin", &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "row image of public.t has more than 1600 columns");

        /* At the limit: 1600 columns, each typed by its own schema field (found by name, whatever
         * the order), before and after. */
        size_t cap = 1 << 20, n = 0;
        char *v = malloc(cap);
        n += (size_t)snprintf(v + n, cap - n, "{\"schema\":{\"type\":\"struct\",\"fields\":[");
        for (int img = 0; img < 2; img++) {
                n += (size_t)snprintf(v + n, cap - n, "%s{\"type\":\"struct\",\"field\":\"%s\",\"fields\":[",
                                      img ? "," : "", img ? "after" : "before");
                for (int i = KAFKA_DECODE_COLS_MAX - 1; i >= 0; i--)
                        n += (size_t)snprintf(v + n, cap - n, "%s{\"type\":\"%s\",\"field\":\"c%d\"}",
                                              i == KAFKA_DECODE_COLS_MAX - 1 ? "" : ",", i % 2 ? "bytes" : "int64", i);
                n += (size_t)snprintf(v + n, cap - n, "]}");
        }
        n += (size_t)snprintf(v + n, cap - n,
                              "]},\"payload\":{\"op\":\"u\",\"source\":{\"schema\":\"public\","
                              "\"table\":\"t\"}");
        for (int img = 0; img < 2; img++) {
                n += (size_t)snprintf(v + n, cap - n, ",\"%s\":{", img ? "after" : "before");
                for (int i = 0; i < KAFKA_DECODE_COLS_MAX; i++)
                        n += (size_t)snprintf(v + n, cap - n, i % 2 ? "%s\"c%d\":\"AQ==\"" : "%s\"c%d\":%d",
                                              i ? "," : "", i, i + img);
                n += (size_t)snprintf(v + n, cap - n, "}");
        }
        n += (size_t)snprintf(v + n, cap - n, "}}");
        assert_true(n < cap - 1);
        assert_int_equal(decode("cdc.src.public.t", NULL, v, &d), 1);
        assert_int_equal(d.change.table->ncols, KAFKA_DECODE_COLS_MAX);
        for (int i = 0; i < KAFKA_DECODE_COLS_MAX; i++) {
                char name[16], want[16];
                snprintf(name, sizeof(name), "c%d", i);
                assert_string_equal(d.change.table->cols[i].name, name);
                assert_int_equal(d.change.table->cols[i].cls, i % 2 ? TYPE_BYTES : TYPE_INTEGER);
                snprintf(want, sizeof(want), "%d", i + 1);
                expect_text(&d, d.change.after, name, i % 2 ? "\\x01" : want);
        }
        kafka_decoded_clear(&d);
        free(v);
}

/* Messages a source cannot use are refused with a reason, never passed as "no change": only a
 * tombstone (a null value, or the old JsonConverter's {"schema":null,"payload":null}, after a key)
 * and a Debezium heartbeat carry no change. */
static void test_unusable(void **state) {
        (void)state;
        KafkaDecoded d = {0};
        char why[256];
        /* A null value: a tombstone when it has a key. */
        assert_int_equal(decode("a.s.t", "{\"id\":1}", NULL, &d), 0);
        assert_int_equal(kafka_decode_message("a.s.t", NULL, 0, NULL, 0, &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "message has neither a key nor a value");
        /* An empty value is no tombstone. */
        assert_int_equal(kafka_decode_message("a.s.t", "{\"id\":1}", 8, "", 0, &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "message value is empty (a tombstone's value is null, not empty)");
        /* A schema with a null payload. */
        const char *v = "{\"schema\":{\"type\":\"struct\",\"fields\":[]},\"payload\":null}";
        assert_int_equal(kafka_decode_message("a.s.t", "{\"id\":1}", 8, v, strlen(v), &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "message has a schema but a null payload: no change in it");
        v = "{\"schema\":null,\"payload\":null}";
        assert_int_equal(kafka_decode_message("a.s.t", NULL, 0, v, strlen(v), &d, why, sizeof(why)), -EBADMSG);
        /* No op: only a heartbeat is no change. */
        v = "{\"before\":null,\"source\":{\"table\":\"t\"},\"ts_ms\":5}";
        assert_int_equal(kafka_decode_message("a.s.t", "{\"id\":1}", 8, v, strlen(v), &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "message has no op: it is no change event");
        assert_int_equal(decode("a.s.t", NULL, "{\"id\":1,\"name\":\"x\"}", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", NULL, "{\"ts_ms\":\"soon\"}", &d), -EBADMSG);
        assert_int_equal(decode("a.s.t", NULL, "{\"ts_ms\":1700000000000}", &d), 0);
        /* What a message holds reaches the reason escaped: no control character, no stray byte. */
        v = "{\"op\":\"\\u001b[31m\",\"after\":{}}";
        assert_int_equal(kafka_decode_message("a.s.t", NULL, 0, v, strlen(v), &d, why, sizeof(why)), -EBADMSG);
        assert_string_equal(why, "unknown op \"\\x1b[31m\"");
        v = "{\"op\":\"c\xff\"}";
        assert_int_equal(kafka_decode_message("a.s.t", NULL, 0, v, strlen(v), &d, why, sizeof(why)), -EBADMSG);
        for (const char *c = why; *c; c++)
                assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
}

/* Integers beyond 64 bits (and reals beyond a double) are carried as numerics with their exact
 * digits, in the row and in the key. */
static void test_big_numbers(void **state) {
        (void)state;
        KafkaDecoded d = {0};
        const char *key = "{\"id\":123456789012345678901234567890}";
        const char *value = "{\"before\":null,\"after\":{\"id\":123456789012345678901234567890,"
                            "\"u\":18446744073709551615,\"i\":-9223372036854775808,\"r\":1.5e400,"
                            "\"neg\":-99999999999999999999999},\"source\":{\"schema\":\"s\",\"table\":\"t\","
                            "\"ts_ms\":7},\"op\":\"c\"}";
        assert_int_equal(decode("a.s.t", key, value, &d), 1);
        expect_text(&d, d.change.after, "id", "123456789012345678901234567890");
        expect_text(&d, d.change.after, "u", "18446744073709551615");
        expect_text(&d, d.change.after, "i", "-9223372036854775808");
        expect_text(&d, d.change.after, "r", "1.5e400");
        expect_text(&d, d.change.after, "neg", "-99999999999999999999999");
        assert_int_equal(d.change.table->cols[0].cls, TYPE_NUMERIC);
        assert_string_equal(d.change.table->cols[0].type_name, "numeric");
        assert_true(d.change.table->cols[0].key);
        assert_int_equal(d.change.table->cols[1].cls, TYPE_NUMERIC);
        assert_int_equal(d.change.table->cols[2].cls, TYPE_INTEGER); /* fits */
        assert_int_equal(d.change.table->cols[3].cls, TYPE_NUMERIC);
        assert_int_equal(d.ts_usec, 7000); /* jansson still reads the small fields */
        kafka_decoded_clear(&d);
        /* Still refused: what is not JSON whatever its numbers. */
        assert_int_equal(decode("a.s.t", NULL, "{\"op\":\"c\",\"after\":{\"id\":123456789012345678901234567890,}}", &d),
                         -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_own_envelope_roundtrip),
                cmocka_unit_test(test_debezium_plain),
                cmocka_unit_test(test_debezium_schema),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_malformed_after_frees_before),
                cmocka_unit_test(test_bounded_work),
                cmocka_unit_test(test_unusable),
                cmocka_unit_test(test_big_numbers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
