/* The conf file: one key table per section drives parsing (libinih), validation, error messages
 * and the documented reference conf (conf_print_reference). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cdcsync/conf.h"
#include "cdcsync/guard.h"
#include "cdcsync/secret.h"
#include "cdcsync/text.h"
#include "conf_ini.h"

/* ---- the key tables ---------------------------------------------------------------------- */

typedef enum {
        K_STR,
        K_DSN,          /* char *: a literal password in it needs a private conf */
        K_CHOICE,       /* char *: one of values */
        K_INDEX,        /* int-sized enum: the index of the value in values */
        K_FIRST_CHOICE, /* bool: whether the value is the first of values */
        K_LOGLEVEL,
        K_INT,  /* int in min..max */
        K_U32,  /* uint32_t in min..max */
        K_BOOL, /* yes|no|true|false|on|off|1|0 */
        K_LISTEN,
        K_SLOT,
        K_TOPIC,
        K_TABLES,
        K_NAMES,
        K_MAPS,
        K_PASSWORD,
        K_PASSWORD_FILE,
        K_KAFKA_PROP,
} KeyKind;

enum { T_PG = 1, T_MY = 2, T_KAFKA = 4, T_ALL = 7 };
static const char *const type_names[] = {"postgres", "mysql", "kafka"};

typedef struct {
        const char *name;
        KeyKind kind;
        const char *def;   /* default as written in the conf; NULL: none */
        unsigned types;    /* connector types it applies to (T_ALL outside connectors) */
        unsigned required; /* connector types that must set it (T_ALL: always required) */
        bool reloadable;   /* SIGHUP applies it; else a restart is needed */
        bool secret;       /* its value is never echoed */
        size_t off;        /* field in Conf / ConnectorConf / PipelineConf */
        size_t count_off;  /* int count field of a list */
        long long min, max;
        const char *values; /* accepted values, for errors and the reference */
        const char *help;
} ConfKey;

#define SVC(f) offsetof(Conf, f)
#define CON(f) offsetof(ConnectorConf, f)
#define PIP(f) offsetof(PipelineConf, f)

static const ConfKey service_keys[] = {
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
};

static const ConfKey connector_keys[] = {
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
        {"timeout_s", K_INT, "30", T_ALL, 0, true, false, CON(timeout_s), 0, 1, 3600, "1..3600",
         "seconds without an answer (on a stream: without data or keepalive) before the server counts as "
         "unreachable and the pipeline reconnects; also bounds connecting (at most 10 s) and TCP keepalives"},
};

static const ConfKey pipeline_keys[] = {
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
        {"snapshot", K_INDEX, "initial", T_ALL, 0, true, false, PIP(snapshot_mode), 0, 0, 0,
         "initial | never | merge | replace",
         "a new pipeline's first copy: initial into empty sink tables only (bidirectional: merge), never: "
         "none, merge: keep the sink's rows, replace: empty them first"},
        {"start_position", K_STR, NULL, T_ALL, 0, true, false, PIP(start_position), 0, 0, 0, "FILE:POS | GTID | LSN",
         "with snapshot = never: where a new pipeline starts; default now"},
        {"tombstone_days", K_INT, "7", T_ALL, 0, true, false, PIP(tombstone_days), 0, 1, 36500, "1..36500",
         "days a deleted row's version is kept; an older change can revive it"},
        {"on_bad_message", K_INDEX, "error", T_ALL, 0, true, false, PIP(on_bad_message), 0, 0, 0,
         "error | skip | dead_letter",
         "kafka source, a message that is no change event: stop, skip it, or send it to dead_letter_topic"},
        {"dead_letter_topic", K_STR, NULL, T_ALL, 0, true, false, PIP(dead_letter_topic), 0, 0, 0, "TOPIC",
         "with on_bad_message = dead_letter: where those messages go; default cdcsync.dead.<pipeline>"},
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))
#define MAX_KEYS 32 /* section_apply's seen[] */
_Static_assert(NKEYS(connector_keys) <= MAX_KEYS && NKEYS(pipeline_keys) <= MAX_KEYS && NKEYS(service_keys) <= MAX_KEYS,
               "grow MAX_KEYS");
_Static_assert(sizeof(ConflictPolicy) == sizeof(int) && sizeof(ResolvePolicy) == sizeof(int) &&
                       sizeof(SnapshotMode) == sizeof(int) && sizeof(BadMessagePolicy) == sizeof(int),
               "K_INDEX stores an int");

/* ---- values -------------------------------------------------------------------------------- */

/* Index of v among "a | b | c", or -1. */
static int choice_index(const char *values, const char *v) {
        size_t vlen = strlen(v);
        int idx = 0;
        for (const char *s = values; *s; idx++) {
                size_t n = strcspn(s, " |");
                if (n == vlen && strncmp(s, v, n) == 0)
                        return idx;
                s += n;
                s += strspn(s, " |");
        }
        return -1;
}

static int parse_ll(const char *v, long long min, long long max, long long *ret) {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < min || x > max)
                return -EINVAL;
        *ret = x;
        return 0;
}

static bool valid_listen(const char *v) {
        const char *colon;
        long long port;
        if (v[0] == '[') {
                const char *close = strchr(v, ']');
                if (!close || close == v + 1 || close[1] != ':' ||
                    strcspn(v + 1, "]") != strspn(v + 1, "0123456789abcdefABCDEF:."))
                        return false; /* [IPv6]:port */
                colon = close + 1;
        } else {
                colon = strchr(v, ':');
                if (!colon || colon == v || strchr(colon + 1, ':'))
                        return false;
        }
        return parse_ll(colon + 1, 1, 65535, &port) == 0;
}

static bool valid_slot(const char *v) {
        if (strlen(v) > 63)
                return false;
        for (; *v; v++)
                if (!islower((unsigned char)*v) && !isdigit((unsigned char)*v) && *v != '_')
                        return false;
        return true;
}

static bool valid_topic(const char *v) {
        for (const char *s = strchr(v, '{'); s; s = strchr(s + 1, '{'))
                if (strncmp(s, "{connector}", 11) && strncmp(s, "{schema}", 8) && strncmp(s, "{table}", 7))
                        return false;
        return true;
}

