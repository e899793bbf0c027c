#!/usr/bin/env bash
# PostgreSQL → Kafka when a table's topic does not exist and cannot be created (the brokers refuse
# to auto-create it: the mock answers its metadata with UNKNOWN_TOPIC_OR_PART, and the producer is
# told kafka.allow.auto.create.topics = false). The pipeline must say so clearly (an error naming
# the topic and the table, in /status, /healthz and cdcsync_errors_total), retry with a growing
# backoff instead of stopping, acknowledge nothing past the last change before the failing one
# (the slot's confirmed position stays put), and, once the topic is created, catch up with
# nothing missing (kafka_check.py replays both topics against the source).
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

pg_start src
kafka_mock_start
MPORT=$(free_port)
BLOCKED=cdc.src.public.blocked
kafka_ctl "block $BLOCKED"

psql_on src <<'SQL'
CREATE TABLE open_t (id int PRIMARY KEY, n int NOT NULL);
CREATE TABLE blocked (id int PRIMARY KEY, note text);
INSERT INTO open_t SELECT g, 0 FROM generate_series(1, 20) g;
SQL

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = info

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
kafka.allow.auto.create.topics = false
; give up on an unknown topic after 2 s (default 30 s) and on a message after 6 s: quick to show
kafka.topic.metadata.propagation.max.ms = 2000
kafka.message.timeout.ms = 6000

[pipeline.out]
source = src
sink = bus
tables = public.open_t, public.blocked
batch_max_rows = 50
CONF
status_json() { curl -sf "http://127.0.0.1:$MPORT/status"; }
state_is() {
  [ "$(status_json | python3 -c "import json,sys; print(next(p['state'] for p in json.load(sys.stdin)['pipelines'] if p['name']=='out'))")" = "$1" ]
}
errors() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^cdcsync_errors_total\{pipeline="out"/ {s += $2} END {print s + 0}'; }
healthz() { curl -s -o "$WORK/healthz.out" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz"; }
confirmed() { psql_on src -c "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = 'cdcsync_out'"; }
TABLES=(public.open_t public.blocked)

service_start
wait_for "the snapshot in kafka" 40 kafka_check src quiet public.open_t
wait_for "pipeline streaming" 20 state_is streaming
err0=$(errors)

# A: the open table only; B: both tables; C: the open table only. Nothing from B on may be
# acknowledged while B cannot be published.
psql_on src -c "UPDATE open_t SET n = 1 WHERE id <= 5"
wait_for "A in kafka" 30 kafka_check src quiet public.open_t
before_b=$(psql_on src -c "SELECT pg_current_wal_lsn() - '0/0'")
psql_on src -c "BEGIN; INSERT INTO blocked SELECT g, 'b' || g FROM generate_series(1, 30) g;
                UPDATE open_t SET n = 2 WHERE id BETWEEN 6 AND 10; COMMIT;"
psql_on src -c "INSERT INTO open_t SELECT g, 3 FROM generate_series(100, 140) g"

wait_for "an error counted for the missing topic" 40 bash -c "[ \$(curl -sf http://127.0.0.1:$MPORT/metrics | awk '/^cdcsync_errors_total\\{pipeline=\"out\"/ {s += \$2} END {print s + 0}') -gt $err0 ]"
# Each new attempt streams again until the unpublishable batch fails it again: between attempts
# the state is retrying and /healthz answers 503 with the last error.
wait_for "pipeline retrying" 20 state_is retrying
wait_for "/healthz 503 between attempts" 30 bash -c "[ \$(curl -s -o '$WORK/healthz.out' -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) = 503 ]"
# The reason names the topic and the table, and says what to do.
assert_grep "$BLOCKED" "$WORK/healthz.out"
assert_grep "public.blocked" "$WORK/healthz.out"
assert_grep "create it" "$WORK/healthz.out"
log "reason: $(head -c 500 "$WORK/healthz.out")"
curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -E '^cdcsync_errors_total\{pipeline="out",kind="schema"\} [1-9]' >/dev/null ||
  fail "the missing topic is not counted as kind=schema: $(curl -sf "http://127.0.0.1:$MPORT/metrics" | grep errors_total)"

# It keeps retrying, with a growing backoff, and acknowledges nothing from B on.
wait_for "three attempts" 60 bash -c "[ \$(grep -c 'out.*$BLOCKED.* — retrying in' '$WORK/service.log') -ge 3 ]"
grep -o "$BLOCKED.* — retrying in [0-9.]* s" "$WORK/service.log" | grep -o "retrying in [0-9.]* s" | head -3 >"$WORK/backoff.txt"
log "backoff: $(tr '\n' ' ' <"$WORK/backoff.txt")"
python3 - "$WORK/backoff.txt" <<'PY' || fail "the retries do not back off: $(cat "$WORK/backoff.txt")"
import re, sys
d = [float(re.search(r"([0-9.]+) s", l).group(1)) for l in open(sys.argv[1])]
assert len(d) == 3 and d[0] < d[1] < d[2], d
PY
ack=$(confirmed)
[ "$ack" -le "$before_b" ] || fail "the slot was acknowledged to $ack, past $before_b where the unpublished transaction starts"
state_is failed && fail "a missing topic stopped the pipeline instead of being retried"
log "slot confirmed at $ack <= $before_b (start of the unpublished transaction)"

# The operator creates the topic: the pipeline catches up, nothing missing.
kafka_ctl "create $BLOCKED"
wait_for "everything in kafka once the topic exists" 90 kafka_check src quiet "${TABLES[@]}"
kafka_check src report --vclock --insert-once public.blocked "${TABLES[@]}" 2>"$WORK/report.txt" ||
  { cat "$WORK/report.txt" >&2; fail "kafka differs from the source after the topic was created"; }
cat "$WORK/report.txt" >&2
wait_for "pipeline streaming again" 60 state_is streaming
[ "$(healthz)" = 200 ] || fail "/healthz not 200 after the topic was created: $(cat "$WORK/healthz.out")"
wait_for "the slot acknowledged past the transactions" 30 bash -c "[ \$(psql -X -h '$PG_src_DIR' -p '$PG_src_PORT' -U postgres -d postgres -qAt -c \"SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = 'cdcsync_out'\") -gt $before_b ]"
service_stop
finish
