/* The MySQL/MariaDB binlog source's run loop: the replica connection through libmariadb's
 * replication API, and the translation of binlog events into Events (preflight and start in
 * mysql_preflight.c, the schema cache in mysql_schema.c, copies in mysql_snapshot.c).
 *
 * Transport only comes from mariadb_rpl_fetch(); every event is decoded from its raw bytes by
 * binlog.c, so what is tested with captured bytes is what runs. Column names, keys, signedness,
 * charsets and ENUM/SET members come from information_schema, cached per table and dropped on
 * every DDL QUERY event (the next TABLE_MAP reloads it). information_schema shows the schema of
 * now, not of the stream position: a TABLE_MAP with fewer columns whose types match the first
 * ones of information_schema is the table before columns were added at its end (read with those
 * columns); any other disagreement is refused as a "schema" error rather than guessed.
 * The initial snapshot reads every table in one InnoDB consistent snapshot whose binlog position
 * MariaDB reports, and streaming starts there. */
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

/* ---- GTID state and checkpoint texts ---- */

/* The base name of a binlog file name ("mariadb-bin.000003" → "mariadb-bin"). */
void mysql_source_set_base(Source *s, const char *file) {
        const char *dot = strrchr(file, '.');
        size_t n = dot ? (size_t)(dot - file) : strlen(file);
        if (n >= sizeof(s->base))
                n = sizeof(s->base) - 1;
        memcpy(s->base, file, n);
        s->base[n] = '\0';
}

/* Called as each COMMIT or KEEPALIVE is emitted, so the state is that after every transaction
 * read before p: the text travels with the event, and no other thread asks the source. */
void mysql_source_checkpoint_text(const Source *s, Position p, char *buf, size_t len) {
        bool gtid = s->gtid_known && s->state_ok && position_cmp(p, s->gtid_from) >= 0;
        mysql_source_format_checkpoint(s->base, p, gtid ? &s->state : NULL, buf, len);
}

/* A transaction's GTID joins the state once it ends. */
static void gtid_note(Source *s, MysqlGtid g) {
        if (mysql_source_gtid_update(&s->state, g) < 0)
                s->state_ok = false; /* more domains than a checkpoint holds */
}

/* ---- events out ---- */

static Position pos_at(Source *s, uint32_t off) {
        return (Position){.hi = s->file_seq, .lo = off};
}

static int emit_begin(Source *s, PipelineIO *io) {
        if (s->begun)
                return 0;
        Event ev = {.kind = EVENT_BEGIN, .txn = s->txn};
        s->begun = true;
        return pipeline_io_emit(io, &ev);
}

