/* The PostgreSQL source: streaming of pgoutput (proto 2, streaming of in-progress transactions)
 * into the pipeline's events. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cdcsync/guard.h"
#include "cdcsync/deadline.h"
#include "cdcsync/lease.h"
#include "cdcsync/log.h"
#include "postgres/pg_conn.h"
#include "postgres/pg_source.h"
#include "postgres/pg_source_int.h"
#include "postgres/pgoutput.h"

#define STATUS_INTERVAL_USEC (1 * 1000000LL) /* standby status at least this often */
#define HEARTBEAT_IDLE_USEC (10 * 1000000LL) /* idle this long: emit a WAL heartbeat */
#define END_REPORT_USEC (100 * 1000LL)       /* inside a transaction, the source's end passed on this often */

int64_t pg_source_now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The same clock, read cheaply to a few milliseconds: for what is taken at every message and
 * only compared against timeouts of 100 ms and more. */
static int64_t coarse_now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void pg_source_format_position(Position p, char *buf, size_t len) {
        snprintf(buf, len, "%X/%X", (uint32_t)(p.lo >> 32), (uint32_t)p.lo);
}

int pg_source_parse_position(const char *text, Position *ret) {
        unsigned hi, lo;
        int n = 0;
        if (sscanf(text, "%X/%X%n", &hi, &lo, &n) != 2 || text[n] != '\0')
                return -EINVAL;
        ret->hi = 0;
        ret->lo = (uint64_t)hi << 32 | lo;
        return 0;
}

/* Slot and publication names default to cdcsync_<pipeline>, lower-cased, [a-z0-9_] only (guard.c
 * refuses pipelines whose names give the same one). */
void pg_source_default_name(const char *pipeline, char *buf, size_t len) {
        guard_default_pg_name(pipeline, buf, len);
}

const char *pg_source_errtext(Source *s, PGconn *c, const PGresult *res, char *buf, size_t len) {
        return pg_conn_error_text(s->conn, c, res, buf, len);
}

/* libpq waits for an answer without a bound: a frozen path or a paused server (no FIN, no RST)
 * would hold the source forever. Waits on every connection (side, walsender, and the copy of
 * added tables with the walsender that makes its snapshot) are bounded by timeout_s
 * (engine/deadline.c shuts the socket down); the stream itself by its silence (stream()), a
 * slot's creation by the server's silence (pg_source_exec_slot()). */
static Deadline *guard_of(Source *s, PGconn *c) {
        return c == s->repl ? s->guard_repl : c == s->sql ? s->guard_sql : c == s->copy ? s->guard_copy : NULL;
}

int pg_source_timeout_error(Source *s, CdcError *err) {
        return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                         "connector %s: the source server did not answer within %d s (timeout_s): the network path "
                         "or the server is not responding",
                         s->conn->name, conf_timeout_ms(s->conn) / 1000);
}

/* Runs a query with text parameters; returns the result (caller clears) or NULL with err set. */
PGresult *pg_source_query(Source *s, PGconn *c, const char *sql, int n, const char *const *params, CdcError *err) {
        Deadline *g = guard_of(s, c);
        deadline_arm(g, conf_timeout_ms(s->conn));
        PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        bool fired = deadline_disarm(g);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                return res;
        char buf[512];
        bool lost = PQstatus(c) != CONNECTION_OK;
        if (fired)
                pg_source_timeout_error(s, err);
        else
                cdc_error(err, -EIO, lost, lost ? CDC_ERR_CONNECTION : CDC_ERR_SOURCE, "connector %s: %s",
                          s->conn->name, pg_source_errtext(s, c, res, buf, sizeof(buf)));
        PQclear(res);
        return NULL;
}

/* CREATE_REPLICATION_SLOT waits, on a live server, for every transaction running when it began:
 * a long transaction holds it for as long as it lasts. Its wait is therefore bounded by the
 * server's silence, not by its length: c's socket is shut down (by g) timeout_s after the last
 * sign of life, and while the command waits the server is asked on the side connection every
 * timeout_s / 2 whether it answers at all (each answer pushes the deadline back). A slot
 * creation cut short while the server was merely busy would leave its walsender holding the
 * half-made slot. Returns the result (caller clears; may be NULL: the connection's error says
 * why), *ret_timeout when the deadline passed. */
PGresult *pg_source_exec_slot(Source *s, PGconn *c, Deadline *g, const char *sql, bool *ret_timeout) {
        int timeout = conf_timeout_ms(s->conn), half = timeout / 2 > 500 ? timeout / 2 : 500;
        PGresult *res = NULL, *more;

        deadline_arm(g, timeout);
        if (PQsendQuery(c, sql) == 1 && PQflush(c) == 0) {
                for (;;) {
                        if (PQconsumeInput(c) == 0 || !PQisBusy(c))
                                break;
                        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
                        int ready = poll(&pfd, 1, half);
                        if (ready < 0 && errno != EINTR)
                                break;
                        if (ready != 0 || !s->sql || c == s->sql)
                                continue;
                        /* Silent for half of timeout_s: is the server there at all? */
                        deadline_arm(s->guard_sql, half);
                        PGresult *alive = PQexec(s->sql, "SELECT 1");
                        bool fired = deadline_disarm(s->guard_sql);
                        if (!fired && PQresultStatus(alive) == PGRES_TUPLES_OK)
                                deadline_arm(g, timeout);
                        PQclear(alive);
                }
                res = PQgetResult(c);
                while ((more = PQgetResult(c)))
                        PQclear(more);
        }
        *ret_timeout = deadline_disarm(g);
        return res;
}

