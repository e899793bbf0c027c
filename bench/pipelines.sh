#!/usr/bin/env bash
# Many pipelines at full speed: N PostgreSQL → PostgreSQL pipelines in one service, each fed R
# small transactions per second, with the state store on the ordinary disk. Reports, for every N
# of NS, the replication lag (newest row on the source vs newest row on its target, sampled once
# a second) and cdcsync's CPU, then checks every target equal to its source.
#
#   bench/pipelines.sh              (env: NS="1 5 10 20" pipeline counts, RATE=20 txn/s each,
#                                    SECS=60 of load per N, STATE_DIR=dir for the state store
#                                    (default: under the work dir, on the ordinary disk; give a
#                                    tmpfs mount to compare), SLOW_SYNC_US=2000 (emulate a disk
#                                    whose syncs take that long: bench/slow_sync.c preloaded into
#                                    cdcsync), CDCSYNC=path/to/cdcsync, KEEP_WORK=1 keeps the
#                                    temp dir)
#
# One run: two throwaway PostgreSQL 15 clusters (scripts/pg.sh: fsync = off on both, so the
# servers' own syncs do not hide the store's), the source with one database per pipeline (p1..pN),
# each with `acc` (1,000 rows) and `hist` (a row per transaction, stamped clock_timestamp()); the
# target the same databases. One pgbench per database runs at RATE transactions/s (update an
# account, insert a history row: 2 row changes). A monitor session (dblink, persistent
# connections, on a database of its own) reads every second, per pipeline, the newest `hist.at` on
# the source and on the target: their difference is the pipeline's lag. After SECS seconds the
# load stops, every target must catch up and equal its source (digest of the ordered contents)
# or the bench fails.
#
# Output per N: `key=value` lines on stdout (lag_max_s, lag_p50_s, lag_end_s over the load;
# all_equal_after_load_s: until every target was found equal to its source once the load stopped,
# the checks' own time included; cdcsync_cpu_pct of one core during the load;
# cdcsync_cpu_ms_per_txn: its CPU from the load's start until every target was equal, per source
# transaction; machine_busy_pct of all cores, loadavg), a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS=${NS:-1 5 10 20}
RATE=${RATE:-20}
SECS=${SECS:-60}
MON_PID=""
LOAD_PIDS=()
# The load and the monitor stop before lib.sh's cleanup (which keeps the exit status).
trap 'rc=$?; set +e; [ -n "$MON_PID" ] && kill "$MON_PID" 2>/dev/null; for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null; done; (exit $rc); cleanup' EXIT

# The service's state_dir is write_conf's $WORK/state; STATE_DIR puts it elsewhere through a link.
STATE=$WORK/state
if [ -n "${STATE_DIR:-}" ]; then
  mkdir -p "$STATE_DIR"
  ln -s "$STATE_DIR" "$STATE"
fi
mkdir -p "$STATE"
PRELOAD=""
if [ -n "${SLOW_SYNC_US:-}" ]; then
  cc -shared -fPIC -O2 -o "$WORK/slow_sync.so" "$BENCH_DIR/slow_sync.c" -ldl || fail "cannot build slow_sync.so"
  PRELOAD="$WORK/slow_sync.so"
fi
NMAX=0
for n in $NS; do [ "$n" -gt "$NMAX" ] && NMAX=$n; done

dsn() { local d; d=$(pg_dsn "$1"); printf '%s' "${d%postgres}$2"; } # NAME DATABASE
digest() { pg_digest "$1" "$2" acc hist; }                          # NAME DATABASE
target_is() { [ "$(digest dst "$1")" = "$2" ]; }                     # DATABASE DIGEST
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/healthz")" = 200 ]; }
# machine_ticks — "busy total" clock ticks of all cores.
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

SCHEMA="
CREATE TABLE acc (id int PRIMARY KEY, bal bigint NOT NULL);
CREATE TABLE hist (id bigserial PRIMARY KEY, aid int NOT NULL, delta int NOT NULL, at timestamptz NOT NULL);"

log "starting 2 PostgreSQL 15 clusters (fsync = off on both)"
pg_start src
pg_start dst
for c in src dst; do
  psql_on $c -c "ALTER SYSTEM SET max_connections = $((3 * NMAX + 30))" \
    -c "ALTER SYSTEM SET max_replication_slots = $((NMAX + 4))" -c "ALTER SYSTEM SET max_wal_senders = $((NMAX + 4))"
  d="PG_${c}_DIR"
  bash "$SRCDIR/scripts/pg.sh" restart "${!d}"
done
psql_on dst -c "CREATE DATABASE monitor"
psql_on dst -d monitor -c "CREATE EXTENSION dblink"

cat >"$WORK/txn.sql" <<'SQL'
\set aid random(1, 1000)
\set d random(-100, 100)
BEGIN;
UPDATE acc SET bal = bal + :d WHERE id = :aid;
INSERT INTO hist (aid, delta, at) VALUES (:aid, :d, clock_timestamp());
END;
SQL