/* Decodes one row image at buf into a packed array (*ret, owned by the caller). */
static int decode_image(Source *s, const TableMapEntry *m, const uint8_t *present, const uint8_t *buf, size_t len,
                        Value **ret, size_t *used) {
        int n = (int)m->tm->ncols;
        if (n > s->ndecoded) {
                Value *d = realloc(s->decoded, (size_t)n * sizeof(*d));
                if (!d)
                        return -ENOMEM;
                memset(d + s->ndecoded, 0, (size_t)(n - s->ndecoded) * sizeof(*d));
                s->decoded = d;
                s->ndecoded = n;
        }
        Value *d = s->decoded;
        int r = binlog_decode_row(m->tm, m->se->info, present, buf, len, d, used, &s->zero_dates);
        if (r < 0)
                return r;
        const char *data[n > 0 ? n : 1];
        size_t lens[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) {
                data[i] = d[i].kind == VALUE_TEXT ? d[i].data : NULL;
                lens[i] = d[i].len;
        }
        Value *v = values_pack(n, data, lens);
        for (int i = 0; v && i < n; i++)
                if (d[i].kind == VALUE_UNCHANGED)
                        v[i].kind = VALUE_UNCHANGED;
        for (int i = 0; i < n; i++)
                value_clear(&d[i]); /* a big value is not kept until the next row */
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/* A rows event, compressed or not, decoded by binlog_read_rows(): its changes. */
static int emit_rows(Source *s, const BinlogHeader *h, BinlogRows rows, PipelineIO *io, CdcError *err) {
        int r;
        TableMapEntry *m = s->maps;
        while (m && m->tm->table_id != rows.table_id)
                m = m->next;
        if (!m)
                return cdc_error(err, -EPROTO, false, CDC_ERR_DATA,
                                 "%s rows event for unknown table id %" PRIu64 " in %s", s->ctx, rows.table_id,
                                 s->file);
        if (!m->se->wanted)
                return 0;
        if (rows.ncols != m->tm->ncols)
                return cdc_error(err, -EPROTO, false, CDC_ERR_DATA, "%s rows event of %s.%s has %u columns, its map %u",
                                 s->ctx, m->tm->schema, m->tm->table, rows.ncols, m->tm->ncols);
        Table *t = m->se->table;
        /* A table copied as of a later position: this transaction is in the copy. */
        const CopiedTable *f = copies_find(s->filters, s->nfilters, t->schema, t->name);
        if (f && position_cmp(pos_at(s, h->next_pos), f->pos) <= 0)
                return 0;
        /* A table whose copy was resumed as of a later position: converges up to it. */
        const CopiedTable *conv =
                s->nconverging ? copies_find(s->converging, s->nconverging, t->schema, t->name) : NULL;
        bool converge = conv && position_cmp(pos_at(s, h->next_pos), conv->pos) <= 0;
        size_t off = 0;
        while (off < rows.rows_len) {
                Event ev = {.kind = EVENT_CHANGE};
                Value *img[2] = {NULL, NULL};
                int nimg = rows.op == CHANGE_UPDATE ? 2 : 1;
                for (int i = 0; i < nimg; i++) {
                        size_t used;
                        r = decode_image(s, m, i == 0 ? rows.present : rows.present_after, rows.rows + off,
                                         rows.rows_len - off, &img[i], &used);
                        if (r == -ENOMEM) {
                                r = cdc_oom(err);
                                goto fail;
                        }
                        if (r < 0) {
                                r = cdc_error(err, r, false, CDC_ERR_DATA,
                                              "%s cannot decode a row of %s.%s in %s before %u (%s)", s->ctx, t->schema,
                                              t->name, s->file, h->next_pos, strerror(-r));
                                goto fail;
                        }
                        off += used;
                }
                ev.change.op = rows.op;
                ev.change.table = table_ref(t);
                ev.change.lsn = position_counter(pos_at(s, h->next_pos));
                if (rows.op == CHANGE_INSERT) {
                        ev.change.after = img[0];
                } else if (rows.op == CHANGE_DELETE) {
                        ev.change.before = img[0];
                } else {
                        ev.change.before = img[0];
                        ev.change.after = img[1];
                }
                r = emit_begin(s, io);
                if (r < 0) {
                        event_clear(&ev);
                        return r;
                }
                r = converge ? mysql_source_converge(s, io, &ev) : pipeline_io_emit(io, &ev);
                if (r < 0)
                        return r;
                continue;
        fail:
                values_free(img[0], t->ncols);
                values_free(img[1], t->ncols);
                return r;
        }
        return 0;
}

static int on_rows(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        BinlogRows rows;
        int r = binlog_read_rows(h, &rows);
        if (r == -EMSGSIZE)
                return cdc_error(err, r, false, CDC_ERR_DATA,
                                 "%s compressed rows event in %s before %u announces an impossible uncompressed size "
                                 "(above 1 GiB or 1032 times its compressed size): the binlog is corrupt",
                                 s->ctx, s->file, h->next_pos);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_DATA,
                                 "%s malformed rows event (type %u%s) in %s before %u: the binlog is corrupt", s->ctx,
                                 h->type, h->type >= BINLOG_WRITE_ROWS_COMPRESSED_V1 ? ", compressed" : "", s->file,
                                 h->next_pos);
        r = emit_rows(s, h, rows, io, err);
        binlog_rows_clear(&rows);
        return r;
}

