/* Fuzz target: one Kafka message as the Kafka source hands it to the decoder (cdcsync's
 * envelope, Debezium's with or without schemas). Input: "KEY\0VALUE", or only a value when it
 * holds no NUL (JSON never does); the topic is fixed. Seeds: messages of cdcsync's own Kafka
 * sink captured from a real run (tests/fixtures/kafka/) and Debezium's forms. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "kafka/kafka_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, '\0', size);
        const void *key = nul ? data : NULL, *value = nul ? nul + 1 : data;
        size_t key_len = nul ? (size_t)(nul - data) : 0, value_len = nul ? size - key_len - 1 : size;
        KafkaDecoded d = {0};
        char why[256];
        int r = kafka_decode_message("cdc.src.public.t", key, key_len, value, value_len, &d, why, sizeof(why));
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || memchr(why, '\0', sizeof(why)));
                FUZZ_CHECK(!d.change.table);
                return 0;
        }
        FUZZ_CHECK(r == 0 || r == 1);
        if (r == 0) {
                FUZZ_CHECK(!d.change.table);
                return 0;
        }
        const Table *t = d.change.table;
        FUZZ_CHECK(t && t->schema && t->name && t->ncols >= 0 && t->ncols <= KAFKA_DECODE_COLS_MAX);
        FUZZ_CHECK(d.ts_usec >= 0 && d.ts_usec <= CHANGE_TS_MAX);
        for (int i = 0; i < t->ncols; i++) {
                FUZZ_CHECK(t->cols[i].name && t->cols[i].type_name);
                for (int img = 0; img < 2; img++) {
                        const Value *v = img ? d.change.after : d.change.before;
                        if (v && v[i].kind == VALUE_TEXT)
                                FUZZ_CHECK(v[i].data && v[i].data[v[i].len] == '\0');
                }
        }
        kafka_decoded_clear(&d);
        return 0;
}
