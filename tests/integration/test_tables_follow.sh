#!/usr/bin/env bash
# `tables` is the truth: a table added to `tables` of a pipeline that already streams is copied
# (as of a snapshot of its own, recorded in the sink's cdcsync.tables) and then streamed, with no
# gap and no duplicate, while applications write to it; a table removed stops streaming (for a
# PostgreSQL source its publication is altered). Both ways of changing the conf are used: a
# restart and a reload (SIGHUP), for a PostgreSQL source and for a MariaDB source, in one service
# on one PostgreSQL cluster and one MariaDB server.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start p
my_start m 1
MPORT=$(free_port)
db() {
  local d=$1
  shift
  psql -X -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -d "$d" -qAt -v ON_ERROR_STOP=1 "$@"
}
dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$PG_p_PORT" "$1"; }
for d in src dst dmy; do psql_on p -c "CREATE DATABASE $d"; done
for t in t1 t2 t3; do
  db src -c "CREATE TABLE $t (id int PRIMARY KEY, v text, n int); INSERT INTO $t SELECT i, md5(i::text), 0 FROM generate_series(1, 20000) i"
  db dst -c "CREATE TABLE $t (id int PRIMARY KEY, v text, n int)"
done
my_on m -e "CREATE DATABASE test_ms"
for t in m1 m2 m3; do
  my_on m -e "CREATE TABLE test_ms.$t (id INT PRIMARY KEY, v TEXT, n INT); INSERT INTO test_ms.$t SELECT seq, MD5(seq), 0 FROM seq_1_to_20000"
  db dmy -c "CREATE TABLE $t (id int PRIMARY KEY, v text, n int)"
done

conf() { # conf PG_TABLES MY_TABLES
  cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
[connector.src]
type = postgres
dsn = $(dsn src)
[connector.dst]
type = postgres
dsn = $(dsn dst)
[connector.dmy]
type = postgres
dsn = $(dsn dmy)
[connector.my]
$(my_connector m 9005)
[pipeline.pg]
source = src
sink = dst
tables = $1
[pipeline.my]
source = my
sink = dmy
tables = $2
map = test_ms.* -> public.*
CONF
  chmod 600 "$WORK/cdcsync.conf"
}
conf public.t1 test_ms.m1

