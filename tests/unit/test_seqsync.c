/* The sequence sync's engine side (seqsync.h): which pipelines it refuses, and its thread's life
 * (start, request, the last sync at free) without a server. The syncs themselves run against real
 * servers in tests/integration/test_pg_sequences.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/seqsync.h"

static int notes;

static void count_note(void *userdata, const SeqNote *n) {
        (void)userdata;
        (void)n;
        notes++;
}

/* Only a PostgreSQL source into a PostgreSQL sink: anything else is refused, naming both types,
 * before any connection and without a note. */
static void test_refused(void **state) {
        (void)state;
        ConnectorConf my = {.name = "m", .type = "mysql"}, pg = {.name = "p", .type = "postgres"},
                      kf = {.name = "k", .type = "kafka"};
        PipelineConf a = {.name = "a", .source = &my, .sink = &pg, .sync_sequences = true};
        PipelineConf b = {.name = "b", .source = &pg, .sink = &kf, .sync_sequences = true};
        CdcError err = {0};
        notes = 0;
        assert_int_equal(seqsync_run(&a, count_note, NULL, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.message, "pipeline a: sequences are carried from a PostgreSQL source into a "
                                            "PostgreSQL sink only (it reads mysql and writes postgres)"));
        assert_false(err.retriable);
        assert_int_equal(seqsync_run(&b, count_note, NULL, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.message, "(it reads postgres and writes kafka)"));
        assert_int_equal(notes, 0);
}

/* A pipeline without sync_sequences gets no thread; NULL is accepted everywhere; a thread whose
 * syncs fail keeps running until freed, wakes when asked, and makes its last attempt at free. */
static void test_thread(void **state) {
        (void)state;
        ConnectorConf my = {.name = "m", .type = "mysql"}, pg = {.name = "p", .type = "postgres"};
        PipelineConf off = {.name = "off", .source = &pg, .sink = &pg};
        SeqSync *q = (SeqSync *)&q;
        assert_int_equal(seqsync_start(&off, "[pipeline=off]", &q), 0);
        assert_null(q);
        seqsync_request(NULL);
        assert_null(seqsync_free(NULL));

        PipelineConf on = {
                .name = "on", .source = &my, .sink = &pg, .sync_sequences = true, .sync_sequences_interval_s = 3600};
        assert_int_equal(seqsync_start(&on, "[pipeline=on]", &q), 0);
        assert_non_null(q);
        for (int i = 0; i < 5; i++)
                seqsync_request(q);
        assert_null(seqsync_free(q)); /* returns although the interval is an hour */
}

static void test_names(void **state) {
        (void)state;
        assert_string_equal(seqsync_action_name(SEQ_SET), "set");
        assert_string_equal(seqsync_action_name(SEQ_AHEAD), "ahead");
        assert_string_equal(seqsync_action_name(SEQ_UNUSED), "unused");
        assert_string_equal(seqsync_action_name(SEQ_MISSING), "missing");
        assert_string_equal(seqsync_action_name(SEQ_FAILED), "failed");
        assert_string_equal(seqsync_action_name((SeqAction)99), "?");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_thread),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
