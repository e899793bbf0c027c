/* The user-defined types a PostgreSQL table's columns need, as statements that create them,
 * read from a server's catalogue (pure SQL texts; the source and the sink run the same ones). */
#pragma once

/* Both queries need search_path = pg_catalog (or '') in the session, so that every name they
 * print outside pg_catalog is schema-qualified (the source's sessions run so; the sink sets it
 * locally).
 *
 * The DDL of each type: CREATE TYPE ... AS ENUM / AS (composite) / AS RANGE, CREATE DOMAIN (with
 * base type, collation, default, NOT NULL and validated CHECK constraints). NULL, with a reason
 * and what to do, for a type that cannot be made so: one of an extension, a base type made of C
 * functions, a range with a canonical function, a table's row type.
 *
 * pg_typedef_needed_sql: $1 = a relation's oid. One row per user-defined type its columns need,
 * directly or through domains, composites, ranges, multiranges and arrays (implicit array and
 * multirange types are left out: they come with their type), each after the types it uses:
 * schema, qualified name, the first column that needs it, ddl, why. */
extern const char pg_typedef_needed_sql[];

/* $1 = a qualified type name. No row when the type does not exist; else one row: ddl, why. */
extern const char pg_typedef_ddl_sql[];
