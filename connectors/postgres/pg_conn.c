/* Opening a libpq connection for a postgres connector, with the password kept out of strings. */
#include <errno.h>
#include <stdio.h>
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

int pg_conn_open(const ConnectorConf *conf, bool replication, PGconn **ret, CdcError *err) {
        /* Order matters: the dsn (expanded from "dbname") overrides what comes before it and is
         * overridden by what comes after. */
        const char *keys[8], *vals[8];
        char *parse_err = NULL;
        char msg[768];
        PQconninfoOption *opts;
        PGconn *conn;
        int n = 0;

        if (!conf->dsn)
                return cdc_error(err, -EINVAL, false, "conf", "connector %s: no dsn set", conf->name);
        opts = PQconninfoParse(conf->dsn, &parse_err);
        if (!opts) {
                snprintf(msg, sizeof(msg), "%s", parse_err ? parse_err : "out of memory");
                chomp(msg);
                mask_secret(msg, conf->password);
                PQfreemem(parse_err);
                return cdc_error(err, -EINVAL, false, "conf",
                                 "connector %s (%s:%d): invalid dsn: %s — fix the libpq conninfo", conf->name,
                                 conf->file ? conf->file : "?", conf->line, msg);
        }
        PQconninfoFree(opts);

        keys[n] = "fallback_application_name", vals[n++] = "cdcsync";
        keys[n] = "connect_timeout", vals[n++] = "10";
        keys[n] = "dbname", vals[n++] = conf->dsn;
        keys[n] = "client_encoding", vals[n++] = "UTF8";
        if (replication)
                keys[n] = "replication", vals[n++] = "database";
        if (conf->password)
                keys[n] = "password", vals[n++] = conf->password;
        keys[n] = NULL, vals[n] = NULL;

        conn = PQconnectdbParams(keys, vals, 1);
        if (!conn)
                return cdc_error(err, -ENOMEM, true, "connection", "connector %s: out of memory", conf->name);
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
                PQfinish(conn);
                return cdc_error(err, -ECONNREFUSED, true, "connection",
                                 "connector %s: cannot connect to postgresql: %s%s", conf->name, msg, hint);
        }
        PQsetNoticeProcessor(conn, on_notice, (void *)conf);
        *ret = conn;
        return 0;
}
