/* `cdcsync check --connect` for a PostgreSQL sink: privileges, stale origins, non-empty targets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "postgres/pg_conn.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

/* `check --connect`: a new pipeline whose first copy is snapshot = initial refuses target tables
 * that hold rows (the copy itself refuses them too: check_empty); one with a checkpoint copies
 * nothing. */
static int check_targets_empty(const ConnectorConf *conn, const PipelineConf *pipe, PGconn *c, CdcError *err) {
        const char *vals[1] = {pipe->name};
        int r = 0;
        if (conf_pipeline_copy_mode(pipe) != SNAPSHOT_INITIAL)
                return 0;
        if (pipe->all_tables) {
                printf("note: sink %s: pipeline %s copies into empty tables only (snapshot = initial); with tables = * "
                       "that is checked when the copy starts\n",
                       conn->name, pipe->name);
                return 0;
        }
        PGresult *res = PQexecParams(c,
                                     "SELECT CASE WHEN to_regclass('cdcsync.checkpoints') IS NULL THEN 0 ELSE "
                                     "(SELECT count(*) FROM cdcsync.checkpoints WHERE pipeline = $1) END",
                                     1, NULL, vals, NULL, NULL, 0);
        bool started = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") != 0;
        PQclear(res);
        for (int i = 0; !started && r == 0 && i < pipe->ntables; i++) {
                const char *t = pipe->tables[i], *dot = strchr(t, '.');
                char sch[256], tab[256], *qs = NULL, *qn = NULL, *sql = NULL;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || conf_map_table(pipe, sch, dot + 1, sch, sizeof(sch), tab, sizeof(tab)) < 0)
                        continue;
                if (pg_sql_quote_ident(sch, &qs) == 0 && pg_sql_quote_ident(tab, &qn) == 0 &&
                    asprintf(&sql, "SELECT count(*) FROM (SELECT FROM %s.%s LIMIT %d) t", qs, qn,
                             CHECK_EMPTY_COUNT_MAX + 1) < 0)
                        sql = NULL;
                char qual[600];
                snprintf(qual, sizeof(qual), "%s.%s", qs ? qs : "", qn ? qn : "");
                const char *p1[1] = {qual};
                res = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p1, NULL, NULL, 0);
                bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
                PQclear(res);
                res = sql && exists ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : NULL;
                if (sql && !exists) {
                        free(qs);
                        free(qn);
                        free(sql);
                        continue;
                }
                if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                        unsigned long long n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
                        if (n > 0) {
                                char name[600], msg[1024];
                                snprintf(name, sizeof(name), "%s.%s", sch, tab);
                                conf_copy_refusal(pipe, name, n > CHECK_EMPTY_COUNT_MAX ? CHECK_EMPTY_COUNT_MAX : n,
                                                  n > CHECK_EMPTY_COUNT_MAX, msg, sizeof(msg));
                                r = cdc_error(err, -EEXIST, false, CDC_ERR_CONF, "%s", msg);
                        }
                } else if (sql) {
                        char msg[600];
                        pg_conn_error_text(conn, c, res, msg, sizeof(msg));
                        r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "sink %s: counting the rows of %s.%s: %s",
                                      conn->name, sch, tab, msg);
                } else {
                        r = cdc_oom(err);
                }
                PQclear(res);
                free(qs);
                free(qn);
                free(sql);
        }
        return r;
}

/* The host and port a dsn names ("" when it names none: libpq's defaults). */
static void dsn_server(const char *dsn, char *buf, size_t len) {
        PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, NULL) : NULL;
        const char *host = "", *port = "";
        for (PQconninfoOption *o = opts; o && o->keyword; o++) {
                if (o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0))
                        host = o->val;
                if (o->val && strcmp(o->keyword, "port") == 0)
                        port = o->val;
        }
        snprintf(buf, len, "%s:%s", host, port);
        PQconninfoFree(opts);
}

static bool same_server(const ConnectorConf *a, const ConnectorConf *b) {
        char sa[300], sb[300];
        if (a == b)
                return true;
        dsn_server(a->dsn, sa, sizeof(sa));
        dsn_server(b->dsn, sb, sizeof(sb));
        return strcmp(sa, sb) == 0;
}