/* A Kafka topic name as the brokers accept it. */
static bool valid_kafka_topic(const char *v) {
        size_t n = strlen(v);
        return n >= 1 && n <= 249 && strcmp(v, ".") != 0 && strcmp(v, "..") != 0 &&
               strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* "schema.table" (wild: or "schema.*"), no blanks. */
static bool valid_table(const char *v, bool wild) {
        const char *dot = strchr(v, '.');
        if (!dot || dot == v || !dot[1] || strchr(dot + 1, '.') || strpbrk(v, " \t"))
                return false;
        const char *star = strchr(v, '*');
        return !star || (wild && star == dot + 1 && !star[1]);
}

/* Splits a comma list into trimmed, owned items; -EINVAL when an item is empty. */
static int split_list(const char *v, char ***ret, int *ret_n) {
        char **items = NULL;
        int n = 0, r = -ENOMEM;
        for (const char *s = v;; s++) {
                size_t len = strcspn(s, ",");
                char **a = reallocarray(items, (size_t)n + 1, sizeof(*a));
                if (!a)
                        goto out;
                items = a;
                if (!(items[n] = strndup(s, len)))
                        goto out;
                char *t = conf_trim(items[n]);
                memmove(items[n], t, strlen(t) + 1);
                if (!*items[n++]) {
                        r = -EINVAL;
                        goto out;
                }
                s += len;
                if (!*s)
                        break;
        }
        *ret = items;
        *ret_n = n;
        items = NULL;
        n = 0;
        r = 0;
out:
        for (int i = 0; i < n; i++)
                free(items[i]);
        free(items);
        return r;
}

static void free_list(char **items, int n) {
        for (int i = 0; i < n; i++)
                free(items[i]);
        free(items);
}

static int parse_maps(const char *v, TableMap **ret, int *ret_n) {
        char **items = NULL;
        int n = 0, r = split_list(v, &items, &n);
        TableMap *maps = r == 0 ? calloc((size_t)n, sizeof(*maps)) : NULL;
        if (r == 0 && !maps)
                r = -ENOMEM;
        for (int i = 0; r == 0 && i < n; i++) {
                char *arrow = strstr(items[i], "->");
                if (!arrow) {
                        r = -EINVAL;
                        break;
                }
                *arrow = '\0';
                char *from = conf_trim(items[i]), *to = conf_trim(arrow + 2);
                bool fw = strcmp(strchr(from, '.') ? strchr(from, '.') : "", ".*") == 0;
                bool tw = strcmp(strchr(to, '.') ? strchr(to, '.') : "", ".*") == 0;
                if (!valid_table(from, fw) || !valid_table(to, tw) || fw != tw) {
                        r = -EINVAL;
                        break;
                }
                maps[i].from = strdup(from);
                maps[i].to = strdup(to);
                if (!maps[i].from || !maps[i].to)
                        r = -ENOMEM;
        }
        free_list(items, n);
        if (r < 0) {
                for (int i = 0; maps && i < n; i++)
                        free(maps[i].from), free(maps[i].to);
                free(maps);
                return r;
        }
        *ret = maps;
        *ret_n = n;
        return 0;
}

/* Refuses a password written in a conf file that others can read. */
static bool literal_secret_ok(ConfParser *p, const ConfEntry *e) {
        if (!p->others_can_read)
                return true;
        conf_err(p, e->line,
                 "%s holds a password but %s is readable by others — chmod 600 %s or use "
                 "password_file",
                 e->key, p->path, p->path);
        return false;
}

/* Stores one value into its field; reports a bad one. */
static void key_apply(ConfParser *p, const ConfKey *k, void *obj, const ConfEntry *e) {
        char *v = e->expanded, **list = NULL, err[512];
        void *field = (char *)obj + k->off;
        int *count = (int *)((char *)obj + k->count_off), n = 0, idx, r = 0;
        long long x;
        const char *raw = k->secret ? "" : e->value;
        const char *q = k->secret ? "" : " '", *qe = k->secret ? "" : "'";

        if (!*v) {
                conf_err(p, e->line, "%s is empty — give it a value or remove the line", e->key);
                return;
        }
        switch (k->kind) {
        case K_STR:
        case K_DSN:
        case K_LISTEN:
        case K_SLOT:
        case K_TOPIC:
                if ((k->kind == K_LISTEN && strcmp(v, "off") != 0 && !valid_listen(v)) ||
                    (k->kind == K_SLOT && !valid_slot(v)) || (k->kind == K_TOPIC && !valid_topic(v)))
                        goto bad;
                if (k->kind == K_DSN && secret_dsn_has_password(e->value) && !literal_secret_ok(p, e))
                        return;
                if (k->kind == K_LISTEN && strcmp(v, "off") == 0)
                        return;
                if (!(*(char **)field = strdup(v)))
                        p->oom = true;
                return;
        case K_CHOICE:
        case K_INDEX:
        case K_FIRST_CHOICE:
                if ((idx = choice_index(k->values, v)) < 0)
                        goto bad;
                if (k->kind == K_CHOICE && !(*(char **)field = strdup(v)))
                        p->oom = true;
                if (k->kind == K_INDEX)
                        memcpy(field, &idx, sizeof(int));
                if (k->kind == K_FIRST_CHOICE)
                        *(bool *)field = idx == 0;
                return;
        case K_LOGLEVEL: {
                LogLevel l;
                if (log_level_parse(v, &l) < 0)
                        goto bad;
                memcpy(field, &l, sizeof(l));
                return;
        }
        case K_INT:
        case K_U32:
                if (parse_ll(v, k->min, k->max, &x) < 0)
                        goto bad;
                if (k->kind == K_INT)
                        *(int *)field = (int)x;
                else
                        *(uint32_t *)field = (uint32_t)x;
                return;
        case K_BOOL:
                if ((idx = choice_index("yes | true | on | 1 | no | false | off | 0", v)) < 0)
                        goto bad;
                *(bool *)field = idx < 4;
                return;
        case K_TABLES:
        case K_NAMES:
                if ((r = split_list(v, &list, &n)) < 0)
                        goto bad_list;
                for (int i = 0; i < n; i++)
                        for (int j = 0; j < i; j++)
                                if (strcmp(list[i], list[j]) == 0) {
                                        conf_err(p, e->line, "%s lists %s twice — keep one", e->key, list[i]);
                                        free_list(list, n);
                                        return;
                                }
                for (int i = 0; i < n; i++)
                        if (k->kind == K_TABLES ? !valid_table(list[i], false) && !(n == 1 && strcmp(list[i], "*") == 0)
                                                : !conf_valid_name(list[i])) {
                                free_list(list, n);
                                goto bad;
                        }
                if (k->kind == K_TABLES && strcmp(list[0], "*") == 0) {
                        ((PipelineConf *)obj)->all_tables = true;
                        free_list(list, n);
                        return;
                }
                *(char ***)field = list;
                *count = n;
                return;
        case K_MAPS:
                if ((r = parse_maps(v, (TableMap **)field, count)) < 0)
                        goto bad_list;
                return;
        case K_PASSWORD:
        case K_PASSWORD_FILE:
                if (*(char **)field) {
                        conf_err(p, e->line, "both password and password_file are set — keep one");
                        return;
                }
                if (k->kind == K_PASSWORD) {
                        if (secret_is_literal(e->value) && !literal_secret_ok(p, e))
                                return;
                        if (!(*(char **)field = strdup(v)))
                                p->oom = true;
                } else if (secret_read_file(v, p->dir, (char **)field, err, sizeof(err)) < 0) {
                        conf_err(p, e->line, "%s: %s", e->key, err);
                }
                return;
        case K_KAFKA_PROP: {
                ConnectorConf *c = obj;
                bool secret = strstr(e->key, "password") || strstr(e->key, "secret");
                if (secret && secret_is_literal(e->value) && !literal_secret_ok(p, e))
                        return;
                KeyValue *a = conf_grow(p, c->kafka_props, c->nkafka_props, sizeof(*a));
                if (!a)
                        return;
                c->kafka_props = a;
                a[c->nkafka_props] = (KeyValue){strdup(e->key + 6), strdup(v)};
                if (!a[c->nkafka_props].key || !a[c->nkafka_props].value)
                        p->oom = true;
                c->nkafka_props++;
                return;
        }
        }
bad_list:
        if (r == -ENOMEM) {
                p->oom = true;
                return;
        }
bad:
        if (k->min < k->max)
                conf_err(p, e->line, "%s =%s%s%s is not valid — use a whole number in %s", e->key, q, raw, qe,
                         k->values);
        else
                conf_err(p, e->line, "%s =%s%s%s is not valid — use %s%s", e->key, q, raw, qe,
                         strchr(k->values, '|') ? "one of " : "", k->values);
}

/* "postgres and mysql" for a T_* mask. */
static const char *types_text(unsigned types, char *buf, size_t len) {
        size_t n = 0;
        buf[0] = '\0';
        for (int t = 0; t < 3; t++)
                if (types & (1u << t))
                        n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " and " : "", type_names[t]);
        return buf;
}

