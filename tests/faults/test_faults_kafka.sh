#!/usr/bin/env bash
# Kafka brokers that stop answering (the mock cluster's brokers frozen: connections stay open, no
# FIN, no RST, nothing answered) with PostgreSQL -> Kafka and Kafka -> PostgreSQL pipelines under
# a write load: both pipelines notice (/healthz 503, cdcsync_pipeline_up 0, errors naming Kafka),
# the Kafka source's lag grows, and once the brokers answer again both recover by themselves; the
# topic holds every change (kafka_check.py) and the final target equals the source.
# timeout_s is 3 here to keep the suite short (10 for Kafka, see below).
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/ops_lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"
source "$(dirname "$0")/faults_lib.sh"
FAULTS_EXTRA_CLEANUP='kafka_mock_stop $rc'

pg_start src
pg_start dst
kafka_mock_start -t cdc.src.public.k:3
psql_on src -c "CREATE TABLE k (id bigserial PRIMARY KEY, v text); CREATE TABLE k_log (v text)"
psql_on dst -c "CREATE TABLE k (id bigint PRIMARY KEY, v text)"
MPORT=$(free_port)
write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)
timeout_s = 3

# librdkafka's mock holds a JoinGroup or SyncGroup answer with the connection's reading switched
# off (so it does not see the client close it) until the group moves on: after at most 3 s (first
# join) or session.timeout.ms. A client that gives up sooner (socket.timeout.ms = timeout_s while
# the brokers are frozen) and asks again on a new connection trips the mock's assertion
# '!member->resp' (rdkafka_mock_cgrp.c) and kills the cluster. So the client waits longer than any
# such hold: timeout_s 10 > session.timeout.ms 6 s > 3 s.
[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
timeout_s = 10
group = cdcsync_faults
kafka.session.timeout.ms = 6000
kafka.heartbeat.interval.ms = 500

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
timeout_s = 3

[pipeline.tokafka]
source = src
sink = bus
tables = public.k

[pipeline.fromkafka]
source = bus
sink = dst
tables = public.k
CONF
service_start
wait_for "pipeline tokafka streaming" 60 pipeline_streaming tokafka
wait_for "pipeline fromkafka streaming" 60 pipeline_streaming fromkafka
pg_load src k
wait_for "rows arriving through Kafka" 60 sh -c "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM k' 2>/dev/null || echo 0)\" -gt 20 ]"

synced() {
  stop_loads
  wait_synced src dst 120 k
  assert_tables_equal src dst k
  kafka_check src quiet public.k || fail "the topic does not hold every change of the source"
  pg_load src k
}

fault=kafka_freeze
errs0=$(errors_of tokafka connection)
t0=$(now_s)
for b in 1 2 3; do kafka_ctl "freeze $b"; done
detect tokafka "${fault}_sink" "$t0"
result "${fault}_sink" "detect_s=$DETECT_S"
detect fromkafka "${fault}_source" "$t0"
result "${fault}_source" "detect_s=$DETECT_S"
log "$fault: tokafka: $(last_error tokafka)"
log "$fault: fromkafka: $(last_error fromkafka)"
[ "$(errors_of tokafka connection)" -gt "${errs0:-0}" ] || fail "$fault: errors_total{kind=connection} did not count it"
# The Kafka source falls behind the topic while the brokers are frozen (the sink side cannot
# publish either, so the lag of fromkafka counts from its last contact).
wait_for "$fault: fromkafka lag above 2 s" 60 lag_above fromkafka 2
wait_for "$fault: tokafka lag above 2 s" 60 lag_above tokafka 2
t1=$(now_s)
for b in 1 2 3; do kafka_ctl "thaw $b"; done
recover tokafka "$fault" "$t1"
r1=$RECOVER_S
recover fromkafka "$fault" "$t1"
synced
result "$fault" "recover_s=$r1 (tokafka) $RECOVER_S (fromkafka)"

stop_loads
service_stop
finish
