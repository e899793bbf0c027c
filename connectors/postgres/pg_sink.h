/* The PostgreSQL sink: applies batches of whole source transactions through libpq. */
#pragma once

#include "cdcsync/connector.h"

/* DESIGN: one Sink is one libpq connection, used only by its pipeline's sink thread.
 * - open(): connects, creates schema cdcsync and table cdcsync.checkpoints when absent, and marks
 *   the session with the replication origin "cdcsync_<pipeline>" so that a source reading this
 *   database can tell our writes from the users' (bidirectional sync). Without the privilege to
 *   use origins this is an error, unless the pipeline has conflict = none (one-way sync: then it
 *   is a warning and the writes go unmarked).
 * - begin()/apply()/commit(): one SQL transaction per batch, sent in libpq pipeline mode with
 *   prepared statements; results are read at commit or when 1000 are outstanding, and each
 *   failure names the change's table and key. The checkpoint row and the origin's progress are
 *   written in the same transaction as the data.
 * - Runs of inserts, updates (same column set) or deletes on one table are held and sent as one
 *   multi-row statement (up to 512 rows) — but only on tables where changes to distinct keys
 *   commute (plain table, no triggers, rules, foreign keys or other unique indexes, primary key
 *   on the source's key): order per key is kept, a key-changing update or a truncate sends what
 *   is held first, and an update of a held row merges into it. Grouped updates and deletes
 *   RETURN the rows they touched, so a missing row is still a "data" error naming its key.
 *   Other tables are applied one statement per row, in source order. Errors of held changes
 *   surface at the next flush (at the latest at commit).
 * - A run of a snapshot's inserts (initial copy chunks) into such a table goes by COPY ... FROM
 *   STDIN instead, in the same transaction, once 256 rows are held (pg_sink_copy.c says when
 *   and why not otherwise); its errors surface when the COPY ends.
 * - Any error leaves the transaction for rollback(), which is safe in every state. */
extern const SinkOps pg_sink_ops;

/* The mark on writer's writes as its sink database's log tells them (TxnInfo.origin): the
 * replication origin "cdcsync_<pipeline>" its session writes under. */
int pg_sink_write_mark(const PipelineConf *writer, char *buf, size_t len);

/* SinkOps.lease_* (pg_lease.c): the pipeline's row in cdcsync.leases, on a session of its own. */
int pg_sink_lease_open(const ConnectorConf *conn, const PipelineConf *pipe, int takeover_s, SinkLease **ret,
                       CdcError *err);
int pg_sink_lease_step(SinkLease *l, const char *instance, int64_t held, int64_t *ret_held, LeaseSeen *ret_seen,
                       CdcError *err);
int pg_sink_lease_release(SinkLease *l, int64_t held, CdcError *err);
SinkLease *pg_sink_lease_free(SinkLease *l);
