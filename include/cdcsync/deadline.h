/* A bound on blocking calls into a client library that has no timeout of its own (libpq): while
 * a guard is armed, its own thread shuts the connection's socket down once the deadline passes,
 * so the blocked call returns with an error instead of waiting forever for a peer that stopped
 * answering (a frozen network path, a paused server). The connection is unusable afterwards:
 * the caller reports the timeout and reconnects. Also: TCP keepalives on any socket. */
#pragma once

#include <stdbool.h>

typedef struct Deadline Deadline;

/* A disarmed guard without socket; its thread starts on the first arm. Returns 0 or -errno. */
int deadline_new(Deadline **ret);
/* Disarms, stops its thread, frees. Accepts NULL, returns NULL. */
Deadline *deadline_free(Deadline *d);
/* The socket shut down when the deadline passes; -1: none (a fire then only marks the guard).
 * Set it after connecting, and to -1 before the socket is closed: once this returns, the guard
 * no longer touches the old socket. Setting a new socket clears fired. */
void deadline_set_fd(Deadline *d, int fd);
/* Arms, or re-arms (a call that made progress): the deadline becomes now + timeout_ms. */
void deadline_arm(Deadline *d, int timeout_ms);
/* Disarms; returns whether the deadline passed (the socket was shut down) since the socket was set. */
bool deadline_disarm(Deadline *d);
/* Whether the deadline passed since the socket was set. */
bool deadline_fired(Deadline *d);

/* Turns on TCP keepalives on fd so that a peer gone without FIN/RST (a dead host, a dropped NAT
 * entry) is noticed within about timeout_s, also while nothing is being sent (probes after
 * timeout_s / 3 idle, every timeout_s / 9) or when sent data stays unacknowledged
 * (TCP_USER_TIMEOUT). Returns 0 or -errno. */
int deadline_tcp_keepalive(int fd, int timeout_s);
