/* The bounded event queue: order, blocking when full, close, cleanup of what is left. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/queue.h"

static void test_fifo(void **state) {
        (void)state;
        Queue *q;
        assert_int_equal(queue_new(4, &q), 0);
        for (uint64_t i = 1; i <= 4; i++) {
                Event ev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = {0, i}};
                assert_int_equal(queue_push(q, &ev), 0);
                assert_int_equal(ev.kind, 0); /* ownership moved */
        }
        assert_int_equal(queue_depth(q), 4);
        for (uint64_t i = 1; i <= 4; i++) {
                Event ev;
                assert_int_equal(queue_pop(q, &ev, 0), 0);
                assert_int_equal(ev.ckpt.pos.lo, i);
        }
        Event ev;
        assert_int_equal(queue_pop(q, &ev, 10), -ETIMEDOUT);
        queue_free(q);
}

typedef struct {
        Queue *q;
        int pushed;
} Producer;

static void *produce(void *arg) {
        Producer *p = arg;
        for (int i = 0; i < 100; i++) {
                Event ev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = {0, (uint64_t)i}};
                if (queue_push(p->q, &ev) < 0)
                        break;
                __atomic_store_n(&p->pushed, i + 1, __ATOMIC_SEQ_CST);
        }
        return NULL;
}

/* A full queue blocks its producer: memory stays bounded by the capacity. */
static void test_bounded(void **state) {
        (void)state;
        Producer p = {0};
        pthread_t t;
        assert_int_equal(queue_new(8, &p.q), 0);
        assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
        while (queue_depth(p.q) < 8)
                usleep(1000);
        usleep(50000);
        assert_int_equal(__atomic_load_n(&p.pushed, __ATOMIC_SEQ_CST), 8);
        assert_int_equal(queue_depth(p.q), 8);
        /* Draining lets it go on, in order. */
        for (uint64_t i = 0; i < 100; i++) {
                Event ev;
                assert_int_equal(queue_pop(p.q, &ev, 2000), 0);
                assert_int_equal(ev.ckpt.pos.lo, i);
        }
        pthread_join(t, NULL);
        queue_free(p.q);
}

/* Closing wakes a blocked producer with -ECANCELED; the producer keeps its event. */
static void test_close_wakes(void **state) {
        (void)state;
        Producer p = {0};
        pthread_t t;
        assert_int_equal(queue_new(2, &p.q), 0);
        assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
        while (queue_depth(p.q) < 2)
                usleep(1000);
        queue_close(p.q);
        pthread_join(t, NULL);
        assert_int_equal(__atomic_load_n(&p.pushed, __ATOMIC_SEQ_CST), 2);
        Event ev;
        assert_int_equal(queue_pop(p.q, &ev, 0), -ECANCELED);
        Event more = {.kind = EVENT_KEEPALIVE};
        assert_int_equal(queue_push(p.q, &more), -ECANCELED);
        assert_int_equal(more.kind, EVENT_KEEPALIVE);
        queue_free(p.q); /* frees the two events still inside */
}

/* Events left in a queue are freed with it (ASan would report the change's memory). */
static void test_free_clears(void **state) {
        (void)state;
        Queue *q;
        assert_int_equal(queue_new(2, &q), 0);
        Event ev = {.kind = EVENT_CHANGE};
        ev.change.op = CHANGE_INSERT;
        ev.change.table = table_new("s", "t", 1);
        ev.change.after = values_new(1);
        value_set(&ev.change.after[0], "x", 1);
        assert_int_equal(queue_push(q, &ev), 0);
        assert_null(queue_free(q));
        assert_null(queue_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fifo),
                cmocka_unit_test(test_bounded),
                cmocka_unit_test(test_close_wakes),
                cmocka_unit_test(test_free_clears),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
