/* The wall clock as the service records times. */
#include <time.h>

#include "cdcsync/now.h"

int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
