#!/usr/bin/env bash
# A first sync over tables that already hold rows loses nothing (README "What a first sync over
# existing data does"). One PostgreSQL cluster (one database per side) and one MariaDB server
# serve every case at once, in one service:
#   - bidirectional PG <-> PG (ab/ba) and PG <-> MariaDB (pm/mp) with the default snapshot =
#     initial, over 20,000 rows both sides hold, rows only one side holds and rows that differ,
#     while applications insert, update and delete on both sides during the copies: both sides
#     end equal to exactly what was written (a row that differed before the start ends with one
#     side's value, the same on both);
#   - one-way into a table that holds rows: snapshot = initial refuses it (check --connect and
#     the start, PostgreSQL and MariaDB sinks, the table untouched, the slot dropped), merge keeps
#     the sink's rows and takes the source's for shared keys (PostgreSQL and MariaDB sources),
#     replace empties the table first; both then stream.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bidi_lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start p
my_start m 1
MPORT=$(free_port)
db() { # db NAME [psql args...]: psql on database NAME of cluster p
  local d=$1
  shift
  psql -X -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -d "$d" -qAt -v ON_ERROR_STOP=1 "$@"
}
dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$PG_p_PORT" "$1"; }
N=20000

for d in a b c s d1 d2 d3 d4; do psql_on p -c "CREATE DATABASE $d"; done
# Both sides of each pair: 1..N equal; 1..50 differ; 30001..30100 only on the first side,
# 40001..40100 only on the second.
for d in a b c; do
  db $d <<SQL
CREATE TABLE acc (id int PRIMARY KEY, v text);
INSERT INTO acc SELECT i, 'v' || i FROM generate_series(1, $N) i;
UPDATE acc SET v = '$d' || id WHERE id <= 50;
SQL
done
db a -c "INSERT INTO acc SELECT i, 'only-a' FROM generate_series(30001, 30100) i"
db b -c "INSERT INTO acc SELECT i, 'only-b' FROM generate_series(40001, 40100) i"
db c -c "INSERT INTO acc SELECT i, 'only-c' FROM generate_series(30001, 30100) i"
my_on m <<SQL
CREATE TABLE acc (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET=utf8mb4;
INSERT INTO acc SELECT seq, CONCAT('v', seq) FROM seq_1_to_$N;
UPDATE acc SET v = CONCAT('my', id) WHERE id <= 50;
INSERT INTO acc SELECT seq, 'only-my' FROM seq_40001_to_40100;
CREATE DATABASE test_dm;
CREATE TABLE test_dm.t (id INT PRIMARY KEY, v TEXT);
INSERT INTO test_dm.t VALUES (1, 'dst'), (2, 'dst'), (3, 'dst');
CREATE DATABASE test_m1;
CREATE TABLE test_m1.t (id INT PRIMARY KEY, v TEXT);
INSERT INTO test_m1.t SELECT seq, 'msrc' FROM seq_1_to_10;
SQL
# One-way: source s holds 1..10; d1 and d2 and d3 hold 5..15 (d1 is refused, d2 merged, d3
# replaced); d4 gets MariaDB's test_m1.t merged over its 5..15.
db s -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'src' FROM generate_series(1, 10) i"
for d in d1 d2 d3 d4; do
  db $d -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'dst' FROM generate_series(5, 15) i"
done

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.a]
type = postgres
dsn = $(dsn a)
[connector.b]
type = postgres
dsn = $(dsn b)
[connector.c]
type = postgres
dsn = $(dsn c)
[connector.s]
type = postgres
dsn = $(dsn s)
[connector.d1]
type = postgres
dsn = $(dsn d1)
[connector.d2]
type = postgres
dsn = $(dsn d2)
[connector.d3]
type = postgres
dsn = $(dsn d3)
[connector.d4]
type = postgres
dsn = $(dsn d4)
[connector.my]
$(my_connector m 9002)
[connector.dm]
$(my_connector m 9003 | sed 's/^database = test$/database = test_dm/')
[connector.m1]
$(my_connector m 9004 | sed 's/^database = test$/database = test_m1/')

[pipeline.ab]
source = a
sink = b
tables = public.acc
[pipeline.ba]
source = b
sink = a
tables = public.acc

[pipeline.pm]
source = c
sink = my
tables = public.acc
map = public.* -> test.*
[pipeline.mp]
source = my
sink = c
tables = test.acc
map = test.* -> public.*

[pipeline.refused]
source = s
sink = d1
tables = public.t
[pipeline.merged]
source = s
sink = d2
tables = public.t
snapshot = merge
[pipeline.replaced]
source = s
sink = d3
tables = public.t
snapshot = replace
[pipeline.refused_my]
source = s
sink = dm
tables = public.t
map = public.t -> test_dm.t
[pipeline.merged_my]
source = m1
sink = d4
tables = test_m1.t
map = test_m1.t -> public.t
snapshot = merge
CONF

