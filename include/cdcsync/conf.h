/* The parsed conf file: service settings, connectors and pipelines (see conf/cdcsync.conf). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cdcsync/log.h"

typedef enum {
        CONFLICT_VERSION_VECTOR = 0,
        CONFLICT_TIMESTAMP,
        CONFLICT_NONE,
} ConflictPolicy;

typedef enum {
        RESOLVE_TIMESTAMP = 0,
        RESOLVE_PRIORITY,
} ResolvePolicy;

/* What a new pipeline's first copy does with rows the sink table already holds (the order is
 * the conf's: snapshot = initial | never | merge | replace). */
typedef enum {
        SNAPSHOT_INITIAL = 0, /* copy into empty tables only: a table holding rows stops the copy
                               * (bidirectional pipelines: merge, a side is never emptied) */
        SNAPSHOT_NEVER,       /* no copy: stream from now (or start_position) */
        SNAPSHOT_MERGE,       /* keep the sink's rows: source rows are upserted, nothing deleted */
        SNAPSHOT_REPLACE,     /* empty the sink table, then copy (one-way pipelines only) */
} SnapshotMode;

/* When a PostgreSQL sink table's indexes are built in an initial copy (snapshot_indexes = after |
 * during): after, a table empty at the copy's start loses its indexes for the copy and gets them
 * back, each built once, with its last chunk (pg_sink_defer.c); during: kept, updated row by row. */
typedef enum {
        SNAPSHOT_INDEXES_AFTER = 0,
        SNAPSHOT_INDEXES_DURING,
} SnapshotIndexes;

/* What a Kafka source does with a message that is no change event it can use. */
typedef enum {
        BAD_MESSAGE_ERROR = 0,   /* stop the pipeline with an error naming topic, partition and offset */
        BAD_MESSAGE_SKIP,        /* count, log, and go on */
        BAD_MESSAGE_DEAD_LETTER, /* produce it to dead_letter_topic, count, log, and go on */
} BadMessagePolicy;

typedef struct {
        char *key;   /* owned, without the "kafka." prefix */
        char *value; /* owned */
} KeyValue;

typedef struct {
        char *name; /* owned: NAME of [connector.NAME], the node id in version vectors */
        char *type; /* owned: "postgres", "mysql" or "kafka" */
        /* postgres */
        char *dsn;         /* owned: libpq conninfo, ${ENV} expanded (a literal password in it is
                            * refused unless the conf file is private: mode 600) */
        char *slot;        /* owned: default "cdcsync_<pipeline>" is chosen by the source when NULL */
        char *publication; /* owned: default "cdcsync_<pipeline>" when NULL */
        /* mysql */
        char *host;
        int port;
        char *user;
        char *database;
        uint32_t server_id;
        char *ssl_mode; /* disabled | preferred | required | verify_ca | verify_identity */
        char *ssl_ca;
        /* kafka */
        char *brokers;
        char *topic; /* template: {connector} {schema} {table} */
        char *group;
        KeyValue *kafka_props; /* owned, nkafka_props entries: kafka.* keys passed to librdkafka */
        int nkafka_props;
        /* all */
        char *password; /* owned secret from password_file, ${ENV} or $CREDENTIALS_DIRECTORY;
                         * NULL when none; never logged */
        bool create_tables;
        /* MySQL sink, binlog = off (1; on: 0, also in a conf built by hand): its writes stay out
         * of the server's binlog (sql_log_bin = 0) */
        int skip_binlog;
        int timeout_s;    /* a peer silent this long is unreachable: reconnect (seconds) */
        const char *file; /* conf file it came from (borrowed from Conf.path) */
        int line;         /* line of its [connector.NAME] header */
        uint64_t hash;    /* hash of the section's settings, to tell on reload whether it changed */
} ConnectorConf;

typedef struct {
        char *from; /* owned: "public.orders" or "sbtest.*" */
        char *to;   /* owned: "shop.orders" or "public.*" */
} TableMap;

typedef struct Conf Conf;

