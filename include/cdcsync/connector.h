/* The source and sink interfaces: everything a connector needs from the engine, and back. */
#pragma once

#include "cdcsync/change.h"
#include "cdcsync/conf.h"
#include "cdcsync/copies.h"
#include "cdcsync/lease.h"

/* What an error is about: the label of cdcsync_errors_total{kind} (cdc_error_kind_names). */
typedef enum {
        CDC_ERR_CONNECTION, /* a server unreachable, a connection lost or timed out */
        CDC_ERR_SLOT,       /* a replication slot (or binlog position) gone, invalid or busy */
        CDC_ERR_SCHEMA,     /* a table, column or type missing or different */
        CDC_ERR_DATA,       /* a value or row the other side refuses */
        CDC_ERR_CONF,       /* the conf, or a server setting it needs */
        CDC_ERR_PRIVILEGE,  /* a grant missing */
        CDC_ERR_SOURCE,     /* a source-side protocol or setup failure */
        CDC_ERR_STATE,      /* the state store corrupt or of another version */
        CDC_ERR_DISK,       /* a file under state_dir that cannot be written or read */
        CDC_ERR_INTERNAL,   /* out of memory, a thread that cannot start */
        CDC_ERR_QUERY,      /* a statement the server failed for another reason */
        CDC_ERR_LEASE,      /* ha = on: another instance took the pipeline over (code -ESTALE) */
        CDC_ERR_KINDS,
} CdcErrorKind;

/* The kinds' names, as CdcError.kind and the metrics label hold them. */
extern const char *const cdc_error_kind_names[CDC_ERR_KINDS];

/* An error crossing the connector interface: the pipeline decides from `retriable` whether to
 * reconnect with backoff or stop. `kind` is the metrics label (cdcsync_errors_total{kind}). */
typedef struct {
        int code;           /* negative errno-style code */
        bool retriable;     /* true: a reconnect with backoff can help (server restart, outage) */
        char kind[32];      /* cdc_error_kind_names[] of the CdcErrorKind it was made with */
        char message[1024]; /* lower-case, says what and where; never holds a password */
} CdcError;

