/* Refusals of what would destroy data or loop: see guard.h. Pairwise questions ("do two
 * pipelines write one table?") are answered by sorting claims and looking at neighbours, so a conf
 * of any size is checked in n log n. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/connector.h"
#include "cdcsync/guard.h"

/* A run of equal claims is compared pair by pair up to this many back: enough for any real conf,
 * and a bound for one that lists the same table ten thousand times. */
#define RUN_SCAN_MAX 1000
#define NAME_MAX_LEN 256

typedef struct {
        const char *k1, *k2; /* borrowed: the place (NULL sorts as "") */
        char *k3;            /* owned: the name claimed */
        const char *what;    /* borrowed: the source table behind the claim, or NULL */
        int pipe;            /* index in Conf.pipelines */
        bool derived;        /* the name was derived from the pipeline's name */
} Claim;

typedef struct {
        Claim *v;
        size_t n, cap;
        bool oom;
} Claims;

static void claims_free(Claims *cl) {
        for (size_t i = 0; i < cl->n; i++)
                free(cl->v[i].k3);
        free(cl->v);
        *cl = (Claims){0};
}

static void claim_add(Claims *cl, const char *k1, const char *k2, const char *k3, const char *what, int pipe,
                      bool derived) {
        if (cl->oom)
                return;
        if (cl->n == cl->cap) {
                size_t cap = cl->cap ? cl->cap * 2 : 16;
                Claim *v = reallocarray(cl->v, cap, sizeof(*v));
                if (!v) {
                        cl->oom = true;
                        return;
                }
                cl->v = v;
                cl->cap = cap;
        }
        char *k = strdup(k3);
        if (!k) {
                cl->oom = true;
                return;
        }
        cl->v[cl->n++] = (Claim){k1, k2, k, what, pipe, derived};
}

static int nullcmp(const char *a, const char *b) {
        return strcmp(a ? a : "", b ? b : "");
}

static int claim_cmp(const void *x, const void *y) {
        const Claim *a = x, *b = y;
        int r = nullcmp(a->k1, b->k1);
        if (!r)
                r = nullcmp(a->k2, b->k2);
        if (!r)
                r = strcmp(a->k3, b->k3);
        return r ? r : (a->pipe > b->pipe) - (a->pipe < b->pipe);
}

static bool claim_eq(const Claim *a, const Claim *b) {
        return nullcmp(a->k1, b->k1) == 0 && nullcmp(a->k2, b->k2) == 0 && strcmp(a->k3, b->k3) == 0;
}

/* Calls conflict(i, j) for claims i > j of one run, in order, until it returns true: so each
 * claim is reported at most once, against the first earlier one it clashes with. */
static void claims_scan(Claims *cl, bool (*conflict)(const Claim *a, const Claim *b, void *ud), void *ud) {
        if (cl->n < 2)
                return;
        qsort(cl->v, cl->n, sizeof(*cl->v), claim_cmp);
        size_t start = 0;
        for (size_t i = 1; i < cl->n; i++) {
                if (!claim_eq(&cl->v[i], &cl->v[start])) {
                        start = i;
                        continue;
                }
                size_t scanned = 0;
                for (size_t j = start; j < i && scanned < RUN_SCAN_MAX; j++, scanned++)
                        if (conflict(&cl->v[i], &cl->v[j], ud))
                                break;
        }
}

static const ConnectorType *type_of(const ConnectorConf *k) {
        return k && k->type ? connector_type(k->type) : NULL;
}

static bool is_database(const ConnectorConf *k) {
        const ConnectorType *t = type_of(k);
        return t && t->holds_tables;
}

