/* The table of PostgreSQL built-in types cdcsync knows, and lookups into it. */
#include "postgres/pgtypes.h"

#include <stddef.h>

/* oid and array oid as in PostgreSQL's pg_type.dat (checked against a PostgreSQL 15 catalogue). */
typedef struct {
        uint32_t oid;
        uint32_t array_oid;
        const char *name;
        const char *array_name;
        TypeClass cls;
} PgType;

static const PgType pg_types[] = {
        {16, 1000, "bool", "_bool", TYPE_BOOLEAN},
        {17, 1001, "bytea", "_bytea", TYPE_BYTES},
        {18, 1002, "char", "_char", TYPE_TEXT},
        {19, 1003, "name", "_name", TYPE_TEXT},
        {20, 1016, "int8", "_int8", TYPE_INTEGER},
        {21, 1005, "int2", "_int2", TYPE_INTEGER},
        {23, 1007, "int4", "_int4", TYPE_INTEGER},
        {25, 1009, "text", "_text", TYPE_TEXT},
        {26, 1028, "oid", "_oid", TYPE_INTEGER},
        {114, 199, "json", "_json", TYPE_JSON},
        {700, 1021, "float4", "_float4", TYPE_FLOAT},
        {701, 1022, "float8", "_float8", TYPE_FLOAT},
        {1042, 1014, "bpchar", "_bpchar", TYPE_TEXT},
        {1043, 1015, "varchar", "_varchar", TYPE_TEXT},
        {1082, 1182, "date", "_date", TYPE_DATE},
        {1083, 1183, "time", "_time", TYPE_TIME},
        {1114, 1115, "timestamp", "_timestamp", TYPE_TIMESTAMP},
        {1184, 1185, "timestamptz", "_timestamptz", TYPE_TIMESTAMPTZ},
        /* no portable interval type exists; its text form ("1 day 02:00:00") is kept as text */
        {1186, 1187, "interval", "_interval", TYPE_TEXT},
        /* the offset is part of the text form, which other systems keep as a time string */
        {1266, 1270, "timetz", "_timetz", TYPE_TIME},
        {1700, 1231, "numeric", "_numeric", TYPE_NUMERIC},
        {2950, 2951, "uuid", "_uuid", TYPE_UUID},
        {3802, 3807, "jsonb", "_jsonb", TYPE_JSON},
};

#define N_PG_TYPES (sizeof(pg_types) / sizeof(pg_types[0]))

/* 23 entries: a linear scan is cheaper than keeping a sorted copy in step */
static const PgType *find(uint32_t oid, bool *ret_array) {
        for (size_t i = 0; i < N_PG_TYPES; i++) {
                if (pg_types[i].oid == oid) {
                        *ret_array = false;
                        return &pg_types[i];
                }
                if (pg_types[i].array_oid == oid) {
                        *ret_array = true;
                        return &pg_types[i];
                }
        }
        return NULL;
}

TypeClass pgtypes_class(uint32_t oid) {
        bool array = false;
        const PgType *t = find(oid, &array);

        if (!t)
                return TYPE_OTHER;
        return array ? TYPE_ARRAY : t->cls;
}

const char *pgtypes_name(uint32_t oid) {
        bool array = false;
        const PgType *t = find(oid, &array);

        if (!t)
                return NULL;
        return array ? t->array_name : t->name;
}

uint32_t pgtypes_elem(uint32_t oid) {
        bool array = false;
        const PgType *t = find(oid, &array);

        return t && array ? t->oid : 0;
}
