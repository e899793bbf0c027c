#!/usr/bin/env bash
# Kafka → MySQL: Debezium messages (as kcat writes them by hand) applied by the MySQL sink, with
# the repeats and gaps an at-least-once source brings: an update of a row the sink never had (an
# upsert), deletes of missing rows, and the same messages delivered again. None of them is an
# error (CHANGE_IDEMPOTENT), and the table ends as the messages say.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

my_start dst 1
kafka_mock_start -t dbserver1.inventory.customers:1
MPORT=$(free_port)
my_on dst -e "CREATE TABLE customers (id INT PRIMARY KEY, first_name VARCHAR(50), email VARCHAR(100),
  score DECIMAL(10,2), active TINYINT(1))"

T=dbserver1.inventory.customers
SRC='"source":{"version":"2.5.0.Final","connector":"mysql","name":"dbserver1","ts_ms":1700000000000,"db":"inventory","table":"customers","file":"b.000001","pos":1}'
msg() { # KEY_ID OP BEFORE AFTER
  printf '{"id":%s}|{"before":%s,"after":%s,%s,"op":"%s","ts_ms":1700000000001}\n' "$1" "$3" "$4" "$SRC" "$2"
}
row() { printf '{"id":%s,"first_name":"%s","email":"%s","score":%s,"active":%s}' "$@"; }
batch1() {
  msg 1001 c null "$(row 1001 Sally s@example.com 12.50 true)"
  msg 1002 c null "$(row 1002 George g@example.com null false)"
  msg 1001 u "$(row 1001 Sally s@example.com 12.50 true)" "$(row 1001 Sally sally.t@example.com 13.75 true)"
  # the sink never saw 1004 created (it was before the retained offsets): the update upserts it
  msg 1004 u "$(row 1004 Anne a@example.com 1 false)" "$(row 1004 Anne anne@example.com 2 true)"
  # a delete of a row the sink does not have
  msg 1005 d "$(row 1005 X x@example.com null null)" null
  msg 1002 d "$(row 1002 George g@example.com null false)" null
}
batch1 | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -p 0
printf '%s|\n' '{"id":1002}' | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -Z -p 0
# at-least-once: the same messages once more (as after a crash before the offsets were stored)
batch1 | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -p 0
msg 1006 c null "$(row 1006 Last l@example.com 6 false)" | kcat -b "$KAFKA_BOOTSTRAP" -P -t "$T" -K '|' -p 0

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
topic = dbserver1.{schema}.{table}

[connector.dst]
$(my_connector dst 9101)

[pipeline.frombus]
source = bus
sink = dst
tables = *
map = inventory.* -> test.*
CONF
service_start
want=$'1001\tSally\tsally.t@example.com\t13.75\t1\n1004\tAnne\tanne@example.com\t2.00\t1\n1006\tLast\tl@example.com\t6.00\t0'
applied() { [ "$(my_on dst -e 'SELECT id, first_name, email, score, active FROM customers ORDER BY id')" = "$want" ]; }
wait_for "the messages applied, repeats and gaps included" 60 applied
errs=$(metric 'cdcsync_errors_total{pipeline="frombus",kind="data"}')
[ -z "$errs" ] || [ "$errs" = 0 ] || fail "data errors counted: $errs"
if grep -q "diverged" "$WORK/service.log"; then fail "a missing row was reported for an at-least-once source"; fi
service_stop
finish
