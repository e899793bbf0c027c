#!/usr/bin/env bash
# A state store that cannot be used: corrupt (garbage over its meta pages), then written by an
# incompatible version (its format record changed). Only bidirectional pipelines keep row versions
# there; each time they must stop with an error counted as kind "state" that says what is wrong
# and what to do, shown by /healthz, while a one-way pipeline of the same service goes on; once the
# store is moved aside they resume by themselves (no restart of the service), and both sides end
# equal (nothing lost, nothing applied twice).
#
# Pipelines, between clusters a and b: ab/ba (a.postgres ↔ b.postgres, table acc) and one
# (a.other → b.other, table t).
source "$(dirname "$0")/../integration/lib.sh"

pg_start a
pg_start b
for n in a b; do
  psql_on $n -c "CREATE TABLE acc (id int PRIMARY KEY, v text)" -c "CREATE DATABASE other"
  psql_on $n -d other -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
done
MPORT=$(free_port)
dsn_db() { local port="PG_${1}_PORT"; printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "${!port}" "$2"; }
STATE=$WORK/state

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $STATE
metrics_listen = 127.0.0.1:$MPORT

[connector.a]
type = postgres
dsn = $(dsn_db a postgres)

[connector.b]
type = postgres
dsn = $(dsn_db b postgres)

[connector.a_other]
type = postgres
dsn = $(dsn_db a other)

[connector.b_other]
type = postgres
dsn = $(dsn_db b other)

[pipeline.ab]
source = a
sink = b
tables = public.acc

[pipeline.ba]
source = b
sink = a
tables = public.acc

[pipeline.one]
source = a_other
sink = b_other
tables = public.t
CONF

db_digest() {
  psql_on "$1" -d "$2" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\")), '') FROM $3 t"
}
db_equal() { [ "$(db_digest a "$1" "$2")" = "$(db_digest b "$1" "$2")" ]; }
errors_of() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" |
    awk -v s="cdcsync_errors_total{pipeline=\"$1\",kind=\"$2\"}" '$1 == s { v = $2 } END { print v + 0 }'
}
errors_above() { [ "$(errors_of "$1" "$2")" -gt "$3" ]; }
unhealthy_naming() {
  local code
  code=$(curl -s -o "$WORK/healthz.txt" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$MPORT/healthz")
  [ "$code" = 503 ] && grep -q "$1" "$WORK/healthz.txt"
}
healthy() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$MPORT/healthz"; }
next_id=1
# writes_meanwhile WHY — rows on both sides of the pair (distinct keys) and on the one-way
# pipeline's source; the one-way row must arrive while the pair is stopped.
writes_meanwhile() {
  psql_on a -c "INSERT INTO acc SELECT g, 'a' FROM generate_series($next_id, $((next_id + 9))) g"
  psql_on b -c "INSERT INTO acc SELECT g, 'b' FROM generate_series($((next_id + 1000)), $((next_id + 1009))) g"
  psql_on a -d other -c "INSERT INTO t VALUES ($next_id, '$1')"
  next_id=$((next_id + 10))
  wait_for "pipeline one still streaming ($1)" 30 db_equal other t
}

service_start
wait_for "every pipeline streaming" 60 healthy
writes_meanwhile "before"
wait_for "acc synced" 60 db_equal postgres acc
service_stop
[ -s "$STATE/data.mdb" ] || fail "the bidirectional pipelines wrote no state store"

# --- corrupt: garbage over both meta pages ---
log "state store corrupted while the service was down"
python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.write(b'\x5a' * 8192)
" "$STATE/data.mdb"
service_start
PID0=$SERVICE_PID
wait_for "ab failed with a state error" 60 errors_above ab state 0
wait_for "ba failed with a state error" 60 errors_above ba state 0
wait_for "/healthz names ab" 30 unhealthy_naming ab
unhealthy_naming ba || fail "/healthz does not name ba"
assert_grep "the state store is corrupt — move data.mdb and lock.mdb out of" "$WORK/service.log"
writes_meanwhile "store corrupt"
log "moving the damaged store aside"
mkdir "$WORK/aside1"
mv "$STATE/data.mdb" "$STATE/lock.mdb" "$WORK/aside1/"
wait_for "ab and ba resumed by themselves and caught up" 90 db_equal postgres acc
wait_for "every pipeline streaming again" 60 healthy
[ "$SERVICE_PID" = "$PID0" ] && kill -0 "$SERVICE_PID" || fail "the service was restarted or died"
writes_meanwhile "after the corrupt store"
wait_for "acc synced" 60 db_equal postgres acc
service_stop

# --- written by an incompatible version: its format record says 2 ---
log "state store of an incompatible format"
python3 -c "
import sys
p = sys.argv[1]
b = open(p, 'rb').read()
old, new = b'format\x00\x00\x00\x01', b'format\x00\x00\x00\x02'
assert b.count(old) >= 1, 'no format record'
open(p, 'wb').write(b.replace(old, new))
" "$STATE/data.mdb"
service_start
PID0=$SERVICE_PID
wait_for "ab failed with a state error" 60 errors_above ab state 0
wait_for "/healthz names ab" 30 unhealthy_naming ab
assert_grep "the state store was written by an incompatible version" "$WORK/service.log"
writes_meanwhile "store of another version"
log "moving the foreign store aside"
mkdir "$WORK/aside2"
mv "$STATE/data.mdb" "$STATE/lock.mdb" "$WORK/aside2/"
wait_for "ab and ba resumed by themselves and caught up" 90 db_equal postgres acc
wait_for "every pipeline streaming again" 60 healthy
[ "$SERVICE_PID" = "$PID0" ] && kill -0 "$SERVICE_PID" || fail "the service was restarted or died"
[ "$(errors_of one state)" = 0 ] && [ "$(errors_of one disk)" = 0 ] || fail "pipeline one was hit by the store's faults"
[ "$(psql_on a -c "SELECT count(*) FROM acc")" = $(((next_id - 1) * 2)) ] || fail "rows lost or duplicated in acc"
assert_tables_equal a b acc
db_equal other t || fail "other.t differs"
service_stop
finish
