/* A chunk of a table as a chunked copy plans it: a half-open range of some ordered space of the
 * source's (heap blocks, primary-key values); which space is the connector's business. With the
 * list handling both planners share. */
#pragma once

#include <stdint.h>

typedef struct {
        uint64_t lo, hi; /* [lo, hi); hi UINT64_MAX: no upper bound */
} ChunkRange;

/* Appends [lo, hi) to *v (n used, cap allocated; *v realloc()ed, the caller's). Returns 0 or
 * -ENOMEM (*v unchanged). */
int chunk_range_push(ChunkRange **v, int *n, int *cap, uint64_t lo, uint64_t hi);
/* A copy of ranges (n of them) sorted by lo: *ret the caller's (free()), NULL when n is 0.
 * Returns 0 or -ENOMEM. */
int chunk_range_sorted(const ChunkRange *ranges, int n, ChunkRange **ret);