static const ConfKey *key_find(const ConfKey *table, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(table[i].name, key) == 0 ||
                    (table[i].kind == K_KAFKA_PROP && strncmp(key, "kafka.", 6) == 0 && key[6]))
                        return &table[i];
        return NULL;
}

static const char *section_title(const ConfSection *s, char *buf, size_t len) {
        static const char *const kinds[] = {"service", "connector.", "pipeline."};
        snprintf(buf, len, "%s%s", kinds[s->kind], s->kind == SEC_SERVICE ? "" : s->name);
        return buf;
}

static uint64_t fnv(uint64_t h, const void *data, size_t len) {
        const unsigned char *b = data;
        for (size_t i = 0; i < len; i++)
                h = (h ^ b[i]) * 0x100000001b3ULL;
        return h;
}

static int entry_cmp(const void *a, const void *b) {
        return strcmp((*(ConfEntry *const *)a)->key, (*(ConfEntry *const *)b)->key);
}

/* Hash of the section's keys and expanded values, in key order: reordering lines is no change,
 * a changed ${ENV} or password file is. Never printed. */
static uint64_t section_hash(ConfParser *p, ConfSection *s, const char *secret) {
        ConfEntry **sorted = calloc((size_t)s->nentries + 1, sizeof(*sorted));
        uint64_t h = 0xcbf29ce484222325ULL;
        if (!sorted) {
                p->oom = true;
                return 0;
        }
        for (int i = 0; i < s->nentries; i++)
                sorted[i] = &s->entries[i];
        qsort(sorted, (size_t)s->nentries, sizeof(*sorted), entry_cmp);
        h = fnv(h, s->name, strlen(s->name) + 1);
        for (int i = 0; i < s->nentries; i++) {
                const char *v = sorted[i]->expanded ? sorted[i]->expanded : sorted[i]->value;
                h = fnv(h, sorted[i]->key, strlen(sorted[i]->key) + 1);
                h = fnv(h, v, strlen(v) + 1);
        }
        if (secret)
                h = fnv(h, secret, strlen(secret) + 1);
        free(sorted);
        return h;
}

/* Applies a section's entries and the defaults through a key table. type_mask: the connector's
 * type (T_ALL outside connectors, 0 when the type is missing or bad: only `type` is required). */
static void section_apply(ConfParser *p, ConfSection *s, const ConfKey *table, size_t nkeys, void *obj,
                          unsigned type_mask) {
        bool seen[MAX_KEYS] = {false};
        char title[80], err[512];
        section_title(s, title, sizeof(title));
        for (int i = 0; i < s->nentries; i++) {
                ConfEntry *e = &s->entries[i];
                const ConfKey *k = key_find(table, nkeys, e->key);
                if (!k) {
                        const char *best = NULL;
                        int bestd = 3;
                        for (size_t j = 0; j < nkeys; j++) {
                                int d = conf_edit_distance(e->key, table[j].name);
                                if (d < bestd && table[j].kind != K_KAFKA_PROP)
                                        bestd = d, best = table[j].name;
                        }
                        if (best)
                                conf_err(p, e->line, "unknown key %s in [%s] — did you mean %s?", e->key, title, best);
                        else
                                conf_err(p, e->line,
                                         "unknown key %s in [%s] — remove it; the keys are "
                                         "listed in cdcsync.conf",
                                         e->key, title);
                        continue;
                }
                seen[k - table] = true;
                if (type_mask && !(k->types & type_mask)) {
                        char for_types[64];
                        conf_err(p, e->line, "%s does not apply to a %s connector — remove it (it is for %s)", e->key,
                                 type_names[__builtin_ctz(type_mask)],
                                 types_text(k->types, for_types, sizeof(for_types)));
                        continue;
                }
                if (secret_expand_env(e->value, &e->expanded, err, sizeof(err)) < 0) {
                        conf_err(p, e->line, "%s: %s", e->key, err);
                        continue;
                }
                /* The line was checked as text; what ${ENV} brought in is checked here (a secret
                 * may hold any byte: it never reaches a name or a message). */
                size_t at;
                int bad = k->secret || k->kind == K_PASSWORD || k->kind == K_PASSWORD_FILE
                                  ? 0
                                  : text_check(e->expanded, strlen(e->expanded), &at);
                if (bad) {
                        conf_err(p, e->line, "%s: byte %zu of its value (after ${...}) is %s — fix the variable",
                                 e->key, at + 1, bad == TEXT_NOT_UTF8 ? "not UTF-8 text" : "a control character");
                        continue;
                }
                key_apply(p, k, obj, e);
        }
        for (size_t j = 0; j < nkeys; j++) {
                const ConfKey *k = &table[j];
                unsigned applies = type_mask ? type_mask : T_ALL;
                if (seen[j] || !(k->types & applies))
                        continue;
                if ((type_mask && (k->required & type_mask)) || (!type_mask && k->required == T_ALL))
                        conf_err(p, s->line, "[%s] has no %s — add %s = %s", title, k->name, k->name, k->values);
                else if (k->def && (type_mask || k->types == T_ALL)) {
                        ConfEntry d = {.key = (char *)k->name,
                                       .value = (char *)k->def,
                                       .expanded = (char *)k->def,
                                       .line = s->line};
                        key_apply(p, k, obj, &d);
                }
        }
}

