/* Tests of the state store: reads and writes in batches, recovery against a sink position, a
 * process killed at random moments, a large batch, tombstone pruning, and local faults: a full
 * disk, a corrupt, truncated or foreign store, reopening once the cause is gone. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "cdcsync/state.h"

static char dir[64];

static int setup(void **state) {
        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/cdcsync-state-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        (void)state;
        char path[128];
        const char *files[] = {"data.mdb", "lock.mdb", "sink", "aside.mdb"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                unlink(path);
        }
        return rmdir(dir);
}

static Version ver(int64_t ts, bool deleted) {
        Version v;
        assert_int_equal(version_next(NULL, "pg_a", (uint64_t)ts + 1, ts, 0, deleted, &v), 0);
        return v;
}

static Position pos(uint64_t lo) {
        return (Position){0, lo};
}

/* ts of the stored version, -1 when the row has none */
static int64_t ts_of(State *s, const char *pipeline, const char *table, const char *key) {
        Version v;
        bool found = true;
        assert_int_equal(state_lookup(s, pipeline, table, key, strlen(key), &v, &found), 0);
        return found ? v.ts : -1;
}

static void put(StateBatch *b, const char *table, const char *key, int64_t ts) {
        Version v = ver(ts, false);
        assert_int_equal(state_put(b, table, key, strlen(key), &v), 0);
}

static void test_put_get(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        Version v, got;
        bool found = true;
        assert_int_equal(state_open(dir, &s), 0);

        assert_int_equal(state_batch_begin(s, "p1", 1, pos(10), &b), 0);
        assert_int_equal(state_get(b, "public.t", "k", 1, &got, &found), 0);
        assert_false(found);
        v = ver(5, false);
        vclock_set(&v.vv, "pg_b", 9);
        assert_int_equal(state_put(b, "public.t", "k", 1, &v), 0);
        assert_int_equal(state_get(b, "public.t", "k", 1, &got, &found), 0); /* own write */
        assert_true(found);
        assert_true(version_equal(&v, &got));
        /* no separator ambiguity: ("a", "bc") vs ("ab", "c"), and pipelines apart */
        put(b, "a", "bc", 1);
        put(b, "ab", "c", 2);
        /* long keys are hashed, binary keys with NULs fine */
        char longkey[1000];
        memset(longkey, 'x', sizeof(longkey));
        Version lv = ver(77, false);
        assert_int_equal(state_put(b, "t", longkey, sizeof(longkey), &lv), 0);
        longkey[999] = 'y';
        assert_int_equal(state_get(b, "t", longkey, sizeof(longkey), &got, &found), 0);
        assert_false(found);
        assert_int_equal(state_put(b, "t", "\0\1", 2, &lv), 0);
        assert_int_equal(state_get(b, "t", "\0\2", 2, &got, &found), 0);
        assert_false(found);
        char table[STATE_TABLE_MAX + 2];
        memset(table, 't', sizeof(table) - 1);
        table[sizeof(table) - 1] = '\0';
        assert_int_equal(state_put(b, table, "k", 1, &v), -ENAMETOOLONG);
        assert_int_equal(state_batch_commit(b), 0);

        assert_int_equal(ts_of(s, "p1", "a", "bc"), 1);
        assert_int_equal(ts_of(s, "p1", "ab", "c"), 2);
        assert_int_equal(ts_of(s, "p2", "a", "bc"), -1);
        longkey[999] = 'x';
        assert_int_equal(state_lookup(s, "p1", "t", longkey, sizeof(longkey), &got, &found), 0);
        assert_true(found);
        assert_int_equal(got.ts, 77);
        assert_int_equal(state_lookup(s, "p1", "public.t", "k", 1, &got, &found), 0);
        assert_true(version_equal(&v, &got));

        /* the batch is recorded until done or recovered */
        assert_int_equal(state_batch_begin(s, "p1", 1, pos(10), &b), -EEXIST);
        assert_int_equal(state_batch_done(s, "p1", 1), 0);
        assert_int_equal(state_batch_begin(s, "p1", 1, pos(10), &b), 0);
        put(b, "a", "bc", 100);
        b = state_batch_abort(b); /* aborted: nothing of it stays */
        assert_int_equal(ts_of(s, "p1", "a", "bc"), 1);
        assert_int_equal(state_recover(s, "p1", pos(0)), 0); /* the aborted batch left no record */
        assert_int_equal(ts_of(s, "p1", "a", "bc"), 1);
        assert_int_equal(state_batch_begin(s, "", 2, pos(1), &b), -EINVAL);
        state_free(s);

        /* and it is all still there after reopening */
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(ts_of(s, "p1", "ab", "c"), 2);
        state_free(s);
}

