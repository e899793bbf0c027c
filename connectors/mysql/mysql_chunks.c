/* Primary-key range planning of the MySQL/MariaDB chunked copy (mysql_chunks.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql/mysql_chunks.h"

#define SIGN_BIT (UINT64_C(1) << 63)

uint64_t mysql_chunks_from_signed(int64_t v) {
        return (uint64_t)v ^ SIGN_BIT;
}

int64_t mysql_chunks_to_signed(uint64_t k) {
        uint64_t u = k ^ SIGN_BIT;
        int64_t v;
        memcpy(&v, &u, sizeof(v)); /* two's complement, without an implementation-defined cast */
        return v;
}

uint64_t mysql_chunks_width(uint64_t min, uint64_t max, uint64_t rows_est, uint64_t target_rows) {
        if (max < min)
                return UINT64_MAX;
        unsigned __int128 span = (unsigned __int128)(max - min) + 1;
        if (target_rows == 0)
                target_rows = 1;
        unsigned __int128 w = rows_est == 0 ? target_rows : span * target_rows / rows_est;
        unsigned __int128 least = (span + MYSQL_CHUNKS_MAX - 1) / MYSQL_CHUNKS_MAX;
        if (w < least)
                w = least;
        if (w < 1)
                w = 1;
        return w > UINT64_MAX ? UINT64_MAX : (uint64_t)w;
}

/* Cuts the gap [lo, hi) at the points min + k * width (k >= 1) strictly inside it and at most max:
 * the part below min + width is the first chunk, the part above the last point the last. */
static int cut(MysqlKeyRange **v, int *n, int *cap, uint64_t lo, uint64_t hi, bool empty, uint64_t min, uint64_t max,
               uint64_t width) {
        uint64_t cur = lo;
        if (!empty) {
                unsigned __int128 k = lo < min ? 1 : (lo - min) / width + 1;
                for (unsigned __int128 p = (unsigned __int128)min + k * width; p < hi && p <= max; p += width) {
                        if (chunk_range_push(v, n, cap, cur, (uint64_t)p) < 0)
                                return -ENOMEM;
                        cur = (uint64_t)p;
                }
        }
        return chunk_range_push(v, n, cap, cur, hi);
}

int mysql_chunks_plan(bool empty, uint64_t min, uint64_t max, uint64_t width, const MysqlKeyRange *done, int ndone,
                      MysqlKeyRange **ret, int *ret_n) {
        MysqlKeyRange *d = NULL, *v = NULL;
        int n = 0, cap = 0;
        if (width == 0)
                width = 1;
        if (!empty && max < min)
                empty = true;
        if (chunk_range_sorted(done, ndone, &d) < 0)
                return -ENOMEM;
        /* everything below `at` is done or planned; full once the whole space is */
        uint64_t at = 0;
        bool full = false;
        for (int i = 0; i <= ndone && !full; i++) {
                uint64_t gap_end = i < ndone ? d[i].lo : UINT64_MAX;
                if (gap_end > at && cut(&v, &n, &cap, at, gap_end, empty, min, max, width) < 0) {
                        free(d);
                        free(v);
                        return -ENOMEM;
                }
                if (i == ndone || d[i].hi == UINT64_MAX)
                        full = true;
                else if (d[i].hi > at)
                        at = d[i].hi;
        }
        free(d);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A key-space bound as the column's value. */
static int bound_text(uint64_t k, bool is_signed, char *buf, size_t len) {
        if (is_signed)
                return snprintf(buf, len, "%" PRId64, mysql_chunks_to_signed(k));
        return snprintf(buf, len, "%" PRIu64, k);
}

int mysql_chunks_key(const char *source_table, MysqlKeyRange r, bool is_signed, char *buf, size_t len) {
        char lo[24] = "", hi[24] = "";
        if (r.lo != 0)
                bound_text(r.lo, is_signed, lo, sizeof(lo));
        if (r.hi != UINT64_MAX)
                bound_text(r.hi, is_signed, hi, sizeof(hi));
        return snprintf(buf, len, "%s [%s,%s)", source_table, lo, hi);
}

/* Parses one bound of a chunk key up to `stop`; "" is none (*ret = none). */
static bool bound_parse(const char *p, char stop, bool is_signed, uint64_t none, uint64_t *ret, const char **end) {
        if (*p == stop) {
                *ret = none;
                *end = p;
                return true;
        }
        char *e;
        errno = 0;
        if (is_signed) {
                long long v = strtoll(p, &e, 10);
                if (errno || e == p || *e != stop)
                        return false;
                *ret = mysql_chunks_from_signed((int64_t)v);
        } else {
                if (*p == '-')
                        return false;
                unsigned long long v = strtoull(p, &e, 10);
                if (errno || e == p || *e != stop)
                        return false;
                *ret = (uint64_t)v;
        }
        *end = e;
        return true;
}

bool mysql_chunks_parse(const char *key, const char *source_table, bool is_signed, MysqlKeyRange *ret) {
        size_t tl = strlen(source_table);
        if (strncmp(key, source_table, tl) != 0 || strncmp(key + tl, " [", 2) != 0)
                return false;
        const char *p = key + tl + 2;
        uint64_t lo, hi;
        if (!bound_parse(p, ',', is_signed, 0, &lo, &p))
                return false;
        if (!bound_parse(p + 1, ')', is_signed, UINT64_MAX, &hi, &p))
                return false;
        if (p[1] != '\0' || hi <= lo)
                return false;
        *ret = (MysqlKeyRange){lo, hi};
        return true;
}

int mysql_chunks_where(MysqlKeyRange r, bool is_signed, const char *qcol, char *buf, size_t len) {
        char lo[24], hi[24];
        bound_text(r.lo, is_signed, lo, sizeof(lo));
        bound_text(r.hi, is_signed, hi, sizeof(hi));
        if (r.lo != 0 && r.hi != UINT64_MAX)
                return snprintf(buf, len, " WHERE %s >= %s AND %s < %s", qcol, lo, qcol, hi);
        if (r.lo != 0)
                return snprintf(buf, len, " WHERE %s >= %s", qcol, lo);
        if (r.hi != UINT64_MAX)
                return snprintf(buf, len, " WHERE %s < %s", qcol, hi);
        if (len > 0)
                buf[0] = '\0';
        return 0;
}
