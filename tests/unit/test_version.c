/* Tests of row versions: encoding, version_next, and that the resolver makes replicas converge. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/version.h"

static uint64_t rng_state;

static uint64_t rnd(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static const char *const nodes[] = {"n0", "n1", "n2"};

static Version random_version(void) {
        Version v = {0};
        for (int i = 0; i < 3; i++)
                if (rnd() % 2)
                        vclock_set(&v.vv, nodes[i], 1 + rnd() % 1000);
        v.wvv = v.vv;
        if (rnd() % 3 == 0)
                vclock_set(&v.wvv, nodes[rnd() % 3], 1 + rnd() % 1000);
        v.ts = (int64_t)(rnd() % 3 == 0 ? rnd() : rnd() % 100000);
        if (rnd() % 5)
                snprintf(v.origin, sizeof(v.origin), "%s", nodes[rnd() % 3]);
        v.seq = (uint32_t)(rnd() % 2 ? rnd() : rnd() % 200);
        v.deleted = rnd() % 2;
        return v;
}

static void test_encode_decode(void **state) {
        (void)state;
        rng_state = 42;
        uint8_t buf[VERSION_ENCODED_MAX + 1];
        for (int it = 0; it < 20000; it++) {
                Version a = random_version(), b;
                int n = version_encode(&a, buf, sizeof(buf));
                assert_true(n > 0 && n <= VERSION_ENCODED_MAX);
                assert_int_equal(version_decode(buf, (size_t)n, &b), 0);
                assert_true(version_equal(&a, &b));
                assert_memory_equal(&a, &b, sizeof(a));
                for (int cut = 0; cut < n; cut++)
                        assert_int_equal(version_decode(buf, (size_t)cut, &b), -EBADMSG);
                buf[n] = 0;
                assert_int_equal(version_decode(buf, (size_t)n + 1, &b), -EBADMSG); /* trailing */
                assert_int_equal(version_encode(&a, buf, (size_t)n - 1), -ENOBUFS);
                /* the seq (last, LEB128) spelt with one byte more: refused, one spelling only */
                n = version_encode(&a, buf, sizeof(buf)); /* n <= VERSION_ENCODED_MAX: buf has one more */
                buf[n - 1] |= 0x80;
                buf[n] = 0;
                assert_int_equal(version_decode(buf, (size_t)n + 1, &b), -EBADMSG);
        }
        for (int it = 0; it < 100000; it++) { /* garbage never crashes */
                uint8_t g[40];
                size_t len = rnd() % sizeof(g);
                for (size_t i = 0; i < len; i++)
                        g[i] = (uint8_t)rnd();
                if (len > 1 && rnd() % 2)
                        g[0] = 1, g[1] &= 3;
                Version v;
                int r = version_decode(g, len, &v);
                assert_true(r == 0 || r == -EBADMSG);
        }
}

static void test_next(void **state) {
        (void)state;
        Version a, b, c;
        assert_int_equal(version_next(NULL, "pg_a", 10, 1000, 0, false, &a), 0);
        assert_int_equal(vclock_get(&a.vv, "pg_a"), 10);
        assert_int_equal(a.ts, 1000);
        assert_string_equal(a.origin, "pg_a");
        /* a later write with an older clock still gets a later time than what it overwrites */
        assert_int_equal(version_next(&a, "pg_b", 5, 900, 0, false, &b), 0);
        assert_int_equal(b.ts, 1001);
        assert_int_equal(vclock_get(&b.vv, "pg_a"), 10);
        assert_int_equal(vclock_get(&b.vv, "pg_b"), 5);
        assert_int_equal(version_decide(&a, &b, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, NULL, 0, NULL, NULL),
                         VERSION_APPLY);
        /* same source transaction: same counter, later seq, same time */
        assert_int_equal(version_next(&b, "pg_b", 5, 900, 1, true, &c), 0);
        assert_int_equal(c.ts, 1001);
        assert_true(c.deleted);
        assert_int_equal(version_decide(&b, &c, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, NULL, 0, NULL, NULL),
                         VERSION_APPLY);
        assert_int_equal(version_decide(&c, &b, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, NULL, 0, NULL, NULL),
                         VERSION_SKIP);
        assert_int_equal(version_next(&c, "pg_b", 5, 900, 1, false, &a), -EINVAL);  /* seq not later */
        assert_int_equal(version_next(&c, "pg_b", 4, 900, 9, false, &a), -EINVAL);  /* counter back */
        assert_int_equal(version_next(&c, "pg_a", 10, 900, 9, false, &a), -EINVAL); /* other txn */
        assert_int_equal(version_next(&c, "bad name", 11, 900, 0, false, &a), -EINVAL);
}

