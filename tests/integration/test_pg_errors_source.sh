#!/usr/bin/env bash
# Bad input, part 2 (issue #2): a source PostgreSQL the service cannot stream from — wal_level not
# logical, a role without REPLICATION, a slot of another plugin. Each is said once, clearly, in
# `check --connect` and in the service log; the pipeline is FAILED (not retried forever) and
# /healthz answers 503 naming the reason.
source "$(dirname "$0")/lib.sh"

pg_start wal   # will run with wal_level = replica
pg_start db    # the other sources, and the sink (database sinkdb)
MPORT=$(free_port)

echo "wal_level = replica" >>"$PG_wal_DIR/data/postgresql.conf"
bash "$SRCDIR/scripts/pg.sh" restart "$PG_wal_DIR"
[ "$(psql_on wal -c 'SHOW wal_level')" = replica ] || fail "could not set wal_level = replica"

for c in wal db; do psql_on $c -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')"; done
psql_on db -c "CREATE DATABASE sinkdb"
psql_on db -c "CREATE ROLE norepl LOGIN; GRANT SELECT ON t TO norepl"
psql_on db -c "SELECT pg_create_logical_replication_slot('cdcsync_x', 'test_decoding')" >/dev/null

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.walsrc]
type = postgres
dsn = host=127.0.0.1 port=$PG_wal_PORT user=postgres dbname=postgres

[connector.norepl]
type = postgres
dsn = host=127.0.0.1 port=$PG_db_PORT user=norepl dbname=postgres
publication = pub_norepl

[connector.plugsrc]
type = postgres
dsn = host=127.0.0.1 port=$PG_db_PORT user=postgres dbname=postgres
slot = cdcsync_x

[connector.sink]
type = postgres
dsn = host=127.0.0.1 port=$PG_db_PORT user=postgres dbname=sinkdb
create_tables = yes

[pipeline.p_wal]
source = walsrc
sink = sink
tables = public.t

[pipeline.p_norepl]
source = norepl
sink = sink
tables = public.t
map = public.t -> public.t_norepl

[pipeline.p_plugin]
source = plugsrc
sink = sink
tables = public.t
map = public.t -> public.t_plugin
CONF

MSG_WAL="connector walsrc: wal_level is 'replica', logical decoding needs 'logical' — set wal_level = logical in postgresql.conf and restart PostgreSQL"
MSG_REPL='connector norepl: role "norepl" lacks the REPLICATION attribute — ALTER ROLE norepl REPLICATION (or use a role that has it)'
MSG_PLUGIN='connector plugsrc: replication slot "cdcsync_x" exists but uses plugin "test_decoding", not pgoutput — drop it or set slot = another name'

# check --connect finds all three before anything runs.
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/check.out" >&2; fail "check --connect exited $rc, expected 1"; }
assert_grep "pipeline p_wal: source walsrc: $MSG_WAL" "$WORK/check.out"
assert_grep "pipeline p_norepl: source norepl: $MSG_REPL" "$WORK/check.out"
assert_grep "pipeline p_plugin: source plugsrc: $MSG_PLUGIN" "$WORK/check.out"

service_start
healthz() { curl -s -o "$WORK/healthz.out" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz" >"$WORK/healthz.code"; }
all_failed() {
  healthz
  [ "$(grep -c ': failed (last error at' "$WORK/healthz.out")" = 3 ]
}
wait_for "all three pipelines failed" 30 all_failed
[ "$(cat "$WORK/healthz.code")" = 503 ] || fail "/healthz answered $(cat "$WORK/healthz.code"), expected 503"
assert_grep "pipeline p_wal: failed (last error at " "$WORK/healthz.out"
assert_grep "$MSG_WAL" "$WORK/healthz.out"
assert_grep "pipeline p_norepl: failed (last error at " "$WORK/healthz.out"
assert_grep "$MSG_REPL" "$WORK/healthz.out"
assert_grep "pipeline p_plugin: failed (last error at " "$WORK/healthz.out"
assert_grep "$MSG_PLUGIN" "$WORK/healthz.out"
for m in "$MSG_WAL" "$MSG_REPL" "$MSG_PLUGIN"; do
  assert_grep "$m — the pipeline is stopped until this is fixed" "$WORK/service.log"
done
# Failed means tried once: a second attempt would have logged (and counted) the error again.
# (Waiting past the first backoff of 0.5 s is what lets a retrying pipeline show itself.)
watch_until=$((SECONDS + 3))
while [ $SECONDS -lt $watch_until ]; do sleep 0.2; done
curl -s "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.out"
for p in p_wal:source p_norepl:privilege p_plugin:slot; do
  assert_grep "cdcsync_errors_total{pipeline=\"${p%%:*}\",kind=\"${p#*:}\"} 1" "$WORK/metrics.out"
done
[ "$(grep -cF "$MSG_WAL" "$WORK/service.log")" = 1 ] || fail "the wal_level error was logged more than once: retried"
assert_grep 'cdcsync_pipeline_up{pipeline="p_wal"} 0' "$WORK/metrics.out"
# Nothing reached the sink, and the foreign slot is untouched.
[ "$(psql_on db -d sinkdb -c "SELECT count(*) FROM pg_tables WHERE tablename IN ('t', 't_norepl', 't_plugin')")" = 0 ] || fail "a failed pipeline wrote to the sink"
[ "$(psql_on db -c "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'cdcsync_x'")" = test_decoding ] || fail "the foreign slot was changed"
service_stop
assert_grep "stopped" "$WORK/service.log"
finish
