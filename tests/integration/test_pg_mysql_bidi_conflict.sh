#!/usr/bin/env bash
# Bidirectional PostgreSQL ↔ MariaDB with conflicts and crashes: applications on both sides update
# the same rows at the same moments, delete rows the other side updates and insert the same keys,
# while the service is killed with SIGKILL and restarted several times. Once the writes stop,
# both sides must end with equal ordered contents, the counters of both pipelines must stand
# still (no loop), and conflicts must have been counted in the metrics and recorded in
# state_dir/conflicts.jsonl. The PostgreSQL ↔ PostgreSQL twin is test_pg_bidi_conflict.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bidi_lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

pg_start p
my_start m 1
MPORT=$(free_port)
MY_SID=9002
psql_on p <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
INSERT INTO acc SELECT g, 'init' || g, 0 FROM generate_series(1, 200) g;
SQL
my_on m <<'SQL'
CREATE TABLE acc (id INT PRIMARY KEY, v TEXT, n INT NOT NULL) DEFAULT CHARSET=utf8mb4;
INSERT INTO acc SELECT seq, CONCAT('init', seq), 0 FROM seq_1_to_200;
SQL

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = ${LOG_LEVEL:-info}

[connector.pg]
type = postgres
dsn = $(pg_dsn p)

[connector.my]
$(my_connector m $MY_SID)

[pipeline.p2m]
source = pg
sink = my
tables = public.acc
map = public.* -> test.*
snapshot = never
conflict = version_vector
resolve = timestamp

[pipeline.m2p]
source = my
sink = pg
tables = test.acc
map = test.* -> public.*
snapshot = never
conflict = version_vector
resolve = timestamp
CONF
chmod 600 "$WORK/cdcsync.conf"

# The same keys on both sides: every statement can meet a concurrent write of the other side.
cat >"$WORK/work_p.sql" <<'SQL'
\set id random(1, 260)
\set op random(1, 10)
BEGIN;
INSERT INTO acc VALUES (:id, 'pg' || md5(random()::text), 1)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = acc.n + 1;
UPDATE acc SET n = n + 1, v = 'pg' || n WHERE id = (:id * 7) % 260 + 1;
DELETE FROM acc WHERE id = (:id * 13) % 260 + 1 AND :op <= 3;
COMMIT;
SQL
cat >"$WORK/work_m.sql" <<'SQL'
SET @id = 1 + FLOOR(RAND() * 260), @op = 1 + FLOOR(RAND() * 10);
BEGIN;
INSERT INTO acc VALUES (@id, CONCAT('my', MD5(RAND())), 1) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1;
UPDATE acc SET n = n + 1, v = CONCAT('my', n) WHERE id = (@id * 7) % 260 + 1;
DELETE FROM acc WHERE id = (@id * 13) % 260 + 1 AND @op <= 3;
COMMIT;
SQL

synced() {
  my_on m -e "SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', HEX(v)), 'null'), CONCAT('v:', n))
    FROM acc ORDER BY id" >"$WORK/my.acc" &&
    psql_on p -F $'\t' -c "SELECT 'v:' || id, coalesce('v:' || encode(convert_to(v, 'UTF8'), 'hex'), 'null'), 'v:' || n
    FROM acc ORDER BY id" >"$WORK/pg.acc" &&
    rows_equal sus "$WORK/pg.acc" "$WORK/my.acc"
}

WRITE_SECS=${WRITE_SECS:-25}
synced >/dev/null || fail "the two sides do not start equal"
service_start
wait_for "both pipelines streaming" 60 streaming
pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 2 -j 1 -T "$WRITE_SECS" -R 150 --max-tries=20 \
  -f "$WORK/work_p.sql" postgres >"$WORK/pgbench.log" 2>&1 &
pg_pid=$!
my_repeat m "$WRITE_SECS" 150 "$WORK/work_m.sql" 2>"$WORK/my_work.log" &
my_pid=$!

kill9_during 2.0 4.0 "$pg_pid" "$my_pid"
wait "$pg_pid" || fail "pgbench failed: $(tail -3 "$WORK/pgbench.log")"
wait "$my_pid" || fail "the MariaDB workload failed: $(tail -3 "$WORK/my_work.log")"
[ $kills -ge 4 ] || fail "only $kills kills happened during the workload"
log "$kills kills; MariaDB workload: $(tail -1 "$WORK/my_work.log") transactions sent, $(grep -c '^ERROR' "$WORK/my_work.log" || true) errors"

wait_for "both pipelines streaming" 60 streaming
# Equal within SYNC_WAIT seconds, or a report of how the two sides differ.
deadline=$((SECONDS + ${SYNC_WAIT:-120}))
until synced >"$WORK/final.out"; do
  [ $SECONDS -lt $deadline ] && { sleep 1; continue; }
  python3 - "$WORK/pg.acc" "$WORK/my.acc" <<'PY' >&2 || true
import sys
def load(p):
    return {l.split("\t")[0][2:]: l.rstrip("\n").lower() for l in open(p)}  # hex: PG lower, MySQL upper case
a, b = load(sys.argv[1]), load(sys.argv[2])
only_a = sorted(set(a) - set(b), key=int); only_b = sorted(set(b) - set(a), key=int)
diff = sorted((k for k in set(a) & set(b) if a[k] != b[k]), key=int)
print("rows: pg %d, mysql %d; only on pg: %d %s; only on mysql: %d %s; different values: %d %s"
      % (len(a), len(b), len(only_a), only_a[:10], len(only_b), only_b[:10], len(diff), diff[:10]))
for k in diff[:5]:
    print("  pg %s\n  my %s" % (a[k], b[k]))
PY
  log "sink retries: $(grep -o 'WARN  \[pipeline=[a-z0-9]*.*sink [a-z]*: [a-z]* of' "$WORK/service.log" |
    sed 's/ source=.*sink [a-z]*:/:/' | sort | uniq -c | tr -s ' \n' ' ')"
  fail "the sides differ after ${SYNC_WAIT:-120} s: $(head -c 1500 "$WORK/final.out")"
done
assert_quiet p2m m2p
synced >"$WORK/final.out" || fail "the sides drifted apart after settling: $(cat "$WORK/final.out")"
log "equal: $(cat "$WORK/final.out")"

# Conflicts: counted since the last restart, and every one recorded (across restarts).
log "$kills kills"
assert_conflicts_recorded p2m m2p public.acc test.acc
# The version tags (README, "Bidirectional sync") travelled both ways.
tags_pg=$(psql_on p -tAc "SELECT count(*) FROM cdcsync.versions")
tags_my=$(my_on m -e "SELECT count(*) FROM cdcsync.versions")
log "version tags: $tags_pg in PostgreSQL, $tags_my in MariaDB"
[ "$tags_pg" -gt 0 ] && [ "$tags_my" -gt 0 ] || fail "no version tags written"
service_stop
finish
