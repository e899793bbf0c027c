/* The PostgreSQL source's slot and publication: checked, created, made to follow `tables`, and
 * where streaming starts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_source_int.h"

/* ---- checks ---- */

int pg_slot_check_server(Source *s, CdcError *err) {
        PGresult *res = pg_source_query(s, s->sql,
                                        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper, "
                                        "current_setting('server_version_num')::int, r.rolname, quote_ident(r.rolname) "
                                        "FROM pg_roles r WHERE r.rolname = current_user",
                                        0, NULL, err);
        if (!res)
                return err->code;
        int r = 0;
        if (PQntuples(res) != 1) {
                r = cdc_error(err, -EPERM, false, CDC_ERR_SOURCE, "connector %s: cannot read the current role",
                              s->conn->name);
        } else if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_SOURCE,
                              "connector %s: wal_level is '%s', logical decoding needs 'logical' — set wal_level = "
                              "logical in postgresql.conf and restart PostgreSQL",
                              s->conn->name, PQgetvalue(res, 0, 0));
        } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
                r = cdc_error(err, -EPERM, false, CDC_ERR_PRIVILEGE,
                              "connector %s: role \"%s\" lacks the REPLICATION attribute — ALTER ROLE %s "
                              "REPLICATION (or use a role that has it)",
                              s->conn->name, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
        }
        PQclear(res);
        return r;
}

/* 1: the slot exists (for pgoutput), 0: absent; negative with err for another plugin. */
int pg_slot_state(Source *s, bool *ret_invalid, CdcError *err) {
        const char *params[] = {s->slot};
        PGresult *res =
                pg_source_query(s, s->sql,
                                "SELECT plugin, database = current_database(), coalesce(wal_status = 'lost', false) "
                                "FROM pg_replication_slots WHERE slot_name = $1",
                                1, params, err);
        if (!res)
                return err->code;
        int r = 0;
        if (PQntuples(res) == 1) {
                if (strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0)
                        r = cdc_error(err, -EEXIST, false, CDC_ERR_SLOT,
                                      "connector %s: replication slot \"%s\" exists but uses plugin \"%s\", not "
                                      "pgoutput — drop it or set slot = another name",
                                      s->conn->name, s->slot, PQgetvalue(res, 0, 0));
                else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
                        r = cdc_error(err, -EEXIST, false, CDC_ERR_SLOT,
                                      "connector %s: replication slot \"%s\" belongs to another database — set slot = "
                                      "another name",
                                      s->conn->name, s->slot);
                else {
                        *ret_invalid = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
                        r = 1;
                }
        }
        PQclear(res);
        return r;
}

/* Bidirectional sync: the reverse pipeline's sink writes version tags into cdcsync.versions just
 * before each row (engine/rowstate.c); this pipeline reads them back, so the table must exist
 * here and be published (the reverse sink creates it too; whichever comes first). */
/* What follows a table's name in the publication: its column list and row filter. */
static int table_spec(Source *s, const char *table, char **ret, CdcError *err) {
        char *cols = NULL, *where = NULL;
        int r = pg_pubcols_list(s, table, &cols, err);
        if (r == 0)
                r = pg_pubwhere(s, table, &where, err);
        if (r == 0 && asprintf(ret, "%s%s", cols, where) < 0)
                r = cdc_oom(err);
        free(cols);
        free(where);
        return r;
}

