/* Unit tests of the binlog decoder against a binlog file captured from MariaDB 10.11
 * (tests/fixtures/binlog/types.binlog, written by types.sql in the same folder). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mysql/binlog.h"

#define MAXCOLS 40
#define MAXIMGS 16

typedef struct {
        char op;   /* I U D */
        int image; /* 0 before, 1 after */
        char table[32];
        int ncols;
        Value vals[MAXCOLS];
} Image;

static uint8_t *file_data;
static size_t file_len;
static Image imgs[MAXIMGS];
static int nimgs;
static unsigned zero_dates;

/* test.types: which columns are unsigned, latin1, binary, ENUM/SET, JSON */
static char *enum_names[] = {"red", "green", "blue"};
static char *set_names[] = {"a", "b", "c", "d"};
static BinlogColumnInfo types_info[35];

static const char *const types_cols[35] = {"id", "ti", "tiu", "si",  "siu",  "mi", "miu", "i",  "iu", "bi", "biu", "d1",
                                           "d2", "d3", "f",   "dbl", "c",    "vc", "vcl", "cl", "t",  "bl", "vb",  "bn",
                                           "dt", "tm", "tm6", "dtm", "dtm3", "ts", "yr",  "bt", "e",  "st", "j"};

static void setup_info(void) {
        for (int i = 0; i < 35; i++)
                types_info[i] = (BinlogColumnInfo){.charset = BINLOG_CS_UTF8};
        for (int i = 2; i <= 10; i += 2)
                types_info[i].is_unsigned = true;
        types_info[18].charset = types_info[19].charset = BINLOG_CS_LATIN1;
        types_info[21].charset = types_info[22].charset = types_info[23].charset = BINLOG_CS_BINARY;
        types_info[32].elems = enum_names;
        types_info[32].nelems = 3;
        types_info[33].elems = set_names;
        types_info[33].nelems = 4;
        types_info[34].json = true;
}

static int load_file(void **state) {
        (void)state;
        const char *dir = getenv("FIXTURES");
        char path[1024];
        snprintf(path, sizeof(path), "%s/binlog/types.binlog", dir ? dir : "tests/fixtures");
        FILE *f = fopen(path, "rbe");
        if (!f)
                return -1;
        file_data = malloc(1 << 20);
        file_len = fread(file_data, 1, 1 << 20, f);
        fclose(f);
        setup_info();
        return file_len > 4 ? 0 : -1;
}

static int free_file(void **state) {
        (void)state;
        for (int i = 0; i < nimgs; i++)
                for (int c = 0; c < imgs[i].ncols; c++)
                        free(imgs[i].vals[c].data);
        free(file_data);
        return 0;
}

static bool is_rows(uint8_t t) {
        return (t >= BINLOG_WRITE_ROWS_V1 && t <= BINLOG_DELETE_ROWS_V1) ||
               (t >= BINLOG_WRITE_ROWS && t <= BINLOG_DELETE_ROWS);
}

