#!/usr/bin/env bash
# The MySQL source under schema change and binlog loss, through the service:
# 1. ALTER TABLE ADD COLUMN on the source while streaming, rows before and after it: with
#    create_tables = yes the MySQL sink adds the column itself (it rolls its batch back, adds
#    the column, and the batch is applied again) and both sides end equal, the new column too.
#    Then the same while the service is down, so the restarted source reads rows logged before
#    the ALTER while information_schema already shows the new column.
#    A second sink without create_tables (a MySQL → PostgreSQL pipeline on a table created by
#    hand) stops with a schema error naming the missing column. A third, MySQL → PostgreSQL with
#    create_tables = yes, creates its table, adds each new column (mapped type) in the batch's
#    transaction, and ends with the same ordered contents as the source.
# 2. Binlogs purged while the service was down: the restarted pipeline fails with a message
#    naming the purged file and what to do, counted as cdcsync_errors_total{kind="source"}.
# 3. A row deleted on the MySQL sink by hand, then updated at the source: a "data" error naming
#    table and key, counted in cdcsync_errors_total{kind="data"}, and nothing of that batch committed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
my_start dst 2
pg_start pdst
MPORT=$(free_port)

my_on src -e "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20));
  INSERT INTO t VALUES (1, 'before'), (2, 'before');"
psql_on pdst -c "CREATE TABLE public.t (id int PRIMARY KEY, a text)"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.msrc]
$(my_connector src 9001)

; a binlog client per pipeline: each needs its own server_id
[connector.msrc2]
$(my_connector src 9003)

[connector.msrc3]
$(my_connector src 9004)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[connector.pdst]
type = postgres
dsn = $(pg_dsn pdst)
create_tables = no

[connector.pauto]
type = postgres
dsn = $(pg_dsn pdst)
create_tables = yes

[pipeline.ddl]
source = msrc
sink = mdst
tables = test.t
snapshot = initial

[pipeline.topg]
source = msrc2
sink = pdst
tables = test.t
map = test.* -> public.*
snapshot = initial

[pipeline.topgauto]
source = msrc3
sink = pauto
tables = test.t
map = test.* -> auto.*
snapshot = initial
CONF

Q="SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', a), 'null'), IFNULL(CONCAT('v:', b), 'null')) FROM t ORDER BY id"
Q2="SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', a), 'null')) FROM t ORDER BY id"
synced2() { my_on src -e "$Q2" >"$WORK/src.t" && my_on dst -e "$Q2" >"$WORK/dst.t" && rows_equal ss "$WORK/src.t" "$WORK/dst.t"; }
synced3() { my_on src -e "$Q" >"$WORK/src.t" && my_on dst -e "$Q" >"$WORK/dst.t" && rows_equal sss "$WORK/src.t" "$WORK/dst.t"; }
Q4="SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', a), 'null'), IFNULL(CONCAT('v:', b), 'null'), IFNULL(CONCAT('v:', c), 'null')) FROM t ORDER BY id"
synced4() { my_on src -e "$Q4" >"$WORK/src.t" && my_on dst -e "$Q4" >"$WORK/dst.t" && rows_equal ssss "$WORK/src.t" "$WORK/dst.t"; }
# the same ordered contents on the PostgreSQL sink that creates and widens auto.t itself
pgq() {
  local cols="'v:' || id" c
  for c in "$@"; do cols="$cols, coalesce('v:' || $c, 'null')"; done
  psql_on pdst -F $'\t' -c "SELECT $cols FROM auto.t ORDER BY id" 2>/dev/null
}
pg_synced2() { my_on src -e "$Q2" >"$WORK/src.p" && pgq a >"$WORK/pg.p" && rows_equal ss "$WORK/src.p" "$WORK/pg.p"; }
pg_synced3() { my_on src -e "$Q" >"$WORK/src.p" && pgq a b >"$WORK/pg.p" && rows_equal sss "$WORK/src.p" "$WORK/pg.p"; }
pg_synced4() { my_on src -e "$Q4" >"$WORK/src.p" && pgq a b c >"$WORK/pg.p" && rows_equal ssss "$WORK/src.p" "$WORK/pg.p"; }

service_start
wait_for "snapshot equal" 60 synced2
wait_for "snapshot equal on PostgreSQL (created table)" 60 pg_synced2
# rows before the ALTER, the ALTER, rows using the new column, all in quick succession so
# that some old-shape rows share the sink batch with new-shape ones
my_on src -e "INSERT INTO t VALUES (3, 'old shape'); UPDATE t SET a = 'old upd' WHERE id = 1;
  ALTER TABLE t ADD COLUMN b INT NULL;
  INSERT INTO t VALUES (4, 'new shape', 40); UPDATE t SET b = 10 WHERE id = 1; DELETE FROM t WHERE id = 2;
  BEGIN; INSERT INTO t VALUES (5, 'txn', NULL); UPDATE t SET b = b + 1 WHERE id = 4; COMMIT;"
