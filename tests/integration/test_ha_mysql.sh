#!/usr/bin/env bash
# High availability (#16) with a MariaDB sink: two instances (ha = on, different `instance`) run a
# PostgreSQL → MariaDB pipeline whose lease row is `cdcsync`.`leases` in the sink, while a writer
# runs all along. The leader is killed with SIGKILL twice (the other takes over, the killed one
# comes back as standby), then frozen with SIGSTOP past ha_takeover_s and resumed: the taker ends
# its sink session, and the resumed leader steps down without committing. The pipeline applies
# with two workers (apply_workers = 2): frozen while both workers' sessions hold rows in open
# transactions, a leader must have both ended by the taker. Then the fence alone:
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
CREATE TABLE acct (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO acct VALUES (1, 0), (2, 0);
SQL
my_on dst <<'SQL'
CREATE TABLE seqlog (n BIGINT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE acct (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
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
tables = public.seqlog, public.counter, public.acct
map = public.* -> test.*
batch_max_rows = 50
apply_workers = 2
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
listed=$(my_on dst -e "SELECT COUNT(*) FROM cdcsync.lease_sessions WHERE pipeline = 'ha' AND generation = 1")
[ "$listed" -ge 2 ] || fail "the leader listed $listed sink sessions with the lease, expected both workers'"

ha_pg_writer src

for k in 1 2; do ha_kill_leader "$k"; done
ha_sigstop_leader

touch "$STOPFILE"
wait "$WRITER" || fail "writer failed: $(tail -5 "$WORK/writer.log")"
log "$(cat "$WORK/writer.log")"
wait_for "the sink equal to the source after the faults" 60 synced

# A taker ends every sink session of the frozen leader, apply workers' included: one worker's
# batch on acct row 1 waits for a row lock, the other's on row 2 is applied and waits for its turn
# to commit; the leader is frozen and the lock released, so both sessions hold a row in an open
# transaction. The new leader's batches on rows 1 and 2 go through only if both were ended.
acct() { my_on dst -e "SELECT GROUP_CONCAT(n ORDER BY id SEPARATOR ' ') FROM acct"; }
acct_is() { [ "$(acct)" = "$1" ]; }
open_txns() { my_on dst -e "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'RUNNING' AND trx_rows_modified > 0"; }
open_txns_are() { [ "$(open_txns)" = "$1" ]; }
# lock_sink_row NAME TABLE ID — a sink session locks the row and keeps its transaction open; fd 3
# talks to it (echo "ROLLBACK;" >&3; exec 3>&-; wait "$LOCKER" ends it).
lock_sink_row() {
  mkfifo "$WORK/$1.in"
  my_on dst --unbuffered <"$WORK/$1.in" >"$WORK/$1.out" 2>&1 &
  LOCKER=$!
  exec 3>"$WORK/$1.in"
  echo "BEGIN; SELECT 'locked' FROM $2 WHERE id = $3 FOR UPDATE;" >&3
  wait_for "$2 row $3 is locked" 30 grep -q locked "$WORK/$1.out"
}
waiting() { [ "$(my_on dst -e "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")" -ge 1 ]; }
psql_on src -c "UPDATE acct SET n = 0"
wait_for "acct on the sink" 30 acct_is "0 0"
h=$(holder); leader=$(node_of "$h"); gen=${h#* }
lock_sink_row lock1 acct 1
psql_on src -c "UPDATE acct SET n = n + 1 WHERE id = 1"
wait_for "a worker's batch on row 1 waits for the lock" 30 waiting
psql_on src -c "UPDATE acct SET n = n + 1 WHERE id = 2"
wait_for "the other worker holds row 2 in an open transaction" 30 open_txns_are 1
log "SIGSTOP node$leader (generation $gen); releasing the row lock"
kill -STOP "${PIDS[$leader]}"
echo "ROLLBACK;" >&3
exec 3>&-
wait "$LOCKER" || true
wait_for "both workers of the frozen leader hold rows in open transactions" 30 open_txns_are 2
secs=$(measure_takeover "$gen")
log "takeover after SIGSTOP with both workers in open transactions: $(holder) after ${secs}s"
wait_for "the frozen leader's sessions are ended" 30 open_txns_are 0
psql_on src -c "UPDATE acct SET n = n + 10"
wait_for "acct on the sink: 11 11" 60 acct_is "11 11"
HA_LEADER=$leader HA_STEPS=$(grep -c "stepping down" "$WORK/service$leader.log" || true)
kill -CONT "${PIDS[$leader]}"
wait_for "node$leader steps down (cdcsync_pipeline_leader 0)" 30 metric_is "$leader" 0
wait_for "node$leader logs that it steps down" 30 stepped_down
acct_is "11 11" || fail "acct on the sink: $(acct) after the frozen leader resumed, want 11 11"

# The fence alone: the leader's next batch waits for a row lock on the sink while the lease is
# taken away (no session ended), then runs on to its COMMIT, which the fence refuses.
h=$(holder); leader=$(node_of "$h"); other=$((1 - leader))
kill -9 "${PIDS[$other]}"; wait "${PIDS[$other]}" 2>/dev/null || true
PIDS[$other]=""
lock_sink_row lock counter 1
psql_on src -c "BEGIN; INSERT INTO seqlog VALUES (1000001); UPDATE counter SET n = n + 1 WHERE id = 1; COMMIT;"
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
