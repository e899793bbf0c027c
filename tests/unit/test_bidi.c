/* Tests of bidirectional sync: echo marks from the conf, and the row versions of two pipelines in
 * opposite directions (conflicts decided, changes rewritten, one's recovery sparing the other's
 * rows). */
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

#include "cdcsync/bidi.h"
#include "cdcsync/rowstate.h"
#include "cdcsync/state.h"

static ConnectorConf conns[3];
static PipelineConf pipes[4];
static Conf conf;

static void make_conf(void) {
        memset(conns, 0, sizeof(conns));
        memset(pipes, 0, sizeof(pipes));
        conns[0] = (ConnectorConf){.name = "a", .type = "postgres"};
        conns[1] = (ConnectorConf){.name = "b", .type = "mysql", .server_id = 4242};
        conns[2] = (ConnectorConf){.name = "c", .type = "postgres"};
        /* ab and ba are reverse pipelines; bc has none (a chain a→b→c) */
        const char *spec[4][3] = {{"ab", "a", "b"}, {"ba", "b", "a"}, {"bc", "b", "c"}, {"ab2", "a", "b"}};
        for (int i = 0; i < 4; i++) {
                pipes[i].name = (char *)spec[i][0];
                pipes[i].source_name = (char *)spec[i][1];
                pipes[i].sink_name = (char *)spec[i][2];
                pipes[i].source = &conns[spec[i][1][0] - 'a'];
                pipes[i].sink = &conns[spec[i][2][0] - 'a'];
                pipes[i].batch_max_rows = 100;
        }
        conf = (Conf){.connectors = conns, .nconnectors = 3, .pipelines = pipes, .npipelines = 3};
}

static void test_marks(void **state) {
        (void)state;
        BidiPeers p;
        make_conf();
        /* ab reads a; ba writes a (a PostgreSQL sink): its mark is its replication origin */
        assert_int_equal(bidi_peers(&conf, &pipes[0], &p), 0);
        assert_int_equal(p.nmarks, 1);
        assert_string_equal(p.marks[0], "cdcsync_ba");
        assert_string_equal(p.reverse, "ba");
        assert_true(bidi_is_echo(&p, "cdcsync_ba"));
        assert_false(bidi_is_echo(&p, "cdcsync_ab"));
        assert_false(bidi_is_echo(&p, ""));
        /* ba reads b; ab writes b (a MySQL sink): its mark is b's server_id */
        assert_int_equal(bidi_peers(&conf, &pipes[1], &p), 0);
        assert_int_equal(p.nmarks, 1);
        assert_string_equal(p.marks[0], "4242");
        assert_string_equal(p.reverse, "ab");
        /* a chain: bc forwards whatever ab wrote into b */
        assert_int_equal(bidi_peers(&conf, &pipes[2], &p), 0);
        assert_int_equal(p.nmarks, 0);
        assert_string_equal(p.reverse, "");
        assert_false(bidi_is_echo(&p, "4242"));
        /* two pipelines a→b: both marks are echoes for ba */
        conf.npipelines = 4;
        assert_int_equal(bidi_peers(&conf, &pipes[1], &p), 0);
        assert_int_equal(p.nmarks, 2);
        assert_true(bidi_is_echo(&p, "4242"));
}

/* ---- row versions of ab (a→b) and ba (b→a), both PostgreSQL ---- */

static char dir[64];
static Table *tbl;

static int setup(void **state) {
        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/cdcsync-bidi-XXXXXX");
        if (!mkdtemp(dir))
                return -1;
        make_conf();
        conns[1].type = "postgres";
        tbl = table_new("public", "t", 2);
        tbl->cols[0].name = strdup("id");
        tbl->cols[0].key = true;
        tbl->cols[1].name = strdup("v");
        return 0;
}

static int teardown(void **state) {
        (void)state;
        char path[128];
        const char *files[] = {"data.mdb", "lock.mdb", "conflicts.jsonl"};
        for (size_t i = 0; i < 3; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                unlink(path);
        }
        tbl = table_unref(tbl);
        return rmdir(dir);
}

static Change mk(ChangeOp op, const char *id, const char *v) {
        Change c = {.op = op, .table = table_ref(tbl)};
        Value *vals = values_new(2);
        assert_int_equal(value_set(&vals[0], id, strlen(id)), 0);
        if (v)
                assert_int_equal(value_set(&vals[1], v, strlen(v)), 0);
        if (op == CHANGE_DELETE)
                c.before = vals;
        else
                c.after = vals;
        return c;
}

