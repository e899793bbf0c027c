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

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
NS=${NS:-1 5 10 20}
RATE=${RATE:-20}
SECS=${SECS:-60}
WORK=$(mktemp -d /tmp/cdcsync-bench-pipelines.XXXXXX)
chmod 755 "$WORK"
STATE=${STATE_DIR:-$WORK/state}
SERVICE_PID=""
MON_PID=""
LOAD_PIDS=()
CLUSTERS=()

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null || true
  [ -n "$MON_PID" ] && kill "$MON_PID" 2>/dev/null || true
  for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${CLUSTERS[@]}"; do bash "$SRCDIR/scripts/pg.sh" stop "$d" || true; done
  if [ $rc -ne 0 ] && [ -f "$WORK/service.log" ]; then tail -n 30 "$WORK/service.log" >&2; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

[ -x "$CDCSYNC" ] || die "no cdcsync binary at $CDCSYNC (build first, or set CDCSYNC)"
PRELOAD=""
if [ -n "${SLOW_SYNC_US:-}" ]; then
  cc -shared -fPIC -O2 -o "$WORK/slow_sync.so" "$SRCDIR/bench/slow_sync.c" -ldl || die "cannot build slow_sync.so"
  PRELOAD="$WORK/slow_sync.so"
fi
NMAX=0
for n in $NS; do [ "$n" -gt "$NMAX" ] && NMAX=$n; done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A PORT
start_cluster() {
  local name=$1
  PORT[$name]=$(free_port)
  bash "$SRCDIR/scripts/pg.sh" start "$WORK/pg_$name" "${PORT[$name]}"
  CLUSTERS+=("$WORK/pg_$name")
}

sql() {
  local name=$1 db=$2
  shift 2
  psql -X -h 127.0.0.1 -p "${PORT[$name]}" -U postgres -d "$db" -qAt -v ON_ERROR_STOP=1 "$@"
}

dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "${PORT[$1]}" "$2"; }

digest() {
  sql "$1" "$2" -c "SELECT (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t.id)), '') FROM acc t) || ' ' ||
                           (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t.id)), '') FROM hist t)"
}

# cpu_ticks PID — user+system clock ticks of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# machine_ticks — "busy total" clock ticks of all cores.
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

SCHEMA="
CREATE TABLE acc (id int PRIMARY KEY, bal bigint NOT NULL);
CREATE TABLE hist (id bigserial PRIMARY KEY, aid int NOT NULL, delta int NOT NULL, at timestamptz NOT NULL);"

say "starting 2 PostgreSQL 15 clusters (fsync = off on both)"
start_cluster src
start_cluster dst
for c in src dst; do
  sql $c postgres -c "ALTER SYSTEM SET max_connections = $((3 * NMAX + 30))" \
    -c "ALTER SYSTEM SET max_replication_slots = $((NMAX + 4))" -c "ALTER SYSTEM SET max_wal_senders = $((NMAX + 4))"
  bash "$SRCDIR/scripts/pg.sh" restart "$WORK/pg_$c"
