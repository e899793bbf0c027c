/* Logging to stderr: timestamped lines on a terminal, "<N>"-prefixed lines under journald. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cdcsync/log.h"

static atomic_int log_level = LOG_LEVEL_INFO;
static atomic_bool log_journal = false;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(LogLevel level) {
        atomic_store(&log_level, level);
}

LogLevel log_get_level(void) {
        return (LogLevel)atomic_load(&log_level);
}

void log_set_journal(bool on) {
        atomic_store(&log_journal, on);
}

int log_level_parse(const char *s, LogLevel *ret) {
        static const struct {
                const char *name;
                LogLevel level;
        } levels[] = {
                {"error", LOG_LEVEL_ERROR},
                {"warn", LOG_LEVEL_WARN},
                {"info", LOG_LEVEL_INFO},
                {"debug", LOG_LEVEL_DEBUG},
        };
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
                if (strcmp(s, levels[i].name) == 0) {
                        *ret = levels[i].level;
                        return 0;
                }
        return -EINVAL;
}

static const char *level_word(LogLevel level) {
        switch (level) {
        case LOG_LEVEL_ERROR: return "ERROR";
        case LOG_LEVEL_WARN: return "WARN";
        case LOG_LEVEL_INFO: return "INFO";
        default: return "DEBUG";
        }
}

void log_msg(LogLevel level, const char *ctx, const char *fmt, ...) {
        if ((int)level > atomic_load(&log_level))
                return;
        char msg[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* One line per event: a newline inside a message (a server's multi-line error, libpq's
         * "...\n\tIs the server running") is folded, with the indentation after it, into one
         * space; tabs become spaces so the line reads the same in every viewer. */
        size_t n = 0;
        for (const char *p = msg; *p; p++) {
                bool blank = *p == '\n' || *p == '\r' || *p == '\t';
                if (blank && n > 0 && msg[n - 1] == ' ')
                        continue;
                msg[n++] = blank ? ' ' : *p;
        }
        msg[n] = '\0';
        while (n > 0 && msg[n - 1] == ' ')
                msg[--n] = '\0';

        pthread_mutex_lock(&log_lock);
        if (atomic_load(&log_journal)) {
                fprintf(stderr, "<%d>%s%s%s\n", (int)level, ctx ? ctx : "", ctx ? " " : "", msg);
        } else {
                struct timespec ts;
                struct tm tm;
                char when[32];
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
                fprintf(stderr, "%s.%03ldZ %-5s %s%s%s\n", when, ts.tv_nsec / 1000000, level_word(level),
                        ctx ? ctx : "", ctx ? " " : "", msg);
        }
        fflush(stderr);
        pthread_mutex_unlock(&log_lock);
}
