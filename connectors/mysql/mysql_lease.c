/* A pipeline's lease in its MySQL/MariaDB sink (ha = on, issue #16): the side session that
 * creates, takes, renews and releases the row `cdcsync`.`leases`(pipeline), as pg_lease.c does in
 * PostgreSQL (decisions in lease.h), and the fence each batch checks before COMMIT. Times are the
 * sink server's NOW(6) (the session's time_zone is pinned to +00:00). Every call is bounded by a
 * deadline guard, and a row lock by innodb_lock_wait_timeout. */
#include "mysql/mysql_sink_int.h"

#include "cdcsync/deadline.h"
#include "cdcsync/lease.h"

#define ML_TABLE "`cdcsync`.`leases`"
#define ML_SQL_CREATE_TABLE                                                                                            \
        "CREATE TABLE IF NOT EXISTS " ML_TABLE " (pipeline VARCHAR(255) NOT NULL PRIMARY KEY, holder VARCHAR(255) "    \
        "NOT NULL, generation BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL, holder_session BIGINT UNSIGNED NOT "   \
        "NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
#define ML_SQL_READ                                                                                                    \
        "SELECT holder, generation, CAST(TIMESTAMPDIFF(MICROSECOND, NOW(6), expires_at) DIV 1000 AS SIGNED), "         \
        "holder_session FROM " ML_TABLE " WHERE pipeline = ?"
/* pipeline, instance, takeover_s; a duplicate key: another instance created it first */
#define ML_SQL_CREATE                                                                                                  \
        "INSERT INTO " ML_TABLE " (pipeline, holder, generation, expires_at, holder_session) VALUES (?, ?, 1, "        \
        "NOW(6) + INTERVAL CAST(? AS SIGNED) SECOND, CONNECTION_ID())"
/* instance, takeover_s, pipeline, generation read: only one taker changes the row */
#define ML_SQL_TAKE                                                                                                    \
        "UPDATE " ML_TABLE " SET holder = ?, generation = generation + 1, expires_at = NOW(6) + INTERVAL CAST(? AS "   \
        "SIGNED) SECOND, holder_session = CONNECTION_ID() WHERE pipeline = ? AND generation = CAST(? AS SIGNED) AND "  \
        "expires_at < NOW(6)"
/* takeover_s, pipeline, generation held: must find one row (the session counts found rows) */
#define ML_SQL_RENEW                                                                                                   \
        "UPDATE " ML_TABLE " SET expires_at = NOW(6) + INTERVAL CAST(? AS SIGNED) SECOND WHERE pipeline = ? AND "      \
        "generation = CAST(? AS SIGNED)"
/* pipeline, generation held: graceful hand-over after the last commit; no session left to end */
#define ML_SQL_RELEASE                                                                                                 \
        "UPDATE " ML_TABLE " SET expires_at = NOW(6), holder_session = 0 WHERE pipeline = ? AND generation = "         \
        "CAST(? AS SIGNED)"
/* In the batch's transaction, before COMMIT: pipeline, generation held. Locks the row until the
 * commit (a taker's UPDATE waits for it, or ends this session, whose id it records) and finds
 * the row only while the generation is still ours. */
#define ML_SQL_FENCE                                                                                                   \
        "UPDATE " ML_TABLE " SET holder_session = CONNECTION_ID() WHERE pipeline = ? AND generation = CAST(? AS "      \
        "SIGNED)"

/* Every sink session of the leader (apply workers too) is listed before it applies anything, so
 * that a taker ends each one: a frozen leader's worker may hold row locks in an open transaction
 * that the new leader's batches would wait for (see lease.h). */
#define ML_SESSIONS "`cdcsync`.`lease_sessions`"
#define ML_SQL_CREATE_SESSIONS                                                                                         \
        "CREATE TABLE IF NOT EXISTS " ML_SESSIONS " (pipeline VARCHAR(255) NOT NULL, session BIGINT UNSIGNED NOT "     \
        "NULL, generation BIGINT NOT NULL, PRIMARY KEY (pipeline, session)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
