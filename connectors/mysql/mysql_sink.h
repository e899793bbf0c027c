/* The MySQL/MariaDB sink: applies batches of whole source transactions in one InnoDB
 * transaction, with the pipeline's checkpoint in `cdcsync`.`checkpoints`. */
#pragma once

#include "cdcsync/connector.h"

extern const SinkOps mysql_sink_ops;

/* The mark on writer's writes as the binlog tells them (TxnInfo.origin): its sink connector's
 * server_id, which the sink's session writes under (see mysql_sink.c). */
int mysql_sink_write_mark(const PipelineConf *writer, char *buf, size_t len);

/* Converts a value of class cls from its portable text form to what MySQL accepts for it:
 * booleans 't'/'f' → "1"/"0", bytea "\x.." → raw bytes, timestamptz with an offset → UTC
 * "YYYY-MM-DD HH:MM:SS[.ffffff]". *ret is malloc'ed (NUL-terminated, *ret_len bytes). Returns 0,
 * -ERANGE / -EINVAL for a value MySQL cannot hold (NaN, Infinity, numeric beyond DECIMAL(65,30),
 * a timestamp outside 1000..9999), -ENOMEM. */
int mysql_sink_convert(TypeClass cls, const char *text, size_t len, char **ret, size_t *ret_len);
