/* What the parts of the row-version module share (rowstate.c: decisions and batches,
 * rowstate_tag.c: version tags, rowstate_conflict.c: the conflict log): the RowState itself and
 * the helpers more than one of them calls. Private to the module; the design is in rowstate.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdcsync/rowstate.h"
#include "cdcsync/state.h"
#include "cdcsync/stats.h"
#include "cdcsync/version.h"

/* An LMDB write transaction keeps its dirty pages in memory until it commits: a batch holding a
 * 1,000,000-row source transaction is written in slices of this many rows, all under the same
 * batch number, so memory stays bounded (recovery treats the slices as one batch). */
#define ROWS_PER_SLICE 20000
#define KEY_MAX 8192

/* Tags of one echo transaction whose data change has not come yet: the sink writes a row's tag
 * just before the row (a bulk sink may write a group of tags first), so a few suffice. */
#define TAG_STASH 256

#define TABLE_CACHE 64

/* The time of a version made by a first copy (see check_bidi): older than any real write. */
#define ROWSTATE_COPY_TS 1

typedef struct {
        uint8_t k[32];
        Version v;
        bool handled; /* a delete decided when its tag was read: its row change needs nothing more */
} TagEntry;

struct RowState {
        State *st;                /* borrowed */
        const PipelineConf *conf; /* borrowed */
        const char *node;         /* the source connector: this pipeline's origin in vectors */
        StateBatch *batch;        /* open batch, or NULL */
        uint64_t batch_no;
        size_t slice_rows;
        uint64_t done_upto;    /* batches up to this number were committed by the sink */
        uint64_t dropped_upto; /* undo dropped for batches up to this number */
        bool acquired;         /* the store is acquired for this attempt (state_acquire) */
        bool recovered;        /* recovered, no batch begun since: every earlier batch is finished */
        bool versions_out;     /* a one-way pipeline into Kafka: changes carry their version */
        const char *state_dir; /* borrowed: for messages and the conflict log */
        bool conflicts_dirty;  /* conflict records appended in the open batch, not synced yet */
        /* bidirectional sync */
        char reverse[STATE_NAME_MAX + 1]; /* the reverse pipeline, "" for a one-way pipeline */
        PipelineStats *stats;             /* borrowed, may be NULL */
        char conflicts_path[600];         /* state_dir/conflicts.jsonl */
        char ctx[256];
        char wnode[VCLOCK_NODE_MAX]; /* "w.<pipeline>": the vector entry of our writes into the sink */
        /* version tags (see DESIGN) */
        Table *tag_table; /* cdcsync.versions */
        bool have_last;   /* the change just decided was applied: its tag is ready */
        char last_space[STATE_TABLE_MAX];
        char last_key[KEY_MAX];
        size_t last_keylen;
        Version last_v;
        TagEntry stash[TAG_STASH]; /* tags read in the current echo transaction, oldest first */
        int nstash;
        Position stash_txn;
        /* the source's tables by row name space, to rebuild a delete from a tag alone */
        struct {
                char space[STATE_TABLE_MAX];
                Table *t;
        } tables[TABLE_CACHE];
        int ntables;
};

/* A failure of the state store or of a file under state_dir, as a CdcError (see rowstate.c). */
int rowstate_store_error(RowState *rs, CdcError *err, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Counts a row written in the open batch; commits a slice of it every ROWS_PER_SLICE rows. */
int rowstate_slice(RowState *rs, CdcError *err);
/* "node/schema.table": a row name space. Returns 0 or -ENAMETOOLONG. */
int rowstate_space(char *buf, size_t size, const char *node, const char *schema, const char *table);
/* Decides an echoed row change from S's version sq (rowstate.c). */
int rowstate_echo_row(RowState *rs, const TxnInfo *txn, Change *c, const char *sspace, const char *kspace,
                      const char *key, size_t n, const Version *sq, bool *ret_forward, CdcError *err);

/* Version tags (rowstate_tag.c). */
int rowstate_tag_table_init(Table *t);
/* The tag's primary key: SHA-256 of the row's name space and key. */
void rowstate_tag_key(const char *space, const char *key, size_t n, uint8_t out[32]);
/* The change just decided goes to the sink with version v: its tag is ready for rowstate_tag. */
void rowstate_note_tag(RowState *rs, const char *kspace, const char *key, size_t n, const Version *v);
/* The exact version of an echoed row change: its tag, read just before it in the transaction. */
bool rowstate_stash_take(RowState *rs, const TxnInfo *txn, const char *space, const char *key, size_t n, Version *ret,
                         bool *ret_handled);

/* The conflict log (rowstate_conflict.c). */
/* Counts, logs and records one conflict; a record that cannot be written fails the change. */
int rowstate_report_conflict(RowState *rs, const char *table, const char *key, const Version *held,
                             const Version *incoming, int verdict, const char *resolution, CdcError *err);
/* Conflict records of the batch reach the disk before the batch does. */
int rowstate_sync_conflicts(RowState *rs, CdcError *err);