# check --connect names both refused pipelines' tables and the choices; it passes the others.
set +e
"$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || fail "check --connect exited $rc, not 1: $(cat "$WORK/check.out")"
assert_grep "pipeline refused: sink d1: sink table public.t already holds 11 rows, and snapshot = initial copies only into empty tables, so nothing was copied — in [pipeline.refused] set snapshot = merge" "$WORK/check.out"
assert_grep "sink table test_dm.t already holds 3 rows, and snapshot = initial" "$WORK/check.out"
for p in ab ba pm mp merged replaced merged_my; do assert_grep "pipeline $p: " "$WORK/check.out"; done
if grep -E "pipeline (ab|ba|pm|mp|merged|replaced|merged_my): .*(holds|rows)" "$WORK/check.out"; then
  fail "check --connect refused a pipeline that merges or replaces"
fi

# The applications' writes during the copies: distinct keys per side, every kind of change; a
# transaction the server cancels as a deadlock (with a copy's writes) is retried, as an
# application would.
pg_writes() { # pg_writes SIDE INS UPD DEL: 300 transactions of one insert, update and delete
  local i
  for i in $(seq 1 300); do
    echo "DO \$\$ BEGIN LOOP BEGIN INSERT INTO acc VALUES ($(($2 + i)), 'ins-$1');"
    echo "UPDATE acc SET v = 'upd-$1' WHERE id = $(($3 + i)); DELETE FROM acc WHERE id = $(($4 + i)); EXIT;"
    echo "EXCEPTION WHEN deadlock_detected THEN NULL; END; END LOOP; END \$\$; SELECT pg_sleep(0.01);"
  done
}
my_writes() {
  local i
  echo "DELIMITER //"
  for i in $(seq 1 300); do
    echo "BEGIN NOT ATOMIC DECLARE done INT DEFAULT 0; WHILE done = 0 DO BEGIN"
    echo "DECLARE EXIT HANDLER FOR 1213 ROLLBACK; START TRANSACTION; INSERT INTO acc VALUES ($(($2 + i)), 'ins-$1');"
    echo "UPDATE acc SET v = 'upd-$1' WHERE id = $(($3 + i)); DELETE FROM acc WHERE id = $(($4 + i)); COMMIT;"
    echo "SET done = 1; END; END WHILE; DO SLEEP(0.01); END //"
  done
}
pg_writes a 100000 1000 5000 >"$WORK/w_a.sql"
pg_writes b 200000 2000 6000 >"$WORK/w_b.sql"
pg_writes c 100000 1000 5000 >"$WORK/w_c.sql"
my_writes my 200000 2000 6000 >"$WORK/w_my.sql"
# What both sides of a pair must hold in the end: id<TAB>v, ordered by id.
expected() { # expected FIRST SECOND ONLY_FIRST ONLY_SECOND
  python3 - "$N" "$@" <<'PY'
import sys
n, first, second, only1, only2 = int(sys.argv[1]), *sys.argv[2:]
rows = {i: 'v%d' % i for i in range(1, n + 1)}
for i in range(1, 51):
    rows[i] = 'either' + str(i)  # differing before the start: one side's value, the same on both
for i in range(30001, 30101):
    rows[i] = only1
for i in range(40001, 40101):
    rows[i] = only2
for side, ins, upd, dele in ((first, 100000, 1000, 5000), (second, 200000, 2000, 6000)):
    for i in range(1, 301):
        rows[ins + i] = 'ins-' + side
        rows[upd + i] = 'upd-' + side
        rows.pop(dele + i, None)
for k in sorted(rows):
    print('%d\t%s' % (k, rows[k]))
PY
}
expected a b only-a only-b >"$WORK/want_ab"
expected c my only-c only-my >"$WORK/want_pm"

service_start
# The applications write once every copy has its snapshot point, while the copies run.
copies_started() {
  grep -q "pipeline=ab .*copying existing rows" "$WORK/service.log" &&
    grep -q "pipeline=ba .*copying existing rows" "$WORK/service.log" &&
    grep -q "pipeline=pm .*copying existing rows" "$WORK/service.log" &&
    grep -q "pipeline=mp .*initial snapshot of [0-9]* tables at" "$WORK/service.log"
}
wait_for "the four bidirectional copies started" 60 copies_started
db a -f "$WORK/w_a.sql" >/dev/null &
w1=$!
db b -f "$WORK/w_b.sql" >/dev/null &
w2=$!
db c -f "$WORK/w_c.sql" >/dev/null &
w3=$!
my_on m <"$WORK/w_my.sql" >/dev/null &
w4=$!
for w in $w1 $w2 $w3 $w4; do wait $w || fail "a writer failed"; done
log "the applications' writes are done"

