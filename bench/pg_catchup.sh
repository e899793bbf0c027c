#!/usr/bin/env bash
# Catch-up benchmark, PostgreSQL → PostgreSQL: cdcsync against PostgreSQL's own logical
# replication, applying the same backlog from slots created before it.
#
#   bench/pg_catchup.sh            (env: TXNS, BIG_TXNS, BIG_ROWS, NROWS, BATCH_MAX_ROWS,
#                                   CDCSYNC=path/to/cdcsync, KEEP_WORK=1 keeps the temp dir)
#
# One run: three throwaway PostgreSQL 15 clusters (scripts/pg.sh: fsync = off on all of them,
# identical settings for both targets), one source with two logical slots (cdcsync's and the
# subscription's) created before the backlog; the backlog is built with pgbench (TXNS small
# transactions of 4 statements: update, hot-row update, insert, delete) plus BIG_TXNS large
# transactions (BIG_ROWS-row update, insert, delete in turn). Then, one after the other (never
# concurrently), cdcsync and a native subscription are started and timed until the backlog's last
# transaction (a marker row) is committed on their target; both targets must then equal the source
# (digest of the ordered contents) or the bench fails.
#
# Output: `key=value` lines on stdout (machine-readable), a human summary on stderr.
set -euo pipefail

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
TXNS=${TXNS:-60000}
BIG_TXNS=${BIG_TXNS:-6}
BIG_ROWS=${BIG_ROWS:-20000}
NROWS=${NROWS:-100000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
WORK=$(mktemp -d /tmp/cdcsync-bench.XXXXXX)
chmod 755 "$WORK"
SERVICE_PID=""
CLUSTERS=()

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null || true
  for d in "${CLUSTERS[@]}"; do bash "$SRCDIR/scripts/pg.sh" stop "$d" || true; done
  if [ $rc -ne 0 ] && [ -f "$WORK/service.log" ]; then tail -n 30 "$WORK/service.log" >&2; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

[ -x "$CDCSYNC" ] || die "no cdcsync binary at $CDCSYNC (build first, or set CDCSYNC)"

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
  local name=$1
  shift
  psql -X -h 127.0.0.1 -p "${PORT[$name]}" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 "$@"
}

dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=postgres' "${PORT[$1]}"; }

now() { date +%s.%N; }

digest() {
  sql "$1" -c "SELECT (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t.id)), '') FROM bench_rows t) || ' ' ||
                      (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t.id)), '') FROM bench_hot t)"
}

# Waits until the marker row (the backlog's last transaction) is on target $1; commit order means
# everything before it is applied too. Prints the seconds taken since $2.
wait_marker() {
  local name=$1 t0=$2 limit=${LIMIT:-1800}
  while :; do
    if [ "$(sql "$name" -c "SELECT count(*) FROM bench_done")" = 1 ]; then
      echo "$(now) - $t0" | bc -l
      return 0
    fi
    if [ -n "$SERVICE_PID" ] && ! kill -0 "$SERVICE_PID" 2>/dev/null; then die "cdcsync exited"; fi
    [ "$(echo "$(now) - $t0 > $limit" | bc -l)" = 0 ] || die "$name did not catch up within $limit s"
    sleep 0.05
  done
}

SCHEMA="
CREATE TABLE bench_rows (id bigint PRIMARY KEY, k int NOT NULL, v text NOT NULL, at timestamptz NOT NULL DEFAULT '2024-01-01');
CREATE TABLE bench_hot (id int PRIMARY KEY, total bigint NOT NULL);
CREATE TABLE bench_done (id int PRIMARY KEY);
INSERT INTO bench_rows (id, k, v) SELECT g, g % 1000, md5(g::text) FROM generate_series(1, $NROWS) g;
INSERT INTO bench_hot SELECT g, 0 FROM generate_series(1, 100) g;"

say "starting 3 PostgreSQL 15 clusters (fsync = off on all; targets with identical settings)"
start_cluster src
start_cluster cdc
start_cluster nat
for c in src cdc nat; do sql $c -c "$SCHEMA"; done
sql src -c "CREATE SEQUENCE bench_ids START $((NROWS + 1))"
sql src <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE bench_rows, bench_hot, bench_done;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SELECT FROM pg_create_logical_replication_slot('native_bench', 'pgoutput');
SQL