/* pipeline: forgets the sessions that ended */
#define ML_SQL_SESSIONS_PRUNE                                                                                          \
        "DELETE FROM " ML_SESSIONS " WHERE pipeline = ? AND session NOT IN (SELECT ID FROM "                           \
        "information_schema.PROCESSLIST)"
/* pipeline, generation held: lists this session only while the generation is still ours; the
 * locking read waits for a taker's UPDATE and then sees its new generation */
#define ML_SQL_SESSION_REGISTER                                                                                        \
        "INSERT INTO " ML_SESSIONS " (pipeline, session, generation) SELECT pipeline, CONNECTION_ID(), generation "    \
        "FROM " ML_TABLE " WHERE pipeline = ? AND generation = CAST(? AS SIGNED) LOCK IN SHARE MODE ON DUPLICATE KEY " \
        "UPDATE generation = VALUES(generation)"
/* pipeline, generation: the live sessions listed under a generation below it, but the caller's */
#define ML_SQL_SESSIONS_BELOW                                                                                          \
        "SELECT s.session FROM " ML_SESSIONS " s JOIN information_schema.PROCESSLIST p ON p.ID = s.session WHERE "     \
        "s.pipeline = ? AND s.generation < CAST(? AS SIGNED) AND s.session <> CONNECTION_ID()"
/* pipeline, generation: forgets the sessions listed under a generation below it */
#define ML_SQL_SESSIONS_FORGET "DELETE FROM " ML_SESSIONS " WHERE pipeline = ? AND generation < CAST(? AS SIGNED)"
#define ML_END_MAX 64 /* sessions ended per pass; a leader opens apply_workers + 1 at a time */

typedef struct {
        uint64_t ids[ML_END_MAX];
        int n;
} SessionIds;

static int session_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)lens;
        SessionIds *s = ud;
        if (ncols < 1 || !cells[0] || s->n == ML_END_MAX)
                return 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cells[0], &end, 10);
        if (errno == 0 && *end == '\0' && v > 0)
                s->ids[s->n++] = v;
        return 0;
}

/* Ends session id on connection m. The id is a number we parsed, printed back: KILL takes no
 * parameter. One already gone is fine; a denied KILL is a privilege error. */
static int kill_session(MYSQL *m, const char *sink, const char *pipeline, uint64_t id, CdcError *err) {
        char sql[64];
        snprintf(sql, sizeof(sql), "KILL CONNECTION %" PRIu64, id);
        if (mysql_real_query(m, sql, strlen(sql)) == 0)
                return 0;
        unsigned int e = mysql_errno(m);
        if (e == ER_NO_SUCH_THREAD)
                return 0;
        if (e == ER_KILL_DENIED_ERROR)
                return cdc_error(err, -EPERM, true, CDC_ERR_PRIVILEGE,
                                 "sink %s: pipeline %s: cannot end the deposed leader's sink session %" PRIu64
                                 " (KILL CONNECTION was denied) — let the instances connect as the same user, "
                                 "or GRANT CONNECTION ADMIN (MySQL 8, MariaDB 10.5+) or SUPER to this one",
                                 sink, pipeline, id);
        return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                         "sink %s: pipeline %s: ending the deposed leader's sink session %" PRIu64
                         " failed: %s (error %u) — the lease is retried",
                         sink, pipeline, id, mysql_error(m), e);
}

/* Ends, on connection m, the live sessions of `pipeline` listed under a generation below `below`
 * (text), with kill_session(). */
static int end_listed(MYSQL *m, const char *sink, const char *pipeline, const char *below, CdcError *err) {
        SessionIds ids = {.n = 0};
        const char *v[2] = {pipeline, below};
        int r = mysql_conn_query(m, ML_SQL_SESSIONS_BELOW, v, 2, session_row, &ids, err);
        if (r < 0)
                return r;
        for (int i = 0; i < ids.n; i++) /* r: the rows the query found */
                if ((r = kill_session(m, sink, pipeline, ids.ids[i], err)) < 0)
                        return r;
        return 0;
}

