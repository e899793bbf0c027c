/* A Kafka connector's answers to what the engine asks of its type outside the stream: its conf
 * rules (ConnectorType in connector.h), and the SourceOps/SinkOps members about places, tables and
 * probes, which a Kafka connector answers without a server. */
#pragma once

#include "cdcsync/connector.h"

/* Two pipelines may read one Kafka connector: each reads as a member of its own consumer group,
 * or they share one (kafka_rules_shares_stream). */
int kafka_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len);
/* Nothing more is needed to read one as a source. */
int kafka_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                            size_t len);
/* -1: a Kafka cluster holds no tables, so it is no place of guard.h's. */
int kafka_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret);
/* Two pipelines reading Kafka as members of one consumer group of one cluster share its
 * partitions: each change is read once, by one of them. */
bool kafka_rules_shares_stream(const PipelineConf *a, const PipelineConf *b);
/* The `database` key, as a Kafka sink's messages name the database of a Kafka source. */
int kafka_rules_conf_database(const ConnectorConf *conn, char **ret);
/* -1: a Kafka sink's messages carry no mark a reverse pipeline could read back. */
int kafka_rules_write_mark(const PipelineConf *writer, char *buf, size_t len);

/* SourceOps/SinkOps.locate: server "", as a type that holds no tables answers (no server asked). */
int kafka_rules_locate(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err);
/* SourceOps.list_tables: *ret NULL, the topics cannot tell which tables their messages hold
 * before they are read. */
int kafka_rules_list_tables(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err);
/* SourceOps.probe_*: no probe (*ret NULL): the source reports its backlog from the consumer
 * (pipeline_io_report_backlog). probe() is never reached and says so; probe_free() returns NULL. */
int kafka_rules_probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err);
int kafka_rules_probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err);
SourceProbe *kafka_rules_probe_free(SourceProbe *pr);