say "building the backlog: $TXNS pgbench transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
pgbench -n -h 127.0.0.1 -p "${PORT[src]}" -U postgres -c 2 -j 2 -t $((TXNS / 2)) -D nrows="$NROWS" \
  -f "$SRCDIR/bench/workload.sql" postgres >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; die "pgbench"; }
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) sql src -c "UPDATE bench_rows SET k = k + 1, v = md5(v || '$i') WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  2) sql src -c "INSERT INTO bench_rows (id, k, v) SELECT nextval('bench_ids'), g, md5(g::text) FROM generate_series(1, $BIG_ROWS) g" ;;
  0) sql src -c "DELETE FROM bench_rows WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  esac
done
sql src -c "INSERT INTO bench_done VALUES (1)"
# Row changes and transactions of the backlog, from the source's own counters (a backend's
# counters are flushed when it exits; every writer above has).
sleep 1
ROWS=$(sql src -c "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) - $NROWS - 100 FROM pg_stat_user_tables WHERE relname LIKE 'bench_%'")
XACTS=$((TXNS + BIG_TXNS + 1))
WAL=$(sql src -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'native_bench'")
SRC_DIGEST=$(digest src)
say "backlog: $ROWS row changes in $XACTS transactions, $((WAL / 1048576)) MB of WAL"

# ---- cdcsync ----
cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off
log_level = ${LOG_LEVEL:-info}

[connector.src]
type = postgres
dsn = $(dsn src)
slot = cdcsync_bench
publication = bench_pub

[connector.dst]
type = postgres
dsn = $(dsn cdc)

[pipeline.bench]
source = src
sink = dst
tables = public.bench_rows, public.bench_hot, public.bench_done
snapshot = never
batch_max_rows = $BATCH_MAX_ROWS
CONF
chmod 600 "$WORK/cdcsync.conf"
say "cdcsync: catching up"
t0=$(now)
"$CDCSYNC" -c "$WORK/cdcsync.conf" run >>"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
CDC_SECS=$(wait_marker cdc "$t0")
CDC_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
read -r CDC_UT CDC_ST < <(awk '{print $14, $15}' "/proc/$SERVICE_PID/stat")
CDC_CPU=$(echo "($CDC_UT + $CDC_ST) / $(getconf CLK_TCK)" | bc -l)
kill -TERM "$SERVICE_PID"
wait "$SERVICE_PID" || true
SERVICE_PID=""
[ "$(digest cdc)" = "$SRC_DIGEST" ] || die "cdcsync's target differs from the source: $(digest cdc) vs $SRC_DIGEST"

# ---- native logical replication ----
say "native subscription: catching up"
t0=$(now)
sql nat -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$(dsn src)' PUBLICATION bench_pub
            WITH (create_slot = false, slot_name = 'native_bench', copy_data = false)"
NAT_SECS=$(wait_marker nat "$t0")
sql nat -c "ALTER SUBSCRIPTION bench_sub DISABLE"
[ "$(digest nat)" = "$SRC_DIGEST" ] || die "native target differs from the source: $(digest nat) vs $SRC_DIGEST"
sql nat -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE); DROP SUBSCRIPTION bench_sub"

f() { printf '%.0f' "$1"; }
CDC_RPS=$(echo "$ROWS / $CDC_SECS" | bc -l)
NAT_RPS=$(echo "$ROWS / $NAT_SECS" | bc -l)
RATIO=$(echo "$NAT_SECS / $CDC_SECS" | bc -l)
cat <<OUT
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_wal_bytes=$WAL
batch_max_rows=$BATCH_MAX_ROWS
cdcsync_seconds=$(printf '%.2f' "$CDC_SECS")
cdcsync_rows_per_s=$(f "$CDC_RPS")
cdcsync_txns_per_s=$(f "$(echo "$XACTS / $CDC_SECS" | bc -l)")
cdcsync_cpu_seconds=$(printf '%.2f' "$CDC_CPU")
cdcsync_peak_rss_kb=$CDC_HWM
native_seconds=$(printf '%.2f' "$NAT_SECS")
native_rows_per_s=$(f "$NAT_RPS")
native_txns_per_s=$(f "$(echo "$XACTS / $NAT_SECS" | bc -l)")
ratio_cdcsync_to_native=$(printf '%.3f' "$RATIO")
OUT
say "cdcsync: $(f "$CDC_RPS") rows/s in $(printf '%.1f' "$CDC_SECS") s (peak RSS $((CDC_HWM / 1024)) MB);" \
    "native: $(f "$NAT_RPS") rows/s in $(printf '%.1f' "$NAT_SECS") s; cdcsync/native = $(printf '%.2f' "$RATIO")x;" \
    "both targets equal the source"