void guard_default_pg_name(const char *pipeline, char *buf, size_t len) {
        size_t j = 0;
        const char *prefix = "cdcsync_";
        if (len == 0)
                return;
        for (const char *p = prefix; *p && j + 1 < len; p++)
                buf[j++] = *p;
        for (const char *p = pipeline; *p && j + 1 < len; p++) {
                char c = *p;
                if (c >= 'A' && c <= 'Z')
                        c = (char)(c - 'A' + 'a');
                buf[j++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '_';
        }
        buf[j] = '\0';
}

/* Two pipelines that may write one table: each other's reverse (sync in both directions), or
 * readers dividing one stream between them (ConnectorType.shares_stream: one Kafka consumer group
 * shares the partitions, each change is read once). */
static bool may_share(const PipelineConf *a, const PipelineConf *b) {
        if (a->source == b->sink && a->sink == b->source)
                return true;
        const ConnectorType *t = type_of(a->source);
        return t && t == type_of(b->source) && t->shares_stream(a, b);
}

/* Splits "schema.table" at its first dot into buffers; false when it has none or is too long. */
static bool split_table(const char *st, char *schema, char *table) {
        const char *dot = strchr(st, '.');
        if (!dot || (size_t)(dot - st) >= NAME_MAX_LEN || strlen(dot + 1) >= NAME_MAX_LEN)
                return false;
        memcpy(schema, st, (size_t)(dot - st));
        schema[dot - st] = '\0';
        memcpy(table, dot + 1, strlen(dot + 1) + 1);
        return true;
}

/* Where a connector's data lives, NULL when unknown. */
static const GuardPlace *place_of(const Conf *c, const GuardWorld *w, const ConnectorConf *k) {
        if (!k || !w->places)
                return NULL;
        const GuardPlace *pl = &w->places[k - c->connectors];
        return pl->server ? pl : NULL;
}

/* The source tables of pipeline i: its list, or what the world knows for `tables = *`; NULL when
 * unknown. */
static char *const *tables_of(const Conf *c, const GuardWorld *w, int i, int *ret_n) {
        const PipelineConf *p = &c->pipelines[i];
        if (!p->all_tables) {
                *ret_n = p->ntables;
                return p->tables;
        }
        if (w->all_tables && w->all_tables[i]) {
                *ret_n = w->nall_tables[i];
                return w->all_tables[i];
        }
        *ret_n = 0;
        return NULL;
}

typedef struct {
        const Conf *c;
        const GuardWorld *w;
        GuardReport report;
        void *ud;
        int errors;
} Ctx;

static void say(Ctx *x, const PipelineConf *p, const PipelineConf *other, bool error, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static void say(Ctx *x, const PipelineConf *p, const PipelineConf *other, bool error, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        x->report(x->ud, p, other, error, msg);
        x->errors += error;
}

/* ---- one target table, one writer ---- */

static bool sink_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        const PipelineConf *pa = &x->c->pipelines[a->pipe], *pb = &x->c->pipelines[b->pipe];
        if (a->pipe == b->pipe) {
                say(x, pa, pb, true,
                    "pipeline %s writes both %s and %s into table %s of sink %s — their rows would mix and "
                    "overwrite each other: give each its own target table (fix map%s)",
                    pa->name, b->what, a->what, a->k3, pa->sink->name,
                    type_of(pa->sink) && type_of(pa->sink)->sink_database_is_schema && pa->sink->database
                            ? ", or remove database from the sink"
                            : "");
                return true;
        }
        if (may_share(pa, pb))
                return false;
        char where[512];
        if (pa->sink == pb->sink)
                snprintf(where, sizeof(where), "of sink %s", pa->sink->name);
        else
                snprintf(where, sizeof(where), "of one database (sinks %s and %s: %s)", pb->sink->name, pa->sink->name,
                         x->w->places[pa->sink - x->c->connectors].why);
        say(x, pa, pb, true,
            "pipelines %s and %s both write table %s %s — each would overwrite and delete the other's rows (a "
            "truncate, or a snapshot = replace copy, empties the table under the other): give each target table one "
            "writer (fix tables or map), or make the two pipelines each other's reverse for sync in both directions",
            pb->name, pa->name, a->k3, where);
        return true;
}

/* A `tables = *` pipeline whose tables are not known, against any other writer of its sink. */
static bool wild_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        const Claim *wild = a->derived ? a : b, *other = a->derived ? b : a;
        if (!wild->derived || a->pipe == b->pipe)
                return false;
        const PipelineConf *pw = &x->c->pipelines[wild->pipe], *po = &x->c->pipelines[other->pipe];
        if (may_share(pw, po))
                return false;
        say(x, pw, po, false,
            "pipeline %s copies every table of %s (tables = *) into %s, which pipeline %s writes too — where their "
            "tables meet, each would overwrite and delete the other's rows: list %s's tables, or run cdcsync check "
            "--connect to compare them",
            pw->name, pw->source->name, pw->sink->name, po->name, pw->name);
        return true;
}

