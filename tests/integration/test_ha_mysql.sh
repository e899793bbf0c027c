#!/usr/bin/env bash
# High availability (#16) with a MariaDB sink: two instances (ha = on, different `instance`) run a
# PostgreSQL → MariaDB pipeline whose lease row is `cdcsync`.`leases` in the sink, while a writer
# runs all along. The leader is killed with SIGKILL twice (the other takes over, the killed one
# comes back as standby), then frozen with SIGSTOP past ha_takeover_s and resumed: the taker ends
# its sink session, and the resumed leader steps down without committing. Then the fence alone:
# a sink session locks a row the leader's batch needs, the lease is taken away by hand, the lock
# goes, and the batch must be refused at COMMIT and rolled back. The sink ends equal to the
# source: sequence-numbered rows (a loss or duplicate shows) and a counter bumped by every
# transaction.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
source "$(dirname "$0")/ha_lib.sh"

TAKEOVER=3
pg_start src
my_start dst 2
psql_on src <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
SQL
my_on dst <<'SQL'
CREATE TABLE seqlog (n BIGINT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
SQL

ha_confs <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
$(my_connector dst 9002)

[pipeline.ha]
source = src
sink = dst
tables = public.seqlog, public.counter
map = public.* -> test.*
batch_max_rows = 50
CONF

holder() { my_on dst -e "SELECT CONCAT(holder, ' ', generation) FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
src_max() { psql_on src -c "SELECT coalesce(max(n), 0) FROM seqlog"; }
sink_reached() { [ "$(my_on dst -e "SELECT COALESCE(MAX(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = 1 ]; }
synced() {
  [ "$(psql_on src -c "SELECT count(*) || ' ' || coalesce(sum(n), 0) FROM seqlog")" = \
    "$(my_on dst -e "SELECT CONCAT(COUNT(*), ' ', COALESCE(SUM(n), 0)) FROM seqlog")" ] &&
  [ "$(psql_on src -c "SELECT n FROM counter WHERE id = 1")" = "$(my_on dst -e "SELECT n FROM counter WHERE id = 1")" ]
}

start_node 0
wait_for "node0 leads" 60 holder_is node0
start_node 1
wait_for "counter on the sink" 60 synced
wait_for "node0's cdcsync_pipeline_leader is 1" 30 metric_is 0 1
wait_for "node1's cdcsync_pipeline_leader is 0" 30 metric_is 1 0

ha_pg_writer src

for k in 1 2; do ha_kill_leader "$k"; done
ha_sigstop_leader

touch "$STOPFILE"
wait "$WRITER" || fail "writer failed: $(tail -5 "$WORK/writer.log")"
log "$(cat "$WORK/writer.log")"
wait_for "the sink equal to the source after the faults" 60 synced

# The fence alone: the leader's next batch waits for a row lock on the sink while the lease is
# taken away (no session ended), then runs on to its COMMIT, which the fence refuses.
h=$(holder); leader=$(node_of "$h"); other=$((1 - leader))
kill -9 "${PIDS[$other]}"; wait "${PIDS[$other]}" 2>/dev/null || true
PIDS[$other]=""
mkfifo "$WORK/lock.in"
my_on dst --unbuffered <"$WORK/lock.in" >"$WORK/lock.out" 2>&1 &
LOCKER=$!
exec 3>"$WORK/lock.in"
echo "BEGIN; SELECT 'locked' FROM counter WHERE id = 1 FOR UPDATE;" >&3
wait_for "the sink row is locked" 30 grep -q locked "$WORK/lock.out"
psql_on src -c "BEGIN; INSERT INTO seqlog VALUES (1000001); UPDATE counter SET n = n + 1 WHERE id = 1; COMMIT;"
waiting() { [ "$(my_on dst -e "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")" -ge 1 ]; }
wait_for "node$leader's batch waits for the row lock" 30 waiting
my_on dst -e "UPDATE cdcsync.leases SET holder = 'thief', generation = generation + 1,
  expires_at = NOW(6) + INTERVAL 1 HOUR, holder_session = 0 WHERE pipeline = 'ha'"
wait_for "node$leader's cdcsync_pipeline_leader is 0" 30 metric_is "$leader" 0
steps=$(grep -c "stepping down" "$WORK/service$leader.log" || true)
echo "ROLLBACK;" >&3
exec 3>&-
wait "$LOCKER" || true
more_steps() { [ "$(grep -c "stepping down" "$WORK/service$leader.log")" -gt "$steps" ]; }
wait_for "node$leader steps down again" 30 more_steps
[ "$(my_on dst -e "SELECT COUNT(*) FROM seqlog WHERE n = 1000001")" = 0 ] ||
  fail "the batch was committed on the sink after the lease was lost"
assert_grep "the lease no longer has generation" "$WORK/service$leader.log"
log "the fence refused the late commit; the batch was rolled back"
my_on dst -e "UPDATE cdcsync.leases SET expires_at = NOW(6), holder_session = 0 WHERE pipeline = 'ha'"
wait_for "node$leader leads again" 30 holder_is "node$leader"
assert_grep "took the lease over from thief, which released it" "$WORK/service$leader.log"
wait_for "the sink equal to the source" 60 synced
[ "$(my_on dst -e "SELECT COUNT(*) FROM seqlog WHERE n = 1000001")" = 1 ] || fail "row 1000001 not applied once"

src_n=$(psql_on src -c "SELECT count(*) FROM seqlog")
dup=$(my_on dst -e "SELECT COUNT(*) - COUNT(DISTINCT n) FROM seqlog")
[ "$dup" = 0 ] || fail "duplicates on the sink"
log "sink equal to the source: $src_n sequence-numbered rows, counter $(my_on dst -e "SELECT n FROM counter")"
cat "$WORK"/service[01].log >"$WORK/service.log"
finish