int pg_sink_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        PGconn *c = NULL;
        PGresult *res;
        int r;

        r = pg_conn_open(conn, PG_CONN_SQL, &c, err);
        if (r < 0)
                return r;
        res = PQexec(c, "SELECT current_user, current_database(), "
                        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                        "has_database_privilege(current_database(), 'CREATE'), "
                        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync'), "
                        "COALESCE((SELECT has_schema_privilege('cdcsync', 'USAGE,CREATE') WHERE EXISTS "
                        "(SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync')), false), "
                        "has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_create(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_oid(text)', 'EXECUTE') "
                        "AND has_function_privilege('pg_replication_origin_xact_setup(pg_lsn, timestamptz)', "
                        "'EXECUTE')");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                char msg[600];
                pg_conn_error_text(conn, c, res, msg, sizeof(msg));
                r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "sink %s: checking privileges: %s", conn->name, msg);
                goto out;
        }
        {
                const char *user = PQgetvalue(res, 0, 0), *db = PQgetvalue(res, 0, 1);
                bool super = PQgetvalue(res, 0, 2)[0] == 't';
                bool dbcreate = PQgetvalue(res, 0, 3)[0] == 't';
                bool schema = PQgetvalue(res, 0, 4)[0] == 't';
                bool schemapriv = PQgetvalue(res, 0, 5)[0] == 't';
                bool origin = PQgetvalue(res, 0, 6)[0] == 't';

                if (!super && !(schema ? schemapriv : dbcreate)) {
                        r = cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                      schema ? "sink %s: user %s cannot use schema cdcsync in database "
                                               "%s — run GRANT USAGE, CREATE ON SCHEMA cdcsync TO %s"
                                             : "sink %s: user %s cannot create schema cdcsync in "
                                               "database %s — run GRANT CREATE ON DATABASE ... TO %s",
                                      conn->name, user, db, user);
                        goto out;
                }
                if (!super && !origin) {
                        if (pipe->conflict != CONFLICT_NONE) {
                                r = cdc_error(err, -EACCES, false, CDC_ERR_PRIVILEGE,
                                              "sink %s: user %s cannot use replication origins, "
                                              "which mark cdcsync's writes — " ORIGIN_GRANT
                                              "; or set conflict = none in [pipeline.%s]",
                                              conn->name, user, pipe->name);
                                goto out;
                        }
                        printf("warning: sink %s: user %s cannot use replication origins: writes of "
                               "pipeline %s will not be marked (fine for one-way sync)\n",
                               conn->name, user, pipe->name);
                }
                if (!conn->create_tables)
                        printf("note: sink %s: create_tables = no: every target table of pipeline "
                               "%s must exist\n",
                               conn->name, pipe->name);
        }
        /* Origins are the server's: once per server, for the first pipeline of the conf writing
         * to it. */
        for (int i = 0; pipe->conf && i < pipe->conf->npipelines; i++) {
                const PipelineConf *o = &pipe->conf->pipelines[i];
                /* a sink of this type (conn's) on this server */
                if (!o->sink || !o->sink->type || strcmp(o->sink->type, conn->type) != 0 || !same_server(o->sink, conn))
                        continue;
                char *names = NULL, *sql = NULL;
                if (o == pipe && pg_origin_stale(c, pipe, &names, &sql) == 0 && names)
                        printf("note: sink %s: replication origins of pipelines that are not in this conf: %s — each "
                               "holds an origin slot (max_replication_slots), and its pipeline's checkpoint stays in "
                               "cdcsync.checkpoints; if those pipelines are gone for good (and no other cdcsync runs "
                               "them against this server), drop them with their checkpoints (the DELETE in the "
                               "database each wrote to): %s\n",
                               conn->name, names, sql);
                free(names);
                free(sql);
                break;
        }
        r = check_targets_empty(conn, pipe, c, err);
out:
        PQclear(res);
        PQfinish(c);
        return r;
}
