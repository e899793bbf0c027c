/* What would destroy data or loop forever, refused before a pipeline runs: a pipeline whose
 * source and sink are one database, two pipelines (or two tables of one) writing one target table,
 * two pipelines sharing a replication slot or a publication, pipeline names that derive one slot
 * name. Pure: the caller says where each connector keeps its data — from the conf's text (conf.c,
 * for `check` and every start), or from the servers themselves (`check --connect`, and each
 * pipeline's start for its own source and sink). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cdcsync/conf.h"
#include "cdcsync/connector.h"

/* Where a connector's tables live. Two places are one database when their servers are equal text
 * and, for PostgreSQL, their databases too; a MySQL server's tables name their database. */
typedef struct GuardPlace {
        const char *server;     /* NULL: unknown, or not a database (Kafka) */
        const char *database;   /* PostgreSQL: the database; NULL where tables name theirs (MySQL) */
        const char *why;        /* why two equal places are one, for messages: "the same dsn",
                                 * "PostgreSQL system 7301..., database shop" */
        const char *server_why; /* the same for the server alone: "PostgreSQL system 7301..." */
} GuardPlace;

typedef struct {
        const GuardPlace *places; /* one per connector, in Conf.connectors order */
        /* Per pipeline (Conf.pipelines order), for `tables = *`: its source's tables as
         * "schema.table", NULL when not known (then its overlaps are only warned about). NULL:
         * none known. */
        char **const *all_tables;
        const int *nall_tables;
} GuardWorld;

/* Called once per finding with the pipeline it is about (and the other one of a pair, else NULL)
 * and a complete message; error false: a warning (what cannot be decided without the servers). */
typedef void (*GuardReport)(void *userdata, const PipelineConf *p, const PipelineConf *other, bool error,
                            const char *message);

/* The place a server reported (borrowed: cp and why must outlive the result); why is filled with
 * the words messages give it. */
GuardPlace guard_place(const ConnectorPlace *cp, char *why, size_t why_len);

/* Runs every check over c's pipelines. Returns the number of errors reported, or -ENOMEM. */
int guard_check(const Conf *c, const GuardWorld *w, GuardReport report, void *userdata);

/* Whether pipeline p would read its own writes back: its source and sink are one database
 * (src and sink: their places). Writes the message (naming p, both connectors, what to do). */
bool guard_same_database(const PipelineConf *p, const GuardPlace *src, const GuardPlace *sink, char *msg, size_t len);

/* The tables p lists that are not in have[0..nhave) ("schema.table" each): their count, and
 * "s.a, s.b" (cut to fit) in buf. 0 for `tables = *`. */
int guard_missing_tables(const PipelineConf *p, char *const *have, int nhave, char *buf, size_t len);

/* The replication slot and publication name a PostgreSQL source takes by default for a pipeline:
 * "cdcsync_<pipeline>", lower-cased, every character but a-z and 0-9 made '_'. */
void guard_default_pg_name(const char *pipeline, char *buf, size_t len);
