/* Opening a libpq connection for a postgres connector, with the password kept out of strings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/log.h"
#include "postgres/pg_conn.h"

/* Replaces every occurrence of secret in buf by "***" (libpq never echoes passwords, but a dsn
 * fragment quoted in a parse error might hold one despite the conf check). */
static void mask_secret(char *buf, const char *secret) {
        size_t slen = secret ? strlen(secret) : 0;
        char *p;

        if (slen == 0)
                return;
        while ((p = strstr(buf, secret))) {
                size_t tail = strlen(p + slen);
                if (slen >= 3) {
                        memcpy(p, "***", 3);
                        memmove(p + 3, p + slen, tail + 1);
                } else {
                        memset(p, '*', slen);
                }
        }
}

static void chomp(char *buf) {
        size_t n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
                buf[--n] = '\0';
}

const char *pg_conn_error_text(const ConnectorConf *conf, const PGconn *conn, const PGresult *res, char *buf,
                               size_t len) {
        const char *msg = res ? PQresultErrorMessage(res) : conn ? PQerrorMessage(conn) : "";

        if (len == 0)
                return buf;
        snprintf(buf, len, "%s", msg && *msg ? msg : "unknown error");
        chomp(buf);
        mask_secret(buf, conf ? conf->password : NULL);
        return buf;
}

/* Server NOTICEs ("relation ... already exists, skipping") would go to stderr unformatted, in
 * the middle of the service's log: they are only worth a debug line. */
static void on_notice(void *arg, const char *message) {
        const ConnectorConf *conf = arg;
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", message);
        chomp(buf);
        mask_secret(buf, conf->password);
        log_debug(NULL, "connector %s: server notice: %s", conf->name, buf);
}

/* Every setting that changes the text form of a value, as the startup options set it and as
 * current_setting() must then show it. PostgreSQL's own subscriber pins the first three
 * (libpqwalreceiver.c); the rest change values too: TimeZone the offset a timestamptz prints with,
 * bytea_output hex or escape, lc_monetary what a money value means (its digits after the point,
 * its symbol and separators), xmloption whether an xml fragment is accepted, array_nulls whether
 * an unquoted NULL in an array is a null or the string "NULL", standard_conforming_strings how a
 * literal of ours is read, search_path whether a regclass prints qualified. */
typedef struct {
        const char *name;
        const char *value; /* in the options string: no blank */
        const char *shown; /* what current_setting(name) says once it holds */
        bool source_only;
} PinnedSetting;

static const PinnedSetting pinned[] = {
        {"DateStyle", "ISO,YMD", "ISO, YMD", false},
        {"IntervalStyle", "postgres", "postgres", false},
        {"extra_float_digits", "3", "3", false},
        {"TimeZone", "UTC", "UTC", false},
        {"bytea_output", "hex", "hex", false},
        {"lc_monetary", "C", "C", false},
        {"standard_conforming_strings", "on", "on", false},
        {"xmloption", "content", "content", false},
        {"array_nulls", "on", "on", false},
        /* A sink keeps the search_path its users' triggers may rely on: what it receives from a
         * PostgreSQL source is qualified. */
        {"search_path", "pg_catalog", "pg_catalog", true},
};

#define N_PINNED (sizeof(pinned) / sizeof(pinned[0]))

/* The startup options: the dsn's own (or PGOPTIONS when the dsn has none, as libpq would use
 * them), then ours, which win. Returns a malloc'ed string or NULL on ENOMEM. */
