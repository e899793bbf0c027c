/* Guards that bound a blocking call by shutting its socket down past a deadline (deadline.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/deadline.h"

/* A read on a socket whose peer never writes nor closes (a frozen peer) returns once the
 * deadline passes, with end-of-stream; the guard says it fired. */
static void test_fires_on_blocked_read(void **state) {
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        Deadline *d;
        assert_int_equal(deadline_new(&d), 0);
        deadline_set_fd(d, sv[0]);
        deadline_arm(d, 100);
        char c;
        ssize_t n = read(sv[0], &c, 1); /* blocks until the guard shuts the socket down */
        assert_int_equal(n, 0);
        assert_true(deadline_fired(d));
        assert_true(deadline_disarm(d));
        /* a new socket clears it */
        deadline_set_fd(d, -1);
        assert_false(deadline_fired(d));
        assert_null(deadline_free(d));
        close(sv[0]);
        close(sv[1]);
}

/* A call that ends in time disarms: the socket stays usable, nothing fired. Re-arming (progress)
 * pushes the deadline back. */
static void test_disarmed_in_time(void **state) {
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        Deadline *d;
        assert_int_equal(deadline_new(&d), 0);
        deadline_set_fd(d, sv[0]);
        for (int i = 0; i < 100; i++) {
                deadline_arm(d, 60000);
                assert_int_equal(write(sv[1], "x", 1), 1);
                char c;
                assert_int_equal(read(sv[0], &c, 1), 1);
                assert_false(deadline_disarm(d));
        }
        assert_int_equal(write(sv[0], "y", 1), 1); /* not shut down */
        deadline_set_fd(d, -1);
        assert_null(deadline_free(d));
        assert_null(deadline_free(NULL));
        close(sv[0]);
        close(sv[1]);
}

/* The guard's thread sleeps on to the deadline it chose when a deadline is pushed back or
 * disarmed (so that arming for every call wakes nobody): a later arm still never fires early,
 * and a sooner one after a far one still fires in time (it wakes the thread). Each wait below is
 * bounded by poll, so a guard that fires late fails instead of hanging. */
static void test_rearm_sooner_and_later(void **state) {
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        Deadline *d;
        assert_int_equal(deadline_new(&d), 0);
        deadline_set_fd(d, sv[0]);
        struct pollfd p = {.fd = sv[0], .events = POLLIN};
        /* short, then disarmed and armed far: the thread wakes at the short one, sleeps on */
        deadline_arm(d, 50);
        assert_false(deadline_disarm(d));
        deadline_arm(d, 60000);
        assert_int_equal(poll(&p, 1, 500), 0);
        assert_false(deadline_fired(d));
        /* far, then disarmed and armed short: the thread is woken and fires at the short one */
        assert_false(deadline_disarm(d));
        deadline_arm(d, 100);
        assert_int_equal(poll(&p, 1, 10000), 1);
        char c;
        assert_int_equal(read(sv[0], &c, 1), 0); /* shut down */
        assert_true(deadline_disarm(d));
        deadline_set_fd(d, -1);
        assert_null(deadline_free(d));
        close(sv[0]);
        close(sv[1]);
}

/* Without a socket (set to -1 before its owner closes it) a fire only marks the guard: a
 * descriptor number reused by someone else is never touched. */
static void test_no_socket_no_shutdown(void **state) {
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        Deadline *d;
        assert_int_equal(deadline_new(&d), 0);
        deadline_set_fd(d, sv[0]);
        deadline_set_fd(d, -1);
        deadline_arm(d, 1);
        while (!deadline_fired(d))
                usleep(1000);
        assert_int_equal(write(sv[0], "z", 1), 1);
        char c;
        assert_int_equal(read(sv[1], &c, 1), 1);
        assert_null(deadline_free(d));
        close(sv[0]);
        close(sv[1]);
}

static void test_tcp_keepalive(void **state) {
        (void)state;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(deadline_tcp_keepalive(fd, 30), 0);
        int v = 0;
        socklen_t len = sizeof(v);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len), 0);
        assert_int_equal(v, 1);
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len), 0);
        assert_int_equal(v, 10);
        unsigned u = 0;
        len = sizeof(u);
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &u, &len), 0);
        assert_int_equal(u, 30000);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fires_on_blocked_read),  cmocka_unit_test(test_disarmed_in_time),
                cmocka_unit_test(test_rearm_sooner_and_later), cmocka_unit_test(test_no_socket_no_shutdown),
                cmocka_unit_test(test_tcp_keepalive),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
