/* Bytes from outside (a conf line, a peer's message) checked as text, and escaped before they
 * reach a terminal or a log. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/text.h"

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when it is not valid UTF-8 (overlong
 * forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n) {
        unsigned c = s[0];
        size_t len;
        unsigned min, cp;
        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2, min = 0x80, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
                len = 3, min = 0x800, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
                len = 4, min = 0x10000, cp = c & 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        return len;
}

int text_check(const char *s, size_t n, size_t *ret_at) {
        const unsigned char *u = (const unsigned char *)s;
        for (size_t i = 0; i < n;) {
                size_t len = utf8_len(u + i, n - i);
                if (len == 0) {
                        *ret_at = i;
                        return TEXT_NOT_UTF8;
                }
                if ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7F) {
                        *ret_at = i;
                        return TEXT_CONTROL;
                }
                i += len;
        }
        return 0;
}

void text_escape(const char *s, char *buf, size_t len) {
        const unsigned char *u = (const unsigned char *)s;
        size_t o = 0, n = strlen(s);
        if (len == 0)
                return;
        for (size_t i = 0; i < n;) {
                size_t l = utf8_len(u + i, n - i);
                bool plain = l > 0 && !(u[i] < 0x20 || u[i] == 0x7F);
                size_t need = plain ? l : 4;
                if (o + need + 1 > len)
                        break;
                if (plain) {
                        memcpy(buf + o, s + i, l);
                        o += l;
                        i += l;
                } else {
                        snprintf(buf + o, len - o, "\\x%02x", u[i]);
                        o += 4;
                        i++;
                }
        }
        buf[o] = '\0';
}
