/* Chunk planning by block ranges and COPY text rows (pg_chunks.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "postgres/pg_chunks.h"

uint64_t pg_chunks_blocks_per_chunk(uint64_t blocks, double reltuples, uint64_t target_rows) {
        double per_block = blocks > 0 && reltuples > 0 ? reltuples / (double)blocks : 60.0;
        if (per_block < 1)
                per_block = 1;
        double per = (double)target_rows / per_block;
        if (per < 1)
                return 1;
        if (per > (double)(UINT64_MAX / 4))
                return UINT64_MAX / 4;
        return (uint64_t)per;
}

/* Cuts the gap [lo, hi) into chunks of per blocks, the part at or past blocks left whole. */
static int cut(PgBlockRange **v, int *n, int *cap, uint64_t lo, uint64_t hi, uint64_t blocks, uint64_t per) {
        while (lo < hi) {
                uint64_t end = lo < blocks && blocks - lo > per ? lo + per : (lo < blocks ? blocks : hi);
                if (end > hi)
                        end = hi;
                if (end == blocks && hi == UINT64_MAX)
                        end = UINT64_MAX; /* the table's last chunk reads to its end, however it grew */
                if (chunk_range_push(v, n, cap, lo, end) < 0)
                        return -ENOMEM;
                lo = end;
        }
        return 0;
}

int pg_chunks_plan(uint64_t blocks, uint64_t per, const PgBlockRange *done, int ndone, PgBlockRange **ret, int *ret_n) {
        PgBlockRange *d = NULL, *v = NULL;
        int n = 0, cap = 0;
        if (per == 0)
                per = 1;
        if (chunk_range_sorted(done, ndone, &d) < 0)
                return -ENOMEM;
        uint64_t at = 0; /* everything below at is done or planned */
        for (int i = 0; i <= ndone && at != UINT64_MAX; i++) {
                uint64_t gap_end = i < ndone ? d[i].lo : UINT64_MAX;
                if (gap_end > at && cut(&v, &n, &cap, at, gap_end, blocks, per) < 0) {
                        free(d);
                        free(v);
                        return -ENOMEM;
                }
                if (i < ndone && d[i].hi > at)
                        at = d[i].hi;
                else if (i == ndone)
                        at = UINT64_MAX;
        }
        free(d);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int hexval(char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

int pg_chunks_copy_fields(char *line, size_t len, int ncols, char **fields, size_t *lens) {
        size_t i = 0;
        int f = 0;
        if (ncols == 0)
                return len == 0 ? 0 : -EBADMSG;
        for (;;) {
                char *out = line + i, *start = out;
                /* The common field, without a backslash: in place, found by memchr (a table's
                 * rows are mostly such fields, and this loop was a tenth of the copy's CPU). */
                char *tab = memchr(start, '\t', len - i);
                size_t flen = tab ? (size_t)(tab - start) : len - i;
                if (!memchr(start, '\\', flen)) {
                        if (f == ncols)
                                return -EBADMSG;
                        fields[f] = start;
                        lens[f] = flen;
                        f++;
                        start[flen] = '\0'; /* the tab, or line[len] (writable, see pg_chunks.h) */
                        if (!tab)
                                break;
                        i += flen + 1;
                        continue;
                }
                bool null =
                        i + 1 < len && line[i] == '\\' && line[i + 1] == 'N' && (i + 2 == len || line[i + 2] == '\t');
                while (i < len && line[i] != '\t') {
                        char c = line[i++];
                        if (c == '\\' && i < len) {
                                c = line[i++];
                                switch (c) {
                                case 'b': c = '\b'; break;
                                case 'f': c = '\f'; break;
                                case 'n': c = '\n'; break;
                                case 'r': c = '\r'; break;
                                case 't': c = '\t'; break;
                                case 'v': c = '\v'; break;
                                case 'x':
                                        if (i < len && hexval(line[i]) >= 0) {
                                                int h = hexval(line[i++]);
                                                if (i < len && hexval(line[i]) >= 0)
                                                        h = h * 16 + hexval(line[i++]);
                                                c = (char)h;
                                        }
                                        break;
                                default:
                                        if (c >= '0' && c <= '7') {
                                                int o = c - '0';
                                                for (int k = 0; k < 2 && i < len && line[i] >= '0' && line[i] <= '7';
                                                     k++)
                                                        o = o * 8 + (line[i++] - '0');
                                                c = (char)o;
                                        }
                                        break; /* \\ and any other: the character itself */
                                }
                        }
                        *out++ = c;
                }
                if (f == ncols)
                        return -EBADMSG;
                fields[f] = null ? NULL : start;
                lens[f] = null ? 0 : (size_t)(out - start);
                f++;
                bool more = i < len; /* stopped at a tab */
                *out = '\0';         /* out <= line + i: the tab, or line[len] (writable, see pg_chunks.h) */
                if (!more)
                        break;
                i++;
        }
        return f == ncols ? 0 : -EBADMSG;
}
