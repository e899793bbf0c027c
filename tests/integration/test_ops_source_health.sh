#!/usr/bin/env bash
# Source-side health (#15): cdcsync_source_retained_bytes and cdcsync_source_slot_active for a
# PostgreSQL source (the WAL its slot holds) and a MariaDB source (the binlog from the pipeline's
# position to the server's end), both into one PostgreSQL sink. While the sink is down the sources
# keep log for the pipelines: the metric grows past retained_warn_bytes, the log and /healthz warn,
# the slots are inactive; once the sink is back and the pipelines caught up, it falls again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
source "$(dirname "$0")/ops_lib.sh"

pg_start src
pg_start dst
my_start msrc 1
MPORT=$(free_port)
psql_on src -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
my_on msrc -e "CREATE TABLE m (id int PRIMARY KEY, v text)"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.msrc]
$(my_connector msrc 9001)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes
timeout_s = 5

[pipeline.pgp]
source = src
sink = dst
tables = public.t

[pipeline.myp]
source = msrc
sink = dst
tables = test.m
map = test.* -> public.*
CONF
# 2 MiB: well above what a streaming pipeline's sources keep, well below what the writes below make.
sed -i '/^metrics_listen/a retained_warn_bytes = 2MiB' "$WORK/cdcsync.conf"
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check refused the conf: $(cat "$WORK/check.out")"

service_start
wait_for "pipeline pgp streaming" 60 pipeline_streaming pgp
wait_for "pipeline myp streaming" 60 pipeline_streaming myp
psql_on src -c "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g"
my_on msrc -e "INSERT INTO m SELECT seq, 'x' FROM seq_1_to_100"
wait_synced src dst 30 t

has_metric() { [ -n "$(metric "$1" "$2")" ]; }
for p in pgp myp; do
  wait_for "cdcsync_source_retained_bytes of $p" 30 has_metric cdcsync_source_retained_bytes $p
  wait_for "cdcsync_source_slot_active of $p = 1" 30 metric_is cdcsync_source_slot_active $p 1
  log "$p streaming: retained $(metric cdcsync_source_retained_bytes $p) bytes"
done
scrape | grep -q '^# TYPE cdcsync_source_retained_bytes gauge' || fail "no TYPE line for cdcsync_source_retained_bytes"

# The sink goes away: the pipelines retry, their sources keep everything from their positions.
bash "$SRCDIR/scripts/pg.sh" stop "$PG_dst_DIR"
psql_on src -c "INSERT INTO t SELECT g, repeat('w', 200) FROM generate_series(1000, 30000) g"
my_on msrc -e "INSERT INTO m SELECT seq, REPEAT('w', 200) FROM seq_1000_to_30000"

over() { awk -v v="$(metric cdcsync_source_retained_bytes "$1")" 'BEGIN { exit !(v + 0 > 4 * 1048576) }'; }
for p in pgp myp; do
  wait_for "$p: more than 4 MiB retained" 30 over $p
  wait_for "$p: slot not active" 30 metric_is cdcsync_source_slot_active $p 0
  log "$p with its sink down: retained $(metric cdcsync_source_retained_bytes $p) bytes"
  wait_for "the warning in the log for $p" 30 grep -q "pipeline=$p .*more than retained_warn_bytes" "$WORK/service.log"
done
scrape /healthz >"$WORK/healthz.out" || true
grep -q '^warning: pipeline pgp: the source keeps [0-9]* bytes of log for it, more than retained_warn_bytes (2097152)' \
  "$WORK/healthz.out" || fail "/healthz does not warn about pgp: $(cat "$WORK/healthz.out")"
grep -q '^warning: pipeline myp: ' "$WORK/healthz.out" || fail "/healthz does not warn about myp"

# The sink is back: the pipelines catch up and their sources let go of the log again (PostgreSQL
# moves a slot's restart_lsn at its next running-transactions record: a checkpoint writes one).
bash "$SRCDIR/scripts/pg.sh" start "$PG_dst_DIR" "$PG_dst_PORT"
wait_synced src dst 120 t
under() {
  psql_on src -c "CHECKPOINT" >/dev/null
  awk -v v="$(metric cdcsync_source_retained_bytes "$1")" 'BEGIN { exit !(v != "" && v + 0 < 1048576) }'
}
for p in pgp myp; do
  wait_for "$p: under 1 MiB retained again" 90 under $p
  wait_for "$p: slot active again" 30 metric_is cdcsync_source_slot_active $p 1
  wait_for "the all-clear in the log for $p" 30 grep -q "pipeline=$p .*under retained_warn_bytes again" "$WORK/service.log"
done
scrape /healthz >"$WORK/healthz.out" || true
! grep -q '^warning:' "$WORK/healthz.out" || fail "/healthz still warns: $(cat "$WORK/healthz.out")"
service_stop
finish
