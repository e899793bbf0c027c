/* MySQL/MariaDB source preflight and start: server settings and grants, then where streaming
 * starts (GTID state, file:pos, start_position or a snapshot). */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <mysql.h>
#include <mariadb_rpl.h>

#include "mysql/mysql_source_int.h"

/* ---- preflight ---- */

int mysql_source_var_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        VarRow *v = ud;
        (void)lens;
        for (int i = 0; i < ncols && i < 8; i++)
                snprintf(v->vals[i], sizeof(v->vals[i]), "%s", cells[i] ? cells[i] : "");
        v->n = ncols;
        return 0;
}

typedef struct {
        bool repl_slave, repl_client;
} GrantRow;

static int grant_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        GrantRow *g = ud;
        (void)lens;
        if (ncols < 1 || !cells[0])
                return 0;
        const char *c = cells[0];
        if (!strstr(c, " ON *.* "))
                return 0;
        if (strstr(c, "ALL PRIVILEGES"))
                g->repl_slave = g->repl_client = true;
        if (strstr(c, "REPLICATION SLAVE"))
                g->repl_slave = true;
        if (strstr(c, "REPLICATION CLIENT") || strstr(c, "BINLOG MONITOR") || strstr(c, "SUPER"))
                g->repl_client = true;
        return 0;
}

int mysql_source_preflight(MYSQL *m, const ConnectorConf *conn, const char *ctx, CdcError *err) {
        VarRow v = {0};
        int r = mysql_conn_query(m, "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id", NULL, 0,
                                 mysql_source_var_row, &v, err);
        if (r < 0)
                return r;
        if (strcmp(v.vals[0], "1") != 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "%s mysql connector '%s': the binary log is off: start the server with log_bin "
                                 "(and binlog_format = ROW)",
                                 ctx, conn->name);
        if (strcasecmp(v.vals[1], "ROW") != 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "%s mysql connector '%s': binlog_format is %s: set binlog_format = ROW", ctx,
                                 conn->name, v.vals[1]);
        if (strcasecmp(v.vals[2], "FULL") != 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "%s mysql connector '%s': binlog_row_image is %s: set binlog_row_image = FULL", ctx,
                                 conn->name, v.vals[2]);
        char sid[16];
        snprintf(sid, sizeof(sid), "%u", conn->server_id);
        if (conn->server_id == 0 || strcmp(sid, v.vals[3]) == 0)
                return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                 "%s mysql connector '%s': server_id = %u must be set and differ from the server's "
                                 "own server_id (%s) and from every replica's",
                                 ctx, conn->name, conn->server_id, v.vals[3]);
        GrantRow g = {0};
        r = mysql_conn_query(m, "SHOW GRANTS", NULL, 0, grant_row, &g, err);
        if (r < 0)
                return r;
        if (!g.repl_slave || !g.repl_client)
                return cdc_error(err, -EPERM, false, CDC_ERR_CONF,
                                 "%s mysql connector '%s': user '%s' lacks %s%s%s on *.*: GRANT REPLICATION SLAVE, "
                                 "REPLICATION CLIENT ON *.* TO it",
                                 ctx, conn->name, conn->user ? conn->user : "", g.repl_slave ? "" : "REPLICATION SLAVE",
                                 !g.repl_slave && !g.repl_client ? " and " : "",
                                 g.repl_client ? "" : "REPLICATION CLIENT (BINLOG MONITOR)");
        return 0;
}

typedef struct {
        uint64_t want_seq;
        char found[512];
        uint64_t size;
        char last[512];
        char first[512];
} LogsRow;

static int logs_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        LogsRow *l = ud;
        uint64_t seq, size;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1])
                return 0;
        if (!l->first[0])
                snprintf(l->first, sizeof(l->first), "%s", cells[0]);
        snprintf(l->last, sizeof(l->last), "%s", cells[0]);
        if (mysql_source_file_seq(cells[0], &seq) == 0 && seq == l->want_seq &&
            mysql_source_parse_u64(cells[1], strlen(cells[1]), &size) == 0) {
                snprintf(l->found, sizeof(l->found), "%s", cells[0]);
                l->size = size;
        }
        return 0;
}

