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
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TXNS=${TXNS:-60000}
BIG_TXNS=${BIG_TXNS:-6}
BIG_ROWS=${BIG_ROWS:-20000}
NROWS=${NROWS:-100000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
LIMIT=${LIMIT:-1800}

digest() { pg_digest "$1" postgres bench_rows bench_hot; }

SCHEMA="
CREATE TABLE bench_rows (id bigint PRIMARY KEY, k int NOT NULL, v text NOT NULL, at timestamptz NOT NULL DEFAULT '2024-01-01');
CREATE TABLE bench_hot (id int PRIMARY KEY, total bigint NOT NULL);
CREATE TABLE bench_done (id int PRIMARY KEY);
INSERT INTO bench_rows (id, k, v) SELECT g, g % 1000, md5(g::text) FROM generate_series(1, $NROWS) g;
INSERT INTO bench_hot SELECT g, 0 FROM generate_series(1, 100) g;"

log "starting 3 PostgreSQL 15 clusters (fsync = off on all; targets with identical settings)"
pg_start src
pg_start cdc
pg_start nat
for c in src cdc nat; do psql_on $c -c "$SCHEMA"; done
psql_on src -c "CREATE SEQUENCE bench_ids START $((NROWS + 1))"
psql_on src <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE bench_rows, bench_hot, bench_done;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SELECT FROM pg_create_logical_replication_slot('native_bench', 'pgoutput');
SQL

log "building the backlog: $TXNS pgbench transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
pgbench -n -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -c 2 -j 2 -t $((TXNS / 2)) -D nrows="$NROWS" \
  -f "$BENCH_DIR/workload.sql" postgres >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; fail "pgbench"; }
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) psql_on src -c "UPDATE bench_rows SET k = k + 1, v = md5(v || '$i') WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  2) psql_on src -c "INSERT INTO bench_rows (id, k, v) SELECT nextval('bench_ids'), g, md5(g::text) FROM generate_series(1, $BIG_ROWS) g" ;;
  0) psql_on src -c "DELETE FROM bench_rows WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  esac
done
psql_on src -c "INSERT INTO bench_done VALUES (1)"
# Row changes and transactions of the backlog, from the source's own counters (a backend's
# counters are flushed when it exits; every writer above has).
sleep 1
ROWS=$(psql_on src -c "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) - $NROWS - 100 FROM pg_stat_user_tables WHERE relname LIKE 'bench_%'")
XACTS=$((TXNS + BIG_TXNS + 1))
WAL=$(psql_on src -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'native_bench'")
SRC_DIGEST=$(digest src)
log "backlog: $ROWS row changes in $XACTS transactions, $((WAL / 1048576)) MB of WAL"

# ---- cdcsync ----
write_conf "$WORK/cdcsync.conf" off "${LOG_LEVEL:-info}" <<CONF
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
tables = public.bench_rows, public.bench_hot, public.bench_done
snapshot = never
batch_max_rows = $BATCH_MAX_ROWS
CONF
log "cdcsync: catching up"
t0=$(now)
service_start
wait_marker pg cdc >/dev/null
CDC_SECS=$(calc "$(now) - $t0")
CDC_HWM=$(peak_rss_kb "$SERVICE_PID")
CDC_CPU=$(cpu_tree "$SERVICE_PID")
service_stop
[ "$(digest cdc)" = "$SRC_DIGEST" ] || fail "cdcsync's target differs from the source: $(digest cdc) vs $SRC_DIGEST"

# ---- native logical replication ----
log "native subscription: catching up"
t0=$(now)
psql_on nat -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$(pg_dsn src)' PUBLICATION bench_pub
                WITH (create_slot = false, slot_name = 'native_bench', copy_data = false)"
wait_marker pg nat >/dev/null
NAT_SECS=$(calc "$(now) - $t0")
psql_on nat -c "ALTER SUBSCRIPTION bench_sub DISABLE"
[ "$(digest nat)" = "$SRC_DIGEST" ] || fail "native target differs from the source: $(digest nat) vs $SRC_DIGEST"
psql_on nat -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE); DROP SUBSCRIPTION bench_sub"

CDC_RPS=$(calc "$ROWS / $CDC_SECS")
NAT_RPS=$(calc "$ROWS / $NAT_SECS")
RATIO=$(calc "$NAT_SECS / $CDC_SECS")
cat <<OUT
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_wal_bytes=$WAL
batch_max_rows=$BATCH_MAX_ROWS
cdcsync_seconds=$(fmt2 "$CDC_SECS")
cdcsync_rows_per_s=$(fmt0 "$CDC_RPS")
cdcsync_txns_per_s=$(fmt0 "$(calc "$XACTS / $CDC_SECS")")
cdcsync_cpu_seconds=$(fmt2 "$CDC_CPU")
cdcsync_peak_rss_kb=$CDC_HWM
native_seconds=$(fmt2 "$NAT_SECS")
native_rows_per_s=$(fmt0 "$NAT_RPS")
native_txns_per_s=$(fmt0 "$(calc "$XACTS / $NAT_SECS")")
ratio_cdcsync_to_native=$(printf '%.3f' "$RATIO")
OUT
log "cdcsync: $(fmt0 "$CDC_RPS") rows/s in $(printf '%.1f' "$CDC_SECS") s (peak RSS $((CDC_HWM / 1024)) MB);" \
  "native: $(fmt0 "$NAT_RPS") rows/s in $(printf '%.1f' "$NAT_SECS") s; cdcsync/native = $(fmt2 "$RATIO")x;" \
  "both targets equal the source"
finish
