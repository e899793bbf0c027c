#!/usr/bin/env bash
# High availability (#16) with parallel apply (apply_workers = 2): a taker must end every sink
# session of the deposed leader, not only the one its lease row names. Two instances run a PG → PG
# pipeline. A sink session locks row 1; a source transaction on row 1 becomes a batch that waits
# for it on one worker, and one on row 2 a batch that the other worker applies and holds open
# until its turn to commit. The leader is frozen (SIGSTOP) and the lock released: both workers'
# sessions now sit in open transactions, holding rows 1 and 2, in a process that cannot answer.
# The standby takes over; its batches on rows 1 and 2 go through only if both sessions were
# ended. The resumed leader steps down without committing. Then kill -9 of the leader twice with
# a writer running, and the sink ends equal to the source, nothing lost or applied twice.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ha_lib.sh"

TAKEOVER=3
pg_start src
pg_start dst
for db in src dst; do
  psql_on $db <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY, at timestamptz DEFAULT now());
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE acct (id int PRIMARY KEY, n bigint NOT NULL);
SQL
done
psql_on src -c "INSERT INTO counter VALUES (1, 0); INSERT INTO acct VALUES (1, 0), (2, 0)"

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
tables = public.seqlog, public.counter, public.acct
apply_workers = 2
batch_max_rows = 1
CONF

holder() { psql_on dst -c "SELECT holder || ' ' || generation FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
src_max() { psql_on src -c "SELECT coalesce(max(n), 0) FROM seqlog"; }
sink_reached() { [ "$(psql_on dst -c "SELECT coalesce(max(n), 0) >= $1 FROM seqlog" 2>/dev/null)" = t ]; }
# cdcsync's sink sessions (application_name cdcsync) in a transaction that changed rows and waits
# for nothing on the server (a pipelined batch shows as active until its Sync)
open_txns() {
  psql_on dst -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdcsync'
    AND backend_xid IS NOT NULL AND wait_event_type IS DISTINCT FROM 'Lock'"
}
open_txns_are() { [ "$(open_txns)" = "$1" ]; }

start_node 0
wait_for "node0 leads" 60 holder_is node0
start_node 1
wait_synced src dst 60 counter acct
wait_for "node0's cdcsync_pipeline_leader is 1" 30 metric_is 0 1
listed=$(psql_on dst -c "SELECT count(*) FROM cdcsync.lease_sessions WHERE pipeline = 'ha' AND generation = 1")
[ "$listed" -ge 2 ] || fail "the leader listed $listed sink sessions with the lease, expected both workers'"

# The pipeline's first change of a table runs alone (the sink may have to create or alter it):
# let acct's come and go first.
psql_on src -c "UPDATE acct SET n = 0"
wait_synced src dst 60 acct

# A sink session locks row 1 and keeps its transaction open.
mkfifo "$WORK/lock.in"
dir=PG_dst_DIR port=PG_dst_PORT
psql -X -h "${!dir}" -p "${!port}" -U postgres -qAt <"$WORK/lock.in" >"$WORK/lock.out" 2>&1 &
LOCKER=$!
exec 3>"$WORK/lock.in"
echo "BEGIN; SELECT 'locked' FROM acct WHERE id = 1 FOR UPDATE;" >&3
wait_for "the sink row is locked" 30 grep -q locked "$WORK/lock.out"

psql_on src -c "UPDATE acct SET n = n + 1 WHERE id = 1"
waiting() { [ "$(psql_on dst -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdcsync' AND wait_event_type = 'Lock'")" -ge 1 ]; }
wait_for "a worker's batch on row 1 waits for the lock" 30 waiting
psql_on src -c "UPDATE acct SET n = n + 1 WHERE id = 2"
wait_for "the other worker holds row 2 in an open transaction" 30 open_txns_are 1

h=$(holder); gen=${h#* }
log "SIGSTOP node0 (generation $gen); releasing the row lock"
t0=$EPOCHREALTIME
kill -STOP "${PIDS[0]}"
echo "ROLLBACK;" >&3
exec 3>&-
wait "$LOCKER" || true
wait_for "both workers of the frozen leader hold rows in open transactions" 30 open_txns_are 2

secs=$(measure_takeover "$gen")
log "takeover after SIGSTOP: $(holder) after ${secs}s (ha_takeover_s = $TAKEOVER)"
assert_grep "took the lease over from node0" "$WORK/service1.log"
wait_for "the frozen leader's sessions are ended" 30 open_txns_are 0
psql_on src -c "UPDATE acct SET n = n + 10 WHERE id IN (1, 2)"
wait_synced src dst 60 acct
[ "$(psql_on dst -c "SELECT string_agg(n::text, ' ' ORDER BY id) FROM acct")" = "11 11" ] ||
  fail "acct on the sink: $(psql_on dst -c "SELECT string_agg(n::text, ' ' ORDER BY id) FROM acct"), want 11 11"
HA_LEADER=0 HA_STEPS=$(grep -c "stepping down" "$WORK/service0.log" || true)
kill -CONT "${PIDS[0]}"
log "SIGCONT node0"
wait_for "node0 steps down (cdcsync_pipeline_leader 0)" 30 metric_is 0 0
wait_for "node0 logs that it steps down" 30 stepped_down
assert_tables_equal src dst acct

ha_pg_writer src
for k in 1 2; do ha_kill_leader "$k"; done
wait_applied
touch "$STOPFILE"
wait "$WRITER" || fail "writer failed: $(tail -5 "$WORK/writer.log")"
log "$(cat "$WORK/writer.log")"
wait_synced src dst 60 seqlog counter acct
assert_tables_equal src dst seqlog counter acct
max=$(psql_on dst -c "SELECT max(n) = count(*) FROM seqlog")
[ "$max" = t ] || fail "seqlog on the sink has gaps or duplicates"
cat "$WORK"/service*.log > "$WORK/service.log"
finish
