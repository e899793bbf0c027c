#!/usr/bin/env bash
# High availability (#16) of a Kafka → PostgreSQL pipeline: two instances run the same conf (ha =
# on, different `instance`); the lease lives in the PostgreSQL sink, so one instance leads and is
# the only reader of the topics, with the group's offsets (the standby never opens the source). A writer
# produces sequence-numbered change events (kcat, the real client) to a 4-partition topic all
# along, and the counter row's after image to another. The leader is killed with SIGKILL 4 times:
# the other takes the lease over and at once assigns itself every partition, resuming from the
# offsets committed to the group after the sink's commits; the killed one comes back as standby. Then the leader is frozen with SIGSTOP
# past ha_takeover_s and resumed: it must step down without committing, neither to the sink nor
# its old offsets to the group (the writer pauses around the SIGCONT so that either would show).
# Each takeover is printed three times: until the lease moved, until the new leader assigned itself
# the partitions, and until it applied a change produced after the fault. A topic made while
# streaming is read too. The sink
# ends with exactly the rows produced, none lost, none twice, and the group's offsets cover them.
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"
source "$(dirname "$0")/ha_lib.sh"

pg_start dst
kafka_mock_start -t cdc.src.public.seqlog:4 -t cdc.src.public.counter:1
psql_on dst <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE late (id int PRIMARY KEY);
SQL

ha_confs <<CONF
[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
topic = cdc.src.{schema}.{table}

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.ha]
source = bus
sink = dst
tables = public.seqlog, public.counter, public.late
batch_max_rows = 50
CONF

