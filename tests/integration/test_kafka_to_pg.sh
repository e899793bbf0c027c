#!/usr/bin/env bash
# Kafka → PostgreSQL: (1) a PG → Kafka service fills the topics (several partitions) from a mixed
# workload, a second service (Kafka → PG, own state_dir) applies them to a third cluster, which
# must end equal to the source; (2) two Kafka → PG instances in one consumer group share the
# partitions while the workload runs, one is killed with kill -9, the other takes its partitions
# over, and the target again ends equal to the source; (3) Debezium-format messages produced with
# kcat (schemas disabled and schema+payload, a delete with its tombstone) are applied; (4) messages
# that are no change event (no op, an empty value, a schema with a null payload, not JSON) stop a
# pipeline with on_bad_message = error (each kind, the error naming topic, partition and offset,
# counted), are skipped and counted with skip, and land in the dead-letter topic with headers
# saying why with dead_letter; tombstones pass without a word; an integer beyond 64 bits arrives
# exact in a numeric column.
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

declare -A PIDS=()
svc_start() { # NAME CONF
  "$CDCSYNC" -c "$2" run >>"$WORK/service-$1.log" 2>&1 &
  PIDS[$1]=$!
}
svc_stop() { # NAME
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "service $1 did not stop within 30 s"; }
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$1]"
}
svc_kill9() {
  kill -9 "${PIDS[$1]}" 2>/dev/null || true
  wait "${PIDS[$1]}" 2>/dev/null || true
  unset "PIDS[$1]"
}
trap 'rc=$?; set +e; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "$MOCK_PID" ] && kill -TERM "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null; (exit $rc); cleanup' EXIT

pg_start src
pg_start dst
BAD_KINDS=(noop empty nullpl garbage)
BAD_TOPICS=()
for k in "${BAD_KINDS[@]}" skip dl; do BAD_TOPICS+=(-t "bad.s.t_$k:1"); done
kafka_mock_start -t cdc.src.public.orders:4 -t cdc.src.public.items:3 -t dbserver1.inventory.customers:2 \
  "${BAD_TOPICS[@]}" -t cdcsync.dead.p_dl:1

DDL="CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
       created timestamptz, meta jsonb, flag boolean, ratio double precision, n int NOT NULL DEFAULT 0);
     CREATE TABLE items (id int PRIMARY KEY, name text);"
psql_on src -c "$DDL"
psql_on dst -c "$DDL"
psql_on dst -c "CREATE TABLE customers (id int PRIMARY KEY, first_name text, last_name text, email text, score numeric(10,2), active boolean)"
psql_on src <<'SQL'
INSERT INTO orders SELECT g, 'cust' || g, g * 1.25, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour',
  jsonb_build_object('n', g, 'x', 1.10), g % 2 = 0, g / 3.0, 0 FROM generate_series(1, 200) g;
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
SQL

cat >"$WORK/tokafka.conf" <<CONF
[service]
state_dir = $WORK/state-tokafka
metrics_listen = off

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP

[pipeline.tokafka]
source = src
sink = bus
tables = public.orders, public.items
batch_max_rows = 100
CONF

fromkafka_conf() { # STATE_DIR PIPELINE
  cat <<CONF
[service]
state_dir = $1
metrics_listen = off

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
topic = cdc.src.{schema}.{table}
group = cdcsync_test_apply
kafka.session.timeout.ms = 6000
kafka.heartbeat.interval.ms = 500

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.$2]
source = bus
sink = dst
tables = public.orders, public.items
batch_max_rows = 50
CONF
}
# Each instance is its own pipeline (a PostgreSQL sink keeps one replication origin and one
# checkpoint per pipeline); the consumer group they share is set explicitly.
fromkafka_conf "$WORK/state-a" apply_a >"$WORK/a.conf"
fromkafka_conf "$WORK/state-b" apply_b >"$WORK/b.conf"
fromkafka_conf "$WORK/state-c" apply_c >"$WORK/c.conf"

"$CDCSYNC" -c "$WORK/a.conf" check --connect >"$WORK/check.out" 2>&1 || fail "check --connect failed: $(cat "$WORK/check.out")"
assert_grep "consumer group cdcsync_test_apply" "$WORK/check.out"