pg_rows() { db "$1" -c "COPY (SELECT id, v FROM $2 ORDER BY id) TO STDOUT"; }
# The rows 1..50 differed before the start: both sides must hold the same one of the two values
# (which one depends on which pipeline's snapshot came first; see the README).
either() { awk -F'\t' -v a="$1" -v b="$2" 'BEGIN { OFS = "\t" } $1 <= 50 && ($2 == a $1 || $2 == b $1) { $2 = "either" $1 } 1'; }
pair_equal() { # pair_equal WANT DUMP_CMD_1 DUMP_CMD_2 SIDE_1 SIDE_2
  $2 >"$WORK/one.raw" && $3 >"$WORK/two.raw" && cmp -s "$WORK/one.raw" "$WORK/two.raw" &&
    either "$4" "$5" <"$WORK/one.raw" >"$WORK/one" && cp "$WORK/one" "$WORK/two" && cmp -s "$WORK/one" "$1" && return 0
  either "$4" "$5" <"$WORK/one.raw" >"$WORK/one"
  either "$4" "$5" <"$WORK/two.raw" >"$WORK/two"
  diff "$WORK/one.raw" "$WORK/two.raw" | head -5
  diff "$1" "$WORK/one" | head -5
  diff "$1" "$WORK/two" | head -5
  return 1
}
dump_a() { pg_rows a acc; }
dump_b() { pg_rows b acc; }
dump_c() { pg_rows c acc; }
dump_my() { my_on m -e "SELECT id, v FROM acc ORDER BY id"; }
wait_for "a and b hold exactly what was written" 120 pair_equal "$WORK/want_ab" dump_a dump_b a b
wait_for "c and MariaDB hold exactly what was written" 120 pair_equal "$WORK/want_pm" dump_c dump_my c my
log "a = b = expected ($(wc -l <"$WORK/want_ab") rows); c = MariaDB = expected ($(wc -l <"$WORK/want_pm") rows)"
assert_quiet ab ba
assert_quiet pm mp
# each copy is recorded in its sink, with the copy (PostgreSQL and MariaDB sinks)
[ "$(db b -c "SELECT source_table || ' ' || state FROM cdcsync.tables WHERE pipeline = 'ab'")" = "public.acc copied" ] ||
  fail "no copy record of ab in b: $(db b -c "SELECT * FROM cdcsync.tables")"
[ "$(my_on m -e "SELECT CONCAT(source_table, ' ', state) FROM cdcsync.tables WHERE pipeline = 'pm'")" = "public.acc copied" ] ||
  fail "no copy record of pm in MariaDB: $(my_on m -e "SELECT * FROM cdcsync.tables")"
log "keys both sides held at the first copies: $(curl -s "http://127.0.0.1:$MPORT/metrics" | grep 'cdcsync_conflicts_total.*copy' | tr '\n' ' ')"

# One-way: refused without touching the sink, the slot dropped; merge and replace as they say.
wait_for "the refusal in the log" 30 grep -q "pipeline=refused .*sink table public.t already holds 11 rows" "$WORK/service.log"
assert_grep "sink table test_dm.t already holds 3 rows, and snapshot = initial copies only into empty tables" "$WORK/service.log"
[ "$(db d1 -c "SELECT string_agg(id || v, ',' ORDER BY id) FROM t")" = "5dst,6dst,7dst,8dst,9dst,10dst,11dst,12dst,13dst,14dst,15dst" ] ||
  fail "the refused copy changed d1.t: $(db d1 -c "SELECT string_agg(id || v, ',' ORDER BY id) FROM t")"
[ "$(my_on m -e "SELECT GROUP_CONCAT(id, v ORDER BY id) FROM test_dm.t")" = "1dst,2dst,3dst" ] ||
  fail "the refused copy changed test_dm.t"
wait_for "the refused pipelines' slots dropped" 30 yields 0 db s -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('cdcsync_refused', 'cdcsync_refused_my')"
assert_grep "dropped replication slot \"cdcsync_refused\": its copy was not committed" "$WORK/service.log"
curl -sf "http://127.0.0.1:$MPORT/healthz" >"$WORK/health" && fail "healthz is 200 with refused pipelines" || true

db s -c "INSERT INTO t VALUES (100, 'streamed')"
my_on m -e "INSERT INTO test_m1.t VALUES (100, 'streamed')"
want_src="1src,2src,3src,4src,5src,6src,7src,8src,9src,10src,100streamed"
want_merged="$(echo "$want_src" | sed 's/,100streamed/,11dst,12dst,13dst,14dst,15dst,100streamed/')"
want_merged_my="$(echo "$want_merged" | sed 's/src/msrc/g')"
agg() { db "$1" -c "SELECT string_agg(id || v, ',' ORDER BY id) FROM t"; }
wait_for "merged: the sink's rows kept, the source's taken" 60 yields "$want_merged" agg d2
wait_for "replaced: the sink equals the source" 60 yields "$want_src" agg d3
wait_for "merged from MariaDB" 60 yields "$want_merged_my" agg d4
assert_grep "snapshot = replace: the sink table is emptied first" "$WORK/service.log"
service_stop
finish