# The applications: inserts, updates and deletes on every table, all along.
cat >"$WORK/w_pg.sql" <<'SQL'
\set id random(1, 30000)
BEGIN;
INSERT INTO t1 VALUES (:id, md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = t1.n + 1;
INSERT INTO t2 VALUES (:id, md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = t2.n + 1;
INSERT INTO t3 VALUES (:id, md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = t3.n + 1;
DELETE FROM t2 WHERE id = :id + 7;
DELETE FROM t3 WHERE id = :id + 11;
COMMIT;
SQL
cat >"$WORK/w_my.sql" <<'SQL'
SET @id = 1 + FLOOR(RAND() * 30000);
BEGIN;
INSERT INTO m1 VALUES (@id, MD5(RAND()), 1) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1;
INSERT INTO m2 VALUES (@id, MD5(RAND()), 1) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1;
INSERT INTO m3 VALUES (@id, MD5(RAND()), 1) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1;
DELETE FROM m2 WHERE id = @id + 7;
DELETE FROM m3 WHERE id = @id + 11;
COMMIT;
SQL
pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 2 -j 1 -T 300 -R 100 -f "$WORK/w_pg.sql" src \
  >"$WORK/pgbench.log" 2>&1 &
wpg=$!
python3 - 300 100 "$WORK/w_my.sql" <<'PY' | my_on m --database=test_ms --force >/dev/null 2>"$WORK/w_my.log" &
import sys, time
secs, rate, sql = float(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3]).read()
end = time.monotonic() + secs
while time.monotonic() < end and not __import__('os').path.exists(sys.argv[3] + '.stop'):
    sys.stdout.write(sql)
    sys.stdout.flush()
    time.sleep(1.0 / rate)
PY
wmy=$!
stop_writers() {
  kill -TERM "$wpg" 2>/dev/null || true
  touch "$WORK/w_my.sql.stop"
  wait "$wpg" 2>/dev/null || true
  wait "$wmy" 2>/dev/null || true
}

service_start
# both first copies committed: /healthz says 200 before the sinks are even open, a checkpoint
# row is written only with the copy's commit
checkpointed() { [ "$(db "$1" -c "SELECT count(*) FROM cdcsync.checkpoints WHERE pipeline = '$2'" 2>/dev/null)" = 1 ]; }
copied() { checkpointed dst pg && checkpointed dmy my; }
wait_for "both first copies committed" 60 copied
in_log() { grep -q -- "$1" "$WORK/service.log"; }

# Restart with public.t2 added (PostgreSQL source); reload with test_ms.m2 added (MariaDB). The
# sink of pg is made to look like one of a cdcsync that kept no copy records: the tables its
# publication holds are recorded as copied at the checkpoint, the added one is copied.
service_stop
db dst -c "DELETE FROM cdcsync.tables WHERE pipeline = 'pg'"
conf "public.t1, public.t2" test_ms.m1
service_start
wait_for "t2 copied after the restart" 60 in_log "pipeline=pg .*copied public.t2 ("
assert_grep "pipeline=pg source=src sink=dst] recorded the 1 table(s) this pipeline streams as copied" "$WORK/service.log"
conf "public.t1, public.t2" "test_ms.m1, test_ms.m2"
kill -HUP "$SERVICE_PID"
wait_for "m2 copied after the reload" 60 in_log "pipeline=my .*copied test_ms.m2 ("
# Reload with public.t3 added (PostgreSQL); restart with test_ms.m3 added (MariaDB).
conf "public.t1, public.t2, public.t3" "test_ms.m1, test_ms.m2"
kill -HUP "$SERVICE_PID"
wait_for "t3 copied after the reload" 60 in_log "pipeline=pg .*copied public.t3 ("
service_stop
conf "public.t1, public.t2, public.t3" "test_ms.m1, test_ms.m2, test_ms.m3"
service_start
wait_for "m3 copied after the restart" 60 in_log "pipeline=my .*copied test_ms.m3 ("
sleep 2 # the writers go on a little after the last copy
stop_writers
log "writers stopped: pgbench $(grep -o 'number of transactions actually processed: [0-9]*' "$WORK/pgbench.log" || true)"
assert_grep "table public.t2 added to tables: added to publication \"cdcsync_pg\"" "$WORK/service.log"
assert_grep "table public.t2 has no copy in the sink: copying it as of" "$WORK/service.log"

same() { # same DB TABLE SOURCE_DUMP_CMD
  db "$1" -c "COPY (SELECT id, v, n FROM $2 ORDER BY id) TO STDOUT" >"$WORK/got" && $3 "$2" >"$WORK/want" &&
    cmp -s "$WORK/got" "$WORK/want" || { diff "$WORK/want" "$WORK/got" | head -5; return 1; }
}
pg_src() { db src -c "COPY (SELECT id, v, n FROM $1 ORDER BY id) TO STDOUT"; }
my_src() { my_on m --database=test_ms -e "SELECT id, v, n FROM $1 ORDER BY id"; }
for t in t1 t2 t3; do wait_for "$t equal" 120 same dst $t pg_src; done
for t in m1 m2 m3; do wait_for "$t equal" 120 same dmy $t my_src; done
log "every table equal to its source ($(db dst -c "SELECT count(*) FROM t2") rows in t2, $(db dmy -c "SELECT count(*) FROM m2") in m2)"
# the records: one per table, as of the position each copy is as of
[ "$(db dst -c "SELECT string_agg(source_table, ',' ORDER BY source_table) FROM cdcsync.tables WHERE pipeline = 'pg'")" = "public.t1,public.t2,public.t3" ] ||
  fail "cdcsync.tables of pg: $(db dst -c "SELECT * FROM cdcsync.tables")"

# Removed tables stop: public.t2 (reload) and test_ms.m2 (reload).
conf "public.t1, public.t3" "test_ms.m1, test_ms.m3"
kill -HUP "$SERVICE_PID"
wait_for "t2 left the publication" 60 in_log "table public.t2 left tables: dropped from publication"
wait_for "m2 left" 60 in_log "table test_ms.m2 left tables: no longer streamed"
[ "$(db src -c "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'cdcsync_pg'")" = "t1,t3" ] ||
  fail "publication cdcsync_pg holds $(db src -c "SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'cdcsync_pg'")"
db src -c "INSERT INTO t2 VALUES (-1, 'after removal', 0); INSERT INTO t1 VALUES (-1, 'marker', 0)"
my_on m --database=test_ms -e "INSERT INTO m2 VALUES (-1, 'after removal', 0); INSERT INTO m1 VALUES (-1, 'marker', 0)"
wait_for "the marker after the removal" 60 yields marker db dst -c "SELECT v FROM t1 WHERE id = -1"
wait_for "the MariaDB marker after the removal" 60 yields marker db dmy -c "SELECT v FROM m1 WHERE id = -1"
[ -z "$(db dst -c "SELECT v FROM t2 WHERE id = -1")" ] || fail "a write to removed table t2 was streamed"
[ -z "$(db dmy -c "SELECT v FROM m2 WHERE id = -1")" ] || fail "a write to removed table m2 was streamed"
wait_for "t2's record dropped" 30 yields 0 db dst -c "SELECT count(*) FROM cdcsync.tables WHERE pipeline = 'pg' AND source_table = 'public.t2'"
service_stop
finish
