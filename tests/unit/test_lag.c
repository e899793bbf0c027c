/* Lag against the source's own view: observations of the source's log end over time against
 * the position the sink holds (lag.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/lag.h"

#define S 1000000LL /* usec per second */

static Position at(uint64_t lo) {
        return (Position){0, lo};
}

static LagView view(const LagTracker *t) {
        LagView v;
        lag_view(t, &v);
        return v;
}

/* Caught up, then the source moves on: behind since the first sighting, bytes from the sink's
 * position to the newest end; once applied, in sync as of the last sighting. */
static void test_behind_and_caught_up(void **state) {
        (void)state;
        LagTracker t = {0};
        LagView v = view(&t);
        assert_int_equal(v.behind_since, 0);
        assert_int_equal(v.synced_at, 0);

        lag_note_applied(&t, at(100));
        lag_note_source(&t, at(100), 10 * S, UINT64_MAX);
        lag_note_source(&t, at(100), 11 * S, UINT64_MAX);
        v = view(&t);
        assert_int_equal(v.behind_since, 0);
        assert_int_equal(v.synced_at, 11 * S); /* unchanged end: still in sync then */
        assert_int_equal(v.contact, 11 * S);
        assert_int_equal(v.bytes, 0);

        lag_note_source(&t, at(150), 12 * S, UINT64_MAX);
        lag_note_source(&t, at(180), 13 * S, UINT64_MAX);
        v = view(&t);
        assert_int_equal(v.behind_since, 12 * S);
        assert_int_equal(v.synced_at, 11 * S);
        assert_int_equal(v.bytes, 80);
        assert_int_equal(v.end.lo, 180);

        lag_note_applied(&t, at(160)); /* past the first sighting, not the second */
        v = view(&t);
        assert_int_equal(v.behind_since, 13 * S);
        assert_int_equal(v.synced_at, 12 * S);
        assert_int_equal(v.bytes, 20);

        lag_note_applied(&t, at(180));
        lag_note_applied(&t, at(170)); /* never backwards */
        v = view(&t);
        assert_int_equal(v.behind_since, 0);
        assert_int_equal(v.synced_at, 13 * S);
        assert_int_equal(v.bytes, 0);
}

/* A change first seen after a silence may be as old as the last contact: it counts from there. */
static void test_gap_counts_from_last_contact(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_applied(&t, at(100));
        lag_note_source(&t, at(100), 10 * S, UINT64_MAX);
        lag_note_source(&t, at(300), 10 * S + LAG_GAP_USEC + 1, UINT64_MAX);
        LagView v = view(&t);
        assert_int_equal(v.behind_since, 10 * S);
        /* without a gap: from the sighting itself */
        lag_note_source(&t, at(400), 17 * S, UINT64_MAX);
        lag_note_applied(&t, at(300));
        assert_int_equal(view(&t).behind_since, 17 * S);
}

/* A position below the newest (a stream's keepalive behind a probe) is contact, not news. */
static void test_older_position_is_contact_only(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_applied(&t, at(100));
        lag_note_source(&t, at(200), 10 * S, UINT64_MAX);
        lag_note_source(&t, at(150), 11 * S, UINT64_MAX);
        LagView v = view(&t);
        assert_int_equal(v.contact, 11 * S);
        assert_int_equal(v.end.lo, 200);
        assert_int_equal(v.behind_since, 10 * S);
        assert_int_equal(v.bytes, 100);
        lag_note_source(&t, (Position){0, 0}, 12 * S, UINT64_MAX); /* no position: ignored */
        assert_int_equal(view(&t).contact, 11 * S);
}

/* Across log files (MySQL) the source's own count of bytes stands in for the subtraction. */
static void test_other_file_uses_hint(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_applied(&t, (Position){3, 5000});
        lag_note_source(&t, (Position){4, 200}, 10 * S, 7000);
        assert_int_equal(view(&t).bytes, 7000);
        lag_note_source(&t, (Position){4, 300}, 11 * S, UINT64_MAX); /* a keepalive: keeps the hint */
        assert_int_equal(view(&t).bytes, 7000);
        lag_note_applied(&t, (Position){4, 250});
        assert_int_equal(view(&t).bytes, 50);
}

/* Nothing known of the sink yet: whatever the source holds counts as behind, bytes unknown. */
static void test_no_applied_position(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_source(&t, at(500), 10 * S, UINT64_MAX);
        LagView v = view(&t);
        assert_int_equal(v.behind_since, 10 * S);
        assert_int_equal(v.bytes, 0);
}

/* Many sightings while behind: the table stays bounded, the oldest sighting (what lag counts
 * from) and the newest end are kept. */
static void test_bounded(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_applied(&t, at(100));
        for (int i = 1; i <= 1000; i++)
                lag_note_source(&t, at(100 + (uint64_t)i), (10 + i) * S, UINT64_MAX);
        assert_true(t.n <= LAG_OBSERVATIONS);
        for (int i = 1; i < t.n; i++)
                assert_true(position_cmp(t.obs[i - 1].pos, t.obs[i].pos) < 0);
        LagView v = view(&t);
        assert_int_equal(v.behind_since, 11 * S);
        assert_int_equal(v.end.lo, 1100);
        assert_int_equal(v.bytes, 1000);
        lag_note_applied(&t, at(600));
        v = view(&t);
        /* at or after the true first sighting of 601 (511 s): a later, still valid bound */
        assert_true(v.behind_since >= 511 * S && v.behind_since <= 1010 * S);
        assert_true(v.synced_at <= 511 * S);
}

/* A Kafka source tells its backlog: behind since unread data was first reported, in sync as of
 * the last report without any; lag_bytes is what the source holds beyond the durable offsets. */
static void test_backlog(void **state) {
        (void)state;
        LagTracker t = {0};
        lag_note_backlog(&t, 0, 0, 10 * S);
        LagView v = view(&t);
        assert_int_equal(v.behind_since, 0);
        assert_int_equal(v.synced_at, 10 * S);
        assert_int_equal(v.contact, 10 * S);
        lag_note_backlog(&t, 5, 7, 11 * S);
        lag_note_backlog(&t, 3, 9, 12 * S);
        v = view(&t);
        assert_int_equal(v.behind_since, 11 * S);
        assert_int_equal(v.synced_at, 10 * S);
        assert_int_equal(v.bytes, 9);
        lag_note_backlog(&t, 0, 2, 13 * S); /* all read, two not committed yet */
        v = view(&t);
        assert_int_equal(v.behind_since, 0);
        assert_int_equal(v.synced_at, 13 * S);
        assert_int_equal(v.bytes, 2);
        /* after a silence: from the last contact */
        lag_note_backlog(&t, 4, 4, 13 * S + LAG_GAP_USEC + 1);
        assert_int_equal(view(&t).behind_since, 13 * S);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_behind_and_caught_up),
                cmocka_unit_test(test_gap_counts_from_last_contact),
                cmocka_unit_test(test_older_position_is_contact_only),
                cmocka_unit_test(test_other_file_uses_hint),
                cmocka_unit_test(test_no_applied_position),
                cmocka_unit_test(test_bounded),
                cmocka_unit_test(test_backlog),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
