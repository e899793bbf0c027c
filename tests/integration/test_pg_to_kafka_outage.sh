#!/usr/bin/env bash
# PostgreSQL → Kafka while every broker of the (mock) cluster goes down: the pipeline must say so
# (cdcsync_errors_total, /status "retrying", /healthz 503) and, once the brokers are back, deliver
# everything written meanwhile with nothing missing (kafka_check.py replays the topic against the
# source). Then a row whose message exceeds kafka.message.max.bytes: a non-retriable error that
# names the table, and the pipeline stops (state failed) instead of retrying forever.
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

pg_start src
kafka_mock_start
MPORT=$(free_port)

psql_on src <<'SQL'
CREATE TABLE events (id int PRIMARY KEY, batch int NOT NULL, payload text);
INSERT INTO events SELECT g, 0, md5(g::text) FROM generate_series(1, 100) g;
SQL

write_outage_conf() {
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
; fail a batch after 4 s without a broker (default 60 s): the outage shows quickly
kafka.message.timeout.ms = 4000
$1

[pipeline.out]
source = src
sink = bus
tables = public.events
batch_max_rows = 50
CONF
}
status_json() { curl -sf "http://127.0.0.1:$MPORT/status"; }
state_is() {
  [ "$(status_json | python3 -c "import json,sys; print(next(p['state'] for p in json.load(sys.stdin)['pipelines'] if p['name']=='out'))")" = "$1" ]
}
errors() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^cdcsync_errors_total\{pipeline="out"/ {s += $2} END {print s + 0}'; }
healthz() { curl -s -o "$WORK/healthz.out" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz"; }

write_outage_conf ""
service_start
wait_for "the snapshot in kafka" 40 kafka_check src quiet public.events
wait_for "pipeline streaming" 10 state_is streaming
[ "$(healthz)" = 200 ] || fail "/healthz not 200 while streaming: $(cat "$WORK/healthz.out")"
err0=$(errors)
log "streaming; errors so far: $err0. Taking every broker down"

for b in 1 2 3; do kafka_ctl "down $b"; done
# Writes during the outage, in several transactions (inserts, updates, deletes).
for i in 1 2 3 4 5; do
  psql_on src -c "INSERT INTO events SELECT g, $i, md5(g::text) FROM generate_series($i * 1000, $i * 1000 + 59) g;
                  UPDATE events SET payload = 'outage $i' WHERE id BETWEEN $i * 10 AND $i * 10 + 4;
                  DELETE FROM events WHERE id = 90 + $i;" >/dev/null
done
wait_for "an error counted for the outage" 40 bash -c "[ \$(curl -sf http://127.0.0.1:$MPORT/metrics | awk '/^cdcsync_errors_total\\{pipeline=\"out\"/ {s += \$2} END {print s + 0}') -gt $err0 ]"
wait_for "pipeline retrying" 20 state_is retrying
code=$(healthz)
[ "$code" = 503 ] || fail "/healthz answered $code during the outage"
# between attempts it is "retrying", while a new attempt waits for the cluster "starting"
grep -Eq "pipeline out: (retrying|starting) \(last error at .*(not delivered|Message timed out|metadata|queue)" \
  "$WORK/healthz.out" || fail "/healthz does not give the outage as the reason: $(cat "$WORK/healthz.out")"
log "during the outage: errors $(errors), /healthz 503: $(head -c 300 "$WORK/healthz.out")"
grep -E "out.*(not delivered|without a delivery report|queue stayed full|cannot read|retrying in)" "$WORK/service.log" | tail -2 >&2

# One broker back is not the whole cluster; bring all back.
for b in 1 2 3; do kafka_ctl "up $b"; done
wait_for "everything in kafka after the outage" 80 kafka_check src quiet public.events
kafka_check src report --vclock --require-op public.events:d public.events 2>"$WORK/report.txt" ||
  { cat "$WORK/report.txt" >&2; fail "kafka differs from the source after the outage"; }
cat "$WORK/report.txt" >&2
wait_for "pipeline streaming again" 40 state_is streaming
[ "$(healthz)" = 200 ] || fail "/healthz not 200 after the outage: $(cat "$WORK/healthz.out")"
service_stop

# A message larger than the producer's message.max.bytes can never be sent: fail, name the table.
write_outage_conf "kafka.message.max.bytes = 3000"
service_start
wait_for "pipeline streaming with the small limit" 30 state_is streaming
psql_on src -c "INSERT INTO events VALUES (7777, 9, repeat('x', 5000))"
wait_for "pipeline failed" 40 state_is failed
code=$(healthz)
[ "$code" = 503 ] || fail "/healthz answered $code with a failed pipeline"
assert_grep "pipeline out: failed" "$WORK/healthz.out"
assert_grep "public.events" "$WORK/healthz.out"
assert_grep "too large" "$WORK/healthz.out"
log "too large: $(head -c 400 "$WORK/healthz.out")"
grep -q "out.*too large.* — retrying in" "$WORK/service.log" && fail "a message too large was retried"
service_stop
finish
