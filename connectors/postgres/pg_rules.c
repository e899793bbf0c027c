/* A PostgreSQL connector's conf rules (see pg_rules.h). */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/guard.h"
#include "postgres/pg_rules.h"

int pg_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len) {
        const ConnectorConf *k = later->source;
        if (!k->slot) /* each pipeline gets its own slot, cdcsync_<pipeline> */
                return 0;
        snprintf(msg, len,
                 "pipelines %s and %s both read slot %s of %s — a slot feeds one pipeline: remove slot from "
                 "[connector.%s] (each pipeline then gets its own) or give each pipeline its own connector",
                 earlier->name, later->name, k->slot, k->name, k->name);
        return 1;
}

int pg_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                         size_t len) {
        (void)conn, (void)set, (void)reader, (void)msg, (void)len;
        return 0;
}

int pg_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, GuardPlace *ret) {
        (void)buf, (void)len;
        if (!conn->dsn)
                return -1;
        *ret = (GuardPlace){conn->dsn, conn->dsn, "the same dsn", "the same dsn"};
        return 0;
}

int pg_rules_conf_database(const ConnectorConf *conn, char **ret) {
        const char *db = NULL, *user = NULL;
        PQconninfoOption *opts = conn->dsn ? PQconninfoParse(conn->dsn, NULL) : NULL;
        *ret = NULL;
        if (!opts)
                return 0;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
                        db = o->val;
                if (strcmp(o->keyword, "user") == 0 && o->val && *o->val)
                        user = o->val;
        }
        if (db || user)
                *ret = strdup(db ? db : user);
        PQconninfoFree(opts);
        return (db || user) && !*ret ? -ENOMEM : 0;
}

bool pg_rules_shares_stream(const PipelineConf *a, const PipelineConf *b) {
        (void)a, (void)b;
        return false;
}
