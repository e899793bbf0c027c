/* Leadership of a pipeline among instances that run the same conf (issue #16): the decisions on a
 * lease row kept in the sink (cdcsync.leases), as pure functions over what the server answered,
 * and the SQL that reads and writes it. Times come from the sink server's clock (now()), never
 * from this host's, so instances' clocks do not matter. Plain values, no I/O. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define LEASE_HOLDER_MAX 128 /* bytes of an instance name, with its NUL */

/* The lease row of one pipeline as the sink server answered LEASE_SQL_READ. */
typedef struct {
        bool exists;                   /* false: no row yet for the pipeline */
        char holder[LEASE_HOLDER_MAX]; /* instance that holds or last held it */
        int64_t generation;            /* fencing token, bumped at every takeover */
        int64_t expires_in_ms;         /* expires_at - now() on the server; <= 0: expired */
        int holder_session;            /* pg_backend_pid() of the holder's sink session; 0: none */
} LeaseRow;

typedef enum {
        LEASE_CREATE,    /* no row: insert it, generation 1 (ON CONFLICT DO NOTHING, then read again) */
        LEASE_TAKE,      /* expired or released: bump the generation where expires_at < now() */
        LEASE_RENEW,     /* ours, same generation: push expires_at on */
        LEASE_WAIT,      /* another instance holds a live lease: stay standby, poll again */
        LEASE_STEP_DOWN, /* we thought we led, but the generation moved on: stop applying at once */
} LeaseAction;

/* What an instance named `instance` does next with the pipeline's lease. `held` is the generation
 * it holds (0: none, a standby). A row whose generation differs from a held one means another
 * instance took over, whatever the holder name says (the same name restarted, a clone). */
LeaseAction lease_decide(const LeaseRow *row, const char *instance, int64_t held);

/* A released lease (graceful hand-over, LEASE_SQL_RELEASE): expired with no holder session. An
 * expired lease whose holder stopped renewing keeps the session its last batch recorded. */
bool lease_released(const LeaseRow *row);

/* What one lease step saw and did, for the log and /status. */
typedef struct {
        char holder[LEASE_HOLDER_MAX];    /* who holds the lease after the step; "": not known */
        bool took;                        /* this step won the lease (created it, or took it over)... */
        char took_from[LEASE_HOLDER_MAX]; /* ...from this holder ("": it created the row)... */
        bool released;                    /* ...who had released it (graceful hand-over), not let it expire */
} LeaseSeen;

/* Fills *ret from the row read before the step, the action taken and the generation held after
 * it (0: none; a CREATE or TAKE that lost the race to another instance holds none). */
void lease_seen(const LeaseRow *row, LeaseAction a, const char *instance, int64_t now_held, LeaseSeen *ret);

/* Whether a batch may commit: the row locked in the batch's own transaction
 * (LEASE_SQL_FENCE) still carries the generation the leader holds. A missing row fails too. */
bool lease_fence_ok(int64_t held, bool row_found, int64_t row_generation);

/* The leader renews every takeover_s / 3 so that two renewals can fail before it expires; each
 * renewal is bounded by a deadline shorter than that period. Milliseconds, at least 100. */
int lease_renew_interval_ms(int takeover_s);
int lease_renew_deadline_ms(int takeover_s);

/* The leader's own view: when its last renewal was confirmed at `renewed_ms` (monotonic) and it is
 * now `now_ms`, whether it must stop applying on its own, before the lease can have expired on the
 * server: one renewal period of margin under takeover_s. A cut-off leader thus stops before a
 * standby can take over, even when it cannot reach the sink to learn so. */
bool lease_self_expired(int64_t renewed_ms, int64_t now_ms, int takeover_s);

/* Parses PostgreSQL's "replication slot \"NAME\" is active for PID N" (the slot is still used by
 * another walsender: the old leader's). Returns the PID, or 0 when msg is not that error. */
int lease_slot_active_pid(const char *msg);

/* SQL, parameters only. $1 pipeline throughout. */
#define LEASE_SQL_CREATE_TABLE                                                                                         \
        "CREATE TABLE IF NOT EXISTS cdcsync.leases (pipeline text PRIMARY KEY, holder text NOT NULL, "                 \
        "generation bigint NOT NULL, expires_at timestamptz NOT NULL, holder_session integer NOT NULL)"
#define LEASE_SQL_READ                                                                                                 \
        "SELECT holder, generation::text, (extract(epoch FROM expires_at - now()) * 1000)::bigint::text, "             \
        "holder_session::text FROM cdcsync.leases WHERE pipeline = $1"
