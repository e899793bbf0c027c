/* Fuzz target: a run of binlog events as the MySQL source reads them (FORMAT_DESCRIPTION,
 * ROTATE, QUERY and QUERY_COMPRESSED, TABLE_MAP, the rows events v1/v2 and their compressed
 * kinds), each rows event's images decoded one row after another as mysql_source.c's emit_rows
 * does. Input: byte 0 = flags (bit 0: the events end in a 4-byte checksum, until a
 * FORMAT_DESCRIPTION says otherwise; bit 1: columns get column infos: unsigned, charsets, JSON,
 * ENUM/SET names), then the events back to back. Seeds: the .binlog files of tests/fixtures/binlog. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mysql/binlog.h"

#define MAPS 4

static char *names[] = {"red", "green", "blue", "a", "b", "c", "d"};

static bool is_rows(uint8_t t) {
        return (t >= BINLOG_WRITE_ROWS_V1 && t <= BINLOG_DELETE_ROWS_V1) ||
               (t >= BINLOG_WRITE_ROWS && t <= BINLOG_DELETE_ROWS) ||
               (t >= BINLOG_WRITE_ROWS_COMPRESSED_V1 && t <= BINLOG_DELETE_ROWS_COMPRESSED);
}

/* Every row of the event, as the source reads them: each must use at least one byte. */
static void decode_rows(const BinlogRows *rows, const BinlogTableMap *tm, const BinlogColumnInfo *info) {
        size_t off = 0;
        unsigned zero_dates = 0;
        while (off < rows->rows_len) {
                size_t start = off;
                int nimg = rows->op == CHANGE_UPDATE ? 2 : 1;
                for (int i = 0; i < nimg; i++) {
                        Value *v = values_new((int)tm->ncols);
                        FUZZ_CHECK(v);
                        size_t used = 0;
                        int r = binlog_decode_row(tm, info, i == 0 ? rows->present : rows->present_after,
                                                  rows->rows + off, rows->rows_len - off, v, &used, &zero_dates);
                        if (r == 0) {
                                FUZZ_CHECK(used <= rows->rows_len - off);
                                for (uint32_t c = 0; c < tm->ncols; c++)
                                        FUZZ_CHECK(v[c].kind != VALUE_TEXT ||
                                                   (v[c].data && v[c].data[v[c].len] == '\0'));
                        } else {
                                FUZZ_CHECK(r == -EBADMSG || r == -ENOTSUP || r == -ENOMEM);
                        }
                        values_free(v, (int)tm->ncols);
                        if (r < 0)
                                return;
                        off += used;
                }
                /* a row of 0 bytes: the source would emit it forever */
                FUZZ_CHECK(off > start);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        bool checksum = data[0] & 1, with_info = data[0] & 2;
        BinlogTableMap *maps[MAPS] = {0};
        size_t nmaps = 0, off = 1;
        while (off < size) {
                BinlogHeader h;
                if (binlog_read_header(data + off, size - off, checksum, &h) < 0)
                        break;
                FUZZ_CHECK(h.event_len >= BINLOG_HEADER_LEN && h.event_len <= size - off);
                FUZZ_CHECK(h.body >= data + off && h.body + h.body_len <= data + off + h.event_len);
                if (h.type == BINLOG_FORMAT_DESCRIPTION) {
                        bool cs;
                        if (binlog_read_fde_checksum(data + off, size - off, &cs) == 0)
                                checksum = cs;
                } else if (h.type == BINLOG_ROTATE) {
                        uint64_t pos;
                        const char *name;
                        size_t len;
                        if (binlog_read_rotate(&h, &pos, &name, &len) == 0)
                                FUZZ_CHECK((const uint8_t *)name + len <= h.body + h.body_len);
                } else if (h.type == BINLOG_QUERY || h.type == BINLOG_QUERY_COMPRESSED) {
                        BinlogQuery q;
                        int r = binlog_read_query(&h, &q);
                        if (r == 0)
                                binlog_query_clear(&q);
                        else
                                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE || r == -ENOMEM);
                } else if (h.type == BINLOG_TABLE_MAP) {
                        BinlogTableMap *tm;
                        if (binlog_read_table_map(&h, &tm) == 0) {
                                FUZZ_CHECK(tm->ncols > 0 && tm->schema && tm->table);
                                size_t i = 0;
                                while (i < nmaps && maps[i]->table_id != tm->table_id)
                                        i++;
                                if (i == MAPS)
                                        i = 0;
                                else if (i == nmaps)
                                        nmaps++;
                                binlog_table_map_free(maps[i]);
                                maps[i] = tm;
                        }
                } else if (is_rows(h.type)) {
                        BinlogRows rows;
                        int r = binlog_read_rows(&h, &rows);
                        if (r < 0) {
                                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE || r == -ENOMEM);
                        } else {
                                for (size_t i = 0; i < nmaps; i++) {
                                        const BinlogTableMap *tm = maps[i];
                                        if (tm->table_id != rows.table_id || tm->ncols != rows.ncols)
                                                continue;
                                        BinlogColumnInfo *info = NULL;
                                        if (with_info) {
                                                info = calloc(tm->ncols, sizeof(*info));
                                                FUZZ_CHECK(info);
                                                for (uint32_t c = 0; c < tm->ncols; c++)
                                                        info[c] = (BinlogColumnInfo){.is_unsigned = c % 2,
                                                                                     .json = c % 5 == 4,
                                                                                     .charset = (BinlogCharset)(c % 3),
                                                                                     .elems = names + c % 3,
                                                                                     .nelems = (int)(c % 5)};
                                        }
                                        decode_rows(&rows, tm, info);
                                        free(info);
                                }
                                binlog_rows_clear(&rows);
                        }
                }
                off += h.event_len;
        }
        for (size_t i = 0; i < nmaps; i++)
                binlog_table_map_free(maps[i]);
        return 0;
}
