#!/usr/bin/env bash
# PostgreSQL → MySQL under kill -9: three writers run transactions (inserts into a table without
# key, upserts and deletes on a keyed table) while the service is killed at least 5 times, each
# time after the sink made progress, and restarted. At the end both sides hold equal ordered
# contents: a lost change or a change applied twice (a duplicate row in the keyless table) fails.
# A second pipeline from the same source applies with apply_workers = 3 (batches applied
# concurrently, committed in order) into database test_par of the same server, under the same kills.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start src
my_start dst 2
MPORT=$(free_port)

psql_on src -c "CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL, note varchar(40));
  CREATE TABLE lognk (w int, seq int, payload varchar(40));
  INSERT INTO acct SELECT g, 0, 'initial' FROM generate_series(1, 30) g;"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.psrc]
type = postgres
dsn = $(pg_dsn src)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[pipeline.crash]
source = psrc
sink = mdst
tables = public.acct, public.lognk
map = public.* -> test.*
snapshot = initial
batch_max_rows = 200

[connector.mpar]
$(my_connector dst 9003 test_par)
create_tables = yes

[pipeline.crash_par]
source = psrc
sink = mpar
tables = public.acct, public.lognk
map = public.* -> test_par.*
snapshot = initial
batch_max_rows = 20
apply_workers = 3
CONF
my_on dst -e "CREATE DATABASE test_par"

# One writer: batches of 20 transactions through one client, until $WORK/stop exists.
writer() {
  local w=$1 b=0 k i
  while [ ! -f "$WORK/stop" ]; do
    for k in $(seq 1 20); do
      i=$((b * 20 + k))
      echo "BEGIN; INSERT INTO lognk VALUES ($w, $i, 'w$w-$i');
        INSERT INTO acct VALUES ($(((w * 7 + i) % 60)), 1, 'w$w-$i') ON CONFLICT (id) DO UPDATE SET v = acct.v + 1, note = EXCLUDED.note;
        COMMIT;"
      if [ $((i % 9)) = 0 ]; then echo "DELETE FROM acct WHERE id = $(((i * 7) % 60));"; fi
    done | psql_on src >/dev/null || return 1
    b=$((b + 1))
  done
}
sink_rows() { my_on dst -e "SELECT count(*) FROM lognk" 2>/dev/null || echo 0; }
progressed() { [ "$(sink_rows)" -gt "$1" ]; }

service_start
pids=()
for w in 1 2 3; do writer $w & pids+=($!); done
for n in 1 2 3 4 5 6; do
  before=$(sink_rows)
  wait_for "sink progress before kill $n" 60 progressed "$before"
  service_kill9
  log "kill -9 #$n with $(sink_rows) keyless rows in the sink"
  service_start
done
touch "$WORK/stop"
for p in "${pids[@]}"; do wait "$p" || fail "a writer failed"; done
log "writers done: $(psql_on src -c "SELECT count(*) FROM lognk") keyless rows at the source"

MY_ACCT="CONCAT_WS(CHAR(9), CONCAT('v:', id), CONCAT('v:', v), IFNULL(CONCAT('v:', note), 'null'))"
PG_ACCT="concat_ws(E'\t', 'v:' || id, 'v:' || v, coalesce('v:' || note, 'null'))"
MY_LOG="CONCAT_WS(CHAR(9), CONCAT('v:', w), CONCAT('v:', seq), CONCAT('v:', payload))"
PG_LOG="concat_ws(E'\t', 'v:' || w, 'v:' || seq, 'v:' || payload)"
synced() { # DATABASE
  my_on dst -e "SELECT $MY_ACCT FROM $1.acct ORDER BY id" >"$WORK/my.acct" &&
    psql_on src -c "SELECT $PG_ACCT FROM public.acct ORDER BY id" >"$WORK/pg.acct" &&
    rows_equal sss "$WORK/my.acct" "$WORK/pg.acct" &&
    my_on dst -e "SELECT $MY_LOG FROM $1.lognk ORDER BY w, seq, payload" >"$WORK/my.lognk" &&
    psql_on src -c "SELECT $PG_LOG FROM public.lognk ORDER BY w, seq, payload" >"$WORK/pg.lognk" &&
    rows_equal sss "$WORK/my.lognk" "$WORK/pg.lognk"
}
for db in test test_par; do
  wait_for "equal contents in $db after the kills" 90 synced $db
  log "equal: $(tr '\n' ' ' <"$WORK/wait.out")"
  dups=$(my_on dst -e "SELECT count(*) FROM (SELECT w, seq FROM $db.lognk GROUP BY 1, 2 HAVING count(*) > 1) d")
  [ "$dups" = 0 ] || fail "$dups keyless rows applied twice in $db"
done
service_stop
finish