/* Two batches on top of a committed base; recover at each possible sink position. */
static void check_recover(uint64_t sink, int expect_rolled, int64_t a, int64_t b_, int64_t c) {
        State *s = NULL;
        StateBatch *b = NULL;
        teardown(NULL);
        setup(NULL);
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(5), &b), 0);
        put(b, "t", "a", 1);
        put(b, "t", "b", 1);
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(state_batch_done(s, "p", 1), 0);

        assert_int_equal(state_batch_begin(s, "p", 2, pos(10), &b), 0);
        put(b, "t", "a", 2);
        put(b, "t", "a", 3); /* second write: the undo keeps the value from before the batch */
        put(b, "t", "c", 2);
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(state_batch_begin(s, "p", 3, pos(20), &b), 0);
        put(b, "t", "a", 4);
        put(b, "t", "b", 4);
        assert_int_equal(state_batch_commit(b), 0);
        /* another pipeline's batches are not touched */
        assert_int_equal(state_batch_begin(s, "q", 1, pos(100), &b), 0);
        put(b, "t", "a", 50);
        assert_int_equal(state_batch_commit(b), 0);
        state_free(s);

        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_recover(s, "p", pos(sink)), expect_rolled);
        assert_int_equal(ts_of(s, "p", "t", "a"), a);
        assert_int_equal(ts_of(s, "p", "t", "b"), b_);
        assert_int_equal(ts_of(s, "p", "t", "c"), c);
        assert_int_equal(ts_of(s, "q", "t", "a"), 50);
        /* nothing left to undo: a second recovery changes nothing, batch numbers are free */
        assert_int_equal(state_recover(s, "p", pos(0)), 0);
        assert_int_equal(ts_of(s, "p", "t", "a"), a);
        assert_int_equal(state_batch_begin(s, "p", 2, pos(10), &b), 0);
        state_batch_abort(b);
        assert_int_equal(state_recover(s, "q", pos(0)), 1);
        assert_int_equal(ts_of(s, "q", "t", "a"), -1);
        state_free(s);
}

static void test_recover(void **state) {
        (void)state;
        check_recover(0, 2, 1, 1, -1); /* the sink holds neither batch 2 nor 3 */
        check_recover(9, 2, 1, 1, -1);
        check_recover(10, 1, 3, 1, 2); /* batch 2 committed in the sink, 3 not */
        check_recover(19, 1, 3, 1, 2);
        check_recover(20, 0, 4, 4, 2); /* both */
        check_recover(1000, 0, 4, 4, 2);
}

static void test_big_batch(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        char key[32];
        const int n = 200000;
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(1), &b), 0);
        for (int i = 0; i < n; i += 2) { /* half the rows exist before the big batch */
                snprintf(key, sizeof(key), "row%d", i);
                put(b, "t", key, 1);
        }
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(state_batch_done(s, "p", 1), 0);
        assert_int_equal(state_batch_begin(s, "p", 2, pos(2), &b), 0);
        for (int i = 0; i < n; i++) {
                snprintf(key, sizeof(key), "row%d", i);
                put(b, "t", key, 2);
        }
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(ts_of(s, "p", "t", "row199999"), 2);
        assert_int_equal(state_recover(s, "p", pos(1)), 1);
        for (int i = 0; i < n; i += 997) {
                snprintf(key, sizeof(key), "row%d", i);
                assert_int_equal(ts_of(s, "p", "t", key), i % 2 ? -1 : 1);
        }
        state_free(s);
}

static void test_prune(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        char key[32];
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(1), &b), 0);
        for (int i = 0; i < 1000; i++) { /* every third row a tombstone, times 0..999 */
                Version v = ver(i, i % 3 == 0);
                snprintf(key, sizeof(key), "k%d", i);
                assert_int_equal(state_put(b, "t", key, strlen(key), &v), 0);
        }
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(state_batch_begin(s, "other", 1, pos(1), &b), 0);
        Version dead = ver(0, true);
        assert_int_equal(state_put(b, "t", "k0", 2, &dead), 0);
        assert_int_equal(state_batch_commit(b), 0);

        /* tombstones with ts < 500: i = 0, 3, ..., 498 → 167 */
        assert_int_equal(state_prune_tombstones(s, "p", 500), 167);
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                bool gone = i % 3 == 0 && i < 500;
                assert_int_equal(ts_of(s, "p", "t", key), gone ? -1 : i);
        }
        assert_int_equal(state_prune_tombstones(s, "p", 500), 0);
        assert_int_equal(ts_of(s, "other", "t", "k0"), 0);
        assert_int_equal(state_prune_tombstones(s, "p", INT64_MAX), 167);
        state_free(s);
}

