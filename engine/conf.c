/* The conf file: one key table per section drives parsing (libinih), validation, error messages
 * and the documented reference conf (conf_print_reference). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cdcsync/conf.h"
#include "cdcsync/shape.h"
#include "cdcsync/connector.h"
#include "cdcsync/guard.h"
#include "cdcsync/hash.h"
#include "cdcsync/secret.h"
#include "cdcsync/text.h"
#include "conf_ini.h"
#include "conf_keys.h"

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

/* "10GiB", "500 MB", "1048576", "off" (0). */
static int parse_size(const char *v, int64_t *ret) {
        static const struct {
                const char *unit;
                int64_t mult;
        } units[] = {
                {"", 1},
                {"B", 1},
                {"kB", 1000},
                {"KB", 1000},
                {"MB", 1000 * 1000},
                {"GB", 1000 * 1000 * 1000},
                {"TB", INT64_C(1000) * 1000 * 1000 * 1000},
                {"KiB", 1024},
                {"MiB", 1024 * 1024},
                {"GiB", 1024 * 1024 * 1024},
                {"TiB", INT64_C(1024) * 1024 * 1024 * 1024},
        };
        if (strcmp(v, "off") == 0) {
                *ret = 0;
                return 0;
        }
        if (*v < '0' || *v > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v)
                return -EINVAL;
        while (*end == ' ')
                end++;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strcmp(end, units[i].unit) == 0) {
                        if (x > INT64_MAX / units[i].mult)
                                return -EINVAL;
                        *ret = (int64_t)x * units[i].mult;
                        return 0;
                }
        return -EINVAL;
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
        case K_SIZE: {
                int64_t bytes;
                if (parse_size(v, &bytes) < 0)
                        goto bad;
                memcpy(field, &bytes, sizeof(bytes));
                return;
        }
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

static int entry_cmp(const void *a, const void *b) {
        return strcmp((*(ConfEntry *const *)a)->key, (*(ConfEntry *const *)b)->key);
}

/* Digest of the section's name, keys and expanded values, in key order: reordering lines is no
 * change, a changed ${ENV} or password file is. Never printed. */
static uint64_t section_hash(ConfParser *p, ConfSection *s, const char *secret) {
        ConfEntry **sorted = calloc((size_t)s->nentries + 1, sizeof(*sorted));
        const char **parts = calloc(2 * (size_t)s->nentries + 2, sizeof(*parts));
        char *text = NULL;
        size_t len = 0, n = 0, o = 0;
        uint64_t h = 0;
        if (!sorted || !parts) {
                p->oom = true;
                goto out;
        }
        for (int i = 0; i < s->nentries; i++)
                sorted[i] = &s->entries[i];
        qsort(sorted, (size_t)s->nentries, sizeof(*sorted), entry_cmp);
        parts[n++] = s->name;
        for (int i = 0; i < s->nentries; i++) {
                parts[n++] = sorted[i]->key;
                parts[n++] = sorted[i]->expanded ? sorted[i]->expanded : sorted[i]->value;
        }
        if (secret)
                parts[n++] = secret;
        for (size_t i = 0; i < n; i++)
                len += strlen(parts[i]) + 1;
        if (!(text = malloc(len))) {
                p->oom = true;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(parts[i]) + 1;
                memcpy(text + o, parts[i], l);
                o += l;
        }
        h = hash_sha256_u64(text, len);
        explicit_bzero(text, len); /* may hold a secret */
out:
        free(text);
        free(parts);
        free(sorted);
        return h;
}

/* Applies a section's entries and the defaults through a key table. type_mask: the connector's
 * type (T_ALL outside connectors, 0 when the type is missing or bad: only `type` is required). */
static void section_apply(ConfParser *p, ConfSection *s, const ConfKey *table, size_t nkeys, void *obj,
                          unsigned type_mask) {
        bool seen[CONF_MAX_KEYS] = {false};
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
                        char for_types[64], name[32];
                        conf_err(p, e->line, "%s does not apply to a %s connector — remove it (it is for %s)", e->key,
                                 conf_type_name(__builtin_ctz(type_mask), name, sizeof(name)),
                                 conf_types_text(k->types, for_types, sizeof(for_types)));
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
                        int t = choice_index(conf_connector_keys[0].values, s->entries[i].value);
                        mask = t < 0 ? 0 : 1u << t;
                }
        section_apply(p, s, conf_connector_keys, conf_nconnector_keys, c, mask);
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
        section_apply(p, s, conf_pipeline_keys, conf_npipeline_keys, pl, T_ALL);
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
        /* a connector without a type (or of a bad one) was reported already */
        const ConnectorType *st = pl->source && pl->source->type ? connector_type(pl->source->type) : NULL;
        for (int i = 0; st && i < c->npipelines && &c->pipelines[i] != pl; i++) {
                const PipelineConf *o = &c->pipelines[i];
                char msg[1024];
                if (o->source == pl->source && st->conf_shared_source(o, pl, msg, sizeof(msg)))
                        conf_err(p, e->line, "%s", msg);
        }
        if ((e = entry_get(s, "on_bad_message")) && st && !st->source_passes_bad_messages)
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
        uint64_t hashes[3] = {section_hash(p, s, NULL), pl->source ? pl->source->hash : 0,
                              pl->sink ? pl->sink->hash : 0};
        pl->hash = hash_sha256_u64(hashes, sizeof(hashes));
}