/* Runs one change of a one-change transaction through rs as its own batch; returns whether it
 * applies, and the op it applies as in *ret_op. */
static bool run(RowState *rs, uint64_t *batch, uint64_t lsn, int64_t ts, ChangeOp op, const char *id,
                ChangeOp *ret_op) {
        CdcError err;
        TxnInfo txn = {.xid = lsn, .commit_pos = {0, lsn}, .commit_ts = ts};
        Change c = mk(op, id, "x");
        bool apply = false;
        assert_int_equal(rowstate_batch_begin(rs, ++*batch, &err), 0);
        assert_int_equal(rowstate_check(rs, &txn, &c, 0, &apply, &err), 0);
        assert_int_equal(rowstate_batch_commit(rs, txn.commit_pos, &err), 0);
        if (ret_op)
                *ret_op = c.op;
        change_clear(&c);
        return apply;
}

static uint64_t conflicts(PipelineStats *st) {
        uint64_t n = 0;
        for (int i = 0; i < STATS_CONFLICT_KINDS; i++)
                n += atomic_load(&st->conflicts[i]);
        return n;
}

static void echo(RowState *rs, uint64_t *batch, uint64_t lsn, ChangeOp op, const char *id, bool expect_forward) {
        CdcError err;
        TxnInfo txn = {.xid = lsn, .commit_pos = {0, lsn}, .commit_ts = 1};
        Change c = mk(op, id, "x");
        bool fwd = !expect_forward;
        assert_int_equal(rowstate_batch_begin(rs, ++*batch, &err), 0);
        assert_int_equal(rowstate_echo(rs, &txn, &c, 0, &fwd, &err), 0);
        assert_int_equal(rowstate_batch_commit(rs, txn.commit_pos, &err), 0);
        assert_int_equal(fwd, expect_forward);
        change_clear(&c);
}

static void test_conflicts(void **state) {
        (void)state;
        State *st;
        RowState *ab, *ba;
        uint64_t nab = 0, nba = 0;
        ChangeOp op;
        CdcError err;
        PipelineStats sab, sba;
        Version v;
        bool found = false;
        const uint8_t key[5] = {1, 0, 0, 0, '1'};
        stats_init(&sab, "ab");
        stats_init(&sba, "ba");
        assert_int_equal(state_open(dir, &st), 0);
        RowStateBidi bab = {.reverse = "ba", .state_dir = dir, .stats = &sab};
        RowStateBidi bba = {.reverse = "ab", .state_dir = dir, .stats = &sba};
        assert_int_equal(rowstate_new(st, &pipes[0], &bab, &ab), 0);
        assert_int_equal(rowstate_new(st, &pipes[1], &bba, &ba), 0);
        assert_int_equal(rowstate_recover(ab, (Position){0, 0}, false, &err), 0);
        assert_int_equal(rowstate_recover(ba, (Position){0, 0}, false, &err), 0);

        /* a inserts 1, applied to b; ba reads that echo from b, then b's update of 1: causal */
        assert_true(run(ab, &nab, 100, 1000, CHANGE_INSERT, "1", &op));
        assert_int_equal(op, CHANGE_INSERT);
        echo(ba, &nba, 400, CHANGE_INSERT, "1", false);
        assert_true(run(ba, &nba, 500, 2000, CHANGE_UPDATE, "1", &op));
        assert_int_equal(op, CHANGE_UPDATE);
        assert_int_equal(conflicts(&sab) + conflicts(&sba), 0);
        /* a replay is skipped */
        assert_false(run(ab, &nab, 100, 1000, CHANGE_INSERT, "1", NULL));

        /* a updates 1 without having seen b's update: concurrent, b's later one stays on b */
        assert_false(run(ab, &nab, 300, 1500, CHANGE_UPDATE, "1", NULL));
        assert_int_equal(conflicts(&sab), 1);
        /* b deletes 1 on top of its update, which is what a holds (ba's write replaced a's
         * concurrent update there; that conflict was ab's, above): causal, no conflict. Our write
         * to a (w.ba) copies b's version and adds nothing the delete could be concurrent with. */
        assert_true(run(ba, &nba, 600, 2500, CHANGE_DELETE, "1", &op));
        assert_int_equal(op, CHANGE_DELETE);
        assert_int_equal(conflicts(&sba), 0);
        /* a updates 1 again, later than the delete: it wins on b, where the row is gone: insert */
        assert_true(run(ab, &nab, 700, 3000, CHANGE_UPDATE, "1", &op));
        assert_int_equal(op, CHANGE_INSERT);
        assert_int_equal(conflicts(&sab), 2);

        /* ba's recovery to 500 undoes ba's rows of its batch at 600 only */
        assert_int_equal(rowstate_recover(ba, (Position){0, 500}, true, &err), 0);
        assert_int_equal(state_lookup(st, "ab", "a/public.t", key, 5, &v, &found), 0);
        assert_true(found);
        assert_int_equal(vclock_get(&v.vv, "a"), 700); /* ab's rows untouched */
        assert_int_equal(state_lookup(st, "ba", "a/public.t", key, 5, &v, &found), 0);
        assert_true(found);
        assert_false(v.deleted); /* what ba made a hold at 500 */
        assert_int_equal(vclock_get(&v.vv, "b"), 500);
        rowstate_free(ab);
        rowstate_free(ba);
        state_free(st);

        /* every conflict is a JSON line */
        char path[128], line[4096];
        snprintf(path, sizeof(path), "%s/conflicts.jsonl", dir);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        int lines = 0;
        while (fgets(line, sizeof(line), f)) {
                assert_non_null(strstr(line, "\"table\":\"public.t\""));
                lines++;
        }
        fclose(f);
        assert_int_equal(lines, 2);
        stats_destroy(&sab);
        stats_destroy(&sba);
}