/* ---- events ---- */

int pg_source_emit(Source *s, Event *ev, CdcError *err) {
        int r = pipeline_io_emit(s->io, ev);
        if (r < 0)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "pipeline stopping");
        return 0;
}

int pg_source_send_begin(Source *s, CdcError *err) {
        if (s->begin_sent)
                return 0;
        Event ev = {.kind = EVENT_BEGIN, .txn = s->txn};
        s->begin_sent = true;
        return pg_source_emit(s, &ev, err);
}

static int tuple_values(const Table *t, const PgoutputTuple *tup, Value **ret, CdcError *err) {
        if (tup->ncols != t->ncols)
                return cdc_error(err, -EBADMSG, false, CDC_ERR_DATA,
                                 "table %s.%s: a row with %d columns arrived for a relation of %d columns", t->schema,
                                 t->name, tup->ncols, t->ncols);
        int n = t->ncols > 0 ? t->ncols : 1;
        const char *data[n];
        size_t lens[n];
        for (int i = 0; i < t->ncols; i++) {
                const PgoutputColumn *c = &tup->cols[i];
                if (c->kind == 'b')
                        return cdc_error(err, -EPROTO, false, CDC_ERR_DATA,
                                         "table %s.%s column %s: binary format value, but text format was requested",
                                         t->schema, t->name, t->cols[i].name);
                data[i] = c->kind == 't' ? c->data : NULL;
                lens[i] = c->kind == 't' ? c->len : 0;
        }
        /* one allocation for the image and its text */
        Value *v = values_pack(t->ncols, data, lens);
        if (!v)
                return cdc_oom(err);
        for (int i = 0; i < t->ncols; i++)
                if (tup->cols[i].kind == 'u')
                        v[i].kind = VALUE_UNCHANGED;
        *ret = v;
        return 0;
}

static int on_row(Source *s, const PgoutputMsg *m, CdcError *err) {
        Table *t = pg_rel_lookup(s, m->u.row.rel_id);
        if (!t)
                return cdc_error(err, -EPROTO, false, CDC_ERR_SOURCE,
                                 "a row for relation %u arrived before its Relation message", m->u.row.rel_id);
        if (pg_snapshot_copied_later(s, t))
                return 0;
        const CopiedTable *conv =
                s->nconverging ? copies_find(s->converging, s->nconverging, t->schema, t->name) : NULL;
        Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
        Change *c = &ev.change;
        c->op = m->type == PGOUTPUT_INSERT ? CHANGE_INSERT : m->type == PGOUTPUT_UPDATE ? CHANGE_UPDATE : CHANGE_DELETE;
        c->table = table_ref(t);
        int r = 0;
        if (m->u.row.old_kind)
                r = tuple_values(t, &m->u.row.old_tuple, &c->before, err);
        if (r == 0 && m->type != PGOUTPUT_DELETE)
                r = tuple_values(t, &m->u.row.new_tuple, &c->after, err);
        if (r == 0 && c->op == CHANGE_DELETE && !c->before)
                r = cdc_error(err, -EPROTO, false, CDC_ERR_DATA, "table %s.%s: a delete without its old key", t->schema,
                              t->name);
        if (r == 0)
                r = pg_source_send_begin(s, err);
        if (r == 0 && conv && position_cmp(s->txn.commit_pos, conv->pos) <= 0)
                return pg_snapshot_converge(s, &ev, err);
        if (r == 0 && pg_resnap_owns(s, t))
                return pg_resnap_on_row(s, &ev, err);
        if (r == 0)
                return pg_source_emit(s, &ev, err);
        change_clear(c);
        return r;
}

static int on_truncate(Source *s, const PgoutputMsg *m, CdcError *err) {
        int r = pg_source_send_begin(s, err);
        for (int i = 0; r == 0 && i < m->u.truncate.nrels; i++) {
                Table *t = pg_rel_lookup(s, m->u.truncate.rel_ids[i]);
                if (!t)
                        return cdc_error(err, -EPROTO, false, CDC_ERR_SOURCE, "truncate of unknown relation %u",
                                         m->u.truncate.rel_ids[i]);
                if (pg_snapshot_copied_later(s, t))
                        continue;
                if ((r = pg_resnap_on_truncate(s, t, err)) < 0)
                        return r;
                Event ev = {.kind = EVENT_CHANGE, .txn = s->txn};
                ev.change.op = CHANGE_TRUNCATE;
                ev.change.table = table_ref(t);
                ev.change.flags = m->u.truncate.options;
                r = pg_source_emit(s, &ev, err);
        }
        return r;
}

/* ---- streamed (in-progress) transactions: spilled to disk until their commit ---- */