/* Walks every event of the file, decoding every row image of test.types and test.zd. */
static void test_walk_file(void **state) {
        (void)state;
        assert_memory_equal(file_data, BINLOG_MAGIC, 4);
        size_t off = 4;
        bool checksum = false;
        BinlogTableMap *maps[4] = {0};
        int nmaps = 0;
        while (off < file_len) {
                BinlogHeader h;
                if (off == 4)
                        assert_int_equal(binlog_read_fde_checksum(file_data + off, file_len - off, &checksum), 0);
                assert_int_equal(binlog_read_header(file_data + off, file_len - off, checksum, &h), 0);
                assert_int_equal(h.next_pos, off + h.event_len);
                assert_int_equal(h.server_id, 1);
                if (h.type == BINLOG_TABLE_MAP) {
                        BinlogTableMap *tm;
                        assert_int_equal(binlog_read_table_map(&h, &tm), 0);
                        assert_string_equal(tm->schema, "test");
                        /* a TABLE_MAP precedes each statement's rows: replace the same id */
                        int i = 0;
                        while (i < nmaps && maps[i]->table_id != tm->table_id)
                                i++;
                        assert_true(i < 4);
                        if (i == nmaps)
                                nmaps++;
                        binlog_table_map_free(maps[i]);
                        maps[i] = tm;
                } else if (is_rows(h.type)) {
                        BinlogRows rows;
                        assert_int_equal(binlog_read_rows(&h, &rows), 0);
                        BinlogTableMap *tm = NULL;
                        for (int i = 0; i < nmaps; i++)
                                if (maps[i]->table_id == rows.table_id)
                                        tm = maps[i];
                        assert_non_null(tm);
                        assert_int_equal(rows.ncols, tm->ncols);
                        const BinlogColumnInfo *info = strcmp(tm->table, "types") == 0 ? types_info : NULL;
                        size_t roff = 0;
                        while (roff < rows.rows_len) {
                                for (int image = 0; image < (rows.op == CHANGE_UPDATE ? 2 : 1); image++) {
                                        assert_true(nimgs < MAXIMGS);
                                        Image *im = &imgs[nimgs++];
                                        im->op = (char)rows.op;
                                        im->image = rows.op == CHANGE_INSERT || image == 1;
                                        snprintf(im->table, sizeof(im->table), "%s", tm->table);
                                        im->ncols = (int)tm->ncols;
                                        size_t used;
                                        const uint8_t *present = image ? rows.present_after : rows.present;
                                        assert_int_equal(binlog_decode_row(tm, info, present, rows.rows + roff,
                                                                           rows.rows_len - roff, im->vals, &used,
                                                                           &zero_dates),
                                                         0);
                                        roff += used;
                                }
                        }
                        assert_int_equal(roff, rows.rows_len);
                }
                off += h.event_len;
        }
        assert_int_equal(off, file_len);
        for (int i = 0; i < nmaps; i++)
                binlog_table_map_free(maps[i]);
        /* types: 3 inserts, one update (before + after), one delete; zd: one insert */
        assert_int_equal(nimgs, 7);
}

static const char *val(int img, const char *col) {
        for (int i = 0; i < 35; i++)
                if (strcmp(types_cols[i], col) == 0) {
                        const Value *v = &imgs[img].vals[i];
                        return v->kind == VALUE_TEXT ? v->data : v->kind == VALUE_NULL ? "NULL" : "UNCHANGED";
                }
        fail_msg("no column %s", col);
        return NULL;
}

static void test_row1_every_type(void **state) {
        (void)state;
        static const char *const want[][2] = {
                {"id", "1"},
                {"ti", "-128"},
                {"tiu", "255"},
                {"si", "-32768"},
                {"siu", "65535"},
                {"mi", "-8388608"},
                {"miu", "16777215"},
                {"i", "-2147483648"},
                {"iu", "4294967295"},
                {"bi", "-9223372036854775808"},
                {"biu", "18446744073709551615"},
                {"d1", "-12345678.91"},
                {"d2", "-12345678901234567890123456789012345.123456789012345678901234567891"},
                {"d3", "99999"},
                {"f", "1.5"},
                {"dbl", "0.1"},
                {"c", "h\xc3\xa9llo"},
                {"vcl", "caf\xc3\xa9"},
                {"cl", "\xc3\xb1"},
                {"t", "long text \xe2\x9c\x93"},
                {"bl", "\\x00ff10"},
                {"vb", "\\xdeadbeef"},
                {"bn", "\\x01020000"},
                {"dt", "2024-02-29"},
                {"tm", "-838:59:59"},
                {"tm6", "12:34:56.789012"},
                {"dtm", "1999-12-31 23:59:59"},
                {"dtm3", "2000-01-01 00:00:00.123"},
                {"ts", "2024-06-01 10:00:00.500000+00"},
                {"yr", "2024"},
                {"bt", "1010000001"},
                {"e", "green"},
                {"st", "a,c"},
                {"j", "{\"k\": [1, 2.5, \"x\"]}"},
        };
        assert_int_equal(imgs[0].op, 'I');
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                assert_string_equal(val(0, want[i][0]), want[i][1]);
        const char *vc = val(0, "vc");
        assert_int_equal(strlen(vc), 300);
        assert_int_equal(strspn(vc, "x"), 300);
}

static void test_nulls_and_edges(void **state) {
        (void)state;
        /* row 2: only the key set */
        assert_string_equal(val(1, "id"), "2");
        for (int i = 1; i < 35; i++)
                assert_int_equal(imgs[1].vals[i].kind, VALUE_NULL);
        /* row 3: zeroes, small and negative values, empty strings */
        assert_string_equal(val(2, "i"), "0");
        assert_string_equal(val(2, "d1"), "0.05");
        assert_string_equal(val(2, "d3"), "-1");
        assert_string_equal(val(2, "dbl"), "-2.5e-300");
        assert_string_equal(val(2, "f"), "-3.25");
        assert_string_equal(val(2, "tm"), "00:00:00");
        assert_string_equal(val(2, "tm6"), "-00:00:01.500000");
        assert_string_equal(val(2, "yr"), "1901");
        assert_string_equal(val(2, "c"), "");
        assert_string_equal(val(2, "e"), "red");
        assert_string_equal(val(2, "st"), "");
        assert_string_equal(val(2, "bt"), "0000000000");
        assert_string_equal(val(2, "vc"), "NULL");
}

