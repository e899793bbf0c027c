/* Bidirectional sync, simulated: two databases with their logs, applications writing the same
 * rows on both sides, and two pipelines (a→b, b→a) driven through the real engine code
 * (rowstate.c over the LMDB state store, version tags included) with lagging reads, batches of
 * several transactions and crashes between the state store's commit and the sink's. The sink
 * applies as the real ones do: idempotently, a delete that finds no row leaves no row change in
 * the log, and with BIDI_SIM_MYSQL=1 a write that changes nothing leaves none either (MariaDB).
 * When the applications stop and both pipelines have read everything, both databases must hold
 * the same rows, for every interleaving and both conflict policies. A failing seed is printed so
 * it can be replayed: BIDI_SIM_SEED=N BIDI_SIM_TRACE=1 (BIDI_SIM_STEPS, BIDI_SIM_SEEDS). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/conf.h"
#include "cdcsync/log.h"
#include "cdcsync/rowstate.h"
#include "cdcsync/state.h"

#define NKEYS 5
#define MAXLOG 4096
#define MAXCH 16

typedef struct {
        bool exists;
        int val; /* identifies the write that produced the row */
} Row;

typedef struct {
        char op; /* 'I', 'U', 'D' */
        int key;
        int val;
        char *tag_k, *tag_v; /* op 'V': a version tag's values (owned) */
} SimChange;

typedef struct {
        uint64_t pos;
        int64_t ts;
        char origin[64];
        int n;
        SimChange ch[MAXCH];
} SimTxn;

typedef struct {
        const char *name;
        Row rows[NKEYS];
        SimTxn *log; /* MAXLOG entries */
        int nlog;
        int64_t skew; /* usec added to this server's clock */
} Db;

typedef struct {
        const char *name;
        RowState *rs;
        PipelineConf conf;
        Db *src, *dst;
        char mark[64];      /* origin mark of its writes into dst */
        char echo_mark[64]; /* origin mark of the reverse pipeline's writes into src */
        int read_idx;       /* next src log entry to read */
        uint64_t ckpt;      /* the dst's checkpoint: src position committed */
        uint64_t batch_no;
        State *st;
} Pipe;

static char dir[64];
static unsigned rng;
static int64_t now_us;
static bool trace;
static int next_val;
static Table *tbl, *tagtbl;
static bool nomod; /* MySQL: a write that changes nothing is not logged */
static bool owned; /* each side writes only its own keys (a: k0, k1; b: k2..k4): nothing is concurrent */

static unsigned rnd(unsigned n) {
        rng = rng * 1103515245u + 12345u;
        return (rng >> 8) % n;
}

static void tr(const char *fmt, ...) {
        if (!trace)
                return;
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
}

static SimTxn *log_append(Db *d, const char *origin) {
        assert_true(d->nlog < MAXLOG);
        SimTxn *t = &d->log[d->nlog];
        memset(t, 0, sizeof(*t));
        t->pos = (uint64_t)d->nlog + 1;
        now_us += 1000;
        t->ts = now_us + d->skew;
        snprintf(t->origin, sizeof(t->origin), "%s", origin);
        d->nlog++;
        return t;
}

/* One application transaction on d: one or two writes of random keys. */
static void app_write(Db *d) {
        SimTxn *t = log_append(d, "");
        int n = 1 + (int)rnd(2);
        for (int i = 0; i < n; i++) {
                int k = !owned ? (int)rnd(NKEYS) : strcmp(d->name, "a") == 0 ? (int)rnd(2) : 2 + (int)rnd(NKEYS - 2);
                SimChange c = {.op = 0, .key = k, .val = ++next_val};
                if (!d->rows[k].exists)
                        c.op = 'I';
                else
                        c.op = rnd(4) == 0 ? 'D' : 'U';
                d->rows[k].exists = c.op != 'D';
                d->rows[k].val = c.op == 'D' ? 0 : c.val;
                t->ch[t->n++] = c;
                tr("  app %s: %c k%d v%d (pos %llu ts %lld)\n", d->name, c.op, k, c.val, (unsigned long long)t->pos,
                   (long long)t->ts);
        }
}

static void make_change(const SimChange *s, Change *c) {
        char buf[32];
        memset(c, 0, sizeof(*c));
        c->op = (ChangeOp)s->op;
        c->table = table_ref(tbl);
        Value *kv = values_new(2);
        snprintf(buf, sizeof(buf), "%d", s->key);
        assert_int_equal(value_set(&kv[0], buf, strlen(buf)), 0);
        if (s->op == 'D') {
                c->before = kv; /* PostgreSQL's default replica identity: the key only */
                return;
        }
        snprintf(buf, sizeof(buf), "%d", s->val);
        assert_int_equal(value_set(&kv[1], buf, strlen(buf)), 0);
        c->after = kv;
}

