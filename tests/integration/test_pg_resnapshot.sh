#!/usr/bin/env bash
# `cdcsync resnapshot` and POST /api/pipelines/NAME/resnapshot (issue #14): a PostgreSQL →
# PostgreSQL pipeline streams two tables while writers insert, update, delete and move keys in
# public.big and insert into public.other. public.big's sink falls out of sync behind cdcsync's
# back: rows deleted at the source while the table was out of the publication, rows deleted,
# changed and made up on the sink. A resnapshot through the CLI, then one through HTTP cut short
# by kill -9 (resumed from the registry), each leave public.big equal to the source; public.other's
# changes reach the sink while public.big is being copied again (seen in the sink's registry in
# the same query that sees them). A second pipeline copies public.big into MariaDB, whose rows
# are damaged the same way and re-copied through the CLI.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start p
my_start m 1
my_on m -e "CREATE TABLE big (id BIGINT PRIMARY KEY, v TEXT, n INT)"
MPORT=$(free_port)
db() {
  local d=$1
  shift
  psql -X -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -d "$d" -qAt -v ON_ERROR_STOP=1 "$@"
}
dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$PG_p_PORT" "$1"; }
for d in src dst; do psql_on p -c "CREATE DATABASE $d"; done
for d in src dst; do
  db $d -c "CREATE TABLE big (id bigint PRIMARY KEY, v text, n int); CREATE TABLE other (id bigint PRIMARY KEY, v text)"
done
db src -c "INSERT INTO big SELECT i, md5(i::text), 0 FROM generate_series(1, 30000) i"
printf 'admin-pw\n' >"$WORK/admin.pass"
chmod 600 "$WORK/admin.pass"
conf() { # conf TABLES_OF_PG
  write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(dsn src)
[connector.dst]
type = postgres
dsn = $(dsn dst)
[connector.my]
$(my_connector m 9005)
[pipeline.pg]
source = src
sink = dst
tables = $1
snapshot = merge
snapshot_chunk_rows = 100
[pipeline.pgmy]
source = src
sink = my
tables = public.big
snapshot_chunk_rows = 500
map = public.* -> test.*
CONF
  sed -i "/^metrics_listen/a admin_user = ops\nadmin_password_file = $WORK/admin.pass" "$WORK/cdcsync.conf"
}
conf "public.big, public.other"

same() { # same TABLE: the sink's rows are the source's
  [ "$(db src -c "SELECT count(*) || md5(string_agg(t::text, ',' ORDER BY id)) FROM $1 t")" = \
    "$(db dst -c "SELECT count(*) || md5(string_agg(t::text, ',' ORDER BY id)) FROM $1 t")" ]
}
my_same() { # MariaDB's big is the source's
  [ "$(db src -c "COPY (SELECT id, v, n FROM big ORDER BY id) TO STDOUT" | md5sum)" = \
    "$(my_on m -e "SELECT id, v, n FROM big ORDER BY id" | md5sum)" ]
}
service_start
wait_for "the first copy" 120 same big
wait_for "the first copy into MariaDB" 120 my_same
log "first copy done: $(db dst -c "SELECT count(*) FROM big") rows"

# Rows deleted at the source while public.big is out of tables of pg (pgmy streams them): taken
# out (a restart: its record dropped, its publication altered), rows deleted, put back (a restart:
# copied again with snapshot = merge, which keeps the sink's rows the source no longer has).
in_log() { grep -c -- "$1" "$WORK/service.log" | grep -qx "$2"; }
service_stop
conf "public.other"
service_start
no_record() { [ "$(db dst -c "SELECT count(*) FROM cdcsync.tables WHERE pipeline = 'pg' AND source_table = 'public.big'")" = 0 ]; }
wait_for "big out of pg's tables (its record dropped)" 30 no_record
db src -c "DELETE FROM big WHERE id % 97 = 0"
service_stop
conf "public.big, public.other"
service_start
wait_for "big back in pg's tables" 60 in_log "pipeline=pg .*copied public.big (" 1
survivors() { [ "$(db dst -c "SELECT count(*) FROM big WHERE id % 97 = 0")" -gt 300 ]; }
wait_for "the rows deleted while big was out of tables still on the sink" 30 survivors
log "sink out of sync: $(db dst -c "SELECT count(*) FROM big WHERE id % 97 = 0") rows deleted at the source are still there"