static void connector_load(ConfParser *p, ConfSection *s, ConnectorConf *c) {
        unsigned mask = 0;
        c->name = strdup(s->name);
        c->file = p->conf->path;
        c->line = s->line;
        for (int i = 0; i < s->nentries; i++)
                if (strcmp(s->entries[i].key, "type") == 0) {
                        int t = choice_index(connector_keys[0].values, s->entries[i].value);
                        mask = t < 0 ? 0 : 1u << t;
                }
        section_apply(p, s, connector_keys, NKEYS(connector_keys), c, mask);
        c->hash = section_hash(p, s, c->password);
}

static const ConfEntry *entry_get(const ConfSection *s, const char *key) {
        for (int i = 0; i < s->nentries; i++)
                if (strcmp(s->entries[i].key, key) == 0)
                        return &s->entries[i];
        return NULL;
}

static void pipeline_load(ConfParser *p, ConfSection *s, PipelineConf *pl) {
        Conf *c = p->conf;
        const ConfEntry *e;
        pl->name = strdup(s->name);
        pl->file = c->path;
        pl->line = s->line;
        section_apply(p, s, pipeline_keys, NKEYS(pipeline_keys), pl, T_ALL);
        if (pl->source_name && !(pl->source = conf_connector(c, pl->source_name)))
                conf_err(p, entry_get(s, "source")->line,
                         "source = %s names no connector — define "
                         "[connector.%s] or fix the name",
                         pl->source_name, pl->source_name);
        if (pl->sink_name && !(pl->sink = conf_connector(c, pl->sink_name)))
                conf_err(p, entry_get(s, "sink")->line,
                         "sink = %s names no connector — define "
                         "[connector.%s] or fix the name",
                         pl->sink_name, pl->sink_name);
        if (pl->source && pl->source == pl->sink)
                conf_err(p, entry_get(s, "sink")->line,
                         "source and sink are both %s — a pipeline "
                         "joins two different connectors",
                         pl->sink_name);
        for (int i = 0; i < pl->npriority; i++)
                if (!conf_connector(c, pl->priority[i]))
                        conf_err(p, entry_get(s, "priority")->line,
                                 "priority names %s, which is no "
                                 "connector — define [connector.%s] or fix the name",
                                 pl->priority[i], pl->priority[i]);
        if (pl->resolve == RESOLVE_PRIORITY && pl->npriority == 0)
                conf_err(p, entry_get(s, "resolve")->line,
                         "resolve = priority needs an order — add "
                         "priority = CONNECTOR, ...");
        pl->snapshot = pl->snapshot_mode != SNAPSHOT_NEVER;
        if (pl->start_position && pl->snapshot)
                conf_err(p, entry_get(s, "start_position")->line,
                         "start_position only applies with "
                         "snapshot = never — add snapshot = never or remove start_position");
        for (int i = 0; i < pl->nmaps && !pl->all_tables; i++)
                if (!strstr(pl->maps[i].from, ".*") && !conf_pipeline_has_table(pl, pl->maps[i].from, NULL))
                        conf_err(p, entry_get(s, "map")->line,
                                 "map renames %s, which is not in tables "
                                 "— add it to tables or fix the name",
                                 pl->maps[i].from);
        e = entry_get(s, "source");
        for (int i = 0; pl->source && i < c->npipelines && &c->pipelines[i] != pl; i++) {
                const PipelineConf *o = &c->pipelines[i];
                /* a connector without a type was reported already */
                if (o->source != pl->source || !pl->source->type || strcmp(pl->source->type, "kafka") == 0)
                        continue;
                if (strcmp(pl->source->type, "postgres") == 0 && pl->source->slot)
                        conf_err(p, e->line,
                                 "pipelines %s and %s both read slot %s of %s — a slot "
                                 "feeds one pipeline: remove slot from [connector.%s] (each pipeline "
                                 "then gets its own) or give each pipeline its own connector",
                                 o->name, pl->name, pl->source->slot, pl->source->name, pl->source->name);
                else if (strcmp(pl->source->type, "mysql") == 0)
                        conf_err(p, e->line,
                                 "pipelines %s and %s both read %s with server_id %u — the "
                                 "server drops one of them: give each pipeline its own [connector.*] "
                                 "with its own server_id",
                                 o->name, pl->name, pl->source->name, pl->source->server_id);
        }
        bool kafka = pl->source && pl->source->type && strcmp(pl->source->type, "kafka") == 0;
        if ((e = entry_get(s, "on_bad_message")) && pl->source && pl->source->type && !kafka)
                conf_err(p, e->line,
                         "on_bad_message applies to a kafka source — remove it (a %s source stops on what it "
                         "cannot read)",
                         pl->source->type);
        if ((e = entry_get(s, "dead_letter_topic")) && pl->on_bad_message != BAD_MESSAGE_DEAD_LETTER)
                conf_err(p, e->line,
                         "dead_letter_topic is used only with on_bad_message = dead_letter — set that, or remove "
                         "dead_letter_topic");
        else if (e && pl->dead_letter_topic && !valid_kafka_topic(pl->dead_letter_topic))
                conf_err(p, e->line,
                         "dead_letter_topic = '%s' is not valid — use 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'",
                         pl->dead_letter_topic);
        if (pl->on_bad_message == BAD_MESSAGE_DEAD_LETTER && !pl->dead_letter_topic &&
            asprintf(&pl->dead_letter_topic, "cdcsync.dead.%s", pl->name) < 0) {
                pl->dead_letter_topic = NULL;
                p->oom = true;
        }
        pl->hash = section_hash(p, s, NULL);
        if (pl->source)
                pl->hash = fnv(pl->hash, &pl->source->hash, sizeof(pl->source->hash));
        if (pl->sink)
                pl->hash = fnv(pl->hash, &pl->sink->hash, sizeof(pl->sink->hash));
}