/* A stored version at the largest time (written before sources clamped the times they read, from
 * a hostile commit time): the next version keeps that time instead of overflowing past it. */
static void test_next_at_max_time(void **state) {
        (void)state;
        Version a, b;
        assert_int_equal(version_next(NULL, "pg_a", 1, INT64_MAX, 0, false, &a), 0);
        assert_int_equal(version_next(&a, "pg_b", 1, 1000, 0, false, &b), 0);
        assert_true(b.ts == INT64_MAX);
}

/* A row version whose origin holds a NUL ("pg_a\0x", tests/fixtures/crafted/vclock/
 * nul-in-origin.bin as the fuzz target reads it: "R" + the bytes) read as "pg_a": another spelling
 * of a version that version_encode writes shorter. Refused. */
static void test_nul_in_origin(void **state) {
        (void)state;
        const char *dir = getenv("FIXTURES");
        char path[1024];
        snprintf(path, sizeof(path), "%s/crafted/vclock/nul-in-origin.bin", dir ? dir : "tests/fixtures");
        FILE *f = fopen(path, "rbe");
        assert_non_null(f);
        uint8_t buf[256];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_true(len > 1 && buf[0] == 'R');
        Version v;
        assert_int_equal(version_decode(buf + 1, len - 1, &v), -EBADMSG);
        /* it is what version_encode writes for origin "pg_a", with "\0x" put after the name */
        Version w;
        uint8_t ok[VERSION_ENCODED_MAX];
        assert_int_equal(version_next(NULL, "pg_a", 3, 1700000000123456, 0, false, &w), 0);
        int n = version_encode(&w, ok, sizeof(ok));
        assert_int_equal(len - 1, (size_t)n + 2);
        assert_memory_equal(buf + 1, ok, (size_t)n - 6);
        assert_memory_equal(buf + 1 + n - 6, "\x06pg_a\0x\0", 8);
        assert_int_equal(version_decode(ok, (size_t)n, &v), 0);
        assert_string_equal(v.origin, "pg_a");
}