wait_for "equal with the new column" 60 synced3
log "MySQL sink after ADD COLUMN: $(tr '\n' ' ' <"$WORK/wait.out")"
assert_grep "added column(s) b to \`test\`.\`t\`" "$WORK/service.log"
wait_for "PostgreSQL (create_tables) equal with the new column" 60 pg_synced3
log "PostgreSQL sink after ADD COLUMN: $(tr '\n' ' ' <"$WORK/wait.out")"
assert_grep 'added column(s) "b" to auto.t' "$WORK/service.log"
[ "$(psql_on pdst -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'auto.t'::regclass AND attname = 'b'")" = bigint ] ||
  fail "auto.t.b is not the mapped type (bigint)"
pg_refused() { grep -q "column.*\"b\".*public.t\|\"b\" of relation \"t\" does not exist\|lacks.*b" "$WORK/service.log"; }
wait_for "the PostgreSQL sink without create_tables refuses the new column" 30 pg_refused
log "PostgreSQL sink without create_tables: $(grep -o '\[pipeline=topg [^]]*\] .*' "$WORK/service.log" | grep -i 'column' | head -1)"

# the same with the service down: on restart the source reads old-shape rows while
# information_schema already has the new column
service_stop
my_on src -e "INSERT INTO t VALUES (7, 'before c', 7); UPDATE t SET a = 'upd before c' WHERE id = 4;
  ALTER TABLE t ADD COLUMN c VARCHAR(10);
  INSERT INTO t VALUES (8, 'with c', 8, 'c8'); UPDATE t SET c = 'c1' WHERE id = 1;"
service_start
wait_for "equal with the column added while down" 60 synced4
wait_for "PostgreSQL (create_tables) equal with the column added while down" 60 pg_synced4
log "after ADD COLUMN while down: $(tr '\n' ' ' <"$WORK/wait.out")"
assert_grep "reading the rows logged before the columns were added" "$WORK/service.log"

# 2. purge while down
service_stop
my_on src -e "INSERT INTO t VALUES (6, 'while down', 6, NULL); FLUSH BINARY LOGS;"
newest=$(my_on src -e "SHOW MASTER STATUS" | awk '{print $1}')
# the server keeps a file a (gone, not yet noticed) dump thread still reads: retry until purged
purge() {
  my_on src -e "PURGE BINARY LOGS TO '$newest'" &&
    [ "$(my_on src -e "SHOW BINARY LOGS" | awk 'NR == 1 {print $1}')" = "$newest" ]
}
wait_for "binlogs purged up to $newest" 30 purge
service_start
purged() { grep -q "\[pipeline=ddl.*binlog file mariadb-bin.000001 (position [0-9]*) is no longer on the server (it has $newest .. $newest).*delete its checkpoint in the sink.*snapshot = replace" "$WORK/service.log"; }
wait_for "the purged binlog stops the pipeline with the file named" 30 purged
log "purge: $(grep -o 'binlog file mariadb-bin.000001 .*' "$WORK/service.log" | head -1)"
pos_errors() { [ "$(metric 'cdcsync_errors_total{pipeline="ddl",kind="source"}')" -ge 1 ]; }
wait_for "a position error in the metrics" 10 pos_errors
# the recovery the message gives: delete the checkpoint, restart with snapshot = replace (the
# sink table holds the rows copied before, which snapshot = initial refuses to copy over)
service_stop
my_on dst -e "DELETE FROM cdcsync.checkpoints WHERE pipeline = 'ddl'"
sed -i '/^\[pipeline.ddl\]/,/^\[/ s/^snapshot = initial/snapshot = replace/' "$WORK/cdcsync.conf"
service_start
wait_for "equal after the recovery" 60 synced4

# 3. a row the MySQL sink lacks: removed there by hand, then updated at the source. The sink
#    stops the pipeline with a data error naming table and key, counted in the metrics, and
#    commits nothing of that batch (the row inserted in the same transaction stays absent).
my_on dst -e "DELETE FROM t WHERE id = 8"
my_on src -e "BEGIN; INSERT INTO t VALUES (9, 'same txn', 9, NULL); UPDATE t SET a = 'upd 8' WHERE id = 8; COMMIT;"
diverged() { grep -q "\[pipeline=ddl .*update on \`test\`.\`t\` (row key (id)=(8)) matched no rows instead of 1: the sink diverged from the source" "$WORK/service.log"; }
wait_for "the MySQL sink reports the missing row with table and key" 30 diverged
data_errors() { [ "$(metric 'cdcsync_errors_total{pipeline="ddl",kind="data"}')" -ge 1 ]; }
wait_for "the divergence counted in the metrics" 10 data_errors
[ -z "$(my_on dst -e "SELECT id FROM t WHERE id = 9")" ] || fail "the diverged batch was committed (row 9 is on the sink)"
service_stop
finish