static int end_txn(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        Position at = pos_at(s, h->next_pos);
        int r;
        s->in_txn = false;
        if (s->by_gtid && !s->start_checked) {
                /* The engine skips what is at or before the checkpoint's Position as replayed:
                 * a server whose binlog numbering restarted (RESET MASTER, another log_bin name or
                 * another server) would have its transactions dropped silently. */
                s->start_checked = true;
                if (position_cmp(at, s->start_pos) <= 0) {
                        char cp[64];
                        mysql_source_format_position(s->start_pos, cp, sizeof(cp));
                        return cdc_error(err, -ERANGE, false, CDC_ERR_SOURCE,
                                         "%s the server found GTID state %s in %s, but %s:%u is not after the "
                                         "checkpoint's binlog position (%s): its binlog numbering restarted (RESET "
                                         "MASTER, a new log_bin name or another server), which cdcsync cannot order; "
                                         "delete the pipeline's checkpoint in the sink and restart with start_position "
                                         "= gtid=%s and snapshot = never",
                                         s->ctx, s->connect_state, s->file, s->file, h->next_pos, cp, s->connect_state);
                }
        }
        if (s->have_cur) {
                s->have_cur = false;
                gtid_note(s, s->cur);
        }
        if (s->zero_dates) {
                log_warn(s->ctx, "%u zero date(s) ('0000-00-00') in the transaction ending at %s:%u became NULL",
                         s->zero_dates, s->file, h->next_pos);
                s->zero_dates = 0;
        }
        if (!s->begun) {
                /* nothing of ours inside: let the position advance all the same */
                Event ev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = at, .server_ts = (int64_t)h->timestamp * 1000000};
                mysql_source_checkpoint_text(s, at, ev.ckpt.text, sizeof(ev.ckpt.text));
                return pipeline_io_emit(io, &ev);
        }
        s->begun = false;
        s->txn.commit_pos = at;
        s->txn.commit_ts = (int64_t)h->timestamp * 1000000;
        Event ev = {.kind = EVENT_COMMIT, .txn = s->txn, .ckpt.pos = at};
        mysql_source_checkpoint_text(s, at, ev.ckpt.text, sizeof(ev.ckpt.text));
        r = pipeline_io_emit(io, &ev);
        return r;
}

static void start_txn(Source *s, const BinlogHeader *h, uint64_t seq_no, bool standalone) {
        s->in_txn = true;
        s->begun = false;
        s->standalone = standalone;
        memset(&s->txn, 0, sizeof(s->txn));
        s->txn.xid = seq_no;
        /* Known at BEGIN: where the transaction starts. Its end (the position to acknowledge) is
         * only known when XID/COMMIT arrives: COMMIT carries the real commit_pos. */
        s->txn.commit_pos = pos_at(s, h->next_pos);
        s->txn.commit_ts = (int64_t)h->timestamp * 1000000;
        snprintf(s->txn.origin, sizeof(s->txn.origin), "%u", h->server_id);
}

/* Skips spaces and C-style comments (DDL from clients often starts with them). */
static const char *skip_ws(const char *p) {
        for (;;) {
                while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                        p++;
                if (p[0] == '/' && p[1] == '*') {
                        const char *e = strstr(p + 2, "*/");
                        if (!e)
                                return p + strlen(p);
                        p = e + 2;
                        continue;
                }
                return p;
        }
}

static bool word(const char **pp, const char *w) {
        const char *p = skip_ws(*pp);
        size_t n = strlen(w);
        if (strncasecmp(p, w, n) != 0 || (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != '\n' && p[n] != '`'))
                return false;
        *pp = p + n;
        return true;
}