/* $2 instance, $3 takeover_s */
#define LEASE_SQL_CREATE                                                                                               \
        "INSERT INTO cdcsync.leases (pipeline, holder, generation, expires_at, holder_session) VALUES ($1, $2, 1, "    \
        "now() + $3::int * interval '1 second', pg_backend_pid()) ON CONFLICT (pipeline) DO NOTHING "                  \
        "RETURNING generation::text"
/* $2 instance, $3 takeover_s, $4 generation read: only one taker wins */
#define LEASE_SQL_TAKE                                                                                                 \
        "UPDATE cdcsync.leases SET holder = $2, generation = generation + 1, expires_at = now() + $3::int * "          \
        "interval '1 second', holder_session = pg_backend_pid() WHERE pipeline = $1 AND generation = $4 AND "          \
        "expires_at < now() RETURNING generation::text"
/* $2 generation held, $3 takeover_s: must touch one row */
#define LEASE_SQL_RENEW                                                                                                \
        "UPDATE cdcsync.leases SET expires_at = now() + $3::int * interval '1 second' WHERE pipeline = $1 AND "        \
        "generation = $2"
/* $2 generation held: graceful hand-over after the last commit; no session is left to end */
#define LEASE_SQL_RELEASE                                                                                              \
        "UPDATE cdcsync.leases SET expires_at = now(), holder_session = 0 WHERE pipeline = $1 AND generation = $2"
/* Every sink session of the leader (apply workers too) is listed here before it applies anything,
 * so that a taker can end each one: a frozen leader's worker may hold row locks in an open
 * transaction that the new leader's batches would wait for. A row names the session by PID and
 * start time (a PID alone may be reused), with the generation it was registered under. */
#define LEASE_SQL_CREATE_SESSIONS_TABLE                                                                                \
        "CREATE TABLE IF NOT EXISTS cdcsync.lease_sessions (pipeline text NOT NULL, session integer NOT NULL, "        \
        "started timestamptz NOT NULL, generation bigint NOT NULL, PRIMARY KEY (pipeline, session))"
/* Forgets the sessions of the pipeline that have ended. */
#define LEASE_SQL_SESSIONS_PRUNE                                                                                       \
        "DELETE FROM cdcsync.lease_sessions s WHERE s.pipeline = $1 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a " \
        "WHERE a.pid = s.session AND a.backend_start = s.started)"
/* $2 generation held: lists this session, only while the generation is still ours. FOR SHARE
 * waits for a taker's UPDATE of the row and then sees its new generation: a session registered
 * after a takeover registers nothing (no row returned); one registered before it is ended by the
 * taker (LEASE_SQL_SESSIONS_END after its take). */
#define LEASE_SQL_SESSION_REGISTER                                                                                     \
        "INSERT INTO cdcsync.lease_sessions (pipeline, session, started, generation) SELECT l.pipeline, "              \
        "pg_backend_pid(), (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()), "          \
        "l.generation FROM cdcsync.leases l WHERE l.pipeline = $1 AND l.generation = $2 FOR SHARE ON CONFLICT "        \
        "(pipeline, session) DO UPDATE SET started = EXCLUDED.started, generation = EXCLUDED.generation RETURNING "    \
        "generation::text"
/* $2: ends every listed session (still the same backend) registered under a generation below it,
 * except the caller's own; returns how many. */
#define LEASE_SQL_SESSIONS_END                                                                                         \
        "SELECT count(pg_terminate_backend(a.pid))::text FROM cdcsync.lease_sessions s JOIN pg_stat_activity a ON "    \
        "a.pid = s.session AND a.backend_start = s.started WHERE s.pipeline = $1 AND s.generation < $2::bigint AND "   \
        "a.pid <> pg_backend_pid()"
/* $2: forgets the sessions registered under a generation below it (ended by the taker). */
#define LEASE_SQL_SESSIONS_FORGET "DELETE FROM cdcsync.lease_sessions WHERE pipeline = $1 AND generation < $2::bigint"
/* In the batch's transaction, just before COMMIT; $2 generation held. Locks the row until the
 * commit (a taker's UPDATE waits for it, or ends this session, whose PID it records) and returns
 * one row only while the generation is still ours. */
#define LEASE_SQL_FENCE                                                                                                \
        "UPDATE cdcsync.leases SET holder_session = pg_backend_pid() WHERE pipeline = $1 AND generation = $2 "         \
        "RETURNING generation::text"