typedef struct {
        char *name; /* owned: NAME of [pipeline.NAME] */
        char *source_name;
        char *sink_name;
        const ConnectorConf *source; /* resolved, points into Conf.connectors */
        const ConnectorConf *sink;
        bool all_tables; /* tables = * */
        char **tables;   /* owned, "schema.table" each, ntables entries */
        int ntables;
        TableMap *maps; /* owned */
        int nmaps;
        ConflictPolicy conflict;
        ResolvePolicy resolve;
        char **priority; /* owned, connector names, npriority entries */
        int npriority;
        int batch_max_rows;
        int apply_workers;       /* sink sessions applying batches concurrently, committed in order */
        int tombstone_days;      /* row versions of deleted rows older than this are pruned */
        int snapshot_workers;    /* source connections reading the initial copy's chunks concurrently */
        int snapshot_chunk_rows; /* rows per chunk of the initial copy, about */
        SnapshotMode snapshot_mode;
        SnapshotIndexes snapshot_indexes; /* a PostgreSQL sink: its indexes during an initial copy */
        bool snapshot;                    /* snapshot_mode != SNAPSHOT_NEVER: a new pipeline copies existing rows */
        char *start_position;             /* owned or NULL */
        BadMessagePolicy on_bad_message;  /* Kafka source only */
        char *dead_letter_topic;          /* owned: where on_bad_message = dead_letter sends them */
        /* owned or NULL, as written: what of each table flows (parsed and applied by shape.c) */
        char *columns, *exclude_columns, *mask_columns, *skip, *soft_delete, *where;
        bool bidirectional; /* another pipeline runs the other way (sink → source): set by conf_load */
        const Conf *conf;   /* the conf it belongs to (set by conf_load; NULL in a PipelineConf made by hand) */
        const char *file;
        int line;
        uint64_t hash; /* of this section and of both connectors' sections */

        /* PostgreSQL -> PostgreSQL sequence values (seqsync.h) */
        bool sync_sequences;
        int sync_sequences_interval_s; /* seconds between two syncs while the pipeline runs */
} PipelineConf;

struct Conf {
        char *path;           /* owned: the conf file */
        char *state_dir;      /* owned */
        char *metrics_listen; /* owned: "127.0.0.1:9780", or NULL when "off" */
        LogLevel log_level;
        /* HTTP basic auth and TLS for the metrics endpoint: all NULL when unset (then plain HTTP
         * without auth, fine on loopback); user and password come together, as do cert and key */
        char *metrics_user;     /* owned */
        char *metrics_password; /* owned secret from metrics_password_file; never logged */
        char *metrics_tls_cert; /* owned: PEM file path */
        char *metrics_tls_key;  /* owned: PEM file path */
        /* Credentials of the admin API's state-changing calls; both NULL when unset (then the
         * metrics credentials serve, and with neither those calls are refused). */
        char *admin_user;            /* owned */
        char *admin_password;        /* owned secret from admin_password_file; never logged */
        int64_t retained_warn_bytes; /* bytes; 0: off */
        /* High availability (issue #16): leadership per pipeline through a lease in its sink. */
        char *instance;            /* owned: this instance's name in the leases; default the host name */
        bool ha;                   /* false: no lease at all, today's behaviour */
        int ha_takeover_s;         /* seconds: a standby takes a lost leader's pipelines over within this */
        ConnectorConf *connectors; /* owned, nconnectors */
        int nconnectors;
        PipelineConf *pipelines; /* owned, npipelines */
        int npipelines;
        char **warnings; /* owned, nwarnings: "FILE:LINE: what might go wrong — what to do", for
                          * check to print and run to log (what only the servers can decide) */
        int nwarnings;
};

/* Parses and validates path. On a bad conf writes every error as "FILE:LINE: what — what to do"
 * to errout and returns -EINVAL; -errno when the file cannot be read. *ret untouched on failure. */
int conf_load(const char *path, FILE *errout, Conf **ret);
Conf *conf_free(Conf *c);
const ConnectorConf *conf_connector(const Conf *c, const char *name);
/* Maps a source "schema.table" to the sink's schema and table through the pipeline's `map`:
 * an explicit "a.b -> c.d" first, then a "a.* -> c.*" schema map, else the same names (for a
 * MySQL sink with `database` set: that database, the same table). Writes NUL-terminated names; returns 0 or
 * -ENAMETOOLONG. */
int conf_map_table(const PipelineConf *p, const char *schema, const char *table, char *ret_schema, size_t schema_len,
                   char *ret_table, size_t table_len);
/* A copy of the pipeline's `tables` ("schema.table" each) in *ret, owned by the caller (free each
 * and the array); *ret NULL when there are none. Returns 0 or -ENOMEM. */
int conf_pipeline_tables_copy(const PipelineConf *p, char ***ret, int *ret_n);
/* Whether the pipeline's `tables` covers schema.table. */
bool conf_pipeline_has_table(const PipelineConf *p, const char *schema, const char *table);
/* The first copy's mode as sources apply it: initial merges in a bidirectional pipeline (a side
 * is never emptied). */
SnapshotMode conf_pipeline_copy_mode(const PipelineConf *p);
/* The message of a first copy refused because sink table `table` already holds `rows` rows (at
 * least that many when at_least): what happened and the three choices. */
void conf_copy_refusal(const PipelineConf *p, const char *table, unsigned long long rows, bool at_least, char *buf,
                       size_t len);
/* A connector's timeout_s in milliseconds (30 s when unset, as in a conf built by hand). */
int conf_timeout_ms(const ConnectorConf *c);
/* Prints the documented conf (every key, its default and help) from the key tables. */
void conf_print_reference(FILE *out);
/* Prints the manual page cdcsync.conf(5), in roff, from the same key tables. */
void conf_print_man(FILE *out);