/* Reads an identifier, `quoted` (doubled backticks) or plain. */
static bool ident(const char **pp, char *out, size_t cap) {
        const char *p = skip_ws(*pp);
        size_t n = 0;
        if (*p == '`') {
                p++;
                for (;;) {
                        if (!*p)
                                return false;
                        if (*p == '`' && p[1] == '`')
                                p++;
                        else if (*p == '`')
                                break;
                        if (n + 1 >= cap)
                                return false;
                        out[n++] = *p++;
                }
                p++;
        } else {
                while (*p && (((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                              *p == '$' || (unsigned char)*p >= 0x80)) {
                        if (n + 1 >= cap)
                                return false;
                        out[n++] = *p++;
                }
        }
        out[n] = '\0';
        *pp = p;
        return n > 0;
}

/* QUERY and QUERY_COMPRESSED, both decoded by binlog_read_query(): libmariadb leaves a compressed
 * statement compressed unless MARIADB_RPL_UNCOMPRESS is set, and then allocates whatever length
 * the event announces. */
static int on_query(Source *s, const BinlogHeader *h, PipelineIO *io, CdcError *err) {
        char stmt[4096], db[256];
        BinlogQuery q;
        int r = binlog_read_query(h, &q);
        if (r == -ENOMEM)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_DATA, "%s malformed %sQUERY event in %s before %u%s", s->ctx,
                                 h->type == BINLOG_QUERY_COMPRESSED ? "compressed " : "", s->file, h->next_pos,
                                 r == -EMSGSIZE ? " (its uncompressed size is impossible: corrupt binlog)" : "");
        size_t n = q.statement_len < sizeof(stmt) - 1 ? q.statement_len : sizeof(stmt) - 1;
        if (n)
                memcpy(stmt, q.statement, n);
        stmt[n] = '\0';
        n = q.db_len < sizeof(db) - 1 ? q.db_len : sizeof(db) - 1;
        if (n)
                memcpy(db, q.db, n);
        db[n] = '\0';
        binlog_query_clear(&q);
        const char *p = stmt;
        if (word(&p, "BEGIN") || word(&p, "XA")) {
                if (!s->in_txn)
                        start_txn(s, h, 0, false);
                return 0;
        }
        p = stmt;
        if (word(&p, "COMMIT"))
                return s->in_txn ? end_txn(s, h, io, err) : 0;
        p = stmt;
        if (word(&p, "ROLLBACK")) {
                /* only non-transactional work is logged with a ROLLBACK: nothing of ours to undo */
                return s->in_txn ? end_txn(s, h, io, err) : 0;
        }
        /* DDL: information_schema is read again at the next TABLE_MAP */
        mysql_source_schema_cache_clear(s);
        p = stmt;
        if (word(&p, "TRUNCATE")) {
                char a[256], b[256];
                const char *schema = db, *name = a;
                word(&p, "TABLE");
                if (ident(&p, a, sizeof(a))) {
                        if (*p == '.' && (p++, ident(&p, b, sizeof(b)))) {
                                schema = a;
                                name = b;
                        }
                        /* a table copied as of a later position: its truncate is in the copy */
                        const CopiedTable *f = copies_find(s->filters, s->nfilters, schema, name);
                        if (f && position_cmp(pos_at(s, h->next_pos), f->pos) <= 0)
                                name = NULL;
                        if (name && mysql_source_pipeline_wants(s->pipe, schema, name)) {
                                SchemaEntry *e;
                                r = mysql_source_schema_load(s, schema, name, &e, err);
                                if (r < 0)
                                        return r;
                                e->next = s->schemas;
                                s->schemas = e;
                                Table *t = table_new(schema, name, e->ncols);
                                if (!t)
                                        return cdc_oom(err);
                                for (int i = 0; i < e->ncols; i++) {
                                        t->cols[i].name = strdup(e->col_names[i]);
                                        t->cols[i].type_name = strdup(e->col_types[i]);
                                        t->cols[i].key = e->col_key[i];
                                        if (!t->cols[i].name || !t->cols[i].type_name) {
                                                table_unref(t);
                                                return cdc_oom(err);
                                        }
                                }
                                if (!s->in_txn)
                                        start_txn(s, h, 0, true);
                                Event tev = {.kind = EVENT_CHANGE,
                                             .change = {.op = CHANGE_TRUNCATE,
                                                        .table = t,
                                                        .lsn = position_counter(pos_at(s, h->next_pos))}};
                                r = emit_begin(s, io);
                                if (r < 0) {
                                        event_clear(&tev);
                                        return r;
                                }
                                r = pipeline_io_emit(io, &tev);
                                if (r < 0)
                                        return r;
                        }
                }
        }
        /* a DDL is its own transaction: its GTID event says standalone, no XID follows */
        if (s->in_txn && s->standalone)
                return end_txn(s, h, io, err);
        return 0;
}

/* ---- SourceOps ---- */

static Source *source_free(Source *s) {
        if (!s)
                return NULL;
        mysql_source_schema_cache_clear(s);
        values_free(s->decoded, s->ndecoded);
        free(s->filters);
        free(s->converging);
        mysql_source_names_free(&s->copy_new, &s->ncopy_new);
        mysql_source_names_free(&s->copy_gone, &s->ncopy_gone);
        if (s->copy)
                mysql_close(s->copy);
        if (s->rpl)
                mariadb_rpl_close(s->rpl);
        if (s->repl)
                mysql_close(s->repl);
        if (s->sql)
                mysql_close(s->sql);
        free(s);
        return NULL;
}

static int source_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        Source *s = calloc(1, sizeof(*s));
        int r;
        if (!s)
                return cdc_oom(err);
        s->conn = conn;
        s->pipe = pipe;
        snprintf(s->ctx, sizeof(s->ctx), "[pipeline=%s source=%s]", pipe && pipe->name ? pipe->name : "-",
                 conn->name ? conn->name : "-");
        r = mysql_conn_open(conn, NULL, &s->sql, err);
        if (r < 0)
                goto out;
        r = mysql_source_preflight(s->sql, conn, s->ctx, err);
        if (r < 0)
                goto out;
        s->mariadb = strstr(mysql_get_server_info(s->sql), "MariaDB") != NULL;
        *ret = s;
        s = NULL;
out:
        source_free(s);
        return r;
}