/* The undo of a batch the sink committed is dropped inside the next batch's transaction. */
static void test_drop_in_batch(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(10), &b), 0);
        put(b, "t", "a", 1);
        assert_int_equal(state_batch_commit(b), 0);
        assert_int_equal(state_batch_begin(s, "p", 2, pos(20), &b), 0);
        assert_int_equal(state_batch_drop(b, 1), 0);
        put(b, "t", "a", 2);
        assert_int_equal(state_batch_commit(b), 0);
        /* the sink holds nothing: batch 2 is rolled back, batch 1 (dropped: done) is not */
        assert_int_equal(state_recover(s, "p", pos(0)), 1);
        assert_int_equal(ts_of(s, "p", "t", "a"), 1);
        state_free(s);
}

static void path_of(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

/* Sets the store's format record by hand, as another version of cdcsync would have. */
static void set_format(uint32_t format) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi meta;
        uint8_t f[4] = {format >> 24, format >> 16 & 255, format >> 8 & 255, format & 255};
        MDB_val k = {6, "format"}, v = {4, f};
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
        if (format)
                assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
        else
                assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
}

/* A store of another format is refused, one without a format record (an earlier version's) is
 * format 1. */
static void test_format(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(10), &b), 0);
        put(b, "t", "a", 7);
        assert_int_equal(state_batch_commit(b), 0);
        state_free(s);

        set_format(STATE_FORMAT + 1);
        assert_int_equal(state_open(dir, &s), -EPROTO);
        assert_non_null(strstr(state_strerror(-EPROTO), "incompatible version"));
        set_format(0); /* no record: written before formats were recorded */
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(ts_of(s, "p", "t", "a"), 7);
        state_free(s);
        set_format(STATE_FORMAT);
        assert_int_equal(state_open(dir, &s), 0);
        state_free(s);
}

/* A damaged store is refused as corrupt; once it is moved aside the same handle opens a new one. */
static void test_corrupt(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        char data[128], aside[128];
        path_of(data, sizeof(data), "data.mdb");
        path_of(aside, sizeof(aside), "aside.mdb");

        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(10), &b), 0);
        put(b, "t", "k1", 1);
        assert_int_equal(state_batch_commit(b), 0);
        state_free(s);

        /* garbage where the meta pages should be */
        int fd = open(data, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        char junk[8192];
        memset(junk, 0x5a, sizeof(junk));
        assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
        close(fd);
        assert_int_equal(state_new(dir, &s), 0);
        assert_int_equal(state_acquire(s), -EUCLEAN);
        assert_non_null(strstr(state_strerror(-EUCLEAN), "corrupt"));
        /* the operator moves it aside: the next acquire opens an empty store */
        assert_int_equal(rename(data, aside), 0);
        assert_int_equal(state_acquire(s), 0);
        assert_int_equal(ts_of(s, "p", "t", "k1"), -1);
        state_release(s);
        state_free(s);
}

/* A record that does not decode: the operation fails as corrupt, and the store is reopened by
 * the first acquire once nobody uses it (not while someone does). */
static void test_reopen_when_unused(void **state) {
        (void)state;
        State *s = NULL;
        StateBatch *b = NULL;
        Version v;
        bool found;
        assert_int_equal(state_open(dir, &s), 0);
        assert_int_equal(state_batch_begin(s, "p", 1, pos(10), &b), 0);
        put(b, "t", "good", 3);
        assert_int_equal(state_batch_commit(b), 0);
        state_free(s);
        /* a damaged version record, written behind the store's back */
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi rows;
        uint8_t rk[64] = {1, 'p', 0, 1, 't', 0, 'b', 'a', 'd'}, junk[3] = {0xff, 0xff, 0xff};
        MDB_val k = {9, rk}, val = {3, junk};
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
        assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "rows", 0, &rows), 0);
        assert_int_equal(mdb_put(txn, rows, &k, &val, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);

        assert_int_equal(state_new(dir, &s), 0);
        assert_int_equal(state_acquire(s), 0);
        assert_int_equal(state_lookup(s, "p", "t", "bad", 3, &v, &found), -EUCLEAN);
        assert_int_equal(state_acquire(s), -ESTALE); /* still used: not reopened under its user */
        state_release(s);
        assert_int_equal(state_acquire(s), 0); /* unused: closed and opened again */
        assert_int_equal(ts_of(s, "p", "t", "good"), 3);
        state_release(s);
        state_free(s);
}