done
sql dst postgres -c "CREATE DATABASE monitor"
sql dst monitor -c "CREATE EXTENSION dblink"

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
  say "N=$n: $n databases on each side, service with $n pipelines (state_dir $STATE)"
  for i in $(seq 1 "$n"); do
    sql src postgres -c "CREATE DATABASE p$i"
    sql dst postgres -c "CREATE DATABASE p$i"
    sql src "p$i" -c "$SCHEMA" -c "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 1000) g"
    sql dst "p$i" -c "$SCHEMA"
  done
  rm -rf "$STATE"/* 2>/dev/null || true
  local mport
  mport=$(free_port)
  {
    printf '[service]\nstate_dir = %s\nmetrics_listen = 127.0.0.1:%s\nlog_level = %s\n\n' "$STATE" "$mport" "${LOG_LEVEL:-info}"
    for i in $(seq 1 "$n"); do
      printf '[connector.s%d]\ntype = postgres\ndsn = %s\n\n' "$i" "$(dsn src "p$i")"
      printf '[connector.d%d]\ntype = postgres\ndsn = %s\n\n' "$i" "$(dsn dst "p$i")"
      printf '[pipeline.p%d]\nsource = s%d\nsink = d%d\ntables = public.acc, public.hist\n\n' "$i" "$i" "$i"
    done
  } >"$WORK/cdcsync.conf"
  chmod 600 "$WORK/cdcsync.conf"
  LD_PRELOAD="$PRELOAD" SLOW_SYNC_US="${SLOW_SYNC_US:-0}" "$CDCSYNC" -c "$WORK/cdcsync.conf" run >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
  local t=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$mport/healthz")" = 200 ]; do
    kill -0 "$SERVICE_PID" 2>/dev/null || die "cdcsync exited"
    t=$((t + 1))
    [ $t -lt 600 ] || die "the pipelines did not all stream within 120 s"
    sleep 0.2
  done

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

  local c0 m0 t0
  c0=$(cpu_ticks "$SERVICE_PID")
  read -r mb0 mt0 < <(machine_ticks)
  t0=$(date +%s.%N)
  LOAD_PIDS=()
  for i in $(seq 1 "$n"); do
    pgbench -n -h 127.0.0.1 -p "${PORT[src]}" -U postgres -c 1 -R "$RATE" -T "$SECS" -f "$WORK/txn.sql" "p$i" \
      >"$WORK/pgbench_$i.log" 2>&1 &
    LOAD_PIDS+=($!)
  done
  sleep 1
  psql -X -h 127.0.0.1 -p "${PORT[dst]}" -U postgres -d monitor -qAt -F ' ' -f "$WORK/monitor.sql" \
    >"$WORK/lag_$n.txt" 2>"$WORK/monitor.err" &
  MON_PID=$!
  for p in "${LOAD_PIDS[@]}"; do wait "$p" || die "pgbench failed: $(cat "$WORK"/pgbench_*.log | tail -5)"; done
  LOAD_PIDS=()
  local t1 c1
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$SERVICE_PID")
  read -r mb1 mt1 < <(machine_ticks)
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  kill "$MON_PID" 2>/dev/null || true
  wait "$MON_PID" 2>/dev/null || true
  MON_PID=""
  local txns
  txns=$(cat "$WORK"/pgbench_*.log | awk '/number of transactions actually processed/ {s += $NF} END {print s + 0}')

  # Catch up, then every target must equal its source.
  local tc0 tc1 ok
  tc0=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    local want
    want=$(digest src "p$i")
    ok=0
    for t in $(seq 1 3000); do
      if [ "$(digest dst "p$i")" = "$want" ]; then ok=1; break; fi
      kill -0 "$SERVICE_PID" 2>/dev/null || die "cdcsync exited"
      sleep 0.2
    done
    [ $ok = 1 ] || die "target p$i differs from its source after 600 s: $(digest dst "p$i") vs $want"
  done
  tc1=$(date +%s.%N)
  local c2
  c2=$(cpu_ticks "$SERVICE_PID")
  kill -TERM "$SERVICE_PID"
  wait "$SERVICE_PID" || true
  SERVICE_PID=""
  for i in $(seq 1 "$n"); do
    sql src "p$i" -c "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE database = 'p$i'" >/dev/null
    sql src postgres -c "DROP DATABASE p$i"
    sql dst postgres -c "DROP DATABASE p$i"
  done

  local tck secs
  tck=$(getconf CLK_TCK)
  secs=$(echo "$t1 - $t0" | bc -l)
  # Per sample the worst pipeline; then the max, median and last of those over the load.
  local stats
  stats=$(awk 'NF > 1 { m = 0; for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0; print m }' "$WORK/lag_$n.txt" |
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan nan"; exit } print a[NR], a[int((NR + 1) / 2)] }')
  local lag_end
  lag_end=$(awk 'NF > 1 { m = 0; for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0; last = m } END { print last + 0 }' \
    "$WORK/lag_$n.txt")
  local cpu busy
  cpu=$(echo "100 * ($c1 - $c0) / $tck / $secs" | bc -l)
  busy=$(echo "100 * ($mb1 - $mb0) / ($mt1 - $mt0)" | bc -l)
  cat <<OUT
pipelines=$n
rate_per_pipeline=$RATE
slow_sync_us=${SLOW_SYNC_US:-0}
load_seconds=$(printf '%.1f' "$secs")
transactions=$txns
lag_max_s=${stats% *}
lag_p50_s=${stats#* }
lag_end_s=$lag_end
all_equal_after_load_s=$(printf '%.1f' "$(echo "$tc1 - $tc0" | bc -l)")
cdcsync_cpu_pct=$(printf '%.1f' "$cpu")
cdcsync_cpu_ms_per_txn=$(printf '%.3f' "$(echo "1000 * ($c2 - $c0) / $tck / $txns" | bc -l)")
machine_busy_pct=$(printf '%.1f' "$busy")
loadavg=$load
OUT
  say "N=$n: lag max ${stats% *} s, median ${stats#* } s, at the end $lag_end s; cdcsync $(printf '%.1f' "$cpu") % of a core;" \
      "machine $(printf '%.0f' "$busy") % busy (load $load); $txns transactions; all $n targets equal their sources"
}

mkdir -p "$STATE"
for n in $NS; do run_one "$n"; done