struct SinkLease {
        const ConnectorConf *conf; /* borrowed */
        const PipelineConf *pipe;  /* borrowed */
        MYSQL *m;                  /* owned */
        Deadline *guard;           /* owned */
        int takeover_s;
        char takeover[16];
};

static int lease_fail(SinkLease *l, const char *what, bool fired, unsigned int e, const char *msg, CdcError *err) {
        return cdc_error(err, fired ? -ETIMEDOUT : -EIO, true, CDC_ERR_CONNECTION,
                         "sink %s: pipeline %s: %s failed%s: %s (error %u) — the lease is retried", l->conf->name,
                         l->pipe->name, what, fired ? " (no answer within the renewal deadline)" : "", msg, e);
}

/* One statement with string parameters as a prepared statement, bounded by the guard. *ret_rows
 * (may be NULL): the rows it found; *ret_errno (may be NULL): the server's error number on
 * failure, for the callers that take some errors as answers. */
static int lease_dml(SinkLease *l, const char *sql, const char *const *vals, int n, const char *what,
                     uint64_t *ret_rows, unsigned int *ret_errno, CdcError *err) {
        MYSQL_BIND b[4];
        if (n > 4)
                return cdc_error(err, -EINVAL, false, CDC_ERR_INTERNAL, "lease statement of %d parameters", n);
        memset(b, 0, sizeof(b));
        for (int i = 0; i < n; i++) {
                b[i].buffer_type = MYSQL_TYPE_STRING;
                b[i].buffer = (void *)vals[i];
                b[i].buffer_length = strlen(vals[i]);
        }
        deadline_arm(l->guard, lease_renew_deadline_ms(l->takeover_s));
        if (n == 0) { /* no parameter: the text protocol, which takes every statement */
                bool done = mysql_real_query(l->m, sql, strlen(sql)) == 0;
                bool late = deadline_disarm(l->guard);
                unsigned int e = mysql_errno(l->m);
                if (done && ret_rows)
                        *ret_rows = mysql_affected_rows(l->m);
                if (done)
                        return 0;
                if (ret_errno)
                        *ret_errno = late ? 0 : e;
                return lease_fail(l, what, late, e, mysql_error(l->m), err);
        }
        MYSQL_STMT *st = mysql_stmt_init(l->m);
        bool ok = st && !mysql_stmt_prepare(st, sql, strlen(sql)) && !mysql_stmt_bind_param(st, b) &&
                  !mysql_stmt_execute(st);
        bool fired = deadline_disarm(l->guard);
        int r = 0;
        if (ok && ret_rows)
                *ret_rows = mysql_stmt_affected_rows(st);
        if (!ok) {
                unsigned int e = st ? mysql_stmt_errno(st) : mysql_errno(l->m);
                if (ret_errno)
                        *ret_errno = fired ? 0 : e;
                r = lease_fail(l, what, fired, e, st ? mysql_stmt_error(st) : mysql_error(l->m), err);
        }
        if (st)
                mysql_stmt_close(st);
        return r;
}

SinkLease *mysql_sink_lease_free(SinkLease *l) {
        if (!l)
                return NULL;
        if (l->guard)
                deadline_set_fd(l->guard, -1);
        if (l->m)
                mysql_close(l->m);
        deadline_free(l->guard);
        free(l);
        return NULL;
}

