/* A pipeline's re-snapshot requests: what the admin API asks (pipeline_resnapshot_ask), checked
 * against the pipeline's conf and connectors, and what its source takes while it streams. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/log.h"
#include "pipeline_int.h"

int pipeline_resnapshot_ask(Pipeline *p, json_t *body, char *msg, size_t len) {
        const PipelineConf *c = p->conf;
        if (!p->source_ops->resnapshot) {
                snprintf(msg, len,
                         "pipeline %s reads a %s source: resnapshot is built for PostgreSQL sources only (copy the "
                         "table again by taking it out of tables and back with snapshot = replace)",
                         c->name, c->source->type);
                return -EINVAL;
        }
        if (!p->sink_ops->range_delete) {
                snprintf(msg, len,
                         "pipeline %s writes into a %s sink, which cannot delete a key range of a table: resnapshot "
                         "is built for PostgreSQL and MySQL/MariaDB sinks",
                         c->name, c->sink->type);
                return -EINVAL;
        }
        if (c->bidirectional || c->soft_delete) {
                snprintf(msg, len, "pipeline %s %s: resnapshot would delete rows the other side or the mark keeps",
                         c->name, c->bidirectional ? "is one of a bidirectional pair" : "has soft_delete");
                return -EINVAL;
        }
        if (c->where) {
                /* the engine drops the chunk's rows the filter refuses, whose keys the range delete
                 * would still keep: a sink row that left the filter would stay */
                snprintf(msg, len,
                         "pipeline %s has row filters (where): resnapshot is not built for them yet — copy the "
                         "table again by taking it out of tables and back with snapshot = replace",
                         c->name);
                return -EINVAL;
        }
        json_t *list = body ? json_object_get(body, "tables") : NULL;
        if (body && (json_object_size(body) > (list ? 1u : 0u) || (list && !json_is_array(list)))) {
                snprintf(msg, len,
                         "the body must be {\"tables\": [\"schema.table\", ...]} (an empty list: every table)");
                return -EINVAL;
        }
        size_t n = list ? json_array_size(list) : 0;
        if (n > 4096) {
                snprintf(msg, len, "at most 4096 tables at once");
                return -EINVAL;
        }
        const char *names[n > 0 ? n : 1];
        for (size_t i = 0; i < n; i++) {
                const char *t = json_string_value(json_array_get(list, i));
                if (!t || !resnap_table_name_ok(t)) {
                        snprintf(msg, len, "table %zu of the list is not a \"schema.table\" string", i + 1);
                        return -EINVAL;
                }
                const char *dot = strchr(t, '.');
                char sch[512];
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - t), t);
                if (!conf_pipeline_has_table(c, sch, dot + 1)) {
                        snprintf(msg, len, "table %s is not in tables of pipeline %s: add it there first", t, c->name);
                        return -EINVAL;
                }
                names[i] = t;
        }
        int r = resnap_requests_push(&p->resnap, names, (int)n);
        if (r < 0) {
                snprintf(msg, len, "out of memory");
                return r;
        }
        /* a pipeline stopped on a diverged sink ("affected no rows") tries again: the table's
         * changes are applied idempotently from now on. As pipeline.c's request(), here so that
         * a program linking a source without pipeline.c (the integration drivers) links. */
        pthread_mutex_lock(&p->stop_lock);
        atomic_fetch_add(&p->requests, 1);
        pthread_cond_broadcast(&p->stop_cond);
        pthread_mutex_unlock(&p->stop_lock);
        if (n == 0)
                snprintf(msg, len, "every table will be copied again while the pipeline streams");
        else
                snprintf(msg, len, "%zu table%s will be copied again while the pipeline streams", n, n == 1 ? "" : "s");
        if (n == 1)
                log_info(p->ctx, "resnapshot of %s asked through the admin API", names[0]);
        else if (n == 0)
                log_info(p->ctx, "resnapshot of every table asked through the admin API");
        else
                log_info(p->ctx, "resnapshot of %zu tables asked through the admin API", n);
        return 0;
}

bool pipeline_io_resnapshot_pending(PipelineIO *io) {
        return atomic_load(&io->p->resnap.pending);
}

void pipeline_io_resnapshot_take(PipelineIO *io, char ***ret, int *ret_n) {
        resnap_requests_take(&io->p->resnap, ret, ret_n);
}

void pipeline_io_resnapshot_again(PipelineIO *io, const char *const *tables, int n) {
        if (n > 0 && resnap_requests_push(&io->p->resnap, tables, n) < 0)
                log_error(io->p->ctx, "out of memory: the resnapshot of %d table(s) is not taken up again", n);
}