/* A MySQL connector needs a server_id to read the server's binlog: it is its id as a replica, and
 * also the mark on the writes of a sink whose writes a reverse pipeline reads back (the sink of a
 * bidirectional pipeline is the source of its reverse, so this covers it). The sink of one-way
 * pipelines may go without: it writes unmarked. s: the connector's section. */
static void connector_check_server_id(ConfParser *p, const ConfSection *s, const ConnectorConf *k) {
        const Conf *c = p->conf;
        if (!k->type || strcmp(k->type, "mysql") != 0 || entry_get(s, "server_id"))
                return;
        for (int i = 0; i < c->npipelines; i++)
                if (c->pipelines[i].source == k) {
                        conf_err(p, s->line,
                                 "[connector.%s] has no server_id — add server_id = 1..4294967295: pipeline %s "
                                 "reads the server's binlog as a replica with that id",
                                 k->name, c->pipelines[i].name);
                        return;
                }
}

static void guard_report(void *userdata, const PipelineConf *pl, const PipelineConf *other, bool error,
                         const char *message) {
        ConfParser *p = userdata;
        (void)other;
        char esc[1024], path[512], **w;
        if (error) {
                conf_err(p, pl->line, "%s", message);
                return;
        }
        if (!(w = conf_grow(p, p->conf->warnings, p->conf->nwarnings, sizeof(*w))))
                return;
        p->conf->warnings = w;
        text_escape(message, esc, sizeof(esc));
        text_escape(p->path, path, sizeof(path));
        if (asprintf(&w[p->conf->nwarnings], "%s:%d: %s", path, pl->line, esc) < 0)
                p->oom = true;
        else
                p->conf->nwarnings++;
}

/* What would destroy or loop, as far as the conf's text tells where each connector's data is: the
 * same dsn is the same database, the same MySQL host and port the same server (check --connect
 * asks the servers themselves). */
static void conf_guard(ConfParser *p) {
        Conf *c = p->conf;
        GuardPlace *places = calloc((size_t)c->nconnectors + 1, sizeof(*places));
        char(*hostport)[300] = calloc((size_t)c->nconnectors + 1, sizeof(*hostport));
        if (!places || !hostport) {
                p->oom = true;
                goto out;
        }
        for (int i = 0; i < c->nconnectors; i++) {
                const ConnectorConf *k = &c->connectors[i];
                if (!k->type)
                        continue;
                if (strcmp(k->type, "postgres") == 0 && k->dsn) {
                        places[i] = (GuardPlace){k->dsn, k->dsn, "the same dsn", "the same dsn"};
                } else if (strcmp(k->type, "mysql") == 0) {
                        snprintf(hostport[i], sizeof(hostport[i]), "mysql %s:%d", k->host ? k->host : "localhost",
                                 k->port);
                        places[i] = (GuardPlace){hostport[i], NULL, "the same host and port", "the same host and port"};
                }
        }
        GuardWorld w = {.places = places};
        if (guard_check(c, &w, guard_report, p) < 0)
                p->oom = true;
out:
        free(places);
        free(hostport);
}

/* Builds the Conf from the parsed sections: service, then connectors (pipelines point at them). */
static void conf_build(ConfParser *p) {
        Conf *c = p->conf;
        ConfSection none = {.kind = SEC_SERVICE, .name = "service", .line = 1};
        ConfSection *svc = &none;
        int ncon = 0, npip = 0;
        for (int i = 0; i < p->nsections; i++) {
                ncon += p->sections[i].kind == SEC_CONNECTOR;
                npip += p->sections[i].kind == SEC_PIPELINE;
                if (p->sections[i].kind == SEC_SERVICE)
                        svc = &p->sections[i];
        }
        section_apply(p, svc, service_keys, NKEYS(service_keys), c, T_ALL);
        if (!c->metrics_user != !c->metrics_password)
                conf_err(p, svc->line,
                         "metrics_user and metrics_password_file go together — set "
                         "both for basic auth, or neither");
        if (!c->metrics_tls_cert != !c->metrics_tls_key)
                conf_err(p, svc->line,
                         "metrics_tls_cert and metrics_tls_key go together — set both "
                         "for HTTPS, or neither");
        c->connectors = calloc((size_t)ncon + 1, sizeof(*c->connectors));
        c->pipelines = calloc((size_t)npip + 1, sizeof(*c->pipelines));
        if (!c->connectors || !c->pipelines) {
                p->oom = true;
                return;
        }
        for (int i = 0; i < p->nsections; i++)
                if (p->sections[i].kind == SEC_CONNECTOR)
                        connector_load(p, &p->sections[i], &c->connectors[c->nconnectors++]);
        for (int i = 0; i < p->nsections; i++)
                if (p->sections[i].kind == SEC_PIPELINE)
                        pipeline_load(p, &p->sections[i], &c->pipelines[c->npipelines++]);
        for (int i = 0, k = 0; i < p->nsections; i++)
                if (p->sections[i].kind == SEC_CONNECTOR)
                        connector_check_server_id(p, &p->sections[i], &c->connectors[k++]);
        /* A bidirectional pair never empties a side: its first copy merges. */
        for (int i = 0, n = 0; i < p->nsections; i++) {
                if (p->sections[i].kind != SEC_PIPELINE)
                        continue;
                const PipelineConf *a = &c->pipelines[n++];
                for (int j = 0; a->snapshot_mode == SNAPSHOT_REPLACE && a->source && a->sink && j < c->npipelines; j++)
                        if (a->source == c->pipelines[j].sink && a->sink == c->pipelines[j].source) {
                                conf_err(p, entry_get(&p->sections[i], "snapshot")->line,
                                         "snapshot = replace would empty the tables of %s, which pipeline %s "
                                         "copies into %s — a bidirectional pair merges: use snapshot = merge "
                                         "(or initial, which merges here)",
                                         a->sink_name, c->pipelines[j].name, a->source_name);
                                break;
                        }
        }
        conf_guard(p);
        if (npip == 0)
                conf_err(p, 1,
                         "no [pipeline.NAME] section — define at "
                         "least one pipeline (man cdcsync.conf shows the keys and an example)");
}

