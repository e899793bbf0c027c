/* PostgreSQL built-in type OIDs: their portable class, name and array/element relation. */
#pragma once

#include <stdint.h>

#include "cdcsync/change.h"

/* Class of a type: the built-ins listed in pgtypes.c, TYPE_ARRAY for their array types, and
 * TYPE_OTHER for everything else (enums, domains, user types: their text form still round-trips
 * PostgreSQL to PostgreSQL). */
TypeClass pgtypes_class(uint32_t oid);
/* Catalogue name of a built-in type ("int4", "_int4" for its array), or NULL when not built in. */
const char *pgtypes_name(uint32_t oid);
/* Element type of a built-in array type (23 for 1007), or 0 when oid is not one. */
uint32_t pgtypes_elem(uint32_t oid);
