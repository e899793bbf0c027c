/* Lease and fencing decisions of a pipeline's leadership (lease.h). */
#include "cdcsync/lease.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

LeaseAction lease_decide(const LeaseRow *row, const char *instance, int64_t held) {
        if (!row->exists)
                return held > 0 ? LEASE_STEP_DOWN : LEASE_CREATE;
        if (held > 0) {
                if (row->generation != held || strcmp(row->holder, instance) != 0)
                        return LEASE_STEP_DOWN;
                /* Ours even when it has just expired: no one took it, as the generation shows;
                 * the renewal's WHERE generation = held keeps that true on the server. */
                return LEASE_RENEW;
        }
        if (row->expires_in_ms <= 0)
                return LEASE_TAKE;
        return LEASE_WAIT;
}

bool lease_released(const LeaseRow *row) {
        return row->exists && row->expires_in_ms <= 0 && row->holder_session == 0;
}

static void copy_name(char dst[LEASE_HOLDER_MAX], const char *src) {
        size_t n = strnlen(src, LEASE_HOLDER_MAX - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

void lease_seen(const LeaseRow *row, LeaseAction a, const char *instance, int64_t now_held, LeaseSeen *ret) {
        memset(ret, 0, sizeof(*ret));
        if (now_held > 0) {
                copy_name(ret->holder, instance);
                if (a == LEASE_CREATE || a == LEASE_TAKE) {
                        ret->took = true;
                        if (a == LEASE_TAKE) {
                                copy_name(ret->took_from, row->holder);
                                ret->released = lease_released(row);
                        }
                }
        } else if ((a == LEASE_WAIT || a == LEASE_STEP_DOWN) && row->exists) {
                copy_name(ret->holder, row->holder);
        }
}

bool lease_fence_ok(int64_t held, bool row_found, int64_t row_generation) {
        return held > 0 && row_found && row_generation == held;
}

int lease_renew_interval_ms(int takeover_s) {
        int64_t ms = (int64_t)takeover_s * 1000 / 3;
        if (ms < 100)
                ms = 100;
        return ms > INT_MAX ? INT_MAX : (int)ms;
}

int lease_renew_deadline_ms(int takeover_s) {
        int ms = lease_renew_interval_ms(takeover_s) * 9 / 10;
        return ms < 100 ? 100 : ms;
}

bool lease_self_expired(int64_t renewed_ms, int64_t now_ms, int takeover_s) {
        int64_t margin = lease_renew_interval_ms(takeover_s);
        int64_t limit = (int64_t)takeover_s * 1000 - margin;
        if (limit < margin)
                limit = margin;
        return now_ms - renewed_ms >= limit;
}

int lease_slot_active_pid(const char *msg) {
        static const char pre[] = "replication slot \"";
        static const char mid[] = "\" is active for PID ";
        if (!msg)
                return 0;
        const char *p = strstr(msg, pre);
        if (!p)
                return 0;
        const char *m = strstr(p + sizeof(pre) - 1, mid);
        if (!m)
                return 0;
        const char *digits = m + sizeof(mid) - 1;
        if (*digits < '0' || *digits > '9')
                return 0;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (errno != 0 || pid <= 0 || pid > INT_MAX)
                return 0;
        return (int)pid;
}
