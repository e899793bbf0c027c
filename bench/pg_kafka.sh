#!/usr/bin/env bash
# Catch-up benchmark, PostgreSQL → Kafka: how fast cdcsync publishes a backlog, against what the
# walsender delivers to a bare reader of the same backlog (the source drain) and against the raw
# produce rate of equal-sized messages to the same cluster, all in the same run.
#
#   bench/pg_kafka.sh        (env: ROWS, TXN_ROWS, PAD, CDCSYNC, BUILDDIR or KAFKA_MOCK, KEEP_WORK=1)
#
# One run: a throwaway PostgreSQL 15 cluster (scripts/pg.sh) and librdkafka's mock cluster of 3
# brokers (build/kafka_mock). Two slots are created first (cdcsync's and the drain's), then the
# backlog is built: ROWS inserts in transactions of TXN_ROWS rows. The drain: pg_recvlogical
# (pgoutput, the same publication) reads the second slot to the backlog's end into /dev/null,
# timed from its start. Then the service is started (snapshot = never, the existing slot) and
# timed until its checkpoint in cdcsync.checkpoints reaches the backlog's last commit (by the
# time cdcsync wrote that checkpoint, which it records in it: the polling of this script is not
# counted; cdcsync_seen_seconds is when the script saw it).
# The topic must then have got exactly ROWS messages (counted by offsets), and the messages the mock
# kept (the newest ~5 MB of each partition) must each equal their source row by key
# (bench/kafka_verify.py). Then kcat (an independent librdkafka
# producer, same settings: idempotence, murmur2_random, linger.ms=5) produces ROWS messages of the
# same sizes (cdcsync's own messages read back, repeated) to a fresh topic and is timed too.
#
# Output: `key=value` lines on stdout, a human summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../tests/kafka_mock/kafka_lib.sh
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

ROWS=${ROWS:-100000}
TXN_ROWS=${TXN_ROWS:-1000}
PAD=${PAD:-200}
[ -x "$KAFKA_MOCK" ] || fail "no kafka_mock at $KAFKA_MOCK"

pg_start src
kafka_mock_start
BOOT=$KAFKA_BOOTSTRAP

psql_on src <<SQL
CREATE TABLE bench_rows (id bigint PRIMARY KEY, k int NOT NULL, v text NOT NULL, at timestamptz NOT NULL);
CREATE PUBLICATION bench_pub FOR TABLE bench_rows;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SELECT FROM pg_create_logical_replication_slot('drain_bench', 'pgoutput');
SQL
log "building the backlog: $ROWS inserts in transactions of $TXN_ROWS rows"
chunk() { echo "INSERT INTO bench_rows SELECT g, g % 1000, repeat(md5(g::text), $PAD / 32 + 1), '2024-01-01'::timestamptz + g * interval '1 s' FROM generate_series($(($1 + 1)), $(($1 + TXN_ROWS < ROWS ? $1 + TXN_ROWS : ROWS))) g;"; }
LAST=$(( (ROWS - 1) / TXN_ROWS * TXN_ROWS ))
for ((i = 0; i < LAST; i += TXN_ROWS)); do chunk $i; done | psql_on src
# The last transaction notes the WAL insert position before its commit: its commit record (the
# checkpoint cdcsync writes for it) is at or past that, every earlier commit before it.
END_LSN=$( { echo "BEGIN;"; chunk $LAST; echo "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn; COMMIT;"; } | psql_on src)
BACKLOG_BYTES=$(psql_on src -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'cdcsync_bench'")
WAL_END=$(psql_on src -c "SELECT pg_current_wal_lsn()") # past the last commit record
SRC_PM=$(pg_postmaster_pid "$PG_src_DIR")

# ---- what the walsender delivers to a reader that does nothing with it ----
log "drain: pg_recvlogical to /dev/null"
s0=$(cpu_tree "$SRC_PM")
t0=$(now)
pg_recvlogical -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -d postgres --slot drain_bench --start --no-loop \
  -o proto_version=2 -o publication_names=bench_pub -E "$WAL_END" -f /dev/null 2>"$WORK/drain.log" ||
  { cat "$WORK/drain.log" >&2; fail "pg_recvlogical"; }
T_DRAIN=$(calc "$(now) - $t0")
DRAIN_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")
DRAIN_LSN=$(psql_on src -c "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'drain_bench'")
[ "$DRAIN_LSN" -ge "$END_LSN" ] || fail "the drain stopped at $DRAIN_LSN, before the last commit ($END_LSN)"

write_conf "$WORK/cdcsync.conf" off "${LOG_LEVEL:-warn}" <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)
slot = cdcsync_bench
publication = bench_pub

[connector.bus]
type = kafka
brokers = $BOOT

[pipeline.bench]
source = src
sink = bus
tables = public.bench_rows
snapshot = never
batch_max_rows = ${BATCH_MAX_ROWS:-5000}
CONF

