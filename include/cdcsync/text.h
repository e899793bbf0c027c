/* Bytes from outside (a conf line, a peer's message) checked as text, and escaped before they
 * reach a terminal or a log. */
#pragma once

#include <stddef.h>

enum { TEXT_NOT_UTF8 = 1, TEXT_CONTROL = 2 };

/* 0 when s[0..n) is UTF-8 text without control characters (tab allowed); else TEXT_* with the
 * offending byte's offset in *ret_at. */
int text_check(const char *s, size_t n, size_t *ret_at);

/* Copies s into buf (NUL-terminated, cut at a character boundary to fit len) with control
 * characters and bytes that are not UTF-8 written as \xNN. */
void text_escape(const char *s, char *buf, size_t len);
