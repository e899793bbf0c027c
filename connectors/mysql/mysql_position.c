/* MySQL/MariaDB source positions as text: binlog file:pos, MariaDB GTID states, and the
 * checkpoint text that carries both. */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <mysql.h>
#include <mariadb_rpl.h>

#include "mysql/mysql_source_int.h"

/* ---- positions ---- */

int mysql_source_parse_u64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;
        if (n == 0 || n > 19)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* The sequence number of a binlog file name "base.000042". */
int mysql_source_file_seq(const char *name, uint64_t *ret) {
        const char *dot = strrchr(name, '.');
        if (!dot)
                return -EINVAL;
        return mysql_source_parse_u64(dot + 1, strlen(dot + 1), ret);
}

void mysql_source_format_position(Position p, char *buf, size_t len) {
        mysql_source_format_checkpoint(NULL, p, NULL, buf, len);
}

/* Parses a decimal number of n bytes with an upper bound. */
static int parse_num(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v;
        if (n == 0 || n > 20)
                return -EINVAL;
        v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                unsigned d = (unsigned)(s[i] - '0');
                if (v > (max - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int mysql_source_gtid_update(MysqlGtidState *st, MysqlGtid g) {
        int i = 0;
        while (i < st->n && st->g[i].domain < g.domain)
                i++;
        if (i < st->n && st->g[i].domain == g.domain) {
                st->g[i] = g;
                return 0;
        }
        if (st->n == MYSQL_SOURCE_GTID_MAX)
                return -ENOSPC;
        memmove(&st->g[i + 1], &st->g[i], sizeof(st->g[0]) * (size_t)(st->n - i));
        st->g[i] = g;
        st->n++;
        return 0;
}

const MysqlGtid *mysql_source_gtid_find(const MysqlGtidState *st, uint32_t domain) {
        for (int i = 0; i < st->n; i++)
                if (st->g[i].domain == domain)
                        return &st->g[i];
        return NULL;
}

int mysql_source_gtid_parse(const char *text, size_t len, MysqlGtidState *ret) {
        MysqlGtidState st = {0};
        size_t i = 0;
        while (i < len) {
                uint64_t part[3];
                for (int k = 0; k < 3; k++) {
                        size_t j = i;
                        while (j < len && text[j] >= '0' && text[j] <= '9')
                                j++;
                        if (parse_num(text + i, j - i, k < 2 ? UINT32_MAX : UINT64_MAX, &part[k]) < 0)
                                return -EINVAL;
                        i = j;
                        if (k < 2) {
                                if (i >= len || text[i] != '-')
                                        return -EINVAL;
                                i++;
                        }
                }
                if (mysql_source_gtid_find(&st, (uint32_t)part[0]))
                        return -EINVAL;
                int r = mysql_source_gtid_update(
                        &st, (MysqlGtid){.domain = (uint32_t)part[0], .server_id = (uint32_t)part[1], .seq = part[2]});
                if (r < 0)
                        return r;
                if (i < len) {
                        if (text[i] != ',' || i + 1 == len)
                                return -EINVAL;
                        i++;
                }
        }
        *ret = st;
        return 0;
}

int mysql_source_gtid_format(const MysqlGtidState *st, char *buf, size_t len) {
        size_t used = 0;
        if (len == 0)
                return -ENOSPC;
        buf[0] = '\0';
        for (int i = 0; i < st->n; i++) {
                int n = snprintf(buf + used, len - used, "%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, i ? "," : "",
                                 st->g[i].domain, st->g[i].server_id, st->g[i].seq);
                if (n < 0 || (size_t)n >= len - used) {
                        buf[0] = '\0';
                        return -ENOSPC;
                }
                used += (size_t)n;
        }
        return 0;
}

void mysql_source_format_checkpoint(const char *base, Position p, const MysqlGtidState *gtid, char *buf, size_t len) {
        char g[MYSQL_SOURCE_GTID_MAX * 48];
        int n = snprintf(buf, len, "%s.%06" PRIu64 ":%" PRIu64, base && base[0] ? base : "binlog", p.hi, p.lo);
        if (!gtid || n < 0 || (size_t)n >= len || mysql_source_gtid_format(gtid, g, sizeof(g)) < 0)
                return;
        /* all or nothing: a cut GTID state would be a wrong one */
        if ((size_t)n + strlen(" gtid=") + strlen(g) < len)
                snprintf(buf + n, len - (size_t)n, " gtid=%s", g);
}

int mysql_source_parse_checkpoint(const char *text, Position *ret_pos, bool *ret_have_pos, MysqlGtidState *ret_gtid,
                                  bool *ret_have_gtid) {
        Position pos = {0};
        MysqlGtidState st = {0};
        bool have_pos = false, have_gtid = false;
        const char *g = NULL;
        size_t tlen = strlen(text);

        if (strncmp(text, "gtid=", 5) == 0) {
                g = text + 5;
        } else if (tlen && !memchr(text, ':', tlen) && !memchr(text, '.', tlen)) {
                g = text; /* a bare GTID list */
        } else {
                const char *sp = strchr(text, ' ');
                size_t flen = sp ? (size_t)(sp - text) : tlen;
                const char *colon = memrchr(text, ':', flen);
                uint64_t seq, off;
                if (!colon || colon == text)
                        return -EINVAL;
                const char *dot = memrchr(text, '.', (size_t)(colon - text));
                if (!dot || dot == text || parse_num(dot + 1, (size_t)(colon - dot - 1), UINT64_MAX, &seq) < 0 ||
                    parse_num(colon + 1, flen - (size_t)(colon + 1 - text), UINT64_MAX, &off) < 0 || off < 4)
                        return -EINVAL;
                pos = (Position){.hi = seq, .lo = off};
                have_pos = true;
                if (sp) {
                        if (strncmp(sp, " gtid=", 6) != 0)
                                return -EINVAL;
                        g = sp + 6;
                }
        }
        if (g) {
                if (mysql_source_gtid_parse(g, strlen(g), &st) < 0)
                        return -EINVAL;
                have_gtid = true;
        }
        *ret_pos = pos;
        *ret_have_pos = have_pos;
        *ret_gtid = st;
        *ret_have_gtid = have_gtid;
        return 0;
}

int mysql_source_parse_position(const char *text, Position *ret) {
        Position p;
        MysqlGtidState st;
        bool hp, hg;
        int r = mysql_source_parse_checkpoint(text, &p, &hp, &st, &hg);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}