/* A full disk (here: a file size limit, EFBIG) fails the commit and loses nothing that was
 * committed; once there is room, the same open store commits again. Run in a child: the limit is
 * per process. Exits non-zero on any failure. */
static void disk_full_child(void) {
        State *s = NULL;
        StateBatch *b = NULL;
        char data[128], key[16];
        struct stat st;
        Version v;
        path_of(data, sizeof(data), "data.mdb");
        signal(SIGXFSZ, SIG_IGN);
        if (state_open(dir, &s) < 0 || state_batch_begin(s, "p", 1, pos(10), &b) < 0)
                _exit(10);
        v = ver(1, false);
        if (state_put(b, "t", "base", 4, &v) < 0 || state_batch_commit(b) < 0 || stat(data, &st) < 0)
                _exit(11);
        struct rlimit lim = {(rlim_t)st.st_size, RLIM_INFINITY};
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
                _exit(12);
        for (int attempt = 0; attempt < 2; attempt++) {
                if (state_batch_begin(s, "p", 2, pos(20), &b) < 0)
                        _exit(13);
                for (int i = 0; i < 5000; i++) {
                        snprintf(key, sizeof(key), "k%d", i);
                        v = ver(2, false);
                        if (state_put(b, "t", key, strlen(key), &v) < 0)
                                _exit(14);
                }
                int r = state_batch_commit(b);
                if (attempt == 0 && r != -EFBIG)
                        _exit(15);
                if (attempt == 1 && r != 0)
                        _exit(16);
                /* room again */
                lim.rlim_cur = RLIM_INFINITY;
                if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
                        _exit(17);
        }
        Version got;
        bool found = false;
        if (state_lookup(s, "p", "t", "k4999", 5, &got, &found) < 0 || !found || got.ts != 2)
                _exit(18);
        if (state_lookup(s, "p", "t", "base", 4, &got, &found) < 0 || !found || got.ts != 1)
                _exit(19);
        state_free(s);
        _exit(0);
}

