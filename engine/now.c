/* The wall clock as the service records times. */
#include <time.h>

#include "cdcsync/now.h"

int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct timespec now_after_ms(clockid_t clock, int ms) {
        struct timespec until;
        clock_gettime(clock, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        return until;
}
