/* Lease and fencing decisions of a pipeline's leadership (lease.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/lease.h"

static LeaseRow row(const char *holder, int64_t generation, int64_t expires_in_ms) {
        LeaseRow r = {.exists = true, .generation = generation, .expires_in_ms = expires_in_ms, .holder_session = 42};
        snprintf(r.holder, sizeof(r.holder), "%s", holder);
        return r;
}

/* No row: a standby creates it; a leader whose row vanished steps down rather than recreate it. */
static void test_no_row(void **state) {
        (void)state;
        LeaseRow r = {0};
        assert_int_equal(lease_decide(&r, "a", 0), LEASE_CREATE);
        assert_int_equal(lease_decide(&r, "a", 3), LEASE_STEP_DOWN);
}

/* A standby waits while another holds a live lease, takes it once expired or released (0 ms). */
static void test_standby(void **state) {
        (void)state;
        LeaseRow live = row("b", 5, 2000), gone = row("b", 5, -1), released = row("b", 5, 0);
        assert_int_equal(lease_decide(&live, "a", 0), LEASE_WAIT);
        assert_int_equal(lease_decide(&gone, "a", 0), LEASE_TAKE);
        assert_int_equal(lease_decide(&released, "a", 0), LEASE_TAKE);
        /* its own name on a live lease: a previous run of this instance, killed; wait for expiry */
        LeaseRow mine = row("a", 5, 2000);
        assert_int_equal(lease_decide(&mine, "a", 0), LEASE_WAIT);
}

/* A leader renews its own generation, also just past expiry when no one took it; a moved
 * generation or another holder deposes it. */
static void test_leader(void **state) {
        (void)state;
        LeaseRow ours = row("a", 5, 1000), late = row("a", 5, -500), taken = row("b", 6, 3000),
                 retaken = row("a", 6, 3000);
        assert_int_equal(lease_decide(&ours, "a", 5), LEASE_RENEW);
        assert_int_equal(lease_decide(&late, "a", 5), LEASE_RENEW);
        assert_int_equal(lease_decide(&taken, "a", 5), LEASE_STEP_DOWN);
        assert_int_equal(lease_decide(&retaken, "a", 5), LEASE_STEP_DOWN);
}

/* The commit fence: only the generation held, on a row that exists, lets a batch commit. */
static void test_fence(void **state) {
        (void)state;
        assert_true(lease_fence_ok(5, true, 5));
        assert_false(lease_fence_ok(5, true, 6));
        assert_false(lease_fence_ok(5, false, 0));
        assert_false(lease_fence_ok(0, true, 0));
}

/* Renewal period and deadline, and the leader's own stop before the server-side expiry. */
static void test_timing(void **state) {
        (void)state;
        assert_int_equal(lease_renew_interval_ms(15), 5000);
        assert_int_equal(lease_renew_deadline_ms(15), 4500);
        assert_int_equal(lease_renew_interval_ms(3), 1000);
        assert_int_equal(lease_renew_interval_ms(0), 100);
        assert_true(lease_renew_deadline_ms(3) < lease_renew_interval_ms(3));
        assert_false(lease_self_expired(0, 9999, 15));
        assert_true(lease_self_expired(0, 10000, 15));
        assert_false(lease_self_expired(1000, 2999, 3));
        assert_true(lease_self_expired(1000, 3000, 3));
}

/* What a step reports: who holds the lease, and whether a takeover followed a release (graceful
 * hand-over: expired, no holder session) or an expiry (the holder stopped renewing). */
static void test_seen(void **state) {
        (void)state;
        LeaseSeen s;
        LeaseRow live = row("b", 5, 2000), expired = row("b", 5, -10), released = row("b", 5, 0), none = {0};
        released.holder_session = 0;
        assert_true(lease_released(&released));
        assert_false(lease_released(&expired));
        assert_false(lease_released(&live));
        assert_false(lease_released(&none));
        LeaseRow live_no_session = row("b", 5, 2000);
        live_no_session.holder_session = 0;
        assert_false(lease_released(&live_no_session)); /* not expired yet */

        lease_seen(&live, LEASE_WAIT, "a", 0, &s);
        assert_string_equal(s.holder, "b");
        assert_false(s.took);
        lease_seen(&expired, LEASE_TAKE, "a", 6, &s);
        assert_string_equal(s.holder, "a");
        assert_true(s.took);
        assert_string_equal(s.took_from, "b");
        assert_false(s.released);
        lease_seen(&released, LEASE_TAKE, "a", 6, &s);
        assert_true(s.took);
        assert_true(s.released);
        lease_seen(&released, LEASE_TAKE, "a", 0, &s); /* another standby won the race */
        assert_false(s.took);
        assert_string_equal(s.holder, "");
        lease_seen(&none, LEASE_CREATE, "a", 1, &s);
        assert_true(s.took);
        assert_string_equal(s.took_from, "");
        assert_string_equal(s.holder, "a");
        LeaseRow ours = row("a", 5, 1000);
        lease_seen(&ours, LEASE_RENEW, "a", 5, &s);
        assert_false(s.took);
        assert_string_equal(s.holder, "a");
        LeaseRow taken = row("b", 6, 3000);
        lease_seen(&taken, LEASE_STEP_DOWN, "a", 0, &s);
        assert_string_equal(s.holder, "b");
}

static void test_slot_active(void **state) {
        (void)state;
        assert_int_equal(lease_slot_active_pid("ERROR:  replication slot \"cdc_orders\" is active for PID 4711"), 4711);
        assert_int_equal(lease_slot_active_pid("replication slot \"x\" does not exist"), 0);
        assert_int_equal(lease_slot_active_pid("replication slot \"x\" is active for PID "), 0);
        assert_int_equal(lease_slot_active_pid("replication slot \"x\" is active for PID 99999999999"), 0);
        assert_int_equal(lease_slot_active_pid(NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_row), cmocka_unit_test(test_standby), cmocka_unit_test(test_leader),
                cmocka_unit_test(test_fence),  cmocka_unit_test(test_timing),  cmocka_unit_test(test_slot_active),
                cmocka_unit_test(test_seen),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
