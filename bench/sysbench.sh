#!/usr/bin/env bash
# MariaDB → MariaDB on the workload people benchmark replication with: sysbench's
# oltp_write_only (per transaction: an indexed-column update, a plain update, a delete and an
# insert), applied as a binlog backlog by cdcsync and by MariaDB's own replication — a replica
# with one SQL thread (the default) and one with slave_parallel_threads = PAR_THREADS — one after
# the other, from the same binlog position; beside them, a bare reader (mariadb-binlog --raw)
# gives what the server can deliver at all.
#
#   bench/sysbench.sh    (env: TABLES=4, TABLE_SIZE=100000, THREADS=4, TXNS=150000, PAR_THREADS=4,
#                         BATCH_MAX_ROWS, APPLY_WORKERS="1 2 4" (one cdcsync run and target per value; default
#                         1), SINK_BINLOG=off|on (the sink connector's binlog key; default off),
#                         CDCSYNC=path/to/cdcsync, KEEP_WORK=1)
#
# Servers: four MariaDB 10.11 servers (one more per further APPLY_WORKERS value) (scripts/mysql.sh: identical settings, log_bin,
# innodb_flush_log_at_trx_commit = 2; the targets differ only in server_id). `sysbench prepare`
# fills the source; its dump is loaded into every target outside their binlogs. The backlog is
# `sysbench oltp_write_only run --events=TXNS`, then a marker row in a table of its own. Each
# reader is timed until the marker is on its target; every target must then equal the source
# (CHECKSUM TABLE of every table). Like for like: a replica does not write what it applies to its
# own binlog (log_slave_updates = OFF, the default), and by default neither does cdcsync's sink
# here (binlog = off, its user granted BINLOG ADMIN); SINK_BINLOG=on has cdcsync's target log it,
# as a client's writes are by default.
#
# Output: key=value lines on stdout, a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
THREADS=${THREADS:-4}
TXNS=${TXNS:-150000}
PAR_THREADS=${PAR_THREADS:-4}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
LIMIT=${LIMIT:-1800}
bash "$SRCDIR/scripts/deps.sh" sysbench || fail "cannot install sysbench (apt-get install sysbench)"

my_pid() { local d="MY_${1}_DIR"; my_server_pid "${!d}"; }
digest() { # NAME — CHECKSUM TABLE of every sysbench table and the marker
  local list="" i
  for i in $(seq 1 "$TABLES"); do list+="sbtest$i,"; done
  my_on "$1" -e "CHECKSUM TABLE ${list}bench_done" | awk '{printf "%s=%s ", $1, $2}'
}
sysb() { # NAME COMMAND [options...]
  local name=$1 cmd=$2 d="MY_${1}_DIR"
  shift 2
  sysbench oltp_write_only --db-driver=mysql --mysql-socket="${!d}/mysql.sock" --mysql-user=root \
    --mysql-db=test --tables="$TABLES" --table_size="$TABLE_SIZE" "$@" "$cmd"
}

log "starting 4 MariaDB 10.11 servers (identical settings; the targets differ only in server_id)"
my_start src 1
APPLY_WORKERS=${APPLY_WORKERS:-1}
SINK_BINLOG=${SINK_BINLOG:-off}
CDC_TARGETS=()
sid=10
for w in $APPLY_WORKERS; do
  my_start "cdc$w" $((sid++))
  CDC_TARGETS+=("cdc$w")
  if [ "$SINK_BINLOG" = off ]; then my_on "cdc$w" -e "GRANT BINLOG ADMIN ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost'"; fi
done
my_start nat1 3
my_start nat4 4
sysb src prepare --threads=1 >"$WORK/prepare.log" 2>&1 || { cat "$WORK/prepare.log" >&2; fail "sysbench prepare"; }
my_on src -e "CREATE TABLE bench_done (id INT PRIMARY KEY) ENGINE=InnoDB"
mariadb-dump --socket="$MY_src_DIR/mysql.sock" -uroot --single-transaction --skip-dump-date test >"$WORK/dump.sql"
for t in "${CDC_TARGETS[@]}" nat1 nat4; do
  { echo "SET SESSION sql_log_bin = 0;"; cat "$WORK/dump.sql"; } | my_on "$t"
done
START_DIGEST=$(digest src)
for t in "${CDC_TARGETS[@]}" nat1 nat4; do [ "$(digest $t)" = "$START_DIGEST" ] || fail "the dump did not give $t the source's rows"; done

read -r BFILE BPOS < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
[ -n "$BPOS" ] || fail "no binlog position on the source"
log "building the backlog from $BFILE:$BPOS: oltp_write_only, $TABLES tables of $TABLE_SIZE rows, $THREADS threads, $TXNS transactions"
sysb src run --threads="$THREADS" --events="$TXNS" --time=0 --report-interval=0 >"$WORK/run.log" 2>&1 ||
  { cat "$WORK/run.log" >&2; fail "sysbench run"; }