cat >"$WORK/workload.sql" <<'SQL'
\set id random(1, 400)
\set it random(1, 80)
BEGIN;
INSERT INTO orders (id, customer, amount, created, meta, flag, ratio, n)
  VALUES (:id, md5(random()::text), random() * 1000, now(), jsonb_build_object('k', :id, 'v', 2.50), random() < 0.5, random(), 1)
  ON CONFLICT (id) DO UPDATE SET customer = excluded.customer, amount = excluded.amount, n = orders.n + 1;
UPDATE orders SET n = n + 1, meta = meta || '{"u": true}' WHERE id = :id + 1;
DELETE FROM orders WHERE id = :id + 7 AND n % 3 = 0;
INSERT INTO items VALUES (:it, 'w ' || :id) ON CONFLICT (id) DO UPDATE SET name = excluded.name;
DELETE FROM items WHERE id = :it + 3 AND :id % 4 = 0;
COMMIT;
SQL
run_workload() { # SECONDS
  local dir=PG_src_DIR port=PG_src_PORT
  pgbench -n -h "${!dir}" -p "${!port}" -U postgres -c 3 -j 1 -T "$1" -R 100 -f "$WORK/workload.sql" postgres \
    >>"$WORK/pgbench.log" 2>&1
}
TABLES=(public.orders public.items)

# (1) PG → Kafka → PG.
svc_start tokafka "$WORK/tokafka.conf"
svc_start a "$WORK/a.conf"
run_workload 8 || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
psql_on src <<'SQL'
UPDATE orders SET amount = 12345678.91, meta = '{"deep": {"a": [1, 2.10, null]}}', customer = E'tab\tq"uote ✓' WHERE id = 5;
UPDATE orders SET amount = NULL, created = NULL, meta = NULL, flag = NULL, ratio = 'NaN' WHERE id = 6;
UPDATE items SET id = -id WHERE id = 1;
SQL
wait_synced src dst 120 "${TABLES[@]}"
assert_tables_equal src dst "${TABLES[@]}"
log "(1) target equal to the source"

# (2) Two instances of the group; one killed with kill -9 under load.
svc_stop a
n_before=$(psql_on dst -c "SELECT coalesce(sum(n), 0) FROM orders")
svc_start b "$WORK/b.conf"
svc_start c "$WORK/c.conf"
run_workload 20 &
BENCH=$!
wait_for "instance b to get partitions" 60 grep -q "assigned" "$WORK/service-b.log"
wait_for "instance c to get partitions" 60 grep -q "assigned" "$WORK/service-c.log"
# Kill b only once it has applied part of the load, so its partitions move mid-stream.
applied_more() { [ "$(psql_on dst -c "SELECT coalesce(sum(n), 0) FROM orders")" -gt $((n_before + 100)) ]; }
wait_for "changes applied through the group" 60 applied_more
svc_kill9 b
log "instance b killed with kill -9"
wait $BENCH || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
wait_synced src dst 180 "${TABLES[@]}"
assert_tables_equal src dst "${TABLES[@]}"
parts_c=$(grep -c "assigned 7 partition" "$WORK/service-c.log" || true)
[ "$parts_c" -ge 1 ] || fail "instance c never took over the partitions of b"
log "(2) target equal to the source after instance b was killed and c took its partitions over"
svc_stop c
svc_stop tokafka

# (3) Debezium messages, written by hand as Debezium writes them.
T=dbserver1.inventory.customers
SRC='"source":{"version":"2.5.0.Final","connector":"postgresql","name":"dbserver1","ts_ms":1700000000000,"db":"inventory","schema":"inventory","table":"customers","txId":1,"lsn":1}'
{
  printf '%s|%s\n' '{"id":1001}' '{"before":null,"after":{"id":1001,"first_name":"Sally","last_name":"Thomas","email":"sally@example.com","score":12.50,"active":true},'"$SRC"',"op":"r","ts_ms":1700000000001}'
  printf '%s|%s\n' '{"id":1002}' '{"before":null,"after":{"id":1002,"first_name":"George","last_name":"Bailey","email":"gb@example.com","score":null,"active":false},'"$SRC"',"op":"c","ts_ms":1700000000002}'
  printf '%s|%s\n' '{"id":1003}' '{"before":null,"after":{"id":1003,"first_name":"Edward","last_name":"Walker","email":"ed@example.com","score":1,"active":true},'"$SRC"',"op":"c","ts_ms":1700000000003}'
  printf '%s|%s\n' '{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbserver1.inventory.customers.Key"},"payload":{"id":1001}}' \
    '{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"first_name"},{"type":"string","optional":true,"field":"last_name"},{"type":"string","optional":true,"field":"email"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"score"},{"type":"boolean","optional":true,"field":"active"}],"optional":true,"name":"dbserver1.inventory.customers.Value","field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"first_name"},{"type":"string","optional":true,"field":"last_name"},{"type":"string","optional":true,"field":"email"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"score"},{"type":"boolean","optional":true,"field":"active"}],"optional":true,"name":"dbserver1.inventory.customers.Value","field":"after"},{"type":"string","optional":false,"field":"op"}],"optional":false,"name":"dbserver1.inventory.customers.Envelope"},"payload":{"before":null,"after":{"id":1001,"first_name":"Sally","last_name":"Thomas","email":"sally.t@example.com","score":"MDk=","active":true},'"$SRC"',"op":"u","ts_ms":1700000000004}}'
  printf '%s|%s\n' '{"id":1003}' '{"before":{"id":1003,"first_name":null,"last_name":null,"email":null,"score":null,"active":null},"after":null,'"$SRC"',"op":"d","ts_ms":1700000000005}'
} | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -p 0
printf '%s|\n' '{"id":1003}' | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -Z -p 0