# A checkpoint's value (JSON): sets LO and TS_MS from it, its position and when cdcsync wrote it
# (its own clock, the same machine's), so the time measured does not include the waiting; succeeds
# once it is the backlog's last commit.
caught_up() {
  [[ $1 =~ \"lo\":\"([0-9]+)\" ]] || return 1
  LO=${BASH_REMATCH[1]}
  [[ $1 =~ \"ts_ms\":([0-9]+) ]] || return 1
  TS_MS=${BASH_REMATCH[1]}
  [ "$LO" -ge "$END_LSN" ]
}
log "starting cdcsync"
s0=$(cpu_tree "$SRC_PM")
k0=$(cpu_tree "$MOCK_PID")
t0=$(now)
service_start
wait_topic "cdcsync's checkpoint at the backlog's last commit" 600 cdcsync.checkpoints caught_up
T_SEEN=$(calc "$(now) - $t0")
T_CDC=$(calc "$TS_MS / 1000 - $t0")
CDC_CPU=$(cpu_tree "$SERVICE_PID")
CDC_RSS=$(peak_rss_kb "$SERVICE_PID")
CDC_MOCK_CPU=$(calc "$(cpu_tree "$MOCK_PID") - $k0")
CDC_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")
service_stop

# librdkafka's mock keeps only the newest ~5 MB of each partition, so the count comes from the
# offsets (the last offset of every partition + 1), and kcat's input from the messages kept.
produced() { kcat -b "$BOOT" -C -t "$1" -o -1 -e -q -f '%o\n' | awk '{s += $1 + 1} END {print s + 0}'; }
N=$(produced cdc.src.public.bench_rows)
[ "$N" -eq "$ROWS" ] || fail "topic got $N messages, want $ROWS"
psql_on src -c "SELECT row_to_json(t) FROM bench_rows t" >"$WORK/source_rows.json"
python3 "$BENCH_DIR/kafka_verify.py" --bootstrap "$BOOT" --topic cdc.src.public.bench_rows --key id \
  --rows "$WORK/source_rows.json" >"$WORK/verify.txt" || fail "the topic's kept messages differ from the source"
kcat -b "$BOOT" -C -t cdc.src.public.bench_rows -e -q -f '%k\t%s\n' >"$WORK/kept.tsv"
python3 - "$WORK/kept.tsv" "$N" >"$WORK/msgs.tsv" <<'PY'
import sys
kept = open(sys.argv[1], "rb").read().splitlines(keepends=True)
out = sys.stdout.buffer
for i in range(int(sys.argv[2])):
    out.write(kept[i % len(kept)])
PY
BYTES=$(wc -c <"$WORK/msgs.tsv")

log "kcat producing the same $N messages to a fresh topic"
t1=$(now)
kcat -b "$BOOT" -P -t raw.bench -K $'\t' -X enable.idempotence=true -X partitioner=murmur2_random -X linger.ms=5 \
  <"$WORK/msgs.tsv"
T_RAW=$(calc "$(now) - $t1")
NRAW=$(produced raw.bench)
[ "$NRAW" -eq "$N" ] || fail "kcat's topic got $NRAW messages, want $N"

R_CDC=$(calc "$N / $T_CDC")
R_RAW=$(calc "$N / $T_RAW")
R_DRAIN=$(calc "$ROWS / $T_DRAIN")
echo "bench=pg_to_kafka"
printf 'messages=%d\nmessage_bytes_avg=%d\nbacklog_wal_bytes=%s\ncdcsync_seen_seconds=%.2f\ncdcsync_seconds=%.2f\ncdcsync_msgs_per_s=%.0f\nkcat_seconds=%.2f\nkcat_msgs_per_s=%.0f\nratio_cdcsync_to_kcat=%.2f\n' \
  "$N" "$((BYTES / N))" "$BACKLOG_BYTES" "$T_SEEN" "$T_CDC" "$R_CDC" "$T_RAW" "$R_RAW" "$(calc "$R_CDC / $R_RAW")"
cat <<OUT
backlog_rows=$ROWS
drain_seconds=$(fmt2 "$T_DRAIN")
drain_rows_per_s=$(fmt0 "$R_DRAIN")
drain_source_cpu_seconds=$(fmt2 "$DRAIN_SRC_CPU")
cdcsync_rows_per_s=$(fmt0 "$(calc "$ROWS / $T_CDC")")
cdcsync_cpu_seconds=$(fmt2 "$CDC_CPU")
cdcsync_source_cpu_seconds=$(fmt2 "$CDC_SRC_CPU")
cdcsync_kafka_mock_cpu_seconds=$(fmt2 "$CDC_MOCK_CPU")
cdcsync_peak_rss_kb=$CDC_RSS
ratio_cdcsync_to_drain=$(printf '%.3f' "$(calc "$T_DRAIN / $T_CDC")")
$(cat "$WORK/verify.txt")
machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
OUT
log "cdcsync: $N messages in $(fmt2 "$T_CDC") s ($(fmt0 "$R_CDC")/s, start to last checkpoint written, start-up included; $(fmt2 "$T_SEEN") s until this script saw it);" \
  "drain: $(fmt2 "$T_DRAIN") s ($(fmt0 "$R_DRAIN") rows/s), ratio $(fmt2 "$(calc "$T_DRAIN / $T_CDC")");" \
  "kcat: $(fmt2 "$T_RAW") s ($(fmt0 "$R_RAW")/s); ratio $(fmt2 "$(calc "$R_CDC / $R_RAW")")"
finish