/* Fills err and returns code (negative). Usage: return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "...", ...). */
int cdc_error(CdcError *err, int code, bool retriable, CdcErrorKind kind, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* Out of memory, said the same way everywhere: kind "internal", retriable (memory pressure passes;
 * the pipeline retries with backoff and counts it). Returns -ENOMEM. */
int cdc_oom(CdcError *err);

/* Events flow from a source through the engine to a sink, moved from queue to queue: whoever
 * holds an event owns its change. A transaction is BEGIN, its CHANGEs, COMMIT; large ones are
 * never held whole in memory, changes flow one by one. */
typedef enum {
        EVENT_BEGIN = 1,
        EVENT_CHANGE,
        EVENT_COMMIT,
        EVENT_KEEPALIVE, /* nothing pending up to ckpt: lets lag read 0 and the slot advance */
        EVENT_BATCH_END, /* engine → sink only: commit the batch with ckpt, its end */
        EVENT_END,       /* engine → sink only: nothing more comes this attempt; an open batch is rolled back */
} EventKind;

typedef struct {
        EventKind kind;
        TxnInfo txn;       /* BEGIN and COMMIT: the whole header (commit_pos and commit_ts known at BEGIN) */
        Change change;     /* CHANGE: owned by the event until handed on */
        int64_t server_ts; /* KEEPALIVE: source server clock, usec since epoch */
        uint64_t batch_no; /* BATCH_END: the engine's number of the batch it ends */
        /* COMMIT: where the transaction ends (pos = txn.commit_pos) as the sink is to store it;
         * KEEPALIVE: the source's log end, every change before it already emitted; BATCH_END: the
         * batch's end, its last COMMIT's. Filled by the source; a text left "" is the source's
         * format_position() of pos, and a COMMIT's pos is txn.commit_pos (pipeline_io_emit writes
         * both). A value, copied with the event: nothing to free. */
        Checkpoint ckpt; /* last: a queue moves only the fields before it for BEGIN and CHANGE */
} Event;

/* The bytes of an event that its kind uses: BEGIN and CHANGE carry no checkpoint, which is more
 * than half of an Event, so queues copy only what comes before it (the hand-overs were ~15 % of
 * cdcsync's CPU in an initial load, perf). */
static inline size_t event_used_size(EventKind kind) {
        return kind == EVENT_BEGIN || kind == EVENT_CHANGE ? offsetof(Event, ckpt) : sizeof(Event);
}

/* Frees what an event owns (its change). */
void event_clear(Event *ev);

/* What a running source talks to. Implemented by the engine's pipeline; thread-safe. */
typedef struct PipelineIO PipelineIO;

/* Hands an event on; takes ownership of ev's contents (ev is zeroed). Blocks while the queue is
 * full (that is how memory stays bounded). Returns 0, or -ECANCELED when the pipeline is stopping:
 * the source must then return promptly. */
int pipeline_io_emit(PipelineIO *io, Event *ev);
/* The last position durably committed in the sink: the only position a source may acknowledge. */
Position pipeline_io_durable(PipelineIO *io);
bool pipeline_io_stopping(PipelineIO *io);
/* ha = off: true. ha = on: this instance holds the pipeline's lease and, by its own clock, the
 * lease cannot have expired on the server yet (lease_self_expired). For what a source writes
 * outside the sink's fenced transactions (a Kafka group's offsets): after a freeze it is false. */
bool pipeline_io_lease_current(PipelineIO *io);
/* Source log end as seen in the stream (keepalives, heartbeats): an observation for lag. */
void pipeline_io_report_source_end(PipelineIO *io, Position end, int64_t server_ts);
/* For a source whose positions are not its log's (Kafka), instead of log ends: as of now it has
 * `unread` not handed on yet (0: it read everything the source holds), and the source holds
 * `behind` beyond what the sink made durable (lag_bytes, in the source's unit: messages). */
void pipeline_io_report_backlog(PipelineIO *io, uint64_t unread, uint64_t behind);
/* The source tells the pipeline it now streams (or copies its snapshot): what READY=1 and
 * cdcsync_pipeline_up wait for. */
void pipeline_io_streaming(PipelineIO *io, bool snapshot);
/* The initial copy's progress of source table `table` ("schema.table"): rows copied (kept from
 * earlier attempts included) and estimated, chunks done of total; begin at an attempt's start.
 * /status, cdcsync_snapshot_rows_total and cdcsync_snapshot_chunks_remaining show it. */
void pipeline_io_report_snapshot(PipelineIO *io, const char *table, bool begin, uint64_t rows, uint64_t rows_est,
                                 int chunks_done, int chunks_total);
/* Re-snapshot (resnapshot.h): whether an operator asked for tables to be copied again, and those
 * tables (*ret owned by the caller; "*" alone: every table the pipeline streams). */
bool pipeline_io_resnapshot_pending(PipelineIO *io);
void pipeline_io_resnapshot_take(PipelineIO *io, char ***ret, int *ret_n);
/* Gives back tables taken whose copy did not end (the attempt ends): the next attempt takes them
 * again. tables stay the caller's. */
void pipeline_io_resnapshot_again(PipelineIO *io, const char *const *tables, int n);
/* Counts a message the source could not use and passed on by on_bad_message (skip, or
 * dead_letter once it was delivered there): cdcsync_bad_messages_total{action}. */
void pipeline_io_count_bad_message(PipelineIO *io, bool dead_letter);
/* Log context "[pipeline=X source=Y]" for messages. */
const char *pipeline_io_context(PipelineIO *io);

typedef struct Source Source;
typedef struct Sink Sink;
typedef struct SinkLease SinkLease;
typedef struct SourceProbe SourceProbe;

/* What a source's server keeps for a pipeline (SourceOps.probe_health). */
typedef struct {
        int64_t retained_bytes; /* log bytes the server keeps for the pipeline; -1: unknown */
        int slot_active;        /* 1: its slot (its binlog dump) is in use now, 0: not, -1: unknown */
} SourceHealth;

/* Where a connector keeps its data, as its server says: equal `server` texts are one server, and
 * on it equal `database` texts one database (see guard.h). */
typedef struct {
        char server[256];   /* "PostgreSQL system 7301...", "MariaDB server host:3306 (datadir ...)" */
        char database[128]; /* PostgreSQL: the database; "" where tables name their database (MySQL) */
} ConnectorPlace;

/* Where a source starts. */
typedef struct {
        bool have_position; /* the sink holds a checkpoint (or start_position is set): stream after it */
        /* That checkpoint: its pos is what acknowledgements and replay skipping compare against;
         * its text ("" unknown), as the sink stored it or start_position, is what a source whose
         * text holds more than a Position (MySQL: the GTID state) starts from. */
        Checkpoint checkpoint;
        bool snapshot;         /* no checkpoint and snapshot = initial: copy existing rows first */
        const char *spill_dir; /* where a source may spill in-progress transactions (under state_dir) */
        /* The tables the sink records as copied (copies.h), with the position each copy is as of;
         * registry: the sink keeps such records (database sinks), so a table of `tables` without
         * one is copied before it is streamed. Borrowed for run(). */
        const CopiedTable *copied;
        int ncopied;
        bool registry;
} SourceStart;

typedef struct {
        const char *type; /* "postgres", "mysql", "kafka" */
        /* Connects and checks; does not stream yet. *ret is the caller's (free()); conn and pipe
         * are borrowed and outlive it. */
        int (*open)(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err);
        /* Streams from `start` until pipeline_io_stopping() or an error; emits events through io
         * (each COMMIT and KEEPALIVE with its Checkpoint), acknowledges pipeline_io_durable()
         * upstream. start and io are borrowed for the call. Returns 0 when stopped, negative on
         * error. */
        int (*run)(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err);
        /* Formats a position of this source ("0/16B3748", "binlog.000002:344") without a running
         * source: the text of a checkpoint whose source left it "" (Event.ckpt). */
        void (*format_position)(Position p, char *buf, size_t len);
        /* Parses start_position; returns 0 or -EINVAL. */
        int (*parse_position)(const char *text, Position *ret);
        /* `cdcsync check --connect`: connects, checks privileges and settings, prints warnings
         * (one per line, to stdout). Returns 0 when the pipeline can run. */
        int (*check)(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err);
        /* Accepts NULL, returns NULL. */
        Source *(*free)(Source *s);
        /* The tables the source streams now (PostgreSQL: its publication's; others: `tables`), as
         * "schema.table" strings in *ret (owned by the caller, free each and the array). Asked for
         * a pipeline whose sink holds a checkpoint but no copy records (made before they existed),
         * which are then recorded as copied at the checkpoint. */
        int (*streamed_tables)(Source *s, char ***ret, int *ret_n, CdcError *err);
        /* Where conn's data lives, asked of its server over a short connection of its own (`check
         * --connect`, and each attempt's start, before anything is created); asked only of a type
         * that holds tables (ConnectorType.holds_tables). A type that holds none answers server ""
         * without asking anyone. */
        int (*locate)(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err);
        /* The tables this source can read, as "schema.table" (what `tables = *` reads); the caller
         * frees each and *ret. *ret is left NULL when the source cannot tell before it reads (Kafka). */
        int (*list_tables)(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err);
        /* The source's own view of where its log ends now, over a connection of its own, so that
         * lag is measured against the source even while the stream stalls, the source thread
         * waits for a full queue, or the pipeline is down. The engine asks about once a second
         * from a thread of its own; every call is bounded by the connector's timeout_s.
         * probe_open() sets *ret NULL (and returns 0) for a source that has no such view (Kafka:
         * its stream reports the backlog): the engine then never asks again. probe() sets
         * *ret_end, and *ret_bytes to the log bytes from `applied` to it when the source can count
         * them where positions cannot be subtracted (else leaves UINT64_MAX). A failed probe is
         * freed and opened again later; probe_free() accepts NULL and returns NULL. */
        int (*probe_open)(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err);
        int (*probe)(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err);
        SourceProbe *(*probe_free)(SourceProbe *pr);
        /* Optional (NULL: the source has no such view, Kafka): over the probe's connection, what
         * the server keeps for this pipeline — PostgreSQL: the WAL its slot holds
         * (pg_current_wal_lsn() - restart_lsn) and whether the slot is active; MariaDB: the binlog
         * bytes from `durable` (where the pipeline resumes) to the server's end, and whether a
         * binlog dump of the connector's user is connected. Bounded by timeout_s like probe(). */
        int (*probe_health)(SourceProbe *pr, Position durable, SourceHealth *ret, CdcError *err);
        /* It copies tables again while it streams when asked (pipeline_io_resnapshot_take). */
        bool resnapshot;
} SourceOps;

typedef struct {
        const char *type;
        /* *ret is the caller's (free()); conn and pipe are borrowed and outlive it. */
        int (*open)(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err);
        /* The checkpoint this pipeline last stored here, copied into *ret (its text "" when the
         * sink does not read it back); *ret_found = false for a new pipeline. */
        int (*last_position)(Sink *k, Checkpoint *ret, bool *ret_found, CdcError *err);
        /* Opens a batch of whole source transactions. */
        int (*begin)(Sink *k, CdcError *err);
        /* Applies one change of source transaction txn in the open batch; both stay the caller's. */
        int (*apply)(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err);
        /* Ends the batch with ckpt as the pipeline's checkpoint; `last` is the batch's last source
         * transaction. Both are borrowed for the call (a sink copies what it keeps). After 0 the
         * next begin() may follow at once; the batch is durable once poll_durable() says so. A
         * database sink stores the checkpoint in the batch's transaction and commits it (the MySQL
         * sink with one session: its sender thread does, while the next batch is built); Kafka
         * stores it once the batch's messages and every earlier batch's are delivered. */
        int (*commit)(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err);
        /* Serves the sink's outstanding work for at most timeout_ms (0: only what is ready) and
         * sets *ret to the end position of the newest batch that is durable (its data, its
         * checkpoint, and every earlier batch's), *ret_found = false when none is yet; a database
         * sink reports the batch commit() committed last (the MySQL sink's sender: once its COMMIT
         * returned, waiting up to timeout_ms for it). A batch that failed (or waited past the
         * sink's delivery timeout) returns an error: the attempt must end, and everything after
         * the last durable position is read again. */
        int (*poll_durable)(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err);
        /* Rolls the open batch back (after an error, or on shutdown mid-batch); batches not yet
         * durable may be lost with it (they are read again). */
        int (*rollback)(Sink *k);
        /* `cdcsync check --connect` for this side. */
        int (*check)(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err);
        /* Accepts NULL, returns NULL. */
        Sink *(*free)(Sink *k);
        /* apply_workers > 1 (pipeline_apply.c): one more session of the pipeline's sink, for
         * worker `worker` (1.., the pipeline's own open() session is worker 0). Its batches
         * commit with the same checkpoint, in source order, and each commit() is durable when it
         * returns. NULL: the sink applies with one session only (Kafka). */
        int (*open_worker)(const ConnectorConf *conn, const PipelineConf *pipe, int worker, Sink **ret, CdcError *err);
        /* Optional, with open_worker: does the open batch's outstanding work (statements held
         * back, results unread) before its turn to commit comes, so that commit() is short: a
         * worker's commit waits for every earlier batch's. */
        int (*prepare)(Sink *k, CdcError *err);
        /* The sink keeps copy records (copies.h) in a registry table (database sinks): a table a
         * pipeline streams is copied first unless a record says it was. */
        bool copy_records;
        /* It applies deletes of key ranges (CHANGE_RANGE), which a re-snapshot sends. */
        bool range_delete;
        /* This pipeline's copy records, *ret owned by the caller (free()); they are written as
         * changes of the registry table with the copies. None (*ret NULL) without copy_records. */
        int (*copied_tables)(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err);
        /* Optional (ha = on): the lease generation every later commit() fences on, in the batch's
         * own transaction (lease.h); 0, the default: no fence, no lease. A commit whose fence
         * fails rolls back and returns -ESTALE, kind CDC_ERR_LEASE: the pipeline steps down.
         * Called on every session of the pipeline (apply workers too) before it applies: it
         * lists the session with the lease, so that a taker ends it (a frozen leader's open
         * transaction must not hold rows the new leader needs). Fails with CDC_ERR_LEASE when
         * the generation is no longer the lease's, or as retriable when the sink cannot say. */
        int (*set_fence)(Sink *k, int64_t generation, CdcError *err);
        /* Optional (ha = on): the pipeline's lease in this sink, on a session of its own, every
         * call bounded by about takeover_s / 3. lease_step() reads the lease and does what
         * lease_decide() says (create, take over, renew) for `instance`, which holds generation
         * `held` (0: none); *ret_held is the generation it holds afterwards, 0 when it stands by
         * or was deposed; *ret_seen what it saw (lease_seen()). lease_release() lets a standby take over at once
         * (graceful stop). */
        int (*lease_open)(const ConnectorConf *conn, const PipelineConf *pipe, int takeover_s, SinkLease **ret,
                          CdcError *err);
        int (*lease_step)(SinkLease *l, const char *instance, int64_t held, int64_t *ret_held, LeaseSeen *ret_seen,
                          CdcError *err);
        int (*lease_release)(SinkLease *l, int64_t held, CdcError *err);
        SinkLease *(*lease_free)(SinkLease *l); /* accepts NULL, returns NULL */
        /* As SourceOps.locate. */
        int (*locate)(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err);
} SinkOps;

/* sync_sequences: what became of one sequence a source table uses (ConnectorType.sync_sequences). */
typedef enum {
        SEQ_SET,     /* the sink's sequence was behind: set to the source's value */
        SEQ_AHEAD,   /* the sink's sequence was at or past it already: left as it is */
        SEQ_UNUSED,  /* the source's sequence was never used (or reset): nothing to carry */
        SEQ_MISSING, /* the sink has no sequence for the column: nothing was set */
        SEQ_FAILED,  /* reading or setting it failed (a privilege, a value out of the sink's range) */
} SeqAction;

/* Borrowed for the call of the SeqNoteFn. */
typedef struct {
        const char *column;     /* source "schema.table.column" whose default or identity uses it */
        const char *source_seq; /* "schema.name" on the source */
        const char *sink_seq;   /* "schema.name" on the sink; "" when none */
        const char *value;      /* the source's last value; NULL when unused */
        const char *before;     /* the sink's last value before; NULL when unused or unknown */
        SeqAction action;
        const char *why; /* SEQ_MISSING, SEQ_FAILED: what is wrong and what to do; else NULL */
} SeqNote;

typedef void (*SeqNoteFn)(void *userdata, const SeqNote *note);

struct GuardPlace; /* guard.h: where a connector's tables live */

/* Whose SQL a source's tables are described in (ConnectorType.source_dialect): Column.type_name
 * is a type as that system declares it, and a sink of the same system keeps it (and the types and
 * generated columns the table needs); other sinks map types by Column.cls. */
typedef enum {
        CONNECTOR_DIALECT_NONE = 0,
        CONNECTOR_DIALECT_POSTGRES,
        CONNECTOR_DIALECT_MYSQL,
} ConnectorDialect;

/* A connector type as the engine knows it: its source and sink, and the facts the engine decides
 * by, so that engine code asks the type instead of comparing type names (engine/registry.c lists
 * the types). */
typedef struct {
        const char *type;        /* type = in [connector.NAME] */
        const SourceOps *source; /* every type is a source and a sink */
        const SinkOps *sink;
        /* A database: its tables can be one pipeline's source and another's sink, so two pipelines
         * can loop through it or write one table (guard.h). */
        bool holds_tables;
        /* Its sink publishes each row's version in the message itself (Kafka): no version tags are
         * written beside the rows, and one-way pipelines into it keep versions. */
        bool sink_versions_in_messages;
        /* The mark its sink leaves on the writes of pipeline `writer`, as they read back from the
         * sink's own log (TxnInfo.origin). Returns what snprintf returns, or -1 when its writes carry
         * none (Kafka). */
        int (*write_mark)(const PipelineConf *writer, char *buf, size_t len);

        /* ---- the conf: what conf_load and guard.h ask; the rules live in connectors/<type>/ ---- */
        /* Whether two pipelines may both read one connector of this type, `earlier` defined first.
         * 1 with the refusal in msg (they would share one replication slot, one replica id), 0 when
         * they may. */
        int (*conf_shared_source)(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len);
        /* What connector conn lacks to be read as the source of pipeline `reader`, `set` being the
         * keys its section sets (NULL-terminated). 1 with the refusal in msg, else 0. */
        int (*conf_source)(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                           size_t len);
        /* Where conn's data lives as far as its conf text tells (before any server is asked;
         * `check --connect` asks locate()). Fills *ret, its strings borrowed from conn, from buf or
         * static; returns 0, or -1 when the text does not tell or there are no tables (Kafka). */
        int (*conf_place)(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret);
        /* Whether pipelines a and b, both reading sources of this type, divide one stream between
         * them (Kafka: one consumer group of one cluster): each change reaches one of them, so they
         * may write one table. */
        bool (*shares_stream)(const PipelineConf *a, const PipelineConf *b);
        /* Its source reads through a replication slot and a publication, named by the slot and
         * publication keys or else after the pipeline (guard_default_pg_name()): no two pipelines
         * may share either. */
        bool source_slot_and_publication;
        /* Its source can pass by a message it cannot read (on_bad_message: skip or dead_letter);
         * other sources stop on it. */
        bool source_passes_bad_messages;
        /* Its sink writes into the database its `database` key names in place of each source
         * table's schema (MySQL: a database is a schema). */
        bool sink_database_is_schema;

        /* ---- what a sink asks of its pipeline's source type (connector_type(pipe->source->type)) ---- */
        ConnectorDialect source_dialect;
        /* Its source's Table.rel_id names the source relation and is new when a table is dropped and
         * created again under its name (PostgreSQL's oid): a database sink keeps them per pipeline
         * (cdcsync.relations), so that the rows of a new relation are not merged into the old one's. */
        bool source_relation_ids;
        /* Its source's Change.lsn is a whole position, (Position){0, lsn}: a Kafka sink publishes it
         * as the change's own; other changes are placed by their commit position. */
        bool source_lsn_is_position;
        /* Debezium's name of the connector of this source ("postgresql"): what a Kafka sink's change
         * messages say they come from. */
        const char *debezium_name;
        /* The database a connector's data is in as its conf tells (PostgreSQL: the dsn's dbname,
         * else its user; others: the `database` key), for a Kafka sink's messages; *ret owned by the
         * caller, NULL when unknown; returns 0 or -ENOMEM. */
        int (*conf_database)(const ConnectorConf *conn, char **ret);
        /* Optional (sync_sequences = yes; NULL: the type cannot): copies the values of the
         * sequences pipe's source tables use (a column's default nextval(), a serial or identity
         * column's own) onto the sink's sequence of the same column (the sink is of the same
         * type), only where the sink's is behind: never backwards. Over short connections of its
         * own to both, each wait bounded by their timeout_s. note (may be NULL) hears of every
         * sequence. Returns 0 when both could be asked (per-sequence failures are notes), else
         * negative with err. */
        int (*sync_sequences)(const PipelineConf *pipe, SeqNoteFn note, void *userdata, CdcError *err);
} ConnectorType;

/* The registry: the type named `type`, NULL when there is none. */
const ConnectorType *connector_type(const char *type);

/* The type's source / sink; NULL when the type does not exist or has none. */
static inline const SourceOps *connector_source(const char *type) {
        const ConnectorType *t = connector_type(type);
        return t ? t->source : NULL;
}
static inline const SinkOps *connector_sink(const char *type) {
        const ConnectorType *t = connector_type(type);
        return t ? t->sink : NULL;
}