static void check_sinks(Ctx *x) {
        const Conf *c = x->c;
        Claims cl = {0}, wild = {0};
        for (int i = 0; i < c->npipelines; i++) {
                const PipelineConf *p = &c->pipelines[i];
                const GuardPlace *pl = place_of(c, x->w, p->sink);
                if (!pl || !is_database(p->sink) || !p->source || p->source == p->sink)
                        continue;
                int n;
                char *const *tables = tables_of(c, x->w, i, &n);
                /* Every database-sink pipeline, for the warnings about unknown `*` tables. */
                claim_add(&wild, pl->server, pl->database, "", NULL, i, !tables);
                for (int t = 0; tables && t < n; t++) {
                        char schema[NAME_MAX_LEN], table[NAME_MAX_LEN], ts[NAME_MAX_LEN], tt[NAME_MAX_LEN],
                                target[2 * NAME_MAX_LEN + 2];
                        if (!split_table(tables[t], schema, table) ||
                            conf_map_table(p, schema, table, ts, sizeof(ts), tt, sizeof(tt)) < 0)
                                continue;
                        snprintf(target, sizeof(target), "%s.%s", ts, tt);
                        claim_add(&cl, pl->server, pl->database, target, tables[t], i, false);
                }
        }
        if (cl.oom || wild.oom)
                x->errors = -ENOMEM;
        else {
                claims_scan(&cl, sink_clash, x);
                claims_scan(&wild, wild_clash, x);
        }
        claims_free(&cl);
        claims_free(&wild);
}

/* ---- one source database per pipeline ---- */

static int str_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

bool guard_same_database(const PipelineConf *p, const GuardPlace *src, const GuardPlace *sink, char *msg, size_t len) {
        if (!src || !sink || !src->server || !sink->server || strcmp(src->server, sink->server) != 0 || !p->source ||
            !p->sink || p->source == p->sink)
                return false;
        static const char loop[] = "it would read its own writes back and apply them again, forever";
        if (src->database || sink->database) {
                if (nullcmp(src->database, sink->database) != 0)
                        return false;
                snprintf(msg, len,
                         "pipeline %s: source %s and sink %s are one database (%s) — %s: point the sink at another "
                         "database",
                         p->name, p->source->name, p->sink->name, src->why, loop);
                return true;
        }
        /* MySQL: the binlog is the server's, tables name their database. */
        if (p->all_tables) {
                snprintf(msg, len,
                         "pipeline %s: source %s and sink %s are one server (%s) and the pipeline reads every table "
                         "(tables = *) — %s: point the sink at another server, or list the tables to read",
                         p->name, p->source->name, p->sink->name, src->why, loop);
                return true;
        }
        char **schemas = calloc((size_t)p->ntables + 1, sizeof(*schemas));
        bool same = false;
        int n = 0;
        if (!schemas)
                return false;
        for (int i = 0; i < p->ntables; i++)
                if (!(schemas[n] = strndup(p->tables[i], strcspn(p->tables[i], "."))))
                        goto out;
                else
                        n++;
        qsort(schemas, (size_t)n, sizeof(*schemas), str_cmp);
        for (int i = 0; i < p->ntables && !same; i++) {
                char schema[NAME_MAX_LEN], table[NAME_MAX_LEN], ts[NAME_MAX_LEN], tt[NAME_MAX_LEN];
                const char *key = ts;
                if (!split_table(p->tables[i], schema, table) ||
                    conf_map_table(p, schema, table, ts, sizeof(ts), tt, sizeof(tt)) < 0)
                        continue;
                if (bsearch(&key, schemas, (size_t)n, sizeof(*schemas), str_cmp)) {
                        same = true;
                        snprintf(msg, len,
                                 "pipeline %s: source %s and sink %s are one server (%s) and the pipeline writes "
                                 "into database %s, which it reads — %s: write into another database (map) or "
                                 "another server",
                                 p->name, p->source->name, p->sink->name, src->why, ts, loop);
                }
        }
out:
        for (int i = 0; i < n; i++)
                free(schemas[i]);
        free(schemas);
        return same;
}

