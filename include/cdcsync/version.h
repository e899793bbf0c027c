/* Row versions and the conflict resolver that decides whether an incoming change applies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/conf.h"
#include "cdcsync/vclock.h"

/* The version of one row as last applied. After a conflict the stored version is a merge: vv is
 * the join of both vectors (so the next local write supersedes both sides) while ts, origin, seq,
 * deleted and wvv are the winner's. */
typedef struct {
        VClock vv;                    /* the row's version vector (after a conflict: the join) */
        VClock wvv;                   /* the winning write's own vector; equals vv unless merged */
        int64_t ts;                   /* usec since epoch: source commit time of the write */
        char origin[VCLOCK_NODE_MAX]; /* connector that wrote it */
        uint32_t seq;                 /* change index within its source transaction */
        bool deleted;                 /* tombstone */
} Version;

/* Bound of version_encode's output. */
#define VERSION_ENCODED_MAX (2 + 2 * VCLOCK_ENCODED_MAX + 8 + 1 + (VCLOCK_NODE_MAX - 1) + 5)

typedef enum {
        VERSION_APPLY = 0,      /* causally newer */
        VERSION_SKIP,           /* older or equal: a replay or an echo */
        VERSION_CONFLICT_APPLY, /* concurrent; the resolution picked the incoming version */
        VERSION_CONFLICT_SKIP,  /* concurrent; the resolution kept the stored version */
} VersionVerdict;

const char *version_verdict_name(VersionVerdict v);

/* Builds the version of a new write by origin on top of prev (NULL: the row had none):
 * vv = prev's vector with origin's counter set to counter, ts = max(commit_ts, prev->ts + 1).
 * The timestamp is kept strictly increasing along causality on purpose: the resolver's
 * "causally newer wins, concurrent → later ts wins" is only convergent when a causal successor
 * never carries an older time than what it overwrote (clock skew between nodes would break it).
 * Returns 0, -EINVAL (bad origin, counter not above prev's counter of origin), -E2BIG. */
int version_next(const Version *prev, const char *origin, uint64_t counter, int64_t commit_ts, uint32_t seq,
                 bool deleted, Version *ret);

/* Binary form for the state store. Returns the length or -ENOBUFS. */
int version_encode(const Version *v, uint8_t *buf, size_t size);
/* Decodes exactly len bytes; -EBADMSG on truncated, trailing, non-canonical (what decodes
 * re-encodes to the same bytes) or invalid input. */
int version_decode(const uint8_t *buf, size_t len, Version *ret);
bool version_equal(const Version *a, const Version *b);

/* Decides what to do with incoming given the stored version (NULL: none stored → APPLY).
 * policy timestamp: last writer wins by ts, ties by priority order, then origin name (then the
 * writes' vectors and seq, so the order is total).
 * policy version_vector: causally newer → APPLY, older or equal → SKIP; concurrent → settled by
 * resolve: timestamp as above, or priority: the write whose vector is larger when the counters
 * are compared in priority order (listed connectors first, then the others by name) wins — the
 * write that saw more of the highest-priority connector's writes; this order extends causality,
 * which is what keeps it convergent.
 * policy none: APPLY unless causally older or equal (a replay); concurrent → CONFLICT_APPLY.
 * For concurrent versions the outcome depends only on the two versions, not on which one is
 * stored, so every node settles a conflict the same way.
 * priority: connector names, best first (npriority entries, may be 0).
 * ret_merged (may be NULL): what to store afterwards, written on every verdict; on CONFLICT_SKIP
 * it differs from stored (its vector now covers incoming) and must still be stored.
 * ret_resolution (may be NULL): metrics label of a conflict ("timestamp", "priority", "none"),
 * NULL for APPLY and SKIP.
 * Returns a VersionVerdict (>= 0) or -E2BIG when the merged vector would be too large. */
int version_decide(const Version *stored, const Version *incoming, ConflictPolicy policy, ResolvePolicy resolve,
                   const char *const *priority, int npriority, Version *ret_merged, const char **ret_resolution);
