#!/usr/bin/env bash
# Bidirectional sync with conflicts and crashes: applications on both PostgreSQL clusters update
# the same rows at the same moments, delete rows the other side updates and insert the same keys,
# while the service is killed with SIGKILL and restarted several times. Once the writes stop,
# both sides must end with equal ordered contents, the counters of both pipelines must stand
# still (no loop), and conflicts must have been counted in the metrics and recorded in
# state_dir/conflicts.jsonl.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bidi_lib.sh"

pg_start a
pg_start b
for n in a b; do
  psql_on $n <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
INSERT INTO acc SELECT g, 'init' || g, 0 FROM generate_series(1, 200) g;
SQL
done
MPORT=$(free_port)

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT

[connector.a]
type = postgres
dsn = $(pg_dsn a)

[connector.b]
type = postgres
dsn = $(pg_dsn b)

[pipeline.ab]
source = a
sink = b
tables = public.acc
snapshot = never
conflict = version_vector
resolve = timestamp

[pipeline.ba]
source = b
sink = a
tables = public.acc
snapshot = never
conflict = version_vector
resolve = timestamp
CONF

# The same keys on both sides: every statement can meet a concurrent write of the other side.
cat >"$WORK/work.sql" <<'SQL'
\set id random(1, 260)
\set op random(1, 10)
BEGIN;
INSERT INTO acc VALUES (:id, 's' || :side || md5(random()::text), 1)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = acc.n + 1;
UPDATE acc SET n = n + 1, v = 's' || :side || n WHERE id = (:id * 7) % 260 + 1;
DELETE FROM acc WHERE id = (:id * 13) % 260 + 1 AND :op <= 3;
COMMIT;
SQL


service_start
wait_for "both pipelines streaming" 60 streaming
pids=()
for n in a b; do
  dir=PG_${n}_DIR port=PG_${n}_PORT
  pgbench -n -h "${!dir}" -p "${!port}" -U postgres -c 2 -j 1 -T 25 -R 150 -D side="$([ $n = a ] && echo 1 || echo 2)" --max-tries=20 \
    -f "$WORK/work.sql" postgres >"$WORK/pgbench_$n.log" 2>&1 &
  pids+=($!)
done

kill9_during 2.0 4.0 "${pids[@]}"
for n in a b; do
  wait "${pids[0]}" || fail "pgbench on $n failed: $(tail -3 "$WORK/pgbench_$n.log")"
  pids=("${pids[@]:1}")
done
[ $kills -ge 4 ] || fail "only $kills kills happened during the workload"

wait_for "both pipelines streaming" 60 streaming
wait_synced a b ${SYNC_WAIT:-180} acc
assert_quiet ab ba
assert_tables_equal a b acc

# Conflicts: counted since the last restart, and every one recorded (across restarts).
log "$kills kills"
assert_conflicts_recorded ab ba public.acc
# The version tags (README, "Bidirectional sync") travelled both ways.
tags_a=$(psql_on a -tAc "SELECT count(*) FROM cdcsync.versions")
tags_b=$(psql_on b -tAc "SELECT count(*) FROM cdcsync.versions")
log "version tags: $tags_a on a, $tags_b on b"
[ "$tags_a" -gt 0 ] && [ "$tags_b" -gt 0 ] || fail "no version tags written"
service_stop
finish