/* Finds the binlog file of a position (by its sequence suffix) among the server's binlogs;
 * without one (have false), the end of the newest binlog. */
static int resolve_start(Source *s, bool have, Position p, char *file, size_t flen, uint64_t *ret_off, CdcError *err) {
        LogsRow l = {.want_seq = p.hi};
        int r = mysql_conn_query(s->sql, "SHOW BINARY LOGS", NULL, 0, logs_row, &l, err);
        if (r < 0)
                return r;
        if (!have) {
                /* default: now, the end of the newest binlog */
                VarRow v = {0};
                r = mysql_conn_query(s->sql, "SHOW MASTER STATUS", NULL, 0, mysql_source_var_row, &v, err);
                if (r < 0)
                        return r;
                if (v.n < 2 || mysql_source_file_seq(v.vals[0], &p.hi) < 0 ||
                    mysql_source_parse_u64(v.vals[1], strlen(v.vals[1]), &p.lo) < 0)
                        return cdc_error(err, -EPROTO, true, CDC_ERR_CONNECTION,
                                         "%s SHOW MASTER STATUS answered nothing", s->ctx);
                snprintf(file, flen, "%s", v.vals[0]);
                *ret_off = p.lo;
                return 0;
        }
        if (!l.found[0]) {
                /* the file's name: the server's binlog base name with the position's number */
                const char *any = l.last[0] ? l.last : "binlog.0";
                const char *dot = strrchr(any, '.');
                int blen = dot ? (int)(dot - any) : (int)strlen(any);
                return cdc_error(
                        err, -ENOENT, false, CDC_ERR_SOURCE,
                        "%s binlog file %.*s.%06" PRIu64 " (position %" PRIu64
                        ") is no longer on the server (it has %s .. %s): it was purged before cdcsync read "
                        "it, so changes were lost for this pipeline: delete its checkpoint in the sink "
                        "(pipeline '%s' in cdcsync.checkpoints) and restart with snapshot = replace (merge for "
                        "a bidirectional pair; or start_position), and keep binlogs longer "
                        "(binlog_expire_logs_seconds)",
                        s->ctx, blen, any, p.hi, p.lo, l.first[0] ? l.first : "none", l.last[0] ? l.last : "none",
                        s->pipe && s->pipe->name ? s->pipe->name : "-");
        }
        if (p.lo > l.size)
                return cdc_error(err, -ERANGE, false, CDC_ERR_SOURCE,
                                 "%s position %" PRIu64 " is past the end of %s (%" PRIu64 " bytes)", s->ctx, p.lo,
                                 l.found, l.size);
        snprintf(file, flen, "%s", l.found);
        *ret_off = p.lo;
        return 0;
}

typedef struct {
        char text[MYSQL_SOURCE_GTID_MAX * 48];
        bool null, toolong;
} GtidRow;

static int gtid_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        GtidRow *g = ud;
        g->null = ncols < 1 || !cells[0];
        g->toolong = !g->null && lens[0] >= sizeof(g->text);
        if (!g->null && !g->toolong) {
                memcpy(g->text, cells[0], lens[0]);
                g->text[lens[0]] = '\0';
        }
        return 0;
}

/* The GTID state at a transaction boundary of a binlog file (MariaDB's BINLOG_GTID_POS: at
 * offset 4, the state the file starts with). Returns 0, -ENOENT when the server does not know
 * it (not a boundary, file gone), -ENOSPC when it does not fit a checkpoint, or a CdcError code. */
