/* A Kafka connector's conf rules and its answers about places, tables and probes (see kafka_rules.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/kafka_rules.h"

int kafka_rules_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len) {
        (void)earlier, (void)later, (void)msg, (void)len;
        return 0;
}

int kafka_rules_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                            size_t len) {
        (void)conn, (void)set, (void)reader, (void)msg, (void)len;
        return 0;
}

int kafka_rules_conf_place(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret) {
        (void)conn, (void)buf, (void)len, (void)ret;
        return -1;
}

bool kafka_rules_shares_stream(const PipelineConf *a, const PipelineConf *b) {
        char ga[256], gb[256]; /* the group, cdcsync_<pipeline> by default */
        snprintf(ga, sizeof(ga), "%s%s", a->source->group ? "" : "cdcsync_",
                 a->source->group ? a->source->group : a->name);
        snprintf(gb, sizeof(gb), "%s%s", b->source->group ? "" : "cdcsync_",
                 b->source->group ? b->source->group : b->name);
        return strcmp(ga, gb) == 0 &&
               strcmp(a->source->brokers ? a->source->brokers : "", b->source->brokers ? b->source->brokers : "") == 0;
}

int kafka_rules_conf_database(const ConnectorConf *conn, char **ret) {
        *ret = conn->database ? strdup(conn->database) : NULL;
        return conn->database && !*ret ? -ENOMEM : 0;
}

int kafka_rules_write_mark(const PipelineConf *writer, char *buf, size_t len) {
        (void)writer, (void)buf, (void)len;
        return -1;
}

int kafka_rules_locate(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err) {
        (void)conn, (void)err;
        *ret = (ConnectorPlace){.server = "", .database = ""};
        return 0;
}

int kafka_rules_list_tables(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err) {
        (void)conn, (void)err;
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

int kafka_rules_probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        (void)conn, (void)pipe, (void)err;
        *ret = NULL;
        return 0;
}

int kafka_rules_probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        (void)pr, (void)applied, (void)ret_end, (void)ret_bytes;
        return cdc_error(err, -EOPNOTSUPP, false, CDC_ERR_INTERNAL, "a kafka source has no probe");
}

SourceProbe *kafka_rules_probe_free(SourceProbe *pr) {
        (void)pr;
        return NULL;
}