static StreamXact *stream_find(Source *s, uint32_t xid, bool create, CdcError *err) {
        for (size_t i = 0; i < s->nstreams; i++)
                if (s->streams[i].xid == xid)
                        return &s->streams[i];
        if (!create)
                return NULL;
        if (s->nstreams == MAX_STREAMED_XACTS) {
                cdc_error(err, -ENOSPC, false, CDC_ERR_SOURCE, "more than %d streamed transactions in progress",
                          MAX_STREAMED_XACTS);
                return NULL;
        }
        StreamXact *x = &s->streams[s->nstreams];
        snprintf(x->path, sizeof(x->path), "%s/xact-%u.spill", s->spill_dir, xid);
        int fd = open(x->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || !(x->f = fdopen(fd, "w+"))) {
                int e = errno;
                if (e == ENOENT)
                        cdc_error(err, -e, true, CDC_ERR_DISK,
                                  "cannot create spill file %s: the spill directory was removed while the pipeline "
                                  "ran — it is created again when the pipeline retries",
                                  x->path);
                else
                        cdc_error(err, -e, true, CDC_ERR_DISK,
                                  "cannot create spill file %s: %s — free space in %s; the "
                                  "pipeline retries by itself",
                                  x->path, strerror(e), s->spill_dir);
                if (fd >= 0)
                        close(fd);
                return NULL;
        }
        x->xid = xid;
        s->nstreams++;
        return x;
}

static void stream_drop(Source *s, StreamXact *x) {
        fclose(x->f);
        unlink(x->path);
        *x = s->streams[--s->nstreams];
}

static void streams_drop_all(Source *s) {
        while (s->nstreams)
                stream_drop(s, &s->streams[0]);
}

/* A spill file that cannot be written or read back (disk full, I/O error, the file changed under
 * us): counted as "disk" and retried; the retry streams the transaction again from the slot. */
static int spill_error(const StreamXact *x, int e, const char *what, CdcError *err) {
        if (e <= 0)
                e = EIO;
        const char *slash = strrchr(x->path, '/');
        int dirlen = slash ? (int)(slash - x->path) : (int)strlen(x->path);
        return cdc_error(err, -e, true, CDC_ERR_DISK,
                         "cannot %s spill file %s: %s — free space in %.*s; the pipeline retries by itself", what,
                         x->path, strerror(e), dirlen, x->path);
}

static int spill(StreamXact *x, const uint8_t *buf, size_t len, CdcError *err) {
        uint32_t n = (uint32_t)len;
        errno = 0;
        if (fwrite(&n, sizeof(n), 1, x->f) != 1 || fwrite(buf, 1, len, x->f) != len)
                return spill_error(x, errno, "write", err);
        return 0;
}

static int handle_message(Source *s, const uint8_t *buf, size_t len, bool replay, CdcError *err);

/* Replays a committed streamed transaction: aborted subtransactions first collected, then every
 * other change handed on as one transaction. */
static int stream_commit(Source *s, const PgoutputMsg *m, CdcError *err) {
        StreamXact *x = stream_find(s, m->xid, false, err);
        s->txn =
                (TxnInfo){.xid = m->xid, .commit_pos = {0, m->u.commit.commit_lsn}, .commit_ts = m->u.commit.commit_ts};
        s->in_txn = true;
        s->begin_sent = false;
        int r = 0;
        /* Buffered writes that fail only now (disk full) must not pass for the end of the file. */
        errno = 0;
        if (x && fflush(x->f) != 0)
                r = spill_error(x, errno, "write", err);
        if (x && r == 0) {
                uint32_t *aborted = NULL;
                size_t naborted = 0, cap = 0;
                uint8_t *buf = NULL;
                size_t bufcap = 0;
                for (int pass = 0; pass < 2 && r == 0; pass++) {
                        rewind(x->f);
                        uint32_t n;
                        size_t got = 0;
                        while (r == 0 && (got = fread(&n, 1, sizeof(n), x->f)) == sizeof(n)) {
                                if (n > bufcap) {
                                        uint8_t *nb = realloc(buf, n);
                                        if (!nb) {
                                                r = cdc_oom(err);
                                                break;
                                        }
                                        buf = nb;
                                        bufcap = n;
                                }
                                if (fread(buf, 1, n, x->f) != n) {
                                        r = spill_error(x, ferror(x->f) ? errno : EIO, "read back", err);
                                        break;
                                }
                                if (buf[0] == 'a') { /* our marker: subtransaction aborted */
                                        if (pass == 0 && n == 5) {
                                                if (naborted == cap) {
                                                        cap = cap ? cap * 2 : 16;
                                                        uint32_t *na = realloc(aborted, cap * sizeof(*na));
                                                        if (!na) {
                                                                r = cdc_oom(err);
                                                                break;
                                                        }
                                                        aborted = na;
                                                }
                                                memcpy(&aborted[naborted++], buf + 1, 4);
                                        }
                                        continue;
                                }
                                if (pass == 0)
                                        continue;
                                /* Changes carry their (sub)transaction's xid right after the type. */
                                if (n >= 5 && buf[0] != PGOUTPUT_RELATION && buf[0] != PGOUTPUT_TYPE) {
                                        uint32_t sub = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
                                                       (uint32_t)buf[3] << 8 | buf[4];
                                        bool skip = false;
                                        for (size_t i = 0; i < naborted; i++)
                                                skip |= aborted[i] == sub;
                                        if (skip)
                                                continue;
                                }
                                r = handle_message(s, buf, n, true, err);
                        }
                        /* the end of the file only where a record ends */
                        if (r == 0 && (got != 0 || ferror(x->f)))
                                r = spill_error(x, ferror(x->f) ? errno : EIO, "read back", err);
                }
                free(aborted);
                free(buf);
                stream_drop(s, x);
        }
        if (r == 0 && s->begin_sent) {
                Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
                r = pg_source_emit(s, &ev, err);
                s->commit_end = m->u.commit.end_lsn;
        }
        s->in_txn = false;
        return r;
}

