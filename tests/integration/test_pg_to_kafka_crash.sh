#!/usr/bin/env bash
# PostgreSQL → Kafka crash safety: while 4 clients write, the service is killed with SIGKILL at
# random moments and restarted, at least 5 times. Kafka must then hold every change (each ledger
# row has its create message; replaying the topics gives exactly the source's rows); repeats are
# allowed (at-least-once) and counted.
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

pg_start src
kafka_mock_start
psql_on src <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE ledger (id bigserial PRIMARY KEY, acc_id int, at timestamptz);
INSERT INTO acc SELECT g, md5(g::text), 0 FROM generate_series(1, 500) g;
SQL

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP

[pipeline.crash]
source = src
sink = bus
tables = public.acc, public.ledger
batch_max_rows = 200
CONF

cat >"$WORK/workload.sql" <<'SQL'
\set id random(1, 700)
BEGIN;
INSERT INTO acc (id, v, n) VALUES (:id, md5(random()::text), 1)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = acc.n + 1;
UPDATE acc SET n = n + 1 WHERE id = :id + 1;
DELETE FROM acc WHERE id = :id + 7 AND n % 5 = 0;
INSERT INTO ledger (acc_id, at) VALUES (:id, now());
COMMIT;
SQL

TABLES=(public.acc public.ledger)
service_start
wait_for "the snapshot in kafka" 60 kafka_check src quiet "${TABLES[@]}"
dir=PG_src_DIR port=PG_src_PORT
pgbench -n -h "${!dir}" -p "${!port}" -U postgres -c 4 -j 2 -T 25 -R 200 -f "$WORK/workload.sql" postgres \
  >"$WORK/pgbench.log" 2>&1 &
BENCH=$!

kills=0
while kill -0 $BENCH 2>/dev/null; do
  sleep "$(python3 -c 'import random; print(round(random.uniform(1.0, 3.5), 2))')"
  kill -0 $BENCH 2>/dev/null || break
  service_kill9
  kills=$((kills + 1))
  log "kill -9 #$kills"
  sleep 0.3
  service_start
done
wait $BENCH || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
[ $kills -ge 5 ] || fail "only $kills kills happened during the workload"

wait_for "every change in kafka" 180 kafka_check src quiet "${TABLES[@]}"
kafka_check src report --vclock --insert-once public.ledger "${TABLES[@]}" 2>"$WORK/report.txt" ||
  { cat "$WORK/report.txt" >&2; fail "kafka misses changes of the source"; }
cat "$WORK/report.txt" >&2
txns=$(psql_on src -c "SELECT count(*) FROM ledger")
log "$kills kills, $txns transactions, every change in kafka ($(grep -o '[0-9]* repeats' "$WORK/report.txt"))"
service_stop
finish