static void test_disk_full(void **state) {
        (void)state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                disk_full_child();
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- crash: a child commits batches like the engine does and is SIGKILLed at random --- */

#define CRASH_ROWS 50
#define CRASH_BIG 3000

static bool writes(uint64_t n, int j) {
        return ((n * 2654435761u + (uint64_t)j * 40503u) >> 3) % 3 == 0;
}

static uint64_t read_sink(void) {
        char path[128];
        uint64_t v = 0;
        snprintf(path, sizeof(path), "%s/sink", dir);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        if (pread(fd, &v, sizeof(v), 0) != sizeof(v))
                v = 0;
        close(fd);
        return v;
}

/* Never returns; exits non-zero on any failure (cmocka asserts cannot be used in the child). */
static void child(void) {
        State *s = NULL;
        char path[128], key[32];
        snprintf(path, sizeof(path), "%s/sink", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || state_open(dir, &s) < 0)
                _exit(10);
        for (uint64_t n = read_sink() + 1;; n++) {
                StateBatch *b = NULL;
                Version v;
                if (state_batch_begin(s, "p", n, pos(n), &b) < 0)
                        _exit(11);
                for (int j = 0; j < CRASH_ROWS; j++) {
                        if (!writes(n, j))
                                continue;
                        snprintf(key, sizeof(key), "r%d", j);
                        if (version_next(NULL, "pg_a", n, (int64_t)n, 0, false, &v) < 0 ||
                            state_put(b, "t", key, strlen(key), &v) < 0)
                                _exit(12);
                }
                for (int j = 0; n % 4 == 0 && j < CRASH_BIG; j++) {
                        snprintf(key, sizeof(key), "big%d", j);
                        if (version_next(NULL, "pg_a", n, (int64_t)n, 0, false, &v) < 0 ||
                            state_put(b, "t", key, strlen(key), &v) < 0)
                                _exit(13);
                }
                if (state_batch_commit(b) < 0)
                        _exit(14);
                /* a round that must crash between the two commits: the parent made a hold file;
                 * say so, and wait for the kill */
                char hold[160];
                snprintf(hold, sizeof(hold), "%s/hold", dir);
                if (access(hold, F_OK) == 0) {
                        snprintf(hold, sizeof(hold), "%s/held", dir);
                        int h = open(hold, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        if (h >= 0)
                                close(h);
                        for (;;)
                                pause();
                }
                /* the sink takes a while to commit: crashes in between are what recovery is for */
                struct timespec slow = {0, (long)(n % 5) * 500000L};
                nanosleep(&slow, NULL);
                /* the sink's commit: its position, in its own store, after the state's commit */
                if (pwrite(fd, &n, sizeof(n), 0) != sizeof(n))
                        _exit(15);
                if (n % 2 && state_batch_done(s, "p", n) < 0)
                        _exit(16);
        }
}

static void test_crash(void **state) {
        (void)state;
        srand(4242);
        uint64_t first = 0, last = 0;
        int rolled_back = 0;
        char hold[160], held[160];
        snprintf(hold, sizeof(hold), "%s/hold", dir);
        snprintf(held, sizeof(held), "%s/held", dir);
        for (int round = 0; round < 25; round++) {
                /* every fifth round crashes between the state's commit and the sink's for sure;
                 * the others wherever the kill falls */
                bool in_window = round % 5 == 4;
                if (in_window) {
                        int h = open(hold, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        assert_true(h >= 0);
                        close(h);
                }
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0)
                        child();
                struct timespec ts = {0, (long)(1 + rand() % 80) * 1000000L};
                nanosleep(&ts, NULL);
                /* on a loaded machine the child may not have run yet: kill it only once it has
                 * committed a batch past the last round's, or is held between the commits
                 * (waiting for that, not for a time) */
                struct timespec ms = {0, 1000000L};
                for (int waited = 0; (in_window ? access(held, F_OK) != 0 : read_sink() <= last) && waited < 120000;
                     waited++)
                        nanosleep(&ms, NULL);
                assert_int_equal(kill(pid, SIGKILL), 0);
                unlink(hold);
                unlink(held);
                int status;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFSIGNALED(status)); /* not an early exit on error */
                assert_int_equal(WTERMSIG(status), SIGKILL);

                uint64_t sink = read_sink();
                State *s = NULL;
                assert_int_equal(state_open(dir, &s), 0);
                int r = state_recover(s, "p", pos(sink));
                assert_true(r >= 0);
                rolled_back += r;
                char key[32];
                for (int j = 0; j < CRASH_ROWS; j++) {
                        int64_t expect = -1;
                        for (uint64_t n = sink; n >= 1; n--)
                                if (writes(n, j)) {
                                        expect = (int64_t)n;
                                        break;
                                }
                        snprintf(key, sizeof(key), "r%d", j);
                        assert_int_equal(ts_of(s, "p", "t", key), expect);
                }
                int64_t big = sink >= 4 ? (int64_t)(sink / 4 * 4) : -1;
                for (int j = 0; j < CRASH_BIG; j += 101) {
                        snprintf(key, sizeof(key), "big%d", j);
                        assert_int_equal(ts_of(s, "p", "t", key), big);
                }
                StateBatch *b = NULL; /* every batch record is gone */
                assert_int_equal(state_batch_begin(s, "p", sink + 1, pos(sink + 1), &b), 0);
                state_batch_abort(b);
                state_free(s);
                if (round == 0)
                        first = sink;
                last = sink;
        }
        assert_true(last > first + 10); /* the children made progress between the kills */
        assert_true(rolled_back > 0);   /* and some kills fell between state and sink commits */
}

/* An operator's pause: kept per pipeline, across closing and opening the store. */
static void test_paused(void **state) {
        (void)state;
        State *s;
        bool paused = true;
        assert_int_equal(state_new(dir, &s), 0);
        assert_int_equal(state_get_paused(s, "orders", &paused), 0);
        assert_false(paused);
        assert_int_equal(state_set_paused(s, "orders", true), 0);
        assert_int_equal(state_set_paused(s, "orders", true), 0);
        assert_int_equal(state_get_paused(s, "orders", &paused), 0);
        assert_true(paused);
        assert_int_equal(state_get_paused(s, "order", &paused), 0);
        assert_false(paused);
        state_free(s);
        assert_int_equal(state_new(dir, &s), 0);
        assert_int_equal(state_get_paused(s, "orders", &paused), 0);
        assert_true(paused);
        assert_int_equal(state_set_paused(s, "orders", false), 0);
        assert_int_equal(state_set_paused(s, "orders", false), 0);
        assert_int_equal(state_get_paused(s, "orders", &paused), 0);
        assert_false(paused);
        char longname[STATE_NAME_MAX + 2];
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(state_set_paused(s, longname, true), -ENAMETOOLONG);
        assert_int_equal(state_set_paused(s, "", true), -EINVAL);
        state_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
                cmocka_unit_test_setup_teardown(test_big_batch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_drop_in_batch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_format, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_when_unused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_paused, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