static void check_loops(Ctx *x) {
        for (int i = 0; i < x->c->npipelines; i++) {
                const PipelineConf *p = &x->c->pipelines[i];
                char msg[1024];
                if (guard_same_database(p, place_of(x->c, x->w, p->source), place_of(x->c, x->w, p->sink), msg,
                                        sizeof(msg)))
                        say(x, p, NULL, true, "%s", msg);
        }
}

/* ---- slots and publications ---- */

/* Pipelines that derive one slot name (claim.derived: the pipeline derives its publication too). */
static bool slot_name_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        const PipelineConf *pa = &x->c->pipelines[a->pipe], *pb = &x->c->pipelines[b->pipe];
        say(x, pa, pb, true,
            "pipelines %s and %s both get %s as their %s (cdcsync_<pipeline>, lower-cased, every character but a-z "
            "and 0-9 made '_') — rename one of them",
            pb->name, pa->name, a->k3,
            a->derived && b->derived ? "replication slot and publication name" : "replication slot name");
        return true;
}

/* Pipelines that derive one publication name (claim.derived: the pipeline derives its slot too). */
static bool publication_name_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        if (a->derived && b->derived) /* slot_name_clash said it */
                return false;
        const PipelineConf *pa = &x->c->pipelines[a->pipe], *pb = &x->c->pipelines[b->pipe];
        say(x, pa, pb, true,
            "pipelines %s and %s both get %s as their publication name (cdcsync_<pipeline>, lower-cased, every "
            "character but a-z and 0-9 made '_') — rename one of them",
            pb->name, pa->name, a->k3);
        return true;
}

static bool slot_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        const PipelineConf *pa = &x->c->pipelines[a->pipe], *pb = &x->c->pipelines[b->pipe];
        if (a->derived && b->derived) /* the same derived name: name_clash said it */
                return false;
        if (pa->source == pb->source) /* an explicit slot of one connector: conf.c says it */
                return false;
        say(x, pa, pb, true,
            "pipelines %s and %s both use replication slot %s on one server (sources %s and %s: %s) — a slot feeds "
            "one pipeline: set slot = to another name in [connector.%s]",
            pb->name, pa->name, a->k3, pb->source->name, pa->source->name,
            x->w->places[pa->source - x->c->connectors].server_why, a->derived ? pb->source->name : pa->source->name);
        return true;
}

static bool publication_clash(const Claim *a, const Claim *b, void *ud) {
        Ctx *x = ud;
        const PipelineConf *pa = &x->c->pipelines[a->pipe], *pb = &x->c->pipelines[b->pipe];
        if (a->derived && b->derived)
                return false;
        if (pa->source == pb->source)
                say(x, pa, pb, true,
                    "pipelines %s and %s both use publication %s of %s — a publication holds one pipeline's tables: "
                    "remove publication from [connector.%s] (each pipeline then gets its own) or give each pipeline "
                    "its own connector",
                    pb->name, pa->name, a->k3, pa->source->name, pa->source->name);
        else
                say(x, pa, pb, true,
                    "pipelines %s and %s both use publication %s in one database (sources %s and %s: %s) — a "
                    "publication holds one pipeline's tables: set publication = to another name in [connector.%s]",
                    pb->name, pa->name, a->k3, pb->source->name, pa->source->name,
                    x->w->places[pa->source - x->c->connectors].why, a->derived ? pb->source->name : pa->source->name);
        return true;
}

