/* How far the sink is behind the source, from the source's own view: observations of where the
 * source's log ended at what time (a probe of the server, its stream's keepalives) against the
 * position the sink holds. A plain value, not thread-safe: its owner locks around it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cdcsync/change.h"

#define LAG_OBSERVATIONS 64
/* A source silent longer than this (no probe answer, no keepalive) is a gap: a change seen after
 * it may have been made at any time since the last contact, so it counts from that contact. */
#define LAG_GAP_USEC (5 * 1000000LL)

typedef struct {
        Position pos;       /* the source's log end */
        int64_t first_seen; /* usec, wall clock: the source had pos at least since */
        int64_t last_seen;  /* usec: the source's end was still pos then */
} LagObservation;

typedef struct {
        LagObservation obs[LAG_OBSERVATIONS]; /* oldest first, positions increasing */
        int n;
        Position applied; /* what the sink holds */
        bool have_applied;
        int64_t contact;     /* usec: the last time the source answered */
        uint64_t bytes_hint; /* bytes from applied to the newest end by the source's own count, when
                              * positions cannot be subtracted (MySQL: another binlog file); UINT64_MAX: unknown */
        /* A source whose positions are not its log's (Kafka) tells its backlog instead. */
        bool have_backlog;
        int64_t backlog_since;  /* usec: it has had unread data at least since; 0: none */
        int64_t backlog_synced; /* usec: it had read everything the source held then; 0: never */
        uint64_t backlog;       /* in the source's unit (Kafka: messages) */
} LagTracker;

typedef struct {
        int64_t behind_since; /* usec: the source has had a change the sink lacks at least since then; 0: none known */
        int64_t synced_at;    /* usec: the sink held everything the source had then; 0: unknown */
        int64_t contact;      /* usec: the last time the source answered; 0: never */
        uint64_t bytes;       /* source log bytes the sink lacks (0: none or unknown) */
        Position end;         /* the newest end seen (zero: none) */
} LagView;

/* An observation: the source's log ended at `end` at wall clock `now` (usec). bytes_hint: bytes
 * from the applied position to end by the source's count, UINT64_MAX when not known. A position
 * below one already seen only counts as contact. */
void lag_note_source(LagTracker *t, Position end, int64_t now, uint64_t bytes_hint);
/* For a source whose positions are not its log's (Kafka): at wall clock now it has `unread` not
 * yet handed on (0: it read all the source holds), and `behind` (lag_bytes, in its own unit)
 * beyond what the sink made durable. */
void lag_note_backlog(LagTracker *t, uint64_t unread, uint64_t behind, int64_t now);
/* The sink now holds everything up to applied. */
void lag_note_applied(LagTracker *t, Position applied);
void lag_view(const LagTracker *t, LagView *ret);