static char *options_string(const PQconninfoOption *opts, unsigned flags) {
        const char *base = NULL;
        char *s = NULL;
        size_t len = 0;
        FILE *f;

        for (const PQconninfoOption *o = opts; o && o->keyword; o++)
                if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
                        base = o->val;
        if (!base)
                base = getenv("PGOPTIONS");
        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        if (base && *base)
                fprintf(f, "%s ", base);
        for (size_t i = 0; i < N_PINNED; i++)
                if (!pinned[i].source_only || (flags & PG_CONN_SOURCE))
                        fprintf(f, "%s-c %s=%s", i ? " " : "", pinned[i].name, pinned[i].value);
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* Reads the pinned settings back: a pooler or proxy may drop the startup options (PgBouncer
 * with ignore_startup_parameters), and then values would silently take the server's forms. */
static int check_pinned(const ConnectorConf *conf, PGconn *conn, unsigned flags, CdcError *err) {
        char *sql = NULL, msg[512];
        size_t len = 0;
        FILE *f = open_memstream(&sql, &len);
        PGresult *res;
        int r = 0, col = 0;

        if (!f)
                return cdc_oom(err);
        fputs("SELECT ", f);
        for (size_t i = 0; i < N_PINNED; i++)
                if (!pinned[i].source_only || (flags & PG_CONN_SOURCE))
                        fprintf(f, "%scurrent_setting('%s')", i ? ", " : "", pinned[i].name);
        if (fclose(f) != 0) {
                free(sql);
                return cdc_oom(err);
        }
        res = PQexec(conn, sql);
        free(sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                pg_conn_error_text(conf, conn, res, msg, sizeof(msg));
                PQclear(res);
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: reading the session settings: %s",
                                 conf->name, msg);
        }
        for (size_t i = 0; i < N_PINNED && r == 0; i++) {
                if (pinned[i].source_only && !(flags & PG_CONN_SOURCE))
                        continue;
                const char *v = PQgetvalue(res, 0, col++);
                if (strcmp(v, pinned[i].shown) != 0)
                        r = cdc_error(err, -EPROTO, false, CDC_ERR_CONF,
                                      "connector %s: the session setting %s is '%.64s', not '%s' as cdcsync asked in "
                                      "the startup parameter \"options\": values would be read or written in another "
                                      "form — connect to PostgreSQL directly, or make the pooler or proxy pass "
                                      "\"options\" on",
                                      conf->name, pinned[i].name, v, pinned[i].shown);
        }
        PQclear(res);
        return r;
}

int pg_conn_open(const ConnectorConf *conf, unsigned flags, PGconn **ret, CdcError *err) {
        /* Order matters: the dsn (expanded from "dbname") overrides what comes before it and is
         * overridden by what comes after. */
        const char *keys[15], *vals[15];
        char connect_timeout[16], idle[16], interval[16], user_timeout[16];
        char *parse_err = NULL, *options;
        char msg[768];
        PQconninfoOption *opts;
        PGconn *conn;
        int n = 0, r;

        if (!conf->dsn)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "connector %s: no dsn set", conf->name);
        opts = PQconninfoParse(conf->dsn, &parse_err);
        if (!opts) {
                snprintf(msg, sizeof(msg), "%s", parse_err ? parse_err : "out of memory");
                chomp(msg);
                mask_secret(msg, conf->password);
                PQfreemem(parse_err);
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "connector %s (%s:%d): invalid dsn: %s — fix the libpq conninfo", conf->name,
                                 conf->file ? conf->file : "?", conf->line, msg);
        }
        options = options_string(opts, flags);
        PQconninfoFree(opts);
        if (!options)
                return cdc_oom(err);

        /* A peer gone without FIN/RST (a dead host, a dropped NAT entry) is noticed by TCP within
         * about timeout_s, idle or not; one that still ACKs but never answers (a frozen server or
         * proxy) is the callers' business (engine/deadline.c, stream silence). */
        int t = conf_timeout_ms(conf) / 1000;
        snprintf(connect_timeout, sizeof(connect_timeout), "%d", t < 10 ? (t < 2 ? 2 : t) : 10);
        snprintf(idle, sizeof(idle), "%d", t / 3 > 0 ? t / 3 : 1);
        snprintf(interval, sizeof(interval), "%d", t / 9 > 0 ? t / 9 : 1);
        snprintf(user_timeout, sizeof(user_timeout), "%d", t * 1000);
        keys[n] = "fallback_application_name", vals[n++] = "cdcsync";
        keys[n] = "connect_timeout", vals[n++] = connect_timeout;
        keys[n] = "keepalives", vals[n++] = "1";
        keys[n] = "keepalives_idle", vals[n++] = idle;
        keys[n] = "keepalives_interval", vals[n++] = interval;
        keys[n] = "keepalives_count", vals[n++] = "3";
        keys[n] = "tcp_user_timeout", vals[n++] = user_timeout;
        keys[n] = "dbname", vals[n++] = conf->dsn;
        keys[n] = "client_encoding", vals[n++] = "UTF8";
        keys[n] = "options", vals[n++] = options;
        if (flags & PG_CONN_REPLICATION)
                keys[n] = "replication", vals[n++] = "database";
        if (conf->password)
                keys[n] = "password", vals[n++] = conf->password;
        keys[n] = NULL, vals[n] = NULL;

        conn = PQconnectdbParams(keys, vals, 1);
        free(options);
        if (!conn)
                return cdc_error(err, -ENOMEM, true, CDC_ERR_CONNECTION, "connector %s: out of memory", conf->name);
        if (PQstatus(conn) != CONNECTION_OK) {
                /* libpq says what failed, not what to do: for the two password cases say where
                 * the password comes from, since the operator cannot see it in any message. */
                char hint[320] = "";
                pg_conn_error_text(conf, conn, NULL, msg, sizeof(msg));
                if (PQconnectionNeedsPassword(conn))
                        snprintf(hint, sizeof(hint),
                                 " — the server asks for a password: set password_file in [connector.%s]", conf->name);
                else if (PQconnectionUsedPassword(conn) && strstr(msg, "authentication failed"))
                        snprintf(hint, sizeof(hint),
                                 " — check the password (password_file or password) in [connector.%s] and the "
                                 "role's pg_hba.conf entry",
                                 conf->name);
                else if (strstr(msg, "startup parameter"))
                        snprintf(hint, sizeof(hint),
                                 " — cdcsync pins how values are written through the startup parameter "
                                 "\"options\": connect to PostgreSQL directly, or let the pooler pass it");
                PQfinish(conn);
                return cdc_error(err, -ECONNREFUSED, true, CDC_ERR_CONNECTION,
                                 "connector %s: cannot connect to postgresql: %s%s", conf->name, msg, hint);
        }
        PQsetNoticeProcessor(conn, on_notice, (void *)conf);
        r = check_pinned(conf, conn, flags, err);
        if (r < 0) {
                PQfinish(conn);
                return r;
        }
        *ret = conn;
        return 0;
}

