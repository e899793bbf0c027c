/* Value conversion for the MySQL/MariaDB sink: portable text forms to what MySQL stores (pure). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mysql/mysql_sink.h"

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned)(y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **pp, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if ((*pp)[i] < '0' || (*pp)[i] > '9')
                        return -EINVAL;
                v = v * 10 + ((*pp)[i] - '0');
        }
        *pp += n;
        *ret = v;
        return 0;
}

/* "YYYY-MM-DD HH:MM:SS[.f][+HH[:MM[:SS]]]" → UTC "YYYY-MM-DD HH:MM:SS[.f]" for DATETIME. */
static int convert_timestamptz(const char *t, char *out, size_t cap) {
        int Y, M, D, h, mi, s, oh = 0, om = 0, os = 0;
        const char *p = t;
        if (digits(&p, 4, &Y) < 0 || *p++ != '-' || digits(&p, 2, &M) < 0 || *p++ != '-' || digits(&p, 2, &D) < 0 ||
            (*p != ' ' && *p != 'T'))
                return -EINVAL;
        p++;
        if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0 || *p++ != ':' || digits(&p, 2, &s) < 0)
                return -EINVAL;
        char frac[8] = "";
        if (*p == '.') {
                size_t n = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                        if (n < 6)
                                frac[n++] = *p;
                        p++;
                }
                frac[n] = '\0';
        }
        int sign = 0;
        if (*p == '+' || *p == '-') {
                sign = *p == '-' ? -1 : 1;
                p++;
                if (digits(&p, 2, &oh) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (*p >= '0' && *p <= '9' && digits(&p, 2, &om) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (*p >= '0' && *p <= '9' && digits(&p, 2, &os) < 0)
                        return -EINVAL;
        } else if (*p == 'Z') {
                p++;
        }
        if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || s > 60)
                return -EINVAL;
        int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + mi * 60 + s -
                       sign * (oh * 3600 + om * 60 + os);
        time_t tt = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&tt, &tm))
                return -ERANGE;
        if (tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999)
                return -ERANGE;
        snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d%s%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac[0] ? "." : "", frac);
        return 0;
}

int mysql_sink_convert(TypeClass cls, const char *text, size_t len, char **ret, size_t *ret_len) {
        char buf[64];
        const char *src = text;
        size_t n = len;
        char *bytes = NULL;

        switch (cls) {
        case TYPE_BOOLEAN:
                if (len == 1 && (text[0] == 't' || text[0] == 'f'))
                        src = text[0] == 't' ? "1" : "0", n = 1;
                else if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
                        src = text[0] == 't' ? "1" : "0", n = 1;
                break;
        case TYPE_NUMERIC:
        case TYPE_FLOAT: {
                if (strcasestr(text, "nan") || strcasestr(text, "inf"))
                        return -ERANGE;
                if (cls == TYPE_NUMERIC) {
                        /* DECIMAL(65,30): at most 35 integer and 30 fractional digits */
                        const char *p = text + (text[0] == '-' || text[0] == '+');
                        size_t ip = strspn(p, "0123456789");
                        const char *dot = p[ip] == '.' ? p + ip + 1 : NULL;
                        size_t fp = dot ? strspn(dot, "0123456789") : 0;
                        while (ip > 1 && *p == '0')
                                p++, ip--;
                        if (strpbrk(text, "eE") || ip > 35 || fp > 30)
                                return -ERANGE;
                }
                break;
        }
        case TYPE_BYTES:
                if (len >= 2 && text[0] == '\\' && text[1] == 'x') {
                        if ((len - 2) % 2)
                                return -EINVAL;
                        bytes = malloc((len - 2) / 2 + 1);
                        if (!bytes)
                                return -ENOMEM;
                        for (size_t i = 0; i < (len - 2) / 2; i++) {
                                unsigned v;
                                char hx[3] = {text[2 + 2 * i], text[3 + 2 * i], 0};
                                char *end;
                                v = (unsigned)strtoul(hx, &end, 16);
                                if (*end || !hx[0] || !hx[1]) {
                                        free(bytes);
                                        return -EINVAL;
                                }
                                bytes[i] = (char)v;
                        }
                        bytes[(len - 2) / 2] = '\0';
                        *ret = bytes;
                        *ret_len = (len - 2) / 2;
                        return 0;
                }
                break;
        case TYPE_TIMESTAMPTZ: {
                int r = convert_timestamptz(text, buf, sizeof(buf));
                if (r < 0)
                        return r;
                src = buf;
                n = strlen(buf);
                break;
        }
        case TYPE_TIMESTAMP:
        case TYPE_DATE:
                if (strstr(text, "infinity") || strstr(text, "BC"))
                        return -ERANGE;
                if (len >= 4 && (text[0] == '0' || (len > 4 && text[4] != '-')))
                        return -ERANGE; /* years before 1000 or past 9999 */
                break;
        default: break;
        }
        char *p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, src, n);
        p[n] = '\0';
        *ret = p;
        *ret_len = n;
        return 0;
}