/* Tombstones older than tombstone_days go; younger ones and live rows stay. */
static void test_prune_tombstones(void **state) {
        (void)state;
        State *st;
        RowState *rs;
        uint64_t n = 0;
        Version v;
        bool found;
        CdcError err;
        const int64_t day = 86400000000LL, now = 1700000000000000LL;
        const uint8_t k1[5] = {1, 0, 0, 0, '1'}, k2[5] = {1, 0, 0, 0, '2'}, k3[5] = {1, 0, 0, 0, '3'};
        assert_int_equal(state_open(dir, &st), 0);
        pipes[0].tombstone_days = 2;
        RowStateBidi bab = {.reverse = "ba", .state_dir = dir};
        assert_int_equal(rowstate_new(st, &pipes[0], &bab, &rs), 0);
        assert_int_equal(rowstate_recover(rs, (Position){0, 0}, false, &err), 0);
        assert_true(run(rs, &n, 10, now - 5 * day, CHANGE_DELETE, "1", NULL)); /* old tombstone */
        assert_true(run(rs, &n, 20, now - 1 * day, CHANGE_DELETE, "2", NULL)); /* young tombstone */
        assert_true(run(rs, &n, 30, now - 5 * day, CHANGE_INSERT, "3", NULL)); /* old live row */
        /* key 1's tombstones: what a holds and what ab wrote into b */
        assert_int_equal(rowstate_prune(rs, now), 2);
        const char *spaces[2] = {"a/public.t", "b/public.t"};
        for (int i = 0; i < 2; i++) {
                assert_int_equal(state_lookup(st, "ab", spaces[i], k1, 5, &v, &found), 0);
                assert_false(found);
                assert_int_equal(state_lookup(st, "ab", spaces[i], k2, 5, &v, &found), 0);
                assert_true(found && v.deleted);
                assert_int_equal(state_lookup(st, "ab", spaces[i], k3, 5, &v, &found), 0);
                assert_true(found && !v.deleted);
        }
        rowstate_free(rs);
        state_free(st);
}

/* A one-way pipeline keeps no row versions: it never opens the store, applies every change it is
 * given, and a Kafka sink still gets each row's vector, {source: commit position}. */
