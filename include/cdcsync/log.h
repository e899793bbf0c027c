/* Logging: one line per event worth attention, with pipeline/connector context. */
#pragma once

#include <stdbool.h>

/* Values are syslog priorities, so under journald the "<N>" prefix carries the level. */
typedef enum {
        LOG_LEVEL_ERROR = 3,
        LOG_LEVEL_WARN = 4,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
} LogLevel;

void log_set_level(LogLevel level);
LogLevel log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, LogLevel *ret);
/* Writes "<N>" prefixes (systemd/journald) instead of timestamps; set when JOURNAL_STREAM is set. */
void log_set_journal(bool on);

/* ctx: "[pipeline=orders source=pg_main]" or NULL. One line to stderr, thread-safe. */
void log_msg(LogLevel level, const char *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(ctx, ...) log_msg(LOG_LEVEL_ERROR, ctx, __VA_ARGS__)
#define log_warn(ctx, ...) log_msg(LOG_LEVEL_WARN, ctx, __VA_ARGS__)
#define log_info(ctx, ...) log_msg(LOG_LEVEL_INFO, ctx, __VA_ARGS__)
#define log_debug(ctx, ...) log_msg(LOG_LEVEL_DEBUG, ctx, __VA_ARGS__)
