/* Bidirectional sync: what one pipeline must know about the others (echo marks, its reverse). */
#pragma once

#include <stdbool.h>

#include "cdcsync/conf.h"

#define BIDI_MAX_MARKS 8
#define BIDI_MARK_MAX 64 /* bytes of a mark including its NUL: the size of TxnInfo.origin */
#define BIDI_NAME_MAX 64 /* bytes of a pipeline name including its NUL (STATE_NAME_MAX + 1) */

/* A plain value, copied into the pipeline: it stays right while the Conf it came from is kept. */
typedef struct {
        /* TxnInfo.origin values that mark a write cdcsync made into this pipeline's source on
         * behalf of a reverse pipeline: such a transaction is an echo and is never sent back. */
        char marks[BIDI_MAX_MARKS][BIDI_MARK_MAX];
        int nmarks;
        /* The reverse pipeline (source and sink swapped) whose row versions this pipeline reads;
         * "" when there is none (a one-way pipeline). */
        char reverse[BIDI_NAME_MAX];
} BidiPeers;

/* Fills *ret for pipeline p of conf c: the marks written by every pipeline Q with Q.source ==
 * p.sink and Q.sink == p.source ("cdcsync_<Q>" for a PostgreSQL sink, the sink connector's
 * server_id for a MySQL one). A chain A→B→C has no reverse pipeline: nothing is an echo there.
 * Returns 0, or -E2BIG when more than BIDI_MAX_MARKS reverse pipelines exist. */
int bidi_peers(const Conf *c, const PipelineConf *p, BidiPeers *ret);
/* Whether a transaction with this origin is an echo of our own write. */
bool bidi_is_echo(const BidiPeers *b, const char *origin);