static int stream_abort(Source *s, const PgoutputMsg *m, CdcError *err) {
        StreamXact *x = stream_find(s, m->xid, false, err);
        if (!x)
                return 0;
        if (m->u.stream_abort.subxid == m->xid) {
                stream_drop(s, x);
                return 0;
        }
        uint8_t mark[5] = {'a'};
        memcpy(mark + 1, &m->u.stream_abort.subxid, 4);
        return spill(x, mark, sizeof(mark), err);
}

/* Handles one pgoutput message. replay: from a spill file (in-stream format). */
static int handle_message(Source *s, const uint8_t *buf, size_t len, bool replay, CdcError *err) {
        PgoutputMsg m;
        char why[256];
        bool in_stream = replay || s->stream_xid != 0;
        int r = pgoutput_decode(buf, len, in_stream, &m, why, sizeof(why));
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_SOURCE, "undecodable pgoutput message at %X/%X: %s",
                                 (uint32_t)(s->received_lsn >> 32), (uint32_t)s->received_lsn, why);
        /* Inside a Stream Start block, everything but the relation cache goes to the spill file. */
        if (!replay && s->stream_xid != 0 && m.type != PGOUTPUT_STREAM_STOP) {
                StreamXact *x = stream_find(s, s->stream_xid, true, err);
                r = x ? spill(x, buf, len, err) : err->code;
                if (r == 0 && m.type == PGOUTPUT_RELATION)
                        r = pg_rel_on_relation(s, &m, err);
                pgoutput_msg_clear(&m);
                return r;
        }
        /* A pending copy goes before the first transaction committed after its position. */
        if (s->copy_pending && !replay &&
            ((m.type == PGOUTPUT_BEGIN && m.u.begin.final_lsn > s->copy_pos.lo) ||
             (m.type == PGOUTPUT_STREAM_COMMIT && m.u.commit.commit_lsn > s->copy_pos.lo)) &&
            (r = pg_snapshot_emit_copy(s, err)) < 0) {
                pgoutput_msg_clear(&m);
                return r;
        }
        switch (m.type) {
        case PGOUTPUT_BEGIN:
                s->in_txn = true;
                s->begin_sent = false;
                s->txn = (TxnInfo){
                        .xid = m.xid, .commit_pos = {0, m.u.begin.final_lsn}, .commit_ts = m.u.begin.commit_ts};
                break;
        case PGOUTPUT_ORIGIN: snprintf(s->txn.origin, sizeof(s->txn.origin), "%s", m.u.origin.name); break;
        case PGOUTPUT_RELATION: r = pg_rel_on_relation(s, &m, err); break;
        case PGOUTPUT_INSERT:
        case PGOUTPUT_UPDATE:
        case PGOUTPUT_DELETE: r = on_row(s, &m, err); break;
        case PGOUTPUT_TRUNCATE: r = on_truncate(s, &m, err); break;
        case PGOUTPUT_COMMIT:
                /* A transaction with no change for our tables still moves the position. */
                if (s->begin_sent) {
                        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn};
                        r = pg_source_emit(s, &ev, err);
                        /* The checkpoint is the commit record's start; once the stream pauses,
                         * its end is acknowledged too (stream()), or the position would stay a
                         * record short of the server's WAL end, which lag counts as behind. */
                        s->commit_end = m.u.commit.end_lsn;
                } else {
                        Event ev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = {0, m.u.commit.end_lsn}};
                        r = pg_source_emit(s, &ev, err);
                }
                s->in_txn = false;
                break;
        case PGOUTPUT_STREAM_START: s->stream_xid = m.xid; break;
        case PGOUTPUT_STREAM_STOP: s->stream_xid = 0; break;
        case PGOUTPUT_STREAM_COMMIT: r = stream_commit(s, &m, err); break;
        case PGOUTPUT_STREAM_ABORT: r = stream_abort(s, &m, err); break;
        case PGOUTPUT_MESSAGE: r = pg_resnap_on_message(s, &m, err); break;
        case PGOUTPUT_TYPE: break;
        }
        pgoutput_msg_clear(&m);
        return r;
}

/* ---- streaming ---- */

static int send_status(Source *s, bool reply, CdcError *err) {
        uint8_t msg[34];
        Position durable = pipeline_io_durable(s->io);
        uint64_t flush = durable.lo;
        size_t n = pgwire_write_standby_status(msg, s->received_lsn, flush, flush, pg_source_now_usec(), reply);
        deadline_arm(s->guard_repl, conf_timeout_ms(s->conn));
        bool ok = PQputCopyData(s->repl, (const char *)msg, (int)n) > 0 && PQflush(s->repl) == 0;
        if (deadline_disarm(s->guard_repl))
                return pg_source_timeout_error(s, err);
        if (!ok) {
                char buf[512];
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: cannot send standby status: %s",
                                 s->conn->name, pg_source_errtext(s, s->repl, NULL, buf, sizeof(buf)));
        }
        s->last_status = pg_source_now_usec();
        return 0;
}