static int ensure_versions(Source *s, bool pub_exists, CdcError *err) {
        static const char *const ddl[] = {
                "CREATE SCHEMA IF NOT EXISTS cdcsync",
                "CREATE TABLE IF NOT EXISTS cdcsync.versions (k bytea PRIMARY KEY, v bytea NOT NULL)",
        };
        PGresult *res = pg_source_query(s, s->sql, "SELECT to_regclass('cdcsync.versions') IS NOT NULL", 0, NULL, err);
        if (!res)
                return err->code;
        bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]) && !have; i++) {
                res = pg_source_query(s, s->sql, ddl[i], 0, NULL, err);
                if (!res) {
                        /* retried: the reverse pipeline's sink may be creating it this very moment
                         * (IF NOT EXISTS does not cover a concurrent creation), or the grant may come */
                        size_t n = strlen(err->message);
                        snprintf(err->message + n, sizeof(err->message) - n,
                                 " — bidirectional sync needs table cdcsync.versions in the source database: create "
                                 "it (k bytea PRIMARY KEY, v bytea NOT NULL) or grant CREATE to the source's user");
                        err->retriable = true;
                        return err->code;
                }
                PQclear(res);
        }
        if (!pub_exists || s->pipe->all_tables)
                return 0;
        const char *params[] = {s->publication};
        res = pg_source_query(s, s->sql,
                              "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'cdcsync' "
                              "AND tablename = 'versions'",
                              1, params, err);
        if (!res)
                return err->code;
        bool member = PQntuples(res) == 1;
        PQclear(res);
        if (member)
                return 0;
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        char sql[256];
        snprintf(sql, sizeof(sql), "ALTER PUBLICATION %s ADD TABLE cdcsync.versions", pub ? pub : "\"\"");
        PQfreemem(pub);
        res = pg_source_query(s, s->sql, sql, 0, NULL, err);
        if (!res)
                return err->code;
        PQclear(res);
        log_info(s->ctx, "added cdcsync.versions to publication \"%s\" (bidirectional sync)", s->publication);
        return 0;
}

/* Creates the publication from the pipeline's tables when it does not exist. */
int pg_slot_ensure_publication(Source *s, CdcError *err) {
        const char *params[] = {s->publication};
        PGresult *res = pg_source_query(s, s->sql, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, params, err);
        if (!res)
                return err->code;
        bool exists = PQntuples(res) == 1;
        PQclear(res);
        if (s->pipe->bidirectional) {
                int r = ensure_versions(s, exists, err);
                if (r < 0)
                        return r;
        }
        if (exists)
                return 0;

        /* Identifiers are quoted by the server (quote_ident), never pasted. */
        char *sql = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&sql, &len);
        if (!f)
                return cdc_oom(err);
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        fprintf(f, "CREATE PUBLICATION %s ", pub ? pub : "\"\"");
        PQfreemem(pub);
        if (s->pipe->all_tables) {
                fputs("FOR ALL TABLES", f);
        } else {
                fputs("FOR TABLE ", f);
                for (int i = 0; i < s->pipe->ntables; i++) {
                        const char *t = s->pipe->tables[i];
                        const char *dot = strchr(t, '.');
                        char *sch = dot ? PQescapeIdentifier(s->sql, t, (size_t)(dot - t))
                                        : PQescapeIdentifier(s->sql, "public", 6);
                        const char *nm = dot ? dot + 1 : t;
                        char *tab = PQescapeIdentifier(s->sql, nm, strlen(nm));
                        char *cols = NULL;
                        int r = table_spec(s, t, &cols, err);
                        fprintf(f, "%s%s.%s%s", i ? ", " : "", sch ? sch : "\"\"", tab ? tab : "\"\"",
                                cols ? cols : "");
                        PQfreemem(sch);
                        PQfreemem(tab);
                        free(cols);
                        if (r < 0) {
                                fclose(f);
                                free(sql);
                                return r;
                        }
                }
                if (s->pipe->bidirectional)
                        fputs(", cdcsync.versions", f);
        }
        fputs(pg_partitions_publication_with(s), f);
        fclose(f);
        res = pg_source_query(s, s->sql, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                size_t n = strlen(err->message);
                snprintf(err->message + n, sizeof(err->message) - n,
                         " — while creating publication \"%s\" (the tables must exist; FOR ALL TABLES needs a "
                         "superuser)",
                         s->publication);
                err->retriable = false;
                return err->code;
        }
        PQclear(res);
        log_info(s->ctx, "created publication \"%s\"", s->publication);
        return 0;
}

static bool in_list(char **list, int n, const char *v) {
        for (int i = 0; i < n; i++)
                if (strcmp(list[i], v) == 0)
                        return true;
        return false;
}