int conf_load(const char *path, FILE *errout, Conf **ret) {
        ConfParser p = {.path = path};
        int r;

        if (!(p.conf = calloc(1, sizeof(*p.conf))) || !(p.conf->path = strdup(path))) {
                r = -ENOMEM;
                goto out;
        }
        if ((r = conf_ini_read(&p, errout)) < 0)
                goto out;
        conf_build(&p);
        if (p.oom) {
                r = -ENOMEM;
                goto out;
        }
        if (p.nerrors > 0) {
                conf_ini_report(&p, errout);
                r = -EINVAL;
                goto out;
        }
        for (int i = 0; i < p.conf->npipelines; i++) {
                PipelineConf *a = &p.conf->pipelines[i];
                a->conf = p.conf;
                for (int j = 0; j < p.conf->npipelines; j++) {
                        const PipelineConf *b = &p.conf->pipelines[j];
                        if (a->source && a->sink && a->source == b->sink && a->sink == b->source)
                                a->bidirectional = true;
                }
        }
        *ret = p.conf;
        p.conf = NULL;
        r = 0;
out:
        conf_ini_done(&p);
        conf_free(p.conf);
        return r;
}

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

Conf *conf_free(Conf *c) {
        if (!c)
                return NULL;
        for (int i = 0; i < c->nconnectors; i++) {
                ConnectorConf *k = &c->connectors[i];
                char *strs[] = {k->name,     k->type,     k->dsn,    k->slot,    k->publication, k->host, k->user,
                                k->database, k->ssl_mode, k->ssl_ca, k->brokers, k->topic,       k->group};
                for (size_t j = 0; j < sizeof(strs) / sizeof(strs[0]); j++)
                        free(strs[j]);
                for (int j = 0; j < k->nkafka_props; j++) {
                        free(k->kafka_props[j].key);
                        free_secret(k->kafka_props[j].value);
                }
                free(k->kafka_props);
                free_secret(k->password);
        }
        for (int i = 0; i < c->npipelines; i++) {
                PipelineConf *pl = &c->pipelines[i];
                free(pl->name);
                free(pl->source_name);
                free(pl->sink_name);
                free_list(pl->tables, pl->ntables);
                for (int j = 0; j < pl->nmaps; j++)
                        free(pl->maps[j].from), free(pl->maps[j].to);
                free(pl->maps);
                free_list(pl->priority, pl->npriority);
                free(pl->start_position);
                free(pl->dead_letter_topic);
        }
        for (int i = 0; i < c->nwarnings; i++)
                free(c->warnings[i]);
        free(c->warnings);
        free(c->connectors);
        free(c->pipelines);
        free(c->path);
        free(c->state_dir);
        free(c->metrics_listen);
        free(c->metrics_user);
        free_secret(c->metrics_password);
        free(c->metrics_tls_cert);
        free(c->metrics_tls_key);
        free(c);
        return NULL;
}

const ConnectorConf *conf_connector(const Conf *c, const char *name) {
        for (int i = 0; i < c->nconnectors; i++)
                if (c->connectors[i].name && strcmp(c->connectors[i].name, name) == 0)
                        return &c->connectors[i];
        return NULL;
}

/* Whether "schema.table" (table NULL: schema holds "schema.table") equals "s.t". */
static bool table_eq(const char *st, const char *schema, const char *table) {
        if (!table)
                return strcmp(st, schema) == 0;
        size_t n = strlen(schema);
        return strncmp(st, schema, n) == 0 && st[n] == '.' && strcmp(st + n + 1, table) == 0;
}

int conf_map_table(const PipelineConf *p, const char *schema, const char *table, char *ret_schema, size_t schema_len,
                   char *ret_table, size_t table_len) {
        const char *to_schema = schema, *to_table = table;
        size_t slen = strlen(schema);
        const TableMap *wild = NULL;
        if (strcmp(schema, "cdcsync") == 0) /* our own bookkeeping keeps its place */
                p = NULL;
        if (p && p->sink && p->sink->type && strcmp(p->sink->type, "mysql") == 0 && p->sink->database) {
                to_schema = p->sink->database;
                slen = strlen(to_schema);
        }
        for (int i = 0; p && i < p->nmaps; i++) {
                const TableMap *m = &p->maps[i];
                if (table_eq(m->from, schema, table)) {
                        to_schema = m->to;
                        slen = strcspn(m->to, ".");
                        to_table = m->to + slen + 1;
                        wild = NULL;
                        break;
                }
                size_t n = strlen(m->from) - 2; /* "schema.*" */
                if (!wild && strcmp(m->from + n, ".*") == 0 && strlen(schema) == n && strncmp(m->from, schema, n) == 0)
                        wild = m;
        }
        if (wild) {
                to_schema = wild->to;
                slen = strlen(wild->to) - 2;
        }
        if (slen + 1 > schema_len || strlen(to_table) + 1 > table_len)
                return -ENAMETOOLONG;
        memcpy(ret_schema, to_schema, slen);
        ret_schema[slen] = '\0';
        memcpy(ret_table, to_table, strlen(to_table) + 1);
        return 0;
}

bool conf_pipeline_has_table(const PipelineConf *p, const char *schema, const char *table) {
        if (p->all_tables)
                return true;
        for (int i = 0; i < p->ntables; i++)
                if (table_eq(p->tables[i], schema, table))
                        return true;
        return false;
}

SnapshotMode conf_pipeline_copy_mode(const PipelineConf *p) {
        return p->bidirectional && p->snapshot_mode == SNAPSHOT_INITIAL ? SNAPSHOT_MERGE : p->snapshot_mode;
}

void conf_copy_refusal(const PipelineConf *p, const char *table, unsigned long long rows, bool at_least, char *buf,
                       size_t len) {
        snprintf(buf, len,
                 "sink table %s already holds %s%llu row%s, and snapshot = initial copies only into empty tables, "
                 "so nothing was copied — in [pipeline.%s] set snapshot = merge to keep them (a key on both sides "
                 "takes the source's row; a table without primary key cannot be merged), snapshot = replace to "
                 "empty the table first, or snapshot = never when it already equals the source",
                 table, at_least ? "at least " : "", rows, rows == 1 && !at_least ? "" : "s", p->name);
}