static int source_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        Source *s = NULL;
        int r = source_open(conn, pipe, &s, err);
        if (r < 0)
                return r;
        r = mysql_source_shape_check(s->sql, pipe, err);
        source_free(s);
        return r < 0 ? r : 0;
}

static int source_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        uint64_t off = 0;
        MARIADB_RPL_EVENT *ev = NULL;
        int r;

        r = mysql_source_choose_start(s, start, io, &off, err);
        if (r < 0)
                return r == -ECANCELED ? 0 : r;
        if (start && !start->snapshot && start->have_position && start->registry) {
                r = mysql_source_resume(s, start, io, err);
                if (r < 0)
                        return r == -ECANCELED ? 0 : r;
        }
        if (start && !start->snapshot && start->have_position) {
                r = mysql_source_follow_tables(s, start, err);
                if (r < 0)
                        return r;
        }
        r = mysql_source_file_seq(s->file, &s->file_seq);
        if (r < 0)
                return cdc_error(err, r, false, CDC_ERR_SOURCE, "%s binlog file name '%s' has no number", s->ctx,
                                 s->file);

        r = mysql_conn_open(s->conn, NULL, &s->repl, err);
        if (r < 0)
                return r;
        /* Checksums: ask for them as the server writes them (the FDE then says which); the
         * heartbeat lets an idle stream come back to look at pipeline_io_stopping(). */
        r = mysql_conn_query(s->repl, "SET @master_binlog_checksum = @@global.binlog_checksum", NULL, 0, NULL, NULL,
                             err);
        if (r >= 0)
                r = mysql_conn_query(s->repl, "SET @master_heartbeat_period = " HEARTBEAT_NS, NULL, 0, NULL, NULL, err);
        if (r >= 0)
                r = mysql_conn_query(s->repl, "SET @mariadb_slave_capability = 4", NULL, 0, NULL, NULL, err);
        if (r >= 0 && s->by_gtid) {
                /* MariaDB GTID: with @slave_connect_state set, the dump starts after that state and
                 * ignores the (empty) file name; strict mode makes a state the server's binlog does
                 * not hold an error instead of a silent start elsewhere. */
                const char *params[1] = {s->connect_state};
                r = mysql_conn_query(s->repl, "SET @slave_connect_state = ?", params, 1, NULL, NULL, err);
                if (r >= 0)
                        r = mysql_conn_query(s->repl, "SET @slave_gtid_strict_mode = 1", NULL, 0, NULL, NULL, err);
        }
        if (r < 0)
                return r;
        VarRow v = {0};
        r = mysql_conn_query(s->repl, "SELECT @@global.binlog_checksum", NULL, 0, mysql_source_var_row, &v, err);
        if (r < 0)
                return r;
        s->checksum = strcasecmp(v.vals[0], "NONE") != 0;

        s->rpl = mariadb_rpl_init(s->repl);
        if (!s->rpl)
                return cdc_oom(err);
        unsigned int sid = s->conn->server_id;
        if (s->by_gtid)
                mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FILENAME, "", (size_t)0);
        else
                mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FILENAME, s->file, strlen(s->file));
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_START, (unsigned long)off);
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_SERVER_ID, sid);
        mariadb_rpl_optionsv(s->rpl, MARIADB_RPL_FLAGS, (unsigned int)MARIADB_RPL_BINLOG_SEND_ANNOTATE_ROWS);
        if (mariadb_rpl_open(s->rpl))
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION,
                                 "%s cannot start the binlog dump at %s:%" PRIu64 ": %s", s->ctx, s->file, off,
                                 mysql_error(s->repl));
        pipeline_io_streaming(io, false);

        while (!pipeline_io_stopping(io)) {
                ev = mariadb_rpl_fetch(s->rpl, ev);
                if (!ev) {
                        unsigned int e = mysql_errno(s->repl);
                        r = cdc_error(err, -EIO, e == 0 || mysql_conn_lost(e) || e == CR_BINLOG_ERROR,
                                      CDC_ERR_CONNECTION, "%s binlog stream at %s ended: %s (error %u)", s->ctx,
                                      s->file, e ? mysql_error(s->repl) : "connection closed", e);
                        if (e == 1236 && s->by_gtid)
                                r = cdc_error(
                                        err, -EIO, false, CDC_ERR_SOURCE,
                                        "%s the server cannot stream from GTID state %s: %s: its binlog does not "
                                        "hold the transactions after that state (purged, reset, or not the server "
                                        "the checkpoint came from); if they are lost, delete the pipeline's "
                                        "checkpoint in the sink (pipeline '%s' in cdcsync.checkpoints) and "
                                        "restart with snapshot = replace (merge for a bidirectional pair); after a "
                                        "failover, let this server "
                                        "catch up with them first",
                                        s->ctx, s->connect_state[0] ? s->connect_state : "(empty)",
                                        mysql_error(s->repl), s->pipe && s->pipe->name ? s->pipe->name : "-");
                        if (e == 1236) /* ER_MASTER_FATAL_ERROR_READING_BINLOG: purged, bad position */
                                err->retriable = false;
                        goto out;
                }
                /* raw_data: the network packet, the OK byte first, then the event */
                if (!ev->raw_data || ev->raw_data_size < BINLOG_HEADER_LEN)
                        continue;
                const uint8_t *raw = ev->raw_data;
                size_t rlen = ev->raw_data_size;
                if (rlen > ev->event_length && ev->event_length >= BINLOG_HEADER_LEN) {
                        raw += rlen - ev->event_length;
                        rlen = ev->event_length;
                }
                if (raw[4] == BINLOG_FORMAT_DESCRIPTION) {
                        bool cs;
                        if (binlog_read_fde_checksum(raw, rlen, &cs) == 0)
                                s->checksum = cs;
                }
                BinlogHeader h;
                r = binlog_read_header(raw, rlen, s->checksum && raw[4] != BINLOG_FORMAT_DESCRIPTION, &h);
                if (r < 0) {
                        r = cdc_error(err, r, false, CDC_ERR_DATA, "%s malformed event in %s", s->ctx, s->file);
                        goto out;
                }
                r = 0;
                /* A pending copy goes before the first transaction after its position (or once an
                 * idle stream's heartbeat shows the position reached). */
                if (s->copy_pending && !s->in_txn &&
                    ((h.type == BINLOG_GTID && h.next_pos >= h.event_len &&
                      position_cmp(pos_at(s, h.next_pos - h.event_len), s->copy_pos) >= 0) ||
                     (h.type == BINLOG_HEARTBEAT && position_cmp(pos_at(s, h.next_pos), s->copy_pos) >= 0))) {
                        r = mysql_source_emit_copy(s, io, err);
                        if (r < 0)
                                goto out;
                }
                switch (h.type) {
                case BINLOG_ROTATE: {
                        uint64_t rpos;
                        const char *name;
                        size_t n;
                        if (binlog_read_rotate(&h, &rpos, &name, &n) < 0 || n >= sizeof(s->file)) {
                                r = cdc_error(err, -EBADMSG, false, CDC_ERR_DATA, "%s malformed ROTATE event in %s",
                                              s->ctx, s->file);
                                goto out;
                        }
                        memcpy(s->file, name, n);
                        s->file[n] = '\0';
                        mysql_source_set_base(s, s->file);
                        if (mysql_source_file_seq(s->file, &s->file_seq) < 0) {
                                r = cdc_error(err, -EPROTO, false, CDC_ERR_SOURCE,
                                              "%s binlog file name '%s' has no number", s->ctx, s->file);
                                goto out;
                        }
                        break;
                }
                case BINLOG_GTID:
                        s->cur = (MysqlGtid){.domain = ev->event.gtid.domain_id,
                                             .server_id = h.server_id,
                                             .seq = ev->event.gtid.sequence_nr};
                        s->have_cur = true;
                        start_txn(s, &h, ev->event.gtid.sequence_nr, (ev->event.gtid.flags & FL_STANDALONE) != 0);
                        break;
                case BINLOG_QUERY:
                case BINLOG_QUERY_COMPRESSED: r = on_query(s, &h, io, err); break;
                case BINLOG_XID:
                        if (s->in_txn)
                                r = end_txn(s, &h, io, err);
                        break;
                case BINLOG_TABLE_MAP: r = mysql_source_on_table_map(s, &h, err); break;
                case BINLOG_WRITE_ROWS_V1:
                case BINLOG_UPDATE_ROWS_V1:
                case BINLOG_DELETE_ROWS_V1:
                case BINLOG_WRITE_ROWS:
                case BINLOG_UPDATE_ROWS:
                case BINLOG_DELETE_ROWS:
                case BINLOG_WRITE_ROWS_COMPRESSED_V1:
                case BINLOG_UPDATE_ROWS_COMPRESSED_V1:
                case BINLOG_DELETE_ROWS_COMPRESSED_V1:
                case BINLOG_WRITE_ROWS_COMPRESSED:
                case BINLOG_UPDATE_ROWS_COMPRESSED:
                case BINLOG_DELETE_ROWS_COMPRESSED: r = on_rows(s, &h, io, err); break;
                case BINLOG_HEARTBEAT: {
                        Position end = pos_at(s, h.next_pos);
                        pipeline_io_report_source_end(io, end, (int64_t)h.timestamp * 1000000);
                        if (!s->in_txn) {
                                Event kev = {.kind = EVENT_KEEPALIVE, .ckpt.pos = end};
                                mysql_source_checkpoint_text(s, end, kev.ckpt.text, sizeof(kev.ckpt.text));
                                r = pipeline_io_emit(io, &kev);
                        }
                        break;
                }
                default: break;
                }
                if (r == -ECANCELED) {
                        r = 0;
                        goto out;
                }
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        if (ev)
                mariadb_free_rpl_event(ev);
        return r;
}

