#!/usr/bin/env bash
# Catch-up benchmark, MariaDB → Kafka, on sysbench's oltp_write_only (per transaction: an
# indexed-column update, a plain update, a delete and an insert): how fast cdcsync publishes a
# binlog backlog, against what the server delivers to a bare binlog reader of the same backlog
# (the source drain), in the same run.
#
#   bench/mysql_kafka.sh  (env: TABLES=4, TABLE_SIZE=100000, THREADS=4, TXNS=50000, BATCH_MAX_ROWS,
#                          CDCSYNC=path/to/cdcsync, BUILDDIR or KAFKA_MOCK, KEEP_WORK=1)
#
# One run: a throwaway MariaDB 10.11 server (scripts/mysql.sh, as bench/sysbench.sh's source) and
# librdkafka's mock cluster of 3 brokers (build/kafka_mock). `sysbench prepare` fills the source,
# then the backlog is `sysbench oltp_write_only run --events=TXNS` from a noted binlog position,
# then a marker row in a table of its own. The drain: `mariadb-binlog --read-from-remote-server
# --raw` (as bench/sysbench.sh) reads the backlog from that position to the end, timed from its
# start. Then cdcsync is started at the same position (snapshot = never) and timed until its
# checkpoint in cdcsync.checkpoints is past the marker's transaction (by the time cdcsync wrote
# that checkpoint, which it records in it; cdcsync_seen_seconds is when this script saw it).
# Every topic must then have got exactly the expected messages, counted by offsets: per table, one
# per inserted, updated and deleted row of the binlog, and a tombstone after each delete. The
# messages the mock kept (the newest ~5 MB of each partition) are checked by key against the
# source's rows (bench/kafka_verify.py: the last message of a key describes the row as it is now).
#
# Output: `key=value` lines on stdout, a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../tests/kafka_mock/kafka_lib.sh
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
THREADS=${THREADS:-4}
TXNS=${TXNS:-50000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
LIMIT=${LIMIT:-1800}
[ -x "$KAFKA_MOCK" ] || fail "no kafka_mock at $KAFKA_MOCK"
bash "$SRCDIR/scripts/deps.sh" sysbench || fail "cannot install sysbench (apt-get install sysbench)"

sysb() { # COMMAND [options...]
  local cmd=$1
  shift
  sysbench oltp_write_only --db-driver=mysql --mysql-socket="$MY_src_DIR/mysql.sock" --mysql-user=root \
    --mysql-db=test --tables="$TABLES" --table_size="$TABLE_SIZE" "$@" "$cmd"
}
master_status() { my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}'; }
file_seq() { echo $((10#${1##*.})); }

log "starting a MariaDB 10.11 server and the mock kafka cluster"
my_start src 1
kafka_mock_start
BOOT=$KAFKA_BOOTSTRAP
sysb prepare --threads=1 >"$WORK/prepare.log" 2>&1 || { cat "$WORK/prepare.log" >&2; fail "sysbench prepare"; }
my_on src -e "CREATE TABLE bench_done (id INT PRIMARY KEY) ENGINE=InnoDB"

read -r BFILE BPOS < <(master_status)
[ -n "$BPOS" ] || fail "no binlog position on the source"
log "building the backlog from $BFILE:$BPOS: oltp_write_only, $TABLES tables of $TABLE_SIZE rows, $THREADS threads, $TXNS transactions"
sysb run --threads="$THREADS" --events="$TXNS" --time=0 --report-interval=0 >"$WORK/run.log" 2>&1 ||
  { cat "$WORK/run.log" >&2; fail "sysbench run"; }
read -r MFILE MPOS < <(master_status) # the marker's transaction starts here
my_on src -e "INSERT INTO bench_done VALUES (1)"
read -r EFILE EPOS < <(master_status)
XACTS=$(($(grep -o 'transactions: *[0-9]*' "$WORK/run.log" | grep -o '[0-9]*$') + 1))
# Row changes from the binlog itself, per table and kind, after BFILE:BPOS.
mariadb-binlog --socket="$MY_src_DIR/mysql.sock" -uroot --read-from-remote-server --start-position="$BPOS" \
  --to-last-log --base64-output=decode-rows -v "$BFILE" 2>/dev/null |
  sed -nE 's/^### (INSERT INTO|UPDATE|DELETE FROM) `[^`]*`\.`([^`]*)`.*/\2 \1/p' | sort | uniq -c >"$WORK/binlog_rows.txt"
ROWS=$(awk '{s += $1} END {print s + 0}' "$WORK/binlog_rows.txt")
[ "$ROWS" -gt 0 ] || fail "no row changes in the binlog after $BFILE:$BPOS"
SRC_PID=$(my_server_pid "$MY_src_DIR")
log "backlog: $ROWS row changes in $XACTS transactions, $BFILE:$BPOS to $EFILE:$EPOS"

# ---- what the server delivers to a reader that does nothing with it ----
log "drain: mariadb-binlog --raw"
mkdir -p "$WORK/raw"
s0=$(cpu_tree "$SRC_PID")
t0=$(now)
mariadb-binlog -h 127.0.0.1 -P "$MY_src_PORT" -ucdc -pcdc-pw --read-from-remote-server --raw --to-last-log \
  --start-position="$BPOS" --result-file="$WORK/raw/" "$BFILE" 2>"$WORK/drain.log" || { cat "$WORK/drain.log" >&2; fail "mariadb-binlog"; }
T_DRAIN=$(calc "$(now) - $t0")
DRAIN_SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
[ -s "$WORK/raw/$EFILE" ] || fail "the drain did not reach $EFILE"
rm -rf "$WORK/raw"

# ---- cdcsync ----
{
  printf '[connector.src]\n'
  my_connector src 51001
  printf '\n[connector.bus]\ntype = kafka\nbrokers = %s\n' "$BOOT"
  printf '\n[pipeline.bench]\nsource = src\nsink = bus\ntables = %stest.bench_done\nsnapshot = never\n' \
    "$(for i in $(seq 1 "$TABLES"); do printf 'test.sbtest%s, ' "$i"; done)"
  printf 'start_position = %s:%s\nbatch_max_rows = %s\n' "$BFILE" "$BPOS" "$BATCH_MAX_ROWS"
} | write_conf "$WORK/cdcsync.conf" off "${LOG_LEVEL:-warn}"

# A checkpoint's value (JSON): sets HI, LO and TS_MS from it, its position (binlog file number,
# offset) and when cdcsync wrote it (its own clock, the same machine's), so the time measured does
# not include the waiting; succeeds once it is past the start of the marker's transaction.
MSEQ=$(file_seq "$MFILE")
caught_up() {
  [[ $1 =~ \"hi\":\"([0-9]+)\" ]] || return 1
  HI=${BASH_REMATCH[1]}
  [[ $1 =~ \"lo\":\"([0-9]+)\" ]] || return 1
  LO=${BASH_REMATCH[1]}
  [[ $1 =~ \"ts_ms\":([0-9]+) ]] || return 1
  TS_MS=${BASH_REMATCH[1]}
  [ "$HI" -gt "$MSEQ" ] || { [ "$HI" -eq "$MSEQ" ] && [ "$LO" -gt "$MPOS" ]; }
}
log "cdcsync: catching up"
s0=$(cpu_tree "$SRC_PID")
k0=$(cpu_tree "$MOCK_PID")
t0=$(now)
service_start
wait_topic "cdcsync's checkpoint past the marker" "$LIMIT" cdcsync.checkpoints caught_up
T_SEEN=$(calc "$(now) - $t0")
T_CDC=$(calc "$TS_MS / 1000 - $t0")
CDC_CPU=$(cpu_tree "$SERVICE_PID")
CDC_RSS=$(peak_rss_kb "$SERVICE_PID")
CDC_MOCK_CPU=$(calc "$(cpu_tree "$MOCK_PID") - $k0")
CDC_SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
service_stop

# ---- what the topics hold ----
# librdkafka's mock keeps only the newest ~5 MB of each partition, so counts come from the
# offsets (the last offset of every partition + 1).
produced() { kcat -b "$BOOT" -C -t "$1" -o -1 -e -q -f '%o\n' | awk '{s += $1 + 1} END {print s + 0}'; }
MSGS=0
VERIFY=""
for t in $(for i in $(seq 1 "$TABLES"); do echo "sbtest$i"; done) bench_done; do
  want=$(awk -v t="$t" '$2 == t {n += $1; if ($3 == "DELETE") n += $1} END {print n + 0}' "$WORK/binlog_rows.txt")
  got=$(produced "cdc.src.test.$t")
  [ "$got" -eq "$want" ] || fail "topic cdc.src.test.$t got $got messages, want $want (binlog rows, a tombstone per delete)"
  MSGS=$((MSGS + got))
  [ "$t" != bench_done ] || continue
  my_on src -e "SELECT JSON_OBJECT('id', id, 'k', k, 'c', c, 'pad', pad) FROM $t" >"$WORK/rows_$t.json"
  python3 "$BENCH_DIR/kafka_verify.py" --bootstrap "$BOOT" --topic "cdc.src.test.$t" --key id \
    --rows "$WORK/rows_$t.json" --prefix "${t}_" >"$WORK/verify_$t.txt" ||
    fail "topic cdc.src.test.$t: its kept messages differ from the source"
  VERIFY+="$(cat "$WORK/verify_$t.txt")"$'\n'
done

R_CDC=$(calc "$ROWS / $T_CDC")
R_DRAIN=$(calc "$ROWS / $T_DRAIN")
cat <<OUT
bench=sysbench_oltp_write_only_mariadb_to_kafka
tables=$TABLES
table_size=$TABLE_SIZE
threads=$THREADS
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_binlog_bytes=$(if [ "$EFILE" = "$BFILE" ]; then echo $((EPOS - BPOS)); else echo "n/a (several files)"; fi)
batch_max_rows=$BATCH_MAX_ROWS
messages=$MSGS
drain_seconds=$(fmt2 "$T_DRAIN")
drain_rows_per_s=$(fmt0 "$R_DRAIN")
drain_source_cpu_seconds=$(fmt2 "$DRAIN_SRC_CPU")
cdcsync_seen_seconds=$(fmt2 "$T_SEEN")
cdcsync_seconds=$(fmt2 "$T_CDC")
cdcsync_rows_per_s=$(fmt0 "$R_CDC")
cdcsync_msgs_per_s=$(fmt0 "$(calc "$MSGS / $T_CDC")")
cdcsync_cpu_seconds=$(fmt2 "$CDC_CPU")
cdcsync_cpu_us_per_row=$(fmt2 "$(calc "$CDC_CPU * 1000000 / $ROWS")")
cdcsync_source_cpu_seconds=$(fmt2 "$CDC_SRC_CPU")
cdcsync_kafka_mock_cpu_seconds=$(fmt2 "$CDC_MOCK_CPU")
cdcsync_peak_rss_kb=$CDC_RSS
ratio_cdcsync_to_drain=$(printf '%.3f' "$(calc "$T_DRAIN / $T_CDC")")
${VERIFY}machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
OUT
log "cdcsync $(fmt0 "$R_CDC") rows/s ($MSGS messages in $(fmt2 "$T_CDC") s, start-up included; seen after $(fmt2 "$T_SEEN") s)," \
  "drain $(fmt0 "$R_DRAIN") rows/s: ratio $(fmt2 "$(calc "$T_DRAIN / $T_CDC")"); every topic got exactly the expected messages"
finish