typedef struct {
        char op;
        int key;
        int val;
        char *tag_k, *tag_v;
} Out;

/* Reads up to ntx transactions of p's source into one batch; applies them to the sink unless a
 * crash is simulated before the sink's commit. Returns whether anything was read. */
static bool pipe_step(Pipe *p, int ntx, bool may_crash) {
        if (p->read_idx >= p->src->nlog)
                return false;
        CdcError err = {0};
        Out out[MAXLOG];
        int nout = 0;
        uint64_t end = 0;
        p->batch_no++;
        assert_int_equal(rowstate_batch_begin(p->rs, p->batch_no, &err), 0);
        tr(" %s batch %llu:\n", p->name, (unsigned long long)p->batch_no);
        for (int i = 0; i < ntx && p->read_idx < p->src->nlog; i++) {
                SimTxn *t = &p->src->log[p->read_idx++];
                if (t->pos <= p->ckpt)
                        continue;
                TxnInfo txn = {.xid = t->pos, .commit_pos = {0, t->pos}, .commit_ts = t->ts};
                snprintf(txn.origin, sizeof(txn.origin), "%s", t->origin);
                bool echo = strcmp(t->origin, p->echo_mark) == 0;
                for (int j = 0; j < t->n; j++) {
                        Change c;
                        bool apply = false;
                        if (t->ch[j].op == 'V') {
                                if (echo && !getenv("NOTAGS")) {
                                        Change tc = {.op = CHANGE_INSERT, .table = table_ref(tagtbl)};
                                        tc.after = values_new(2);
                                        assert_int_equal(
                                                value_set(&tc.after[0], t->ch[j].tag_k, strlen(t->ch[j].tag_k)), 0);
                                        assert_int_equal(
                                                value_set(&tc.after[1], t->ch[j].tag_v, strlen(t->ch[j].tag_v)), 0);
                                        Change fw;
                                        int r = rowstate_echo_tag(p->rs, &txn, &tc, &fw, &err);
                                        assert_true(r >= 0);
                                        change_clear(&tc);
                                        if (r > 0) {
                                                tr("   read tag → forward D k%s\n", fw.before[0].data);
                                                Out o = {'D', atoi(fw.before[0].data), 0, NULL, NULL};
                                                Change tg;
                                                if (rowstate_tag(p->rs, &tg) > 0) {
                                                        o.tag_k = strdup(tg.after[0].data);
                                                        o.tag_v = strdup(tg.after[1].data);
                                                        change_clear(&tg);
                                                }
                                                out[nout++] = o;
                                                change_clear(&fw);
                                        }
                                }
                                continue;
                        }
                        make_change(&t->ch[j], &c);
                        int r = echo ? rowstate_echo(p->rs, &txn, &c, (uint32_t)j, &apply, &err)
                                     : rowstate_check(p->rs, &txn, &c, (uint32_t)j, &apply, &err);
                        assert_int_equal(r, 0);
                        tr("   read %s%c k%d v%d pos %llu → %s%c\n", echo ? "echo " : "", t->ch[j].op, t->ch[j].key,
                           t->ch[j].val, (unsigned long long)t->pos, apply ? "apply " : "skip", apply ? c.op : ' ');
                        if (apply) {
                                assert_true(nout < MAXLOG);
                                Out o = {(char)c.op, t->ch[j].key, c.after ? t->ch[j].val : 0, NULL, NULL};
                                Change tc;
                                if (rowstate_tag(p->rs, &tc) > 0) {
                                        o.tag_k = strdup(tc.after[0].data);
                                        o.tag_v = strdup(tc.after[1].data);
                                        change_clear(&tc);
                                }
                                out[nout++] = o;
                        }
                        change_clear(&c);
                }
                end = t->pos;
        }
        if (end == 0) {
                rowstate_batch_abort(p->rs);
                return true;
        }
        assert_int_equal(rowstate_batch_commit(p->rs, (Position){0, end}, &err), 0);
        if (may_crash && rnd(8) == 0) {
                tr("   CRASH before the sink commit\n");
                goto restart;
        }
        /* The sink applies bidirectional changes idempotently (CHANGE_IDEMPOTENT): an insert or
         * update sets the row to its image, a delete removes the row if it is there. */
        Row rows[NKEYS];
        bool logged[MAXLOG];
        memcpy(rows, p->dst->rows, sizeof(rows));
        for (int i = 0; i < nout; i++) {
                Row *w = &rows[out[i].key];
                /* A delete that finds nothing leaves no row change, nor (MySQL) does a write of the
                 * image the row already has. */
                logged[i] = out[i].op == 'D' ? w->exists : !(w->exists && w->val == out[i].val && nomod);
                w->exists = out[i].op != 'D';
                w->val = out[i].op == 'D' ? 0 : out[i].val;
        }
        if (nout > 0) {
                SimTxn *e = log_append(p->dst, p->mark);
                for (int i = 0; i < nout; i++) {
                        /* The echo in the sink's log, one transaction: per row written its tag,
                         * then the row (a row written twice in one batch shows twice). */
                        assert_true(e->n + 2 <= MAXCH);
                        char op = out[i].op;
                        if (out[i].tag_k) {
                                e->ch[e->n++] = (SimChange){.op = 'V', .tag_k = out[i].tag_k, .tag_v = out[i].tag_v};
                                out[i].tag_k = out[i].tag_v = NULL;
                        }
                        SimChange sc = {.op = op, .key = out[i].key, .val = out[i].val};
                        if (logged[i])
                                e->ch[e->n++] = sc;
                }
        }
        memcpy(p->dst->rows, rows, sizeof(rows));
        p->ckpt = end;
        rowstate_batch_done(p->rs, p->batch_no);
        return true;
restart:
        for (int i = 0; i < nout; i++) {
                free(out[i].tag_k);
                free(out[i].tag_v);
        }
        /* A new attempt: versions brought back to the sink's checkpoint, reading from there. */
        assert_int_equal(rowstate_recover(p->rs, (Position){0, p->ckpt}, p->ckpt > 0, &err), 0);
        p->read_idx = 0;
        while (p->read_idx < p->src->nlog && p->src->log[p->read_idx].pos <= p->ckpt)
                p->read_idx++;
        return true;
}

