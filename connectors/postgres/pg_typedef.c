/* SQL texts that describe user-defined types as statements creating them (see pg_typedef.h). */
#include "postgres/pg_typedef.h"

/* One row per pg_type t (the caller adds WHERE on t): its kind, extension, name and DDL. Names
 * printed here are schema-qualified; those printed by format_type, pg_get_expr and regproc are
 * when search_path is pg_catalog (pg_catalog's stay bare), so both servers print the same text. */
#define TYPE_ROWS                                                                                                      \
        "SELECT t.oid AS typ, t.typtype, t.typelem, t.typlen, ns.nspname, x.ext, q.name, CASE "                        \
        "WHEN x.ext IS NOT NULL THEN NULL "                                                                            \
        "WHEN t.typtype = 'e' THEN 'CREATE TYPE ' || q.name || ' AS ENUM (' || coalesce((SELECT "                      \
        "  pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) "               \
        "  FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '') || ')' "                                          \
        "WHEN t.typtype = 'd' THEN 'CREATE DOMAIN ' || q.name || ' AS ' "                                              \
        "  || pg_catalog.format_type(t.typbasetype, t.typtypmod) "                                                     \
        "  || coalesce(' COLLATE ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "                           \
        "    pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn "     \
        "    ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation AND t.typcollation <> "                        \
        "    (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)), '') "                     \
        "  || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(t.typdefaultbin, 0), '') "                                \
        "  || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END "                                                    \
        "  || coalesce((SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' "      \
        "    || pg_catalog.pg_get_constraintdef(c.oid), '' ORDER BY c.conname) FROM pg_catalog.pg_constraint c "       \
        "    WHERE c.contypid = t.oid AND c.contype = 'c' AND c.convalidated), '') "                                   \
        "WHEN t.typtype = 'c' AND rel.relkind = 'c' THEN 'CREATE TYPE ' || q.name || ' AS (' || coalesce((SELECT "     \
        "  pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' "                                            \
        "    || pg_catalog.format_type(a.atttypid, a.atttypmod) "                                                      \
        "    || coalesce(' COLLATE ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "                         \
        "      pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn "   \
        "      ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation AND a.attcollation <> "                      \
        "      (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = a.atttypid)), ''), ', ' "                \
        "    ORDER BY a.attnum) "                                                                                      \
        "  FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), "    \
        "'') "                                                                                                         \
        "  || ')' "                                                                                                    \
        "WHEN t.typtype = 'r' AND r.rngcanonical = 0 THEN 'CREATE TYPE ' || q.name || ' AS RANGE (SUBTYPE = ' "        \
        "  || pg_catalog.format_type(r.rngsubtype, NULL) "                                                             \
        "  || ', SUBTYPE_OPCLASS = ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "                         \
        "    pg_catalog.quote_ident(oc.opcname) FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_namespace cn "        \
        "    ON cn.oid = oc.opcnamespace WHERE oc.oid = r.rngsubopc) "                                                 \
        "  || coalesce(', COLLATION = ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "                      \
        "    pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn "     \
        "    ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation), '') "                                        \
        "  || CASE WHEN r.rngsubdiff <> 0 "                                                                            \
        "    THEN ', SUBTYPE_DIFF = ' || r.rngsubdiff::pg_catalog.regproc::pg_catalog.text ELSE '' END "               \
        "  || ', MULTIRANGE_TYPE_NAME = ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "                    \
        "    pg_catalog.quote_ident(m.typname) FROM pg_catalog.pg_type m JOIN pg_catalog.pg_namespace cn "             \
        "    ON cn.oid = m.typnamespace WHERE m.oid = r.rngmultitypid) || ')' "                                        \
        "END AS ddl "                                                                                                  \
        "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace "                        \
        "CROSS JOIN LATERAL (SELECT pg_catalog.quote_ident(ns.nspname) || '.' || pg_catalog.quote_ident(t.typname)) "  \
        "  q(name) "                                                                                                   \
        "LEFT JOIN pg_catalog.pg_class rel ON rel.oid = t.typrelid "                                                   \
        "LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid "                                                       \
        "LEFT JOIN LATERAL (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e "              \
        "  ON e.oid = d.refobjid WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid "     \
        "  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e' LIMIT 1) x(ext) "     \
        "  ON true "

/* Why a row of TYPE_ROWS (as s) has no DDL, and what to do. */
#define WHY                                                                                                            \
        "CASE WHEN s.ddl IS NOT NULL THEN NULL "                                                                       \
        "WHEN s.ext IS NOT NULL THEN 'it belongs to extension ' || pg_catalog.quote_ident(s.ext) "                     \
        "  || ': run CREATE EXTENSION ' || pg_catalog.quote_ident(s.ext) || ' in the sink database' "                  \
        "WHEN s.typtype = 'c' THEN 'it is the row type of table ' || s.name "                                          \
        "  || ': create that table in the sink database first' "                                                       \
        "WHEN s.typtype = 'r' THEN 'it is a range type with a canonical function: create it in the sink database "     \
        "  by hand' "                                                                                                  \
        "ELSE 'it is a base type made of C functions: create it in the sink database by hand' END"

const char pg_typedef_ddl_sql[] = "SELECT s.ddl, " WHY " FROM (" TYPE_ROWS "WHERE t.oid = pg_catalog.to_regtype($1)) s";

/* The types reached from the columns, with the longest path to each: a type comes after every
 * type it uses, because each of those is reached by a longer path than the type itself. */
const char pg_typedef_needed_sql[] =
        "WITH RECURSIVE need(typ, depth, attnum) AS ("
        "  SELECT a.atttypid, 0, a.attnum FROM pg_catalog.pg_attribute a "
        "  WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "UNION ALL "
        "  SELECT d.typ, n.depth + 1, n.attnum FROM need n JOIN pg_catalog.pg_type t ON t.oid = n.typ "
        "  CROSS JOIN LATERAL ("
        "    SELECT t.typelem WHERE t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1 "
        "    UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd' "
        "    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c "
        "      ON c.oid = a.attrelid WHERE t.typtype = 'c' AND c.oid = t.typrelid AND c.relkind = 'c' "
        "      AND a.attnum > 0 AND NOT a.attisdropped "
        "    UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid "
        "    UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid) d(typ) "
        "  WHERE n.depth < 64), "
        "n AS (SELECT typ, max(depth) AS depth, min(attnum) AS attnum FROM need GROUP BY typ) "
        "SELECT s.nspname, s.name, (SELECT a.attname FROM pg_catalog.pg_attribute a "
        "  WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum = n.attnum), s.ddl, " WHY " "
        "FROM n CROSS JOIN LATERAL (" TYPE_ROWS "WHERE t.oid = n.typ) s "
        "WHERE s.nspname NOT IN ('pg_catalog', 'information_schema') AND s.typtype <> 'm' "
        "AND NOT (s.typtype = 'b' AND s.typelem <> 0 AND s.typlen = -1) "
        "ORDER BY n.depth DESC, n.typ";
