/* A pipeline's lease in its PostgreSQL sink (ha = on, issue #16): the side session that creates,
 * takes, renews and releases the row cdcsync.leases(pipeline) (decisions in lease.h). Every call
 * is bounded by a deadline guard and statement_timeout / lock_timeout on the server. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/deadline.h"
#include "cdcsync/lease.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_sink.h"

struct SinkLease {
        const ConnectorConf *conf; /* borrowed */
        const PipelineConf *pipe;  /* borrowed */
        PGconn *conn;              /* owned */
        Deadline *guard;           /* owned */
        int takeover_s;
        char takeover[16];
};

/* One statement with parameters, bounded by the guard; *ret (may be NULL) gets a tuples result. */
static int lease_exec(SinkLease *l, const char *sql, int n, const char *const *vals, const char *what, PGresult **ret,
                      CdcError *err) {
        char msg[512];
        deadline_arm(l->guard, lease_renew_deadline_ms(l->takeover_s));
        PGresult *res = PQexecParams(l->conn, sql, n, NULL, vals, NULL, NULL, 0);
        bool fired = deadline_disarm(l->guard);
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                pg_conn_error_text(l->conf, l->conn, res, msg, sizeof(msg));
                PQclear(res);
                return cdc_error(err, fired ? -ETIMEDOUT : -EIO, true, CDC_ERR_CONNECTION,
                                 "sink %s: pipeline %s: %s failed%s: %s — the lease is retried", l->conf->name,
                                 l->pipe->name, what, fired ? " (no answer within the renewal deadline)" : "", msg);
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

SinkLease *pg_sink_lease_free(SinkLease *l) {
        if (!l)
                return NULL;
        if (l->guard)
                deadline_set_fd(l->guard, -1);
        if (l->conn)
                PQfinish(l->conn);
        deadline_free(l->guard);
        free(l);
        return NULL;
}

int pg_sink_lease_open(const ConnectorConf *conn, const PipelineConf *pipe, int takeover_s, SinkLease **ret,
                       CdcError *err) {
        SinkLease *l = calloc(1, sizeof(*l));
        int r;
        if (!l)
                return cdc_error(err, -ENOMEM, true, CDC_ERR_INTERNAL, "out of memory");
        l->conf = conn;
        l->pipe = pipe;
        l->takeover_s = takeover_s;
        snprintf(l->takeover, sizeof(l->takeover), "%d", takeover_s);
        r = deadline_new(&l->guard);
        if (r < 0) {
                cdc_error(err, r, true, CDC_ERR_INTERNAL, "cannot start a deadline guard");
                goto fail;
        }
        r = pg_conn_open(conn, PG_CONN_SQL, &l->conn, err);
        if (r < 0)
                goto fail;
        deadline_set_fd(l->guard, PQsocket(l->conn));
        /* A frozen leader may hold the row locked in its batch's transaction: wait a bounded time,
         * then terminate its session (lease_take). */
        char tmo[64];
        snprintf(tmo, sizeof(tmo), "%d", lease_renew_deadline_ms(takeover_s));
        const char *v[1] = {tmo};
        r = lease_exec(l, "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $1, false)", 1,
                       v, "setting the lease session's timeouts", NULL, err);
        if (r == 0)
                r = lease_exec(l, "CREATE SCHEMA IF NOT EXISTS cdcsync", 0, NULL, "creating schema cdcsync", NULL, err);
        if (r == 0)
                r = lease_exec(l, LEASE_SQL_CREATE_TABLE, 0, NULL, "creating table cdcsync.leases", NULL, err);
        if (r == 0)
                r = lease_exec(l, LEASE_SQL_CREATE_SESSIONS_TABLE, 0, NULL, "creating table cdcsync.lease_sessions",
                               NULL, err);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        pg_sink_lease_free(l);
        return r;
}

static int64_t parse_i64(const char *s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        return errno == 0 && *end == '\0' ? v : -1;
}

static int lease_read(SinkLease *l, LeaseRow *row, CdcError *err) {
        PGresult *res;
        const char *v[1] = {l->pipe->name};
        int r = lease_exec(l, LEASE_SQL_READ, 1, v, "reading the lease", &res, err);
        if (r < 0)
                return r;
        *row = (LeaseRow){0};
        if (PQntuples(res) == 1) {
                row->exists = true;
                snprintf(row->holder, sizeof(row->holder), "%s", PQgetvalue(res, 0, 0));
                row->generation = parse_i64(PQgetvalue(res, 0, 1));
                row->expires_in_ms = parse_i64(PQgetvalue(res, 0, 2));
                row->holder_session = (int)parse_i64(PQgetvalue(res, 0, 3));
        }
        PQclear(res);
        return 0;
}

/* The generation an INSERT / UPDATE ... RETURNING gave, 0 when it touched no row. */
static int64_t returned(PGresult *res) {
        int64_t g = PQntuples(res) == 1 ? parse_i64(PQgetvalue(res, 0, 0)) : 0;
        PQclear(res);
        return g > 0 ? g : 0;
}

/* Ends the sessions the pipeline's leaders listed under a generation below `below` (text). */
static int end_sessions(SinkLease *l, const char *below, CdcError *err) {
        const char *v[2] = {l->pipe->name, below};
        return lease_exec(l, LEASE_SQL_SESSIONS_END, 2, v, "ending the deposed leader's sink sessions", NULL, err);
}

static int lease_act(SinkLease *l, const LeaseRow *rowp, LeaseAction a, const char *instance, int64_t held,
                     int64_t *ret_held, CdcError *err) {
        LeaseRow row = *rowp;
        PGresult *res;
        char gen[32];
        int r;
        const char *v[4] = {l->pipe->name, instance, l->takeover, gen};
        switch (a) {
        case LEASE_CREATE:
                r = lease_exec(l, LEASE_SQL_CREATE, 3, v, "creating the lease", &res, err);
                if (r == 0)
                        *ret_held = returned(res);
                return r;
        case LEASE_TAKE:
                /* The deposed leader's sink sessions may hold rows locked in frozen transactions
                 * (the lease row past a batch's fence, data rows of apply workers): end them
                 * first, so the UPDATE does not wait past lock_timeout and the new leader's
                 * batches do not wait at all. */
                if (row.holder_session > 0) {
                        char pid[16];
                        snprintf(pid, sizeof(pid), "%d", row.holder_session);
                        const char *pv[1] = {pid};
                        r = lease_exec(l,
                                       "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1::int "
                                       "AND pid <> pg_backend_pid() AND datname = current_database()",
                                       1, pv, "ending the deposed leader's sink session", NULL, err);
                        if (r < 0)
                                return r;
                }
                snprintf(gen, sizeof(gen), "%" PRId64, row.generation + 1);
                r = end_sessions(l, gen, err);
                if (r < 0)
                        return r;
                snprintf(gen, sizeof(gen), "%" PRId64, row.generation);
                r = lease_exec(l, LEASE_SQL_TAKE, 4, v, "taking the lease over", &res, err);
                if (r < 0)
                        return r;
                *ret_held = returned(res);
                /* A session the deposed leader listed between the first pass and the take: its
                 * registration held the row FOR SHARE, so it is visible now. Later ones find the
                 * new generation and register nothing. */
                if (*ret_held > 0) {
                        snprintf(gen, sizeof(gen), "%" PRId64, *ret_held);
                        r = end_sessions(l, gen, err);
                        if (r == 0)
                                r = lease_exec(l, LEASE_SQL_SESSIONS_FORGET, 2,
                                               (const char *const[]){l->pipe->name, gen},
                                               "forgetting the deposed leader's sessions", NULL, err);
                        if (r < 0) {
                                /* The lease is ours whatever happens here: the new leader's
                                 * sessions end what is left when they register (set_fence). */
                                log_warn(NULL, "%s", err->message);
                                *err = (CdcError){0};
                                r = 0;
                        }
                }
                return r;
        case LEASE_RENEW:
                snprintf(gen, sizeof(gen), "%" PRId64, held);
                {
                        const char *rv[3] = {l->pipe->name, gen, l->takeover};
                        r = lease_exec(l, LEASE_SQL_RENEW, 3, rv, "renewing the lease", &res, err);
                }
                if (r < 0)
                        return r;
                *ret_held = strcmp(PQcmdTuples(res), "1") == 0 ? held : 0;
                PQclear(res);
                return 0;
        case LEASE_WAIT:
        case LEASE_STEP_DOWN: *ret_held = 0; return 0;
        }
        *ret_held = 0;
        return 0;
}

int pg_sink_lease_step(SinkLease *l, const char *instance, int64_t held, int64_t *ret_held, LeaseSeen *ret_seen,
                       CdcError *err) {
        LeaseRow row;
        int r = lease_read(l, &row, err);
        if (r < 0)
                return r;
        LeaseAction a = lease_decide(&row, instance, held);
        r = lease_act(l, &row, a, instance, held, ret_held, err);
        if (r == 0)
                lease_seen(&row, a, instance, *ret_held, ret_seen);
        return r;
}

int pg_sink_lease_release(SinkLease *l, int64_t held, CdcError *err) {
        char gen[32];
        snprintf(gen, sizeof(gen), "%" PRId64, held);
        const char *v[2] = {l->pipe->name, gen};
        return lease_exec(l, LEASE_SQL_RELEASE, 2, v, "releasing the lease", NULL, err);
}
