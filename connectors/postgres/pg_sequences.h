/* PostgreSQL → PostgreSQL sequence values (sync_sequences = yes, `cdcsync sync-sequences`). */
#pragma once

#include "cdcsync/connector.h"

/* ConnectorType.sync_sequences of the postgres type. */
int pg_sequences_sync(const PipelineConf *pipe, SeqNoteFn note, void *userdata, CdcError *err);