/* On an idle database nothing is written, and the slot would hold WAL forever: a tiny
 * non-transactional message moves the WAL end so keepalives let the slot advance. A server
 * that does not answer it ends the attempt; one that refuses it disables it. */
static int heartbeat(Source *s, CdcError *err) {
        if (s->heartbeat_failed)
                return 0;
        /* Within what is left of the stream's own silence budget: a frozen server is reported
         * timeout_s after the stream last heard of it, not timeout_s after the heartbeat began. */
        int64_t left_ms = (s->last_recv + (int64_t)conf_timeout_ms(s->conn) * 1000 - pg_source_now_usec()) / 1000;
        deadline_arm(s->guard_sql, left_ms > 1000 ? (int)left_ms : 1000);
        PGresult *res = PQexec(s->sql, "SELECT pg_logical_emit_message(false, 'cdcsync_heartbeat', '')");
        bool fired = deadline_disarm(s->guard_sql);
        int r = 0;
        if (fired || PQstatus(s->sql) != CONNECTION_OK) {
                char buf[512];
                r = fired ? pg_source_timeout_error(s, err)
                          : cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: %s", s->conn->name,
                                      pg_source_errtext(s, s->sql, res, buf, sizeof(buf)));
        } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                char buf[512];
                log_warn(s->ctx, "heartbeat disabled (%s); on an idle database the slot advances only with other WAL",
                         pg_source_errtext(s, s->sql, res, buf, sizeof(buf)));
                s->heartbeat_failed = true;
        }
        PQclear(res);
        return r;
}

static int classify_stream_error(Source *s, const PGresult *res, CdcError *err) {
        char buf[512];
        pg_source_errtext(s, s->repl, res, buf, sizeof(buf));
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        bool gone = strstr(buf, "does not exist") || strstr(buf, "can no longer get changes") ||
                    strstr(buf, "invalidated") || (state && strcmp(state, "42704") == 0);
        if (gone)
                return cdc_error(
                        err, -ENOENT, false, CDC_ERR_SLOT,
                        "connector %s: replication slot \"%s\" is gone or invalidated (%s) — changes since the "
                        "last checkpoint cannot be read any more; re-create the pipeline with a new snapshot "
                        "(delete its row from cdcsync.checkpoints on the sink and restart with snapshot = "
                        "replace, or merge for a bidirectional pair)",
                        s->conn->name, s->slot, buf);
        return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: replication stream ended: %s",
                         s->conn->name, buf);
}