cat >"$WORK/dbz.conf" <<CONF
[service]
state_dir = $WORK/state-dbz
metrics_listen = off

[connector.dbz]
type = kafka
brokers = $KAFKA_BOOTSTRAP
topic = dbserver1.{schema}.{table}

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.fromdbz]
source = dbz
sink = dst
tables = *
map = inventory.* -> public.*
CONF
svc_start dbz "$WORK/dbz.conf"
want=$'1001\tSally\tThomas\tsally.t@example.com\t123.45\tt\n1002\tGeorge\tBailey\tgb@example.com\t\\N\tf'
dbz_done() { [ "$(psql_on dst -c 'COPY (SELECT * FROM customers ORDER BY id) TO STDOUT')" = "$want" ]; }
wait_for "the Debezium messages in the target" 60 dbz_done
svc_stop dbz
log "(3) Debezium messages applied"

# (4) Messages that are no change event, under each on_bad_message.
BIG=123456789012345678901234567890
bad_message() { # KIND: key|value of one bad message
  case $1 in
  noop) printf '%s|%s\n' '{"id":2}' '{"before":null,"after":{"id":2,"v":"two"},"source":{"table":"x"}}' ;;
  empty) printf '%s|\n' '{"id":3}' ;;
  nullpl) printf '%s|%s\n' '{"id":4}' '{"schema":{"type":"struct","fields":[]},"payload":null}' ;;
  garbage) printf '%s|%b\n' '{"id":5}' 'garbage\x01\xff' ;;
  esac
}
produce_case() { # TOPIC KIND...: a good row 1, the bad messages, a tombstone, a good row 6 with a big integer
  local t=$1 k
  shift
  printf '%s|%s\n' '{"id":1}' '{"after":{"id":1,"v":"one","big":1},"op":"c"}' | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$t" -K '|' -p 0
  for k in "$@"; do bad_message "$k" | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$t" -K '|' -p 0; done
  printf '%s|\n' '{"id":9}' | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$t" -K '|' -Z -p 0
  printf '%s|%s\n' '{"id":6}' '{"after":{"id":6,"v":"six","big":'"$BIG"'},"op":"c"}' |
    kcat -b "$KAFKA_BOOTSTRAP" -P -t "$t" -K '|' -p 0
}
for k in "${BAD_KINDS[@]}"; do produce_case "bad.s.t_$k" "$k"; done
produce_case bad.s.t_skip "${BAD_KINDS[@]}"
produce_case bad.s.t_dl "${BAD_KINDS[@]}"
MPORT=$(free_port)
{
  cat <<CONF
[service]
state_dir = $WORK/state-bad
metrics_listen = 127.0.0.1:$MPORT

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
topic = bad.{schema}.{table}

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
CONF
  for k in "${BAD_KINDS[@]}" skip dl; do
    psql_on dst -c "CREATE TABLE t_$k (id int PRIMARY KEY, v text, big numeric(40,0))"
    printf '\n[pipeline.p_%s]\nsource = bus\nsink = dst\ntables = s.t_%s\nmap = s.* -> public.*\n' "$k" "$k"
    case $k in
    skip) echo "on_bad_message = skip" ;;
    dl) echo "on_bad_message = dead_letter" ;;
    esac
  done
} >"$WORK/bad.conf"
"$CDCSYNC" -c "$WORK/bad.conf" check --connect >"$WORK/bad-check.out" 2>&1 || fail "check --connect: $(cat "$WORK/bad-check.out")"
assert_grep "pipeline p_dl: messages that are no usable change event go to topic cdcsync.dead.p_dl" "$WORK/bad-check.out"
svc_start bad "$WORK/bad.conf"
L="$WORK/service-bad.log"
metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" 'index($0, k " ") == 1 {print $2}'; }
rows() { psql_on dst -c "COPY (SELECT id, v, big FROM $1 ORDER BY id) TO STDOUT"; }
want=$'1\tone\t1\n6\tsix\t'"$BIG"
# skip and dead_letter: every good row arrives (the big integer exact), each bad message is counted
# and logged with topic, partition and offset; the tombstone is none of them.
has_rows() { [ "$(rows "$1")" = "$want" ]; }
for k in skip dl; do wait_for "the good rows of t_$k" 60 has_rows "t_$k"; done
reasons=("message has no op: it is no change event" "message value is empty (a tombstone's value is null, not empty)"
  "message has a schema but a null payload: no change in it" "message value is not a JSON object: ")