int mysql_sink_lease_open(const ConnectorConf *conn, const PipelineConf *pipe, int takeover_s, SinkLease **ret,
                          CdcError *err) {
        SinkLease *l = calloc(1, sizeof(*l));
        int r;
        if (!l)
                return cdc_oom(err);
        l->conf = conn;
        l->pipe = pipe;
        l->takeover_s = takeover_s;
        snprintf(l->takeover, sizeof(l->takeover), "%d", takeover_s);
        r = deadline_new(&l->guard);
        if (r < 0) {
                cdc_error(err, r, true, CDC_ERR_INTERNAL, "cannot start a deadline guard");
                goto fail;
        }
        /* CLIENT_FOUND_ROWS: a renewal finds its row even when expires_at does not change */
        r = mysql_conn_open_flags(conn, NULL, CLIENT_FOUND_ROWS, &l->m, err);
        if (r < 0)
                goto fail;
        deadline_set_fd(l->guard, (int)mysql_get_socket(l->m));
        /* A frozen leader may hold the row locked in its batch's transaction: wait a bounded time
         * (whole seconds, at least 1), then end its session (take). Autocommit: each statement is
         * its own transaction. */
        char sql[128];
        int wait_s = (lease_renew_deadline_ms(takeover_s) + 999) / 1000;
        snprintf(sql, sizeof(sql), "SET SESSION autocommit = 1, innodb_lock_wait_timeout = %d", wait_s);
        r = lease_dml(l, sql, NULL, 0, "setting the lease session's timeouts", NULL, NULL, err);
        if (r == 0)
                r = lease_dml(l, "CREATE DATABASE IF NOT EXISTS `cdcsync`", NULL, 0, "creating database cdcsync", NULL,
                              NULL, err);
        if (r == 0)
                r = lease_dml(l, ML_SQL_CREATE_TABLE, NULL, 0, "creating table cdcsync.leases", NULL, NULL, err);
        if (r == 0)
                r = lease_dml(l, ML_SQL_CREATE_SESSIONS, NULL, 0, "creating table cdcsync.lease_sessions", NULL, NULL,
                              err);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        mysql_sink_lease_free(l);
        return r;
}

static int64_t parse_i64(const char *s) {
        char *end;
        if (!s)
                return -1;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        return errno == 0 && end != s && *end == '\0' ? v : -1;
}

typedef struct {
        LeaseRow row;
        uint64_t session;
} ReadRow;

static int read_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        (void)lens;
        ReadRow *rr = ud;
        if (ncols < 4 || !cells[0] || !cells[1] || !cells[2] || !cells[3])
                return -EBADMSG;
        rr->row.exists = true;
        snprintf(rr->row.holder, sizeof(rr->row.holder), "%s", cells[0]);
        rr->row.generation = parse_i64(cells[1]);
        rr->row.expires_in_ms = parse_i64(cells[2]);
        errno = 0;
        char *end;
        unsigned long long s = strtoull(cells[3], &end, 10);
        rr->session = errno == 0 && *end == '\0' ? s : 0;
        /* LeaseRow.holder_session tells only "a session to end" from "released" (0) here: the
         * MySQL thread id, which may pass INT_MAX, stays in rr->session. */
        rr->row.holder_session = rr->session > 0 ? 1 : 0;
        return 0;
}

static int lease_read(SinkLease *l, ReadRow *rr, CdcError *err) {
        const char *v[1] = {l->pipe->name};
        *rr = (ReadRow){0};
        deadline_arm(l->guard, lease_renew_deadline_ms(l->takeover_s));
        CdcError e = {0};
        int r = mysql_conn_query(l->m, ML_SQL_READ, v, 1, read_row, rr, &e);
        bool fired = deadline_disarm(l->guard);
        if (r == -EBADMSG)
                return cdc_error(err, -EBADMSG, true, CDC_ERR_QUERY,
                                 "sink %s: pipeline %s: the row of `cdcsync`.`leases` has NULLs — delete it",
                                 l->conf->name, l->pipe->name);
        if (r < 0)
                return cdc_error(err, fired ? -ETIMEDOUT : r, true, CDC_ERR_CONNECTION,
                                 "sink %s: pipeline %s: reading the lease failed%s: %s — the lease is retried",
                                 l->conf->name, l->pipe->name, fired ? " (no answer within the renewal deadline)" : "",
                                 e.message);
        return 0;
}

/* The deposed leader's sink session may hold the row locked (a frozen batch past its fence): end
 * it first, so the takeover does not wait for it (kill_session, bounded by the lease's guard). */