static void pipe_init(Pipe *p, const char *name, Db *src, Db *dst, ConnectorConf *cs, ConnectorConf *ck,
                      const char *reverse, State *st, ConflictPolicy policy) {
        memset(p, 0, sizeof(*p));
        p->name = name;
        p->st = st;
        p->src = src;
        p->dst = dst;
        p->conf.name = (char *)name;
        p->conf.source = cs;
        p->conf.sink = ck;
        p->conf.conflict = policy;
        p->conf.resolve = RESOLVE_TIMESTAMP;
        snprintf(p->mark, sizeof(p->mark), "cdcsync_%s", name);
        snprintf(p->echo_mark, sizeof(p->echo_mark), "cdcsync_%s", reverse);
        RowStateBidi bidi = {.reverse = reverse, .state_dir = dir, .stats = NULL};
        assert_int_equal(rowstate_new(st, &p->conf, &bidi, &p->rs), 0);
        CdcError err = {0};
        assert_int_equal(rowstate_recover(p->rs, (Position){0, 0}, false, &err), 0);
}

static void wipe(void) {
        char path[128];
        const char *files[] = {"data.mdb", "lock.mdb", "conflicts.jsonl"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                unlink(path);
        }
}

/* One interleaving; returns true when both sides converged. */
static bool run_seed(unsigned seed, ConflictPolicy policy, int steps) {
        static SimTxn loga[MAXLOG], logb[MAXLOG];
        Db a = {.name = "a", .log = loga}, b = {.name = "b", .log = logb};
        ConnectorConf ca = {.name = "a", .type = "postgres"}, cb = {.name = "b", .type = "postgres"};
        State *st = NULL;
        Pipe ab, ba;
        rng = seed;
        now_us = 1700000000000000LL;
        next_val = 0;
        a.skew = (int64_t)rnd(3) * 700;
        b.skew = (int64_t)rnd(3) * 700;
        wipe();
        assert_int_equal(state_open(dir, &st), 0);
        pipe_init(&ab, "ab", &a, &b, &ca, &cb, "ba", st, policy);
        pipe_init(&ba, "ba", &b, &a, &cb, &ca, "ab", st, policy);
        tr("seed %u\n", seed);
        for (int i = 0; i < steps; i++) {
                switch (rnd(4)) {
                case 0: app_write(&a); break;
                case 1: app_write(&b); break;
                case 2: pipe_step(&ab, 1 + (int)rnd(3), true); break;
                default: pipe_step(&ba, 1 + (int)rnd(3), true); break;
                }
        }
        /* The applications stop: both pipelines read to the end, without crashes. */
        int rounds = 0;
        for (; rounds < 400; rounds++) {
                bool x = pipe_step(&ab, 2, false);
                bool y = pipe_step(&ba, 2, false);
                if (!x && !y)
                        break;
        }
        bool same = rounds < 400;
        for (int k = 0; k < NKEYS && same; k++)
                same = a.rows[k].exists == b.rows[k].exists && a.rows[k].val == b.rows[k].val;
        if (owned) { /* one writer per key: no conflict is recorded, whatever the interleaving */
                char path[128];
                snprintf(path, sizeof(path), "%s/conflicts.jsonl", dir);
                FILE *f = fopen(path, "r");
                int lines = 0;
                for (int ch; f && (ch = fgetc(f)) != EOF;)
                        lines += ch == '\n';
                if (f)
                        fclose(f);
                if (lines > 0) {
                        printf("seed %u: %d conflicts recorded where each side wrote only its own keys\n", seed, lines);
                        same = false;
                }
        }
        if (!same || trace) {
                printf("seed %u: %s after %d rounds:", seed, same ? "converged" : "DIVERGED", rounds);
                for (int k = 0; k < NKEYS; k++)
                        printf(" k%d a=%s%d b=%s%d", k, a.rows[k].exists ? "" : "-", a.rows[k].val,
                               b.rows[k].exists ? "" : "-", b.rows[k].val);
                printf("\n");
        }
        for (Db *d = &a; d; d = d == &a ? &b : NULL)
                for (int i = 0; i < d->nlog; i++)
                        for (int j = 0; j < d->log[i].n; j++) {
                                free(d->log[i].ch[j].tag_k);
                                free(d->log[i].ch[j].tag_v);
                        }
        ab.rs = rowstate_free(ab.rs);
        ba.rs = rowstate_free(ba.rs);
        state_free(st);
        return same;
}

