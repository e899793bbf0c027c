#!/usr/bin/env bash
# MariaDB GTID positioning, MySQL → PostgreSQL through the service:
# 1. the checkpoint the sink stores carries the server's real binlog name and the GTID state
#    ("mariadb-bin.000001:1234 gtid=0-1-57"), equal to the server's @@gtid_binlog_pos once caught up;
# 2. a restart resumes by GTID (the log says so) and a table without key (where a replay would show
#    as a duplicate row, a skip as a missing one) ends equal;
# 3. the checkpoint's binlog file rotated away and purged while every transaction after its GTID
#    is still in the retained binlogs: only GTID positioning finds the spot; it ends equal;
# 4. transactions after the checkpoint's GTID purged: the pipeline stops with a message naming
#    the GTID and what to do.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
pg_start dst
MPORT=$(free_port)

my_on src -e "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40));
  CREATE TABLE applog (n INT, what VARCHAR(40));
  INSERT INTO t VALUES (1, 'one'), (2, 'two');
  INSERT INTO applog VALUES (1, 'first'), (2, 'second');"

my_to_pg_conf gt 'test.t, test.applog'

synced() {
  my_on src -e "SELECT id, v FROM t ORDER BY id; SELECT n, what FROM applog ORDER BY n, what" >"$WORK/my.out" &&
    psql_on dst -c "COPY (SELECT id, v FROM public.t ORDER BY id) TO STDOUT" >"$WORK/pg.out" &&
    psql_on dst -c "COPY (SELECT n, what FROM public.applog ORDER BY n, what) TO STDOUT" >>"$WORK/pg.out" &&
    diff "$WORK/my.out" "$WORK/pg.out"
}
checkpoint() { psql_on dst -c "SELECT pos_text FROM cdcsync.checkpoints WHERE pipeline = 'gt'"; }
# the checkpoint names the server's current GTID position (the last transaction is ours)
checkpoint_at_server() {
  local want cp
  want=$(my_on src -e "SELECT @@gtid_binlog_pos")
  cp=$(checkpoint)
  echo "checkpoint '$cp', server at $want"
  [[ "$cp" =~ ^mariadb-bin\.[0-9]{6}:[0-9]+\ gtid=${want}$ ]]
}
workload() { # FROM TO: one transaction per n, an insert into each table and an update
  local n sql=""
  for n in $(seq "$1" "$2"); do
    sql+="BEGIN; INSERT INTO t VALUES ($n, 'v$n'); INSERT INTO applog VALUES ($n, 'row $n');
      UPDATE t SET v = CONCAT(v, '+') WHERE id = $((n - 1)); COMMIT;"
  done
  my_on src -e "$sql"
}

# 1. the checkpoint carries the GTID state
service_start
wait_for "initial snapshot equal" 30 synced
workload 3 12
wait_for "stream equal" 30 synced
wait_for "checkpoint with the server's GTID position" 30 checkpoint_at_server
log "1: $(cat "$WORK/wait.out")"

# 2. restart: resume by GTID, nothing missing, nothing twice
service_stop
cp=$(checkpoint)
gtid=${cp#* gtid=}
workload 13 30
service_start
wait_for "equal after the restart" 30 synced
assert_grep "streaming binlog from GTID state $gtid (checkpoint $cp)" "$WORK/service.log"
wait_for "checkpoint with the server's GTID position after the restart" 30 checkpoint_at_server
log "2: resumed from '$cp': $(cat "$WORK/wait.out")"

# 3. the checkpoint's file rotated away and purged; its GTID's successors are retained
service_stop
cp=$(checkpoint)
gtid=${cp#* gtid=}
oldfile=${cp%%:*}
my_on src -e "FLUSH BINARY LOGS"
workload 31 40
newest=$(my_on src -e "SHOW MASTER STATUS" | cut -f1)
purge() { my_on src -e "PURGE BINARY LOGS TO '$newest'" && ! my_on src -e "SHOW BINARY LOGS" | grep -q "^$oldfile"; }
wait_for "binlogs purged up to $newest" 30 purge
[ "$(my_on src -e "SHOW BINARY LOGS" | cut -f1 | head -1)" != "$oldfile" ] || fail "$oldfile still there"
service_start
wait_for "equal after resuming past a purged file" 30 synced
assert_grep "the server still holds every transaction after GTID $gtid: resuming by GTID" "$WORK/service.log"
wait_for "checkpoint with the server's GTID position after the purge" 30 checkpoint_at_server
log "3: $oldfile purged, resumed from '$cp': $(cat "$WORK/wait.out")"

# 4. transactions after the checkpoint's GTID purged: a clear stop
service_stop
cp=$(checkpoint)
gtid=${cp#* gtid=}
workload 41 45
my_on src -e "FLUSH BINARY LOGS"
workload 46 47
newest=$(my_on src -e "SHOW MASTER STATUS" | cut -f1)
purge() { my_on src -e "PURGE BINARY LOGS TO '$newest'" && [ "$(my_on src -e "SHOW BINARY LOGS" | wc -l)" = 1 ]; }
wait_for "binlogs purged up to $newest" 30 purge
service_start
refused() { grep -q "\[pipeline=gt.*the transactions after GTID $gtid are no longer on the server: its oldest binlog $newest starts after .*delete its checkpoint in the sink.*snapshot = replace" "$WORK/service.log"; }
wait_for "the purged GTID stops the pipeline with the GTID named" 30 refused
log "4: $(grep -o 'the transactions after GTID .*' "$WORK/service.log" | head -1)"
[ "$(metric 'cdcsync_errors_total{pipeline="gt",kind="source"}')" -ge 1 ] 2>/dev/null ||
  fail "the purge error is not counted as kind=source"
service_stop
finish