static int end_session(SinkLease *l, uint64_t session, CdcError *err) {
        if (session == 0 || session == (uint64_t)mysql_thread_id(l->m))
                return 0;
        deadline_arm(l->guard, lease_renew_deadline_ms(l->takeover_s));
        int r = kill_session(l->m, l->conf->name, l->pipe->name, session, err);
        if (deadline_disarm(l->guard) && r < 0)
                return lease_fail(l, "ending the deposed leader's sink session", true, 0, "", err);
        return r;
}

/* end_listed() on the lease's session, bounded by its guard. */
static int end_sessions(SinkLease *l, int64_t below, CdcError *err) {
        char gen[32];
        snprintf(gen, sizeof(gen), "%" PRId64, below);
        deadline_arm(l->guard, lease_renew_deadline_ms(l->takeover_s));
        int r = end_listed(l->m, l->conf->name, l->pipe->name, gen, err);
        if (deadline_disarm(l->guard) && r < 0)
                return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                 "sink %s: pipeline %s: ending the deposed leader's sink sessions got no answer within "
                                 "the renewal deadline — the lease is retried",
                                 l->conf->name, l->pipe->name);
        return r;
}

static int lease_act(SinkLease *l, const ReadRow *rr, LeaseAction a, const char *instance, int64_t held,
                     int64_t *ret_held, CdcError *err) {
        char gen[32];
        uint64_t rows = 0;
        unsigned int e = 0;
        int r;
        *ret_held = 0;
        switch (a) {
        case LEASE_CREATE: {
                const char *v[3] = {l->pipe->name, instance, l->takeover};
                r = lease_dml(l, ML_SQL_CREATE, v, 3, "creating the lease", &rows, &e, err);
                if (r < 0 && e == ER_DUP_ENTRY) {
                        *err = (CdcError){0};
                        return 0; /* another instance created it first: read again next time */
                }
                if (r == 0 && rows == 1)
                        *ret_held = 1;
                return r;
        }
        case LEASE_TAKE: {
                /* The deposed leader's sessions may hold rows locked in frozen transactions (the
                 * lease row past a batch's fence, data rows of apply workers): end them first, so
                 * the UPDATE does not wait and the new leader's batches do not either. */
                r = end_session(l, rr->session, err);
                if (r == 0)
                        r = end_sessions(l, rr->row.generation + 1, err);
                if (r < 0)
                        return r;
                snprintf(gen, sizeof(gen), "%" PRId64, rr->row.generation);
                const char *v[4] = {instance, l->takeover, l->pipe->name, gen};
                r = lease_dml(l, ML_SQL_TAKE, v, 4, "taking the lease over", &rows, NULL, err);
                if (r < 0 || rows != 1)
                        return r;
                *ret_held = rr->row.generation + 1;
                /* A session the deposed leader listed between the first pass and the take (its
                 * locking read let the take wait): end it too. Later ones register nothing. The
                 * lease is ours whatever happens here; the new leader's sessions end what is left
                 * when they register. */
                snprintf(gen, sizeof(gen), "%" PRId64, *ret_held);
                const char *fv[2] = {l->pipe->name, gen};
                r = end_sessions(l, *ret_held, err);
                if (r == 0)
                        r = lease_dml(l, ML_SQL_SESSIONS_FORGET, fv, 2, "forgetting the deposed leader's sessions",
                                      NULL, NULL, err);
                if (r < 0) {
                        log_warn(NULL, "%s", err->message);
                        *err = (CdcError){0};
                }
                return 0;
        }
        case LEASE_RENEW: {
                snprintf(gen, sizeof(gen), "%" PRId64, held);
                const char *v[3] = {l->takeover, l->pipe->name, gen};
                r = lease_dml(l, ML_SQL_RENEW, v, 3, "renewing the lease", &rows, NULL, err);
                if (r == 0 && rows == 1)
                        *ret_held = held;
                return r;
        }
        case LEASE_WAIT:
        case LEASE_STEP_DOWN: return 0;
        }
        return 0;
}

