/* notify: the exact datagrams systemd would receive, read from a socket the test owns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/notify.h"

static int sock = -1;
static char sock_path[108];

static int setup(void **state) {
        (void)state;
        snprintf(sock_path, sizeof(sock_path), "/tmp/cdcsync-notify-%d.sock", (int)getpid());
        unlink(sock_path);
        sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sock < 0)
                return -1;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
        if (bind(sock, (struct sockaddr *)&a, sizeof(a)) < 0)
                return -1;
        struct timeval tv = {.tv_sec = 2};
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setenv("NOTIFY_SOCKET", sock_path, 1);
        return 0;
}

static int teardown(void **state) {
        (void)state;
        close(sock);
        unlink(sock_path);
        unsetenv("NOTIFY_SOCKET");
        return 0;
}

/* Receives one datagram as a string. */
static void recv_msg(char *buf, size_t len) {
        ssize_t n = recv(sock, buf, len - 1, 0);
        assert_true(n >= 0);
        buf[n] = '\0';
}

static void test_ready_with_status(void **state) {
        (void)state;
        char buf[2048];
        assert_true(notify_ready("streaming 2 pipelines") > 0);
        recv_msg(buf, sizeof(buf));
        assert_string_equal(buf, "READY=1\nSTATUS=streaming 2 pipelines");
}

static void test_ready_plain(void **state) {
        (void)state;
        char buf[2048];
        assert_true(notify_ready(NULL) > 0);
        recv_msg(buf, sizeof(buf));
        assert_string_equal(buf, "READY=1");
}

static void test_status_cut_at_newline(void **state) {
        (void)state;
        char buf[2048];
        /* A newline would smuggle a second assignment (here: a fake READY=1) into the message. */
        assert_true(notify_status("pipeline orders retrying\nREADY=1") > 0);
        recv_msg(buf, sizeof(buf));
        assert_string_equal(buf, "STATUS=pipeline orders retrying");
}

static void test_watchdog_and_stopping(void **state) {
        (void)state;
        char buf[2048];
        assert_true(notify_watchdog() > 0);
        recv_msg(buf, sizeof(buf));
        assert_string_equal(buf, "WATCHDOG=1");
        assert_true(notify_stopping() > 0);
        recv_msg(buf, sizeof(buf));
        assert_string_equal(buf, "STOPPING=1");
}

static void test_not_under_systemd(void **state) {
        (void)state;
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(notify_ready("x"), 0);
        assert_int_equal(notify_watchdog(), 0);
        setenv("NOTIFY_SOCKET", sock_path, 1);
}

static void test_watchdog_enabled(void **state) {
        (void)state;
        uint64_t usec = 7;
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        assert_false(notify_watchdog_enabled(&usec));
        assert_int_equal(usec, 7); /* untouched when disabled */

        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("WATCHDOG_USEC", "30000000", 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_true(notify_watchdog_enabled(&usec));
        assert_int_equal(usec, 30000000);

        /* Meant for another process (a parent that forked us): not ours to ping. */
        snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_false(notify_watchdog_enabled(NULL));
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ready_with_status),     cmocka_unit_test(test_ready_plain),
                cmocka_unit_test(test_status_cut_at_newline), cmocka_unit_test(test_watchdog_and_stopping),
                cmocka_unit_test(test_not_under_systemd),     cmocka_unit_test(test_watchdog_enabled),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
