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

PORTS=() PIDS=("" "")
for i in 0 1; do
  PORTS[$i]=$(free_port)
  cat >"$WORK/c$i.conf" <<CONF
[service]
state_dir = $WORK/state$i
metrics_listen = 127.0.0.1:${PORTS[$i]}
instance = node$i
ha = on
ha_takeover_s = $TAKEOVER

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
  chmod 600 "$WORK/c$i.conf"
done

start_node() {
  "$CDCSYNC" -c "$WORK/c$1.conf" run >>"$WORK/service$1.log" 2>&1 &
  PIDS[$1]=$!
}
holder() { my_on dst -e "SELECT CONCAT(holder, ' ', generation) FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
node_of() { case "$1" in node0*) echo 0 ;; node1*) echo 1 ;; *) echo "" ;; esac; }
gen_above() { local h; h=$(holder) && [ -n "$h" ] && [ "${h#* }" -gt "$1" ]; }
holder_is() { local h; h=$(holder) && [ "${h% *}" = "$1" ]; }
cleanup_nodes() { for p in "${PIDS[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done; true; }
trap 'rc=$?; cleanup_nodes; (exit $rc); cleanup' EXIT # cleanup exits with the test's status
leader_metric() { curl -s "http://127.0.0.1:${PORTS[$1]}/metrics" | awk '$1 == "cdcsync_pipeline_leader{pipeline=\"ha\"}" {print $2}'; }
metric_is() { [ "$(leader_metric "$1")" = "$2" ]; }
src_max() { psql_on src -c "SELECT coalesce(max(n), 0) FROM seqlog"; }
sink_reached() { [ "$(my_on dst -e "SELECT COALESCE(MAX(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = 1 ]; }
wait_applied() { local m; m=$(( $(src_max) + 1 )); wait_for "the sink applies the writer's rows up to $m" 60 sink_reached "$m"; }
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

export STOPFILE="$WORK/stop"
dir=PG_src_DIR port=PG_src_PORT
python3 - "${!dir}" "${!port}" >"$WORK/writer.log" 2>&1 <<'PY' &
import subprocess, sys, time, os
d, p = sys.argv[1], sys.argv[2]
proc = subprocess.Popen(["psql", "-X", "-q", "-h", d, "-p", p, "-U", "postgres", "-v", "ON_ERROR_STOP=1"],
                        stdin=subprocess.PIPE, text=True)
n = 0
while not os.path.exists(os.environ["STOPFILE"]):
    n += 1
    proc.stdin.write(f"BEGIN; INSERT INTO seqlog (n) VALUES ({n}); UPDATE counter SET n = n + 1 WHERE id = 1; COMMIT;\n")
    proc.stdin.flush()
    time.sleep(0.01)
proc.stdin.close()
proc.wait()
print("wrote", n)
PY
WRITER=$!

measure_takeover() { # $1: generation before; prints the seconds until a higher one holds the lease
  local t0=$EPOCHREALTIME
  wait_for "a takeover after generation $1" $((TAKEOVER * 10)) gen_above "$1"
  python3 -c "print(f'{$EPOCHREALTIME - $t0:.2f}')"
}

for k in 1 2; do
  wait_applied
  h=$(holder); leader=$(node_of "$h"); gen=${h#* }
  [ -n "$leader" ] || fail "no leader: $h"
  log "kill -9 #$k of node$leader (generation $gen)"
  kill -9 "${PIDS[$leader]}"; wait "${PIDS[$leader]}" 2>/dev/null || true
  secs=$(measure_takeover "$gen")
  log "takeover #$k: $(holder) after ${secs}s (ha_takeover_s = $TAKEOVER)"
  start_node "$leader"
done

wait_applied
h=$(holder); leader=$(node_of "$h"); gen=${h#* }
log "SIGSTOP node$leader (generation $gen)"
kill -STOP "${PIDS[$leader]}"
secs=$(measure_takeover "$gen")
log "takeover after SIGSTOP: $(holder) after ${secs}s"
wait_applied
kill -CONT "${PIDS[$leader]}"
log "SIGCONT node$leader"
wait_for "node$leader steps down (cdcsync_pipeline_leader 0)" 30 metric_is "$leader" 0

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
