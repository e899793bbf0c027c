/* A Kafka connector's conf rules (see kafka_rules.h). */
#include <stdio.h>
#include <string.h>

#include "kafka/kafka_rules.h"

bool kafka_rules_shares_stream(const PipelineConf *a, const PipelineConf *b) {
        char ga[256], gb[256]; /* the group, cdcsync_<pipeline> by default */
        snprintf(ga, sizeof(ga), "%s%s", a->source->group ? "" : "cdcsync_",
                 a->source->group ? a->source->group : a->name);
        snprintf(gb, sizeof(gb), "%s%s", b->source->group ? "" : "cdcsync_",
                 b->source->group ? b->source->group : b->name);
        return strcmp(ga, gb) == 0 &&
               strcmp(a->source->brokers ? a->source->brokers : "", b->source->brokers ? b->source->brokers : "") == 0;
}
