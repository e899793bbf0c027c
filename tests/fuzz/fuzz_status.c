/* Fuzz target: the answer `cdcsync status` (and pause/resume/restart) reads from whatever listens
 * on metrics_listen (the service, or anything else there), printed as the table and as --json. Seeds: an answer of a
 * running service (tests/fixtures/status/) and the crafted ones. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/status.h"
#include "fuzz_common.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!devnull)
                devnull = fopen("/dev/null", "we");
        FUZZ_CHECK(devnull);
        char *answer = malloc(size + 1);
        FUZZ_CHECK(answer);
        memcpy(answer, data, size);
        answer[size] = '\0';
        for (int json = 0; json < 2; json++) {
                int r = status_print_answer(answer, size, "127.0.0.1:9780", json, devnull, devnull);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -EBADMSG || r == -EACCES || r == -ENOMEM);
        }
        /* The answer to `cdcsync pause|resume|restart` comes from the same place. */
        int r = status_action_answer(answer, size, "127.0.0.1:9780", "orders", "pause", devnull, devnull);
        FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ENOENT || r == -EACCES);
        free(answer);
        return 0;
}
