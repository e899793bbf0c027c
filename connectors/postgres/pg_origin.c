/* The PostgreSQL sink's replication origin, which marks its writes so they are not synced back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_sink_int.h"

/* The replication origins "cdcsync_*" of the sink's server that no pipeline of this conf uses:
 * left by pipelines removed or renamed (origins are never dropped by cdcsync: a pipeline
 * commented out by mistake, or run by another cdcsync instance against the same server, must not
 * lose its checkpoint's origin). Each one that has recorded progress holds one of the server's
 * max_replication_slots origin slots. Sets *ret_names ("cdcsync_a, cdcsync_b") and *ret_sql (the
 * statements dropping them and their pipelines' checkpoints), NULL when there is none; -ENOMEM or
 * -EIO. */
int pg_origin_stale(PGconn *c, const PipelineConf *pipe, char **ret_names, char **ret_sql) {
        PGresult *res = PQexec(c, "SELECT roname FROM pg_catalog.pg_replication_origin "
                                  "WHERE pg_catalog.left(roname, 8) = 'cdcsync_' ORDER BY 1");
        char *names = NULL, *sql = NULL;
        size_t nl = 0, sl = 0;
        FILE *fn = NULL, *fs = NULL;
        int n = 0;

        *ret_names = *ret_sql = NULL;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                PQclear(res);
                return -EIO;
        }
        fn = open_memstream(&names, &nl);
        fs = open_memstream(&sql, &sl);
        for (int i = 0; fn && fs && i < PQntuples(res); i++) {
                const char *o = PQgetvalue(res, i, 0);
                bool used = false;
                for (int j = 0; pipe->conf && j < pipe->conf->npipelines && !used; j++)
                        used = strcmp(o + 8, pipe->conf->pipelines[j].name) == 0;
                if (!pipe->conf)
                        used = strcmp(o + 8, pipe->name) == 0;
                if (used)
                        continue;
                char *lit = PQescapeLiteral(c, o, strlen(o)), *plit = PQescapeLiteral(c, o + 8, strlen(o + 8));
                fprintf(fn, "%s%s", n ? ", " : "", o);
                fprintf(fs,
                        "%sSELECT pg_replication_origin_drop(%s); DELETE FROM cdcsync.checkpoints WHERE pipeline = %s;",
                        n ? " " : "", lit ? lit : "''", plit ? plit : "''");
                PQfreemem(lit);
                PQfreemem(plit);
                n++;
        }
        PQclear(res);
        if (fn)
                fclose(fn);
        if (fs)
                fclose(fs);
        if (!fn || !fs || !names || !sql) {
                free(names);
                free(sql);
                return -ENOMEM;
        }
        if (n == 0) {
                free(names);
                free(sql);
                return 0;
        }
        *ret_names = names;
        *ret_sql = sql;
        return 0;
}

/* A backend releases its session's origin as it exits, after its client has gone: a session of
 * ours closed a moment ago (a pipeline restarting after an error, a reconnect after the server
 * ended the session) may hold the origin a little longer. Setting it up is retried every
 * ORIGIN_POLL_MS for up to ORIGIN_WAIT_MS, and at most a quarter of timeout_s (the whole open is
 * bounded by timeout_s), before the error says another session holds it. */
#define ORIGIN_POLL_MS 50
#define ORIGIN_WAIT_MS 2000

/* Marks this session's writes with the origin "cdcsync_<pipeline>", creating it if absent. */
int pg_origin_setup(Sink *k, CdcError *err) {
        const char *vals[1] = {k->origin};
        PGresult *res = NULL;
        bool exists;
        int r, wait_ms = conf_timeout_ms(k->conf) / 4 < ORIGIN_WAIT_MS ? conf_timeout_ms(k->conf) / 4 : ORIGIN_WAIT_MS;

        k->origin_ok = false;
        r = pg_pipe_exec_params(k, "SELECT pg_replication_origin_oid($1) IS NOT NULL", 1, vals,
                                "looking up the replication origin", &res, err);
        if (r < 0)
                goto out;
        exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!exists) {
                r = pg_pipe_exec_params(k, "SELECT pg_replication_origin_create($1)", 1, vals,
                                        "creating the replication origin", NULL, err);
                if (r < 0 && !pg_pipe_sqlstate_is(err, "23505"))
                        goto out;
        }
        for (int waited = 0;; waited += ORIGIN_POLL_MS) {
                r = pg_pipe_exec_params(k, "SELECT pg_replication_origin_session_setup($1)", 1, vals,
                                        "setting up the replication origin", NULL, err);
                if (r == 0 || !pg_pipe_sqlstate_is(err, "55006") || waited >= wait_ms)
                        break;
                nanosleep(&(struct timespec){0, ORIGIN_POLL_MS * 1000000L}, NULL);
        }
        if (r < 0 && pg_pipe_sqlstate_is(err, "55006")) {
                /* Still held: a second cdcsync running the same pipeline, or an old session of ours
                 * whose backend is slow to exit. The pipeline retries. */
                char m[sizeof(err->message)];
                snprintf(m, sizeof(m), "%s", err->message);
                return cdc_error(err, -EBUSY, true, CDC_ERR_CONNECTION,
                                 "%s (still after %d ms) — is another cdcsync running pipeline %s against this sink?",
                                 m, wait_ms, k->pipe->name);
        }
        if (r < 0 && pg_pipe_sqlstate_is(err, "53400")) {
                /* Every origin slot is held: by origins of removed pipelines, most likely. */
                char m[sizeof(err->message)], *names = NULL, *sql = NULL;
                snprintf(m, sizeof(m), "%s", err->message);
                pg_origin_stale(k->conn, k->pipe, &names, &sql);
                if (names)
                        cdc_error(err, -ENOSPC, true, CDC_ERR_SLOT,
                                  "%s — replication origins of pipelines that are not in this conf hold origin slots: "
                                  "%s; if those pipelines are gone for good (and no other cdcsync runs them against "
                                  "this server), drop them with their checkpoints (the DELETE in the database each "
                                  "wrote to): %s — or raise max_replication_slots; the pipeline retries",
                                  m, names, sql);
                else
                        cdc_error(err, -ENOSPC, true, CDC_ERR_SLOT,
                                  "%s — every origin slot is in use (max_replication_slots): raise it, or drop origins "
                                  "no longer used (SELECT * FROM pg_replication_origin_status); the pipeline retries",
                                  m);
                free(names);
                free(sql);
                return err->code;
        }
out:
        if (r < 0 && pg_pipe_sqlstate_is(err, "42501")) {
                if (k->pipe->conflict == CONFLICT_NONE) {
                        log_warn(k->ctx,
                                 "cannot use replication origin %s (permission denied): writes are "
                                 "not marked, fine for one-way sync only; to mark them " ORIGIN_GRANT,
                                 k->origin);
                        return 0;
                }
                return cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                 "sink %s: cannot use replication origin %s, which marks cdcsync's "
                                 "writes so they are not synced back: permission denied — " ORIGIN_GRANT
                                 "; or set conflict = none in [pipeline.%s] for one-way sync",
                                 k->conf->name, k->origin, k->pipe->name);
        }
        if (r == 0)
                k->origin_ok = true;
        return r;
}

int pg_sink_write_mark(const PipelineConf *writer, char *buf, size_t len) {
        return snprintf(buf, len, "cdcsync_%s", writer->name);
}
