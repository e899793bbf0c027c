/* Fuzz target: one CopyData payload of the replication stream as the walsender sends it ('w'
 * XLogData around a pgoutput message, or a 'k' keepalive), decoded as pg_source does, inside and
 * outside a streamed block. Seeds: tests/fixtures/pgoutput/stream.bin, one record per input. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cdcsync/change.h"
#include "fuzz_common.h"
#include "postgres/pgoutput.h"

static void check_ts(int64_t ts) {
        FUZZ_CHECK(ts >= 0 && ts <= CHANGE_TS_MAX);
}

static void check_tuple(const PgoutputTuple *t, const uint8_t *buf, size_t len) {
        FUZZ_CHECK(t->ncols >= 0 && (t->ncols == 0 || t->cols));
        for (int i = 0; i < t->ncols; i++) {
                const PgoutputColumn *c = &t->cols[i];
                if (c->kind == 't' || c->kind == 'b')
                        FUZZ_CHECK((const uint8_t *)c->data >= buf && (const uint8_t *)c->data + c->len <= buf + len);
                else
                        FUZZ_CHECK(c->kind == 'n' || c->kind == 'u');
        }
}

static void decode(const uint8_t *buf, size_t len, bool in_stream) {
        PgoutputMsg m;
        char err[128];
        err[0] = 'x';
        int r = pgoutput_decode(buf, len, in_stream, &m, err, sizeof(err));
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOMEM);
                FUZZ_CHECK(memchr(err, '\0', sizeof(err)));
                return;
        }
        FUZZ_CHECK(r == 0);
        switch (m.type) {
        case PGOUTPUT_BEGIN: check_ts(m.u.begin.commit_ts); break;
        case PGOUTPUT_COMMIT:
        case PGOUTPUT_STREAM_COMMIT: check_ts(m.u.commit.commit_ts); break;
        case PGOUTPUT_RELATION:
                FUZZ_CHECK(m.u.relation.natts >= 0 && (m.u.relation.natts == 0 || m.u.relation.attrs));
                for (int i = 0; i < m.u.relation.natts; i++)
                        FUZZ_CHECK(m.u.relation.attrs[i].name);
                break;
        case PGOUTPUT_INSERT:
        case PGOUTPUT_UPDATE:
        case PGOUTPUT_DELETE:
                check_tuple(&m.u.row.old_tuple, buf, len);
                check_tuple(&m.u.row.new_tuple, buf, len);
                break;
        case PGOUTPUT_TRUNCATE: FUZZ_CHECK(m.u.truncate.nrels >= 0); break;
        case PGOUTPUT_MESSAGE:
                FUZZ_CHECK(!m.u.message.len || ((const uint8_t *)m.u.message.content >= buf &&
                                                (const uint8_t *)m.u.message.content + m.u.message.len <= buf + len));
                break;
        default: break;
        }
        pgoutput_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        PgwireKeepalive k;
        PgwireXLogData x;
        if (pgwire_read_keepalive(data, size, &k) == 0)
                check_ts(k.send_time);
        const uint8_t *msg = data;
        size_t len = size;
        if (pgwire_read_xlogdata(data, size, &x) == 0) {
                check_ts(x.send_time);
                FUZZ_CHECK(x.data >= data && x.data + x.len == data + size);
                msg = x.data;
                len = x.len;
        }
        decode(msg, len, false);
        decode(msg, len, true);
        return 0;
}
