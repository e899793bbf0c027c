/* The wall clock as the service records times: usec since the Unix epoch. */
#pragma once

#include <stdint.h>
#include <time.h>

/* CLOCK_REALTIME in usec since the Unix epoch. */
int64_t now_usec(void);

/* The time ms from now on clock (CLOCK_MONOTONIC or CLOCK_REALTIME, whichever the condition
 * variable waits on): a deadline for pthread_cond_timedwait. */
struct timespec now_after_ms(clockid_t clock, int ms);
