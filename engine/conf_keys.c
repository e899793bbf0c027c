/* The conf's key tables: every key of [service], [connector.NAME] and [pipeline.NAME], with its
 * kind, default, the connector types it applies to, limits and help. One declarative table drives
 * parsing and errors (conf.c) and the documented reference and manual page (conf_doc.c). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/conf.h"
#include "conf_keys.h"

#define SVC(f) offsetof(Conf, f)
#define CON(f) offsetof(ConnectorConf, f)
#define PIP(f) offsetof(PipelineConf, f)

const ConfKey conf_service_keys[] = {
        {"state_dir", K_STR, "/var/lib/cdcsync", T_ALL, 0, false, false, SVC(state_dir), 0, 0, 0, "PATH",
         "local state: spill files, row versions of bidirectional pipelines (LMDB), "
         "conflicts.jsonl"},
        {"metrics_listen", K_LISTEN, "127.0.0.1:9780", T_ALL, 0, false, false, SVC(metrics_listen), 0, 0, 0,
         "HOST:PORT | [IPV6]:PORT | off", "HTTP endpoint: /metrics /status /healthz"},
        {"log_level", K_LOGLEVEL, "info", T_ALL, 0, true, false, SVC(log_level), 0, 0, 0, "error | warn | info | debug",
         "least severe level logged"},
        {"metrics_user", K_STR, NULL, T_ALL, 0, false, false, SVC(metrics_user), 0, 0, 0, "NAME",
         "HTTP basic auth user for the endpoint (with metrics_password_file)"},
        {"metrics_password_file", K_PASSWORD_FILE, NULL, T_ALL, 0, false, false, SVC(metrics_password), 0, 0, 0,
         "PATH | CREDENTIAL", "file holding the basic auth password (a bare name: a systemd credential)"},
        {"metrics_tls_cert", K_STR, NULL, T_ALL, 0, false, false, SVC(metrics_tls_cert), 0, 0, 0, "PATH",
         "PEM certificate: serve HTTPS (with metrics_tls_key)"},
        {"metrics_tls_key", K_STR, NULL, T_ALL, 0, false, false, SVC(metrics_tls_key), 0, 0, 0, "PATH",
         "PEM private key for metrics_tls_cert"},
        {"admin_user", K_STR, NULL, T_ALL, 0, false, false, SVC(admin_user), 0, 0, 0, "NAME",
         "HTTP basic auth user of the admin API's state-changing calls (pause, resume, restart; with "
         "admin_password_file); unset: the metrics_user credentials, and with neither those calls are refused"},
        {"admin_password_file", K_PASSWORD_FILE, NULL, T_ALL, 0, false, false, SVC(admin_password), 0, 0, 0,
         "PATH | CREDENTIAL", "file holding the admin password (a bare name: a systemd credential)"},
        {"retained_warn_bytes", K_SIZE, "10GiB", T_ALL, 0, false, false, SVC(retained_warn_bytes), 0, 0, 0,
         "SIZE (bytes, or with kB MB GB TB KiB MiB GiB TiB) | off",
         "warn (log and /healthz) when a source keeps more log than this for a pipeline (WAL its slot holds, "
         "binlog behind)"},
        {"instance", K_STR, NULL, T_ALL, 0, false, false, SVC(instance), 0, 0, 0, "NAME",
         "this instance's name in the pipelines' leases (ha = on), unique among the instances that run this conf; "
         "default the host name"},
        {"ha", K_BOOL, "off", T_ALL, 0, false, false, SVC(ha), 0, 0, 0, "on | off",
         "run each pipeline on one instance among those with this conf, through a lease row in the pipeline's "
         "sink (cdcsync.leases; PostgreSQL and MySQL sinks: a pipeline into Kafka is refused); off: no lease, "
         "this instance runs every pipeline"},
        {"ha_takeover_s", K_INT, "15", T_ALL, 0, false, false, SVC(ha_takeover_s), 0, 2, 3600, "2..3600",
         "seconds: a standby takes over a pipeline whose leader stopped renewing its lease within this (a Kafka "
         "source then reads its partitions at once, from its group's offsets)"},
};

const ConfKey conf_connector_keys[] = {
        {"type", K_CHOICE, NULL, T_ALL, T_ALL, true, false, CON(type), 0, 0, 0, "postgres | mysql | kafka",
         "the system this connector talks to"},
        {"dsn", K_DSN, NULL, T_PG, T_PG, true, true, CON(dsn), 0, 0, 0, "LIBPQ-CONNINFO",
         "libpq conninfo or postgresql:// URI (password: use password_file)"},
        {"slot", K_SLOT, NULL, T_PG, 0, true, false, CON(slot), 0, 0, 0, "NAME of a-z, 0-9, _ (max 63)",
         "replication slot when a source; default cdcsync_<pipeline>"},
        {"publication", K_STR, NULL, T_PG, 0, true, false, CON(publication), 0, 0, 0, "NAME",
         "publication when a source, created if absent; default cdcsync_<pipeline>"},
        {"host", K_STR, NULL, T_MY, 0, true, false, CON(host), 0, 0, 0, "HOST",
         "server host name or address; default localhost"},
        {"port", K_INT, "3306", T_MY, 0, true, false, CON(port), 0, 1, 65535, "1..65535", "server TCP port"},
        {"user", K_STR, NULL, T_MY, 0, true, false, CON(user), 0, 0, 0, "NAME", "user to log in as"},
        {"database", K_STR, NULL, T_MY, 0, true, false, CON(database), 0, 0, 0, "NAME",
         "default database; as a sink, the default target database"},
        {"server_id", K_U32, NULL, T_MY, 0, true, false, CON(server_id), 0, 1, UINT32_MAX, "1..4294967295",
         "as a source (required): binlog client id, unique among the server's replicas; as a sink: the "
         "mark on its writes (unmarked without it)"},
        {"ssl_mode", K_CHOICE, NULL, T_MY, 0, true, false, CON(ssl_mode), 0, 0, 0,
         "disabled | preferred | required | verify_ca | verify_identity", "TLS to the server"},
        {"ssl_ca", K_STR, NULL, T_MY, 0, true, false, CON(ssl_ca), 0, 0, 0, "PATH",
         "CA certificate file for verify_ca / verify_identity"},
        {"brokers", K_STR, NULL, T_KAFKA, T_KAFKA, true, false, CON(brokers), 0, 0, 0, "HOST:PORT, ...",
         "bootstrap brokers"},
        {"topic", K_TOPIC, "cdc.{connector}.{schema}.{table}", T_KAFKA, 0, true, false, CON(topic), 0, 0, 0,
         "TEXT with {connector} {schema} {table}", "topic per table, from this template"},
        {"group", K_STR, NULL, T_KAFKA, 0, true, false, CON(group), 0, 0, 0, "NAME",
         "consumer group when a source; default cdcsync_<pipeline>"},
        {"kafka.*", K_KAFKA_PROP, NULL, T_KAFKA, 0, true, false, 0, 0, 0, 0, "VALUE",
         "any librdkafka property, e.g. kafka.security.protocol = ssl"},
        {"password_file", K_PASSWORD_FILE, NULL, T_ALL, 0, true, false, CON(password), 0, 0, 0, "PATH | CREDENTIAL",
         "file holding the password (a bare name: a systemd credential)"},
        {"password", K_PASSWORD, NULL, T_ALL, 0, true, true, CON(password), 0, 0, 0, "${ENV_VAR}",
         "password from the environment (literal only in a mode 600 conf)"},
        {"create_tables", K_BOOL, "no", T_PG | T_MY, 0, true, false, CON(create_tables), 0, 0, 0, "yes | no",
         "as a sink: create missing target tables from the source's schema"},
        {"binlog", K_INDEX, "on", T_MY, 0, true, false, CON(skip_binlog), 0, 0, 0, "on | off",
         "as a sink: write what it applies to the server's binlog; off: as a replica with log_slave_updates = "
         "OFF, the server's binlog and its replicas do not get the pipeline's changes (needs BINLOG ADMIN or "
         "SUPER; refused on a connector that a pipeline reads from)"},
        {"timeout_s", K_INT, "30", T_ALL, 0, true, false, CON(timeout_s), 0, 1, 3600, "1..3600",
         "seconds without an answer (on a stream: without data or keepalive) before the server counts as "
         "unreachable and the pipeline reconnects; also bounds connecting (at most 10 s) and TCP keepalives"},
};

const ConfKey conf_pipeline_keys[] = {
        {"source", K_STR, NULL, T_ALL, T_ALL, true, false, PIP(source_name), 0, 0, 0, "CONNECTOR",
         "the connector changes are read from"},
        {"sink", K_STR, NULL, T_ALL, T_ALL, true, false, PIP(sink_name), 0, 0, 0, "CONNECTOR",
         "the connector changes are written to"},
        {"tables", K_TABLES, NULL, T_ALL, T_ALL, true, false, PIP(tables), PIP(ntables), 0, 0, "SCHEMA.TABLE, ... | *",
         "source tables to sync"},
        {"map", K_MAPS, NULL, T_ALL, 0, true, false, PIP(maps), PIP(nmaps), 0, 0, "A.B -> C.D, A.* -> C.*, ...",
         "sink-side names; default the same (MySQL sink: its database)"},
        {"conflict", K_INDEX, "version_vector", T_ALL, 0, true, false, PIP(conflict), 0, 0, 0,
         "version_vector | timestamp | none", "how concurrent updates are detected"},
        {"resolve", K_INDEX, "timestamp", T_ALL, 0, true, false, PIP(resolve), 0, 0, 0, "timestamp | priority",
         "who wins a true conflict"},
        {"priority", K_NAMES, NULL, T_ALL, 0, true, false, PIP(priority), PIP(npriority), 0, 0, "CONNECTOR, ...",
         "winner order for resolve = priority and for timestamp ties"},
        {"batch_max_rows", K_INT, "5000", T_ALL, 0, true, false, PIP(batch_max_rows), 0, 1, 1000000, "1..1000000",
         "rows per sink transaction (whole source transactions)"},
        {"apply_workers", K_INT, "1", T_ALL, 0, true, false, PIP(apply_workers), 0, 1, 64, "1..64",
         "sink sessions applying batches concurrently (database sinks): batches that touch no common row "
         "overlap, commits keep source order"},
        {"snapshot_workers", K_INT, "2", T_ALL, 0, true, false, PIP(snapshot_workers), 0, 1, 64, "1..64",
         "source connections reading the initial copy's chunks concurrently (a MySQL/MariaDB source: "
         "with RELOAD, else one)"},
        {"snapshot_chunk_rows", K_INT, "100000", T_ALL, 0, true, false, PIP(snapshot_chunk_rows), 0, 100, 100000000,
         "100..100000000",
         "rows per chunk of the initial copy, about (MySQL/MariaDB: by integer primary-key ranges): each "
         "chunk is one sink transaction recorded as done"},
        {"snapshot", K_INDEX, "initial", T_ALL, 0, true, false, PIP(snapshot_mode), 0, 0, 0,
         "initial | never | merge | replace",
         "a new pipeline's first copy: initial into empty sink tables only (bidirectional: merge), never: "
         "none, merge: keep the sink's rows, replace: empty them first"},
        {"snapshot_indexes", K_INDEX, "after", T_ALL, 0, true, false, PIP(snapshot_indexes), 0, 0, 0, "after | during",
         "a PostgreSQL sink's indexes in an initial copy: after: a table empty at the copy's start is copied "
         "without them and each is built once with its last chunk; during: kept and updated row by row"},
        {"start_position", K_STR, NULL, T_ALL, 0, true, false, PIP(start_position), 0, 0, 0, "FILE:POS | GTID | LSN",
         "with snapshot = never: where a new pipeline starts; default now"},
        {"tombstone_days", K_INT, "7", T_ALL, 0, true, false, PIP(tombstone_days), 0, 1, 36500, "1..36500",
         "days a deleted row's version is kept; an older change can revive it"},
        {"on_bad_message", K_INDEX, "error", T_ALL, 0, true, false, PIP(on_bad_message), 0, 0, 0,
         "error | skip | dead_letter",
         "kafka source, a message that is no change event: stop, skip it, or send it to dead_letter_topic"},
        {"columns", K_STR, NULL, T_ALL, 0, true, false, PIP(columns), 0, 0, 0,
         "SCHEMA.TABLE: COL, COL, ...; SCHEMA.TABLE: ...",
         "keep only these columns of a table (its key columns must be among them); others are never written"},
        {"exclude_columns", K_STR, NULL, T_ALL, 0, true, false, PIP(exclude_columns), 0, 0, 0,
         "SCHEMA.TABLE: COL, COL, ...; SCHEMA.TABLE: ...", "drop these columns of a table (not its key columns)"},
        {"mask_columns", K_STR, NULL, T_ALL, 0, true, false, PIP(mask_columns), 0, 0, 0,
         "SCHEMA.TABLE.COL: sha256 | redact, ...",
         "replace values before any sink sees them: sha256 (64 lowercase hex digits of the value's text; a "
         "key stays a key), redact (NULL; not for a key column)"},
        {"where", K_STR, NULL, T_ALL, 0, true, false, PIP(where), 0, 0, 0, "SCHEMA.TABLE: CONDITION; SCHEMA.TABLE: ...",
         "sync only the rows matching the condition (=, <>, <, <=, >, >=, IN, IS NULL, AND, OR, NOT on "
         "columns and literals); an update moving a row out of it deletes it on the sink, into it inserts it"},
        {"skip", K_STR, NULL, T_ALL, 0, true, false, PIP(skip), 0, 0, 0, "delete, update, truncate",
         "operations not applied to the sink (an archive keeps what the source deletes)"},
        {"soft_delete", K_STR, NULL, T_ALL, 0, true, false, PIP(soft_delete), 0, 0, 0, "COLUMN",
         "a delete sets this extra column of the sink table to the source's commit time instead of "
         "removing the row; an insert of the key again clears it"},
        {"dead_letter_topic", K_STR, NULL, T_ALL, 0, true, false, PIP(dead_letter_topic), 0, 0, 0, "TOPIC",
         "with on_bad_message = dead_letter: where those messages go; default cdcsync.dead.<pipeline>"},
        {"sync_sequences", K_BOOL, "no", T_ALL, 0, true, false, PIP(sync_sequences), 0, 0, 0, "yes | no",
         "PostgreSQL source and sink: copy the values of the sequences the tables use (serial, identity, "
         "nextval() defaults) onto the sink's, never backwards, every sync_sequences_interval_s, on SIGHUP and "
         "when the pipeline stops"},
        {"sync_sequences_interval_s", K_INT, "60", T_ALL, 0, true, false, PIP(sync_sequences_interval_s), 0, 1, 86400,
         "1..86400", "with sync_sequences = yes: seconds between two syncs of the sequence values"},
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))
_Static_assert(NKEYS(conf_connector_keys) <= CONF_MAX_KEYS && NKEYS(conf_pipeline_keys) <= CONF_MAX_KEYS &&
                       NKEYS(conf_service_keys) <= CONF_MAX_KEYS,
               "grow CONF_MAX_KEYS");
const size_t conf_nservice_keys = NKEYS(conf_service_keys);
const size_t conf_nconnector_keys = NKEYS(conf_connector_keys);
const size_t conf_npipeline_keys = NKEYS(conf_pipeline_keys);
_Static_assert(sizeof(ConflictPolicy) == sizeof(int) && sizeof(ResolvePolicy) == sizeof(int) &&
                       sizeof(SnapshotMode) == sizeof(int) && sizeof(BadMessagePolicy) == sizeof(int),
               "K_INDEX stores an int");

const char *conf_types_text(unsigned types, char *buf, size_t len) {
        size_t n = 0;
        char name[32];
        buf[0] = '\0';
        for (int t = 0; t < 3; t++)
                if (types & (1u << t))
                        n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " and " : "",
                                              conf_type_name(t, name, sizeof(name)));
        return buf;
}

const char *conf_type_name(int t, char *buf, size_t len) {
        const char *s = conf_connector_keys[0].values; /* the `type` key's: "postgres | mysql | kafka" */
        for (; t > 0 && *s; t--) {
                s += strcspn(s, " |");
                s += strspn(s, " |");
        }
        snprintf(buf, len, "%.*s", (int)strcspn(s, " |"), s);
        return buf;
}
