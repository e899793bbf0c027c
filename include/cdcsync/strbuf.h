/* A growing NUL-terminated string for building texts (statements, JSON, values). After the first
 * allocation failure every append is a no-op and strbuf_finish() reports -ENOMEM, so a builder
 * checks once, at the end. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
        char *data; /* owned; NULL until the first append; always NUL-terminated after one */
        size_t len, cap;
        bool oom;
} StrBuf;

/* Appends s[0..n). */
void strbuf_put(StrBuf *b, const char *s, size_t n);

static inline void strbuf_puts(StrBuf *b, const char *s) {
        strbuf_put(b, s, strlen(s));
}

/* Appends what printf would print, of any length. */
void strbuf_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* u in decimal, zero-padded to `width` digits: what "%0*" PRIu64 prints, without printf's cost on
 * hot paths (every integer and date of every row of a binlog). */
void strbuf_uint(StrBuf *b, uint64_t u, unsigned width);
void strbuf_int(StrBuf *b, int64_t v);

/* Hands the text over (*ret owned by the caller; "" when nothing was appended) and leaves b empty;
 * on an earlier allocation failure frees it and returns -ENOMEM. */
int strbuf_finish(StrBuf *b, char **ret);

/* Frees the text and leaves b empty. */
void strbuf_free(StrBuf *b);