for i in 0 1 2 3; do
  assert_grep "[pipeline=p_skip source=bus] message at bad.s.t_skip[0] offset $((i + 1)) is no change event cdcsync can use: ${reasons[$i]}" "$L"
  assert_grep "[pipeline=p_dl source=bus] message at bad.s.t_dl[0] offset $((i + 1)) is no change event cdcsync can use: ${reasons[$i]}" "$L"
done
assert_grep "— skipped (on_bad_message = skip)" "$L"
assert_grep "— sent to dead-letter topic cdcsync.dead.p_dl" "$L"
grep -q "offset 5 " "$L" && fail "the tombstone (offset 5) was reported as a bad message"
[ "$(metric 'cdcsync_bad_messages_total{pipeline="p_skip",action="skip"}')" = 4 ] || fail "p_skip did not count 4 skipped messages"
[ "$(metric 'cdcsync_bad_messages_total{pipeline="p_dl",action="dead_letter"}')" = 4 ] || fail "p_dl did not count 4 dead letters"
# The dead letters: the original key, and headers saying where each was and why.
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdcsync.dead.p_dl -e -q -f '%k %h\n' >"$WORK/dead.out"
for i in 0 1 2 3; do
  grep -F "{\"id\":$((i + 2))} " "$WORK/dead.out" | grep -F "cdcsync.topic=bad.s.t_dl,cdcsync.partition=0,cdcsync.offset=$((i + 1)),cdcsync.pipeline=p_dl" |
    grep -qF "cdcsync.error=${reasons[$i]}" || { cat "$WORK/dead.out" >&2; fail "dead letter of offset $((i + 1)) missing or wrong"; }
done
[ "$(wc -l <"$WORK/dead.out")" = 4 ] || { cat "$WORK/dead.out" >&2; fail "expected 4 dead letters"; }
# error: each kind stops its pipeline at that message, naming it; nothing after it is applied.
for k in "${BAD_KINDS[@]}"; do
  wait_for "p_$k to stop on its bad message" 60 grep -qF "[pipeline=p_$k source=bus sink=dst] message at bad.s.t_$k[0] offset 1 is no change event cdcsync can use: " "$L"
  grep -F "[pipeline=p_$k source=bus sink=dst] message at bad.s.t_$k[0] offset 1 " "$L" |
    grep -qF "— fix it at its producer, then set on_bad_message = skip or dead_letter in [pipeline.p_$k] to pass such messages, or move group cdcsync_p_$k past it (kafka-consumer-groups --reset-offsets) — the pipeline is stopped until this is fixed" ||
    fail "p_$k: the error does not say what to do"
  [ "$(metric "cdcsync_errors_total{pipeline=\"p_$k\",kind=\"data\"}")" = 1 ] || fail "p_$k: the error is not counted"
  [ "$(metric "cdcsync_pipeline_up{pipeline=\"p_$k\"}")" = 0 ] || fail "p_$k is still up"
  [ -z "$(psql_on dst -c "SELECT id FROM t_$k WHERE id > 1")" ] || fail "p_$k applied rows after its bad message"
done
grep -q "garbage"$'\x01' "$L" && fail "raw bytes of a message reached the log"
svc_stop bad
log "(4) bad messages: error stops (each kind), skip and dead_letter pass them counted and logged; $BIG arrived exact"
finish