static int start_replication(Source *s, Position start, CdcError *err) {
        char *qslot = PQescapeIdentifier(s->repl, s->slot, strlen(s->slot));
        char *pub = PQescapeIdentifier(s->repl, s->publication, strlen(s->publication));
        char *publit = pub ? PQescapeLiteral(s->repl, pub, strlen(pub)) : NULL;
        char *sql = NULL;
        if (!qslot || !publit ||
            asprintf(&sql,
                     "START_REPLICATION SLOT %s LOGICAL %X/%X (proto_version '2', streaming 'on', "
                     "publication_names %s%s)",
                     qslot, (uint32_t)(start.lo >> 32), (uint32_t)start.lo, publit,
                     /* the watermarks of a re-snapshot (pg_resnapshot.c) */
                     s->resnap && PQserverVersion(s->repl) >= 140000 ? ", messages 'true'" : "") < 0)
                sql = NULL;
        PQfreemem(qslot);
        PQfreemem(pub);
        PQfreemem(publit);
        if (!sql)
                return cdc_oom(err);
        PGresult *res = NULL;
        bool fired = false;
        for (int tries = 0;; tries++) {
                deadline_arm(s->guard_repl, conf_timeout_ms(s->conn));
                res = PQexec(s->repl, sql);
                fired = deadline_disarm(s->guard_repl);
                if (PQresultStatus(res) == PGRES_COPY_BOTH || fired || tries >= 10 || !s->pipe->conf ||
                    !s->pipe->conf->ha || !s->sql)
                        break;
                /* ha = on: this instance holds the pipeline's lease, so a walsender still on the
                 * slot is the deposed leader's (frozen, cut off): end it and try again. */
                char buf[512];
                pg_source_errtext(s, s->repl, res, buf, sizeof(buf));
                int pid = lease_slot_active_pid(buf);
                if (pid <= 0)
                        break;
                PQclear(res);
                res = NULL;
                char spid[16];
                snprintf(spid, sizeof(spid), "%d", pid);
                const char *params[] = {spid};
                log_warn(s->ctx, "replication slot \"%s\" is held by walsender PID %d, the deposed leader's: ending it",
                         s->slot, pid);
                deadline_arm(s->guard_sql, conf_timeout_ms(s->conn));
                PGresult *t =
                        PQexecParams(s->sql, "SELECT pg_terminate_backend($1::int)", 1, NULL, params, NULL, NULL, 0);
                deadline_disarm(s->guard_sql);
                PQclear(t);
                struct timespec ts = {0, (long)(tries + 1) * 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
        free(sql);
        if (PQresultStatus(res) != PGRES_COPY_BOTH) {
                int r = fired ? pg_source_timeout_error(s, err) : classify_stream_error(s, res, err);
                PQclear(res);
                return r;
        }
        PQclear(res);
        return 0;
}

/* The walsender sends nothing on an idle server whose changes we confirmed, and a frozen path
 * or a paused server sends nothing either: after half of timeout_s of silence a keepalive is
 * requested (the reply-requested flag of our standby status), which a live walsender answers
 * at once; nothing within the other half means the stream is dead. Silence counts only while
 * we wait for the socket, not while the pipeline's queue held us. */
static int check_silence(Source *s, int64_t now, CdcError *err) {
        int64_t half = (int64_t)conf_timeout_ms(s->conn) * 500;
        if (!s->reply_asked_at) {
                if (now - s->last_recv < half)
                        return 0;
                s->reply_asked_at = now;
                return send_status(s, true, err);
        }
        if (now - s->reply_asked_at < half)
                return 0;
        return cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                         "connector %s: the replication stream sent nothing for %d s (timeout_s), not even the "
                         "keepalive asked for: the network path or the source server is not responding",
                         s->conn->name, conf_timeout_ms(s->conn) / 1000);
}

static int stream(Source *s, CdcError *err) {
        int r = 0;
        s->last_data = s->last_status = s->last_recv = pg_source_now_usec();
        s->reply_asked_at = 0;
        pipeline_io_streaming(s->io, false);
        while (!pipeline_io_stopping(s->io)) {
                char *copybuf = NULL;
                int n = PQgetCopyData(s->repl, &copybuf, 1);
                if (n == 0) {
                        int64_t now = pg_source_now_usec();
                        if (s->commit_end && !s->in_txn && s->nstreams == 0) {
                                /* Nothing more right now: the engine ends its batch anyway, and the
                                 * position may move past the last commit record. */
                                Event ev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = {0, s->commit_end}};
                                if (s->commit_end > s->received_lsn)
                                        s->received_lsn = s->commit_end;
                                s->commit_end = 0;
                                if ((r = pg_source_emit(s, &ev, err)) < 0)
                                        return r;
                        }
                        if (now - s->last_status >= STATUS_INTERVAL_USEC && (r = send_status(s, false, err)) < 0)
                                return r;
                        if (!s->in_txn && s->nstreams == 0 && (r = pg_resnap_step(s, err)) < 0)
                                return r;
                        if (now - s->last_data >= HEARTBEAT_IDLE_USEC && !s->in_txn) {
                                if ((r = heartbeat(s, err)) < 0)
                                        return r;
                                s->last_data = now;
                        }
                        struct pollfd pfd = {.fd = PQsocket(s->repl), .events = POLLIN};
                        int ready = poll(&pfd, 1, 200);
                        if (ready < 0 && errno != EINTR)
                                return cdc_error(err, -errno, true, CDC_ERR_CONNECTION, "poll: %s", strerror(errno));
                        if (PQconsumeInput(s->repl) == 0)
                                return classify_stream_error(s, NULL, err);
                        if (ready == 0 && (r = check_silence(s, pg_source_now_usec(), err)) < 0)
                                return r;
                        continue;
                }
                s->reply_asked_at = 0;
                if (n == -1) {
                        PGresult *res = PQgetResult(s->repl);
                        r = classify_stream_error(s, res, err);
                        PQclear(res);
                        return r;
                }
                if (n < 0)
                        return classify_stream_error(s, NULL, err);
                const uint8_t *buf = (const uint8_t *)copybuf;
                if (buf[0] == PGWIRE_KEEPALIVE) {
                        PgwireKeepalive k;
                        if (pgwire_read_keepalive(buf, (size_t)n, &k) == 0) {
                                pipeline_io_report_source_end(s->io, (Position){0, k.wal_end}, k.send_time);
                                /* Between transactions nothing is pending up to the WAL end.
                                 * A keepalive asking for a reply is passed on even at the same
                                 * position: the sink ignores one that arrives while a batch is
                                 * still open, and a shutting-down server waits (pg_ctl stop
                                 * hangs) until the flush we report reaches its WAL end. */
                                /* Every transaction committed before the WAL end was sent: a
                                 * pending copy as of a position before it goes now. */
                                if (s->copy_pending && !s->in_txn && k.wal_end >= s->copy_pos.lo)
                                        r = pg_snapshot_emit_copy(s, err);
                                if (r == 0 && !s->in_txn && s->nstreams == 0 &&
                                    (k.wal_end > s->received_lsn || (k.reply_requested && k.wal_end > 0))) {
                                        s->received_lsn = k.wal_end;
                                        Event ev = {.kind = EVENT_KEEPALIVE,
                                                    .ckpt.pos = {0, k.wal_end},
                                                    .server_ts = k.send_time};
                                        r = pg_source_emit(s, &ev, err);
                                }
                                if (r == 0 && k.reply_requested)
                                        r = send_status(s, false, err);
                        }
                } else if (buf[0] == PGWIRE_XLOGDATA) {
                        PgwireXLogData x;
                        r = pgwire_read_xlogdata(buf, (size_t)n, &x);
                        if (r < 0) {
                                r = cdc_error(err, r, false, CDC_ERR_SOURCE, "malformed XLogData message");
                        } else {
                                if (x.wal_start > s->received_lsn)
                                        s->received_lsn = x.wal_start;
                                /* Where the source is now comes with every message; it is passed
                                 * on at transaction bounds, and inside a long transaction every
                                 * END_REPORT_USEC (the lag lock and two clock reads for every
                                 * change were ~5 % of cdcsync's samples on pgbench's backlog). */
                                bool bound = x.len > 0 && (x.data[0] == PGOUTPUT_BEGIN || x.data[0] == PGOUTPUT_COMMIT);
                                if (bound || s->last_recv - s->end_reported >= END_REPORT_USEC) {
                                        pipeline_io_report_source_end(s->io, (Position){0, x.wal_end}, x.send_time);
                                        s->end_reported = s->last_recv;
                                }
                                s->data_seen = true;
                                r = handle_message(s, x.data, x.len, false, err);
                        }
                }
                PQfreemem(copybuf);
                if (r == 0 && !s->in_txn && s->nstreams == 0)
                        r = pg_resnap_step(s, err);
                if (r < 0)
                        return r;
                /* Ready for the next message: silence counts from here (emit may have waited). */
                s->last_recv = coarse_now_usec();
                if (s->data_seen)
                        s->last_data = s->last_recv;
                s->data_seen = false;
        }
        /* Stopping: acknowledge what the sink committed before going. */
        send_status(s, false, err);
        return 0;
}