static int gtid_at(Source *s, const char *file, uint64_t off, MysqlGtidState *ret, CdcError *err) {
        char offs[24];
        GtidRow g = {0};
        snprintf(offs, sizeof(offs), "%" PRIu64, off);
        const char *params[2] = {file, offs};
        int r = mysql_conn_query(s->sql, "SELECT BINLOG_GTID_POS(?, ?)", params, 2, gtid_row, &g, err);
        if (r < 0)
                return r;
        if (r == 0 || g.null)
                return -ENOENT;
        if (g.toolong)
                return -ENOSPC;
        r = mysql_source_gtid_parse(g.text, strlen(g.text), ret);
        return r == -EINVAL ? -ENOENT : r;
}

/* A file:pos start: the GTID state there comes from the server, so that the first checkpoint
 * already carries every domain (not only those the stream happens to show). */
int mysql_source_seed_gtid(Source *s, const char *file, uint64_t off, CdcError *err) {
        MysqlGtidState st;
        int r = s->mariadb ? gtid_at(s, file, off, &st, err) : -ENOTSUP;
        if (r < 0 && r != -ENOENT && r != -ENOSPC && r != -ENOTSUP)
                return r;
        uint64_t seq = 0;
        mysql_source_file_seq(file, &seq);
        s->gtid_known = r == 0;
        if (r == 0) {
                s->state = st;
                s->state_ok = true;
        }
        s->gtid_from = (Position){.hi = seq, .lo = off};
        if (r < 0)
                log_warn(s->ctx,
                         "the server gives no GTID state for %s:%" PRIu64 " (%s): checkpoints carry the file:pos only",
                         file, off,
                         r == -ENOSPC    ? "too many domains"
                         : r == -ENOTSUP ? "not MariaDB"
                                         : "not a transaction boundary");
        return 0;
}

/* A GTID start: refuses when the oldest binlog the server kept begins after the state, i.e. the
 * transactions that follow it were purged. The checkpoint's file may be gone (rotated and purged
 * while the server still holds every transaction after the state): GTID finds the spot. */
static int resolve_gtid_start(Source *s, bool have_pos, Position p, const MysqlGtidState *want, CdcError *err) {
        LogsRow l = {.want_seq = p.hi};
        MysqlGtidState oldest = {0};
        char cp[1800] = "";
        int r = mysql_conn_query(s->sql, "SHOW BINARY LOGS", NULL, 0, logs_row, &l, err);
        if (r < 0)
                return r;
        if (mysql_source_gtid_format(want, s->connect_state, sizeof(s->connect_state)) < 0)
                return cdc_error(err, -ENOSPC, false, CDC_ERR_INTERNAL, "%s GTID state too long", s->ctx);
        if (have_pos && !l.found[0]) {
                const char *any = l.last[0] ? l.last : "binlog.0";
                const char *dot = strrchr(any, '.');
                int blen = dot ? (int)(dot - any) : (int)strlen(any);
                snprintf(cp, sizeof(cp),
                         "binlog file %.*s.%06" PRIu64 " (position %" PRIu64
                         ") is no longer on the server (it has %s .. %s) and ",
                         blen, any, p.hi, p.lo, l.first[0] ? l.first : "none", l.last[0] ? l.last : "none");
        }
        if (l.first[0]) {
                r = gtid_at(s, l.first, 4, &oldest, err);
                if (r < 0 && r != -ENOENT && r != -ENOSPC)
                        return r;
        }
        for (int i = 0; i < oldest.n; i++) {
                const MysqlGtid *o = &oldest.g[i];
                const MysqlGtid *w = mysql_source_gtid_find(want, o->domain);
                if (w ? w->seq >= o->seq : o->seq == 0)
                        continue;
                char os[sizeof(s->connect_state)], ws[48] = "nothing";
                mysql_source_gtid_format(&oldest, os, sizeof(os));
                if (w)
                        snprintf(ws, sizeof(ws), "%" PRIu64, w->seq);
                return cdc_error(
                        err, -ENOENT, false, CDC_ERR_SOURCE,
                        "%s %sthe transactions after GTID %s are no longer on the server: its oldest binlog %s "
                        "starts after %s (domain %" PRIu32 " at %" PRIu64 ", the checkpoint at %s); they were "
                        "purged before cdcsync read them, so changes were lost for this pipeline: delete its "
                        "checkpoint in the sink (pipeline '%s' in cdcsync.checkpoints) and restart with "
                        "snapshot = replace (merge for a bidirectional pair; or start_position), and keep "
                        "binlogs longer "
                        "(binlog_expire_logs_seconds)",
                        s->ctx, cp, s->connect_state[0] ? s->connect_state : "(none)", l.first, os, o->domain, o->seq,
                        ws, s->pipe && s->pipe->name ? s->pipe->name : "-");
        }
        if (cp[0])
                log_info(s->ctx,
                         "the checkpoint's %sthe server still holds every transaction after GTID %s: resuming by GTID",
                         cp, s->connect_state);
        /* the real file and offset come with the stream's first ROTATE */
        snprintf(s->file, sizeof(s->file), "%s", l.found[0] ? l.found : l.last);
        mysql_source_set_base(s, s->file);
        s->state = *want;
        s->state_ok = true;
        s->gtid_from = p;
        s->gtid_known = true;
        s->by_gtid = true;
        s->start_pos = p;
        return 0;
}

