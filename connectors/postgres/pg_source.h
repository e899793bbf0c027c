/* The PostgreSQL source (logical replication with pgoutput). */
#pragma once

#include "cdcsync/connector.h"

extern const SourceOps pg_source_ops;