holder() { psql_on dst -c "SELECT holder || ' ' || generation FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
src_max() { cat "$WORK/written" 2>/dev/null || echo 0; }
sink_reached() { [ "$(psql_on dst -c "SELECT coalesce(max(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = t ]; }
# The standby never reads: an instance opens the source (and reads the partitions) only after it
# logged that it holds the lease, once per time it did.
joins() { grep -c "consuming .* topic pattern" "$WORK/service$1.log" || true; }
leads() { grep -c "leader: holding the pipeline's lease" "$WORK/service$1.log" || true; }
assert_standby_out_of_group() {
  [ "$(joins "$1")" -le "$(leads "$1")" ] || fail "node$1 read the topics without holding the lease"
}
# After a takeover: how long from the fault until the new leader assigned itself the partitions
# (its log's time; the lease, the source's connect and metadata request) and until it
# applied a change the writer produced after the fault (plus the re-read of what was applied but
# not yet committed to the group, the writer's next batch and one sink batch).
assigned_after() { # NODE: seconds from HA_T0 to the first "assigned" line logged after it
  python3 - "$WORK/service$1.log" "$HA_T0" <<'PY'
import sys, datetime
t0 = float(sys.argv[2])
for line in open(sys.argv[1]):
    if "partition(s) here" not in line:
        continue
    t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
    if t > t0:
        print(f"{t - t0:.2f}")
        sys.exit(0)
sys.exit(1)
PY
}
ha_on_takeover() {
  local secs asg new=$((1 - HA_LEADER))
  wait_for "node$new assigns itself the partitions" 120 assigned_after "$new"
  asg=$(assigned_after "$new")
  wait_for "node$new applies changes produced after the fault" 120 sink_reached $((HA_N0 + 1))
  secs=$(secs_since "$HA_T0")
  log "takeover $1: partitions assigned to node$new ${asg}s after the fault, applying again after ${secs}s"
  ASSIGNED+=("$asg")
  APPLYING+=("$secs")
}
ASSIGNED=() APPLYING=()

start_node 0
wait_for "node0 leads" 60 holder_is node0
start_node 1
wait_for "node0's cdcsync_pipeline_leader is 1" 30 metric_is 0 1
wait_for "node1's cdcsync_pipeline_leader is 0" 30 metric_is 1 0
wait_for "node0 reads the partitions" 60 grep -q "partition(s) here" "$WORK/service0.log"
assert_standby_out_of_group 1
[ "$(joins 1)" = 0 ] || fail "the standby node1 read the topics"

# The writer: batches of 10 sequence numbers, each produced by a kcat (the real client) that
# flushes them before it exits (a failure stops the writer, and the test with it); $WORK/written
# then holds the last number produced.
export STOPFILE="$WORK/stop" PAUSEFILE="$WORK/pause"
python3 - "$KAFKA_BOOTSTRAP" "$WORK/written" >"$WORK/writer.log" 2>&1 <<'PY' &
import subprocess, sys, time, os
bootstrap, written = sys.argv[1], sys.argv[2]
def produce(topic, lines):
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", "|"], input="".join(lines), text=True,
                   check=True, timeout=60)
n = 0
while not os.path.exists(os.environ["STOPFILE"]):
    if os.path.exists(os.environ["PAUSEFILE"]):
        # Acknowledged once, atomically: rewriting it in place would let a reader see it empty.
        ack = os.environ["PAUSEFILE"] + ".ack"
        if not os.path.exists(ack):
            with open(ack + ".tmp", "w") as f:
                f.write(f"{n}\n")
            os.replace(ack + ".tmp", ack)
        time.sleep(0.05)
        continue
    batch = range(n + 1, n + 11)
    produce("cdc.src.public.seqlog", [f'{{"n":{i}}}|{{"before":null,"after":{{"n":{i}}},"op":"c"}}\n' for i in batch])
    produce("cdc.src.public.counter", [f'{{"id":1}}|{{"before":null,"after":{{"id":1,"n":{i}}},"op":"u"}}\n' for i in batch])
    n += 10
    with open(written + ".tmp", "w") as f:
        f.write(f"{n}\n")
    os.replace(written + ".tmp", written)
    time.sleep(0.02)
print("wrote", n)
PY
WRITER=$!

for k in 1 2 3 4; do
  other=$((1 - $(node_of "$(holder)")))
  assert_standby_out_of_group "$other"
  ha_kill_leader "$k"
done

# The frozen leader, resumed, must commit nothing: neither a late batch to the sink (it would set
# the counter back to an older after image) nor its old offsets to the group (they would move the
# group back). So just before the SIGCONT the writer pauses, the new leader applies and commits
# everything, and the sink and the group's offsets are noted; once the old leader has stepped
# down, both must be as noted. Then the writer goes on.
sink_state() { psql_on dst -c "SELECT count(*) || ' ' || coalesce(max(n), 0) || ' ' || (SELECT n FROM counter WHERE id = 1) FROM seqlog"; }
offsets() { echo "$(kafka_committed cdcsync_ha cdc.src.public.seqlog:4) | $(kafka_committed cdcsync_ha cdc.src.public.counter:1)"; }
sum_is() { local t=0 o; for o in $1; do t=$((t + o)); done; [ "$t" = "$2" ]; }
committed_all() { # N: the group has committed every one of the first N messages of both topics
  local o
  o=$(offsets)
  sum_is "${o% | *}" "$1" && sum_is "${o#* | }" "$1"
}
sink_has_all() { [ "$(sink_state)" = "$1 $1 $1" ]; }
ha_before_sigcont() {
  touch "$PAUSEFILE"
  wait_for "the writer pauses" 30 test -s "$PAUSEFILE.ack"
  PAUSED_AT=$(cat "$PAUSEFILE.ack")
  [[ $PAUSED_AT =~ ^[0-9]+$ ]] || fail "the writer's pause acknowledgement is not a count: '$PAUSED_AT'"
  wait_for "the new leader applies all $PAUSED_AT rows" 60 sink_has_all "$PAUSED_AT"
  wait_for "the group's offsets cover all $PAUSED_AT messages of each topic" 60 committed_all "$PAUSED_AT"
  SINK_BEFORE=$(sink_state)
  OFFSETS_BEFORE=$(offsets)
  log "before SIGCONT: sink (count max counter) $SINK_BEFORE, group offsets $OFFSETS_BEFORE"
}
ha_sigstop_leader
[ "$(sink_state)" = "$SINK_BEFORE" ] || fail "the sink changed after the SIGCONT: $(sink_state), was $SINK_BEFORE"
[ "$(offsets)" = "$OFFSETS_BEFORE" ] || fail "the group's offsets changed after the SIGCONT: $(offsets), were $OFFSETS_BEFORE"
log "node$HA_LEADER stepped down; sink and group offsets as before the SIGCONT"
grep "stepping down\|revoked\|cannot commit" "$WORK/service$HA_LEADER.log" | tail -n 3 >&2
rm -f "$PAUSEFILE" "$PAUSEFILE.ack"
wait_applied

touch "$STOPFILE"
wait "$WRITER" || fail "writer failed: $(tail -5 "$WORK/writer.log")"
log "$(cat "$WORK/writer.log")"
total=$(src_max)
done_all() { [ "$(psql_on dst -c "SELECT count(*) || ' ' || coalesce(max(n), 0) || ' ' || (SELECT n FROM counter WHERE id = 1) FROM seqlog")" = "$total $total $total" ]; }
wait_for "the sink holds all $total produced rows and counter $total" 120 done_all
# Offsets go to the group only after the sink committed; in the end all of them.
wait_for "the group's offsets cover all $total messages of each topic" 60 committed_all "$total"
[ "$(psql_on dst -c "SELECT count(*) FROM seqlog WHERE n < 1 OR n > $total")" = 0 ] || fail "rows never produced on the sink"
log "sink equal to what was produced: $total sequence-numbered rows (1..$total, none missing, none twice), counter $total"
log "after each fault (s): partitions assigned ${ASSIGNED[*]}; applying again ${APPLYING[*]}"

# A topic made while the leader runs (public.late's, made by its first message) is found and read:
# the leader assigns itself the partitions of every topic of `tables`, looking again every 5 s.
printf '%s\n' '{"id":1}|{"before":null,"after":{"id":1},"op":"c"}' '{"id":2}|{"before":null,"after":{"id":2},"op":"c"}' |
  kcat -b "$KAFKA_BOOTSTRAP" -P -t cdc.src.public.late -K '|'
late_read() { [ "$(psql_on dst -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM late")" = "1,2" ]; }
wait_for "the leader reads the topic made after it started" 60 late_read
log "the topic made while streaming was read: late holds $(psql_on dst -c "SELECT count(*) FROM late") rows"
cat "$WORK"/service[01].log >"$WORK/service.log"
finish
