/* A chunk of a table as a chunked copy plans it: a half-open range of some ordered space of the
 * source's (heap blocks, primary-key values); which space is the connector's business. */
#pragma once

#include <stdint.h>

typedef struct {
        uint64_t lo, hi; /* [lo, hi); hi UINT64_MAX: no upper bound */
} ChunkRange;