my_on src -e "INSERT INTO bench_done VALUES (1)"
XACTS=$(($(grep -o 'transactions: *[0-9]*' "$WORK/run.log" | grep -o '[0-9]*$') + 1))
# Row changes from the binlog itself: rows of every write/update/delete event after BFILE:BPOS.
ROWS=$(mariadb-binlog --socket="$MY_src_DIR/mysql.sock" -uroot --read-from-remote-server --start-position="$BPOS" \
  --to-last-log --base64-output=decode-rows -v "$BFILE" 2>/dev/null | grep -cE '^### (INSERT|UPDATE|DELETE) ')
read -r EFILE EPOS < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
SRC_DIGEST=$(digest src)
SRC_PID=$(my_pid src)
log "backlog: $ROWS row changes in $XACTS transactions, ending at $EFILE:$EPOS"

# ---- what the server delivers to a reader that does nothing with it ----
log "drain: mariadb-binlog --raw"
mkdir -p "$WORK/raw"
s0=$(cpu_tree "$SRC_PID")
t0=$(now)
mariadb-binlog -h 127.0.0.1 -P "$MY_src_PORT" -ucdc -pcdc-pw --read-from-remote-server --raw --to-last-log \
  --start-position="$BPOS" --result-file="$WORK/raw/" "$BFILE" 2>"$WORK/drain.log" || { cat "$WORK/drain.log" >&2; fail "mariadb-binlog"; }
DRAIN_SECS=$(calc "$(now) - $t0")
DRAIN_SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
rm -rf "$WORK/raw"

# ---- cdcsync, once per APPLY_WORKERS value, each into a target of its own ----
run_cdcsync() { # WORKERS — sets CDC_SECS, CDC_CPU, CDC_RSS, CDC_DST_CPU, CDC_SRC_CPU
  local w=$1 target=cdc$1
  rm -rf "$WORK/state"
  {
    printf '[service]\nstate_dir = %s\nmetrics_listen = off\nlog_level = %s\n\n' "$WORK/state" "${LOG_LEVEL:-info}"
    printf '[connector.src]\n'
    my_connector src 51001
    printf '\n[connector.dst]\n'
    my_connector "$target" 51002
    printf 'binlog = %s\n' "$SINK_BINLOG"
    printf '\n[pipeline.bench]\nsource = src\nsink = dst\ntables = %stest.bench_done\nsnapshot = never\n' \
      "$(for i in $(seq 1 "$TABLES"); do printf 'test.sbtest%s, ' "$i"; done)"
    printf 'start_position = %s:%s\nbatch_max_rows = %s\napply_workers = %s\n' "$BFILE" "$BPOS" "$BATCH_MAX_ROWS" "$w"
  } >"$WORK/cdcsync.conf"
  chmod 600 "$WORK/cdcsync.conf"
  log "cdcsync (apply_workers = $w): catching up"
  local dst_pid s0 d0 t0
  dst_pid=$(my_pid "$target")
  s0=$(cpu_tree "$SRC_PID")
  d0=$(cpu_tree "$dst_pid")
  t0=$(now)
  service_start
  wait_marker my "$target" >/dev/null
  CDC_SECS=$(calc "$(now) - $t0")
  CDC_CPU=$(cpu_tree "$SERVICE_PID")
  CDC_RSS=$(peak_rss_kb "$SERVICE_PID")
  CDC_DST_CPU=$(calc "$(cpu_tree "$dst_pid") - $d0")
  CDC_SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
  service_stop
  [ "$(digest "$target")" = "$SRC_DIGEST" ] || fail "cdcsync's target $target differs from the source: $(digest "$target") vs $SRC_DIGEST"
}
declare -A W_SECS W_CPU W_RSS W_DST_CPU W_SRC_CPU
for w in $APPLY_WORKERS; do
  run_cdcsync "$w"
  W_SECS[$w]=$CDC_SECS W_CPU[$w]=$CDC_CPU W_RSS[$w]=$CDC_RSS W_DST_CPU[$w]=$CDC_DST_CPU W_SRC_CPU[$w]=$CDC_SRC_CPU
done
W1=${APPLY_WORKERS%% *}
CDC_SECS=${W_SECS[$W1]} CDC_CPU=${W_CPU[$W1]} CDC_RSS=${W_RSS[$W1]} CDC_DST_CPU=${W_DST_CPU[$W1]} CDC_SRC_CPU=${W_SRC_CPU[$W1]}