/* Where streaming starts: the checkpoint's GTID state when its text has one (MariaDB GTID), else
 * its file:pos, else start_position, else a snapshot or now. */
int mysql_source_choose_start(Source *s, const SourceStart *start, PipelineIO *io, uint64_t *ret_off, CdcError *err) {
        const char *text = start && start->checkpoint.text[0] ? start->checkpoint.text : NULL;
        Position p = {0}, tp = {0};
        MysqlGtidState st = {0};
        bool have = start && start->have_position, thp = false, thg = false;
        int r;

        if (have)
                p = start->checkpoint.pos;
        if (!text && !have && s->pipe && s->pipe->start_position)
                text = s->pipe->start_position;
        if (text && mysql_source_parse_checkpoint(text, &tp, &thp, &st, &thg) < 0) {
                if (!have)
                        return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                         "%s:%d: start_position '%s' is neither FILE:POS (e.g. mariadb-bin.000002:344) "
                                         "nor a MariaDB GTID state (e.g. gtid=0-1-57)",
                                         s->pipe && s->pipe->file ? s->pipe->file : "conf", s->pipe ? s->pipe->line : 0,
                                         text);
                log_warn(s->ctx, "checkpoint text '%s' is not a position of this source: using its file:pos", text);
                thg = false;
        }
        if (!have && thp) {
                p = tp;
                have = true;
        }
        if (thg && !s->mariadb) {
                if (!have)
                        return cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                         "%s start position '%s' is a MariaDB GTID state, but the server is not "
                                         "MariaDB: give FILE:POS",
                                         s->ctx, text);
                thg = false;
        }
        if (thg) {
                r = resolve_gtid_start(s, have, p, &st, err);
                if (r < 0)
                        return r;
                *ret_off = 4;
                log_info(s->ctx, "streaming binlog from GTID state %s (checkpoint %s)",
                         s->connect_state[0] ? s->connect_state : "(empty: the oldest binlog)", text);
                return 0;
        }
        if (start && start->snapshot && !have) {
                /* it seeds the GTID state itself, for the snapshot's own checkpoint text */
                r = mysql_source_snapshot(s, io, start->registry, s->file, sizeof(s->file), ret_off, err);
                if (r < 0)
                        return r;
        } else {
                r = resolve_start(s, have, p, s->file, sizeof(s->file), ret_off, err);
                if (r < 0)
                        return r;
                mysql_source_set_base(s, s->file);
                r = mysql_source_seed_gtid(s, s->file, *ret_off, err);
                if (r < 0)
                        return r;
        }
        log_info(s->ctx, "streaming binlog from %s:%" PRIu64, s->file, *ret_off);
        return 0;
}