static int pg_source_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        s->io = io;
        s->ctx = pipeline_io_context(io);
        int r;
        snprintf(s->spill_dir, sizeof(s->spill_dir), "%s", start->spill_dir ? start->spill_dir : "/tmp");
        if (mkdir(s->spill_dir, 0700) < 0 && errno != EEXIST)
                return cdc_error(err, -errno, true, CDC_ERR_DISK,
                                 "cannot create the spill directory %s: %s — fix state_dir; "
                                 "the pipeline retries by itself",
                                 s->spill_dir, strerror(errno));

        Position from = start->checkpoint.pos;
        if (start->snapshot) {
                r = pg_snapshot_initial(s, start, &from, err);
                if (r < 0) {
                        if (s->slot_created)
                                pg_slot_drop_unused(s);
                        return r;
                }
        } else {
                r = pg_slot_resolve_start(s, start, err);
                if (r < 0)
                        return r;
        }
        if (!start->snapshot && start->have_position && start->registry) {
                r = pg_snapshot_resume(s, start, err);
                if (r < 0)
                        return r;
        }
        if (!start->snapshot && start->have_position) {
                r = pg_slot_follow_tables(s, start, err);
                if (r < 0)
                        return r;
        }
        r = pg_resnap_open(s, start, err);
        if (r < 0)
                return r;
        s->received_lsn = from.lo;
        r = start_replication(s, start->have_position || start->snapshot ? from : (Position){0, 0}, err);
        if (r == 0)
                r = stream(s, err);
        streams_drop_all(s);
        if (s->slot_created && position_cmp(pipeline_io_durable(io), from) < 0)
                pg_slot_drop_unused(s);
        return r;
}

Source *pg_source_free(Source *s) {
        if (!s)
                return NULL;
        streams_drop_all(s);
        for (size_t i = 0; i < s->nrels; i++)
                table_unref(s->rels[i].table);
        free(s->rels);
        free(s->filters);
        free(s->converging);
        pg_resnap_free(s);
        pg_slot_list_free(&s->copy_new, &s->ncopy_new);
        pg_slot_list_free(&s->copy_gone, &s->ncopy_gone);
        deadline_set_fd(s->guard_copy, -1);
        if (s->copy)
                PQfinish(s->copy);
        deadline_set_fd(s->guard_repl, -1);
        deadline_set_fd(s->guard_sql, -1);
        if (s->repl)
                PQfinish(s->repl);
        if (s->sql)
                PQfinish(s->sql);
        deadline_free(s->guard_repl);
        deadline_free(s->guard_sql);
        deadline_free(s->guard_copy);
        free(s);
        return NULL;
}

