#!/usr/bin/env bash
# MySQL → PostgreSQL under kill -9: three writers run transactions (inserts into a table without
# key, upserts and deletes on a keyed table) while the service is killed at least 5 times, each
# time after the sink made progress, and restarted. At the end both sides hold equal ordered
# contents: a lost change or a change applied twice (a duplicate row in the keyless table) fails.
# The first kill lands in the initial snapshot of a 30,000-row table, while the writers run.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
pg_start dst
MPORT=$(free_port)

my_on src -e "CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40));
  CREATE TABLE lognk (w INT, seq INT, payload VARCHAR(40));
  INSERT INTO acct SELECT seq, 0, 'initial' FROM seq_1_to_30;
  CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(100));
  INSERT INTO big SELECT seq, REPEAT(CHAR(65 + seq % 26), 60) FROM seq_1_to_30000;"

my_to_pg_conf crash 'test.acct, test.lognk, test.big' 'batch_max_rows = 200'

# One writer: batches of 20 transactions through one client, until $WORK/stop exists.
writer() {
  local w=$1 b=0 k i
  while [ ! -f "$WORK/stop" ]; do
    for k in $(seq 1 20); do
      i=$((b * 20 + k))
      echo "BEGIN; INSERT INTO lognk VALUES ($w, $i, 'w$w-$i');
        INSERT INTO acct VALUES ($(((w * 7 + i) % 60)), 1, 'w$w-$i') ON DUPLICATE KEY UPDATE v = v + 1, note = 'w$w-$i';
        COMMIT;"
      if [ $((i % 9)) = 0 ]; then echo "DELETE FROM acct WHERE id = $(((i * 7) % 60));"; fi
    done | my_on src || return 1
    b=$((b + 1))
  done
}
sink_rows() { psql_on dst -c "SELECT count(*) FROM public.lognk" 2>/dev/null || echo 0; }
progressed() { [ "$(sink_rows)" -gt "$1" ]; }

service_start
pids=()
for w in 1 2 3; do writer $w & pids+=($!); done
in_snapshot() { grep -q "initial snapshot of 3 tables" "$WORK/service.log"; }
wait_for "the snapshot starts" 30 in_snapshot
service_kill9
grep -q "streaming binlog from" "$WORK/service.log" && log "note: the snapshot had finished before the first kill"
log "kill -9 #0 during the initial snapshot"
service_start
for n in 1 2 3 4 5 6; do
  before=$(sink_rows)
  wait_for "sink progress before kill $n" 60 progressed "$before"
  service_kill9
  log "kill -9 #$n with $(sink_rows) keyless rows in the sink"
  service_start
done
touch "$WORK/stop"
for p in "${pids[@]}"; do wait "$p" || fail "a writer failed"; done
log "writers done: $(my_on src -e "SELECT count(*) FROM lognk") keyless rows at the source"

MY_ACCT="CONCAT_WS(CHAR(9), CONCAT('v:', id), CONCAT('v:', v), IFNULL(CONCAT('v:', note), 'null'))"
PG_ACCT="concat_ws(E'\t', 'v:' || id, 'v:' || v, coalesce('v:' || note, 'null'))"
MY_LOG="CONCAT_WS(CHAR(9), CONCAT('v:', w), CONCAT('v:', seq), CONCAT('v:', payload))"
PG_LOG="concat_ws(E'\t', 'v:' || w, 'v:' || seq, 'v:' || payload)"
synced() {
  my_on src -e "SELECT $MY_ACCT FROM acct ORDER BY id" >"$WORK/my.acct" &&
    psql_on dst -c "SELECT $PG_ACCT FROM public.acct ORDER BY id" >"$WORK/pg.acct" &&
    rows_equal sss "$WORK/my.acct" "$WORK/pg.acct" &&
    my_on src -e "SELECT $MY_LOG FROM lognk ORDER BY w, seq, payload" >"$WORK/my.lognk" &&
    psql_on dst -c "SELECT $PG_LOG FROM public.lognk ORDER BY w, seq, payload" >"$WORK/pg.lognk" &&
    rows_equal sss "$WORK/my.lognk" "$WORK/pg.lognk" &&
    my_on src -e "SELECT CONCAT('v:', id, CHAR(9), 'v:', pad) FROM big ORDER BY id" >"$WORK/my.big" &&
    psql_on dst -c "SELECT 'v:' || id || E'\t' || 'v:' || pad FROM public.big ORDER BY id" >"$WORK/pg.big" &&
    rows_equal ss "$WORK/my.big" "$WORK/pg.big"
}
wait_for "equal contents after the kills" 90 synced
log "equal: $(tr '\n' ' ' <"$WORK/wait.out")"
dups=$(psql_on dst -c "SELECT count(*) FROM (SELECT w, seq FROM public.lognk GROUP BY 1, 2 HAVING count(*) > 1) d")
[ "$dups" = 0 ] || fail "$dups keyless rows applied twice"
service_stop
finish
