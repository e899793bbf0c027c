/* Fuzz target: the forms a version vector is read from. Input: "V" + the binary form of the
 * state store (vclock_decode), "R" + a row version (version_decode), anything else the text form
 * (vclock_parse). Each form has one spelling per vector: what reads back writes the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/vclock.h"
#include "cdcsync/version.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size >= 1 && data[0] == 'V') {
                VClock v;
                uint8_t again[VCLOCK_ENCODED_MAX];
                int n = vclock_decode(data + 1, size - 1, &v);
                if (n < 0) {
                        FUZZ_CHECK(n == -EBADMSG);
                        return 0;
                }
                FUZZ_CHECK((size_t)n <= size - 1);
                FUZZ_CHECK(vclock_encode(&v, again, sizeof(again)) == n);
                FUZZ_CHECK(memcmp(again, data + 1, (size_t)n) == 0);
                return 0;
        }
        if (size >= 1 && data[0] == 'R') {
                Version v;
                uint8_t again[VERSION_ENCODED_MAX];
                int r = version_decode(data + 1, size - 1, &v);
                if (r < 0) {
                        FUZZ_CHECK(r == -EBADMSG);
                        return 0;
                }
                FUZZ_CHECK(version_encode(&v, again, sizeof(again)) == (int)(size - 1));
                FUZZ_CHECK(memcmp(again, data + 1, size - 1) == 0);
                return 0;
        }
        char *text = malloc(size + 1);
        FUZZ_CHECK(text);
        memcpy(text, data, size);
        text[size] = '\0';
        const char *s = size >= 1 && data[0] == 'T' ? text + 1 : text;
        VClock v;
        char again[VCLOCK_TEXT_MAX];
        int r = vclock_parse(s, &v);
        if (r == 0) {
                FUZZ_CHECK(vclock_format(&v, again, sizeof(again)) >= 0);
                FUZZ_CHECK(strcmp(again, s) == 0);
        } else {
                FUZZ_CHECK(r == -EINVAL || r == -E2BIG);
        }
        free(text);
        return 0;
}
