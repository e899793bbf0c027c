/* What every fuzz target shares: how it reports a broken invariant. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

/* A decoder broke its own contract on this input: say which, then abort, so libFuzzer keeps the
 * input as a crash (and the replay unit test fails). */
#define FUZZ_CHECK(cond)                                                                                               \
        do {                                                                                                           \
                if (!(cond)) {                                                                                         \
                        fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                   \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)