/* ---- the reference ------------------------------------------------------------------------- */

/* Two lines a key: ";KEY = DEFAULT" (or its accepted values), then its help and attributes. */
static void print_keys(FILE *out, const ConfKey *table, size_t n, bool service) {
        for (size_t i = 0; i < n; i++) {
                const ConfKey *k = &table[i];
                char attrs[256] = "", for_types[64];
                size_t len = 0;
#define ATTR(...) len += (size_t)snprintf(attrs + len, sizeof(attrs) - len, "; " __VA_ARGS__)
                if (k->def)
                        ATTR("values: %s", k->values);
                if (k->required == T_ALL)
                        ATTR("required");
                else if (k->required)
                        ATTR("required for %s", type_names[__builtin_ctz(k->required)]);
                if (k->types != T_ALL)
                        ATTR("%s only", types_text(k->types, for_types, sizeof(for_types)));
                if (service && !k->reloadable)
                        ATTR("needs a restart");
#undef ATTR
                fprintf(out, ";%s = %s\n;       %s%s\n", k->name, k->def ? k->def : k->values, k->help, attrs);
        }
}

int conf_timeout_ms(const ConnectorConf *c) {
        return (c && c->timeout_s > 0 ? c->timeout_s : 30) * 1000;
}

void conf_print_reference(FILE *out) {
        fputs("; cdcsync.conf — every key, its default and what it does.\n"
              ";\n"
              "; Generated from the key tables in engine/conf.c (conf_print_reference); a unit test\n"
              "; keeps this file equal to them. Copy what you need into /etc/cdcsync/cdcsync.conf;\n"
              "; conf/examples/ holds complete confs for the common pairs.\n"
              ";\n"
              "; Syntax: KEY = VALUE under [SECTION]; ';' or '#' starts a comment line, and ' ;' an\n"
              "; inline comment. Values are taken as written (no quoting). ${ENV_VAR} is replaced by\n"
              "; the environment variable in every value ($$ is a literal $). Errors are reported as\n"
              "; FILE:LINE: what is wrong — what to do, all at once; `cdcsync check` runs them.\n"
              ";\n"
              "; Secrets: password_file = PATH (relative to this file's directory; one trailing\n"
              "; newline is stripped), or a bare NAME read from $CREDENTIALS_DIRECTORY (systemd\n"
              "; LoadCredential=), or password = ${ENV_VAR}. A password written here literally\n"
              "; (password = ..., a DSN's password=, kafka.*password*) is refused unless this file is\n"
              "; private (chmod 600).\n"
              ";\n"
              "; Reload (SIGHUP): log_level applies at once; a pipeline restarts when its section or\n"
              "; one of its connectors' sections changed, the others keep streaming.\n"
              "; Each key shows its default, or the values it takes when it has none (then it is\n"
              "; unset unless required). The file is UTF-8 text of at most 1 MiB, lines of at most\n"
              "; 4093 characters, without control characters.\n\n",
              out);
        fputs("[service]\n", out);
        print_keys(out, service_keys, NKEYS(service_keys), true);
        fputs("\n; [connector.NAME] — one system; NAME (letters, digits, '_', '-') is its node id in\n"
              "; version vectors. Keys marked postgres, mysql or kafka belong to that type only.\n"
              ";[connector.NAME]\n",
              out);
        print_keys(out, connector_keys, NKEYS(connector_keys), false);
        fputs("\n; [pipeline.NAME] — one source/sink pair. Two pipelines in opposite directions\n"
              "; between the same connectors are bidirectional sync. A pipeline's source slot\n"
              "; (PostgreSQL) or server_id (MySQL) must not be shared with another pipeline, nor\n"
              "; its target tables (unless the two are each other's reverse); its source and sink\n"
              "; must be different databases. `cdcsync check` refuses what would destroy or loop.\n"
              ";[pipeline.NAME]\n",
              out);
        print_keys(out, pipeline_keys, NKEYS(pipeline_keys), false);
}

/* ---- the manual page ----------------------------------------------------------------------- */

/* s as roff text: a backslash is \e, a line never starts with a control character, and lines
 * break between words before 80 bytes (roff fills them again). */
static void man_text(FILE *out, const char *s) {
        size_t col = 0;
        while (*s) {
                size_t word = strcspn(s, " ");
                if (col > 0 && col + 1 + word > 78) {
                        fputc('\n', out);
                        col = 0;
                } else if (col > 0) {
                        fputc(' ', out);
                        col++;
                }
                if (col == 0 && (*s == '.' || *s == '\''))
                        col += (size_t)fprintf(out, "\\&");
                for (size_t i = 0; i < word; i++)
                        col += (size_t)fprintf(out, "%s", s[i] == '\\' ? "\\e" : (char[]){s[i], '\0'});
                s += word;
                s += strspn(s, " ");
        }
}

/* One tagged paragraph a key: "KEY = VALUES", then its help, default and attributes. */
static void man_keys(FILE *out, const ConfKey *table, size_t n, bool service) {
        for (size_t i = 0; i < n; i++) {
                const ConfKey *k = &table[i];
                char for_types[64];
                fputs(".TP\n\\fB", out);
                man_text(out, k->name);
                fputs("\\fR = \\fI", out);
                man_text(out, k->values);
                fputs("\\fR\n", out);
                man_text(out, k->help);
                fputs(".\n", out);
                if (k->def) {
                        fputs("Default: \\fB", out);
                        man_text(out, k->def);
                        fputs("\\fR.\n", out);
                }
                if (k->required == T_ALL)
                        fputs("Required.\n", out);
                if (k->types != T_ALL)
                        fprintf(out, "Only for %s connectors%s.\n", types_text(k->types, for_types, sizeof(for_types)),
                                k->required ? ", where it is required" : "");
                if (service && !k->reloadable)
                        fputs("A change needs a restart.\n", out);
        }
}

