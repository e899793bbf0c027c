#!/usr/bin/env bash
# High availability (#16): the fence itself refuses a late commit. One instance leads a PG → PG
# pipeline (ha = on). A session on the sink holds a row lock the leader's next batch needs, so the
# batch stops half applied; meanwhile the lease is taken away by hand, as a taker that could not
# end the leader's sink session would. The leader's lease thread sees it (cdcsync_pipeline_leader
# 0); then the lock goes, the batch runs on to its COMMIT and the fence refuses it: rolled back,
# none of its rows on the sink. Once the lease is released the instance takes it back and applies
# the batch exactly once. Without the fence check in the sink's commit this test fails.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
MPORT=$(free_port)
for db in src dst; do
  psql_on $db <<'SQL'
CREATE TABLE seqlog (n bigint PRIMARY KEY);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
SQL
done
psql_on src -c "INSERT INTO counter VALUES (1, 0)"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
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
CONF
sed -i "s/^\[service\]$/[service]\ninstance = node0\nha = on\nha_takeover_s = 3/" "$WORK/cdcsync.conf"

leader_metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | awk '$1 == "cdcsync_pipeline_leader{pipeline=\"ha\"}" {print $2}'; }
metric_is() { [ "$(leader_metric)" = "$1" ]; }
holder() { psql_on dst -c "SELECT holder FROM cdcsync.leases WHERE pipeline = 'ha'" 2>/dev/null; }
holder_is() { [ "$(holder)" = "$1" ]; }
sink_count() { psql_on dst -c "SELECT count(*) FROM seqlog WHERE n = 1001"; }

service_start
wait_for "node0 leads" 60 holder_is node0
wait_synced src dst 60 counter
wait_for "cdcsync_pipeline_leader is 1" 30 metric_is 1

# A sink session locks the counter row and keeps its transaction open.
mkfifo "$WORK/lock.in"
dir=PG_dst_DIR port=PG_dst_PORT
psql -X -h "${!dir}" -p "${!port}" -U postgres -qAt <"$WORK/lock.in" >"$WORK/lock.out" 2>&1 &
LOCKER=$!
exec 3>"$WORK/lock.in"
echo "BEGIN; SELECT 'locked' FROM counter WHERE id = 1 FOR UPDATE;" >&3
wait_for "the sink row is locked" 30 grep -q locked "$WORK/lock.out"

psql_on src -c "BEGIN; INSERT INTO seqlog VALUES (1001); UPDATE counter SET n = n + 1 WHERE id = 1; COMMIT;"
waiting() { [ "$(psql_on dst -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")" -ge 1 ]; }
wait_for "the leader's batch waits for the row lock" 30 waiting

# The lease moves on while the batch is half applied; the leader learns it at its next renewal.
psql_on dst -c "UPDATE cdcsync.leases SET holder = 'thief', generation = generation + 1,
  expires_at = now() + interval '1 hour', holder_session = 0 WHERE pipeline = 'ha'"
wait_for "cdcsync_pipeline_leader is 0" 30 metric_is 0
log "lease taken away while the batch waits; releasing the row lock"
echo "ROLLBACK;" >&3
exec 3>&-
wait "$LOCKER" || true

wait_for "the deposed leader steps down" 30 grep -q "stepping down" "$WORK/service.log"
[ "$(sink_count)" = 0 ] || fail "the batch was committed on the sink after the lease was lost"
[ "$(psql_on dst -c "SELECT n FROM counter WHERE id = 1")" = 0 ] || fail "the counter moved on the sink after the lease was lost"
assert_grep "the lease no longer has generation" "$WORK/service.log"
log "the fence refused the late commit; the batch was rolled back"

# The lease is released: the instance takes it back and applies the batch, once.
psql_on dst -c "UPDATE cdcsync.leases SET expires_at = now(), holder_session = 0 WHERE pipeline = 'ha'"
wait_for "node0 leads again" 30 holder_is node0
assert_grep "took the lease over from thief, which released it" "$WORK/service.log"
wait_synced src dst 60 seqlog counter
assert_tables_equal src dst seqlog counter
[ "$(psql_on dst -c "SELECT n FROM counter WHERE id = 1")" = 1 ] || fail "the counter was not bumped exactly once"
wait_for "cdcsync_pipeline_leader is 1" 30 metric_is 1
service_stop
finish
