/* Unit tests of the chunked copy's pure parts: block-range planning around chunks done and the
 * rows of COPY's text format (connectors/postgres/pg_chunks.c), and the chunk records of the copy
 * registry (engine/copies.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cdcsync/copies.h"
#include "postgres/pg_chunks.h"

#define END UINT64_MAX

static void assert_plan(const PgBlockRange *got, int n, const PgBlockRange *want, int nwant) {
        assert_int_equal(n, nwant);
        for (int i = 0; i < n; i++) {
                assert_true(got[i].lo == want[i].lo);
                assert_true(got[i].hi == want[i].hi);
        }
}

static void test_blocks_per_chunk(void **state) {
        (void)state;
        /* 100 rows a block: 20,000 rows are 200 blocks */
        assert_true(pg_chunks_blocks_per_chunk(1000, 100000, 20000) == 200);
        /* never analysed (reltuples -1) nor vacuumed: 60 rows a block assumed */
        assert_true(pg_chunks_blocks_per_chunk(0, -1, 600) == 10);
        /* rows wider than a block (TOAST aside): at least one block a chunk */
        assert_true(pg_chunks_blocks_per_chunk(1000, 10, 1) == 1);
}

static void test_plan_fresh(void **state) {
        PgBlockRange *v = NULL;
        int n = -1;
        (void)state;
        /* 10 blocks, 4 a chunk: [0,4) [4,8) [8,end): the last one reads whatever the table grew into */
        assert_int_equal(pg_chunks_plan(10, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{0, 4}, {4, 8}, {8, END}}, 3);
        free(v);
        /* an empty table: one chunk, the whole table */
        assert_int_equal(pg_chunks_plan(0, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{0, END}}, 1);
        free(v);
        /* a size that is a multiple of the chunk */
        assert_int_equal(pg_chunks_plan(8, 4, NULL, 0, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{0, 4}, {4, END}}, 2);
        free(v);
}

static void test_plan_around_done(void **state) {
        PgBlockRange *v = NULL;
        int n = -1;
        (void)state;
        /* done out of order, as parallel readers finish them: only the gaps are planned */
        PgBlockRange done[] = {{8, 12}, {0, 4}};
        assert_int_equal(pg_chunks_plan(20, 4, done, 2, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{4, 8}, {12, 16}, {16, END}}, 3);
        free(v);
        /* the table grew since the first plan: the open chunk done covers it all */
        PgBlockRange tail[] = {{0, 4}, {8, END}};
        assert_int_equal(pg_chunks_plan(50, 4, tail, 2, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{4, 8}}, 1);
        free(v);
        /* the table shrank below what was planned: the gap past its end is one open chunk */
        PgBlockRange first[] = {{0, 4}};
        assert_int_equal(pg_chunks_plan(2, 4, first, 1, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{4, END}}, 1);
        free(v);
        /* every chunk done: nothing left */
        PgBlockRange all[] = {{4, END}, {0, 4}};
        assert_int_equal(pg_chunks_plan(10, 4, all, 2, &v, &n), 0);
        assert_int_equal(n, 0);
        free(v);
        /* a resumed plan with another chunk size: gaps cut by the new size */
        PgBlockRange one[] = {{3, 5}};
        assert_int_equal(pg_chunks_plan(9, 2, one, 1, &v, &n), 0);
        assert_plan(v, n, (PgBlockRange[]){{0, 2}, {2, 3}, {5, 7}, {7, END}}, 4);
        free(v);
}