static void test_decide_cases(void **state) {
        (void)state;
        const char *prio[] = {"pg_b", "pg_a"};
        Version base, a, b, m;
        const char *res = "x";
        assert_int_equal(version_next(NULL, "pg_a", 1, 100, 0, false, &base), 0);
        assert_int_equal(version_next(&base, "pg_a", 2, 500, 0, false, &a), 0); /* later ts */
        assert_int_equal(version_next(&base, "pg_b", 1, 300, 0, false, &b), 0); /* concurrent */

        assert_int_equal(version_decide(NULL, &a, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_APPLY);
        assert_null(res);
        /* replay and echo */
        assert_int_equal(version_decide(&a, &a, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_SKIP);
        assert_int_equal(version_decide(&a, &base, CONFLICT_NONE, RESOLVE_TIMESTAMP, prio, 2, &m, &res), VERSION_SKIP);
        assert_int_equal(version_decide(&a, &a, CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_SKIP);

        /* concurrent, by timestamp: a (500) wins from either side */
        assert_int_equal(version_decide(&a, &b, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_CONFLICT_SKIP);
        assert_string_equal(res, "timestamp");
        assert_int_equal(vclock_get(&m.vv, "pg_a"), 2);
        assert_int_equal(vclock_get(&m.vv, "pg_b"), 1);
        assert_int_equal(m.ts, 500);
        assert_string_equal(m.origin, "pg_a");
        assert_int_equal(version_decide(&b, &a, CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_CONFLICT_APPLY);
        assert_int_equal(m.ts, 500);
        assert_int_equal(vclock_compare(&m.vv, &a.vv), VCLOCK_AFTER);
        assert_int_equal(vclock_compare(&m.vv, &b.vv), VCLOCK_AFTER);
        assert_true(vclock_equal(&m.wvv, &a.wvv));

        /* concurrent, by priority: pg_b is listed first and wins despite its older time */
        assert_int_equal(version_decide(&a, &b, CONFLICT_VERSION_VECTOR, RESOLVE_PRIORITY, prio, 2, &m, &res),
                         VERSION_CONFLICT_APPLY);
        assert_string_equal(res, "priority");
        assert_string_equal(m.origin, "pg_b");
        assert_int_equal(version_decide(&b, &a, CONFLICT_VERSION_VECTOR, RESOLVE_PRIORITY, prio, 2, &m, &res),
                         VERSION_CONFLICT_SKIP);
        assert_string_equal(m.origin, "pg_b");

        /* timestamp policy: a tie on time goes to the priority order, then the origin name */
        Version t1 = a, t2 = b;
        t2.ts = t1.ts;
        assert_int_equal(version_decide(&t1, &t2, CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_CONFLICT_APPLY);
        assert_int_equal(version_decide(&t1, &t2, CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, NULL, 0, &m, &res),
                         VERSION_CONFLICT_APPLY); /* "pg_b" > "pg_a" */
        const char *prio2[] = {"pg_a"};
        assert_int_equal(version_decide(&t1, &t2, CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, prio2, 1, &m, &res),
                         VERSION_CONFLICT_SKIP);
        /* timestamp policy ignores causality: an older time loses even when causally newer */
        Version late = base;
        late.ts = 10000;
        assert_int_equal(version_decide(&late, &a, CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_CONFLICT_SKIP);
        /* none: concurrent applies */
        assert_int_equal(version_decide(&a, &b, CONFLICT_NONE, RESOLVE_TIMESTAMP, prio, 2, &m, &res),
                         VERSION_CONFLICT_APPLY);
        assert_string_equal(res, "none");
}

/* For any two different writes, the two directions pick the same winner. */
static void test_decide_symmetric(void **state) {
        (void)state;
        rng_state = 99;
        const char *prio[] = {"n2", "n0"};
        for (int it = 0; it < 50000; it++) {
                Version a = random_version(), b = random_version();
                a.wvv = a.vv, b.wvv = b.vv; /* real writes, not merged states */
                for (int pol = 0; pol < 3; pol++) {
                        ConflictPolicy policy = pol == 0 ? CONFLICT_TIMESTAMP : CONFLICT_VERSION_VECTOR;
                        ResolvePolicy resolve = pol == 2 ? RESOLVE_PRIORITY : RESOLVE_TIMESTAMP;
                        Version m1, m2;
                        int x = version_decide(&a, &b, policy, resolve, prio, 2, &m1, NULL);
                        int y = version_decide(&b, &a, policy, resolve, prio, 2, &m2, NULL);
                        assert_true(x >= 0 && y >= 0);
                        if (x == VERSION_CONFLICT_APPLY || x == VERSION_CONFLICT_SKIP || policy == CONFLICT_TIMESTAMP) {
                                assert_true(version_equal(&m1, &m2));
                        }
                        if (x == VERSION_CONFLICT_APPLY)
                                assert_int_equal(y, VERSION_CONFLICT_SKIP);
                        if (x == VERSION_CONFLICT_SKIP)
                                assert_int_equal(y, VERSION_CONFLICT_APPLY);
                }
        }
}

/* --- convergence: replicas exchanging changes in random order, with duplicates --- */

#define NKEYS 4
#define MAXMSG 256
#define MAXPENDING 2048

typedef struct {
        bool has;
        Version v;
        uint64_t value; /* the row's content; 0 for a tombstone */
} Cell;

typedef struct {
        Cell cells[NKEYS];
        uint64_t counter; /* this node's write counter (its source log position) */
} Node;

typedef struct {
        int key;
        Version v;
        uint64_t value;
} Msg;

typedef struct {
        int dest, msg;
} Delivery;

typedef struct {
        ConflictPolicy policy;
        ResolvePolicy resolve;
        const char *const *prio;
        int nprio;
} Setup;

static void apply(Node *n, const Msg *m, const Setup *s, int *conflicts) {
        Cell *c = &n->cells[m->key];
        Version merged;
        int r = version_decide(c->has ? &c->v : NULL, &m->v, s->policy, s->resolve, s->prio, s->nprio, &merged, NULL);
        assert_true(r >= 0);
        if (r == VERSION_APPLY || r == VERSION_CONFLICT_APPLY)
                c->value = m->value;
        if (r == VERSION_CONFLICT_APPLY || r == VERSION_CONFLICT_SKIP)
                (*conflicts)++;
        c->v = merged;
        c->has = true;
}

static int simulate(int nnodes, const Setup *s, int nwrites) {
        static Node node[3];
        static Msg msgs[MAXMSG];
        static Delivery pending[MAXPENDING];
        int nmsgs = 0, npending = 0, conflicts = 0;
        memset(node, 0, sizeof(node));

        while (nmsgs < nwrites || npending > 0) {
                if (nmsgs < nwrites && (npending == 0 || rnd() % 3 == 0)) {
                        /* a local write: insert, update or delete of a random key */
                        int k = (int)(rnd() % (uint64_t)nnodes), key = (int)(rnd() % NKEYS);
                        Cell *c = &node[k].cells[key];
                        bool del = c->has && !c->v.deleted && rnd() % 4 == 0;
                        Msg *m = &msgs[nmsgs];
                        m->key = key;
                        m->value = del ? 0 : (rnd() % 1000000) + 1;
                        /* small range of random times: ties and clock skew are common */
                        assert_int_equal(version_next(c->has ? &c->v : NULL, nodes[k], ++node[k].counter,
                                                      (int64_t)(rnd() % 50), 0, del, &m->v),
                                         0);
                        int dummy = 0;
                        apply(&node[k], m, s, &dummy);
                        assert_int_equal(dummy, 0); /* a local write always supersedes */
                        assert_true(c->value == m->value);
                        for (int d = 0; d < nnodes; d++)
                                if (d != k) {
                                        int copies = 1 + (rnd() % 3 == 0);
                                        for (int i = 0; i < copies && npending < MAXPENDING; i++)
                                                pending[npending++] = (Delivery){d, nmsgs};
                                }
                        nmsgs++;
                } else {
                        int i = (int)(rnd() % (uint64_t)npending);
                        Delivery d = pending[i];
                        pending[i] = pending[--npending];
                        apply(&node[d.dest], &msgs[d.msg], s, &conflicts);
                        if (rnd() % 8 == 0 && npending < MAXPENDING) /* redelivered later */
                                pending[npending++] = d;
                }
        }
        for (int k = 1; k < nnodes; k++)
                for (int key = 0; key < NKEYS; key++) {
                        Cell *a = &node[0].cells[key], *b = &node[k].cells[key];
                        assert_int_equal(a->has, b->has);
                        if (!a->has)
                                continue;
                        if (!version_equal(&a->v, &b->v) || a->value != b->value) {
                                char x[VCLOCK_TEXT_MAX], y[VCLOCK_TEXT_MAX];
                                vclock_format(&a->v.vv, x, sizeof(x));
                                vclock_format(&b->v.vv, y, sizeof(y));
                                print_error("diverged key %d: node0 %s ts=%lld %s value=%llu, node%d %s "
                                            "ts=%lld %s value=%llu\n",
                                            key, x, (long long)a->v.ts, a->v.origin, (unsigned long long)a->value, k, y,
                                            (long long)b->v.ts, b->v.origin, (unsigned long long)b->value);
                                fail();
                        }
                }
        return conflicts;
}

static void run_convergence(const Setup *s) {
        long conflicts = 0;
        for (int nnodes = 2; nnodes <= 3; nnodes++)
                for (int run = 0; run < 1500; run++)
                        conflicts += simulate(nnodes, s, 10 + (int)(rnd() % 60));
        assert_true(conflicts > 1000); /* the runs really exercise concurrent writes */
}

static const char *const sim_prio[] = {"n1", "n0"}; /* n2 unlisted: ranks after, by name */

static void test_converge_timestamp(void **state) {
        (void)state;
        rng_state = 1;
        Setup s = {CONFLICT_TIMESTAMP, RESOLVE_TIMESTAMP, sim_prio, 2};
        run_convergence(&s);
}

static void test_converge_vv_timestamp(void **state) {
        (void)state;
        rng_state = 2;
        Setup s = {CONFLICT_VERSION_VECTOR, RESOLVE_TIMESTAMP, sim_prio, 2};
        run_convergence(&s);
}

static void test_converge_vv_priority(void **state) {
        (void)state;
        rng_state = 3;
        Setup s = {CONFLICT_VERSION_VECTOR, RESOLVE_PRIORITY, sim_prio, 2};
        run_convergence(&s);
}

static void test_converge_vv_priority_unlisted(void **state) {
        (void)state;
        rng_state = 4;
        Setup s = {CONFLICT_VERSION_VECTOR, RESOLVE_PRIORITY, NULL, 0};
        run_convergence(&s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_encode_decode),        cmocka_unit_test(test_next),
                cmocka_unit_test(test_next_at_max_time),     cmocka_unit_test(test_nul_in_origin),
                cmocka_unit_test(test_decide_cases),         cmocka_unit_test(test_decide_symmetric),
                cmocka_unit_test(test_converge_timestamp),   cmocka_unit_test(test_converge_vv_timestamp),
                cmocka_unit_test(test_converge_vv_priority), cmocka_unit_test(test_converge_vv_priority_unlisted),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
