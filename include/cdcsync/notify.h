/* systemd readiness protocol (sd_notify): READY, STATUS, WATCHDOG, STOPPING. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Each returns > 0 when the message was sent, 0 when not running under systemd (no
 * NOTIFY_SOCKET), or -errno. A status line longer than one line is cut at its first newline. */
int notify_ready(const char *status_line); /* "READY=1" plus "STATUS=..." when status_line != NULL */
int notify_status(const char *line);
int notify_stopping(void);
int notify_watchdog(void);
/* True when systemd expects WATCHDOG=1 pings from this process; *ret_usec (may be NULL) gets the
 * watchdog timeout: ping at half of it. */
bool notify_watchdog_enabled(uint64_t *ret_usec);
