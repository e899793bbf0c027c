/* Sync lag measured against where the source is now: observations of the source's log end. */
#include <string.h>

#include "cdcsync/lag.h"

/* Entries the sink already holds are needed only for the newest of them (when it was last seen
 * unchanged is when the sink was last known to be in sync). */
static void drop_applied(LagTracker *t) {
        if (!t->have_applied)
                return;
        int k = -1;
        for (int i = 0; i < t->n && position_cmp(t->obs[i].pos, t->applied) <= 0; i++)
                k = i;
        if (k > 0) {
                memmove(&t->obs[0], &t->obs[k], (size_t)(t->n - k) * sizeof(t->obs[0]));
                t->n -= k;
        }
}

/* Full: every other entry between the first and the last goes. What is lost is resolution (a
 * later first_seen, an earlier last_seen for some positions), never the bound's direction. */
static void thin(LagTracker *t) {
        int j = 1;
        for (int i = 1; i < t->n - 1; i++)
                if (i % 2 == 0)
                        t->obs[j++] = t->obs[i];
        t->obs[j++] = t->obs[t->n - 1];
        t->n = j;
}

void lag_note_source(LagTracker *t, Position end, int64_t now, uint64_t bytes_hint) {
        if (position_is_zero(end))
                return;
        int64_t prev_contact = t->contact;
        t->contact = now;
        LagObservation *last = t->n ? &t->obs[t->n - 1] : NULL;
        if (last && position_cmp(end, last->pos) < 0)
                return; /* older news (a stream's keepalive behind a probe): the end was already further */
        if (bytes_hint != UINT64_MAX)
                t->bytes_hint = bytes_hint;
        if (last && position_cmp(end, last->pos) == 0) {
                last->last_seen = now;
                return;
        }
        if (t->n == LAG_OBSERVATIONS)
                thin(t);
        /* After a silence the change may be as old as the last contact. */
        int64_t first = prev_contact && now - prev_contact > LAG_GAP_USEC ? prev_contact : now;
        t->obs[t->n++] = (LagObservation){.pos = end, .first_seen = first, .last_seen = now};
        drop_applied(t);
}

void lag_note_backlog(LagTracker *t, uint64_t unread, uint64_t behind, int64_t now) {
        int64_t prev_contact = t->contact;
        t->contact = now;
        t->have_backlog = true;
        t->backlog = behind;
        if (!unread) {
                t->backlog_since = 0;
                t->backlog_synced = now;
        } else if (!t->backlog_since)
                t->backlog_since = prev_contact && now - prev_contact > LAG_GAP_USEC ? prev_contact : now;
}

void lag_note_applied(LagTracker *t, Position applied) {
        if (t->have_applied && position_cmp(applied, t->applied) <= 0)
                return;
        t->applied = applied;
        t->have_applied = true;
        drop_applied(t);
}

void lag_view(const LagTracker *t, LagView *ret) {
        LagView v = {.contact = t->contact};
        for (int i = 0; i < t->n; i++) {
                if (t->have_applied && position_cmp(t->obs[i].pos, t->applied) <= 0) {
                        v.synced_at = t->obs[i].last_seen;
                } else {
                        v.behind_since = t->obs[i].first_seen;
                        break;
                }
        }
        if (t->n) {
                Position end = t->obs[t->n - 1].pos;
                v.end = end;
                if (v.behind_since && t->have_applied) {
                        if (end.hi == t->applied.hi)
                                v.bytes = end.lo - t->applied.lo;
                        else if (t->bytes_hint != UINT64_MAX)
                                v.bytes = t->bytes_hint;
                }
        }
        if (t->have_backlog) {
                v.bytes = t->backlog;
                if (t->backlog_synced > v.synced_at)
                        v.synced_at = t->backlog_synced;
                if (t->backlog_since && (!v.behind_since || t->backlog_since < v.behind_since))
                        v.behind_since = t->backlog_since;
        }
        *ret = v;
}