run_one() {
  local n=$1 i
  log "N=$n: $n databases on each side, service with $n pipelines (state_dir ${STATE_DIR:-$STATE})"
  for i in $(seq 1 "$n"); do
    psql_on src -c "CREATE DATABASE p$i"
    psql_on dst -c "CREATE DATABASE p$i"
    psql_on src -d "p$i" -c "$SCHEMA" -c "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 1000) g"
    psql_on dst -d "p$i" -c "$SCHEMA"
  done
  rm -rf "$STATE"/* 2>/dev/null || true
  local mport
  mport=$(free_port)
  for i in $(seq 1 "$n"); do
    printf '[connector.s%d]\ntype = postgres\ndsn = %s\n\n' "$i" "$(dsn src "p$i")"
    printf '[connector.d%d]\ntype = postgres\ndsn = %s\n\n' "$i" "$(dsn dst "p$i")"
    printf '[pipeline.p%d]\nsource = s%d\nsink = d%d\ntables = public.acc, public.hist\n\n' "$i" "$i" "$i"
  done | write_conf "$WORK/cdcsync.conf" "127.0.0.1:$mport" "${LOG_LEVEL:-info}"
  LD_PRELOAD="$PRELOAD" SLOW_SYNC_US="${SLOW_SYNC_US:-0}" service_start
  wait_for "all $n pipelines streaming" 120 healthy "$mport"

  # The monitor: one row per sample, the lag of every pipeline (seconds, source newest minus
  # target newest; 0 when the target has the newest row).
  {
    echo "SET client_min_messages = warning;"
    for i in $(seq 1 "$n"); do
      echo "SELECT dblink_connect('s$i', '$(dsn src "p$i")');"
      echo "SELECT dblink_connect('d$i', '$(dsn dst "p$i")');"
    done
    local q="SELECT extract(epoch FROM clock_timestamp())::numeric(20,3)"
    for i in $(seq 1 "$n"); do
      q+=", greatest(0, extract(epoch FROM (SELECT a FROM dblink('s$i', 'SELECT max(at) FROM hist WHERE id > (SELECT coalesce(max(id), 0) - 100 FROM hist)') AS x(a timestamptz))
                     - coalesce((SELECT a FROM dblink('d$i', 'SELECT max(at) FROM hist WHERE id > (SELECT coalesce(max(id), 0) - 100 FROM hist)') AS x(a timestamptz)), '-infinity')))::numeric(10,3)"
    done
    echo "$q"
    echo '\watch 1'
  } >"$WORK/monitor.sql"

  local c0 t0 mb0 mt0
  c0=$(cpu_tree "$SERVICE_PID")
  read -r mb0 mt0 < <(machine_ticks)
  t0=$(now)
  LOAD_PIDS=()
  for i in $(seq 1 "$n"); do
    pgbench -n -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -c 1 -R "$RATE" -T "$SECS" -f "$WORK/txn.sql" "p$i" \
      >"$WORK/pgbench_$i.log" 2>&1 &
    LOAD_PIDS+=($!)
  done
  sleep 1
  # psql itself, not psql_on: a function in the background is a subshell, and killing it would
  # leave psql (and its dblink sessions in the databases dropped below) running.
  psql -X -h 127.0.0.1 -p "$PG_dst_PORT" -U postgres -d monitor -qAt -F ' ' -f "$WORK/monitor.sql" \
    >"$WORK/lag_$n.txt" 2>"$WORK/monitor.err" &
  MON_PID=$!
  for p in "${LOAD_PIDS[@]}"; do wait "$p" || fail "pgbench failed: $(cat "$WORK"/pgbench_*.log | tail -5)"; done
  LOAD_PIDS=()
  local t1 c1 mb1 mt1
  t1=$(now)
  c1=$(cpu_tree "$SERVICE_PID")
  read -r mb1 mt1 < <(machine_ticks)
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  kill "$MON_PID" 2>/dev/null || true
  wait "$MON_PID" 2>/dev/null || true
  MON_PID=""
  local txns
  txns=$(cat "$WORK"/pgbench_*.log | awk '/number of transactions actually processed/ {s += $NF} END {print s + 0}')

  # Catch up, then every target must equal its source.
  local tc0 tc1 want
  tc0=$(now)
  for i in $(seq 1 "$n"); do
    want=$(digest src "p$i")
    wait_for "target p$i equal to its source ($want)" 600 target_is "p$i" "$want"
  done
  tc1=$(now)
  local c2
  c2=$(cpu_tree "$SERVICE_PID")
  service_stop
  for i in $(seq 1 "$n"); do
    psql_on src -d "p$i" -c "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE database = 'p$i'" >/dev/null
    psql_on src -c "DROP DATABASE p$i"
    psql_on dst -c "DROP DATABASE p$i"
  done

  local secs
  secs=$(calc "$t1 - $t0")
  # Per sample the worst pipeline; then the max, median and last of those over the load.
  local stats
  stats=$(awk 'NF > 1 { m = 0; for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0; print m }' "$WORK/lag_$n.txt" |
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan nan"; exit } print a[NR], a[int((NR + 1) / 2)] }')
  local lag_end
  lag_end=$(awk 'NF > 1 { m = 0; for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0; last = m } END { print last + 0 }' \
    "$WORK/lag_$n.txt")
  local cpu busy
  cpu=$(calc "100 * ($c1 - $c0) / $secs")
  busy=$(calc "100 * ($mb1 - $mb0) / ($mt1 - $mt0)")
  cat <<OUT
pipelines=$n
rate_per_pipeline=$RATE
slow_sync_us=${SLOW_SYNC_US:-0}
load_seconds=$(printf '%.1f' "$secs")
transactions=$txns
lag_max_s=${stats% *}
lag_p50_s=${stats#* }
lag_end_s=$lag_end
all_equal_after_load_s=$(printf '%.1f' "$(calc "$tc1 - $tc0")")
cdcsync_cpu_pct=$(printf '%.1f' "$cpu")
cdcsync_cpu_ms_per_txn=$(printf '%.3f' "$(calc "1000 * ($c2 - $c0) / $txns")")
machine_busy_pct=$(printf '%.1f' "$busy")
loadavg=$load
OUT
  log "N=$n: lag max ${stats% *} s, median ${stats#* } s, at the end $lag_end s; cdcsync $(printf '%.1f' "$cpu") % of a core;" \
    "machine $(fmt0 "$busy") % busy (load $load); $txns transactions; all $n targets equal their sources"
}

for n in $NS; do run_one "$n"; done
finish
