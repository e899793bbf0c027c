#!/usr/bin/env bash
# PostgreSQL → PostgreSQL on the workload people benchmark replication with: pgbench's built-in
# TPC-B-like script on pgbench's own schema (unmodified: pgbench_history has no primary key),
# applied as a backlog by cdcsync and by PostgreSQL's own subscription, one after the other, from
# slots created before the backlog; beside them, a bare reader (pg_recvlogical) draining a third
# slot gives what the walsender can deliver at all.
#
#   bench/pgbench.sh     (env: SCALE=10, CLIENTS=4, TXNS=200000, BATCH_MAX_ROWS, APPLY_WORKERS,
#                         CDCSYNC=path/to/cdcsync, KEEP_WORK=1 keeps the temp dir)
#
# Servers: three PostgreSQL 15 clusters (scripts/pg.sh; synchronous_commit = off and fsync = off
# on all, identical settings). Every target starts from `pgbench -i -s SCALE` (deterministic, so
# all three hold the same rows; checked), the backlog is `pgbench -c CLIENTS -t TXNS/CLIENTS`, then
# a marker row in a table of its own. Each reader is timed until the marker is on its target, and
# both targets must then equal the source (count and md5 of the ordered rows of every table).
# CPU is measured per run as user+system seconds of: cdcsync's process; each target cluster (all
# its processes: native's apply worker is one of them); the source cluster (its walsender).
#
# cdcsync's sink batches are counted from its metrics endpoint (cdcsync_sink_batch_seconds_count),
# read once after the timed run: how its batching cut the backlog (cdcsync_rows_per_batch).
# Output: key=value lines on stdout, a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-4}
TXNS=${TXNS:-200000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
LIMIT=${LIMIT:-1800}
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"

# shellcheck disable=SC2086
digest() { pg_digest "$1" postgres $TABLES; } # NAME — every pgbench table, ordered by its whole row

log "starting 3 PostgreSQL 15 clusters (synchronous_commit = off, fsync = off, identical settings)"
export PG_SYNC_COMMIT=off
pg_start src
pg_start cdc
pg_start nat
for c in src cdc nat; do
  port="PG_${c}_PORT"
  pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p "${!port}" -U postgres postgres >"$WORK/init_$c.log" 2>&1 ||
    { cat "$WORK/init_$c.log" >&2; fail "pgbench -i on $c"; }
  psql_on "$c" -c "CREATE TABLE bench_done (id int PRIMARY KEY)"
done
START_DIGEST=$(digest src)
[ "$(digest cdc)" = "$START_DIGEST" ] && [ "$(digest nat)" = "$START_DIGEST" ] || fail "pgbench -i gave different rows"

psql_on src <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bench_done;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SELECT FROM pg_create_logical_replication_slot('native_bench', 'pgoutput');
SELECT FROM pg_create_logical_replication_slot('drain_bench', 'pgoutput');
SQL
psql_on src -c "SELECT pg_stat_reset()" >/dev/null

log "building the backlog: pgbench's TPC-B-like script, $CLIENTS clients, $TXNS transactions"
pgbench -n -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -c "$CLIENTS" -j "$CLIENTS" -t $((TXNS / CLIENTS)) postgres \
  >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; fail "pgbench"; }
psql_on src -c "INSERT INTO bench_done VALUES (1)"
END_LSN=$(psql_on src -c "SELECT pg_current_wal_lsn()")
sleep 1 # a backend's counters reach pg_stat_user_tables when it exits; the writers above have
ROWS=$(psql_on src -c "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables WHERE relname LIKE 'pgbench_%'")
XACTS=$(($(grep -o 'number of transactions actually processed: [0-9]*' "$WORK/pgbench.log" | grep -o '[0-9]*$') + 1))
WAL=$(psql_on src -c "SELECT pg_wal_lsn_diff('$END_LSN', confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'native_bench'")
SRC_DIGEST=$(digest src)
SRC_PM=$(pg_postmaster_pid "$PG_src_DIR")
log "backlog: $ROWS row changes in $XACTS transactions, $((WAL / 1048576)) MB of WAL"

# ---- what the walsender delivers to a reader that does nothing with it ----
log "drain: pg_recvlogical to /dev/null"
s0=$(cpu_tree "$SRC_PM")
t0=$(now)
pg_recvlogical -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -d postgres --slot drain_bench --start --no-loop \
  -o proto_version=2 -o publication_names=bench_pub -E "$END_LSN" -f /dev/null 2>"$WORK/drain.log" ||
  { cat "$WORK/drain.log" >&2; fail "pg_recvlogical"; }
DRAIN_SECS=$(calc "$(now) - $t0")
DRAIN_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")

# ---- cdcsync ----
METRICS_PORT=$(free_port) # read once, after the timed run: how many sink batches the backlog took
cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$METRICS_PORT
log_level = ${LOG_LEVEL:-info}

[connector.src]
type = postgres
dsn = $(pg_dsn src)
slot = cdcsync_bench
publication = bench_pub

