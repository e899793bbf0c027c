/* The wall clock as the service records times: usec since the Unix epoch. */
#pragma once

#include <stdint.h>

/* CLOCK_REALTIME in usec since the Unix epoch. */
int64_t now_usec(void);