static int list_add(char ***list, int *n, const char *v) {
        char **a = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
        if (!a)
                return -ENOMEM;
        *list = a;
        if (!(a[*n] = strdup(v)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

void pg_slot_list_free(char ***list, int *n) {
        for (int i = 0; i < *n; i++)
                free((*list)[i]);
        free(*list);
        *list = NULL;
        *n = 0;
}

/* The publication's tables ("schema.table"), cdcsync.versions aside. */
static int publication_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        const char *params[] = {s->publication};
        PGresult *res =
                pg_source_query(s, s->sql,
                                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 "
                                "AND (schemaname, tablename) <> ('cdcsync', 'versions') ORDER BY 1",
                                1, params, err);
        if (!res)
                return err->code;
        char **list = NULL;
        int n = 0, r = 0;
        for (int i = 0; r == 0 && i < PQntuples(res); i++)
                r = list_add(&list, &n, PQgetvalue(res, i, 0));
        PQclear(res);
        if (r < 0) {
                pg_slot_list_free(&list, &n);
                return cdc_oom(err);
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int pg_source_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        return publication_tables(s, ret, ret_n, err);
}

/* ALTER PUBLICATION name ADD|DROP TABLE schema.table */
static int alter_publication(Source *s, const char *verb, const char *table, CdcError *err) {
        const char *dot = strchr(table, '.');
        char *cols = NULL;
        if (strcmp(verb, "ADD") == 0) {
                int r = table_spec(s, table, &cols, err);
                if (r < 0)
                        return r;
        }
        char *pub = PQescapeIdentifier(s->sql, s->publication, strlen(s->publication));
        char *sch = dot ? PQescapeIdentifier(s->sql, table, (size_t)(dot - table)) : NULL;
        char *tab = dot ? PQescapeIdentifier(s->sql, dot + 1, strlen(dot + 1)) : NULL;
        char *sql = NULL;
        if (!pub || !sch || !tab ||
            asprintf(&sql, "ALTER PUBLICATION %s %s TABLE %s.%s%s", pub, verb, sch, tab, cols ? cols : "") < 0)
                sql = NULL;
        PQfreemem(pub);
        PQfreemem(sch);
        PQfreemem(tab);
        free(cols);
        if (!sql)
                return cdc_oom(err);
        PGresult *res = pg_source_query(s, s->sql, sql, 0, NULL, err);
        free(sql);
        if (!res) {
                size_t n = strlen(err->message);
                snprintf(err->message + n, sizeof(err->message) - n,
                         " — while changing publication \"%s\" to follow tables (%s %s)", s->publication, verb, table);
                err->retriable = true; /* a table not created yet: created later, the pipeline goes on */
                return err->code;
        }
        PQclear(res);
        return 0;
}

/* What the publication holds for member table: its column list (" (a, b)", "" for all) and row
 * filter as the server prints it ("" for none) into have_cols / have_qual. Returns 1 when it is a
 * member, 0 when not, or a CdcError code. */
static int member_spec(Source *s, const char *table, char *have_cols, size_t clen, char *have_qual, size_t qlen,
                       CdcError *err) {
        const char *params[] = {s->publication, table};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT coalesce((SELECT ' (' || string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) || ')' "
                "  FROM pg_catalog.pg_attribute a WHERE a.attrelid = pr.prrelid "
                "  AND a.attnum = ANY (pr.prattrs::pg_catalog.int2[])), ''), "
                "coalesce(pg_catalog.pg_get_expr(pr.prqual, pr.prrelid), '') "
                "FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid "
                "JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE p.pubname = $1 AND n.nspname || '.' || c.relname = $2",
                2, params, err);
        if (!res)
                return err->code;
        int member = PQntuples(res) == 1;
        snprintf(have_cols, clen, "%s", member ? PQgetvalue(res, 0, 0) : "");
        snprintf(have_qual, qlen, "%s", member ? PQgetvalue(res, 0, 1) : "");
        PQclear(res);
        return member;
}

/* A member table whose column list or row filter is not what columns / exclude_columns / where
 * now make (the conf changed, or the publication was made before lists and filters): dropped and
 * added again with the new ones in one transaction, so no change of it is published without
 * them. A row filter is compared as the server prints it: the table is added again in a
 * transaction that is rolled back when the filter comes out the same. */
static int realign_table(Source *s, const char *table, CdcError *err) {
        if (PQserverVersion(s->sql) < 150000)
                return 0;
        char *want = NULL, *where = NULL;
        char have[512], qual[1024], qual2[1024], cols2[512];
        int r = pg_pubcols_list(s, table, &want, err);
        if (r == 0)
                r = pg_pubwhere(s, table, &where, err);
        if (r == 0)
                r = member_spec(s, table, have, sizeof(have), qual, sizeof(qual), err);
        if (r <= 0 || (strcmp(have, want) == 0 && !*where && !*qual)) {
                free(want);
                free(where);
                return r < 0 ? r : 0;
        }
        PGresult *res = pg_source_query(s, s->sql, "BEGIN", 0, NULL, err);
        PQclear(res);
        r = res ? alter_publication(s, "DROP", table, err) : err->code;
        if (r == 0)
                r = alter_publication(s, "ADD", table, err);
        bool same = false;
        if (r == 0 && (r = member_spec(s, table, cols2, sizeof(cols2), qual2, sizeof(qual2), err)) >= 0) {
                same = strcmp(have, cols2) == 0 && strcmp(qual, qual2) == 0;
                r = 0;
        }
        res = pg_source_query(s, s->sql, r == 0 && !same ? "COMMIT" : "ROLLBACK", 0, NULL,
                              r == 0 ? err : &(CdcError){0});
        if (r == 0 && !res)
                r = err->code;
        PQclear(res);
        if (r == 0 && !same) {
                if (strcmp(have, cols2) != 0)
                        log_info(s->ctx, "publication \"%s\" now sends columns%s of %s (it sent%s)", s->publication,
                                 *cols2 ? cols2 : " (all)", table, *have ? have : " all");
                if (strcmp(qual, qual2) != 0)
                        log_info(s->ctx, "publication \"%s\" now sends the rows of %s %s%s (it sent %s%s)",
                                 s->publication, table, *qual2 ? "where " : "", *qual2 ? qual2 : "all",
                                 *qual ? "where " : "", *qual ? qual : "all");
        }
        free(want);
        free(where);
        return r;
}

/* `tables` is the truth (a pipeline with a checkpoint): the publication is made to hold exactly
 * the tables listed; a table without a copy record is copied as of a new snapshot before it
 * streams (emit_copy), the record of a table no longer listed is dropped. */
int pg_slot_follow_tables(Source *s, const SourceStart *start, CdcError *err) {
        char **members = NULL, *snapname = NULL;
        int nmembers = 0, r;
        const char *params[] = {s->publication};
        PGresult *res = pg_source_query(s, s->sql, "SELECT puballtables FROM pg_publication WHERE pubname = $1", 1,
                                        params, err);
        if (!res)
                return err->code;
        bool all = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (all != s->pipe->all_tables)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "connector %s: tables of pipeline %s changed between * and a list, but publication "
                                 "\"%s\" is %s: a running pipeline cannot switch — create a new pipeline (new name) "
                                 "for the new tables",
                                 s->conn->name, s->pipe->name, s->publication,
                                 all ? "FOR ALL TABLES" : "a list of tables");
        if (all)
                return 0;
        r = publication_tables(s, &members, &nmembers, err);
        if (r < 0)
                return r;
        for (int i = 0; r == 0 && i < s->pipe->ntables; i++) {
                const char *t = s->pipe->tables[i];
                if (in_list(members, nmembers, t))
                        r = realign_table(s, t, err);
                if (!in_list(members, nmembers, t)) {
                        r = alter_publication(s, "ADD", t, err);
                        if (r == 0)
                                log_info(s->ctx, "table %s added to tables: added to publication \"%s\"", t,
                                         s->publication);
                }
                const char *dot = strchr(t, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - t), t);
                bool have = start->registry ? copies_find(start->copied, start->ncopied, sch, dot + 1) != NULL
                                            : in_list(members, nmembers, t);
                if (r == 0 && !have && list_add(&s->copy_new, &s->ncopy_new, t) < 0)
                        r = cdc_oom(err);
        }
        for (int i = 0; r == 0 && i < nmembers; i++) {
                const char *dot = strchr(members[i], '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - members[i]) : 0, members[i]);
                if (dot && conf_pipeline_has_table(s->pipe, sch, dot + 1))
                        continue;
                r = alter_publication(s, "DROP", members[i], err);
                if (r == 0)
                        log_info(s->ctx, "table %s left tables: dropped from publication \"%s\", no longer streamed",
                                 members[i], s->publication);
        }
        pg_slot_list_free(&members, &nmembers);
        for (int i = 0; r == 0 && i < start->ncopied; i++) {
                const char *t = start->copied[i].table, *dot = strchr(t, '.');
                char sch[256];
                if (start->copied[i].state == COPY_STATE_CHUNK)
                        continue; /* a chunk of a copy in progress (pg_snapshot_resume) */
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || !conf_pipeline_has_table(s->pipe, sch, dot + 1)) {
                        if (list_add(&s->copy_gone, &s->ncopy_gone, t) < 0)
                                r = cdc_oom(err);
                } else if (start->copied[i].state == COPY_STATE_COPIED &&
                           position_cmp(start->copied[i].pos, start->checkpoint.pos) > 0) {
                        /* copied as of a position the checkpoint has not reached: still filtered */
                        CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
                        if (!f)
                                r = cdc_oom(err);
                        else
                                (s->filters = f)[s->nfilters++] = start->copied[i];
                }
        }
        if (r < 0 || (s->ncopy_new == 0 && s->ncopy_gone == 0))
                return r;

        /* The copy's snapshot: a temporary slot's, on a walsender of its own; a transaction on
         * another connection takes it over and holds it until the stream reaches its position. */
        PGconn *rc = NULL;
        char tmp[64], *sql = NULL;
        snprintf(tmp, sizeof(tmp), "%.50s_copy", s->slot);
        r = pg_conn_open(s->conn, PG_CONN_SOURCE | PG_CONN_REPLICATION, &rc, err);
        if (r == 0)
                deadline_set_fd(s->guard_copy, PQsocket(rc));
        char *q = r == 0 ? PQescapeIdentifier(rc, tmp, strlen(tmp)) : NULL;
        if (r == 0 && (!q || asprintf(&sql, "CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
                                      q) < 0)) {
                sql = NULL;
                r = cdc_oom(err);
        }
        PQfreemem(q);
        if (r == 0) {
                bool timeout;
                res = pg_source_exec_slot(s, rc, s->guard_copy, sql, &timeout);
                if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                        char buf[512];
                        r = timeout ? pg_source_timeout_error(s, err)
                                    : cdc_error(err, -EIO, true, CDC_ERR_SLOT,
                                                "connector %s: cannot create replication slot \"%s\": %s",
                                                s->conn->name, tmp, pg_source_errtext(s, rc, res, buf, sizeof(buf)));
                } else {
                        pg_source_parse_position(PQgetvalue(res, 0, 1), &s->copy_pos);
                        snapname = PQescapeLiteral(rc, PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)));
                }
                PQclear(res);
        }
        free(sql);
        sql = NULL;
        deadline_set_fd(s->guard_copy, -1); /* rc is not waited for any more, only closed */
        if (r == 0)
                r = pg_conn_open(s->conn, PG_CONN_SOURCE, &s->copy, err);
        if (r == 0)
                deadline_set_fd(s->guard_copy, PQsocket(s->copy));
        if (r == 0 &&
            (res = pg_source_query(s, s->copy, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)))
                PQclear(res);
        else if (r == 0)
                r = err->code;
        if (r == 0 && (!snapname || asprintf(&sql, "SET TRANSACTION SNAPSHOT %s", snapname) < 0)) {
                sql = NULL;
                r = cdc_oom(err);
        }
        if (r == 0 && (res = pg_source_query(s, s->copy, sql, 0, NULL, err)))
                PQclear(res);
        else if (r == 0)
                r = err->code;
        free(sql);
        PQfreemem(snapname);
        if (rc)
                PQfinish(rc); /* drops the temporary slot; the snapshot lives on in s->copy */
        /* snapshot = never: nothing is copied, so nothing may be dropped either; the table streams
         * from where the pipeline reads (its checkpoint). */
        for (int i = 0; r == 0 && s->pipe->snapshot_mode != SNAPSHOT_NEVER && i < s->ncopy_new; i++) {
                const char *t = s->copy_new[i], *dot = strchr(t, '.');
                CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
                if (!f) {
                        r = cdc_oom(err);
                        break;
                }
                s->filters = f;
                snprintf(f[s->nfilters].table, sizeof(f[s->nfilters].table), "%.*s.%s", (int)(dot - t), t, dot + 1);
                f[s->nfilters++].pos = s->copy_pos;
        }
        if (r < 0)
                return r;
        s->copy_pending = true;
        char pos[32];
        pg_source_format_position(s->copy_pos, pos, sizeof(pos));
        for (int i = 0; i < s->ncopy_new; i++)
                if (s->pipe->snapshot_mode == SNAPSHOT_NEVER)
                        log_info(s->ctx,
                                 "table %s has no copy in the sink and snapshot = never: it streams from where the "
                                 "pipeline reads, every change after it included",
                                 s->copy_new[i]);
                else
                        log_info(s->ctx,
                                 "table %s has no copy in the sink: copying it as of %s once the stream reaches there",
                                 s->copy_new[i], pos);
        for (int i = 0; i < s->ncopy_gone; i++)
                log_info(s->ctx, "table %s left tables: its copy record is dropped", s->copy_gone[i]);
        return 0;
}