/* The binlog is read for the tables `tables` lists. */
static int source_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        return conf_pipeline_tables_copy(s->pipe, ret, ret_n) < 0 ? cdc_oom(err) : 0;
}

/* ---- probe: where the binlog ends now (connector.h) ---- */

struct SourceProbe {
        const ConnectorConf *conn;
        MYSQL *m; /* read and write timeouts of timeout_s (mysql_conn.c) */
};

static SourceProbe *probe_free(SourceProbe *pr) {
        if (!pr)
                return NULL;
        if (pr->m)
                mysql_close(pr->m);
        free(pr);
        return NULL;
}

static int probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        (void)pipe;
        SourceProbe *pr = calloc(1, sizeof(*pr));
        if (!pr)
                return cdc_oom(err);
        pr->conn = conn;
        int r = mysql_conn_open(conn, NULL, &pr->m, err);
        if (r < 0) {
                probe_free(pr);
                return r;
        }
        *ret = pr;
        return 0;
}

/* Bytes of the binlogs from `from` (a position in an older file) to the end of the file of `to`'s
 * sequence number, by the sizes SHOW BINARY LOGS lists. */
typedef struct {
        Position from, to;
        uint64_t bytes;
} SpanRow;

static int span_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        SpanRow *sp = ud;
        uint64_t seq, size;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1] || mysql_source_file_seq(cells[0], &seq) < 0 ||
            mysql_source_parse_u64(cells[1], strlen(cells[1]), &size) < 0)
                return 0;
        if (seq < sp->from.hi || seq >= sp->to.hi)
                return 0;
        sp->bytes += seq == sp->from.hi ? (size > sp->from.lo ? size - sp->from.lo : 0) : size;
        return 0;
}

