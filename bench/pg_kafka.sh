#!/usr/bin/env bash
# Catch-up benchmark, PostgreSQL → Kafka: how fast cdcsync publishes a backlog, against the raw
# produce rate of equal-sized messages to the same cluster in the same run.
#
#   bench/pg_kafka.sh        (env: ROWS, TXN_ROWS, PAD, CDCSYNC, KAFKA_MOCK, KEEP_WORK=1)
#
# One run: a throwaway PostgreSQL 15 cluster (scripts/pg.sh) and librdkafka's mock cluster of 3
# brokers (build/kafka_mock). The slot is created first, then the backlog is built: ROWS inserts in
# transactions of TXN_ROWS rows. Then the service is started (snapshot = never, the existing
# slot) and timed until its checkpoint in cdcsync.checkpoints reaches the backlog's last commit (by the
# time cdcsync wrote that checkpoint, which it records in it: the polling of this script is not
# counted; cdcsync_seen_seconds is when the script saw it).
# The topic must then have got exactly ROWS messages. Then kcat (an independent librdkafka
# producer, same settings: idempotence, murmur2_random, linger.ms=5) produces ROWS messages of the
# same sizes (cdcsync's own messages read back, repeated) to a fresh topic and is timed too.
#
# Output: `key=value` lines on stdout, a human summary on stderr.
set -euo pipefail

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
KAFKA_MOCK=${KAFKA_MOCK:-$SRCDIR/build/kafka_mock}
ROWS=${ROWS:-100000}
TXN_ROWS=${TXN_ROWS:-1000}
PAD=${PAD:-200}
WORK=$(mktemp -d /tmp/cdcsync-bench-kafka.XXXXXX)
chmod 755 "$WORK"
SERVICE_PID="" MOCK_PID="" CLUSTER=""

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }
cleanup() {
  local rc=$?
  [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null || true
  [ -n "$MOCK_PID" ] && kill -TERM "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null || true
  [ -n "$CLUSTER" ] && bash "$SRCDIR/scripts/pg.sh" stop "$CLUSTER" || true
  if [ $rc -ne 0 ] && [ -f "$WORK/service.log" ]; then tail -n 30 "$WORK/service.log" >&2; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
[ -x "$CDCSYNC" ] || die "no cdcsync binary at $CDCSYNC (build first, or set CDCSYNC)"
[ -x "$KAFKA_MOCK" ] || die "no kafka_mock at $KAFKA_MOCK"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bash "$SRCDIR/scripts/pg.sh" start "$WORK/pg" "$PORT"
CLUSTER=$WORK/pg
sql() { psql -X -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

"$KAFKA_MOCK" -b 3 -p "$WORK/bootstrap" -t cdcsync.checkpoints:1 >/dev/null 2>"$WORK/mock.log" &
MOCK_PID=$!
for _ in $(seq 100); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOT=$(cat "$WORK/bootstrap")

sql <<SQL
CREATE TABLE bench_rows (id bigint PRIMARY KEY, k int NOT NULL, v text NOT NULL, at timestamptz NOT NULL);
CREATE PUBLICATION bench_pub FOR TABLE bench_rows;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SQL
say "building the backlog: $ROWS inserts in transactions of $TXN_ROWS rows"
chunk() { echo "INSERT INTO bench_rows SELECT g, g % 1000, repeat(md5(g::text), $PAD / 32 + 1), '2024-01-01'::timestamptz + g * interval '1 s' FROM generate_series($(($1 + 1)), $(($1 + TXN_ROWS < ROWS ? $1 + TXN_ROWS : ROWS))) g;"; }
LAST=$(( (ROWS - 1) / TXN_ROWS * TXN_ROWS ))
for ((i = 0; i < LAST; i += TXN_ROWS)); do chunk $i; done | sql
# The last transaction notes the WAL insert position before its commit: its commit record (the
# checkpoint cdcsync writes for it) is at or past that, every earlier commit before it.
END_LSN=$( { echo "BEGIN;"; chunk $LAST; echo "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn; COMMIT;"; } | sql)
BACKLOG_BYTES=$(sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'cdcsync_bench'")

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off
log_level = ${LOG_LEVEL:-warn}

[connector.src]
type = postgres
dsn = host=127.0.0.1 port=$PORT user=postgres dbname=postgres
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

# "LO TS_MS" of the newest checkpoint: its position, and when cdcsync wrote it (its own clock, the
# same machine's), so the time measured does not include this loop's polling.
checkpoint() { kcat -b "$BOOT" -C -t cdcsync.checkpoints -e -q -f '%s\n' 2>/dev/null | tail -n 1 |
  python3 -c 'import json,sys; l=sys.stdin.read().strip(); j=json.loads(l) if l else {}; print(j.get("lo", 0), j.get("ts_ms", 0))'; }
say "starting cdcsync"
t0=$(now)
"$CDCSYNC" -c "$WORK/cdcsync.conf" run >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
while :; do
  read -r lo ts_ms < <(checkpoint)
  [ "$lo" -ge "$END_LSN" ] && break
  kill -0 "$SERVICE_PID" 2>/dev/null || die "cdcsync exited"
  [ "$(echo "$(now) - $t0 > 600" | bc -l)" = 0 ] || die "no catch-up within 600 s"
  sleep 0.1
done
T_SEEN=$(echo "$(now) - $t0" | bc -l)
T_CDC=$(echo "$ts_ms / 1000 - $t0" | bc -l)
kill -TERM "$SERVICE_PID"; wait "$SERVICE_PID" || true; SERVICE_PID=""

# librdkafka's mock keeps only the newest ~5 MB of each partition, so the count comes from the
# offsets (the last offset of every partition + 1), and kcat's input from the messages kept.
produced() { kcat -b "$BOOT" -C -t "$1" -o -1 -e -q -f '%o\n' | awk '{s += $1 + 1} END {print s + 0}'; }
N=$(produced cdc.src.public.bench_rows)
[ "$N" -eq "$ROWS" ] || die "topic got $N messages, want $ROWS"
kcat -b "$BOOT" -C -t cdc.src.public.bench_rows -e -q -f '%k\t%s\n' >"$WORK/kept.tsv"
python3 - "$WORK/kept.tsv" "$N" >"$WORK/msgs.tsv" <<'PY'
import sys
kept = open(sys.argv[1], "rb").read().splitlines(keepends=True)
out = sys.stdout.buffer
for i in range(int(sys.argv[2])):
    out.write(kept[i % len(kept)])
PY
BYTES=$(wc -c <"$WORK/msgs.tsv")

say "kcat producing the same $N messages to a fresh topic"
t1=$(now)
kcat -b "$BOOT" -P -t raw.bench -K $'\t' -X enable.idempotence=true -X partitioner=murmur2_random -X linger.ms=5 \
  <"$WORK/msgs.tsv"
T_RAW=$(echo "$(now) - $t1" | bc -l)
NRAW=$(produced raw.bench)
[ "$NRAW" -eq "$N" ] || die "kcat's topic got $NRAW messages, want $N"

R_CDC=$(echo "$N / $T_CDC" | bc -l)
R_RAW=$(echo "$N / $T_RAW" | bc -l)
printf 'messages=%d\nmessage_bytes_avg=%d\nbacklog_wal_bytes=%s\ncdcsync_seen_seconds=%.2f\ncdcsync_seconds=%.2f\ncdcsync_msgs_per_s=%.0f\nkcat_seconds=%.2f\nkcat_msgs_per_s=%.0f\nratio_cdcsync_to_kcat=%.2f\n' \
  "$N" "$((BYTES / N))" "$BACKLOG_BYTES" "$T_SEEN" "$T_CDC" "$R_CDC" "$T_RAW" "$R_RAW" "$(echo "$R_CDC / $R_RAW" | bc -l)"
say "cdcsync: $N messages in $(printf %.2f "$T_CDC") s ($(printf %.0f "$R_CDC")/s, start to last checkpoint written, start-up included; $(printf %.2f "$T_SEEN") s until this script saw it);" \
  "kcat: $(printf %.2f "$T_RAW") s ($(printf %.0f "$R_RAW")/s); ratio $(printf %.2f "$(echo "$R_CDC / $R_RAW" | bc -l)")"
