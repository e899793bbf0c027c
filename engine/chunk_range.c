/* Lists of chunk ranges as both chunk planners build them (chunk_range.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/chunk_range.h"

int chunk_range_push(ChunkRange **v, int *n, int *cap, uint64_t lo, uint64_t hi) {
        if (*n == *cap) {
                int nc = *cap ? *cap * 2 : 16;
                ChunkRange *g = realloc(*v, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                *v = g;
                *cap = nc;
        }
        (*v)[(*n)++] = (ChunkRange){lo, hi};
        return 0;
}

static int by_lo(const void *a, const void *b) {
        const ChunkRange *x = a, *y = b;
        return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int chunk_range_sorted(const ChunkRange *ranges, int n, ChunkRange **ret) {
        ChunkRange *d = NULL;
        if (n > 0) { /* never memcpy/qsort a NULL array, even of no elements (UBSan) */
                d = malloc(sizeof(*d) * (size_t)n);
                if (!d)
                        return -ENOMEM;
                memcpy(d, ranges, sizeof(*d) * (size_t)n);
                qsort(d, (size_t)n, sizeof(*d), by_lo);
        }
        *ret = d;
        return 0;
}
