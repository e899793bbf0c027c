/* A thin wrapper over libsystemd's sd_notify, so the rest of the engine never includes it. */
#include <string.h>
#include <systemd/sd-daemon.h>

#include "cdcsync/notify.h"

/* sd_notify's messages are newline-separated assignments: a newline inside a status would start
 * a new (bogus) assignment, so only its first line is sent. */
static int line_len(const char *s) {
        size_t n = strcspn(s, "\r\n");
        return n > 1024 ? 1024 : (int)n;
}

int notify_ready(const char *status_line) {
        if (!status_line)
                return sd_notify(0, "READY=1");
        return sd_notifyf(0, "READY=1\nSTATUS=%.*s", line_len(status_line), status_line);
}

int notify_status(const char *line) {
        return sd_notifyf(0, "STATUS=%.*s", line_len(line), line);
}

int notify_stopping(void) {
        return sd_notify(0, "STOPPING=1");
}

int notify_watchdog(void) {
        return sd_notify(0, "WATCHDOG=1");
}

bool notify_watchdog_enabled(uint64_t *ret_usec) {
        uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) <= 0)
                return false;
        if (ret_usec)
                *ret_usec = usec;
        return true;
}
