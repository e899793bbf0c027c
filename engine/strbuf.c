/* The growing string of strbuf.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cdcsync/strbuf.h"

/* Room for `more` bytes and the NUL after them; false (and b->oom) when that cannot be had. */
static bool reserve(StrBuf *b, size_t more) {
        if (b->oom)
                return false;
        if (more > SIZE_MAX / 2 - b->len) {
                b->oom = true;
                return false;
        }
        size_t need = b->len + more + 1;
        if (need <= b->cap)
                return true;
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
                cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
                b->oom = true;
                return false;
        }
        b->data = p;
        b->cap = cap;
        return true;
}

void strbuf_put(StrBuf *b, const char *s, size_t n) {
        if (!reserve(b, n))
                return;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
}

void strbuf_printf(StrBuf *b, const char *fmt, ...) {
        if (b->oom)
                return;
        char tmp[128];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0) {
                b->oom = true;
                return;
        }
        if ((size_t)n < sizeof(tmp)) {
                strbuf_put(b, tmp, (size_t)n);
                return;
        }
        if (!reserve(b, (size_t)n))
                return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
}

void strbuf_uint(StrBuf *b, uint64_t u, unsigned width) {
        char tmp[24];
        size_t i = sizeof(tmp);
        do {
                tmp[--i] = (char)('0' + u % 10);
                u /= 10;
        } while (u && i > 0);
        while (sizeof(tmp) - i < width && i > 0)
                tmp[--i] = '0';
        strbuf_put(b, tmp + i, sizeof(tmp) - i);
}

void strbuf_int(StrBuf *b, int64_t v) {
        if (v < 0) {
                strbuf_put(b, "-", 1);
                strbuf_uint(b, (uint64_t)0 - (uint64_t)v, 0);
        } else {
                strbuf_uint(b, (uint64_t)v, 0);
        }
}

int strbuf_finish(StrBuf *b, char **ret) {
        if (!b->oom && !b->data)
                strbuf_put(b, "", 0);
        if (b->oom) {
                strbuf_free(b);
                return -ENOMEM;
        }
        *ret = b->data;
        *b = (StrBuf){0};
        return 0;
}

void strbuf_free(StrBuf *b) {
        free(b->data);
        *b = (StrBuf){0};
}