static void check_names(Ctx *x) {
        const Conf *c = x->c;
        Claims derived_slot = {0}, derived_pub = {0}, slots = {0}, pubs = {0};
        for (int i = 0; i < c->npipelines; i++) {
                const PipelineConf *p = &c->pipelines[i];
                const ConnectorType *t = type_of(p->source);
                if (!t || !t->source_slot_and_publication)
                        continue;
                char def[NAME_MAX_LEN];
                guard_default_pg_name(p->name, def, sizeof(def));
                bool dslot = !p->source->slot, dpub = !p->source->publication;
                if (dslot)
                        claim_add(&derived_slot, NULL, NULL, def, NULL, i, dpub);
                if (dpub)
                        claim_add(&derived_pub, NULL, NULL, def, NULL, i, dslot);
                const GuardPlace *pl = place_of(c, x->w, p->source);
                if (!pl)
                        continue;
                claim_add(&slots, pl->server, NULL, dslot ? def : p->source->slot, NULL, i, dslot);
                if (pl->database)
                        claim_add(&pubs, pl->server, pl->database, dpub ? def : p->source->publication, NULL, i, dpub);
        }
        if (derived_slot.oom || derived_pub.oom || slots.oom || pubs.oom) {
                x->errors = -ENOMEM;
        } else {
                claims_scan(&derived_slot, slot_name_clash, x);
                claims_scan(&derived_pub, publication_name_clash, x);
                claims_scan(&slots, slot_clash, x);
                claims_scan(&pubs, publication_clash, x);
        }
        claims_free(&derived_slot);
        claims_free(&derived_pub);
        claims_free(&slots);
        claims_free(&pubs);
}

GuardPlace guard_place(const ConnectorPlace *cp, char *why, size_t why_len) {
        if (cp->database[0])
                snprintf(why, why_len, "%s, database %s", cp->server, cp->database);
        else
                snprintf(why, why_len, "%s", cp->server);
        if (!cp->server[0]) /* a type that holds no tables (SourceOps.locate) */
                return (GuardPlace){0};
        return (GuardPlace){cp->server, cp->database[0] ? cp->database : NULL, why, cp->server};
}

int guard_check(const Conf *c, const GuardWorld *w, GuardReport report, void *userdata) {
        Ctx x = {c, w, report, userdata, 0};
        check_loops(&x);
        if (x.errors >= 0)
                check_sinks(&x);
        if (x.errors >= 0)
                check_names(&x);
        return x.errors;
}

int guard_missing_tables(const PipelineConf *p, char *const *have, int nhave, char *buf, size_t len) {
        char **sorted = calloc((size_t)nhave + 1, sizeof(*sorted));
        int missing = 0;
        size_t o = 0;
        if (len)
                buf[0] = '\0';
        if (!sorted)
                return -ENOMEM;
        if (nhave > 0)
                memcpy(sorted, have, (size_t)nhave * sizeof(*sorted));
        qsort(sorted, (size_t)nhave, sizeof(*sorted), str_cmp);
        for (int i = 0; !p->all_tables && i < p->ntables; i++) {
                const char *key = p->tables[i];
                if (bsearch(&key, sorted, (size_t)nhave, sizeof(*sorted), str_cmp))
                        continue;
                if (missing++ == 0 || o + 1 < len) {
                        int n = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", p->tables[i]);
                        o = n < 0 || (size_t)n >= len - o ? len - 1 : o + (size_t)n;
                }
        }
        free(sorted);
        return missing;
}
