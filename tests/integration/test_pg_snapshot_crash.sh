#!/usr/bin/env bash
# An initial snapshot interrupted by kill -9 never leaves a half-copied table behind as if it
# were complete (snapshot = replace: the sink's stale row goes): each chunk is one sink
# transaction with its record, every table is recorded "copying" until its last chunk, so after
# the crash the sink holds whole chunks only; the next start keeps the slot and the chunks done,
# copies the rest as of a new snapshot (small, not started, is emptied then as replace says), and
# then streams what was written meanwhile, with no gap and no duplicate (#14). A VACUUM FULL
# while it is down moves rows into chunks already done: the resume reads the table again.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
psql_on src <<'SQL'
CREATE TABLE big (id int PRIMARY KEY, payload text, n numeric);
INSERT INTO big SELECT g, repeat(md5(g::text), 8), g * 1.5 FROM generate_series(1, 400000) g;
CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 100) g;
SQL
psql_on dst <<'SQL'
CREATE TABLE big (id int PRIMARY KEY, payload text, n numeric);
CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small VALUES (-1, 'stale row the snapshot must replace');
SQL

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.snap]
source = src
sink = dst
tables = public.big, public.small
snapshot = replace
snapshot_chunk_rows = 20000
snapshot_workers = 1
CONF

service_start
wait_for "the snapshot to start copying" 30 grep -q "copying existing rows" "$WORK/service.log"
big_rows() { [ "$(psql_on dst -c "SELECT count(*) FROM big")" -gt 0 ]; }
wait_for "chunks of big in the sink" 60 big_rows
service_kill9
log "killed during the snapshot"
# Every table still recorded as being copied (whole chunks only), the stale row still there.
[ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.tables WHERE state = 'copying'")" = 2 ] ||
  fail "the tables are not recorded as copying after the crash"
[ "$(psql_on dst -c "SELECT count(*) FROM small WHERE id = -1")" = 1 ] || fail "small changed before its copy began"

# Changes while the service is down, then a restart: a new snapshot, then streaming.
psql_on src -c "UPDATE big SET n = -n WHERE id % 1000 = 0; DELETE FROM big WHERE id > 399900; INSERT INTO small VALUES (101, 'while down')"
# A rewrite while the copy is cut short: the rows left move into the first blocks, whose chunks
# are done; the resume must notice (the table's filenode changed) and read every chunk again.
psql_on src -c "DELETE FROM big WHERE id <= 200000"
psql_on src -c "VACUUM FULL big"
service_start
wait_synced src dst 180 big small
assert_grep "resuming the initial copy of 2 tables" "$WORK/service.log"
assert_grep "snapshot of public.big: the table was rewritten since its copy began" "$WORK/service.log"
! grep -q "left by an unfinished snapshot" "$WORK/service.log" || fail "the restart dropped the slot"
psql_on src -c "INSERT INTO small VALUES (102, 'after the snapshot'); UPDATE big SET payload = 'x' WHERE id = 7"
wait_synced src dst 60 big small
assert_tables_equal src dst big small
service_stop
finish