static void run_many(ConflictPolicy policy, bool mysql) {
        const char *one = getenv("BIDI_SIM_SEED");
        trace = getenv("BIDI_SIM_TRACE") != NULL;
        nomod = mysql || getenv("BIDI_SIM_MYSQL") != NULL;
        setvbuf(stdout, NULL, _IONBF, 0);
        log_set_level(trace ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR);
        const char *st = getenv("BIDI_SIM_STEPS");
        int steps = st ? atoi(st) : 60;
        if (one) {
                assert_true(run_seed((unsigned)strtoul(one, NULL, 10), policy, steps));
                return;
        }
        const char *ns = getenv("BIDI_SIM_SEEDS");
        int failed = 0, n = ns ? atoi(ns) : 300;
        for (unsigned s = 1; s <= (unsigned)n; s++)
                if (!run_seed(s, policy, steps))
                        failed++;
        printf("%d of %d interleavings diverged\n", failed, n);
        assert_int_equal(failed, 0);
}

static void test_converges_version_vector(void **state) {
        (void)state;
        run_many(CONFLICT_VERSION_VECTOR, false);
}

static void test_converges_timestamp(void **state) {
        (void)state;
        run_many(CONFLICT_TIMESTAMP, false);
}

/* The sink is MariaDB: an update to the image a row already has leaves no row change. */
static void test_converges_no_op_writes_unlogged(void **state) {
        (void)state;
        run_many(CONFLICT_VERSION_VECTOR, true);
        run_many(CONFLICT_TIMESTAMP, true);
}

/* Each side writes only its own keys: they converge and no conflict is recorded, under every
 * policy (conflict = none included, which applies a conflicting change as it comes). */
static void test_own_keys_no_conflict(void **state) {
        (void)state;
        owned = true;
        run_many(CONFLICT_VERSION_VECTOR, false);
        run_many(CONFLICT_TIMESTAMP, false);
        run_many(CONFLICT_NONE, false);
        run_many(CONFLICT_NONE, true);
        owned = false;
}

static int setup(void **state) {
        (void)state;
        /* LMDB syncs every batch: on tmpfs the thousands of batches take seconds, not minutes */
        snprintf(dir, sizeof(dir), "/dev/shm/cdcsync-sim-XXXXXX");
        if (!mkdtemp(dir)) {
                snprintf(dir, sizeof(dir), "/tmp/cdcsync-sim-XXXXXX");
                if (!mkdtemp(dir))
                        return -1;
        }
        tbl = table_new("public", "t", 2);
        if (!tbl)
                return -1;
        tbl->cols[0].name = strdup("id");
        tbl->cols[0].type_name = strdup("integer");
        tbl->cols[0].key = true;
        tbl->cols[0].cls = TYPE_INTEGER;
        tbl->cols[1].name = strdup("v");
        tbl->cols[1].type_name = strdup("integer");
        tbl->cols[1].cls = TYPE_INTEGER;
        tagtbl = table_new("cdcsync", "versions", 2);
        if (!tagtbl)
                return -1;
        tagtbl->cols[0].name = strdup("k");
        tagtbl->cols[0].key = true;
        tagtbl->cols[1].name = strdup("v");
        return 0;
}

static int teardown(void **state) {
        (void)state;
        wipe();
        tbl = table_unref(tbl);
        tagtbl = table_unref(tagtbl);
        return rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_converges_version_vector),
                cmocka_unit_test(test_converges_timestamp),
                cmocka_unit_test(test_converges_no_op_writes_unlogged),
                cmocka_unit_test(test_own_keys_no_conflict),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
