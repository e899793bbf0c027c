#!/usr/bin/env bash
# High availability (#16): two instances run the same conf (ha = on, different `instance`); a
# PG → PG pipeline runs on exactly one of them while a writer runs all along. The leader is killed
# with SIGKILL 4 times (the other takes over, the killed one comes back as standby), then frozen
# with SIGSTOP past ha_takeover_s (the standby takes over) and resumed: it must step down without
# committing. Last, SIGTERM on the leader hands the pipeline over through the lease's release.
# cdcsync_pipeline_leader and `cdcsync status` show who leads. Between faults the test waits for the
# writer's rows to reach the sink (the new leader applies). The sink ends equal to the source:
# insert-only rows with a unique sequence number (a loss or duplicate shows) and a counter row
# bumped by every transaction.
source "$(dirname "$0")/lib.sh"

TAKEOVER=3
pg_start src
pg_start dst
psql_on src <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY, at timestamptz DEFAULT now());
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
SQL
psql_on dst <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY, at timestamptz);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
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
type = postgres
dsn = $(pg_dsn dst)

[pipeline.ha]
source = src
sink = dst
tables = public.seqlog, public.counter
batch_max_rows = 50
CONF
  chmod 600 "$WORK/c$i.conf"
done

start_node() {
  "$CDCSYNC" -c "$WORK/c$1.conf" run >>"$WORK/service$1.log" 2>&1 &
  PIDS[$1]=$!
}
holder() { psql_on dst -c "SELECT holder || ' ' || generation FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
node_of() { case "$1" in node0*) echo 0 ;; node1*) echo 1 ;; *) echo "" ;; esac; }
gen_above() { local h; h=$(holder) && [ -n "$h" ] && [ "${h#* }" -gt "$1" ]; }
cleanup_nodes() { for p in "${PIDS[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done; true; }
trap 'rc=$?; cleanup_nodes; (exit $rc); cleanup' EXIT # cleanup exits with the test's status
leader_metric() { curl -s "http://127.0.0.1:${PORTS[$1]}/metrics" | awk '$1 == "cdcsync_pipeline_leader{pipeline=\"ha\"}" {print $2}'; }
metric_is() { [ "$(leader_metric "$1")" = "$2" ]; }
# The sink has applied every row the source had when called: the current leader runs.
src_max() { psql_on src -c "SELECT coalesce(max(n), 0) FROM seqlog"; }
sink_reached() { [ "$(psql_on dst -c "SELECT coalesce(max(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = t ]; }
wait_applied() { local m; m=$(( $(src_max) + 1 )); wait_for "the sink applies the writer's rows up to $m" 60 sink_reached "$m"; }

start_node 0
wait_for "node0 leads" 60 bash -c "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -qAt -c \"SELECT holder FROM cdcsync.leases WHERE pipeline = 'ha'\" 2>/dev/null)\" = node0 ]"
start_node 1
wait_synced src dst 60 counter
# Roles: the metric on each instance, and `cdcsync status` of each.
wait_for "node0's cdcsync_pipeline_leader is 1" 30 metric_is 0 1
wait_for "node1's cdcsync_pipeline_leader is 0" 30 metric_is 1 0
status_has() { "$CDCSYNC" -c "$WORK/c$1.conf" status | tee "$WORK/status$1.txt" | grep -q "$2"; }
wait_for "node0's status: leader" 30 status_has 0 '^ha  *streaming, leader '
wait_for "node1's status: node0 leads" 30 status_has 1 '^ha  *standby, node0 leads '

export STOPFILE="$WORK/stop"
dir=PG_src_DIR port=PG_src_PORT
python3 - "${!dir}" "${!port}" >"$WORK/writer.log" 2>&1 <<'PY' &
import subprocess, sys, time, os
# one transaction per statement batch: next sequence number and the counter, via psql
d, p = sys.argv[1], sys.argv[2]
proc = subprocess.Popen(["psql", "-X", "-q", "-h", d, "-p", p, "-U", "postgres", "-v", "ON_ERROR_STOP=1"],
                        stdin=subprocess.PIPE, text=True)
n = 0
while not os.path.exists(os.environ.get("STOPFILE", "/nonexistent")):
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

for k in 1 2 3 4; do
  wait_applied
  h=$(holder); leader=$(node_of "$h"); gen=${h#* }
  [ -n "$leader" ] || fail "no leader: $h"
  log "kill -9 #$k of node$leader (generation $gen)"
  kill -9 "${PIDS[$leader]}"; wait "${PIDS[$leader]}" 2>/dev/null || true
  secs=$(measure_takeover "$gen")
  log "takeover #$k: $(holder) after ${secs}s (ha_takeover_s = $TAKEOVER)"
  start_node "$leader"
done

# Freeze the leader past the takeover time while writes go on, then resume it once the new
# leader has applied rows written after the freeze.
wait_applied
h=$(holder); leader=$(node_of "$h"); gen=${h#* }
log "SIGSTOP node$leader (generation $gen)"
kill -STOP "${PIDS[$leader]}"
secs=$(measure_takeover "$gen")
log "takeover after SIGSTOP: $(holder) after ${secs}s"
wait_applied
kill -CONT "${PIDS[$leader]}"
log "SIGCONT node$leader"
wait_for "node$leader steps down" 30 grep -q "stepping down" "$WORK/service$leader.log"
wait_for "node$leader's cdcsync_pipeline_leader is 0" 30 metric_is "$leader" 0

# Graceful hand-over: SIGTERM on the leader commits, releases the lease, and the standby takes it
# over at its next poll: its log says it took a released lease, not an expired one.
wait_applied
h=$(holder); leader=$(node_of "$h"); gen=${h#* }; other=$((1 - leader))
log "SIGTERM node$leader (generation $gen)"
t0=$EPOCHREALTIME
kill -TERM "${PIDS[$leader]}"
wait_for "node$other takes over after generation $gen" $((TAKEOVER * 10)) gen_above "$gen"
secs=$(python3 -c "print(f'{$EPOCHREALTIME - $t0:.2f}')")
log "takeover after SIGTERM: $(holder) after ${secs}s (ha_takeover_s = $TAKEOVER)"
wait "${PIDS[$leader]}" || fail "node$leader exited with $? after SIGTERM"
PIDS[$leader]=""
assert_grep "lease released: a standby takes the pipeline over at once" "$WORK/service$leader.log"
assert_grep "took the lease over from node$leader, which released it (graceful hand-over)" "$WORK/service$other.log"
wait_for "node$other's cdcsync_pipeline_leader is 1" 30 metric_is "$other" 1
wait_applied

touch "$STOPFILE"
wait "$WRITER" || fail "writer failed: $(tail -5 "$WORK/writer.log")"
log "$(cat "$WORK/writer.log")"
wait_synced src dst 60 seqlog counter
assert_tables_equal src dst seqlog counter
max=$(psql_on dst -c "SELECT max(n) = count(*) FROM seqlog")
[ "$max" = t ] || fail "seqlog on the sink has gaps or duplicates"
cat "$WORK"/service*.log > "$WORK/service.log"
finish