# The writers: upserts, deletes and key moves in big (one client: key moves do not collide),
# started once a resnapshot owns big (a change applied before would meet the sink's damage and
# stop the pipeline: "the sink's data diverged"); a steady insert into other all along.
cat >"$WORK/w_big.sql" <<'SQL'
\set id random(1, 32000)
BEGIN;
INSERT INTO big VALUES (:id, md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = big.n + 1;
DELETE FROM big WHERE id = :id + 7;
UPDATE big SET id = -id WHERE id = :id + 13 AND NOT EXISTS (SELECT 1 FROM big WHERE id = -(:id + 13));
COMMIT;
SQL
printf 'INSERT INTO other SELECT coalesce(max(id), 0) + 1, md5(random()::text) FROM other;\n' >"$WORK/w_other.sql"
pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 1 -T 600 -R 100 -f "$WORK/w_other.sql" src >"$WORK/pgbench_other.log" 2>&1 &
OPID=$!
BPID=""
start_big() {
  pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 1 -T 600 -R 150 -f "$WORK/w_big.sql" src >>"$WORK/pgbench_big.log" 2>&1 &
  BPID=$!
}
stop_big() { [ -z "$BPID" ] || { kill -TERM "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; BPID=""; }; }

in_log_pg() { grep -- "$1" "$WORK/service.log" | grep -c "pipeline=pg " | grep -qx "$2"; }
# other's changes arrive while big is being copied again: the same query sees an other row
# written after the resnapshot began and big's record still saying "resnapshot"
flowing() {
  [ "$(db dst -c "SELECT (SELECT count(*) FROM other WHERE id > $1) > 0 AND
                         (SELECT state FROM cdcsync.tables WHERE source_table = 'public.big') = 'resnapshot'")" = t ]
}
own_gone() { [ "$(db dst -c "SELECT count(*) FROM big WHERE v IN ('stale', 'made up')")" = 0 ]; }

# 1. Through the CLI, the sink also damaged behind cdcsync's back: rows deleted, changed, made up.
db dst -c "DELETE FROM big WHERE id % 89 = 0; UPDATE big SET v = 'stale' WHERE id % 83 = 0;
           INSERT INTO big SELECT i, 'made up', 0 FROM generate_series(100001, 100300) i"
"$CDCSYNC" -c "$WORK/cdcsync.conf" resnapshot pg public.big >"$WORK/cli.out" 2>&1 || { cat "$WORK/cli.out"; fail "cdcsync resnapshot failed"; }
log "cli: $(cat "$WORK/cli.out")"
wait_for "the resnapshot to begin" 30 in_log_pg "resnapshot of public.big: copying it again" 1
start_big
mark=$(db dst -c "SELECT coalesce(max(id), 0) FROM other")
wait_for "other's changes applied while big is re-copied" 60 flowing "$mark"
log "other's rows past $mark applied while big's record says resnapshot"
wait_for "the resnapshot to end" 120 in_log_pg "resnapshot of public.big: done" 1
wait_for "the sink's own rows replaced or deleted" 30 own_gone
stop_big
wait_for "big equal to the source after the CLI resnapshot" 60 same big
log "big equal after the CLI resnapshot: $(db dst -c "SELECT count(*) FROM big") rows"

# 1b. MariaDB's copy, damaged on the sink, every table of pgmy through the CLI.
wait_for "MariaDB's big caught up" 60 my_same
my_on m -e "DELETE FROM big WHERE id % 89 = 0; UPDATE big SET v = 'stale' WHERE id % 83 = 0;
            INSERT INTO big SELECT seq, 'made up', 0 FROM seq_100001_to_100300"
"$CDCSYNC" -c "$WORK/cdcsync.conf" resnapshot pgmy >"$WORK/cli.out" 2>&1 || { cat "$WORK/cli.out"; fail "cdcsync resnapshot pgmy failed"; }
wait_for "the MariaDB resnapshot to begin" 30 in_log "pipeline=pgmy .*resnapshot of public.big: copying it again" 1
start_big
wait_for "the MariaDB resnapshot to end" 120 in_log "pipeline=pgmy .*resnapshot of public.big: done" 1
stop_big
wait_for "MariaDB's big equal to the source" 60 my_same
log "MariaDB's big equal after its resnapshot"

# 2. Through HTTP, after more damage on the sink, cut short by kill -9: it resumes.
db dst -c "DELETE FROM big WHERE id % 71 = 0; INSERT INTO big SELECT i, 'made up', 0 FROM generate_series(200001, 200100) i"
code=$(curl -sS -o "$WORK/body" -w '%{http_code}' --max-time 10 -u ops:admin-pw -X POST \
  -d '{"tables": ["public.nope"]}' "http://127.0.0.1:$MPORT/api/pipelines/pg/resnapshot")
[ "$code" = 400 ] && grep -q "not in tables" "$WORK/body" || fail "a table not in tables answered $code: $(cat "$WORK/body")"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X POST "http://127.0.0.1:$MPORT/api/pipelines/pg/resnapshot")
[ "$code" = 401 ] || fail "resnapshot without credentials answered $code"
code=$(curl -sS -o "$WORK/body" -w '%{http_code}' --max-time 10 -u ops:admin-pw -X POST \
  -d '{"tables": ["public.big"]}' "http://127.0.0.1:$MPORT/api/pipelines/pg/resnapshot")
[ "$code" = 202 ] || fail "POST resnapshot answered $code: $(cat "$WORK/body")"
wait_for "the second resnapshot to begin" 30 in_log_pg "resnapshot of public.big: copying it again" 2
start_big
chunks_done() { [ "$(db dst -c "SELECT state || ' ' || (copied_rows > 1000)::text FROM cdcsync.tables WHERE source_table = 'public.big'")" = "resnapshot true" ]; }
wait_for "some chunks of the second resnapshot" 60 chunks_done
service_kill9
log "killed during the resnapshot: $(db dst -c "SELECT state, pos_text, copied_rows FROM cdcsync.tables WHERE source_table = 'public.big'")"
service_start
wait_for "the resnapshot resumed" 30 in_log_pg "resnapshot of public.big: resumed after key" 1
wait_for "the resumed resnapshot to end" 120 in_log_pg "resnapshot of public.big: done" 2
stop_big
kill -TERM "$OPID" 2>/dev/null || true
wait "$OPID" 2>/dev/null || true
log "writers stopped: big $(grep -o 'number of transactions actually processed: [0-9]*' "$WORK/pgbench_big.log" | tr '\n' ' ')"
wait_for "big equal to the source" 60 same big
wait_for "other equal to the source" 60 same other
wait_for "MariaDB's big equal to the source" 60 my_same
[ "$(db dst -c "SELECT state FROM cdcsync.tables WHERE source_table = 'public.big'")" = copied ] || fail "big's record is not copied"
log "big: $(db dst -c "SELECT count(*) FROM big") rows equal, other: $(db dst -c "SELECT count(*) FROM other") rows equal"
finish