static void test_copy_fields(void **state) {
        char *f[4], *f5[5];
        size_t l[4], l5[5];
        (void)state;
        char line[] = "1\t\\N\ta\\tb\\\\c\\nd\t\n";
        assert_int_equal(pg_chunks_copy_fields(line, strlen(line) - 1, 4, f, l), 0);
        assert_string_equal(f[0], "1");
        assert_null(f[1]);
        assert_int_equal(l[2], 7);
        assert_memory_equal(f[2], "a\tb\\c\nd", 7);
        assert_string_equal(f[3], ""); /* an empty text is not NULL */
        char octal[] = "\\101\\x42\\N2\n";
        assert_int_equal(pg_chunks_copy_fields(octal, strlen(octal) - 1, 1, f, l), 0);
        assert_string_equal(f[0], "ABN2"); /* \N inside a value is not NULL */
        char few[] = "1\t2\n";
        assert_int_equal(pg_chunks_copy_fields(few, strlen(few) - 1, 3, f, l), -EBADMSG);
        /* plain fields (found by memchr, in place) around escaped ones and empty ones */
        char mixed[] = "\t x y \t\\N\t\\\\\tlast";
        assert_int_equal(pg_chunks_copy_fields(mixed, strlen(mixed), 5, f5, l5), 0);
        assert_string_equal(f5[0], "");
        assert_string_equal(f5[1], " x y ");
        assert_int_equal(l5[1], 5);
        assert_null(f5[2]);
        assert_string_equal(f5[3], "\\");
        assert_string_equal(f5[4], "last");
        assert_int_equal(l5[4], 4);
        char many[] = "1\t2\t3\n";
        assert_int_equal(pg_chunks_copy_fields(many, strlen(many) - 1, 2, f, l), -EBADMSG);
}

static void test_chunk_keys(void **state) {
        char key[COPIES_NAME_MAX + 48];
        uint64_t lo, hi;
        (void)state;
        copies_chunk_key("public.big", 100, 200, key, sizeof(key));
        assert_string_equal(key, "public.big [100,200)");
        assert_true(copies_chunk_parse(key, "public.big", &lo, &hi));
        assert_true(lo == 100 && hi == 200);
        copies_chunk_key("public.big", 300, UINT64_MAX, key, sizeof(key));
        assert_string_equal(key, "public.big [300,)");
        assert_true(copies_chunk_parse(key, "public.big", &lo, &hi));
        assert_true(lo == 300 && hi == UINT64_MAX);
        /* another table whose name starts alike, a table record, garbage */
        assert_false(copies_chunk_parse("public.bigger [0,4)", "public.big", &lo, &hi));
        assert_false(copies_chunk_parse("public.big", "public.big", &lo, &hi));
        assert_false(copies_chunk_parse("public.big [4,4)", "public.big", &lo, &hi));
        assert_false(copies_chunk_parse("public.big [x,4)", "public.big", &lo, &hi));
        assert_false(copies_chunk_parse("public.big [1,4) ", "public.big", &lo, &hi));
}

static void test_registry_states(void **state) {
        CopyState st;
        (void)state;
        for (CopyState s = COPY_STATE_COPIED; s <= COPY_STATE_CHUNK; s++) {
                assert_int_equal(copies_state_parse(copies_state_name(s), &st), 0);
                assert_int_equal(st, s);
        }
        assert_int_equal(copies_state_parse("resnapshotting", &st), -EINVAL);
        /* copies_find sees tables, never chunk records */
        CopiedTable list[2] = {{.table = "public.big [0,4)", .state = COPY_STATE_CHUNK},
                               {.table = "public.big", .state = COPY_STATE_COPYING}};
        const CopiedTable *f = copies_find(list, 2, "public", "big");
        assert_non_null(f);
        assert_int_equal(f->state, COPY_STATE_COPYING);
        assert_null(copies_find(list, 1, "public", "big [0,4)"));
        /* a chunk record is an idempotent upsert of the registry row keyed by the chunk */
        Change c;
        assert_int_equal(
                copies_record_state("p", "public.big [0,4)", COPY_STATE_CHUNK, (Position){0, 42}, "0/2A", 7, &c), 0);
        assert_true(copies_is_registry(c.table));
        assert_true(c.flags & CHANGE_IDEMPOTENT);
        assert_string_equal(c.after[1].data, "public.big [0,4)");
        assert_string_equal(c.after[2].data, "chunk");
        assert_string_equal(c.after[6].data, "7");
        change_clear(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_blocks_per_chunk), cmocka_unit_test(test_plan_fresh),
                cmocka_unit_test(test_plan_around_done), cmocka_unit_test(test_copy_fields),
                cmocka_unit_test(test_chunk_keys),       cmocka_unit_test(test_registry_states),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
