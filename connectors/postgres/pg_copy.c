/* The PostgreSQL source's part of the chunked, parallel copy (chunk_copy.h): tables cut into
 * block ranges (pg_chunks.h), a chunk read with COPY ... TO STDOUT on a reader connection of the
 * copy's snapshot. Running the readers, the transactions and the records are chunk_copy's. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/chunk_copy.h"
#include "postgres/pg_chunks.h"
#include "postgres/pg_source_int.h"

struct PgCopy {
        Source *s;
        ChunkCopy *cc;
        bool tid_scan; /* the server reads ctid ranges as TID range scans (PostgreSQL >= 14) */
        uint64_t chunk_rows;
        bool keep_text; /* rows carry their COPY text (Change.copy_text): the sink is PostgreSQL */
};

/* A table as its chunks are read. */
typedef struct {
        Table *t;              /* one reference */
        char *select;          /* owned: "SELECT cols FROM ONLY schema.table" */
        uint32_t change_flags; /* of its rows: CHANGE_IDEMPOTENT or 0 */
} PgCopyTab;

static void tab_free(void *tab) {
        PgCopyTab *pt = tab;
        table_unref(pt->t);
        free(pt->select);
        free(pt);
}

static int chunk_key(const void *tab, const char *key, ChunkRange r, char *buf, size_t len) {
        (void)tab;
        return copies_chunk_key(key, r.lo, r.hi, buf, len);
}

static int reader_error(Source *s, PGconn *conn, const PgCopyTab *pt, PGresult *res, CdcError *err) {
        char buf[512];
        bool lost = PQstatus(conn) != CONNECTION_OK;
        cdc_error(err, -EIO, lost, lost ? CDC_ERR_CONNECTION : CDC_ERR_SOURCE, "connector %s: snapshot of %s.%s: %s",
                  s->conn->name, pt->t->schema, pt->t->name, pg_source_errtext(s, conn, res, buf, sizeof(buf)));
        PQclear(res);
        return err->code;
}

/* One row of COPY text (line[len] writable) as an insert (*ret owned by the caller). line is
 * split in place, unless scratch is given: then a copy of it in *scratch (grown as needed) is,
 * and line stays as it is. */
static int copy_row(const PgCopyTab *pt, char *line, size_t len, char **scratch, size_t *scap, Change *ret,
                    CdcError *err) {
        const Table *t = pt->t;
        int n = t->ncols > 0 ? t->ncols : 1;
        char *fields[n];
        size_t lens[n];
        if (scratch) {
                if (*scap < len + 1) {
                        char *b = realloc(*scratch, len + 1);
                        if (!b)
                                return cdc_oom(err);
                        *scratch = b;
                        *scap = len + 1;
                }
                memcpy(*scratch, line, len);
                line = *scratch;
        }
        if (pg_chunks_copy_fields(line, len, t->ncols, fields, lens) < 0)
                return cdc_error(err, -EBADMSG, false, CDC_ERR_SOURCE,
                                 "snapshot of %s.%s: a row of COPY did not split into its %d columns", t->schema,
                                 t->name, t->ncols);
        Change c = {.op = CHANGE_INSERT, .flags = pt->change_flags};
        c.after = values_pack(t->ncols, (const char *const *)fields, lens);
        if (!c.after)
                return cdc_oom(err);
        c.table = table_ref(pt->t);
        *ret = c;
        return 0;
}

/* Reads chunk r of a table with COPY on a reader's connection, its rows to chunk_copy_row(). */
static int read_chunk(void *ud, void *reader, void *tab, ChunkRange r, ChunkCopyReader *rd, CdcError *err) {
        PgCopy *cp = ud;
        PGconn *conn = reader;
        const PgCopyTab *pt = tab;
        char *sql = NULL;
        int rc;
        /* block numbers are ours (numbers, not text from anywhere): no parameter needed */
        if (r.lo == 0 && r.hi == UINT64_MAX)
                rc = asprintf(&sql, "COPY (%s) TO STDOUT", pt->select);
        else if (r.hi == UINT64_MAX)
                rc = asprintf(&sql, "COPY (%s WHERE ctid >= '(%" PRIu64 ",0)'::tid) TO STDOUT", pt->select, r.lo);
        else
                rc = asprintf(&sql,
                              "COPY (%s WHERE ctid >= '(%" PRIu64 ",0)'::tid AND ctid < '(%" PRIu64
                              ",0)'::tid) TO STDOUT",
                              pt->select, r.lo, r.hi);
        if (rc < 0)
                return cdc_oom(err);
        PGresult *res = PQexec(conn, sql);
        free(sql);
        if (PQresultStatus(res) != PGRES_COPY_OUT)
                return reader_error(cp->s, conn, pt, res, err);
        PQclear(res);
        size_t per_row = sizeof(Change) + sizeof(Value) * (size_t)pt->t->ncols;
        char *scratch = NULL;
        size_t scap = 0;
        for (;;) {
                char *line = NULL;
                int n = PQgetCopyData(conn, &line, 0);
                if (n < 0)
                        break;
                if (n > 0 && line[n - 1] == '\n')
                        n--;
                Change c;
                rc = copy_row(pt, line, (size_t)n, cp->keep_text ? &scratch : NULL, &scap, &c, err);
                if (rc == 0 && cp->keep_text) {
                        c.copy_text = line; /* freed by change_clear */
                        c.copy_len = (size_t)n;
                        line = NULL;
                }
                PQfreemem(line);
                if (rc == 0)
                        rc = chunk_copy_row(rd, &c, per_row + (cp->keep_text ? 2 : 1) * (size_t)n, err);
                if (rc < 0) {
                        free(scratch);
                        return rc;
                }
        }
        free(scratch);
        res = PQgetResult(conn);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return reader_error(cp->s, conn, pt, res, err);
        PQclear(res);
        while ((res = PQgetResult(conn)))
                PQclear(res);
        return 0;
}

