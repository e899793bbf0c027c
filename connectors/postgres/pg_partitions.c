/* The PostgreSQL source's partitioned tables: published through their root
 * (publish_via_partition_root), read by the copies through the root from every leaf partition,
 * and refused in `tables` when a partition's rows would come twice (listed with its root). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_source_int.h"

const char *pg_partitions_publication_with(const Source *s) {
        /* publish_via_partition_root exists since PostgreSQL 13; before, partitions publish as
         * themselves whatever we ask */
        return PQserverVersion(s->sql) >= 130000 ? " WITH (publish_via_partition_root = true)" : "";
}

/* The storage of relation $1 as a text that changes when its rows may have moved: its filenode
 * (a rewrite makes a new one); of a partitioned table, an md5 of its leaves and their filenodes
 * (a leaf rewritten, attached or detached changes it). */
#define STORAGE_SQL                                                                                                    \
        "CASE WHEN c.relkind = 'p' THEN (SELECT md5(coalesce(string_agg(p.relid::oid::text || ':' || "                 \
        "coalesce(pg_relation_filenode(p.relid)::text, ''), ',' ORDER BY p.relid::oid), '')) FROM "                    \
        "pg_partition_tree(c.oid) p WHERE p.isleaf) ELSE coalesce(pg_relation_filenode(c.oid)::text, '') END"

int pg_partitions_describe(Source *s, uint32_t relid, PgRelSize *ret, CdcError *err) {
        char id[16];
        snprintf(id, sizeof(id), "%u", relid);
        const char *params[] = {id};
        /* pg_partition_tree() is PostgreSQL 12's; before it a partitioned table reads as empty */
        const char *sql =
                PQserverVersion(s->sql) >= 120000
                        ? "SELECT c.relkind = 'p', "
                          "CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(max(pg_relation_size(p.relid)), 0) FROM "
                          "pg_partition_tree(c.oid) p WHERE p.isleaf) ELSE pg_relation_size(c.oid) END "
                          "/ current_setting('block_size')::bigint, "
                          "CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(greatest(l.reltuples, 0)), 0) FROM "
                          "pg_partition_tree(c.oid) p JOIN pg_class l ON l.oid = p.relid WHERE p.isleaf) "
                          "ELSE c.reltuples END, " STORAGE_SQL " FROM pg_class c WHERE c.oid = $1::oid"
                        : "SELECT false, pg_relation_size(c.oid) / current_setting('block_size')::bigint, "
                          "c.reltuples, coalesce(pg_relation_filenode(c.oid)::text, '') FROM pg_class c "
                          "WHERE c.oid = $1::oid";
        PGresult *res = pg_source_query(s, s->sql, sql, 1, params, err);
        if (!res)
                return err->code;
        PgRelSize z = {.reltuples = -1};
        if (PQntuples(res) == 1) {
                z.partitioned = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
                z.blocks = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
                z.reltuples = strtod(PQgetvalue(res, 0, 2), NULL);
                snprintf(z.storage, sizeof(z.storage), "%s", PQgetvalue(res, 0, 3));
        }
        PQclear(res);
        *ret = z;
        return 0;
}

const char *pg_partitions_only(const PgRelSize *z) {
        /* ONLY keeps an inheritance parent's children out; a partitioned table has no rows of its
         * own, they are all its leaves' (each read under the root's column names) */
        return z->partitioned ? "" : "ONLY ";
}

/* A text[] literal of the pipeline's tables ("schema.table" each, quoted). */
static char *tables_array(const PipelineConf *pipe) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        fputc('{', f);
        for (int i = 0; i < pipe->ntables; i++) {
                fputs(i ? ",\"" : "\"", f);
                for (const char *c = pipe->tables[i]; *c; c++) {
                        if (*c == '"' || *c == '\\')
                                fputc('\\', f);
                        fputc(*c, f);
                }
                fputc('"', f);
        }
        fputc('}', f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

int pg_partitions_check_tables(Source *s, CdcError *err) {
        if (s->pipe->all_tables || s->pipe->ntables < 2 || PQserverVersion(s->sql) < 120000)
                return 0; /* FOR ALL TABLES publishes each row once, through its topmost root */
        char *arr = tables_array(s->pipe);
        if (!arr)
                return cdc_oom(err);
        const char *params[] = {arr};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT p.name, anc.name FROM (SELECT c.oid, n.nspname || '.' || c.relname AS name FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relispartition) p CROSS JOIN LATERAL "
                "(SELECT n2.nspname || '.' || c2.relname AS name FROM pg_partition_ancestors(p.oid) a JOIN pg_class "
                "c2 ON c2.oid = a.relid JOIN pg_namespace n2 ON n2.oid = c2.relnamespace WHERE a.relid <> p.oid) anc "
                "WHERE p.name = ANY ($1::text[]) AND anc.name = ANY ($1::text[]) ORDER BY 1, 2 LIMIT 1",
                1, params, err);
        free(arr);
        if (!res)
                return err->code;
        int r = 0;
        if (PQntuples(res) == 1)
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                              "pipeline %s: table %s is a partition of %s, which tables lists too: its rows sync "
                              "as %s's (publish_via_partition_root) and would come twice — remove %s from tables in "
                              "[pipeline.%s]",
                              s->pipe->name, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 1),
                              PQgetvalue(res, 0, 0), s->pipe->name);
        PQclear(res);
        return r;
}

void pg_partitions_check_publication(Source *s) {
        if (PQserverVersion(s->sql) < 130000)
                return;
        const char *params[] = {s->publication};
        CdcError err = {0};
        PGresult *res = pg_source_query(
                s, s->sql,
                "SELECT 1 FROM pg_publication p WHERE p.pubname = $1 AND NOT p.pubviaroot AND EXISTS (SELECT 1 FROM "
                "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p' AND NOT "
                "c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND (p.puballtables OR "
                "c.oid IN (SELECT prrelid FROM pg_publication_rel WHERE prpubid = p.oid)))",
                1, params, &err);
        if (!res) {
                log_debug(s->ctx, "cannot read publication \"%s\"'s partition setting: %s", s->publication,
                          err.message);
                return;
        }
        if (PQntuples(res) == 1)
                log_warn(s->ctx,
                         "publication \"%s\" publishes partitioned tables with publish_via_partition_root = false: "
                         "their rows stream under each partition's name, and a copy reads each partition as its "
                         "own table; to sync them as their root (cdcsync's default), give the pipeline a new "
                         "publication (a new pipeline) or ALTER PUBLICATION ... SET (publish_via_partition_root = "
                         "true) before its first start",
                         s->publication);
        PQclear(res);
}