[connector.dst]
type = postgres
dsn = $(pg_dsn cdc)

[pipeline.bench]
source = src
sink = dst
tables = public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history, public.bench_done
snapshot = never
batch_max_rows = $BATCH_MAX_ROWS
${APPLY_WORKERS:+apply_workers = $APPLY_WORKERS}
CONF
chmod 600 "$WORK/cdcsync.conf"
log "cdcsync: catching up"
CDC_PM=$(pg_postmaster_pid "$PG_cdc_DIR")
s0=$(cpu_tree "$SRC_PM")
d0=$(cpu_tree "$CDC_PM")
t0=$(now)
service_start
wait_marker pg cdc >/dev/null
CDC_SECS=$(calc "$(now) - $t0") # from the start of the process
CDC_CPU=$(cpu_tree "$SERVICE_PID")
CDC_RSS=$(peak_rss_kb "$SERVICE_PID")
CDC_DST_CPU=$(calc "$(cpu_tree "$CDC_PM") - $d0")
CDC_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")
CDC_BATCHES=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^cdcsync_sink_batch_seconds_count/ {n += $2} END {print n + 0}')
service_stop
[ "$(digest cdc)" = "$SRC_DIGEST" ] || fail "cdcsync's target differs from the source: $(digest cdc) vs $SRC_DIGEST"

# ---- PostgreSQL's subscription ----
log "native subscription: catching up"
NAT_PM=$(pg_postmaster_pid "$PG_nat_DIR")
s0=$(cpu_tree "$SRC_PM")
d0=$(cpu_tree "$NAT_PM")
t0=$(now)
psql_on nat -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$(pg_dsn src)' PUBLICATION bench_pub
                WITH (create_slot = false, slot_name = 'native_bench', copy_data = false)"
wait_marker pg nat >/dev/null
NAT_SECS=$(calc "$(now) - $t0") # from CREATE SUBSCRIPTION: its start-up is part of its time
NAT_DST_CPU=$(calc "$(cpu_tree "$NAT_PM") - $d0")
NAT_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")
psql_on nat -c "ALTER SUBSCRIPTION bench_sub DISABLE"
psql_on nat -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)"
psql_on nat -c "DROP SUBSCRIPTION bench_sub"
[ "$(digest nat)" = "$SRC_DIGEST" ] || fail "native target differs from the source: $(digest nat) vs $SRC_DIGEST"

per_row_us() { calc "$1 * 1000000 / $ROWS"; }
cat <<OUT
bench=pgbench_tpcb_pg_to_pg
scale=$SCALE
clients=$CLIENTS
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_wal_bytes=$WAL
batch_max_rows=$BATCH_MAX_ROWS
apply_workers=${APPLY_WORKERS:-default}
drain_seconds=$(fmt2 "$DRAIN_SECS")
drain_rows_per_s=$(fmt0 "$(calc "$ROWS / $DRAIN_SECS")")
cdcsync_seconds=$(fmt2 "$CDC_SECS")
cdcsync_rows_per_s=$(fmt0 "$(calc "$ROWS / $CDC_SECS")")
cdcsync_cpu_seconds=$(fmt2 "$CDC_CPU")
cdcsync_target_cpu_seconds=$(fmt2 "$CDC_DST_CPU")
cdcsync_source_cpu_seconds=$(fmt2 "$CDC_SRC_CPU")
cdcsync_apply_cpu_us_per_row=$(fmt2 "$(per_row_us "$(calc "$CDC_CPU + $CDC_DST_CPU")")")
cdcsync_peak_rss_kb=$CDC_RSS
cdcsync_sink_batches=$CDC_BATCHES
cdcsync_rows_per_batch=$(fmt0 "$(calc "$ROWS / ($CDC_BATCHES + ($CDC_BATCHES == 0))")")
native_seconds=$(fmt2 "$NAT_SECS")
native_rows_per_s=$(fmt0 "$(calc "$ROWS / $NAT_SECS")")
native_target_cpu_seconds=$(fmt2 "$NAT_DST_CPU")
native_source_cpu_seconds=$(fmt2 "$NAT_SRC_CPU")
native_apply_cpu_us_per_row=$(fmt2 "$(per_row_us "$NAT_DST_CPU")")
ratio_cdcsync_to_native=$(printf '%.3f' "$(calc "$NAT_SECS / $CDC_SECS")")
ratio_cdcsync_to_drain=$(printf '%.3f' "$(calc "$DRAIN_SECS / $CDC_SECS")")
drain_source_cpu_seconds=$(fmt2 "$DRAIN_SRC_CPU")
machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
OUT
log "cdcsync $(fmt0 "$(calc "$ROWS / $CDC_SECS")") rows/s, native $(fmt0 "$(calc "$ROWS / $NAT_SECS")") rows/s," \
  "drain $(fmt0 "$(calc "$ROWS / $DRAIN_SECS")") rows/s: cdcsync/native = $(fmt2 "$(calc "$NAT_SECS / $CDC_SECS")")x;" \
  "both targets equal the source"
finish