/* A start from a checkpoint (or from nothing, snapshot = never): the slot must still be there and
 * valid; without a checkpoint, it is created. */
int pg_slot_resolve_start(Source *s, const SourceStart *start, CdcError *err) {
        int r;
        bool invalid = false;
        r = pg_slot_state(s, &invalid, err);
        if (r < 0)
                return r;
        if (r == 1 && invalid)
                return cdc_error(err, -ENOENT, false, CDC_ERR_SLOT,
                                 "connector %s: replication slot \"%s\" was invalidated (its WAL was removed, "
                                 "max_slot_wal_keep_size) — changes were lost; re-create the pipeline with a "
                                 "new snapshot (delete its row from cdcsync.checkpoints on the sink and restart "
                                 "with snapshot = replace, or merge for a bidirectional pair)",
                                 s->conn->name, s->slot);
        if (r == 0 && start->have_position) {
                char pos[32];
                pg_source_format_position(start->checkpoint.pos, pos, sizeof(pos));
                return cdc_error(err, -ENOENT, false, CDC_ERR_SLOT,
                                 "connector %s: replication slot \"%s\" does not exist, but the sink holds a "
                                 "checkpoint at %s — the slot was dropped and changes since then are lost; "
                                 "re-create the pipeline with a new snapshot (delete its row from "
                                 "cdcsync.checkpoints on the sink and restart with snapshot = replace, or merge for "
                                 "a bidirectional pair)",
                                 s->conn->name, s->slot, pos);
        }
        if (r == 0) {
                char *q = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
                char *sql = NULL;
                if (!q || asprintf(&sql, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'nothing')", q) < 0)
                        sql = NULL;
                PQfreemem(q);
                if (!sql)
                        return cdc_oom(err);
                bool timeout;
                PGresult *res = pg_source_exec_slot(s, s->repl, s->guard_repl, sql, &timeout);
                free(sql);
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        char buf[512];
                        if (timeout)
                                pg_source_timeout_error(s, err);
                        else
                                cdc_error(err, -EIO, PQstatus(s->repl) != CONNECTION_OK, CDC_ERR_SLOT,
                                          "connector %s: cannot create replication slot \"%s\": %s", s->conn->name,
                                          s->slot, pg_source_errtext(s, s->repl, res, buf, sizeof(buf)));
                        PQclear(res);
                        return err->code;
                }
                PQclear(res);
                log_info(s->ctx, "created replication slot \"%s\"", s->slot);
        }
        return 0;
}