# ---- MariaDB's replication ----
replica() { # NAME PARALLEL_THREADS — sets SECS, DST_CPU, SRC_CPU, MODE
  local name=$1 par=$2 pid
  pid=$(my_pid "$name")
  my_on "$name" -e "SET GLOBAL slave_parallel_threads = $par"
  MODE=$(my_on "$name" -e "SELECT @@slave_parallel_mode")
  s0=$(cpu_tree "$SRC_PID")
  d0=$(cpu_tree "$pid")
  t0=$(now)
  my_on "$name" -e "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $MY_src_PORT, MASTER_USER = 'cdc',
                    MASTER_PASSWORD = 'cdc-pw', MASTER_LOG_FILE = '$BFILE', MASTER_LOG_POS = $BPOS; START SLAVE"
  wait_marker my "$name" >/dev/null
  SECS=$(calc "$(now) - $t0")
  DST_CPU=$(calc "$(cpu_tree "$pid") - $d0")
  SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
  my_on "$name" -e "STOP SLAVE"
  [ "$(digest "$name")" = "$SRC_DIGEST" ] || fail "replica $name differs from the source: $(digest "$name") vs $SRC_DIGEST"
}
log "replica with one SQL thread: catching up"
replica nat1 0
N1_SECS=$SECS N1_DST_CPU=$DST_CPU N1_SRC_CPU=$SRC_CPU
log "replica with slave_parallel_threads = $PAR_THREADS: catching up"
replica nat4 "$PAR_THREADS"
N4_SECS=$SECS N4_DST_CPU=$DST_CPU N4_SRC_CPU=$SRC_CPU N4_MODE=$MODE

per_row_us() { calc "$1 * 1000000 / $ROWS"; }
cat <<OUT
bench=sysbench_oltp_write_only_mariadb_to_mariadb
tables=$TABLES
table_size=$TABLE_SIZE
threads=$THREADS
backlog_rows=$ROWS
backlog_txns=$XACTS
batch_max_rows=$BATCH_MAX_ROWS
apply_workers=$W1
sink_binlog=$SINK_BINLOG
drain_seconds=$(fmt2 "$DRAIN_SECS")
drain_rows_per_s=$(fmt0 "$(calc "$ROWS / $DRAIN_SECS")")
drain_source_cpu_seconds=$(fmt2 "$DRAIN_SRC_CPU")
cdcsync_seconds=$(fmt2 "$CDC_SECS")
cdcsync_rows_per_s=$(fmt0 "$(calc "$ROWS / $CDC_SECS")")
cdcsync_cpu_seconds=$(fmt2 "$CDC_CPU")
cdcsync_target_cpu_seconds=$(fmt2 "$CDC_DST_CPU")
cdcsync_source_cpu_seconds=$(fmt2 "$CDC_SRC_CPU")
cdcsync_apply_cpu_us_per_row=$(fmt2 "$(per_row_us "$(calc "$CDC_CPU + $CDC_DST_CPU")")")
cdcsync_peak_rss_kb=$CDC_RSS
replica1_seconds=$(fmt2 "$N1_SECS")
replica1_rows_per_s=$(fmt0 "$(calc "$ROWS / $N1_SECS")")
replica1_target_cpu_seconds=$(fmt2 "$N1_DST_CPU")
replica1_source_cpu_seconds=$(fmt2 "$N1_SRC_CPU")
replica${PAR_THREADS}_mode=$N4_MODE
replica${PAR_THREADS}_seconds=$(fmt2 "$N4_SECS")
replica${PAR_THREADS}_rows_per_s=$(fmt0 "$(calc "$ROWS / $N4_SECS")")
replica${PAR_THREADS}_target_cpu_seconds=$(fmt2 "$N4_DST_CPU")
replica${PAR_THREADS}_source_cpu_seconds=$(fmt2 "$N4_SRC_CPU")
ratio_cdcsync_to_replica1=$(printf '%.3f' "$(calc "$N1_SECS / $CDC_SECS")")
ratio_cdcsync_to_replica${PAR_THREADS}=$(printf '%.3f' "$(calc "$N4_SECS / $CDC_SECS")")
ratio_cdcsync_to_drain=$(printf '%.3f' "$(calc "$DRAIN_SECS / $CDC_SECS")")
machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
OUT
for w in $APPLY_WORKERS; do # every run, by apply_workers
  cat <<OUT
cdcsync_w${w}_seconds=$(fmt2 "${W_SECS[$w]}")
cdcsync_w${w}_rows_per_s=$(fmt0 "$(calc "$ROWS / ${W_SECS[$w]}")")
cdcsync_w${w}_cpu_seconds=$(fmt2 "${W_CPU[$w]}")
cdcsync_w${w}_target_cpu_seconds=$(fmt2 "${W_DST_CPU[$w]}")
cdcsync_w${w}_peak_rss_kb=${W_RSS[$w]}
ratio_cdcsync_w${w}_to_replica1=$(printf '%.3f' "$(calc "$N1_SECS / ${W_SECS[$w]}")")
ratio_cdcsync_w${w}_to_replica${PAR_THREADS}=$(printf '%.3f' "$(calc "$N4_SECS / ${W_SECS[$w]}")")
OUT
done
log "cdcsync $(for w in $APPLY_WORKERS; do printf '(apply_workers %s) %s rows/s, ' "$w" "$(fmt0 "$(calc "$ROWS / ${W_SECS[$w]}")")"; done)replica(1) $(fmt0 "$(calc "$ROWS / $N1_SECS")") rows/s," \
  "replica($PAR_THREADS, $N4_MODE) $(fmt0 "$(calc "$ROWS / $N4_SECS")") rows/s, drain $(fmt0 "$(calc "$ROWS / $DRAIN_SECS")") rows/s;" \
  "every target equals the source"
finish
