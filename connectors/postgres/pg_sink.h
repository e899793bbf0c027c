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
 *   prepared statements (one per table, op and UPDATE column set); results are read at commit or
 *   when 1000 are outstanding, and each failure names the change's table and key. The checkpoint
 *   row and the origin's progress are written in the same transaction as the data.
 * - Any error leaves the transaction for rollback(), which is safe in every state. */
extern const SinkOps pg_sink_ops;