/* What connector k lacks to be read as a source, as its type says (MySQL: a server_id), reported
 * once, for the first pipeline that reads it. s: the connector's section. */
static void connector_check_source(ConfParser *p, const ConfSection *s, const ConnectorConf *k) {
        const Conf *c = p->conf;
        const ConnectorType *t = k->type ? connector_type(k->type) : NULL;
        const char **set = NULL;
        char msg[1024];
        int i;
        if (!t)
                return;
        for (i = 0; i < c->npipelines && c->pipelines[i].source != k; i++)
                ;
        if (i == c->npipelines)
                return;
        const ConfEntry *binlog = entry_get(s, "binlog");
        for (int j = 0; binlog && k->skip_binlog && j < c->npipelines; j++)
                if (c->pipelines[j].sink == k) {
                        conf_err(p, binlog->line,
                                 "binlog = off: pipeline %s reads this server's binlog, which would then lack what "
                                 "pipeline %s applies to it — set binlog = on",
                                 c->pipelines[i].name, c->pipelines[j].name);
                        break;
                }
        if (!(set = calloc((size_t)s->nentries + 1, sizeof(*set)))) {
                p->oom = true;
                return;
        }
        for (int j = 0; j < s->nentries; j++)
                set[j] = s->entries[j].key;
        if (t->conf_source(k, set, &c->pipelines[i], msg, sizeof(msg)))
                conf_err(p, s->line, "%s", msg);
        free(set);
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

/* What would destroy or loop, as far as the conf's text tells where each connector's data is (its
 * type's conf_place: the same dsn is the same PostgreSQL database, the same MySQL host and port
 * the same server); check --connect asks the servers themselves. */
static void conf_guard(ConfParser *p) {
        Conf *c = p->conf;
        GuardPlace *places = calloc((size_t)c->nconnectors + 1, sizeof(*places));
        char(*buf)[300] = calloc((size_t)c->nconnectors + 1, sizeof(*buf));
        if (!places || !buf) {
                p->oom = true;
                goto out;
        }
        for (int i = 0; i < c->nconnectors; i++) {
                const ConnectorConf *k = &c->connectors[i];
                const ConnectorType *t = k->type ? connector_type(k->type) : NULL;
                if (t && t->conf_place(k, buf[i], sizeof(buf[i]), &places[i]) < 0)
                        places[i] = (GuardPlace){0};
        }
        GuardWorld w = {.places = places};
        if (guard_check(c, &w, guard_report, p) < 0)
                p->oom = true;
out:
        free(places);
        free(buf);
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
        section_apply(p, svc, conf_service_keys, conf_nservice_keys, c, T_ALL);
        if (!c->metrics_user != !c->metrics_password)
                conf_err(p, svc->line,
                         "metrics_user and metrics_password_file go together — set "
                         "both for basic auth, or neither");
        if (!c->admin_user != !c->admin_password)
                conf_err(p, svc->line,
                         "admin_user and admin_password_file go together — set "
                         "both for the admin API, or neither");
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
                        connector_check_source(p, &p->sections[i], &c->connectors[k++]);
        /* A bidirectional pair never empties a side: its first copy merges. */
        for (int i = 0, n = 0; i < p->nsections; i++) {
                if (p->sections[i].kind != SEC_PIPELINE)
                        continue;
                const PipelineConf *a = &c->pipelines[n++];
                const ConnectorType *skt = a->sink && a->sink->type ? connector_type(a->sink->type) : NULL;
                /* ha = on runs a pipeline only while it holds the lease its sink keeps */
                if (c->ha && skt && skt->sink && !skt->sink->lease_open)
                        conf_err(p, p->sections[i].line,
                                 "ha = on: pipeline %s writes to a %s sink, which keeps no lease, so no instance "
                                 "would ever run it — run it from a conf with ha = off (one instance)",
                                 a->name, a->sink->type);
                if (a->apply_workers > 1 && skt && skt->sink && !skt->sink->open_worker)
                        conf_err(p, entry_get(&p->sections[i], "apply_workers")->line,
                                 "apply_workers = %d: a %s sink applies with one session only (database sinks take "
                                 "more) — set apply_workers = 1",
                                 a->apply_workers, a->sink->type);
                for (int j = 0; a->apply_workers > 1 && a->source && a->sink && j < c->npipelines; j++)
                        if (a->source == c->pipelines[j].sink && a->sink == c->pipelines[j].source) {
                                conf_err(p, entry_get(&p->sections[i], "apply_workers")->line,
                                         "apply_workers = %d: pipeline %s runs the other way (bidirectional), and "
                                         "a bidirectional pipeline applies with one session (its writes are "
                                         "marked as its own through it) — set apply_workers = 1",
                                         a->apply_workers, c->pipelines[j].name);
                                break;
                        }
                {
                        /* the shaping keys: parsed here so that a mistake names its line */
                        static const char *const keys[] = {"columns", "exclude_columns", "mask_columns", "where",
                                                           "skip",    "soft_delete"};
                        const ConfEntry *first = NULL;
                        for (size_t k = 0; !first && k < sizeof(keys) / sizeof(keys[0]); k++)
                                first = entry_get(&p->sections[i], keys[k]);
                        PipelineConf tmp = *a;
                        for (int j = 0; a->source && a->sink && j < c->npipelines; j++)
                                tmp.bidirectional |=
                                        a->source == c->pipelines[j].sink && a->sink == c->pipelines[j].source;
                        Shape *sh = NULL;
                        char msg[1024];
                        int r = first ? shape_new(&tmp, &sh, msg, sizeof(msg)) : 0;
                        if (r == -ENOMEM)
                                p->oom = true;
                        else if (r < 0)
                                conf_err(p, first->line, "%s", msg);
                        shape_free(sh);
                }
                if (a->sync_sequences && a->source && a->sink && a->source->type && a->sink->type) {
                        const ConnectorType *sot = connector_type(a->source->type);
                        if (!sot || !sot->sync_sequences || strcmp(a->source->type, a->sink->type) != 0)
                                conf_err(p, entry_get(&p->sections[i], "sync_sequences")->line,
                                         "sync_sequences = yes carries sequence values from a PostgreSQL source into "
                                         "a PostgreSQL sink, but pipeline %s reads %s and writes %s — remove "
                                         "sync_sequences",
                                         a->name, a->source->type, a->sink->type);
                }
                if (!a->sync_sequences && entry_get(&p->sections[i], "sync_sequences_interval_s"))
                        conf_err(p, entry_get(&p->sections[i], "sync_sequences_interval_s")->line,
                                 "sync_sequences_interval_s is used only with sync_sequences = yes — set that, or "
                                 "remove sync_sequences_interval_s");
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
        if (!p.conf->instance) {
                /* The default instance name: the host name, which differs between machines. */
                char host[256] = "";
                if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                        snprintf(host, sizeof(host), "cdcsync");
                if (!(p.conf->instance = strdup(host))) {
                        r = -ENOMEM;
                        goto out;
                }
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
                free(pl->columns);
                free(pl->exclude_columns);
                free(pl->mask_columns);
                free(pl->skip);
                free(pl->soft_delete);
                free(pl->where);
        }
        for (int i = 0; i < c->nwarnings; i++)
                free(c->warnings[i]);
        free(c->warnings);
        free(c->connectors);
        free(c->pipelines);
        free(c->path);
        free(c->state_dir);
        free(c->instance);
        free(c->metrics_listen);
        free(c->metrics_user);
        free_secret(c->metrics_password);
        free(c->admin_user);
        free_secret(c->admin_password);
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
        const ConnectorType *kt = p && p->sink && p->sink->type ? connector_type(p->sink->type) : NULL;
        if (kt && kt->sink_database_is_schema && p->sink->database) {
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

int conf_pipeline_tables_copy(const PipelineConf *p, char ***ret, int *ret_n) {
        char **v = p->ntables > 0 ? calloc((size_t)p->ntables, sizeof(*v)) : NULL;
        if (p->ntables > 0 && !v)
                return -ENOMEM;
        for (int i = 0; i < p->ntables; i++)
                if (!(v[i] = strdup(p->tables[i]))) {
                        while (i-- > 0)
                                free(v[i]);
                        free(v);
                        return -ENOMEM;
                }
        *ret = v;
        *ret_n = p->ntables;
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

int conf_timeout_ms(const ConnectorConf *c) {
        return (c && c->timeout_s > 0 ? c->timeout_s : 30) * 1000;
}
