/* Runs the MySQL source against a live server and prints every event it emits, one per line:
 * the source's half of test_mysql_source.sh. A fake PipelineIO (the pipeline_io_* functions
 * the engine implements) lives here.
 *   mysql_source_driver PORT SERVER_ID TABLES START_POSITION|now END_POSITION
 * TABLES: "test.a,test.b" or "*". Stops once a keepalive or commit reaches END_POSITION
 * ("binlog.NNNNNN:OFF", from SHOW MASTER STATUS after the workload). Password: env MYSQL_PW. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/connector.h"
#include "mysql/mysql_source.h"

struct PipelineIO {
        Position end;
        bool stop;
        int commits;
};

static void print_image(const Table *t, const Value *v) {
        printf("[");
        for (int i = 0; i < t->ncols; i++) {
                printf("%s%s%s=", i ? " " : "", t->cols[i].key ? "*" : "", t->cols[i].name);
                if (v[i].kind == VALUE_NULL)
                        printf("NULL");
                else if (v[i].kind == VALUE_UNCHANGED)
                        printf("UNCHANGED");
                else
                        printf("'%s'", v[i].data);
                printf(":%s", type_class_name(t->cols[i].cls));
        }
        printf("]");
}

int pipeline_io_emit(PipelineIO *io, Event *ev) {
        char pos[64];
        switch (ev->kind) {
        case EVENT_BATCH_END: /* engine → sink only; a source never emits these */
        case EVENT_END: break;
        case EVENT_BEGIN: printf("BEGIN origin=%s\n", ev->txn.origin); break;
        case EVENT_CHANGE: {
                const Change *c = &ev->change;
                printf("%c %s.%s", (char)c->op, c->table->schema, c->table->name);
                if (c->before) {
                        printf(" before=");
                        print_image(c->table, c->before);
                }
                if (c->after) {
                        printf(" after=");
                        print_image(c->table, c->after);
                }
                printf("\n");
                break;
        }
        case EVENT_COMMIT:
                mysql_source_format_position(ev->txn.commit_pos, pos, sizeof(pos));
                printf("COMMIT origin=%s pos=%s ts=%s\n", ev->txn.origin, pos, ev->txn.commit_ts > 0 ? "set" : "zero");
                io->commits++;
                if (position_cmp(ev->txn.commit_pos, io->end) >= 0)
                        io->stop = true;
                break;
        case EVENT_KEEPALIVE:
                if (position_cmp(ev->ckpt.pos, io->end) >= 0)
                        io->stop = true;
                break;
        }
        fflush(stdout);
        event_clear(ev);
        return io->stop ? -ECANCELED : 0;
}

Position pipeline_io_durable(PipelineIO *io) {
        (void)io;
        return (Position){0};
}

bool pipeline_io_stopping(PipelineIO *io) {
        return io->stop;
}

bool pipeline_io_lease_current(PipelineIO *io) {
        (void)io;
        return true;
}

void pipeline_io_report_source_end(PipelineIO *io, Position end, int64_t server_ts) {
        (void)io, (void)end, (void)server_ts;
}

void pipeline_io_streaming(PipelineIO *io, bool snapshot) {
        (void)io, (void)snapshot;
}

const char *pipeline_io_context(PipelineIO *io) {
        (void)io;
        return "[pipeline=driver]";
}

/* The rest of connector.h's PipelineIO, which this driver's MySQL source never calls: defined so
 * that the other sources the connector registry links in do not pull in the engine's pipeline. */
void pipeline_io_report_backlog(PipelineIO *io, uint64_t unread, uint64_t behind) {
        (void)io, (void)unread, (void)behind;
}

void pipeline_io_count_bad_message(PipelineIO *io, bool dead_letter) {
        (void)io, (void)dead_letter;
}

int main(int argc, char **argv) {
        if (argc != 6) {
                fprintf(stderr, "usage: %s PORT SERVER_ID TABLES START|now END\n", argv[0]);
                return 2;
        }
        ConnectorConf conn = {
                .name = "my",
                .type = "mysql",
                .host = "127.0.0.1",
                .port = (int)strtol(argv[1], NULL, 10),
                .user = "cdc",
                .password = getenv("MYSQL_PW"),
                .server_id = (uint32_t)strtoul(argv[2], NULL, 10),
                .ssl_mode = "disabled",
        };
        char *tables[16];
        int ntables = 0;
        char *list = strdup(argv[3]);
        for (char *t = list; t && *t && ntables < 16;) {
                char *comma = strchr(t, ',');
                if (comma)
                        *comma++ = '\0';
                tables[ntables++] = t;
                t = comma;
        }
        PipelineConf pipe = {
                .name = "driver",
                .all_tables = strcmp(argv[3], "*") == 0,
                .tables = tables,
                .ntables = ntables,
                .start_position = strcmp(argv[4], "now") == 0 ? NULL : argv[4],
        };
        struct PipelineIO io = {0};
        if (mysql_source_parse_position(argv[5], &io.end) < 0) {
                fprintf(stderr, "bad END position %s\n", argv[5]);
                return 2;
        }
        Source *s;
        CdcError err = {0};
        const SourceOps *ops = &mysql_source_ops;
        int r = ops->open(&conn, &pipe, &s, &err);
        if (r < 0) {
                fprintf(stderr, "open: %s [%s retriable=%d]\n", err.message, err.kind, err.retriable);
                free(list);
                return 1;
        }
        SourceStart start = {0};
        r = ops->run(s, &start, &io, &err);
        ops->free(s);
        free(list);
        if (r < 0) {
                fprintf(stderr, "run: %s [%s retriable=%d]\n", err.message, err.kind, err.retriable);
                return 1;
        }
        return 0;
}

void pipeline_io_report_snapshot(PipelineIO *io, const char *table, bool begin, uint64_t rows, uint64_t rows_est,
                                 int chunks_done, int chunks_total) {
        (void)io, (void)table, (void)begin, (void)rows, (void)rows_est, (void)chunks_done, (void)chunks_total;
}