static int probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        VarRow v = {0};
        Position end;
        int r = mysql_conn_query(pr->m, "SHOW MASTER STATUS", NULL, 0, mysql_source_var_row, &v, err);
        if (r < 0)
                return r;
        if (v.n < 2 || mysql_source_file_seq(v.vals[0], &end.hi) < 0 ||
            mysql_source_parse_u64(v.vals[1], strlen(v.vals[1]), &end.lo) < 0)
                return cdc_error(err, -EPROTO, true, CDC_ERR_CONNECTION,
                                 "mysql connector '%s': SHOW MASTER STATUS answered nothing", pr->conn->name);
        *ret_end = end;
        /* In another file (a rotation, a server restart) positions cannot be subtracted. */
        if (!position_is_zero(applied) && applied.hi < end.hi) {
                SpanRow sp = {.from = applied, .to = end};
                if (mysql_conn_query(pr->m, "SHOW BINARY LOGS", NULL, 0, span_row, &sp, err) >= 0)
                        *ret_bytes = sp.bytes + end.lo;
        }
        return 0;
}

/* Binlog bytes from a position to the server's end: the rest of its file and every later file,
 * by the sizes SHOW BINARY LOGS lists (the last file's size is the server's current position). */
typedef struct {
        Position from;
        uint64_t bytes;
} RetainedRow;