static const ChunkCopyOps pg_copy_ops = {
        .read_chunk = read_chunk,
        .chunk_key = chunk_key,
        .format_position = pg_source_format_position,
        .table_free = tab_free,
};

int pg_copy_new(Source *s, Position pos, bool chunked, PgCopy **ret, CdcError *err) {
        PgCopy *cp = calloc(1, sizeof(*cp));
        if (!cp)
                return cdc_oom(err);
        cp->s = s;
        cp->tid_scan = PQserverVersion(s->sql) >= 140000;
        cp->keep_text = s->pipe->sink && s->pipe->sink->type && strcmp(s->pipe->sink->type, "postgres") == 0;
        cp->chunk_rows = s->pipe->snapshot_chunk_rows > 0 ? (uint64_t)s->pipe->snapshot_chunk_rows : 100000;
        ChunkCopyOptions o = {.ops = &pg_copy_ops,
                              .ud = cp,
                              .io = s->io,
                              .ctx = s->ctx,
                              .pipeline = s->pipe->name,
                              .pos = pos,
                              .chunked = chunked};
        int r = chunk_copy_new(&o, &cp->cc, err);
        if (r < 0) {
                free(cp);
                return r;
        }
        *ret = cp;
        return 0;
}

PgCopy *pg_copy_free(PgCopy *cp) {
        if (!cp)
                return NULL;
        chunk_copy_free(cp->cc);
        free(cp);
        return NULL;
}

/* "SELECT cols FROM [ONLY] schema.table", the names quoted, or NULL (out of memory). */
static char *select_sql(Source *s, const Table *t, const PgRelSize *z) {
        char *cols = NULL, *sql = NULL;
        size_t clen = 0;
        FILE *f = open_memstream(&cols, &clen);
        for (int i = 0; f && i < t->ncols; i++) {
                char *q = PQescapeIdentifier(s->sql, t->cols[i].name, strlen(t->cols[i].name));
                fprintf(f, "%s%s", i ? ", " : "", q ? q : "\"\"");
                PQfreemem(q);
        }
        if (f)
                fclose(f);
        char *qs = PQescapeIdentifier(s->sql, t->schema, strlen(t->schema));
        char *qn = PQescapeIdentifier(s->sql, t->name, strlen(t->name));
        if (!cols || !qs || !qn || asprintf(&sql, "SELECT %s FROM %s%s.%s", cols, pg_partitions_only(z), qs, qn) < 0)
                sql = NULL;
        free(cols);
        PQfreemem(qs);
        PQfreemem(qn);
        return sql;
}

int pg_copy_add_table(PgCopy *cp, Table *t, uint32_t change_flags, bool truncate, uint32_t truncate_flags,
                      const PgBlockRange *done, int ndone, uint64_t done_rows, CopyState final_state,
                      Position final_pos, CdcError *err) {
        /* A partitioned table has no heap: its chunks are block ranges read from every leaf at
         * once (a TID range scan per leaf), sized by the largest leaf, its rows named as the
         * root's (publish_via_partition_root streams them so too). */
        PgRelSize z;
        int r = pg_partitions_describe(cp->s, t->rel_id, &z, err);
        if (r < 0)
                return r;
        PgCopyTab *pt = calloc(1, sizeof(*pt));
        if (!pt)
                return cdc_oom(err);
        pt->t = table_ref(t);
        pt->change_flags = change_flags;
        pt->select = select_sql(cp->s, t, &z);
        PgBlockRange *plan = NULL;
        int nplan = 0;
        /* Before PostgreSQL 14 a ctid range is read by a whole scan: one chunk per table. */
        uint64_t per =
                cp->tid_scan ? pg_chunks_blocks_per_chunk(z.blocks, z.reltuples, cp->chunk_rows) : UINT64_MAX / 4;
        if (!pt->select || pg_chunks_plan(cp->tid_scan ? z.blocks : 0, per, done, ndone, &plan, &nplan) < 0) {
                tab_free(pt);
                return cdc_oom(err);
        }
        char key[COPIES_NAME_MAX], note[64];
        snprintf(key, sizeof(key), "%s.%s", t->schema, t->name);
        /* the table's storage now: a resume finds out whether a rewrite moved its rows */
        snprintf(note, sizeof(note), "filenode=%s", z.storage);
        ChunkCopyTable tab = {.key = key,
                              .t = t,
                              .truncate = truncate,
                              .truncate_flags = truncate_flags,
                              .copying_note = note,
                              .final_state = final_state,
                              .final_pos = final_pos,
                              .rows_est = z.reltuples > 0 ? (uint64_t)z.reltuples : 0,
                              .ud = pt};
        r = chunk_copy_add_table(cp->cc, &tab, done, ndone, done_rows, plan, nplan, err);
        free(plan);
        return r;
}

int pg_copy_forget_chunk(PgCopy *cp, PgBlockRange r, CdcError *err) {
        return chunk_copy_forget_chunk(cp->cc, r, err);
}

int pg_copy_run(PgCopy *cp, PGconn **readers, int nreaders, CdcError *err) {
        void **conns = calloc((size_t)(nreaders > 0 ? nreaders : 1), sizeof(*conns));
        if (!conns)
                return cdc_oom(err);
        for (int i = 0; i < nreaders; i++)
                conns[i] = readers[i];
        int r = chunk_copy_run(cp->cc, conns, nreaders, err);
        free(conns);
        return r;
}