static void test_one_way(void **state) {
        (void)state;
        State *st;
        RowState *rs;
        CdcError err;
        bool apply = false;
        char path[128];
        assert_int_equal(state_new(dir, &st), 0);
        for (int kafka = 0; kafka < 2; kafka++) {
                conns[2].type = kafka ? "kafka" : "postgres";
                assert_int_equal(rowstate_new(st, &pipes[2], NULL, &rs), 0);
                assert_false(rowstate_uses_store(rs));
                assert_int_equal(rowstate_recover(rs, (Position){0, 500}, true, &err), 0);
                assert_int_equal(rowstate_batch_begin(rs, 1, &err), 0);
                uint64_t lsns[3] = {600, 700, 700};
                ChangeOp ops[3] = {CHANGE_INSERT, CHANGE_DELETE, CHANGE_INSERT};
                for (int i = 0; i < 3; i++) {
                        TxnInfo txn = {.xid = lsns[i], .commit_pos = {0, lsns[i]}, .commit_ts = 5};
                        Change c = mk(ops[i], "1", "x");
                        assert_int_equal(rowstate_check(rs, &txn, &c, (uint32_t)i, &apply, &err), 0);
                        assert_true(apply);
                        if (kafka) {
                                char vv[VCLOCK_TEXT_MAX];
                                assert_non_null(c.version);
                                assert_true(vclock_format(&c.version->vv, vv, sizeof(vv)) > 0);
                                assert_string_equal(vv, lsns[i] == 600 ? "{b:600}" : "{b:700}");
                                assert_string_equal(c.version->origin, "b");
                        } else {
                                assert_null(c.version);
                        }
                        change_clear(&c);
                }
                /* a truncate and a table without key carry none */
                TxnInfo txn = {.xid = 800, .commit_pos = {0, 800}};
                Change c = {.op = CHANGE_TRUNCATE, .table = table_ref(tbl)};
                assert_int_equal(rowstate_check(rs, &txn, &c, 0, &apply, &err), 0);
                assert_true(apply);
                assert_null(c.version);
                change_clear(&c);
                assert_int_equal(rowstate_batch_commit(rs, txn.commit_pos, &err), 0);
                assert_int_equal(rowstate_prune(rs, 1), 0);
                rowstate_free(rs);
        }
        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        assert_int_equal(access(path, F_OK), -1); /* the store was never opened */
        state_free(st);
}

/* A conflict record that cannot be written (disk full) fails the change, counted as "disk" and
 * retriable, and records nothing half: the batch redone once there is room records it whole. */
static void test_conflict_log_full(void **state) {
        (void)state;
        State *st;
        RowState *ab, *ba;
        uint64_t nab = 0, nba = 0;
        CdcError err = {0};
        PipelineStats sab;
        char path[128], line[4096];
        bool apply = true;
        stats_init(&sab, "ab");
        assert_int_equal(state_open(dir, &st), 0);
        RowStateBidi bab = {.reverse = "ba", .state_dir = dir, .stats = &sab};
        RowStateBidi bba = {.reverse = "ab", .state_dir = dir};
        assert_int_equal(rowstate_new(st, &pipes[0], &bab, &ab), 0);
        assert_int_equal(rowstate_new(st, &pipes[1], &bba, &ba), 0);
        assert_int_equal(rowstate_recover(ab, (Position){0, 0}, false, &err), 0);
        assert_int_equal(rowstate_recover(ba, (Position){0, 0}, false, &err), 0);
        assert_true(run(ab, &nab, 100, 1000, CHANGE_INSERT, "1", NULL));
        echo(ba, &nba, 400, CHANGE_INSERT, "1", false);
        assert_true(run(ba, &nba, 500, 2000, CHANGE_UPDATE, "1", NULL));

        snprintf(path, sizeof(path), "%s/conflicts.jsonl", dir);
        assert_int_equal(symlink("/dev/full", path), 0);
        TxnInfo txn = {.xid = 300, .commit_pos = {0, 300}, .commit_ts = 1500};
        for (int round = 0; round < 2; round++) {
                Change c = mk(CHANGE_UPDATE, "1", "x");
                assert_int_equal(rowstate_batch_begin(ab, ++nab, &err), 0);
                int r = rowstate_check(ab, &txn, &c, 0, &apply, &err);
                change_clear(&c);
                if (round == 0) {
                        assert_int_equal(r, -ENOSPC);
                        assert_string_equal(err.kind, "disk");
                        assert_true(err.retriable);
                        assert_non_null(strstr(err.message, "conflicts.jsonl"));
                        assert_int_equal(conflicts(&sab), 0); /* counted once recorded */
                        /* the attempt ends; the disk gets room; the next attempt redoes it */
                        rowstate_detach(ab);
                        assert_int_equal(unlink(path), 0);
                        assert_int_equal(rowstate_recover(ab, (Position){0, 100}, true, &err), 0);
                } else {
                        assert_int_equal(r, 0);
                        assert_false(apply);
                        assert_int_equal(rowstate_batch_commit(ab, txn.commit_pos, &err), 0);
                }
        }
        assert_int_equal(conflicts(&sab), 1);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        assert_non_null(strstr(line, "\"resolution\":\"timestamp\"}\n"));
        assert_null(fgets(line, sizeof(line), f));
        fclose(f);
        rowstate_free(ab);
        rowstate_free(ba);
        state_free(st);
        stats_destroy(&sab);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_marks),
                cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_tombstones, setup, teardown),
                cmocka_unit_test_setup_teardown(test_one_way, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_log_full, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