static int retained_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        RetainedRow *rr = ud;
        uint64_t seq, size;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1] || mysql_source_file_seq(cells[0], &seq) < 0 ||
            mysql_source_parse_u64(cells[1], strlen(cells[1]), &size) < 0 || seq < rr->from.hi)
                return 0;
        rr->bytes += seq == rr->from.hi ? (size > rr->from.lo ? size - rr->from.lo : 0) : size;
        return 0;
}

/* MariaDB keeps no slot for a binlog client: what it keeps for the pipeline is the binlog from
 * where the pipeline resumes (its durable position) to the end, as long as expire_logs_days lets
 * it; "active" is a binlog dump of the connector's user being connected (pipelines that read one
 * server as one user share that answer). */
static int probe_health(SourceProbe *pr, Position durable, SourceHealth *ret, CdcError *err) {
        SourceHealth h = {.retained_bytes = -1, .slot_active = -1};
        if (!position_is_zero(durable)) {
                RetainedRow rr = {.from = durable};
                int r = mysql_conn_query(pr->m, "SHOW BINARY LOGS", NULL, 0, retained_row, &rr, err);
                if (r < 0)
                        return r;
                h.retained_bytes = rr.bytes > INT64_MAX ? INT64_MAX : (int64_t)rr.bytes;
        }
        /* The probe logs in as the connector's user, as the binlog dump does. */
        VarRow v = {0};
        int r = mysql_conn_query(pr->m,
                                 "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                 "WHERE COMMAND LIKE 'Binlog Dump%' AND USER = SUBSTRING_INDEX(USER(), '@', 1)",
                                 NULL, 0, mysql_source_var_row, &v, err);
        if (r < 0)
                return r;
        h.slot_active = v.n >= 1 && strcmp(v.vals[0], "0") != 0;
        *ret = h;
        return 0;
}

const SourceOps mysql_source_ops = {
        .type = "mysql",
        .open = source_open,
        .run = source_run,
        .format_position = mysql_source_format_position,
        .parse_position = mysql_source_parse_position,
        .check = source_check,
        .free = source_free,
        .streamed_tables = source_streamed_tables,
        .locate = mysql_conn_locate,
        .list_tables = mysql_conn_list_tables,
        .probe_open = probe_open,
        .probe = probe,
        .probe_free = probe_free,
        .probe_health = probe_health,
};