/* A slot whose copy never reached the sink (refused, failed, stopped) would hold WAL until the
 * next start: it is dropped now (the next start makes a new one either way). */
void pg_slot_drop_unused(Source *s) {
        int timeout = conf_timeout_ms(s->conn);
        deadline_arm(s->guard_sql, timeout); /* a frozen source does not hold the attempt's end */
        PGresult *res = PQexec(s->sql, "ROLLBACK");
        deadline_disarm(s->guard_sql);
        PQclear(res);
        if (s->repl) { /* a streaming walsender holds the slot until it exits */
                PQfinish(s->repl);
                s->repl = NULL;
        }
        const char *params[] = {s->slot};
        char buf[512] = "";
        for (int i = 0; i < 50; i++) {
                deadline_arm(s->guard_sql, timeout);
                res = PQexecParams(s->sql, "SELECT pg_drop_replication_slot($1)", 1, NULL, params, NULL, NULL, 0);
                deadline_disarm(s->guard_sql);
                bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
                if (!ok)
                        pg_source_errtext(s, s->sql, res, buf, sizeof(buf));
                PQclear(res);
                if (ok) {
                        log_info(s->ctx, "dropped replication slot \"%s\": its copy was not committed", s->slot);
                        return;
                }
                if (!strstr(buf, "is active"))
                        break;
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
        log_warn(s->ctx,
                 "cannot drop replication slot \"%s\" whose copy was not committed (%s); the next start drops it",
                 s->slot, buf);
}

/* `cdcsync check --connect`: settings, privileges, slot, and tables PostgreSQL will refuse to
 * update or delete in (no primary key and no replica identity). */
int pg_source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        if (!s)
                return cdc_oom(err);
        s->conn = conn;
        s->pipe = pipe;
        if (conn->slot)
                snprintf(s->slot, sizeof(s->slot), "%s", conn->slot);
        else
                pg_source_default_name(pipe->name, s->slot, sizeof(s->slot));
        int r = pg_conn_open(conn, PG_CONN_SOURCE, &s->sql, err);
        if (r == 0)
                r = pg_slot_check_server(s, err);
        bool invalid = false;
        if (r == 0 && (r = pg_slot_state(s, &invalid, err)) >= 0) {
                if (r == 1 && invalid)
                        r = cdc_error(err, -ENOENT, false, CDC_ERR_SLOT, "replication slot \"%s\" is invalidated",
                                      s->slot);
                else
                        r = 0;
        }
        if (r == 0)
                r = pg_partitions_check_tables(s, err);
        if (r == 0)
                r = pg_pubcols_check(s, err);
        if (r == 0) {
                PGresult *res = pg_source_query(
                        s, s->sql,
                        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                        "c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN "
                        "('pg_catalog','information_schema','cdcsync') AND n.nspname NOT LIKE 'pg_toast%' "
                        "AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND "
                        "(i.indisprimary OR i.indisreplident)) AND c.relreplident <> 'f' ORDER BY 1, 2",
                        0, NULL, err);
                if (!res) {
                        r = err->code;
                } else {
                        for (int i = 0; i < PQntuples(res); i++)
                                if (conf_pipeline_has_table(pipe, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)))
                                        printf("warning: pipeline %s: table %s.%s has no primary key or replica "
                                               "identity: its inserts sync, but PostgreSQL itself rejects UPDATE and "
                                               "DELETE on it while it is published — add a primary key or ALTER TABLE "
                                               "... REPLICA IDENTITY FULL\n",
                                               pipe->name, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
                        PQclear(res);
                }
        }
        pg_source_free(s);
        return r;
}
