#!/usr/bin/env bash
# Crash safety: while 4 clients write concurrently (transactions commit in another order than they
# begin), the service is killed with SIGKILL at random moments and restarted, at least 5 times.
# The sink must end equal to the source: no lost and no duplicated row (an append-only table
# without a key would show any duplicate apply). Two pipelines from the same source run side by
# side: one applying with one session, one with apply_workers = 3 (batches applied concurrently,
# committed in order) into a second database of the sink server.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
psql_on src <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE ledger (id bigserial PRIMARY KEY, acc_id int, at timestamptz);
CREATE TABLE journal (acc_id int, note text);  -- no key: a duplicate apply would add a row
INSERT INTO acc SELECT g, md5(g::text), 0 FROM generate_series(1, 2000) g;
SQL
psql_on dst -c "CREATE DATABASE par"
for db in dst dst/par; do
  psql_on $db <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE ledger (id bigserial PRIMARY KEY, acc_id int, at timestamptz);
CREATE TABLE journal (acc_id int, note text);
SQL
done

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.crash]
source = src
sink = dst
tables = public.acc, public.ledger, public.journal
batch_max_rows = 500

[connector.par]
type = postgres
dsn = host=127.0.0.1 port=$PG_dst_PORT user=postgres dbname=par

[pipeline.crash_par]
source = src
sink = par
tables = public.acc, public.ledger, public.journal
batch_max_rows = 20
apply_workers = 3
CONF

cat >"$WORK/workload.sql" <<'SQL'
\set id random(1, 3000)
BEGIN;
INSERT INTO acc (id, v, n) VALUES (:id, md5(random()::text), 1)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = acc.n + 1;
UPDATE acc SET n = n + 1 WHERE id = :id + 1;
DELETE FROM acc WHERE id = :id + 7 AND n % 5 = 0;
INSERT INTO ledger (acc_id, at) VALUES (:id, now());
INSERT INTO journal VALUES (:id, md5(random()::text));
COMMIT;
SQL

service_start
wait_synced src dst 60 acc
wait_synced src dst/par 60 acc
dir=PG_src_DIR port=PG_src_PORT
pgbench -n -h "${!dir}" -p "${!port}" -U postgres -c 4 -j 2 -T 30 -f "$WORK/workload.sql" postgres \
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

wait_synced src dst 180 acc ledger journal
assert_tables_equal src dst acc ledger journal
wait_synced src dst/par 180 acc ledger journal
assert_tables_equal src dst/par acc ledger journal
txns=$(psql_on src -c "SELECT count(*) FROM ledger")
log "$kills kills, $txns transactions, sink equal"
service_stop
finish
