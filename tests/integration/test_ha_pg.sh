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
source "$(dirname "$0")/ha_lib.sh"

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

ha_confs <<CONF
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

holder() { psql_on dst -c "SELECT holder || ' ' || generation FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
src_max() { psql_on src -c "SELECT coalesce(max(n), 0) FROM seqlog"; }
sink_reached() { [ "$(psql_on dst -c "SELECT coalesce(max(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = t ]; }

start_node 0
wait_for "node0 leads" 60 holder_is node0
start_node 1
wait_synced src dst 60 counter
# Roles: the metric on each instance, and `cdcsync status` of each.
wait_for "node0's cdcsync_pipeline_leader is 1" 30 metric_is 0 1
wait_for "node1's cdcsync_pipeline_leader is 0" 30 metric_is 1 0
status_has() { "$CDCSYNC" -c "$WORK/c$1.conf" status | tee "$WORK/status$1.txt" | grep -q "$2"; }
wait_for "node0's status: leader" 30 status_has 0 '^ha  *streaming, leader '
wait_for "node1's status: node0 leads" 30 status_has 1 '^ha  *standby, node0 leads '

ha_pg_writer src

for k in 1 2 3 4; do ha_kill_leader "$k"; done

# Freeze the leader past the takeover time while writes go on, then resume it once the new
# leader has applied rows written after the freeze.
ha_sigstop_leader

# Graceful hand-over: SIGTERM on the leader commits, releases the lease, and the standby takes it
# over at its next poll: its log says it took a released lease, not an expired one.
wait_applied
h=$(holder); leader=$(node_of "$h"); gen=${h#* }; other=$((1 - leader))
log "SIGTERM node$leader (generation $gen)"
t0=$EPOCHREALTIME
kill -TERM "${PIDS[$leader]}"
wait_for "node$other takes over after generation $gen" $((TAKEOVER * 10)) gen_above "$gen"
secs=$(secs_since "$t0")
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