/* One query over a connection of its own; *ret holds its tuples (PQclear it). */
static int conn_query(const ConnectorConf *conf, const char *sql, PGconn **ret_conn, PGresult **ret, CdcError *err) {
        PGconn *c = NULL;
        int r = pg_conn_open(conf, false, &c, err);
        if (r < 0)
                return r;
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                char msg[600];
                bool lost = PQstatus(c) != CONNECTION_OK;
                pg_conn_error_text(conf, c, res, msg, sizeof(msg));
                PQclear(res);
                PQfinish(c);
                return cdc_error(err, -EIO, lost, lost ? CDC_ERR_CONNECTION : CDC_ERR_QUERY, "connector %s: %s",
                                 conf->name, msg);
        }
        *ret_conn = c;
        *ret = res;
        return 0;
}

int pg_conn_locate(const ConnectorConf *conf, ConnectorPlace *ret, CdcError *err) {
        PGconn *c;
        PGresult *res;
        /* pg_control_system() is executable by every role (IDENTIFY_SYSTEM would need REPLICATION). */
        int r = conn_query(conf, "SELECT system_identifier::text, current_database() FROM pg_control_system()", &c,
                           &res, err);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                r = cdc_error(err, -EPROTO, false, CDC_ERR_QUERY, "connector %s: pg_control_system() returned no row",
                              conf->name);
        } else {
                snprintf(ret->server, sizeof(ret->server), "PostgreSQL system %s", PQgetvalue(res, 0, 0));
                snprintf(ret->database, sizeof(ret->database), "%s", PQgetvalue(res, 0, 1));
        }
        PQclear(res);
        PQfinish(c);
        return r;
}

int pg_conn_list_tables(const ConnectorConf *conf, char ***ret, int *ret_n, CdcError *err) {
        PGconn *c;
        PGresult *res;
        /* The tables FOR ALL TABLES publishes (partitions included, their parents too). */
        int r = conn_query(conf,
                           "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                           "c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', "
                           "'information_schema', 'cdcsync') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT "
                           "LIKE 'pg\\_temp\\_%' ORDER BY 1",
                           &c, &res, err);
        if (r < 0)
                return r;
        int n = PQntuples(res);
        char **v = calloc((size_t)n + 1, sizeof(*v));
        for (int i = 0; v && i < n; i++)
                if (!(v[i] = strdup(PQgetvalue(res, i, 0)))) {
                        for (int j = 0; j < i; j++)
                                free(v[j]);
                        free(v);
                        v = NULL;
                }
        PQclear(res);
        PQfinish(c);
        if (!v)
                return cdc_oom(err);
        *ret = v;
        *ret_n = n;
        return 0;
}