int mysql_sink_lease_step(SinkLease *l, const char *instance, int64_t held, int64_t *ret_held, LeaseSeen *ret_seen,
                          CdcError *err) {
        ReadRow rr;
        int r = lease_read(l, &rr, err);
        if (r < 0)
                return r;
        LeaseAction a = lease_decide(&rr.row, instance, held);
        r = lease_act(l, &rr, a, instance, held, ret_held, err);
        if (r == 0)
                lease_seen(&rr.row, a, instance, *ret_held, ret_seen);
        return r;
}

int mysql_sink_lease_release(SinkLease *l, int64_t held, CdcError *err) {
        char gen[32];
        snprintf(gen, sizeof(gen), "%" PRId64, held);
        const char *v[2] = {l->pipe->name, gen};
        return lease_dml(l, ML_SQL_RELEASE, v, 2, "releasing the lease", NULL, NULL, err);
}

/* The pipeline's name and the generation held (printed into held), the parameters of the fence
 * and of the session registration. */
static void fence_params(const Sink *k, char held[32], Param p[2]) {
        snprintf(held, 32, "%" PRId64, k->fence);
        const char *name = k->pipe && k->pipe->name ? k->pipe->name : "";
        p[0] = (Param){.data = (char *)name, .len = strlen(name)};
        p[1] = (Param){.data = held, .len = strlen(held)};
}

const char mysql_sink_fence_sql[] = ML_SQL_FENCE;

/* ha = on: in the batch's transaction, just before COMMIT (see ML_SQL_FENCE). */
int mysql_sink_fence_check(Sink *k, CdcError *err) {
        char held[32];
        uint64_t rows = 0;
        Param p[2];
        fence_params(k, held, p);
        int r = mysql_sink_exec(k, mysql_sink_fence_sql, p, 2, "checking the pipeline's lease", &rows, err);
        if (r < 0)
                return r;
        if (lease_fence_ok(k->fence, rows == 1, k->fence))
                return 0;
        return cdc_error(err, -ESTALE, true, CDC_ERR_LEASE,
                         "%s the lease no longer has generation %" PRId64
                         ", the one this instance held: another instance runs the pipeline now; the batch is rolled "
                         "back and this instance stands by",
                         k->ctx, k->fence);
}

/* ha = on, before the session applies anything (SinkOps.set_fence): forgets the listed sessions
 * that ended, lists this one while the generation is still ours (a taker ends it), ends any the
 * deposed leader left (should the taker have failed to), then records it as the holder's session,
 * which every batch's fence does again. */
int mysql_sink_fence_register(Sink *k, CdcError *err) {
        char held[32];
        uint64_t rows = 0;
        Param p[2];
        fence_params(k, held, p);
        int r = mysql_sink_exec(k, ML_SQL_SESSIONS_PRUNE, p, 1, "forgetting the lease's ended sessions", NULL, err);
        if (r == 0)
                r = mysql_sink_exec(k, ML_SQL_SESSION_REGISTER, p, 2, "listing the sink session with the lease", &rows,
                                    err);
        if (r == 0 && rows == 0)
                r = cdc_error(err, -ESTALE, true, CDC_ERR_LEASE,
                              "%s the lease no longer has generation %" PRId64
                              ", the one this instance held: another instance runs the pipeline now; this instance "
                              "stands by",
                              k->ctx, k->fence);
        if (r == 0 && mysql_commit(k->m))
                r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "%s listing the sink session with the lease: %s",
                              k->ctx, mysql_error(k->m));
        if (r == 0)
                r = end_listed(k->m, k->conn->name, p[0].data, held, err);
        if (r == 0)
                r = mysql_sink_fence_check(k, err);
        if (r == 0 && mysql_commit(k->m))
                r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "%s recording the sink session in the lease: %s",
                              k->ctx, mysql_error(k->m));
        if (r < 0)
                mysql_rollback(k->m);
        return r;
}