static void test_update_delete_zero_dates(void **state) {
        (void)state;
        /* update of id 1: before image holds the old values, after the new ones */
        assert_int_equal(imgs[3].op, 'U');
        assert_int_equal(imgs[3].image, 0);
        assert_string_equal(val(3, "i"), "-2147483648");
        assert_int_equal(imgs[4].image, 1);
        assert_string_equal(val(4, "i"), "42");
        assert_string_equal(val(4, "vc"), "changed");
        assert_string_equal(val(4, "ts"), "2024-06-01 10:00:00.500000+00");
        assert_int_equal(imgs[5].op, 'D');
        assert_string_equal(val(5, "id"), "2");
        /* zd: '0000-00-00' and '0000-00-00 00:00:00' become NULL and are counted */
        assert_string_equal(imgs[6].table, "zd");
        assert_string_equal(imgs[6].vals[0].data, "1");
        assert_int_equal(imgs[6].vals[1].kind, VALUE_NULL);
        assert_int_equal(imgs[6].vals[2].kind, VALUE_NULL);
        assert_int_equal(zero_dates, 2);
}

/* Every prefix of every event must be refused or decoded within its bounds (ASan checks the
 * reads: each prefix is copied into a buffer of exactly its size). */
static void test_truncated(void **state) {
        (void)state;
        size_t off = 4;
        BinlogTableMap *tm = NULL;
        int rows_checked = 0;
        while (off < file_len) {
                BinlogHeader h;
                assert_int_equal(binlog_read_header(file_data + off, file_len - off, true, &h), 0);
                for (size_t n = 0; n < h.event_len; n++) {
                        uint8_t *cut = malloc(n ? n : 1);
                        memcpy(cut, file_data + off, n);
                        BinlogHeader hc;
                        assert_int_equal(binlog_read_header(cut, n, true, &hc), -EBADMSG);
                        free(cut);
                }
                if (h.type == BINLOG_TABLE_MAP) {
                        binlog_table_map_free(tm);
                        assert_int_equal(binlog_read_table_map(&h, &tm), 0);
                        for (size_t n = 0; n < h.body_len; n++) {
                                uint8_t *cut = malloc(n ? n : 1);
                                memcpy(cut, h.body, n);
                                BinlogHeader hc = h;
                                hc.body = cut;
                                hc.body_len = n;
                                BinlogTableMap *t2 = NULL;
                                int r = binlog_read_table_map(&hc, &t2);
                                assert_true(r == 0 || r == -EBADMSG);
                                binlog_table_map_free(t2);
                                free(cut);
                        }
                } else if (is_rows(h.type) && strcmp(tm->table, "types") == 0) {
                        BinlogRows rows;
                        assert_int_equal(binlog_read_rows(&h, &rows), 0);
                        size_t used;
                        Value vals[MAXCOLS] = {0};
                        assert_int_equal(binlog_decode_row(tm, types_info, rows.present, rows.rows, rows.rows_len, vals,
                                                           &used, NULL),
                                         0);
                        for (size_t n = 0; n < used; n++) {
                                uint8_t *cut = malloc(n ? n : 1);
                                memcpy(cut, rows.rows, n);
                                size_t u2;
                                assert_int_equal(
                                        binlog_decode_row(tm, types_info, rows.present, cut, n, vals, &u2, NULL),
                                        -EBADMSG);
                                free(cut);
                        }
                        for (int c = 0; c < MAXCOLS; c++)
                                free(vals[c].data);
                        rows_checked++;
                }
                off += h.event_len;
        }
        binlog_table_map_free(tm);
        assert_int_equal(rows_checked, 5);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_walk_file),       cmocka_unit_test(test_row1_every_type),
                cmocka_unit_test(test_nulls_and_edges), cmocka_unit_test(test_update_delete_zero_dates),
                cmocka_unit_test(test_truncated),
        };
        return cmocka_run_group_tests(tests, load_file, free_file);
}
