#!/usr/bin/env bash
# snapshot = never with start_position, MySQL → PostgreSQL through the service: the sink already
# holds the rows, the pipeline streams from the position given, and nothing after it is lost:
# 1. a first start applies every transaction written between start_position and the start
#    (a table with a key and one without, where a lost or repeated row shows);
# 2. a table added to tables later, under snapshot = never, streams from the checkpoint: the rows
#    written to it while the service was down arrive, none is copied or repeated.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
pg_start dst
MPORT=$(free_port)

# What the sink holds already: the same two rows on both sides.
my_on src -e "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); CREATE TABLE applog (n INT, what VARCHAR(40));
  INSERT INTO t VALUES (1, 'one'), (2, 'two'); INSERT INTO applog VALUES (1, 'first'), (2, 'second');"
psql_on dst -c "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE applog (n int, what text);
  INSERT INTO t VALUES (1, 'one'), (2, 'two'); INSERT INTO applog VALUES (1, 'first'), (2, 'second');"
start=$(my_on src -e "SHOW MASTER STATUS" | awk '{print $1 ":" $2}')
workload() { # TABLE FROM TO
  local n sql=""
  for n in $(seq "$2" "$3"); do
    case $1 in
      t) sql+="BEGIN; INSERT INTO t VALUES ($n, 'v$n'); INSERT INTO applog VALUES ($n, 'row $n');
           UPDATE t SET v = CONCAT(v, '+') WHERE id = $((n - 1)); COMMIT;" ;;
      *) sql+="INSERT INTO $1 VALUES ($n, 'w$n');" ;;
    esac
  done
  my_on src -e "$sql"
}
workload t 3 40

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.sp]
source = msrc
sink = dst
tables = test.t, test.applog
map = test.* -> public.*
snapshot = never
start_position = $start
CONF

equal() { # TABLE...
  local t
  for t in "$@"; do
    my_on src -e "SELECT * FROM $t ORDER BY 1, 2" >"$WORK/my.$t" &&
      psql_on dst -c "COPY (SELECT * FROM public.$t ORDER BY 1, 2) TO STDOUT" >"$WORK/pg.$t" &&
      diff "$WORK/my.$t" "$WORK/pg.$t" >"$WORK/diff.$t" || { head -5 "$WORK/diff.$t"; return 1; }
  done
}

# 1. a first start from start_position
service_start
wait_for "every transaction after start_position applied" 60 equal t applog
workload t 41 45
wait_for "streaming on" 30 equal t applog
log "1: streamed from start_position $start: $(psql_on dst -c "SELECT count(*) FROM applog") applog rows"

# 2. a table added to tables later, snapshot = never: made equal on both sides by hand while the
# pipeline streams other tables (and moves its checkpoint past that), then added while down
my_on src -e "CREATE TABLE t2 (id INT PRIMARY KEY, v VARCHAR(40)); INSERT INTO t2 VALUES (1, 'w1');"
psql_on dst -c "CREATE TABLE t2 (id int PRIMARY KEY, v text); INSERT INTO t2 VALUES (1, 'w1');"
workload t 46 46
wait_for "the checkpoint past t2's creation" 30 equal t applog
service_stop
sed -i 's/^tables = test.t, test.applog$/tables = test.t, test.applog, test.t2/' "$WORK/cdcsync.conf"
grep -q "test.t2" "$WORK/cdcsync.conf" || fail "t2 not added to tables"
workload t2 2 9
service_start
wait_for "the added table's rows written while down applied" 60 equal t applog t2
workload t2 10 12
wait_for "the added table streams on" 30 equal t applog t2
log "2: t2 added under snapshot = never: its rows since the checkpoint arrived"
service_stop
finish