static int pg_source_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        if (!s)
                return cdc_oom(err);
        s->conn = conn;
        s->pipe = pipe;
        /* open() logs (a created publication) before run() gives the pipeline's context. */
        snprintf(s->open_ctx, sizeof(s->open_ctx), "[pipeline=%s source=%s]", pipe->name, conn->name);
        s->ctx = s->open_ctx;
        if (conn->slot)
                snprintf(s->slot, sizeof(s->slot), "%s", conn->slot);
        else
                pg_source_default_name(pipe->name, s->slot, sizeof(s->slot));
        if (conn->publication)
                snprintf(s->publication, sizeof(s->publication), "%s", conn->publication);
        else
                pg_source_default_name(pipe->name, s->publication, sizeof(s->publication));
        /* The settings and the role are checked before the walsender connection: without
         * REPLICATION that connection fails with a bare "must be superuser or replication role"
         * that would be retried forever as a connection error. */
        int r = deadline_new(&s->guard_sql);
        if (r == 0)
                r = deadline_new(&s->guard_repl);
        if (r == 0)
                r = deadline_new(&s->guard_copy);
        if (r < 0) {
                pg_source_free(s);
                return cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory");
        }
        r = pg_conn_open(conn, PG_CONN_SOURCE, &s->sql, err);
        if (r == 0) {
                deadline_set_fd(s->guard_sql, PQsocket(s->sql));
                r = pg_slot_check_server(s, err);
        }
        if (r == 0) {
                r = pg_conn_open(conn, PG_CONN_SOURCE | PG_CONN_REPLICATION, &s->repl, err);
                if (r == 0)
                        deadline_set_fd(s->guard_repl, PQsocket(s->repl));
        }
        if (r == 0)
                r = pg_slot_ensure_publication(s, err);
        if (r == 0)
                r = pg_partitions_check_tables(s, err);
        if (r == 0)
                pg_partitions_check_publication(s);
        if (r < 0) {
                pg_source_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* ---- probe: where the WAL ends now (connector.h) ---- */

struct SourceProbe {
        const ConnectorConf *conn;
        PGconn *c;
        Deadline *guard; /* bounds the query: a frozen server or path does not hold the monitor */
        char slot[64];   /* the pipeline's replication slot */
};

static SourceProbe *pg_source_probe_free(SourceProbe *pr) {
        if (!pr)
                return NULL;
        deadline_set_fd(pr->guard, -1);
        deadline_free(pr->guard);
        PQfinish(pr->c);
        free(pr);
        return NULL;
}

static int pg_source_probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        SourceProbe *pr = calloc(1, sizeof(*pr));
        if (!pr || deadline_new(&pr->guard) < 0) {
                free(pr);
                return cdc_oom(err);
        }
        pr->conn = conn;
        if (conn->slot)
                snprintf(pr->slot, sizeof(pr->slot), "%s", conn->slot);
        else
                pg_source_default_name(pipe->name, pr->slot, sizeof(pr->slot));
        int r = pg_conn_open(conn, PG_CONN_SQL, &pr->c, err);
        if (r < 0) {
                pg_source_probe_free(pr);
                return r;
        }
        deadline_set_fd(pr->guard, PQsocket(pr->c));
        *ret = pr;
        return 0;
}

/* The flush position: what a walsender can send, and where its keepalives end up once the
 * stream has caught up. */
static int pg_source_probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        (void)applied;
        (void)ret_bytes;
        deadline_arm(pr->guard, conf_timeout_ms(pr->conn));
        PGresult *res = PQexec(pr->c, "SELECT pg_current_wal_flush_lsn()");
        bool fired = deadline_disarm(pr->guard);
        Position end = {0};
        int r = 0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
            pg_source_parse_position(PQgetvalue(res, 0, 0), &end) < 0) {
                char buf[512];
                if (fired)
                        r = cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION,
                                      "connector %s: no answer within %d s (timeout_s)", pr->conn->name,
                                      conf_timeout_ms(pr->conn) / 1000);
                else
                        r = cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: %s", pr->conn->name,
                                      pg_conn_error_text(pr->conn, pr->c, res, buf, sizeof(buf)));
        } else {
                *ret_end = end;
        }
        PQclear(res);
        return r;
}

/* Runs one query of the probe within timeout_s; NULL with err set on failure. */
static PGresult *probe_query(SourceProbe *pr, const char *sql, int n, const char *const *params, CdcError *err) {
        deadline_arm(pr->guard, conf_timeout_ms(pr->conn));
        PGresult *res = PQexecParams(pr->c, sql, n, NULL, params, NULL, NULL, 0);
        bool fired = deadline_disarm(pr->guard);
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
                return res;
        char buf[512];
        if (fired)
                cdc_error(err, -ETIMEDOUT, true, CDC_ERR_CONNECTION, "connector %s: no answer within %d s (timeout_s)",
                          pr->conn->name, conf_timeout_ms(pr->conn) / 1000);
        else
                cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "connector %s: %s", pr->conn->name,
                          pg_conn_error_text(pr->conn, pr->c, res, buf, sizeof(buf)));
        PQclear(res);
        return NULL;
}

/* The WAL the pipeline's slot makes the server keep: from its restart_lsn to the current insert
 * position (what pg_wal grows by while the pipeline is down or slow). A slot that does not exist
 * (yet, or dropped) keeps nothing and is not active. */
static int pg_source_probe_health(SourceProbe *pr, Position durable, SourceHealth *ret, CdcError *err) {
        (void)durable;
        const char *params[] = {pr->slot};
        PGresult *res = probe_query(pr,
                                    "SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, "
                                    "active FROM pg_replication_slots WHERE slot_name = $1",
                                    1, params, err);
        if (!res)
                return err->code;
        SourceHealth h = {.retained_bytes = 0, .slot_active = 0};
        if (PQntuples(res) == 1) {
                char *end;
                errno = 0;
                long long v = strtoll(PQgetvalue(res, 0, 0), &end, 10);
                h.retained_bytes = errno == 0 && *end == '\0' && v >= 0 ? v : 0;
                h.slot_active = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        }
        PQclear(res);
        *ret = h;
        return 0;
}

const SourceOps pg_source_ops = {
        .type = "postgres",
        .open = pg_source_open,
        .run = pg_source_run,
        .format_position = pg_source_format_position,
        .parse_position = pg_source_parse_position,
        .check = pg_source_check,
        .free = pg_source_free,
        .streamed_tables = pg_source_streamed_tables,
        .locate = pg_conn_locate,
        .list_tables = pg_conn_list_tables,
        .probe_open = pg_source_probe_open,
        .probe = pg_source_probe,
        .probe_free = pg_source_probe_free,
        .probe_health = pg_source_probe_health,
        .resnapshot = true,
};