void conf_print_man(FILE *out) {
        fprintf(out,
                ".\\\" cdcsync.conf(5). Generated from the key tables in engine/conf.c (conf_print_man);\n"
                ".\\\" a unit test keeps this file equal to them: do not edit it, edit the tables.\n"
                ".TH CDCSYNC.CONF 5 2026-12-04 \"cdcsync %s\" \"File Formats Manual\"\n",
                CDCSYNC_VERSION);
        fputs(".SH NAME\n"
              "cdcsync.conf \\- configuration file of the cdcsync change-data-capture service\n"
              ".SH SYNOPSIS\n"
              ".B /etc/cdcsync/cdcsync.conf\n"
              ".SH DESCRIPTION\n"
              "The conf names the systems cdcsync talks to (connectors) and the pipelines\n"
              "between them: each pipeline reads the changes of a source connector's tables\n"
              "and applies them to a sink connector.\n"
              ".BR cdcsync (1)\n"
              "reads it at start, on\n"
              ".B SIGHUP\n"
              "and for\n"
              ".BR \"cdcsync check\" .\n"
              ".PP\n"
              "The file is INI text:\n"
              ".I KEY\n"
              "=\n"
              ".I VALUE\n"
              "lines under\n"
              ".B [service]\n"
              "(at most one),\n"
              ".BI [connector. NAME ]\n"
              "and\n"
              ".BI [pipeline. NAME ]\n"
              "headers; a NAME is 1 to 48 letters, digits, '_' or '-'.\n"
              "A line starting with ';' or '#' is a comment, and so is the rest of a line\n"
              "after a blank and ';'.\n"
              "Values are taken as written, without quoting.\n"
              "The file is a regular file of at most 1 MiB of UTF-8 text without control\n"
              "characters, in lines of at most 4093 characters.\n"
              ".BI ${ ENV_VAR }\n"
              "in any value is replaced by that environment variable ($$ is a literal $);\n"
              "an unset variable is an error.\n"
              ".PP\n"
              "Errors are reported all at once, each as\n"
              ".IR FILE : LINE :\n"
              "what is wrong \\(em what to do.\n"
              ".B cdcsync check\n"
              "runs every check without starting anything, and an unknown key is named with\n"
              "the key it most resembles.\n"
              ".PP\n"
              "The installed\n"
              ".I /etc/cdcsync/cdcsync.conf\n"
              "is the reference with every key commented out: the service refuses it until\n"
              "a pipeline is defined.\n"
              "Complete examples are installed in\n"
              ".IR /usr/share/doc/cdcsync/examples/ .\n"
              ".SS Secrets\n"
              "A password never has to sit in the conf:\n"
              ".B password_file\n"
              "=\n"
              ".I PATH\n"
              "(relative to the conf's directory; one trailing newline is stripped), a bare\n"
              ".B password_file\n"
              "=\n"
              ".I NAME\n"
              "read from\n"
              ".B $CREDENTIALS_DIRECTORY\n"
              "(systemd\n"
              ".BR LoadCredential= ),\n"
              "or\n"
              ".B password\n"
              "=\n"
              ".BR ${ENV_VAR} .\n"
              "A password written literally (password = ..., a dsn's password=, a kafka.* key\n"
              "holding password or secret) is refused unless the conf file is private\n"
              "(mode 600).\n"
              "Passwords never reach a log line or an error message.\n"
              ".SS Reload\n"
              "On\n"
              ".B SIGHUP\n"
              "(systemctl reload cdcsync) the file is read again; a conf with errors is\n"
              "rejected and the running one stays.\n"
              ".B log_level\n"
              "applies at once; a pipeline restarts from its checkpoint when its section or\n"
              "one of its connectors' sections changed, the others keep streaming; the\n"
              "service keys marked so need a restart.\n"
              ".SH KEYS\n"
              "Each key is shown with the values it takes. A key with a default takes it\n"
              "when unset; a key without one is unset unless required.\n"
              ".SS [service]\n"
              "How the service runs. The section may be left out.\n",
              out);
        man_keys(out, service_keys, NKEYS(service_keys), true);
        fputs(".SS [connector.NAME]\n"
              "One system: a PostgreSQL database, a MariaDB/MySQL server or a Kafka cluster.\n"
              "NAME is the connector's node id in version vectors.\n"
              "A connector may be the source of one pipeline and the sink of another.\n",
              out);
        man_keys(out, connector_keys, NKEYS(connector_keys), false);
        fputs(".SS [pipeline.NAME]\n"
              "One source/sink pair. Two pipelines in opposite directions between the same\n"
              "connectors are bidirectional sync. A pipeline's source slot (PostgreSQL) or\n"
              "server_id (MySQL) must not be shared with another pipeline, nor its target\n"
              "tables (unless the two are each other's reverse); its source and sink must be\n"
              "different databases; two pipelines' names must not give one slot or\n"
              "publication name (cdcsync_<pipeline>, lower-cased, other characters made '_').\n"
              ".B cdcsync check\n"
              "refuses what would destroy or loop, and\n"
              ".B check \\-\\-connect\n"
              "asks the servers what the conf cannot tell.\n",
              out);
        man_keys(out, pipeline_keys, NKEYS(pipeline_keys), false);
        fputs(".SH FILES\n"
              ".TP\n"
              ".I /etc/cdcsync/cdcsync.conf\n"
              "The conf read by default and by the systemd unit; root:cdcsync, mode 0640.\n"
              ".TP\n"
              ".I /usr/share/doc/cdcsync/cdcsync.conf.example\n"
              "Every key with its default and help, as in this page.\n"
              ".TP\n"
              ".I /usr/share/doc/cdcsync/examples/\n"
              "Complete confs for the common pairs.\n"
              ".SH EXAMPLES\n"
              "One PostgreSQL database streamed into another:\n"
              ".PP\n"
              ".in +4n\n"
              ".EX\n"
              "[service]\n"
              "state_dir      = /var/lib/cdcsync\n"
              "metrics_listen = 127.0.0.1:9780\n"
              "\n"
              "[connector.shop]\n"
              "type = postgres\n"
              "dsn  = host=db1 dbname=shop user=cdcsync sslmode=verify\\-full\n"
              "password_file = /etc/cdcsync/shop.pass\n"
              "\n"
              "[connector.replica]\n"
              "type = postgres\n"
              "dsn  = host=db2 dbname=shop user=cdcsync sslmode=verify\\-full\n"
              "password_file = replica.pass\n"
              "create_tables = yes\n"
              "\n"
              "[pipeline.orders]\n"
              "source = shop\n"
              "sink   = replica\n"
              "tables = public.orders, public.customers\n"
              ".EE\n"
              ".in\n"
              ".SH SEE ALSO\n"
              ".BR cdcsync (1),\n"
              ".BR systemd.exec (5),\n"
              ".BR systemd-sysusers (8),\n"
              ".BR systemd-tmpfiles (8)\n",
              out);
}
